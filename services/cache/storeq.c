/*
 * storeq.c - the leader/follower queue of a node's writes to storage.
 * See storeq.h.
 *
 * The shape is that of storage's group commit (services/storage/batch.c)
 * one hop earlier: jobs on their callers' stacks in a FIFO under one
 * mutex, each waiting on its own condition variable; a wake-up is aimed
 * at the threads whose jobs finished and, when a lane comes free, at the
 * job at the head of the queue, never at every waiting thread.
 */
#include "storeq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { QUEUED, TAKEN, DONE };

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Most writes one call carries, whatever the caller asks. */
#define STOREQ_BATCH_CAP 64

struct storeq {
    int lanes;
    int batch_max;
    size_t bytes_max;
    int64_t wait_us; /* a queued write gives up after this; 0: never */
    storeq_run_fn run;
    void *ctx;
    pthread_mutex_t lock;
    storeq_job *head, *tail; /* guarded by lock */
    int busy;                /* calls in flight; guarded by lock */
};

storeq *storeq_new(int lanes, int batch_max, size_t bytes_max, int wait_ms,
                   storeq_run_fn run, void *ctx)
{
    if (lanes < 0 || batch_max < 1 || wait_ms < 0 || !run)
        return NULL;
    storeq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    *q = (storeq){.lanes = lanes,
                  .batch_max = batch_max < STOREQ_BATCH_CAP ? batch_max
                                                            : STOREQ_BATCH_CAP,
                  .bytes_max = bytes_max,
                  .wait_us = (int64_t)wait_ms * 1000,
                  .run = run,
                  .ctx = ctx};
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        free(q);
        return NULL;
    }
    return q;
}

void storeq_free(storeq *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->lock);
    free(q);
}

/* Takes writes from the head of the queue (lock held). */
static int take_jobs(storeq *q, storeq_job **taken)
{
    int n = 0;
    size_t bytes = 0;
    while (q->head && n < q->batch_max &&
           (n == 0 || bytes + q->head->len <= q->bytes_max)) {
        storeq_job *j = q->head;
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        j->state = TAKEN;
        bytes += j->len;
        taken[n++] = j;
    }
    return n;
}

/* A lane is free: the head's thread may lead (lock held). */
static void wake_head_locked(storeq *q)
{
    if (q->head && q->busy < q->lanes)
        pthread_cond_signal(&q->head->cv);
}

/* Leads one call: called and returns with the lock held, released while
 * the call runs. */
static void lead_locked(storeq *q)
{
    storeq_job *taken[STOREQ_BATCH_CAP];
    int n = take_jobs(q, taken);
    int64_t now = now_us();
    for (int i = 0; i < n; i++) /* from submit to now: the wait */
        taken[i]->waited_us = now - taken[i]->waited_us;
    q->busy++;
    wake_head_locked(q);
    pthread_mutex_unlock(&q->lock);
    q->run(q->ctx, taken, n);
    pthread_mutex_lock(&q->lock);
    /* A job's thread may return once it is DONE: not touched after. */
    for (int i = 0; i < n; i++) {
        taken[i]->state = DONE;
        pthread_cond_signal(&taken[i]->cv);
    }
    q->busy--;
    wake_head_locked(q);
}

/* Takes job, still queued, out of the queue (lock held). */
static void unlink_locked(storeq *q, storeq_job *job)
{
    storeq_job *prev = NULL;
    for (storeq_job *j = q->head; j && j != job; j = j->next)
        prev = j;
    if (prev)
        prev->next = job->next;
    else
        q->head = job->next;
    if (q->tail == job)
        q->tail = prev;
    /* It may have been the head a free lane was waiting on. */
    wake_head_locked(q);
}

/* A condition variable on the monotonic clock, for timed waits. */
static int cv_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = rc == 0 ? pthread_cond_init(cv, &attr) : rc;
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* Waits on job's condition variable until woken or, while the job is
 * queued and the queue bounds waits, until deadline_us. Returns true
 * when the deadline passed with the job still queued (lock held). */
static bool wait_turn(storeq *q, storeq_job *job, int64_t deadline_us)
{
    if (job->state != QUEUED || q->wait_us == 0) {
        pthread_cond_wait(&job->cv, &q->lock);
        return false;
    }
    struct timespec ts = {.tv_sec = deadline_us / 1000000,
                          .tv_nsec = (long)(deadline_us % 1000000) * 1000};
    int rc = pthread_cond_timedwait(&job->cv, &q->lock, &ts);
    return rc == ETIMEDOUT && job->state == QUEUED;
}

void storeq_submit(storeq *q, storeq_job *job)
{
    job->err = STORE_DOWN;
    job->status = 0;
    job->body = NULL;
    job->next = NULL;
    job->waited_us = 0;
    if (q->lanes == 0 || cv_init(&job->cv) != 0) {
        q->run(q->ctx, &job, 1);
        return;
    }
    job->state = QUEUED;
    int64_t submitted = now_us();
    job->waited_us = submitted; /* the submit time until taken */
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    while (job->state != DONE) {
        if (job->state == QUEUED && q->busy < q->lanes) {
            lead_locked(q);
        } else if (wait_turn(q, job, submitted + q->wait_us)) {
            unlink_locked(q, job); /* never sent: err stays STORE_DOWN */
            job->waited_us = now_us() - submitted;
            break;
        }
    }
    pthread_mutex_unlock(&q->lock);
    pthread_cond_destroy(&job->cv);
}
