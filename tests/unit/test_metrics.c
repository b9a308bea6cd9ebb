/*
 * test_metrics.c - the Prometheus text that metrics_render produces.
 *
 * Checks exact sample lines after known observations (cumulative buckets,
 * +Inf, _sum, _count), one HELP/TYPE pair per family, label escaping, and
 * that overflowing the fixed tables or using bad names drops and counts
 * instead of crashing.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Asserts that `line` (without its newline) is a whole line of text. */
static void assert_line(const char *text, const char *line)
{
    size_t len = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line)) {
        if ((p == text || p[-1] == '\n') && p[len] == '\n')
            return;
    }
    ck_abort_msg("line not found: %s\n--- in ---\n%s", line, text);
}

START_TEST(test_request_counters_and_buckets)
{
    metrics_t *m = metrics_new("svc");
    ck_assert_ptr_nonnull(m);
    metrics_observe_request(m, "send", 201, 0.003); /* le 0.005 */
    metrics_observe_request(m, "send", 201, 0.003);
    metrics_observe_request(m, "send", 200, 0.2);    /* le 0.25 */
    metrics_observe_request(m, "send", 500, 20.0);   /* above 10: +Inf */
    metrics_observe_request(m, "list", 200, 0.0005); /* le 0.0005 */
    metrics_observe_request(m, NULL, 404, 0.0001);

    char *t = metrics_render(m);
    ck_assert_ptr_nonnull(t);
    assert_line(t, "# TYPE http_requests_total counter");
    assert_line(t, "http_requests_total{service=\"svc\",route=\"send\","
                   "status=\"201\"} 2");
    assert_line(t, "http_requests_total{service=\"svc\",route=\"send\","
                   "status=\"200\"} 1");
    assert_line(t, "http_requests_total{service=\"svc\",route=\"send\","
                   "status=\"500\"} 1");
    assert_line(t, "http_requests_total{service=\"svc\",route=\"unknown\","
                   "status=\"404\"} 1");

    /* One histogram per (route, status), as the counters. */
#define SEND_BUCKET(status, le, n)                                             \
    "http_request_duration_seconds_bucket{service=\"svc\",route=\"send\","     \
    "status=\"" status "\",le=\"" le "\"} " #n
    assert_line(t, "# TYPE http_request_duration_seconds histogram");
    assert_line(t, SEND_BUCKET("201", "0.0005", 0));
    assert_line(t, SEND_BUCKET("201", "0.0025", 0));
    assert_line(t, SEND_BUCKET("201", "0.005", 2));
    assert_line(t, SEND_BUCKET("201", "+Inf", 2));
    assert_line(t, SEND_BUCKET("200", "0.1", 0));
    assert_line(t, SEND_BUCKET("200", "0.25", 1));
    assert_line(t, SEND_BUCKET("500", "10", 0));
    assert_line(t, SEND_BUCKET("500", "+Inf", 1));
#undef SEND_BUCKET
    assert_line(t, "http_request_duration_seconds_count{service=\"svc\","
                   "route=\"send\",status=\"201\"} 2");
    assert_line(t, "http_request_duration_seconds_bucket{service=\"svc\","
                   "route=\"list\",status=\"200\",le=\"0.0005\"} 1");
    assert_line(t, "http_request_duration_seconds_bucket{service=\"svc\","
                   "route=\"list\",status=\"200\",le=\"+Inf\"} 1");

    /* _sum is 20.0 within float error. */
    const char *key = "http_request_duration_seconds_sum{service=\"svc\","
                      "route=\"send\",status=\"500\"} ";
    const char *sum = strstr(t, key);
    ck_assert_ptr_nonnull(sum);
    ck_assert_double_eq_tol(strtod(sum + strlen(key), NULL), 20.0, 1e-9);

    /* Every family is introduced exactly once. */
    ck_assert_int_eq(count_occurrences(t, "# TYPE http_requests_total "), 1);
    ck_assert_int_eq(count_occurrences(t, "# HELP http_requests_total "), 1);
    ck_assert_int_eq(
        count_occurrences(t, "# TYPE http_request_duration_seconds "), 1);
    ck_assert_int_eq(
        count_occurrences(t, "# HELP http_request_duration_seconds "), 1);
    assert_line(t, "metrics_dropped_total{service=\"svc\"} 0");
    ck_assert(t[strlen(t) - 1] == '\n');
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_dependency_histogram)
{
    metrics_t *m = metrics_new("cache");
    metrics_observe_dependency(m, "redis", 0.0004);
    metrics_observe_dependency(m, "redis", 0.004);
    metrics_observe_dependency(m, "storage", 1.5);
    metrics_observe_dependency(m, "storage", -1.0); /* clock step: 0 */
    char *t = metrics_render(m);
    assert_line(t, "# TYPE dependency_duration_seconds histogram");
    assert_line(t, "dependency_duration_seconds_bucket{service=\"cache\","
                   "dependency=\"redis\",le=\"0.0005\"} 1");
    assert_line(t, "dependency_duration_seconds_bucket{service=\"cache\","
                   "dependency=\"redis\",le=\"0.005\"} 2");
    assert_line(t, "dependency_duration_seconds_bucket{service=\"cache\","
                   "dependency=\"storage\",le=\"0.0005\"} 1");
    assert_line(t, "dependency_duration_seconds_bucket{service=\"cache\","
                   "dependency=\"storage\",le=\"1\"} 1");
    assert_line(t, "dependency_duration_seconds_bucket{service=\"cache\","
                   "dependency=\"storage\",le=\"2.5\"} 2");
    assert_line(t, "dependency_duration_seconds_count{service=\"cache\","
                   "dependency=\"storage\"} 2");
    assert_line(t, "dependency_duration_seconds_sum{service=\"cache\","
                   "dependency=\"storage\"} 1.5");
    /* No request was observed: no empty request families. */
    ck_assert_ptr_null(strstr(t, "http_requests_total"));
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_named_counters_and_gauges)
{
    metrics_t *m = metrics_new("cache");
    metrics_count(m, "cache_hits_total", "Hot mailbox hits.", 3);
    metrics_count(m, "cache_hits_total", "ignored later help", 2);
    metrics_gauge(m, "ring_epoch", "Ring epoch in use.", 7);
    metrics_gauge(m, "ring_epoch", NULL, 8);
    metrics_gauge(m, "outbox_ratio", "A ratio.", 0.25);
    char *t = metrics_render(m);
    assert_line(t, "# HELP cache_hits_total Hot mailbox hits.");
    assert_line(t, "# TYPE cache_hits_total counter");
    assert_line(t, "cache_hits_total{service=\"cache\"} 5");
    assert_line(t, "# TYPE ring_epoch gauge");
    assert_line(t, "ring_epoch{service=\"cache\"} 8");
    assert_line(t, "outbox_ratio{service=\"cache\"} 0.25");
    ck_assert_int_eq(count_occurrences(t, "# TYPE ring_epoch "), 1);
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_counter_of_seconds)
{
    metrics_t *m = metrics_new("cache");
    metrics_count_seconds(m, "queue_wait_seconds_total", "Waited.", 0.25);
    metrics_count_seconds(m, "queue_wait_seconds_total", NULL, 0.5);
    metrics_count_seconds(m, "queue_wait_seconds_total", NULL,
                          -1); /* dropped */
    /* The name is a float counter's: not a whole-number one's too. */
    metrics_count(m, "queue_wait_seconds_total", NULL, 1);
    char *t = metrics_render(m);
    assert_line(t, "# TYPE queue_wait_seconds_total counter");
    assert_line(t, "queue_wait_seconds_total{service=\"cache\"} 0.75");
    assert_line(t, "metrics_dropped_total{service=\"cache\"} 2");
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_bad_names_dropped)
{
    metrics_t *m = metrics_new("svc");
    metrics_count(m, "bad name", "x", 1);
    metrics_count(m, "9lives", "x", 1);
    metrics_count(m, "", "x", 1);
    metrics_count(m, NULL, "x", 1);
    metrics_count(m, "http_requests_total", "shadows a built-in", 1);
    metrics_gauge(m, "both_kinds", "x", 1);
    metrics_count(m, "both_kinds", "x", 1); /* already a gauge */
    char *t = metrics_render(m);
    assert_line(t, "metrics_dropped_total{service=\"svc\"} 6");
    ck_assert_ptr_null(strstr(t, "bad name{"));
    ck_assert_ptr_null(strstr(t, "9lives{"));
    ck_assert_ptr_null(strstr(t, "http_requests_total"));
    assert_line(t, "both_kinds{service=\"svc\"} 1");
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_overflow_is_counted)
{
    metrics_t *m = metrics_new("svc");
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "route_%d", i);
        metrics_observe_request(m, name, 200, 0.001);
        snprintf(name, sizeof(name), "series_%d_total", i);
        metrics_count(m, name, "x", 1);
        snprintf(name, sizeof(name), "dep_%d", i);
        metrics_observe_dependency(m, name, 0.001);
    }
    char *t = metrics_render(m);
    ck_assert_ptr_nonnull(t);
    /* Tables: 64 (route,status) counters, 64 (route,status) histograms,
     * 32 named series, 16 dependencies. Everything else is dropped and
     * counted. */
    int dropped = (200 - 64) + (200 - 64) + (200 - 32) + (200 - 16);
    char line[96];
    snprintf(line, sizeof(line), "metrics_dropped_total{service=\"svc\"} %d",
             dropped);
    assert_line(t, line);
    assert_line(t, "http_requests_total{service=\"svc\",route=\"route_63\","
                   "status=\"200\"} 1");
    ck_assert_ptr_null(strstr(t, "route=\"route_64\",status"));
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_label_escaping)
{
    metrics_t *m = metrics_new("a\"b\\c\nd");
    metrics_observe_request(m, "r\"1", 200, 0.001);
    metrics_count(m, "x_total", "line one\nback\\slash", 1);
    char *t = metrics_render(m);
    assert_line(t, "http_requests_total{service=\"a\\\"b\\\\c\\nd\","
                   "route=\"r\\\"1\",status=\"200\"} 1");
    assert_line(t, "# HELP x_total line one\\nback\\\\slash");
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_non_finite_gauge)
{
    metrics_t *m = metrics_new("svc");
    metrics_gauge(m, "g_nan", "x", NAN);
    metrics_gauge(m, "g_inf", "x", INFINITY);
    metrics_gauge(m, "g_ninf", "x", -INFINITY);
    char *t = metrics_render(m);
    assert_line(t, "g_nan{service=\"svc\"} NaN");
    assert_line(t, "g_inf{service=\"svc\"} +Inf");
    assert_line(t, "g_ninf{service=\"svc\"} -Inf");
    free(t);
    metrics_free(m);
}
END_TEST

