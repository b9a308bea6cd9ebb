/*
 * forward.c - one public call forwarded to the owner cache node, with
 * ring refreshes and bounded retries. See forward.h.
 *
 * The ring reference is held only while the target is picked: the URL
 * and epoch are copied out, so a slow node call never pins an old ring.
 */
#include "forward.h"
#include "forward_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "constants.h"
#include "log.h"

/* Pause before retrying when a refresh brought no newer epoch: the
 * router has not published the change yet (a node just died or joined),
 * and an immediate retry would meet the same refusal. Short enough to
 * stay far below the client's patience, three of them included. */
#define FORWARD_RETRY_PAUSE_MS 50

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
    t->node_len = strlen(owner->url);
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
    metrics_observe_dependency(g->metrics, "cache",
                               clockms_seconds_since(&start));
    return err;
}

/* The node's answer is the public one. Its Content-Type is not kept by
 * the HTTP client, but the contract fixes it: errors are problem+json,
 * everything else JSON. */
static void pass_through(hs_reply *rep, long status, const char *body,
                         size_t len)
{
    const char *type =
        status >= 400 ? "application/problem+json" : "application/json";
    hs_reply_raw(rep, (int)status, type, body ? body : "", len);
    if (status == 503)
        rep->retry_after_s = 1;
}

/* Decides whether a failed attempt gets another one, counting it
 * against its budget; *why is the detail of the 503 if not. */
static bool may_retry(hc_err err, int *misdirected, int *unreachable,
                      const char **why)
{
    /* A call dropped because the ring moved its user (relay_keep) spends
     * a ring retry, as a 421 does: the ring moved, not the node failed. */
    if (err == HC_OK || err == HC_ABANDONED) {
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
    if (err == HC_ABANDONED)
        metrics_count(g->metrics, "gateway_moved_calls_total",
                      "Cache node calls dropped in flight because the ring "
                      "gave their user to another node",
                      1);
    else
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
    log_event(err && err != HC_ABANDONED ? "warn" : "info",
              "retrying a cache node call", fields);
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

static void reply_unavailable(hs_reply *rep, const char *why)
{
    hs_reply_problem(rep, 503, "Service Unavailable", why);
    rep->retry_after_s = 1;
}

/* The blocking way: on the caller's thread, refreshes and pauses
 * included. */
static void forward_blocking(gateway *g, const forward_call *c, hs_reply *rep)
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
            pass_through(rep, resp.status, resp.body, resp.len);
            hc_response_free(&resp);
            return;
        }
        hc_response_free(&resp);
        if (!may_retry(err, &misdirected, &unreachable, &why))
            break;
        log_retry(g, c, &t, err);
        refresh_ring(g, t.epoch);
    }
    reply_unavailable(rep, why);
}

/* ---- the asynchronous way ------------------------------------------
 *
 * The handler defers its request and hands the call to the relay's
 * hc_async; the answer callback (on the hc_async thread) either keeps
 * the node's answer and wakes the request, or, for a call the blocking
 * way would retry, asks the ring refresher for a fetch (ringview_poke)
 * and parks the call in the retry list. The relay's timer thread starts
 * a parked call again once the ring is newer than the one it failed on,
 * or FORWARD_RETRY_PAUSE_MS later: the same budget and pauses as the
 * blocking way, without a thread waiting in them. The resume function,
 * on a server thread, sends the answer and frees the call. */

/* How often the timer looks at parked calls for a newer ring. */
#define RELAY_TICK_MS 5

static void relay_call_free(relay_call *rc)
{
    free(rc->path);
    free(rc->body);
    free(rc);
}

/* The call has its answer: wake its request, whose resume function
 * sends it and frees the call. */
static void relay_finish(relay_call *rc)
{
    forward_relay *r = rc->r;
    pthread_mutex_lock(&r->mu);
    bool closed = r->closed;
    pthread_mutex_unlock(&r->mu);
    if (closed) { /* the connection went with its server */
        free(rc->answer.text);
        json_decref(rc->answer.json);
        relay_call_free(rc);
        return;
    }
    hs_wake(rc->d);
}

