/*
 * mailbox.c - the SQL of the storage service.
 *
 * Every function here is one parameterised statement on the instance that
 * holds the user's shard (the outbox calls visit every instance, or the
 * senders' instances). Writes are the PL/pgSQL functions of schema/, which
 * lock the mailbox row so that writes of one mailbox are serialised and
 * each one is a single transaction.
 *
 * Reads fetch the mailbox seq and the rows in one statement: under READ
 * COMMITTED a statement sees one snapshot, so the seq and the rows agree
 * (a sync token never claims a change the rows do not show), and a write,
 * being one transaction, is seen whole or not at all. The list queries
 * left-join the rows to the one-row seq subquery, so an empty list still
 * reports the seq.
 *
 * Optional filters are written "($n IS NULL OR ...)". PQexecParams uses
 * an unnamed statement that PostgreSQL plans with the actual values, so a
 * NULL filter folds away and the planner picks the index for the filter
 * that is present.
 */
#include "mailbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "log.h"

static const char SQL_SEND[] =
    "SELECT status, seq, max_id, message_id, conversation_id, sender_id,"
    " recipient_id, content, client_message_id, sent_at, outbox_pending"
    " FROM msg_send($1::integer, $2::bigint, $3::text, $4::bigint,"
    " $5::bigint, $6::bytea, $7::text, $8::bigint, $9::bytea, $10::bigint,"
    " $11::bigint)";

static const char SQL_DELIVER[] =
    "SELECT status, seq, max_id"
    " FROM msg_deliver($1::integer, $2::bigint, $3::text, $4::bigint,"
    " $5::bigint, $6::bytea, $7::text, $8::bigint, $9::bytea, $10::bigint)";

/* The outbox entry of a landed recipient copy (mbox_deliver). */
static const char SQL_ACK_ONE[] =
    "DELETE FROM outbox WHERE sender_id = $1::bigint"
    " AND message_id = $2::bigint";

static const char SQL_META[] =
    "SELECT COALESCE(max(seq), 0), COALESCE(max(max_id), 0)"
    " FROM mailboxes WHERE owner_id = $1::bigint";

static const char SQL_CONVERSATIONS[] =
    "SELECT mb.seq, c.conversation_id, c.peer_id, c.snippet,"
    " c.last_message_id, c.last_updated_at"
    " FROM (SELECT COALESCE((SELECT m.seq FROM mailboxes m"
    "                        WHERE m.owner_id = $1::bigint), 0) AS seq) mb"
    " LEFT JOIN ("
    "   SELECT conversation_id, peer_id, snippet, last_message_id,"
    "          last_updated_at"
    "   FROM conversations"
    "   WHERE owner_id = $1::bigint"
    "     AND ($2::bigint IS NULL OR seq > $2::bigint)"
    "     AND ($3::bigint IS NULL OR landed_at > $3::bigint)"
    "   ORDER BY last_message_id DESC LIMIT $4::bigint OFFSET $5::bigint"
    " ) c ON true"
    " ORDER BY c.last_message_id DESC";

static const char SQL_MESSAGES[] =
    "SELECT mb.seq, r.message_id, r.conversation_id, r.sender_id,"
    " r.recipient_id, r.content, r.client_message_id, r.sent_at"
    " FROM (SELECT COALESCE((SELECT m.seq FROM mailboxes m"
    "                        WHERE m.owner_id = $1::bigint), 0) AS seq) mb"
    " LEFT JOIN ("
    "   SELECT message_id, conversation_id, sender_id, recipient_id,"
    "          content, client_message_id, sent_at"
    "   FROM messages"
    "   WHERE owner_id = $1::bigint AND conversation_id = $2::text"
    "     AND ($3::bigint IS NULL OR message_id < $3::bigint)"
    "     AND ($4::bigint IS NULL OR seq > $4::bigint)"
    "     AND ($5::bigint IS NULL OR landed_at > $5::bigint)"
    "   ORDER BY message_id DESC LIMIT $6::bigint OFFSET $7::bigint"
    " ) r ON true"
    " ORDER BY r.message_id DESC";

/* SKIP LOCKED: concurrent claimers take disjoint entries instead of
 * waiting for each other; the lease (next_attempt_at in the future) keeps
 * the entries away from later claims until it runs out. */
