/*
 * http_server.c - the one place that talks to libmicrohttpd.
 *
 * libmicrohttpd calls on_access several times per request: once when the
 * headers are in (we allocate the request context, pick the request id,
 * resolve the route and refuse an oversized Content-Length before a byte
 * of body is read), once per piece of body (accumulated up to
 * HTTP_BODY_MAX), and once more when the body is complete (we run the
 * handler and queue the reply). on_completed frees the context whatever
 * happened, so early returns cannot leak.
 *
 * Graceful stop (hs_stop): /readyz turns 503 and every reply asks the
 * client to close, so load balancers and keep-alive clients move away.
 * New handshakes are fenced off first (a socket filter drops a lone
 * SYN), and the daemon stops accepting; connections the kernel had
 * already accepted into the listen backlog, and those whose handshake
 * was under way, are taken over by hand (MHD_add_connection) rather
 * than reset, and only then is the listening socket shut down, so later
 * connects are refused. hs_stop waits
 * until no request is in flight (in_flight goes up when a request
 * context is created, down in on_completed) and no connection has begun
 * a request for HS_DRAIN_QUIET_MS, or every connection is closed, all
 * bounded by the grace period; then it tears the daemon down.
 *
 * Handlers run on libmicrohttpd's threads and may block for a long time
 * (calls to other services); no lock of this file is held around them.
 *
 * Internal calls: with hs_config.internal_secret set, a route under
 * /internal/ runs only for a call carrying a valid X-Internal-Auth
 * (common/iauth.h). Its MAC covers the request target exactly as the
 * client wrote it, which libmicrohttpd gives us only before it splits
 * and unescapes it: the URI log callback (on_uri) copies it into the
 * request context, which it therefore allocates (libmicrohttpd then
 * hands that context to on_access and on_completed). The header's shape
 * and time are checked when the headers are in, before any body is
 * read; the MAC once the body is complete.
 */
#include "http_server.h"
#include "http_server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clockms.h"
#include "constants.h"
#include "iauth.h"
#include "log.h"

/* A chunked body that went past HTTP_BODY_MAX is read and thrown away so
 * the client gets its 413 on a clean connection; past this much more the
 * connection is simply dropped. */
#define HS_DISCARD_MAX (16 * 1024 * 1024)
/* hs_stop polls the in-flight count this often. */
#define HS_STOP_POLL_MS 10
/* After hs_config.abandon: long enough for the resumed requests to be
 * answered. */
#define HS_ABANDON_MS 1000
/* hs_stop's drain ends once no request is in flight and nothing began
 * for this long: a connection taken over from the backlog sends its
 * request within a few milliseconds (it is usually in the socket
 * buffer already), while an idle keep-alive connection never will. */
#define HS_DRAIN_QUIET_MS 100
/* Once new handshakes are fenced off (fence_handshakes), the ones
 * already under way complete within a round trip: hs_stop takes over
 * what lands in the backlog until it has been quiet this long. A
 * connect fenced off retries its SYN a second later and is refused
 * then, so this wait delays no client. */
#define HS_HANDSHAKE_SETTLE_MS 50
/* Bounds the take-overs after the fence, should a peer keep completing
 * handshakes begun before it (it cannot begin new ones). */
#define HS_SETTLE_ROUNDS_MAX 20

#define CONTENT_TYPE_JSON "application/json"
#define CONTENT_TYPE_PROBLEM "application/problem+json"
#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* A deferred request moves RUNNING (its handler runs) -> SUSPENDED
 * (connection suspended) -> WOKEN, or RUNNING -> WOKEN when hs_wake
 * comes before the handler returned; whoever sees the other side's step
 * done resumes the connection, so it is resumed exactly once. */
enum { DEFER_RUNNING = 0, DEFER_SUSPENDED, DEFER_WOKEN };

