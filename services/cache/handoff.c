/*
 * handoff.c - planned moves of users between cache nodes. See handoff.h.
 */
#include "handoff.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "b64url.h"
#include "hot_move.h"
#include "log.h"
#include "node.h"

/* Imported users remembered, in all: past this, an import is refused
 * (the users then start cold). */
#define HANDOFF_IMPORTED_MAX (1 << 20)

typedef struct id_list {
    int64_t *ids;
    size_t n, cap;
} id_list;

struct handoff {
    pthread_rwlock_t barrier;

    pthread_mutex_t lock; /* guards the gate */
    ring_t *next;         /* the ring being handed over to, or NULL */
    int64_t gate_started_ms;
    int64_t gate_until_ms;

    /* Orders imports against ring installs: an import either lands
     * before the ring it prepared comes (and is kept or dropped with
     * the other imports then), or is refused. Guards the fields below. */
    pthread_mutex_t import_lock;
    int64_t installed_epoch; /* of the newest ring installed */
    int64_t imported_epoch;  /* the change the imported users are for */
    int64_t imported_attempt;
    id_list imported; /* their ids */
    id_list stale;    /* users of attempts replaced by a later one */
};

handoff *handoff_new(void)
{
    handoff *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A waiting handoff must not starve behind a stream of calls. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&h->barrier, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->import_lock, NULL);
    return h;
}

void handoff_free(handoff *h)
{
    if (!h)
        return;
    ring_free(h->next);
    free(h->imported.ids);
    free(h->stale.ids);
    pthread_rwlock_destroy(&h->barrier);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->import_lock);
    free(h);
}

void handoff_enter(handoff *h)
{
    pthread_rwlock_rdlock(&h->barrier);
}

void handoff_leave(handoff *h)
{
    pthread_rwlock_unlock(&h->barrier);
}

static bool owns(const ring_t *r, const char *self, int64_t uid)
{
    int i = ring_find(r, self);
    return i >= 0 && ring_owner(r, uid) == i;
}

bool handoff_is_moving(handoff *h, const char *self, int64_t uid)
{
    pthread_mutex_lock(&h->lock);
    bool moving = h->next && clockms_monotonic() < h->gate_until_ms &&
                  !owns(h->next, self, uid);
    pthread_mutex_unlock(&h->lock);
    return moving;
}

void handoff_heard(handoff *h, int64_t plan_epoch, int64_t plan_attempt,
                   int64_t ring_epoch, int64_t sent_ms)
{
    pthread_mutex_lock(&h->lock);
    const ring_t *next = h->next;
    if (next && plan_epoch == next->epoch && plan_attempt == next->attempt) {
        int64_t until = sent_ms + HANDOFF_GATE_MS;
        if (until > h->gate_until_ms)
            h->gate_until_ms = until;
    } else if (next && ring_epoch < next->epoch &&
               sent_ms > h->gate_started_ms) {
        /* Asked after the gate began, so after the router announced the
         * change: the leader runs no such change now and never published
         * it, so it was called off and nothing moved. */
        log_msg("info", "handoff to epoch %lld called off: serving again",
                (long long)next->epoch);
        ring_free(h->next);
        h->next = NULL;
    }
    pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------ ring change */

typedef struct drop_arg {
    const ring_t *ring; /* drop users this ring does not give self */
    const char *self;
    const id_list *stale; /* or drop these, sorted ... */
    const id_list *kept;  /* ... unless they are in this one, sorted */
} drop_arg;

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool list_has(const id_list *l, int64_t uid)
{
    return l && l->n && bsearch(&uid, l->ids, l->n, sizeof(int64_t), cmp_id);
}

static void list_sort(id_list *l)
{
    if (l->n)
        qsort(l->ids, l->n, sizeof(int64_t), cmp_id);
}

/* Appends uid; -1 when full (in all, with other) or out of memory. */
static int list_add(id_list *l, const id_list *other, int64_t uid)
{
    if (l->n && l->ids[l->n - 1] == uid)
        return 0; /* a user's keys come one after another */
    if (l->n + other->n >= HANDOFF_IMPORTED_MAX)
        return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        int64_t *grown = realloc(l->ids, cap * sizeof(int64_t));
        if (!grown)
            return -1;
        l->ids = grown;
        l->cap = cap;
    }
    l->ids[l->n++] = uid;
    return 0;
}

