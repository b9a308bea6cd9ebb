/*
 * events.c - long polls forwarded to owner nodes over one libcurl multi
 * handle. See events.h.
 *
 * Ownership of a poll_call: the handler creates it and hands it to the
 * poller thread through the incoming queue; from then on only that
 * thread touches it (active list, retry list) until it has an answer and
 * wakes the deferred request; the resume function, on a server thread,
 * sends the answer and frees it. So no lock covers a call, only the
 * queue.
 */
#include "events.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "constants.h"
#include "curl_loop.h"
#include "iauth.h"
#include "log.h"

/* Longest poll the multi loop sleeps when nothing happens. */
#define EV_IDLE_MS 1000
/* Connections the multi handle keeps open to cache nodes: one per
 * waiting poll, so well above the polls one gateway holds. */
#define EV_MAX_CONNECTS 65536

typedef struct poll_call {
    struct poll_call *prev, *next; /* in one list of the poller */
    ev_poller *p;
    int64_t user;
    events_query q;
    char request_id[HS_REQUEST_ID_MAX];
    hs_deferred *deferred;
    int64_t deadline_ms; /* monotonic: the client's timeout */
    int tries;
    int64_t retry_at_ms;
    CURL *easy;
    struct curl_slist *headers;
    hc_body reply; /* the node's answer as it arrives */
    /* The answer the resume function sends. */
    int status;
    char *answer;
    size_t answer_len;
} poll_call;

typedef struct call_list {
    poll_call *head;
} call_list;

struct ev_poller {
    ringview *ring;
    char *secret;
    metrics_t *metrics;
    CURLM *multi;
    cl_loop *loop; /* runs multi: an event costs the same with 10 polls
                    * waiting or 10,000 */
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu; /* guards incoming, draining, stopping */
    call_list incoming;
    bool draining;
    bool stopping;
    /* Owned by the thread alone. */
    call_list active; /* in the multi handle */
    call_list retry;  /* waiting for retry_at_ms */
};

static void list_push(call_list *l, poll_call *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
}

static void list_remove(call_list *l, poll_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_free(poll_call *c)
{
    if (c == NULL)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->reply.data);
    free(c->answer);
    free(c);
}

/* ---- answering ------------------------------------------------------ */

/* Sets the answer (text copied) and wakes the client's request. The
 * call belongs to the resume function after this. */
static void call_answer(poll_call *c, int status, const char *text, size_t len)
{
    free(c->answer);
    c->answer = malloc(len + 1);
    if (c->answer == NULL) {
        c->status = 503;
        c->answer_len = 0;
    } else {
        memcpy(c->answer, text, len);
        c->answer[len] = '\0';
        c->status = status;
        c->answer_len = len;
    }
    if (c->easy) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    hs_wake(c->deferred);
}

/* Nothing to report: an empty delta at the client's own token. */
static void call_answer_unchanged(poll_call *c)
{
    char token[SYNCTOKEN_MAX + 1];
    char text[SYNCTOKEN_MAX + 160];
    if (synctoken_encode(&c->q.since, token, sizeof(token)) < 0)
        token[0] = '\0';
    int n = snprintf(text, sizeof(text),
                     "{\"is_delta_update\":true,\"sync_token\":\"%s\","
                     "\"conversations\":[],\"messages\":[],"
                     "\"has_more\":false}",
                     token);
    metrics_count(c->p->metrics, "gateway_events_unchanged_total",
                  "Long polls answered with no change by the gateway "
                  "(owner unreachable, moved, or the gateway stopping)",
                  1);
    call_answer(c, 200, text, (size_t)n);
}

static void resume_poll(hs_request *req, void *arg, hs_reply *rep)
{
    poll_call *c = arg;
    if (c->answer == NULL) {
        hs_reply_problem(rep, 503, "Service Unavailable", "out of memory");
        rep->retry_after_s = 1;
    } else {
        hs_reply_raw(rep, c->status,
                     c->status >= 400 ? "application/problem+json"
                                      : "application/json",
                     c->answer, c->answer_len);
        if (c->status == 503)
            rep->retry_after_s = 1;
    }
    call_free(c);
}

/* ---- calls to the owner node ---------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    poll_call *c = arg;
    /* 0 aborts the transfer. */
    return hc_body_append(&c->reply, data, size * nmemb, EV_ANSWER_MAX);
}

