/*
 * test_storeq.c - Check suite for services/cache/storeq.c, the cache
 * node's queue of writes to storage: a lone write is a call of its own at
 * once; writes that queue while the lanes are busy share the next call,
 * within batch_max and bytes_max; each write gets its own outcome; lanes
 * bound the calls in flight; a write no call takes within the wait gives
 * up unsent; and lanes 0 turns the queue off.
 *
 * The runner is a fake that records the size of every call and can hold
 * calls in flight until the test releases them. storeq.c is compiled in
 * directly, so the test can see how many writes are queued.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../services/cache/storeq.c"

#define CALLS_MAX 64
#define WRITERS_MAX 16

typedef struct fake {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool is_holding;      /* calls wait in the runner while set */
    int calls;            /* calls started */
    int sizes[CALLS_MAX]; /* writes carried by each call, in start order */
    int running;          /* calls in the runner now */
    int most_running;
} fake;

/* Each write's message is its number in decimal; its outcome echoes it
 * in status, so a mixed-up hand-out shows. */
static void fake_run(void *ctx, storeq_job **jobs, int n)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    if (f->calls < CALLS_MAX)
        f->sizes[f->calls] = n;
    f->calls++;
    f->running++;
    if (f->running > f->most_running)
        f->most_running = f->running;
    pthread_cond_broadcast(&f->cv);
    while (f->is_holding)
        pthread_cond_wait(&f->cv, &f->lock);
    f->running--;
    pthread_mutex_unlock(&f->lock);
    for (int i = 0; i < n; i++) {
        jobs[i]->err = STORE_OK;
        jobs[i]->status = strtol(jobs[i]->message, NULL, 10);
    }
}

static void fake_init(fake *f, bool is_holding)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->is_holding = is_holding;
}

static void fake_destroy(fake *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->lock);
}

static void fake_release(fake *f)
{
    pthread_mutex_lock(&f->lock);
    f->is_holding = false;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->lock);
}

static void fake_wait_running(fake *f, int running)
{
    pthread_mutex_lock(&f->lock);
    while (f->running < running)
        pthread_cond_wait(&f->cv, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

/* One writer thread: submits write number `number` of `len` bytes. */
typedef struct writer {
    pthread_t thread;
    storeq *q;
    char text[32];
    storeq_job job;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    storeq_submit(w->q, &w->job);
    return NULL;
}

static void writer_start(writer *w, storeq *q, int number, size_t len)
{
    memset(w, 0, sizeof *w);
    w->q = q;
    snprintf(w->text, sizeof w->text, "%d", number);
    w->job = (storeq_job){.op = "send", .message = w->text, .len = len};
    ck_assert_int_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static int queued(storeq *q)
{
    pthread_mutex_lock(&q->lock);
    int n = 0;
    for (const storeq_job *j = q->head; j; j = j->next)
        n++;
    pthread_mutex_unlock(&q->lock);
    return n;
}

static void wait_queued(storeq *q, int n)
{
    for (int i = 0; i < 5000 && queued(q) < n; i++)
        usleep(1000);
    ck_assert_int_eq(queued(q), n);
}

/* Holds a first write in flight on a one-lane queue, queues `more`
 * writes behind it (each of `len` bytes), releases them all and checks
 * that every write got its own outcome. */
static void run_behind_one(storeq *q, fake *f, int more, size_t len)
{
    writer w[WRITERS_MAX];
    writer_start(&w[0], q, 100, len);
    fake_wait_running(f, 1);
    for (int i = 1; i <= more; i++)
        writer_start(&w[i], q, 100 + i, len);
    wait_queued(q, more);
    usleep(20000); /* the queued writes wait at least this long */
    fake_release(f);
    for (int i = 0; i <= more; i++) {
        pthread_join(w[i].thread, NULL);
        ck_assert_int_eq(w[i].job.err, STORE_OK);
        ck_assert_int_eq(w[i].job.status, 100 + i);
        if (i > 0)
            ck_assert_int_ge(w[i].job.waited_us, 20000);
    }
    /* The first write found the lane free: its call started at once. */
    ck_assert_int_lt(w[0].job.waited_us, 20000);
}

START_TEST(test_lone_write_is_a_call_at_once)
{
    fake f;
    fake_init(&f, false);
    storeq *q = storeq_new(4, 32, 1024, 0, fake_run, &f);
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < 3; i++) {
        storeq_job j = {.op = "deliver", .message = "7", .len = 1};
        storeq_submit(q, &j);
        ck_assert_int_eq(j.err, STORE_OK);
        ck_assert_int_eq(j.status, 7);
    }
    ck_assert_int_eq(f.calls, 3);
    ck_assert_int_eq(f.sizes[0], 1);
    ck_assert_int_eq(f.sizes[2], 1);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_queued_writes_share_the_next_call)
{
    fake f;
    fake_init(&f, true);
    storeq *q = storeq_new(1, 32, 1024, 0, fake_run, &f);
    run_behind_one(q, &f, 5, 3);
    ck_assert_int_eq(f.calls, 2);
    ck_assert_int_eq(f.sizes[0], 1);
    ck_assert_int_eq(f.sizes[1], 5);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_a_call_carries_at_most_batch_max)
{
    fake f;
    fake_init(&f, true);
    storeq *q = storeq_new(1, 2, 1024, 0, fake_run, &f);
    run_behind_one(q, &f, 5, 3);
    ck_assert_int_eq(f.calls, 4);
    ck_assert_int_eq(f.sizes[1], 2);
    ck_assert_int_eq(f.sizes[2], 2);
    ck_assert_int_eq(f.sizes[3], 1);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_a_call_carries_at_most_bytes_max)
{
    fake f;
    fake_init(&f, true);
    /* 3 writes of 4 bytes fit in 12, the fourth does not; a first write
     * over the bound still goes, alone. */
    storeq *q = storeq_new(1, 32, 12, 0, fake_run, &f);
    run_behind_one(q, &f, 5, 4);
    ck_assert_int_eq(f.calls, 3);
    ck_assert_int_eq(f.sizes[1], 3);
    ck_assert_int_eq(f.sizes[2], 2);
    storeq_free(q);
    fake_destroy(&f);

    fake_init(&f, false);
    q = storeq_new(1, 32, 2, 0, fake_run, &f);
    storeq_job big = {.op = "send", .message = "12345", .len = 5};
    storeq_submit(q, &big);
    ck_assert_int_eq(big.err, STORE_OK);
    ck_assert_int_eq(big.status, 12345);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_lanes_bound_the_calls_in_flight)
{
    fake f;
    fake_init(&f, true);
    storeq *q = storeq_new(2, 32, 1024, 0, fake_run, &f);
    writer w[4];
    for (int i = 0; i < 4; i++)
        writer_start(&w[i], q, i, 1);
    fake_wait_running(&f, 2);
    wait_queued(q, 2); /* two lanes busy, the other two wait */
    fake_release(&f);
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i].thread, NULL);
        ck_assert_int_eq(w[i].job.status, i);
    }
    ck_assert_int_eq(f.most_running, 2);
    ck_assert_int_le(f.calls, 3);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

