/*
 * http_client.c - a fixed pool of libcurl easy handles for hops between
 * services.
 *
 * Each easy handle keeps its own connection cache, so a handle that has
 * talked to a peer before reuses that keep-alive connection: with the pool
 * sized to the concurrency of the caller, a steady load opens no new
 * connections at all. Free handles sit on a stack guarded by a mutex and a
 * condition variable; a caller that finds the stack empty waits (at most
 * the call timeout) for one to come back.
 *
 * Options that never change (no signals, TCP_NODELAY, keep-alive, the
 * connect timeout, the write callback) are set once when a handle is
 * created; every call sets all the per-call ones (URL, method, body,
 * headers, timeout) so nothing leaks from the previous call.
 *
 * A pool with a signer adds X-Internal-Auth to every call. What it signs
 * must be byte for byte what goes on the request line, so handles send
 * the URL's path as given (CURLOPT_PATH_AS_IS: no dot-segment removal)
 * and the signer takes the path and query from the URL text itself.
 *
 * A pool with metrics times each call, the wait for a free handle
 * included (the caller waits for it as for the peer), and moves the
 * in-use gauge on borrow and return.
 */
#include "http_client.h"
#include "http_client_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "constants.h"
#include "iauth.h"

/* Idle connections one handle keeps: one per peer it talks to (every
 * cache node, the router, storage) so that none is closed to make room. */
#define HC_IDLE_CONNECTIONS_MAX ((long)RING_NODES_MAX + 2)
/* An idle connection older than this is not reused but replaced: below
 * the 60 s after which our servers close idle connections, so a request
 * is never written into a socket the peer is closing. */
#define HC_IDLE_REUSE_MAX_S 50L

struct hc_pool {
    pthread_mutex_t mu; /* guards nfree and the free stack */
    pthread_cond_t cv;  /* signalled when a handle is returned */
    CURL **handles;     /* all handles, owned */
    CURL **free_stack;  /* the ones not borrowed */
    int size;
    int nfree;
    long timeout_ms;
    char *signer_secret; /* owned; NULL: calls go unsigned */
    /* Set once before the pool is shared, read-only after. */
    metrics_t *metrics; /* borrowed; NULL: no metrics */
    char *default_dep;  /* owned; NULL: calls are not timed */
    struct {
        char *prefix, *dep; /* owned */
    } deps[HC_DEPENDENCIES_MAX];
    int ndeps;
};

#define HC_GAUGE_HANDLES "http_client_handles"
#define HC_GAUGE_IN_USE "http_client_handles_in_use"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *hc_strerror(hc_err err)
{
    switch (err) {
    case HC_OK:
        return "ok";
    case HC_CONNECT:
        return "could not connect";
    case HC_TIMEOUT:
        return "timed out";
    case HC_TOO_LARGE:
        return "response too large";
    case HC_ERROR:
        return "request failed";
    case HC_ABANDONED:
        return "abandoned by the caller";
    }
    return "unknown error";
}

void hc_response_free(hc_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->status = 0;
}

/* ---- the pool ------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata);

CURL *hc_handle_new(void)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    bool ok =
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)HOP_CONNECT_TIMEOUT_MS) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1) ==
            CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_MAXCONNECTS, HC_IDLE_CONNECTIONS_MAX) ==
            CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, HC_IDLE_REUSE_MAX_S) ==
            CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L) == CURLE_OK &&
        /* Calls between services go straight to the peer: a proxy set in
         * the environment (http_proxy, a container's say) must not take
         * them, and libcurl no longer reads those variables on every
         * transfer. */
        curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
    if (!ok) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

hc_pool *hc_pool_new(int size, long timeout_ms)
{
    if (size <= 0 || timeout_ms <= 0)
        return NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return NULL;

    hc_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->handles = calloc((size_t)size, sizeof(CURL *));
    p->free_stack = calloc((size_t)size, sizeof(CURL *));
    pthread_condattr_t attr;
    bool sync_ok = pthread_condattr_init(&attr) == 0;
    /* Waits are bounded by a monotonic deadline, immune to clock steps. */
    sync_ok = sync_ok &&
              pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&p->cv, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!sync_ok || pthread_mutex_init(&p->mu, NULL) != 0 ||
        p->handles == NULL || p->free_stack == NULL) {
        free(p->handles);
        free(p->free_stack);
        free(p);
        return NULL;
    }
    p->timeout_ms = timeout_ms;
    for (; p->size < size; p->size++) {
        p->handles[p->size] = hc_handle_new();
        if (p->handles[p->size] == NULL) {
            hc_pool_free(p);
            return NULL;
        }
        p->free_stack[p->nfree++] = p->handles[p->size];
    }
    return p;
}

/* Callers must have returned every handle before the pool is freed. */
void hc_pool_free(hc_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->size; i++)
        curl_easy_cleanup(p->handles[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->handles);
    free(p->free_stack);
    free(p->signer_secret);
    free(p->default_dep);
    for (int i = 0; i < p->ndeps; i++) {
        free(p->deps[i].prefix);
        free(p->deps[i].dep);
    }
    free(p);
}

