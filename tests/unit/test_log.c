/*
 * test_log.c - Check suite for log.c: every line reads byte for byte as
 * jansson writes the same object (json_pack of the base members,
 * json_object_update with the fields, json_dumps compact with ten
 * significant digits), which is what log collectors and the integration
 * tests parse. log_event writes the usual line itself and leaves rarer
 * input to jansson; each case below is judged against the reference.
 */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define SERVICE "gateway"
#define OOM_LINE                                                               \
    "{\"level\":\"error\",\"msg\":\"log line dropped: out of memory\"}\n"
#define CAPTURE_MAX (1 << 20)

/* Where stdout goes while a test captures it. */
static FILE *capture;
static int saved_stdout = -1;

static void capture_start(void)
{
    fflush(stdout);
    capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    saved_stdout = dup(STDOUT_FILENO);
    ck_assert_int_ge(saved_stdout, 0);
    ck_assert_int_ge(dup2(fileno(capture), STDOUT_FILENO), 0);
}

/* What was written since capture_start, NUL terminated; caller frees. */
static char *capture_end(void)
{
    static char buf[CAPTURE_MAX];

    ck_assert_int_ge(dup2(saved_stdout, STDOUT_FILENO), 0);
    close(saved_stdout);
    rewind(capture);
    size_t n = fread(buf, 1, sizeof buf - 1, capture);
    fclose(capture);
    buf[n] = '\0';
    return strdup(buf);
}

/* The line the jansson reference writes for these arguments and ts. */
static char *reference_line(const char *ts, const char *level, const char *msg,
                            const json_t *fields)
{
    json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level",
                             level ? level : "info", "service", SERVICE, "msg",
                             msg ? msg : "");
    if (line == NULL)
        return strdup(OOM_LINE);
    if (json_is_object(fields))
        json_object_update(line, (json_t *)fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(line);
    if (text == NULL)
        return strdup(OOM_LINE);
    char *with_nl = malloc(strlen(text) + 2);
    ck_assert_ptr_nonnull(with_nl);
    sprintf(with_nl, "%s\n", text);
    free(text);
    return with_nl;
}

/* The ts log_event chose, read back from its line (the value of the
 * first member; "" when the line has none). */
static void line_ts(const char *line, char *ts, size_t cap)
{
    static const char prefix[] = "{\"ts\":\"";

    ts[0] = '\0';
    if (strncmp(line, prefix, sizeof prefix - 1) != 0)
        return;
    const char *start = line + sizeof prefix - 1;
    const char *end = strchr(start, '"');
    if (end == NULL || (size_t)(end - start) >= cap)
        return;
    memcpy(ts, start, (size_t)(end - start));
    ts[end - start] = '\0';
}

/* Logs once and checks the line against the reference. */
static void check_line(const char *level, const char *msg, const json_t *fields)
{
    char ts[64];

    capture_start();
    log_event(level, msg, fields);
    char *got = capture_end();
    line_ts(got, ts, sizeof ts);
    char *want = reference_line(ts[0] ? ts : "x", level, msg, fields);
    if (strcmp(got, want) != 0)
        ck_abort_msg("line differs\n got: %s want: %s", got, want);
    free(got);
    free(want);
}

static void setup(void)
{
    log_init(SERVICE);
}

START_TEST(test_request_line)
{
    static const double durations[] = {
        0.0,    0.020671,  0.4213567891234, 1.0,    12.5,        1e-7,
        123.45, 1234567.0, 12345678901.0,   -0.001, 1.0 / 3.0e5, 5e-324,
    };

    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        json_t *fields = json_pack(
            "{s:s, s:s, s:s, s:s, s:i, s:f}", "service", SERVICE, "request_id",
            "5f1c2d3e4b5a69788796a5b4c3d2e1f0", "method", "GET", "route",
            "get_messages", "status", 200, "duration_ms", durations[i]);
        check_line("info", "request", fields);
        json_decref(fields);
    }
}
END_TEST

START_TEST(test_no_fields_and_defaults)
{
    check_line("warn", "listening", NULL);
    check_line(NULL, NULL, NULL);
    check_line("info", "", NULL);
    json_t *not_object = json_pack("[i]", 1);
    check_line("info", "an array is no fields", not_object);
    json_decref(not_object);
    json_t *empty = json_object();
    check_line("debug", "empty", empty);
    json_decref(empty);
}
END_TEST

