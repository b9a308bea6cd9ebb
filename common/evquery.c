/*
 * evquery.c - parsing the events query. See evquery.h.
 */
#include "evquery.h"

#include <stdio.h>
#include <string.h>

/* Whole seconds without sign or leading zero, at most two digits. */
static int parse_timeout(const char *s, int *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > 2 || (len == 2 && s[0] == '0'))
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > EVENTS_TIMEOUT_MAX_S)
        return -1;
    *out = v;
    return 0;
}

int evquery_parse(const char *since, const char *timeout, int64_t user_id,
                  events_query *q, char *errbuf, size_t errcap)
{
    memset(q, 0, sizeof(*q));
    q->timeout_s = EVENTS_TIMEOUT_DEFAULT_S;
    if (timeout != NULL && parse_timeout(timeout, &q->timeout_s)) {
        snprintf(errbuf, errcap, "timeout must be whole seconds from 0 to %d",
                 EVENTS_TIMEOUT_MAX_S);
        return -1;
    }
    if (since == NULL || since[0] == '\0') {
        snprintf(errbuf, errcap,
                 "since is required: the sync_token of the last answer");
        return -1;
    }
    if (synctoken_decode(since, strlen(since), &q->since)) {
        snprintf(errbuf, errcap, "since is not a valid sync token");
        return -1;
    }
    if (q->since.kind != SYNC_CONVERSATIONS || q->since.user_id != user_id) {
        snprintf(errbuf, errcap,
                 "since must be a sync_token of this user's conversation "
                 "list or of an events answer");
        return -1;
    }
    return 0;
}

int evquery_format(const events_query *q, char *out, size_t cap)
{
    char token[SYNCTOKEN_MAX + 1];
    if (synctoken_encode(&q->since, token, sizeof(token)) < 0)
        return -1;
    int n = snprintf(out, cap, "since=%s&timeout=%d", token, q->timeout_s);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
