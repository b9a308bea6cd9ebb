/*
 * routes.c - handlers of the router: GET /internal/ring publishes the
 * ring in force, POST /internal/heartbeat records that a cache node is
 * alive and, on the leader, grants it a lease; GET /internal/router tells
 * who leads and what each node last said. The admin calls are in
 * admin.c.
 */
#include "routes.h"

#include <string.h>
#include <time.h>

#include "admin.h"
#include "clockms.h"
#include "coord.h"
#include "heartbeat.h"
#include "log.h"

static void handle_ring(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    pthread_mutex_lock(&r->lock);
    if (r->ring_json)
        hs_reply_raw(rep, 200, "application/json", r->ring_json,
                     strlen(r->ring_json));
    pthread_mutex_unlock(&r->lock);
    if (!rep->status) {
        hs_reply_problem(rep, 503, "No ring yet",
                         "no router has published a ring yet");
        rep->retry_after_s = 1;
    }
}

/* The lease a heartbeat answer grants: none unless we lead, and never
 * past our own lease, so a successor's grace covers every lease given. */
static int64_t lease_to_grant(router *r, int64_t now)
{
    pthread_mutex_lock(&r->lock);
    int64_t left = r->is_leader ? r->lease_end_ms - now : 0;
    pthread_mutex_unlock(&r->lock);
    int64_t lease = r->timing.node_lease_ms;
    if (left < lease)
        lease = left > 0 ? left : 0;
    return lease;
}

static void handle_heartbeat(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    heartbeat hb;
    if (heartbeat_parse(req->body, req->body_len, &hb)) {
        hs_reply_problem(rep, 400, "Invalid heartbeat",
                         "body must be {\"name\":string,\"url\":string,"
                         "\"epoch\":integer >= 0}");
        return;
    }
    int64_t now = clockms_monotonic();
    if (members_heartbeat(&r->members, hb.node.name, hb.node.url, hb.epoch,
                          now)) {
        hs_reply_problem(rep, 503, "Too many nodes",
                         "the router's node table is full");
        return;
    }
    metrics_count(r->metrics, "router_heartbeats_total",
                  "Heartbeats received from cache nodes", 1);
    int64_t lease = lease_to_grant(r, now);
    /* One look at both: a node must never see the plan withdrawn while
     * the ring it prepared is not in force yet. */
    pthread_mutex_lock(&r->lock);
    int64_t epoch = r->ring ? r->ring->epoch : 0;
    int64_t plan_epoch = r->planned_epoch, plan_attempt = r->planned_attempt;
    pthread_mutex_unlock(&r->lock);
    hs_reply_json(rep, 200,
                  json_pack("{s:I,s:b,s:I,s:s,s:I,s:I}", "epoch",
                            (json_int_t)epoch, "leader", lease > 0, "lease_ms",
                            (json_int_t)lease, "router", r->name,
                            "handoff_epoch", (json_int_t)plan_epoch,
                            "handoff_attempt", (json_int_t)plan_attempt));
}

static void handle_router(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    int64_t now = clockms_monotonic();
    bool leader = coord_is_leader(r, now);
    pthread_mutex_lock(&r->lock);
    json_t *ring = r->ring_json ? json_loads(r->ring_json, 0, NULL) : NULL;
    int64_t term = r->term;
    pthread_mutex_unlock(&r->lock);
    hs_reply_json(rep, 200,
                  json_pack("{s:s,s:b,s:I,s:o,s:o,s:b}", "name", r->name,
                            "leader", leader, "term", (json_int_t)term, "ring",
                            ring ? ring : json_null(), "nodes",
                            members_to_json(&r->members, now), "shared",
                            rstate_is_shared(r->state)));
}

const hs_route router_routes[] = {
    {"GET", "/internal/ring", handle_ring, "ring"},
    {"POST", "/internal/heartbeat", handle_heartbeat, "heartbeat"},
    {"GET", "/internal/router", handle_router, "router"},
    {"POST", "/internal/admin/nodes", admin_add_node, "admin_add"},
    {"POST", "/internal/admin/nodes/{}/remove", admin_remove_node,
     "admin_remove"},
};
const size_t router_nroutes = sizeof(router_routes) / sizeof(router_routes[0]);
