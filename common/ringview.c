/*
 * ringview.c - cached ring with reference counting and background
 * refresh. See ringview.h.
 *
 * Rings are kept in a short list of entries {ring, refs}. The current one
 * is entries' head. An entry that is no longer current is freed when its
 * last reference is released. All list and counter changes happen under
 * v->lock; fetching happens outside it, serialised by v->fetch_lock so
 * concurrent refreshers share one request.
 */
#include "ringview.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "log.h"
#include "ticker.h"
#include "urllist.h"

typedef struct rv_entry {
    ring_t *ring;
    int refs;
    struct rv_entry *next;
} rv_entry;

struct ringview {
    int nurls;
    char url[URLLIST_MAX][URLLIST_URL_MAX + 16]; /* .../internal/ring */
    hc_pool *pool;
    metrics_t *metrics;
    ringview_changed_fn changed;
    ringview_coming_fn coming;
    void *changed_arg;

    pthread_mutex_t lock; /* guards current, retired, last_ok_ms */
    rv_entry *current;
    /* current's epoch, read without the lock by ringview_is_current,
     * which every call asks as it ends: epochs only grow, so one names
     * one ring. */
    _Atomic int64_t current_epoch;
    rv_entry *retired;      /* no longer current, still referenced */
    pthread_cond_t drained; /* a retired entry lost a reference */
    int64_t last_ok_ms;

    pthread_mutex_t fetch_lock; /* one fetch at a time */
    uint64_t fetches;           /* completed fetches, under fetch_lock */

    ticker *refresher; /* ringview_start's, or NULL */
};

ringview *ringview_new(const char *router_url, hc_pool *pool,
                       metrics_t *metrics, ringview_changed_fn changed,
                       void *arg)
{
    urllist routers;
    char why[256];
    if (urllist_parse(router_url, &routers, why, sizeof(why))) {
        log_msg("error", "router URL list: %s", why);
        return NULL;
    }
    ringview *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->nurls = routers.n;
    for (int i = 0; i < routers.n; i++)
        snprintf(v->url[i], sizeof(v->url[i]), "%s/internal/ring",
                 routers.url[i]);
    v->pool = pool;
    v->metrics = metrics;
    v->changed = changed;
    v->changed_arg = arg;
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_init(&v->fetch_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&v->drained, &attr);
    pthread_condattr_destroy(&attr);
    return v;
}

void ringview_on_coming(ringview *v, ringview_coming_fn coming)
{
    v->coming = coming;
}

static void free_entries(rv_entry *e)
{
    while (e) {
        rv_entry *next = e->next;
        ring_free(e->ring);
        free(e);
        e = next;
    }
}

void ringview_free(ringview *v)
{
    if (!v)
        return;
    ticker_stop(v->refresher);
    free_entries(v->current);
    free_entries(v->retired);
    pthread_mutex_destroy(&v->lock);
    pthread_mutex_destroy(&v->fetch_lock);
    pthread_cond_destroy(&v->drained);
    free(v);
}

/* Installs r as current if its epoch is newer. Takes ownership of r.
 * Called under fetch_lock, so installs never race each other and the
 * current entry cannot be retired during the change callback. */
static void install(ringview *v, ring_t *r)
{
    rv_entry *e = calloc(1, sizeof(*e));
    pthread_mutex_lock(&v->lock);
    v->last_ok_ms = clockms_monotonic();
    rv_entry *old = v->current;
    if (!e || (old && old->ring->epoch >= r->epoch)) {
        pthread_mutex_unlock(&v->lock);
        free(e);
        ring_free(r);
        return;
    }
    if (v->coming) {
        /* Only this thread installs (fetch_lock), so current stays the
         * older ring meanwhile. */
        pthread_mutex_unlock(&v->lock);
        v->coming(v->changed_arg, r);
        pthread_mutex_lock(&v->lock);
        old = v->current;
    }
    e->ring = r;
    v->current = e;
    atomic_store(&v->current_epoch, r->epoch);
    if (old) {
        old->refs++; /* held for the callback below */
        old->next = v->retired;
        v->retired = old;
    }
    pthread_mutex_unlock(&v->lock);

    log_msg("info", "ring epoch %lld with %d nodes", (long long)r->epoch,
            r->nnodes);
    if (v->metrics)
        metrics_gauge(v->metrics, "ring_epoch", "Epoch of the ring in use",
                      (double)r->epoch);
    if (v->changed)
        v->changed(v->changed_arg, old ? old->ring : NULL, r);
    if (old)
        ringview_release(v, old->ring);
}

