/*
 * mailbox.h - the durable mailboxes: every SQL statement of the storage
 * service lives behind this API.
 *
 * Each call routes by user: the user's logical shard (shardmap) picks the
 * PostgreSQL instance, and the call is one statement there. Writes call
 * the PL/pgSQL functions of schema/ (msg_send, msg_deliver) through the
 * instance's batcher: concurrent writes share one pipelined transaction
 * (group commit), and each returns only once that transaction committed. Reads
 * return the mailbox change counter (seq) taken in the same statement, hence
 * the same snapshot, as the rows: a sync token built from it never skips a
 * change.
 *
 * Results are plain structs owned by the caller and released with the
 * matching _clear function (safe on a zeroed struct). Errors are return
 * values; errbuf gets a human-readable reason. Thread safe: the store is
 * read-only and the pools lock internally.
 */
#ifndef STORAGE_MAILBOX_H
#define STORAGE_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "message.h"
#include "pgpool.h"
#include "shardmap.h"

/* Most rows one list read returns (the cache asks for a page plus one). */
#define MBOX_LIST_LIMIT_MAX 1000
/* Most outbox entries one claim returns, and one ack deletes. */
#define MBOX_OUTBOX_BATCH_MAX 1000
/* Longest outbox lease, ms: an hour, far beyond any delivery attempt. */
#define MBOX_LEASE_MAX_MS 3600000

typedef enum {
    MBOX_OK = 0,
    MBOX_UNAVAILABLE, /* an instance could not be reached: retry later */
    MBOX_FAILED,      /* a statement failed or answered nonsense */
} mbox_err;

const char *mbox_strerror(mbox_err err);

/* What main wires up: the shard map, one pool per instance (pools[i]
 * for instance i) and one group-commit batcher per instance over that
 * pool (batch.h), all borrowed for the life of the store. */
typedef struct mbox_store {
    const shardmap *map;
    pgpool *const *pools;
    batcher *const *batchers;
} mbox_store;

typedef enum {
    MBOX_STORED = 0, /* written */
    MBOX_REPLAY,     /* send: the idempotency key exists, nothing written */
    MBOX_FLOOR,      /* send: message_id not above max_id, nothing written */
    MBOX_DUPLICATE,  /* deliver: the copy exists, nothing written */
} mbox_status;

/* Outcome of a write. seq and max_id are the mailbox's values after it. */
typedef struct mbox_write {
    mbox_status status;
    int64_t seq;
    int64_t max_id;
    msg stored;             /* MBOX_REPLAY: the stored sender's copy */
    bool is_outbox_pending; /* MBOX_REPLAY: its recipient copy is still
                               queued (not acknowledged) */
} mbox_write;

void mbox_write_clear(mbox_write *w);

/* The statements of the write batches (send, deliver, outbox removal),
 * for pgpool_prepare; *n gets their number. Static texts. */
const char *const *mbox_batch_statements(int *n);

/* Writes the sender's copy of m, its idempotency key and the outbox entry
 * for the recipient's copy in one transaction on the sender's instance.
 * m must be validated (ids, conversation id, UTF-8 content). now_ms is the
 * server clock (landed_at). On MBOX_OK *out says what happened. */
mbox_err mbox_send(const mbox_store *s, const msg *m, int64_t now_ms,
                   mbox_write *out, char *errbuf, size_t errcap);

/* Writes the recipient's copy of m, idempotent by (recipient, message
 * id). Once the copy is durable (stored now or before), the sender's
 * outbox entry for it has no purpose left and is removed: in the same
 * transaction when both mailboxes are on one instance, else right after
 * the commit (a failure there only leaves the entry for the outbox
 * worker, whose delivery is a harmless duplicate). Callers need no
 * separate outbox ack. */
mbox_err mbox_deliver(const mbox_store *s, const msg *m, int64_t now_ms,
                      mbox_write *out, char *errbuf, size_t errcap);

typedef enum { MBOX_OP_SEND, MBOX_OP_DELIVER } mbox_op;

