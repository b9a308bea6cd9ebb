/*
 * ticker.c - interval threads. See ticker.h.
 */
#include "ticker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "clockms.h"

struct ticker {
    int interval_ms;
    ticker_fn fn;
    void *arg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool poked; /* ticker_poke: call fn again without waiting */
};

static void *loop(void *p)
{
    ticker *t = p;
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        pthread_mutex_unlock(&t->lock);
        t->fn(t->arg);
        pthread_mutex_lock(&t->lock);
        struct timespec until = clockms_deadline_in(t->interval_ms);
        while (!t->stopping && !t->poked &&
               pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0) {
            /* a spurious wake-up: wait out the rest */
        }
        t->poked = false;
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

ticker *ticker_start(int interval_ms, ticker_fn fn, void *arg)
{
    ticker *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->interval_ms = interval_ms > 0 ? interval_ms : 1;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    if (pthread_create(&t->thread, NULL, loop, t)) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return NULL;
    }
    return t;
}

void ticker_poke(ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->poked = true;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
}

void ticker_stop(ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}
