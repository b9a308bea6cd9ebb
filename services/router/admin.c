/*
 * admin.c - adding and removing cache nodes with warm handoff. See
 * admin.h.
 */
#include "admin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockms.h"
#include "coord.h"
#include "log.h"
#include "routes.h"

/* One planned change at a time; failovers go on meanwhile (the publish
 * step checks that the epoch did not move under us). */
static pthread_mutex_t admin_lock = PTHREAD_MUTEX_INITIALIZER;

/* A copy of the ring in force, or NULL. */
static ring_t *copy_ring(router *r)
{
    pthread_mutex_lock(&r->lock);
    ring_t *c = r->ring ? ring_copy(r->ring) : NULL;
    pthread_mutex_unlock(&r->lock);
    return c;
}

/* Asks source to hand over the users it loses in next. Returns the
 * node's report (new reference) or an error object. */
static json_t *hand_over(router *r, const ring_node *source, const char *next)
{
    char url[sizeof(source->url) + 32];
    snprintf(url, sizeof(url), "%s/internal/handoff", source->url);
    json_t *body = json_pack("{s:s}", "ring", next);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    hc_response resp = {0};
    hc_err err =
        text ? hc_request(r->hops, "POST", url, NULL, text, strlen(text), &resp)
             : HC_ERROR;
    free(text);
    json_t *report = NULL;
    if (!err && resp.status == 200)
        report = json_loadb(resp.body, resp.len, 0, NULL);
    if (!json_is_object(report)) {
        json_decref(report);
        report = json_pack("{s:s,s:I}", "error", err ? hc_strerror(err) : "",
                           "status", (json_int_t)resp.status);
        log_msg("warn",
                "router: handoff from %s failed (%s, status %ld): "
                "its moving users start cold",
                source->name, err ? hc_strerror(err) : "answer", resp.status);
    }
    hc_response_free(&resp);
    json_object_set_new(report, "node", json_string(source->name));
    return report;
}

typedef struct hand_over_job {
    router *r;
    const ring_node *sources[RING_NODES_MAX];
    json_t *reports[RING_NODES_MAX];
    int n;
    const char *next;
    pthread_mutex_t lock;
    int taken; /* next source to hand over, under lock */
} hand_over_job;

static void *hand_over_worker(void *arg)
{
    hand_over_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->taken < j->n ? j->taken++ : -1;
        pthread_mutex_unlock(&j->lock);
        if (i < 0)
            return NULL;
        j->reports[i] = hand_over(j->r, j->sources[i], j->next);
    }
}

/* Hands over from every source of cur, several at once; appends their
 * reports to reports in ring order. */
static void hand_over_all(router *r, const ring_t *cur,
                          bool (*is_source)(const ring_node *, void *),
                          void *arg, const char *next, json_t *reports)
{
    hand_over_job j = {.r = r, .next = next};
    pthread_mutex_init(&j.lock, NULL);
    for (int i = 0; i < cur->nnodes; i++) {
        if (is_source(&cur->nodes[i], arg))
            j.sources[j.n++] = &cur->nodes[i];
    }
    pthread_t threads[ADMIN_PARALLEL_SOURCES];
    int started = 0;
    while (started < ADMIN_PARALLEL_SOURCES && started < j.n &&
           pthread_create(&threads[started], NULL, hand_over_worker, &j) == 0)
        started++;
    if (started == 0)
        hand_over_worker(&j); /* no thread: this one does them all */
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (int i = 0; i < j.n; i++)
        json_array_append_new(reports, j.reports[i]);
    pthread_mutex_destroy(&j.lock);
}

/* The id of a new attempt at a planned change, and the lease term it
 * begins in: a retry of the same change prepares the same epoch, and its
 * targets must tell the copies of an attempt that was called off from
 * those of a later one. Ordered: the lease term (which grows with every
 * change of leader) above a count of this router's attempts, which
 * starts from the wall clock in milliseconds (main.c), so a router
 * restarted within its own term, or alone with no shared term, does not
 * reuse its predecessor's ids. */
static int64_t new_attempt(router *r, int64_t *term)
{
    pthread_mutex_lock(&r->lock);
    *term = r->term;
    int64_t attempt = (r->term << ROUTER_ATTEMPT_BITS) |
                      (++r->attempts & ROUTER_ATTEMPT_MASK);
    pthread_mutex_unlock(&r->lock);
    return attempt;
}

/* Names the change under way in every heartbeat answer (0, 0: none). */
static void set_plan(router *r, int64_t epoch, int64_t attempt)
{
    pthread_mutex_lock(&r->lock);
    r->planned_epoch = epoch;
    r->planned_attempt = attempt;
    r->plan_unsettled = 0;
    pthread_mutex_unlock(&r->lock);
}

/* After the publish: withdrawn, unless its outcome is unknown (the ring
 * may be stored): then the coordinator withdraws it once it has read
 * what is (coord.c). */
static void end_plan(router *r, int64_t published)
{
    if (published >= 0) {
        set_plan(r, 0, 0);
        return;
    }
    pthread_mutex_lock(&r->lock);
    r->plan_unsettled = 1;
    pthread_mutex_unlock(&r->lock);
}

/* Hands over from every source of cur that loses users in next, then
 * publishes next. Answers the admin call. The plan is announced before
 * the first source gates its users and withdrawn once next is in force
 * or the change failed, so a source gates exactly as long as the change
 * may still publish (cache handoff.h). */
