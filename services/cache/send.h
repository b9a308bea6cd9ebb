/*
 * send.h - the write path of a cache node: a user's send, and the
 * landing of a recipient's copy.
 *
 * A send from A to B on A's owner node: lock A; take the largest id in
 * A's mailbox as the floor; assign an id above it and sent_at from it;
 * write A's copy, the idempotency key and the outbox entry for B's copy in
 * one storage transaction; update A's hot mailbox; unlock; hand B's copy
 * to B's owner node. If that fails the outbox entry stays and the outbox
 * worker delivers it later: the 201 never waits on B being up.
 */
#ifndef CACHE_SEND_H
#define CACHE_SEND_H

#include "http_server.h"
#include "message.h"
#include "node.h"

/* Answers a validated send of a user this node owns. The caller's claim
 * on the sender (owner_check, ring) ends here, as soon as the sender's
 * copy is written: before the recipient's copy is delivered. */
void send_message(cache_node *n, const msg_send_req *req, const char *rid,
                  const ring_t *ring, hs_reply *rep);

/* Writes a recipient copy for a user this node owns, under the user's
 * lock, and updates the hot mailbox. Returns 0, or -1 if storage failed. */
int send_land_copy(cache_node *n, const msg *m, const char *rid);

/* Routes a recipient copy to the owner of m->recipient_id (this node or a
 * peer); storage removes its outbox entry when the copy lands. While the
 * owner answers but refuses, tries again for up to wait_ms (0: once).
 * Returns 0 when the copy landed, -1 when it must stay in the outbox.
 * A copy that lands on this node enters the handoff barrier: the caller
 * must not hold it (no claim of a call). */
int send_deliver(cache_node *n, const msg *m, const char *rid, int wait_ms);

#endif