void relay_fail(relay_call *rc, const char *why)
{
    reply_unavailable(&rc->answer, why);
    relay_finish(rc);
}

static void on_answer(void *arg, hc_err err, hc_response *resp);

int relay_pick(relay_call *rc)
{
    return pick_target(rc->r->g, &rc->c, &rc->t);
}

/* One attempt on the current ring; answers the call when it cannot
 * start. */
static void relay_attempt(relay_call *rc)
{
    if (relay_pick(rc)) {
        relay_fail(rc, rc->why);
        return;
    }
    relay_send(rc);
}

int relay_request(relay_call *rc, const char *method, const char *url,
                  const hc_headers *headers, const char *body, size_t len,
                  hc_async_done done, hc_async_keep keep, void *arg)
{
    forward_relay *r = rc->r;
    pthread_rwlock_rdlock(&r->submit);
    hc_async *a = rc->loop ? rc->loop->async : r->async;
    int queued = a ? hc_async_request_keep(a, method, url, headers, body, len,
                                           done, keep, arg)
                   : -1;
    pthread_rwlock_unlock(&r->submit);
    return queued;
}

bool relay_target_holds(const relay_call *rc)
{
    gateway *g = rc->r->g;
    const ring_t *r = ringview_acquire(g->ring);
    bool holds = true;
    if (r != NULL && r->epoch != rc->t.epoch) {
        const ring_node *owner = &r->nodes[ring_owner(r, rc->c.user_id)];
        holds = strncmp(owner->url, rc->t.url, rc->t.node_len) == 0 &&
                owner->url[rc->t.node_len] == '\0';
    }
    ringview_release(g->ring, r);
    return holds;
}

/* A call in flight to a node that the ring no longer gives its user is
 * not waited for: the router moves a node's users when it stopped
 * hearing it (a frozen node would hold the call for the whole
 * GATEWAY_HOP_TIMEOUT_MS), or after a planned move drained the node.
 * Dropped, the call is retried on the new owner at once. A send the old
 * node stored, or still stores when it wakes, is stored once all the
 * same: storage keys it by (sender, client_message_id), so the retry
 * finds it (200, the same body) or stores it first. */
static bool relay_keep(void *arg)
{
    return relay_target_holds(arg);
}

int relay_send(relay_call *rc)
{
    char epoch_line[48];
    char id_line[32 + HS_REQUEST_ID_MAX];
    snprintf(epoch_line, sizeof(epoch_line), "X-Ring-Epoch: %lld",
             (long long)rc->t.epoch);
    snprintf(id_line, sizeof(id_line), "X-Request-Id: %s", rc->request_id);
    hc_headers headers = {.lines = {epoch_line, id_line}, .n = 2};
    clock_gettime(CLOCK_MONOTONIC, &rc->start);
    if (relay_request(rc, rc->c.method, rc->t.url, &headers, rc->body,
                      rc->c.body_len, on_answer, relay_keep, rc) == 0)
        return 0;
    relay_fail(rc, "the gateway is stopping");
    return -1;
}

/* Parks a failed call for its retry; false when the relay no longer
 * takes any (the caller answers it). */
