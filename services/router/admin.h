/*
 * admin.h - planned membership changes with warm handoff:
 *
 *   POST /internal/admin/nodes              {"name":..,"url":..}  add a node
 *   POST /internal/admin/nodes/{name}/remove                      drain one
 *
 * Only the leader changes the ring. Before it publishes the next ring, it
 * asks every node that loses users, several at once (POST
 * /internal/handoff on the cache node, services/cache/handoff.h), to
 * stop writing them and to copy their
 * hot mailboxes to their next owners; then it publishes, the sources see
 * the new epoch and drop what they gave away. Writes for a moving user
 * are refused with a retryable 503 for that window, never lost.
 */
#ifndef ROUTER_ADMIN_H
#define ROUTER_ADMIN_H

#include "http_server.h"

/* Sources handed over at once: each may scan a large Redis for seconds,
 * and every source gates its moving users until the ring is published,
 * so one after another the first would wait for all the others. The
 * router's pool of calls to nodes has this many handles (main.c). */
#define ADMIN_PARALLEL_SOURCES 8

void admin_add_node(hs_request *req, hs_reply *rep);
void admin_remove_node(hs_request *req, hs_reply *rep);

#endif
