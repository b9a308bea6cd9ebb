/*
 * batch.c - group commit of the storage service's writes. See batch.h.
 *
 * The queue is a FIFO of jobs guarded by the batcher's mutex; each job
 * lives on its caller's stack and is linked in while it waits. A job is
 * QUEUED, then TAKEN by a leader, then DONE with its outcome set; its
 * thread sleeps on the job's own condition variable until DONE, or until
 * it may lead (its job is still queued and a lane is free). Each wake-up
 * is aimed: a leader signals the jobs it finished and, when a lane comes
 * free, the job at the head of the queue, never every waiting thread (a
 * broadcast woke them all on each batch, most only to sleep again).
 *
 * A posted job (batcher_post) lives on the heap and is freed by the
 * leader that runs it, or by batcher_free if it never ran. The poster
 * thread leads posted jobs that no waiting thread takes along, so the
 * request that posted one answers without waiting for its transaction.
 */
#include "batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "log.h"

enum { QUEUED, TAKEN, DONE };

/* The thread waiting for one or more jobs (batcher_run_all): the leaders
 * count its jobs down as they finish and poke it when a lane came free
 * for one of them. Lock order: a batcher's lock, then a waiter's. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int pending; /* its jobs not DONE yet; guarded by lock */
    bool poked;  /* a lane came free for a queued job; guarded by lock */
} waiter;

typedef struct job {
    batcher *b;
    const batch_stmt *stmts;
    int n;
    size_t bytes; /* parameter bytes, for BATCH_BYTES_MAX */
    PGresult **results;
    bool is_detached; /* batcher_post: nobody waits, the leader frees it */
    int64_t due_ms;   /* detached: when the poster leads it alone */
    /* clockms_monotonic time by which its answer is due: its batch gives
     * up on PostgreSQL then, and it is never taken with less than
     * BATCH_SLICE_MIN_MS left. */
    int64_t deadline_ms;
    waiter *w;      /* its waiting thread's; NULL when detached */
    int state;      /* guarded by the batcher's lock */
    pgpool_err err; /* valid once DONE */
    char errbuf[256];
    struct job *next;
} job;

struct batcher {
    pgpool *pool;
    pthread_mutex_t lock;
    job *head, *tail; /* queued jobs; guarded by lock */
    int lanes_busy;   /* guarded by lock */
    int waiters;      /* queued jobs with a thread waiting; guarded by lock */
    /* The poster thread: waits on poster_cv for a posted job at the head
     * of the queue and a free lane. */
    pthread_t poster;
    bool has_poster;
    bool stopping; /* guarded by lock */
    pthread_cond_t poster_cv;
};

static void *poster_main(void *arg);

batcher *batcher_new(pgpool *pool)
{
    batcher *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->pool = pool;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc == 0) {
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        rc = pthread_cond_init(&b->poster_cv, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return NULL;
    }
    if (pthread_create(&b->poster, NULL, poster_main, b) != 0) {
        batcher_free(b);
        return NULL;
    }
    b->has_poster = true;
    return b;
}

void batcher_free(batcher *b)
{
    if (!b)
        return;
    if (b->has_poster) {
        pthread_mutex_lock(&b->lock);
        b->stopping = true;
        pthread_cond_signal(&b->poster_cv);
        pthread_mutex_unlock(&b->lock);
        pthread_join(b->poster, NULL);
    }
    /* Only posted jobs can still be queued: nobody waits at shutdown. */
    while (b->head) {
        job *j = b->head;
        b->head = j->next;
        if (j->is_detached)
            free(j);
    }
    pthread_cond_destroy(&b->poster_cv);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static size_t job_bytes(const batch_stmt *stmts, int n)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        const pgpool_params *ps = stmts[i].params;
        for (int k = 0; ps && k < ps->n; k++)
            bytes += ps->values[k] ? (ps->lengths[k] ? (size_t)ps->lengths[k]
                                                     : strlen(ps->values[k]))
                                   : 0;
    }
    return bytes;
}