START_TEST(test_null_is_harmless)
{
    metrics_observe_request(NULL, "r", 200, 0.1);
    metrics_observe_dependency(NULL, "d", 0.1);
    metrics_count(NULL, "c_total", "x", 1);
    metrics_gauge(NULL, "g", "x", 1);
    ck_assert_ptr_null(metrics_render(NULL));
    metrics_free(NULL);
}
END_TEST

static void *observe_many(void *arg)
{
    metrics_t *m = arg;
    for (int i = 0; i < 10000; i++) {
        metrics_observe_request(m, "send", 201, 0.001);
        metrics_count(m, "ops_total", "x", 1);
    }
    return NULL;
}

START_TEST(test_concurrent_observations)
{
    metrics_t *m = metrics_new("svc");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, observe_many, m);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = metrics_render(m);
    assert_line(t, "http_requests_total{service=\"svc\",route=\"send\","
                   "status=\"201\"} 40000");
    assert_line(t, "http_request_duration_seconds_bucket{service=\"svc\","
                   "route=\"send\",status=\"201\",le=\"+Inf\"} 40000");
    assert_line(t, "ops_total{service=\"svc\"} 40000");
    free(t);
    metrics_free(m);
}
END_TEST

static void *borrow_and_return(void *arg)
{
    metrics_t *m = arg;
    for (int i = 0; i < 10000; i++) {
        metrics_gauge_add(m, "pool_in_use", "Connections in use.", 1);
        metrics_gauge_add(m, "pool_in_use", NULL, -1);
    }
    metrics_gauge_add(m, "pool_in_use", NULL, 1); /* one left borrowed */
    return NULL;
}