/* One write of mbox_write_all: what mbox_send or mbox_deliver would take
 * and answer. */
typedef struct mbox_call {
    mbox_op op;
    const msg *m;     /* validated, borrowed */
    mbox_write out;   /* on MBOX_OK; mbox_write_clear it */
    mbox_err err;     /* set by mbox_write_all */
    char errbuf[256]; /* why, when err */
} mbox_call;

/* Runs k writes at once, each exactly as mbox_send or mbox_deliver would
 * and each with its own outcome: they are queued together, so they can
 * share transactions with each other and with concurrent writes, but
 * none waits for or depends on another's success. Returns when all k
 * ended. */
void mbox_write_all(const mbox_store *s, mbox_call *calls, int k,
                    int64_t now_ms);

/* The change counter and largest message id of a mailbox (0, 0 when it
 * does not exist yet). */
mbox_err mbox_get_meta(const mbox_store *s, int64_t user_id, int64_t *seq,
                       int64_t *max_id, char *errbuf, size_t errcap);

/* Filters of a list read. limit 1..MBOX_LIST_LIMIT_MAX, offset >= 0. */
typedef struct mbox_filter {
    int limit;
    int offset;
    bool has_before; /* messages only: message_id < before */
    int64_t before;
    bool has_since_seq; /* only items changed at seq > since_seq */
    int64_t since_seq;
    bool has_since_ts; /* only items changed strictly after since_ts ms */
    int64_t since_ts;
} mbox_filter;

typedef struct mbox_conv {
    char conversation_id[IDS_CONVERSATION_MAX];
    int64_t peer_id;
    int64_t last_message_id;
    int64_t last_updated_at; /* sent_at of the last message, ms */
    char *snippet;           /* owned, NUL terminated, may hold NUL */
    size_t snippet_len;
} mbox_conv;

typedef struct mbox_conv_list {
    int64_t seq; /* mailbox seq in the snapshot of the rows */
    size_t n;
    mbox_conv *items; /* owned */
} mbox_conv_list;

void mbox_conv_list_clear(mbox_conv_list *l);

/* A user's conversations, newest last message first. */
mbox_err mbox_list_conversations(const mbox_store *s, int64_t user_id,
                                 const mbox_filter *f, mbox_conv_list *out,
                                 char *errbuf, size_t errcap);

typedef struct mbox_msg_list {
    int64_t seq; /* list reads: mailbox seq in the rows' snapshot; claims: 0 */
    size_t n;
    msg *items; /* owned */
} mbox_msg_list;

void mbox_msg_list_clear(mbox_msg_list *l);

/* One conversation's messages in user_id's mailbox, newest first. */
mbox_err mbox_list_messages(const mbox_store *s, int64_t user_id,
                            const char *conversation_id, const mbox_filter *f,
                            mbox_msg_list *out, char *errbuf, size_t errcap);

/* Claims up to limit outbox entries due at now_ms, gathered from every
 * instance, and leases each for lease_ms so that no other claimer gets it
 * meanwhile. An instance that is unreachable or fails is skipped (its
 * entries wait; pgpool logs why) and the entries claimed on the others
 * are returned. The call fails only when no instance answered and
 * nothing was claimed: MBOX_FAILED if an instance failed, else
 * MBOX_UNAVAILABLE, with errbuf set. */
mbox_err mbox_outbox_claim(const mbox_store *s, int limit, int64_t lease_ms,
                           int64_t now_ms, mbox_msg_list *out, char *errbuf,
                           size_t errcap);

typedef struct mbox_outbox_key {
    int64_t sender_id;
    int64_t message_id;
} mbox_outbox_key;

/* Deletes the outbox entries named by keys (on each sender's instance);
 * *deleted counts the rows removed. Unknown keys are ignored. */
mbox_err mbox_outbox_ack(const mbox_store *s, const mbox_outbox_key *keys,
                         size_t n, int64_t *deleted, char *errbuf,
                         size_t errcap);

/* True when every instance answers SELECT 1. */
bool mbox_is_ready(const mbox_store *s);

#endif