static const char SQL_CLAIM[] =
    "UPDATE outbox o"
    " SET next_attempt_at = $1::bigint + $2::bigint,"
    "     attempts = o.attempts + 1"
    " WHERE (o.sender_id, o.message_id) IN ("
    "   SELECT d.sender_id, d.message_id FROM outbox d"
    "   WHERE d.next_attempt_at <= $1::bigint"
    "   ORDER BY d.next_attempt_at LIMIT $3::bigint"
    "   FOR UPDATE SKIP LOCKED)"
    " RETURNING o.message_id, o.conversation_id, o.sender_id,"
    " o.recipient_id, o.content, o.client_message_id, o.sent_at";

/* The rows are locked first, in the lock order of the batches' outbox
 * deletes (batch.h: by sender, then message id), whatever order the keys
 * came in and whatever join the planner picks: an ack and a batch, or two
 * acks, deleting some of the same entries then take their row locks in
 * one order and cannot deadlock. LockRows runs above the sort, so the
 * locks follow ORDER BY; MATERIALIZED keeps the locking query whole. */
static const char SQL_ACK[] =
    "WITH locked AS MATERIALIZED ("
    "   SELECT o.sender_id, o.message_id FROM outbox o"
    "   JOIN unnest($1::bigint[], $2::bigint[]) AS a(sender_id, message_id)"
    "     ON o.sender_id = a.sender_id AND o.message_id = a.message_id"
    "   ORDER BY o.sender_id, o.message_id"
    "   FOR UPDATE OF o)"
    " DELETE FROM outbox o USING locked l"
    " WHERE o.sender_id = l.sender_id AND o.message_id = l.message_id";

static const char SQL_PING[] = "SELECT 1";

/* Columns of a message row, in the order every query above returns them
 * (starting at some first column). */
enum {
    COL_MESSAGE_ID,
    COL_CONVERSATION_ID,
    COL_SENDER_ID,
    COL_RECIPIENT_ID,
    COL_CONTENT,
    COL_CLIENT_MESSAGE_ID,
    COL_SENT_AT,
};

const char *mbox_strerror(mbox_err err)
{
    switch (err) {
    case MBOX_OK:
        return "ok";
    case MBOX_UNAVAILABLE:
        return "storage unavailable";
    case MBOX_FAILED:
        return "storage failed";
    }
    return "unknown error";
}

static mbox_err from_pgpool(pgpool_err err)
{
    switch (err) {
    case PGPOOL_OK:
        return MBOX_OK;
    case PGPOOL_UNAVAILABLE:
        return MBOX_UNAVAILABLE;
    case PGPOOL_FAILED:
        return MBOX_FAILED;
    }
    return MBOX_FAILED;
}

/* One statement on pool (pgpool_exec), its error mapped to ours. On
 * MBOX_OK the caller owns *r and PQclears it. */
static mbox_err exec_on(pgpool *pool, const char *sql, const pgpool_params *ps,
                        bool is_retry_safe, PGresult **r, char *errbuf,
                        size_t errcap)
{
    return from_pgpool(
        pgpool_exec(pool, sql, ps, is_retry_safe, r, errbuf, errcap));
}

static mbox_err bad_result(char *errbuf, size_t errcap, const char *what)
{
    snprintf(errbuf, errcap, "unexpected result from %s", what);
    log_msg("error", "storage: unexpected result from %s", what);
    return MBOX_FAILED;
}

static pgpool *pool_of_user(const mbox_store *s, int64_t user_id, int *shard)
{
    *shard = shardmap_shard(s->map, user_id);
    return s->pools[shardmap_instance(s->map, *shard)];
}

/* Copies a text or bytea column into an owned, NUL-terminated buffer. */
static int copy_bytes(const PGresult *r, int row, int col, char **out,
                      size_t *len)
{
    const char *value;
    if (pgpool_get_bytes(r, row, col, &value, len) != 0)
        return -1;
    *out = malloc(*len + 1);
    if (!*out)
        return -1;
    memcpy(*out, value, *len);
    (*out)[*len] = '\0';
    return 0;
}

/* Copies a short text column into a fixed buffer of cap bytes. */
static int copy_text(const PGresult *r, int row, int col, char *out, size_t cap)
{
    const char *value;
    size_t len;
    if (pgpool_get_bytes(r, row, col, &value, &len) != 0 || len >= cap)
        return -1;
    memcpy(out, value, len);
    out[len] = '\0';
    return 0;
}

