/*
 * lg_hist.h - latency histogram of the load generator.
 *
 * Log-linear buckets over microseconds: exact below 64 us, then 32
 * buckets per power of two (about 3% wide), up to 2^40 us. Recording is
 * an index computation and an increment, cheap enough for every request;
 * each load thread owns one histogram and they are merged at the end.
 * Not thread safe: one writer per histogram.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

/* Values below this are their own bucket. */
#define LG_HIST_LINEAR 64
/* Sub-buckets per power of two above LG_HIST_LINEAR (2^5). */
#define LG_HIST_SUB_BITS 5
/* Powers of two covered above the linear part: 2^6 .. 2^40 us. */
#define LG_HIST_OCTAVES 35
#define LG_HIST_BUCKETS                                                        \
    (LG_HIST_LINEAR + LG_HIST_OCTAVES * (1 << LG_HIST_SUB_BITS))

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
} lg_hist;

void lg_hist_record(lg_hist *h, uint64_t us);
/* Adds every count of from into into. */
void lg_hist_merge(lg_hist *into, const lg_hist *from);
/* The value (us) under which a fraction q (0..1) of the samples lie: the
 * upper edge of the bucket holding that rank. 0 when empty. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);

#endif
