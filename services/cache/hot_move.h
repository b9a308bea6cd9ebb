/*
 * hot_move.h - moving hot mailboxes between nodes when users change
 * owner: dropping the users a node no longer owns, and copying users'
 * keys out (DUMP) and in (RESTORE) for a warm handoff.
 *
 * Every key of user u holds "{u}" (hot.c), so a SCAN of the node's Redis
 * finds each user's keys without an index. Scans are bounded by the
 * node's Redis size (HOT_* windows and maxmemory), and run only on ring
 * changes and handoffs.
 */
#ifndef CACHE_HOT_MOVE_H
#define CACHE_HOT_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hot.h"

/* The user a hot key belongs to: the digits between '{' and '}'.
 * Returns 0, or -1 for a key of another form. Pure. */
int hot_key_user(const char *key, size_t len, int64_t *uid);

typedef bool (*hot_user_pred)(int64_t uid, void *arg);
/* A key (NUL-terminated, len bytes before it) of user uid. */
typedef bool (*hot_key_pred)(const char *key, size_t len, int64_t uid,
                             void *arg);

/* Deletes every user's key for which drop(key, uid) is true. Returns
 * the number of keys deleted, or -1 when Redis failed part way (the
 * cache is then marked dirty: flushed before its next use). */
long hot_drop_users(hot_t *h, hot_key_pred drop, void *arg);

/* Deletes the n keys named in names (NUL-terminated, back to back), a
 * thousand per UNLINK. Returns the number of keys that existed, or -1
 * when Redis failed (the cache is then marked dirty: flushed before its
 * next use). */
long hot_unlink_keys(hot_t *h, const char *names, size_t n);

/* One dumped key: what RESTORE needs. */
typedef struct hot_dump {
    int64_t uid;
    const char *key;
    size_t key_len;
    const char *payload; /* DUMP's serialisation */
    size_t payload_len;
    long long ttl_ms; /* 0: no expiry */
} hot_dump;

/* Called for each key of a moving user; returns 0 to go on, -1 to stop. */
typedef int (*hot_dump_fn)(const hot_dump *d, void *arg);

/* Dumps every key of each user for which move(uid) is true, calling emit
 * for each. Returns the number of keys dumped, or -1 on a Redis error or
 * when emit stopped. */
long hot_dump_users(hot_t *h, hot_user_pred move, void *arg, hot_dump_fn emit,
                    void *emit_arg);

/* RESTOREs one key (replacing it). Returns 0 or -1. */
int hot_restore(hot_t *h, const char *key, size_t key_len, const char *payload,
                size_t payload_len, long long ttl_ms);

#endif
