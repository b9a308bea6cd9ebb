/*
 * test_batch.c - Check suite for the lock order and the deadlines of
 * services/storage/batch.c.
 *
 * A batch runs its statements sorted by (phase, key, subkey) whatever
 * order their jobs came in: mailbox writes by owner, then outbox deletes
 * by sender and message id. Two batches that delete some of the same
 * outbox rows then lock them in one order and cannot deadlock each other;
 * statements equal in all three keys keep their arrival order (a job's
 * own statements). What this suite proves is the order handed to
 * PostgreSQL; that PostgreSQL then locks in that order is proven by
 * tests/integration/test_storage.py (test_batch_outbox_deletes_lock_in_
 * message_id_order).
 *
 * Deadlines: a job is due PGPOOL_CALL_DEADLINE_MS after it was queued.
 * A batch runs by the earliest deadline of its jobs, a job with less
 * than BATCH_SLICE_MIN_MS left is answered unsent instead of taken, and
 * a job of a rolled-back batch runs again alone only with that much
 * left. These tests queue jobs by hand with deadlines of their own.
 *
 * batch.c is compiled in directly. pgpool_exec_batch is a fake that
 * records the statements of each batch (and the deadline it was given)
 * instead of running them, rolling back the next roll_backs batches if
 * told to, and
 * pgpool_param_int a stand-in for pgpool.c's: each statement carries one
 * integer parameter, its name in the test, so the order shows. The
 * batchers get no pool: the fake needs none.
 */
#include <check.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/storage/batch.c"

#define SEEN_MAX 32

enum { PHASE_WRITE, PHASE_DELETE };

/* What the fake was handed, guarded by lock: the poster thread runs
 * posted jobs, the test thread the jobs it waits for. */
