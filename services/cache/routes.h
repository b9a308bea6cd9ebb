/*
 * routes.h - the cache node's internal HTTP API (docs/internal-api.md).
 * Each handler parses, validates, checks ownership at the caller's epoch,
 * then hands over to send.c or lists.c.
 */
#ifndef CACHE_ROUTES_H
#define CACHE_ROUTES_H

#include <stddef.h>

#include "http_server.h"

extern const hs_route cache_routes[];
extern const size_t cache_nroutes;
extern const hs_route cache_event_routes[];
extern const size_t cache_event_nroutes;

#endif