static int fetch_one(ringview *v, const char *url)
{
    hc_response resp = {0};
    hc_err err = hc_request(v->pool, "GET", url, NULL, NULL, 0, &resp);
    if (err || resp.status != 200) {
        log_msg("warn", "ring fetch from %s failed: %s status %ld", url,
                hc_strerror(err), resp.status);
        hc_response_free(&resp);
        return -1;
    }
    ring_t *r = ring_from_json(resp.body, resp.len);
    hc_response_free(&resp);
    if (!r) {
        log_msg("error", "router sent a ring that does not parse");
        return -1;
    }
    install(v, r);
    return 0;
}

/* Asks every router: a follower may lag the leader by a poll, and
 * install keeps only the newest epoch, so the newest ring wins. */
static int fetch(ringview *v)
{
    int ok = 0;
    for (int i = 0; i < v->nurls; i++)
        ok += fetch_one(v, v->url[i]) == 0;
    return ok ? 0 : -1;
}

int ringview_refresh(ringview *v)
{
    pthread_mutex_lock(&v->lock);
    uint64_t seen = v->fetches;
    pthread_mutex_unlock(&v->lock);

    pthread_mutex_lock(&v->fetch_lock);
    /* Someone else fetched while we waited: their answer is as new as
     * ours would be. */
    pthread_mutex_lock(&v->lock);
    bool shared = v->fetches != seen;
    pthread_mutex_unlock(&v->lock);
    int rc = shared ? 0 : fetch(v);
    pthread_mutex_lock(&v->lock);
    if (!shared)
        v->fetches++;
    bool held = v->current != NULL;
    pthread_mutex_unlock(&v->lock);
    pthread_mutex_unlock(&v->fetch_lock);
    return held ? 0 : (rc ? -1 : 0);
}

const ring_t *ringview_acquire(ringview *v)
{
    pthread_mutex_lock(&v->lock);
    const ring_t *r = NULL;
    if (v->current) {
        v->current->refs++;
        r = v->current->ring;
    }
    pthread_mutex_unlock(&v->lock);
    return r;
}

bool ringview_is_current(ringview *v, const ring_t *r)
{
    return r && r->epoch == atomic_load(&v->current_epoch);
}

void ringview_release(ringview *v, const ring_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&v->lock);
    if (v->current && v->current->ring == r) {
        v->current->refs--;
        pthread_mutex_unlock(&v->lock);
        return;
    }
    rv_entry **link = &v->retired;
    while (*link && (*link)->ring != r)
        link = &(*link)->next;
    rv_entry *dead = NULL;
    if (*link) {
        if (--(*link)->refs == 0) {
            dead = *link;
            *link = dead->next;
            dead->next = NULL;
        }
        /* Only for calls that straddled a ring change. */
        pthread_cond_broadcast(&v->drained);
    }
    pthread_mutex_unlock(&v->lock);
    free_entries(dead);
}

/* Whether no retired ring is referenced but held, by one reference. */
static bool retired_drained(const ringview *v, const ring_t *held)
{
    for (const rv_entry *e = v->retired; e; e = e->next) {
        if (e->ring != held || e->refs > 1)
            return false;
    }
    return true;
}

int ringview_wait_retired(ringview *v, const ring_t *held, int timeout_ms)
{
    struct timespec until = clockms_monotonic_deadline_in(timeout_ms);
    pthread_mutex_lock(&v->lock);
    bool drained = retired_drained(v, held);
    while (!drained &&
           pthread_cond_timedwait(&v->drained, &v->lock, &until) == 0)
        drained = retired_drained(v, held);
    drained = drained || retired_drained(v, held);
    pthread_mutex_unlock(&v->lock);
    return drained ? 0 : -1;
}

bool ringview_is_fresh(ringview *v, int64_t max_age_ms)
{
    pthread_mutex_lock(&v->lock);
    bool fresh =
        v->current && clockms_monotonic() - v->last_ok_ms <= max_age_ms;
    pthread_mutex_unlock(&v->lock);
    return fresh;
}

void ringview_poke(ringview *v)
{
    if (v)
        ticker_poke(v->refresher);
}

static void refresh(void *arg)
{
    ringview_refresh(arg);
}

int ringview_start(ringview *v, int interval_ms)
{
    v->refresher =
        ticker_start(interval_ms > 0 ? interval_ms : 1000, refresh, v);
    return v->refresher ? 0 : -1;
}
