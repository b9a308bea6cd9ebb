/*
 * lists.c - list reads on the owner node. See lists.h.
 *
 * Every answer carries a sync token holding the mailbox change counter
 * read in the same snapshot as its items (one Redis MULTI/EXEC, or one
 * storage statement), so a client that follows tokens never skips a
 * change and never sees half of one.
 */
#include "lists.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fill.h"
#include "locks.h"
#include "log.h"
#include "store.h"
#include "synctoken.h"

/* Which list a request reads: the conversations of uid, or the messages
 * of uid in cid. */
typedef struct list_ref {
    int64_t uid;
    const char *cid; /* NULL for the conversation list */
} list_ref;

static const char *items_key(const list_ref *l)
{
    return l->cid ? "messages" : "conversations";
}

static void reply_unavailable(hs_reply *rep)
{
    hs_reply_problem(rep, 503, "Storage unavailable",
                     "the mailbox could not be read; retry");
    rep->retry_after_s = 1;
}

/* The list's sync token at seq; 0, or -1 when it cannot be written. */
static int list_token(const list_ref *l, int64_t seq,
                      char token[SYNCTOKEN_MAX + 1])
{
    sync_token t = {.kind = l->cid ? SYNC_MESSAGES : SYNC_CONVERSATIONS,
                    .user_id = l->uid,
                    .seq = seq};
    if (l->cid)
        snprintf(t.conversation_id, sizeof(t.conversation_id), "%s", l->cid);
    return synctoken_encode(&t, token, SYNCTOKEN_MAX + 1) < 0 ? -1 : 0;
}

/* The answer: items (stolen), delta flag, token for seq, has_more. */
static void reply_list(const list_ref *l, json_t *items, bool is_delta,
                       int64_t seq, bool has_more, hs_reply *rep)
{
    char token[SYNCTOKEN_MAX + 1];
    if (!items || list_token(l, seq, token) != 0) {
        json_decref(items);
        hs_reply_problem(rep, 500, "Internal error", "cannot build the list");
        return;
    }
    json_t *body =
        json_pack("{s:o,s:b,s:s,s:b}", items_key(l), items, "is_delta_update",
                  is_delta, "sync_token", token, "has_more", has_more);
    hs_reply_json(rep, 200, body);
}

/* Storage path for a list: prefix "/internal/users/U/conversations[/C/
 * messages]" plus the query. */
static int storage_path(const list_ref *l, const char *query, char *out,
                        size_t cap)
{
    int len = l->cid ? snprintf(out, cap,
                                "/internal/users/%" PRId64
                                "/conversations/%s/messages?%s",
                                l->uid, l->cid, query)
                     : snprintf(out, cap,
                                "/internal/users/%" PRId64 "/conversations?%s",
                                l->uid, query);
    return len < 0 || (size_t)len >= cap ? -1 : 0;
}

/* Reads one page (limit+1 to learn has_more) from storage. */
static store_err storage_page(cache_node *n, const list_ref *l,
                              const char *query, const char *rid,
                              json_t **items, int64_t *seq)
{
    char path[512];
    if (storage_path(l, query, path, sizeof(path)))
        return STORE_BAD;
    json_t *o = NULL;
    store_err err = store_get(n, path, rid, &o);
    if (err)
        return err;
    err = store_parse_list(o, items_key(l), items, seq);
    json_decref(o);
    return err;
}

/* An item as the hot window keeps it: one JSON object, compact, as this
 * node wrote it (hot_entry). A cheap look at its ends catches a damaged
 * entry without parsing it. */
static bool looks_like_object(const char *text)
{
    size_t len = strlen(text);
    return len >= 2 && text[0] == '{' && text[len - 1] == '}';
}

static bool items_look_whole(const hot_page *p, size_t count)
{
    for (size_t i = 0; i < count && i < p->n; i++)
        if (!looks_like_object(p->items[i]))
            return false;
    return true;
}

/* A damaged entry stays until its window is rebuilt: drop the user's hot
 * mailbox (under its lock, as writes do) so the next read loads it
 * again from storage. */
