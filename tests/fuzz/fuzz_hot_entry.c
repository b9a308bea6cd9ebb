/*
 * fuzz_hot_entry.c - libFuzzer target for hot_entry and hot_entry_split,
 * the members of the hot windows that a cache node writes to Redis and
 * reads back (hot.c take_items).
 *
 * Two properties. Any bytes Redis could hand back either split into
 * parts that rebuild exactly those bytes, or are refused. And an entry
 * built from the input's parts, "<id>\n<cid>\n<json>", splits back into
 * the same id, conversation id and JSON.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hot_entry.h"

/* The input as an entry read back from Redis. */
static void check_split(const char *data, size_t size)
{
    hot_entry_parts p;

    if (hot_entry_split(data, size, &p) != 0)
        return;
    if (p.id < 0 || p.cid != data + HOT_ENTRY_ID_DIGITS + 1 ||
        p.json != p.cid + p.cid_len + 1 || p.json + p.json_len != data + size ||
        p.json_len < 1)
        abort();
    char *cid = strndup(p.cid, p.cid_len);
    char *json = strndup(p.json, p.json_len);
    if (cid == NULL || json == NULL)
        abort();
    /* JSON with a NUL byte cannot be rebuilt from a C string. */
    if (strlen(json) == p.json_len) {
        char *again = hot_entry(p.id, cid, json);
        if (again == NULL || strlen(again) != size ||
            memcmp(again, data, size) != 0)
            abort();
        free(again);
    }
    free(cid);
    free(json);
}

/* The input as the parts of an entry to write. */
static void check_build(const char *data, size_t size)
{
    char *buf = strndup(data, size);
    if (buf == NULL)
        return;
    char *cid = strchr(buf, '\n');
    char *json = cid ? strchr(cid + 1, '\n') : NULL;
    if (json != NULL) {
        *cid++ = '\0';
        *json++ = '\0';
        int64_t id = strtoll(buf, NULL, 10);
        char *entry = hot_entry(id, cid, json);
        hot_entry_parts p;
        if (entry != NULL &&
            (hot_entry_split(entry, strlen(entry), &p) != 0 || p.id != id ||
             p.cid_len != strlen(cid) || memcmp(p.cid, cid, p.cid_len) != 0 ||
             p.json_len != strlen(json) ||
             memcmp(p.json, json, p.json_len) != 0))
            abort();
        free(entry);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_split((const char *)data, size);
    check_build((const char *)data, size);
    return 0;
}