int hc_pool_set_signer(hc_pool *p, const char *secret)
{
    if (p == NULL || secret == NULL || secret[0] == '\0')
        return -1;
    char *copy = strdup(secret);
    if (copy == NULL)
        return -1;
    free(p->signer_secret);
    p->signer_secret = copy;
    return 0;
}

int hc_pool_set_metrics(hc_pool *p, metrics_t *m, const char *dep)
{
    if (p == NULL || m == NULL || p->metrics != NULL)
        return -1;
    char *copy = NULL;
    if (dep != NULL && (copy = strdup(dep)) == NULL)
        return -1;
    p->metrics = m;
    p->default_dep = copy;
    metrics_gauge_add(m, HC_GAUGE_HANDLES,
                      "Keep-alive HTTP client handles of the service's pools.",
                      p->size);
    metrics_gauge_add(m, HC_GAUGE_IN_USE,
                      "HTTP client handles borrowed by calls in progress.", 0);
    return 0;
}

int hc_pool_name_dependency(hc_pool *p, const char *url_prefix, const char *dep)
{
    if (p == NULL || url_prefix == NULL || dep == NULL ||
        p->ndeps == HC_DEPENDENCIES_MAX)
        return -1;
    char *prefix = strdup(url_prefix);
    char *name = strdup(dep);
    if (prefix == NULL || name == NULL) {
        free(prefix);
        free(name);
        return -1;
    }
    p->deps[p->ndeps].prefix = prefix;
    p->deps[p->ndeps].dep = name;
    p->ndeps++;
    return 0;
}

/* The dependency a call to url is timed as; NULL: not timed. */
static const char *dependency_of(const hc_pool *p, const char *url)
{
    if (p->metrics == NULL)
        return NULL;
    for (int i = 0; i < p->ndeps; i++)
        if (strncmp(url, p->deps[i].prefix, strlen(p->deps[i].prefix)) == 0)
            return p->deps[i].dep;
    return p->default_dep;
}

/* A free handle, waiting up to the call timeout; NULL when none came
 * back in time (every handle busy with a slow peer). */
static CURL *pool_borrow(hc_pool *p)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += p->timeout_ms / 1000;
    deadline.tv_nsec += (p->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    CURL *h = NULL;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->nfree == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
    if (p->nfree > 0)
        h = p->free_stack[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    if (h != NULL && p->metrics != NULL)
        metrics_gauge_add(p->metrics, HC_GAUGE_IN_USE, NULL, 1);
    return h;
}

static void pool_return(hc_pool *p, CURL *h)
{
    pthread_mutex_lock(&p->mu);
    p->free_stack[p->nfree++] = h;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->metrics != NULL)
        metrics_gauge_add(p->metrics, HC_GAUGE_IN_USE, NULL, -1);
}

/* ---- one call ------------------------------------------------------- */

size_t hc_body_append(hc_body *b, const char *data, size_t n, size_t max)
{
    if (b->len > max || n > max - b->len) {
        b->too_large = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return 0;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    /* 0 aborts the transfer with CURLE_WRITE_ERROR. */
    return hc_body_append(userdata, data, size * nmemb, HTTP_CLIENT_BODY_MAX);
}

/* The header list of one call; NULL when out of memory. */
static struct curl_slist *build_headers(const hc_headers *headers,
                                        bool has_body)
{
    /* An empty Expect: stops curl from waiting for 100-continue on
     * bodies over 1 KiB: a round trip wasted on every large hop. */
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    if (list != NULL && has_body)
        list = curl_slist_append(list, "Content-Type: application/json");
    for (int i = 0; list != NULL && headers != NULL && i < headers->n &&
                    i < (int)(sizeof(headers->lines) / sizeof(char *));
         i++) {
        struct curl_slist *next = curl_slist_append(list, headers->lines[i]);
        if (next == NULL)
            curl_slist_free_all(list);
        list = next;
    }
    return list;
}

/* The request target of an absolute URL: from the first '/' after
 * "scheme://authority" up to any '#' (a fragment is never sent); "/" for
 * a URL with nothing after its authority, as curl requests it. Returns
 * -1 for a query without a path, which no caller of ours builds. */
static int url_target(const char *url, const char **target, size_t *len)
{
    const char *authority = strstr(url, "://");
    authority = authority ? authority + 3 : url;
    const char *start = authority + strcspn(authority, "/?#");
    *len = strcspn(start, "#");
    *target = start;
    if (*len > 0 && start[0] == '/')
        return 0;
    if (*len > 0)
        return -1;
    *target = "/";
    *len = 1;
    return 0;
}

/* Appends "X-Internal-Auth: ..." to list when the pool signs. Returns
 * the list, or NULL (list freed) when signing failed: an internal call
 * that cannot be signed would be refused by its peer anyway. */
static struct curl_slist *add_signature(const hc_pool *p,
                                        struct curl_slist *list,
                                        const char *method, const char *url,
                                        const char *body, size_t len)
{
    if (p->signer_secret == NULL)
        return list;
    const char *target;
    size_t target_len;
    char line[sizeof IAUTH_HEADER + 2 + IAUTH_VALUE_MAX + 1];
    int prefix = snprintf(line, sizeof line, "%s: ", IAUTH_HEADER);
    if (url_target(url, &target, &target_len) != 0 ||
        iauth_sign(p->signer_secret, method, target, target_len, body,
                   body ? len : 0, (int64_t)time(NULL), line + prefix,
                   sizeof line - (size_t)prefix) < 0) {
        curl_slist_free_all(list);
        return NULL;
    }
    struct curl_slist *next = curl_slist_append(list, line);
    if (next == NULL)
        curl_slist_free_all(list);
    return next;
}

static bool set_method(CURL *h, const char *method, const char *body,
                       size_t len)
{
    if (strcmp(method, "GET") == 0 && body == NULL)
        return curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL) == CURLE_OK &&
               curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    /* Any other method goes out as a POST with its verb swapped in.
     * POSTFIELDS is borrowed: body outlives the perform call. */
    const char *verb = strcmp(method, "POST") == 0 ? NULL : method;
    return curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, verb) == CURLE_OK &&
           curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                            (curl_off_t)(body ? len : 0)) == CURLE_OK &&
           curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "") ==
               CURLE_OK;
}

