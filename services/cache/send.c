/*
 * send.c - sends and recipient copies on the owner node. See send.h.
 *
 * Order matters and is the heart of the guarantees: the durable write
 * comes before the Redis update (Redis never shows what storage does not
 * hold) and before the answer (a 201 is durable); the recipient's copy is
 * in the same transaction as the sender's, as an outbox entry, so no crash
 * between the two copies can lose it.
 */
#include "send.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "constants.h"
#include "events.h"
#include "fill.h"
#include "handoff.h"
#include "lease.h"
#include "log.h"
#include "owner.h"
#include "store.h"

/* A floor refusal means another node wrote to this mailbox after our
 * floor was read (a failover): a few retries with the new floor settle
 * it. */
#define SEND_FLOOR_RETRIES 3

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Updates owner's hot mailbox after m landed in it durably. The
 * conversation is derived from the newest message, which hot_apply only
 * installs if it is newer. */
static void apply_hot(cache_node *n, const msg *m, int64_t owner,
                      const hot_meta *meta)
{
    char *ctext = msg_conversation_text(m, owner, NULL);
    char *mtext = msg_json_text(m, NULL);
    char *ce =
        ctext ? hot_entry(m->message_id, m->conversation_id, ctext) : NULL;
    char *me =
        mtext ? hot_entry(m->message_id, m->conversation_id, mtext) : NULL;
    if (ce && me)
        hot_apply(n->hot, owner, meta, m->conversation_id, ce, me);
    else /* cannot describe the change: forget rather than be stale */
        hot_flush(n->hot);
    /* The change is durable and in Redis: wake owner's long polls. */
    events_notify(n->events, owner);
    free(ce);
    free(me);
    free(ctext);
    free(mtext);
}

/* Answers with m's public form. */
static void reply_message(hs_reply *rep, int status, const msg *m)
{
    size_t len = 0;
    char *text = msg_json_text(m, &len);
    if (text)
        hs_reply_raw(rep, status, "application/json", text, len);
    else
        hs_reply_json(rep, status, msg_to_json(m));
    free(text);
}

static void build_message(const msg_send_req *req, int64_t id, msg *m)
{
    memset(m, 0, sizeof(*m));
    m->message_id = id;
    ids_conversation(req->sender_id, req->recipient_id, m->conversation_id,
                     sizeof(m->conversation_id));
    m->sender_id = req->sender_id;
    m->recipient_id = req->recipient_id;
    m->content = req->content; /* borrowed: never msg_clear this one */
    m->content_len = req->content_len;
    memcpy(m->client_message_id, req->client_message_id,
           sizeof(m->client_message_id));
    m->sent_at = ids_ms(id);
}

/* Writes the sender's copy under the sender's lock. On success res says
 * whether it was stored or replayed; m holds the new message. */
static store_err write_sender_copy(cache_node *n, const msg_send_req *req,
                                   const char *rid, msg *m,
                                   store_send_result *res)
{
    locks_acquire(n->locks, req->sender_id);
    hot_meta meta;
    store_err err = fill_meta_locked(n, req->sender_id, rid, &meta);
    for (int i = 0; !err && i <= SEND_FLOOR_RETRIES; i++) {
        int64_t id = ids_next(&n->ids, meta.max_id, wall_ms());
        if (id < 0) { /* the mailbox holds an id at the end of the space */
            err = STORE_BAD;
            break;
        }
        build_message(req, id, m);
        err = store_send(n, m, rid, res);
        if (err || res->outcome != SEND_FLOOR)
            break;
        meta.max_id = res->meta.max_id;
        err = i == SEND_FLOOR_RETRIES ? STORE_BAD : STORE_OK;
    }
    if (!err && res->outcome == SEND_STORED)
        apply_hot(n, m, req->sender_id, &res->meta);
    else if (err == STORE_DOWN) /* it may have landed all the same */
        hot_forget_user(n->hot, req->sender_id);
    locks_release(n->locks, req->sender_id);
    return err;
}

