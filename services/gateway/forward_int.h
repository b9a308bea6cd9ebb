/*
 * forward_int.h - what forward.c (the relay: one call, its retries) and
 * batch.c (reads that wait for a busy hop and go together) share. Not
 * for the rest of the gateway: forward.h is the interface.
 */
#ifndef GATEWAY_FORWARD_INT_H
#define GATEWAY_FORWARD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "forward.h"
#include "http_client.h"
#include "ids.h"
#include "ring.h"

/* Where one attempt goes and at which epoch. A ring node URL (< 128
 * bytes) plus a path built by routes.c (< 512) always fits. The node's
 * base URL is url's first node_len bytes. */
typedef struct target {
    char url[1024];
    size_t node_len;
    int64_t epoch;
} target;

typedef struct relay_call relay_call;

/* How many nodes a loop keeps a lane for; reads to further nodes go
 * alone. */
#define BATCH_LANES_MAX 16

/* The reads of one loop thread to one node: how many calls are in
 * flight, and the reads that wait for them (oldest first). A read waits
 * only behind a call in flight, and the end of a call sends what waits,
 * so queued > 0 implies in_flight > 0: the end of that call (answered,
 * failed, or abandoned when the loop closes) always reaches the reads
 * waiting, and none is left in a lane. */
typedef struct batch_lane {
    char node[sizeof(((ring_node *)0)->url)]; /* base URL; "" unused */
    int in_flight;
    int64_t last_sent_ms; /* monotonic */
    relay_call *head, *tail;
    int queued;
} batch_lane;

/* One loop thread's calls (hs_loop_ops): an hc_async driven by that
 * thread. async goes NULL, under the relay's submit lock, when the loop
 * closed; the struct lives as long as the relay. The lanes are touched
 * by the loop thread only. */
typedef struct forward_loop {
    forward_relay *r;
    hc_async *async;
    batch_lane lanes[BATCH_LANES_MAX];
    int queued; /* over all lanes */
} forward_loop;

/* Most loops a relay serves: GATEWAY_HTTP_THREADS' bound. */
#define RELAY_LOOPS_MAX 64

struct relay_call {
    relay_call *next; /* in the retry list, or in a lane's queue */
    forward_relay *r;
    forward_loop *loop; /* whose hc_async runs the call; NULL: the relay's */
    forward_call c;     /* points into the copies below */
    char *path, *body;
    char request_id[HS_REQUEST_ID_MAX];
    /* A list read that may go in a batch: its conversation ("" for the
     * conversation list) and canonical query (into path). */
    bool read;
    char conversation[IDS_CONVERSATION_MAX];
    const char *query;
    batch_lane *lane; /* while a lane counts it in flight or queued */
    hs_deferred *d;
    target t;
    struct timespec start;
    int misdirected, unreachable;
    const char *why;
    int64_t retry_at_ms; /* monotonic */
    hs_reply answer;     /* what the resume function sends */
};

struct forward_relay {
    gateway *g;
    hc_async *async;
    pthread_rwlock_t submit; /* write-held while async is torn down */
    pthread_mutex_t mu;      /* guards the fields below */
    pthread_cond_t cv;
    relay_call *parked;
    bool abandoned; /* answer at once, never park */
    bool closed;    /* the servers are gone: wake nobody */
    bool stopping;  /* the timer thread ends */
    pthread_t timer;
    bool has_timer;
    forward_loop *loops[RELAY_LOOPS_MAX]; /* under mu */
    int nloops;
};

/* ---- forward.c, for batch.c ---- */

/* Picks the call's target on the current ring; 0, or -1 without one. */
int relay_pick(relay_call *rc);
/* Queues a call on the hc_async of rc's loop (the relay's without
 * one), as hc_async_request_keep; -1 when the gateway is stopping. */
int relay_request(relay_call *rc, const char *method, const char *url,
                  const hc_headers *headers, const char *body, size_t len,
                  hc_async_done done, hc_async_keep keep, void *arg);
/* Whether the ring in force still gives rc's user to the node rc's
 * attempt went to. */
bool relay_target_holds(const relay_call *rc);
/* Sends the call alone to the target it has. Returns 0, or -1 when it
 * could not be queued: then it is answered (503) and rc is gone. */
int relay_send(relay_call *rc);
/* The outcome of one attempt: the node's answer (err HC_OK, status and
 * body), or a failure; answers the call or parks it for its retry. */
void relay_answered(relay_call *rc, hc_err err, long status, const char *body,
                    size_t len);
/* Answers the call 503 with why. */
void relay_fail(relay_call *rc, const char *why);

/* ---- batch.c ---- */

/* The first attempt of a read started on its loop thread: goes at once
 * when the loop has no call in flight to its node, else waits in the
 * node's lane and goes with the reads queued there as one POST
 * /internal/reads when the hop is free. */
void batch_submit(relay_call *rc);
/* A call a lane counted in flight ended (on the loop thread): the lane
 * sends what waits. */
void batch_call_ended(relay_call *rc);
/* Once per turn of the loop: sends the reads that waited longer than a
 * slow call should hold them, and lowers *timeout_ms so the next turn
 * comes in time for those still waiting. */
void batch_turn(forward_loop *l, int *timeout_ms);

#endif
