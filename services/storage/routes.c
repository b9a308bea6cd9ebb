/*
 * routes.c - HTTP handlers of the storage service.
 *
 * Each handler reads top to bottom: parse the path, query and body into a
 * plain struct; validate it fully (400/413 before anything is written);
 * act through mailbox.c, which owns every SQL statement; respond by
 * serialising the result. Parsing and validation live in parse.c, pure
 * and fuzzed. Errors reach the client through reply_invalid (bad input)
 * and reply_storage_error (PostgreSQL), nowhere else.
 *
 * The callers are other services, but input is still checked as strictly
 * as public input: storage is the last line before durable state.
 */
#include "routes.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids.h"
#include "mailbox.h"
#include "message.h"
#include "parse.h"
#include "shardmap.h"

/* Decimal text of a message id ("max_id", "last_message_id"). */
typedef struct id_text {
    char s[24];
} id_text;

static id_text id_to_text(int64_t id)
{
    id_text t;
    snprintf(t.s, sizeof t.s, "%" PRId64, id);
    return t;
}

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- replies ---- */

/* 400 or 413 for input that cannot be accepted. */
static void reply_invalid(hs_reply *rep, int status, const char *detail)
{
    hs_reply_problem(rep, status,
                     status == 413 ? "Content Too Large" : "Bad Request",
                     detail);
}

/* The one mapping of storage errors to responses: an unreachable
 * instance is retryable (503 + Retry-After), anything else is ours. */
static void reply_storage_error(hs_reply *rep, mbox_err err, const char *errbuf)
{
    if (err == MBOX_UNAVAILABLE) {
        hs_reply_problem(rep, 503, "Service Unavailable", errbuf);
        rep->retry_after_s = 1;
        return;
    }
    hs_reply_problem(rep, 500, "Internal Server Error", mbox_strerror(err));
}

/* body is stolen; NULL (allocation failed while building it) is a 500. */
static void reply_json(hs_reply *rep, int status, json_t *body)
{
    if (!body) {
        hs_reply_problem(rep, 500, "Internal Server Error",
                         "could not build the response");
        return;
    }
    hs_reply_json(rep, status, body);
}

/* ---- reading the request ----
 *
 * The read_* helpers parse one part of the request and, when it is bad,
 * answer 400/413 themselves and return -1, so each validation step of a
 * handler is one line. */

/* The {uid} path parameter. Returns 0, or answers 400 and returns -1. */
static int read_user_param(const hs_request *req, hs_reply *rep,
                           int64_t *user_id)
{
    if (req->nparams >= 1 && req->params[0] &&
        ids_parse_user(req->params[0], strlen(req->params[0]), user_id) == 0)
        return 0;
    reply_invalid(rep, 400, "bad user id");
    return -1;
}

/* Parses and fully checks the message of a send or deliver body. Returns
 * 0 with m owning its content, or answers 400/413 and returns -1 with m
 * holding nothing. */
static int read_message_request(const hs_request *req, hs_reply *rep, msg *m)
{
    const char *detail;
    int status = parse_message_request(req->body, req->body_len, m, &detail);
    if (status) {
        reply_invalid(rep, status, detail);
        return -1;
    }
    return 0;
}

/* ---- POST /internal/send and /internal/deliver ---- */

static json_t *write_json(const char *status, const mbox_write *w)
{
    return json_pack("{s:s,s:I,s:s}", "status", status, "seq",
                     (json_int_t)w->seq, "max_id", id_to_text(w->max_id).s);
}

/* The answer of a send that wrote or found its message: body and status,
 * as POST /internal/send answers it and as a batch's result carries it.
 * NULL when out of memory. */
static json_t *send_json(const mbox_write *w, int *status)
{
    switch (w->status) {
    case MBOX_REPLAY:
        *status = 200;
        return json_pack("{s:s,s:o,s:b}", "status", "replay", "message",
                         msg_to_json(&w->stored), "outbox_pending",
                         w->is_outbox_pending);
    case MBOX_FLOOR:
        *status = 409;
        return json_pack("{s:s,s:s}", "status", "floor", "max_id",
                         id_to_text(w->max_id).s);
    default:
        *status = 201;
        return write_json("stored", w);
    }
}