/* The node's URL and the path it signs, on the current ring. */
static int build_target(poll_call *c, char *url, size_t cap, size_t *path_off,
                        int64_t *epoch)
{
    const ring_t *r = ringview_acquire(c->p->ring);
    if (r == NULL)
        return -1;
    const ring_node *owner = &r->nodes[ring_owner(r, c->user)];
    events_query q = c->q;
    int64_t left = c->deadline_ms - clockms_monotonic();
    /* Rounded up: a retry must not turn the rest of a wait into 0 s (an
     * answer at once), and the node's own deadline stays within ours
     * plus EV_CALL_GRACE_MS. */
    q.timeout_s = left > 0 ? (int)((left + 999) / 1000) : 0;
    if (q.timeout_s > EVENTS_TIMEOUT_MAX_S)
        q.timeout_s = EVENTS_TIMEOUT_MAX_S;
    char query[SYNCTOKEN_MAX + 64];
    int qlen = evquery_format(&q, query, sizeof(query));
    *path_off = strlen(owner->url);
    int len = snprintf(url, cap, "%s/internal/users/%" PRId64 "/events?%s",
                       owner->url, c->user, query);
    *epoch = r->epoch;
    ringview_release(c->p->ring, r);
    return qlen < 0 || len < 0 || (size_t)len >= cap ? -1 : 0;
}

static int build_headers(poll_call *c, const char *target, int64_t epoch)
{
    char line[64 + HS_REQUEST_ID_MAX + IAUTH_VALUE_MAX];
    char sig[IAUTH_VALUE_MAX + 1];
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    if (iauth_sign(c->p->secret, "GET", target, strlen(target), NULL, 0,
                   (int64_t)time(NULL), sig, sizeof(sig)) < 0)
        return -1;
    const char *fmt[] = {"X-Ring-Epoch: %" PRId64, "X-Request-Id: %s",
                         IAUTH_HEADER ": %s"};
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(line, sizeof(line), fmt[0], epoch);
        else
            snprintf(line, sizeof(line), fmt[i], i == 1 ? c->request_id : sig);
        struct curl_slist *l = curl_slist_append(c->headers, line);
        if (l == NULL)
            return -1;
        c->headers = l;
    }
    return 0;
}

static int setup_easy(poll_call *c, const char *url)
{
    if (c->easy == NULL)
        c->easy = curl_easy_init();
    if (c->easy == NULL)
        return -1;
    long timeout =
        (long)(c->deadline_ms - clockms_monotonic()) + EV_CALL_GRACE_MS;
    CURL *e = c->easy;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, c) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, c) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              /* Straight to the node, whatever http_proxy says. */
              curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                               (long)HOP_CONNECT_TIMEOUT_MS) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                               timeout > 0 ? timeout : 1L) == CURLE_OK &&
              /* A node with a long-poll listener of its own answers the
               * poll with a redirect there (same path and query, so the
               * signature still holds). */
              curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_MAXREDIRS, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ==
                  CURLE_OK;
    return ok ? 0 : -1;
}

/* Starts (or restarts) the node call of c; an answer when it cannot. */
static void call_start(ev_poller *p, poll_call *c)
{
    char url[1024];
    size_t path_off;
    int64_t epoch;
    c->tries++;
    c->reply.len = 0;
    c->reply.too_large = false;
    if (build_target(c, url, sizeof(url), &path_off, &epoch) ||
        build_headers(c, url + path_off, epoch) || setup_easy(c, url) ||
        curl_multi_add_handle(p->multi, c->easy) != CURLM_OK) {
        call_answer_unchanged(c);
        return;
    }
    list_push(&p->active, c);
}

/* The node refused or failed: try again later, or give up with an
 * unchanged answer. */
static void call_retry_or_give_up(ev_poller *p, poll_call *c, const char *why)
{
    int64_t now = clockms_monotonic();
    int64_t at = now + (int64_t)EV_RETRY_PAUSE_MS * c->tries;
    json_t *fields =
        json_pack("{s:s, s:I, s:s, s:i}", "request_id", c->request_id, "user",
                  (json_int_t)c->user, "error", why, "tries", c->tries);
    log_event("info", "events poll: owner call failed", fields);
    json_decref(fields);
    if (c->tries >= EV_TRIES || at >= c->deadline_ms) {
        call_answer_unchanged(c);
        return;
    }
    c->retry_at_ms = at;
    list_push(&p->retry, c);
}

static void call_done(ev_poller *p, poll_call *c, CURLcode res)
{
    list_remove(&p->active, c);
    curl_multi_remove_handle(p->multi, c->easy);
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK) {
        call_retry_or_give_up(p, c,
                              c->reply.too_large ? "answer too large"
                                                 : curl_easy_strerror(res));
        return;
    }
    if (status == 421) {
        call_retry_or_give_up(p, c, "421 misdirected");
        return;
    }
    call_answer(c, (int)status, c->reply.data ? c->reply.data : "",
                c->reply.len);
}

/* ---- the thread ----------------------------------------------------- */

