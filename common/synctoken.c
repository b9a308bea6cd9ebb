/*
 * synctoken.c - encoding and strict decoding of sync tokens.
 *
 * Tokens come back from clients, so decoding trusts nothing: base64url
 * without padding and with zero trailing bits, then a payload whose every
 * field has exactly one spelling (no leading zeros, no signs). So each
 * token decodes to one value and that value encodes back to the same
 * token, which the fuzz target checks.
 */
#include "synctoken.h"

#include <stdio.h>
#include <string.h>

#include "b64url.h"
#include "constants.h"

/* Longest payload: "v1|m|" + user + "|" + seq + "|" + conversation id. */
#define PAYLOAD_MAX 128
#define FIELDS_MAX 5

/* Non-negative decimal with one spelling: "0" or no leading zero. */
static int parse_seq(const char *s, size_t len, int64_t *seq)
{
    if (len == 1 && s[0] == '0') {
        *seq = 0;
        return 0;
    }
    return ids_parse(s, len, seq);
}

static int conversation_has_user(const char *cid, size_t len, int64_t user)
{
    int64_t low, high;

    return ids_parse_conversation(cid, len, &low, &high) == 0 &&
           (user == low || user == high);
}

int synctoken_encode(const sync_token *t, char *out, size_t cap)
{
    char payload[PAYLOAD_MAX];
    int n;

    if (t->user_id < 1 || t->user_id > MSG_USER_ID_MAX || t->seq < 0)
        return -1;
    if (t->kind == SYNC_CONVERSATIONS) {
        n = snprintf(payload, sizeof payload, "v1|c|%lld|%lld",
                     (long long)t->user_id, (long long)t->seq);
    } else if (t->kind == SYNC_MESSAGES) {
        size_t cid_len = strnlen(t->conversation_id, IDS_CONVERSATION_MAX);
        if (cid_len == IDS_CONVERSATION_MAX ||
            !conversation_has_user(t->conversation_id, cid_len, t->user_id))
            return -1;
        n = snprintf(payload, sizeof payload, "v1|m|%lld|%lld|%s",
                     (long long)t->user_id, (long long)t->seq,
                     t->conversation_id);
    } else {
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof payload)
        return -1;
    return b64url_encode(payload, (size_t)n, out, cap);
}

/* Splits p[0..len) on '|' into at most FIELDS_MAX fields. Returns the
 * number of fields, or -1 if there are more. */
static int split_fields(const char *p, size_t len, const char **field,
                        size_t *flen)
{
    int count = 0;
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '|')
            continue;
        if (count == FIELDS_MAX)
            return -1;
        field[count] = p + start;
        flen[count] = i - start;
        count++;
        start = i + 1;
    }
    return count;
}

static int parse_payload(const char *p, size_t len, sync_token *t)
{
    const char *f[FIELDS_MAX];
    size_t fl[FIELDS_MAX];
    int count = split_fields(p, len, f, fl);

    if (count < 4 || fl[0] != 2 || memcmp(f[0], "v1", 2) != 0 || fl[1] != 1)
        return -1;
    if (ids_parse_user(f[2], fl[2], &t->user_id) != 0 ||
        parse_seq(f[3], fl[3], &t->seq) != 0)
        return -1;
    if (f[1][0] == 'c' && count == 4) {
        t->kind = SYNC_CONVERSATIONS;
        t->conversation_id[0] = '\0';
        return 0;
    }
    if (f[1][0] != 'm' || count != 5 || fl[4] >= IDS_CONVERSATION_MAX ||
        !conversation_has_user(f[4], fl[4], t->user_id))
        return -1;
    t->kind = SYNC_MESSAGES;
    memcpy(t->conversation_id, f[4], fl[4]);
    t->conversation_id[fl[4]] = '\0';
    return 0;
}

int synctoken_decode(const char *s, size_t len, sync_token *t)
{
    unsigned char payload[PAYLOAD_MAX];
    sync_token tmp;

    /* No token we issue is longer: refused before any decoding. */
    if (len > SYNCTOKEN_MAX)
        return -1;
    int n = b64url_decode(s, len, payload, sizeof payload);
    if (n < 0 || parse_payload((const char *)payload, (size_t)n, &tmp) != 0)
        return -1;
    *t = tmp;
    return 0;
}
