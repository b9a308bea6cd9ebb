/*
 * http_async.c - hops run on one thread over a libcurl multi handle. See
 * http_client.h (asynchronous calls).
 *
 * A call is created by the caller's thread and queued under the mutex;
 * from then on only the hc_async thread touches it: it builds the easy
 * handle, runs the transfer, calls done and frees the call. Easy handles
 * are reused from a stack the thread alone owns, so a steady load
 * allocates none; the connections live in the multi handle's cache.
 * The transfers run on libcurl's socket interface (curl_loop.h), so a
 * turn moves only the calls whose socket is ready or whose timer is due,
 * however many are in flight.
 */
#include "http_client.h"
#include "http_client_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "curl_loop.h"

/* Longest sleep of the loop when nothing happens. */
#define HA_IDLE_MS 1000
/* Idle connections kept to the peers: well above the calls in flight of
 * one busy server, so none is closed to make room. */
#define HA_MAX_CONNECTS 1024L
/* Easy handles kept for reuse. */
#define HA_SPARE_HANDLES 256

typedef struct ha_call {
    struct ha_call *prev, *next; /* queued: next only; active: both */
    char *method;
    char *url;
    char *body; /* NULL: none (GET) */
    size_t len;
    struct curl_slist *headers;
    hc_body reply;
    CURL *easy;
    struct timespec start;
    hc_async_done done;
    hc_async_keep keep; /* NULL: waited for until it ends */
    void *arg;
} ha_call;

struct hc_async {
    hc_pool *pool;
    CURLM *multi;
    cl_loop *loop;
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu; /* guards incoming and stopping */
    ha_call *incoming;
    bool stopping;
    /* The thread's own. */
    ha_call *active; /* in the multi handle */
    CURL *spare[HA_SPARE_HANDLES];
    int nspare;
    int nkeep;                  /* active calls with a keep function */
    int64_t next_keep_check_ms; /* monotonic */
};

static void call_free(ha_call *c)
{
    curl_slist_free_all(c->headers);
    free(c->reply.data);
    free(c->method);
    free(c->url);
    free(c->body);
    free(c);
}

static char *copy_bytes(const char *data, size_t len)
{
    char *out = malloc(len + 1);
    if (out) {
        memcpy(out, data, len);
        out[len] = '\0';
    }
    return out;
}

static void active_push(hc_async *a, ha_call *c)
{
    a->nkeep += c->keep != NULL;
    c->prev = NULL;
    c->next = a->active;
    if (a->active)
        a->active->prev = c;
    a->active = c;
}

