/*
 * cache - a cache node: owns a share of the users by the ring, serialises
 * their writes, keeps their hot mailboxes in its own Redis and writes
 * through to storage. main reads the configuration, wires the modules
 * together, serves until SIGTERM and shuts down in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "http_server.h"
#include "constants.h"
#include "handoff.h"
#include "lease.h"
#include "log.h"
#include "outbox.h"
#include "owner.h"
#include "placement.h"
#include "routes.h"
#include "store.h"
#include "storeq.h"

typedef struct cache_config {
    hs_config http; /* bind, port, threads, limits, internal secret */
    const char *name, *router_url, *storage_url, *redis_host;
    int node_id, redis_port, redis_pool, hop_pool, heartbeat_ms;
    int store_lanes, store_batch; /* the write queue (storeq.h) */
    char self_url[128];           /* announced to the routers */
    int events_port;              /* 0: long polls on the main listener */
    int events_threads;
    char events_url[128]; /* where the main listener redirects polls */
} cache_config;

static int read_config(cache_config *c)
{
    config_errors errs = {0};
    hs_config_from_env(&c->http, &errs);
    c->http.conn_memory = HTTP_CONN_MEMORY_INTERNAL;
    c->http.port = (int)config_int("CACHE_PORT", 8301, 1, 65535, &errs);
    c->name = config_str("CACHE_NAME", "");
    c->node_id = (int)config_int("CACHE_NODE_ID", 1, 0, ID_NODE_MAX, &errs);
    c->router_url = config_str("ROUTER_URL", "http://127.0.0.1:8200");
    c->storage_url = config_str("STORAGE_URL", "http://127.0.0.1:8400");
    c->redis_host = config_str("REDIS_HOST", "127.0.0.1");
    c->redis_port = (int)config_int("REDIS_PORT", 6379, 1, 65535, &errs);
    c->redis_pool = (int)config_int("CACHE_REDIS_POOL", 16, 1, 256, &errs);
    c->hop_pool = (int)config_int("CACHE_HOP_POOL", 64, 1, 4096, &errs);
    c->store_lanes =
        (int)config_int("CACHE_STORE_LANES", STORE_LANES_DEFAULT, 0, 64, &errs);
    c->store_batch =
        (int)config_int("CACHE_STORE_BATCH", STORE_BATCH_DEFAULT, 1, 64, &errs);
    c->heartbeat_ms =
        (int)config_int("CACHE_HEARTBEAT_MS", 200, 10, 10000, &errs);
    if (!c->name[0] || strlen(c->name) >= sizeof(((ring_node *)0)->name))
        config_error(&errs, "CACHE_NAME", "required, at most 63 characters");
    char fallback[64];
    snprintf(fallback, sizeof(fallback), "http://127.0.0.1:%d", c->http.port);
    const char *url = config_str("CACHE_URL", fallback);
    if (strncmp(url, "http", 4) != 0 || strlen(url) >= sizeof(c->self_url))
        config_error(&errs, "CACHE_URL",
                     "an http:// URL of at most 127 "
                     "characters");
    snprintf(c->self_url, sizeof(c->self_url), "%s", url);
    c->events_port = (int)config_int("CACHE_EVENTS_PORT", 0, 0, 65535, &errs);
    c->events_threads =
        (int)config_int("CACHE_EVENTS_THREADS", 2, 1, 64, &errs);
    if (c->events_port && c->events_port == c->http.port)
        config_error(&errs, "CACHE_EVENTS_PORT", "must differ from CACHE_PORT");
    snprintf(fallback, sizeof(fallback), "http://127.0.0.1:%d", c->events_port);
    url = config_str("CACHE_EVENTS_URL", fallback);
    if (strncmp(url, "http", 4) != 0 || strlen(url) >= sizeof(c->events_url))
        config_error(&errs, "CACHE_EVENTS_URL",
                     "an http:// URL of at most 127 "
                     "characters");
    snprintf(c->events_url, sizeof(c->events_url), "%s",
             c->events_port ? url : "");
    return config_report(&errs);
}

/* The ring changed: the hot mailboxes of users this node lost go, so it
 * never serves one that another owner changed meanwhile (handoff.h). */
static void ring_changed(void *arg, const ring_t *old, const ring_t *now)
{
    cache_node *n = arg;
    handoff_ring_changed(n, old, now);
    /* Waiting polls re-check ownership: a user that moved answers 421
     * and its gateway asks the new owner. */
    if (old && old->epoch != now->epoch)
        events_wake_all(n->events);
}

static void ring_coming(void *arg, const ring_t *next)
{
    handoff_ring_coming(arg, next);
}

static void drain_polls(void *ctx)
{
    cache_node *n = ctx;
    events_drain(n->events);
}

/* Ready: a fresh ring, its Redis, and a lease from the leading router
 * (without one it answers every user's call 503 No lease). Storage is
 * not part of it: hot reads are served without storage, and an outage
 * there shows in storage's own /readyz. */
static bool is_ready(void *ctx)
{
    cache_node *n = ctx;
    return ringview_is_fresh(n->ring, 5000) && hot_ping(n->hot) &&
           n->lease != NULL && lease_is_valid(n->lease);
}

