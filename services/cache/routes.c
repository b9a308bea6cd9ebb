/*
 * routes.c - handlers of the cache node. Every one reads top to bottom:
 * parse, validate, check ownership (fencing), act, respond.
 */
#include "routes.h"

#include <string.h>

#include "events.h"
#include "handoff.h"
#include "lists.h"
#include "message.h"
#include "owner.h"
#include "query_http.h"
#include "reads.h"
#include "send.h"

static const char *epoch_of(const hs_request *req)
{
    return hs_header(req, "X-Ring-Epoch");
}

/* Fencing before any work on uid, at the caller's epoch (the text of
 * X-Ring-Epoch). Returns 0 with *ring held (give it back with
 * owner_release), or answers the refusal and returns -1. */
static int claim_owner_at(cache_node *n, const char *epoch, int64_t uid,
                          const ring_t **ring, hs_reply *rep)
{
    own_result own = owner_check(n, epoch, uid, ring);
    if (own == OWN_OK)
        return 0;
    owner_reply_refusal(n, own, rep);
    return -1;
}

static int claim_owner(cache_node *n, const hs_request *req, int64_t uid,
                       const ring_t **ring, hs_reply *rep)
{
    return claim_owner_at(n, epoch_of(req), uid, ring, rep);
}

static void handle_send(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    msg_send_req s;
    char why[256];
    msg_err err =
        msg_parse_send(req->body, req->body_len, &s, why, sizeof(why));
    if (err) {
        int status = msg_err_status(err);
        hs_reply_problem(rep, status,
                         status == 413 ? "Content Too Large" : "Bad Request",
                         why);
        return;
    }
    const ring_t *ring;
    if (claim_owner(n, req, s.sender_id, &ring, rep) == 0)
        send_message(n, &s, req->request_id, ring, rep); /* releases */
    msg_send_req_free(&s);
}

/* Lands a delivered recipient copy and answers. */
static void land_copy(cache_node *n, const msg *m, const char *rid,
                      hs_reply *rep)
{
    if (send_land_copy(n, m, rid)) {
        hs_reply_problem(rep, 503, "Storage unavailable",
                         "the copy did not land; retry");
        rep->retry_after_s = 1;
        return;
    }
    hs_reply_json(rep, 200, json_pack("{s:s}", "status", "landed"));
}

static void handle_deliver(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    msg m;
    if (msg_from_body(req->body, req->body_len, &m)) {
        hs_reply_problem(rep, 400, "Invalid delivery",
                         "body must be {\"message\": {...}}");
        return;
    }
    const ring_t *ring;
    if (claim_owner(n, req, m.recipient_id, &ring, rep) == 0) {
        land_copy(n, &m, req->request_id, rep);
        owner_release(n, ring, m.recipient_id);
    }
    msg_clear(&m);
}

/* Parses the user id path parameter and the list query. Returns 0, or
 * answers 400/404 and returns -1. */
static int parse_list(hs_request *req, sync_kind kind, int64_t *uid,
                      list_query *q, hs_reply *rep)
{
    const char *u = req->params[0];
    if (ids_parse_user(u, strlen(u), uid)) {
        hs_reply_problem(rep, 404, "Not found", "no such user");
        return -1;
    }
    const char *cid = kind == SYNC_MESSAGES ? req->params[1] : NULL;
    return query_http_parse(req, kind, *uid, cid, q, rep);
}

static bool in_conversation(const char *cid, int64_t uid)
{
    int64_t lo, hi;
    return ids_parse_conversation(cid, strlen(cid), &lo, &hi) == 0 &&
           (lo == uid || hi == uid);
}

/* 0 when cid is NULL or one of uid's conversations; else answers 404
 * and returns -1. */
static int check_conversation(const char *cid, int64_t uid, hs_reply *rep)
{
    if (cid == NULL || in_conversation(cid, uid))
        return 0;
    hs_reply_problem(rep, 404, "Not found",
                     "no such conversation for this user");
    return -1;
}

int routes_claim_list_entered(cache_node *n, const char *epoch, int64_t uid,
                              const char *cid, const ring_t **ring,
                              hs_reply *rep)
{
    if (check_conversation(cid, uid, rep))
        return -1;
    own_result own = owner_check_entered(n, epoch, uid, ring);
    if (own == OWN_OK)
        return 0;
    owner_reply_refusal(n, own, rep);
    return -1;
}

void routes_read_list(cache_node *n, const char *epoch, int64_t uid,
                      const char *cid, const list_query *q, const char *rid,
                      hs_reply *rep)
{
    const ring_t *ring;
    if (check_conversation(cid, uid, rep) ||
        claim_owner_at(n, epoch, uid, &ring, rep))
        return;
    lists_read(n, uid, cid, q, rid, NULL, rep);
    owner_release(n, ring, uid);
}

static void handle_conversations(hs_request *req, hs_reply *rep)
{
    int64_t uid;
    list_query q;
    if (parse_list(req, SYNC_CONVERSATIONS, &uid, &q, rep) == 0)
        routes_read_list(req->ctx, epoch_of(req), uid, NULL, &q,
                         req->request_id, rep);
}

static void handle_messages(hs_request *req, hs_reply *rep)
{
    int64_t uid;
    list_query q;
    if (parse_list(req, SYNC_MESSAGES, &uid, &q, rep) == 0)
        routes_read_list(req->ctx, epoch_of(req), uid, req->params[1], &q,
                         req->request_id, rep);
}

/* Long polls go to the node's long-poll listener when it has one
 * (CACHE_EVENTS_PORT): there a waiting poll holds no thread. */
static void handle_events(hs_request *req, hs_reply *rep)
{
    cache_node *n = req->ctx;
    if (!n->events_url[0]) {
        events_handle(req, rep);
        return;
    }
    /* hs_reply_header borrows the value until the reply is sent, which
     * happens on this thread before it runs another handler. */
    static _Thread_local char location[sizeof(n->events_url) + 2048];
    int len = snprintf(location, sizeof(location), "%s%s", n->events_url,
                       req->target);
    if (len < 0 || (size_t)len >= sizeof(location)) {
        hs_reply_problem(rep, 414, "Target too long",
                         "the request target does not fit a redirect");
        return;
    }
    hs_reply_raw(rep, 307, "text/plain", "", 0);
    /* Closed after the redirect: an idle keep-alive connection would hold
     * a thread of this listener for nothing. */
    if (hs_reply_header(rep, "Location", location) ||
        hs_reply_header(rep, "Connection", "close"))
        hs_reply_problem(rep, 500, NULL, "cannot set Location");
}

const hs_route cache_routes[] = {
    {"POST", "/internal/send", handle_send, "send"},
    {"POST", "/internal/deliver", handle_deliver, "deliver"},
    {"GET", "/internal/users/{}/conversations", handle_conversations,
     "conversations"},
    {"GET", "/internal/users/{}/conversations/{}/messages", handle_messages,
     "messages"},
    {"GET", "/internal/users/{}/events", handle_events, "events"},
    {"POST", "/internal/reads", reads_handle, "reads"},
    {"POST", "/internal/handoff", handoff_handle_export, "handoff"},
    {"POST", "/internal/handoff/import", handoff_handle_import,
     "handoff_import"},
};
const size_t cache_nroutes = sizeof(cache_routes) / sizeof(cache_routes[0]);

/* The long-poll listener (CACHE_EVENTS_PORT) serves the long poll only. */
const hs_route cache_event_routes[] = {
    {"GET", "/internal/users/{}/events", events_handle, "events"},
};
const size_t cache_event_nroutes =
    sizeof(cache_event_routes) / sizeof(cache_event_routes[0]);