struct hs_deferred {
    atomic_int state;
    struct MHD_Connection *conn; /* set once by hs_defer */
    hs_loop_thread *loop;        /* the loop serving conn (loop mode) */
    hs_resume_fn resume;
    void *arg;
    /* With a thread per connection, libmicrohttpd 0.9.75 does not wake
     * a suspended connection's thread reliably: the handler's thread
     * waits on cv instead (it would sleep in libmicrohttpd anyway). */
    bool blocking;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Where a path landed in the route tables. */
typedef enum {
    ROUTE_FOUND,
    ROUTE_NOT_FOUND,
    ROUTE_WRONG_METHOD, /* the path exists with another method */
} route_outcome;

/* A "{}" segment of the path: offset and length within the path. */
typedef struct param_span {
    size_t off;
    size_t len;
} param_span;

/* Everything one request owns; freed by on_completed. */
typedef struct request_ctx {
    struct timespec start;
    char request_id[HS_REQUEST_ID_MAX];
    route_outcome outcome;
    const hs_route *route; /* when ROUTE_FOUND */
    bool builtin;          /* route is one of builtin_routes */
    param_span spans[HS_MAX_PARAMS];
    size_t nparams;
    char *params_buf; /* copy of the path holding the NUL-cut params */
    char *body;       /* NUL terminated */
    size_t body_len;
    size_t body_cap;
    size_t discarded; /* bytes thrown away past HTTP_BODY_MAX */
    bool too_large;
    bool answered;       /* a reply is queued: ignore further calls */
    char *raw_target;    /* path and query as received (on_uri); may be NULL */
    bool begun;          /* begin_request ran: counted in in_flight */
    bool may_defer;      /* the server allows suspension */
    bool blocking_defer; /* ... by a waiting thread (thread per conn.) */
    hs_deferred *deferred; /* set by hs_defer; freed with the context */
    hs_reading reading;    /* listed while the body is read (loop mode) */
} request_ctx;

/* ---- replies -------------------------------------------------------- */

/* Drops whatever body the reply held, so reply helpers can be called
 * again on the same reply without leaking. */
void hs_reply_clear(hs_reply *rep)
{
    json_decref(rep->json);
    free(rep->text);
    memset(rep, 0, sizeof(*rep));
}

void hs_reply_json(hs_reply *rep, int status, json_t *body)
{
    hs_reply_clear(rep);
    rep->status = status;
    rep->json = body;
    rep->content_type = CONTENT_TYPE_JSON;
}

void hs_reply_problem(hs_reply *rep, int status, const char *title,
                      const char *detail)
{
    if (title == NULL)
        title = MHD_get_reason_phrase_for((unsigned int)status);
    json_t *body = json_pack("{s:s, s:s, s:i}", "type", "about:blank", "title",
                             title, "status", status);
    if (body != NULL && detail != NULL)
        json_object_set_new(body, "detail", json_string(detail));
    hs_reply_json(rep, status, body);
    rep->content_type = CONTENT_TYPE_PROBLEM;
}

int hs_reply_header(hs_reply *rep, const char *name, const char *value)
{
    if (rep->nheaders >= HS_REPLY_HEADERS_MAX)
        return -1;
    rep->header_names[rep->nheaders] = name;
    rep->header_values[rep->nheaders] = value;
    rep->nheaders++;
    return 0;
}

void hs_reply_raw(hs_reply *rep, int status, const char *content_type,
                  const char *body, size_t len)
{
    hs_reply_clear(rep);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return; /* status 0: the server answers 500 */
    if (len > 0)
        memcpy(copy, body, len);
    copy[len] = '\0';
    rep->status = status;
    rep->text = copy;
    rep->text_len = len;
    rep->content_type = content_type ? content_type : CONTENT_TYPE_JSON;
}

/* Serialises the reply body into a malloc'd buffer that the MHD response
 * will own; a reply that cannot be serialised becomes a 500 problem. */
void hs_reply_take_body(hs_reply *rep, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (rep->status < 100 || rep->status > 599)
        hs_reply_problem(rep, 500, NULL, "the handler gave no answer");
    if (rep->text != NULL) {
        *buf = rep->text;
        *len = rep->text_len;
        rep->text = NULL;
    } else if (rep->json != NULL) {
        *buf = json_dumps(rep->json, JSON_COMPACT);
        if (*buf == NULL) {
            hs_reply_problem(rep, 500, NULL, "reply not serialisable");
            *buf = json_dumps(rep->json, JSON_COMPACT);
        }
        *len = *buf ? strlen(*buf) : 0;
    }
}

/* ---- logging and metrics -------------------------------------------- */

static long long us_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - start->tv_sec) * 1000000 +
           (now.tv_nsec - start->tv_nsec) / 1000;
}

static void record_request(const hs_server *s, const request_ctx *rc,
                           const char *method, int status)
{
    const char *route = rc->outcome == ROUTE_FOUND ? rc->route->name : NULL;
    if (route == NULL)
        route = "unknown";
    long long us = us_since(&rc->start);
    metrics_observe_request(s->cfg.metrics, route, status, (double)us / 1e6);

    log_request_line line = {.service = s->cfg.service,
                             .request_id = rc->request_id,
                             .method = method,
                             .route = route,
                             .status = status,
                             .duration_us = us};
    log_request(status >= 500 ? "warn" : "info", &line);
}

/* ---- sending -------------------------------------------------------- */

static bool add_headers(struct MHD_Response *resp, const hs_server *s,
                        const request_ctx *rc, const hs_reply *rep, size_t len,
                        const char *allow, bool must_close)
{
    char retry[16];
    bool ok = MHD_add_response_header(resp, "X-Request-Id", rc->request_id) ==
              MHD_YES;
    if (ok && len > 0)
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                     rep->content_type
                                         ? rep->content_type
                                         : CONTENT_TYPE_JSON) == MHD_YES;
    if (ok && rep->retry_after_s > 0) {
        snprintf(retry, sizeof(retry), "%d", rep->retry_after_s);
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
                                     retry) == MHD_YES;
    }
    if (ok && allow != NULL)
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) ==
             MHD_YES;
    for (int i = 0; ok && i < rep->nheaders; i++)
        ok = MHD_add_response_header(resp, rep->header_names[i],
                                     rep->header_values[i]) == MHD_YES;
    if (ok && s->cfg.cors_origin != NULL) {
        ok = MHD_add_response_header(resp, "Access-Control-Allow-Origin",
                                     s->cfg.cors_origin) == MHD_YES;
        if (ok && strcmp(s->cfg.cors_origin, "*") != 0)
            ok = MHD_add_response_header(resp, "Vary", "Origin") == MHD_YES;
    }
    /* libmicrohttpd closes the connection after a reply carrying this. */
    if (ok && (must_close || atomic_load(&s->stopping)))
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
                                     "close") == MHD_YES;
    return ok;
}

/* Queues rep (consumed) as the answer to the request, counts and logs
 * it. allow is the Allow header of a 405; must_close ends the connection
 * after the reply (used when the request body is left unread). */
static enum MHD_Result send_reply(hs_server *s, struct MHD_Connection *conn,
                                  request_ctx *rc, const char *method,
                                  hs_reply *rep, const char *allow,
                                  bool must_close)
{
    char *buf;
    size_t len;
    hs_reply_take_body(rep, &buf, &len);
    int status = rep->status;

    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, buf ? buf : "",
        buf ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(buf);
        hs_reply_clear(rep);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (add_headers(resp, s, rc, rep, len, allow, must_close))
        ret = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    hs_reply_clear(rep);
    rc->answered = true;
    record_request(s, rc, method, status);
    return ret;
}

static enum MHD_Result send_problem(hs_server *s, struct MHD_Connection *conn,
                                    request_ctx *rc, const char *method,
                                    int status, const char *detail,
                                    const char *allow, bool must_close)
{
    hs_reply rep = {0};
    hs_reply_problem(&rep, status, NULL, detail);
    return send_reply(s, conn, rc, method, &rep, allow, must_close);
}

