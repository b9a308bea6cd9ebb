/*
 * router - knows the cache nodes, places users on them by consistent
 * hashing and publishes the ring with its epoch. Several routers share
 * one state in PostgreSQL and one of them leads (coord.h); alone, a router
 * leads itself. main reads the configuration, starts the coordinator,
 * serves until SIGTERM and shuts down in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "clockms.h"
#include "config.h"
#include "constants.h"
#include "coord.h"
#include "http_server.h"
#include "log.h"
#include "membership.h"
#include "routes.h"

/* ring.c accepts at most this many virtual tokens per node from JSON:
 * the router must not publish a ring its readers refuse. */
#define ROUTER_VNODES_MAX 4096
/* Handoff calls copy hot mailboxes: allow them time. */
#define ROUTER_HANDOFF_TIMEOUT_MS 15000

typedef struct router_config {
    hs_config http; /* bind, threads, limits, internal secret */
    const char *name, *nodes, *epoch_file, *pg_url;
    int vnodes;
    router_timing timing;
} router_config;

static void read_timing(router_timing *t, config_errors *errs)
{
    t->tick_ms = (int)config_int("ROUTER_TICK_MS", 100, 10, 10000, errs);
    t->leader_lease_ms =
        (int)config_int("ROUTER_LEADER_LEASE_MS", 1500, 100, 60000, errs);
    t->node_lease_ms =
        (int)config_int("ROUTER_NODE_LEASE_MS", 1000, 100, 60000, errs);
    t->dead_ms = (int)config_int("ROUTER_DEAD_MS", 1500, 200, 120000, errs);
    t->birth_grace_ms =
        (int)config_int("ROUTER_BIRTH_GRACE_MS", 30000, 0, 3600000, errs);
    /* A gate that lapses on its timer (no leader named its move) then
     * outlasts the lease of the answer that renewed it last. */
    if (t->node_lease_ms >= HANDOFF_GATE_MS)
        config_error(errs, "ROUTER_NODE_LEASE_MS",
                     "must stay under a cache node's handoff gate "
                     "(HANDOFF_GATE_MS, 5000 ms)");
    /* The margin covers a heartbeat in flight and a tick of lateness. */
    if (t->dead_ms < t->node_lease_ms + 2 * t->tick_ms)
        config_error(errs, "ROUTER_DEAD_MS",
                     "must exceed ROUTER_NODE_LEASE_MS by two ticks, or a "
                     "node could still serve when its users move");
}

static int read_config(router_config *c, ring_node *nodes, int *nnodes)
{
    config_errors errs = {0};
    hs_config_from_env(&c->http, &errs);
    c->http.conn_memory = HTTP_CONN_MEMORY_INTERNAL;
    c->http.port = (int)config_int("ROUTER_PORT", 8200, 1, 65535, &errs);
    c->vnodes = (int)config_int("ROUTER_VNODES", RING_VNODES_DEFAULT, 1,
                                ROUTER_VNODES_MAX, &errs);
    c->name = config_str("ROUTER_NAME", "router");
    c->epoch_file = config_str("ROUTER_EPOCH_FILE", NULL);
    c->pg_url = config_str("ROUTER_PG_URL", "");
    c->nodes = config_str("ROUTER_NODES", "");
    read_timing(&c->timing, &errs);
    char why[512];
    if (!c->name[0] || strlen(c->name) >= sizeof(((router *)0)->name))
        config_error(&errs, "ROUTER_NAME", "1-63 characters");
    if (!c->nodes[0])
        config_error(&errs, "ROUTER_NODES", "required (name=url,name=url)");
    else if (membership_parse(c->nodes, nodes, nnodes, why, sizeof(why)))
        config_error(&errs, "ROUTER_NODES", why);
    return config_report(&errs);
}

static void router_destroy(router *r)
{
    members_destroy(&r->members);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->change_lock);
    free(r->ring_json);
    ring_free(r->ring);
    hc_pool_free(r->hops);
    rstate_free(r->state);
    metrics_free(r->metrics);
}

static int router_init(router *r, const router_config *c)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", c->name);
    r->vnodes = c->vnodes;
    r->timing = c->timing;
    /* Attempt ids of planned changes count on from the wall clock in
     * milliseconds (admin.c): every attempt takes longer than a
     * millisecond, so a router restarted within its lease term starts
     * above its predecessor's last attempt. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    r->attempts = ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000) &
                  ROUTER_ATTEMPT_MASK;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->change_lock, NULL);
    r->metrics = metrics_new("router");
    r->state = rstate_new(c->pg_url, c->epoch_file, c->name);
    r->hops = hc_pool_new(ADMIN_PARALLEL_SOURCES, ROUTER_HANDOFF_TIMEOUT_MS);
    if (members_init(&r->members, clockms_monotonic()) || !r->metrics ||
        !r->state || !r->hops ||
        hc_pool_set_signer(r->hops, c->http.internal_secret))
        return -1;
    return 0;
}

static bool is_ready(void *ctx)
{
    router *r = ctx;
    pthread_mutex_lock(&r->lock);
    bool ready = r->ring != NULL;
    pthread_mutex_unlock(&r->lock);
    return ready;
}

int main(void)
{
    hs_block_signals();
    log_init("router");
    router_config c;
    ring_node nodes[RING_NODES_MAX];
    int nnodes = 0;
    if (read_config(&c, nodes, &nnodes))
        return 2;
    router r;
    if (router_init(&r, &c)) {
        log_msg("error", "router: start-up failed (allocation)");
        router_destroy(&r);
        return 1;
    }
    coord *co = coord_start(&r, nodes, nnodes);
    if (!co) {
        log_msg("error", "router: cannot start the coordinator");
        router_destroy(&r);
        return 1;
    }
    hs_config hc = c.http;
    hc.service = "router";
    hc.routes = router_routes;
    hc.nroutes = router_nroutes;
    hc.ready = is_ready;
    hc.ctx = &r;
    hc.metrics = r.metrics;
    log_msg("info", "router: %s, %s state, %d initial nodes", r.name,
            c.pg_url[0] ? "shared" : "local", nnodes);
    int status = hs_serve_until_signal(&hc) ? 1 : 0;
    coord_stop(co);
    router_destroy(&r);
    return status;
}