/* A statement of the batch: which job and which of its statements. */
typedef struct slot {
    job *owner;
    int index;
    int phase;
    int64_t key;
    int64_t subkey;
    int arrival; /* keeps a job's own statements in their order */
} slot;

/* The lock order of batch.h. */
static int compare_slots(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    if (x->phase != y->phase)
        return x->phase < y->phase ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->subkey != y->subkey)
        return x->subkey < y->subkey ? -1 : 1;
    return x->arrival - y->arrival;
}

/* A transaction of posted jobs only commits without waiting for its WAL
 * flush: nobody waits for its outcome, and if a crash loses it, the
 * outbox entries it removed are still there for the outbox worker, which
 * delivers again (a duplicate the recipient's copy ignores). */
static const char SQL_ASYNC_COMMIT[] = "SET LOCAL synchronous_commit TO off";

/* Runs jobs[0..n) as one transaction, by the earliest of their deadlines
 * (none is taken with less than BATCH_SLICE_MIN_MS left, nor due more
 * than BATCH_SPREAD_MS after the first), and sets each job's outcome.
 * Returns true when the transaction certainly rolled back after a failed
 * statement (the jobs may run again). */
static bool run_batch(batcher *b, job **jobs, int n)
{
    slot slots[BATCH_JOBS_MAX * BATCH_JOB_STMTS_MAX];
    /* One more: SQL_ASYNC_COMMIT first. */
    pgpool_stmt stmts[BATCH_JOBS_MAX * BATCH_JOB_STMTS_MAX + 1];
    PGresult *results[BATCH_JOBS_MAX * BATCH_JOB_STMTS_MAX + 1];
    int total = 0;
    bool all_posted = true;
    int64_t deadline_ms = jobs[0]->deadline_ms;
    for (int i = 0; i < n; i++) {
        all_posted = all_posted && jobs[i]->is_detached;
        if (jobs[i]->deadline_ms < deadline_ms)
            deadline_ms = jobs[i]->deadline_ms;
        for (int k = 0; k < jobs[i]->n; k++) {
            const batch_stmt *s = &jobs[i]->stmts[k];
            slots[total] =
                (slot){jobs[i], k, s->phase, s->key, s->subkey, total};
            total++;
        }
    }
    /* Only the first total slots are sorted, all written above. */
    /* cppcheck-suppress uninitvar */
    qsort(slots, (size_t)total, sizeof *slots, compare_slots);
    int first = all_posted ? 1 : 0;
    if (all_posted)
        stmts[0] = (pgpool_stmt){SQL_ASYNC_COMMIT, NULL};
    for (int i = 0; i < total; i++) {
        const batch_stmt *s = &slots[i].owner->stmts[slots[i].index];
        stmts[first + i] = (pgpool_stmt){s->sql, s->params};
    }
    char errbuf[256];
    bool is_rolled_back;
    pgpool_err err =
        pgpool_exec_batch(b->pool, stmts, first + total, deadline_ms, results,
                          &is_rolled_back, errbuf, sizeof errbuf);
    if (all_posted)
        PQclear(results[0]);
    for (int i = 0; i < total; i++)
        slots[i].owner->results[slots[i].index] = results[first + i];
    for (int i = 0; i < n; i++) {
        jobs[i]->err = err;
        if (err)
            snprintf(jobs[i]->errbuf, sizeof jobs[i]->errbuf, "%s", errbuf);
    }
    return err && is_rolled_back;
}

/* A job of batcher_post with everything it points to. */
typedef struct detached_job {
    job j;
    batch_stmt stmt;
    pgpool_params params;
    PGresult *result;
} detached_job;

static void finish_detached(job *j)
{
    detached_job *d = (detached_job *)j;
    if (j->err)
        log_msg("warn", "storage: queued write failed: %s", j->errbuf);
    PQclear(d->result);
    free(d);
}

