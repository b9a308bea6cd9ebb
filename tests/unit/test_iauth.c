/*
 * test_iauth.c - Check suite for iauth.c, the X-Internal-Auth header of
 * service-to-service calls, and for its two users: the HTTP client that
 * signs (hc_pool_set_signer) and the HTTP server that requires it
 * (hs_config.internal_secret).
 *
 * The pure part: a vector computed with another implementation (Python's
 * hmac and hashlib) pins the canonical string; every field of the call
 * is shown to be covered by the MAC; the parser refuses every near miss;
 * the time window holds at its edges. The wired part runs a real server
 * on a loopback port and calls it with libcurl and with raw sockets, so
 * the exact bytes on the wire (request target, query, body) are what is
 * signed and checked.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "constants.h"
#include "http_client.h"
#include "http_server.h"
#include "iauth.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define NOW 1700000000LL
#define EMPTY_SHA256                                                           \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Made with Python: hmac.new(SECRET, canonical, sha256).hexdigest(). */
#define VECTOR_POST                                                            \
    "998d58798303d9fdac7215ae323659d4d709cff3aef7479cf062497b28dc778b"
#define VECTOR_GET                                                             \
    "dd1501dfa8ad4d54886d1ed16bb2677f848d96d8e95078798ae2a5aa24e4bacd"

static int sign(const char *secret, const char *method, const char *target,
                const char *body, int64_t now, char *out, size_t cap)
{
    return iauth_sign(secret, method, target, strlen(target), body,
                      body ? strlen(body) : 0, now, out, cap);
}

static iauth_err verify(const char *value, const char *method,
                        const char *target, const char *body, int64_t now)
{
    return iauth_verify(SECRET, value, value ? strlen(value) : 0, method,
                        target, strlen(target), body, body ? strlen(body) : 0,
                        now);
}

static iauth_err parse(const char *value)
{
    iauth_value v;
    return iauth_parse(value, strlen(value), &v);
}

/* ---- the pure functions --------------------------------------------- */

START_TEST(test_sign_matches_another_implementation)
{
    char out[IAUTH_VALUE_MAX + 1];

    int n = sign(SECRET, "POST", "/internal/send?x=1&y=%20z", "{\"a\":1}", NOW,
                 out, sizeof out);
    ck_assert_str_eq(out, "v1 1700000000 " VECTOR_POST);
    ck_assert_int_eq(n, (int)strlen(out));
    sign(SECRET, "GET", "/internal/users/42/meta", NULL, NOW, out, sizeof out);
    ck_assert_str_eq(out, "v1 1700000000 " VECTOR_GET);
    ck_assert_int_eq(verify(out, "GET", "/internal/users/42/meta", NULL, NOW),
                     IAUTH_OK);
}
END_TEST

