/*
 * hot_entry.c - building and splitting hot window entries. See
 * hot_entry.h.
 */
#include "hot_entry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

/* A conversation id as ids_conversation writes it, and only that. */
static int is_canonical_cid(const char *cid, size_t len)
{
    int64_t low, high;
    char again[IDS_CONVERSATION_MAX];
    return ids_parse_conversation(cid, len, &low, &high) == 0 &&
           ids_conversation(low, high, again, sizeof(again)) == (int)len &&
           memcmp(again, cid, len) == 0;
}

char *hot_entry(int64_t id, const char *cid, const char *json)
{
    if (id < 0 || !is_canonical_cid(cid, strlen(cid)) || !json[0])
        return NULL;
    char *out = NULL;
    if (asprintf(&out, "%0*" PRId64 "|%s|%s", HOT_ENTRY_ID_DIGITS, id, cid,
                 json) < 0)
        return NULL;
    return out;
}

/* The zero-padded id field; -1 unless it is HOT_ENTRY_ID_DIGITS digits
 * of a value that fits an int64_t. */
static int parse_id_field(const char *s, int64_t *id)
{
    int64_t v = 0;
    for (int i = 0; i < HOT_ENTRY_ID_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *id = v;
    return 0;
}

int hot_entry_split(const char *entry, size_t len, hot_entry_parts *out)
{
    const size_t id_end = HOT_ENTRY_ID_DIGITS;
    if (!entry || len < id_end + 2 || entry[id_end] != '|' ||
        parse_id_field(entry, &out->id))
        return -1;
    const char *cid = entry + id_end + 1;
    const char *bar = memchr(cid, '|', len - id_end - 1);
    if (!bar || !is_canonical_cid(cid, (size_t)(bar - cid)) ||
        bar + 1 == entry + len)
        return -1;
    out->cid = cid;
    out->cid_len = (size_t)(bar - cid);
    out->json = bar + 1;
    out->json_len = len - (size_t)(out->json - entry);
    return 0;
}
