/*
 * events.c - waiters of long polls on the owner node. See events.h.
 *
 * A waiter is created by the handler, linked into the registry, and
 * unlinked exactly once, by whoever fires it: a notification, the timer,
 * a wake-all, or the handler itself when it answers at once. Firing
 * marks it and wakes its deferred request if the handler has already
 * deferred it; if not, the handler sees the mark and wakes it itself.
 * The resume function (on a server thread) answers and frees the waiter,
 * which by then nobody else references.
 */
#include "events.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "evquery.h"
#include "fill.h"
#include "log.h"
#include "node.h"
#include "owner.h"
#include "store.h"

#define EVENTS_BUCKETS 1024

typedef struct waiter {
    struct waiter *prev, *next; /* in its bucket, while linked */
    bool linked;
    bool fired;
    hs_deferred *deferred; /* set once the handler deferred */
    int64_t uid;
    int64_t deadline_ms; /* monotonic */
    events_query q;
    cache_node *node;
} waiter;

struct events {
    pthread_mutex_t mu; /* guards buckets, every waiter's links, fired,
                           deferred, and stopping */
    pthread_cond_t cv;  /* signalled to stop the timer */
    waiter *buckets[EVENTS_BUCKETS];
    bool draining; /* the server stops: answer polls at once */
    bool stopping; /* the timer thread ends */
    pthread_t timer;
    bool has_timer;
};

static size_t bucket_of(int64_t uid)
{
    uint64_t h = (uint64_t)uid * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 54) % EVENTS_BUCKETS;
}

/* ---- the registry (callers hold e->mu) ------------------------------ */

static void link_waiter(events_t *e, waiter *w)
{
    waiter **head = &e->buckets[bucket_of(w->uid)];
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
    w->linked = true;
}

static void unlink_waiter(events_t *e, waiter *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        e->buckets[bucket_of(w->uid)] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->linked = false;
}

/* Unlinks and marks w; wakes its request if already deferred. After
 * this only the handler (not yet deferred) or the resume function
 * touches w. */
static void fire_locked(events_t *e, waiter *w)
{
    unlink_waiter(e, w);
    w->fired = true;
    if (w->deferred)
        hs_wake(w->deferred);
}

void events_notify(events_t *e, int64_t uid)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    waiter *w = e->buckets[bucket_of(uid)];
    while (w) {
        waiter *next = w->next;
        if (w->uid == uid)
            fire_locked(e, w);
        w = next;
    }
    pthread_mutex_unlock(&e->mu);
}

static void fire_matching(events_t *e, bool all, int64_t now)
{
    pthread_mutex_lock(&e->mu);
    for (size_t b = 0; b < EVENTS_BUCKETS; b++) {
        waiter *w = e->buckets[b];
        while (w) {
            waiter *next = w->next;
            if (all || w->deadline_ms <= now)
                fire_locked(e, w);
            w = next;
        }
    }
    pthread_mutex_unlock(&e->mu);
}

void events_wake_all(events_t *e)
{
    if (e != NULL)
        fire_matching(e, true, 0);
}

void events_drain(events_t *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    pthread_mutex_unlock(&e->mu);
    events_wake_all(e);
}

static void *timer_main(void *arg)
{
    events_t *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += EVENTS_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &until);
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->mu);
        fire_matching(e, false, clockms_monotonic());
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

events_t *events_new(void)
{
    events_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->timer, NULL, timer_main, e) != 0) {
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return NULL;
    }
    e->has_timer = true;
    return e;
}

void events_free(events_t *e)
{
    if (e == NULL)
        return;
    events_wake_all(e);
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->has_timer)
        pthread_join(e->timer, NULL);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* ---- answers -------------------------------------------------------- */

static void reply_unavailable(hs_reply *rep)
{
    hs_reply_problem(rep, 503, "Storage unavailable",
                     "the mailbox could not be read; retry");
    rep->retry_after_s = 1;
}

