/*
 * http_server.h - the HTTP server glue every service uses, over
 * libmicrohttpd.
 *
 * A service declares a route table and a context pointer; the server reads
 * bodies (413 on Content-Length over HTTP_BODY_MAX before reading, and
 * again if a chunked body grows past it), matches routes (404 unknown
 * path, 405 known path with another method), runs the handler, writes the
 * reply, counts it in the metrics and logs one JSON line per request.
 * /healthz, /readyz and /metrics are served for every service.
 *
 * Handlers never touch libmicrohttpd: they get an hs_request and fill an
 * hs_reply. They run on server threads and may block (service-to-service
 * calls); the threading model is chosen by hs_config.threads.
 */
#ifndef MSG_HTTP_SERVER_H
#define MSG_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

#define HS_MAX_PARAMS 4
#define HS_REQUEST_ID_MAX 64
/* Room for a client address in text form (IPv6 takes at most 45). */
#define HS_CLIENT_ADDR_MAX 64
/* Extra headers a reply may carry (security headers of a page). */
#define HS_REPLY_HEADERS_MAX 4

typedef struct hs_request {
    const char *method;
    const char *path;                  /* without the query string */
    const char *target;                /* path and query exactly as received */
    const char *params[HS_MAX_PARAMS]; /* "{}" segments of the pattern */
    size_t nparams;
    const char *body; /* NUL terminated; NULL when empty */
    size_t body_len;
    char request_id[HS_REQUEST_ID_MAX]; /* X-Request-Id or generated */
    void *ctx;                          /* the service context */
    void *conn;                         /* opaque: use hs_query/hs_header */
    /* The TCP peer, as "127.0.0.1" or "::1"; "" if unknown. */
    char client_addr[HS_CLIENT_ADDR_MAX];
    void *server_ctx; /* opaque: the server's request context */
} hs_request;

/* What a handler answers. Exactly one of json / text is used. The server
 * frees json (json_decref) and text (free) after sending. */
typedef struct hs_reply {
    int status;
    json_t *json;
    char *text;
    size_t text_len;
    const char *content_type; /* default application/json, or
                                 application/problem+json when problem */
    int retry_after_s;        /* > 0 adds Retry-After */
    /* Extra headers (hs_reply_header), borrowed until sent: literals or
     * strings that outlive the request. Cleared with the body. */
    const char *header_names[HS_REPLY_HEADERS_MAX];
    const char *header_values[HS_REPLY_HEADERS_MAX];
    int nheaders;
} hs_reply;

typedef void (*hs_handler)(hs_request *req, hs_reply *rep);

/* pattern: literal segments and "{}" for a parameter, e.g.
 * "/v1/users/{}/conversations". name labels metrics and logs. */
typedef struct hs_route {
    const char *method;
    const char *pattern;
    hs_handler handler;
    const char *name;
} hs_route;

/* Readiness probe: returns true when dependencies answer. May block
 * briefly. */
typedef bool (*hs_ready_fn)(void *ctx);
/* Called by hs_stop once no new connection is accepted, before it waits
 * for requests in flight: a service answers its deferred requests
 * (hs_defer) here, so long polls do not hold the shutdown. */
typedef void (*hs_stopping_fn)(void *ctx);

/* An event loop per pool thread, run by the server and fed by the
 * service (hs_config.loop): each thread drives a libmicrohttpd daemon of
 * its own on the shared listening socket, and between two turns it waits
 * in the service's wait, which also runs the service's own work of that
 * thread (its outgoing calls). A handler on that thread reaches the
 * thread's state through hs_loop_state, so a call it starts and the
 * answer that wakes its request never cross threads. */
typedef struct hs_loop_ops {
    /* Once per loop thread, before it runs: its state, NULL on failure
     * (the server does not start). */
    void *(*open)(void *ctx);
    /* On the loop thread: waits up to timeout_ms for fd to be readable or
     * for the state's own work, and runs that work. */
    void (*wait)(void *state, int fd, int timeout_ms);
    /* From any thread: ends the current wait early. */
    void (*wake)(void *state);
    /* Once the loop thread ended. */
    void (*close)(void *state);
} hs_loop_ops;

