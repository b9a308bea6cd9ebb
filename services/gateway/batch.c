/*
 * batch.c - list reads that wait for a busy hop and go to their cache
 * node together (POST /internal/reads). See forward_int.h.
 *
 * Why: a read served from the owner's memory costs the node far less
 * than the hop that carries it (a round trip through the kernel, a
 * wake-up of a node thread, a signature check, a log line), and under
 * load each loop thread has several reads in flight to every node at
 * once. So a loop keeps, per node, a lane: a read goes at once when the
 * lane has nothing in flight, which is every read of a quiet gateway;
 * else it waits, and when the call in flight ends the reads waiting go
 * as one call. A read never waits longer than one call of its node, or
 * BATCH_PATIENCE_MS when that call is slow (a cold fill, a paused node).
 *
 * Only a read's first attempt can wait in a lane; its retries go alone,
 * with the rules of one call (forward.h). Whatever the batch call lacks
 * (the node does not answer, an older node without the route, an answer
 * too large or cut short) is made good read by read: a read the node did
 * not answer is sent alone at once, a hop failure counts as one for each
 * read. Everything here runs on the loop thread that owns the lane.
 */
#include "forward_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockms.h"
#include "constants.h"
#include "jsontext.h"
#include "reads_wire.h"

/* How long reads wait behind a call still in flight before they go
 * anyway: far above a read from memory (about 0.1 ms), far below a
 * client's patience. */
#define BATCH_PATIENCE_MS 2

typedef struct batch_call {
    forward_loop *loop;
    batch_lane *lane;
    relay_call *calls[READS_BATCH_MAX];
    int n;
    struct timespec start;
} batch_call;

/* The lane of the target's node: the one kept for it, else an idle one
 * taken over, else NULL (the read goes alone). */
static batch_lane *lane_of(forward_loop *l, const target *t)
{
    batch_lane *idle = NULL;
    if (t->node_len == 0 || t->node_len >= sizeof(idle->node))
        return NULL;
    for (int i = 0; i < BATCH_LANES_MAX; i++) {
        batch_lane *ln = &l->lanes[i];
        if (strncmp(ln->node, t->url, t->node_len) == 0 &&
            ln->node[t->node_len] == '\0')
            return ln;
        if (idle == NULL && ln->in_flight == 0 && ln->queued == 0)
            idle = ln;
    }
    if (idle != NULL) {
        memcpy(idle->node, t->url, t->node_len);
        idle->node[t->node_len] = '\0';
    }
    return idle;
}

static void sent(batch_lane *ln)
{
    ln->in_flight++;
    ln->last_sent_ms = clockms_monotonic();
}

static void send_alone(batch_lane *ln, relay_call *rc)
{
    rc->lane = ln;
    sent(ln);
    if (relay_send(rc) != 0)
        ln->in_flight--; /* answered, and gone */
}

/* The reads of a batch that will not go as one go alone. */
static void send_each_alone(relay_call **calls, int n)
{
    for (int i = 0; i < n; i++) {
        calls[i]->lane = NULL;
        relay_send(calls[i]);
    }
}

/* Appends one read as a member of "reads". */
static void write_read(jt_buf *b, const relay_call *rc)
{
    char user[JT_INT_MAX], epoch[JT_INT_MAX];
    size_t user_len = jt_format_int(user, (long long)rc->c.user_id);
    size_t epoch_len = jt_format_int(epoch, (long long)rc->t.epoch);
    jt_cstr(b, "{\"user\":");
    jt_string(b, user, user_len);
    jt_cstr(b, ",\"query\":");
    jt_string(b, rc->query, strlen(rc->query));
    jt_cstr(b, ",\"epoch\":");
    jt_string(b, epoch, epoch_len);
    jt_cstr(b, ",\"request_id\":");
    jt_string(b, rc->request_id, strlen(rc->request_id));
    if (rc->conversation[0] != '\0') {
        jt_cstr(b, ",\"conversation\":");
        jt_string(b, rc->conversation, strlen(rc->conversation));
    }
    jt_raw(b, "}", 1);
}

/* {"reads": [...]} for the batch (reads.h of the cache node), or NULL
 * when it cannot be written. */
static char *batch_body(relay_call **calls, int n, size_t *len)
{
    jt_buf b;
    jt_init(&b);
    jt_cstr(&b, "{\"reads\":[");
    for (int i = 0; i < n; i++) {
        if (i > 0)
            jt_raw(&b, ",", 1);
        write_read(&b, calls[i]);
    }
    jt_cstr(&b, "]}");
    return jt_finish(&b, len);
}

static void on_batch_answer(void *arg, hc_err err, hc_response *resp);

/* A batch is waited for while the ring gives every one of its reads to
 * its node (relay_keep, in forward.c, says why). */
static bool batch_keep(void *arg)
{
    const batch_call *b = arg;
    for (int i = 0; i < b->n; i++)
        if (!relay_target_holds(b->calls[i]))
            return false;
    return true;
}

/* Sends calls[0..n) as one POST /internal/reads to the lane's node;
 * they go alone if it cannot be sent. */
