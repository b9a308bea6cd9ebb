/*
 * handoff.h - users changing owner on a cache node: the write gate and
 * in-flight barrier of a planned move, the warm copy of hot mailboxes to
 * their next owners, and the cleanup when a new ring arrives.
 *
 * A planned change (router admin.h) reaches each losing node as
 * POST /internal/handoff {"ring": "<next ring JSON>"}. The node then
 *   1. gates: every call for a user that the next ring gives to another
 *      node is refused with a retryable 503 (owner.c asks
 *      handoff_is_moving) until the node installs that epoch, or the
 *      leading router's heartbeat answers say the change was called off,
 *      or HANDOFF_GATE_MS passes without an answer naming the change
 *      (each renews the gate: the router may hand over from several
 *      nodes one after another before it publishes);
 *   2. waits for the calls that passed the ownership check before the
 *      gate to finish (a writer-preferring rwlock: calls hold it shared
 *      from owner_check to owner_release, the handoff takes it once
 *      exclusively), so no write lands after the copy;
 *   3. copies every key of the moving users to their next owners
 *      (POST /internal/handoff/import, Redis DUMP/RESTORE), then answers.
 * The router publishes the next ring only after every source answered.
 *
 * On each ring change the node drops the hot keys of users it no longer
 * owns, and, before the new ring is current, the keys it imported for
 * another change than the one that published it (each change carries
 * an attempt id: a retry prepares the same epoch), so a node never
 * serves a hot mailbox that another node may have changed since. Imports
 * for an epoch the node already holds are refused: a late one could
 * overwrite writes made since.
 */
#ifndef CACHE_HANDOFF_H
#define CACHE_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>

#include "constants.h" /* HANDOFF_GATE_MS */
#include "http_server.h"
#include "ring.h"

/* Encoded keys per import call; a key larger than this is left behind
 * (its window is rebuilt from storage on first read). */
#define HANDOFF_BATCH_BYTES (512 * 1024)

struct cache_node;
typedef struct handoff handoff;

handoff *handoff_new(void);
void handoff_free(handoff *h);

/* Brackets every call that passed the ownership check (shared side of
 * the barrier). */
void handoff_enter(handoff *h);
void handoff_leave(handoff *h);

/* True when uid is gated: a handoff is under way and the next ring gives
 * uid to another node than self. */
bool handoff_is_moving(handoff *h, const char *self, int64_t uid);

/* What the leading router said at a heartbeat sent at sent_ms: the
 * planned change it runs (0, 0: none) and the epoch in force. The change
 * this node gates for renews the gate; once the leader runs no such
 * change and never published it, the gate ends: it was called off. */
void handoff_heard(handoff *h, int64_t plan_epoch, int64_t plan_attempt,
                   int64_t ring_epoch, int64_t sent_ms);

/* A newer ring is about to be installed (ringview hook): from now on
 * imports for its epoch or older are refused, and users imported for a
 * change other than the one that published it are dropped. */
void handoff_ring_coming(struct cache_node *n, const ring_t *next);
/* The ring in force changed (ringview callback). */
void handoff_ring_changed(struct cache_node *n, const ring_t *old,
                          const ring_t *now);
/* Shows the clean-up's counter at 0 before anything moved it. */
void handoff_show_metrics(struct cache_node *n);

/* POST /internal/handoff and POST /internal/handoff/import. */
void handoff_handle_export(hs_request *req, hs_reply *rep);
void handoff_handle_import(hs_request *req, hs_reply *rep);

#endif
