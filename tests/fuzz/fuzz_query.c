/*
 * fuzz_query.c - libFuzzer target for query_parse. The input is split on
 * '\n' into page_size, page, before, since and last_updated_timestamp,
 * in that order; an empty or missing line is an absent parameter. Both
 * lists are tried. A query that parses must satisfy every documented
 * bound and its canonical form must split (query_split) and parse back
 * to the same query. The whole input is also read as a query string by
 * query_split, whose pieces go through query_parse the same way.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "query.h"

#define FIELDS 5

static void check(const query_raw *raw, sync_kind kind)
{
    list_query q, again;
    query_raw raw2;
    char err[128], text[512];

    if (query_parse(raw, kind, &q, err, sizeof err) != 0)
        return;
    if (q.page_size < 1 || q.page_size > LIST_PAGE_SIZE_MAX || q.page < 0 ||
        (int64_t)q.page * q.page_size > LIST_OFFSET_MAX ||
        (q.has_before && kind == SYNC_CONVERSATIONS) ||
        (q.has_since && (q.since.kind != kind || q.page != 0)))
        abort();
    if (query_format(&q, text, sizeof text) < 0)
        abort();
    if (query_split(text, &raw2) != 0 ||
        query_parse(&raw2, kind, &again, err, sizeof err) != 0 ||
        again.page_size != q.page_size || again.page != q.page ||
        again.has_before != q.has_before || again.before != q.before ||
        again.has_since != q.has_since ||
        again.has_updated_after != q.has_updated_after ||
        again.updated_after != q.updated_after)
        abort();
    (void)query_check_token(&q, 42, kind == SYNC_MESSAGES ? "7_42" : NULL);
}

/* The input as an internal read's query string (query_split). */
static void check_split(const char *buf)
{
    char *text = strdup(buf);
    query_raw raw;

    if (text == NULL)
        return;
    if (query_split(text, &raw) == 0) {
        check(&raw, SYNC_MESSAGES);
        check(&raw, SYNC_CONVERSATIONS);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    const char *field[FIELDS] = {NULL};

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    check_split(buf);
    char *p = buf;
    for (int i = 0; i < FIELDS && p != NULL; i++) {
        char *nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        field[i] = *p != '\0' ? p : NULL;
        p = nl != NULL ? nl + 1 : NULL;
    }
    query_raw raw = {field[0], field[1], field[2], field[3], field[4]};
    check(&raw, SYNC_MESSAGES);
    check(&raw, SYNC_CONVERSATIONS);
    free(buf);
    return 0;
}