static json_t *deliver_json(const mbox_write *w, int *status)
{
    *status = 200;
    return write_json(w->status == MBOX_DUPLICATE ? "duplicate" : "stored", w);
}

static void reply_send(hs_reply *rep, const mbox_write *w)
{
    int status;
    json_t *body = send_json(w, &status);
    reply_json(rep, status, body);
}

/* mbox_send and mbox_deliver: a validated message, written in one
 * transaction on its owner's instance. */
typedef mbox_err (*message_writer)(const mbox_store *s, const msg *m,
                                   int64_t now_ms, mbox_write *out,
                                   char *errbuf, size_t errcap);

/* Reads and checks the body's message and writes it with writer. Returns
 * 0 with *w filled (mbox_write_clear it), or answers the error and
 * returns -1. */
static int write_message(const hs_request *req, hs_reply *rep,
                         message_writer writer, mbox_write *w)
{
    msg m;
    if (read_message_request(req, rep, &m) != 0)
        return -1;
    char errbuf[256];
    mbox_err err =
        writer(req->ctx, &m, wall_clock_ms(), w, errbuf, sizeof errbuf);
    msg_clear(&m);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return -1;
    }
    return 0;
}

static void route_send(hs_request *req, hs_reply *rep)
{
    mbox_write w;
    if (write_message(req, rep, mbox_send, &w) != 0)
        return;
    reply_send(rep, &w);
    mbox_write_clear(&w);
}

static void route_deliver(hs_request *req, hs_reply *rep)
{
    mbox_write w;
    if (write_message(req, rep, mbox_deliver, &w) != 0)
        return;
    int status;
    json_t *body = deliver_json(&w, &status);
    reply_json(rep, status, body);
    mbox_write_clear(&w);
}

/* ---- POST /internal/batch ----
 *
 * Several sends and delivers in one call, written together (group
 * commit) but each with its own outcome: results[i] is what POST
 * /internal/send or /internal/deliver would have answered for calls[i],
 * its status in "code". A cache node batches the writes that queue while
 * its previous calls are in flight, so one HTTP exchange carries many. */

/* The problem a single call would have answered for err, as a result. */
static json_t *error_json(mbox_err err, const char *errbuf, int *status)
{
    *status = err == MBOX_UNAVAILABLE ? 503 : 500;
    return json_pack("{s:s,s:s}", "title",
                     err == MBOX_UNAVAILABLE ? "Service Unavailable"
                                             : "Internal Server Error",
                     "detail",
                     err == MBOX_UNAVAILABLE ? errbuf : mbox_strerror(err));
}

