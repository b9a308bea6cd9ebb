/*
 * query.h - the query string of the two list routes (SPEC 4), parsed from
 * raw values into a plain struct and validated. No I/O; the fuzz target
 * drives it.
 */
#ifndef MSG_QUERY_H
#define MSG_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "synctoken.h"

/* Raw values as they came in the URL (already percent-decoded); NULL
 * when the parameter is absent. */
typedef struct query_raw {
    const char *page_size;
    const char *page;
    const char *before;
    const char *since;
    const char *last_updated_timestamp;
} query_raw;

typedef struct list_query {
    int page_size; /* 1..LIST_PAGE_SIZE_MAX */
    int page;      /* >= 0 */
    bool has_before;
    int64_t before; /* message id, if has_before */
    bool has_since;
    sync_token since; /* if has_since */
    bool has_updated_after;
    int64_t updated_after; /* ms, if has_updated_after */
} list_query;

/* Parses and validates. kind says which list (messages allow before;
 * conversations do not, and a before there is a 400). On error returns -1
 * and errbuf says why (always a 400). Token ownership (user, list) is
 * checked by query_check_token, since the parser does not know the path. */
int query_parse(const query_raw *raw, sync_kind kind, list_query *q,
                char *errbuf, size_t errcap);

/* Checks that a since token was issued for this list: same kind, same
 * user, and for messages the same conversation. Returns 0 or -1. */
int query_check_token(const list_query *q, int64_t user_id,
                      const char *conversation_id);

/* Serialises q back into a canonical query string (without '?') for
 * internal calls, e.g. "page_size=20&page=0&since=...". Returns length or
 * -1 if cap is too small. */
int query_format(const list_query *q, char *out, size_t cap);

/* Reads back, in place, a query string in the form query_format writes:
 * text is cut at each '&' and '=' and raw points into it (absent names
 * stay NULL). Only the five names, each at most once with an '=', and no
 * escapes ('%' or '+'): a batch of internal reads (POST /internal/reads)
 * carries the canonical form and nothing else, so anything more is a
 * caller's bug, refused rather than guessed at. Returns 0, or -1. */
int query_split(char *text, query_raw *raw);

#endif