/* A lane is free: the job at the head of the queue may lead. Its thread
 * is woken, or the poster thread for a posted job. Called with the lock
 * held. */
static void wake_head_locked(batcher *b)
{
    if (!b->head || b->lanes_busy >= BATCH_LANES)
        return;
    if (b->head->is_detached) {
        pthread_cond_signal(&b->poster_cv);
        return;
    }
    waiter *w = b->head->w;
    pthread_mutex_lock(&w->lock);
    w->poked = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
}

/* Marks a waited job DONE and counts it off its waiter, which may return
 * (and end the job's life) as soon as the waiter's lock is released.
 * Called with the batcher's lock held. */
static void finish_waited_locked(job *j)
{
    waiter *w = j->w;
    j->state = DONE;
    pthread_mutex_lock(&w->lock);
    w->pending--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
}

/* Answers j unsent: it waited for a lane until less than
 * BATCH_SLICE_MIN_MS was left before its deadline, so its caller gets a
 * retryable error now rather than an answer after it gave up (a cache
 * node stops waiting for storage after HOP_TIMEOUT_MS). Only a stalled
 * instance, whose batches each take their whole deadline, keeps jobs
 * queued that long. Called with the lock held, j just off the queue. */
static void expire_locked(job *j)
{
    j->err = PGPOOL_UNAVAILABLE;
    snprintf(j->errbuf, sizeof j->errbuf,
             "waited for a free lane until too close to its deadline; "
             "not sent");
    if (j->is_detached)
        finish_detached(j);
    else
        finish_waited_locked(j);
}

/* Takes jobs from the head of the queue into taken[] (the caller holds
 * the lock): at most BATCH_JOBS_MAX, and no more than BATCH_BYTES_MAX of
 * parameters unless it is the first job, and none due more than
 * BATCH_SPREAD_MS after the first (the batch runs by the first's
 * deadline). A job with less than BATCH_SLICE_MIN_MS left before its
 * deadline at now_ms is answered unsent instead (expire_locked). Returns
 * how many were taken: 0 when every job it met expired. */
static int take_jobs(batcher *b, job **taken, int64_t now_ms)
{
    int n = 0;
    size_t bytes = 0;
    while (b->head && n < BATCH_JOBS_MAX &&
           (n == 0 || (bytes + b->head->bytes <= BATCH_BYTES_MAX &&
                       b->head->deadline_ms - taken[0]->deadline_ms <=
                           BATCH_SPREAD_MS))) {
        job *j = b->head;
        b->head = j->next;
        if (!b->head)
            b->tail = NULL;
        if (!j->is_detached)
            b->waiters--;
        if (j->deadline_ms - now_ms < BATCH_SLICE_MIN_MS) {
            expire_locked(j);
            continue;
        }
        j->state = TAKEN;
        bytes += j->bytes;
        taken[n++] = j;
    }
    return n;
}

/* After its batch rolled back, runs j again in a transaction of its own,
 * unless too little is left before its deadline: then it fails unsent
 * and retryable (its batch rolled back, so nothing of it is stored). */
static void run_again_alone(batcher *b, job *j)
{
    if (j->deadline_ms - clockms_monotonic() >= BATCH_SLICE_MIN_MS) {
        run_batch(b, &j, 1);
        return;
    }
    j->err = PGPOOL_UNAVAILABLE;
    snprintf(j->errbuf, sizeof j->errbuf,
             "its batch rolled back too close to its deadline to run it "
             "alone; not stored");
}

/* Leads one batch: takes the head of the queue, runs it (once more one
 * job per transaction if a batch of several rolled back), publishes the
 * outcomes. Called and returns with the lock held; releases it while the
 * batch runs. */
