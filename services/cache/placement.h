/*
 * placement.h - storage's shard map as a cache node knows it: which
 * PostgreSQL instance holds a user's mailbox (GET /internal/placement).
 *
 * The node queues its writes per instance with it (store.c), so a slow or
 * stopped instance holds up only the writes bound for it, and each call
 * to storage carries writes of one instance, which commit together. The
 * map is a hint for grouping, nothing more: storage places every write
 * itself, so a map that is unknown (storage not reached yet) or stale (a
 * shard moved) costs batching, never correctness. Until it is known every
 * user is on instance 0.
 *
 * Readers take no lock: an installed map is never changed or freed while
 * the placement lives; a different map replaces it and the old one is
 * kept until placement_free.
 */
#ifndef CACHE_PLACEMENT_H
#define CACHE_PLACEMENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* How often a node asks again: soon while it has no map, rarely once it
 * has one (a shard moves only with a storage restart). */
#define PLACEMENT_RETRY_MS 5000
#define PLACEMENT_REFRESH_MS 60000
/* Bounds of what a map may hold, as storage's shardmap.h. */
#define PLACEMENT_SHARDS_MAX 65536
#define PLACEMENT_INSTANCES_MAX 64

typedef struct placement placement;

placement *placement_new(void);
void placement_free(placement *p);

/* Checks a GET /internal/placement answer ({"shards":S,"instances":I,
 * "instance_of":[S instances]}) and installs it when it differs from the
 * current one. Returns 0, or -1 (nothing changed) when it is malformed. */
int placement_install(placement *p, const json_t *answer);

/* The instance of user_id's mailbox; 0 while no map is known. */
int placement_instance(const placement *p, int64_t user_id);

/* True for exactly one caller when the map is due to be fetched at
 * now_ms; that caller fetches and reports with placement_fetched. */
bool placement_claim_fetch(placement *p, int64_t now_ms);
void placement_fetched(placement *p, bool is_ok, int64_t now_ms);

#endif