/* Reads a message whose columns start at col0 (COL_* order). On success m
 * owns its content; on failure m holds nothing. */
static int read_message(const PGresult *r, int row, int col0, msg *m)
{
    memset(m, 0, sizeof *m);
    if (pgpool_get_int64(r, row, col0 + COL_MESSAGE_ID, &m->message_id) ||
        copy_text(r, row, col0 + COL_CONVERSATION_ID, m->conversation_id,
                  sizeof m->conversation_id) ||
        pgpool_get_int64(r, row, col0 + COL_SENDER_ID, &m->sender_id) ||
        pgpool_get_int64(r, row, col0 + COL_RECIPIENT_ID, &m->recipient_id) ||
        copy_text(r, row, col0 + COL_CLIENT_MESSAGE_ID, m->client_message_id,
                  sizeof m->client_message_id) ||
        pgpool_get_int64(r, row, col0 + COL_SENT_AT, &m->sent_at))
        return -1;
    return copy_bytes(r, row, col0 + COL_CONTENT, &m->content, &m->content_len);
}

/* The parameters msg_send and msg_deliver share, in their order. */
static void write_params(pgpool_params *ps, int shard, const msg *m,
                         int64_t now_ms)
{
    memset(ps, 0, sizeof *ps);
    pgpool_param_int(ps, shard);
    pgpool_param_int(ps, m->message_id);
    pgpool_param_text(ps, m->conversation_id);
    pgpool_param_int(ps, m->sender_id);
    pgpool_param_int(ps, m->recipient_id);
    pgpool_param_bytes(ps, m->content, m->content_len);
    pgpool_param_text(ps, m->client_message_id);
    pgpool_param_int(ps, m->sent_at);
    pgpool_param_bytes(ps, m->content,
                       msg_snippet_len(m->content, m->content_len));
    pgpool_param_int(ps, now_ms);
}

static int read_status(const PGresult *r, mbox_status *status)
{
    const char *value;
    size_t len;
    if (pgpool_get_bytes(r, 0, 0, &value, &len) != 0)
        return -1;
    static const struct {
        const char *name;
        mbox_status status;
    } names[] = {{"stored", MBOX_STORED},
                 {"replay", MBOX_REPLAY},
                 {"floor", MBOX_FLOOR},
                 {"duplicate", MBOX_DUPLICATE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == len &&
            memcmp(names[i].name, value, len) == 0) {
            *status = names[i].status;
            return 0;
        }
    }
    return -1;
}

/* Reads (status, seq, max_id) from the first row of a write's result. */
static int read_write_head(const PGresult *r, mbox_write *out)
{
    if (PQntuples(r) != 1 || read_status(r, &out->status) != 0 ||
        pgpool_get_int64(r, 0, 1, &out->seq) != 0 ||
        pgpool_get_int64(r, 0, 2, &out->max_id) != 0)
        return -1;
    return 0;
}

void mbox_write_clear(mbox_write *w)
{
    if (!w)
        return;
    msg_clear(&w->stored);
    memset(w, 0, sizeof *w);
}

/* Phases of the lock order of a batch (batch.h): mailbox writes by
 * owner, then outbox deletes by (sender, message id). */
enum { PHASE_MAILBOX, PHASE_OUTBOX };

static int instance_of_user(const mbox_store *s, int64_t user_id, int *shard)
{
    *shard = shardmap_shard(s->map, user_id);
    return shardmap_instance(s->map, *shard);
}

const char *const *mbox_batch_statements(int *n)
{
    static const char *const batch_sql[] = {SQL_SEND, SQL_DELIVER, SQL_ACK_ONE};
    *n = (int)(sizeof batch_sql / sizeof batch_sql[0]);
    return batch_sql;
}

static void ack_params(pgpool_params *ps, const msg *m)
{
    memset(ps, 0, sizeof *ps);
    pgpool_param_int(ps, m->sender_id);
    pgpool_param_int(ps, m->message_id);
}

/* Removes the outbox entry of m on the sender's instance, after the
 * recipient's copy committed on another one: posted to ride in that
 * instance's next batch rather than waited for. If it is lost, the entry
 * stays for the outbox worker. */
