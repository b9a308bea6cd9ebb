/*
 * memo.h - the mailbox meta (seq, max_id) of owned users in this process's
 * memory, in front of Redis.
 *
 * A delta read with nothing new only needs the mailbox change counter: a
 * memo hit answers it without a Redis round trip. The memo is a cache of
 * what Redis holds, and the node keeps it no fresher and no staler than
 * Redis (hot.c):
 *   - a write records the new meta only after Redis took it;
 *   - values only move forward for a user, so a reader that read Redis
 *     before a write cannot put an older seq back;
 *   - memo_clear forgets everything at once (a flush, a dirty cache, raw
 *     access to Redis by handoffs and drops) and memo_forget one user;
 *     a reader that took its ticket before either cannot install what it
 *     read.
 *
 * Direct-mapped and fixed in size: a user whose slot another user took is
 * a miss, served from Redis as before. Thread safe (striped locks).
 */
#ifndef CACHE_MEMO_H
#define CACHE_MEMO_H

#include <stdbool.h>
#include <stdint.h>

#include "hot.h"

typedef struct memo memo;

/* A table of 2^bits slots (bits in [4, 24]); NULL on bad size or OOM. */
memo *memo_new(unsigned bits);
void memo_free(memo *m);

/* What memo_put checks: take it before reading or writing Redis. */
typedef struct memo_ticket {
    uint64_t gen;   /* clears so far */
    uint64_t stamp; /* forgets of the user's slot so far */
} memo_ticket;

memo_ticket memo_take_ticket(memo *m, int64_t uid);

/* The meta of uid if held. */
bool memo_get(memo *m, int64_t uid, hot_meta *out);
/* Records uid's meta: ignored if a clear or a forget of its slot came
 * after the ticket, or if the slot holds a newer seq of the same user. */
void memo_put(memo *m, memo_ticket t, int64_t uid, const hot_meta *meta);
/* Forgets uid (its Redis keys went away). */
void memo_forget(memo *m, int64_t uid);
/* Forgets every user. */
void memo_clear(memo *m);

#endif
