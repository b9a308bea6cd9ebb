/*
 * shardmap.c - users to logical shards to PostgreSQL instances.
 *
 * The map string is parsed strictly (digits, '-', ':' and ',' only, no
 * spaces) because a wrong map silently sends users to an instance that
 * does not hold their mailbox: every mistake stops start-up instead.
 */
#include "shardmap.h"

#include <stdio.h>
#include <stdlib.h>

#include "ring.h"

/* Parses a decimal number at *s (digits only, at most 9 of them) and
 * advances *s past it. Returns 0, or -1 when there is no number. */
static int parse_number(const char **s, int *out)
{
    const char *p = *s;
    int value = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 10) {
        value = value * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 9)
        return -1;
    *out = value;
    *s = p;
    return 0;
}

/* Parses one "first-last:instance" (or "n:instance") at *s. */
static int parse_range(const char **s, int *first, int *last, int *instance)
{
    if (parse_number(s, first) != 0)
        return -1;
    *last = *first;
    if (**s == '-') {
        (*s)++;
        if (parse_number(s, last) != 0)
            return -1;
    }
    if (**s != ':')
        return -1;
    (*s)++;
    return parse_number(s, instance);
}

/* Fills m->instance_of from spec; entries start at -1 (unassigned). */
static int apply_spec(shardmap *m, const char *spec, char *errbuf,
                      size_t errcap)
{
    const char *s = spec;
    for (int i = 0; i < m->shards; i++)
        m->instance_of[i] = -1;
    /* Each range assigns at least one shard, so this bounds the loop. */
    for (int ranges = 0; ranges <= m->shards; ranges++) {
        int first, last, instance;
        if (parse_range(&s, &first, &last, &instance) != 0) {
            snprintf(errbuf, errcap, "malformed range at \"%s\"", s);
            return -1;
        }
        if (first > last || last >= m->shards) {
            snprintf(errbuf, errcap, "range %d-%d outside 0-%d", first, last,
                     m->shards - 1);
            return -1;
        }
        if (instance >= m->instances) {
            snprintf(errbuf, errcap, "instance %d does not exist (%d given)",
                     instance, m->instances);
            return -1;
        }
        for (int shard = first; shard <= last; shard++) {
            if (m->instance_of[shard] != -1) {
                snprintf(errbuf, errcap, "shard %d mapped twice", shard);
                return -1;
            }
            m->instance_of[shard] = instance;
        }
        if (*s == '\0')
            return 0;
        if (*s != ',') {
            snprintf(errbuf, errcap, "unexpected \"%s\"", s);
            return -1;
        }
        s++;
    }
    snprintf(errbuf, errcap, "more ranges than shards");
    return -1;
}

static int check_complete(const shardmap *m, char *errbuf, size_t errcap)
{
    for (int shard = 0; shard < m->shards; shard++) {
        if (m->instance_of[shard] == -1) {
            snprintf(errbuf, errcap, "shard %d is not mapped", shard);
            return -1;
        }
    }
    return 0;
}

shardmap *shardmap_new(int shards, int instances, const char *spec,
                       char *errbuf, size_t errcap)
{
    if (shards < 1 || shards > SHARDMAP_SHARDS_MAX || instances < 1 ||
        instances > SHARDMAP_INSTANCES_MAX) {
        snprintf(errbuf, errcap, "need 1-%d shards and 1-%d instances",
                 SHARDMAP_SHARDS_MAX, SHARDMAP_INSTANCES_MAX);
        return NULL;
    }
    shardmap *m = calloc(1, sizeof *m);
    if (!m || !(m->instance_of = calloc((size_t)shards, sizeof(int)))) {
        free(m);
        snprintf(errbuf, errcap, "out of memory");
        return NULL;
    }
    m->shards = shards;
    m->instances = instances;
    if (!spec || !*spec) {
        for (int shard = 0; shard < shards; shard++)
            m->instance_of[shard] = shard % instances;
        return m;
    }
    if (apply_spec(m, spec, errbuf, errcap) != 0 ||
        check_complete(m, errbuf, errcap) != 0) {
        shardmap_free(m);
        return NULL;
    }
    return m;
}

void shardmap_free(shardmap *m)
{
    if (!m)
        return;
    free(m->instance_of);
    free(m);
}

int shardmap_shard(const shardmap *m, int64_t user_id)
{
    return (int)(ring_hash_user(user_id) % (uint64_t)m->shards);
}

int shardmap_instance(const shardmap *m, int shard)
{
    return m->instance_of[shard];
}