static struct {
    pthread_mutex_t lock;
    int batches;
    int n;
    int64_t names[SEEN_MAX];     /* each statement's parameter, in run order */
    int64_t deadlines[SEEN_MAX]; /* each batch's deadline, in run order */
    int pending[SEEN_MAX];       /* jobs of watched not answered yet */
    waiter *watched;             /* at the start of each batch */
    int roll_backs;              /* batches still to roll back */
    int roll_back_ms;            /* how long a rolled-back batch takes */
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

pgpool_err pgpool_exec_batch(pgpool *p, const pgpool_stmt *stmts, int n,
                             int64_t deadline_ms, PGresult **results,
                             bool *is_rolled_back, char *errbuf, size_t errcap)
{
    pthread_mutex_lock(&seen.lock);
    if (seen.batches < SEEN_MAX) {
        seen.deadlines[seen.batches] = deadline_ms;
        if (seen.watched) {
            pthread_mutex_lock(&seen.watched->lock);
            seen.pending[seen.batches] = seen.watched->pending;
            pthread_mutex_unlock(&seen.watched->lock);
        }
    }
    seen.batches++;
    for (int i = 0; i < n && seen.n < SEEN_MAX; i++) {
        if (!stmts[i].params)
            continue; /* batch.c's own SET LOCAL before posted jobs */
        seen.names[seen.n++] = strtoll(stmts[i].params->values[0], NULL, 10);
    }
    bool roll_back = seen.roll_backs > 0;
    if (roll_back)
        seen.roll_backs--;
    int sleep_ms = roll_back ? seen.roll_back_ms : 0;
    pthread_mutex_unlock(&seen.lock);
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    memset(results, 0, (size_t)n * sizeof *results);
    *is_rolled_back = roll_back;
    if (roll_back)
        snprintf(errbuf, errcap, "a statement failed");
    return roll_back ? PGPOOL_FAILED : PGPOOL_OK;
}

void pgpool_param_int(pgpool_params *ps, int64_t v)
{
    snprintf(ps->numbers[ps->n], sizeof ps->numbers[0], "%" PRId64, v);
    ps->values[ps->n] = ps->numbers[ps->n];
    ps->n++;
}

static void seen_reset(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.batches = 0;
    seen.n = 0;
    seen.roll_backs = 0;
    seen.roll_back_ms = 0;
    seen.watched = NULL;
    pthread_mutex_unlock(&seen.lock);
}

static void expect_seen(int batches, const int64_t *names, int n)
{
    pthread_mutex_lock(&seen.lock);
    ck_assert_int_eq(seen.batches, batches);
    ck_assert_int_eq(seen.n, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(seen.names[i] == names[i],
                      "statement %d: expected %" PRId64 ", ran %" PRId64, i,
                      names[i], seen.names[i]);
    pthread_mutex_unlock(&seen.lock);
}

/* Jobs of up to two statements, each statement named by its parameter. */
typedef struct test_job {
    pgpool_params params[BATCH_JOB_STMTS_MAX];
    batch_stmt stmts[BATCH_JOB_STMTS_MAX];
    PGresult *results[BATCH_JOB_STMTS_MAX];
} test_job;

static void add_stmt(test_job *t, batch_job *bj, int64_t name, int phase,
                     int64_t key, int64_t subkey)
{
    int i = bj->n++;
    memset(&t->params[i], 0, sizeof t->params[i]);
    pgpool_param_int(&t->params[i], name);
    t->stmts[i] = (batch_stmt){"sql", &t->params[i], phase, key, subkey};
    bj->stmts = t->stmts;
    bj->results = t->results;
}

/* Runs jobs[0..k) together (one batch: all are queued before the calling
 * thread leads) and checks every one committed. */
static void run_jobs(batcher *b, batch_job *bjs, int k)
{
    for (int i = 0; i < k; i++)
        bjs[i].b = b;
    batcher_run_all(bjs, k);
    for (int i = 0; i < k; i++)
        ck_assert_int_eq(bjs[i].err, PGPOOL_OK);
}

START_TEST(test_deliveries_delete_in_message_id_order)
{
    /* Three delivers of one sender's messages to one recipient, as
     * mailbox.c queues them: the recipient's copy, then the sender's
     * outbox entry; message ids 30, 10, 20 in arrival order. */
    const int64_t recipient = 7, sender = 5, ids[] = {30, 10, 20};
    seen_reset();
    batcher *b = batcher_new(NULL);
    ck_assert_ptr_nonnull(b);
    test_job t[3];
    batch_job bjs[3] = {0};
    for (int i = 0; i < 3; i++) {
        add_stmt(&t[i], &bjs[i], 100 + ids[i], PHASE_WRITE, recipient, 0);
        add_stmt(&t[i], &bjs[i], ids[i], PHASE_DELETE, sender, ids[i]);
    }
    run_jobs(b, bjs, 3);
    batcher_free(b);
    /* The writes of one mailbox keep their arrival order; the deletes
     * run by message id. */
    const int64_t want[] = {130, 110, 120, 10, 20, 30};
    expect_seen(1, want, 6);
}
END_TEST

START_TEST(test_phase_then_key_then_subkey)
{
    seen_reset();
    batcher *b = batcher_new(NULL);
    ck_assert_ptr_nonnull(b);
    test_job t[4];
    batch_job bjs[4] = {0};
    add_stmt(&t[0], &bjs[0], 1, PHASE_DELETE, 2, 1);    /* (2, 1) */
    add_stmt(&t[1], &bjs[1], 2, PHASE_DELETE, 1, 5);    /* (1, 5) */
    add_stmt(&t[2], &bjs[2], 3, PHASE_DELETE, 1, 2);    /* (1, 2) */
    add_stmt(&t[3], &bjs[3], 4, PHASE_WRITE, 999, 999); /* writes first */
    run_jobs(b, bjs, 4);
    batcher_free(b);
    const int64_t want[] = {4, 3, 2, 1};
    expect_seen(1, want, 4);
}
END_TEST

START_TEST(test_equal_statements_keep_arrival_order)
{
    seen_reset();
    batcher *b = batcher_new(NULL);
    ck_assert_ptr_nonnull(b);
    test_job t[2];
    batch_job bjs[2] = {0};
    add_stmt(&t[0], &bjs[0], 1, PHASE_WRITE, 3, 0);
    add_stmt(&t[0], &bjs[0], 2, PHASE_WRITE, 3, 0);
    add_stmt(&t[1], &bjs[1], 3, PHASE_WRITE, 3, 0);
    run_jobs(b, bjs, 2);
    batcher_free(b);
    const int64_t want[] = {1, 2, 3};
    expect_seen(1, want, 3);
}
END_TEST

START_TEST(test_posted_deletes_run_in_message_id_order)
{
    /* Outbox removals posted after deliveries on another instance
     * (mailbox.c ack_after): batcher_free runs the ones still queued, in
     * one batch. */
    seen_reset();
    batcher *b = batcher_new(NULL);
    ck_assert_ptr_nonnull(b);
    const int64_t sender = 5, ids[] = {30, 10, 20};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(
            batcher_post(b, "sql", PHASE_DELETE, sender, ids[i], &ids[i], 1),
            0);
    batcher_free(b);
    const int64_t want[] = {10, 20, 30};
    expect_seen(1, want, 3);
}
END_TEST

/* Queues a one-statement job named name with its own deadline, as
 * batcher_run_all would with the deadline it computes; w counts it. */
static void queue_job(batcher *b, job *j, test_job *t, waiter *w, int64_t name,
                      int64_t deadline_ms)
{
    memset(&t->params[0], 0, sizeof t->params[0]);
    pgpool_param_int(&t->params[0], name);
    t->stmts[0] = (batch_stmt){"sql", &t->params[0], PHASE_WRITE, name, 0};
    *j = (job){.b = b,
               .stmts = t->stmts,
               .n = 1,
               .results = t->results,
               .w = w,
               .state = QUEUED,
               .deadline_ms = deadline_ms};
    pthread_mutex_lock(&b->lock);
    enqueue_locked(b, j);
    pthread_mutex_unlock(&b->lock);
}

/* A batcher with k jobs queued by hand, all counted by one waiter. */
typedef struct queued {
    batcher *b;
    waiter w;
    test_job t[4];
    job j[4];
    int64_t now;
} queued;

/* Queues jobs named 1..k with deadlines now + after_ms[i]. */
static void queue_jobs(queued *q, const int64_t *after_ms, int k)
{
    seen_reset();
    q->b = batcher_new(NULL);
    ck_assert_ptr_nonnull(q->b);
    ck_assert_int_eq(waiter_init(&q->w, k), 0);
    q->now = clockms_monotonic();
    for (int i = 0; i < k; i++)
        queue_job(q->b, &q->j[i], &q->t[i], &q->w, i + 1, q->now + after_ms[i]);
}

static void queued_free(queued *q)
{
    waiter_destroy(&q->w);
    batcher_free(q->b);
}

/* Leads one batch from the head of b's queue, as a waiting thread does. */
static void lead(batcher *b)
{
    pthread_mutex_lock(&b->lock);
    lead_locked(b);
    pthread_mutex_unlock(&b->lock);
}

START_TEST(test_a_job_without_time_left_is_answered_unsent)
{
    /* The first waited until less than BATCH_SLICE_MIN_MS was left. */
    const int64_t after[] = {BATCH_SLICE_MIN_MS - 200, PGPOOL_CALL_DEADLINE_MS,
                             PGPOOL_CALL_DEADLINE_MS};
    queued q;
    queue_jobs(&q, after, 3);
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    ck_assert_int_eq(q.j[0].state, DONE);
    ck_assert_int_eq(q.j[0].err, PGPOOL_UNAVAILABLE);
    ck_assert_msg(strstr(q.j[0].errbuf, "not sent") != NULL, "%s",
                  q.j[0].errbuf);
    ck_assert_int_eq(q.j[1].err, PGPOOL_OK);
    ck_assert_int_eq(q.j[2].err, PGPOOL_OK);
    const int64_t want[] = {2, 3};
    expect_seen(1, want, 2);
    queued_free(&q);
}
END_TEST

START_TEST(test_only_expired_jobs_run_no_batch)
{
    const int64_t after[] = {-1, 10};
    queued q;
    queue_jobs(&q, after, 2);
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    ck_assert_int_eq(q.j[0].err, PGPOOL_UNAVAILABLE);
    ck_assert_int_eq(q.j[1].err, PGPOOL_UNAVAILABLE);
    ck_assert_int_eq(q.b->lanes_busy, 0);
    ck_assert_ptr_null(q.b->head);
    expect_seen(0, NULL, 0);
    queued_free(&q);
}
END_TEST

START_TEST(test_a_batch_runs_by_its_earliest_deadline)
{
    const int64_t after[] = {3500, 2500, 3900};
    queued q;
    queue_jobs(&q, after, 3);
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    const int64_t want[] = {1, 2, 3};
    expect_seen(1, want, 3);
    ck_assert_int_eq(seen.deadlines[0], q.now + 2500);
    queued_free(&q);
}
END_TEST

START_TEST(test_a_rolled_back_job_runs_alone_only_with_time_left)
{
    /* The batch of two rolls back after 600 ms; by then the second job
     * has less than BATCH_SLICE_MIN_MS left, the first plenty. */
    const int64_t after[] = {PGPOOL_CALL_DEADLINE_MS, BATCH_SLICE_MIN_MS + 300};
    queued q;
    queue_jobs(&q, after, 2);
    seen.roll_backs = 1;
    seen.roll_back_ms = 600;
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    ck_assert_int_eq(q.j[0].err, PGPOOL_OK);
    ck_assert_int_eq(q.j[1].err, PGPOOL_UNAVAILABLE);
    ck_assert_msg(strstr(q.j[1].errbuf, "not stored") != NULL, "%s",
                  q.j[1].errbuf);
    /* The batch, then the first job alone; the second never again. */
    const int64_t want[] = {1, 2, 1};
    expect_seen(2, want, 3);
    ck_assert_int_eq(seen.deadlines[1], q.now + PGPOOL_CALL_DEADLINE_MS);
    queued_free(&q);
}
END_TEST

START_TEST(test_a_batch_takes_no_job_due_much_later)
{
    /* The third was queued well after the first two: it waits for a
     * batch of its own rather than run by their deadline. */
    const int64_t after[] = {1500, 1600, 1500 + BATCH_SPREAD_MS + 100};
    queued q;
    queue_jobs(&q, after, 3);
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 1);
    ck_assert_ptr_eq(q.b->head, &q.j[2]);
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    const int64_t want[] = {1, 2, 3};
    expect_seen(2, want, 3);
    ck_assert_int_eq(seen.deadlines[1], q.now + after[2]);
    queued_free(&q);
}
END_TEST

START_TEST(test_a_rolled_back_job_is_answered_after_its_own_run)
{
    /* After the roll-back each job runs alone; the first is answered
     * before the second's run begins, which may take until its own
     * deadline. */
    const int64_t after[] = {PGPOOL_CALL_DEADLINE_MS, PGPOOL_CALL_DEADLINE_MS};
    queued q;
    queue_jobs(&q, after, 2);
    seen.roll_backs = 1;
    seen.watched = &q.w;
    lead(q.b);
    ck_assert_int_eq(q.w.pending, 0);
    const int64_t want[] = {1, 2, 1, 2};
    expect_seen(3, want, 4);
    ck_assert_int_eq(seen.pending[0], 2);
    ck_assert_int_eq(seen.pending[1], 2);
    ck_assert_int_eq(seen.pending[2], 1);
    queued_free(&q);
}
END_TEST

START_TEST(test_a_waiter_does_not_lead_a_batch_without_its_job)
{
    /* Job 2 was queued well after job 1: a batch from the head would
     * leave it queued while its thread ran job 1's batch. */
    const int64_t after[] = {1500, 1500 + BATCH_SPREAD_MS + 100};
    queued q;
    queue_jobs(&q, after, 2);
    waiter other; /* job 1 is another thread's */
    ck_assert_int_eq(waiter_init(&other, 1), 0);
    pthread_mutex_lock(&q.b->lock);
    q.j[0].w = &other;
    pthread_mutex_unlock(&q.b->lock);
    q.w.pending = 1;
    lead_where_free(&q.j[1], 1);
    expect_seen(0, NULL, 0);
    ck_assert_int_eq(q.j[1].state, QUEUED);
    lead(q.b); /* job 1's own thread */
    ck_assert_int_eq(other.pending, 0);
    lead_where_free(&q.j[1], 1);
    ck_assert_int_eq(q.w.pending, 0);
    const int64_t want[] = {1, 2};
    expect_seen(2, want, 2);
    waiter_destroy(&other);
    queued_free(&q);
}
END_TEST

START_TEST(test_queued_jobs_are_due_within_the_call_deadline)
{
    seen_reset();
    batcher *b = batcher_new(NULL);
    ck_assert_ptr_nonnull(b);
    test_job t[1];
    batch_job bjs[1] = {0};
    add_stmt(&t[0], &bjs[0], 1, PHASE_WRITE, 1, 0);
    int64_t before = clockms_monotonic();
    run_jobs(b, bjs, 1);
    int64_t after = clockms_monotonic();
    batcher_free(b);
    ck_assert_int_ge(seen.deadlines[0], before + PGPOOL_CALL_DEADLINE_MS);
    ck_assert_int_le(seen.deadlines[0], after + PGPOOL_CALL_DEADLINE_MS);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("lock order");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_deliveries_delete_in_message_id_order);
    tcase_add_test(tc, test_phase_then_key_then_subkey);
    tcase_add_test(tc, test_equal_statements_keep_arrival_order);
    tcase_add_test(tc, test_posted_deletes_run_in_message_id_order);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("deadlines");
    tcase_set_timeout(td, 30);
    tcase_add_test(td, test_a_job_without_time_left_is_answered_unsent);
    tcase_add_test(td, test_only_expired_jobs_run_no_batch);
    tcase_add_test(td, test_a_batch_runs_by_its_earliest_deadline);
    tcase_add_test(td, test_a_rolled_back_job_runs_alone_only_with_time_left);
    tcase_add_test(td, test_queued_jobs_are_due_within_the_call_deadline);
    tcase_add_test(td, test_a_batch_takes_no_job_due_much_later);
    tcase_add_test(td, test_a_waiter_does_not_lead_a_batch_without_its_job);
    tcase_add_test(td, test_a_rolled_back_job_is_answered_after_its_own_run);
    suite_add_tcase(s, td);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batch_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