typedef struct hs_config {
    const char *service; /* "gateway", ... for logs and metrics */
    const char *bind;    /* "127.0.0.1" */
    int port;
    int threads; /* 0: a thread per connection; N: a pool of N threads */
    /* The pool's threads wait in epoll rather than poll(): for a listener
     * of many idle connections (long polls), whose requests carry no
     * body (see daemon_flags in http_server.c). */
    bool epoll_pool;
    const hs_route *routes;
    size_t nroutes;
    hs_ready_fn ready;
    void *ctx;
    metrics_t *metrics; /* borrowed; the service may add its own series */
    /* Resource limits; 0 takes the default of constants.h. */
    unsigned int max_connections; /* HTTP_MAX_CONNECTIONS_DEFAULT */
    unsigned int conn_timeout_s;  /* idle: HTTP_CONN_TIMEOUT_S_DEFAULT */
    size_t conn_memory;           /* per connection, caps the request
                                     header block (431 past it):
                                     HTTP_CONN_MEMORY_DEFAULT */
    /* NULL: no check. Else every route whose pattern starts with
     * "/internal/" runs only for a call with a valid X-Internal-Auth
     * signed with this secret (common/iauth.h); any other call gets 401
     * problem+json "Internal call not authenticated", a missing, malformed
     * or stale header before its body is read. Borrowed for the life of
     * the server. */
    const char *internal_secret;
    /* Deferred requests (hs_defer) are allowed. With an epoll pool
     * (threads > 0) the connection is suspended (libmicrohttpd's
     * suspend/resume) and holds no thread; with a thread per connection
     * the handler's thread sleeps until hs_wake. */
    bool allow_suspend;
    hs_stopping_fn stopping; /* NULL: none */
    /* NULL: none. Called by hs_stop when its grace ran out with requests
     * still in flight: the service answers every deferred request it
     * still holds, at once (libmicrohttpd cannot stop with a connection
     * suspended). hs_stop then waits up to a second more. */
    hs_stopping_fn abandon;
    /* NULL: no CORS headers (same origin only). Else the value of
     * Access-Control-Allow-Origin on every reply ("*" or one origin), and
     * an OPTIONS preflight on any served path answers 204. Borrowed. */
    const char *cors_origin;
    /* NULL: libmicrohttpd runs its own threads. Else, with threads > 0,
     * each of the threads is an event loop (hs_loop_ops). Borrowed. */
    const hs_loop_ops *loop;
} hs_config;

typedef struct hs_server hs_server;

/* Fills the settings every service reads alike from the environment:
 * MESSENGER_BIND, MESSENGER_HTTP_THREADS, MESSENGER_MAX_CONNECTIONS,
 * MESSENGER_CONN_TIMEOUT_S and MESSENGER_INTERNAL_SECRET (README,
 * Configuration), and sets the log's MESSENGER_LOG_FLUSH_MS. Every other
 * field is zeroed (the server's defaults); the service sets its port,
 * routes and context after. Bad values are recorded in errs. */
void hs_config_from_env(hs_config *cfg, config_errors *errs);

/* Starts listening. Returns NULL (and logs why) on failure. Calls
 * hs_block_signals first, so the server's threads inherit a mask in which
 * SIGTERM/SIGINT are blocked and only hs_wait_for_signal receives them.
 * cfg->routes, cfg->service and cfg->metrics are borrowed for the life of
 * the server. Port 0 picks a free port (see hs_port). */
hs_server *hs_start(const hs_config *cfg);
/* The port the server listens on (the chosen one when cfg->port was 0). */
int hs_port(const hs_server *s);
/* Graceful stop: stops accepting, waits up to grace_ms for in-flight
 * requests, closes. NULL is a no-op. */
void hs_stop(hs_server *s, int grace_ms);

/* Query parameter (percent-decoded) or header value; NULL when absent. The
 * string lives as long as the request.
 * A query parameter's name matches exactly (case included); the first
 * of repeated names wins. A name without "=" reads as "" (present, with
 * an empty value, as "name=" does). A value holding a NUL byte (%00),
 * which a C string would cut short, reads as HS_QUERY_UNREADABLE: a
 * string no query parser accepts, so the parameter is refused whole. */
