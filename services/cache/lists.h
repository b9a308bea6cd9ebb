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

#include "http_server.h"
#include "node.h"
#include "query.h"

void lists_conversations(cache_node *n, int64_t uid, const list_query *q,
                         const char *rid, hs_reply *rep);
void lists_messages(cache_node *n, int64_t uid, const char *cid,
                    const list_query *q, const char *rid, hs_reply *rep);

#endif