/* ---- routing -------------------------------------------------------- */

/* Matches path against pattern segment by segment; "{}" matches one
 * non-empty segment, recorded in spans. Returns the number of params, or
 * -1 when the path does not match. Pure: no allocation, no I/O. */
static int hs_match_path(const char *pattern, const char *path,
                         param_span spans[HS_MAX_PARAMS])
{
    if (pattern[0] != '/' || path[0] != '/')
        return -1;
    const char *p = pattern;
    const char *q = path;
    int n = 0;
    while (*p == '/' && *q == '/') {
        p++;
        q++;
        size_t plen = strcspn(p, "/");
        size_t qlen = strcspn(q, "/");
        if (plen == 2 && p[0] == '{' && p[1] == '}') {
            if (qlen == 0 || n == HS_MAX_PARAMS)
                return -1;
            spans[n].off = (size_t)(q - path);
            spans[n].len = qlen;
            n++;
        } else if (plen != qlen || memcmp(p, q, plen) != 0) {
            return -1;
        }
        p += plen;
        q += qlen;
    }
    return *p == '\0' && *q == '\0' ? n : -1;
}

static void serve_healthz(hs_request *req, hs_reply *rep);
static void serve_readyz(hs_request *req, hs_reply *rep);
static void serve_metrics(hs_request *req, hs_reply *rep);

/* Served by every service; their handlers get the hs_server as ctx. */
static const hs_route builtin_routes[] = {
    {"GET", "/healthz", serve_healthz, "healthz"},
    {"GET", "/readyz", serve_readyz, "readyz"},
    {"GET", "/metrics", serve_metrics, "metrics"},
};
#define BUILTIN_ROUTES (sizeof(builtin_routes) / sizeof(builtin_routes[0]))

/* Looks path up in one table; a path match with another method only
 * moves the outcome to ROUTE_WRONG_METHOD. */
static bool resolve_in(request_ctx *rc, const hs_route *routes, size_t n,
                       const char *method, const char *path)
{
    for (size_t i = 0; i < n; i++) {
        param_span spans[HS_MAX_PARAMS];
        int np = hs_match_path(routes[i].pattern, path, spans);
        if (np < 0)
            continue;
        if (strcmp(routes[i].method, method) != 0) {
            rc->outcome = ROUTE_WRONG_METHOD;
            continue;
        }
        rc->outcome = ROUTE_FOUND;
        rc->route = &routes[i];
        rc->nparams = (size_t)np;
        memcpy(rc->spans, spans, sizeof(spans));
        return true;
    }
    return false;
}

static void resolve_route(const hs_server *s, request_ctx *rc,
                          const char *method, const char *path)
{
    rc->outcome = ROUTE_NOT_FOUND;
    if (resolve_in(rc, s->cfg.routes, s->cfg.nroutes, method, path))
        return;
    rc->builtin = resolve_in(rc, builtin_routes, BUILTIN_ROUTES, method, path);
}

static void allow_add(char *allow, size_t size, const char *method)
{
    size_t used = strlen(allow);
    /* The same method listed twice (two patterns) is said once. */
    for (const char *p = strstr(allow, method); p; p = strstr(p + 1, method)) {
        size_t mlen = strlen(method);
        if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || !p[mlen]))
            return;
    }
    snprintf(allow + used, size - used, "%s%s", used ? ", " : "", method);
}

/* The Allow header of a 405: every method the path is served with. */
static void build_allow(const hs_server *s, const char *path, char *allow,
                        size_t size)
{
    param_span spans[HS_MAX_PARAMS];
    allow[0] = '\0';
    for (size_t i = 0; i < s->cfg.nroutes; i++)
        if (hs_match_path(s->cfg.routes[i].pattern, path, spans) >= 0)
            allow_add(allow, size, s->cfg.routes[i].method);
    for (size_t i = 0; i < BUILTIN_ROUTES; i++)
        if (hs_match_path(builtin_routes[i].pattern, path, spans) >= 0)
            allow_add(allow, size, builtin_routes[i].method);
}

/* ---- built-in routes ------------------------------------------------ */

static void serve_healthz(hs_request *req, hs_reply *rep)
{
    hs_reply_json(rep, 200, json_pack("{s:s}", "status", "ok"));
}

