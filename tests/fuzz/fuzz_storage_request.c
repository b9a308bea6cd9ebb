/*
 * fuzz_storage_request.c - libFuzzer target for services/storage/parse.c,
 * the storage service's parsers of internal requests. The first line of
 * the input names the request (message, batch, claim, ack, conversations,
 * messages); the rest is its body, or for the two lists its query string
 * "k=v&k=v" (each value as the HTTP server hands it over, decoded).
 *
 * Whatever is accepted must meet every bound the service relies on
 * before it writes or reads PostgreSQL.
 */
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "ids.h"
#include "parse.h"
#include "utf8.h"

/* A query string split into pairs, looked up like hs_query. */
#define QUERY_PAIRS_MAX 16

typedef struct query_pairs {
    const char *key[QUERY_PAIRS_MAX];
    const char *value[QUERY_PAIRS_MAX];
    int n;
} query_pairs;

/* Splits s (modified) on '&' and the first '=' of each pair; a pair
 * without '=' has the value "". */
static void split_query(char *s, query_pairs *q)
{
    q->n = 0;
    for (char *save = NULL, *kv = strtok_r(s, "&", &save);
         kv != NULL && q->n < QUERY_PAIRS_MAX;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq != NULL)
            *eq = '\0';
        q->key[q->n] = kv;
        q->value[q->n] = eq != NULL ? eq + 1 : "";
        q->n++;
    }
}

/* The first value of key, as libmicrohttpd's lookup gives it. */
static const char *lookup(const void *source, const char *key)
{
    const query_pairs *q = source;
    for (int i = 0; i < q->n; i++) {
        if (strcmp(q->key[i], key) == 0)
            return q->value[i];
    }
    return NULL;
}

/* Aborts unless an accepted message meets every bound of check_message. */
static void check_accepted(const msg *m_)
{
    const msg m = *m_;
    char cid[IDS_CONVERSATION_MAX];
    size_t cmid_len = strlen(m.client_message_id);
    if (m.message_id < 1 || m.sender_id < 1 || m.sender_id > MSG_USER_ID_MAX ||
        m.recipient_id < 1 || m.recipient_id > MSG_USER_ID_MAX ||
        m.sender_id == m.recipient_id ||
        ids_conversation(m.sender_id, m.recipient_id, cid, sizeof cid) < 0 ||
        strcmp(cid, m.conversation_id) != 0 || m.content_len < 1 ||
        m.content_len > MSG_CONTENT_MAX ||
        !utf8_is_valid(m.content, m.content_len) || cmid_len < 1 ||
        cmid_len > MSG_CMID_MAX || m.sent_at < 0)
        abort();
}

static void fuzz_message(const char *buf, size_t len)
{
    msg m;
    const char *detail = NULL;
    int status = parse_message_request(buf, len, &m, &detail);

    if (status != 0) {
        if ((status != 400 && status != 413) || detail == NULL ||
            m.content != NULL)
            abort();
        return;
    }
    check_accepted(&m);
    msg_clear(&m);
}

static void fuzz_batch(const char *buf, size_t len)
{
    parse_call *calls;
    size_t n;
    const char *detail = NULL;
    int status = parse_batch_request(buf, len, &calls, &n, &detail);

    if (status != 0) {
        if ((status != 400 && status != 413) || detail == NULL ||
            calls != NULL || n != 0)
            abort();
        return;
    }
    if (calls == NULL || n < 1 || n > STORAGE_BATCH_CALLS_MAX)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (calls[i].op != MBOX_OP_SEND && calls[i].op != MBOX_OP_DELIVER)
            abort();
        check_accepted(&calls[i].m);
    }
    parse_calls_free(calls, n);
}

static void fuzz_claim(const char *buf, size_t len)
{
    int limit;
    int64_t lease_ms;
    const char *detail;

    if (parse_outbox_claim(buf, len, &limit, &lease_ms, &detail) != 0)
        return;
    if (limit < 1 || limit > MBOX_OUTBOX_BATCH_MAX || lease_ms < 1 ||
        lease_ms > MBOX_LEASE_MAX_MS)
        abort();
}

static void fuzz_ack(const char *buf, size_t len)
{
    mbox_outbox_key *keys;
    size_t n;

    if (parse_outbox_ack(buf, len, &keys, &n) != 0) {
        if (keys != NULL || n != 0)
            abort();
        return;
    }
    if (keys == NULL || n > MBOX_OUTBOX_BATCH_MAX)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (keys[i].sender_id < 1 || keys[i].sender_id > MSG_USER_ID_MAX ||
            keys[i].message_id < 1)
            abort();
    }
    free(keys);
}

static void fuzz_filter(char *query, bool allows_before)
{
    query_pairs q;
    mbox_filter f;
    const char *detail;

    split_query(query, &q);
    if (parse_list_filter(lookup, &q, allows_before, &f, &detail) != 0) {
        if (detail == NULL)
            abort();
        return;
    }
    if (f.limit < 1 || f.limit > MBOX_LIST_LIMIT_MAX || f.offset < 0 ||
        f.offset > LIST_OFFSET_MAX || (f.has_since_seq && f.since_seq < 0) ||
        (f.has_since_ts && f.since_ts < 0) ||
        (f.has_before && (!allows_before || f.before < 1)) ||
        f.has_before != (lookup(&q, "before") != NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *nl = memchr(buf, '\n', size);
    if (nl != NULL) {
        *nl = '\0';
        char *body = nl + 1;
        size_t len = size - (size_t)(body - buf);
        if (strcmp(buf, "message") == 0)
            fuzz_message(body, len);
        else if (strcmp(buf, "batch") == 0)
            fuzz_batch(body, len);
        else if (strcmp(buf, "claim") == 0)
            fuzz_claim(body, len);
        else if (strcmp(buf, "ack") == 0)
            fuzz_ack(body, len);
        else if (strcmp(buf, "conversations") == 0)
            fuzz_filter(body, false);
        else if (strcmp(buf, "messages") == 0)
            fuzz_filter(body, true);
    }
    free(buf);
    return 0;
}
