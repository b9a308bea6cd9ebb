/*
 * events.h - the gateway's half of the long poll
 * GET /v1/users/{id}/events (docs/realtime.md).
 *
 * The client's request is deferred (suspended, no thread waits for it)
 * and the question goes to the user's owner cache node as an
 * asynchronous call on one libcurl multi handle, run by one thread for
 * all polls. The node answers when the mailbox changes or the timeout
 * passes; its answer is the client's.
 *
 * A poll never loses the client's place: when the owner refuses the call
 * (421, the user moved) or cannot be reached, the poller asks again on
 * the ring as it is then, a few times, and if that does not work before
 * the client's deadline it answers an empty delta at the client's own
 * token, so the client simply polls again.
 */
#ifndef GATEWAY_EVENTS_H
#define GATEWAY_EVENTS_H

#include <stdint.h>

#include "evquery.h"
#include "http_server.h"
#include "metrics.h"
#include "ringview.h"

/* Tries of one poll against an owner that refuses or fails, and the
 * pause before the n-th retry (n times this): the ring is refreshed in
 * the background every second, so a few hundred ms usually finds the
 * new owner. */
#define EV_TRIES 4
#define EV_RETRY_PAUSE_MS 250
/* The node call may last this much past the poll's own timeout. */
#define EV_CALL_GRACE_MS 5000
/* Longest node answer kept (a delta holds at most 100 messages). */
#define EV_ANSWER_MAX (16 * 1024 * 1024)

typedef struct ev_poller ev_poller;

/* Starts the poller thread. ring and metrics are borrowed for its life;
 * secret (copied) signs the internal calls. NULL on failure. */
ev_poller *ev_poller_new(ringview *ring, const char *secret,
                         metrics_t *metrics);
/* The server stops: every poll in progress answers now (an empty delta
 * at its token) and new ones answer at once. Thread safe. */
void ev_poller_drain(ev_poller *p);
/* Drains, stops the thread and frees. NULL is a no-op. */
void ev_poller_free(ev_poller *p);

/* Defers req and asks user's owner; answers later. On failure to defer
 * (out of memory) answers 503 now. q is copied. */
void ev_poller_wait(ev_poller *p, hs_request *req, int64_t user,
                    const events_query *q, hs_reply *rep);

#endif