static void serve_readyz(hs_request *req, hs_reply *rep)
{
    const hs_server *s = req->ctx;
    if (atomic_load(&s->stopping)) {
        /* Draining: tell load balancers to send no more. */
        hs_reply_problem(rep, 503, "Not Ready", "shutting down");
        return;
    }
    if (s->cfg.ready == NULL || s->cfg.ready(s->cfg.ctx)) {
        hs_reply_json(rep, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    hs_reply_problem(rep, 503, "Not Ready", "a dependency does not answer");
    rep->retry_after_s = 1;
}

static void serve_metrics(hs_request *req, hs_reply *rep)
{
    const hs_server *s = req->ctx;
    char *text = s->cfg.metrics ? metrics_render(s->cfg.metrics) : calloc(1, 1);
    if (text == NULL) {
        hs_reply_problem(rep, 500, NULL, "metrics could not be rendered");
        return;
    }
    hs_reply_clear(rep);
    rep->status = 200;
    rep->text = text;
    rep->text_len = strlen(text);
    rep->content_type = CONTENT_TYPE_METRICS;
}

/* ---- request ids ---------------------------------------------------- */

/* 1..HS_REQUEST_ID_MAX-1 characters of [A-Za-z0-9._-]: safe to echo in
 * a header and to write in a log line. */
static bool hs_request_id_is_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t len = strlen(id);
    if (len == 0 || len >= HS_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* splitmix64's finaliser: a bijection of 64-bit words, so distinct
 * counters give distinct, evenly spread halves. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A thread's random 128 bits, taken once; without entropy (very early
 * boot), time and address, which still keep ids apart to correlate log
 * lines. */
static void thread_key(uint64_t key[2])
{
    if (getrandom(key, 2 * sizeof(key[0]), 0) == (ssize_t)(2 * sizeof(key[0])))
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    key[0] = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
    key[1] = (uint64_t)(uintptr_t)key;
}

static void put_hex64(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

/* 32 hex digits: the thread's random first half, then its counter mixed
 * with the second half. Ids of one thread never repeat (a bijection of a
 * counter) and two threads share one only if their random halves meet.
 * A getrandom(2) per request was a syscall on every request's path. */
static void generate_request_id(char out[HS_REQUEST_ID_MAX])
{
    static _Thread_local uint64_t key[2];
    static _Thread_local uint64_t counter;
    static _Thread_local bool has_key;
    if (!has_key) {
        thread_key(key);
        has_key = true;
    }
    put_hex64(out, key[0]);
    put_hex64(out + 16, mix64(key[1] + counter++));
    out[32] = '\0';
}

/* ---- internal authentication ---------------------------------------- */

/* Called by libmicrohttpd once per request, with the request target as
 * received (NULL when the request line has none), before it is split and
 * unescaped. Returns the request context, which becomes on_access's
 * *con_cls; on allocation failure NULL, and begin_request allocates. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    request_ctx *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return NULL;
    rc->raw_target = strdup(uri ? uri : "");
    return rc;
}

/* Routes under /internal/ of a server that has an internal secret.
 * Built-in routes (health, readiness, metrics) stay open. */
static bool needs_internal_auth(const hs_server *s, const request_ctx *rc)
{
    static const char prefix[] = "/internal/";
    return s->cfg.internal_secret != NULL && rc->outcome == ROUTE_FOUND &&
           !rc->builtin &&
           strncmp(rc->route->pattern, prefix, sizeof prefix - 1) == 0;
}

static const char *internal_auth_value(struct MHD_Connection *conn)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, IAUTH_HEADER);
}

/* What can be judged before the body: the header is there, well formed
 * and within the time window. */
static iauth_err precheck_internal_auth(struct MHD_Connection *conn)
{
    const char *value = internal_auth_value(conn);
    iauth_value parsed;
    iauth_err err = iauth_parse(value, value ? strlen(value) : 0, &parsed);
    if (err == IAUTH_OK)
        err = iauth_check_time(parsed.ts, (int64_t)time(NULL));
    return err;
}

/* The whole check, body included: the MAC over the method, the target as
 * received and the body. */
static iauth_err verify_internal_auth(const hs_server *s,
                                      struct MHD_Connection *conn,
                                      const request_ctx *rc, const char *method)
{
    const char *value = internal_auth_value(conn);
    if (rc->raw_target == NULL)
        return IAUTH_ERROR;
    return iauth_verify(s->cfg.internal_secret, value,
                        value ? strlen(value) : 0, method, rc->raw_target,
                        strlen(rc->raw_target), rc->body, rc->body_len,
                        (int64_t)time(NULL));
}

/* 401 problem+json; must_close when the body was left unread. */
static enum MHD_Result refuse_internal_call(hs_server *s,
                                            struct MHD_Connection *conn,
                                            request_ctx *rc, const char *method,
                                            iauth_err err, bool must_close)
{
    hs_reply rep = {0};
    hs_reply_problem(&rep, 401, "Internal call not authenticated",
                     iauth_strerror(err));
    return send_reply(s, conn, rc, method, &rep, NULL, must_close);
}

/* ---- the access handler --------------------------------------------- */

/* True when the request announces a body larger than HTTP_BODY_MAX. */
static bool content_length_too_large(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL)
        return false;
    char *end = NULL;
    unsigned long long n = strtoull(cl, &end, 10);
    /* libmicrohttpd already refuses a malformed Content-Length. */
    return end != cl && n > HTTP_BODY_MAX;
}

static enum MHD_Result begin_request(hs_server *s, struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     void **con_cls)
{
    /* Normally on_uri allocated the context already. */
    request_ctx *rc = *con_cls != NULL ? *con_cls : calloc(1, sizeof(*rc));
    if (rc == NULL)
        return MHD_NO; /* closes the connection */
    *con_cls = rc;
    rc->begun = true;
    rc->may_defer = s->cfg.allow_suspend;
    rc->blocking_defer = s->cfg.threads == 0;
    atomic_fetch_add(&s->in_flight, 1);
    atomic_store(&s->last_begin, clockms_monotonic());
    clock_gettime(CLOCK_MONOTONIC, &rc->start);

    const char *id =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (hs_request_id_is_valid(id))
        snprintf(rc->request_id, sizeof(rc->request_id), "%s", id);
    else
        generate_request_id(rc->request_id);
    resolve_route(s, rc, method, url);
    if (needs_internal_auth(s, rc)) {
        iauth_err err = precheck_internal_auth(conn);
        if (err != IAUTH_OK)
            return refuse_internal_call(s, conn, rc, method, err, true);
    }

    /* Answering now, before the body is read, makes libmicrohttpd skip
     * the body and close the connection after the reply: the client
     * never gets to upload the oversized body. */
    if (content_length_too_large(conn))
        return send_problem(s, conn, rc, method, 413,
                            "the request body is over 1 MiB", NULL, true);
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info != NULL)
        hs_loop_reading_add(&rc->reading, info->connect_fd);
    return MHD_YES;
}