static void lead_locked(batcher *b)
{
    job *taken[BATCH_JOBS_MAX];
    int n = take_jobs(b, taken, clockms_monotonic());
    if (n == 0)
        return;
    b->lanes_busy++;
    /* What is left may start on the other lane at once. */
    wake_head_locked(b);
    pthread_mutex_unlock(&b->lock);
    bool rerun = run_batch(b, taken, n) && n > 1;
    /* A waiter may return as soon as its job is DONE, and a detached job
     * is freed here: neither is touched afterwards. After a roll-back
     * each job is answered as soon as its own run ends, not after the
     * others' (each may take until its own deadline). */
    int waited = 0;
    for (int i = 0; i < n; i++) {
        if (rerun)
            run_again_alone(b, taken[i]);
        if (taken[i]->is_detached) {
            finish_detached(taken[i]);
        } else if (rerun) {
            pthread_mutex_lock(&b->lock);
            finish_waited_locked(taken[i]);
            pthread_mutex_unlock(&b->lock);
        } else {
            taken[waited++] = taken[i];
        }
    }
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < waited; i++)
        finish_waited_locked(taken[i]);
    b->lanes_busy--;
    wake_head_locked(b);
}

static void enqueue_locked(batcher *b, job *j)
{
    if (!j->is_detached)
        b->waiters++;
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
}

static int waiter_init(waiter *w, int pending)
{
    *w = (waiter){.pending = pending};
    if (pthread_mutex_init(&w->lock, NULL) != 0)
        return -1;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        return -1;
    }
    return 0;
}

static void waiter_destroy(waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->lock);
}

/* Leads a batch on the batcher of every job of ours that is still queued
 * while a lane of it is free. */
static void lead_where_free(job *jobs, int k)
{
    for (int i = 0; i < k; i++) {
        batcher *b = jobs[i].b;
        pthread_mutex_lock(&b->lock);
        /* Only a batch that takes our job along: one of older jobs
         * alone (BATCH_SPREAD_MS) is their own waiters' to lead, and
         * leading it would leave ours queued while we are busy. */
        if (jobs[i].state == QUEUED && b->lanes_busy < BATCH_LANES &&
            jobs[i].deadline_ms - b->head->deadline_ms <= BATCH_SPREAD_MS)
            lead_locked(b);
        pthread_mutex_unlock(&b->lock);
    }
}

/* Waits until the k jobs are DONE, leading batches whenever a lane comes
 * free for one of them. */
static void wait_jobs(waiter *w, job *jobs, int k)
{
    for (;;) {
        lead_where_free(jobs, k);
        pthread_mutex_lock(&w->lock);
        while (w->pending > 0 && !w->poked)
            pthread_cond_wait(&w->cv, &w->lock);
        bool is_done = w->pending == 0;
        w->poked = false;
        pthread_mutex_unlock(&w->lock);
        if (is_done)
            return;
    }
}

/* Jobs of one call that live on the caller's stack; more are allocated. */
#define RUN_LOCAL_JOBS 4

/* Whether every job fits a batch's statement arrays (run_batch). */
static bool jobs_fit(const batch_job *bjs, int k)
{
    for (int i = 0; i < k; i++)
        if (bjs[i].n < 1 || bjs[i].n > BATCH_JOB_STMTS_MAX)
            return false;
    return true;
}

