/*
 * http_client.h - service-to-service HTTP calls over libcurl.
 *
 * A pool owns a fixed set of curl easy handles created at start-up. A call
 * borrows one, runs the request on it and gives it back, so connections to
 * each peer stay open (keep-alive) and are reused by later calls: no call
 * opens a connection unless the pool's handle has none to that host.
 * Response bodies are capped at HTTP_CLIENT_BODY_MAX. Thread safe.
 */
#ifndef MSG_HTTP_CLIENT_H
#define MSG_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

typedef struct hc_pool hc_pool;

typedef enum {
    HC_OK = 0,    /* a response arrived (any status) */
    HC_CONNECT,   /* could not connect: the peer is down */
    HC_TIMEOUT,   /* no complete answer in time: outcome unknown */
    HC_TOO_LARGE, /* response over the cap */
    HC_ERROR,     /* anything else (allocation, protocol) */
    HC_ABANDONED, /* the caller stopped waiting (hc_async_keep) */
} hc_err;

const char *hc_strerror(hc_err err);

/* A response body as libcurl delivers it, growing up to a cap. Zeroed
 * to start; data (NUL terminated once anything arrived) is owned by
 * whoever holds the buffer and freed with free(). */
typedef struct hc_body {
    char *data;
    size_t len;
    size_t cap;
    bool too_large; /* a chunk would have passed max */
} hc_body;

/* Appends data[0..n) to b unless b would pass max bytes. Returns n, or 0
 * (setting too_large past max, or on allocation failure): the value a
 * CURLOPT_WRITEFUNCTION returns, where 0 aborts the transfer. */
size_t hc_body_append(hc_body *b, const char *data, size_t n, size_t max);

typedef struct hc_response {
    long status;
    char *body; /* NUL terminated, owned: hc_response_free */
    size_t len;
} hc_response;

void hc_response_free(hc_response *r);

/* size handles; timeout_ms per call (connect timeout HOP_CONNECT_TIMEOUT_MS).
 * NULL on failure. */
hc_pool *hc_pool_new(int size, long timeout_ms);
void hc_pool_free(hc_pool *p);

/* Makes every later hc_request of the pool carry X-Internal-Auth
 * (common/iauth.h), signed with secret (copied) over the method, the
 * URL's path and query, the body and the current time. Call once after
 * hc_pool_new, before the pool is shared between threads. Returns 0, or
 * -1 when secret is NULL or empty or cannot be copied (the pool is then
 * unchanged). */
int hc_pool_set_signer(hc_pool *p, const char *secret);

/* Makes the pool report to m (borrowed for the life of the pool): the
 * handles it holds and those borrowed, in the gauges
 * http_client_handles and http_client_handles_in_use (summed over every
 * pool of the service), and, when dep is not NULL, each call's latency as
 * dependency dep (copied), or as the dependency of the first prefix
 * given to hc_pool_name_dependency that the call's URL starts with. Call
 * once after hc_pool_new, before the pool is shared between threads.
 * Returns 0, or -1 (pool unchanged) when p or m is NULL, it was called
 * before, or memory ran out. */
int hc_pool_set_metrics(hc_pool *p, metrics_t *m, const char *dep);
/* Calls whose URL starts with url_prefix (e.g. the storage URL) are
 * timed as dependency dep (both copied); at most HC_DEPENDENCIES_MAX
 * prefixes. Same rules as hc_pool_set_metrics; -1 past the limit. */
#define HC_DEPENDENCIES_MAX 4
int hc_pool_name_dependency(hc_pool *p, const char *url_prefix,
                            const char *dep);

/* One header line for a call, e.g. "X-Ring-Epoch: 3". */
typedef struct hc_headers {
    const char *lines[6];
    int n;
} hc_headers;

/* method "GET" or "POST"; body may be NULL (GET). On HC_OK, *out holds the
 * response and the caller frees it; on error *out is empty. */
hc_err hc_request(hc_pool *p, const char *method, const char *url,
                  const hc_headers *headers, const char *body, size_t len,
                  hc_response *out);

/* ---- asynchronous calls (http_async.c) ----
 *
 * An hc_async runs calls built as hc_request builds them (the pool's
 * signer, timeout and dependency metrics) on one thread of its own over a
 * libcurl multi handle, so a server thread can hand a call over and serve
 * other connections while it is in flight. Connections to each peer are
 * kept alive in the multi handle's cache and shared by all calls. */
typedef struct hc_async hc_async;

/* Called once per call, on the hc_async thread. On HC_OK resp holds the
 * answer and belongs to the callee (hc_response_free); else it is empty.
 * It must not block: every call of the hc_async waits for it. */
typedef void (*hc_async_done)(void *arg, hc_err err, hc_response *resp);

/* Starts the thread. p is borrowed and must outlive the hc_async.
 * per_host > 0 caps the connections to one peer: calls past it wait in
 * libcurl's queue for a connection (their timeout includes the wait), so
 * a thread-per-connection peer runs at most that many threads for us.
 * 0: no cap. NULL on failure. */
hc_async *hc_async_new(hc_pool *p, int per_host);
/* Ends every call still queued or in flight with HC_ERROR (done runs for
 * each), stops the thread, frees. NULL is a no-op. */
void hc_async_free(hc_async *a);
/* Queues a call; url, headers and body are copied. Returns 0 when queued
 * (done will run exactly once), -1 when not (done will not run). Thread
 * safe. */
int hc_async_request(hc_async *a, const char *method, const char *url,
                     const hc_headers *headers, const char *body, size_t len,
                     hc_async_done done, void *arg);

/* Whether a call in flight is still worth waiting for. Asked about every
 * HC_KEEP_CHECK_MS on the hc_async's thread with the call's arg; it must
 * not block. No: the transfer is dropped and done runs with
 * HC_ABANDONED. */
typedef bool (*hc_async_keep)(void *arg);
#define HC_KEEP_CHECK_MS 250
/* hc_async_request for a call that keep may give up on while it waits:
 * an answer that can no longer come (a peer that froze) need not hold
 * its caller for the whole timeout. */
int hc_async_request_keep(hc_async *a, const char *method, const char *url,
                          const hc_headers *headers, const char *body,
                          size_t len, hc_async_done done, hc_async_keep keep,
                          void *arg);

/* ---- driven: an hc_async without a thread of its own ----
 *
 * A server's event loop runs the calls on its own thread, so a call it
 * makes and the answer it gets never cross threads. done then runs on
 * that thread, inside hc_async_step. hc_async_request stays thread safe;
 * from the driving thread it costs no wake-up. hc_async_free must be
 * called by the driving thread or once it no longer steps. */
hc_async *hc_async_new_driven(hc_pool *p, int per_host);
/* One turn of the loop: starts the queued calls, moves their bytes, ends
 * the finished ones, then waits up to timeout_ms for one of the calls,
 * for fd to be readable (-1: none) or for hc_async_wakeup. It waits not
 * at all when a call just ended (its answer usually made fd ready). */
void hc_async_step(hc_async *a, int fd, int timeout_ms);
/* Ends the wait of hc_async_step; thread safe. */
void hc_async_wakeup(hc_async *a);
/* Refuses new calls from now on and ends those queued or in flight
 * (done with HC_ERROR) at the next step; thread safe. */
void hc_async_shutdown(hc_async *a);

#endif