START_TEST(test_every_field_is_covered)
{
    const char *target = "/internal/users/42/conversations?limit=20&offset=0";
    const char *body = "{\"message\":{}}";
    char v[IAUTH_VALUE_MAX + 1];

    ck_assert_int_gt(sign(SECRET, "POST", target, body, NOW, v, sizeof v), 0);
    ck_assert_int_eq(verify(v, "POST", target, body, NOW), IAUTH_OK);
    ck_assert_int_eq(verify(v, "GET", target, body, NOW), IAUTH_BAD_MAC);
    ck_assert_int_eq(
        verify(v, "POST", "/internal/users/43/conversations?limit=20&offset=0",
               body, NOW),
        IAUTH_BAD_MAC);
    ck_assert_int_eq(
        verify(v, "POST", "/internal/users/42/conversations?limit=20&offset=1",
               body, NOW),
        IAUTH_BAD_MAC);
    ck_assert_int_eq(
        verify(v, "POST", "/internal/users/42/conversations", body, NOW),
        IAUTH_BAD_MAC);
    ck_assert_int_eq(verify(v, "POST", target, "{\"message\":{} }", NOW),
                     IAUTH_BAD_MAC);
    ck_assert_int_eq(verify(v, "POST", target, NULL, NOW), IAUTH_BAD_MAC);
    ck_assert_int_eq(iauth_verify("another secret of at least 32 bytes", v,
                                  strlen(v), "POST", target, strlen(target),
                                  body, strlen(body), NOW),
                     IAUTH_BAD_MAC);
    /* The same MAC under another timestamp (still in the window). */
    char moved[IAUTH_VALUE_MAX + 1];
    snprintf(moved, sizeof moved, "v1 %lld %s", NOW + 1, strrchr(v, ' ') + 1);
    ck_assert_int_eq(verify(moved, "POST", target, body, NOW), IAUTH_BAD_MAC);
    /* One flipped bit of the MAC. */
    char flipped[IAUTH_VALUE_MAX + 1];
    strcpy(flipped, v);
    char *last = flipped + strlen(flipped) - 1;
    *last = *last == '0' ? '1' : '0';
    ck_assert_int_eq(verify(flipped, "POST", target, body, NOW), IAUTH_BAD_MAC);
    /* Embedded NUL in the body: the length counts, not strlen. */
    const char nul_body[] = "{\"a\":\"\0\"}";
    ck_assert_int_gt(iauth_sign(SECRET, "POST", "/internal/x", 11, nul_body,
                                sizeof nul_body - 1, NOW, v, sizeof v),
                     0);
    ck_assert_int_eq(iauth_verify(SECRET, v, strlen(v), "POST", "/internal/x",
                                  11, nul_body, sizeof nul_body - 1, NOW),
                     IAUTH_OK);
    ck_assert_int_eq(iauth_verify(SECRET, v, strlen(v), "POST", "/internal/x",
                                  11, nul_body, 6, NOW),
                     IAUTH_BAD_MAC);
}
END_TEST

START_TEST(test_time_window)
{
    const char *t = "/internal/ring";
    char v[IAUTH_VALUE_MAX + 1];

    ck_assert_int_gt(sign(SECRET, "GET", t, NULL, NOW, v, sizeof v), 0);
    ck_assert_int_eq(verify(v, "GET", t, NULL, NOW + IAUTH_WINDOW_S), IAUTH_OK);
    ck_assert_int_eq(verify(v, "GET", t, NULL, NOW - IAUTH_WINDOW_S), IAUTH_OK);
    ck_assert_int_eq(verify(v, "GET", t, NULL, NOW + IAUTH_WINDOW_S + 1),
                     IAUTH_STALE);
    ck_assert_int_eq(verify(v, "GET", t, NULL, NOW - IAUTH_WINDOW_S - 1),
                     IAUTH_STALE);
    /* 40 s old: the stale call of the integration tests. */
    ck_assert_int_eq(verify(v, "GET", t, NULL, NOW + 40), IAUTH_STALE);
    /* A stale header is refused before its MAC is looked at. */
    ck_assert_int_eq(verify("v1 1 " VECTOR_GET, "GET", t, NULL, NOW),
                     IAUTH_STALE);
    /* No overflow at the extremes of either side. */
    ck_assert_int_eq(iauth_check_time(0, INT64_MAX), IAUTH_STALE);
    ck_assert_int_eq(iauth_check_time(0, INT64_MIN), IAUTH_STALE);
    ck_assert_int_eq(iauth_check_time(999999999999999999LL, INT64_MIN),
                     IAUTH_STALE);
    ck_assert_int_eq(iauth_check_time(INT64_MAX, INT64_MAX), IAUTH_OK);
}
END_TEST

