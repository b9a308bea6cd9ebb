/*
 * test_http.c - the HTTP server glue and the HTTP client, against each
 * other on loopback.
 *
 * Each test starts an hs_server on 127.0.0.1 (port 0: the kernel picks a
 * free one) with a small route table, calls it through hc_request, through
 * libcurl directly when response headers matter, or through a raw socket
 * when the test must control exactly what goes on the wire (oversized
 * bodies), and stops it in the teardown. Check forks every test, so each
 * one gets a fresh server.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clockms.h"
#include "curl_loop.h"
#include "http_client.h"
#include "http_server.h"
#include "constants.h"
#include "log.h"
#include "metrics.h"

static hs_server *srv;
static metrics_t *mx;
static int port;
static atomic_int echo_calls;
static atomic_bool slow_entered;
static atomic_bool ready_flag;

/* ---- handlers ------------------------------------------------------- */

static void h_params(hs_request *req, hs_reply *rep)
{
    hs_reply_json(rep, 200,
                  json_pack("{s:s, s:s, s:i}", "a", req->params[0], "b",
                            req->params[1], "n", (int)req->nparams));
}

/* Echoes the body unchanged, after checking it is NUL terminated. */
static void h_echo(hs_request *req, hs_reply *rep)
{
    atomic_fetch_add(&echo_calls, 1);
    if (req->body != NULL && req->body[req->body_len] != '\0') {
        hs_reply_problem(rep, 500, NULL, "body not NUL terminated");
        return;
    }
    hs_reply_raw(rep, 200, "application/json", req->body ? req->body : "",
                 req->body_len);
}

static void h_four(hs_request *req, hs_reply *rep)
{
    json_t *list = json_array();
    for (size_t i = 0; i < req->nparams; i++)
        json_array_append_new(list, json_string(req->params[i]));
    hs_reply_json(rep, 200, list);
}

static void h_nostatus(hs_request *req, hs_reply *rep) {}

static void h_retry(hs_request *req, hs_reply *rep)
{
    hs_reply_problem(rep, 503, "Unavailable", "try later");
    rep->retry_after_s = 7;
}

/* On an event loop a handler must not block: /slow defers there, and a
 * thread of its own sleeps and wakes the request. */
typedef struct slow_job {
    hs_deferred *d;
    int wait_ms;
} slow_job;

static void sleep_for_ms(int wait_ms)
{
    struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *slow_waker(void *arg)
{
    slow_job *job = arg;
    sleep_for_ms(job->wait_ms);
    hs_wake(job->d);
    return NULL;
}

static void slow_resume(hs_request *req, void *arg, hs_reply *rep)
{
    slow_job *job = arg;
    hs_reply_json(rep, 200, json_pack("{s:i}", "slept_ms", job->wait_ms));
    free(job);
}

/* ms=0 wakes the request before its handler returns, on the loop's own
 * thread; otherwise a helper thread sleeps and wakes it. */
static bool slow_deferred(hs_request *req, int wait_ms)
{
    slow_job *job = calloc(1, sizeof(*job));
    ck_assert_ptr_nonnull(job);
    job->wait_ms = wait_ms;
    job->d = hs_defer(req, slow_resume, job);
    ck_assert_ptr_nonnull(job->d);
    if (wait_ms == 0) {
        hs_wake(job->d);
        return true;
    }
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, slow_waker, job), 0);
    pthread_detach(t);
    return true;
}

static void h_slow(hs_request *req, hs_reply *rep)
{
    const char *ms = hs_query(req, "ms");
    int wait_ms = ms ? atoi(ms) : 100;
    atomic_store(&slow_entered, true);
    if (hs_loop_state() != NULL && slow_deferred(req, wait_ms))
        return;
    sleep_for_ms(wait_ms);
    hs_reply_json(rep, 200, json_pack("{s:i}", "slept_ms", wait_ms));
}

static void h_query(hs_request *req, hs_reply *rep)
{
    const char *q = hs_query(req, "q");
    const char *thing = hs_header(req, "x-thing");
    hs_reply_json(rep, 200,
                  json_pack("{s:s?, s:s?, s:s}", "q", q, "thing", thing, "id",
                            req->request_id));
}

/* One byte more than the client accepts. */
static void h_big(hs_request *req, hs_reply *rep)
{
    size_t len = HTTP_CLIENT_BODY_MAX + 1;
    char *text = malloc(len + 1);
    if (text == NULL)
        return;
    memset(text, 'a', len);
    text[len] = '\0';
    rep->status = 200;
    rep->text = text;
    rep->text_len = len;
    rep->content_type = "text/plain";
}

/* ---- loop mode: each loop drives an hc_async, as the gateway's do ---- */

static hc_pool *loop_pool;

static void *tl_open(void *ctx)
{
    return hc_async_new_driven(loop_pool, 0);
}
static void tl_wait(void *state, int fd, int ms)
{
    hc_async_step(state, fd, ms);
}
static void tl_wake(void *state)
{
    hc_async_wakeup(state);
}
static void tl_close(void *state)
{
    hc_async_free(state);
}

static const hs_loop_ops test_loop_ops = {
    .open = tl_open, .wait = tl_wait, .wake = tl_wake, .close = tl_close};

/* /relay: asks /query of this same server through the loop's hc_async
 * and answers what it got, noting whether the answer came back on the
 * thread that started the call. */
typedef struct relay_job {
    hs_deferred *d;
    pthread_t handler_thread;
    bool same_thread;
    long status;
    char body[512];
} relay_job;

static void relay_done(void *arg, hc_err err, hc_response *resp)
{
    relay_job *job = arg;
    job->same_thread = pthread_equal(pthread_self(), job->handler_thread);
    job->status = err == HC_OK ? resp->status : -1;
    snprintf(job->body, sizeof(job->body), "%s",
             err == HC_OK && resp->body ? resp->body : "");
    hc_response_free(resp);
    hs_wake(job->d);
}

static void relay_resume(hs_request *req, void *arg, hs_reply *rep)
{
    relay_job *job = arg;
    hs_reply_json(rep, 200,
                  json_pack("{s:I, s:b, s:s}", "status",
                            (json_int_t)job->status, "same_thread",
                            job->same_thread, "body", job->body));
    free(job);
}

static void h_relay(hs_request *req, hs_reply *rep)
{
    hc_async *a = hs_loop_state();
    relay_job *job = calloc(1, sizeof(*job));
    if (a == NULL || job == NULL) {
        free(job);
        hs_reply_problem(rep, 500, NULL, "not on a loop");
        return;
    }
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/query?q=looped", port);
    job->handler_thread = pthread_self();
    job->d = hs_defer(req, relay_resume, job);
    if (job->d == NULL ||
        hc_async_request(a, "GET", url, NULL, NULL, 0, relay_done, job) != 0) {
        free(job); /* a deferred request must still be woken */
        hs_reply_problem(rep, 500, NULL, "cannot relay");
    }
}

