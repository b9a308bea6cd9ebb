/*
 * reads.c - several list reads in one call. See reads.h.
 *
 * The whole batch is checked for shape before any read runs, so a
 * malformed call reads nothing. Each read then goes through the same
 * checks as its GET (user id, query, token, conversation, fencing) and
 * the same list code, and its answer is kept as the exact body the GET
 * would have sent (reads_wire.h): the gateway passes it on unchanged.
 *
 * A node behind the newest epoch of the batch fetches the ring first,
 * before it claims anything: claims never fetch (owner_check_entered).
 *
 * Then in three steps: every read is checked and claimed (fenced); the
 * hot pages the claimed ones start with are then read from Redis in one
 * round trip, after the fencing as a GET reads them; last, each read is
 * answered from its page (or as its GET would go on: a miss loads the
 * window, a delta reads the meta or storage) and released.
 *
 * The batch enters the handoff barrier once, around all three steps,
 * and fences each read inside it (owner_check_entered): a handoff that
 * comes meanwhile waits for the whole batch, as for one call.
 */
#include "reads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockms.h"
#include "constants.h"
#include "handoff.h"
#include "ids.h"
#include "lists.h"
#include "node.h"
#include "owner.h"
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

/* One read of the batch while it runs. */
typedef struct read_run {
    const read_item *it;
    int64_t uid;
    list_query q;
    const ring_t *ring; /* held from the claim until answered */
    bool is_claimed, has_ask;
    hot_page_ask ask;
    list_ahead ahead;
    hs_reply rep;
} read_run;

/* The checks of one read's GET, up to its fencing: on success the read
 * is claimed (r->ring held); else r->rep holds the refusal. */
static void claim_one(cache_node *n, read_run *r)
{
    const read_item *it = r->it;
    if (ids_parse_user(it->user, strlen(it->user), &r->uid)) {
        hs_reply_problem(&r->rep, 404, "Not found", "no such user");
        return;
    }
    char text[READS_QUERY_MAX];
    query_raw raw;
    snprintf(text, sizeof(text), "%s", it->query);
    if (query_split(text, &raw)) {
        hs_reply_problem(&r->rep, 400, "Bad Request",
                         "query: not in the canonical form of a list query");
        return;
    }
    sync_kind kind = it->conversation ? SYNC_MESSAGES : SYNC_CONVERSATIONS;
    if (query_http_check(&raw, kind, r->uid, it->conversation, &r->q,
                         &r->rep) ||
        routes_claim_list_entered(n, it->epoch, r->uid, it->conversation,
                                  &r->ring, &r->rep))
        return;
    r->is_claimed = true;
    r->has_ask = lists_hot_ask(r->uid, it->conversation, &r->q, &r->ask);
}

/* Reads the hot pages the claimed reads start with, all in one round
 * trip: a read of Redis per read was a round trip each. */
static void read_ahead(cache_node *n, read_run *runs, size_t count)
{
    hot_page_ask asks[READS_BATCH_MAX];
    hot_page pages[READS_BATCH_MAX];
    hot_result res[READS_BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (runs[i].has_ask)
            asks[k++] = runs[i].ask;
    if (k == 0)
        return;
    hot_read_pages(n->hot, asks, k, pages, res);
    k = 0;
    for (size_t i = 0; i < count; i++)
        if (runs[i].has_ask) {
            runs[i].ahead = (list_ahead){.res = res[k], .page = pages[k]};
            k++;
        }
}

/* Ends a claimed read: answered in r->rep as its GET would be, or, when
 * the batch answer has no room left (answer false), left out. */
static void finish_one(cache_node *n, read_run *r, bool answer)
{
    if (!r->is_claimed)
        return;
    if (answer)
        lists_read(n, r->uid, r->it->conversation, &r->q, r->it->request_id,
                   r->has_ask ? &r->ahead : NULL, &r->rep);
    else
        hot_page_free(&r->ahead.page);
    owner_forget_if_replaced(n, r->ring, r->uid);
    ringview_release(n->ring, r->ring);
}

/* Appends the answer of one read to the batch answer. */
static void append_answer(read_run *r, jt_buf *out)
{
    char *body;
    size_t len;
    hs_reply_take_body(&r->rep, &body, &len);
    rw_answer(out, r->rep.status, body, len);
    free(body);
}

/* Answers the reads in order while the answer is under its budgets of
 * bytes and time (counted from started_ms); the gateway sends the ones
 * left out again, one by one. Every claimed read is released and every
 * reply cleared. Returns how many were answered. */
static size_t answer_all(cache_node *n, read_run *runs, size_t count,
                         int64_t started_ms, jt_buf *out)
{
    size_t done = 0;
    for (size_t i = 0; i < count; i++) {
        /* Both budgets only run out, so the reads left out are the last
         * ones, as the gateway expects. */
        bool answer =
            i == 0 || (out->len < READS_ANSWER_BUDGET &&
                       clockms_monotonic() - started_ms < READS_TIME_BUDGET_MS);
        finish_one(n, &runs[i], answer);
        if (answer) {
            append_answer(&runs[i], out);
            done++;
        }
        hs_reply_clear(&runs[i].rep);
    }
    return done;
}

/* A node behind the batch's newest epoch fetches the ring before it
 * claims any read: a ring installed while the batch holds its first
 * claims' ring would wait for them (owner.h). */
static void catch_up(cache_node *n, const read_item *items, size_t count)
{
    const char *epochs[READS_BATCH_MAX];
    for (size_t i = 0; i < count; i++)
        epochs[i] = items[i].epoch;
    owner_catch_up(n, epochs, count);
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
    read_run runs[READS_BATCH_MAX];
    memset(runs, 0, count * sizeof(runs[0]));
    int64_t started_ms = clockms_monotonic();
    catch_up(n, items, count);
    handoff_enter(n->handoff);
    for (size_t i = 0; i < count; i++) {
        runs[i].it = &items[i];
        claim_one(n, &runs[i]);
    }
    read_ahead(n, runs, count);
    jt_buf out;
    jt_init(&out);
    rw_begin(&out);
    size_t done = answer_all(n, runs, count, started_ms, &out);
    handoff_leave(n->handoff);
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