/* A write that no call takes within the queue's wait gives up with
 * STORE_DOWN and is never sent; the queue goes on serving. */
START_TEST(test_a_write_queued_past_the_wait_gives_up)
{
    fake f;
    fake_init(&f, true);
    storeq *q = storeq_new(1, 32, 1024, 100, fake_run, &f);
    writer w[3];
    writer_start(&w[0], q, 0, 1);
    fake_wait_running(&f, 1); /* the one lane is held */
    writer_start(&w[1], q, 1, 1);
    pthread_join(w[1].thread, NULL);
    ck_assert_int_eq(w[1].job.err, STORE_DOWN);
    ck_assert_int_eq(w[1].job.status, 0);
    ck_assert_int_ge(w[1].job.waited_us, 100000);
    ck_assert_int_eq(queued(q), 0);
    ck_assert_int_eq(f.calls, 1); /* it was never sent */
    fake_release(&f);
    pthread_join(w[0].thread, NULL);
    ck_assert_int_eq(w[0].job.err, STORE_OK);
    writer_start(&w[2], q, 2, 1);
    pthread_join(w[2].thread, NULL);
    ck_assert_int_eq(w[2].job.err, STORE_OK);
    ck_assert_int_eq(w[2].job.status, 2);
    ck_assert_int_eq(f.calls, 2);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_no_lanes_is_no_queue)
{
    fake f;
    fake_init(&f, true);
    storeq *q = storeq_new(0, 32, 1024, 0, fake_run, &f);
    writer w[3];
    for (int i = 0; i < 3; i++)
        writer_start(&w[i], q, i, 1);
    fake_wait_running(&f, 3); /* all three at once, each a call */
    ck_assert_int_eq(queued(q), 0);
    fake_release(&f);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].thread, NULL);
        ck_assert_int_eq(w[i].job.status, i);
    }
    ck_assert_int_eq(f.calls, 3);
    storeq_free(q);
    fake_destroy(&f);
}
END_TEST

START_TEST(test_bad_arguments_are_refused)
{
    fake f;
    fake_init(&f, false);
    ck_assert_ptr_null(storeq_new(-1, 32, 1024, 0, fake_run, &f));
    ck_assert_ptr_null(storeq_new(1, 0, 1024, 0, fake_run, &f));
    ck_assert_ptr_null(storeq_new(1, 32, 1024, 0, NULL, &f));
    ck_assert_ptr_null(storeq_new(1, 32, 1024, -1, fake_run, &f));
    storeq_free(NULL);
    fake_destroy(&f);
}
END_TEST

static Suite *storeq_suite(void)
{
    Suite *s = suite_create("storeq");
    TCase *tc = tcase_create("queue");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_lone_write_is_a_call_at_once);
    tcase_add_test(tc, test_queued_writes_share_the_next_call);
    tcase_add_test(tc, test_a_call_carries_at_most_batch_max);
    tcase_add_test(tc, test_a_call_carries_at_most_bytes_max);
    tcase_add_test(tc, test_lanes_bound_the_calls_in_flight);
    tcase_add_test(tc, test_a_write_queued_past_the_wait_gives_up);
    tcase_add_test(tc, test_no_lanes_is_no_queue);
    tcase_add_test(tc, test_bad_arguments_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(storeq_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
