/*
 * gateway.h - the gateway's context: everything main wires up once and
 * every request borrows. The gateway holds no user state; it
 * authenticates, validates and forwards each call to the cache node that
 * owns the user.
 */
#ifndef GATEWAY_GATEWAY_H
#define GATEWAY_GATEWAY_H

#include <stdbool.h>

#include "http_client.h"
#include "metrics.h"
#include "ratelimit.h"
#include "ringview.h"

struct ev_poller;
typedef struct forward_relay forward_relay;

typedef struct gateway {
    const char *jwt_secret; /* MESSENGER_JWT_SECRET, lives as long as the
                               process environment */
    ringview *ring;         /* the ring published by the router */
    hc_pool *hops;          /* keep-alive HTTP to the cache nodes */
    int hop_connections;    /* GATEWAY_HOP_CONNECTIONS: most connections
                               the relay opens to one cache node */
    hc_pool *router_hops;   /* ring fetches, apart so they never queue
                               behind slow cache calls */
    metrics_t *metrics;
    rl_limiter *send_limit;   /* sends per user (GATEWAY_SEND_RATE/BURST) */
    rl_limiter *anon_limit;   /* failed authentications per client address
                                 (GATEWAY_ANON_RATE/BURST) */
    int trust_proxy;          /* GATEWAY_TRUST_PROXY (auth_trust): whose
                                 X-Real-IP names the client */
    struct ev_poller *events; /* long polls to owner nodes (events.h) */
    forward_relay *relay;     /* asynchronous forwarding (forward.h), or
                                 NULL: a thread per connection blocks */
    bool dev_tokens;          /* MESSENGER_DEV_MODE=1 and GATEWAY_DEV_TOKENS=1:
                                 POST /v1/dev/token mints tokens (static.h) */
} gateway;

#endif
