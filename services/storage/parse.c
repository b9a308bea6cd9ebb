/*
 * parse.c - parsing and validation of the storage service's internal
 * requests. See parse.h.
 *
 * Bodies are JSON objects; U+0000 is allowed in their strings because it
 * is valid message content. Numbers in query strings are strict decimals
 * (digits only, no sign, no spaces), ids use the parsers of ids.c, so
 * each value has one spelling here as everywhere else.
 */
#include "parse.h"

#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "ids.h"
#include "utf8.h"

/* Parses buf as a JSON object. Returns a new reference or NULL. */
static json_t *parse_object(const char *buf, size_t len)
{
    if (!buf || len == 0)
        return NULL;
    json_t *root = json_loadb(buf, len, JSON_ALLOW_NUL, NULL);
    if (root && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static bool is_user_id(int64_t id)
{
    return id >= 1 && id <= MSG_USER_ID_MAX;
}

static bool is_valid_cmid(const char *s)
{
    size_t len = strlen(s);
    if (len < 1 || len > MSG_CMID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* Full check of a message about to be stored. Returns 0, or the status
 * (400, 413) with *detail saying why. */
static int check_message(const msg *m, const char **detail)
{
    char cid[IDS_CONVERSATION_MAX];
    if (m->content_len > MSG_CONTENT_MAX) {
        *detail = "content is over 65535 bytes";
        return 413;
    }
    *detail = NULL;
    if (m->message_id <= 0)
        *detail = "message_id must be a positive id";
    else if (!is_user_id(m->sender_id) || !is_user_id(m->recipient_id))
        *detail = "sender_id and recipient_id must be user ids";
    else if (m->sender_id == m->recipient_id)
        *detail = "sender_id and recipient_id must differ";
    else if (ids_conversation(m->sender_id, m->recipient_id, cid, sizeof cid) <
                 0 ||
             strcmp(cid, m->conversation_id) != 0)
        *detail = "conversation_id does not match the participants";
    else if (m->content_len == 0 || !m->content)
        *detail = "content is empty";
    else if (!utf8_is_valid(m->content, m->content_len))
        *detail = "content is not valid UTF-8";
    else if (!is_valid_cmid(m->client_message_id))
        *detail = "client_message_id must be 1-64 printable ASCII characters";
    else if (m->sent_at < 0)
        *detail = "sent_at must not be negative";
    return *detail ? 400 : 0;
}

int parse_message_request(const char *buf, size_t len, msg *m,
                          const char **detail)
{
    memset(m, 0, sizeof *m);
    if (msg_from_body(buf, len, m) != 0) {
        *detail = "body must be {\"message\":{message}}";
        return 400;
    }
    int status = check_message(m, detail);
    if (status)
        msg_clear(m);
    return status;
}

void parse_calls_free(parse_call *calls, size_t n)
{
    for (size_t i = 0; calls && i < n; i++)
        msg_clear(&calls[i].m);
    free(calls);
}

/* One element of a batch's "calls". Returns 0 with c->m owning its
 * content, or 400/413 with *detail and c->m holding nothing. */
static int parse_one_call(const json_t *item, parse_call *c,
                          const char **detail)
{
    const char *op = NULL;
    json_t *message = NULL;
    memset(&c->m, 0, sizeof c->m);
    *detail = "each call must be {\"op\":\"send\"|\"deliver\","
              "\"message\":{message}}";
    if (json_unpack((json_t *)item, "{s:s,s:o !}", "op", &op, "message",
                    &message) != 0)
        return 400;
    if (strcmp(op, "send") == 0)
        c->op = MBOX_OP_SEND;
    else if (strcmp(op, "deliver") == 0)
        c->op = MBOX_OP_DELIVER;
    else
        return 400;
    if (msg_from_json(message, &c->m) != 0)
        return 400;
    int status = check_message(&c->m, detail);
    if (status)
        msg_clear(&c->m);
    return status;
}

int parse_batch_request(const char *buf, size_t len, parse_call **calls,
                        size_t *n, const char **detail)
{
    *calls = NULL;
    *n = 0;
    json_t *root = parse_object(buf, len);
    json_t *list = root ? json_object_get(root, "calls") : NULL;
    size_t count = json_is_array(list) ? json_array_size(list) : 0;
    int status = 400;
    *detail = "body must be {\"calls\":[call,...]} with 1-64 calls";
    parse_call *out = count >= 1 && count <= STORAGE_BATCH_CALLS_MAX &&
                              json_object_size(root) == 1
                          ? calloc(count, sizeof *out)
                          : NULL;
    size_t done = 0;
    if (out) {
        status = 0;
        while (done < count && status == 0) {
            status =
                parse_one_call(json_array_get(list, done), &out[done], detail);
            if (status == 0)
                done++;
        }
    }
    json_decref(root);
    if (status != 0) {
        parse_calls_free(out, done);
        return status;
    }
    *calls = out;
    *n = count;
    return 0;
}

int parse_outbox_claim(const char *buf, size_t len, int *limit,
                       int64_t *lease_ms, const char **detail)
{
    json_int_t l = 0, lease = 0;
    json_t *root = parse_object(buf, len);
    int rc =
        root ? json_unpack(root, "{s:I,s:I}", "limit", &l, "lease_ms", &lease)
             : -1;
    json_decref(root);
    if (rc != 0) {
        *detail = "body must be {\"limit\":N,\"lease_ms\":L}";
        return -1;
    }
    if (l < 1 || l > MBOX_OUTBOX_BATCH_MAX || lease < 1 ||
        lease > MBOX_LEASE_MAX_MS) {
        *detail = "limit or lease_ms out of range";
        return -1;
    }
    *limit = (int)l;
    *lease_ms = lease;
    return 0;
}

/* Reads one {"sender_id":1,"message_id":"..."} entry. */
static int parse_ack_entry(json_t *entry, mbox_outbox_key *key)
{
    json_int_t sender_id;
    const char *id;
    size_t id_len;
    if (json_unpack(entry, "{s:I,s:s%}", "sender_id", &sender_id, "message_id",
                    &id, &id_len) != 0)
        return -1;
    if (!is_user_id(sender_id) || ids_parse(id, id_len, &key->message_id))
        return -1;
    key->sender_id = sender_id;
    return 0;
}

int parse_outbox_ack(const char *buf, size_t len, mbox_outbox_key **keys,
                     size_t *n)
{
    *keys = NULL;
    *n = 0;
    json_t *root = parse_object(buf, len);
    json_t *entries = root ? json_object_get(root, "entries") : NULL;
    size_t count = json_array_size(entries);
    int rc = -1;
    if (!json_is_array(entries) || count > MBOX_OUTBOX_BATCH_MAX)
        goto done;
    *keys = calloc(count ? count : 1, sizeof **keys);
    if (!*keys)
        goto done;
    for (size_t i = 0; i < count; i++)
        if (parse_ack_entry(json_array_get(entries, i), &(*keys)[i]) != 0)
            goto done;
    *n = count;
    rc = 0;
done:
    if (rc != 0) {
        free(*keys);
        *keys = NULL;
    }
    json_decref(root);
    return rc;
}

/* Strict non-negative decimal: digits only, no sign, no spaces, within
 * [min, max]. 18 digits at most, so the value cannot overflow. Returns 0
 * or -1. */
static int parse_decimal(const char *s, int64_t min, int64_t max, int64_t *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > 19) /* INT64_MAX has 19 digits */
        return -1;
    int64_t value = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int digit = s[i] - '0';
        if (value > (INT64_MAX - digit) / 10)
            return -1;
        value = value * 10 + digit;
    }
    if (value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* An optional integer query parameter. Returns 0 (absent, or present and
 * valid with *has set) or -1. */
static int query_int(parse_query_fn query, const void *source, const char *key,
                     int64_t min, int64_t max, bool *has, int64_t *out)
{
    const char *s = query(source, key);
    *has = s != NULL;
    return s ? parse_decimal(s, min, max, out) : 0;
}

int parse_list_filter(parse_query_fn query, const void *source,
                      bool allows_before, mbox_filter *f, const char **detail)
{
    memset(f, 0, sizeof *f);
    bool has_limit, has_offset;
    int64_t limit = LIST_PAGE_SIZE_DEFAULT, offset = 0;
    *detail = NULL;
    if (query_int(query, source, "limit", 1, MBOX_LIST_LIMIT_MAX, &has_limit,
                  &limit))
        *detail = "limit must be 1-1000";
    else if (query_int(query, source, "offset", 0, LIST_OFFSET_MAX, &has_offset,
                       &offset))
        *detail = "offset must be 0-100000";
    else if (query_int(query, source, "since_seq", 0, INT64_MAX,
                       &f->has_since_seq, &f->since_seq))
        *detail = "since_seq must be a non-negative integer";
    else if (query_int(query, source, "since_ts", 0, INT64_MAX,
                       &f->has_since_ts, &f->since_ts))
        *detail = "since_ts must be a non-negative integer (ms)";
    if (*detail)
        return -1;
    f->limit = (int)limit;
    f->offset = (int)offset;
    const char *before = query(source, "before");
    if (!before)
        return 0;
    f->has_before = true;
    if (!allows_before || ids_parse(before, strlen(before), &f->before)) {
        *detail = allows_before ? "before must be a message id"
                                : "before is not a filter of this list";
        return -1;
    }
    return 0;
}
