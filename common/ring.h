/*
 * ring.h - consistent hashing of users onto cache nodes.
 *
 * Each node owns `vnodes` tokens on a 64-bit ring: token i of node n is
 * ring_hash of the string "<slot>#<i>", where the slot is the node's name
 * unless it took over another node's tokens (ring_node.slot). A user belongs to
 * the node of the first token clockwise from ring_hash_user(user id)
 * (wrapping). Adding or removing one of N nodes moves about 1/N of the users.
 * The ring is immutable once built; a new membership builds a new ring with a
 * new epoch, so readers can hold a pointer without locks (the owner of the
 * ring_t decides when to free an old one).
 */
#ifndef MSG_RING_H
#define MSG_RING_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "constants.h"

typedef struct ring_node {
    char name[64]; /* stable node identity, e.g. "cache-1" */
    char url[128]; /* base URL, e.g. "http://127.0.0.1:18301" */
    /* Whose tokens the node holds: token i is ring_hash("<slot>#<i>").
     * Empty means the node's own name. A standby that takes over a dead
     * node takes its slot, and with it exactly its users. */
    char slot[64];
} ring_node;

typedef struct ring_token {
    uint64_t hash;
    int node; /* index into nodes[] */
} ring_token;

typedef struct ring {
    int64_t epoch;
    /* Which attempt of a planned change published this ring (router
     * admin.c), 0 for a ring no handoff prepared: a node keeps the hot
     * mailboxes it imported only for the attempt that won. */
    int64_t attempt;
    int vnodes;
    int nnodes;
    ring_node nodes[RING_NODES_MAX];
    size_t ntokens;
    ring_token *tokens; /* sorted by hash, owned */
} ring_t;

/* 64-bit hash (FNV-1a with a splitmix64 finaliser). Stable forever: it
 * decides where users live. */
uint64_t ring_hash(const void *buf, size_t len);
uint64_t ring_hash_user(int64_t user_id);

/* Builds a ring. Returns NULL on allocation failure, nnodes out of
 * [1, RING_NODES_MAX] or vnodes < 1. The caller owns the result. */
ring_t *ring_new(int64_t epoch, int vnodes, const ring_node *nodes, int nnodes);
void ring_free(ring_t *r);
/* A copy of r (attempt included), or NULL on allocation failure. */
ring_t *ring_copy(const ring_t *r);

/* Index into r->nodes of the owner of user_id. */
int ring_owner(const ring_t *r, int64_t user_id);

/* Index of the node named name, or -1. */
int ring_find(const ring_t *r, const char *name);

/* A closed interval of user hashes (ring_hash_user). */
typedef struct ring_range {
    uint64_t lo, hi;
} ring_range;

/* The hashes node (an index into r->nodes, or -1 for none) does not own
 * under r, as at most r->ntokens + 1 disjoint ranges in ascending order,
 * neighbours merged, into out (cap entries). Returns how many, or -1
 * when cap is too small. A user is not node's exactly when its hash
 * lies in one of them. Pure. */
int ring_foreign_ranges(const ring_t *r, int node, ring_range *out, size_t cap);

/* The slot whose tokens node holds: its slot, else its name. */
const char *ring_node_slot(const ring_node *node);

/* JSON form, used by the router to publish and by others to read:
 * {"epoch":N,"vnodes":V,"nodes":[{"name":..,"url":..,"slot":..},...]}
 * and "attempt":A when A is not 0 ("slot" and "attempt" are optional on
 * input).
 * ring_to_json returns a new string (caller frees with free()) or NULL.
 * ring_from_json parses buf[0..len) and builds the ring, or NULL. */
char *ring_to_json(const ring_t *r);
ring_t *ring_from_json(const char *buf, size_t len);

/* Reads one node of that form, {"name":..,"url":..} and an optional
 * "slot" (other members are ignored), into *node: each must be a
 * non-empty string without NUL that fits its field. Returns 0, or -1 with *node
 * unspecified. j is borrowed. A cache node's heartbeat to the router names
 * itself so. */
int ring_node_from_json(const json_t *j, ring_node *node);

#endif
