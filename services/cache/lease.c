/*
 * lease.c - heartbeats and the lease. See lease.h.
 */
#include "lease.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "handoff.h"
#include "http_client.h"
#include "log.h"
#include "node.h"
#include "ticker.h"
#include "urllist.h"

/* A heartbeat that takes longer than this is lost: the next one follows
 * soon, and a slow router must not hold the thread past a lease. */
#define LEASE_HEARTBEAT_TIMEOUT_MS 300

typedef struct beat {
    struct lease *owner;
    char url[URLLIST_URL_MAX + 32];
    ticker *ticker;
} beat;

struct lease {
    struct cache_node *n;
    char body_prefix[512]; /* {"name":..,"url":.., */
    hc_pool *pool;
    _Atomic int64_t valid_until_ms; /* monotonic */
    _Atomic int64_t last_lost_log_ms;
    int nbeats;
    beat beats[URLLIST_MAX];
};

bool lease_is_valid(const lease *l)
{
    return clockms_monotonic() < atomic_load(&l->valid_until_ms);
}

static int64_t held_epoch(struct cache_node *n)
{
    const ring_t *r = ringview_acquire(n->ring);
    int64_t e = r ? r->epoch : 0;
    ringview_release(n->ring, r);
    return e;
}

static void extend(lease *l, int64_t until)
{
    int64_t cur = atomic_load(&l->valid_until_ms);
    while (until > cur &&
           !atomic_compare_exchange_weak(&l->valid_until_ms, &cur, until)) {
    }
}

/* The leader's word on planned changes (handoff.h); a router that says
 * nothing of them leaves the gate to its timer. */
static void heard_plan(lease *l, const json_t *answer, int64_t ring_epoch,
                       int64_t sent)
{
    const json_t *pe = json_object_get(answer, "handoff_epoch");
    const json_t *pa = json_object_get(answer, "handoff_attempt");
    if (json_is_integer(pe) && json_is_integer(pa))
        handoff_heard(l->n->handoff, json_integer_value(pe),
                      json_integer_value(pa), ring_epoch, sent);
}

/* One heartbeat to b's router; extends the lease if the leader grants
 * one and we hold its epoch. */
static void beat_once(lease *l, beat *b)
{
    char body[600];
    snprintf(body, sizeof(body), "%s\"epoch\":%lld}", l->body_prefix,
             (long long)held_epoch(l->n));
    int64_t sent = clockms_monotonic();
    hc_response resp = {0};
    hc_err err =
        hc_request(l->pool, "POST", b->url, NULL, body, strlen(body), &resp);
    json_t *j = !err && resp.status == 200
                    ? json_loadb(resp.body, resp.len, 0, NULL)
                    : NULL;
    hc_response_free(&resp);
    const json_t *epoch = json_object_get(j, "epoch");
    const json_t *lease_ms = json_object_get(j, "lease_ms");
    if (json_is_integer(epoch) && json_is_integer(lease_ms)) {
        int64_t e = json_integer_value(epoch);
        /* Fetched by the ring's own thread: installing a ring runs the
         * clean-up scan of Redis (handoff.h), which on a large Redis
         * outlasts a lease; done here it would stop the heartbeats. */
        if (e > held_epoch(l->n))
            ringview_poke(l->n->ring);
        int64_t ms = json_integer_value(lease_ms);
        /* The gate first: a lapsed gate renewed after the lease would
         * let calls through in between. */
        if (ms > 0)
            heard_plan(l, j, e, sent);
        if (ms > 0 && held_epoch(l->n) >= e)
            extend(l, sent + ms);
    }
    json_decref(j);
}

/* Logs, at most once a second, that the lease ran out. */
static void note_expiry(lease *l)
{
    int64_t now = clockms_monotonic();
    if (lease_is_valid(l) || now - atomic_load(&l->last_lost_log_ms) < 1000)
        return;
    atomic_store(&l->last_lost_log_ms, now);
    log_msg("warn", "lease: no leading router granted a lease: not serving");
}

static void beat_tick(void *arg)
{
    beat *b = arg;
    beat_once(b->owner, b);
    note_expiry(b->owner);
}

lease *lease_start(struct cache_node *n, const char *router_urls,
                   const char *self_url, int interval_ms,
                   const char *internal_secret)
{
    urllist routers;
    char why[256];
    if (urllist_parse(router_urls, &routers, why, sizeof(why))) {
        log_msg("error", "ROUTER_URL: %s", why);
        return NULL;
    }
    lease *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->n = n;

    json_t *id = json_pack("{s:s,s:s}", "name", n->name, "url", self_url);
    char *text = id ? json_dumps(id, JSON_COMPACT) : NULL;
    json_decref(id);
    /* The body is this object with the epoch appended at each beat. */
    if (!text || strlen(text) + 1 >= sizeof(l->body_prefix)) {
        free(text);
        free(l);
        return NULL;
    }
    snprintf(l->body_prefix, sizeof(l->body_prefix), "%.*s,",
             (int)strlen(text) - 1, text);
    free(text);
    l->pool = hc_pool_new(routers.n + 1, LEASE_HEARTBEAT_TIMEOUT_MS);
    if (!l->pool || hc_pool_set_signer(l->pool, internal_secret)) {
        lease_stop(l);
        return NULL;
    }
    for (int i = 0; i < routers.n; i++) {
        beat *b = &l->beats[l->nbeats];
        b->owner = l;
        snprintf(b->url, sizeof(b->url), "%s/internal/heartbeat",
                 routers.url[i]);
        b->ticker = ticker_start(interval_ms, beat_tick, b);
        if (!b->ticker) {
            lease_stop(l);
            return NULL;
        }
        l->nbeats++;
    }
    return l;
}

void lease_stop(lease *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->nbeats; i++)
        ticker_stop(l->beats[i].ticker);
    hc_pool_free(l->pool);
    free(l);
}
