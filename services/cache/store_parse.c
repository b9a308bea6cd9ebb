/*
 * store_parse.c - checks of the storage service's answers. See
 * store_parse.h.
 *
 * Strings are compared with their JSON length, not strlen: a string
 * holding U+0000 ("stored\u0000x") is not "stored", and an id with
 * bytes after a NUL is not an id.
 */
#include "store_parse.h"

#include <string.h>

#include "ids.h"

json_t *store_parse_body(const char *buf, size_t len)
{
    if (!buf)
        return NULL;
    json_t *o = json_loadb(buf, len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* True when o's "status" is exactly the string want. */
static bool status_is(const json_t *o, const char *want)
{
    const json_t *s = json_object_get(o, "status");
    size_t len = strlen(want);
    return json_is_string(s) && json_string_length(s) == len &&
           memcmp(json_string_value(s), want, len) == 0;
}

/* A message id field that may be 0 (an empty mailbox): a decimal string
 * ("0" or an id as ids_parse reads it) or a JSON integer >= 0. Returns
 * the value, or -1 when the field is anything else. */
static int64_t id_field(const json_t *j)
{
    if (json_is_integer(j))
        return json_integer_value(j) >= 0 ? json_integer_value(j) : -1;
    if (!json_is_string(j))
        return -1;
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    int64_t v;
    if (len == 1 && s[0] == '0')
        return 0;
    return ids_parse(s, len, &v) == 0 ? v : -1;
}

/* The mailbox change counter: an integer >= 0, or -1. */
static int64_t seq_field(const json_t *j)
{
    return json_is_integer(j) && json_integer_value(j) >= 0
               ? json_integer_value(j)
               : -1;
}

store_err store_parse_meta(const json_t *o, hot_meta *meta)
{
    int64_t seq = seq_field(json_object_get(o, "seq"));
    int64_t max_id = id_field(json_object_get(o, "max_id"));
    if (seq < 0 || max_id < 0)
        return STORE_BAD;
    meta->seq = seq;
    meta->max_id = max_id;
    return STORE_OK;
}

store_err store_parse_send(long status, const json_t *o, store_send_result *out)
{
    memset(out, 0, sizeof(*out));
    if (status == 201 && status_is(o, "stored")) {
        out->outcome = SEND_STORED;
        return store_parse_meta(o, &out->meta);
    }
    if (status == 409 && status_is(o, "floor")) {
        out->outcome = SEND_FLOOR;
        out->meta.max_id = id_field(json_object_get(o, "max_id"));
        return out->meta.max_id < 0 ? STORE_BAD : STORE_OK;
    }
    if (status == 200 && status_is(o, "replay")) {
        out->outcome = SEND_REPLAY;
        out->outbox_pending =
            json_is_true(json_object_get(o, "outbox_pending"));
        return msg_from_json(json_object_get(o, "message"), &out->stored)
                   ? STORE_BAD
                   : STORE_OK;
    }
    return STORE_BAD;
}

store_err store_parse_deliver(long status, const json_t *o, bool *stored,
                              hot_meta *meta)
{
    bool is_stored = status_is(o, "stored");
    if (status != 200 || (!is_stored && !status_is(o, "duplicate")) ||
        store_parse_meta(o, meta))
        return STORE_BAD;
    *stored = is_stored;
    return STORE_OK;
}

store_err store_parse_list(const json_t *o, const char *items_key,
                           json_t **items, int64_t *seq)
{
    json_t *arr = json_object_get(o, items_key);
    int64_t s = seq_field(json_object_get(o, "seq"));
    if (!json_is_array(arr) || s < 0)
        return STORE_BAD;
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (!json_is_object(json_array_get(arr, i)))
            return STORE_BAD;
    *items = json_incref(arr);
    *seq = s;
    return STORE_OK;
}

store_err store_parse_claim(long status, const json_t *o, json_t **messages)
{
    json_t *arr = json_object_get(o, "messages");
    if (status != 200 || !json_is_array(arr))
        return STORE_BAD;
    *messages = json_incref(arr);
    return STORE_OK;
}
