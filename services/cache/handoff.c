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

/* How long a ring change's clean-up waits for calls still running under
 * an older ring, ms. A fill ends within milliseconds unless storage
 * stalls; a call that outlasts the bound forgets its user's hot mailbox
 * when it ends (owner_forget_if_replaced). */
#define HANDOFF_DRAIN_MS 250

/* Bytes of imported key names remembered: past this, a key is refused
 * (its user then starts cold). */
#define HANDOFF_IMPORTED_BYTES (64 << 20)

/* Names of the keys restored for one change, NUL-terminated back to
 * back, and of their users' base keys: what a change that is called off
 * leaves here, unlinked exactly (a scan of the whole keyspace would take
 * seconds on a large Redis, and a ring install waits for it). The base
 * keys cover whatever else of those users the node holds (a read that
 * ran on under an older ring, after that ring's clean-up scanned past
 * its keys): without its meta, none of a user's keys is read. */
typedef struct key_list {
    char *names;
    size_t len, cap;   /* bytes */
    size_t n;          /* names */
    int64_t last_user; /* whose base keys were added last; 0: none */
    /* The users of those keys, for the ring changes' clean-up, which
     * keeps them: their change comes later. */
    int64_t *users;
    size_t nusers, users_cap;
} key_list;

struct handoff {
    pthread_rwlock_t barrier;

    pthread_mutex_t lock; /* guards the gate */
    ring_t *next;         /* the ring being handed over to, or NULL */
    int64_t gate_started_ms;
    int64_t gate_until_ms;

    /* Orders imports against each other, against ring installs and
     * against the clean-up scans: an import lands before the ring it
     * prepared comes (and is kept or dropped with the others then), or
     * is refused, and never while a scan runs. Guards the fields
     * below. */
    pthread_mutex_t import_lock;
    int64_t installed_epoch; /* of the newest ring installed */
    /* The change (epoch, attempt) the imported keys are for, and their
     * names; attempts are ordered (router admin.c). */
    int64_t imported_epoch, imported_attempt;
    key_list imported;
};

static void keys_clear(key_list *l);

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
    keys_clear(&h->imported);
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

/* Appends a key name; -1 when full or out of memory. */
static int keys_add(key_list *l, const char *key, size_t klen)
{
    if (l->len + klen + 1 > HANDOFF_IMPORTED_BYTES)
        return -1;
    if (l->len + klen + 1 > l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64 * 1024;
        while (cap < l->len + klen + 1)
            cap *= 2;
        char *grown = realloc(l->names, cap);
        if (!grown)
            return -1;
        l->names = grown;
        l->cap = cap;
    }
    memcpy(l->names + l->len, key, klen);
    l->names[l->len + klen] = '\0';
    l->len += klen + 1;
    l->n++;
    return 0;
}

/* Appends a user (a user may come twice, in two imports). */
static int users_add(key_list *l, int64_t uid)
{
    if (l->nusers == l->users_cap) {
        size_t cap = l->users_cap ? 2 * l->users_cap : 1024;
        int64_t *grown = realloc(l->users, cap * sizeof(*grown));
        if (!grown)
            return -1;
        l->users = grown;
        l->users_cap = cap;
    }
    l->users[l->nusers++] = uid;
    return 0;
}

/* Remembers a restored key and, when its user differs from the last
 * key's (a user's keys come one after another), the user and its base
 * keys. */
static int remember_key(key_list *l, int64_t uid, const char *key, size_t klen)
{
    if (uid != l->last_user) {
        char u[HOT_KEY_NAME_MAX], c[HOT_KEY_NAME_MAX], x[HOT_KEY_NAME_MAX];
        hot_user_base_keys(uid, u, c, x);
        if (users_add(l, uid) || keys_add(l, u, strlen(u)) ||
            keys_add(l, c, strlen(c)) || keys_add(l, x, strlen(x)))
            return -1;
        l->last_user = uid;
    }
    return keys_add(l, key, klen);
}

