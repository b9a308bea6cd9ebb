/*
 * lg_engine.h - the load engine: keep-alive connections driven by epoll.
 *
 * Each thread owns an epoll instance and its share of the connections
 * (non-blocking sockets, edge-triggered). A connection carries one
 * request at a time (HTTP/1.1 keep-alive, no pipelining) and starts the
 * next as soon as the answer is in, so the load is closed-loop; with a
 * rate, requests start on a fixed schedule and latency counts from the
 * scheduled start, so a stall is not hidden (coordinated omission).
 *
 * A run is bounded by a count of requests (when non-zero) and always by
 * time. Counters are atomics that the caller may read for a progress
 * line while the run goes on.
 */
#ifndef LG_ENGINE_H
#define LG_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "lg_hist.h"
#include "lg_work.h"

/* Status codes counted one by one; others fall in the last slot. */
#define LG_STATUS_MAX 600

typedef struct lg_run {
    /* set by the caller */
    lg_work *work;
    int threads;
    int connections; /* in all, spread over the threads */
    double seconds;  /* time bound */
    uint64_t count;  /* request bound, 0 for none */
    double rate;     /* requests per second in all, 0 for as fast as possible */
    bool keep_bodies; /* hand every body to lg_work_answer */

    /* results, valid after lg_run_go */
    uint64_t issued;  /* atomic: requests started */
    uint64_t done;    /* atomic: responses received */
    uint64_t non_2xx; /* atomic */
    uint64_t errors;  /* atomic: connection failures, bad responses */
    uint64_t status[LG_STATUS_MAX + 1];
    lg_hist hist;     /* latency of every response */
    double elapsed_s; /* wall time of the measured run */
    int running;      /* atomic: worker threads still running */
} lg_run;

/* Runs to its bounds; calls progress(arg) about once a second from the
 * calling thread while it runs (progress may be NULL). Returns 0, or -1
 * when the threads could not start. */
int lg_run_go(lg_run *r, void (*progress)(const lg_run *, double, void *),
              void *arg);

#endif
