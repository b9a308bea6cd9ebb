/*
 * routes.h - the storage service's internal HTTP API (docs/internal-api.md,
 * section Storage): route table and readiness probe for hs_start.
 *
 * Every handler's request context (hs_config.ctx) is the service's
 * mbox_store.
 */
#ifndef STORAGE_ROUTES_H
#define STORAGE_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "http_server.h"

/* The route table (static storage); *n receives its length. */
const hs_route *storage_routes(size_t *n);

/* /readyz: every PostgreSQL instance answers SELECT 1. ctx is the
 * mbox_store. */
bool storage_ready(void *ctx);

#endif
