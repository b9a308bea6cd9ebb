/*
 * coord.c - leader lease, ring following and failover. See coord.h.
 */
#include "coord.h"

#include <stdlib.h>
#include <string.h>

#include "clockms.h"
#include "log.h"
#include "ticker.h"

struct coord {
    router *r;
    ring_node initial[RING_NODES_MAX];
    int ninitial;
    ticker *ticker;
    int64_t last_tick_ms; /* start of the previous tick; the ticker's own */
};

/* A tick that starts or takes this much of the leader lease late puts
 * every node's lease at risk: worth a line in the log. */
#define COORD_LATE_FRACTION 3

bool coord_is_leader(router *r, int64_t now_ms)
{
    pthread_mutex_lock(&r->lock);
    bool leader = r->is_leader && now_ms < r->lease_end_ms;
    pthread_mutex_unlock(&r->lock);
    return leader;
}

void coord_install(router *r, ring_t *ring)
{
    char *json = ring_to_json(ring);
    if (!json) {
        ring_free(ring);
        return;
    }
    pthread_mutex_lock(&r->lock);
    bool newer = !r->ring || ring->epoch > r->ring->epoch;
    if (newer) {
        ring_t *old = r->ring;
        char *old_json = r->ring_json;
        r->ring = ring;
        r->ring_json = json;
        ring = old;
        json = old_json;
    }
    pthread_mutex_unlock(&r->lock);
    if (newer) {
        log_msg("info", "router: ring epoch %lld in force",
                (long long)r->ring->epoch);
        metrics_gauge(r->metrics, "ring_epoch", "Epoch of the ring in force",
                      (double)r->ring->epoch);
    }
    ring_free(ring);
    free(json);
}

static int64_t current_epoch(router *r)
{
    pthread_mutex_lock(&r->lock);
    int64_t e = r->ring ? r->ring->epoch : 0;
    pthread_mutex_unlock(&r->lock);
    return e;
}

int64_t coord_publish(router *r, const ring_node *nodes, int nnodes,
                      int64_t attempt, int64_t begun_term)
{
    pthread_mutex_lock(&r->lock);
    int64_t epoch = (r->ring ? r->ring->epoch : 0) + 1;
    int64_t term = r->term;
    pthread_mutex_unlock(&r->lock);
    if (!coord_is_leader(r, clockms_monotonic()) ||
        (begun_term != 0 && term != begun_term))
        return 0;
    ring_t *ring = ring_new(epoch, r->vnodes, nodes, nnodes);
    if (ring)
        ring->attempt = attempt;
    char *json = ring ? ring_to_json(ring) : NULL;
    char membership[MEMBERSHIP_STRING_MAX];
    int rc = -1;
    if (json && membership_string(nodes, nnodes, r->vnodes, membership,
                                  sizeof(membership)) >= 0)
        rc = rstate_publish(r->state, term, epoch, json, membership);
    free(json);
    if (rc != 0) {
        ring_free(ring);
        if (rc > 0)
            log_msg("warn", "router: epoch %lld refused: lease lost",
                    (long long)epoch);
        return rc > 0 ? 0 : -1;
    }
    metrics_count(r->metrics, "router_ring_changes_total",
                  "Rings this router published", 1);
    coord_install(r, ring);
    return epoch;
}

/* Alone, the first ring's epoch comes from the epoch file; shared, from
 * the stored epoch (none yet: 1). */
static void publish_initial(coord *c)
{
    router *r = c->r;
    if (rstate_is_shared(r->state)) {
        if (coord_publish(r, c->initial, c->ninitial, 0, 0) > 0)
            log_msg("info", "router: published the first ring from "
                            "ROUTER_NODES");
        return;
    }
    char membership[MEMBERSHIP_STRING_MAX], why[256];
    int64_t epoch;
    if (membership_string(c->initial, c->ninitial, r->vnodes, membership,
                          sizeof(membership)) < 0 ||
        rstate_initial_epoch(r->state, membership, &epoch, why, sizeof(why))) {
        log_msg("error", "router: ROUTER_EPOCH_FILE: unusable");
        return;
    }
    ring_t *ring = ring_new(epoch, r->vnodes, c->initial, c->ninitial);
    if (ring)
        coord_install(r, ring);
}

/* A plan whose publish had an unknown outcome stays announced, so its
 * sources keep their users gated, until the router knows what is stored:
 * one tick takes a new term, so that the publish, if still in flight,
 * can no longer commit; the next one (a statement begun after that)
 * reads the stored ring for good, installed just before; then the plan
 * is withdrawn. fenced: this tick was the fencing one and succeeded. */
static void settle_plan(router *r, bool fenced)
{
    pthread_mutex_lock(&r->lock);
    if (r->plan_unsettled == 2) {
        r->plan_unsettled = 0;
        r->planned_epoch = r->planned_attempt = 0;
    } else if (r->plan_unsettled == 1 && fenced) {
        r->plan_unsettled = 2;
    }
    pthread_mutex_unlock(&r->lock);
}

static bool must_fence(router *r)
{
    pthread_mutex_lock(&r->lock);
    bool fence = r->plan_unsettled == 1;
    pthread_mutex_unlock(&r->lock);
    return fence;
}

