/*
 * http_loop.c - a server's threads as event loops of their own
 * (hs_config.loop; see hs_loop_ops in http_server.h).
 *
 * Each loop thread owns a libmicrohttpd daemon in external epoll mode:
 * the first daemon opens the listening socket, the others are given the
 * same socket, so whichever loop wakes first accepts a connection and
 * serves it to the end. A turn runs the daemon (MHD_run does not block),
 * then waits in the service's wait on the daemon's epoll descriptor, for
 * at most what the daemon's own timers allow.
 *
 * Only its loop thread touches a daemon while the loops run: a daemon
 * driven from outside takes no locks of its own around accepting,
 * quiescing or adding a connection. So hs_stop hands those steps to the
 * loops as tasks and waits for them. Resuming a suspended connection is
 * the one call libmicrohttpd makes safe from any thread (it locks and
 * signals the daemon), and hs_wake is allowed from anywhere.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "clockms.h"
#include "http_server_int.h"
#include "log.h"

/* Longest wait of a loop with nothing to do: how late it may notice an
 * exit that came without a wake-up. */
#define HS_LOOP_IDLE_MS 1000
/* How often a loop looks for peers that closed in the middle of a
 * request (sweep_reading). */
#define HS_LOOP_SWEEP_MS 100

typedef void (*loop_task)(hs_loop_thread *t);

struct hs_loop_thread {
    hs_server *s;
    struct MHD_Daemon *daemon;
    void *state; /* the service's (hs_loop_ops.open) */
    pthread_t thread;
    bool running;
    /* One task at a time from hs_stop, run between two turns. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool has_task;
    loop_task task;
    bool task_done;
    /* Results of the tasks. */
    MHD_socket quiesced_fd;
    int adopted;
    hs_reading *reading; /* requests still being read */
    int64_t next_sweep_ms;
    /* A connection of this loop was resumed during its own turn: the
     * next wait must not sleep (see hs_loop_kick). */
    bool again;
};

static _Thread_local void *tl_state;
static _Thread_local hs_loop_thread *tl_loop;

void *hs_loop_state(void)
{
    return tl_state;
}

/* How long the loop may wait: the daemon's next timer (a connection's
 * idle timeout; zero when it holds data already read), capped, and
 * shorter while a sweep may be needed. */
static int turn_timeout(hs_loop_thread *t)
{
    if (t->again) {
        t->again = false;
        return 0;
    }
    int cap = t->reading != NULL ? HS_LOOP_SWEEP_MS : HS_LOOP_IDLE_MS;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(t->daemon, &ms) != MHD_YES || ms > (unsigned)cap)
        return cap;
    return (int)ms;
}

hs_loop_thread *hs_loop_current(void)
{
    return tl_loop;
}

/* libmicrohttpd's external epoll mode takes a resumed connection up only
 * when the daemon runs again, and nothing makes the loop's wait return
 * for it: without this kick a long poll answered from another thread
 * would wait for the loop's next timer (up to HS_LOOP_IDLE_MS). */
void hs_loop_kick(hs_loop_thread *t)
{
    if (t == NULL)
        return;
    if (t == tl_loop)
        t->again = true;
    else if (!atomic_load(&t->s->loops_exit))
        t->s->cfg.loop->wake(t->state);
}

void hs_loop_reading_add(hs_reading *r, int fd)
{
    hs_loop_thread *t = tl_loop;
    if (t == NULL || r->loop != NULL)
        return;
    r->fd = fd;
    r->loop = t;
    r->prev = NULL;
    r->next = t->reading;
    if (t->reading)
        t->reading->prev = r;
    t->reading = r;
}

void hs_loop_reading_remove(hs_reading *r)
{
    hs_loop_thread *t = r->loop;
    if (t == NULL)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        t->reading = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->loop = NULL;
}

/* libmicrohttpd 0.9.75 under epoll takes a read shorter than its buffer
 * for an empty socket and waits for the next edge; when the peer's close
 * came with that last data, no edge follows, and the request would sit
 * in flight until the idle timeout (holding a graceful stop). So a loop
 * polls the sockets of requests still being read for the peer's close,
 * and shuts a closed one's reading side: that raises a fresh edge, and
 * the daemon reads the end and drops the connection. */
