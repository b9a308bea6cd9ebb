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

#include "auth.h"
#include "config.h"
#include "gateway.h"
#include "http_server.h"
#include "constants.h"
#include "events.h"
#include "forward.h"
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
    hs_config http; /* bind, port, threads, limits, internal secret */
    const char *router_url, *jwt_secret;
    int hop_pool, hop_connections, jwt_leeway_s;
    int64_t send_rate, send_burst, anon_rate, anon_burst;
    int trust_proxy;
    bool dev_tokens;
    const char *cors_origin; /* NULL: off */
    int events_port;         /* 0: long polls on the main listener */
    int events_threads;
    bool event_loop; /* GATEWAY_EVENT_LOOP: forwards on the listener's
                        threads (forward_loop_ops), not the relay's */
} gateway_config;

/* Threads of the main listener: the gateway's handlers never block
 * (forwards run on each thread's event loop, or on the relay's thread),
 * so one per core serves every connection. */
#define GATEWAY_HTTP_THREADS_DEFAULT 2
/* Connections the relay opens to one cache node, 0: as many as calls in
 * flight. Each is a thread there (a thread per connection); measured
 * caps of 8 and 16 gave no more throughput than none, so none is the
 * default (docs/performance.md). */
#define GATEWAY_HOP_CONNECTIONS_DEFAULT 0