/* Moves every id of from to the end of to (from ends empty). */
static void list_move(id_list *to, id_list *from)
{
    for (size_t i = 0; i < from->n; i++) {
        id_list none = {0};
        if (list_add(to, &none, from->ids[i]))
            break; /* those left out stay warm: no worse than before */
    }
    from->n = 0;
}

static bool should_drop(int64_t uid, void *arg)
{
    const drop_arg *d = arg;
    if (d->ring)
        return !owns(d->ring, d->self, uid);
    return list_has(d->stale, uid) && !list_has(d->kept, uid);
}

void handoff_ring_coming(cache_node *n, const ring_t *next)
{
    handoff *h = n->handoff;
    id_list stale = {0}, kept = {0};
    pthread_mutex_lock(&h->import_lock);
    if (next->epoch > h->installed_epoch)
        h->installed_epoch = next->epoch;
    if (h->imported.n && h->imported_epoch == next->epoch &&
        h->imported_attempt == next->attempt) {
        kept = h->imported; /* the attempt that won: the users stay */
        memset(&h->imported, 0, sizeof h->imported);
    } else if (h->imported.n && h->imported_epoch <= next->epoch) {
        /* Prepared for a ring that did not come (another of that epoch,
         * or one skipped over): another node may have changed those
         * users since. */
        list_move(&h->stale, &h->imported);
    }
    stale = h->stale;
    memset(&h->stale, 0, sizeof h->stale);
    pthread_mutex_unlock(&h->import_lock);
    if (stale.n) {
        /* Before next is current: until then no call reaches these users
         * here (the ring in force gives them to others). */
        list_sort(&stale);
        list_sort(&kept);
        drop_arg d = {NULL, n->name, &stale, &kept};
        long dropped = hot_drop_users(n->hot, should_drop, &d);
        log_msg("info",
                "hot: dropped %ld keys imported for a change other than "
                "epoch %lld's",
                dropped, (long long)next->epoch);
    }
    free(stale.ids);
    free(kept.ids);
}

