/*
 * hot.h - the hot mailboxes of owned users in this node's Redis.
 *
 * Per user: a meta hash (mailbox change counter `seq`, largest message id
 * `max`, and bookkeeping), a window of the HOT_CONVS_MAX most recent
 * conversations, and for conversations that were read, a window of the
 * HOT_MSGS_MAX newest messages. Entries are "<20-digit id>|<cid>|<json>"
 * members of zsets with score 0, so Redis keeps them in id order
 * (hot_entry.h).
 *
 * Every write is one Lua script (atomic), run only after the durable write
 * succeeded. Every read is one MULTI/EXEC (no script: Lua cost Redis
 * about 20 us a call), so a page and the `seq` that its sync token
 * carries come from one snapshot. Windows carry their
 * own sizes; a window whose size does not match (part of it evicted) reads
 * as a miss and is rebuilt from storage.
 *
 * If an update fails after the durable write, the cache may be stale: the
 * node then flushes its Redis before serving from it again (hot is marked
 * dirty). The meta of users in Redis is also kept in memory (memo.h), so
 * the commonest read, a delta with nothing new, costs no round trip. While
 * Redis is down every call reports HOT_DOWN and the node serves from storage.
 * Thread safe: a pool of hiredis connections.
 */
#ifndef CACHE_HOT_H
#define CACHE_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hot_entry.h"
#include "metrics.h"

typedef struct hot hot_t;

typedef enum { HOT_HIT = 0, HOT_MISS, HOT_DOWN } hot_result;

typedef struct hot_meta {
    int64_t seq;
    int64_t max_id;
} hot_meta;

/* A page read from a window. items are JSON texts (owned). */
typedef struct hot_page {
    int64_t seq;
    size_t card;   /* entries in the window */
    bool complete; /* the window holds the whole list */
    char **items;
    size_t n;
} hot_page;

hot_t *hot_new(const char *host, int port, int pool_size, metrics_t *metrics);
void hot_free(hot_t *h);

/* Drops every hot mailbox of this node (start-up, ownership gained). */
int hot_flush(hot_t *h);
/* True when Redis answers PING. */
bool hot_ping(hot_t *h);

hot_result hot_get_meta(hot_t *h, int64_t uid, hot_meta *out);

/* A page of a window: count entries from off of uid's conversation
 * window (cid NULL) or of its message window of cid (borrowed). */
typedef struct hot_page_ask {
    int64_t uid;
    const char *cid;
    size_t off, count;
} hot_page_ask;

/* Reads the n pages asked, in one round trip to Redis, each page with
 * its meta in one MULTI/EXEC. res[i] is HOT_HIT with out[i] filled (free
 * it with hot_page_free), HOT_MISS when the window is not loaded whole,
 * or HOT_DOWN; out[i] is always safe to free. */
void hot_read_pages(hot_t *h, const hot_page_ask *asks, size_t n, hot_page *out,
                    hot_result *res);
void hot_page_free(hot_page *p);

/* Fills a user's meta and conversation window (entries borrowed). */
void hot_load_user(hot_t *h, int64_t uid, const hot_meta *meta, bool complete,
                   char *const *entries, size_t n);
/* Fills one conversation's message window; needs the user loaded. */
void hot_load_msgs(hot_t *h, int64_t uid, const char *cid, bool complete,
                   char *const *entries, size_t n);
/* Applies a landed message: new meta, the conversation entry and the
 * message entry. A failure marks the cache dirty (flushed before next
 * use). */
void hot_apply(hot_t *h, int64_t uid, const hot_meta *meta, const char *cid,
               const char *conv_entry, const char *msg_entry);
/* Drops a user's hot mailbox: a write whose outcome is unknown may have
 * landed, so Redis may be behind storage for this user. */
void hot_forget_user(hot_t *h, int64_t uid);

/* Size of a buffer hot_user_base_keys writes one name into. */
#define HOT_KEY_NAME_MAX 48

/* The names of uid's meta, conversation window and conversation index
 * (hot_scripts.h): every read of the user starts from its meta, so with
 * these gone no other key of the user is read. */
void hot_user_base_keys(int64_t uid, char u[HOT_KEY_NAME_MAX],
                        char c[HOT_KEY_NAME_MAX], char x[HOT_KEY_NAME_MAX]);

#endif