#define HS_QUERY_UNREADABLE "\x01"
const char *hs_query(const hs_request *req, const char *key);
const char *hs_header(const hs_request *req, const char *key);

/* Reply helpers: the only places where reply bodies are shaped. */
void hs_reply_json(hs_reply *rep, int status, json_t *body /* stolen */);
/* RFC 9457 problem+json: type is "about:blank" unless given. */
void hs_reply_problem(hs_reply *rep, int status, const char *title,
                      const char *detail);
/* Copies a body that is already in its final form (received from another
 * service, or assembled from stored JSON texts) unchanged. content_type
 * is borrowed until the reply is sent: pass a literal. */
void hs_reply_raw(hs_reply *rep, int status, const char *content_type,
                  const char *body, size_t len);

/* Frees rep's body and extra headers and zeroes it. */
void hs_reply_clear(hs_reply *rep);
/* Hands over rep's body as the server would send it: a malloc'd buffer
 * the caller frees (*buf NULL and *len 0 when there is no body). A reply
 * without a valid status, or whose JSON cannot be serialised, becomes a
 * 500 problem first, as it would on the wire. rep keeps its status; its
 * body may be left for hs_reply_clear. */
void hs_reply_take_body(hs_reply *rep, char **buf, size_t *len);

/* Adds a header to rep (after its body is set: the body helpers clear
 * headers). name and value are borrowed until the reply is sent. Returns
 * 0, or -1 when HS_REPLY_HEADERS_MAX are already there. */
int hs_reply_header(hs_reply *rep, const char *name, const char *value);

/* ---- deferred requests (long polls) ----
 *
 * A handler of a server with allow_suspend may, instead of answering,
 * call hs_defer and return with rep untouched: the connection is
 * suspended (no thread waits for it in an epoll pool). Later one call of
 * hs_wake, from any thread, resumes it, and the server runs resume(req,
 * arg, rep) on one of its threads, which must answer; req is the same
 * request (path, params, query, headers) as the handler saw. The
 * deferred handle belongs to the server: after hs_wake it may be gone.
 * Whoever calls hs_defer must make sure hs_wake is called exactly once,
 * at the latest when the service stops (hs_config.stopping). */
typedef struct hs_deferred hs_deferred;
typedef void (*hs_resume_fn)(hs_request *req, void *arg, hs_reply *rep);

/* NULL when the server does not allow suspension or memory ran out: the
 * handler must then answer itself. Call at most once per request. */
hs_deferred *hs_defer(hs_request *req, hs_resume_fn resume, void *arg);
/* Resumes a deferred request; thread safe, and safe to call before the
 * handler that deferred it has returned (it is then answered at once).
 * Call exactly once per handle. */
void hs_wake(hs_deferred *d);

/* The state hs_loop_ops.open made for the calling thread's loop; NULL
 * on any other thread. */
void *hs_loop_state(void);

/* Blocks SIGTERM/SIGINT in the calling thread and ignores SIGPIPE. Call
 * it first in main, before any thread starts, so every thread inherits the
 * mask. Idempotent. */
void hs_block_signals(void);
/* Blocks SIGTERM/SIGINT in the calling thread (call first in main, before
 * any thread starts) and waits for one of them. Returns the signal, or -1
 * if sigwait failed. */
int hs_wait_for_signal(void);

/* The server's whole life, for a service's main: hs_start(cfg), one log
 * line that it listens (cfg->service, bind and the actual port), then
 * hs_wait_for_signal and hs_stop with SHUTDOWN_GRACE_MS for requests in
 * flight. Returns 0 once stopped, or -1 if it did not start (hs_start
 * logged why). cfg is borrowed as by hs_start. */
int hs_serve_until_signal(const hs_config *cfg);

/* The same for n servers of one process (a service with a second
 * listener, such as one for long polls): starts cfgs[0..n) in order,
 * stops them in reverse order. Returns -1 if any failed to start (those
 * started are stopped). */
int hs_serve_all_until_signal(const hs_config *cfgs, int n);

#endif
