/*
 * routes.h - the cache node's internal HTTP API (docs/internal-api.md).
 * Each handler parses, validates, checks ownership at the caller's epoch,
 * then hands over to send.c or lists.c.
 */
#ifndef CACHE_ROUTES_H
#define CACHE_ROUTES_H

#include <stddef.h>

#include "http_server.h"
#include "node.h"
#include "query.h"

/* One list read whose query is parsed: the conversation list (cid
 * NULL) or a conversation's messages of user uid, fenced at epoch (the
 * text of an X-Ring-Epoch header), answered in rep as GET
 * /internal/users/{uid}/conversations[/{cid}/messages] answers. rid is
 * the request id for the logs. */
void routes_read_list(cache_node *n, const char *epoch, int64_t uid,
                      const char *cid, const list_query *q, const char *rid,
                      hs_reply *rep);

/* The checks of routes_read_list before it reads, for a read of a batch
 * that holds the handoff barrier (owner_check_entered): the conversation
 * is uid's, and uid is this node's at epoch. Returns 0 with *ring held
 * (give it back with ringview_release), or -1 with the refusal in rep. */
int routes_claim_list_entered(cache_node *n, const char *epoch, int64_t uid,
                              const char *cid, const ring_t **ring,
                              hs_reply *rep);

extern const hs_route cache_routes[];
extern const size_t cache_nroutes;
extern const hs_route cache_event_routes[];
extern const size_t cache_event_nroutes;

#endif