START_TEST(test_escaping)
{
    char controls[40];
    for (int c = 1; c < 0x20; c++)
        controls[c - 1] = (char)c;
    controls[31] = '\0';
    json_t *fields =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s%}", "quote", "say \"hi\"",
                  "backslash", "C:\\dir\\", "slash", "a/b</script>", "controls",
                  controls, "del", "\x7f", "nul", "a\0b", (size_t)3);
    ck_assert_ptr_nonnull(fields);
    check_line("info", "escapes \"\\\n\t\r\b\f\x01/", fields);
    json_decref(fields);
    json_t *keys =
        json_pack("{s:i, s:i, s:i}", "a\"b", 1, "c\\d", 2, "e\nf", 3);
    check_line("info", "keys", keys);
    json_decref(keys);
}
END_TEST

START_TEST(test_every_type)
{
    json_t *fields = json_pack(
        "{s:i, s:I, s:I, s:I, s:I, s:b, s:b, s:n, s:f, s:[i, s, f], "
        "s:{s:s, s:{s:f}}, s:[], s:{}}",
        "int", 0, "max", (json_int_t)LLONG_MAX, "min", (json_int_t)LLONG_MIN,
        "neg", (json_int_t)-42, "minus_one", (json_int_t)-1, "yes", 1, "no", 0,
        "nothing", "real", 2.5, "array", 1, "two", 3.25, "object", "k", "v",
        "deep", "x", 1e300, "empty_array", "empty_object");
    ck_assert_ptr_nonnull(fields);
    check_line("info", "types", fields);
    json_decref(fields);
}
END_TEST

START_TEST(test_base_members_replaced_in_place)
{
    /* A field named like a base member takes its place, whatever its
     * type; the other fields keep their order after the base four. */
    json_t *fields = json_pack("{s:s, s:s, s:i, s:s, s:{s:i}, s:s}", "zeta",
                               "first", "service", "cache", "ts", 7, "alpha",
                               "last", "level", "n", 1, "msg", "replaced");
    ck_assert_ptr_nonnull(fields);
    check_line("info", "original", fields);
    json_decref(fields);
}
END_TEST

START_TEST(test_non_ascii_and_invalid_utf8)
{
    /* Valid UTF-8 anywhere: the same line as jansson's. */
    json_t *fields = json_pack("{s:s, s:s}", "name", "J\xc3\xa9r\xc3\xb4me",
                               "cl\xc3\xa9", "\xf0\x9f\x98\x80");
    ck_assert_ptr_nonnull(fields);
    check_line("info", "caf\xc3\xa9", fields);
    json_decref(fields);

    /* Invalid UTF-8 in the message or in a value: jansson refuses the
     * line, and so does log_event, with the same fallback line. */
    check_line("info", "bad \xff byte", NULL);
    json_t *bad = json_object();
    json_object_set_new_nocheck(bad, "v", json_string_nocheck("x\xc0\xafy"));
    check_line("info", "bad value", bad);
    json_decref(bad);
}
END_TEST

START_TEST(test_key_with_nul)
{
    /* json_object_update cuts keys at a NUL: "msg\0x" replaces msg. */
    json_t *fields = json_object();
    json_object_setn_new_nocheck(fields, "msg\0x", 5, json_string("cut"));
    json_object_setn_new_nocheck(fields, "a\0b", 3, json_integer(1));
    json_object_setn_new_nocheck(fields, "a\0c", 3, json_integer(2));
    check_line("info", "nul keys", fields);
    json_decref(fields);
}
END_TEST

START_TEST(test_long_line)
{
    /* Longer than the stack buffer: the line moves to the heap. */
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    big[100] = '"';
    big[5000] = '\n';
    json_t *fields = json_object();
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%02d", i);
        json_object_set_new(fields, key, json_string(big + i * 300));
    }
    check_line("info", big + 19000, fields);
    json_decref(fields);
}
END_TEST

#define THREADS 4
#define LINES_PER_THREAD 300

/* Logs one request line and checks it: one line, the members of
 * log_event's "request" line in its order, equal values, duration_ms the
 * microseconds in milliseconds. */
