/*
 * test_ids.c - Check suite for ids.c: the id generator's ordering
 * guarantees (monotonic, above the floor, clock going back, many
 * threads), the bit layout, and the strict parsers of message, user and
 * conversation ids.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "constants.h"

/* 2024-01-01T00:00:00Z in ms. */
#define NOW_MS 1704067200000LL
#define SHIFT (ID_NODE_BITS + ID_SEQ_BITS)

static int parse(const char *s, int64_t *id)
{
    return ids_parse(s, strlen(s), id);
}

static int parse_user(const char *s, int64_t *id)
{
    return ids_parse_user(s, strlen(s), id);
}

START_TEST(test_init_checks_node_range)
{
    ids_gen g;

    ck_assert_int_eq(ids_init(&g, -1), -1);
    ck_assert_int_eq(ids_init(&g, ID_NODE_MAX + 1), -1);
    ck_assert_int_eq(ids_init(&g, ID_NODE_MAX), 0);
    ids_destroy(&g);
    ck_assert_int_eq(ids_init(&g, 0), 0);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_first_id_carries_time_node_and_seq)
{
    ids_gen g;

    ck_assert_int_eq(ids_init(&g, 7), 0);
    int64_t id = ids_next(&g, 0, NOW_MS);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(ids_ms(id), NOW_MS);
    ck_assert_int_eq((id >> ID_SEQ_BITS) & ID_NODE_MAX, 7);
    ck_assert_int_eq(id & ((1 << ID_SEQ_BITS) - 1), 0);
    ck_assert_int_eq(id >> SHIFT, NOW_MS - ID_EPOCH_MS);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_ids_in_one_ms_are_increasing_and_roll_over)
{
    ids_gen g;
    int64_t prev = 0;
    int n = 3 * (1 << ID_SEQ_BITS);

    ck_assert_int_eq(ids_init(&g, 1), 0);
    for (int i = 0; i < n; i++) {
        int64_t id = ids_next(&g, 0, NOW_MS);
        if (id <= prev)
            ck_abort_msg("id %d not increasing", i);
        prev = id;
    }
    /* 3 x 4096 ids at one clock reading: the clock ran ahead by the
     * two sequence overflows. */
    ck_assert_int_eq(ids_ms(prev), NOW_MS + 2);
    ck_assert_int_eq(prev & ((1 << ID_SEQ_BITS) - 1), (1 << ID_SEQ_BITS) - 1);
    /* The next real millisecond is behind the clock: still increasing. */
    ck_assert_int_gt(ids_next(&g, 0, NOW_MS + 1), prev);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_clock_going_back_keeps_ids_increasing)
{
    ids_gen g;

    ck_assert_int_eq(ids_init(&g, 1), 0);
    int64_t a = ids_next(&g, 0, NOW_MS);
    int64_t b = ids_next(&g, 0, NOW_MS - 60000);
    int64_t c = ids_next(&g, 0, 0);
    ck_assert_int_gt(b, a);
    ck_assert_int_gt(c, b);
    ck_assert_int_ge(ids_ms(c), ids_ms(a));
    /* A new millisecond restarts the sequence. */
    int64_t d = ids_next(&g, 0, NOW_MS + 5);
    ck_assert_int_eq(ids_ms(d), NOW_MS + 5);
    ck_assert_int_eq(d & ((1 << ID_SEQ_BITS) - 1), 0);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_id_is_above_floor_in_same_ms)
{
    ids_gen g;
    /* An id another node issued at the same ms with a larger node and
     * seq: ours must still sort after it. */
    int64_t floor = (NOW_MS - ID_EPOCH_MS) << SHIFT |
                    (int64_t)ID_NODE_MAX << ID_SEQ_BITS | 4000;

    ck_assert_int_eq(ids_init(&g, 1), 0);
    int64_t id = ids_next(&g, floor, NOW_MS);
    ck_assert_int_gt(id, floor);
    ck_assert_int_eq(ids_ms(id), NOW_MS + 1);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_floor_far_in_the_future)
{
    ids_gen g;
    int64_t year_ms = 366LL * 24 * 3600 * 1000;
    int64_t floor = (NOW_MS + year_ms - ID_EPOCH_MS) << SHIFT | 123;

    ck_assert_int_eq(ids_init(&g, 2), 0);
    int64_t a = ids_next(&g, floor, NOW_MS);
    ck_assert_int_gt(a, floor);
    ck_assert_int_eq(ids_ms(a), NOW_MS + year_ms + 1);
    /* Later ids without a floor stay after the jump. */
    int64_t b = ids_next(&g, 0, NOW_MS + 1);
    ck_assert_int_gt(b, a);
    ck_assert_int_ge(ids_ms(b), ids_ms(a));
    ids_destroy(&g);
}
END_TEST

START_TEST(test_floor_at_end_of_id_space_fails_cleanly)
{
    ids_gen g;

    ck_assert_int_eq(ids_init(&g, 2), 0);
    ck_assert_int_eq(ids_next(&g, INT64_MAX, NOW_MS), -1);
    /* The generator is unharmed. */
    int64_t id = ids_next(&g, 0, NOW_MS);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(ids_ms(id), NOW_MS);
    ids_destroy(&g);
}
END_TEST

#define THREADS 4
#define PER_THREAD 5000

typedef struct worker {
    ids_gen *g;
    int64_t ids[PER_THREAD];
} worker;

