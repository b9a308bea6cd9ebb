/*
 * query_http.c - the list query of an HTTP request. See query_http.h.
 */
#include "query_http.h"

/* The raw values, borrowed from the request: they live as long as it. */
static query_raw raw_from_request(const hs_request *req)
{
    query_raw raw = {
        .page_size = hs_query(req, "page_size"),
        .page = hs_query(req, "page"),
        .before = hs_query(req, "before"),
        .since = hs_query(req, "since"),
        .last_updated_timestamp = hs_query(req, "last_updated_timestamp"),
    };
    return raw;
}

int query_http_parse(const hs_request *req, sync_kind kind, int64_t user_id,
                     const char *conversation_id, list_query *q, hs_reply *rep)
{
    query_raw raw = raw_from_request(req);
    return query_http_check(&raw, kind, user_id, conversation_id, q, rep);
}

int query_http_check(const query_raw *raw, sync_kind kind, int64_t user_id,
                     const char *conversation_id, list_query *q, hs_reply *rep)
{
    char why[256];

    if (query_parse(raw, kind, q, why, sizeof(why))) {
        hs_reply_problem(rep, 400, "Bad Request", why);
        return -1;
    }
    if (query_check_token(q, user_id, conversation_id)) {
        hs_reply_problem(rep, 400, "Bad Request",
                         "since: the token was issued for another list");
        return -1;
    }
    return 0;
}