static const hs_route routes[] = {
    {"GET", "/items/{}/sub/{}", h_params, "params"},
    {"POST", "/echo", h_echo, "echo"},
    {"GET", "/nostatus", h_nostatus, "nostatus"},
    {"GET", "/retry", h_retry, "retry"},
    {"GET", "/slow", h_slow, "slow"},
    {"GET", "/query", h_query, "query"},
    {"GET", "/big", h_big, "big"},
    {"DELETE", "/echo", h_echo, "echo_delete"},
    {"GET", "/four/{}/{}/{}/{}", h_four, "four"},
    {"GET", "/relay", h_relay, "relay"},
};

static bool is_ready(void *ctx)
{
    return atomic_load(&ready_flag);
}

/* ---- fixture -------------------------------------------------------- */

/* threads < 0: -threads event loops (test_loop_ops). */
static void start_server(int threads)
{
    log_init("test");
    mx = metrics_new("test");
    ck_assert_ptr_nonnull(mx);
    bool loops = threads < 0;
    hs_config cfg = {
        .service = "test",
        .bind = "127.0.0.1",
        .port = 0,
        .threads = loops ? -threads : threads,
        .routes = routes,
        .nroutes = sizeof(routes) / sizeof(routes[0]),
        .ready = is_ready,
        .ctx = NULL,
        .metrics = mx,
        .allow_suspend = loops,
        .loop = loops ? &test_loop_ops : NULL,
    };
    if (loops) {
        loop_pool = hc_pool_new(4, 2000);
        ck_assert_ptr_nonnull(loop_pool);
    }
    /* Reset here too: with CK_FORK=no the tests share one process. */
    atomic_store(&ready_flag, true);
    atomic_store(&echo_calls, 0);
    atomic_store(&slow_entered, false);
    srv = hs_start(&cfg);
    ck_assert_ptr_nonnull(srv);
    port = hs_port(srv);
    ck_assert_int_gt(port, 0);
}

static void teardown(void)
{
    hs_stop(srv, 2000);
    srv = NULL;
    metrics_free(mx);
    mx = NULL;
    hc_pool_free(loop_pool);
    loop_pool = NULL;
}

/* Loop tests run once per threading model. */
/* Loop index 0: thread per connection; 1: a pool of 4 (poll); 2: two
 * event loops. */
static int threads_for(int i)
{
    return i == 0 ? 0 : i == 1 ? 4 : -2;
}

static char *url_for(const char *path)
{
    static char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    return url;
}

/* ---- a libcurl call that keeps the response headers ----------------- */

typedef struct raw_response {
    long status;
    char headers[4096];
    size_t hlen;
    char body[8192];
    size_t blen;
} raw_response;

static size_t collect_headers(char *data, size_t size, size_t n, void *ud)
{
    raw_response *r = ud;
    size_t len = size * n;
    size_t room = sizeof(r->headers) - 1 - r->hlen;
    size_t take = len < room ? len : room;
    memcpy(r->headers + r->hlen, data, take);
    r->hlen += take;
    r->headers[r->hlen] = '\0';
    return len;
}

static size_t collect_body(char *data, size_t size, size_t n, void *ud)
{
    raw_response *r = ud;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->blen;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->blen, data, take);
    r->blen += take;
    r->body[r->blen] = '\0';
    return len;
}

static void curl_call(const char *method, const char *path, const char *header,
                      raw_response *r)
{
    memset(r, 0, sizeof(*r));
    CURL *h = curl_easy_init();
    ck_assert_ptr_nonnull(h);
    struct curl_slist *list = header ? curl_slist_append(NULL, header) : NULL;
    curl_easy_setopt(h, CURLOPT_URL, url_for(path));
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_headers);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(h);
}

/* The value of a response header (case-insensitive name), or "". */
static const char *header_value(const raw_response *r, const char *name,
                                char *out, size_t size)
{
    out[0] = '\0';
    size_t nlen = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = strcspn(v, "\r\n");
            snprintf(out, size, "%.*s", (int)vlen, v);
            return out;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return out;
}

/* ---- a raw socket, for exactly what goes on the wire ---------------- */

static int connect_to(int to_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)to_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        ck_assert_int_gt(n, 0);
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes (returns true) or 5 s pass (false). */
static bool read_until_close(int fd, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < 1000; i++) {
        ssize_t n = recv(fd, out + used, size - 1 - used, 0);
        if (n == 0)
            return true;
        if (n < 0)
            return false;
        used += (size_t)n;
        out[used] = '\0';
        if (used == size - 1)
            return false;
    }
    return false;
}

static long counter_value(const char *name)
{
    char *text = metrics_render(mx);
    ck_assert_ptr_nonnull(text);
    char key[128];
    snprintf(key, sizeof(key), "\n%s{service=\"test\"} ", name);
    const char *p = strstr(text, key);
    long v = p ? atol(p + strlen(key)) : 0;
    free(text);
    return v;
}

/* ---- reply helpers without a server -------------------------------- */

START_TEST(test_reply_problem_shape)
{
    hs_reply rep = {0};
    hs_reply_problem(&rep, 409, NULL, "key reused");
    ck_assert_int_eq(rep.status, 409);
    ck_assert_str_eq(rep.content_type, "application/problem+json");
    ck_assert_str_eq(json_string_value(json_object_get(rep.json, "type")),
                     "about:blank");
    ck_assert_str_eq(json_string_value(json_object_get(rep.json, "title")),
                     "Conflict");
    ck_assert_int_eq(json_integer_value(json_object_get(rep.json, "status")),
                     409);
    ck_assert_str_eq(json_string_value(json_object_get(rep.json, "detail")),
                     "key reused");
    /* A second helper call replaces the first body without leaking. */
    hs_reply_json(&rep, 200, json_pack("{s:b}", "ok", 1));
    ck_assert_int_eq(rep.status, 200);
    ck_assert_str_eq(rep.content_type, "application/json");
    json_decref(rep.json);
}
END_TEST

/* ---- through the server --------------------------------------------- */

