/*
 * locks.h - per-user write serialisation on the owner node.
 *
 * A fixed array of USER_LOCK_STRIPES mutexes; user u uses stripe
 * hash(u) % stripes. Two users may share a stripe (then they wait for
 * each other, never deadlock: a request holds at most one user lock).
 */
#ifndef CACHE_LOCKS_H
#define CACHE_LOCKS_H

#include <stdint.h>

typedef struct user_locks user_locks;

user_locks *locks_new(void);
void locks_free(user_locks *l);
void locks_acquire(user_locks *l, int64_t user_id);
void locks_release(user_locks *l, int64_t user_id);

#endif