START_TEST(test_parser_is_strict)
{
    static const char *const bad[] = {
        "",
        "v1",
        "v1 ",
        "v1 1700000000",
        "v1 1700000000 ",
        "v2 1700000000 " VECTOR_GET,
        "V1 1700000000 " VECTOR_GET,
        " v1 1700000000 " VECTOR_GET,
        "v1  1700000000 " VECTOR_GET,
        "v1 1700000000  " VECTOR_GET,
        "v1 1700000000 " VECTOR_GET " ",
        "v1 1700000000 " VECTOR_GET "\n",
        "v1\t1700000000 " VECTOR_GET,
        "v1 01700000000 " VECTOR_GET,
        "v1 +1700000000 " VECTOR_GET,
        "v1 -1700000000 " VECTOR_GET,
        "v1 17000000x0 " VECTOR_GET,
        "v1 1000000000000000000 " VECTOR_GET, /* 19 digits */
        "v1 1700000000 " VECTOR_GET "0",
        "v1 1700000000 DD1501DFA8AD4D54886D1ED16BB2677F848D96D8E95078798AE2A5"
        "AA24E4BACD",
        "v1 1700000000 g" VECTOR_GET,
        "v1 1700000000 dd1501dfa8ad4d54886d1ed16bb2677f848d96d8e95078798ae2a5a"
        "a24e4bac",
        "v1 1700000000 " EMPTY_SHA256 "00",
        /* A user's token, bare or as a bearer credential. */
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6MjAwMD"
        "AwMDAwMH0.LeH_swQZfTl-Fc9QYQScEsNpjwHNdnEie0t58Ed38uo",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6"
        "MjAwMDAwMDAwMH0.LeH_swQZfTl-Fc9QYQScEsNpjwHNdnEie0t58Ed38uo",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i]) != IAUTH_MALFORMED)
            ck_abort_msg("accepted %s", bad[i]);
        if (verify(bad[i], "GET", "/internal/ring", NULL, NOW) !=
            IAUTH_MALFORMED)
            ck_abort_msg("verified %s", bad[i]);
    }
    iauth_value v = {.ts = -1};
    ck_assert_int_eq(iauth_parse(NULL, 0, &v), IAUTH_MISSING);
    ck_assert_int_eq(verify(NULL, "GET", "/internal/ring", NULL, NOW),
                     IAUTH_MISSING);
    /* A value cut short by len, or with a NUL inside it. */
    const char *good = "v1 1700000000 " VECTOR_GET;
    ck_assert_int_eq(iauth_parse(good, strlen(good) - 1, &v), IAUTH_MALFORMED);
    char nul[IAUTH_VALUE_MAX + 1];
    strcpy(nul, good);
    nul[5] = '\0';
    ck_assert_int_eq(iauth_parse(nul, strlen(good), &v), IAUTH_MALFORMED);
    ck_assert_int_eq(v.ts, -1); /* untouched on failure */
    ck_assert_int_eq(iauth_parse(good, strlen(good), &v), IAUTH_OK);
    ck_assert_int_eq(v.ts, NOW);
    ck_assert_int_eq(v.mac[0], 0xdd);
    ck_assert_int_eq(v.mac[IAUTH_MAC_LEN - 1], 0xcd);
    ck_assert_int_eq(parse("v1 0 " VECTOR_GET), IAUTH_OK);
    ck_assert_int_eq(parse("v1 999999999999999999 " VECTOR_GET), IAUTH_OK);
}
END_TEST

START_TEST(test_a_user_token_never_passes)
{
    char jwt[512], value[600];
    const char *t = "/internal/users/42/meta";

    /* Whatever secret signed it, a JWT is not of the header's shape. */
    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 3600, jwt, sizeof jwt), 0);
    ck_assert_int_eq(verify(jwt, "GET", t, NULL, NOW), IAUTH_MALFORMED);
    snprintf(value, sizeof value, "Bearer %s", jwt);
    ck_assert_int_eq(verify(value, "GET", t, NULL, NOW), IAUTH_MALFORMED);
    snprintf(value, sizeof value, "v1 %lld %s", NOW, jwt);
    ck_assert_int_eq(verify(value, "GET", t, NULL, NOW), IAUTH_MALFORMED);
}
END_TEST

