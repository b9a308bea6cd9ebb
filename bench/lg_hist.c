/*
 * lg_hist.c - log-linear latency histogram. See lg_hist.h.
 */
#include "lg_hist.h"

static int bucket_of(uint64_t us)
{
    if (us < LG_HIST_LINEAR)
        return (int)us;
    int msb = 63 - __builtin_clzll(us); /* >= 6 */
    int octave = msb - 6;
    if (octave >= LG_HIST_OCTAVES)
        return LG_HIST_BUCKETS - 1;
    int sub =
        (int)(us >> (msb - LG_HIST_SUB_BITS)) & ((1 << LG_HIST_SUB_BITS) - 1);
    return LG_HIST_LINEAR + octave * (1 << LG_HIST_SUB_BITS) + sub;
}

/* The largest value that falls in bucket b. */
static uint64_t upper_edge(int b)
{
    if (b < LG_HIST_LINEAR)
        return (uint64_t)b;
    int octave = (b - LG_HIST_LINEAR) >> LG_HIST_SUB_BITS;
    int sub = (b - LG_HIST_LINEAR) & ((1 << LG_HIST_SUB_BITS) - 1);
    int shift = octave + 6 - LG_HIST_SUB_BITS;
    uint64_t low = ((uint64_t)((1 << LG_HIST_SUB_BITS) + sub)) << shift;
    return low + ((uint64_t)1 << shift) - 1;
}

void lg_hist_record(lg_hist *h, uint64_t us)
{
    h->counts[bucket_of(us)]++;
    h->total++;
    if (us > h->max_us)
        h->max_us = us;
}

void lg_hist_merge(lg_hist *into, const lg_hist *from)
{
    for (int i = 0; i < LG_HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    uint64_t seen = 0;
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            uint64_t edge = upper_edge(i);
            return edge < h->max_us ? edge : h->max_us;
        }
    }
    return h->max_us;
}
