/*
 * forward.c - one public call forwarded to the owner cache node, with
 * ring refreshes and bounded retries. See forward.h.
 *
 * The ring reference is held only while the target is picked: the URL
 * and epoch are copied out, so a slow node call never pins an old ring.
 */
#include "forward.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "constants.h"
#include "log.h"

/* Pause before retrying when a refresh brought no newer epoch: the
 * router has not published the change yet (a node just died or joined),
 * and an immediate retry would meet the same refusal. Short enough to
 * stay far below the client's patience, three of them included. */
#define FORWARD_RETRY_PAUSE_MS 50

/* Where one attempt goes and at which epoch. A ring node URL (< 128
 * bytes) plus a path built by routes.c (< 512) always fits. */
typedef struct target {
    char url[1024];
    int64_t epoch;
} target;

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) +
           (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Picks the owner of the user on the current ring, fetching a ring
 * first if none is held yet. Returns 0, or -1 when there is no ring. */
static int pick_target(gateway *g, const forward_call *c, target *t)
{
    const ring_t *r = ringview_acquire(g->ring);
    if (r == NULL) {
        ringview_refresh(g->ring);
        r = ringview_acquire(g->ring);
    }
    if (r == NULL)
        return -1;
    const ring_node *owner = &r->nodes[ring_owner(r, c->user_id)];
    int len = snprintf(t->url, sizeof(t->url), "%s%s", owner->url, c->path);
    t->epoch = r->epoch;
    ringview_release(g->ring, r);
    return len < 0 || (size_t)len >= sizeof(t->url) ? -1 : 0;
}

static hc_err call_node(gateway *g, const forward_call *c, const target *t,
                        hc_response *resp)
{
    char epoch_line[48];
    char id_line[32 + HS_REQUEST_ID_MAX];
    snprintf(epoch_line, sizeof(epoch_line), "X-Ring-Epoch: %lld",
             (long long)t->epoch);
    snprintf(id_line, sizeof(id_line), "X-Request-Id: %s", c->request_id);
    hc_headers headers = {.lines = {epoch_line, id_line}, .n = 2};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    hc_err err = hc_request(g->hops, c->method, t->url, &headers, c->body,
                            c->body_len, resp);
    metrics_observe_dependency(g->metrics, "cache", seconds_since(&start));
    return err;
}

/* The node's answer is the public one. Its Content-Type is not kept by
 * the HTTP client, but the contract fixes it: errors are problem+json,
 * everything else JSON. */
static void pass_through(hs_reply *rep, const hc_response *resp)
{
    const char *type =
        resp->status >= 400 ? "application/problem+json" : "application/json";
    hs_reply_raw(rep, (int)resp->status, type, resp->body ? resp->body : "",
                 resp->len);
    if (resp->status == 503)
        rep->retry_after_s = 1;
}

/* Decides whether a failed attempt gets another one, counting it
 * against its budget; *why is the detail of the 503 if not. */
static bool may_retry(hc_err err, int *misdirected, int *unreachable,
                      const char **why)
{
    if (err == HC_OK) {
        *why = "the cache node refused the call as misdirected after "
               "every ring refresh";
        return ++*misdirected <= GATEWAY_RING_RETRIES;
    }
    *why = "the cache node that owns the user does not answer";
    return err != HC_TOO_LARGE && ++*unreachable <= 1;
}

static void log_retry(gateway *g, const forward_call *c, const target *t,
                      hc_err err)
{
    metrics_count(g->metrics,
                  err ? "gateway_hop_failures_total"
                      : "gateway_misdirected_total",
                  err ? "Cache node calls that failed to connect or answer"
                      : "Cache node calls refused with 421",
                  1);
    json_t *fields =
        json_pack("{s:s, s:s, s:I, s:s}", "request_id", c->request_id, "url",
                  t->url, "epoch", (json_int_t)t->epoch, "error",
                  err ? hc_strerror(err) : "421 misdirected");
    log_event(err ? "warn" : "info", "retrying a cache node call", fields);
    json_decref(fields);
}

/* Refreshes the ring; pauses when that brought nothing newer than the
 * epoch the failed attempt used. */
static void refresh_ring(gateway *g, int64_t failed_epoch)
{
    ringview_refresh(g->ring);
    const ring_t *r = ringview_acquire(g->ring);
    bool newer = r != NULL && r->epoch > failed_epoch;
    ringview_release(g->ring, r);
    if (!newer) {
        struct timespec pause = {0, FORWARD_RETRY_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

void forward_call_owner(gateway *g, const forward_call *c, hs_reply *rep)
{
    int misdirected = 0, unreachable = 0;
    const char *why = "no ring from the router yet";
    /* Every pass answers, gives up, or spends one retry of a budget:
     * at most GATEWAY_RING_RETRIES + 1 retries in all. */
    for (int pass = 0; pass < GATEWAY_RING_RETRIES + 2; pass++) {
        target t;
        if (pick_target(g, c, &t))
            break;
        hc_response resp = {0};
        hc_err err = call_node(g, c, &t, &resp);
        if (err == HC_OK && resp.status != 421) {
            pass_through(rep, &resp);
            hc_response_free(&resp);
            return;
        }
        hc_response_free(&resp);
        if (!may_retry(err, &misdirected, &unreachable, &why))
            break;
        log_retry(g, c, &t, err);
        refresh_ring(g, t.epoch);
    }
    hs_reply_problem(rep, 503, "Service Unavailable", why);
    rep->retry_after_s = 1;
}