static void node_destroy(cache_node *n)
{
    lease_stop(n->lease);
    ringview_free(n->ring);
    handoff_free(n->handoff);
    events_free(n->events);
    hot_free(n->hot);
    for (int i = 0; i < CACHE_WRITE_QUEUES; i++)
        storeq_free(n->writes[i]);
    placement_free(n->placement);
    hc_pool_free(n->hops);
    locks_free(n->locks);
    ids_destroy(&n->ids);
    metrics_free(n->metrics);
}

static int node_init(cache_node *n, const cache_config *c)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", c->name);
    snprintf(n->storage_url, sizeof(n->storage_url), "%s", c->storage_url);
    snprintf(n->events_url, sizeof(n->events_url), "%s", c->events_url);
    if (ids_init(&n->ids, c->node_id))
        return -1;
    n->metrics = metrics_new("cache");
    n->locks = locks_new();
    n->events = events_new();
    n->handoff = handoff_new();
    n->hops = hc_pool_new(c->hop_pool, HOP_TIMEOUT_MS);
    n->hot = hot_new(c->redis_host, c->redis_port, c->redis_pool, n->metrics);
    n->placement = placement_new();
    for (int i = 0; i < CACHE_WRITE_QUEUES; i++) {
        n->writes[i] =
            storeq_new(c->store_lanes, c->store_batch, STORE_BATCH_BYTES,
                       STORE_QUEUE_WAIT_MS, store_run_writes, n);
        if (!n->writes[i])
            return -1;
    }
    if (!n->metrics || !n->locks || !n->hops || !n->hot || !n->events ||
        !n->handoff || !n->placement)
        return -1;
    /* Storage, the router and peer nodes refuse unsigned internal calls. */
    if (hc_pool_set_signer(n->hops, c->http.internal_secret))
        return -1;
    /* One pool serves storage, the router and peer nodes: calls are
     * timed by where they go. */
    if (hc_pool_set_metrics(n->hops, n->metrics, "cache") ||
        hc_pool_name_dependency(n->hops, c->storage_url, "storage") ||
        hc_pool_name_dependency(n->hops, c->router_url, "router"))
        return -1;
    /* Series a dashboard expects from the first scrape, before any
     * traffic moved them. */
    metrics_count(n->metrics, "cache_hits_total",
                  "Reads answered from the hot mailbox", 0);
    metrics_count(n->metrics, "cache_misses_total",
                  "Hot mailbox misses (user loaded from storage)", 0);
    metrics_count(n->metrics, "cache_storage_write_calls_total",
                  "Calls to storage that carried sends and delivers", 0);
    metrics_count(n->metrics, "cache_storage_writes_total",
                  "Sends and delivers written to storage", 0);
    metrics_count_seconds(n->metrics, "cache_storage_queue_wait_seconds_total",
                          "Time writes waited for a call to storage to "
                          "carry them",
                          0);
    metrics_count(n->metrics, "cache_storage_queue_waits_over_1ms_total",
                  "Writes that waited over 1 ms for a call to storage", 0);
    handoff_show_metrics(n);
    owner_count_forgets(n, 0);
    n->ring = ringview_new(c->router_url, n->hops, n->metrics, ring_changed, n);
    if (!n->ring)
        return -1;
    ringview_on_coming(n->ring, ring_coming);
    return 0;
}

int main(void)
{
    hs_block_signals();
    log_init("cache");
    cache_config c;
    if (read_config(&c))
        return 2;
    cache_node n;
    if (node_init(&n, &c)) {
        log_msg("error", "cache: start-up failed (allocation or config)");
        node_destroy(&n);
        return 1;
    }
    /* Whatever this Redis holds is from an earlier life of the node and
     * may be stale: start empty. */
    if (hot_flush(n.hot))
        log_msg("warn", "redis not reachable at start; serving from storage");
    ringview_refresh(n.ring);
    /* Best effort: until storage answers, writes are queued as one. */
    store_refresh_placement(&n, NULL);
    /* The only thread that installs the rings heartbeats hear of. */
    if (ringview_start(n.ring, 1000)) {
        log_msg("error", "cache: cannot start the ring refresh");
        node_destroy(&n);
        return 1;
    }
    n.lease = lease_start(&n, c.router_url, c.self_url, c.heartbeat_ms,
                          c.http.internal_secret);
    if (!n.lease) {
        log_msg("error", "cache: cannot start heartbeats");
        node_destroy(&n);
        return 1;
    }
    outbox_worker *ob = outbox_start(&n);
    if (!ob) {
        log_msg("error", "cache: cannot start the outbox worker");
        node_destroy(&n);
        return 1;
    }
    hs_config hc[2];
    hc[0] = c.http;
    hc[0].service = "cache";
    hc[0].routes = cache_routes;
    hc[0].nroutes = cache_nroutes;
    hc[0].ready = is_ready;
    hc[0].ctx = &n;
    hc[0].metrics = n.metrics;
    hc[0].allow_suspend = true; /* long polls (events.h) */
    hc[0].stopping = drain_polls;
    log_msg("info", "cache: node %s", c.name);
    /* The long-poll listener: an epoll pool, so a waiting poll is a
     * suspended connection and holds no thread (events.h). */
    hc[1] = hc[0];
    hc[1].port = c.events_port;
    hc[1].threads = c.events_threads;
    hc[1].epoll_pool = true;
    hc[1].routes = cache_event_routes;
    hc[1].nroutes = cache_event_nroutes;
    int status = hs_serve_all_until_signal(hc, c.events_port ? 2 : 1) ? 1 : 0;
    outbox_stop(ob);
    node_destroy(&n);
    return status;
}