static int read_config(gateway_config *c)
{
    config_errors errs = {0};
    hs_config_from_env(&c->http, &errs);
    c->http.port = (int)config_int("GATEWAY_PORT", 8080, 1, 65535, &errs);
    c->hop_pool = (int)config_int("GATEWAY_HOP_POOL", 64, 1, 4096, &errs);
    c->hop_connections =
        (int)config_int("GATEWAY_HOP_CONNECTIONS",
                        GATEWAY_HOP_CONNECTIONS_DEFAULT, 0, 4096, &errs);
    /* 0: a thread per connection, each blocking on its forward. */
    c->http.threads = (int)config_int(
        "GATEWAY_HTTP_THREADS",
        c->http.threads ? c->http.threads : GATEWAY_HTTP_THREADS_DEFAULT, 0, 64,
        &errs);
    c->router_url = config_str("ROUTER_URL", "http://127.0.0.1:8200");
    c->jwt_secret = config_secret("MESSENGER_JWT_SECRET", &errs);
    c->jwt_leeway_s = (int)config_int("MESSENGER_JWT_LEEWAY_S", JWT_LEEWAY_S, 0,
                                      JWT_LEEWAY_MAX_S, &errs);
    c->send_rate = config_int("GATEWAY_SEND_RATE", GATEWAY_SEND_RATE_DEFAULT, 1,
                              RL_RATE_MAX, &errs);
    c->send_burst = config_int("GATEWAY_SEND_BURST", GATEWAY_SEND_BURST_DEFAULT,
                               1, RL_BURST_MAX, &errs);
    c->anon_rate = config_int("GATEWAY_ANON_RATE", GATEWAY_ANON_RATE_DEFAULT, 1,
                              RL_RATE_MAX, &errs);
    c->anon_burst = config_int("GATEWAY_ANON_BURST", GATEWAY_ANON_BURST_DEFAULT,
                               1, RL_BURST_MAX, &errs);
    c->trust_proxy = (int)config_int("GATEWAY_TRUST_PROXY", 0, 0, 2, &errs);
    c->event_loop = config_int("GATEWAY_EVENT_LOOP", 1, 0, 1, &errs) == 1;
    /* Dev tokens need both switches: a production gateway never runs in
     * development mode, so one stray variable cannot open it. */
    bool dev_mode = config_int("MESSENGER_DEV_MODE", 0, 0, 1, &errs) == 1;
    c->dev_tokens =
        config_int("GATEWAY_DEV_TOKENS", 0, 0, 1, &errs) == 1 && dev_mode;
    c->cors_origin = config_str("GATEWAY_CORS_ORIGIN", "");
    if (!c->cors_origin[0])
        c->cors_origin = NULL;
    c->events_port = (int)config_int("GATEWAY_EVENTS_PORT", 0, 0, 65535, &errs);
    c->events_threads =
        (int)config_int("GATEWAY_EVENTS_THREADS", 2, 1, 64, &errs);
    if (c->events_port && c->events_port == c->http.port)
        config_error(&errs, "GATEWAY_EVENTS_PORT",
                     "must differ from GATEWAY_PORT");
    if (strlen(c->router_url) > ROUTER_URL_MAX)
        config_error(&errs, "ROUTER_URL", "at most 200 characters");
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

static void drain_polls(void *ctx)
{
    gateway *g = ctx;
    ev_poller_drain(g->events);
}

static void abandon_forwards(void *ctx)
{
    gateway *g = ctx;
    forward_relay_abandon(g->relay);
}

static void gateway_destroy(gateway *g)
{
    forward_relay_free(g->relay); /* before the pool and ring it uses */
    ev_poller_free(g->events);    /* before the ring it reads */
    ringview_free(g->ring);       /* stops the refresh thread first */
    hc_pool_free(g->hops);
    hc_pool_free(g->router_hops);
    rl_free(g->send_limit);
    rl_free(g->anon_limit);
    metrics_free(g->metrics);
}

static int gateway_init(gateway *g, const gateway_config *c)
{
    memset(g, 0, sizeof(*g));
    g->jwt_secret = c->jwt_secret;
    g->hop_connections = c->hop_connections;
    g->metrics = metrics_new("gateway");
    g->hops = hc_pool_new(c->hop_pool, GATEWAY_HOP_TIMEOUT_MS);
    g->router_hops = hc_pool_new(ROUTER_HOP_POOL, HOP_TIMEOUT_MS);
    g->send_limit = rl_new(c->send_rate, c->send_burst, RL_SLOTS_DEFAULT);
    g->anon_limit = rl_new(c->anon_rate, c->anon_burst, RL_SLOTS_DEFAULT);
    g->trust_proxy = c->trust_proxy;
    g->dev_tokens = c->dev_tokens;
    if (!g->metrics || !g->hops || !g->router_hops || !g->send_limit ||
        !g->anon_limit)
        return -1;
    /* Cache nodes and the router refuse unsigned internal calls. */
    if (hc_pool_set_signer(g->hops, c->http.internal_secret) ||
        hc_pool_set_signer(g->router_hops, c->http.internal_secret))
        return -1;
    /* Calls to cache nodes are timed by forward.c (retries included);
     * the pool reports only its handles in use. */
    if (hc_pool_set_metrics(g->hops, g->metrics, NULL) ||
        hc_pool_set_metrics(g->router_hops, g->metrics, "router"))
        return -1;
    g->ring =
        ringview_new(c->router_url, g->router_hops, g->metrics, NULL, NULL);
    if (g->ring == NULL)
        return -1;
    g->events = ev_poller_new(g->ring, c->http.internal_secret, g->metrics);
    if (g->events == NULL)
        return -1;
    if (c->http.threads > 0 && (g->relay = forward_relay_new(g)) == NULL)
        return -1;
    return 0;
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
    auth_set_leeway(c.jwt_leeway_s);
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
    hs_config hc[2];
    hc[0] = c.http;
    hc[0].service = "gateway";
    hc[0].routes = gateway_routes;
    hc[0].nroutes = gateway_nroutes;
    hc[0].ready = is_ready;
    hc[0].ctx = &g;
    hc[0].metrics = g.metrics;
    hc[0].allow_suspend = true; /* long polls (events.h) */
    hc[0].stopping = drain_polls;
    hc[0].abandon = abandon_forwards;
    hc[0].cors_origin = c.cors_origin;
    hc[0].loop = c.event_loop && g.relay ? &forward_loop_ops : NULL;
    /* The long-poll listener: an epoll pool too, so a waiting poll is a
     * suspended connection and holds no thread, and polls never queue
     * behind the main listener's traffic. */
    hc[1] = hc[0];
    hc[1].port = c.events_port;
    hc[1].threads = c.events_threads;
    hc[1].epoll_pool = true;
    hc[1].abandon = NULL; /* its polls are answered by drain_polls */
    hc[1].routes = gateway_event_routes;
    hc[1].nroutes = gateway_event_nroutes;
    if (c.dev_tokens)
        log_msg("warn", "development tokens are on: POST /v1/dev/token "
                        "mints a token for any user");
    int status = hs_serve_all_until_signal(hc, c.events_port ? 2 : 1) ? 1 : 0;
    gateway_destroy(&g);
    return status;
}