void batcher_run_all(batch_job *bjs, int k)
{
    bool fit = jobs_fit(bjs, k);
    job local[RUN_LOCAL_JOBS];
    job *jobs =
        !fit || k <= RUN_LOCAL_JOBS ? local : calloc((size_t)k, sizeof *jobs);
    waiter w;
    if (!fit || !jobs || waiter_init(&w, k) != 0) {
        for (int i = 0; i < k; i++) {
            bjs[i].err = fit ? PGPOOL_UNAVAILABLE : PGPOOL_FAILED;
            snprintf(bjs[i].errbuf, sizeof bjs[i].errbuf, "%s",
                     fit ? "cannot wait for a batch"
                         : "a job of more statements than a batch holds");
        }
        if (jobs != local)
            free(jobs);
        return;
    }
    int64_t deadline_ms = clockms_monotonic() + PGPOOL_CALL_DEADLINE_MS;
    for (int i = 0; i < k; i++) {
        memset(bjs[i].results, 0, (size_t)bjs[i].n * sizeof *bjs[i].results);
        jobs[i] = (job){.b = bjs[i].b,
                        .deadline_ms = deadline_ms,
                        .stmts = bjs[i].stmts,
                        .n = bjs[i].n,
                        .bytes = job_bytes(bjs[i].stmts, bjs[i].n),
                        .results = bjs[i].results,
                        .w = &w,
                        .state = QUEUED};
        pthread_mutex_lock(&jobs[i].b->lock);
        enqueue_locked(jobs[i].b, &jobs[i]);
        pthread_mutex_unlock(&jobs[i].b->lock);
    }
    wait_jobs(&w, jobs, k);
    waiter_destroy(&w);
    for (int i = 0; i < k; i++) {
        bjs[i].err = jobs[i].err;
        if (jobs[i].err)
            snprintf(bjs[i].errbuf, sizeof bjs[i].errbuf, "%s", jobs[i].errbuf);
    }
    if (jobs != local)
        free(jobs);
}

pgpool_err batcher_run(batcher *b, const batch_stmt *stmts, int n,
                       PGresult **results, char *errbuf, size_t errcap)
{
    batch_job bj = {.b = b, .stmts = stmts, .n = n, .results = results};
    batcher_run_all(&bj, 1);
    if (bj.err)
        snprintf(errbuf, errcap, "%s", bj.errbuf);
    return bj.err;
}

int batcher_post(batcher *b, const char *sql, int phase, int64_t key,
                 int64_t subkey, const int64_t *ints, int nints)
{
    detached_job *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    for (int i = 0; i < nints; i++)
        pgpool_param_int(&d->params, ints[i]);
    d->stmt = (batch_stmt){sql, &d->params, phase, key, subkey};
    d->j = (job){.stmts = &d->stmt,
                 .n = 1,
                 .bytes = job_bytes(&d->stmt, 1),
                 .results = &d->result,
                 .is_detached = true,
                 .due_ms = clockms_monotonic() + BATCH_POST_DELAY_MS,
                 .state = QUEUED};
    d->j.deadline_ms = d->j.due_ms + PGPOOL_CALL_DEADLINE_MS;
    pthread_mutex_lock(&b->lock);
    enqueue_locked(b, &d->j);
    pthread_cond_signal(&b->poster_cv);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

/* Whether the poster should lead the posted job at the head now: a lane
 * is free and the job waited its BATCH_POST_DELAY_MS for company, or a
 * waiting job is queued behind it (woken for it, the poster takes both),
 * or the batcher stops. Otherwise *wait_ms is how long to wait (-1: until
 * signalled). */
static bool poster_may_lead(const batcher *b, int64_t *wait_ms)
{
    *wait_ms = -1;
    if (!b->head || !b->head->is_detached || b->lanes_busy >= BATCH_LANES)
        return false;
    int64_t left = b->head->due_ms - clockms_monotonic();
    if (left <= 0 || b->waiters > 0 || b->stopping)
        return true;
    *wait_ms = left;
    return false;
}

static void wait_ms_locked(batcher *b, int64_t ms)
{
    if (ms < 0) {
        pthread_cond_wait(&b->poster_cv, &b->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&b->poster_cv, &b->lock, &ts);
}

/* Leads the posted jobs that no waiting thread took along; at stop, the
 * ones still queued run first, so a clean stop leaves no outbox entry
 * for the worker. */
static void *poster_main(void *arg)
{
    batcher *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        int64_t wait_ms;
        if (poster_may_lead(b, &wait_ms))
            lead_locked(b);
        else if (b->stopping && (!b->head || b->lanes_busy == 0))
            break;
        else
            wait_ms_locked(b, b->stopping ? 10 : wait_ms);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}