static void forget_damaged(cache_node *n, int64_t uid)
{
    log_msg("warn", "hot window of %" PRId64 " holds a damaged entry: dropped",
            uid);
    locks_acquire(n->locks, uid);
    hot_forget_user(n->hot, uid);
    locks_release(n->locks, uid);
}

/* A list answer written around items that are JSON texts already
 * (checked by items_look_whole when they come from Redis): parsing each
 * into jansson and dumping the page again was the largest cost of a hot
 * read, and changes nothing in the bytes. The same for a delta with
 * nothing new (no items), the most frequent read. False when nothing
 * could be answered (no memory, no token). */
static bool reply_texts(const list_ref *l, char *const *items, size_t n,
                        bool is_delta, int64_t seq, bool has_more,
                        hs_reply *rep)
{
    char token[SYNCTOKEN_MAX + 1];
    if (list_token(l, seq, token) != 0)
        return false;
    size_t len = 128 + strlen(token);
    for (size_t i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    char *body = malloc(len);
    if (!body)
        return false;
    size_t at = (size_t)snprintf(body, len, "{\"%s\":[", items_key(l));
    for (size_t i = 0; i < n; i++) {
        size_t item_len = strlen(items[i]);
        if (i > 0)
            body[at++] = ',';
        memcpy(body + at, items[i], item_len);
        at += item_len;
    }
    at += (size_t)snprintf(
        body + at, len - at,
        "],\"is_delta_update\":%s,\"sync_token\":\"%s\",\"has_more\":%s}",
        is_delta ? "true" : "false", token, has_more ? "true" : "false");
    hs_reply_raw(rep, 200, "application/json", body, at);
    free(body);
    return true;
}

/* The window page behind a full page: one entry more than the page, to
 * learn has_more. */
static hot_page_ask page_ask(const list_ref *l, int page, int size)
{
    return (hot_page_ask){.uid = l->uid,
                          .cid = l->cid,
                          .off = (size_t)page * (size_t)size,
                          .count = (size_t)size + 1};
}

/* Serves a full page from the hot window if it holds it: from ahead
 * (consumed) when given, else read now. */
static bool hot_page_reply(cache_node *n, const list_ref *l, int page, int size,
                           list_ahead *ahead, hs_reply *rep)
{
    hot_page p;
    hot_result hr;
    if (ahead) {
        hr = ahead->res;
        p = ahead->page;
        memset(&ahead->page, 0, sizeof(ahead->page));
    } else {
        hot_page_ask ask = page_ask(l, page, size);
        hot_read_pages(n->hot, &ask, 1, &p, &hr);
    }
    if (hr != HOT_HIT) {
        hot_page_free(&p);
        return false;
    }
    bool holds = p.n == (size_t)size + 1 || p.complete;
    bool damaged = holds && !items_look_whole(&p, size);
    size_t count = p.n < (size_t)size ? p.n : (size_t)size;
    bool answered =
        holds && !damaged &&
        reply_texts(l, p.items, count, false, p.seq, p.n > (size_t)size, rep);
    hot_page_free(&p);
    if (damaged)
        forget_damaged(n, l->uid);
    return answered;
}

static void full_page(cache_node *n, const list_ref *l, int page, int size,
                      const char *rid, list_ahead *ahead, hs_reply *rep)
{
    if (hot_page_reply(n, l, page, size, ahead, rep)) {
        metrics_count(n->metrics, "cache_hits_total",
                      "Reads answered from the hot mailbox", 1);
        return;
    }
    /* A miss on the first pages fills the window for the next reader. */
    if ((size_t)(page + 1) * size <= (l->cid ? HOT_MSGS_MAX : HOT_CONVS_MAX)) {
        hot_meta meta;
        store_err err = l->cid ? fill_messages(n, l->uid, l->cid, rid)
                               : fill_meta(n, l->uid, rid, &meta);
        if (!err && hot_page_reply(n, l, page, size, NULL, rep))
            return;
    }
    char query[96];
    snprintf(query, sizeof(query), "limit=%d&offset=%lld", size + 1,
             (long long)page * size);
    json_t *items = NULL;
    int64_t seq = 0;
    if (storage_page(n, l, query, rid, &items, &seq)) {
        reply_unavailable(rep);
        return;
    }
    bool has_more = json_array_size(items) > (size_t)size;
    if (has_more)
        json_array_remove(items, size);
    reply_list(l, items, false, seq, has_more, rep);
}

/* A delta: items changed after the token (or after a time). If they fit
 * a page, a delta answer; else the full first page. */
static void delta(cache_node *n, const list_ref *l, const list_query *q,
                  const char *rid, hs_reply *rep)
{
    char query[96];
    if (q->has_since) {
        hot_meta meta;
        if (fill_meta(n, l->uid, rid, &meta)) {
            reply_unavailable(rep);
            return;
        }
        if (q->since.seq == meta.seq) { /* nothing changed */
            if (!reply_texts(l, NULL, 0, true, meta.seq, false, rep))
                hs_reply_problem(rep, 500, "Internal error",
                                 "cannot build the list");
            return;
        }
        /* A token above the hot meta is not always from the future: a
         * delta answered by storage carries storage's counter, which
         * runs ahead of Redis's while a write's Redis update is still
         * under way. Storage, never behind, tells the two apart below. */
        snprintf(query, sizeof(query), "limit=%d&since_seq=%" PRId64,
                 q->page_size + 1, q->since.seq);
    } else {
        snprintf(query, sizeof(query), "limit=%d&since_ts=%" PRId64,
                 q->page_size + 1, q->updated_after);
    }
    json_t *items = NULL;
    int64_t seq = 0;
    if (storage_page(n, l, query, rid, &items, &seq)) {
        reply_unavailable(rep);
        return;
    }
    /* More changed than fit a page, or a token newer than the mailbox
     * (from before a restore): the full first page. */
    if (json_array_size(items) > (size_t)q->page_size ||
        (q->has_since && q->since.seq > seq)) {
        json_decref(items);
        full_page(n, l, 0, q->page_size, rid, NULL, rep);
        return;
    }
    reply_list(l, items, true, seq, false, rep);
}

/* Older than a message id: always storage (deep history). */
static void before_page(cache_node *n, const list_ref *l, const list_query *q,
                        const char *rid, hs_reply *rep)
{
    char query[128];
    snprintf(query, sizeof(query), "limit=%d&offset=%lld&before=%" PRId64,
             q->page_size + 1, (long long)q->page * q->page_size, q->before);
    json_t *items = NULL;
    int64_t seq = 0;
    if (storage_page(n, l, query, rid, &items, &seq)) {
        reply_unavailable(rep);
        return;
    }
    bool has_more = json_array_size(items) > (size_t)q->page_size;
    if (has_more)
        json_array_remove(items, q->page_size);
    reply_list(l, items, false, seq, has_more, rep);
}

static bool starts_hot(const list_query *q)
{
    return !q->has_since && !q->has_updated_after && !q->has_before;
}

bool lists_hot_ask(int64_t uid, const char *cid, const list_query *q,
                   hot_page_ask *ask)
{
    if (!starts_hot(q))
        return false;
    list_ref l = {.uid = uid, .cid = cid};
    *ask = page_ask(&l, q->page, q->page_size);
    return true;
}

void lists_read(cache_node *n, int64_t uid, const char *cid,
                const list_query *q, const char *rid, list_ahead *ahead,
                hs_reply *rep)
{
    list_ref l = {.uid = uid, .cid = cid};
    if (starts_hot(q)) {
        full_page(n, &l, q->page, q->page_size, rid, ahead, rep);
        return;
    }
    if (ahead) /* not a read that starts with the window */
        hot_page_free(&ahead->page);
    if (q->has_since || q->has_updated_after)
        delta(n, &l, q, rid, rep);
    else
        before_page(n, &l, q, rid, rep);
}
