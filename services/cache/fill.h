/*
 * fill.h - bringing a user's hot mailbox into Redis from storage.
 *
 * A fill reads storage and writes Redis while holding the user's write
 * lock, so no write of that user can land between the read and the fill
 * (every write of an owned user goes through this node under that lock).
 */
#ifndef CACHE_FILL_H
#define CACHE_FILL_H

#include "node.h"
#include "store.h"

/* The user's mailbox meta: from Redis, or loaded from storage (and the
 * conversation window filled). Caller holds the user's lock. */
store_err fill_meta_locked(cache_node *n, int64_t uid, const char *rid,
                           hot_meta *meta);

/* Same, taking the lock only when Redis misses. */
store_err fill_meta(cache_node *n, int64_t uid, const char *rid,
                    hot_meta *meta);

/* Fills the message window of one conversation (takes the lock). */
store_err fill_messages(cache_node *n, int64_t uid, const char *cid,
                        const char *rid);

/* Builds hot entries from a storage array of conversations (key
 * last_message_id) or messages (key message_id). Returns a malloc'd array
 * of *n malloc'd entries, or NULL. */
char **fill_entries(const json_t *arr, const char *id_key, const char *cid,
                    size_t *n);
void fill_entries_free(char **entries, size_t n);

#endif
