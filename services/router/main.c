/*
 * router - knows the cache nodes, places users on them by consistent
 * hashing and publishes the ring with its epoch. main reads the
 * configuration, settles the epoch (epochfile.c), builds the ring once,
 * serves until SIGTERM and shuts down in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "epochfile.h"
#include "http_server.h"
#include "constants.h"
#include "log.h"
#include "membership.h"
#include "routes.h"

/* ring.c accepts at most this many virtual tokens per node from JSON:
 * the router must not publish a ring its readers refuse. */
#define ROUTER_VNODES_MAX 4096

typedef struct router_config {
    hs_config http; /* bind, threads, limits, internal secret */
    const char *nodes, *epoch_file;
    int vnodes;
} router_config;

static int read_config(router_config *c, ring_node *nodes, int *nnodes)
{
    config_errors errs = {0};
    hs_config_from_env(&c->http, &errs);
    c->http.port = (int)config_int("ROUTER_PORT", 8200, 1, 65535, &errs);
    c->vnodes = (int)config_int("ROUTER_VNODES", RING_VNODES_DEFAULT, 1,
                                ROUTER_VNODES_MAX, &errs);
    c->epoch_file = config_str("ROUTER_EPOCH_FILE", NULL);
    c->nodes = config_str("ROUTER_NODES", "");
    char why[512];
    if (!c->nodes[0])
        config_error(&errs, "ROUTER_NODES", "required (name=url,name=url)");
    else if (membership_parse(c->nodes, nodes, nnodes, why, sizeof(why)))
        config_error(&errs, "ROUTER_NODES", why);
    return config_report(&errs);
}

static void router_destroy(router *r)
{
    if (r->ring)
        members_destroy(&r->members);
    free(r->ring_json);
    ring_free(r->ring);
    metrics_free(r->metrics);
}

/* Settles the epoch and builds the ring and its JSON. Returns 0, or -1
 * after logging why. */
static int router_init(router *r, const router_config *c,
                       const ring_node *nodes, int nnodes)
{
    memset(r, 0, sizeof(*r));
    char membership[MEMBERSHIP_STRING_MAX];
    char why[512] = "membership too long";
    int64_t epoch;
    if (membership_string(nodes, nnodes, c->vnodes, membership,
                          sizeof(membership)) < 0 ||
        epochfile_resolve(c->epoch_file, membership, &epoch, why,
                          sizeof(why))) {
        log_msg("error", "router: ROUTER_EPOCH_FILE: %s", why);
        return -1;
    }
    r->metrics = metrics_new("router");
    r->ring = ring_new(epoch, c->vnodes, nodes, nnodes);
    if (!r->metrics || !r->ring || members_init(&r->members, r->ring)) {
        ring_free(r->ring);
        r->ring = NULL;
        log_msg("error", "router: out of memory building the ring");
        return -1;
    }
    r->ring_json = ring_to_json(r->ring);
    if (!r->ring_json) {
        log_msg("error", "router: out of memory serialising the ring");
        return -1;
    }
    r->ring_json_len = strlen(r->ring_json);
    metrics_gauge(r->metrics, "ring_epoch", "Epoch of the ring in use",
                  (double)epoch);
    return 0;
}

static bool is_ready(void *ctx)
{
    const router *r = ctx;
    return r->ring_json != NULL;
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
    if (router_init(&r, &c, nodes, nnodes)) {
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
    log_msg("info", "router: epoch %lld, %d nodes", (long long)r.ring->epoch,
            nnodes);
    int status = hs_serve_until_signal(&hc) ? 1 : 0;
    router_destroy(&r);
    return status;
}