static void change(router *r, const ring_t *cur, const ring_node *nodes, int n,
                   bool (*is_source)(const ring_node *, void *), void *arg,
                   hs_reply *rep)
{
    int64_t term = 0;
    ring_t *next = ring_new(cur->epoch + 1, cur->vnodes, nodes, n);
    if (next)
        next->attempt = new_attempt(r, &term);
    char *next_json = next ? ring_to_json(next) : NULL;
    json_t *reports = json_array();
    if (!next_json || !reports) {
        hs_reply_problem(rep, 500, NULL, "out of memory");
        goto out;
    }
    set_plan(r, next->epoch, next->attempt);
    hand_over_all(r, cur, is_source, arg, next_json, reports);
    pthread_mutex_lock(&r->change_lock);
    int64_t now_epoch;
    pthread_mutex_lock(&r->lock);
    now_epoch = r->ring ? r->ring->epoch : 0;
    pthread_mutex_unlock(&r->lock);
    int64_t epoch = now_epoch == cur->epoch
                        ? coord_publish(r, nodes, n, next->attempt, term)
                        : (int64_t)0;
    end_plan(r, epoch);
    pthread_mutex_unlock(&r->change_lock);
    if (epoch < 0) {
        hs_reply_problem(rep, 503, "Ring not published",
                         "storing the next ring failed or its outcome is "
                         "unknown; read the ring in force, then retry");
        rep->retry_after_s = 1;
        goto out;
    }
    if (epoch == 0) {
        hs_reply_problem(rep, 409, "Ring changed or leadership lost",
                         "the ring moved on or this router lost its lease "
                         "during the handoff; nothing was published, retry");
        goto out;
    }
    log_msg("info", "router: epoch %lld published after a handoff",
            (long long)epoch);
    hs_reply_json(
        rep, 200,
        json_pack("{s:I,s:O}", "epoch", (json_int_t)epoch, "handoff", reports));
out:
    json_decref(reports);
    free(next_json);
    ring_free(next);
}

static bool is_any(const ring_node *node, void *arg)
{
    (void)node;
    (void)arg;
    return true;
}

static bool is_named(const ring_node *node, void *arg)
{
    return strcmp(node->name, arg) == 0;
}

/* Common gate of both calls: the leader, with a ring. Returns the copy
 * of the ring in force, or NULL after answering. */
static ring_t *begin(router *r, hs_reply *rep)
{
    if (!coord_is_leader(r, clockms_monotonic())) {
        hs_reply_problem(rep, 421, "Not the leader",
                         "only the leading router changes the ring; ask "
                         "GET /internal/router on each router");
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    bool planned = r->planned_epoch != 0;
    pthread_mutex_unlock(&r->lock);
    if (planned) {
        /* A change whose publish had an unknown outcome: another, made
         * from the ring this router holds, would call it off at its
         * sources while its ring may be stored. */
        hs_reply_problem(rep, 503, "Change unsettled",
                         "the last change's outcome is not known yet; "
                         "retry once the router has read the stored ring");
        rep->retry_after_s = 1;
        return NULL;
    }
    ring_t *cur = copy_ring(r);
    if (!cur) {
        hs_reply_problem(rep, 503, "No ring yet", "no ring in force");
        rep->retry_after_s = 1;
    }
    return cur;
}

void admin_add_node(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    json_t *body = req->body ? json_loadb(req->body, req->body_len,
                                          JSON_REJECT_DUPLICATES, NULL)
                             : NULL;
    ring_node node;
    memset(&node, 0, sizeof(node));
    int bad = ring_node_from_json(body, &node) || node.slot[0];
    json_decref(body);
    if (bad) {
        hs_reply_problem(rep, 400, "Invalid node",
                         "body must be {\"name\":string,\"url\":string}");
        return;
    }
    pthread_mutex_lock(&admin_lock);
    ring_t *cur = begin(r, rep);
    if (!cur)
        goto out;
    int64_t age = members_age(&r->members, node.name, clockms_monotonic());
    if (ring_find(cur, node.name) >= 0 || cur->nnodes >= RING_NODES_MAX) {
        hs_reply_problem(rep, 409, "Node already in the ring",
                         "the ring holds that node already, or is full");
    } else if (age < 0 || age > r->timing.node_lease_ms) {
        hs_reply_problem(rep, 409, "Node not heartbeating",
                         "start the node first: the router adds only a node "
                         "it hears");
    } else {
        ring_node nodes[RING_NODES_MAX];
        memcpy(nodes, cur->nodes, sizeof(ring_node) * (size_t)cur->nnodes);
        nodes[cur->nnodes] = node;
        change(r, cur, nodes, cur->nnodes + 1, is_any, NULL, rep);
    }
out:
    ring_free(cur);
    pthread_mutex_unlock(&admin_lock);
}

void admin_remove_node(hs_request *req, hs_reply *rep)
{
    router *r = req->ctx;
    const char *name = req->params[0];
    pthread_mutex_lock(&admin_lock);
    ring_t *cur = begin(r, rep);
    if (!cur)
        goto out;
    int i = ring_find(cur, name);
    if (i < 0) {
        hs_reply_problem(rep, 404, "No such node",
                         "the ring holds no node of that name");
    } else if (cur->nnodes == 1) {
        hs_reply_problem(rep, 409, "Last node",
                         "the ring needs at least one node");
    } else {
        ring_node nodes[RING_NODES_MAX];
        int n = 0;
        for (int k = 0; k < cur->nnodes; k++) {
            if (k != i)
                nodes[n++] = cur->nodes[k];
        }
        change(r, cur, nodes, n, is_named, (void *)name, rep);
    }
out:
    ring_free(cur);
    pthread_mutex_unlock(&admin_lock);
}
