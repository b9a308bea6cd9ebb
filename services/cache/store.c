/*
 * store.c - calls from a cache node to the storage service. Every call
 * goes through call_json: serialise, one pooled keep-alive request, parse.
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Sends body (may be NULL for GET) to storage; on STORE_OK sets *status
 * and *out (parsed JSON object, caller decrefs). */
static store_err call_json(cache_node *n, const char *method, const char *path,
                           json_t *body, const char *rid, long *status,
                           json_t **out)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", n->storage_url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return STORE_BAD;
    char ridh[96];
    snprintf(ridh, sizeof(ridh), "X-Request-Id: %s", rid ? rid : "");
    hc_headers h = {.lines = {ridh}, .n = rid ? 1 : 0};
    hc_response resp = {0};
    hc_err err = hc_request(n->hops, method, url, &h, text,
                            text ? strlen(text) : 0, &resp);
    free(text);
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

static json_t *message_body(const msg *m)
{
    json_t *mj = msg_to_json(m);
    return mj ? json_pack("{so}", "message", mj) : NULL;
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

store_err store_send(cache_node *n, const msg *m, const char *rid,
                     store_send_result *out)
{
    memset(out, 0, sizeof(*out));
    long status = 0;
    json_t *o = NULL;
    store_err err =
        post_json(n, "/internal/send", message_body(m), rid, &status, &o);
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
        post_json(n, "/internal/deliver", message_body(m), rid, &status, &o);
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

store_err store_outbox_ack(cache_node *n, int64_t sender_id, int64_t message_id,
                           const char *rid)
{
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, message_id);
    json_t *body = json_pack("{s[{sIss}]}", "entries", "sender_id",
                             (json_int_t)sender_id, "message_id", idbuf);
    long status = 0;
    json_t *o = NULL;
    store_err err =
        post_json(n, "/internal/outbox/ack", body, rid, &status, &o);
    if (err)
        return err;
    json_decref(o);
    return status == 200 ? STORE_OK : STORE_BAD;
}
