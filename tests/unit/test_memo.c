/*
 * test_memo.c - the in-memory mailbox meta of a cache node
 * (services/cache/memo.c): hits, clears, forgets, and that a reader
 * holding an old ticket or an older seq never puts a stale value back.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "../../services/cache/memo.c"

static hot_meta meta(int64_t seq, int64_t max_id)
{
    return (hot_meta){.seq = seq, .max_id = max_id};
}

START_TEST(test_put_get_and_sizes)
{
    ck_assert_ptr_null(memo_new(3));
    ck_assert_ptr_null(memo_new(25));
    memo *m = memo_new(8);
    ck_assert_ptr_nonnull(m);
    hot_meta out;
    ck_assert(!memo_get(m, 42, &out));
    hot_meta v = meta(7, 1000);
    memo_put(m, memo_take_ticket(m, 42), 42, &v);
    ck_assert(memo_get(m, 42, &out));
    ck_assert_int_eq(out.seq, 7);
    ck_assert_int_eq(out.max_id, 1000);
    ck_assert(!memo_get(m, 43, &out));
    memo_free(m);
}
END_TEST

START_TEST(test_seq_only_moves_forward)
{
    memo *m = memo_new(8);
    memo_ticket t = memo_take_ticket(m, 5);
    hot_meta newer = meta(9, 90), older = meta(8, 80), out;
    memo_put(m, t, 5, &newer);
    /* A reader that read Redis before the write finishes after it. */
    memo_put(m, t, 5, &older);
    ck_assert(memo_get(m, 5, &out));
    ck_assert_int_eq(out.seq, 9);
    hot_meta next = meta(10, 100);
    memo_put(m, memo_take_ticket(m, 5), 5, &next);
    ck_assert(memo_get(m, 5, &out));
    ck_assert_int_eq(out.seq, 10);
    memo_free(m);
}
END_TEST

START_TEST(test_clear_forgets_and_refuses_old_tickets)
{
    memo *m = memo_new(8);
    hot_meta v = meta(3, 30), out;
    memo_put(m, memo_take_ticket(m, 1), 1, &v);
    memo_ticket before = memo_take_ticket(m, 2);
    memo_clear(m);
    ck_assert(!memo_get(m, 1, &out));
    memo_put(m, before, 2, &v); /* read before the clear: refused */
    ck_assert(!memo_get(m, 2, &out));
    memo_put(m, memo_take_ticket(m, 2), 2, &v);
    ck_assert(memo_get(m, 2, &out));
    memo_free(m);
}
END_TEST

START_TEST(test_forget_refuses_old_tickets_of_that_slot)
{
    memo *m = memo_new(8);
    hot_meta v = meta(3, 30), out;
    memo_ticket before = memo_take_ticket(m, 11);
    memo_ticket other = memo_take_ticket(m, 12);
    memo_forget(m, 11);
    memo_put(m, before, 11, &v);
    ck_assert(!memo_get(m, 11, &out));
    if (slot_of(m, 11) != slot_of(m, 12)) { /* other slots keep working */
        memo_put(m, other, 12, &v);
        ck_assert(memo_get(m, 12, &out));
    }
    memo_put(m, memo_take_ticket(m, 11), 11, &v);
    ck_assert(memo_get(m, 11, &out));
    memo_forget(m, 11);
    ck_assert(!memo_get(m, 11, &out));
    memo_free(m);
}
END_TEST

START_TEST(test_users_sharing_a_slot_evict_each_other)
{
    memo *m = memo_new(4); /* 16 slots: collisions are certain */
    int64_t a = 1, b = 2;
    while (slot_of(m, b) != slot_of(m, a))
        b++;
    hot_meta va = meta(100, 1), vb = meta(1, 2), out;
    memo_put(m, memo_take_ticket(m, a), a, &va);
    /* b's lower seq is not "older": it is another user. */
    memo_put(m, memo_take_ticket(m, b), b, &vb);
    ck_assert(!memo_get(m, a, &out));
    ck_assert(memo_get(m, b, &out));
    ck_assert_int_eq(out.seq, 1);
    memo_forget(m, a); /* forgetting a leaves b alone */
    ck_assert(memo_get(m, b, &out));
    memo_free(m);
}
END_TEST

/* A reader of a that read seq 5, while a write put seq 6 and then b
 * took the slot, must not install seq 5 for a afterwards. */
START_TEST(test_a_slot_taken_by_another_user_refuses_older_tickets)
{
    memo *m = memo_new(4);
    int64_t a = 1, b = 2;
    while (slot_of(m, b) != slot_of(m, a))
        b++;
    hot_meta old = meta(5, 1), newer = meta(6, 2), vb = meta(1, 3), out;
    memo_ticket reader = memo_take_ticket(m, a);
    memo_put(m, memo_take_ticket(m, a), a, &newer);
    memo_put(m, memo_take_ticket(m, b), b, &vb);
    memo_put(m, reader, a, &old);
    ck_assert(!memo_get(m, a, &out));
    ck_assert(memo_get(m, b, &out));
    ck_assert_int_eq(out.seq, 1);
    /* A fresh ticket installs as before. */
    memo_put(m, memo_take_ticket(m, a), a, &newer);
    ck_assert(memo_get(m, a, &out));
    ck_assert_int_eq(out.seq, 6);
    memo_free(m);
}
END_TEST

typedef struct writer_arg {
    memo *m;
    int64_t uid;
    int64_t from;
} writer_arg;

static void *write_many(void *p)
{
    writer_arg *w = p;
    for (int64_t s = w->from; s < w->from + 20000; s++) {
        hot_meta v = meta(s, s);
        memo_put(w->m, memo_take_ticket(w->m, w->uid), w->uid, &v);
        if (s % 997 == 0)
            memo_clear(w->m);
    }
    return NULL;
}

START_TEST(test_concurrent_puts_keep_the_largest_seq)
{
    memo *m = memo_new(10);
    pthread_t t[4];
    writer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (writer_arg){m, 77, 1 + i * 5000};
        pthread_create(&t[i], NULL, write_many, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    hot_meta last = meta(1000000, 1000000), out;
    memo_put(m, memo_take_ticket(m, 77), 77, &last);
    ck_assert(memo_get(m, 77, &out));
    ck_assert_int_eq(out.seq, 1000000);
    memo_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memo");
    TCase *tc = tcase_create("memo");
    tcase_add_test(tc, test_put_get_and_sizes);
    tcase_add_test(tc, test_seq_only_moves_forward);
    tcase_add_test(tc, test_clear_forgets_and_refuses_old_tickets);
    tcase_add_test(tc, test_forget_refuses_old_tickets_of_that_slot);
    tcase_add_test(tc, test_users_sharing_a_slot_evict_each_other);
    tcase_add_test(tc, test_a_slot_taken_by_another_user_refuses_older_tickets);
    tcase_add_test(tc, test_concurrent_puts_keep_the_largest_seq);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
