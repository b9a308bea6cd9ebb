/*
 * membership.h - the router's view of its cache nodes: the configured
 * node list (ROUTER_NODES), its canonical string (what the epoch file
 * compares across restarts), and the last heartbeat seen from each node.
 *
 * The node list is fixed for the life of the process; heartbeats only
 * update the per-node liveness records, under the table's mutex.
 */
#ifndef ROUTER_MEMBERSHIP_H
#define ROUTER_MEMBERSHIP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

/* Longest canonical membership string: RING_NODES_MAX entries of
 * "name=url," plus the vnodes prefix. */
#define MEMBERSHIP_STRING_MAX                                                  \
    (32 + RING_NODES_MAX * (sizeof(((ring_node *)0)->name) +                   \
                            sizeof(((ring_node *)0)->url)))

/* Parses "name=url,name=url" (blanks around entries ignored) into
 * nodes[0..*nnodes). Names are 1-63 characters, URLs 1-127 and start
 * with http:// or https://; neither may hold blanks or control
 * characters, a name no '=' and names are unique; 1 to RING_NODES_MAX
 * entries. Returns 0, or -1 with the reason in errbuf. Pure. */
int membership_parse(const char *spec, ring_node *nodes, int *nnodes,
                     char *errbuf, size_t errcap);

/* Canonical form of a membership, "vnodes=V,name=url,...": equal strings
 * mean the same placement of every user. Returns the length, or -1 if
 * cap is too small. */
int membership_string(const ring_node *nodes, int nnodes, int vnodes, char *out,
                      size_t cap);

/* Liveness of each configured node, as reported by its heartbeats. */
typedef struct member_state {
    char name[64];
    char url[128];        /* configured: where the ring sends callers */
    char announced[128];  /* the URL the node last announced ("" before) */
    int64_t epoch;        /* the epoch the node last reported */
    int64_t last_seen_ms; /* monotonic ms of the last heartbeat; 0: never */
} member_state;

typedef struct member_table {
    pthread_mutex_t lock; /* guards members[] */
    int n;
    member_state members[RING_NODES_MAX];
} member_table;

/* Fills t with the nodes of r, none seen yet. Returns 0 or -1. */
int members_init(member_table *t, const ring_t *r);
void members_destroy(member_table *t);

typedef enum {
    MEMBERS_OK = 0,
    MEMBERS_UNKNOWN,      /* no configured node has that name */
    MEMBERS_URL_MISMATCH, /* recorded; the node newly announces a URL that
                             is not its configured one (log it once) */
} members_result;

/* Records a heartbeat of node name at monotonic time now_ms. url and
 * epoch are what the node announced. Thread safe. */
members_result members_heartbeat(member_table *t, const char *name,
                                 const char *url, int64_t epoch,
                                 int64_t now_ms);

#endif
