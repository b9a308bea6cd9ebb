/*
 * hot_move.h - moving hot mailboxes between nodes when users change
 * owner: dropping the users a node no longer owns, and copying users'
 * keys out (DUMP) and in (RESTORE) for a warm handoff.
 *
 * Every key of user u holds "{u}" (hot.c), so a SCAN of the node's Redis
 * finds each user's keys. A ring change's clean-up finds the users to
 * drop in the user index instead (hot_conn.h) and walks the keyspace
 * only when the index cannot be trusted; an export still walks it.
 */
#ifndef CACHE_HOT_MOVE_H
#define CACHE_HOT_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hot.h"
#include "ring.h"

/* The user a hot key belongs to: the digits between '{' and '}'.
 * Returns 0, or -1 for a key of another form. Pure. */
int hot_key_user(const char *key, size_t len, int64_t *uid);

typedef bool (*hot_user_pred)(int64_t uid, void *arg);
/* A key (NUL-terminated, len bytes before it) of user uid. */
typedef bool (*hot_key_pred)(const char *key, size_t len, int64_t uid,
                             void *arg);

/* Deletes the keys of users the node does not own for which
 * drop(key, uid) is true; drop must be false for every user whose ring
 * hash lies outside the foreign ranges (ring_foreign_ranges). The users
 * come from the user index (hot_conn.h) by one range query per foreign
 * range, so the work is that of the users who leave, not of the whole
 * keyspace; a message window whose meta no longer names it is left to
 * eviction. When the index cannot be trusted, every key of the keyspace
 * is asked about instead (*walked is set) and the index is rebuilt from
 * the metas kept. Returns the number of keys deleted, or -1 when Redis
 * failed part way (the cache is then marked dirty: flushed before its
 * next use). */
long hot_drop_users(hot_t *h, const ring_range *foreign, int nforeign,
                    hot_key_pred drop, void *arg, bool *walked);

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
 * for each; move must be false for every user whose ring hash lies
 * outside the leaving ranges. As hot_drop_users, the users come from the
 * user index by range, and from a walk of the keyspace when the index
 * cannot be trusted. Returns the number of keys dumped, or -1 on a Redis
 * error or when emit stopped. */
long hot_dump_users(hot_t *h, const ring_range *leaving, int nleaving,
                    hot_user_pred move, void *arg, hot_dump_fn emit,
                    void *emit_arg);

/* One key to restore, and what became of it. */
typedef struct hot_restore_item {
    const char *key;
    size_t key_len;
    const char *payload; /* DUMP's serialisation */
    size_t payload_len;
    long long ttl_ms; /* 0: no expiry */
    bool restored;    /* out */
    bool indexed;     /* private to hot_restore */
} hot_restore_item;

/* RESTOREs the n keys (replacing them) in one pipeline, a meta's user
 * into the user index first. Sets each item's restored; returns how
 * many were, or -1 when Redis failed (none may be counted on). */
long hot_restore(hot_t *h, hot_restore_item *items, size_t n);

#endif
