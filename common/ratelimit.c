/*
 * ratelimit.c - token buckets in a fixed, set-associative table. See
 * ratelimit.h.
 *
 * Tokens are counted in thousandths (milli-tokens) so refilling is exact
 * integer arithmetic: a rate of R tokens per second is R milli-tokens per
 * millisecond. A key hashes to one set of RL_WAYS slots; the set is
 * searched under its stripe's mutex, which is held only for that search
 * and a few additions, never across I/O.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>

#include "constants.h"

#define MILLI 1000

typedef struct rl_slot {
    uint64_t key;
    int64_t tokens;  /* milli-tokens, 0..full */
    int64_t last_ms; /* when the bucket was last refilled: its age */
    bool used;
} rl_slot;

struct rl_limiter {
    int64_t rate; /* tokens per second = milli-tokens per millisecond */
    int64_t full; /* burst, in milli-tokens */
    size_t set_mask;
    rl_slot *slots; /* (set_mask + 1) * RL_WAYS */
    pthread_mutex_t locks[RL_LOCK_STRIPES];
};

/* splitmix64's finaliser: sequential user ids land in unrelated sets. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t sets_for(size_t slots)
{
    size_t sets = 1;
    while (sets * RL_WAYS < slots)
        sets *= 2;
    return sets;
}

rl_limiter *rl_new(int64_t rate_per_s, int64_t burst, size_t slots)
{
    if (rate_per_s < 1 || rate_per_s > RL_RATE_MAX || burst < 1 ||
        burst > RL_BURST_MAX || slots > ((size_t)1 << 30))
        return NULL;
    rl_limiter *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    size_t sets = sets_for(slots);
    rl->slots = calloc(sets * RL_WAYS, sizeof(*rl->slots));
    if (rl->slots == NULL) {
        free(rl);
        return NULL;
    }
    rl->rate = rate_per_s;
    rl->full = burst * MILLI;
    rl->set_mask = sets - 1;
    for (size_t i = 0; i < RL_LOCK_STRIPES; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    return rl;
}

void rl_free(rl_limiter *rl)
{
    if (rl == NULL)
        return;
    for (size_t i = 0; i < RL_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    free(rl->slots);
    free(rl);
}

/* The slot of key within its set: its own, else a free one, else the one
 * refilled longest ago, reset to a full bucket. Caller holds the set's
 * lock. */
static rl_slot *find_slot(rl_slot *set, uint64_t key, int64_t now_ms,
                          int64_t full)
{
    rl_slot *victim = &set[0];
    for (size_t i = 0; i < RL_WAYS; i++) {
        rl_slot *s = &set[i];
        if (s->used && s->key == key)
            return s;
        if (victim->used && (!s->used || s->last_ms < victim->last_ms))
            victim = s;
    }
    victim->used = true;
    victim->key = key;
    victim->tokens = full;
    victim->last_ms = now_ms;
    return victim;
}

/* Adds what accrued since the last refill, up to full. */
static void refill(rl_slot *s, int64_t now_ms, int64_t rate, int64_t full)
{
    if (now_ms <= s->last_ms)
        return; /* same millisecond, or the clock went back */
    int64_t elapsed = now_ms - s->last_ms;
    s->last_ms = now_ms;
    /* Past this long the bucket is full anyway; checking first keeps
     * elapsed * rate from overflowing after a long silence. */
    if (elapsed >= (full - s->tokens) / rate + 1) {
        s->tokens = full;
        return;
    }
    s->tokens += elapsed * rate;
    if (s->tokens > full)
        s->tokens = full;
}

bool rl_take(rl_limiter *rl, uint64_t key, int64_t now_ms,
             int64_t *retry_after_ms)
{
    uint64_t h = mix(key);
    size_t set = (size_t)h & rl->set_mask;
    pthread_mutex_t *lock = &rl->locks[set % RL_LOCK_STRIPES];

    pthread_mutex_lock(lock);
    rl_slot *s = find_slot(&rl->slots[set * RL_WAYS], key, now_ms, rl->full);
    refill(s, now_ms, rl->rate, rl->full);
    bool allowed = s->tokens >= MILLI;
    int64_t missing = MILLI - s->tokens;
    if (allowed)
        s->tokens -= MILLI;
    pthread_mutex_unlock(lock);

    if (!allowed && retry_after_ms != NULL)
        *retry_after_ms = (missing + rl->rate - 1) / rl->rate;
    return allowed;
}

uint64_t rl_key_of(const char *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