static void *issue(void *arg)
{
    worker *w = arg;

    for (int i = 0; i < PER_THREAD; i++)
        w->ids[i] = ids_next(w->g, 0, NOW_MS);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_concurrent_ids_are_unique_and_ordered_per_thread)
{
    static worker w[THREADS];
    static int64_t all[THREADS * PER_THREAD];
    pthread_t t[THREADS];
    ids_gen g;
    int bad = 0;

    ck_assert_int_eq(ids_init(&g, 3), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i].g = &g;
        ck_assert_int_eq(pthread_create(&t[i], NULL, issue, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        for (int k = 0; k < PER_THREAD; k++) {
            bad += k > 0 && w[i].ids[k] <= w[i].ids[k - 1];
            all[i * PER_THREAD + k] = w[i].ids[k];
        }
    }
    qsort(all, THREADS * PER_THREAD, sizeof all[0], cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        bad += all[i] == all[i - 1];
    ck_assert_int_eq(bad, 0);
    ids_destroy(&g);
}
END_TEST

START_TEST(test_parse_accepts_canonical_decimals)
{
    int64_t id = 0;

    ck_assert_int_eq(parse("1", &id), 0);
    ck_assert_int_eq(id, 1);
    ck_assert_int_eq(parse("7156612312345678901", &id), 0);
    ck_assert_int_eq(id, 7156612312345678901LL);
    ck_assert_int_eq(parse("9223372036854775807", &id), 0);
    ck_assert_int_eq(id, INT64_MAX);
    /* Only len bytes are read. */
    ck_assert_int_eq(ids_parse("12x", 2, &id), 0);
    ck_assert_int_eq(id, 12);
}
END_TEST

START_TEST(test_parse_refuses_everything_else)
{
    static const char *const bad[] = {
        "",
        "0",
        "00",
        "01",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1a",
        "0x10",
        "1.0",
        "1e3",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999",
    };
    int64_t id = 42;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &id) != -1)
            ck_abort_msg("accepted \"%s\"", bad[i]);
    }
    ck_assert_int_eq(id, 42); /* untouched on failure */
    ck_assert_int_eq(ids_parse("1\0"
                               "2",
                               3, &id),
                     -1);
}
END_TEST

START_TEST(test_parse_user_range)
{
    int64_t id;

    ck_assert_int_eq(parse_user("9007199254740991", &id), 0);
    ck_assert_int_eq(id, MSG_USER_ID_MAX);
    ck_assert_int_eq(parse_user("1", &id), 0);
    ck_assert_int_eq(parse_user("9007199254740992", &id), -1);
    ck_assert_int_eq(parse_user("0", &id), -1);
    ck_assert_int_eq(parse_user("042", &id), -1);
    ck_assert_int_eq(parse_user("-5", &id), -1);
}
END_TEST

START_TEST(test_conversation_id_is_ordered_pair)
{
    char a[IDS_CONVERSATION_MAX], b[IDS_CONVERSATION_MAX];

    ck_assert_int_eq(ids_conversation(42, 7, a, sizeof a), 4);
    ck_assert_str_eq(a, "7_42");
    ck_assert_int_eq(ids_conversation(7, 42, b, sizeof b), 4);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(
        ids_conversation(MSG_USER_ID_MAX - 1, MSG_USER_ID_MAX, a, sizeof a),
        33);
    ck_assert_str_eq(a, "9007199254740990_9007199254740991");
    ck_assert_int_eq(ids_conversation(7, 7, a, sizeof a), -1);
    ck_assert_int_eq(ids_conversation(0, 7, a, sizeof a), -1);
    ck_assert_int_eq(ids_conversation(7, MSG_USER_ID_MAX + 1, a, sizeof a), -1);
    ck_assert_int_eq(ids_conversation(7, 42, a, 4), -1); /* no room for NUL */
    ck_assert_int_eq(ids_conversation(7, 42, a, 5), 4);
}
END_TEST

START_TEST(test_parse_conversation)
{
    static const char *const bad[] = {
        "",      "_",     "7",      "7_",
        "_42",   "42_7",  "7_7",    "07_42",
        "7_042", "7-42",  "7_42_9", "7__42",
        " 7_42", "7_42 ", "0_7",    "7_9007199254740992",
    };
    int64_t low, high;

    ck_assert_int_eq(ids_parse_conversation("7_42", 4, &low, &high), 0);
    ck_assert_int_eq(low, 7);
    ck_assert_int_eq(high, 42);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ids_parse_conversation(bad[i], strlen(bad[i]), &low, &high) != -1)
            ck_abort_msg("accepted \"%s\"", bad[i]);
    }
}
END_TEST

static Suite *ids_suite(void)
{
    Suite *s = suite_create("ids");
    TCase *gen = tcase_create("generator");
    TCase *parse_tc = tcase_create("parse");

    tcase_add_test(gen, test_init_checks_node_range);
    tcase_add_test(gen, test_first_id_carries_time_node_and_seq);
    tcase_add_test(gen, test_ids_in_one_ms_are_increasing_and_roll_over);
    tcase_add_test(gen, test_clock_going_back_keeps_ids_increasing);
    tcase_add_test(gen, test_id_is_above_floor_in_same_ms);
    tcase_add_test(gen, test_floor_far_in_the_future);
    tcase_add_test(gen, test_floor_at_end_of_id_space_fails_cleanly);
    tcase_add_test(gen, test_concurrent_ids_are_unique_and_ordered_per_thread);
    tcase_add_test(parse_tc, test_parse_accepts_canonical_decimals);
    tcase_add_test(parse_tc, test_parse_refuses_everything_else);
    tcase_add_test(parse_tc, test_parse_user_range);
    tcase_add_test(parse_tc, test_conversation_id_is_ordered_pair);
    tcase_add_test(parse_tc, test_parse_conversation);
    suite_add_tcase(s, gen);
    suite_add_tcase(s, parse_tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ids_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