static json_t *result_json(const mbox_call *c)
{
    int status;
    json_t *body = c->err ? error_json(c->err, c->errbuf, &status)
                   : c->op == MBOX_OP_SEND ? send_json(&c->out, &status)
                                           : deliver_json(&c->out, &status);
    if (body && json_object_set_new(body, "code", json_integer(status)) != 0) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* {"results":[...]} in the order of calls; NULL when out of memory. */
static json_t *results_json(const mbox_call *calls, size_t n)
{
    json_t *results = json_array();
    for (size_t i = 0; results && i < n; i++) {
        if (json_array_append_new(results, result_json(&calls[i])) != 0) {
            json_decref(results);
            results = NULL;
        }
    }
    return results ? json_pack("{s:o}", "results", results) : NULL;
}

static void route_batch(hs_request *req, hs_reply *rep)
{
    parse_call *parsed;
    size_t n;
    const char *detail;
    int status =
        parse_batch_request(req->body, req->body_len, &parsed, &n, &detail);
    if (status) {
        reply_invalid(rep, status, detail);
        return;
    }
    mbox_call *calls = calloc(n, sizeof *calls);
    if (!calls) {
        parse_calls_free(parsed, n);
        reply_json(rep, 500, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        calls[i] = (mbox_call){.op = parsed[i].op, .m = &parsed[i].m};
    mbox_write_all(req->ctx, calls, (int)n, wall_clock_ms());
    reply_json(rep, 200, results_json(calls, n));
    for (size_t i = 0; i < n; i++)
        mbox_write_clear(&calls[i].out);
    free(calls);
    parse_calls_free(parsed, n);
}

/* ---- POST /internal/outbox/claim and /internal/outbox/ack ---- */

static json_t *messages_json(const mbox_msg_list *l)
{
    json_t *array = json_array();
    for (size_t i = 0; array && i < l->n; i++) {
        if (json_array_append_new(array, msg_to_json(&l->items[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static void route_outbox_claim(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    int limit;
    int64_t lease_ms;
    const char *detail;
    if (parse_outbox_claim(req->body, req->body_len, &limit, &lease_ms,
                           &detail) != 0) {
        reply_invalid(rep, 400, detail);
        return;
    }
    char errbuf[256];
    mbox_msg_list claimed;
    mbox_err err = mbox_outbox_claim(store, limit, lease_ms, wall_clock_ms(),
                                     &claimed, errbuf, sizeof errbuf);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:o}", "messages", messages_json(&claimed)));
    mbox_msg_list_clear(&claimed);
}

static void route_outbox_ack(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    mbox_outbox_key *keys;
    size_t n;
    if (parse_outbox_ack(req->body, req->body_len, &keys, &n) != 0) {
        reply_invalid(rep, 400,
                      "body must be {\"entries\":[{\"sender_id\":N,"
                      "\"message_id\":\"<id>\"},...]} (at most 1000)");
        return;
    }
    char errbuf[256];
    int64_t deleted = 0;
    mbox_err err =
        mbox_outbox_ack(store, keys, n, &deleted, errbuf, sizeof errbuf);
    free(keys);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return;
    }
    reply_json(rep, 200, json_pack("{s:I}", "deleted", (json_int_t)deleted));
}

/* ---- GET /internal/users/{uid}/... ---- */

static void route_meta(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    int64_t user_id;
    if (read_user_param(req, rep, &user_id) != 0)
        return;
    char errbuf[256];
    int64_t seq, max_id;
    mbox_err err =
        mbox_get_meta(store, user_id, &seq, &max_id, errbuf, sizeof errbuf);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:I,s:s}", "seq", (json_int_t)seq, "max_id",
                         id_to_text(max_id).s));
}

/* ---- GET /internal/placement ----
 *
 * The shard map: which instance holds each logical shard. A cache node
 * queues its writes per instance with it, so that one slow instance
 * holds up only the writes bound for it (services/cache/store.c). */
static json_t *placement_json(const shardmap *m)
{
    json_t *of = json_array();
    for (int s = 0; of && s < m->shards; s++) {
        if (json_array_append_new(of, json_integer(m->instance_of[s])) != 0) {
            json_decref(of);
            of = NULL;
        }
    }
    return of ? json_pack("{s:i,s:i,s:o}", "shards", m->shards, "instances",
                          m->instances, "instance_of", of)
              : NULL;
}

static void route_placement(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    reply_json(rep, 200, placement_json(store->map));
}

/* hs_query as a parse_query_fn. */
static const char *request_query(const void *source, const char *key)
{
    return hs_query(source, key);
}

/* parse_list_filter, answering 400 on a bad filter. Returns 0 or -1. */
static int read_filter(const hs_request *req, bool allows_before,
                       mbox_filter *f, hs_reply *rep)
{
    const char *detail;
    if (parse_list_filter(request_query, req, allows_before, f, &detail) == 0)
        return 0;
    reply_invalid(rep, 400, detail);
    return -1;
}

static json_t *conversation_json(const mbox_conv *c)
{
    int64_t low, high;
    if (ids_parse_conversation(c->conversation_id, strlen(c->conversation_id),
                               &low, &high))
        return NULL;
    return json_pack("{s:s,s:[I,I],s:I,s:s%,s:s,s:I}", "conversation_id",
                     c->conversation_id, "participants", (json_int_t)low,
                     (json_int_t)high, "peer_id", (json_int_t)c->peer_id,
                     "snippet", c->snippet, c->snippet_len, "last_message_id",
                     id_to_text(c->last_message_id).s, "last_updated_at",
                     (json_int_t)c->last_updated_at);
}

static json_t *conversations_json(const mbox_conv_list *l)
{
    json_t *array = json_array();
    for (size_t i = 0; array && i < l->n; i++) {
        if (json_array_append_new(array, conversation_json(&l->items[i]))) {
            json_decref(array);
            return NULL;
        }
    }
    return json_pack("{s:I,s:o}", "seq", (json_int_t)l->seq, "conversations",
                     array);
}

static void route_conversations(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    int64_t user_id;
    if (read_user_param(req, rep, &user_id) != 0)
        return;
    mbox_filter filter;
    if (read_filter(req, false, &filter, rep) != 0)
        return;
    char errbuf[256];
    mbox_conv_list list;
    mbox_err err = mbox_list_conversations(store, user_id, &filter, &list,
                                           errbuf, sizeof errbuf);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return;
    }
    reply_json(rep, 200, conversations_json(&list));
    mbox_conv_list_clear(&list);
}

/* The {cid} path parameter: a canonical conversation id that user_id
 * takes part in. Returns 0, 400 (malformed) or 404 (not a participant). */
static int check_conversation_param(const hs_request *req, int64_t user_id,
                                    const char **cid)
{
    *cid = req->nparams >= 2 ? req->params[1] : NULL;
    int64_t low, high;
    char canonical[IDS_CONVERSATION_MAX];
    if (!*cid || ids_parse_conversation(*cid, strlen(*cid), &low, &high) ||
        ids_conversation(low, high, canonical, sizeof canonical) < 0 ||
        strcmp(canonical, *cid) != 0)
        return 400;
    return user_id == low || user_id == high ? 0 : 404;
}

static void route_messages(hs_request *req, hs_reply *rep)
{
    const mbox_store *store = req->ctx;
    int64_t user_id;
    if (read_user_param(req, rep, &user_id) != 0)
        return;
    const char *cid;
    int status = check_conversation_param(req, user_id, &cid);
    if (status == 404) {
        hs_reply_problem(rep, 404, "Not Found",
                         "the user is not part of this conversation");
        return;
    }
    if (status) {
        reply_invalid(rep, 400, "bad conversation id");
        return;
    }
    mbox_filter filter;
    if (read_filter(req, true, &filter, rep) != 0)
        return;
    char errbuf[256];
    mbox_msg_list list;
    mbox_err err = mbox_list_messages(store, user_id, cid, &filter, &list,
                                      errbuf, sizeof errbuf);
    if (err) {
        reply_storage_error(rep, err, errbuf);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:I,s:o}", "seq", (json_int_t)list.seq, "messages",
                         messages_json(&list)));
    mbox_msg_list_clear(&list);
}

static const hs_route routes[] = {
    {"POST", "/internal/send", route_send, "send"},
    {"POST", "/internal/deliver", route_deliver, "deliver"},
    {"POST", "/internal/batch", route_batch, "batch"},
    {"POST", "/internal/outbox/claim", route_outbox_claim, "outbox_claim"},
    {"POST", "/internal/outbox/ack", route_outbox_ack, "outbox_ack"},
    {"GET", "/internal/placement", route_placement, "placement"},
    {"GET", "/internal/users/{}/meta", route_meta, "meta"},
    {"GET", "/internal/users/{}/conversations", route_conversations,
     "conversations"},
    {"GET", "/internal/users/{}/conversations/{}/messages", route_messages,
     "messages"},
};

const hs_route *storage_routes(size_t *n)
{
    *n = sizeof routes / sizeof routes[0];
    return routes;
}

bool storage_ready(void *ctx)
{
    return mbox_is_ready(ctx);
}
