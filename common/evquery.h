/*
 * evquery.h - the query of a long poll for mailbox changes,
 * GET /v1/users/{id}/events?since=<sync_token>&timeout=<seconds>
 * (docs/realtime.md), parsed and validated the one way the gateway and
 * the cache node both need. Pure: no I/O, unit tested.
 *
 * since is required and must be a conversation-list token of the same
 * user: the mailbox change counter it carries is the user's, whichever
 * list issued it, but a token names its list (synctoken.h) and the
 * events answer hands back tokens of the conversation list.
 */
#ifndef MSG_EVQUERY_H
#define MSG_EVQUERY_H

#include <stddef.h>
#include <stdint.h>

#include "synctoken.h"

/* How long a poll waits when it does not say, and at most (seconds). */
#define EVENTS_TIMEOUT_DEFAULT_S 25
#define EVENTS_TIMEOUT_MAX_S 60

typedef struct events_query {
    sync_token since; /* kind SYNC_CONVERSATIONS, user_id the path's */
    int timeout_s;    /* 0..EVENTS_TIMEOUT_MAX_S; 0 answers at once */
} events_query;

/* since and timeout are the raw (percent-decoded) values, NULL when
 * absent. Returns 0 with *q filled, or -1 with the reason of the 400 in
 * errbuf. */
int evquery_parse(const char *since, const char *timeout, int64_t user_id,
                  events_query *q, char *errbuf, size_t errcap);

/* The canonical query string of q (without '?') for the internal call.
 * Returns its length, or -1 if cap is too small. */
int evquery_format(const events_query *q, char *out, size_t cap);

#endif