static bool same_send(const msg_send_req *req, const msg *stored)
{
    return stored->recipient_id == req->recipient_id &&
           stored->content_len == req->content_len &&
           memcmp(stored->content, req->content, req->content_len) == 0;
}

void send_message(cache_node *n, const msg_send_req *req, const char *rid,
                  const ring_t *ring, hs_reply *rep)
{
    msg m;
    store_send_result res;
    store_err err = write_sender_copy(n, req, rid, &m, &res);
    /* The claim on the sender ends with its copy: the recipient's copy is
     * another user's, claimed where it lands. Held on, it would keep a
     * handoff of this node waiting for the delivery, which may wait
     * seconds for another node (SEND_DELIVER_WAIT_MS). */
    owner_release(n, ring, req->sender_id);
    if (err) {
        /* Not "not stored": a write whose answer was lost may have
         * committed, and lands in both mailboxes. The same key is what
         * keeps a retry from storing it twice. */
        hs_reply_problem(rep, 503, "Storage unavailable",
                         "the message may or may not have been stored; retry "
                         "with the same client_message_id, which never "
                         "stores it twice");
        rep->retry_after_s = 1;
        return;
    }
    if (res.outcome == SEND_REPLAY) {
        if (!same_send(req, &res.stored)) {
            hs_reply_problem(rep, 409, "Conflict",
                             "client_message_id was already used for a "
                             "different recipient or content");
        } else {
            /* The recipient copy has landed or is queued in the outbox;
             * a pending one gets another try now. */
            if (res.outbox_pending)
                send_deliver(n, &res.stored, rid, SEND_DELIVER_WAIT_MS);
            reply_message(rep, 200, &res.stored);
        }
        msg_clear(&res.stored);
        return;
    }
    send_deliver(n, &m, rid, SEND_DELIVER_WAIT_MS);
    reply_message(rep, 201, &m);
}

int send_land_copy(cache_node *n, const msg *m, const char *rid)
{
    bool stored = false;
    hot_meta meta;
    locks_acquire(n->locks, m->recipient_id);
    store_err err = store_deliver(n, m, rid, &stored, &meta);
    if (!err && stored)
        apply_hot(n, m, m->recipient_id, &meta);
    else if (err == STORE_DOWN) /* it may have landed all the same */
        hot_forget_user(n->hot, m->recipient_id);
    locks_release(n->locks, m->recipient_id);
    return err ? -1 : 0;
}

/* {"message":{m's public form}}, the body of a peer's deliver. */
static char *message_body(const msg *m)
{
    size_t len = 0;
    char *mtext = msg_json_text(m, &len);
    if (!mtext)
        return NULL;
    static const char head[] = "{\"message\":";
    char *body = malloc(sizeof(head) - 1 + len + 2);
    if (body) {
        memcpy(body, head, sizeof(head) - 1);
        memcpy(body + sizeof(head) - 1, mtext, len);
        memcpy(body + sizeof(head) - 1 + len, "}", 2);
    }
    free(mtext);
    return body;
}

/* The outcome of one delivery attempt. */
typedef enum {
    DELIVERED,
    REFUSED,     /* the owner answered but did not land it: try again */
    MISDIRECTED, /* the owner refused our epoch: refresh the ring */
    UNREACHABLE, /* no answer: the owner is down, the outbox delivers */
} deliver_rc;

/* POSTs the copy to a peer node. */
static deliver_rc post_to_peer(cache_node *n, const ring_node *peer,
                               int64_t epoch, const msg *m, const char *rid)
{
    char *text = message_body(m);
    if (!text)
        return UNREACHABLE;
    char url[256], eh[48], rh[96];
    snprintf(url, sizeof(url), "%s/internal/deliver", peer->url);
    snprintf(eh, sizeof(eh), "X-Ring-Epoch: %" PRId64, epoch);
    snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid ? rid : "");
    hc_headers h = {.lines = {eh, rh}, .n = 2};
    hc_response resp = {0};
    hc_err err =
        hc_request(n->hops, "POST", url, &h, text, strlen(text), &resp);
    free(text);
    deliver_rc rc = err                  ? UNREACHABLE
                    : resp.status == 200 ? DELIVERED
                    : resp.status == 421 ? MISDIRECTED
                                         : REFUSED;
    if (rc != DELIVERED)
        log_msg("warn", "delivery of %" PRId64 " to %s failed: %s %ld",
                m->message_id, peer->name, hc_strerror(err), resp.status);
    hc_response_free(&resp);
    return rc;
}