static void ack_after(const mbox_store *s, int instance, const msg *m)
{
    int64_t key[2] = {m->sender_id, m->message_id};
    if (batcher_post(s->batchers[instance], SQL_ACK_ONE, PHASE_OUTBOX,
                     m->sender_id, m->message_id, key, 2) != 0)
        log_msg("warn", "storage: outbox entry of %" PRId64 " kept: %s",
                m->message_id, "out of memory");
}

/* The statements, parameters and results of one write while it runs. */
typedef struct write_job {
    pgpool_params ps, ack;
    batch_stmt stmts[2];
    PGresult *results[2];
    int sender_instance; /* deliver: where the outbox entry is */
    bool is_same_instance;
} write_job;

/* Sets up the job of a send: the sender's copy, key and outbox entry, one
 * statement on the sender's instance. */
static void prepare_send(const mbox_store *s, const mbox_call *c,
                         int64_t now_ms, write_job *w, batch_job *bj)
{
    int shard;
    int instance = instance_of_user(s, c->m->sender_id, &shard);
    write_params(&w->ps, shard, c->m, now_ms);
    pgpool_param_int(&w->ps, OUTBOX_FIRST_RETRY_MS);
    w->stmts[0] =
        (batch_stmt){SQL_SEND, &w->ps, PHASE_MAILBOX, c->m->sender_id, 0};
    *bj = (batch_job){.b = s->batchers[instance],
                      .stmts = w->stmts,
                      .n = 1,
                      .results = w->results};
}

/* Sets up the job of a deliver: the recipient's copy, with the removal
 * of the outbox entry when both mailboxes are on one instance. */
static void prepare_deliver(const mbox_store *s, const mbox_call *c,
                            int64_t now_ms, write_job *w, batch_job *bj)
{
    int shard, sender_shard;
    int instance = instance_of_user(s, c->m->recipient_id, &shard);
    w->sender_instance = instance_of_user(s, c->m->sender_id, &sender_shard);
    w->is_same_instance = instance == w->sender_instance;
    write_params(&w->ps, shard, c->m, now_ms);
    ack_params(&w->ack, c->m);
    w->stmts[0] =
        (batch_stmt){SQL_DELIVER, &w->ps, PHASE_MAILBOX, c->m->recipient_id, 0};
    w->stmts[1] = (batch_stmt){SQL_ACK_ONE, &w->ack, PHASE_OUTBOX,
                               c->m->sender_id, c->m->message_id};
    *bj = (batch_job){.b = s->batchers[instance],
                      .stmts = w->stmts,
                      .n = w->is_same_instance ? 2 : 1,
                      .results = w->results};
}

static mbox_err finish_send(write_job *w, mbox_call *c)
{
    mbox_write *out = &c->out;
    PGresult *r = w->results[0];
    mbox_err result = MBOX_OK;
    if (read_write_head(r, out) != 0 || out->status == MBOX_DUPLICATE)
        result = bad_result(c->errbuf, sizeof c->errbuf, "msg_send");
    else if (out->status == MBOX_REPLAY &&
             (read_message(r, 0, 3, &out->stored) != 0 ||
              pgpool_get_bool(r, 0, 10, &out->is_outbox_pending) != 0))
        result = bad_result(c->errbuf, sizeof c->errbuf, "msg_send replay");
    if (result)
        mbox_write_clear(out);
    return result;
}

static mbox_err finish_deliver(const mbox_store *s, write_job *w, mbox_call *c)
{
    mbox_write *out = &c->out;
    if (read_write_head(w->results[0], out) != 0 ||
        (out->status != MBOX_STORED && out->status != MBOX_DUPLICATE)) {
        memset(out, 0, sizeof *out);
        return bad_result(c->errbuf, sizeof c->errbuf, "msg_deliver");
    }
    if (!w->is_same_instance)
        ack_after(s, w->sender_instance, c->m);
    return MBOX_OK;
}

/* Reads the outcome of one finished job into its call. */
static void finish_call(const mbox_store *s, write_job *w, batch_job *bj,
                        mbox_call *c)
{
    c->err = from_pgpool(bj->err);
    if (c->err)
        snprintf(c->errbuf, sizeof c->errbuf, "%s", bj->errbuf);
    else if (c->op == MBOX_OP_SEND)
        c->err = finish_send(w, c);
    else
        c->err = finish_deliver(s, w, c);
    for (int i = 0; i < bj->n; i++)
        PQclear(w->results[i]);
}