void handoff_ring_changed(cache_node *n, const ring_t *old, const ring_t *now)
{
    handoff *h = n->handoff;
    pthread_mutex_lock(&h->lock);
    if (h->next && now->epoch >= h->next->epoch) {
        ring_free(h->next);
        h->next = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (!old)
        return; /* the first ring: Redis was flushed at start */
    drop_arg d = {now, n->name, NULL, NULL};
    long dropped = hot_drop_users(n->hot, should_drop, &d);
    if (dropped > 0)
        log_msg("info",
                "hot: dropped %ld keys of users not owned at epoch "
                "%lld",
                dropped, (long long)now->epoch);
}

/* ---------------------------------------------------------------- export */

/* Keys on their way to one next owner. */
typedef struct batch {
    json_t *entries;
    size_t bytes;
} batch;

typedef struct export_ctx {
    cache_node *n;
    const ring_t *next;
    const char *rid;
    batch batches[RING_NODES_MAX];
    long users_keys, skipped, failed;
} export_ctx;

static bool is_leaving(int64_t uid, void *arg)
{
    const export_ctx *x = arg;
    return !owns(x->next, x->n->name, uid);
}

static int send_batch(export_ctx *x, int target)
{
    batch *b = &x->batches[target];
    if (!b->entries || json_array_size(b->entries) == 0)
        return 0;
    json_t *body = json_pack(
        "{s:I,s:I,s:O}", "epoch", (json_int_t)x->next->epoch, "attempt",
        (json_int_t)x->next->attempt, "entries", b->entries);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char url[sizeof(x->next->nodes[0].url) + 32];
    snprintf(url, sizeof(url), "%s/internal/handoff/import",
             x->next->nodes[target].url);
    hc_response resp = {0};
    hc_err err = text ? hc_request(x->n->hops, "POST", url, NULL, text,
                                   strlen(text), &resp)
                      : HC_ERROR;
    free(text);
    int ok = !err && resp.status == 200;
    if (!ok) {
        x->failed += (long)json_array_size(b->entries);
        log_msg("warn", "handoff: import at %s failed (%s, status %ld)",
                x->next->nodes[target].name, hc_strerror(err), resp.status);
    }
    hc_response_free(&resp);
    json_array_clear(b->entries);
    b->bytes = 0;
    return 0; /* a failed batch only makes its users start cold */
}

static int add_key(const hot_dump *d, void *arg)
{
    export_ctx *x = arg;
    int target = ring_owner(x->next, d->uid);
    size_t cap = d->payload_len / 3 * 4 + 8;
    if (cap > HANDOFF_BATCH_BYTES || d->key_len > 1024) {
        x->skipped++;
        return 0;
    }
    char *enc = malloc(cap);
    int len = enc ? b64url_encode(d->payload, d->payload_len, enc, cap) : -1;
    batch *b = &x->batches[target];
    if (!b->entries)
        b->entries = json_array();
    json_t *e = len > 0 ? json_pack("{s:s%,s:s%,s:I}", "key", d->key,
                                    d->key_len, "dump", enc, (size_t)len, "ttl",
                                    (json_int_t)d->ttl_ms)
                        : NULL;
    free(enc);
    if (!e || !b->entries || json_array_append_new(b->entries, e)) {
        x->skipped++;
        return 0;
    }
    x->users_keys++;
    b->bytes += (size_t)len + d->key_len + 32;
    return b->bytes >= HANDOFF_BATCH_BYTES ? send_batch(x, target) : 0;
}

/* Sets the gate for next (taking it), then waits out the calls already
 * past the ownership check. */
static void gate(cache_node *n, ring_t *next)
{
    handoff *h = n->handoff;
    pthread_mutex_lock(&h->lock);
    ring_free(h->next);
    h->next = next;
    h->gate_started_ms = clockms_monotonic();
    h->gate_until_ms = h->gate_started_ms + HANDOFF_GATE_MS;
    pthread_mutex_unlock(&h->lock);
    pthread_rwlock_wrlock(&h->barrier);
    pthread_rwlock_unlock(&h->barrier);
}

void handoff_handle_export(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    json_t *body = req->body ? json_loadb(req->body, req->body_len,
                                          JSON_REJECT_DUPLICATES, NULL)
                             : NULL;
    const char *text = json_string_value(json_object_get(body, "ring"));
    ring_t *next = text ? ring_from_json(text, strlen(text)) : NULL;
    json_decref(body);
    const ring_t *cur = ringview_acquire(n->ring);
    int64_t cur_epoch = cur ? cur->epoch : 0;
    ringview_release(n->ring, cur);
    if (!next || next->epoch <= cur_epoch) {
        ring_free(next);
        hs_reply_problem(rep, 400, "Invalid handoff",
                         "body must be {\"ring\": \"<ring JSON>\"} with an "
                         "epoch above the node's");
        return;
    }
    export_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        ring_free(next);
        hs_reply_problem(rep, 500, NULL, "out of memory");
        return;
    }
    ring_t *gated = ring_copy(next);
    if (!gated) {
        ring_free(next);
        free(x);
        hs_reply_problem(rep, 500, NULL, "out of memory");
        return;
    }
    x->n = n;
    x->next = next;
    x->rid = req->request_id;
    /* The gate owns its own copy: a ring change may free it while the
     * copy below still runs. */
    gate(n, gated);
    long dumped = hot_dump_users(n->hot, is_leaving, x, add_key, x);
    for (int t = 0; t < next->nnodes; t++) {
        send_batch(x, t);
        json_decref(x->batches[t].entries);
    }
    log_msg("info",
            "handoff to epoch %lld: %ld keys copied, %ld left behind, "
            "%ld failed",
            (long long)next->epoch, x->users_keys, x->skipped, x->failed);
    hs_reply_json(rep, 200,
                  json_pack("{s:I,s:I,s:I,s:b}", "keys",
                            (json_int_t)x->users_keys, "skipped",
                            (json_int_t)x->skipped, "failed",
                            (json_int_t)x->failed, "redis_ok", dumped >= 0));
    ring_free(next);
    free(x);
}

