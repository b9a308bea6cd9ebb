/*
 * fill.c - loading hot mailboxes from storage. See fill.h.
 */
#include "fill.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"

void fill_entries_free(char **entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
}

char **fill_entries(const json_t *arr, const char *id_key, const char *cid,
                    size_t *n)
{
    size_t count = json_array_size(arr);
    char **out = calloc(count ? count : 1, sizeof(char *));
    if (!out)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        const json_t *item = json_array_get(arr, i);
        const json_t *id_field = json_object_get(item, id_key);
        const char *ids = json_string_value(id_field);
        const char *item_cid =
            cid ? cid
                : json_string_value(json_object_get(item, "conversation_id"));
        int64_t id;
        char *text = json_dumps(item, JSON_COMPACT);
        if (!ids || !item_cid || !text ||
            ids_parse(ids, json_string_length(id_field), &id) ||
            !(out[i] = hot_entry(id, item_cid, text))) {
            free(text);
            fill_entries_free(out, i);
            return NULL;
        }
        free(text);
    }
    *n = count;
    return out;
}

/* Storage pages are read one row past the hot window (max + 1 rows): a
 * row beyond max means the list is longer than Redis keeps. Drops that
 * row and returns whether the page held the whole list. */
static bool trim_to_window(json_t *arr, size_t max)
{
    bool complete = json_array_size(arr) <= max;
    if (!complete)
        json_array_remove(arr, max);
    return complete;
}

/* GETs a list page from storage; on STORE_OK *items is a new reference
 * to its checked array of items_key. */
static store_err get_list(cache_node *n, const char *path,
                          const char *items_key, const char *rid,
                          json_t **items)
{
    json_t *o = NULL;
    int64_t seq;
    store_err err = store_get(n, path, rid, &o);
    if (!err)
        err = store_parse_list(o, items_key, items, &seq);
    json_decref(o);
    return err;
}

/* Loads meta and the conversation window from storage into Redis. */
static store_err load_user(cache_node *n, int64_t uid, const char *rid,
                           hot_meta *meta)
{
    store_err err = store_meta(n, uid, rid, meta);
    if (err)
        return err;
    char path[128];
    snprintf(path, sizeof(path),
             "/internal/users/%" PRId64 "/conversations?limit=%d&offset=0", uid,
             HOT_CONVS_MAX + 1);
    json_t *arr = NULL;
    err = get_list(n, path, "conversations", rid, &arr);
    if (err)
        return err;
    bool complete = trim_to_window(arr, HOT_CONVS_MAX);
    size_t ne = 0;
    char **entries = fill_entries(arr, "last_message_id", NULL, &ne);
    if (entries)
        hot_load_user(n->hot, uid, meta, complete, entries, ne);
    fill_entries_free(entries, ne);
    json_decref(arr);
    return STORE_OK;
}

store_err fill_meta_locked(cache_node *n, int64_t uid, const char *rid,
                           hot_meta *meta)
{
    hot_result hr = hot_get_meta(n->hot, uid, meta);
    if (hr == HOT_HIT)
        return STORE_OK;
    if (hr == HOT_DOWN)
        return store_meta(n, uid, rid, meta);
    metrics_count(n->metrics, "cache_misses_total",
                  "Hot mailbox misses (user loaded from storage)", 1);
    return load_user(n, uid, rid, meta);
}

store_err fill_meta(cache_node *n, int64_t uid, const char *rid, hot_meta *meta)
{
    if (hot_get_meta(n->hot, uid, meta) == HOT_HIT)
        return STORE_OK;
    locks_acquire(n->locks, uid);
    store_err err = fill_meta_locked(n, uid, rid, meta);
    locks_release(n->locks, uid);
    return err;
}

store_err fill_messages(cache_node *n, int64_t uid, const char *cid,
                        const char *rid)
{
    locks_acquire(n->locks, uid);
    hot_meta meta;
    store_err err = fill_meta_locked(n, uid, rid, &meta);
    json_t *arr = NULL;
    if (!err) {
        char path[192];
        snprintf(path, sizeof(path),
                 "/internal/users/%" PRId64
                 "/conversations/%s/messages?limit=%d&offset=0",
                 uid, cid, HOT_MSGS_MAX + 1);
        err = get_list(n, path, "messages", rid, &arr);
    }
    if (!err) {
        bool complete = trim_to_window(arr, HOT_MSGS_MAX);
        size_t ne = 0;
        char **entries = fill_entries(arr, "message_id", cid, &ne);
        if (entries)
            hot_load_msgs(n->hot, uid, cid, complete, entries, ne);
        fill_entries_free(entries, ne);
    }
    locks_release(n->locks, uid);
    json_decref(arr);
    return err;
}