void mbox_write_all(const mbox_store *s, mbox_call *calls, int k,
                    int64_t now_ms)
{
    write_job *ws = calloc((size_t)k, sizeof *ws);
    batch_job *bjs = calloc((size_t)k, sizeof *bjs);
    for (int i = 0; i < k; i++) {
        memset(&calls[i].out, 0, sizeof calls[i].out);
        calls[i].err = MBOX_UNAVAILABLE;
        snprintf(calls[i].errbuf, sizeof calls[i].errbuf, "out of memory");
    }
    if (ws && bjs) {
        for (int i = 0; i < k; i++) {
            if (calls[i].op == MBOX_OP_SEND)
                prepare_send(s, &calls[i], now_ms, &ws[i], &bjs[i]);
            else
                prepare_deliver(s, &calls[i], now_ms, &ws[i], &bjs[i]);
        }
        batcher_run_all(bjs, k);
        for (int i = 0; i < k; i++)
            finish_call(s, &ws[i], &bjs[i], &calls[i]);
    }
    free(ws);
    free(bjs);
}

/* One write of op alone, as mbox_send and mbox_deliver promise. */
static mbox_err write_one(const mbox_store *s, mbox_op op, const msg *m,
                          int64_t now_ms, mbox_write *out, char *errbuf,
                          size_t errcap)
{
    mbox_call c = {.op = op, .m = m};
    mbox_write_all(s, &c, 1, now_ms);
    *out = c.out;
    if (c.err)
        snprintf(errbuf, errcap, "%s", c.errbuf);
    return c.err;
}

mbox_err mbox_send(const mbox_store *s, const msg *m, int64_t now_ms,
                   mbox_write *out, char *errbuf, size_t errcap)
{
    return write_one(s, MBOX_OP_SEND, m, now_ms, out, errbuf, errcap);
}

mbox_err mbox_deliver(const mbox_store *s, const msg *m, int64_t now_ms,
                      mbox_write *out, char *errbuf, size_t errcap)
{
    return write_one(s, MBOX_OP_DELIVER, m, now_ms, out, errbuf, errcap);
}

mbox_err mbox_get_meta(const mbox_store *s, int64_t user_id, int64_t *seq,
                       int64_t *max_id, char *errbuf, size_t errcap)
{
    int shard;
    pgpool *pool = pool_of_user(s, user_id, &shard);
    pgpool_params ps = {0};
    pgpool_param_int(&ps, user_id);
    PGresult *r;
    mbox_err result = exec_on(pool, SQL_META, &ps, true, &r, errbuf, errcap);
    if (result)
        return result;
    if (PQntuples(r) != 1 || pgpool_get_int64(r, 0, 0, seq) != 0 ||
        pgpool_get_int64(r, 0, 1, max_id) != 0)
        result = bad_result(errbuf, errcap, "meta");
    PQclear(r);
    return result;
}

/* The three filters every list takes after its own parameters. */
static void filter_params(pgpool_params *ps, const mbox_filter *f)
{
    if (f->has_since_seq)
        pgpool_param_int(ps, f->since_seq);
    else
        pgpool_param_null(ps);
    if (f->has_since_ts)
        pgpool_param_int(ps, f->since_ts);
    else
        pgpool_param_null(ps);
    pgpool_param_int(ps, f->limit);
    pgpool_param_int(ps, f->offset);
}

/* Reads the seq of a list result (first column, every row holds it) and
 * returns its number of item rows, or -1. The first row may be the lone
 * "no items" row of the left join, recognised by a NULL in the item's
 * first column. */
static int read_list_head(const PGresult *r, int64_t *seq)
{
    int n = PQntuples(r);
    if (n < 1 || pgpool_get_int64(r, 0, 0, seq) != 0)
        return -1;
    if (n == 1 && PQgetisnull(r, 0, 1))
        return 0;
    return n;
}

static int read_conversation(const PGresult *r, int row, mbox_conv *c)
{
    memset(c, 0, sizeof *c);
    if (copy_text(r, row, 1, c->conversation_id, sizeof c->conversation_id) ||
        pgpool_get_int64(r, row, 2, &c->peer_id) ||
        pgpool_get_int64(r, row, 4, &c->last_message_id) ||
        pgpool_get_int64(r, row, 5, &c->last_updated_at))
        return -1;
    return copy_bytes(r, row, 3, &c->snippet, &c->snippet_len);
}