START_TEST(test_route_params)
{
    start_server(threads_for(_i));
    hc_pool *p = hc_pool_new(2, 5000);
    hc_response r;
    ck_assert_int_eq(
        hc_request(p, "GET", url_for("/items/abc/sub/42"), NULL, NULL, 0, &r),
        HC_OK);
    ck_assert_int_eq(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "a")), "abc");
    ck_assert_str_eq(json_string_value(json_object_get(j, "b")), "42");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n")), 2);
    json_decref(j);
    hc_response_free(&r);

    /* Segments must match one for one; "{}" needs a non-empty one. */
    static const char *const misses[] = {
        "/items//sub/42",      "/items/abc/sub/42/", "/items/abc/sub",
        "/items/abc/sub/42/x", "/items/abc/subs/42", "/item/abc/sub/42",
        "//items/abc/sub/42"};
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        ck_assert_int_eq(
            hc_request(p, "GET", url_for(misses[i]), NULL, NULL, 0, &r), HC_OK);
        ck_assert_msg(r.status == 404, "%s answered %ld", misses[i], r.status);
        hc_response_free(&r);
    }
    ck_assert_int_eq(
        hc_request(p, "GET", url_for("/four/a/b/c/d"), NULL, NULL, 0, &r),
        HC_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "[\"a\",\"b\",\"c\",\"d\"]");
    hc_response_free(&r);
    hc_pool_free(p);
}
END_TEST

START_TEST(test_not_found_problem)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/nope", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(header_value(&r, "Content-Type", v, sizeof(v)),
                     "application/problem+json");
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), 404);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")),
                     "about:blank");
    ck_assert_str_eq(json_string_value(json_object_get(j, "title")),
                     "Not Found");
    json_decref(j);
}
END_TEST

START_TEST(test_wrong_method_405_allow)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/echo", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header_value(&r, "Allow", v, sizeof(v)), "POST, DELETE");
    ck_assert_str_eq(header_value(&r, "Content-Type", v, sizeof(v)),
                     "application/problem+json");
    ck_assert_ptr_nonnull(strstr(r.body, "\"status\":405"));

    curl_call("PUT", "/items/1/sub/2", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header_value(&r, "Allow", v, sizeof(v)), "GET");

    curl_call("POST", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header_value(&r, "Allow", v, sizeof(v)), "GET");
}
END_TEST

START_TEST(test_builtin_routes)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    ck_assert_str_eq(header_value(&r, "Content-Type", v, sizeof(v)),
                     "application/json");

    curl_call("GET", "/readyz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ready\"}");

    atomic_store(&ready_flag, false);
    curl_call("GET", "/readyz", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(header_value(&r, "Content-Type", v, sizeof(v)),
                     "application/problem+json");
    ck_assert_str_eq(header_value(&r, "Retry-After", v, sizeof(v)), "1");

    curl_call("GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(header_value(&r, "Content-Type", v, sizeof(v)),
                                 "text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(
        r.body, "http_requests_total{service=\"test\",route=\"healthz\",status="
                "\"200\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(
        r.body, "http_requests_total{service=\"test\",route=\"readyz\",status="
                "\"503\"} 1\n"));
}
END_TEST

START_TEST(test_handler_without_status_is_500)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/nostatus", NULL, &r);
    ck_assert_int_eq(r.status, 500);
    ck_assert_str_eq(header_value(&r, "Content-Type", v, sizeof(v)),
                     "application/problem+json");
    ck_assert_ptr_nonnull(strstr(r.body, "\"status\":500"));
}
END_TEST

START_TEST(test_retry_after)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/retry", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(header_value(&r, "Retry-After", v, sizeof(v)), "7");
    ck_assert_ptr_nonnull(strstr(r.body, "\"title\":\"Unavailable\""));
}
END_TEST

START_TEST(test_request_id_echoed)
{
    start_server(threads_for(_i));
    raw_response r;
    char v[256];
    curl_call("GET", "/query", "X-Request-Id: abc-123.X_y", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header_value(&r, "X-Request-Id", v, sizeof(v)),
                     "abc-123.X_y");
    ck_assert_ptr_nonnull(strstr(r.body, "\"id\":\"abc-123.X_y\""));

    /* An unusable id is replaced by a generated 32-hex one. */
    curl_call("GET", "/query", "X-Request-Id: bad id!", &r);
    header_value(&r, "X-Request-Id", v, sizeof(v));
    ck_assert_int_eq((int)strlen(v), 32);
    ck_assert_int_eq((int)strspn(v, "0123456789abcdef"), 32);
    char first[256];
    snprintf(first, sizeof(first), "%s", v);

    curl_call("GET", "/healthz", NULL, &r);
    header_value(&r, "X-Request-Id", v, sizeof(v));
    ck_assert_int_eq((int)strlen(v), 32);
    ck_assert_str_ne(v, first);

    /* 63 characters are kept, 64 are too many. */
    char line[128];
    snprintf(line, sizeof(line), "X-Request-Id: %063d", 7);
    curl_call("GET", "/healthz", line, &r);
    header_value(&r, "X-Request-Id", v, sizeof(v));
    ck_assert_str_eq(v, line + strlen("X-Request-Id: "));
    snprintf(line, sizeof(line), "X-Request-Id: %064d", 7);
    curl_call("GET", "/healthz", line, &r);
    header_value(&r, "X-Request-Id", v, sizeof(v));
    ck_assert_int_eq((int)strlen(v), 32);
    ck_assert_int_eq((int)strspn(v, "0123456789abcdef"), 32);
}
END_TEST

START_TEST(test_query_and_header)
{
    start_server(threads_for(_i));
    raw_response r;
    curl_call("GET", "/query?q=hello%20world", "X-Thing: yes", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "q")), "hello world");
    ck_assert_str_eq(json_string_value(json_object_get(j, "thing")), "yes");
    json_decref(j);
}
END_TEST