START_TEST(test_sign_refuses_what_it_cannot_write)
{
    char out[IAUTH_VALUE_MAX + 1];

    ck_assert_int_eq(sign(SECRET, "GET", "/x", NULL, NOW, out, sizeof out - 1),
                     -1);
    ck_assert_int_eq(sign("", "GET", "/x", NULL, NOW, out, sizeof out), -1);
    ck_assert_int_eq(sign(NULL, "GET", "/x", NULL, NOW, out, sizeof out), -1);
    ck_assert_int_eq(sign(SECRET, "GET", "/x", NULL, -1, out, sizeof out), -1);
    ck_assert_int_eq(
        sign(SECRET, "GET", "/x", NULL, 1000000000000000000LL, out, sizeof out),
        -1);
    ck_assert_int_eq(
        iauth_sign(SECRET, "GET", "/x", 2, NULL, 5, NOW, out, sizeof out), -1);
    /* An empty key never verifies anything either. */
    ck_assert_int_gt(sign(SECRET, "GET", "/x", NULL, NOW, out, sizeof out), 0);
    ck_assert_int_eq(
        iauth_verify("", out, strlen(out), "GET", "/x", 2, NULL, 0, NOW),
        IAUTH_ERROR);
}
END_TEST

START_TEST(test_secret_judgement)
{
    const char *warning = "x";

    ck_assert_ptr_nonnull(iauth_secret_problem("", false, &warning));
    ck_assert_ptr_null(warning);
    ck_assert_ptr_nonnull(iauth_secret_problem("", true, &warning));
    ck_assert_ptr_nonnull(iauth_secret_problem(NULL, true, &warning));
    /* 31 bytes: refused, unless in dev mode, where it warns. */
    const char *short_secret = "0123456789abcdef0123456789abcde";
    ck_assert_ptr_nonnull(iauth_secret_problem(short_secret, false, &warning));
    ck_assert_ptr_null(iauth_secret_problem(short_secret, true, &warning));
    ck_assert_ptr_nonnull(warning);
    ck_assert_ptr_nonnull(strstr(warning, "MESSENGER_DEV_MODE=1"));
    /* 32 bytes: fine either way, no warning. */
    ck_assert_ptr_null(iauth_secret_problem(SECRET, false, &warning));
    ck_assert_ptr_null(warning);
    ck_assert_ptr_null(iauth_secret_problem(SECRET, true, &warning));
    ck_assert_ptr_null(warning);
}
END_TEST

START_TEST(test_strerror_names_each_error)
{
    for (int a = IAUTH_OK; a <= IAUTH_ERROR; a++)
        for (int b = a + 1; b <= IAUTH_ERROR; b++)
            ck_assert_str_ne(iauth_strerror((iauth_err)a),
                             iauth_strerror((iauth_err)b));
}
END_TEST

START_TEST(test_keys_are_never_mixed_up)
{
    const char *t = "/internal/send";
    const char *body = "{\"content\":\"hi\"}";
    char v[IAUTH_VALUE_MAX + 1], w[IAUTH_VALUE_MAX + 1];

    /* One thread, secrets in turn (each change re-keys its context),
     * including one that extends the other. */
    ck_assert_int_gt(sign(SECRET, "POST", t, body, NOW, v, sizeof v), 0);
    ck_assert_int_gt(sign(SECRET "x", "POST", t, body, NOW, w, sizeof w), 0);
    ck_assert_str_ne(v, w);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(verify(v, "POST", t, body, NOW), IAUTH_OK);
        ck_assert_int_eq(verify(w, "POST", t, body, NOW), IAUTH_BAD_MAC);
        ck_assert_int_eq(iauth_verify(SECRET "x", w, strlen(w), "POST", t,
                                      strlen(t), body, strlen(body), NOW),
                         IAUTH_OK);
        ck_assert_int_eq(iauth_verify(SECRET "x", v, strlen(v), "POST", t,
                                      strlen(t), body, strlen(body), NOW),
                         IAUTH_BAD_MAC);
    }
}
END_TEST

#define THREADS 4
#define THREAD_ROUNDS 2000

typedef struct thread_case {
    const char *secret, *wrong_secret;
    int failures;
} thread_case;

