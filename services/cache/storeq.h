/*
 * storeq.h - the cache node's queue of writes to storage: many writes,
 * few calls.
 *
 * Every send and deliver of a node is a write to storage. Under load many
 * of them wait on storage at once, and each used to pay a whole HTTP
 * exchange of its own (libcurl, the kernel, a storage thread woken per
 * request). Here a write joins a queue; while fewer than `lanes` calls
 * are in flight, the first waiting thread leads: it takes every queued
 * write (up to batch_max, and bytes_max of message text unless it is the
 * first), runs them as one call and hands each write its own answer. New
 * writes queue behind the calls in flight, so calls carry more writes as
 * the load grows, and a lone write goes at once: there is no timer.
 *
 * Each write keeps its own outcome (storage answers every write of a
 * batch separately, POST /internal/batch), so batching changes no
 * guarantee: a write is answered only after its own transaction
 * committed, and a call that fails fails only the writes it carried.
 */
#ifndef CACHE_STOREQ_H
#define CACHE_STOREQ_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store_parse.h" /* store_err */

/* One write. The caller fills the inputs, storeq_submit sets the
 * outcome; it lives on the caller's stack while it waits. */
typedef struct storeq_job {
    const char *op;      /* "send" or "deliver" */
    const char *message; /* the message's JSON text, borrowed */
    size_t len;
    const char *rid; /* request id for the logs; may be NULL */
    /* Outcome, set by the runner: on STORE_OK, status and body (a new
     * reference the caller decrefs) are storage's answer to this write. */
    store_err err;
    long status;
    json_t *body;
    /* Set by storeq_submit: how long the write waited for a lane before
     * its call started (0 when a lane was free), or before it gave up. */
    int64_t waited_us;
    /* Private to storeq.c. */
    int state;
    pthread_cond_t cv;
    struct storeq_job *next;
} storeq_job;

/* Runs n >= 1 writes as one call and sets each one's outcome. */
typedef void (*storeq_run_fn)(void *ctx, storeq_job **jobs, int n);

typedef struct storeq storeq;

/* A queue whose calls run through run(ctx, ...), at most lanes at once,
 * each carrying at most batch_max writes and, beyond its first write,
 * bytes_max bytes of message text. A write still queued (no call has
 * taken it) wait_ms after it was submitted gives up with STORE_DOWN and
 * is never sent: its storage instance is stalled, and a caller is better
 * off with a retryable answer than a thread held indefinitely (0: no
 * bound). lanes 0: no queue, every write is a call of its own at once.
 * NULL on failure. */
storeq *storeq_new(int lanes, int batch_max, size_t bytes_max, int wait_ms,
                   storeq_run_fn run, void *ctx);
/* The caller guarantees no thread is in storeq_submit. NULL is a no-op. */
void storeq_free(storeq *q);

/* Runs job (inputs set) and returns once its outcome is set. Thread
 * safe. */
void storeq_submit(storeq *q, storeq_job *job);

#endif
