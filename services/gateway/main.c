/*
 * gateway - the public REST API. Stateless: it authenticates, validates
 * and forwards each call to the cache node that owns the user, by the
 * ring it caches from the router. main reads the configuration, fetches
 * the first ring, serves until SIGTERM and shuts down in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "gateway.h"
#include "http_server.h"
#include "constants.h"
#include "log.h"
#include "routes.h"

/* The ring is fetched again this often, so a new epoch reaches every
 * gateway within about a second even when no cache node refuses a call. */
#define RING_REFRESH_MS 1000
/* At start, the first ring is awaited this many times this far apart
 * (5 s in all) before serving anyway, not ready, while the background
 * refresh keeps trying. */
#define RING_START_TRIES 20
#define RING_START_PAUSE_MS 250
/* Ring fetches: a few handles are plenty, they are single-flight. */
#define ROUTER_HOP_POOL 4
/* Room left in ringview's URL buffer (256) for "/internal/ring". */
#define ROUTER_URL_MAX 200

typedef struct gateway_config {
    const char *bind, *router_url, *jwt_secret;
    int port, threads, hop_pool;
} gateway_config;

static void add_error(config_errors *errs, const char *name, const char *reason)
{
    size_t used = strnlen(errs->text, sizeof(errs->text));
    snprintf(errs->text + used, sizeof(errs->text) - used, "%s%s: %s",
             errs->count > 0 ? "; " : "", name, reason);
    errs->count++;
}

static int read_config(gateway_config *c)
{
    config_errors errs = {0};
    c->bind = config_str("MESSENGER_BIND", "127.0.0.1");
    c->threads = (int)config_int("MESSENGER_HTTP_THREADS", 0, 0, 1024, &errs);
    c->port = (int)config_int("GATEWAY_PORT", 8080, 1, 65535, &errs);
    c->hop_pool = (int)config_int("GATEWAY_HOP_POOL", 64, 1, 4096, &errs);
    c->router_url = config_str("ROUTER_URL", "http://127.0.0.1:8200");
    c->jwt_secret = config_str("MESSENGER_JWT_SECRET", "");
    if (strlen(c->router_url) > ROUTER_URL_MAX)
        add_error(&errs, "ROUTER_URL", "at most 200 characters");
    if (!c->jwt_secret[0])
        add_error(&errs, "MESSENGER_JWT_SECRET", "required, not empty");
    return config_report(&errs);
}

/* Ready once a ring is held, however old: a stale ring is safe because
 * cache nodes fence calls by epoch (a refused call refreshes and
 * retries), and gateways must keep serving while the router is away. */
static bool is_ready(void *ctx)
{
    gateway *g = ctx;
    const ring_t *r = ringview_acquire(g->ring);
    ringview_release(g->ring, r);
    return r != NULL;
}

static void gateway_destroy(gateway *g)
{
    ringview_free(g->ring); /* stops the refresh thread first */
    hc_pool_free(g->hops);
    hc_pool_free(g->router_hops);
    metrics_free(g->metrics);
}

static int gateway_init(gateway *g, const gateway_config *c)
{
    memset(g, 0, sizeof(*g));
    g->jwt_secret = c->jwt_secret;
    g->metrics = metrics_new("gateway");
    g->hops = hc_pool_new(c->hop_pool, GATEWAY_HOP_TIMEOUT_MS);
    g->router_hops = hc_pool_new(ROUTER_HOP_POOL, HOP_TIMEOUT_MS);
    if (!g->metrics || !g->hops || !g->router_hops)
        return -1;
    g->ring =
        ringview_new(c->router_url, g->router_hops, g->metrics, NULL, NULL);
    return g->ring ? 0 : -1;
}

/* Waits, bounded, for the first ring. Serving without one is allowed
 * (readyz says not ready, calls answer 503) so a router that starts
 * late does not need the gateways restarted. */
static void await_first_ring(gateway *g)
{
    for (int i = 0; i < RING_START_TRIES; i++) {
        if (ringview_refresh(g->ring) == 0)
            return;
        struct timespec pause = {0, RING_START_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    log_msg("warn", "no ring from the router yet; serving, not ready");
}

int main(void)
{
    hs_block_signals();
    log_init("gateway");
    gateway_config c;
    if (read_config(&c))
        return 2;
    gateway g;
    if (gateway_init(&g, &c)) {
        log_msg("error", "gateway: start-up failed (allocation)");
        gateway_destroy(&g);
        return 1;
    }
    await_first_ring(&g);
    if (ringview_start(g.ring, RING_REFRESH_MS)) {
        log_msg("error", "gateway: cannot start the ring refresh thread");
        gateway_destroy(&g);
        return 1;
    }
    hs_config hc = {.service = "gateway",
                    .bind = c.bind,
                    .port = c.port,
                    .threads = c.threads,
                    .routes = gateway_routes,
                    .nroutes = gateway_nroutes,
                    .ready = is_ready,
                    .ctx = &g,
                    .metrics = g.metrics};
    int status = hs_serve_until_signal(&hc) ? 1 : 0;
    gateway_destroy(&g);
    return status;
}
