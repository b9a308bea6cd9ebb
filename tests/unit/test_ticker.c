/*
 * test_ticker.c - interval threads and millisecond clocks.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clockms.h"
#include "ticker.h"

static void count(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

START_TEST(test_calls_at_once_and_then_repeatedly)
{
    atomic_int calls = 0;
    ticker *t = ticker_start(5, count, &calls);
    ck_assert_ptr_nonnull(t);
    int64_t deadline = clockms_monotonic() + 5000;
    while (atomic_load(&calls) < 3 && clockms_monotonic() < deadline)
        usleep(1000);
    ticker_stop(t);
    int after = atomic_load(&calls);
    ck_assert_int_ge(after, 3);
    usleep(20000);
    ck_assert_int_eq(atomic_load(&calls), after); /* nothing after stop */
}
END_TEST

/* Stopping does not wait out a long interval. */
START_TEST(test_stop_wakes_a_long_wait)
{
    atomic_int calls = 0;
    ticker *t = ticker_start(60000, count, &calls);
    ck_assert_ptr_nonnull(t);
    int64_t deadline = clockms_monotonic() + 5000;
    while (atomic_load(&calls) < 1 && clockms_monotonic() < deadline)
        usleep(1000);
    int64_t t0 = clockms_monotonic();
    ticker_stop(t);
    ck_assert_int_lt(clockms_monotonic() - t0, 30000);
    ck_assert_int_eq(atomic_load(&calls), 1);
    ticker_stop(NULL);
}
END_TEST

/* A poke calls again without waiting out the interval. */
START_TEST(test_poke_calls_now)
{
    atomic_int calls = 0;
    ticker *t = ticker_start(60000, count, &calls);
    ck_assert_ptr_nonnull(t);
    int64_t deadline = clockms_monotonic() + 5000;
    while (atomic_load(&calls) < 1 && clockms_monotonic() < deadline)
        usleep(1000);
    ck_assert_int_eq(atomic_load(&calls), 1);
    ticker_poke(t);
    deadline = clockms_monotonic() + 5000;
    while (atomic_load(&calls) < 2 && clockms_monotonic() < deadline)
        usleep(1000);
    ck_assert_int_eq(atomic_load(&calls), 2);
    usleep(20000); /* one poke, one call */
    ck_assert_int_eq(atomic_load(&calls), 2);
    ticker_stop(t);
    ticker_poke(NULL);
}
END_TEST

START_TEST(test_deadline_normalises_nanoseconds)
{
    struct timespec now, d = clockms_deadline_in(1999);
    clock_gettime(CLOCK_REALTIME, &now);
    ck_assert_int_ge(d.tv_nsec, 0);
    ck_assert_int_lt(d.tv_nsec, 1000000000L);
    double ahead = (double)(d.tv_sec - now.tv_sec) +
                   (double)(d.tv_nsec - now.tv_nsec) / 1e9;
    ck_assert(ahead > 1.0 && ahead <= 2.0);
}
END_TEST

/* A deadline in the past is now, never a negative tv_nsec (which
 * pthread_cond_timedwait refuses with EINVAL instead of timing out). */
START_TEST(test_a_deadline_in_the_past_is_now)
{
    for (int64_t ms = -1; ms >= -2500; ms -= 499) {
        struct timespec now, d = clockms_monotonic_deadline_in(ms);
        clock_gettime(CLOCK_MONOTONIC, &now);
        ck_assert_int_ge(d.tv_nsec, 0);
        ck_assert_int_lt(d.tv_nsec, 1000000000L);
        double behind = (double)(now.tv_sec - d.tv_sec) +
                        (double)(now.tv_nsec - d.tv_nsec) / 1e9;
        ck_assert(behind >= 0.0 && behind < 0.5);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
        struct timespec r = clockms_deadline_in(ms);
        pthread_mutex_lock(&mu);
        ck_assert_int_eq(pthread_cond_timedwait(&cv, &mu, &r), ETIMEDOUT);
        pthread_mutex_unlock(&mu);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ticker");
    TCase *tc = tcase_create("ticker");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_calls_at_once_and_then_repeatedly);
    tcase_add_test(tc, test_stop_wakes_a_long_wait);
    tcase_add_test(tc, test_poke_calls_now);
    tcase_add_test(tc, test_deadline_normalises_nanoseconds);
    tcase_add_test(tc, test_a_deadline_in_the_past_is_now);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