/* What hs_query reads for q in a query string (NULL: absent). */
static char *query_read(const char *query, char *out, size_t cap)
{
    char path[128];
    snprintf(path, sizeof path, "/query?%s", query);
    raw_response r;
    curl_call("GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    const char *q = json_string_value(json_object_get(j, "q"));
    if (q)
        snprintf(out, cap, "%s", q);
    json_decref(j);
    return q ? out : NULL;
}

/* A name matches exactly, the first of repeated names wins, a name
 * without "=" is present and empty, and a value cut by %00 is refused
 * whole rather than read short. */
START_TEST(test_query_exact_and_unreadable)
{
    start_server(threads_for(_i));
    char v[64];
    ck_assert_str_eq(query_read("q=5", v, sizeof v), "5");
    ck_assert_ptr_null(query_read("Q=5", v, sizeof v));
    ck_assert_ptr_null(query_read("qq=5", v, sizeof v));
    ck_assert_str_eq(query_read("q=1&q=2", v, sizeof v), "1");
    ck_assert_str_eq(query_read("q", v, sizeof v), "");
    ck_assert_str_eq(query_read("q=", v, sizeof v), "");
    ck_assert_str_eq(query_read("q=5%00abc", v, sizeof v), HS_QUERY_UNREADABLE);
    ck_assert_str_eq(query_read("q=%00", v, sizeof v), HS_QUERY_UNREADABLE);
    ck_assert_ptr_null(query_read("q%00=5", v, sizeof v));
}
END_TEST

START_TEST(test_body_echo_round_trip)
{
    start_server(threads_for(_i));
    hc_pool *p = hc_pool_new(1, 5000);
    const char *body = "{\"content\":\"h\\u00e9llo\",\"n\":[1,2,3]}";
    hc_response r;
    ck_assert_int_eq(
        hc_request(p, "POST", url_for("/echo"), NULL, body, strlen(body), &r),
        HC_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq((int)r.len, (int)strlen(body));
    ck_assert_str_eq(r.body, body);
    hc_response_free(&r);

    /* Exactly HTTP_BODY_MAX bytes is still accepted. */
    char *big = malloc(HTTP_BODY_MAX);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', HTTP_BODY_MAX);
    ck_assert_int_eq(
        hc_request(p, "POST", url_for("/echo"), NULL, big, HTTP_BODY_MAX, &r),
        HC_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq((int)r.len, HTTP_BODY_MAX);
    ck_assert_int_eq(memcmp(r.body, big, HTTP_BODY_MAX), 0);
    hc_response_free(&r);

    /* Another method with a body goes through CUSTOMREQUEST. */
    ck_assert_int_eq(
        hc_request(p, "DELETE", url_for("/echo"), NULL, "{}", 2, &r), HC_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{}");
    hc_response_free(&r);
    free(big);
    hc_pool_free(p);
}
END_TEST

/* Content-Length says 2 MiB, only 2 bytes follow: the 413 must come
 * back, and the connection close, without the server waiting for the
 * rest of the body (the read would time out after 5 s otherwise). */
START_TEST(test_413_on_content_length)
{
    start_server(threads_for(_i));
    int fd = connect_to(port);
    ck_assert_int_ge(fd, 0);
    const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: 2097152\r\n\r\n{}";
    send_all(fd, req, strlen(req));
    char resp[4096];
    ck_assert(read_until_close(fd, resp, sizeof(resp)));
    close(fd);
    ck_assert_int_eq(strncmp(resp, "HTTP/1.1 413", 12), 0);
    ck_assert_ptr_nonnull(strstr(resp, "application/problem+json"));
    ck_assert_ptr_nonnull(strstr(resp, "\"status\":413"));
    ck_assert_int_eq(atomic_load(&echo_calls), 0);
}
END_TEST

/* Same with Expect: 100-continue: no "100 Continue" may be sent, so a
 * well-behaved client never starts uploading. */
START_TEST(test_413_skips_100_continue)
{
    start_server(threads_for(_i));
    int fd = connect_to(port);
    const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\n"
                      "Expect: 100-continue\r\n"
                      "Content-Length: 5000000\r\n\r\n";
    send_all(fd, req, strlen(req));
    char resp[4096];
    ck_assert(read_until_close(fd, resp, sizeof(resp)));
    close(fd);
    ck_assert_int_eq(strncmp(resp, "HTTP/1.1 413", 12), 0);
    ck_assert_ptr_null(strstr(resp, "100 Continue"));
}
END_TEST

/* A chunked body has no Content-Length: the cap applies while reading. */
START_TEST(test_413_on_chunked_body)
{
    start_server(threads_for(_i));
    int fd = connect_to(port);
    const char *head = "POST /echo HTTP/1.1\r\nHost: t\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    send_all(fd, head, strlen(head));
    size_t chunk = 64 * 1024;
    char *data = malloc(chunk);
    memset(data, 'y', chunk);
    char size_line[32];
    snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk);
    for (size_t sent = 0; sent <= HTTP_BODY_MAX; sent += chunk) {
        send_all(fd, size_line, strlen(size_line));
        send_all(fd, data, chunk);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    free(data);
    char resp[4096];
    ssize_t n = recv(fd, resp, sizeof(resp) - 1, 0);
    close(fd);
    ck_assert_int_gt(n, 12);
    resp[n] = '\0';
    ck_assert_int_eq(strncmp(resp, "HTTP/1.1 413", 12), 0);
    ck_assert_int_eq(atomic_load(&echo_calls), 0);
}
END_TEST

/* 20 sequential calls through a pool of one handle: one TCP connection. */
START_TEST(test_keep_alive_reuse)
{
    start_server(threads_for(_i));
    hc_pool *p = hc_pool_new(1, 5000);
    for (int i = 0; i < 20; i++) {
        hc_response r;
        const char *path = i % 2 ? "/healthz" : "/echo";
        const char *method = i % 2 ? "GET" : "POST";
        ck_assert_int_eq(hc_request(p, method, url_for(path), NULL,
                                    i % 2 ? NULL : "{\"i\":1}", i % 2 ? 0 : 7,
                                    &r),
                         HC_OK);
        ck_assert_int_eq(r.status, 200);
        hc_response_free(&r);
    }
    ck_assert_int_eq(counter_value("http_connections_total"), 1);
    hc_pool_free(p);
}
END_TEST

START_TEST(test_client_connect_error)
{
    /* A port that was free a moment ago: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t alen = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    close(fd);
    port = ntohs(a.sin_port);

    hc_pool *p = hc_pool_new(1, 2000);
    hc_response r;
    ck_assert_int_eq(
        hc_request(p, "GET", url_for("/healthz"), NULL, NULL, 0, &r),
        HC_CONNECT);
    ck_assert_ptr_null(r.body);
    hc_pool_free(p);
}
END_TEST

START_TEST(test_client_timeout)
{
    start_server(0);
    hc_pool *p = hc_pool_new(1, 200);
    hc_response r;
    ck_assert_int_eq(
        hc_request(p, "GET", url_for("/slow?ms=1000"), NULL, NULL, 0, &r),
        HC_TIMEOUT);
    ck_assert_ptr_null(r.body);
    hc_pool_free(p);
}
END_TEST

START_TEST(test_client_body_cap)
{
    start_server(0);
    hc_pool *p = hc_pool_new(1, 20000);
    hc_response r;
    ck_assert_int_eq(hc_request(p, "GET", url_for("/big"), NULL, NULL, 0, &r),
                     HC_TOO_LARGE);
    ck_assert_ptr_null(r.body);
    /* The handle is still usable afterwards. */
    ck_assert_int_eq(
        hc_request(p, "GET", url_for("/healthz"), NULL, NULL, 0, &r), HC_OK);
    ck_assert_int_eq(r.status, 200);
    hc_response_free(&r);
    hc_pool_free(p);
}
END_TEST

START_TEST(test_client_headers_sent)
{
    start_server(0);
    hc_pool *p = hc_pool_new(1, 5000);
    hc_headers h = {.lines = {"X-Thing: from-pool", "X-Request-Id: hop-1"},
                    .n = 2};
    hc_response r;
    ck_assert_int_eq(hc_request(p, "GET", url_for("/query"), &h, NULL, 0, &r),
                     HC_OK);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "thing")),
                     "from-pool");
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "hop-1");
    json_decref(j);
    hc_response_free(&r);
    hc_pool_free(p);
}
END_TEST

