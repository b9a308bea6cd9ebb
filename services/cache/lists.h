/*
 * lists.h - the read path of a cache node: a user's conversation list
 * and one conversation's messages, full pages and deltas.
 *
 * Page 0-style reads come from the hot window in Redis when it holds the
 * page; a delta whose token equals the mailbox's change counter is
 * answered from Redis alone (nothing changed); everything else reads
 * storage, which filters by the change counter exactly.
 */
#ifndef CACHE_LISTS_H
#define CACHE_LISTS_H

#include "hot.h"
#include "http_server.h"
#include "node.h"
#include "query.h"

/* The page of a hot window a list read starts with, read before it
 * runs: the batched route (reads.c) reads those of a whole batch in one
 * round trip to Redis. */
typedef struct list_ahead {
    hot_result res;
    hot_page page; /* owned; lists_read takes it */
} list_ahead;

/* Whether the read q of uid's conversations (cid NULL) or of its
 * messages in cid starts by reading a page of the hot window, and which:
 * full pages do, deltas and pages before a message id do not. */
bool lists_hot_ask(int64_t uid, const char *cid, const list_query *q,
                   hot_page_ask *ask);

/* Answers the list read q of uid's conversations (cid NULL) or of its
 * messages in cid. ahead, when not NULL, holds the page lists_hot_ask
 * named, already read, and is consumed. */
void lists_read(cache_node *n, int64_t uid, const char *cid,
                const list_query *q, const char *rid, list_ahead *ahead,
                hs_reply *rep);

#endif
