/*
 * routes.h - the router's internal HTTP API (docs/internal-api.md): the
 * published ring and the heartbeats of cache nodes.
 */
#ifndef ROUTER_ROUTES_H
#define ROUTER_ROUTES_H

#include <stddef.h>

#include "http_server.h"
#include "membership.h"
#include "metrics.h"
#include "ring.h"

/* What main wires up once and every request borrows. The ring and its
 * JSON never change while the process runs, so handlers read them
 * without a lock; heartbeats go to members, which has its own. */
typedef struct router {
    ring_t *ring;    /* the membership at this epoch, owned */
    char *ring_json; /* ring_to_json(ring), owned, served as is */
    size_t ring_json_len;
    member_table members; /* last heartbeat of each node */
    metrics_t *metrics;
} router;

extern const hs_route router_routes[];
extern const size_t router_nroutes;

#endif
