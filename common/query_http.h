/*
 * query_http.h - the list query of an HTTP request, read and checked the
 * one way the gateway and the cache node both need.
 *
 * query.h knows nothing of HTTP (the fuzz target drives it alone); this
 * is where its parser meets hs_request, so both services read the same
 * five parameters and answer a bad query with the same 400.
 */
#ifndef MSG_QUERY_HTTP_H
#define MSG_QUERY_HTTP_H

#include <stdint.h>

#include "http_server.h"
#include "query.h"

/* Parses the query string of req for the list of kind (query_parse) and
 * checks that a since token was issued for this list: user_id, and
 * conversation_id for SYNC_MESSAGES (NULL for SYNC_CONVERSATIONS, see
 * query_check_token). Returns 0 with *q filled, or answers 400
 * problem+json in rep and returns -1. */
int query_http_parse(const hs_request *req, sync_kind kind, int64_t user_id,
                     const char *conversation_id, list_query *q, hs_reply *rep);

/* The same for raw values read elsewhere (a batched read's query,
 * query_split). */
int query_http_check(const query_raw *raw, sync_kind kind, int64_t user_id,
                     const char *conversation_id, list_query *q, hs_reply *rep);

#endif
