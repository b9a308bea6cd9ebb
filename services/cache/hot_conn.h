/*
 * hot_conn.h - raw access to the hot module's Redis connections, for the
 * parts of the hot module that work on whole key spaces rather than one
 * user (hot_move.c). Not for other modules: they use hot.h.
 */
#ifndef CACHE_HOT_CONN_H
#define CACHE_HOT_CONN_H

#include <hiredis.h>

#include "hot.h"

/* A pooled connection (flushing a dirty cache first), or NULL when Redis
 * cannot be used. Give every non-NULL one back. */
redisContext *hot_conn_borrow(hot_t *h);
void hot_conn_give_back(hot_t *h, redisContext *c);

/* The cache may hold stale entries: flush before the next use. */
void hot_mark_dirty(hot_t *h);

#endif
