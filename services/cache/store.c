/*
 * store.c - calls from a cache node to the storage service. Every call
 * goes through call_text: one pooled keep-alive request, then parse.
 * Sends and delivers go through the node's write queue (storeq.h), whose
 * calls carry one write each to /internal/send and /internal/deliver, or
 * several to /internal/batch.
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "placement.h"

/* Sends text (may be NULL for GET) to storage; on STORE_OK sets *status
 * and *out (parsed JSON object, caller decrefs). */
static store_err call_text(cache_node *n, const char *method, const char *path,
                           const char *text, size_t len, const char *rid,
                           long *status, json_t **out)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", n->storage_url, path);
    char ridh[96];
    snprintf(ridh, sizeof(ridh), "X-Request-Id: %s", rid ? rid : "");
    hc_headers h = {.lines = {ridh}, .n = rid ? 1 : 0};
    hc_response resp = {0};
    hc_err err = hc_request(n->hops, method, url, &h, text, len, &resp);
    if (err) {
        log_msg("warn", "storage %s %s: %s", method, path, hc_strerror(err));
        return STORE_DOWN;
    }
    *status = resp.status;
    if (resp.status >= 500) {
        hc_response_free(&resp);
        return STORE_DOWN;
    }
    *out = store_parse_body(resp.body, resp.len);
    hc_response_free(&resp);
    return *out ? STORE_OK : STORE_BAD;
}

/* call_text with a JSON body, serialised here. */
static store_err call_json(cache_node *n, const char *method, const char *path,
                           json_t *body, const char *rid, long *status,
                           json_t **out)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return STORE_BAD;
    store_err err = call_text(n, method, path, text, text ? strlen(text) : 0,
                              rid, status, out);
    free(text);
    return err;
}

/* POSTs body to storage as call_json does. body is stolen; NULL (it
 * could not be built) is STORE_BAD without a call. */
static store_err post_json(cache_node *n, const char *path, json_t *body,
                           const char *rid, long *status, json_t **out)
{
    store_err err =
        body ? call_json(n, "POST", path, body, rid, status, out) : STORE_BAD;
    json_decref(body);
    return err;
}

/* ---- writes: one call each, or a batch ---- */

/* A body being assembled from message texts, NUL terminated. */
typedef struct text_buf {
    char *s;
    size_t len, cap;
} text_buf;

/* Appends len bytes of s. Returns -1 when out of memory, with b freed
 * (the caller stops there). */
static int text_add(text_buf *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            free(b->s);
            *b = (text_buf){0};
            return -1;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, len);
    b->len += len;
    b->s[b->len] = '\0';
    return 0;
}

static int text_add_str(text_buf *b, const char *s)
{
    return text_add(b, s, strlen(s));
}

/* A write alone: {"message":...} to /internal/<op>. */
static void run_one(cache_node *n, storeq_job *j)
{
    text_buf b = {0};
    char path[32];
    snprintf(path, sizeof path, "/internal/%s", j->op);
    if (text_add_str(&b, "{\"message\":") || text_add(&b, j->message, j->len) ||
        text_add_str(&b, "}")) {
        j->err = STORE_BAD;
        return;
    }
    j->err =
        call_text(n, "POST", path, b.s, b.len, j->rid, &j->status, &j->body);
    free(b.s);
}

/* {"calls":[{"op":...,"message":...},...]}; NULL when out of memory. */
static char *batch_text(storeq_job **jobs, int k, size_t *len)
{
    text_buf b = {0};
    int rc = text_add_str(&b, "{\"calls\":[");
    for (int i = 0; !rc && i < k; i++) {
        rc = text_add_str(&b, i ? ",{\"op\":\"" : "{\"op\":\"") ||
             text_add_str(&b, jobs[i]->op) ||
             text_add_str(&b, "\",\"message\":") ||
             text_add(&b, jobs[i]->message, jobs[i]->len) ||
             text_add_str(&b, "}");
    }
    if (rc || text_add_str(&b, "]}"))
        return NULL;
    *len = b.len;
    return b.s;
}

/* Hands each write its result from a batch answer. -1 when the answer is
 * not one result per write. */
static int split_results(const json_t *answer, storeq_job **jobs, int k)
{
    const json_t *results = json_object_get(answer, "results");
    if (!json_is_array(results) || json_array_size(results) != (size_t)k)
        return -1;
    for (int i = 0; i < k; i++) {
        const json_t *r = json_array_get(results, (size_t)i);
        const json_t *code = json_object_get(r, "code");
        if (!json_is_object(r) || !json_is_integer(code))
            return -1;
    }
    for (int i = 0; i < k; i++) {
        json_t *r = json_array_get(results, (size_t)i);
        jobs[i]->status = (long)json_integer_value(json_object_get(r, "code"));
        /* As for a call of its own: 5xx, the write may or may not have
         * landed. */
        if (jobs[i]->status >= 500) {
            jobs[i]->err = STORE_DOWN;
        } else {
            jobs[i]->err = STORE_OK;
            jobs[i]->body = json_incref(r);
        }
    }
    return 0;
}

static void fail_all(storeq_job **jobs, int k, store_err err)
{
    for (int i = 0; i < k; i++)
        jobs[i]->err = err;
}

/* Several writes in one call to /internal/batch. The call carries the
 * request id of its first write. */
