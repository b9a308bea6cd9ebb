/*
 * metrics.h - Prometheus counters, gauges and latency histograms.
 *
 * Every service has one metrics_t, created in main. The HTTP server
 * records each request by route name and status; services add their own
 * series (cache hits, ring epoch, outbox depth). metrics_render writes
 * the Prometheus text exposition format. Thread safe (one mutex; the
 * work under it is a few additions).
 */
#ifndef MSG_METRICS_H
#define MSG_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics_t;

metrics_t *metrics_new(const char *service);
void metrics_free(metrics_t *m);

/* One HTTP request served: route name, status, seconds it took. */
void metrics_observe_request(metrics_t *m, const char *route, int status,
                             double seconds);
/* A named counter (created on first use), e.g. "cache_hits_total". */
void metrics_count(metrics_t *m, const char *name, const char *help,
                   uint64_t delta);
/* A named counter of seconds, e.g. "..._wait_seconds_total"; a negative
 * amount is dropped. */
void metrics_count_seconds(metrics_t *m, const char *name, const char *help,
                           double seconds);
/* A named gauge set to value, e.g. "ring_epoch". */
void metrics_gauge(metrics_t *m, const char *name, const char *help,
                   double value);
/* Adds delta (may be negative) to a named gauge, created at 0 on first
 * use: for levels several owners move, such as the connections of pools
 * in use (+1 on borrow, -1 on return; every pool adds its size to a
 * second gauge once). */
void metrics_gauge_add(metrics_t *m, const char *name, const char *help,
                       double delta);
/* A dependency call's latency: dep "storage", "redis", "postgres". */
void metrics_observe_dependency(metrics_t *m, const char *dep, double seconds);

/* Returns a new string in Prometheus text format (caller frees), or
 * NULL. */
char *metrics_render(metrics_t *m);

#endif