static void active_remove(hc_async *a, ha_call *c)
{
    a->nkeep -= c->keep != NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->active = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Hands the easy handle back (or frees it) and ends the call. */
static void call_end(hc_async *a, ha_call *c, hc_err err, hc_response *resp)
{
    if (c->easy) {
        hc_call_reset(c->easy);
        if (a->nspare < HA_SPARE_HANDLES)
            a->spare[a->nspare++] = c->easy;
        else
            curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    hc_call_observe(a->pool, c->url, &c->start);
    hc_response empty = {0};
    c->done(c->arg, err, resp ? resp : &empty);
    call_free(c);
}

static void call_start(hc_async *a, ha_call *c)
{
    c->easy = a->nspare > 0 ? a->spare[--a->nspare] : hc_handle_new();
    if (c->easy == NULL ||
        !hc_call_setup(a->pool, c->easy, c->method, c->url, c->headers, c->body,
                       c->len, &c->reply) ||
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c) != CURLE_OK ||
        curl_multi_add_handle(a->multi, c->easy) != CURLM_OK) {
        call_end(a, c, HC_ERROR, NULL);
        return;
    }
    active_push(a, c);
}

/* Ends the finished calls; returns how many. */
static int reap_done(hc_async *a)
{
    CURLMsg *msg;
    int left, reaped = 0;
    while ((msg = curl_multi_info_read(a->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        ha_call *c = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(a->multi, e);
        if (c == NULL)
            continue;
        active_remove(a, c);
        hc_response resp = {0};
        hc_err err = hc_call_result(e, rc, &c->reply, &resp);
        call_end(a, c, err, &resp);
        reaped++;
    }
    return reaped;
}

/* Drops the calls in flight that their callers no longer wait for
 * (hc_async_keep), once per HC_KEEP_CHECK_MS. They are taken out first
 * and ended after the walk, so whatever their done callbacks do cannot
 * touch the list being walked. */
static void drop_unwanted(hc_async *a)
{
    int64_t now = clockms_monotonic();
    if (a->nkeep == 0 || now < a->next_keep_check_ms)
        return;
    a->next_keep_check_ms = now + HC_KEEP_CHECK_MS;
    ha_call *dropped = NULL, *next;
    for (ha_call *c = a->active; c != NULL; c = next) {
        next = c->next;
        if (c->keep == NULL || c->keep(c->arg))
            continue;
        active_remove(a, c);
        curl_multi_remove_handle(a->multi, c->easy);
        c->next = dropped;
        dropped = c;
    }
    while (dropped != NULL) {
        ha_call *c = dropped;
        dropped = c->next;
        call_end(a, c, HC_ABANDONED, NULL);
    }
}

/* The wait of a turn, shortened to the next look at the keep functions
 * while a call has one (no timer of libcurl's comes while a peer is
 * silent). */
static int keep_wait_ms(const hc_async *a, int timeout_ms)
{
    if (a->nkeep == 0)
        return timeout_ms;
    int64_t left = a->next_keep_check_ms - clockms_monotonic();
    int until = left < 0 ? 0 : (int)left;
    return timeout_ms < 0 || timeout_ms > until ? until : timeout_ms;
}

/* Ends every call in the multi handle (stopping). */
static void end_active(hc_async *a)
{
    while (a->active) {
        ha_call *c = a->active;
        active_remove(a, c);
        curl_multi_remove_handle(a->multi, c->easy);
        call_end(a, c, HC_ERROR, NULL);
    }
}

/* Takes the queued calls and starts them, oldest first (ends them when
 * stopping). Returns whether the hc_async is stopping. */
static bool start_incoming(hc_async *a)
{
    pthread_mutex_lock(&a->mu);
    ha_call *fresh = a->incoming;
    a->incoming = NULL;
    bool stopping = a->stopping;
    pthread_mutex_unlock(&a->mu);
    /* Queued newest first: start the oldest first. */
    ha_call *ordered = NULL;
    while (fresh) {
        ha_call *next = fresh->next;
        fresh->next = ordered;
        ordered = fresh;
        fresh = next;
    }
    while (ordered) {
        ha_call *c = ordered;
        ordered = c->next;
        if (stopping)
            call_end(a, c, HC_ERROR, NULL);
        else
            call_start(a, c);
    }
    return stopping;
}

/* One turn: start what is queued, run what is due, wait, run what became
 * ready, end what finished. Returns whether the hc_async is stopping. */
static bool turn(hc_async *a, int fd, int timeout_ms)
{
    if (start_incoming(a)) {
        end_active(a);
        return true;
    }
    cl_loop_run_due(a->loop);
    /* A finished call's answer usually wakes the caller's loop (fd):
     * look at it at once rather than after one more wait. */
    if (reap_done(a) > 0)
        timeout_ms = 0;
    /* After the reaping: a call that just finished is answered, not
     * dropped. */
    drop_unwanted(a);
    cl_loop_wait(a->loop, fd, keep_wait_ms(a, timeout_ms));
    reap_done(a);
    return false;
}

static void *async_main(void *arg)
{
    hc_async *a = arg;
    while (!turn(a, -1, HA_IDLE_MS)) {
    }
    return NULL;
}

/* The hc_async a thread drives (hc_async_step), if any: its own calls
 * need no wake-up. */
static _Thread_local hc_async *tl_driving;

static hc_async *async_create(hc_pool *p, int per_host)
{
    if (p == NULL || per_host < 0)
        return NULL;
    hc_async *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->pool = p;
    a->multi = curl_multi_init();
    a->loop = cl_loop_new(a->multi);
    pthread_mutex_init(&a->mu, NULL);
    if (a->loop == NULL ||
        curl_multi_setopt(a->multi, CURLMOPT_MAXCONNECTS, HA_MAX_CONNECTS) !=
            CURLM_OK ||
        curl_multi_setopt(a->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)per_host) != CURLM_OK) {
        hc_async_free(a);
        return NULL;
    }
    return a;
}

hc_async *hc_async_new_driven(hc_pool *p, int per_host)
{
    return async_create(p, per_host);
}

void hc_async_step(hc_async *a, int fd, int timeout_ms)
{
    tl_driving = a;
    turn(a, fd, timeout_ms);
}

void hc_async_shutdown(hc_async *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_mutex_unlock(&a->mu);
    hc_async_wakeup(a);
}

void hc_async_wakeup(hc_async *a)
{
    if (a != NULL && tl_driving != a)
        cl_loop_wake(a->loop);
}

hc_async *hc_async_new(hc_pool *p, int per_host)
{
    hc_async *a = async_create(p, per_host);
    if (a == NULL)
        return NULL;
    if (pthread_create(&a->thread, NULL, async_main, a) != 0) {
        hc_async_free(a);
        return NULL;
    }
    a->has_thread = true;
    return a;
}

void hc_async_free(hc_async *a)
{
    if (a == NULL)
        return;
    if (a->has_thread) {
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_mutex_unlock(&a->mu);
        cl_loop_wake(a->loop);
        pthread_join(a->thread, NULL);
    } else if (a->multi != NULL) {
        /* Driven: no thread runs it any more (or the caller is the one
         * that did). */
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_mutex_unlock(&a->mu);
        start_incoming(a);
        end_active(a);
    }
    if (tl_driving == a)
        tl_driving = NULL;
    for (int i = 0; i < a->nspare; i++)
        curl_easy_cleanup(a->spare[i]);
    /* The loop goes last: cleaning up still removes sockets from it. */
    if (a->multi)
        curl_multi_cleanup(a->multi);
    cl_loop_free(a->loop);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int hc_async_request(hc_async *a, const char *method, const char *url,
                     const hc_headers *headers, const char *body, size_t len,
                     hc_async_done done, void *arg)
{
    return hc_async_request_keep(a, method, url, headers, body, len, done, NULL,
                                 arg);
}

int hc_async_request_keep(hc_async *a, const char *method, const char *url,
                          const hc_headers *headers, const char *body,
                          size_t len, hc_async_done done, hc_async_keep keep,
                          void *arg)
{
    if (a == NULL || method == NULL || url == NULL || done == NULL)
        return -1;
    ha_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->done = done;
    c->keep = keep;
    c->arg = arg;
    c->len = body ? len : 0;
    c->method = strdup(method);
    c->url = strdup(url);
    c->body = body ? copy_bytes(body, len) : NULL;
    /* Signed now, on the caller's thread: the signature's time is the
     * request's, and the hc_async thread only moves bytes. */
    c->headers =
        hc_call_headers(a->pool, method, url, headers, c->body, c->len);
    if (c->method == NULL || c->url == NULL || (body && c->body == NULL) ||
        c->headers == NULL) {
        call_free(c);
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    pthread_mutex_lock(&a->mu);
    bool stopping = a->stopping;
    if (!stopping) {
        c->next = a->incoming;
        a->incoming = c;
    }
    pthread_mutex_unlock(&a->mu);
    if (stopping) {
        call_free(c);
        return -1;
    }
    hc_async_wakeup(a);
    return 0;
}
