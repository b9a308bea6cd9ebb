/*
 * routes.c - handlers of the router: GET /internal/ring publishes the
 * ring of this epoch, POST /internal/heartbeat records that a cache node
 * is alive and tells it the current epoch, so a node that lags refreshes
 * its ring.
 */
#include "routes.h"

#include <time.h>

#include "log.h"
#include "testable.h"

typedef struct heartbeat {
    ring_node node; /* the name and URL the cache node announces */
    int64_t epoch;
} heartbeat;

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses {"name":..,"url":..,"epoch":N} from buf[0..len). Returns 0, or
 * -1 when the body is not that shape (a 400). Pure. */
TESTABLE int heartbeat_parse(const char *buf, size_t len, heartbeat *hb)
{
    if (buf == NULL)
        return -1;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *epoch = json_object_get(root, "epoch");
    int rc = json_is_integer(epoch) && json_integer_value(epoch) >= 0 &&
                     ring_node_from_json(root, &hb->node) == 0
                 ? 0
                 : -1;
    if (rc == 0)
        hb->epoch = json_integer_value(epoch);
    json_decref(root);
    return rc;
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