/* A proxy in the environment does not take calls between services. */
START_TEST(test_client_ignores_proxy_environment)
{
    start_server(0);
    /* Port 9 (discard) on loopback: nothing listens, a proxied call
     * would fail to connect. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    hc_pool *p = hc_pool_new(1, 5000);
    hc_response r;
    hc_err err = hc_request(p, "GET", url_for("/query"), NULL, NULL, 0, &r);
    unsetenv("http_proxy");
    ck_assert_int_eq(err, HC_OK);
    ck_assert_int_eq(r.status, 200);
    hc_response_free(&r);
    hc_pool_free(p);
}
END_TEST

typedef struct slow_call {
    hc_err err;
    long status;
} slow_call;

static void *run_slow_call(void *arg)
{
    slow_call *c = arg;
    hc_pool *p = hc_pool_new(1, 5000);
    hc_response r;
    c->err = hc_request(p, "GET", url_for("/slow?ms=400"), NULL, NULL, 0, &r);
    c->status = r.status;
    hc_response_free(&r);
    hc_pool_free(p);
    return NULL;
}

static void *run_stop(void *arg)
{
    hs_stop(srv, 5000);
    return NULL;
}

/* hs_stop lets a request in flight finish, and refuses new connections
 * while it waits. */
START_TEST(test_graceful_stop)
{
    start_server(threads_for(_i));
    pthread_t caller, stopper;
    slow_call call = {HC_ERROR, 0};
    pthread_create(&caller, NULL, run_slow_call, &call);
    for (int i = 0; i < 200 && !atomic_load(&slow_entered); i++)
        usleep(10000);
    ck_assert(atomic_load(&slow_entered));

    pthread_create(&stopper, NULL, run_stop, NULL);
    usleep(100000);
    int fd = connect_to(port);
    if (fd >= 0)
        close(fd);
    ck_assert_int_eq(fd, -ECONNREFUSED);

    pthread_join(caller, NULL);
    pthread_join(stopper, NULL);
    srv = NULL;
    ck_assert_int_eq(call.err, HC_OK);
    ck_assert_int_eq(call.status, 200);
}
END_TEST

/* While hs_stop drains, a connection opened before it is still served
 * (it was accepted), /readyz says 503 so balancers move away, and the
 * reply asks the client to close. */
START_TEST(test_draining_serves_open_connections)
{
    start_server(threads_for(_i));
    int idle = connect_to(port);
    ck_assert_int_ge(idle, 0);
    pthread_t caller, stopper;
    slow_call call = {HC_ERROR, 0};
    pthread_create(&caller, NULL, run_slow_call, &call);
    for (int i = 0; i < 200 && !atomic_load(&slow_entered); i++)
        usleep(10000);
    ck_assert(atomic_load(&slow_entered));

    pthread_create(&stopper, NULL, run_stop, NULL);
    usleep(100000);
    static const char req[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(idle, req, sizeof(req) - 1);
    char answer[4096];
    ck_assert(read_until_close(idle, answer, sizeof(answer)));
    close(idle);
    ck_assert_msg(strncmp(answer, "HTTP/1.1 503", 12) == 0, "%s", answer);
    ck_assert_msg(strcasestr(answer, "\r\nConnection: close\r\n") != NULL, "%s",
                  answer);
    ck_assert_msg(strstr(answer, "shutting down") != NULL, "%s", answer);

    pthread_join(caller, NULL);
    pthread_join(stopper, NULL);
    srv = NULL;
    ck_assert_int_eq(call.err, HC_OK);
    ck_assert_int_eq(call.status, 200);
}
END_TEST

/* Clients connecting without pause while hs_stop runs: each connect is
 * either refused or answered in full, never reset. */
#define STORM_CLIENTS 6
#define STORM_ROUNDS 3

typedef struct storm {
    atomic_bool stop;
    atomic_int answered, refused, reset;
} storm;

/* One request on a new connection: 1 answered, 0 refused, -1 reset or
 * cut short. */
static int storm_once(void)
{
    int fd = connect_to(port);
    if (fd == -ECONNREFUSED)
        return 0;
    if (fd < 0)
        return -1;
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    bool sent = send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) ==
                (ssize_t)(sizeof(req) - 1);
    char answer[4096];
    bool whole = sent && read_until_close(fd, answer, sizeof(answer)) &&
                 strncmp(answer, "HTTP/1.1 ", 9) == 0 &&
                 strstr(answer, "\r\n\r\n") != NULL;
    close(fd);
    return whole ? 1 : -1;
}

static void *storm_client(void *arg)
{
    storm *st = arg;
    /* Bounded: the server stops within a second of the first connects. */
    for (int i = 0; i < 100000 && !atomic_load(&st->stop); i++) {
        int r = storm_once();
        if (r > 0)
            atomic_fetch_add(&st->answered, 1);
        else if (r == 0)
            atomic_fetch_add(&st->refused, 1);
        else
            atomic_fetch_add(&st->reset, 1);
    }
    return NULL;
}

START_TEST(test_stop_under_connect_storm_never_resets)
{
    for (int round = 0; round < STORM_ROUNDS; round++) {
        start_server(threads_for(_i));
        storm st = {0};
        pthread_t t[STORM_CLIENTS];
        for (int k = 0; k < STORM_CLIENTS; k++)
            pthread_create(&t[k], NULL, storm_client, &st);
        while (atomic_load(&st.answered) < 200)
            usleep(1000);
        hs_stop(srv, 2000);
        srv = NULL;
        /* Clients whose connect was dropped while the listener closed
         * retry it (a SYN's first retransmission is a second later) and
         * are refused then. */
        for (int w = 0; w < 300 && atomic_load(&st.refused) == 0; w++)
            usleep(10000);
        atomic_store(&st.stop, true);
        for (int k = 0; k < STORM_CLIENTS; k++)
            pthread_join(t[k], NULL);
        metrics_free(mx);
        mx = NULL;
        hc_pool_free(loop_pool);
        loop_pool = NULL;
        ck_assert_msg(atomic_load(&st.reset) == 0,
                      "round %d: %d reset, %d answered, %d refused", round,
                      atomic_load(&st.reset), atomic_load(&st.answered),
                      atomic_load(&st.refused));
        ck_assert_int_gt(atomic_load(&st.refused), 0);
    }
}
END_TEST

/* ---- asynchronous calls (hc_async) ----------------------------------- */

#define ASYNC_CALLS 40

typedef struct async_result {
    atomic_int done; /* callbacks run */
    hc_err err[ASYNC_CALLS];
    long status[ASYNC_CALLS];
    char body[ASYNC_CALLS][64];
} async_result;

typedef struct async_slot {
    async_result *res;
    int i;
} async_slot;

static void on_async(void *arg, hc_err err, hc_response *resp)
{
    async_slot *s = arg;
    s->res->err[s->i] = err;
    s->res->status[s->i] = resp->status;
    snprintf(s->res->body[s->i], sizeof s->res->body[s->i], "%s",
             resp->body ? resp->body : "");
    hc_response_free(resp);
    atomic_fetch_add(&s->res->done, 1);
}

static void wait_done(async_result *res, int n)
{
    for (int waited = 0; atomic_load(&res->done) < n && waited < 10000;
         waited += 5)
        usleep(5000);
    ck_assert_int_eq(atomic_load(&res->done), n);
}

/* Many calls at once, each answered with its own body. */
START_TEST(test_async_round_trips)
{
    start_server(threads_for(_i));
    hc_pool *p = hc_pool_new(1, 5000);
    hc_async *a = hc_async_new(p, 0);
    ck_assert_ptr_nonnull(a);
    static async_result res;
    memset(&res, 0, sizeof res);
    async_slot slots[ASYNC_CALLS];
    for (int i = 0; i < ASYNC_CALLS; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "{\"n\":%d}", i);
        slots[i] = (async_slot){&res, i};
        ck_assert_int_eq(hc_async_request(a, "POST", url_for("/echo"), NULL,
                                          body, (size_t)len, on_async,
                                          &slots[i]),
                         0);
    }
    wait_done(&res, ASYNC_CALLS);
    for (int i = 0; i < ASYNC_CALLS; i++) {
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%d}", i);
        ck_assert_int_eq(res.err[i], HC_OK);
        ck_assert_int_eq(res.status[i], 200);
        ck_assert_str_eq(res.body[i], want);
    }
    ck_assert_int_eq(atomic_load(&echo_calls), ASYNC_CALLS);
    hc_async_free(a);
    hc_pool_free(p);
}
END_TEST

