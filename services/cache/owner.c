/*
 * owner.c - epoch fencing of every call to a cache node. See owner.h.
 */
#include "owner.h"

#include <string.h>

#include "handoff.h"
#include "hot.h"
#include "ids.h"
#include "lease.h"
#include "locks.h"

bool owner_is_self(const cache_node *n, const ring_t *ring, int64_t user_id)
{
    int self = ring_find(ring, n->name);
    return self >= 0 && ring_owner(ring, user_id) == self;
}

/* Fetches the ring when the node is behind epoch (the caller's), outside
 * the handoff barrier (check_held). */
static void catch_up(cache_node *n, int64_t epoch)
{
    /* Twice at most: a fetch shared with one that began before the
     * router published can still bring the older ring. */
    for (int tries = 0; tries < 2; tries++) {
        const ring_t *r = ringview_acquire(n->ring);
        bool behind = !r || r->epoch < epoch;
        ringview_release(n->ring, r);
        if (!behind)
            break;
        ringview_refresh(n->ring);
    }
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

/* owner_check inside the handoff barrier. It never fetches the ring:
 * the ring a fetch installs waits, in its clean-up scan, for calls that
 * hold an older ring, and a waiting handoff waits for every thread in
 * the barrier, so every call queued behind that handoff would wait for
 * the scan. Callers catch up before they enter (catch_up). */
static own_result check_held(cache_node *n, int64_t epoch, int64_t user_id,
                             const ring_t **ring)
{
    if (!lease_is_valid(n->lease))
        return OWN_NO_LEASE;
    const ring_t *r = ringview_acquire(n->ring);
    if (!r)
        return OWN_NO_RING;
    if (r->epoch != epoch || !owner_is_self(n, r, user_id)) {
        ringview_release(n->ring, r);
        return OWN_MISDIRECTED;
    }
    if (handoff_is_moving(n->handoff, n->name, user_id)) {
        ringview_release(n->ring, r);
        return OWN_MOVING;
    }
    *ring = r;
    return OWN_OK;
}

own_result owner_check(cache_node *n, const char *epoch_header, int64_t user_id,
                       const ring_t **ring)
{
    int64_t epoch;
    if (parse_epoch(epoch_header, &epoch))
        return OWN_BAD_EPOCH;
    catch_up(n, epoch);
    handoff_enter(n->handoff);
    own_result res = check_held(n, epoch, user_id, ring);
    if (res != OWN_OK)
        handoff_leave(n->handoff);
    return res;
}

void owner_catch_up(cache_node *n, const char *const *epoch_headers,
                    size_t count)
{
    int64_t newest = 0, epoch;
    for (size_t i = 0; i < count; i++)
        if (parse_epoch(epoch_headers[i], &epoch) == 0 && epoch > newest)
            newest = epoch;
    catch_up(n, newest);
}

own_result owner_check_entered(cache_node *n, const char *epoch_header,
                               int64_t user_id, const ring_t **ring)
{
    int64_t epoch;
    if (parse_epoch(epoch_header, &epoch))
        return OWN_BAD_EPOCH;
    /* The ring it would install would wait, in its clean-up, for the
     * rings this caller's earlier claims hold (owner_catch_up). */
    return check_held(n, epoch, user_id, ring);
}

void owner_forget_if_replaced(cache_node *n, const ring_t *ring,
                              int64_t user_id)
{
    if (ringview_is_current(n->ring, ring))
        return;
    /* The next ring leaves the user here: nothing in between could have
     * given it to another node, so what the call wrote is still right. */
    const ring_t *cur = ringview_acquire(n->ring);
    bool kept = cur && cur->epoch == ring->epoch + 1 &&
                owner_is_self(n, cur, user_id) &&
                owner_is_self(n, ring, user_id);
    ringview_release(n->ring, cur);
    if (kept)
        return;
    locks_acquire(n->locks, user_id);
    hot_forget_user(n->hot, user_id);
    locks_release(n->locks, user_id);
    owner_count_forgets(n, 1);
}

void owner_count_forgets(cache_node *n, int64_t by)
{
    metrics_count(n->metrics, "cache_replaced_ring_forgets_total",
                  "Hot mailboxes forgotten by calls that ended under a "
                  "replaced ring",
                  by);
}

void owner_release(cache_node *n, const ring_t *ring, int64_t user_id)
{
    owner_forget_if_replaced(n, ring, user_id);
    ringview_release(n->ring, ring);
    handoff_leave(n->handoff);
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
    case OWN_NO_LEASE:
        hs_reply_problem(rep, 503, "No lease",
                         "this node holds no router lease; retry");
        rep->retry_after_s = 1;
        break;
    case OWN_MOVING:
        hs_reply_problem(rep, 503, "User moving",
                         "the user is being handed to another node; retry");
        rep->retry_after_s = 1;
        break;
    default:
        hs_reply_problem(rep, 421, "Misdirected request",
                         "this node does not own the user at that epoch; "
                         "refresh the ring and retry");
        break;
    }
}
