/*
 * owner.h - fencing: a cache node serves a user only if it owns the user
 * in the ring at the epoch the caller routed by.
 *
 * The caller (gateway or peer node) sends its ring epoch in X-Ring-Epoch.
 * Older than ours: the caller is behind, refuse (421) so it refreshes.
 * Newer than ours: we are behind, refresh first. Equal: serve only users
 * whose token belongs to this node. Two nodes at one epoch never both own
 * a user, so a caller with any epoch reaches at most one server.
 *
 * Two more conditions, for failures and planned moves: the node serves
 * only while its router lease runs (lease.h), and not a user that a
 * handoff under way is moving to another node (handoff.h).
 */
#ifndef CACHE_OWNER_H
#define CACHE_OWNER_H

#include "http_server.h"
#include "node.h"

typedef enum {
    OWN_OK = 0,
    OWN_MISDIRECTED, /* 421: stale epoch or not the owner */
    OWN_NO_RING,     /* 503: no ring from the router yet */
    OWN_BAD_EPOCH,   /* 400: X-Ring-Epoch missing or malformed */
    OWN_NO_LEASE,    /* 503: no router lease: the node may be replaced */
    OWN_MOVING,      /* 503: the user is being handed to another node */
} own_result;

/* On OWN_OK, *ring holds a reference and the call counts as in flight
 * for handoffs (handoff.h): end it with owner_release. */
own_result owner_check(cache_node *n, const char *epoch_header, int64_t user_id,
                       const ring_t **ring);
/* Ends a call on user_id claimed by owner_check, after its last write to
 * Redis and outside the user's lock (owner_forget_if_replaced). */
void owner_release(cache_node *n, const ring_t *ring, int64_t user_id);

/* Forgets user_id's hot mailbox (under the user's lock: not held by the
 * caller) when ring, held since the call's check, is no longer the one
 * in force, unless the ring in force is the next one and leaves the
 * user here. A ring change's clean-up waits for calls under the older
 * ring only for a bound (handoff.c), so such a call may have written
 * the keys of a user this node lost after the clean-up scanned past
 * them; a later ring giving the user back would serve them. */
void owner_forget_if_replaced(cache_node *n, const ring_t *ring,
                              int64_t user_id);
/* Counts such forgets (by 0: shows the counter before any). */
void owner_count_forgets(cache_node *n, int64_t by);

/* owner_check for a call that holds the handoff barrier already
 * (handoff_enter), as a batch of reads does once for all its reads: the
 * barrier lets a waiting handoff go first, so a thread entering it a
 * second time would wait for the handoff, which waits for that thread.
 * On OWN_OK, *ring holds a reference: give it back with
 * ringview_release. Unlike owner_check it does not catch up first: a
 * node behind the caller refuses (421). A ring installed while the
 * caller holds the rings of earlier claims would wait, in its clean-up
 * (handoff_ring_changed), for those very claims. */
own_result owner_check_entered(cache_node *n, const char *epoch_header,
                               int64_t user_id, const ring_t **ring);

/* Fetches the ring when the node is behind the newest of the given
 * X-Ring-Epoch values (malformed ones are skipped): what a batch does
 * before it enters the barrier and claims anything. */
void owner_catch_up(cache_node *n, const char *const *epoch_headers,
                    size_t count);

/* True if this node owns user_id in ring. */
bool owner_is_self(const cache_node *n, const ring_t *ring, int64_t user_id);

/* Answers a refused owner_check with its problem+json. */
void owner_reply_refusal(cache_node *n, own_result res, hs_reply *rep);

#endif
