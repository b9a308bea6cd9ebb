/*
 * query.c - parsing, validation and canonical formatting of the list
 * query string (page_size, page, before, since, last_updated_timestamp).
 *
 * The gateway parses what the client sent and forwards query_format's
 * canonical form to the cache node, which parses it again with the same
 * code: both sides agree on every value. Each value has one accepted
 * spelling family (plain decimal digits, an id, a token), and the
 * combinations SPEC 4 forbids (since with page or before, and the
 * timestamp form mixed with either) are refused here, so a handler never
 * sees an ambiguous query.
 */
#include "query.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "constants.h"
#include "errbuf.h"

/* Plain decimal digits (at least one, no sign, no spaces) with a value
 * of at most max. Returns 0 and sets *out, or -1. */
static int parse_digits(const char *s, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (s[0] == '\0')
        return -1;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        int d = *p - '0';
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_paging(const query_raw *raw, list_query *q, char *errbuf,
                        size_t errcap)
{
    int64_t v;

    if (raw->page_size != NULL) {
        if (parse_digits(raw->page_size, LIST_PAGE_SIZE_MAX, &v) != 0 || v < 1)
            return errbuf_fail(errbuf, errcap,
                               "page_size must be an integer from 1 to %d",
                               LIST_PAGE_SIZE_MAX);
        q->page_size = (int)v;
    }
    if (raw->page != NULL) {
        if (raw->page[0] == '-')
            return errbuf_fail(errbuf, errcap, "page must not be negative");
        if (parse_digits(raw->page, INT64_MAX, &v) != 0)
            return errbuf_fail(errbuf, errcap,
                               "page must be an integer from 0");
        /* Bounded before the multiplication so neither can overflow. */
        if (v > LIST_OFFSET_MAX)
            v = LIST_OFFSET_MAX + 1;
        q->page = (int)v;
    }
    if ((int64_t)q->page * q->page_size > LIST_OFFSET_MAX)
        return errbuf_fail(errbuf, errcap,
                           "page * page_size must be at most %d, use before or "
                           "since to read further",
                           LIST_OFFSET_MAX);
    return 0;
}

static int parse_before(const query_raw *raw, sync_kind kind, list_query *q,
                        char *errbuf, size_t errcap)
{
    if (raw->before == NULL)
        return 0;
    if (kind == SYNC_CONVERSATIONS)
        return errbuf_fail(errbuf, errcap,
                           "before is not supported on the conversation list");
    if (ids_parse(raw->before, strlen(raw->before), &q->before) != 0)
        return errbuf_fail(errbuf, errcap, "before must be a message_id");
    q->has_before = true;
    return 0;
}

static int parse_delta(const query_raw *raw, sync_kind kind, list_query *q,
                       char *errbuf, size_t errcap)
{
    if (raw->since != NULL) {
        if (synctoken_decode(raw->since, strlen(raw->since), &q->since) != 0)
            return errbuf_fail(errbuf, errcap,
                               "since is not a valid sync_token");
        if (q->since.kind != kind)
            return errbuf_fail(errbuf, errcap,
                               "since is a sync_token of another list");
        q->has_since = true;
    }
    if (raw->last_updated_timestamp != NULL) {
        if (parse_digits(raw->last_updated_timestamp, INT64_MAX,
                         &q->updated_after) != 0)
            return errbuf_fail(errbuf, errcap,
                               "last_updated_timestamp must be a non-negative "
                               "integer of milliseconds");
        q->has_updated_after = true;
    }
    return 0;
}

/* A delta (since or last_updated_timestamp) answers from the top of the
 * list, so it cannot be combined with a position, even page=0, nor
 * with the other delta form. */
static int check_combinations(const query_raw *raw, char *errbuf, size_t errcap)
{
    bool positioned = raw->page != NULL || raw->before != NULL;

    if (raw->since != NULL && positioned)
        return errbuf_fail(errbuf, errcap,
                           "since cannot be combined with page or before");
    if (raw->last_updated_timestamp != NULL && positioned)
        return errbuf_fail(errbuf, errcap,
                           "last_updated_timestamp cannot be "
                           "combined with page or before");
    if (raw->since != NULL && raw->last_updated_timestamp != NULL)
        return errbuf_fail(
            errbuf, errcap,
            "since cannot be combined with last_updated_timestamp");
    return 0;
}

int query_parse(const query_raw *raw, sync_kind kind, list_query *q,
                char *errbuf, size_t errcap)
{
    memset(q, 0, sizeof *q);
    q->page_size = LIST_PAGE_SIZE_DEFAULT;
    q->page = 0;
    if (parse_paging(raw, q, errbuf, errcap) != 0 ||
        parse_before(raw, kind, q, errbuf, errcap) != 0 ||
        parse_delta(raw, kind, q, errbuf, errcap) != 0 ||
        check_combinations(raw, errbuf, errcap) != 0)
        return -1;
    return 0;
}

int query_check_token(const list_query *q, int64_t user_id,
                      const char *conversation_id)
{
    if (!q->has_since)
        return 0;
    if (q->since.user_id != user_id)
        return -1;
    if (conversation_id == NULL)
        return q->since.kind == SYNC_CONVERSATIONS ? 0 : -1;
    if (q->since.kind != SYNC_MESSAGES ||
        strcmp(q->since.conversation_id, conversation_id) != 0)
        return -1;
    return 0;
}

/* Appends to out at *pos; -1 once cap is exceeded. */
__attribute__((format(printf, 4, 5))) static int
append(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(out + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *pos)
        return -1;
    *pos += (size_t)n;
    return 0;
}

/* page is left out of a delta query (where it is always 0): query_parse
 * refuses since or last_updated_timestamp next to any page, and the
 * receiving node parses this string with query_parse, so the canonical
 * form must be one it accepts. */
int query_format(const list_query *q, char *out, size_t cap)
{
    char token[SYNCTOKEN_MAX + 1];
    size_t pos = 0;
    bool is_delta = q->has_since || q->has_updated_after;

    if (cap == 0 || append(out, cap, &pos, "page_size=%d", q->page_size) != 0)
        return -1;
    if (!is_delta && append(out, cap, &pos, "&page=%d", q->page) != 0)
        return -1;
    if (q->has_before &&
        append(out, cap, &pos, "&before=%lld", (long long)q->before) != 0)
        return -1;
    if (q->has_since && (synctoken_encode(&q->since, token, sizeof token) < 0 ||
                         append(out, cap, &pos, "&since=%s", token) != 0))
        return -1;
    if (q->has_updated_after &&
        append(out, cap, &pos, "&last_updated_timestamp=%lld",
               (long long)q->updated_after) != 0)
        return -1;
    return (int)pos;
}

/* The slot of raw that name fills; NULL for an unknown name. */
static const char **split_slot(query_raw *raw, const char *name)
{
    if (strcmp(name, "page_size") == 0)
        return &raw->page_size;
    if (strcmp(name, "page") == 0)
        return &raw->page;
    if (strcmp(name, "before") == 0)
        return &raw->before;
    if (strcmp(name, "since") == 0)
        return &raw->since;
    if (strcmp(name, "last_updated_timestamp") == 0)
        return &raw->last_updated_timestamp;
    return NULL;
}

int query_split(char *text, query_raw *raw)
{
    memset(raw, 0, sizeof(*raw));
    if (strpbrk(text, "%+") != NULL)
        return -1;
    for (char *pair = text; *pair != '\0';) {
        char *end = pair + strcspn(pair, "&");
        bool last = *end == '\0';
        *end = '\0';
        char *eq = strchr(pair, '=');
        if (eq == NULL)
            return -1;
        *eq = '\0';
        const char **slot = split_slot(raw, pair);
        if (slot == NULL || *slot != NULL)
            return -1;
        *slot = eq + 1;
        pair = last ? end : end + 1;
    }
    return 0;
}
