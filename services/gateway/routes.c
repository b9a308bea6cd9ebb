/*
 * routes.c - handlers of the public API. Each one authenticates,
 * authorises before it validates (SPEC 4: a token for another user gets
 * 403 whatever the request holds), validates fully with the same parsers
 * the cache node uses, then forwards to the owner node of the user and
 * passes its answer through. Nothing is forwarded that the gateway would
 * refuse, so a bad request never reaches a cache node.
 */
#include "routes.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "forward.h"
#include "gateway.h"
#include "ids.h"
#include "message.h"
#include "query_http.h"

/* Cache node paths: "/internal/users/<uid>/conversations/<cid>/messages"
 * and a canonical query (page_size, page or before, a sync token of at
 * most SYNCTOKEN_MAX, a timestamp) stay well below this. */
#define NODE_PATH_MAX 512

/* Answers 401 unless the request carries a valid token; sets *user. */
static int authenticate(const gateway *g, const hs_request *req, hs_reply *rep,
                        int64_t *user)
{
    const char *detail;
    if (auth_authenticate(g->jwt_secret, hs_header(req, "Authorization"),
                          (int64_t)time(NULL), user, &detail) == AUTH_OK)
        return 0;
    hs_reply_problem(rep, 401, "Unauthorized", detail);
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
        hs_reply_problem(
            rep, status,
            status == 413 ? "Content Too Large" : "Invalid message", why);
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
    if (authenticate(g, req, rep, &user))
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
    forward_call_owner(g, &c, rep);
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

static void forward_list(gateway *g, const hs_request *req, int64_t user,
                         const char *path, hs_reply *rep)
{
    forward_call c = {.method = "GET",
                      .user_id = user,
                      .path = path,
                      .request_id = req->request_id};
    forward_call_owner(g, &c, rep);
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
    forward_list(g, req, user, path, rep);
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
    if (authenticate(g, req, rep, &user) || authorise_path(req, rep, user) ||
        query_http_parse(req, SYNC_MESSAGES, user, req->params[1], &q, rep) ||
        find_conversation(req->params[1], user, cid, rep) ||
        list_path(path, sizeof(path), user, cid, &q, rep))
        return;
    forward_list(g, req, user, path, rep);
}

const hs_route gateway_routes[] = {
    {"POST", "/v1/messages", handle_send, "send"},
    {"GET", "/v1/users/{}/conversations", handle_conversations,
     "conversations"},
    {"GET", "/v1/users/{}/conversations/{}/messages", handle_messages,
     "messages"},
};
const size_t gateway_nroutes =
    sizeof(gateway_routes) / sizeof(gateway_routes[0]);