static void *sign_and_verify_many(void *arg)
{
    thread_case *tc = arg;
    const char *t = "/internal/messages?user=42";
    char body[64], v[IAUTH_VALUE_MAX + 1];

    for (int i = 0; i < THREAD_ROUNDS; i++) {
        snprintf(body, sizeof body, "{\"seq\":%d}", i);
        size_t len = strlen(body);
        if (iauth_sign(tc->secret, "POST", t, strlen(t), body, len, NOW, v,
                       sizeof v) < 0 ||
            iauth_verify(tc->secret, v, strlen(v), "POST", t, strlen(t), body,
                         len, NOW) != IAUTH_OK ||
            iauth_verify(tc->wrong_secret, v, strlen(v), "POST", t, strlen(t),
                         body, len, NOW) != IAUTH_BAD_MAC ||
            iauth_verify(tc->secret, v, strlen(v), "POST", t, strlen(t), body,
                         len - 1, NOW) != IAUTH_BAD_MAC)
            tc->failures++;
    }
    return NULL;
}

START_TEST(test_threads_sign_and_verify_at_once)
{
    static const char *const secrets[2] = {
        SECRET, "another secret of at least 32 bytes"};
    thread_case cases[THREADS];
    pthread_t threads[THREADS];

    for (int i = 0; i < THREADS; i++) {
        cases[i].secret = secrets[i % 2];
        cases[i].wrong_secret = secrets[(i + 1) % 2];
        cases[i].failures = 0;
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(
            pthread_create(&threads[i], NULL, sign_and_verify_many, &cases[i]),
            0);
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_int_eq(cases[i].failures, 0);
    }
    /* The vector still holds on this thread afterwards. */
    char v[IAUTH_VALUE_MAX + 1];
    ck_assert_int_gt(
        sign(SECRET, "GET", "/internal/users/42/meta", NULL, NOW, v, sizeof v),
        0);
    ck_assert_str_eq(v, "v1 1700000000 " VECTOR_GET);
}
END_TEST

/* ---- over HTTP: hc_pool_set_signer and hs_config.internal_secret ----- */

static hs_server *srv;
static metrics_t *mx;
static int port;

/* Answers what it received, so a test sees the body and query arrived. */
static void h_echo(hs_request *req, hs_reply *rep)
{
    const char *q = hs_query(req, "q");
    hs_reply_json(rep, 200,
                  json_pack("{s:b, s:i, s:s?}", "handled", 1, "body_len",
                            (int)req->body_len, "q", q));
}

static const hs_route routes[] = {
    {"POST", "/internal/echo", h_echo, "internal_echo"},
    {"GET", "/internal/users/{}/echo", h_echo, "internal_user_echo"},
    {"GET", "/v1/open", h_echo, "open"},
};

static void start_server(void)
{
    log_init("test");
    mx = metrics_new("test");
    ck_assert_ptr_nonnull(mx);
    hs_config cfg = {
        .service = "test",
        .bind = "127.0.0.1",
        .port = 0,
        .routes = routes,
        .nroutes = sizeof routes / sizeof routes[0],
        .metrics = mx,
        .internal_secret = SECRET,
    };
    srv = hs_start(&cfg);
    ck_assert_ptr_nonnull(srv);
    port = hs_port(srv);
}

static void stop_server(void)
{
    hs_stop(srv, 2000);
    srv = NULL;
    metrics_free(mx);
    mx = NULL;
}

static const char *url_for(const char *target)
{
    static char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, target);
    return url;
}

/* One call through a pool; returns the status, keeps the body in *body
 * (caller frees). */
static long pool_call(hc_pool *p, const char *method, const char *target,
                      const char *body, const hc_headers *h, char **out)
{
    hc_response r;
    ck_assert_int_eq(hc_request(p, method, url_for(target), h, body,
                                body ? strlen(body) : 0, &r),
                     HC_OK);
    if (out)
        *out = strdup(r.body);
    long status = r.status;
    hc_response_free(&r);
    return status;
}

