/*
 * owner.c - epoch fencing of every call to a cache node. See owner.h.
 */
#include "owner.h"

#include <string.h>

#include "ids.h"

bool owner_is_self(const cache_node *n, const ring_t *ring, int64_t user_id)
{
    int self = ring_find(ring, n->name);
    return self >= 0 && ring_owner(ring, user_id) == self;
}

static int parse_epoch(const char *s, int64_t *epoch)
{
    if (!s)
        return -1;
    if (strcmp(s, "0") == 0) {
        *epoch = 0;
        return 0;
    }
    return ids_parse(s, strlen(s), epoch);
}

own_result owner_check(cache_node *n, const char *epoch_header, int64_t user_id,
                       const ring_t **ring)
{
    int64_t epoch;
    if (parse_epoch(epoch_header, &epoch))
        return OWN_BAD_EPOCH;
    const ring_t *r = ringview_acquire(n->ring);
    if (!r || r->epoch < epoch) {
        /* We are behind the caller: catch up before judging. */
        ringview_release(n->ring, r);
        ringview_refresh(n->ring);
        r = ringview_acquire(n->ring);
    }
    if (!r)
        return OWN_NO_RING;
    if (r->epoch != epoch || !owner_is_self(n, r, user_id)) {
        ringview_release(n->ring, r);
        return OWN_MISDIRECTED;
    }
    *ring = r;
    return OWN_OK;
}

void owner_reply_refusal(cache_node *n, own_result res, hs_reply *rep)
{
    switch (res) {
    case OWN_BAD_EPOCH:
        hs_reply_problem(rep, 400, "Bad ring epoch",
                         "X-Ring-Epoch is missing or not a number");
        break;
    case OWN_NO_RING:
        hs_reply_problem(rep, 503, "No ring", "the router has not answered");
        rep->retry_after_s = 1;
        break;
    default:
        hs_reply_problem(rep, 421, "Misdirected request",
                         "this node does not own the user at that epoch; "
                         "refresh the ring and retry");
        break;
    }
}
