/*
 * outbox.h - the background worker that delivers queued recipient copies.
 *
 * A send writes the recipient's copy as an outbox entry in the sender's
 * transaction and removes it once the copy landed. Entries still there
 * after OUTBOX_FIRST_RETRY_MS (the recipient's node was down, or the
 * sender's node died between the two steps) are claimed by any cache
 * node's worker, delivered to the recipient's current owner (idempotent by
 * message id) and removed. Claims are leased in storage, so two workers do
 * not deliver one entry at once.
 */
#ifndef CACHE_OUTBOX_H
#define CACHE_OUTBOX_H

#include "node.h"

typedef struct outbox_worker outbox_worker;

outbox_worker *outbox_start(cache_node *n);
/* Stops the worker after its current batch. NULL is a no-op. */
void outbox_stop(outbox_worker *w);

#endif
