/*
 * routes.h - the public REST API (SPEC 4). Every handler reads top to
 * bottom: authenticate (401), authorise (403), validate fully (400, 404,
 * 413), then forward to the user's owner cache node, whose answer is
 * the public one.
 */
#ifndef GATEWAY_ROUTES_H
#define GATEWAY_ROUTES_H

#include <stddef.h>

#include "http_server.h"

/* Handlers take a gateway * (gateway.h) as the request context. */
extern const hs_route gateway_routes[];
extern const size_t gateway_nroutes;
extern const hs_route gateway_event_routes[];
extern const size_t gateway_event_nroutes;

#endif
