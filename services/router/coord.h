/*
 * coord.h - the router's coordinator: one thread that every tick takes or
 * renews the leader lease, follows the stored ring, and, on the leader,
 * replaces ring nodes that stopped heartbeating.
 *
 * A dead node's tokens go to a standby when one heartbeats (it takes the
 * dead node's slot, so exactly its users move), else the node leaves the
 * ring and its users fall to their ring successors. Safety rests on the
 * timings: a node's lease ends at most node_lease_ms after it sent a
 * heartbeat, and never after the granting leader's own lease; a leader
 * acts only after hearing nothing for dead_ms > node_lease_ms, and only
 * dead_ms after its leadership began. So the node has stopped serving
 * before anyone is given its users.
 */
#ifndef ROUTER_COORD_H
#define ROUTER_COORD_H

#include "routes.h"

typedef struct coord coord;

/* Starts the thread. initial (copied) is the first membership, used when
 * no ring was ever stored. NULL on failure. */
coord *coord_start(router *r, const ring_node *initial, int ninitial);
/* Stops and joins the thread. NULL is a no-op. */
void coord_stop(coord *c);

/* Installs ring (owned, taken) as the one in force if newer. */
void coord_install(router *r, ring_t *ring);

/* Under r->change_lock, on the leader: stores nodes as the ring of the
 * next epoch and installs it; attempt names the planned change that
 * prepared it (0: none), and term, when not 0, the lease term the change
 * began in: a leader that lost its lease meanwhile must not publish it,
 * even after it took the lease back (the sources let their users go when
 * another leader did not name the change). Returns the new epoch, 0 when
 * this router does not hold the lease (or lost it, or holds a later
 * term), -1 on error (the ring may or may not be stored). */
int64_t coord_publish(router *r, const ring_node *nodes, int nnodes,
                      int64_t attempt, int64_t term);

/* True while this router leads with an unexpired lease. */
bool coord_is_leader(router *r, int64_t now_ms);

#endif
