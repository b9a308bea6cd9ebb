/*
 * ratelimit.h - token buckets keyed by a 64-bit key (a user id, or a
 * hash of a client address), in a table of fixed size.
 *
 * Each key has a bucket of `burst` tokens that refills at `rate` tokens
 * per second; a request takes one token or is refused with the time
 * until the next one. The table is allocated once by rl_new and never
 * grows: a key that finds no free slot takes over the slot that was used
 * least recently in its set, so memory stays bounded whatever the number
 * of distinct keys. A key evicted that way comes back with a full
 * bucket; with RL_SLOTS_DEFAULT slots that only happens under a churn of
 * tens of thousands of keys, and the limit is a defence, not an account.
 *
 * Time is passed in by the caller (a monotonic clock in milliseconds), so
 * the module does no I/O and tests control time exactly.
 */
#ifndef MSG_RATELIMIT_H
#define MSG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rl_limiter rl_limiter;

/* A limiter of rate_per_s tokens per second (1..RL_RATE_MAX) and burst
 * tokens at most (1..RL_BURST_MAX, both in constants.h), with room for slots
 * keys (rounded up to a power of two, at least one set of RL_WAYS). Returns
 * NULL when an argument is out of range or memory is short; the caller owns the
 * limiter and frees it with rl_free. */
rl_limiter *rl_new(int64_t rate_per_s, int64_t burst, size_t slots);
/* NULL is a no-op. No rl_take may run concurrently. */
void rl_free(rl_limiter *rl);

/* Takes one token from key's bucket at time now_ms (monotonic
 * milliseconds). Returns true when the request is allowed. When it is
 * not, *retry_after_ms (if not NULL) is the time until a token will be
 * there, at least 1. A clock that goes backwards refills nothing.
 * Thread-safe: keys are spread over striped mutexes. */
bool rl_take(rl_limiter *rl, uint64_t key, int64_t now_ms,
             int64_t *retry_after_ms);

/* A 64-bit key for bytes such as a client address (FNV-1a). */
uint64_t rl_key_of(const char *data, size_t len);

#endif
