/*
 * batch.h - group commit: concurrent writes of one PostgreSQL instance
 * share one transaction.
 *
 * Every write request of the storage service is a job of one or two
 * statements that must commit together. A job is queued on its
 * instance's batcher and its thread waits. When a lane is free, the first
 * waiting thread becomes the leader: it takes every queued job (up to
 * BATCH_JOBS_MAX), runs them as one pipelined transaction
 * (pgpool_exec_batch: one round trip, one commit, one WAL flush), hands
 * each job its results and wakes the others. While a batch runs, new jobs
 * queue behind it, so the batches grow with the load and a lone request
 * is not delayed: there is no timer.
 *
 * Guarantees: a job's results are handed out only after its batch
 * committed; when the batch fails, no job of it is acknowledged. If the
 * server reported a failed statement (the transaction certainly rolled
 * back), the jobs are run again one transaction each, so one bad job
 * cannot fail its neighbours; when the outcome is unknown (connection
 * lost during COMMIT) every job gets PGPOOL_UNAVAILABLE and nothing is
 * retried, since the writes may have committed (callers retry
 * idempotently). A job is answered within PGPOOL_CALL_DEADLINE_MS of
 * being queued, its wait for a lane included (BATCH_SLICE_MIN_MS).
 *
 * Lock order: within a batch the statements run sorted by (phase, key,
 * subkey): mailbox writes by the mailbox owner's id first, then outbox
 * deletes by (sender, message id). Every batch takes its row locks in
 * that one order, so two batches running on two lanes of an instance
 * cannot deadlock each other. The order must be total over the rows a
 * phase locks: a mailbox write's first lock is its owner's mailbox row,
 * which covers the owner's other rows, so the owner is enough there;
 * each outbox delete locks its own row, hence the message id. (The
 * array delete of an outbox ack, outside batches, locks in the same
 * order: mailbox.c.)
 */
#ifndef STORAGE_BATCH_H
#define STORAGE_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "pgpool.h"

/* Most jobs one transaction takes: enough to amortise the commit, small
 * enough that one batch's row locks are held briefly. */
#define BATCH_JOBS_MAX 64
/* Most parameter bytes one batch carries (a job over it runs alone). */
#define BATCH_BYTES_MAX (256 * 1024)
/* Batches in flight per instance: two, so that one executes while the
 * other waits for its WAL flush, without more backends than cores. */
#define BATCH_LANES 2
/* How long a posted job waits for a batch to ride in before the poster
 * thread runs it alone: under load it goes with the next batch and costs
 * no transaction of its own; when idle it is late by this much. */
#define BATCH_POST_DELAY_MS 20
/* Least time before its deadline a queued job must have left to be
 * taken into a batch, ms. A job's deadline is PGPOOL_CALL_DEADLINE_MS
 * after it was queued, and its batch gives up on PostgreSQL by the
 * earliest deadline among its jobs; a job that waited for a lane until
 * less than this was left is answered unsent (PGPOOL_UNAVAILABLE)
 * rather than sent in a batch with no time to run. A healthy instance
 * takes a job within milliseconds; only a stalled one, whose batches each
 * use up their deadline, keeps jobs queued this long. */
#define BATCH_SLICE_MIN_MS 1000
/* Most time between the deadlines of the first and the last job of a
 * batch, ms. A batch runs by its earliest deadline; a job queued much
 * later (fresh, behind writes that waited seconds for a stalled
 * instance) waits for a batch of its own instead of running with their
 * short remainder. Under a healthy load every queued job is within
 * milliseconds of the others. */
#define BATCH_SPREAD_MS 500
/* Statements of one job. */
#define BATCH_JOB_STMTS_MAX 2

typedef struct batcher batcher;

/* A batcher of pool (borrowed for its life), with its poster thread.
 * NULL on failure. */
batcher *batcher_new(pgpool *pool);
/* Stops the poster thread once it ran the posted jobs still queued (a
 * job whose batch fails is dropped, logged). The caller guarantees no thread
 * waits in batcher_run. NULL is a no-op. */
void batcher_free(batcher *b);

/* One statement of a job. phase, key and subkey order the statements of
 * a batch (see the lock order above); statements equal in all three keep
 * the order they were queued in. */
typedef struct batch_stmt {
    const char *sql;
    const pgpool_params *params; /* borrowed until batcher_run returns */
    int phase;
    int64_t key;
    int64_t subkey;
} batch_stmt;

/* Runs the n statements of a job in a transaction shared with whatever
 * other jobs are waiting. On PGPOOL_OK results[i] is statement i's result
 * (caller PQclears each); on error the results are NULL and errbuf says
 * why. Blocks until the job's transaction ended. Thread safe. */
pgpool_err batcher_run(batcher *b, const batch_stmt *stmts, int n,
                       PGresult **results, char *errbuf, size_t errcap);

/* One job of batcher_run_all: its statements on the batcher of its
 * instance, and its outcome. */
typedef struct batch_job {
    batcher *b;
    const batch_stmt *stmts; /* borrowed until batcher_run_all returns */
    int n;
    PGresult **results; /* n slots; on PGPOOL_OK the caller PQclears each */
    pgpool_err err;     /* set by batcher_run_all */
    char errbuf[256];   /* why, when err */
} batch_job;

/* Runs k jobs, each as batcher_run would, and returns when all of them
 * ended: the jobs are queued at once (on the same or different
 * batchers), so they share transactions with each other and with
 * whatever else waits, and the calling thread leads a batch wherever a
 * lane comes free for one of them. Each job commits or fails on its own;
 * jobs on one batcher may share a transaction but never depend on each
 * other. Thread safe. */
void batcher_run_all(batch_job *jobs, int k);

/* Queues a one-statement job whose outcome nobody waits for: sql with
 * the integer parameters ints[0..nints) (copied), and returns at once.
 * It rides in the next batch of the instance; when no thread leads one
 * within BATCH_POST_DELAY_MS, the batcher's poster thread does. A batch of
 * posted jobs only commits without waiting for its WAL flush
 * (synchronous_commit off). A failure, or a crash that loses the commit, is
 * logged or silent, so it suits writes whose loss is harmless (removing an
 * outbox entry: the worker would deliver again, a duplicate that is ignored).
 * Returns 0, or -1 on allocation failure. */
int batcher_post(batcher *b, const char *sql, int phase, int64_t key,
                 int64_t subkey, const int64_t *ints, int nints);

#endif