/* Several owners move one gauge; what they hold at the end is its value,
 * and a gauge_add on a counter's name is dropped like any kind clash. */
START_TEST(test_gauge_add_from_many_owners)
{
    metrics_t *m = metrics_new("storage");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, borrow_and_return, m);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    metrics_gauge_add(m, "pool_size", "Connections.", 4);
    metrics_gauge_add(m, "pool_size", NULL, 4);
    metrics_count(m, "calls_total", "x", 1);
    metrics_gauge_add(m, "calls_total", "x", 1);
    char *t = metrics_render(m);
    assert_line(t, "# TYPE pool_in_use gauge");
    assert_line(t, "pool_in_use{service=\"storage\"} 4");
    assert_line(t, "pool_size{service=\"storage\"} 8");
    assert_line(t, "calls_total{service=\"storage\"} 1");
    assert_line(t, "metrics_dropped_total{service=\"storage\"} 1");
    free(t);
    metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, test_request_counters_and_buckets);
    tcase_add_test(tc, test_dependency_histogram);
    tcase_add_test(tc, test_named_counters_and_gauges);
    tcase_add_test(tc, test_bad_names_dropped);
    tcase_add_test(tc, test_overflow_is_counted);
    tcase_add_test(tc, test_label_escaping);
    tcase_add_test(tc, test_non_finite_gauge);
    tcase_add_test(tc, test_null_is_harmless);
    tcase_add_test(tc, test_concurrent_observations);
    tcase_add_test(tc, test_gauge_add_from_many_owners);
    tcase_add_test(tc, test_counter_of_seconds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
