/*
 * fuzz_query.c - libFuzzer target for query_parse. The input is split on
 * '\n' into page_size, page, before, since and last_updated_timestamp,
 * in that order; an empty or missing line is an absent parameter. Both
 * lists are tried. A query that parses must satisfy every documented
 * bound and its canonical form must parse back to the same query.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "query.h"

#define FIELDS 5

/* Fills raw from the canonical "k=v&k=v" form in s (modified). */
static void split_canonical(char *s, query_raw *raw)
{
    memset(raw, 0, sizeof *raw);
    for (char *save = NULL, *kv = strtok_r(s, "&", &save); kv != NULL;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL)
            abort();
        *eq = '\0';
        if (strcmp(kv, "page_size") == 0)
            raw->page_size = eq + 1;
        else if (strcmp(kv, "page") == 0)
            raw->page = eq + 1;
        else if (strcmp(kv, "before") == 0)
            raw->before = eq + 1;
        else if (strcmp(kv, "since") == 0)
            raw->since = eq + 1;
        else if (strcmp(kv, "last_updated_timestamp") == 0)
            raw->last_updated_timestamp = eq + 1;
        else
            abort();
    }
}

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
    split_canonical(text, &raw2);
    if (query_parse(&raw2, kind, &again, err, sizeof err) != 0 ||
        again.page_size != q.page_size || again.page != q.page ||
        again.has_before != q.has_before || again.before != q.before ||
        again.has_since != q.has_since ||
        again.has_updated_after != q.has_updated_after ||
        again.updated_after != q.updated_after)
        abort();
    (void)query_check_token(&q, 42, kind == SYNC_MESSAGES ? "7_42" : NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    const char *field[FIELDS] = {NULL};

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
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