/* Maps a transfer result to the caller's question: did the peer get the
 * request? A timeout before anything was sent (connect timeout) means it
 * did not, like a refused connection. */
static hc_err map_result(CURL *h, CURLcode rc, const hc_body *b)
{
    if (rc == CURLE_OK)
        return HC_OK;
    if (b->too_large)
        return HC_TOO_LARGE;
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        return HC_CONNECT;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        long sent = 0;
        if (curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK &&
            sent == 0)
            return HC_CONNECT;
        return HC_TIMEOUT;
    }
    return HC_ERROR;
}

bool hc_call_setup(const hc_pool *p, CURL *h, const char *method,
                   const char *url, struct curl_slist *list, const char *body,
                   size_t len, hc_body *reply)
{
    return curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
           curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, p->timeout_ms) == CURLE_OK &&
           curl_easy_setopt(h, CURLOPT_HTTPHEADER, list) == CURLE_OK &&
           curl_easy_setopt(h, CURLOPT_WRITEDATA, reply) == CURLE_OK &&
           set_method(h, method, body, len);
}

void hc_call_reset(CURL *h)
{
    /* The handle must not keep pointers into a finished call's memory. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
}

hc_err hc_call_result(CURL *h, CURLcode rc, hc_body *reply, hc_response *out)
{
    hc_err err = map_result(h, rc, reply);
    long status = 0;
    if (err == HC_OK &&
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        err = HC_ERROR;
    if (err == HC_OK && reply->data == NULL) {
        reply->data = calloc(1, 1); /* an empty body is still a string */
        if (reply->data == NULL)
            err = HC_ERROR;
    }
    if (err != HC_OK) {
        free(reply->data);
        *reply = (hc_body){0};
        return err;
    }
    out->status = status;
    out->body = reply->data;
    out->len = reply->len;
    *reply = (hc_body){0};
    return HC_OK;
}

static hc_err perform(hc_pool *p, CURL *h, const char *method, const char *url,
                      struct curl_slist *list, const char *body, size_t len,
                      hc_response *out)
{
    hc_body b = {0};
    bool ok = hc_call_setup(p, h, method, url, list, body, len, &b);
    CURLcode rc = ok ? curl_easy_perform(h) : CURLE_FAILED_INIT;
    hc_call_reset(h);
    return hc_call_result(h, rc, &b, out);
}

struct curl_slist *hc_call_headers(const hc_pool *p, const char *method,
                                   const char *url, const hc_headers *headers,
                                   const char *body, size_t len)
{
    struct curl_slist *list = build_headers(headers, body != NULL);
    return list ? add_signature(p, list, method, url, body, len) : NULL;
}

void hc_call_observe(const hc_pool *p, const char *url,
                     const struct timespec *start)
{
    const char *dep = dependency_of(p, url);
    if (dep != NULL)
        metrics_observe_dependency(p->metrics, dep,
                                   clockms_seconds_since(start));
}

hc_err hc_request(hc_pool *p, const char *method, const char *url,
                  const hc_headers *headers, const char *body, size_t len,
                  hc_response *out)
{
    if (out == NULL)
        return HC_ERROR;
    memset(out, 0, sizeof(*out));
    if (p == NULL || method == NULL || url == NULL)
        return HC_ERROR;

    struct curl_slist *list =
        hc_call_headers(p, method, url, headers, body, len);
    if (list == NULL)
        return HC_ERROR;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    CURL *h = pool_borrow(p);
    hc_err err = HC_TIMEOUT;
    if (h != NULL) {
        err = perform(p, h, method, url, list, body, len, out);
        pool_return(p, h);
    }
    curl_slist_free_all(list);
    hc_call_observe(p, url, &start);
    return err;
}
