/*
 * routes.c - handlers of the public API. Each one authenticates,
 * authorises before it validates (SPEC 4: a token for another user gets
 * 403 whatever the request holds), validates fully with the same parsers
 * the cache node uses, then forwards to the owner node of the user and
 * passes its answer through. Nothing is forwarded that the gateway would
 * refuse, so a bad request never reaches a cache node.
 *
 * Rate limits answer 429 with Retry-After: a request that fails
 * authentication takes a token of its client address's bucket, so a
 * flood of bad tokens is cut short; a send takes a token of its user's
 * bucket right after authentication, before any other work.
 */
#include "routes.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "constants.h"

#include "auth.h"
#include "clockms.h"
#include "events.h"
#include "evquery.h"
#include "forward.h"
#include "gateway.h"
#include "ids.h"
#include "message.h"
#include "query_http.h"
#include "static.h"

/* Cache node paths: "/internal/users/<uid>/conversations/<cid>/messages"
 * and a canonical query (page_size, page or before, a sync token of at
 * most SYNCTOKEN_MAX, a timestamp) stay well below this. */
#define NODE_PATH_MAX 512

/* Takes a token of key's bucket in limit; when there is none, answers
 * 429 with Retry-After in whole seconds (rounded up, at least 1), counts
 * it in the metric named and returns -1. */
static int take_token(gateway *g, rl_limiter *limit, uint64_t key,
                      const char *metric, const char *detail, hs_reply *rep)
{
    int64_t retry_ms = 0;
    if (rl_take(limit, key, clockms_monotonic(), &retry_ms))
        return 0;
    metrics_count(g->metrics, metric,
                  "Requests refused with 429 by this rate limit.", 1);
    hs_reply_problem(rep, 429, "Too Many Requests", detail);
    int64_t seconds = (retry_ms + 999) / 1000;
    rep->retry_after_s = seconds < 1 ? 1 : (int)seconds;
    return -1;
}

/* Counts a failed authentication against the client's address: 401
 * while its bucket lasts, then 429. */
static void refuse_unauthenticated(gateway *g, const hs_request *req,
                                   const char *detail, hs_reply *rep)
{
    const char *addr =
        auth_client_address(req->client_addr, hs_header(req, "X-Real-IP"),
                            (auth_trust)g->trust_proxy, HS_CLIENT_ADDR_MAX);
    if (take_token(g, g->anon_limit, rl_key_of(addr, strlen(addr)),
                   "gateway_anon_limited_total",
                   "too many requests without a valid token from this "
                   "address; retry later",
                   rep))
        return;
    hs_reply_problem(rep, 401, "Unauthorized", detail);
    /* RFC 9110 11.6.1 and RFC 6750 3: a 401 names the scheme it wants. */
    hs_reply_header(rep, "WWW-Authenticate", "Bearer");
}

/* Answers 401 (or 429, see above) unless the request carries a valid
 * token; sets *user. */
static int authenticate(gateway *g, const hs_request *req, hs_reply *rep,
                        int64_t *user)
{
    const char *detail;
    if (auth_authenticate(g->jwt_secret, hs_header(req, "Authorization"),
                          (int64_t)time(NULL), user, &detail) == AUTH_OK)
        return 0;
    refuse_unauthenticated(g, req, detail, rep);
    return -1;
}

static void forbid(hs_reply *rep, const char *detail)
{
    hs_reply_problem(rep, 403, "Forbidden", detail);
}

/* Fully validates a send body; sets *sender. Answers 400/413 on error. */
static int validate_send(const hs_request *req, hs_reply *rep, int64_t *sender)
{
    msg_send_req s;
    char why[256];
    msg_err err = msg_parse_send(req->body ? req->body : "", req->body_len, &s,
                                 why, sizeof(why));
    if (err) {
        int status = msg_err_status(err);
        hs_reply_problem(rep, status,
                         status == 413 ? "Content Too Large" : "Bad Request",
                         why);
        return -1;
    }
    *sender = s.sender_id;
    msg_send_req_free(&s);
    return 0;
}

static void handle_send(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    int64_t user, sender;
    if (authenticate(g, req, rep, &user) ||
        take_token(g, g->send_limit, (uint64_t)user,
                   "gateway_send_limited_total",
                   "too many sends for this user; retry later", rep))
        return;
    if (auth_body_names_other_sender(req->body, req->body_len, user)) {
        forbid(rep, "sender_id is not the user of the token");
        return;
    }
    if (validate_send(req, rep, &sender))
        return;
    /* The lenient scan can miss a sender the strict parser finds (an
     * escaped key, say): the parsed value has the last word. */
    if (sender != user) {
        forbid(rep, "sender_id is not the user of the token");
        return;
    }
    forward_call c = {.method = "POST",
                      .user_id = sender,
                      .path = "/internal/send",
                      .body = req->body,
                      .body_len = req->body_len,
                      .request_id = req->request_id};
    forward_call_owner(g, req, &c, rep);
}

