/*
 * node.h - the cache node's context: everything main wires up once and
 * every request borrows. Modules of the cache service take a
 * cache_node * and touch only the members their comments name.
 */
#ifndef CACHE_NODE_H
#define CACHE_NODE_H

#include <stdatomic.h>

#include "http_client.h"
#include "ids.h"
#include "locks.h"
#include "metrics.h"
#include "ringview.h"
#include "hot.h"

/* Write queues to storage: one per storage instance, instances beyond
 * this many sharing them (store.c). */
#define CACHE_WRITE_QUEUES 16

typedef struct cache_node {
    char name[64];         /* this node's name in the ring */
    char storage_url[256]; /* base URL of the storage service */
    char events_url[128];  /* CACHE_EVENTS_URL: long polls are redirected
                              there; "" when they are served here */
    ringview *ring;        /* the ring as published by the router */
    hc_pool *hops;         /* keep-alive HTTP to storage and peers */
    /* Sends and delivers to storage, queued by the storage instance of
     * the mailbox they write (storeq.h, placement.h). */
    struct storeq *writes[CACHE_WRITE_QUEUES];
    struct placement *placement;
    hot_t *hot;        /* this node's Redis: the hot mailboxes */
    ids_gen ids;       /* message ids: node bits are CACHE_NODE_ID */
    user_locks *locks; /* serialise writes per owned user */
    metrics_t *metrics;
    struct events *events;   /* long-poll waiters, woken by writes (events.h) */
    struct lease *lease;     /* heartbeats; serve only while held (lease.h) */
    struct handoff *handoff; /* planned moves of users (handoff.h) */
} cache_node;

#endif
