/*
 * reads.c - several list reads in one call. See reads.h.
 *
 * The whole batch is checked for shape before any read runs, so a
 * malformed call reads nothing. Each read then goes through the same
 * checks as its GET (user id, query, token, conversation, fencing) and
 * the same list code, and its answer is kept as the exact body the GET
 * would have sent (reads_wire.h): the gateway passes it on unchanged.
 */
#include "reads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "ids.h"
#include "node.h"
#include "query_http.h"
#include "reads_wire.h"
#include "routes.h"

/* One read of the batch; every string is borrowed from the body. */
typedef struct read_item {
    const char *user, *conversation, *query, *epoch, *request_id;
} read_item;

/* A canonical list query is far shorter (NODE_PATH_MAX at the gateway). */
#define READS_QUERY_MAX 512

/* Fills items from body; returns how many, or 0 when body is not a
 * batch of reads. */
static size_t parse_batch(const json_t *body, read_item *items)
{
    const json_t *reads = json_object_get(body, "reads");
    size_t count = json_array_size(reads);
    if (count == 0 || count > READS_BATCH_MAX)
        return 0;
    for (size_t i = 0; i < count; i++) {
        read_item *it = &items[i];
        it->conversation = NULL;
        if (json_unpack(json_array_get(reads, i), "{s:s, s?s, s:s, s:s, s:s}",
                        "user", &it->user, "conversation", &it->conversation,
                        "query", &it->query, "epoch", &it->epoch, "request_id",
                        &it->request_id) ||
            strlen(it->request_id) >= HS_REQUEST_ID_MAX ||
            strlen(it->query) >= READS_QUERY_MAX)
            return 0;
    }
    return count;
}

/* Answers one read in rep as its GET would be answered. */
static void read_one(cache_node *n, const read_item *it, hs_reply *rep)
{
    int64_t uid;
    if (ids_parse_user(it->user, strlen(it->user), &uid)) {
        hs_reply_problem(rep, 404, "Not found", "no such user");
        return;
    }
    char text[READS_QUERY_MAX];
    query_raw raw;
    snprintf(text, sizeof(text), "%s", it->query);
    if (query_split(text, &raw)) {
        hs_reply_problem(rep, 400, "Bad Request",
                         "query: not in the canonical form of a list query");
        return;
    }
    sync_kind kind = it->conversation ? SYNC_MESSAGES : SYNC_CONVERSATIONS;
    list_query q;
    if (query_http_check(&raw, kind, uid, it->conversation, &q, rep) == 0)
        routes_read_list(n, it->epoch, uid, it->conversation, &q,
                         it->request_id, rep);
}

/* Appends the answer of one read to the batch answer. */
static void answer_one(cache_node *n, const read_item *it, jt_buf *out)
{
    hs_reply one = {0};
    char *body;
    size_t len;
    read_one(n, it, &one);
    hs_reply_take_body(&one, &body, &len);
    rw_answer(out, one.status, body, len);
    hs_reply_clear(&one);
    free(body);
}

void reads_handle(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    read_item items[READS_BATCH_MAX];
    json_t *body =
        req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    size_t count = body ? parse_batch(body, items) : 0;
    if (count == 0) {
        json_decref(body);
        char why[128];
        snprintf(why, sizeof(why),
                 "body must be {\"reads\": [...]}: 1 to %d reads of user, "
                 "query, epoch and request_id",
                 READS_BATCH_MAX);
        hs_reply_problem(rep, 400, "Bad Request", why);
        return;
    }
    jt_buf out;
    jt_init(&out);
    rw_begin(&out);
    size_t done = 0;
    while (done < count && (done == 0 || out.len < READS_ANSWER_BUDGET))
        answer_one(n, &items[done++], &out);
    rw_end(&out);
    json_decref(body);
    size_t len;
    char *text = jt_finish(&out, &len);
    if (text == NULL) {
        hs_reply_problem(rep, 500, NULL, "out of memory");
        return;
    }
    metrics_count(n->metrics, "cache_batched_reads_total",
                  "List reads answered in a batch (POST /internal/reads).",
                  (int64_t)done);
    hs_reply_clear(rep);
    rep->status = 200;
    rep->text = text; /* the server frees it once sent */
    rep->text_len = len;
    rep->content_type = "application/json";
}