/* Takes one piece of body; past HTTP_BODY_MAX it is counted, not kept. */
static enum MHD_Result absorb_body(request_ctx *rc, const char *data,
                                   size_t len)
{
    if (rc->too_large || len > HTTP_BODY_MAX - rc->body_len) {
        rc->too_large = true;
        rc->discarded += len;
        return rc->discarded > HS_DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (rc->body_len + len + 1 > rc->body_cap) {
        size_t cap = rc->body_cap ? rc->body_cap : 1024;
        while (cap < rc->body_len + len + 1)
            cap *= 2;
        char *grown = realloc(rc->body, cap);
        if (grown == NULL)
            return MHD_NO;
        rc->body = grown;
        rc->body_cap = cap;
    }
    memcpy(rc->body + rc->body_len, data, len);
    rc->body_len += len;
    rc->body[rc->body_len] = '\0';
    return MHD_YES;
}

/* Copies the path once and cuts the params out of the copy, so they are
 * NUL terminated strings that live as long as the request. */
static bool fill_params(request_ctx *rc, const char *url, hs_request *req)
{
    if (rc->nparams == 0)
        return true;
    if (rc->params_buf == NULL) /* a resumed request has them already */
        rc->params_buf = strdup(url);
    if (rc->params_buf == NULL)
        return false;
    for (size_t i = 0; i < rc->nparams; i++) {
        rc->params_buf[rc->spans[i].off + rc->spans[i].len] = '\0';
        req->params[i] = NULL;
        req->params[i] = rc->params_buf + rc->spans[i].off;
    }
    req->nparams = rc->nparams;
    return true;
}

/* The TCP peer of conn as text ("" when libmicrohttpd cannot say). */
static void peer_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    out[0] = '\0';
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL)
        return;
    const struct sockaddr *sa = info->client_addr;
    const void *raw = NULL;
    if (sa->sa_family == AF_INET)
        raw = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        raw = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (raw == NULL ||
        inet_ntop(sa->sa_family, raw, out, (socklen_t)cap) == NULL)
        out[0] = '\0';
}

/* Fills req for rc's route; false when out of memory. */
static bool build_request(hs_server *s, struct MHD_Connection *conn,
                          request_ctx *rc, const char *url, const char *method,
                          hs_request *req)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->path = url;
    req->target = rc->raw_target ? rc->raw_target : url;
    req->body = rc->body_len > 0 ? rc->body : NULL;
    req->body_len = rc->body_len;
    memcpy(req->request_id, rc->request_id, sizeof(req->request_id));
    req->ctx = rc->builtin ? (void *)s : s->cfg.ctx;
    req->conn = conn;
    req->server_ctx = rc;
    peer_address(conn, req->client_addr, sizeof(req->client_addr));
    return fill_params(rc, url, req);
}

/* ---- deferred requests ---------------------------------------------- */

hs_deferred *hs_defer(hs_request *req, hs_resume_fn resume, void *arg)
{
    request_ctx *rc = req ? req->server_ctx : NULL;
    if (rc == NULL || !rc->may_defer || rc->deferred != NULL || !resume)
        return NULL;
    hs_deferred *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    atomic_init(&d->state, DEFER_RUNNING);
    d->blocking = rc->blocking_defer;
    if (d->blocking) {
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cv, NULL);
    }
    d->conn = req->conn;
    d->loop = hs_loop_current();
    d->resume = resume;
    d->arg = arg;
    rc->deferred = d;
    return d;
}