static void run_batch(cache_node *n, storeq_job **jobs, int k)
{
    size_t len;
    char *text = batch_text(jobs, k, &len);
    if (!text) {
        fail_all(jobs, k, STORE_BAD);
        return;
    }
    long status = 0;
    json_t *answer = NULL;
    store_err err = call_text(n, "POST", "/internal/batch", text, len,
                              jobs[0]->rid, &status, &answer);
    free(text);
    if (!err && status == 404) {
        /* A storage that predates batches (a rolling upgrade): one call
         * per write, as before. */
        json_decref(answer);
        for (int i = 0; i < k; i++)
            run_one(n, jobs[i]);
        return;
    }
    /* A batch whose answer cannot be read may have landed: as for an
     * unreachable storage, the callers must not trust their hot copy. */
    if (!err && (status != 200 || split_results(answer, jobs, k) != 0)) {
        log_msg("error", "storage batch of %d answered %ld", k, status);
        err = STORE_DOWN;
    }
    if (err)
        fail_all(jobs, k, err);
    json_decref(answer);
}

void store_run_writes(void *ctx, storeq_job **jobs, int k)
{
    cache_node *n = ctx;
    /* Their ratio is the mean batch: how much the queue saves. */
    metrics_count(n->metrics, "cache_storage_write_calls_total",
                  "Calls to storage that carried sends and delivers", 1);
    metrics_count(n->metrics, "cache_storage_writes_total",
                  "Sends and delivers written to storage", (uint64_t)k);
    if (k == 1)
        run_one(ctx, jobs[0]);
    else
        run_batch(ctx, jobs, k);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_refresh_placement(cache_node *n, const char *rid)
{
    int64_t now = monotonic_ms();
    if (!placement_claim_fetch(n->placement, now))
        return;
    json_t *answer = NULL;
    bool is_ok =
        store_get(n, "/internal/placement", rid, &answer) == STORE_OK &&
        placement_install(n->placement, answer) == 0;
    if (answer && !is_ok)
        log_msg("warn", "storage placement malformed; writes not grouped");
    json_decref(answer);
    placement_fetched(n->placement, is_ok, now);
}

/* The queue of the storage instance that holds uid's mailbox. */
static storeq *queue_of(cache_node *n, int64_t uid, const char *rid)
{
    store_refresh_placement(n, rid);
    int instance = placement_instance(n->placement, uid);
    return n->writes[instance % CACHE_WRITE_QUEUES];
}

/* Runs the write op of m to owner's mailbox through the queue of its
 * instance; on STORE_OK *status and *out are storage's answer to it
 * (caller decrefs). */
static store_err write_message(cache_node *n, const char *op, int64_t owner,
                               const msg *m, const char *rid, long *status,
                               json_t **out)
{
    size_t len = 0;
    char *text = msg_json_text(m, &len);
    if (!text)
        return STORE_BAD;
    storeq_job j = {.op = op, .message = text, .len = len, .rid = rid};
    storeq_submit(queue_of(n, owner, rid), &j);
    free(text);
    /* What the queue costs a write at this load: a write waits only
     * while its instance's lanes are all busy. */
    metrics_count_seconds(n->metrics, "cache_storage_queue_wait_seconds_total",
                          "Time writes waited for a call to storage to "
                          "carry them",
                          (double)j.waited_us / 1e6);
    if (j.waited_us >= 1000)
        metrics_count(n->metrics, "cache_storage_queue_waits_over_1ms_total",
                      "Writes that waited over 1 ms for a call to storage", 1);
    *status = j.status;
    *out = j.body;
    return j.err;
}

store_err store_send(cache_node *n, const msg *m, const char *rid,
                     store_send_result *out)
{
    memset(out, 0, sizeof(*out));
    long status = 0;
    json_t *o = NULL;
    store_err err = write_message(n, "send", m->sender_id, m, rid, &status, &o);
    if (err)
        return err;
    err = store_parse_send(status, o, out);
    json_decref(o);
    return err;
}

store_err store_deliver(cache_node *n, const msg *m, const char *rid,
                        bool *stored, hot_meta *meta)
{
    long status = 0;
    json_t *o = NULL;
    store_err err =
        write_message(n, "deliver", m->recipient_id, m, rid, &status, &o);
    if (err)
        return err;
    err = store_parse_deliver(status, o, stored, meta);
    json_decref(o);
    return err;
}

store_err store_meta(cache_node *n, int64_t uid, const char *rid,
                     hot_meta *meta)
{
    char path[96];
    snprintf(path, sizeof(path), "/internal/users/%" PRId64 "/meta", uid);
    json_t *o = NULL;
    store_err err = store_get(n, path, rid, &o);
    if (err)
        return err;
    err = store_parse_meta(o, meta);
    json_decref(o);
    return err;
}

store_err store_get(cache_node *n, const char *path_and_query, const char *rid,
                    json_t **out)
{
    long status = 0;
    store_err err =
        call_json(n, "GET", path_and_query, NULL, rid, &status, out);
    if (err)
        return err;
    if (status != 200) {
        log_msg("error", "storage GET %s answered %ld", path_and_query, status);
        json_decref(*out);
        *out = NULL;
        return STORE_BAD;
    }
    return STORE_OK;
}

store_err store_outbox_claim(cache_node *n, int limit, int lease_ms,
                             json_t **messages)
{
    json_t *body = json_pack("{sisi}", "limit", limit, "lease_ms", lease_ms);
    long status = 0;
    json_t *o = NULL;
    store_err err =
        post_json(n, "/internal/outbox/claim", body, NULL, &status, &o);
    if (err)
        return err;
    err = store_parse_claim(status, o, messages);
    json_decref(o);
    return err;
}