void mbox_conv_list_clear(mbox_conv_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].snippet);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Fills out from a conversations result; -1 on a malformed row. */
static int read_conversations(const PGresult *r, mbox_conv_list *out)
{
    int rows = read_list_head(r, &out->seq);
    if (rows <= 0)
        return rows;
    out->items = calloc((size_t)rows, sizeof *out->items);
    if (!out->items)
        return -1;
    for (int i = 0; i < rows; i++) {
        if (read_conversation(r, i, &out->items[i]) != 0)
            return -1;
        out->n++;
    }
    return 0;
}

mbox_err mbox_list_conversations(const mbox_store *s, int64_t user_id,
                                 const mbox_filter *f, mbox_conv_list *out,
                                 char *errbuf, size_t errcap)
{
    memset(out, 0, sizeof *out);
    int shard;
    pgpool *pool = pool_of_user(s, user_id, &shard);
    pgpool_params ps = {0};
    pgpool_param_int(&ps, user_id);
    filter_params(&ps, f);
    PGresult *r;
    mbox_err result =
        exec_on(pool, SQL_CONVERSATIONS, &ps, true, &r, errbuf, errcap);
    if (result)
        return result;
    if (read_conversations(r, out) != 0) {
        mbox_conv_list_clear(out);
        result = bad_result(errbuf, errcap, "conversations");
    }
    PQclear(r);
    return result;
}