/* Lands a copy for a recipient this node owns as a call for that user
 * would (owner.h): inside the handoff barrier, while the node holds its
 * lease, owns the user on its current ring and no planned move gates
 * the user. Else it waits in the outbox for the owner the next ring
 * names: landed here after a move took the user's hot mailbox, or by a
 * node the router has replaced, it would be missing from the owner's.
 * The caller must not hold the barrier (one entry per thread). */
static deliver_rc land_here(cache_node *n, const msg *m, const char *rid)
{
    handoff_enter(n->handoff);
    const ring_t *r = ringview_acquire(n->ring);
    bool may = r != NULL && owner_is_self(n, r, m->recipient_id) &&
               lease_is_valid(n->lease) &&
               !handoff_is_moving(n->handoff, n->name, m->recipient_id);
    deliver_rc rc = REFUSED;
    if (may) {
        /* Held until the copy landed, as a call's claim (owner.h). */
        if (send_land_copy(n, m, rid) == 0)
            rc = DELIVERED;
        owner_forget_if_replaced(n, r, m->recipient_id);
    }
    ringview_release(n->ring, r);
    handoff_leave(n->handoff);
    return rc;
}

/* One attempt against the owner in the current ring. The ring is let go
 * before the call: a ring change's clean-up waits for calls that hold an
 * older ring (handoff.c), and a post to a stopped peer takes up to the
 * hop timeout. */
static deliver_rc deliver_once(cache_node *n, const msg *m, const char *rid)
{
    const ring_t *r = ringview_acquire(n->ring);
    if (!r)
        return UNREACHABLE;
    bool here = owner_is_self(n, r, m->recipient_id);
    ring_node peer = r->nodes[ring_owner(r, m->recipient_id)];
    int64_t epoch = r->epoch;
    ringview_release(n->ring, r);
    /* land_here checks ownership again under its own ring. */
    return here ? land_here(n, m, rid) : post_to_peer(n, &peer, epoch, m, rid);
}

/* Pauses between attempts against an owner that refuses: short first (a
 * planned move gates a user for about a second), then longer. */
#define DELIVER_PAUSE_FIRST_MS 50
#define DELIVER_PAUSE_MAX_MS 400
/* Ring refreshes one delivery may ask for. */
#define DELIVER_REFRESHES_MAX 2

int send_deliver(cache_node *n, const msg *m, const char *rid, int wait_ms)
{
    int64_t deadline = clockms_monotonic() + wait_ms;
    int pause_ms = DELIVER_PAUSE_FIRST_MS;
    int refreshes = 0;
    for (;;) {
        deliver_rc rc = deliver_once(n, m, rid);
        /* Landed: storage removed the outbox entry when it wrote the
         * copy (mbox_deliver), so no separate ack costs another hop and
         * another transaction. If that removal failed, the worker
         * delivers again later, which is a harmless duplicate. */
        if (rc == DELIVERED)
            return 0;
        if (rc == UNREACHABLE)
            return -1;
        if (rc == MISDIRECTED && refreshes < DELIVER_REFRESHES_MAX) {
            refreshes++;
            ringview_refresh(n->ring);
            continue;
        }
        if (clockms_monotonic() + pause_ms > deadline)
            return -1;
        struct timespec ts = {.tv_sec = pause_ms / 1000,
                              .tv_nsec = (long)(pause_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        pause_ms = pause_ms * 2 < DELIVER_PAUSE_MAX_MS ? pause_ms * 2
                                                       : DELIVER_PAUSE_MAX_MS;
    }
}
