/*
 * shardmap.h - which PostgreSQL instance holds a user's mailbox.
 *
 * Two steps, so that data can move without rehashing users: a user maps
 * to one of a fixed number of logical shards (ring_hash_user(user) %
 * shards, decided once for the life of the data), and each shard maps to
 * an instance through the shard map. Moving a shard to another instance
 * changes only the map (STORAGE_SHARD_MAP), never a user's shard.
 *
 * A shardmap is built once in main and read-only afterwards, so any
 * thread may use it without locks.
 */
#ifndef STORAGE_SHARDMAP_H
#define STORAGE_SHARDMAP_H

#include <stddef.h>
#include <stdint.h>

/* Bounds of STORAGE_SHARDS and of the number of instances. */
#define SHARDMAP_SHARDS_MAX 65536
#define SHARDMAP_INSTANCES_MAX 64

typedef struct shardmap {
    int shards;
    int instances;
    int *instance_of; /* shards entries: the instance of each shard */
} shardmap;

/* Builds the map of shards logical shards onto instances instances.
 * spec is "first-last:instance,..." (a single shard may be written "n:i")
 * and must assign every shard exactly once to an existing instance; NULL
 * or "" means round robin (shard s on instance s % instances). Returns
 * NULL with errbuf saying why when spec is invalid or allocation fails. */
shardmap *shardmap_new(int shards, int instances, const char *spec,
                       char *errbuf, size_t errcap);
void shardmap_free(shardmap *m);

/* Logical shard of a user: ring_hash_user(user_id) % shards. */
int shardmap_shard(const shardmap *m, int64_t user_id);
/* Instance holding a shard (0 <= shard < shards). */
int shardmap_instance(const shardmap *m, int shard);

#endif
