/*
 * placement.c - storage's shard map on a cache node. See placement.h.
 */
#include "placement.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

typedef struct map {
    int shards;
    int instances;
    struct map *older; /* replaced maps, kept until placement_free */
    int instance_of[];
} map;

struct placement {
    _Atomic(map *) current; /* NULL until the first install */
    pthread_mutex_t lock;   /* serialises installs */
    atomic_bool is_fetching;
    _Atomic int64_t next_fetch_ms;
};

placement *placement_new(void)
{
    placement *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    atomic_init(&p->current, NULL);
    atomic_init(&p->is_fetching, false);
    atomic_init(&p->next_fetch_ms, 0);
    return p;
}

void placement_free(placement *p)
{
    if (!p)
        return;
    map *m = atomic_load(&p->current);
    while (m) {
        map *older = m->older;
        free(m);
        m = older;
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* A new map from a well-formed answer, or NULL. */
static map *map_from_json(const json_t *answer)
{
    json_int_t shards = 0, instances = 0;
    json_t *of = NULL;
    if (json_unpack((json_t *)answer, "{s:I,s:I,s:o}", "shards", &shards,
                    "instances", &instances, "instance_of", &of) != 0 ||
        shards < 1 || shards > PLACEMENT_SHARDS_MAX || instances < 1 ||
        instances > PLACEMENT_INSTANCES_MAX || !json_is_array(of) ||
        json_array_size(of) != (size_t)shards)
        return NULL;
    map *m = calloc(1, sizeof *m + (size_t)shards * sizeof m->instance_of[0]);
    if (!m)
        return NULL;
    m->shards = (int)shards;
    m->instances = (int)instances;
    for (int s = 0; s < m->shards; s++) {
        const json_t *v = json_array_get(of, (size_t)s);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= instances) {
            free(m);
            return NULL;
        }
        m->instance_of[s] = (int)json_integer_value(v);
    }
    return m;
}

static bool map_equal(const map *a, const map *b)
{
    return a && b && a->shards == b->shards && a->instances == b->instances &&
           memcmp(a->instance_of, b->instance_of,
                  (size_t)a->shards * sizeof a->instance_of[0]) == 0;
}

int placement_install(placement *p, const json_t *answer)
{
    map *m = map_from_json(answer);
    if (!m)
        return -1;
    pthread_mutex_lock(&p->lock);
    map *current = atomic_load(&p->current);
    if (map_equal(current, m)) {
        free(m);
    } else {
        m->older = current;
        atomic_store(&p->current, m);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int placement_instance(const placement *p, int64_t user_id)
{
    const map *m = atomic_load(&((placement *)p)->current);
    if (!m)
        return 0;
    return m->instance_of[ring_hash_user(user_id) % (uint64_t)m->shards];
}

bool placement_claim_fetch(placement *p, int64_t now_ms)
{
    if (now_ms < atomic_load(&p->next_fetch_ms))
        return false;
    return !atomic_exchange(&p->is_fetching, true);
}

void placement_fetched(placement *p, bool is_ok, int64_t now_ms)
{
    atomic_store(&p->next_fetch_ms,
                 now_ms + (is_ok ? PLACEMENT_REFRESH_MS : PLACEMENT_RETRY_MS));
    atomic_store(&p->is_fetching, false);
}
