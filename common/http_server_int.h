/*
 * http_server_int.h - what http_server.c shares with http_loop.c, its
 * event loops; not for services.
 */
#ifndef MSG_HTTP_SERVER_INT_H
#define MSG_HTTP_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "http_server.h"

typedef struct hs_loop_thread hs_loop_thread;

/* A request of a loop still reading its head or body (http_loop.c's
 * sweep): its connection's socket. */
typedef struct hs_reading {
    struct hs_reading *prev, *next;
    hs_loop_thread *loop; /* NULL: not listed */
    int fd;
} hs_reading;

struct hs_server {
    struct MHD_Daemon *daemon; /* the first loop's in loop mode */
    hs_config cfg;             /* copied; what it points to is borrowed */
    atomic_int in_flight;      /* requests between first call and completion */
    atomic_int open_conns;     /* connections between start and close */
    atomic_llong last_begin;   /* monotonic ms of the last connection or
                                  request to begin: the drain's quiet clock */
    atomic_bool stopping;      /* set by hs_stop: replies close the connection,
                                  /readyz answers 503 */
    /* Loop mode (cfg.loop): the loops, cfg.threads of them. */
    hs_loop_thread *loops;
    int nloops;
    atomic_bool loops_exit;
};

/* Starts one daemon of s with flags: listening on addr, or on listen_fd
 * when it is not MHD_INVALID_SOCKET; pool > 0 runs a pool of that many
 * threads. NULL on failure. */
struct MHD_Daemon *hs_daemon_start(hs_server *s, unsigned int flags,
                                   const struct sockaddr_storage *addr,
                                   MHD_socket listen_fd, unsigned int pool);
/* d's listening socket, or MHD_INVALID_SOCKET. */
MHD_socket hs_listen_fd(struct MHD_Daemon *d);
/* Hands the connections waiting in the backlog of fd to daemon; returns
 * how many. */
int hs_adopt_backlog(struct MHD_Daemon *daemon, MHD_socket fd);

/* http_loop.c. Starts s->cfg.threads loops, each with a daemon of flags
 * (external polling); s->daemon is the first one's. Returns 0 or -1
 * (nothing left running). */
int hs_loops_start(hs_server *s, unsigned int flags,
                   const struct sockaddr_storage *addr);
/* Stops every loop accepting, hands the backlog to the first one and
 * returns the listening socket (the caller shuts it down and closes it
 * once the daemons are stopped), or MHD_INVALID_SOCKET. */
MHD_socket hs_loops_quiesce(hs_server *s, int *adopted);
/* Hands what waits in the backlog of the quiesced listening socket to
 * the first loop; returns how many. */
int hs_loops_adopt(hs_server *s);
/* Ends the loops, closes their states and stops their daemons. */
void hs_loops_stop(hs_server *s);
/* The calling thread's loop, or NULL off the loops. */
hs_loop_thread *hs_loop_current(void);
/* Makes loop t (may be NULL: nothing to do) run its daemon again soon: a
 * connection of it was resumed. Callable from any thread. */
void hs_loop_kick(hs_loop_thread *t);
/* Lists r (fd: its connection's socket) with the calling thread's loop,
 * if it is a loop thread; a no-op elsewhere. */
void hs_loop_reading_add(hs_reading *r, int fd);
/* Takes r off its loop's list, if listed. */
void hs_loop_reading_remove(hs_reading *r);

#endif