/* Reads the lease and the stored ring; updates leadership. */
static void follow(coord *c, int64_t t0)
{
    router *r = c->r;
    rstate_view v;
    bool fence = must_fence(r);
    if (rstate_tick(r->state, r->timing.leader_lease_ms, current_epoch(r),
                    fence, &v)) {
        return; /* keep what we had: the lease end bounds it */
    }
    /* The stored ring first: a leader answers heartbeats with its epoch
     * and its plan, and must never name no plan at an epoch older than
     * one a predecessor published after planning it. */
    if (v.ring) {
        ring_t *ring = ring_from_json(v.ring, strlen(v.ring));
        if (ring)
            coord_install(r, ring);
        else
            log_msg("error", "router: the stored ring does not parse");
        free(v.ring);
    }
    settle_plan(r, fence);
    pthread_mutex_lock(&r->lock);
    bool was = r->is_leader && t0 < r->lease_end_ms;
    r->is_leader = v.is_leader;
    if (v.is_leader) {
        /* Measured from before the request: never later than the
         * database's own expiry. */
        r->lease_end_ms = t0 + r->timing.leader_lease_ms;
        r->term = v.term;
        if (!was)
            r->leader_since_ms = t0;
    }
    pthread_mutex_unlock(&r->lock);
    if (v.is_leader && !was) {
        log_msg("info", "router: %s leads (term %lld)", r->name,
                (long long)v.term);
        metrics_count(r->metrics, "router_leaderships_total",
                      "Times this router became the leader", 1);
    }
}

/* A ring node is dead when unheard for dead_ms; a node never heard since
 * this router started is given birth_grace_ms to appear. */
static bool is_dead(router *r, const char *name, int64_t now)
{
    int64_t age = members_age(&r->members, name, now);
    if (age < 0)
        return now - r->members.start_ms > r->timing.birth_grace_ms;
    return age > r->timing.dead_ms;
}

/* Replaces the first dead node of the ring, if any: one change a tick. */
static void replace_dead(coord *c, int64_t now)
{
    router *r = c->r;
    pthread_mutex_lock(&r->lock);
    ring_t *cur = r->ring ? ring_copy(r->ring) : NULL;
    pthread_mutex_unlock(&r->lock);
    if (!cur)
        return;
    ring_node nodes[RING_NODES_MAX];
    int n = cur->nnodes;
    memcpy(nodes, cur->nodes, sizeof(ring_node) * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (!is_dead(r, nodes[i].name, now))
            continue;
        ring_node spare, dead = nodes[i];
        if (members_pick_spare(&r->members, cur, now, r->timing.node_lease_ms,
                               &spare) == 0) {
            snprintf(spare.slot, sizeof(spare.slot), "%s",
                     ring_node_slot(&dead));
            nodes[i] = spare;
        } else if (n > 1) {
            memmove(&nodes[i], &nodes[i + 1],
                    sizeof(ring_node) * (size_t)(n - i - 1));
            n--;
        } else {
            break; /* the last node: nowhere to move its users */
        }
        int64_t epoch = coord_publish(r, nodes, n, 0, 0);
        if (epoch > 0) {
            log_msg("warn", "router: %s unheard for %d ms: %s%s (epoch %lld)",
                    dead.name, r->timing.dead_ms,
                    n == cur->nnodes ? "standby takes its tokens: "
                                     : "its users move to the ring successors",
                    n == cur->nnodes ? nodes[i].name : "", (long long)epoch);
            metrics_count(r->metrics, "router_failovers_total",
                          "Dead cache nodes replaced or removed", 1);
        }
        break;
    }
    ring_free(cur);
}

/* Logs a tick that came late (the thread was not scheduled) or whose
 * database round trip was slow: either delays the lease renewal, and
 * nodes stop serving once the leader's lease runs out. */
static void note_late(coord *c, int64_t t0, int64_t now)
{
    int64_t gap = c->last_tick_ms ? t0 - c->last_tick_ms : 0;
    int64_t limit = c->r->timing.leader_lease_ms / COORD_LATE_FRACTION;
    c->last_tick_ms = t0;
    if (gap - c->r->timing.tick_ms < limit && now - t0 < limit)
        return;
    json_t *fields = json_pack(
        "{s:I, s:I, s:i}", "tick_gap_ms", (json_int_t)gap, "renewal_ms",
        (json_int_t)(now - t0), "tick_ms", c->r->timing.tick_ms);
    log_event("warn", "router: lease renewal late", fields);
    json_decref(fields);
}

static void tick(coord *c)
{
    router *r = c->r;
    int64_t t0 = clockms_monotonic();
    pthread_mutex_lock(&r->change_lock);
    follow(c, t0);
    int64_t now = clockms_monotonic();
    note_late(c, t0, now);
    if (coord_is_leader(r, now)) {
        if (current_epoch(r) == 0)
            publish_initial(c);
        else if (now - r->leader_since_ms >= r->timing.dead_ms)
            replace_dead(c, now);
    }
    pthread_mutex_unlock(&r->change_lock);
}

static void tick_fn(void *arg)
{
    tick(arg);
}

coord *coord_start(router *r, const ring_node *initial, int ninitial)
{
    coord *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->r = r;
    memcpy(c->initial, initial, sizeof(ring_node) * (size_t)ninitial);
    c->ninitial = ninitial;
    /* The first tick runs before serving, so a router that can reach the
     * state starts with the ring in force. */
    tick(c);
    c->ticker = ticker_start(r->timing.tick_ms, tick_fn, c);
    if (!c->ticker) {
        free(c);
        return NULL;
    }
    return c;
}

void coord_stop(coord *c)
{
    if (!c)
        return;
    ticker_stop(c->ticker);
    free(c);
}
