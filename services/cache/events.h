/*
 * events.h - long polls on the owner node (docs/realtime.md).
 *
 * GET /internal/users/{uid}/events?since=<token>&timeout=<s> answers at
 * once when the user's mailbox changed after the token, else holds the
 * request, suspended, until this node records a change of that mailbox
 * (events_notify, called where a landed message is applied: every write
 * of an owned user goes through this node, under the user's lock), the
 * ring changes (the user may have moved), the timeout passes or the node
 * stops. Then it answers the delta: the conversations and the messages
 * that changed after the token, and a new token.
 *
 * No wake-up is lost: a request registers as a waiter before it reads
 * the mailbox's change counter, so a change recorded after that read
 * finds the waiter, and one recorded before it shows in the counter.
 *
 * The registry is one mutex over a hash of waiters by user; a timer
 * thread ends the waits that time out. Thread safe.
 */
#ifndef CACHE_EVENTS_H
#define CACHE_EVENTS_H

#include <stdint.h>

#include "http_server.h"

/* Changed conversations, and changed messages in all, that fit in one
 * delta answer; past either the answer is the conversation list's first
 * page with is_delta_update false (the client reloads). */
#define EVENTS_CONVS_MAX 20
#define EVENTS_MSGS_MAX 100
/* The timer thread looks for waits past their deadline this often. */
#define EVENTS_TICK_MS 100

typedef struct events events_t;

/* Starts the registry and its timer thread; NULL on failure. */
events_t *events_new(void);
/* Wakes every waiter, stops the timer thread, frees. NULL is a no-op.
 * Call after the HTTP server stopped. */
void events_free(events_t *e);

/* The mailbox of uid changed on this node: wake its waiters. Cheap (a
 * hash lookup under a mutex); NULL e is a no-op. */
void events_notify(events_t *e, int64_t uid);
/* Wakes every waiter: the ring changed or the node stops. Each answers
 * what it has (a 421 if its user moved). */
void events_wake_all(events_t *e);

/* The server stops: every waiter answers now, and polls that still
 * arrive answer at once instead of waiting (hs_config.stopping). */
void events_drain(events_t *e);

/* The route handler; req->ctx is the cache_node. */
void events_handle(hs_request *req, hs_reply *rep);

#endif