void hs_wake(hs_deferred *d)
{
    if (d == NULL)
        return;
    if (d->blocking) {
        pthread_mutex_lock(&d->mu);
        atomic_store(&d->state, DEFER_WOKEN);
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    /* Read before the exchange: once the state says WOKEN the server may
     * resume, answer and free d. */
    struct MHD_Connection *conn = d->conn;
    hs_loop_thread *loop = d->loop;
    if (atomic_exchange(&d->state, DEFER_WOKEN) == DEFER_SUSPENDED) {
        MHD_resume_connection(conn);
        hs_loop_kick(loop);
    }
}

/* After a handler deferred its request: suspend the connection, unless
 * hs_wake came first, in which case it is resumed at once (libmicrohttpd
 * then calls on_access again, which runs the resume function). */
static enum MHD_Result suspend_deferred(struct MHD_Connection *conn,
                                        request_ctx *rc)
{
    MHD_suspend_connection(conn);
    int expected = DEFER_RUNNING;
    if (!atomic_compare_exchange_strong(&rc->deferred->state, &expected,
                                        DEFER_SUSPENDED)) {
        MHD_resume_connection(conn);
        hs_loop_kick(rc->deferred->loop);
    }
    return MHD_YES;
}

/* on_access after a deferred request was resumed: its answer. */
static enum MHD_Result resume_deferred(hs_server *s,
                                       struct MHD_Connection *conn,
                                       request_ctx *rc, const char *url,
                                       const char *method)
{
    if (atomic_load(&rc->deferred->state) != DEFER_WOKEN)
        return MHD_YES; /* not ours to answer yet */
    hs_request req;
    if (!build_request(s, conn, rc, url, method, &req))
        return send_problem(s, conn, rc, method, 500, "out of memory", NULL,
                            false);
    hs_reply rep = {0};
    rc->deferred->resume(&req, rc->deferred->arg, &rep);
    return send_reply(s, conn, rc, method, &rep, NULL, false);
}

static enum MHD_Result dispatch(hs_server *s, struct MHD_Connection *conn,
                                request_ctx *rc, const char *url,
                                const char *method)
{
    hs_request req;
    if (!build_request(s, conn, rc, url, method, &req))
        return send_problem(s, conn, rc, method, 500, "out of memory", NULL,
                            false);

    hs_reply rep = {0};
    rc->route->handler(&req, &rep);
    if (rc->deferred != NULL) {
        hs_reply_clear(&rep); /* the resume function answers */
        if (!rc->deferred->blocking)
            return suspend_deferred(conn, rc);
        hs_deferred *d = rc->deferred;
        pthread_mutex_lock(&d->mu);
        while (atomic_load(&d->state) != DEFER_WOKEN)
            pthread_cond_wait(&d->cv, &d->mu);
        pthread_mutex_unlock(&d->mu);
        return resume_deferred(s, conn, rc, url, method);
    }
    return send_reply(s, conn, rc, method, &rep, NULL, false);
}

/* A CORS preflight (OPTIONS on a served path, CORS enabled): 204 with
 * the methods the path is served with. */
static enum MHD_Result answer_preflight(hs_server *s,
                                        struct MHD_Connection *conn,
                                        request_ctx *rc, const char *method,
                                        const char *allow)
{
    hs_reply rep = {0};
    rep.status = 204;
    hs_reply_header(&rep, "Access-Control-Allow-Methods", allow);
    hs_reply_header(&rep, "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, X-Request-Id");
    hs_reply_header(&rep, "Access-Control-Max-Age", "600");
    return send_reply(s, conn, rc, method, &rep, NULL, false);
}

static enum MHD_Result finish_request(hs_server *s, struct MHD_Connection *conn,
                                      request_ctx *rc, const char *url,
                                      const char *method)
{
    if (rc->too_large)
        return send_problem(s, conn, rc, method, 413,
                            "the request body is over 1 MiB", NULL, false);
    if (rc->outcome == ROUTE_NOT_FOUND)
        return send_problem(s, conn, rc, method, 404, "no such route", NULL,
                            false);
    if (rc->outcome == ROUTE_WRONG_METHOD) {
        char allow[128];
        build_allow(s, url, allow, sizeof(allow));
        if (s->cfg.cors_origin != NULL && strcmp(method, "OPTIONS") == 0)
            return answer_preflight(s, conn, rc, method, allow);
        return send_problem(s, conn, rc, method, 405,
                            "method not allowed on this route", allow, false);
    }
    if (needs_internal_auth(s, rc)) {
        iauth_err err = verify_internal_auth(s, conn, rc, method);
        if (err != IAUTH_OK)
            return refuse_internal_call(s, conn, rc, method, err, false);
    }
    return dispatch(s, conn, rc, url, method);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    hs_server *s = cls;
    request_ctx *rc = *con_cls;
    if (rc == NULL || !rc->begun)
        return begin_request(s, conn, url, method, con_cls);
    if (*upload_data_size > 0) {
        size_t len = *upload_data_size;
        *upload_data_size = 0;
        return rc->answered ? MHD_YES : absorb_body(rc, upload_data, len);
    }
    hs_loop_reading_remove(&rc->reading); /* the body is complete */
    if (rc->answered)
        return MHD_YES;
    if (rc->deferred != NULL)
        return resume_deferred(s, conn, rc, url, method);
    return finish_request(s, conn, rc, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    hs_server *s = cls;
    request_ctx *rc = *con_cls;
    if (rc == NULL)
        return;
    *con_cls = NULL;
    bool begun = rc->begun;
    hs_loop_reading_remove(&rc->reading);
    free(rc->body);
    free(rc->params_buf);
    free(rc->raw_target);
    if (rc->deferred != NULL && rc->deferred->blocking) {
        pthread_mutex_destroy(&rc->deferred->mu);
        pthread_cond_destroy(&rc->deferred->cv);
    }
    free(rc->deferred);
    free(rc);
    /* A request refused before on_access (a header block over the
     * memory limit) was never counted. */
    if (begun)
        atomic_fetch_sub(&s->in_flight, 1);
}

/* Counts accepted connections: keep-alive reuse shows as requests
 * growing much faster than this counter. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    hs_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->open_conns, 1);
        atomic_store(&s->last_begin, clockms_monotonic());
        metrics_count(s->cfg.metrics, "http_connections_total",
                      "TCP connections accepted by the HTTP server.", 1);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&s->open_conns, 1);
    }
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    json_t *fields = json_pack("{s:s}", "detail", text);
    log_event("warn", "libmicrohttpd", fields);
    json_decref(fields);
}

/* ---- lifecycle ------------------------------------------------------ */

void hs_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A peer closing its socket must cost an error return, not the
     * process. */
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, NULL);
}

int hs_wait_for_signal(void)
{
    hs_block_signals();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
        return -1;
    return sig;
}

int hs_serve_until_signal(const hs_config *cfg)
{
    return hs_serve_all_until_signal(cfg, 1);
}

/* Most servers one process runs. */
#define HS_SERVERS_MAX 4

int hs_serve_all_until_signal(const hs_config *cfgs, int n)
{
    hs_server *s[HS_SERVERS_MAX];
    int started = 0;
    if (n < 1 || n > HS_SERVERS_MAX)
        return -1;
    for (; started < n; started++) {
        s[started] = hs_start(&cfgs[started]);
        if (!s[started])
            break;
        log_msg("info", "%s listening on %s:%d", cfgs[started].service,
                cfgs[started].bind, hs_port(s[started]));
    }
    bool all = started == n;
    if (all) {
        int sig = hs_wait_for_signal();
        log_msg("info", "signal %d: shutting down", sig);
    }
    while (started > 0) {
        started--;
        hs_stop(s[started], SHUTDOWN_GRACE_MS);
    }
    return all ? 0 : -1;
}

/* The listening address; false when bind is not an IPv4/IPv6 literal. */
static bool make_address(const hs_config *cfg, struct sockaddr_storage *ss,
                         bool *is_v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    *is_v6 = false;
    if (inet_pton(AF_INET, cfg->bind, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)cfg->port);
        return true;
    }
    if (inet_pton(AF_INET6, cfg->bind, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)cfg->port);
        *is_v6 = true;
        return true;
    }
    return false;
}

static bool config_is_valid(const hs_config *cfg)
{
    return cfg != NULL && cfg->service != NULL && cfg->bind != NULL &&
           cfg->port >= 0 && cfg->port <= 65535 && cfg->threads >= 0 &&
           (cfg->routes != NULL || cfg->nroutes == 0);
}