static int cmp_user(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts the users for has_user. */
static void users_sort(key_list *l)
{
    if (l->nusers > 1)
        qsort(l->users, l->nusers, sizeof(*l->users), cmp_user);
}

static bool has_user(const key_list *l, int64_t uid)
{
    return l->nusers > 0 && bsearch(&uid, l->users, l->nusers,
                                    sizeof(*l->users), cmp_user) != NULL;
}

static void keys_clear(key_list *l)
{
    free(l->names);
    free(l->users);
    *l = (key_list){0};
}

/* Forgets the imported keys and their change (import_lock held): the
 * keys stay when their change came, or are already gone. */
static void forget_imported(handoff *h)
{
    keys_clear(&h->imported);
    h->imported_epoch = h->imported_attempt = 0;
}

/* Deletes every imported key and forgets them (import_lock held): they
 * were copied for a change that is not coming. */
static void drop_imported(cache_node *n, const char *why)
{
    handoff *h = n->handoff;
    if (h->imported.n) {
        long dropped =
            hot_unlink_keys(n->hot, h->imported.names, h->imported.n);
        log_msg("info",
                "hot: dropped %ld of %zu keys imported for epoch %lld "
                "(attempt %lld): %s",
                dropped, h->imported.n, (long long)h->imported_epoch,
                (long long)h->imported_attempt, why);
    }
    forget_imported(h);
}

void handoff_ring_coming(cache_node *n, const ring_t *next)
{
    handoff *h = n->handoff;
    pthread_mutex_lock(&h->import_lock);
    if (next->epoch > h->installed_epoch)
        h->installed_epoch = next->epoch;
    /* Attempt 0 names no change (a failover's ring, or a router that
     * sends no attempt): copies are kept only for the change that
     * published the ring. */
    if (h->imported_epoch == next->epoch && next->attempt != 0 &&
        h->imported_attempt == next->attempt) {
        /* The change they were copied for: the users stay, now owned. */
        forget_imported(h);
    } else if (h->imported_epoch != 0 && h->imported_epoch <= next->epoch) {
        /* Another ring of that epoch (a failover, or an attempt other
         * than theirs), or one past it: another node may have changed
         * those users since. Dropped before next is current, when no
         * call can reach them here yet (the ring in force gives them to
         * others). */
        drop_imported(n, "another ring came");
    }
    pthread_mutex_unlock(&h->import_lock);
}

/* The imported key names, sorted, for the clean-up to look up. */
typedef struct name_index {
    const char **names;
    size_t n;
} name_index;

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Indexes l's names; -1 when out of memory. */
static int index_names(const key_list *l, name_index *ix)
{
    *ix = (name_index){0};
    if (l->n == 0)
        return 0;
    ix->names = malloc(l->n * sizeof(*ix->names));
    if (!ix->names)
        return -1;
    const char *p = l->names;
    for (size_t i = 0; i < l->n; i++) {
        ix->names[i] = p;
        p += strlen(p) + 1;
    }
    ix->n = l->n;
    qsort(ix->names, ix->n, sizeof(*ix->names), cmp_name);
    return 0;
}

static bool has_name(const name_index *ix, const char *key, size_t len)
{
    return ix->n > 0 && !memchr(key, '\0', len) &&
           bsearch(&key, ix->names, ix->n, sizeof(*ix->names), cmp_name);
}

typedef struct owner_arg {
    const ring_t *ring;
    const char *self;
    const key_list *imported; /* its users sorted */
    const name_index *names;  /* NULL: keep every key of its users */
} owner_arg;

/* Whether the clean-up drops a key of uid: uid is not owned under the
 * ring in force, and the key was not copied here for a later ring
 * (which then keeps or drops it itself, handoff_ring_coming). Only the
 * copied keys stay: others of such a user (left by a call under an
 * older ring) would be served beside them. */
static bool not_owned(const char *key, size_t len, int64_t uid, void *arg)
{
    const owner_arg *o = arg;
    if (owns(o->ring, o->self, uid))
        return false;
    if (!has_user(o->imported, uid))
        return true;
    return o->names && !has_name(o->names, key, len);
}

static void count_drain_timeouts(cache_node *n, int64_t by)
{
    metrics_count(n->metrics, "cache_ring_drain_timeouts_total",
                  "Ring changes whose clean-up did not wait for every "
                  "call under an older ring",
                  by);
}

void handoff_show_metrics(cache_node *n)
{
    count_drain_timeouts(n, 0);
}

/* Drops the hot keys of every user this node does not own under now
 * (import_lock held: an import waits, or the scan could drop what it
 * restores for a later ring, the one the router prepares once this node
 * installed now or even before). */
/* The ranges of hashes this node does not own under r (a calloc'd
 * array the caller frees, into *out), or -1 when out of memory. */
static int foreign_ranges(cache_node *n, const ring_t *r, ring_range **out)
{
    size_t cap = r->ntokens + 1;
    *out = calloc(cap, sizeof(**out));
    return *out ? ring_foreign_ranges(r, ring_find(r, n->name), *out, cap) : -1;
}

static void drop_not_owned(cache_node *n, const ring_t *now)
{
    ring_range *foreign;
    int nforeign = foreign_ranges(n, now, &foreign);
    if (nforeign < 0) { /* out of memory: nothing may be served as it is */
        free(foreign);
        hot_flush(n->hot);
        return;
    }
    key_list *imported = &n->handoff->imported;
    users_sort(imported);
    name_index names;
    bool indexed = index_names(imported, &names) == 0;
    owner_arg o = {now, n->name, imported, indexed ? &names : NULL};
    bool walked;
    long dropped =
        hot_drop_users(n->hot, foreign, nforeign, not_owned, &o, &walked);
    free(names.names);
    free(foreign);
    if (dropped > 0 || walked)
        log_msg("info",
                "hot: dropped %ld keys of users not owned at epoch %lld (%s)",
                dropped, (long long)now->epoch,
                walked ? "walked the keyspace, index rebuilt"
                       : "from the user index");
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
    /* A call that passed its epoch check under an older ring (a read
     * filling a user it has just lost) may still write that user's keys:
     * the scan waits for such calls, or it could pass those keys before
     * they are written. Bounded, as storage may stall such a call for
     * seconds: one that ends later forgets its user itself
     * (owner_forget_if_replaced). */
    if (ringview_wait_retired(n->ring, old, HANDOFF_DRAIN_MS) != 0) {
        log_msg("warn",
                "hot: calls under an older ring still running after %d ms; "
                "cleaning up for epoch %lld without them",
                HANDOFF_DRAIN_MS, (long long)now->epoch);
        count_drain_timeouts(n, 1);
    }
    pthread_mutex_lock(&h->import_lock);
    drop_not_owned(n, now);
    pthread_mutex_unlock(&h->import_lock);
}

/* ---------------------------------------------------------------- export */

/* Keys on their way to one next owner. */
typedef struct batch {
    json_t *entries;
    size_t bytes;
} batch;

typedef struct export_ctx {
    cache_node *n;
    const ring_t *cur; /* the ring in force, from which next is planned */
    const ring_t *next;
    const char *rid;
    batch batches[RING_NODES_MAX];
    long users_keys, skipped, failed;
} export_ctx;

/* A user this node serves now and next gives to another. Keys of users
 * it no longer owns (the clean-up after a ring change may still be
 * under way) are not its to copy: their owner may have changed them
 * since. */
static bool is_leaving(int64_t uid, void *arg)
{
    const export_ctx *x = arg;
    return owns(x->cur, x->n->name, uid) && !owns(x->next, x->n->name, uid);
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

/* The ring in force (a reference), when it is the one next is planned
 * from: next's epoch less one. A node a heartbeat behind fetches it. */
static const ring_t *ring_before(cache_node *n, const ring_t *next)
{
    for (int tries = 0; tries < 2; tries++) {
        const ring_t *cur = ringview_acquire(n->ring);
        if (cur && cur->epoch == next->epoch - 1)
            return cur;
        bool behind = !cur || cur->epoch < next->epoch - 1;
        ringview_release(n->ring, cur);
        if (!behind || tries > 0)
            break;
        ringview_refresh(n->ring);
    }
    return NULL;
}

/* Gates the users next moves away, copies their keys to their next
 * owners, and answers with what was copied. */
static void export_to(cache_node *n, const ring_t *cur, ring_t *next,
                      const char *rid, hs_reply *rep)
{
    export_ctx *x = calloc(1, sizeof(*x));
    /* The gate owns its own copy: a ring change may free it while the
     * copy below still runs. */
    ring_t *gated = x ? ring_copy(next) : NULL;
    if (!gated) {
        free(x);
        hs_reply_problem(rep, 500, NULL, "out of memory");
        return;
    }
    *x = (export_ctx){.n = n, .cur = cur, .next = next, .rid = rid};
    gate(n, gated);
    /* Who leaves is not this node's under next. */
    ring_range *leaving;
    int nleaving = foreign_ranges(n, next, &leaving);
    long dumped = nleaving < 0 ? -1
                               : hot_dump_users(n->hot, leaving, nleaving,
                                                is_leaving, x, add_key, x);
    free(leaving);
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
    free(x);
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
    if (!next) {
        hs_reply_problem(rep, 400, "Invalid handoff",
                         "body must be {\"ring\": \"<ring JSON>\"}");
        return;
    }
    /* The export runs on a copy: a ring change's clean-up waits for
     * every reference to an older ring (handoff_ring_changed), and an
     * export can take seconds when a target is slow. */
    const ring_t *held = ring_before(n, next);
    ring_t *cur = held ? ring_copy(held) : NULL;
    ringview_release(n->ring, held);
    if (!held)
        hs_reply_problem(rep, 409, "Not the ring before",
                         "the node does not hold the ring of the epoch "
                         "before the one handed over to");
    else if (!cur)
        hs_reply_problem(rep, 500, NULL, "out of memory");
    else
        export_to(n, cur, next, req->request_id, rep);
    ring_free(cur);
    ring_free(next);
}

/* ---------------------------------------------------------------- import */

/* Compares changes (epoch, attempt): attempts are ordered (admin.c). */
static int cmp_change(int64_t e1, int64_t a1, int64_t e2, int64_t a2)
{
    if (e1 != e2)
        return e1 < e2 ? -1 : 1;
    return a1 < a2 ? -1 : a1 > a2;
}

/* Under import_lock: whether an import for (epoch, attempt) may land,
 * making it the change the imported users are for. A later change
 * replaces an earlier one, whose copies go first, whole: a key the later
 * attempt does not send again would otherwise stay as the earlier one
 * copied it. */
static bool import_begin(cache_node *n, int64_t epoch, int64_t attempt)
{
    handoff *h = n->handoff;
    if (epoch <= h->installed_epoch)
        return false; /* late: the ring it prepared, or a newer, is here */
    if (h->imported_epoch != 0) {
        int c =
            cmp_change(epoch, attempt, h->imported_epoch, h->imported_attempt);
        if (c < 0)
            return false; /* a late copy of a change already replaced */
        if (c > 0)
            drop_imported(n, "a later change replaced it");
    }
    h->imported_epoch = epoch;
    h->imported_attempt = attempt;
    return true;
}

/* Readies one copied key for restoring into it (its payload decoded
 * into a buffer the caller frees), unless it belongs to a user this node
 * serves under cur (its copy would overwrite what the node wrote
 * since). */
static int prepare_entry(cache_node *n, const ring_t *cur, const json_t *e,
                         hot_restore_item *it)
{
    handoff *h = n->handoff;
    const char *key = json_string_value(json_object_get(e, "key"));
    const char *dump = json_string_value(json_object_get(e, "dump"));
    const json_t *ttl = json_object_get(e, "ttl");
    int64_t uid;
    if (!key || !dump || !json_is_integer(ttl) || json_integer_value(ttl) < 0)
        return -1;
    size_t klen = json_string_length(json_object_get(e, "key"));
    if (memchr(key, '\0', klen) || hot_key_user(key, klen, &uid) != 0 ||
        (cur && owns(cur, n->name, uid)))
        return -1;
    size_t dlen = strlen(dump);
    unsigned char *raw = malloc(dlen);
    int len = raw ? b64url_decode(dump, dlen, raw, dlen) : -1;
    /* Remembered first: a key restored but not remembered could not be
     * dropped if its change is called off. */
    if (len <= 0 || remember_key(&h->imported, uid, key, klen) != 0) {
        free(raw);
        return -1;
    }
    *it = (hot_restore_item){.key = key,
                             .key_len = klen,
                             .payload = (const char *)raw,
                             .payload_len = (size_t)len,
                             .ttl_ms = json_integer_value(ttl)};
    return 0;
}

/* Restores the entries of one import in one pipeline; returns how many
 * were. */
static size_t restore_entries(cache_node *n, const ring_t *cur,
                              const json_t *entries)
{
    size_t total = json_array_size(entries), k = 0, i;
    hot_restore_item *items = calloc(total ? total : 1, sizeof(*items));
    if (!items)
        return 0;
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        k += prepare_entry(n, cur, e, &items[k]) == 0;
    }
    long restored = k ? hot_restore(n->hot, items, k) : 0;
    for (i = 0; i < k; i++)
        free((void *)items[i].payload);
    free(items);
    return restored > 0 ? (size_t)restored : 0;
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
    size_t restored = 0;
    pthread_mutex_lock(&h->import_lock);
    bool open = import_begin(n, json_integer_value(epoch),
                             attempt ? json_integer_value(attempt) : 0);
    if (open) {
        /* Stable while import_lock is held: a newer ring waits for it
         * before it becomes current (handoff_ring_coming). */
        const ring_t *cur = ringview_acquire(n->ring);
        restored = restore_entries(n, cur, entries);
        ringview_release(n->ring, cur);
    }
    pthread_mutex_unlock(&h->import_lock);
    size_t total = json_array_size(entries);
    json_decref(body);
    if (!open) {
        hs_reply_problem(rep, 409, "Late import",
                         "this node holds a ring of that epoch or newer, or "
                         "took copies for a later change: the import was "
                         "not applied");
        return;
    }
    hs_reply_json(rep, 200,
                  json_pack("{s:I,s:I}", "restored", (json_int_t)restored,
                            "refused", (json_int_t)(total - restored)));
}