/* Answers 403 unless the path's user is the token's. */
static int authorise_path(const hs_request *req, hs_reply *rep, int64_t user)
{
    if (auth_path_is_user(req->params[0], user))
        return 0;
    forbid(rep, "a token reads only its own user's mailbox");
    return -1;
}

/* Builds the node path of a list call; cid NULL for conversations.
 * Returns 0, or -1 (answering 500) if it does not fit. */
static int list_path(char *out, size_t cap, int64_t user, const char *cid,
                     const list_query *q, hs_reply *rep)
{
    char query[NODE_PATH_MAX];
    int len = query_format(q, query, sizeof(query));
    if (len >= 0)
        len = cid ? snprintf(out, cap,
                             "/internal/users/%lld/conversations/%s/"
                             "messages?%s",
                             (long long)user, cid, query)
                  : snprintf(out, cap, "/internal/users/%lld/conversations?%s",
                             (long long)user, query);
    if (len >= 0 && (size_t)len < cap)
        return 0;
    hs_reply_problem(rep, 500, "Internal Server Error",
                     "the list query could not be forwarded");
    return -1;
}

static void forward_list(gateway *g, hs_request *req, int64_t user,
                         const char *cid, const char *path, hs_reply *rep)
{
    forward_call c = {.method = "GET",
                      .user_id = user,
                      .path = path,
                      .request_id = req->request_id,
                      .read = true,
                      .conversation = cid};
    forward_call_owner(g, req, &c, rep);
}

static void handle_conversations(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    int64_t user;
    list_query q;
    char path[NODE_PATH_MAX];
    if (authenticate(g, req, rep, &user) || authorise_path(req, rep, user) ||
        query_http_parse(req, SYNC_CONVERSATIONS, user, NULL, &q, rep) ||
        list_path(path, sizeof(path), user, NULL, &q, rep))
        return;
    forward_list(g, req, user, NULL, path, rep);
}

/* The conversation of the path, in canonical form, when user is one of
 * its two participants. Answers 404 otherwise: a conversation the user
 * is not part of does not exist for them. */
static int find_conversation(const char *raw, int64_t user, char *cid,
                             hs_reply *rep)
{
    int64_t low, high;
    if (ids_parse_conversation(raw, strlen(raw), &low, &high) == 0 &&
        (low == user || high == user) &&
        ids_conversation(low, high, cid, IDS_CONVERSATION_MAX) > 0)
        return 0;
    hs_reply_problem(rep, 404, "Not Found",
                     "no such conversation for this user");
    return -1;
}

static void handle_messages(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    int64_t user;
    list_query q;
    char cid[IDS_CONVERSATION_MAX];
    char path[NODE_PATH_MAX];
    /* The conversation before the query: one the user is not part of is
     * a 404 whatever the query says, as another user's mailbox is a 403
     * whatever it says. */
    if (authenticate(g, req, rep, &user) || authorise_path(req, rep, user) ||
        find_conversation(req->params[1], user, cid, rep) ||
        query_http_parse(req, SYNC_MESSAGES, user, req->params[1], &q, rep) ||
        list_path(path, sizeof(path), user, cid, &q, rep))
        return;
    forward_list(g, req, user, cid, path, rep);
}

/* The long poll: validated here like a list read, then held by the
 * poller until the owner node answers (events.h). */
static void handle_events(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    int64_t user;
    events_query q;
    char why[160];
    if (authenticate(g, req, rep, &user) || authorise_path(req, rep, user))
        return;
    if (evquery_parse(hs_query(req, "since"), hs_query(req, "timeout"), user,
                      &q, why, sizeof(why))) {
        hs_reply_problem(rep, 400, "Bad Request", why);
        return;
    }
    ev_poller_wait(g->events, req, user, &q, rep);
}

const hs_route gateway_routes[] = {
    {"POST", "/v1/messages", handle_send, "send"},
    {"GET", "/v1/users/{}/conversations", handle_conversations,
     "conversations"},
    {"GET", "/v1/users/{}/conversations/{}/messages", handle_messages,
     "messages"},
    {"GET", "/v1/users/{}/events", handle_events, "events"},
    {"GET", "/", static_page, "page"},
    {"GET", "/index.html", static_page, "page"},
    {"GET", "/app.js", static_script, "page"},
    {"GET", "/app.css", static_style, "page"},
    {"GET", "/v1/dev/token", dev_token_probe, "dev_token"},
    {"POST", "/v1/dev/token", dev_token_mint, "dev_token"},
};
const size_t gateway_nroutes =
    sizeof(gateway_routes) / sizeof(gateway_routes[0]);

/* The long-poll listener (GATEWAY_EVENTS_PORT) serves the long poll
 * only. */
const hs_route gateway_event_routes[] = {
    {"GET", "/v1/users/{}/events", handle_events, "events"},
};
const size_t gateway_event_nroutes =
    sizeof(gateway_event_routes) / sizeof(gateway_event_routes[0]);