/* The events answer: conversations and messages stolen. */
static void reply_events(int64_t uid, int64_t seq, json_t *convs, json_t *msgs,
                         bool is_delta, bool has_more, hs_reply *rep)
{
    sync_token t = {.kind = SYNC_CONVERSATIONS, .user_id = uid, .seq = seq};
    char token[SYNCTOKEN_MAX + 1];
    if (!convs || !msgs || synctoken_encode(&t, token, sizeof(token)) < 0) {
        json_decref(convs);
        json_decref(msgs);
        hs_reply_problem(rep, 500, "Internal error",
                         "cannot build the events answer");
        return;
    }
    hs_reply_json(rep, 200,
                  json_pack("{s:b,s:s,s:o,s:o,s:b}", "is_delta_update",
                            is_delta, "sync_token", token, "conversations",
                            convs, "messages", msgs, "has_more", has_more));
}

/* GET on storage and the list in its answer. */
static store_err storage_list(cache_node *n, const char *path, const char *key,
                              const char *rid, json_t **items, int64_t *seq)
{
    json_t *o = NULL;
    store_err err = store_get(n, path, rid, &o);
    if (err)
        return err;
    err = store_parse_list(o, key, items, seq);
    json_decref(o);
    return err;
}

/* Too much changed for a delta (or the token is from the future): the
 * conversation list's first page, and no messages. */
static void reply_full(cache_node *n, int64_t uid, const char *rid,
                       hs_reply *rep)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/internal/users/%" PRId64 "/conversations?limit=%d&offset=0", uid,
             EVENTS_CONVS_MAX + 1);
    json_t *convs = NULL;
    int64_t seq = 0;
    if (storage_list(n, path, "conversations", rid, &convs, &seq)) {
        reply_unavailable(rep);
        return;
    }
    bool has_more = json_array_size(convs) > EVENTS_CONVS_MAX;
    if (has_more)
        json_array_remove(convs, EVENTS_CONVS_MAX);
    reply_events(uid, seq, convs, json_array(), false, has_more, rep);
}

/* Appends the messages of cid changed after since to msgs. Returns 0,
 * 1 when they would pass EVENTS_MSGS_MAX, -1 when storage failed. */
static int add_messages(cache_node *n, int64_t uid, const char *cid,
                        int64_t since, const char *rid, json_t *msgs)
{
    size_t room = EVENTS_MSGS_MAX - json_array_size(msgs);
    char path[256];
    snprintf(path, sizeof(path),
             "/internal/users/%" PRId64
             "/conversations/%s/messages?limit=%zu&since_seq=%" PRId64,
             uid, cid, room + 1, since);
    json_t *items = NULL;
    int64_t seq = 0;
    if (storage_list(n, path, "messages", rid, &items, &seq))
        return -1;
    int rc = json_array_size(items) > room ? 1 : 0;
    if (rc == 0 && json_array_extend(msgs, items))
        rc = -1;
    json_decref(items);
    return rc;
}

/* The delta after since. Its token is the seq of the conversation read:
 * every change up to it is in the conversations found, and their
 * messages are read after, so they hold at least those changes (a later
 * one may show twice, which clients dedupe by message_id). */
static void reply_delta(cache_node *n, int64_t uid, int64_t since,
                        const char *rid, hs_reply *rep)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/internal/users/%" PRId64
             "/conversations?limit=%d&since_seq=%" PRId64,
             uid, EVENTS_CONVS_MAX + 1, since);
    json_t *convs = NULL;
    int64_t seq = 0;
    if (storage_list(n, path, "conversations", rid, &convs, &seq)) {
        reply_unavailable(rep);
        return;
    }
    if (seq < since) { /* a token newer than the mailbox */
        json_decref(convs);
        reply_full(n, uid, rid, rep);
        return;
    }
    json_t *msgs = json_array();
    int rc = json_array_size(convs) > EVENTS_CONVS_MAX || !msgs ? 1 : 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(convs); i++) {
        const char *cid = json_string_value(
            json_object_get(json_array_get(convs, i), "conversation_id"));
        rc = cid ? add_messages(n, uid, cid, since, rid, msgs) : -1;
    }
    if (rc == 0) {
        reply_events(uid, seq, convs, msgs, true, false, rep);
        return;
    }
    json_decref(convs);
    json_decref(msgs);
    if (rc < 0)
        reply_unavailable(rep);
    else
        reply_full(n, uid, rid, rep);
}

/* What a poll answers now: nothing new (an empty delta at its own
 * token), the delta, or the full first page. A token above the hot meta
 * goes to storage too: storage's counter, which answers carry, runs
 * ahead of the meta while a write's Redis update is under way, and only
 * storage tells such a token from one newer than the mailbox. */