static void check_request_line(const char *method, long long us, double want_ms)
{
    log_request_line r = {.service = SERVICE,
                          .request_id = "5f1c2d3e4b5a69788796a5b4c3d2e1f0",
                          .method = method,
                          .route = "get_delta",
                          .status = 503,
                          .duration_us = us};
    capture_start();
    log_request("warn", &r);
    char *got = capture_end();
    size_t len = strlen(got);
    ck_assert_uint_gt(len, 1);
    ck_assert_int_eq(got[len - 1], '\n');
    ck_assert_ptr_eq(strchr(got, '\n'), got + len - 1);

    json_error_t err;
    json_t *line = json_loads(got, 0, &err);
    ck_assert_msg(line != NULL, "not JSON: %s (%s)", got, err.text);
    static const char *const keys[] = {"ts",    "level",      "service",
                                       "msg",   "request_id", "method",
                                       "route", "status",     "duration_ms"};
    size_t i = 0;
    for (void *it = json_object_iter(line); it != NULL;
         it = json_object_iter_next(line, it), i++) {
        ck_assert_uint_lt(i, sizeof keys / sizeof keys[0]);
        ck_assert_str_eq(json_object_iter_key(it), keys[i]);
    }
    ck_assert_uint_eq(i, sizeof keys / sizeof keys[0]);
    ck_assert_str_eq(json_string_value(json_object_get(line, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(line, "msg")),
                     "request");
    ck_assert_str_eq(json_string_value(json_object_get(line, "method")),
                     method ? method : "");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 503);
    ck_assert_double_eq_tol(
        json_number_value(json_object_get(line, "duration_ms")), want_ms, 1e-9);
    json_decref(line);
    free(got);
}

START_TEST(test_log_request_nulls)
{
    log_request_line r = {.status = 200, .duration_us = 1500};
    capture_start();
    log_request(NULL, &r);
    char *got = capture_end();
    json_error_t err;
    json_t *line = json_loads(got, 0, &err);
    ck_assert_msg(line != NULL, "not JSON: %s (%s)", got, err.text);
    ck_assert_str_eq(json_string_value(json_object_get(line, "level")), "info");
    ck_assert_str_eq(json_string_value(json_object_get(line, "service")),
                     SERVICE);
    ck_assert_str_eq(json_string_value(json_object_get(line, "request_id")),
                     "");
    ck_assert_str_eq(json_string_value(json_object_get(line, "route")), "");
    ck_assert_double_eq_tol(
        json_number_value(json_object_get(line, "duration_ms")), 1.5, 1e-9);
    json_decref(line);
    free(got);
}
END_TEST

START_TEST(test_log_request)
{
    check_request_line("GET", 0, 0.0);
    check_request_line("POST", 1, 0.001);
    check_request_line("GET", 999, 0.999);
    check_request_line("GET", 1000, 1.0);
    check_request_line("GET", 20671, 20.671);
    check_request_line("GET", 12345678901, 12345678.901);
    check_request_line("GET", -5, 0.0); /* a clock step: never negative */
    check_request_line(NULL, 7, 0.007);
    check_request_line("G\"E\\T\n", 7, 0.007);  /* escaped */
    check_request_line("G\xc3\xa9T", 7, 0.007); /* UTF-8: jansson's path */
    check_request_line("G\xc3\xa9T", -5, 0.0);  /* and clamped there too */
}
END_TEST

/* The lines of text (cut up in place), each checked to be a whole JSON
 * object with msg "request". */
static int count_request_objects(char *text)
{
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!json_is_object(j))
            ck_abort_msg("not a JSON object: %s", line);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")),
                         "request");
        json_decref(j);
        lines++;
    }
    return lines;
}

static void *log_many(void *arg)
{
    const char *name = arg;
    for (int i = 0; i < LINES_PER_THREAD; i++) {
        json_t *fields = json_pack("{s:s, s:i, s:f}", "thread", name, "i", i,
                                   "duration_ms", i / 7.0);
        log_event("info", "request", fields);
        json_decref(fields);
    }
    return NULL;
}

START_TEST(test_threads_write_whole_lines)
{
    static const char *const names[THREADS] = {"a", "b", "c", "d"};
    pthread_t threads[THREADS];

    capture_start();
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(
            pthread_create(&threads[i], NULL, log_many, (void *)names[i]), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    char *got = capture_end();
    ck_assert_int_eq(count_request_objects(got), THREADS * LINES_PER_THREAD);
    free(got);
}
END_TEST

/* What the captured stdout holds so far, NUL terminated; caller frees. */
static char *capture_peek(void)
{
    static char buf[CAPTURE_MAX];
    ssize_t n = pread(fileno(capture), buf, sizeof buf - 1, 0);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    return strdup(buf);
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = strchr(text, '\n'); p != NULL; p = strchr(p + 1, '\n'))
        n++;
    return n;
}

static void log_numbered_request(int i)
{
    char id[32];
    snprintf(id, sizeof id, "req-%d", i);
    log_request_line r = {
        .request_id = id, .method = "GET", .route = "get_delta", .status = 200};
    log_request("info", &r);
}

/* Buffering is process-wide: every test that turns it on ends with it off
 * and the buffer empty (with CK_FORK=no the tests share one process). */
static void buffering_off(void)
{
    log_flush();
    log_set_flush_ms(0);
}