/* ---------------------------------------------------------------- import */

/* Under import_lock: whether an import for (epoch, attempt) may land,
 * making it the change the imported users are for. */
static bool import_begin(handoff *h, int64_t epoch, int64_t attempt)
{
    if (epoch <= h->installed_epoch)
        return false; /* late: the ring it prepared, or a newer, is here */
    if (h->imported.n &&
        (h->imported_epoch != epoch || h->imported_attempt != attempt))
        list_move(&h->stale, &h->imported); /* a retry replaced them */
    h->imported_epoch = epoch;
    h->imported_attempt = attempt;
    return true;
}

static int restore_entry(cache_node *n, const json_t *e)
{
    handoff *h = n->handoff;
    const char *key = json_string_value(json_object_get(e, "key"));
    const char *dump = json_string_value(json_object_get(e, "dump"));
    const json_t *ttl = json_object_get(e, "ttl");
    int64_t uid;
    if (!key || !dump || !json_is_integer(ttl) || json_integer_value(ttl) < 0)
        return -1;
    size_t klen = json_string_length(json_object_get(e, "key"));
    size_t dlen = strlen(dump);
    unsigned char *raw = malloc(dlen);
    int len = raw ? b64url_decode(dump, dlen, raw, dlen) : -1;
    int rc = -1;
    /* Remembered first: a key restored but not remembered could not be
     * dropped if its change is called off. */
    if (len > 0 && hot_key_user(key, klen, &uid) == 0 &&
        list_add(&h->imported, &h->stale, uid) == 0)
        rc = hot_restore(n->hot, key, klen, (const char *)raw, (size_t)len,
                         json_integer_value(ttl));
    free(raw);
    return rc;
}

void handoff_handle_import(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    handoff *h = n->handoff;
    json_t *body = req->body ? json_loadb(req->body, req->body_len,
                                          JSON_REJECT_DUPLICATES, NULL)
                             : NULL;
    const json_t *epoch = json_object_get(body, "epoch");
    const json_t *attempt = json_object_get(body, "attempt");
    const json_t *entries = json_object_get(body, "entries");
    if (!json_is_integer(epoch) || json_integer_value(epoch) < 1 ||
        (attempt &&
         (!json_is_integer(attempt) || json_integer_value(attempt) < 0)) ||
        !json_is_array(entries)) {
        json_decref(body);
        hs_reply_problem(rep, 400, "Invalid import",
                         "body must be {\"epoch\": N, \"attempt\": A, "
                         "\"entries\": [...]}");
        return;
    }
    size_t restored = 0, i;
    const json_t *e;
    pthread_mutex_lock(&h->import_lock);
    bool open = import_begin(h, json_integer_value(epoch),
                             attempt ? json_integer_value(attempt) : 0);
    if (open) {
        json_array_foreach(entries, i, e)
        {
            restored += restore_entry(n, e) == 0;
        }
    }
    pthread_mutex_unlock(&h->import_lock);
    size_t total = json_array_size(entries);
    json_decref(body);
    if (!open) {
        hs_reply_problem(rep, 409, "Ring already installed",
                         "this node holds a ring of that epoch or newer: "
                         "the import is late and was not applied");
        return;
    }
    hs_reply_json(rep, 200,
                  json_pack("{s:I,s:I}", "restored", (json_int_t)restored,
                            "refused", (json_int_t)(total - restored)));
}