static void answer(cache_node *n, int64_t uid, const events_query *q,
                   const char *rid, const ring_t *ring, hs_reply *rep)
{
    hot_meta meta;
    int rc = fill_meta(n, uid, rid, &meta);
    /* The claim ends here (taken by check_owner): the fill is the only
     * write to Redis, and the storage reads below may take seconds that
     * a handoff waiting for the barrier must not wait. */
    owner_release(n, ring, uid);
    if (rc) {
        reply_unavailable(rep);
        return;
    }
    if (meta.seq == q->since.seq)
        reply_events(uid, meta.seq, json_array(), json_array(), true, false,
                     rep);
    else
        reply_delta(n, uid, q->since.seq, rid, rep);
}

/* ---- the handler ---------------------------------------------------- */

/* Serves uid only if this node owns it at the caller's epoch (a ring
 * change while waiting makes a resumed poll answer 421). On 0 the call
 * holds its claim in *ring (owner.h) until owner_release: what it loads
 * into Redis meanwhile is fenced like any other call's, so a fill cannot
 * land after a handoff copied or dropped the user. */
static int check_owner(cache_node *n, const hs_request *req, int64_t uid,
                       const ring_t **ring, hs_reply *rep)
{
    own_result own = owner_check(n, hs_header(req, "X-Ring-Epoch"), uid, ring);
    if (own != OWN_OK) {
        owner_reply_refusal(n, own, rep);
        return -1;
    }
    return 0;
}

static void resume_poll(hs_request *req, void *arg, hs_reply *rep)
{
    waiter *w = arg;
    const ring_t *ring;
    if (check_owner(w->node, req, w->uid, &ring, rep) == 0)
        answer(w->node, w->uid, &w->q, req->request_id, ring, rep);
    free(w);
}

static int parse_poll(const hs_request *req, int64_t *uid, events_query *q,
                      hs_reply *rep)
{
    const char *u = req->params[0];
    char why[160];
    if (ids_parse_user(u, strlen(u), uid)) {
        hs_reply_problem(rep, 404, "Not found", "no such user");
        return -1;
    }
    if (evquery_parse(hs_query(req, "since"), hs_query(req, "timeout"), *uid, q,
                      why, sizeof(why))) {
        hs_reply_problem(rep, 400, "Bad Request", why);
        return -1;
    }
    return 0;
}

/* Unlinks w if nobody fired it yet; the handler owns it after. */
static void withdraw(events_t *e, waiter *w)
{
    pthread_mutex_lock(&e->mu);
    unlink_waiter(e, w);
    pthread_mutex_unlock(&e->mu);
}

/* Registered, nothing new yet: suspend until fired. */
static void defer_poll(events_t *e, hs_request *req, waiter *w, hs_reply *rep)
{
    hs_deferred *d = hs_defer(req, resume_poll, w);
    if (d == NULL) { /* the server cannot suspend: answer now */
        withdraw(e, w);
        resume_poll(req, w, rep); /* claims again, frees w */
        return;
    }
    pthread_mutex_lock(&e->mu);
    w->deferred = d;
    bool fired = w->fired || e->draining;
    pthread_mutex_unlock(&e->mu);
    if (fired)
        hs_wake(d);
}

void events_handle(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    int64_t uid;
    events_query q;
    const ring_t *ring;
    if (parse_poll(req, &uid, &q, rep) || check_owner(n, req, uid, &ring, rep))
        return;
    waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        owner_release(n, ring, uid);
        hs_reply_problem(rep, 503, "Service Unavailable", "out of memory");
        return;
    }
    w->uid = uid;
    w->q = q;
    w->node = n;
    w->deadline_ms = clockms_monotonic() + (int64_t)q.timeout_s * 1000;
    /* Register first, then read the counter: see events.h. */
    pthread_mutex_lock(&n->events->mu);
    link_waiter(n->events, w);
    pthread_mutex_unlock(&n->events->mu);
    hot_meta meta;
    if (fill_meta(n, uid, req->request_id, &meta) || meta.seq != q.since.seq ||
        q.timeout_s == 0) {
        withdraw(n->events, w);
        answer(n, uid, &q, req->request_id, ring, rep);
        free(w);
        return;
    }
    /* A waiting poll holds no claim: a handoff must not wait for it. */
    owner_release(n, ring, uid);
    defer_poll(n->events, req, w, rep);
}
