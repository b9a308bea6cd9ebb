/*
 * membership.h - the router's view of its cache nodes: the configured
 * node list (ROUTER_NODES), its canonical string (what the epoch file
 * compares across restarts), and the last heartbeat seen from each node.
 *
 * ROUTER_NODES is the first membership only: the ring then changes by
 * failover and by the admin API, and lives in the router state
 * (state.h). The heartbeat table holds whatever node heartbeats.
 */
#ifndef ROUTER_MEMBERSHIP_H
#define ROUTER_MEMBERSHIP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ring.h"

/* Longest canonical membership string: RING_NODES_MAX entries of
 * "name=url@slot," plus the vnodes prefix. */
#define MEMBERSHIP_STRING_MAX (32 + RING_NODES_MAX * (sizeof(ring_node) + 4))

/* Parses "name=url,name=url" (blanks around entries ignored) into
 * nodes[0..*nnodes). Names are 1-63 characters, URLs 1-127 and start
 * with http:// or https://; neither may hold blanks or control
 * characters, a name no '=' and names are unique; 1 to RING_NODES_MAX
 * entries. Returns 0, or -1 with the reason in errbuf. Pure. */
int membership_parse(const char *spec, ring_node *nodes, int *nnodes,
                     char *errbuf, size_t errcap);

/* Canonical form of a membership, "vnodes=V,name=url@slot,...": equal strings
 * mean the same placement of every user. Returns the length, or -1 if
 * cap is too small. */
int membership_string(const ring_node *nodes, int nnodes, int vnodes, char *out,
                      size_t cap);

/* Liveness of every node that heartbeats: ring members, standbys and
 * nodes waiting to be added. */
typedef struct member_state {
    char name[64];
    char url[128];        /* the URL the node announces */
    int64_t epoch;        /* the epoch the node last reported */
    int64_t last_seen_ms; /* monotonic ms of the last heartbeat */
} member_state;

/* Room for a full ring plus as many spares. */
#define MEMBERS_MAX (2 * RING_NODES_MAX)
/* A node unheard this long may give its entry to a new node when the
 * table is full: nodes come and go under new names (add-node). */
#define MEMBERS_FORGET_MS (60 * 1000)

typedef struct member_table {
    pthread_mutex_t lock; /* guards everything below */
    int64_t start_ms;     /* when this router started listening */
    int n;
    member_state members[MEMBERS_MAX];
} member_table;

/* An empty table; start_ms is the router's start. Returns 0 or -1. */
int members_init(member_table *t, int64_t start_ms);
void members_destroy(member_table *t);

/* Records a heartbeat of node name at monotonic time now_ms, adding the
 * node when new (in place of the longest unheard one, if the table is
 * full and that one was unheard for MEMBERS_FORGET_MS). Returns 0, or -1
 * when there is no room. Thread safe. */
int members_heartbeat(member_table *t, const char *name, const char *url,
                      int64_t epoch, int64_t now_ms);

/* Milliseconds since name's last heartbeat (0 when it came after now_ms),
 * or -1 when this router never heard it. Thread safe. */
int64_t members_age(member_table *t, const char *name, int64_t now_ms);

/* A node heard within max_age_ms that r does not hold by name (a standby),
 * the smallest name first so every router picks alike. Returns 0 and
 * fills *out (slot empty), or -1 when there is none. Thread safe. */
int members_pick_spare(member_table *t, const ring_t *r, int64_t now_ms,
                       int64_t max_age_ms, ring_node *out);

/* Every node as JSON [{"name","url","epoch","age_ms"}] (new reference). */
json_t *members_to_json(member_table *t, int64_t now_ms);

#endif