void mbox_msg_list_clear(mbox_msg_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        msg_clear(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Appends the first rows messages of r (columns from col0) to out, which
 * has room for them. */
static int append_messages(const PGresult *r, int rows, int col0,
                           mbox_msg_list *out)
{
    for (int i = 0; i < rows; i++) {
        if (read_message(r, i, col0, &out->items[out->n]) != 0)
            return -1;
        out->n++;
    }
    return 0;
}

static int read_messages(const PGresult *r, mbox_msg_list *out)
{
    int rows = read_list_head(r, &out->seq);
    if (rows <= 0)
        return rows;
    out->items = calloc((size_t)rows, sizeof *out->items);
    if (!out->items)
        return -1;
    return append_messages(r, rows, 1, out);
}

mbox_err mbox_list_messages(const mbox_store *s, int64_t user_id,
                            const char *conversation_id, const mbox_filter *f,
                            mbox_msg_list *out, char *errbuf, size_t errcap)
{
    memset(out, 0, sizeof *out);
    int shard;
    pgpool *pool = pool_of_user(s, user_id, &shard);
    pgpool_params ps = {0};
    pgpool_param_int(&ps, user_id);
    pgpool_param_text(&ps, conversation_id);
    if (f->has_before)
        pgpool_param_int(&ps, f->before);
    else
        pgpool_param_null(&ps);
    filter_params(&ps, f);
    PGresult *r;
    mbox_err result =
        exec_on(pool, SQL_MESSAGES, &ps, true, &r, errbuf, errcap);
    if (result)
        return result;
    if (read_messages(r, out) != 0) {
        mbox_msg_list_clear(out);
        result = bad_result(errbuf, errcap, "messages");
    }
    PQclear(r);
    return result;
}

/* Claims up to limit entries on one instance, appending them to out
 * (which has room for limit more). */
static mbox_err claim_on(pgpool *pool, int limit, int64_t lease_ms,
                         int64_t now_ms, mbox_msg_list *out, char *errbuf,
                         size_t errcap)
{
    pgpool_params ps = {0};
    pgpool_param_int(&ps, now_ms);
    pgpool_param_int(&ps, lease_ms);
    pgpool_param_int(&ps, limit);
    PGresult *r;
    mbox_err result = exec_on(pool, SQL_CLAIM, &ps, false, &r, errbuf, errcap);
    if (result)
        return result;
    int rows = PQntuples(r);
    if (rows > limit || append_messages(r, rows, 0, out) != 0)
        result = bad_result(errbuf, errcap, "outbox claim");
    PQclear(r);
    return result;
}

/* An instance that fails, unreachable or answering an error, is skipped
 * and the others are still visited: what they gave is already leased to
 * this caller, and dropping it would hold it back for a whole lease. */
mbox_err mbox_outbox_claim(const mbox_store *s, int limit, int64_t lease_ms,
                           int64_t now_ms, mbox_msg_list *out, char *errbuf,
                           size_t errcap)
{
    memset(out, 0, sizeof *out);
    out->items = calloc((size_t)limit, sizeof *out->items);
    if (!out->items)
        return bad_result(errbuf, errcap, "outbox claim (memory)");
    int instances = s->map->instances;
    int reached = 0;
    mbox_err worst = MBOX_OK;
    /* Each instance gets a fair share of what is still wanted, so one
     * backlogged instance cannot starve the others. */
    for (int i = 0; i < instances && (int)out->n < limit; i++) {
        int wanted = limit - (int)out->n;
        int share = (wanted + (instances - i) - 1) / (instances - i);
        char why[256];
        mbox_err err = claim_on(s->pools[i], share, lease_ms, now_ms, out, why,
                                sizeof why);
        if (err == MBOX_OK) {
            reached++;
            continue;
        }
        /* Answered if no instance is reached: a failure of ours (a 500,
         * which no retry cures) over an instance being down (a 503). */
        if (worst == MBOX_OK || (err == MBOX_FAILED && worst != MBOX_FAILED)) {
            worst = err;
            snprintf(errbuf, errcap, "%s", why);
        }
    }
    /* Entries read before a malformed row are leased all the same. */
    if (reached == 0 && out->n == 0 && worst != MBOX_OK) {
        mbox_msg_list_clear(out);
        return worst;
    }
    return MBOX_OK;
}

/* Writes "{a,b,c}" (a PostgreSQL array literal) of the chosen keys' field
 * into a new string. */
static char *array_literal(const mbox_outbox_key *keys, size_t n,
                           const int *instance_of_key, int instance,
                           bool is_sender)
{
    size_t cap = n * 21 + 3;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    size_t len = 0;
    text[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (instance_of_key[i] != instance)
            continue;
        int64_t v = is_sender ? keys[i].sender_id : keys[i].message_id;
        len += (size_t)snprintf(text + len, cap - len, "%s%" PRId64,
                                len > 1 ? "," : "", v);
    }
    text[len++] = '}';
    text[len] = '\0';
    return text;
}

/* Deletes the keys that live on one instance. */
static mbox_err ack_on(const mbox_store *s, const mbox_outbox_key *keys,
                       size_t n, const int *instance_of_key, int instance,
                       int64_t *deleted, char *errbuf, size_t errcap)
{
    char *senders = array_literal(keys, n, instance_of_key, instance, true);
    char *ids = array_literal(keys, n, instance_of_key, instance, false);
    mbox_err result = MBOX_OK;
    if (!senders || !ids) {
        result = bad_result(errbuf, errcap, "outbox ack (memory)");
        goto done;
    }
    pgpool_params ps = {0};
    pgpool_param_text(&ps, senders);
    pgpool_param_text(&ps, ids);
    PGresult *r;
    result =
        exec_on(s->pools[instance], SQL_ACK, &ps, false, &r, errbuf, errcap);
    if (result)
        goto done;
    *deleted += strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
done:
    free(senders);
    free(ids);
    return result;
}

mbox_err mbox_outbox_ack(const mbox_store *s, const mbox_outbox_key *keys,
                         size_t n, int64_t *deleted, char *errbuf,
                         size_t errcap)
{
    *deleted = 0;
    if (n == 0)
        return MBOX_OK;
    int *instance_of_key = malloc(n * sizeof *instance_of_key);
    if (!instance_of_key)
        return bad_result(errbuf, errcap, "outbox ack (memory)");
    bool used[SHARDMAP_INSTANCES_MAX] = {false};
    for (size_t i = 0; i < n; i++) {
        int shard = shardmap_shard(s->map, keys[i].sender_id);
        instance_of_key[i] = shardmap_instance(s->map, shard);
        used[instance_of_key[i]] = true;
    }
    mbox_err result = MBOX_OK;
    for (int i = 0; i < s->map->instances && !result; i++)
        if (used[i])
            result =
                ack_on(s, keys, n, instance_of_key, i, deleted, errbuf, errcap);
    free(instance_of_key);
    return result;
}

bool mbox_is_ready(const mbox_store *s)
{
    for (int i = 0; i < s->map->instances; i++) {
        char errbuf[256];
        PGresult *r;
        if (exec_on(s->pools[i], SQL_PING, NULL, true, &r, errbuf,
                    sizeof errbuf) != MBOX_OK)
            return false;
        PQclear(r);
    }
    return true;
}