/* Thread per connection: handlers may block without starving others;
 * poll() rather than select() because fds pass FD_SETSIZE at the
 * connection limit. Thread pool: N poll() loops share the connections,
 * or N epoll loops for a listener of many idle connections (epoll_pool).
 * Under epoll, libmicrohttpd 0.9.75 missed a peer's close in the middle
 * of a request body (nginx refusing a chunked upload past its limit):
 * the connection sat half closed, its request in flight, until the idle
 * timeout, and held up a graceful stop. poll() measured as fast here.
 * ITC is what lets MHD_quiesce_daemon stop accepting from another
 * thread. */
static unsigned int daemon_flags(const hs_config *cfg, bool is_v6)
{
    unsigned int flags = MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (cfg->loop != NULL && cfg->threads > 0)
        flags |= MHD_USE_EPOLL; /* polled from outside (http_loop.c) */
    else if (cfg->threads == 0)
        flags |= MHD_USE_INTERNAL_POLLING_THREAD |
                 MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    else
        flags |= MHD_USE_INTERNAL_POLLING_THREAD |
                 (cfg->epoll_pool ? MHD_USE_EPOLL : MHD_USE_POLL);
    if (is_v6)
        flags |= MHD_USE_IPv6;
    if (cfg->allow_suspend && cfg->threads > 0)
        flags |= MHD_ALLOW_SUSPEND_RESUME;
    return flags;
}

/* Zero limits take their defaults. The connection limit also bounds
 * threads (thread per connection); the idle timeout frees connections
 * whose client went quiet; the per-connection memory caps the header
 * block a client may make us hold. */
static void apply_limit_defaults(hs_config *cfg)
{
    if (cfg->max_connections == 0)
        cfg->max_connections = HTTP_MAX_CONNECTIONS_DEFAULT;
    if (cfg->conn_timeout_s == 0)
        cfg->conn_timeout_s = HTTP_CONN_TIMEOUT_S_DEFAULT;
    if (cfg->conn_memory == 0)
        cfg->conn_memory = HTTP_CONN_MEMORY_DEFAULT;
}

/* A server that holds long polls keeps a descriptor per waiting client
 * (and a gateway one more per owner call): the soft limit (often 1024)
 * goes up to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_msg("warn", "http server: cannot raise the descriptor limit");
}

struct MHD_Daemon *hs_daemon_start(hs_server *s, unsigned int flags,
                                   const struct sockaddr_storage *addr,
                                   MHD_socket listen_fd, unsigned int pool)
{
    /* The logger goes first so that messages about the other options
     * reach it too. A listening socket given replaces the address.
     * MHD_OPTION_END where the pool size would go ends the list early. */
    return MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, on_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)addr, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.conn_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->cfg.conn_memory,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        pool > 0 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, pool,
        MHD_OPTION_END);
}

hs_server *hs_start(const hs_config *cfg)
{
    struct sockaddr_storage addr;
    bool is_v6;
    if (!config_is_valid(cfg) || !make_address(cfg, &addr, &is_v6)) {
        log_msg("error", "http server: invalid configuration (bind %s)",
                cfg && cfg->bind ? cfg->bind : "(none)");
        return NULL;
    }
    hs_block_signals();
    if (cfg->allow_suspend)
        raise_fd_limit();
    hs_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = *cfg;
    apply_limit_defaults(&s->cfg);

    unsigned int flags = daemon_flags(cfg, is_v6);
    if (cfg->loop != NULL && cfg->threads > 0) {
        if (hs_loops_start(s, flags, &addr) != 0)
            s->daemon = NULL;
    } else {
        s->daemon = hs_daemon_start(s, flags, &addr, MHD_INVALID_SOCKET,
                                    (unsigned int)cfg->threads);
    }
    if (s->daemon == NULL) {
        log_msg("error", "http server: cannot listen on %s:%d", cfg->bind,
                cfg->port);
        free(s);
        return NULL;
    }
    json_t *fields = json_pack("{s:s, s:i, s:i, s:i, s:i}", "bind", cfg->bind,
                               "port", hs_port(s), "threads", cfg->threads,
                               "max_connections", (int)s->cfg.max_connections,
                               "conn_timeout_s", (int)s->cfg.conn_timeout_s);
    log_event("info", "listening", fields);
    json_decref(fields);
    return s;
}

int hs_port(const hs_server *s)
{
    if (s == NULL)
        return 0;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Hands every connection waiting in the listen backlog of fd (which the
 * daemon no longer polls) to the daemon, so that clients whose connect
 * already succeeded get an answer instead of a reset when the socket is
 * shut down. Returns how many were taken over. */
int hs_adopt_backlog(struct MHD_Daemon *daemon, MHD_socket fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return 0;
    int adopted = 0;
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int conn = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return adopted; /* EAGAIN: the backlog is empty */
        }
        /* The daemon owns conn from here, and closes it on failure. */
        if (MHD_add_connection(daemon, conn, (struct sockaddr *)&peer, len) ==
            MHD_YES)
            adopted++;
    }
}

/* True while the drain should go on: a request is in flight, or a
 * connection is open and something began less than HS_DRAIN_QUIET_MS
 * ago (a request may still arrive on it). */
static bool is_draining(hs_server *s)
{
    if (atomic_load(&s->in_flight) > 0)
        return true;
    return atomic_load(&s->open_conns) > 0 &&
           clockms_monotonic() - atomic_load(&s->last_begin) <
               HS_DRAIN_QUIET_MS;
}

MHD_socket hs_listen_fd(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info =
        d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD) : NULL;
    return info ? info->listen_fd : MHD_INVALID_SOCKET;
}

/* Makes the listening socket fd drop every SYN that would open a
 * connection (a SYN without ACK), while the handshakes already under
 * way still complete: the socket filter runs on each segment a
 * listener receives, the last ACK of a handshake included. Without
 * it, a handshake that completes after the backlog was taken over but
 * before the socket is shut down lands in the backlog only to be
 * reset by the shutdown: a client that had connected, and perhaps
 * sent its request, would see a reset. Accepted connections inherit
 * the filter; it never drops a segment of theirs. */
