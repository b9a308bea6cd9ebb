/*
 * test_ratelimit.c - Check suite for ratelimit.c: a bucket allows its
 * burst and no more, refills at its rate up to the burst, names the exact
 * wait until the next token, keeps keys apart, stays bounded under many
 * keys (replacing the least recently used of a full set), and counts
 * exactly under concurrent takers.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "ratelimit.h"

/* Takes n tokens of key at now_ms; returns how many were allowed. */
static int take_n(rl_limiter *rl, uint64_t key, int64_t now_ms, int n)
{
    int allowed = 0;
    for (int i = 0; i < n; i++)
        allowed += rl_take(rl, key, now_ms, NULL) ? 1 : 0;
    return allowed;
}

START_TEST(test_new_refuses_bad_arguments)
{
    ck_assert_ptr_null(rl_new(0, 10, 64));
    ck_assert_ptr_null(rl_new(10, 0, 64));
    ck_assert_ptr_null(rl_new(-1, 10, 64));
    ck_assert_ptr_null(rl_new(RL_RATE_MAX + 1, 10, 64));
    ck_assert_ptr_null(rl_new(10, RL_BURST_MAX + 1, 64));
    rl_limiter *rl = rl_new(RL_RATE_MAX, RL_BURST_MAX, 0);
    ck_assert_ptr_nonnull(rl);
    rl_free(rl);
    rl_free(NULL);
}
END_TEST

START_TEST(test_burst_then_refused)
{
    rl_limiter *rl = rl_new(1, 5, 64);
    ck_assert_int_eq(take_n(rl, 42, 1000, 5), 5);
    ck_assert(!rl_take(rl, 42, 1000, NULL));
    ck_assert(!rl_take(rl, 42, 1000, NULL));
    rl_free(rl);
}
END_TEST

START_TEST(test_refill_at_rate_up_to_burst)
{
    rl_limiter *rl = rl_new(10, 2, 64); /* a token per 100 ms */
    ck_assert_int_eq(take_n(rl, 7, 1000, 3), 2);
    ck_assert(!rl_take(rl, 7, 1099, NULL));
    ck_assert(rl_take(rl, 7, 1100, NULL));
    ck_assert(!rl_take(rl, 7, 1100, NULL));
    /* 250 ms later: two and a half tokens accrued, two kept (burst). */
    ck_assert_int_eq(take_n(rl, 7, 1350, 5), 2);
    /* An hour of silence still refills only the burst. */
    ck_assert_int_eq(take_n(rl, 7, 1350 + 3600 * 1000, 5), 2);
    rl_free(rl);
}
END_TEST

START_TEST(test_partial_tokens_accumulate)
{
    rl_limiter *rl = rl_new(3, 1, 64); /* a token per 333.3 ms */
    ck_assert(rl_take(rl, 1, 0, NULL));
    /* Refused attempts every 100 ms keep the fractions already earned. */
    for (int64_t t = 100; t <= 300; t += 100)
        ck_assert(!rl_take(rl, 1, t, NULL));
    ck_assert(!rl_take(rl, 1, 333, NULL)); /* 999 thousandths */
    ck_assert(rl_take(rl, 1, 334, NULL));
    rl_free(rl);
}
END_TEST