static bool relay_park(relay_call *rc)
{
    forward_relay *r = rc->r;
    rc->retry_at_ms = clockms_monotonic() + FORWARD_RETRY_PAUSE_MS;
    pthread_mutex_lock(&r->mu);
    bool ok = !r->abandoned && !r->stopping;
    if (ok) {
        rc->next = r->parked;
        r->parked = rc;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void on_answer(void *arg, hc_err err, hc_response *resp)
{
    relay_call *rc = arg;
    metrics_observe_dependency(rc->r->g->metrics, "cache",
                               clockms_seconds_since(&rc->start));
    if (rc->lane != NULL)
        batch_call_ended(rc);
    relay_answered(rc, err, resp->status, resp->body, resp->len);
    hc_response_free(resp);
}

void relay_answered(relay_call *rc, hc_err err, long status, const char *body,
                    size_t len)
{
    gateway *g = rc->r->g;
    if (err == HC_OK && status != 421) {
        pass_through(&rc->answer, status, body, len);
        relay_finish(rc);
        return;
    }
    if (!may_retry(err, &rc->misdirected, &rc->unreachable, &rc->why)) {
        relay_fail(rc, rc->why);
        return;
    }
    log_retry(g, &rc->c, &rc->t, err);
    ringview_poke(g->ring);
    if (!relay_park(rc))
        relay_fail(rc, "the gateway is stopping");
}

/* Takes the parked calls that are due: the ring moved past the epoch
 * they failed on, or their pause is over. Called with r->mu held. */
static relay_call *take_due(forward_relay *r, int64_t epoch)
{
    int64_t now = clockms_monotonic();
    relay_call *due = NULL, **link = &r->parked;
    while (*link) {
        relay_call *rc = *link;
        if (epoch > rc->t.epoch || rc->retry_at_ms <= now) {
            *link = rc->next;
            rc->next = due;
            due = rc;
        } else {
            link = &rc->next;
        }
    }
    return due;
}

static int64_t current_epoch(gateway *g)
{
    const ring_t *ring = ringview_acquire(g->ring);
    int64_t epoch = ring ? ring->epoch : 0;
    ringview_release(g->ring, ring);
    return epoch;
}

static void *relay_timer(void *arg)
{
    forward_relay *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (r->parked == NULL) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        int64_t epoch = current_epoch(r->g);
        pthread_mutex_lock(&r->mu);
        relay_call *due = take_due(r, epoch);
        pthread_mutex_unlock(&r->mu);
        while (due) {
            relay_call *rc = due;
            due = rc->next;
            relay_attempt(rc);
        }
        pthread_mutex_lock(&r->mu);
        if (r->parked != NULL && !r->stopping) {
            struct timespec until = clockms_deadline_in(RELAY_TICK_MS);
            pthread_cond_timedwait(&r->cv, &r->mu, &until);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

forward_relay *forward_relay_new(gateway *g)
{
    forward_relay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->g = g;
    pthread_rwlock_init(&r->submit, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->async = hc_async_new(g->hops, g->hop_connections);
    if (r->async == NULL ||
        pthread_create(&r->timer, NULL, relay_timer, r) != 0) {
        forward_relay_free(r);
        return NULL;
    }
    r->has_timer = true;
    return r;
}

/* Answers every parked call (the relay takes no more). */
static void answer_parked(forward_relay *r)
{
    pthread_mutex_lock(&r->mu);
    relay_call *all = r->parked;
    r->parked = NULL;
    pthread_mutex_unlock(&r->mu);
    while (all) {
        relay_call *rc = all;
        all = rc->next;
        relay_fail(rc, "the gateway is stopping");
    }
}

/* Ends the calls in flight (each answered by on_answer, which parks
 * nothing now) and refuses later ones. The loops' calls end on their
 * own threads, at their next turn. */
static void end_async(forward_relay *r)
{
    pthread_rwlock_wrlock(&r->submit);
    hc_async *a = r->async;
    r->async = NULL;
    for (int i = 0; i < r->nloops; i++)
        hc_async_shutdown(r->loops[i]->async);
    pthread_rwlock_unlock(&r->submit);
    hc_async_free(a);
}

void forward_relay_abandon(forward_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->abandoned = true;
    pthread_mutex_unlock(&r->mu);
    answer_parked(r);
    end_async(r);
    answer_parked(r); /* parked while the calls ended */
}

void forward_relay_free(forward_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->abandoned = true;
    r->closed = true;
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->has_timer)
        pthread_join(r->timer, NULL);
    end_async(r);
    answer_parked(r);
    for (int i = 0; i < r->nloops; i++)
        free(r->loops[i]);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    pthread_rwlock_destroy(&r->submit);
    free(r);
}

static void resume_relay(hs_request *req, void *arg, hs_reply *rep)
{
    relay_call *rc = arg;
    *rep = rc->answer; /* the server frees its body once sent */
    relay_call_free(rc);
}

static char *copy_or_null(const char *text, size_t len)
{
    if (text == NULL)
        return NULL;
    char *out = malloc(len + 1);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\0';
    }
    return out;
}

/* Starts c without blocking; false when the request could not be
 * deferred (the caller forwards it the blocking way). */
static bool forward_async(gateway *g, hs_request *req, const forward_call *c)
{
    forward_relay *r = g->relay;
    relay_call *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return false;
    rc->r = r;
    rc->loop = hs_loop_state();
    rc->why = "no ring from the router yet";
    rc->c = *c;
    rc->path = strdup(c->path);
    rc->body = copy_or_null(c->body, c->body_len);
    snprintf(rc->request_id, sizeof(rc->request_id), "%s", c->request_id);
    rc->c.path = rc->path;
    rc->c.body = rc->body;
    rc->c.request_id = rc->request_id;
    rc->c.conversation = NULL;
    rc->query = rc->path ? strchr(rc->path, '?') : NULL;
    rc->read = c->read && rc->loop != NULL && rc->query != NULL &&
               snprintf(rc->conversation, sizeof(rc->conversation), "%s",
                        c->conversation ? c->conversation : "") <
                   (int)sizeof(rc->conversation);
    if (rc->query)
        rc->query++;
    /* Without a ring yet, the blocking way fetches one first. */
    const ring_t *ring = ringview_acquire(g->ring);
    ringview_release(g->ring, ring);
    if (ring == NULL || rc->path == NULL || (c->body && rc->body == NULL) ||
        (rc->d = hs_defer(req, resume_relay, rc)) == NULL) {
        relay_call_free(rc);
        return false;
    }
    if (rc->read)
        batch_submit(rc);
    else
        relay_attempt(rc);
    return true;
}

void forward_call_owner(gateway *g, hs_request *req, const forward_call *c,
                        hs_reply *rep)
{
    if (g->relay != NULL && req != NULL && forward_async(g, req, c))
        return;
    forward_blocking(g, c, rep);
}

/* ---- the relay's loops (hs_loop_ops) -------------------------------- */

static void *loop_open(void *ctx)
{
    gateway *g = ctx;
    forward_relay *r = g->relay;
    forward_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->r = r;
    l->async = hc_async_new_driven(g->hops, g->hop_connections);
    pthread_mutex_lock(&r->mu);
    bool room = l->async != NULL && r->nloops < RELAY_LOOPS_MAX;
    if (room)
        r->loops[r->nloops++] = l;
    pthread_mutex_unlock(&r->mu);
    if (!room) {
        hc_async_free(l->async);
        free(l);
        return NULL;
    }
    return l;
}

static void loop_wait(void *state, int fd, int timeout_ms)
{
    forward_loop *l = state;
    batch_turn(l, &timeout_ms);
    hc_async_step(l->async, fd, timeout_ms);
}

static void loop_wake(void *state)
{
    forward_loop *l = state;
    hc_async_wakeup(l->async);
}

/* The loop thread ended: its calls end here (each answered 503, none
 * parked: the relay was abandoned or every request is answered). */
static void loop_close(void *state)
{
    forward_loop *l = state;
    forward_relay *r = l->r;
    pthread_rwlock_wrlock(&r->submit);
    hc_async *a = l->async;
    l->async = NULL;
    pthread_rwlock_unlock(&r->submit);
    hc_async_free(a);
}

const hs_loop_ops forward_loop_ops = {
    .open = loop_open,
    .wait = loop_wait,
    .wake = loop_wake,
    .close = loop_close,
};
