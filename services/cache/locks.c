/*
 * locks.c - striped mutexes serialising the writes of each owned user.
 * See locks.h.
 */
#include "locks.h"

#include <pthread.h>
#include <stdlib.h>

#include "constants.h"
#include "ring.h"

struct user_locks {
    pthread_mutex_t stripes[USER_LOCK_STRIPES];
};

user_locks *locks_new(void)
{
    user_locks *l = malloc(sizeof(*l));
    if (!l)
        return NULL;
    for (int i = 0; i < USER_LOCK_STRIPES; i++)
        pthread_mutex_init(&l->stripes[i], NULL);
    return l;
}

void locks_free(user_locks *l)
{
    if (!l)
        return;
    for (int i = 0; i < USER_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&l->stripes[i]);
    free(l);
}

static pthread_mutex_t *stripe(user_locks *l, int64_t user_id)
{
    return &l->stripes[ring_hash_user(user_id) % USER_LOCK_STRIPES];
}

void locks_acquire(user_locks *l, int64_t user_id)
{
    pthread_mutex_lock(stripe(l, user_id));
}

void locks_release(user_locks *l, int64_t user_id)
{
    pthread_mutex_unlock(stripe(l, user_id));
}
