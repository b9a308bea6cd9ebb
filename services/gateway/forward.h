/*
 * forward.h - calling the cache node that owns a user, with the
 * retries the ring protocol needs (docs/internal-api.md).
 *
 * Each call carries the gateway's ring epoch (X-Ring-Epoch) and the
 * request id. A node that answers 421 does not own the user at that
 * epoch: the gateway refreshes its ring from the router and tries again,
 * at most GATEWAY_RING_RETRIES times. A node that cannot be reached or
 * does not answer in time gets one more try after a refresh (its users
 * may have moved). Retrying a send is safe: sends are idempotent by
 * (sender_id, client_message_id). Whatever else the node answers is the
 * public answer and is passed through unchanged.
 */
#ifndef GATEWAY_FORWARD_H
#define GATEWAY_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "http_server.h"

typedef struct forward_call {
    const char *method; /* "GET" or "POST" */
    int64_t user_id;    /* the user whose owner node answers */
    const char *path;   /* path and query on the node, "/internal/..." */
    const char *body;   /* POST body, sent unchanged; NULL for GET */
    size_t body_len;
    const char *request_id; /* passed along as X-Request-Id */
    /* A list read: a GET of a list of user_id whose path ends in its
     * canonical query ("?page_size=..."), of conversation (NULL: the
     * conversation list). A read may wait for a busy hop and go to the
     * node together with others (POST /internal/reads). */
    bool read;
    const char *conversation;
} forward_call;

/* Runs the call and answers req with the node's answer, or with a 503
 * problem (Retry-After: 1) when no node could answer: no ring yet, the
 * node is unreachable, or it kept refusing the call as misdirected.
 *
 * With a relay (g->relay, a server with an epoll pool) the request is
 * deferred (hs_defer) and rep left alone: the answer comes when the node
 * answered, and no server thread waits for it. Else it blocks for at
 * most a few hop timeouts and fills rep. Thread safe. */
void forward_call_owner(gateway *g, hs_request *req, const forward_call *c,
                        hs_reply *rep);

/* The asynchronous forwarding of one gateway: an hc_async over g->hops
 * and a timer thread for retries. NULL on failure. */
forward_relay *forward_relay_new(gateway *g);
/* Answers every call it still holds (503) and forwards no more
 * asynchronously: for hs_config.abandon. */
void forward_relay_abandon(forward_relay *r);
/* After the servers stopped. NULL is a no-op. */
void forward_relay_free(forward_relay *r);

/* The main listener's threads as event loops (hs_config.loop, with the
 * gateway as ctx and g->relay set): each loop runs the forwards its
 * handlers start on an hc_async of its own, so a forward and its answer
 * stay on one thread. Retries still go through the relay's timer. */
extern const hs_loop_ops forward_loop_ops;

#endif