static void send_batch(forward_loop *l, batch_lane *ln, relay_call **calls,
                       int n)
{
    batch_call *b = calloc(1, sizeof(*b));
    size_t len = 0;
    char *body = b ? batch_body(calls, n, &len) : NULL;
    char url[sizeof(ln->node) + 32];
    snprintf(url, sizeof(url), "%s/internal/reads", ln->node);
    char id_line[32 + HS_REQUEST_ID_MAX];
    snprintf(id_line, sizeof(id_line), "X-Request-Id: %s",
             calls[0]->request_id);
    hc_headers headers = {.lines = {id_line}, .n = 1};
    if (body != NULL) {
        b->loop = l;
        b->lane = ln;
        memcpy(b->calls, calls, sizeof(calls[0]) * (size_t)n);
        b->n = n;
        clock_gettime(CLOCK_MONOTONIC, &b->start);
    }
    if (body == NULL || relay_request(calls[0], "POST", url, &headers, body,
                                      len, on_batch_answer, batch_keep, b)) {
        free(body);
        free(b);
        send_each_alone(calls, n);
        return;
    }
    free(body);
    sent(ln);
}

/* Sends what waits in the lane: one read alone, several as a batch. */
static void lane_flush(forward_loop *l, batch_lane *ln)
{
    relay_call *calls[READS_BATCH_MAX], *moved[READS_BATCH_MAX];
    int n = 0, m = 0;
    while (ln->head != NULL && n + m < READS_BATCH_MAX) {
        relay_call *rc = ln->head;
        ln->head = rc->next;
        rc->next = NULL;
        /* A ring that moved the read's user while it waited sends it to
         * the new owner, not to a node that may be frozen. */
        if (relay_target_holds(rc))
            calls[n++] = rc;
        else
            moved[m++] = rc;
    }
    if (ln->head == NULL)
        ln->tail = NULL;
    ln->queued -= n + m;
    l->queued -= n + m;
    if (n == 1)
        send_alone(ln, calls[0]);
    else if (n > 1)
        send_batch(l, ln, calls, n);
    for (int i = 0; i < m; i++) {
        moved[i]->lane = NULL;
        batch_submit(moved[i]);
    }
}

static void lane_ended(forward_loop *l, batch_lane *ln)
{
    ln->in_flight--;
    if (ln->in_flight == 0 && ln->queued > 0)
        lane_flush(l, ln);
}

void batch_submit(relay_call *rc)
{
    if (relay_pick(rc)) {
        relay_fail(rc, rc->why);
        return;
    }
    forward_loop *l = rc->loop;
    batch_lane *ln = lane_of(l, &rc->t);
    if (ln == NULL) {
        relay_send(rc);
        return;
    }
    if (ln->in_flight == 0) {
        send_alone(ln, rc);
        return;
    }
    rc->lane = ln;
    rc->next = NULL;
    if (ln->tail != NULL)
        ln->tail->next = rc;
    else
        ln->head = rc;
    ln->tail = rc;
    ln->queued++;
    l->queued++;
    if (ln->queued >= READS_BATCH_MAX)
        lane_flush(l, ln);
}

void batch_call_ended(relay_call *rc)
{
    batch_lane *ln = rc->lane;
    rc->lane = NULL;
    lane_ended(rc->loop, ln);
}

void batch_turn(forward_loop *l, int *timeout_ms)
{
    if (l->queued == 0)
        return;
    int64_t now = clockms_monotonic();
    for (int i = 0; i < BATCH_LANES_MAX; i++) {
        batch_lane *ln = &l->lanes[i];
        if (ln->queued > 0 && now - ln->last_sent_ms >= BATCH_PATIENCE_MS)
            lane_flush(l, ln);
    }
    if (l->queued > 0 && (*timeout_ms < 0 || *timeout_ms > 1))
        *timeout_ms = 1;
}

static void on_batch_answer(void *arg, hc_err err, hc_response *resp)
{
    batch_call *b = arg;
    gateway *g = b->calls[0]->r->g;
    metrics_observe_dependency(g->metrics, "cache",
                               clockms_seconds_since(&b->start));
    lane_ended(b->loop, b->lane);
    /* The answers the node gave, in order; none unless it answered the
     * batch as a whole. */
    rw_reader answers;
    bool answered = err == HC_OK && resp->status == 200 &&
                    rw_open(&answers, resp->body, resp->len) == 0;
    bool hop_failed = err != HC_OK && err != HC_TOO_LARGE;
    for (int i = 0; i < b->n; i++) {
        relay_call *rc = b->calls[i];
        rc->lane = NULL;
        int status;
        const char *body;
        size_t len;
        if (answered && rw_next(&answers, &status, &body, &len) == 1)
            relay_answered(rc, HC_OK, status, body, len);
        else if (hop_failed)
            relay_answered(rc, err, 0, NULL, 0);
        else
            relay_send(rc); /* the node did not answer this one */
        answered = answered && answers.p != NULL;
    }
    hc_response_free(resp);
    free(b);
}
