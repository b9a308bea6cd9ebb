/*
 * store.h - the cache node's calls to the storage service (see
 * docs/internal-api.md). Each call is one keep-alive HTTP request from
 * the node's pool; its answer is checked by store_parse.c before any of
 * it is used. rid is the request id passed along for the logs.
 */
#ifndef CACHE_STORE_H
#define CACHE_STORE_H

#include <jansson.h>
#include <stdbool.h>

#include "message.h"
#include "node.h"
#include "store_parse.h" /* store_err, store_send_result */
#include "storeq.h"

/* The write queue's defaults (CACHE_STORE_LANES, CACHE_STORE_BATCH):
 * calls to storage in flight at once, and writes one call carries. */
#define STORE_LANES_DEFAULT 2
#define STORE_BATCH_DEFAULT 32
/* Message text one batch carries beyond its first write: half of what
 * storage accepts in a body (HTTP_BODY_MAX), the rest for the wrapping. */
#define STORE_BATCH_BYTES (512 * 1024)
/* How long a write may wait in its queue for a call to take it. Calls to
 * a healthy instance leave within milliseconds even at saturation; one
 * queued this long waits behind calls its stalled instance does not
 * answer (storage gives up on PostgreSQL after 4 s), so it answers a
 * retryable 503 unsent rather than hold its thread through more of
 * them. */
#define STORE_QUEUE_WAIT_MS 3000

/* Writes the sender's copy, key and outbox entry in one transaction. On
 * STORE_OK with SEND_REPLAY, out->stored is owned by the caller
 * (msg_clear). */
store_err store_send(cache_node *n, const msg *m, const char *rid,
                     store_send_result *out);

/* Writes the recipient's copy, idempotent by message id. *stored is false
 * for a duplicate; meta is the mailbox after. */
store_err store_deliver(cache_node *n, const msg *m, const char *rid,
                        bool *stored, hot_meta *meta);

/* The runner of the node's write queue (storeq_new's run, ctx the
 * node): one write as a call of its own, several as one POST
 * /internal/batch. */
void store_run_writes(void *ctx, storeq_job **jobs, int k);

/* Fetches storage's shard map (placement.h) when it is due; the write
 * queues group by it. Called by every write, and once at start. */
void store_refresh_placement(cache_node *n, const char *rid);

store_err store_meta(cache_node *n, int64_t uid, const char *rid,
                     hot_meta *meta);

/* GET path_and_query on storage; on STORE_OK *out is the parsed body
 * (caller decrefs). */
store_err store_get(cache_node *n, const char *path_and_query, const char *rid,
                    json_t **out);

/* Claims due outbox entries; *messages is a new array reference. */
store_err store_outbox_claim(cache_node *n, int limit, int lease_ms,
                             json_t **messages);

#endif
