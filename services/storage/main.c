/*
 * main.c - the storage service: configuration, wiring, signals.
 *
 * Reads its configuration from the environment (README.md, Configuration),
 * builds the shard map and one connection pool per PostgreSQL instance, serves
 * the internal API (routes.c) until SIGTERM or SIGINT, then stops
 * accepting, lets in-flight requests finish (SHUTDOWN_GRACE_MS) and closes
 * the pools. Any bad variable or shard map stops start-up with a log line
 * naming it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "config.h"
#include "constants.h"
#include "http_server.h"
#include "log.h"
#include "mailbox.h"
#include "metrics.h"
#include "pgpool.h"
#include "routes.h"
#include "shardmap.h"

typedef struct storage_config {
    hs_config http; /* bind, port, threads, limits, internal secret */
    int shards;
    int pool_size;
    const char *pg_urls;
    const char *shard_map;
} storage_config;

static int read_config(storage_config *c)
{
    config_errors errs = {0};
    hs_config_from_env(&c->http, &errs);
    c->http.conn_memory = HTTP_CONN_MEMORY_INTERNAL;
    c->http.port = (int)config_int("STORAGE_PORT", 8400, 1, 65535, &errs);
    c->shards =
        (int)config_int("STORAGE_SHARDS", 16, 1, SHARDMAP_SHARDS_MAX, &errs);
    c->pool_size = (int)config_int("STORAGE_PG_POOL", 4, 1, 256, &errs);
    c->pg_urls = config_str("STORAGE_PG_URLS", NULL);
    c->shard_map = config_str("STORAGE_SHARD_MAP", NULL);
    if (!c->pg_urls || !*c->pg_urls)
        config_error(&errs, "STORAGE_PG_URLS", "required");
    return config_report(&errs) ? -1 : 0;
}

/* Splits the comma-separated URLs into urls[] (pointing into the returned
 * buffer, which the caller frees). NULL when an entry is empty or there
 * are more than SHARDMAP_INSTANCES_MAX. */
static char *split_urls(const char *list, char **urls, int *n)
{
    char *copy = strdup(list);
    if (!copy)
        return NULL;
    *n = 0;
    char *start = copy;
    for (int i = 0; i <= SHARDMAP_INSTANCES_MAX; i++) {
        char *comma = strchr(start, ',');
        if (comma)
            *comma = '\0';
        if (*start == '\0' || *n == SHARDMAP_INSTANCES_MAX)
            break;
        urls[(*n)++] = start;
        if (!comma)
            return copy;
        start = comma + 1;
    }
    free(copy);
    return NULL;
}

static void free_pools(pgpool **pools, int n)
{
    for (int i = 0; i < n; i++)
        pgpool_free(pools[i]);
}

static int open_pools(char **urls, int n, int size, metrics_t *metrics,
                      pgpool **pools)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "pg%d", i);
        pools[i] = pgpool_new(urls[i], name, size, metrics);
        int nprepared;
        const char *const *prepared = mbox_batch_statements(&nprepared);
        if (!pools[i] || pgpool_prepare(pools[i], prepared, nprepared) != 0) {
            pgpool_free(pools[i]);
            free_pools(pools, i);
            return -1;
        }
    }
    return 0;
}

/* Serves until a stop signal; returns the exit status. */
static int serve(const storage_config *c, mbox_store *store, metrics_t *metrics)
{
    hs_config hs = c->http;
    hs.service = "storage";
    hs.routes = storage_routes(&hs.nroutes);
    hs.ready = storage_ready;
    hs.ctx = store;
    hs.metrics = metrics;
    log_msg("info", "storage: %d instances, %d shards", store->map->instances,
            store->map->shards);
    return hs_serve_until_signal(&hs) ? 1 : 0;
}

int main(void)
{
    /* Block the stop signals before any thread exists, so every thread
     * inherits the mask and only hs_wait_for_signal receives them. */
    hs_block_signals();
    log_init("storage");

    storage_config c;
    if (read_config(&c) != 0)
        return 1;
    char *urls[SHARDMAP_INSTANCES_MAX];
    int ninstances;
    char *url_buf = split_urls(c.pg_urls, urls, &ninstances);
    if (!url_buf) {
        log_msg("error", "STORAGE_PG_URLS: empty entry or more than %d URLs",
                SHARDMAP_INSTANCES_MAX);
        return 1;
    }
    char errbuf[256];
    shardmap *map =
        shardmap_new(c.shards, ninstances, c.shard_map, errbuf, sizeof errbuf);
    if (!map) {
        log_msg("error", "STORAGE_SHARD_MAP: %s", errbuf);
        free(url_buf);
        return 1;
    }
    int status = 1;
    metrics_t *metrics = metrics_new("storage");
    pgpool *pools[SHARDMAP_INSTANCES_MAX];
    if (!metrics ||
        open_pools(urls, ninstances, c.pool_size, metrics, pools) != 0) {
        log_msg("error", "storage: out of memory at start-up");
        goto done;
    }
    batcher *batchers[SHARDMAP_INSTANCES_MAX] = {NULL};
    for (int i = 0; i < ninstances; i++) {
        batchers[i] = batcher_new(pools[i]);
        if (!batchers[i]) {
            log_msg("error", "storage: out of memory at start-up");
            goto stop;
        }
    }
    mbox_store store = {.map = map, .pools = pools, .batchers = batchers};
    status = serve(&c, &store, metrics);
stop:
    for (int i = 0; i < ninstances; i++)
        batcher_free(batchers[i]);
    free_pools(pools, ninstances);
done:
    metrics_free(metrics);
    shardmap_free(map);
    free(url_buf);
    return status;
}
