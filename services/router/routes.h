/*
 * routes.h - the router's internal HTTP API (docs/internal-api.md): the
 * published ring, heartbeats of cache nodes, the router's own state and
 * the admin calls that add and remove cache nodes.
 */
#ifndef ROUTER_ROUTES_H
#define ROUTER_ROUTES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "http_server.h"
#include "membership.h"
#include "metrics.h"
#include "ring.h"
#include "state.h"

/* An attempt id of a planned change is the lease term above
 * ROUTER_ATTEMPT_BITS of a count that starts from the wall clock in
 * milliseconds (admin.c, main.c). The count wraps after 49 days; a wrap
 * can only make a target take a later attempt's copies for an earlier
 * one's and refuse them (409), and those users then start cold. */
#define ROUTER_ATTEMPT_BITS 32
#define ROUTER_ATTEMPT_MASK ((INT64_C(1) << ROUTER_ATTEMPT_BITS) - 1)

/* Timings, in milliseconds (README.md, Configuration). */
typedef struct router_timing {
    int tick_ms;         /* how often the coordinator runs */
    int leader_lease_ms; /* the lease a leader takes in the router state */
    int node_lease_ms;   /* the lease a heartbeat answer grants a node */
    int dead_ms;         /* a ring node unheard this long is replaced */
    int birth_grace_ms;  /* a ring node never heard is waited for this long */
} router_timing;

/* What main wires up once and every request borrows. */
typedef struct router {
    char name[64]; /* ROUTER_NAME: identity in the leader lease */
    int vnodes;
    router_timing timing;
    rstate *state;        /* used under change_lock only */
    member_table members; /* last heartbeat of each node, own lock */
    hc_pool *hops;        /* calls to cache nodes (handoff) */
    metrics_t *metrics;

    /* Held by whoever changes the ring or talks to the router state: the
     * coordinator's tick, an admin call. */
    pthread_mutex_t change_lock;

    pthread_mutex_t lock; /* guards the fields below */
    ring_t *ring;         /* the ring in force (NULL before the first) */
    char *ring_json;      /* ring_to_json(ring) */
    bool is_leader;
    int64_t term;            /* of our lease, when leader */
    int64_t lease_end_ms;    /* monotonic: our lease is safe until then */
    int64_t leader_since_ms; /* monotonic: when this leadership began */
    /* The planned change under way (admin.c), 0 and 0 when none: every
     * heartbeat answer names it, so its sources keep their users gated
     * while it runs and let them go once it is called off (cache
     * handoff.h). */
    int64_t planned_epoch, planned_attempt;
    /* Its publish had an unknown outcome. 1: the coordinator's next tick
     * fences that publish off (a new term); 2: fenced, so the tick after
     * reads what is stored for good, installs it and withdraws the plan
     * (coord.c). 0: neither. */
    int plan_unsettled;
    int64_t attempts; /* planned changes begun by this router, counted
                         on from its start time (main.c) */
} router;

extern const hs_route router_routes[];
extern const size_t router_nroutes;

#endif
