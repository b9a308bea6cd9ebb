/*
 * routes.c - handlers of the router: GET /internal/ring publishes the
 * ring of this epoch, POST /internal/heartbeat records that a cache node
 * is alive and tells it the current epoch, so a node that lags refreshes
 * its ring.
 */
#include "routes.h"

#include <time.h>

#include "heartbeat.h"
#include "log.h"

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void handle_ring(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    hs_reply_raw(rep, 200, "application/json", r->ring_json, r->ring_json_len);
}

static void log_url_mismatch(const router *r, const heartbeat *hb)
{
    int i = ring_find(r->ring, hb->node.name);
    json_t *fields = json_pack("{s:s, s:s, s:s}", "node", hb->node.name,
                               "announced", hb->node.url, "configured",
                               i >= 0 ? r->ring->nodes[i].url : "");
    log_event("warn", "node announces another URL than ROUTER_NODES gives",
              fields);
    json_decref(fields);
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
    members_result res = members_heartbeat(
        &r->members, hb.node.name, hb.node.url, hb.epoch, monotonic_ms());
    if (res == MEMBERS_UNKNOWN) {
        hs_reply_problem(rep, 404, "Unknown node",
                         "no node of that name in ROUTER_NODES");
        return;
    }
    if (res == MEMBERS_URL_MISMATCH)
        log_url_mismatch(r, &hb);
    metrics_count(r->metrics, "router_heartbeats_total",
                  "Heartbeats received from cache nodes", 1);
    hs_reply_json(rep, 200,
                  json_pack("{s:I}", "epoch", (json_int_t)r->ring->epoch));
}

const hs_route router_routes[] = {
    {"GET", "/internal/ring", handle_ring, "ring"},
    {"POST", "/internal/heartbeat", handle_heartbeat, "heartbeat"},
};
const size_t router_nroutes = sizeof(router_routes) / sizeof(router_routes[0]);
