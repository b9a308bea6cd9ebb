/*
 * fuzz_store_answer.c - libFuzzer target for store_parse.c, which reads
 * the storage service's answers on a cache node. The first line of the
 * input is "<kind> <status>" (kind: send, deliver, meta, conversations,
 * messages, claim; status: the HTTP status), the rest is the body.
 *
 * An answer that is accepted must give exactly what docs/internal-api.md
 * says it holds: the status word it names, a change counter >= 0, ids
 * that read back as the fields spell them, lists of objects, a replayed
 * message that is a valid message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_parse.h"

/* True when the JSON string field key of o is exactly want. */
static bool field_is(const json_t *o, const char *key, const char *want)
{
    const json_t *s = json_object_get(o, key);
    return json_is_string(s) && json_string_length(s) == strlen(want) &&
           memcmp(json_string_value(s), want, strlen(want)) == 0;
}

/* The id field of o spells value: the same integer, or its decimal. */
static void check_id(const json_t *o, const char *key, int64_t value)
{
    char text[24];
    const json_t *j = json_object_get(o, key);

    snprintf(text, sizeof text, "%" PRId64, value);
    if (value < 0 || (json_is_integer(j) && json_integer_value(j) != value) ||
        (!json_is_integer(j) && !field_is(o, key, text)))
        abort();
}

static void check_meta(const json_t *o, const hot_meta *meta)
{
    const json_t *seq = json_object_get(o, "seq");

    if (meta->seq < 0 || !json_is_integer(seq) ||
        json_integer_value(seq) != meta->seq)
        abort();
    check_id(o, "max_id", meta->max_id);
}

static void fuzz_send(long status, const json_t *o)
{
    store_send_result r;

    if (store_parse_send(status, o, &r) != STORE_OK)
        return;
    switch (r.outcome) {
    case SEND_STORED:
        if (status != 201 || !field_is(o, "status", "stored"))
            abort();
        check_meta(o, &r.meta);
        break;
    case SEND_FLOOR:
        if (status != 409 || !field_is(o, "status", "floor"))
            abort();
        check_id(o, "max_id", r.meta.max_id);
        break;
    case SEND_REPLAY:
        if (status != 200 || !field_is(o, "status", "replay") ||
            r.stored.message_id < 1 || r.stored.content == NULL ||
            r.stored.sender_id == r.stored.recipient_id)
            abort();
        msg_clear(&r.stored);
        break;
    }
}

static void fuzz_deliver(long status, const json_t *o)
{
    bool stored;
    hot_meta meta;

    if (store_parse_deliver(status, o, &stored, &meta) != STORE_OK)
        return;
    if (status != 200 ||
        !field_is(o, "status", stored ? "stored" : "duplicate"))
        abort();
    check_meta(o, &meta);
}

static void fuzz_list(const json_t *o, const char *key)
{
    json_t *items;
    int64_t seq;

    if (store_parse_list(o, key, &items, &seq) != STORE_OK)
        return;
    if (seq < 0 || json_integer_value(json_object_get(o, "seq")) != seq ||
        items != json_object_get(o, key) || !json_is_array(items))
        abort();
    for (size_t i = 0; i < json_array_size(items); i++) {
        if (!json_is_object(json_array_get(items, i)))
            abort();
    }
    json_decref(items);
}

static void fuzz_claim(long status, const json_t *o)
{
    json_t *messages;

    if (store_parse_claim(status, o, &messages) != STORE_OK)
        return;
    if (status != 200 || !json_is_array(messages))
        abort();
    json_decref(messages);
}

static void fuzz_answer(const char *kind, long status, const json_t *o)
{
    hot_meta meta;

    if (strcmp(kind, "send") == 0) {
        fuzz_send(status, o);
    } else if (strcmp(kind, "deliver") == 0) {
        fuzz_deliver(status, o);
    } else if (strcmp(kind, "meta") == 0) {
        if (store_parse_meta(o, &meta) == STORE_OK)
            check_meta(o, &meta);
    } else if (strcmp(kind, "conversations") == 0 ||
               strcmp(kind, "messages") == 0) {
        fuzz_list(o, kind);
    } else if (strcmp(kind, "claim") == 0) {
        fuzz_claim(status, o);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    char kind[16];
    long status;

    if (nl == NULL || (size_t)(nl - text) >= 32)
        return 0;
    char head[32];
    memcpy(head, text, (size_t)(nl - text));
    head[nl - text] = '\0';
    if (sscanf(head, "%15s %ld", kind, &status) != 2)
        return 0;
    const char *body = nl + 1;
    json_t *o = store_parse_body(body, size - (size_t)(body - text));
    if (o == NULL)
        return 0;
    if (!json_is_object(o))
        abort();
    fuzz_answer(kind, status, o);
    json_decref(o);
    return 0;
}