START_TEST(test_request_lines_wait_for_a_flush)
{
    log_set_flush_ms(60000);
    capture_start();
    log_numbered_request(1);
    log_numbered_request(2);
    char *before = capture_peek();
    ck_assert_str_eq(before, "");
    log_flush();
    char *got = capture_end();
    ck_assert_int_eq(count_lines(got), 2);
    char *first = strstr(got, "\"req-1\""), *second = strstr(got, "\"req-2\"");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(second);
    ck_assert((first) < (second));
    free(before);
    free(got);
    buffering_off();
}
END_TEST

/* Any other line writes the buffered request lines first: the file keeps
 * the order in which lines were logged. */
START_TEST(test_other_lines_keep_the_order)
{
    log_set_flush_ms(60000);
    capture_start();
    log_numbered_request(1);
    log_msg("warn", "after the request");
    char *mid = capture_peek();
    log_numbered_request(2);
    char *got = capture_end();
    ck_assert_int_eq(count_lines(mid), 2);
    char *req = strstr(mid, "\"req-1\""),
         *warn = strstr(mid, "after the request");
    ck_assert_ptr_nonnull(req);
    ck_assert_ptr_nonnull(warn);
    ck_assert((req) < (warn));
    ck_assert_ptr_null(strstr(got, "\"req-2\"")); /* still buffered */
    free(mid);
    free(got);
    capture_start();
    buffering_off();
    got = capture_end();
    ck_assert_ptr_nonnull(strstr(got, "\"req-2\""));
    free(got);
}
END_TEST

/* The flusher thread writes a lone line within the interval, with no
 * other line or flush to push it out. */
START_TEST(test_flusher_writes_a_lone_line)
{
    log_set_flush_ms(20);
    capture_start();
    log_numbered_request(7);
    char *got = NULL;
    for (int i = 0; i < 200; i++) { /* 2 s at most */
        free(got);
        got = capture_peek();
        if (strstr(got, "\"req-7\"") != NULL)
            break;
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
    }
    ck_assert_msg(strstr(got, "\"req-7\"") != NULL,
                  "line not written by the flusher: %s", got);
    ck_assert_int_eq(count_lines(got), 1);
    free(got);
    free(capture_end());
    buffering_off();
}
END_TEST

/* A full buffer goes out without waiting for the interval, whole lines
 * only, and nothing is lost or repeated. */
START_TEST(test_a_full_buffer_is_written_at_once)
{
    enum { LINES = 1000 }; /* about 200 KiB, three buffers and more */
    log_set_flush_ms(60000);
    capture_start();
    for (int i = 0; i < LINES; i++)
        log_numbered_request(i);
    char *mid = capture_peek();
    size_t len = strlen(mid);
    ck_assert_uint_gt(len, 64 * 1024);
    ck_assert_int_eq(mid[len - 1], '\n');
    log_flush();
    char *got = capture_end();
    ck_assert_int_eq(count_lines(got), LINES);
    char id[32];
    for (int i = 0; i < LINES; i++) {
        snprintf(id, sizeof id, "\"req-%d\"", i);
        char *at = strstr(got, id);
        ck_assert_msg(at != NULL, "line %d lost", i);
        ck_assert_msg(strstr(at + 1, id) == NULL, "line %d twice", i);
    }
    free(mid);
    free(got);
    buffering_off();
}
END_TEST

static void *log_many_requests(void *arg)
{
    int base = *(const int *)arg;
    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_numbered_request(base + i);
    return NULL;
}

START_TEST(test_threads_buffer_whole_lines)
{
    static const int bases[THREADS] = {0, 100000, 200000, 300000};
    pthread_t threads[THREADS];
    log_set_flush_ms(5);
    capture_start();
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, log_many_requests,
                                        (void *)&bases[i]),
                         0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    log_flush();
    char *got = capture_end();
    ck_assert_int_eq(count_request_objects(got), THREADS * LINES_PER_THREAD);
    free(got);
    buffering_off();
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_request_line);
    tcase_add_test(tc, test_log_request);
    tcase_add_test(tc, test_log_request_nulls);
    tcase_add_test(tc, test_no_fields_and_defaults);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_every_type);
    tcase_add_test(tc, test_base_members_replaced_in_place);
    tcase_add_test(tc, test_non_ascii_and_invalid_utf8);
    tcase_add_test(tc, test_key_with_nul);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_threads_write_whole_lines);
    tcase_add_test(tc, test_request_lines_wait_for_a_flush);
    tcase_add_test(tc, test_other_lines_keep_the_order);
    tcase_add_test(tc, test_flusher_writes_a_lone_line);
    tcase_add_test(tc, test_a_full_buffer_is_written_at_once);
    tcase_add_test(tc, test_threads_buffer_whole_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
