/*
 * outbox.c - the outbox worker thread. See outbox.h.
 */
#include "outbox.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "constants.h"
#include "log.h"
#include "send.h"
#include "store.h"

/* A claimed entry is not handed to another worker for this long: ample
 * for one delivery hop, short enough that a dead worker's claims return
 * quickly. */
#define OUTBOX_LEASE_MS 5000

struct outbox_worker {
    cache_node *node;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t wake;
    bool stopping;
};

/* Claims and delivers one batch. Returns how many were delivered. */
static int run_batch(outbox_worker *w)
{
    json_t *messages = NULL;
    if (store_outbox_claim(w->node, OUTBOX_CLAIM_BATCH, OUTBOX_LEASE_MS,
                           &messages))
        return 0;
    int delivered = 0;
    size_t i;
    json_t *item;
    json_array_foreach(messages, i, item)
    {
        msg m;
        if (msg_from_json(item, &m)) {
            log_msg("error", "outbox entry does not parse; left for later");
            continue;
        }
        /* No wait: the worker comes back to what is left. */
        if (send_deliver(w->node, &m, NULL, 0) == 0)
            delivered++;
        msg_clear(&m);
    }
    size_t total = json_array_size(messages);
    json_decref(messages);
    if (total)
        log_msg("info", "outbox: delivered %d of %zu queued copies", delivered,
                total);
    metrics_count(w->node->metrics, "outbox_delivered_total",
                  "Recipient copies delivered by the outbox worker",
                  (uint64_t)delivered);
    /* What the last pass found and could not deliver: the backlog this
     * node sees (at least that much when the claim came back full). */
    metrics_gauge(w->node->metrics, "outbox_depth",
                  "Outbox entries the last claim found and left undelivered",
                  (double)(total - (size_t)delivered));
    return delivered;
}

static void wait_interval(outbox_worker *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)OUTBOX_RETRY_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&w->lock);
    if (!w->stopping)
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
    pthread_mutex_unlock(&w->lock);
}

static bool is_stopping(outbox_worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool s = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return s;
}

static void *worker_main(void *arg)
{
    outbox_worker *w = arg;
    while (!is_stopping(w)) {
        run_batch(w);
        wait_interval(w);
    }
    return NULL;
}

outbox_worker *outbox_start(cache_node *n)
{
    outbox_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->node = n;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w)) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return NULL;
    }
    return w;
}

void outbox_stop(outbox_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
