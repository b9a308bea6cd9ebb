/*
 * lease.h - the node's heartbeats to the routers and the lease they
 * grant.
 *
 * One thread per router (ROUTER_URL lists them) posts {"name","url",
 * "epoch"} every CACHE_HEARTBEAT_MS. Only the leading router grants a
 * lease (lease_ms > 0 in its answer), counted from the moment the
 * heartbeat was SENT, so the node's view of its lease always ends before
 * the router's view of it. The node serves only while its lease runs
 * (owner.c): a node cut off from the leader, or paused, stops serving
 * before the router may give its users to another node.
 *
 * An answer that names a newer epoch than the node holds makes it fetch
 * the ring first; the lease is extended only once the node holds that
 * epoch, so a paused node that wakes up never serves on a stale ring.
 */
#ifndef CACHE_LEASE_H
#define CACHE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

struct cache_node;
typedef struct lease lease;

/* router_urls: ROUTER_URL (urllist.h); self_url: the URL announced.
 * interval_ms: heartbeat period. Starts the threads. NULL on failure. */
lease *lease_start(struct cache_node *n, const char *router_urls,
                   const char *self_url, int interval_ms,
                   const char *internal_secret);
/* Stops and joins the threads. NULL is a no-op. */
void lease_stop(lease *l);

/* True while the lease runs. */
bool lease_is_valid(const lease *l);

#endif