/* Sends request (the whole text) on a new connection and returns the
 * status of the answer; the answer's text goes to out. */
static int raw_call(const char *request, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    size_t len = strlen(request);
    ck_assert_int_eq(write(fd, request, len), (ssize_t)len);
    size_t got = 0;
    for (int i = 0; i < 1000 && got + 1 < cap; i++) {
        ssize_t n = read(fd, out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.1 %d", &status);
    return status;
}

/* A raw request with the given X-Internal-Auth value (none when NULL). */
static int raw_internal(const char *method, const char *target,
                        const char *auth, const char *body, char *out,
                        size_t cap)
{
    char req[2048];
    snprintf(req, sizeof req,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
             "%s%s%sContent-Length: %zu\r\n\r\n%s",
             method, target, auth ? IAUTH_HEADER ": " : "", auth ? auth : "",
             auth ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
    return raw_call(req, out, cap);
}

START_TEST(test_signed_pool_passes_unsigned_is_401)
{
    start_server();
    hc_pool *signed_pool = hc_pool_new(1, 5000);
    hc_pool *plain_pool = hc_pool_new(1, 5000);
    ck_assert_ptr_nonnull(signed_pool);
    ck_assert_ptr_nonnull(plain_pool);
    ck_assert_int_eq(hc_pool_set_signer(signed_pool, SECRET), 0);
    ck_assert_int_eq(hc_pool_set_signer(plain_pool, ""), -1);
    char *body = NULL;

    ck_assert_int_eq(pool_call(signed_pool, "POST", "/internal/echo",
                               "{\"x\":1}", NULL, &body),
                     200);
    ck_assert_ptr_nonnull(strstr(body, "\"body_len\":7"));
    free(body);
    /* Percent-encoding and reserved characters in the query: the MAC is
     * over the target as sent, not as decoded. */
    ck_assert_int_eq(pool_call(signed_pool, "GET",
                               "/internal/users/42/echo?q=a%20b%2Fc+d~&z=%7E",
                               NULL, NULL, &body),
                     200);
    ck_assert_ptr_nonnull(strstr(body, "\"q\":\"a b/c d~\""));
    free(body);
    /* Many calls on one keep-alive connection, each signed anew. */
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(
            pool_call(signed_pool, "POST", "/internal/echo", "{}", NULL, NULL),
            200);

    ck_assert_int_eq(pool_call(plain_pool, "POST", "/internal/echo",
                               "{\"x\":1}", NULL, &body),
                     401);
    ck_assert_ptr_nonnull(strstr(body, "Internal call not authenticated"));
    ck_assert_ptr_null(strstr(body, "handled"));
    free(body);
    ck_assert_int_eq(pool_call(plain_pool, "GET", "/internal/users/42/echo",
                               NULL, NULL, NULL),
                     401);
    /* Health, readiness, metrics and public routes stay open. */
    ck_assert_int_eq(pool_call(plain_pool, "GET", "/healthz", NULL, NULL, NULL),
                     200);
    ck_assert_int_eq(pool_call(plain_pool, "GET", "/readyz", NULL, NULL, NULL),
                     200);
    ck_assert_int_eq(pool_call(plain_pool, "GET", "/metrics", NULL, NULL, NULL),
                     200);
    ck_assert_int_eq(pool_call(plain_pool, "GET", "/v1/open", NULL, NULL, NULL),
                     200);
    /* A signer of another secret is refused too. */
    ck_assert_int_eq(
        hc_pool_set_signer(plain_pool, "another secret of at least 32 bytes"),
        0);
    ck_assert_int_eq(
        pool_call(plain_pool, "POST", "/internal/echo", "{}", NULL, NULL), 401);
    hc_pool_free(signed_pool);
    hc_pool_free(plain_pool);
    stop_server();
}
END_TEST

START_TEST(test_server_refuses_each_bad_header)
{
    start_server();
    char out[4096], v[IAUTH_VALUE_MAX + 1], jwt[512], bearer[1024];
    const char *body = "{\"x\":1}";
    int64_t now = (int64_t)time(NULL);

    /* Correctly signed, raw: the reference for the failures below. */
    ck_assert_int_gt(
        sign(SECRET, "POST", "/internal/echo", body, now, v, sizeof v), 0);
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", v, body, out, sizeof out), 200);
    /* No header. */
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", NULL, body, out, sizeof out),
        401);
    ck_assert_ptr_nonnull(strstr(out, "application/problem+json"));
    ck_assert_ptr_nonnull(strstr(out, "Internal call not authenticated"));
    /* Signed for another body, another target, another method. */
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", v, "{\"x\":2}", out, sizeof out),
        401);
    ck_assert_ptr_nonnull(strstr(out, "signature"));
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo?q=1", v, body, out, sizeof out),
        401);
    ck_assert_int_gt(
        sign(SECRET, "GET", "/internal/users/1/echo", NULL, now, v, sizeof v),
        0);
    ck_assert_int_eq(
        raw_internal("GET", "/internal/users/2/echo", v, NULL, out, sizeof out),
        401);
    ck_assert_int_eq(
        raw_internal("GET", "/internal/users/1/echo", v, NULL, out, sizeof out),
        200);
    /* The target as sent: %31 is "1" once decoded, but not what was
     * signed. */
    ck_assert_int_eq(raw_internal("GET", "/internal/users/%31/echo", v, NULL,
                                  out, sizeof out),
                     401);
    /* 40 s old, and 40 s ahead. */
    ck_assert_int_gt(
        sign(SECRET, "POST", "/internal/echo", body, now - 40, v, sizeof v), 0);
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", v, body, out, sizeof out), 401);
    ck_assert_ptr_nonnull(strstr(out, "window"));
    ck_assert_int_gt(
        sign(SECRET, "POST", "/internal/echo", body, now + 40, v, sizeof v), 0);
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", v, body, out, sizeof out), 401);
    /* A user's JWT, in the header or as Authorization. */
    ck_assert_int_gt(jwt_sign(SECRET, 42, now + 3600, jwt, sizeof jwt), 0);
    ck_assert_int_eq(
        raw_internal("POST", "/internal/echo", jwt, body, out, sizeof out),
        401);
    snprintf(bearer, sizeof bearer,
             "POST /internal/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Connection: close\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             jwt, strlen(body), body);
    ck_assert_int_eq(raw_call(bearer, out, sizeof out), 401);
    stop_server();
}
END_TEST

START_TEST(test_refused_before_the_body_is_read)
{
    start_server();
    char out[4096];

    /* No header and a body announced but never sent: the 401 comes at
     * once, from the headers alone (the read would time out otherwise). */
    const char *req = "POST /internal/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Length: 100000\r\n\r\n";
    ck_assert_int_eq(raw_call(req, out, sizeof out), 401);
    ck_assert_ptr_nonnull(strstr(out, "Connection: close"));
    stop_server();
}
END_TEST

static Suite *iauth_suite(void)
{
    Suite *s = suite_create("iauth");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, test_sign_matches_another_implementation);
    tcase_add_test(pure, test_every_field_is_covered);
    tcase_add_test(pure, test_time_window);
    tcase_add_test(pure, test_parser_is_strict);
    tcase_add_test(pure, test_a_user_token_never_passes);
    tcase_add_test(pure, test_sign_refuses_what_it_cannot_write);
    tcase_add_test(pure, test_secret_judgement);
    tcase_add_test(pure, test_strerror_names_each_error);
    tcase_add_test(pure, test_keys_are_never_mixed_up);
    tcase_add_test(pure, test_threads_sign_and_verify_at_once);
    suite_add_tcase(s, pure);
    TCase *http = tcase_create("http");
    tcase_set_timeout(http, 30);
    tcase_add_test(http, test_signed_pool_passes_unsigned_is_401);
    tcase_add_test(http, test_server_refuses_each_bad_header);
    tcase_add_test(http, test_refused_before_the_body_is_read);
    suite_add_tcase(s, http);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(iauth_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
