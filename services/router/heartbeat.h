/*
 * heartbeat.h - the body of POST /internal/heartbeat, which each cache
 * node sends the router: {"name":..,"url":..,"epoch":N}.
 *
 * Parsing is pure (buf, len in, a struct out, no I/O), so routes.c only
 * acts on the result and the fuzz target (tests/fuzz/fuzz_heartbeat.c)
 * links it alone.
 */
#ifndef ROUTER_HEARTBEAT_H
#define ROUTER_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"

typedef struct heartbeat {
    ring_node node; /* the name and URL the cache node announces */
    int64_t epoch;  /* the ring epoch the node holds, >= 0 */
} heartbeat;

/* Parses {"name":..,"url":..,"epoch":N} from buf[0..len): name and url
 * as ring_node_from_json accepts them, epoch an integer >= 0, no
 * duplicate keys. Returns 0, or -1 when the body is not that shape (a
 * 400); buf NULL is -1. */
int heartbeat_parse(const char *buf, size_t len, heartbeat *hb);

#endif