START_TEST(test_retry_after_is_the_wait_for_one_token)
{
    rl_limiter *rl = rl_new(2, 1, 64); /* a token per 500 ms */
    int64_t retry = -1;
    ck_assert(rl_take(rl, 9, 10000, &retry));
    ck_assert_int_eq(retry, -1); /* untouched when allowed */
    ck_assert(!rl_take(rl, 9, 10000, &retry));
    ck_assert_int_eq(retry, 500);
    ck_assert(!rl_take(rl, 9, 10300, &retry));
    ck_assert_int_eq(retry, 200);
    ck_assert(!rl_take(rl, 9, 10499, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(rl_take(rl, 9, 10500, &retry));
    rl_free(rl);

    /* Rounded up: a wait of 333.3 ms is 334, never 0. */
    rl = rl_new(3, 1, 64);
    ck_assert(rl_take(rl, 9, 0, NULL));
    ck_assert(!rl_take(rl, 9, 0, &retry));
    ck_assert_int_eq(retry, 334);
    ck_assert(!rl_take(rl, 9, 333, &retry));
    ck_assert_int_eq(retry, 1);
    rl_free(rl);
}
END_TEST

START_TEST(test_clock_going_back_refills_nothing)
{
    rl_limiter *rl = rl_new(1000, 1, 64);
    int64_t retry = 0;
    ck_assert(rl_take(rl, 5, 50000, NULL));
    ck_assert(!rl_take(rl, 5, 10000, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(!rl_take(rl, 5, 50000, NULL));
    ck_assert(rl_take(rl, 5, 50001, NULL));
    rl_free(rl);
}
END_TEST

START_TEST(test_keys_are_independent)
{
    rl_limiter *rl = rl_new(1, 3, 1024);
    ck_assert_int_eq(take_n(rl, 100, 0, 10), 3);
    ck_assert_int_eq(take_n(rl, 101, 0, 10), 3);
    ck_assert_int_eq(take_n(rl, 0, 0, 10), 3);
    ck_assert_int_eq(take_n(rl, UINT64_MAX, 0, 10), 3);
    ck_assert(!rl_take(rl, 100, 0, NULL));
    rl_free(rl);
}
END_TEST

/* A table with room for them keeps every key's state: 2,000 keys in
 * 8,192 sets of 8 never fill a set. */
START_TEST(test_many_keys_keep_their_state)
{
    enum { KEYS = 2000 };
    rl_limiter *rl = rl_new(1, 1, RL_SLOTS_DEFAULT);
    for (uint64_t k = 0; k < KEYS; k++)
        ck_assert(rl_take(rl, k, 0, NULL));
    for (uint64_t k = 0; k < KEYS; k++)
        ck_assert(!rl_take(rl, k, 0, NULL));
    rl_free(rl);
}
END_TEST

/* Far more keys than slots: the table does not grow (the same fixed
 * allocation serves them all), and a key never seen before is always
 * allowed, whatever it displaced. */
START_TEST(test_more_keys_than_slots_stay_bounded)
{
    rl_limiter *rl = rl_new(1, 1, 1024);
    for (uint64_t k = 0; k < 200000; k++)
        ck_assert(rl_take(rl, k * 0x9e3779b97f4a7c15ULL, (int64_t)k, NULL));
    rl_free(rl);
}
END_TEST

/* With one set (RL_WAYS slots), a ninth key takes over the slot that was
 * refilled longest ago, and that key comes back with a full bucket. */
START_TEST(test_full_set_replaces_the_stalest)
{
    rl_limiter *rl = rl_new(1, 1, RL_WAYS);
    ck_assert(rl_take(rl, 1000, 0, NULL));
    ck_assert(!rl_take(rl, 1000, 0, NULL));
    for (uint64_t k = 1; k < RL_WAYS; k++)
        ck_assert(rl_take(rl, k, 10, NULL));
    /* Eight keys fit in eight ways: nothing was replaced yet. */
    ck_assert(!rl_take(rl, 1, 10, NULL));
    ck_assert(!rl_take(rl, 1000, 0, NULL));
    /* A ninth key evicts key 1000, last refilled at 0. */
    ck_assert(rl_take(rl, 2000, 20, NULL));
    ck_assert(!rl_take(rl, 2000, 20, NULL));
    /* Key 1000 comes back with a full bucket, displacing one of the keys
     * refilled at 10, not key 2000, refilled at 20. */
    ck_assert(rl_take(rl, 1000, 20, NULL));
    ck_assert(!rl_take(rl, 1000, 20, NULL));
    ck_assert(!rl_take(rl, 2000, 20, NULL));
    rl_free(rl);
}
END_TEST

enum { THREADS = 8, TAKES_PER_THREAD = 5000 };

typedef struct taker {
    rl_limiter *rl;
    uint64_t key;
    atomic_int *allowed;
} taker;

static void *take_many(void *arg)
{
    taker *t = arg;
    for (int i = 0; i < TAKES_PER_THREAD; i++)
        if (rl_take(t->rl, t->key, 0, NULL))
            atomic_fetch_add(t->allowed, 1);
    return NULL;
}

/* Eight threads draining one bucket with the clock stopped get exactly
 * its burst between them: no token is handed out twice. */
START_TEST(test_concurrent_takers_share_one_bucket_exactly)
{
    rl_limiter *rl = rl_new(1, 10000, 1024);
    atomic_int allowed = 0;
    pthread_t th[THREADS];
    taker t = {rl, 77, &allowed};
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, take_many, &t), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&allowed), 10000);
    rl_free(rl);
}
END_TEST

/* Threads on their own keys (sharing stripes) each get their own burst. */
START_TEST(test_concurrent_takers_on_distinct_keys)
{
    rl_limiter *rl = rl_new(1, 1000, 1024);
    atomic_int allowed[THREADS];
    taker t[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        atomic_init(&allowed[i], 0);
        t[i] = (taker){rl, (uint64_t)i * 1024, &allowed[i]};
        ck_assert_int_eq(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(atomic_load(&allowed[i]), 1000);
    rl_free(rl);
}
END_TEST

START_TEST(test_key_of_bytes)
{
    const char *a = "127.0.0.1", *b = "127.0.0.2";
    ck_assert_uint_eq(rl_key_of(a, strlen(a)), rl_key_of(a, strlen(a)));
    ck_assert_uint_ne(rl_key_of(a, strlen(a)), rl_key_of(b, strlen(b)));
    ck_assert_uint_ne(rl_key_of(a, strlen(a)), rl_key_of(a, strlen(a) - 1));
    ck_assert_uint_ne(rl_key_of("", 0), rl_key_of("\0", 1));
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *bucket = tcase_create("bucket");
    tcase_add_test(bucket, test_new_refuses_bad_arguments);
    tcase_add_test(bucket, test_burst_then_refused);
    tcase_add_test(bucket, test_refill_at_rate_up_to_burst);
    tcase_add_test(bucket, test_partial_tokens_accumulate);
    tcase_add_test(bucket, test_retry_after_is_the_wait_for_one_token);
    tcase_add_test(bucket, test_clock_going_back_refills_nothing);
    suite_add_tcase(s, bucket);

    TCase *table = tcase_create("table");
    tcase_add_test(table, test_keys_are_independent);
    tcase_add_test(table, test_many_keys_keep_their_state);
    tcase_add_test(table, test_more_keys_than_slots_stay_bounded);
    tcase_add_test(table, test_full_set_replaces_the_stalest);
    tcase_add_test(table, test_key_of_bytes);
    suite_add_tcase(s, table);

    TCase *threads = tcase_create("threads");
    tcase_set_timeout(threads, 60);
    tcase_add_test(threads, test_concurrent_takers_share_one_bucket_exactly);
    tcase_add_test(threads, test_concurrent_takers_on_distinct_keys);
    suite_add_tcase(s, threads);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ratelimit_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