static void answer_all(ev_poller *p, call_list *l, bool in_multi)
{
    while (l->head) {
        poll_call *c = l->head;
        list_remove(l, c);
        if (in_multi)
            curl_multi_remove_handle(p->multi, c->easy);
        call_answer_unchanged(c);
    }
}

/* Takes the new calls; true while the thread should go on. */
static bool take_incoming(ev_poller *p, call_list *out, bool *draining)
{
    pthread_mutex_lock(&p->mu);
    *out = p->incoming;
    p->incoming.head = NULL;
    *draining = p->draining;
    bool go_on = !p->stopping;
    pthread_mutex_unlock(&p->mu);
    return go_on;
}

/* Starts due retries; returns ms until the next one (or EV_IDLE_MS). */
static long run_retries(ev_poller *p)
{
    int64_t now = clockms_monotonic();
    long wait = EV_IDLE_MS;
    poll_call *c = p->retry.head;
    while (c) {
        poll_call *next = c->next;
        if (c->retry_at_ms <= now) {
            list_remove(&p->retry, c);
            call_start(p, c);
        } else if (c->retry_at_ms - now < wait) {
            wait = (long)(c->retry_at_ms - now);
        }
        c = next;
    }
    return wait;
}

static void reap_done(ev_poller *p)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        poll_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (c != NULL)
            call_done(p, c, msg->data.result);
    }
}

static void *poller_main(void *arg)
{
    ev_poller *p = arg;
    for (;;) {
        call_list fresh;
        bool draining;
        bool go_on = take_incoming(p, &fresh, &draining);
        while (fresh.head) {
            poll_call *c = fresh.head;
            list_remove(&fresh, c);
            if (draining)
                call_answer_unchanged(c);
            else
                call_start(p, c);
        }
        if (draining) {
            answer_all(p, &p->active, true);
            answer_all(p, &p->retry, false);
        }
        if (!go_on)
            break;
        cl_loop_run_due(p->loop);
        reap_done(p);
        /* After reaping: a call that just failed is due EV_RETRY_PAUSE_MS
         * from now, and the sleep must not pass it. A retry started here
         * is due at once, so the wait does not sleep past it either. */
        long wait = run_retries(p);
        cl_loop_wait(p->loop, -1, (int)wait);
        reap_done(p);
    }
    return NULL;
}

/* ---- public --------------------------------------------------------- */

ev_poller *ev_poller_new(ringview *ring, const char *secret, metrics_t *metrics)
{
    ev_poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->ring = ring;
    p->metrics = metrics;
    p->secret = secret ? strdup(secret) : NULL;
    p->multi = curl_multi_init();
    p->loop = cl_loop_new(p->multi);
    pthread_mutex_init(&p->mu, NULL);
    if (p->secret == NULL || p->loop == NULL ||
        curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS,
                          (long)EV_MAX_CONNECTS) != CURLM_OK ||
        pthread_create(&p->thread, NULL, poller_main, p) != 0) {
        ev_poller_free(p);
        return NULL;
    }
    p->has_thread = true;
    return p;
}

void ev_poller_drain(ev_poller *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->draining = true;
    pthread_mutex_unlock(&p->mu);
    cl_loop_wake(p->loop);
}

void ev_poller_free(ev_poller *p)
{
    if (p == NULL)
        return;
    if (p->has_thread) {
        pthread_mutex_lock(&p->mu);
        p->draining = true;
        p->stopping = true;
        pthread_mutex_unlock(&p->mu);
        cl_loop_wake(p->loop);
        pthread_join(p->thread, NULL);
    }
    /* The loop goes last: cleaning up still removes sockets from it. */
    if (p->multi)
        curl_multi_cleanup(p->multi);
    cl_loop_free(p->loop);
    pthread_mutex_destroy(&p->mu);
    free(p->secret);
    free(p);
}

void ev_poller_wait(ev_poller *p, hs_request *req, int64_t user,
                    const events_query *q, hs_reply *rep)
{
    poll_call *c = calloc(1, sizeof(*c));
    hs_deferred *d = c ? hs_defer(req, resume_poll, c) : NULL;
    if (d == NULL) {
        free(c);
        hs_reply_problem(rep, 503, "Service Unavailable",
                         "the poll could not be held; retry");
        rep->retry_after_s = 1;
        return;
    }
    c->p = p;
    c->user = user;
    c->q = *q;
    c->deferred = d;
    c->deadline_ms = clockms_monotonic() + (int64_t)q->timeout_s * 1000;
    memcpy(c->request_id, req->request_id, sizeof(c->request_id));
    pthread_mutex_lock(&p->mu);
    list_push(&p->incoming, c);
    pthread_mutex_unlock(&p->mu);
    cl_loop_wake(p->loop);
}