/* With one connection to the peer, calls queue for it and all land. */
START_TEST(test_async_per_host_cap)
{
    start_server(4);
    hc_pool *p = hc_pool_new(1, 5000);
    hc_async *a = hc_async_new(p, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(hc_async_new(p, -1));
    static async_result res;
    memset(&res, 0, sizeof res);
    async_slot slots[ASYNC_CALLS];
    for (int i = 0; i < ASYNC_CALLS; i++) {
        slots[i] = (async_slot){&res, i};
        ck_assert_int_eq(hc_async_request(a, "POST", url_for("/echo"), NULL,
                                          "{}", 2, on_async, &slots[i]),
                         0);
    }
    wait_done(&res, ASYNC_CALLS);
    for (int i = 0; i < ASYNC_CALLS; i++) {
        ck_assert_int_eq(res.err[i], HC_OK);
        ck_assert_str_eq(res.body[i], "{}");
    }
    hc_async_free(a);
    hc_pool_free(p);
}
END_TEST

/* Errors map as hc_request maps them. */
START_TEST(test_async_errors)
{
    start_server(0);
    hc_pool *p = hc_pool_new(1, 300);
    hc_async *a = hc_async_new(p, 0);
    static async_result res;
    memset(&res, 0, sizeof res);
    async_slot slots[2] = {{&res, 0}, {&res, 1}};
    ck_assert_int_eq(hc_async_request(a, "GET", url_for("/slow?ms=1500"), NULL,
                                      NULL, 0, on_async, &slots[0]),
                     0);
    ck_assert_int_eq(hc_async_request(a, "GET", url_for("/big"), NULL, NULL, 0,
                                      on_async, &slots[1]),
                     0);
    wait_done(&res, 2);
    ck_assert_int_eq(res.err[0], HC_TIMEOUT);
    ck_assert_int_eq(res.err[1], HC_TOO_LARGE);
    ck_assert_str_eq(res.body[0], "");
    hc_async_free(a);
    hc_pool_free(p);
}
END_TEST

/* A call whose keep function says no is dropped while it waits, with
 * HC_ABANDONED; a call next to it that is still wanted is not. */
static atomic_bool keep_wanted;
static atomic_int keep_asked;

static bool keep_while_wanted(void *arg)
{
    async_slot *s = arg;
    ck_assert_int_eq(s->i, 0);
    atomic_fetch_add(&keep_asked, 1);
    return atomic_load(&keep_wanted);
}

static bool keep_always(void *arg)
{
    (void)arg;
    return true;
}

/* Waits for n callbacks: sleeping while the hc_async's own thread runs
 * the calls, else stepping it (driven), for at most about 10 s. */
static void keep_wait_done(hc_async *a, bool driven, async_result *res, int n)
{
    if (!driven) {
        wait_done(res, n);
        return;
    }
    for (int turns = 0; atomic_load(&res->done) < n && turns < 400; turns++)
        hc_async_step(a, -1, 25);
    ck_assert_int_eq(atomic_load(&res->done), n);
}

/* _i: 0 an hc_async with a thread of its own, 1 a driven one. */
START_TEST(test_async_keep_drops_unwanted_calls)
{
    bool driven = _i == 1;
    start_server(0);
    hc_pool *p = hc_pool_new(1, 10000);
    hc_async *a = driven ? hc_async_new_driven(p, 0) : hc_async_new(p, 0);
    static async_result res;
    memset(&res, 0, sizeof res);
    atomic_store(&keep_wanted, true);
    atomic_store(&keep_asked, 0);
    async_slot slots[2] = {{&res, 0}, {&res, 1}};
    ck_assert_int_eq(hc_async_request_keep(a, "GET", url_for("/slow?ms=6000"),
                                           NULL, NULL, 0, on_async,
                                           keep_while_wanted, &slots[0]),
                     0);
    ck_assert_int_eq(hc_async_request_keep(a, "GET", url_for("/slow?ms=3000"),
                                           NULL, NULL, 0, on_async, keep_always,
                                           &slots[1]),
                     0);
    /* Wanted while it is asked about (at least twice): it goes on. Asked
     * every HC_KEEP_CHECK_MS, a driven one within its turns' waits. */
    for (int w = 0; atomic_load(&keep_asked) < 2 && w < 5000; w += 5) {
        if (driven)
            hc_async_step(a, -1, 1000);
        else
            usleep(5000);
    }
    ck_assert_int_ge(atomic_load(&keep_asked), 2);
    ck_assert_int_eq(atomic_load(&res.done), 0);
    atomic_store(&keep_wanted, false);
    keep_wait_done(a, driven, &res, 1);
    ck_assert_int_eq(res.err[0], HC_ABANDONED);
    ck_assert_str_eq(res.body[0], "");
    /* The other one still lands, answered. */
    keep_wait_done(a, driven, &res, 2);
    ck_assert_int_eq(res.err[1], HC_OK);
    ck_assert_int_eq(res.status[1], 200);
    hc_async_free(a);
    hc_pool_free(p);
}
END_TEST

/* Freeing ends a call in flight: its callback runs once, with an
 * error, and none runs after. */
START_TEST(test_async_free_ends_calls)
{
    start_server(0);
    hc_pool *p = hc_pool_new(1, 5000);
    hc_async *a = hc_async_new(p, 0);
    static async_result res;
    memset(&res, 0, sizeof res);
    async_slot slot = {&res, 0};
    ck_assert_int_eq(hc_async_request(a, "GET", url_for("/slow?ms=2000"), NULL,
                                      NULL, 0, on_async, &slot),
                     0);
    for (int w = 0; !atomic_load(&slow_entered) && w < 5000; w += 5)
        usleep(5000);
    hc_async_free(a);
    ck_assert_int_eq(atomic_load(&res.done), 1);
    ck_assert_int_eq(res.err[0], HC_ERROR);
    ck_assert_int_eq(hc_async_request(NULL, "GET", url_for("/"), NULL, NULL, 0,
                                      on_async, &slot),
                     -1);
    hc_pool_free(p);
}
END_TEST

/* A call answered at once completes while many others wait on the peer:
 * a turn runs the transfer whose socket is ready, whatever the others
 * do. The slow calls land afterwards, each once. */
START_TEST(test_async_quick_call_passes_waiting_ones)
{
    start_server(-2);
    hc_pool *p = hc_pool_new(1, 5000);
    hc_async *a = hc_async_new(p, 0);
    ck_assert_ptr_nonnull(a);
    static async_result res;
    memset(&res, 0, sizeof res);
    async_slot slots[ASYNC_CALLS];
    int slow = ASYNC_CALLS - 1;
    for (int i = 0; i < slow; i++) {
        slots[i] = (async_slot){&res, i};
        ck_assert_int_eq(hc_async_request(a, "GET", url_for("/slow?ms=1500"),
                                          NULL, NULL, 0, on_async, &slots[i]),
                         0);
    }
    slots[slow] = (async_slot){&res, slow};
    ck_assert_int_eq(hc_async_request(a, "POST", url_for("/echo"), NULL,
                                      "{\"q\":1}", 7, on_async, &slots[slow]),
                     0);
    for (int w = 0; atomic_load(&res.done) == 0 && w < 5000; w += 5)
        usleep(5000);
    /* The quick call alone has landed: the slow ones sleep 1.5 s. */
    ck_assert_int_eq(atomic_load(&res.done), 1);
    ck_assert_int_eq(res.err[slow], HC_OK);
    ck_assert_str_eq(res.body[slow], "{\"q\":1}");
    wait_done(&res, ASYNC_CALLS);
    for (int i = 0; i < slow; i++) {
        ck_assert_int_eq(res.err[i], HC_OK);
        ck_assert_str_eq(res.body[i], "{\"slept_ms\":1500}");
    }
    hc_async_free(a);
    hc_pool_free(p);
}
END_TEST

/* ---- the loop under hc_async (curl_loop) ----------------------------- */

static void *wake_later(void *arg)
{
    usleep(100 * 1000);
    cl_loop_wake(arg);
    return NULL;
}

/* A wake-up from another thread ends a long wait; once taken it does not
 * end the next one, which lasts its timeout. */
START_TEST(test_curl_loop_wake)
{
    CURLM *m = curl_multi_init();
    cl_loop *l = cl_loop_new(m);
    ck_assert_ptr_nonnull(l);
    pthread_t t;
    int64_t t0 = clockms_monotonic();
    ck_assert_int_eq(pthread_create(&t, NULL, wake_later, l), 0);
    cl_loop_wait(l, -1, 10000);
    int64_t woke = clockms_monotonic() - t0;
    pthread_join(t, NULL);
    ck_assert_int_lt(woke, 5000);
    t0 = clockms_monotonic();
    cl_loop_wait(l, -1, 200);
    ck_assert_int_ge(clockms_monotonic() - t0, 150);
    curl_multi_cleanup(m);
    cl_loop_free(l);
    ck_assert_ptr_null(cl_loop_new(NULL));
}
END_TEST

/* ---- abandoning deferred requests at stop --------------------------- */

static hs_deferred *held;
static atomic_int abandon_calls;

static void resume_held(hs_request *req, void *arg, hs_reply *rep)
{
    hs_reply_problem(rep, 503, "Stopping", "answered by abandon");
}

static void h_held(hs_request *req, hs_reply *rep)
{
    held = hs_defer(req, resume_held, NULL);
    if (held == NULL)
        hs_reply_problem(rep, 500, NULL, "cannot defer");
}

static void abandon_held(void *ctx)
{
    atomic_fetch_add(&abandon_calls, 1);
    hs_wake(held);
}

static const hs_route held_routes[] = {{"GET", "/held", h_held, "held"}};

static void *run_held_call(void *arg)
{
    slow_call *c = arg;
    hc_pool *p = hc_pool_new(1, 10000);
    hc_response r;
    c->err = hc_request(p, "GET", url_for("/held"), NULL, NULL, 0, &r);
    c->status = r.status;
    hc_response_free(&r);
    hc_pool_free(p);
    return NULL;
}

/* A deferred request nobody wakes holds hs_stop for its grace, then
 * hs_config.abandon answers it and the server stops. */
START_TEST(test_abandon_answers_deferred)
{
    log_init("test");
    mx = metrics_new("test");
    hs_config cfg = {.service = "test",
                     .bind = "127.0.0.1",
                     .threads = 2,
                     .routes = held_routes,
                     .nroutes = 1,
                     .metrics = mx,
                     .allow_suspend = true,
                     .abandon = abandon_held};
    held = NULL;
    atomic_store(&abandon_calls, 0);
    srv = hs_start(&cfg);
    ck_assert_ptr_nonnull(srv);
    port = hs_port(srv);
    pthread_t caller;
    slow_call call = {HC_ERROR, 0};
    pthread_create(&caller, NULL, run_held_call, &call);
    for (int w = 0; held == NULL && w < 5000; w += 5)
        usleep(5000);
    ck_assert_ptr_nonnull(held);
    hs_stop(srv, 300);
    srv = NULL;
    pthread_join(caller, NULL);
    ck_assert_int_eq(atomic_load(&abandon_calls), 1);
    ck_assert_int_eq(call.err, HC_OK);
    ck_assert_int_eq(call.status, 503);
}
END_TEST

/* A client that closes in the middle of a chunked body: the request
 * ends, so a graceful stop does not wait for it. */
START_TEST(test_close_mid_body_ends_request)
{
    start_server(threads_for(_i));
    int fd = connect_to(port);
    /* What nginx does when a chunked upload passes its limit: a burst of
     * body, then its close right behind it. */
    const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"
                       "400000\r\n";
    send_all(fd, head, strlen(head));
    size_t burst = HTTP_BODY_MAX + 65536;
    char *part = malloc(burst);
    ck_assert_ptr_nonnull(part);
    memset(part, ' ', burst);
    send_all(fd, part, burst);
    free(part);
    close(fd);
    usleep(100000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    hs_stop(srv, 3000);
    srv = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(waited < 2.0, "stop waited %.2f s for a closed request",
                  waited);
}
END_TEST

/* A handler on a loop starts a call on the loop's hc_async and defers;
 * the answer comes back on the same thread and resumes the request. Many
 * at once over several connections, so both loops take some. */
START_TEST(test_loop_call_stays_on_its_thread)
{
    start_server(-2);
    for (int i = 0; i < 20; i++) {
        raw_response r;
        curl_call("GET", "/relay", NULL, &r);
        ck_assert_int_eq(r.status, 200);
        json_t *j = json_loads(r.body, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), 200);
        ck_assert(json_is_true(json_object_get(j, "same_thread")));
        ck_assert_ptr_nonnull(
            strstr(json_string_value(json_object_get(j, "body")), "looped"));
        json_decref(j);
    }
}
END_TEST

/* A request deferred on a loop is answered when it is woken, whether
 * from another thread or at once on the loop's own, not at the loop's
 * next timer: an idle loop waits a second, so a missed wake-up shows as
 * an answer about a second late. */
START_TEST(test_loop_wake_answers_at_once)
{
    start_server(-2);
    const char *paths[] = {"/slow?ms=0", "/slow?ms=20"};
    for (int i = 0; i < 6; i++) {
        const char *path = paths[i % 2];
        int64_t start = clockms_monotonic();
        raw_response r;
        curl_call("GET", path, NULL, &r);
        int64_t took = clockms_monotonic() - start;
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(took < 700, "%s answered after %lld ms", path,
                      (long long)took);
    }
}
END_TEST

/* ---- suite ---------------------------------------------------------- */

static TCase *server_case(const char *name, const TTest *test, int loops)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test, 0, loops);
    return tc;
}

