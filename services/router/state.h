/*
 * state.h - where the routers keep what must outlive any one of them:
 * the leader lease and the ring in force (schema/002_router.sql).
 *
 * Two or more routers share one row in PostgreSQL (ROUTER_PG_URL). The
 * lease is a row with a holder, a term and an expiry, taken and renewed by
 * conditional UPDATEs (no home-made consensus: PostgreSQL's row lock
 * decides). A ring is written only by the holder of an unexpired lease at
 * its term, and only with a larger epoch, so a deposed leader cannot
 * publish and epochs never repeat, whichever router restarts.
 *
 * Without ROUTER_PG_URL a router runs alone: it always leads, and its
 * epoch survives restarts through the epoch file (epochfile.h) if one is
 * set. One thread uses the state at a time (the caller serialises).
 */
#ifndef ROUTER_STATE_H
#define ROUTER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rstate rstate;

/* pg_url NULL or "": alone, with epoch_file (may be NULL). name is this
 * router's identity in the lease. NULL on allocation failure. Connects
 * lazily. */
rstate *rstate_new(const char *pg_url, const char *epoch_file,
                   const char *name);
void rstate_free(rstate *s);

bool rstate_is_shared(const rstate *s);

typedef struct rstate_view {
    bool is_leader; /* this router holds the lease now */
    int64_t term;   /* the lease term when is_leader */
    int64_t epoch;  /* the stored ring's epoch (0: none yet) */
    char *ring;     /* its JSON when newer than known_epoch, else NULL;
                       owned by the caller (free) */
} rstate_view;

/* Takes or renews the lease for lease_ms and reads the stored ring if its
 * epoch is above known_epoch. fence: a leader renewing takes a new term
 * all the same, so that a publish of its old term still in flight (one
 * whose outcome it could not learn) can no longer commit. Returns 0 and
 * fills *v, or -1 when the database did not answer (logged; *v then says
 * nothing). */
int rstate_tick(rstate *s, int lease_ms, int64_t known_epoch, bool fence,
                rstate_view *v);

/* Stores ring_json at epoch, if this router still holds the lease at term
 * and epoch is above the stored one. Returns 0 when stored, 1 when
 * refused (lease lost or epoch not newer), -1 on a database error. Alone:
 * membership is the canonical membership string for the epoch file. */
int rstate_publish(rstate *s, int64_t term, int64_t epoch,
                   const char *ring_json, const char *membership);

/* Alone only: the epoch to start from for membership (epochfile rules).
 * Returns 0, or -1 with the reason in errbuf. */
int rstate_initial_epoch(rstate *s, const char *membership, int64_t *epoch,
                         char *errbuf, size_t errcap);

#endif
