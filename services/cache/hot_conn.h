/*
 * hot_conn.h - raw access to the hot module's Redis connections, for the
 * parts of the hot module that work on whole key spaces rather than one
 * user (hot_move.c). Not for other modules: they use hot.h.
 */
#ifndef CACHE_HOT_CONN_H
#define CACHE_HOT_CONN_H

#include <hiredis.h>
#include <stdint.h>

#include "hot.h"

/* A pooled connection (flushing a dirty cache first), or NULL when Redis
 * cannot be used. Give every non-NULL one back. */
redisContext *hot_conn_borrow(hot_t *h);
void hot_conn_give_back(hot_t *h, redisContext *c);

/* The cache may hold stale entries: flush before the next use. */
void hot_mark_dirty(hot_t *h);

/* The user index: a sorted set of every user whose meta (u:{U}) a
 * script or a restore created in this Redis, scored by the user's place
 * on the ring, so that a ring change finds the users it must drop by a
 * range query per foreign range instead of a walk of the whole keyspace
 * (hot_move.c). Its name holds no "{", so no user's clean-up takes it.
 * Members may outlive their users' keys (evicted, or dropped by a
 * script that found them inconsistent): such a member costs a lookup
 * at the next ring change that leaves its user elsewhere, nothing more.
 * The sentinel member goes in with every FLUSHDB, atomically: an index
 * without it (evicted whole under maxmemory, or a Redis that restarted
 * empty while the node ran) may be missing users, and the clean-up then
 * walks the keyspace and rebuilds it. */
#define HOT_USER_INDEX "hot:users"
#define HOT_INDEX_SENTINEL "~"
/* Room for a user's score as text. */
#define HOT_SCORE_MAX 24

/* The user's score in the index: the top 53 bits of its ring hash, so
 * that a double holds it exactly and the order of scores is the order
 * of hashes (ties aside). Writes the decimal form into buf. */
void hot_index_score(int64_t uid, char buf[HOT_SCORE_MAX]);

#endif