static bool fence_handshakes(MHD_socket fd)
{
    static struct sock_filter code[] = {
        /* The filter sees the TCP header: its flags are byte 13. */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12), /* SYN | ACK */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),          /* a SYN alone: drop */
        BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFF), /* the rest: keep whole */
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]),
                              .filter = code};
    if (fd == MHD_INVALID_SOCKET)
        return false;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0)
        return true;
    log_msg("warn",
            "http server: cannot fence new handshakes off (%s); one that "
            "completes as the listener closes will be reset",
            strerror(errno));
    return false;
}

/* Stops accepting and takes the backlog over; returns the listening
 * socket, which the daemons no longer close. */
static MHD_socket quiesce(hs_server *s, int *adopted)
{
    if (s->loops != NULL)
        return hs_loops_quiesce(s, adopted);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        *adopted = hs_adopt_backlog(s->daemon, fd);
    return fd;
}

/* After the fence: takes over the handshakes that were under way, as
 * they complete, until none has for HS_HANDSHAKE_SETTLE_MS. Returns how
 * many it took over. */
static int adopt_late_handshakes(hs_server *s, MHD_socket fd)
{
    int adopted = 0;
    for (int round = 0; round < HS_SETTLE_ROUNDS_MAX; round++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, HS_HANDSHAKE_SETTLE_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        adopted += s->loops != NULL ? hs_loops_adopt(s)
                                    : hs_adopt_backlog(s->daemon, fd);
    }
    return adopted;
}

void hs_stop(hs_server *s, int grace_ms)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    bool fenced = fence_handshakes(hs_listen_fd(s->daemon));
    int adopted = 0;
    MHD_socket fd = quiesce(s, &adopted);
    /* Quiescing only stops accepting: new connections would still queue
     * in the backlog and hang. Shutting the socket down (without closing
     * it, which must wait for the daemons to stop) refuses them at once,
     * so clients fail over to another instance. */
    if (fd != MHD_INVALID_SOCKET) {
        if (fenced)
            adopted += adopt_late_handshakes(s, fd);
        shutdown(fd, SHUT_RDWR);
    }
    /* Deferred requests would hold the drain for their whole wait, and
     * libmicrohttpd must not stop with a connection suspended. */
    if (s->cfg.stopping != NULL)
        s->cfg.stopping(s->cfg.ctx);
    json_t *fields =
        json_pack("{s:i, s:i, s:i}", "in_flight", atomic_load(&s->in_flight),
                  "open_connections", atomic_load(&s->open_conns),
                  "adopted_from_backlog", adopted);
    log_event("info", "draining", fields);
    json_decref(fields);

    int waited = 0;
    for (; is_draining(s) && waited < grace_ms; waited += HS_STOP_POLL_MS)
        sleep_ms(HS_STOP_POLL_MS);
    if (atomic_load(&s->in_flight) > 0 && s->cfg.abandon != NULL) {
        s->cfg.abandon(s->cfg.ctx);
        for (int w = 0; atomic_load(&s->in_flight) > 0 && w < HS_ABANDON_MS;
             w += HS_STOP_POLL_MS)
            sleep_ms(HS_STOP_POLL_MS);
    }
    int left = atomic_load(&s->in_flight);
    if (left > 0)
        log_msg("warn", "http server: stopping with %d requests in flight",
                left);
    else
        log_msg("info", "http server: drained in %d ms", waited);

    if (s->loops != NULL)
        hs_loops_stop(s);
    else
        MHD_stop_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    free(s);
}

/* ---- request accessors ---------------------------------------------- */

typedef struct query_find {
    const char *key;
    size_t key_len;
    bool found;
    const char *value; /* NULL: given without "=" */
    size_t value_len;
} query_find;

/* MHD_KeyValueIteratorN over the query: stops at the first exact name.
 * (libmicrohttpd's own lookup ignores case and stops at a NUL.) */
static enum MHD_Result find_query(void *cls, enum MHD_ValueKind kind,
                                  const char *key, size_t key_size,
                                  const char *value, size_t value_size)
{
    (void)kind;
    query_find *f = cls;
    if (key_size != f->key_len || memcmp(key, f->key, key_size) != 0)
        return MHD_YES;
    f->found = true;
    f->value = value;
    f->value_len = value_size;
    return MHD_NO;
}

const char *hs_query(const hs_request *req, const char *key)
{
    if (req == NULL || req->conn == NULL || key == NULL)
        return NULL;
    query_find f = {.key = key, .key_len = strlen(key)};
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, find_query,
                                &f);
    if (!f.found)
        return NULL;
    if (f.value == NULL)
        return "";
    if (strlen(f.value) != f.value_len)
        return HS_QUERY_UNREADABLE;
    return f.value;
}

const char *hs_header(const hs_request *req, const char *key)
{
    if (req == NULL || req->conn == NULL || key == NULL)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, key);
}

void hs_config_from_env(hs_config *cfg, config_errors *errs)
{
    *cfg = (hs_config){0}; /* unset fields take the server's defaults */
    cfg->bind = config_str("MESSENGER_BIND", "127.0.0.1");
    cfg->threads = (int)config_int("MESSENGER_HTTP_THREADS", 0, 0, 1024, errs);
    cfg->max_connections =
        (unsigned int)config_int("MESSENGER_MAX_CONNECTIONS",
                                 HTTP_MAX_CONNECTIONS_DEFAULT, 1, 65536, errs);
    cfg->conn_timeout_s = (unsigned int)config_int(
        "MESSENGER_CONN_TIMEOUT_S", HTTP_CONN_TIMEOUT_S_DEFAULT, 1, 3600, errs);
    cfg->internal_secret = config_secret("MESSENGER_INTERNAL_SECRET", errs);
    log_set_flush_ms((int)config_int("MESSENGER_LOG_FLUSH_MS",
                                     LOG_FLUSH_MS_DEFAULT, 0, 10000, errs));
}