/* A body grows chunk by chunk, stays a string, and refuses to pass its
 * cap without writing anything. */
START_TEST(test_body_append_caps)
{
    hc_body b = {0};
    ck_assert_uint_eq(hc_body_append(&b, "abc", 3, 5), 3);
    ck_assert_uint_eq(hc_body_append(&b, "de", 2, 5), 2);
    ck_assert_str_eq(b.data, "abcde");
    ck_assert(!b.too_large);
    ck_assert_uint_eq(hc_body_append(&b, "f", 1, 5), 0);
    ck_assert(b.too_large);
    ck_assert_uint_eq(b.len, 5);
    ck_assert_str_eq(b.data, "abcde");
    free(b.data);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *pure = tcase_create("reply");
    tcase_add_test(pure, test_reply_problem_shape);
    tcase_add_test(pure, test_body_append_caps);
    tcase_add_test(pure, test_curl_loop_wake);
    suite_add_tcase(s, pure);

    /* Loop index (threads_for): thread per connection, pool, loops. */
    suite_add_tcase(s, server_case("params", test_route_params, 3));
    suite_add_tcase(s, server_case("404", test_not_found_problem, 3));
    suite_add_tcase(s, server_case("405", test_wrong_method_405_allow, 3));
    suite_add_tcase(s, server_case("builtin", test_builtin_routes, 3));
    suite_add_tcase(s,
                    server_case("500", test_handler_without_status_is_500, 3));
    suite_add_tcase(s, server_case("retry", test_retry_after, 3));
    suite_add_tcase(s, server_case("reqid", test_request_id_echoed, 3));
    suite_add_tcase(s, server_case("query", test_query_and_header, 3));
    suite_add_tcase(
        s, server_case("queryexact", test_query_exact_and_unreadable, 1));
    suite_add_tcase(s, server_case("echo", test_body_echo_round_trip, 3));
    suite_add_tcase(s, server_case("413cl", test_413_on_content_length, 3));
    suite_add_tcase(s,
                    server_case("413expect", test_413_skips_100_continue, 3));
    suite_add_tcase(s, server_case("413chunk", test_413_on_chunked_body, 3));
    suite_add_tcase(s, server_case("keepalive", test_keep_alive_reuse, 3));
    suite_add_tcase(s, server_case("connect", test_client_connect_error, 1));
    suite_add_tcase(s, server_case("timeout", test_client_timeout, 1));
    suite_add_tcase(s, server_case("cap", test_client_body_cap, 1));
    suite_add_tcase(s, server_case("headers", test_client_headers_sent, 1));
    suite_add_tcase(
        s, server_case("noproxy", test_client_ignores_proxy_environment, 1));
    suite_add_tcase(s, server_case("stop", test_graceful_stop, 3));
    suite_add_tcase(
        s, server_case("drain", test_draining_serves_open_connections, 3));
    suite_add_tcase(
        s, server_case("storm", test_stop_under_connect_storm_never_resets, 3));
    suite_add_tcase(s, server_case("async", test_async_round_trips, 3));
    suite_add_tcase(s, server_case("asynccap", test_async_per_host_cap, 1));
    suite_add_tcase(
        s, server_case("closemid", test_close_mid_body_ends_request, 3));
    suite_add_tcase(s, server_case("asyncerr", test_async_errors, 1));
    suite_add_tcase(s, server_case("asyncfree", test_async_free_ends_calls, 1));
    suite_add_tcase(
        s, server_case("asynckeep", test_async_keep_drops_unwanted_calls, 2));
    suite_add_tcase(s,
                    server_case("asyncquick",
                                test_async_quick_call_passes_waiting_ones, 1));
    suite_add_tcase(s,
                    server_case("abandon", test_abandon_answers_deferred, 1));
    suite_add_tcase(
        s, server_case("loopcall", test_loop_call_stays_on_its_thread, 1));
    suite_add_tcase(s,
                    server_case("loopwake", test_loop_wake_answers_at_once, 1));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