static void sweep_reading(hs_loop_thread *t)
{
    int64_t now = clockms_monotonic();
    if (t->reading == NULL || now < t->next_sweep_ms)
        return;
    t->next_sweep_ms = now + HS_LOOP_SWEEP_MS;
    for (hs_reading *r = t->reading; r != NULL; r = r->next) {
        struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
        if (poll(&p, 1, 0) == 1 &&
            (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0)
            shutdown(r->fd, SHUT_RD);
    }
}

static void run_task(hs_loop_thread *t)
{
    pthread_mutex_lock(&t->mu);
    loop_task task = t->task;
    t->task = NULL;
    atomic_store(&t->has_task, false);
    pthread_mutex_unlock(&t->mu);
    if (task)
        task(t);
    pthread_mutex_lock(&t->mu);
    t->task_done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *loop_main(void *arg)
{
    hs_loop_thread *t = arg;
    hs_server *s = t->s;
    tl_state = t->state;
    tl_loop = t;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(t->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    int fd = info ? info->epoll_fd : -1;
    while (!atomic_load(&s->loops_exit)) {
        if (atomic_load(&t->has_task))
            run_task(t);
        MHD_run(t->daemon);
        sweep_reading(t);
        s->cfg.loop->wait(t->state, fd, turn_timeout(t));
    }
    tl_state = NULL;
    tl_loop = NULL;
    return NULL;
}

/* Runs task on t's thread (or here, if it does not run) and waits. */
static void on_loop(hs_loop_thread *t, loop_task task)
{
    if (!t->running) {
        task(t);
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->task = task;
    t->task_done = false;
    atomic_store(&t->has_task, true);
    pthread_mutex_unlock(&t->mu);
    t->s->cfg.loop->wake(t->state);
    pthread_mutex_lock(&t->mu);
    while (!t->task_done)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

static void task_quiesce(hs_loop_thread *t)
{
    t->quiesced_fd = MHD_quiesce_daemon(t->daemon);
}

/* Takes the backlog over on this thread: only it may add a connection
 * to its daemon. */
static void task_adopt(hs_loop_thread *t)
{
    t->adopted = t->quiesced_fd == MHD_INVALID_SOCKET
                     ? 0
                     : hs_adopt_backlog(t->daemon, t->quiesced_fd);
}

static void loop_init(hs_server *s, hs_loop_thread *t)
{
    t->s = s;
    t->quiesced_fd = MHD_INVALID_SOCKET;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    atomic_init(&t->has_task, false);
}

static int loop_open(hs_server *s, hs_loop_thread *t, unsigned int flags,
                     const struct sockaddr_storage *addr, MHD_socket shared)
{
    t->daemon = hs_daemon_start(s, flags, addr, shared, 0);
    if (t->daemon == NULL)
        return -1;
    t->state = s->cfg.loop->open(s->cfg.ctx);
    return t->state == NULL ? -1 : 0;
}

int hs_loops_start(hs_server *s, unsigned int flags,
                   const struct sockaddr_storage *addr)
{
    int n = s->cfg.threads;
    s->loops = calloc((size_t)n, sizeof(*s->loops));
    if (s->loops == NULL)
        return -1;
    s->nloops = n;
    atomic_init(&s->loops_exit, false);
    for (int i = 0; i < n; i++)
        loop_init(s, &s->loops[i]);
    int failed = 0;
    MHD_socket shared = MHD_INVALID_SOCKET;
    for (int i = 0; i < n && !failed; i++) {
        failed = loop_open(s, &s->loops[i], flags, addr, shared);
        if (i == 0 && !failed) {
            shared = hs_listen_fd(s->loops[0].daemon);
            failed = shared == MHD_INVALID_SOCKET;
        }
    }
    for (int i = 0; i < n && !failed; i++) {
        hs_loop_thread *t = &s->loops[i];
        failed = pthread_create(&t->thread, NULL, loop_main, t) != 0;
        t->running = !failed;
    }
    if (failed) {
        /* Quiesced first, so no daemon closes the socket the others
         * share; it is closed once here. */
        int adopted = 0;
        MHD_socket fd = hs_loops_quiesce(s, &adopted);
        hs_loops_stop(s);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
        return -1;
    }
    s->daemon = s->loops[0].daemon;
    return 0;
}

MHD_socket hs_loops_quiesce(hs_server *s, int *adopted)
{
    MHD_socket fd = MHD_INVALID_SOCKET;
    for (int i = 0; i < s->nloops; i++) {
        hs_loop_thread *t = &s->loops[i];
        if (t->daemon == NULL)
            continue;
        on_loop(t, task_quiesce);
        if (t->quiesced_fd != MHD_INVALID_SOCKET)
            fd = t->quiesced_fd;
    }
    /* Every loop stopped accepting: what is left in the backlog goes to
     * the first loop. */
    *adopted = hs_loops_adopt(s);
    return fd;
}

int hs_loops_adopt(hs_server *s)
{
    if (s->nloops == 0 || s->loops[0].daemon == NULL)
        return 0;
    on_loop(&s->loops[0], task_adopt);
    return s->loops[0].adopted;
}

void hs_loops_stop(hs_server *s)
{
    atomic_store(&s->loops_exit, true);
    for (int i = 0; i < s->nloops; i++) {
        hs_loop_thread *t = &s->loops[i];
        if (t->running) {
            s->cfg.loop->wake(t->state);
            pthread_join(t->thread, NULL);
            t->running = false;
        }
    }
    for (int i = 0; i < s->nloops; i++) {
        hs_loop_thread *t = &s->loops[i];
        if (t->state != NULL)
            s->cfg.loop->close(t->state);
        if (t->daemon != NULL)
            MHD_stop_daemon(t->daemon);
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
    }
    free(s->loops);
    s->loops = NULL;
    s->nloops = 0;
}
