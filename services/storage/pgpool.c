/*
 * pgpool.c - libpq connection pool of one PostgreSQL instance.
 *
 * Idle connections sit on a stack guarded by the pool mutex; a borrower
 * waits on a condition variable (until the call's deadline) when all are
 * in use. A borrowed connection belongs to one thread until it is given
 * back, which is what libpq requires.
 *
 * Broken connections: before a connection is used, PQconsumeInput picks
 * up a close the server announced while it was idle (a restart, a kill),
 * so the statement goes to a fresh connection instead of failing. A
 * statement that still fails on a dead connection is reported
 * PGPOOL_UNAVAILABLE; reads are retried once on a new connection, writes
 * are not (the first attempt may have committed, and the caller's retry
 * is idempotent by design).
 *
 * Deadlines: libpq's blocking calls (PQexecParams, PQprepare,
 * PQgetResult, PQreset) wait for as long as the server is silent, and a
 * backend that stopped (SIGSTOP, a wedged process) while its host's
 * kernel still acknowledges is silent forever: TCP timeouts never fire.
 * So a borrowed connection runs in libpq's nonblocking mode and every
 * wait is a poll of PQsocket bounded by the call's deadline
 * (PGPOOL_CALL_DEADLINE_MS from the moment it asks for a connection, or
 * the deadline a batch is given),
 * the asynchronous pattern of the libpq manual: PQflush until sent,
 * PQconsumeInput until PQisBusy says PQgetResult will not block, and
 * PQresetStart/PQresetPoll to reconnect. A call that reaches its
 * deadline marks its connection for a reset and reports
 * PGPOOL_UNAVAILABLE; what it sent may still run once the server
 * resumes, so its outcome is unknown and it is never retried here.
 */
#include "pgpool.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "constants.h"
#include "log.h"

/* A storage call gives up before the cache node waiting for it does, so
 * the node gets a 503 to act on rather than a timeout of its own. */
_Static_assert(PGPOOL_CALL_DEADLINE_MS < HOP_TIMEOUT_MS,
               "storage must give up on PostgreSQL before its callers "
               "give up on storage");
_Static_assert(PGPOOL_STATEMENT_TIMEOUT_MS < PGPOOL_CALL_DEADLINE_MS,
               "the server's statement timeout must fire first");

/* PostgreSQL type OIDs of the binary values read here (pg_type.h). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25

typedef struct pool_conn {
    PGconn *pg;
    bool needs_reset;  /* left in an unknown state: reset before reuse */
    unsigned prepared; /* bit i: the pool's prepared_sql[i] is prepared in
                          this connection's session */
} pool_conn;

struct pgpool {
    char *url;
    char name[32];
    int size;
    pool_conn *conns;      /* size of them, owned */
    pool_conn **idle;      /* stack of idle connections; guarded by lock */
    int nidle;             /* guarded by lock */
    int64_t down_until_ms; /* fail fast until then; guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t available; /* signalled when a connection is returned */
    metrics_t *metrics;       /* borrowed, may be NULL */
    const char *prepared_sql[PGPOOL_PREPARED_MAX]; /* pgpool_prepare */
    int nprepared;
};

const char *pgpool_strerror(pgpool_err err)
{
    switch (err) {
    case PGPOOL_OK:
        return "ok";
    case PGPOOL_UNAVAILABLE:
        return "postgresql unavailable";
    case PGPOOL_FAILED:
        return "statement failed";
    }
    return "unknown error";
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies a libpq message into errbuf without its trailing newline. */
static void set_error(char *errbuf, size_t errcap, const char *what,
                      const char *detail)
{
    if (!errbuf || errcap == 0)
        return;
    snprintf(errbuf, errcap, "%s: %s", what, detail ? detail : "");
    size_t len = strlen(errbuf);
    while (len > 0 && (errbuf[len - 1] == '\n' || errbuf[len - 1] == ' '))
        errbuf[--len] = '\0';
}

static void log_pg_problem(const pgpool *p, const char *msg, const char *detail)
{
    json_t *fields = json_pack("{s:s,s:s}", "instance", p->name, "error",
                               detail ? detail : "");
    log_event("warn", msg, fields);
    json_decref(fields);
}

/* libpq prints server notices (for example the FATAL a server sends
 * before it closes a connection at shutdown) on stderr by default; route
 * them into the JSON log instead. arg is the pool. */
static void on_notice(void *arg, const char *message)
{
    log_pg_problem(arg, "postgresql notice", message);
}

/* Opens one connection. Our defaults come before the URL so that the URL
 * can override them; statement_timeout bounds every statement on the
 * server. A server host that hangs or a network that drops everything
 * never answers at all: TCP keepalives and tcp_user_timeout end such a
 * connection (PGPOOL_TCP_TIMEOUT_MS) instead of leaving a call blocked
 * on it for good. They do nothing over a Unix socket. */
static PGconn *connect_one(const pgpool *p)
{
    char options[64];
    snprintf(options, sizeof options, "-c statement_timeout=%d",
             PGPOOL_STATEMENT_TIMEOUT_MS);
    char timeout[16], user_timeout[16];
    snprintf(timeout, sizeof timeout, "%d", PGPOOL_CONNECT_TIMEOUT_S);
    snprintf(user_timeout, sizeof user_timeout, "%d", PGPOOL_TCP_TIMEOUT_MS);
    const char *keys[] = {"connect_timeout",  "application_name",
                          "options",          "keepalives",
                          "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout",
                          "dbname",           NULL};
    const char *values[] = {
        timeout, "messenger-storage", options, "1", "5", "2",
        "3",     user_timeout,        p->url,  NULL};
    return PQconnectdbParams(keys, values, 1);
}

pgpool *pgpool_new(const char *url, const char *name, int size,
                   metrics_t *metrics)
{
    if (!url || size < 1)
        return NULL;
    pgpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->size = size;
    p->metrics = metrics;
    snprintf(p->name, sizeof p->name, "%s", name ? name : "pg");
    p->url = strdup(url);
    p->conns = calloc((size_t)size, sizeof *p->conns);
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (!p->url || !p->conns || !p->idle)
        goto fail;
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        goto fail;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        goto fail_mutex;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&p->available, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        goto fail_mutex;
    for (int i = 0; i < size; i++) {
        p->conns[i].pg = connect_one(p);
        if (!p->conns[i].pg) {
            pgpool_free(p);
            return NULL;
        }
        PQsetNoticeProcessor(p->conns[i].pg, on_notice, p);
        if (PQstatus(p->conns[i].pg) != CONNECTION_OK && i == 0)
            log_pg_problem(p, "postgresql not reachable at start-up",
                           PQerrorMessage(p->conns[i].pg));
        p->idle[p->nidle++] = &p->conns[i];
    }
    metrics_gauge_add(metrics, "pg_pool_connections",
                      "PostgreSQL connections of the pools", size);
    metrics_gauge_add(metrics, "pg_pool_connections_in_use",
                      "PostgreSQL connections borrowed by queries", 0);
    return p;
fail_mutex:
    pthread_mutex_destroy(&p->lock);
fail:
    free(p->idle);
    free(p->conns);
    free(p->url);
    free(p);
    return NULL;
}

void pgpool_free(pgpool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].pg)
            PQfinish(p->conns[i].pg);
    pthread_cond_destroy(&p->available);
    pthread_mutex_destroy(&p->lock);
    free(p->idle);
    free(p->conns);
    free(p->url);
    free(p);
}

/* Takes an idle connection, waiting no later than deadline_ms (a time of
 * clockms_monotonic): the wait is part of the call's time. NULL when
 * none became free in time. */
static pool_conn *borrow(pgpool *p, int64_t deadline_ms)
{
    struct timespec deadline =
        clockms_monotonic_deadline_in(deadline_ms - clockms_monotonic());
    pthread_mutex_lock(&p->lock);
    while (p->nidle == 0) {
        /* ETIMEDOUT, or any error: never a loop that holds the lock. */
        if (pthread_cond_timedwait(&p->available, &p->lock, &deadline) != 0)
            break;
    }
    pool_conn *c = p->nidle > 0 ? p->idle[--p->nidle] : NULL;
    pthread_mutex_unlock(&p->lock);
    if (c)
        metrics_gauge_add(p->metrics, "pg_pool_connections_in_use", NULL, 1);
    return c;
}

static void give_back(pgpool *p, pool_conn *c)
{
    pthread_mutex_lock(&p->lock);
    p->idle[p->nidle++] = c;
    pthread_cond_signal(&p->available);
    pthread_mutex_unlock(&p->lock);
    metrics_gauge_add(p->metrics, "pg_pool_connections_in_use", NULL, -1);
}

static bool is_backing_off(pgpool *p)
{
    pthread_mutex_lock(&p->lock);
    bool backing_off = monotonic_ms() < p->down_until_ms;
    pthread_mutex_unlock(&p->lock);
    return backing_off;
}

static void set_backoff(pgpool *p, int64_t until_ms)
{
    pthread_mutex_lock(&p->lock);
    p->down_until_ms = until_ms;
    pthread_mutex_unlock(&p->lock);
}

/* ---- waiting on the server, never past a deadline ---- */

/* Waits until pg's socket is ready for events or deadline_ms (monotonic)
 * passes. Returns 1 with *revents set, 0 at the deadline, -1 when there
 * is no socket or poll fails. */
static int wait_socket(const PGconn *pg, short events, int64_t deadline_ms,
                       short *revents)
{
    struct pollfd pfd = {.fd = PQsocket(pg), .events = events};
    if (pfd.fd < 0)
        return -1;
    for (;;) {
        int64_t left = deadline_ms - monotonic_ms();
        if (left <= 0)
            return 0;
        int rc = poll(&pfd, 1, (int)left);
        if (rc > 0) {
            *revents = pfd.revents;
            return 1;
        }
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Sends what libpq queued, reading whatever the server answers meanwhile,
 * as the libpq manual advises: a server blocked writing results nobody
 * reads would stop reading the rest. 0, or -1 when the connection failed
 * or the deadline passed first. */
static int flush_by(PGconn *pg, int64_t deadline_ms)
{
    int rc;
    while ((rc = PQflush(pg)) == 1) {
        short revents;
        if (wait_socket(pg, POLLIN | POLLOUT, deadline_ms, &revents) != 1)
            return -1;
        if ((revents & POLLIN) && PQconsumeInput(pg) != 1)
            return -1;
    }
    return rc;
}

/* PQgetResult once it cannot block: *out is the next result of the query
 * in flight, or NULL where its results end. Returns 0, or -1 (and *out
 * NULL) when the connection failed or the deadline passed first. */
static int next_result(PGconn *pg, int64_t deadline_ms, PGresult **out)
{
    *out = NULL;
    while (PQisBusy(pg)) {
        short revents;
        if (wait_socket(pg, POLLIN, deadline_ms, &revents) != 1)
            return -1;
        /* A read that met the close leaves the connection bad and
         * PQisBusy false: PQgetResult then reports the failure at once. */
        if (PQconsumeInput(pg) != 1 && PQstatus(pg) != CONNECTION_BAD)
            return -1;
    }
    *out = PQgetResult(pg);
    return 0;
}

/* Sends the one query queued on pg and reads its results to their end,
 * keeping the last as PQexec does. 0 with *out set, or -1 (*out NULL)
 * when the connection failed or the deadline passed first. */
static int finish_query(PGconn *pg, int64_t deadline_ms, PGresult **out)
{
    *out = NULL;
    if (flush_by(pg, deadline_ms) != 0)
        return -1;
    for (;;) {
        PGresult *r;
        if (next_result(pg, deadline_ms, &r) != 0) {
            PQclear(*out);
            *out = NULL;
            return -1;
        }
        if (!r)
            return *out ? 0 : -1;
        PQclear(*out);
        *out = r;
    }
}

/* errbuf for a call whose connection failed under it or whose deadline
 * passed: the caller cannot tell which from libpq alone. */
static void set_wait_error(const pgpool *p, const PGconn *pg,
                           int64_t deadline_ms, char *errbuf, size_t errcap)
{
    if (monotonic_ms() < deadline_ms) {
        set_error(errbuf, errcap, p->name, PQerrorMessage(pg));
        return;
    }
    char why[80];
    snprintf(why, sizeof why,
             "no answer by the call's deadline (%d ms at most)",
             PGPOOL_CALL_DEADLINE_MS);
    set_error(errbuf, errcap, p->name, why);
}

/* Reconnects pg's session without waiting past deadline_ms nor the
 * connect timeout, which PQresetPoll does not apply by itself. 0 once
 * connected, else -1. */
static int reset_by(PGconn *pg, int64_t deadline_ms)
{
    int64_t connect_by = monotonic_ms() + PGPOOL_CONNECT_TIMEOUT_S * 1000;
    if (connect_by < deadline_ms)
        deadline_ms = connect_by;
    if (PQresetStart(pg) != 1)
        return -1;
    /* Just started: as if the last poll asked to write. */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        short events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        short revents;
        if (st == PGRES_POLLING_FAILED ||
            wait_socket(pg, events, deadline_ms, &revents) != 1)
            return -1;
        st = PQresetPoll(pg);
    }
    return 0;
}

/* Whether c can run a statement as it is: connected, idle, nothing
 * pending. Reads whatever the server sent while c was idle, which is how
 * a server-side close is noticed. */
static bool is_usable(pool_conn *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK || c->needs_reset)
        return false;
    /* A server that ends a session (a terminated backend, a restart)
     * sends its FATAL message and then closes: a read that takes the
     * message stops there, and only the next one meets the close. */
    return PQconsumeInput(c->pg) == 1 && PQconsumeInput(c->pg) == 1 &&
           PQstatus(c->pg) == CONNECTION_OK &&
           PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

/* Opens a new session on c, by deadline_ms. 0, or -1 with errbuf set. */
static int reconnect(pgpool *p, pool_conn *c, int64_t deadline_ms, char *errbuf,
                     size_t errcap)
{
    if (is_backing_off(p)) {
        set_error(errbuf, errcap, p->name, "instance recently unreachable");
        return -1;
    }
    if (reset_by(c->pg, deadline_ms) != 0) {
        const char *why = PQstatus(c->pg) == CONNECTION_BAD
                              ? PQerrorMessage(c->pg)
                              : "no connection within the connect timeout";
        set_error(errbuf, errcap, p->name, why);
        log_pg_problem(p, "postgresql reconnect failed", why);
        set_backoff(p, monotonic_ms() + PGPOOL_BACKOFF_MS);
        return -1;
    }
    c->needs_reset = false;
    c->prepared = 0; /* a new session holds no prepared statement */
    set_backoff(p, 0);
    return 0;
}

/* Makes c usable, reconnecting a broken or dirty connection by
 * deadline_ms, and puts it in nonblocking mode (a reset leaves it
 * blocking). *is_fresh tells whether it was (re)connected here. Returns
 * 0, or -1 with errbuf set when the instance cannot be reached. */
static int ensure_connected(pgpool *p, pool_conn *c, int64_t deadline_ms,
                            bool *is_fresh, char *errbuf, size_t errcap)
{
    *is_fresh = false;
    if (!is_usable(c)) {
        if (reconnect(p, c, deadline_ms, errbuf, errcap) != 0)
            return -1;
        *is_fresh = true;
    }
    if (PQsetnonblocking(c->pg, 1) != 0) {
        set_error(errbuf, errcap, p->name, PQerrorMessage(c->pg));
        c->needs_reset = true;
        return -1;
    }
    return 0;
}

/* Errors worth retrying later: connection problems (class 08), operator
 * intervention such as shutdown or statement timeout (57), insufficient
 * resources (53), and transaction rollbacks such as deadlocks (40). */
static bool is_transient_sqlstate(const char *state)
{
    if (!state || strlen(state) != 5)
        return false;
    return strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
           strncmp(state, "53", 2) == 0 || strncmp(state, "40", 2) == 0;
}

/* Errors of a session's prepared statements rather than of the data:
 * feature not supported (a cached plan whose result type changed) and
 * invalid statement name (a prepared statement the session lost). */
static bool is_prepared_sqlstate(const char *state)
{
    return strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0;
}

/* Runs the statement once on c, by deadline_ms. On success *out holds
 * the result. */
static pgpool_err run_once(pgpool *p, pool_conn *c, const char *sql,
                           const pgpool_params *ps, int64_t deadline_ms,
                           PGresult **out, char *errbuf, size_t errcap)
{
    PGresult *res = NULL;
    int sent = PQsendQueryParams(
        c->pg, sql, ps ? ps->n : 0, NULL, ps ? ps->values : NULL,
        ps ? ps->lengths : NULL, ps ? ps->formats : NULL, 1);
    if (sent != 1 || finish_query(c->pg, deadline_ms, &res) != 0) {
        set_wait_error(p, c->pg, deadline_ms, errbuf, errcap);
        log_pg_problem(p, "postgresql statement failed", errbuf);
        c->needs_reset = true;
        return PGPOOL_UNAVAILABLE;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *out = res;
        return PGPOOL_OK;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    bool is_transient =
        PQstatus(c->pg) != CONNECTION_OK || is_transient_sqlstate(state);
    set_error(errbuf, errcap, p->name, PQresultErrorMessage(res));
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        c->needs_reset = true;
    log_pg_problem(p, "postgresql statement failed", errbuf);
    PQclear(res);
    return is_transient ? PGPOOL_UNAVAILABLE : PGPOOL_FAILED;
}

pgpool_err pgpool_exec(pgpool *p, const char *sql, const pgpool_params *ps,
                       bool is_retry_safe, PGresult **out, char *errbuf,
                       size_t errcap)
{
    *out = NULL;
    if (ps && ps->is_overflow) {
        set_error(errbuf, errcap, p->name, "too many parameters");
        return PGPOOL_FAILED;
    }
    double started = monotonic_seconds();
    int64_t deadline_ms = monotonic_ms() + PGPOOL_CALL_DEADLINE_MS;
    pool_conn *c = borrow(p, deadline_ms);
    if (!c) {
        set_error(errbuf, errcap, p->name, "no free connection in time");
        return PGPOOL_UNAVAILABLE;
    }
    pgpool_err err = PGPOOL_UNAVAILABLE;
    bool is_fresh = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure_connected(p, c, deadline_ms, &is_fresh, errbuf, errcap) !=
            0) {
            err = PGPOOL_UNAVAILABLE;
            break;
        }
        err = run_once(p, c, sql, ps, deadline_ms, out, errbuf, errcap);
        /* A second attempt only for reads that met a connection that
         * died under them, and only if it was not brand new. A call past
         * its deadline is not one of them: its connection is still up,
         * and a caller is waiting. */
        bool is_lost =
            err == PGPOOL_UNAVAILABLE && PQstatus(c->pg) != CONNECTION_OK;
        if (!is_lost || !is_retry_safe || is_fresh)
            break;
    }
    give_back(p, c);
    if (p->metrics)
        metrics_observe_dependency(p->metrics, "postgres",
                                   monotonic_seconds() - started);
    return err;
}

/* ---- prepared statements of batches ---- */

int pgpool_prepare(pgpool *p, const char *const *sqls, int n)
{
    if (n < 0 || n > PGPOOL_PREPARED_MAX)
        return -1;
    for (int i = 0; i < n; i++)
        p->prepared_sql[i] = sqls[i];
    p->nprepared = n;
    return 0;
}

/* Index of sql among the pool's prepared statements, or -1. */
static int prepared_index(const pgpool *p, const char *sql)
{
    for (int i = 0; i < p->nprepared; i++)
        if (p->prepared_sql[i] == sql)
            return i;
    return -1;
}

static void prepared_name(int index, char *out, size_t cap)
{
    snprintf(out, cap, "pgpool_%d", index);
}

/* Prepares on c, before its batch, the batch's statements that the pool
 * runs prepared and c's session lacks. One that the server refuses to
 * prepare runs unprepared (it fails again in the batch if it is wrong).
 * Returns 0, or -1 when the connection failed or deadline_ms passed
 * (nothing of the batch was sent). */
static int prepare_batch(pgpool *p, pool_conn *c, const pgpool_stmt *stmts,
                         int n, int64_t deadline_ms)
{
    for (int i = 0; i < n; i++) {
        int k = prepared_index(p, stmts[i].sql);
        if (k < 0 || (c->prepared & (1u << k)) != 0)
            continue;
        char name[32];
        prepared_name(k, name, sizeof name);
        PGresult *r;
        if (PQsendPrepare(c->pg, name, stmts[i].sql, 0, NULL) != 1 ||
            finish_query(c->pg, deadline_ms, &r) != 0)
            return -1;
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            c->prepared |= 1u << k;
        else
            log_pg_problem(p, "postgresql prepare failed",
                           PQresultErrorMessage(r));
        PQclear(r);
    }
    return 0;
}

/* ---- batches in pipeline mode ----
 *
 * The statements are queued with the connection in nonblocking mode and
 * flushed while reading whatever the server already answered
 * (flush_by): a batch larger than the socket buffers cannot deadlock
 * with a server that blocks writing results nobody reads. */

/* Queues one statement of a batch: prepared when c's session has it. */
static int send_stmt(const pgpool *p, const pool_conn *c, const pgpool_stmt *st)
{
    const pgpool_params *ps = st->params;
    int k = prepared_index(p, st->sql);
    if (k >= 0 && (c->prepared & (1u << k)) != 0) {
        char name[32];
        prepared_name(k, name, sizeof name);
        return PQsendQueryPrepared(
            c->pg, name, ps ? ps->n : 0, ps ? ps->values : NULL,
            ps ? ps->lengths : NULL, ps ? ps->formats : NULL, 1);
    }
    return PQsendQueryParams(c->pg, st->sql, ps ? ps->n : 0, NULL,
                             ps ? ps->values : NULL, ps ? ps->lengths : NULL,
                             ps ? ps->formats : NULL, 1);
}

static int send_pipeline(const pgpool *p, const pool_conn *c,
                         const pgpool_stmt *stmts, int n, int64_t deadline_ms)
{
    PGconn *pg = c->pg;
    if (PQenterPipelineMode(pg) != 1)
        return -1;
    int ok = PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 1);
    for (int i = 0; ok && i < n; i++)
        ok = send_stmt(p, c, &stmts[i]);
    ok = ok && PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 1);
    ok = ok && PQpipelineSync(pg);
    return ok ? flush_by(pg, deadline_ms) : -1;
}

/* What reading a pipeline's results found. */
typedef struct pipeline_outcome {
    bool is_broken;    /* the protocol or the connection failed, or the
                          deadline passed before the last result */
    bool has_error;    /* a statement failed (the server said so) */
    bool is_committed; /* COMMIT answered COMMIT */
    bool is_transient; /* the failure is worth retrying later */
    char sqlstate[6];  /* of the statement that failed, when one did */
} pipeline_outcome;

/* Reads the result of query k of the pipeline (0: BEGIN, n+1: COMMIT)
 * and the NULL that ends it, by deadline_ms. */
static void read_one(pgpool *p, PGconn *pg, int k, int n, int64_t deadline_ms,
                     PGresult **results, pipeline_outcome *o, char *errbuf,
                     size_t errcap)
{
    PGresult *res;
    if (next_result(pg, deadline_ms, &res) != 0 || !res) {
        o->is_broken = true;
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    bool is_ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (st == PGRES_FATAL_ERROR && !o->has_error) {
        o->has_error = true;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        o->is_transient = is_transient_sqlstate(state);
        snprintf(o->sqlstate, sizeof o->sqlstate, "%s", state ? state : "");
        set_error(errbuf, errcap, p->name, PQresultErrorMessage(res));
        log_pg_problem(p, "postgresql batch statement failed", errbuf);
    }
    if (k == n + 1)
        o->is_committed = is_ok && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (k >= 1 && k <= n && is_ok)
        results[k - 1] = res;
    else
        PQclear(res);
    PGresult *extra; /* each query ends with one NULL */
    if (next_result(pg, deadline_ms, &extra) != 0 || extra != NULL) {
        PQclear(extra);
        o->is_broken = true;
    }
}

static void read_pipeline(pgpool *p, PGconn *pg, int n, int64_t deadline_ms,
                          PGresult **results, pipeline_outcome *o, char *errbuf,
                          size_t errcap)
{
    for (int k = 0; k <= n + 1 && !o->is_broken; k++)
        read_one(p, pg, k, n, deadline_ms, results, o, errbuf, errcap);
    if (!o->is_broken) {
        PGresult *sync;
        o->is_broken = next_result(pg, deadline_ms, &sync) != 0 || !sync ||
                       PQresultStatus(sync) != PGRES_PIPELINE_SYNC;
        PQclear(sync);
    }
    if (o->is_broken || PQexitPipelineMode(pg) != 1 ||
        PQstatus(pg) != CONNECTION_OK)
        o->is_broken = true;
}

static void clear_results(PGresult **results, int n)
{
    for (int i = 0; i < n; i++) {
        PQclear(results[i]);
        results[i] = NULL;
    }
}

/* Ends the transaction block a failed batch leaves open: in pipeline
 * mode a failed statement makes the server skip the rest up to the sync,
 * COMMIT included, and the session stays in its aborted BEGIN. One
 * round trip, where a reconnect would fork a backend and prepare every
 * statement again. The caller checks the session is idle after. */
static void roll_back_by(PGconn *pg, int64_t deadline_ms)
{
    PGresult *r = NULL;
    if (PQsendQueryParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 1) == 1)
        finish_query(pg, deadline_ms, &r);
    PQclear(r);
}

/* Gives up on c after its connection failed under a batch or the
 * deadline passed: logged as what, errbuf set unless it already holds a
 * statement's error, and c reset before its next use. */
static void abandon_batch(pgpool *p, pool_conn *c, int64_t deadline_ms,
                          const char *what, bool has_error, char *errbuf,
                          size_t errcap)
{
    if (!has_error)
        set_wait_error(p, c->pg, deadline_ms, errbuf, errcap);
    log_pg_problem(p, what, errbuf);
    c->needs_reset = true;
}

/* Prepares, sends and reads the batch on c (connected), by deadline_ms;
 * the outcome as pgpool_exec_batch answers it. */
static pgpool_err run_pipeline(pgpool *p, pool_conn *c,
                               const pgpool_stmt *stmts, int n,
                               int64_t deadline_ms, PGresult **results,
                               bool *is_rolled_back, char *errbuf,
                               size_t errcap)
{
    /* Nothing of the batch is sent yet, but no statement failed either:
     * not rolled back, so that the jobs do not run again one by one
     * against a server that does not answer. */
    if (prepare_batch(p, c, stmts, n, deadline_ms) != 0) {
        abandon_batch(p, c, deadline_ms, "postgresql batch not sent", false,
                      errbuf, errcap);
        return PGPOOL_UNAVAILABLE;
    }
    /* From here on the outcome of a failure is unknown: COMMIT may have
     * run, or may run once a stopped server resumes. */
    if (send_pipeline(p, c, stmts, n, deadline_ms) != 0) {
        abandon_batch(p, c, deadline_ms, "postgresql batch outcome unknown",
                      false, errbuf, errcap);
        return PGPOOL_UNAVAILABLE;
    }
    pipeline_outcome o = {0};
    read_pipeline(p, c->pg, n, deadline_ms, results, &o, errbuf, errcap);
    if (!o.is_broken && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
        roll_back_by(c->pg, deadline_ms);
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        c->needs_reset = true;
    if (o.is_broken) {
        abandon_batch(p, c, deadline_ms, "postgresql batch outcome unknown",
                      o.has_error, errbuf, errcap);
        return PGPOOL_UNAVAILABLE;
    }
    if (o.is_committed)
        return PGPOOL_OK;
    if (!o.has_error)
        set_error(errbuf, errcap, p->name, "COMMIT did not commit");
    *is_rolled_back = true;
    /* The session survives a rolled-back batch, except when its prepared
     * statements are what failed: one prepared before a schema change
     * keeps failing on this connection ("cached plan must not change
     * result type"), and a new session prepares it again. */
    if (is_prepared_sqlstate(o.sqlstate))
        c->needs_reset = true;
    return o.is_transient ? PGPOOL_UNAVAILABLE : PGPOOL_FAILED;
}

pgpool_err pgpool_exec_batch(pgpool *p, const pgpool_stmt *stmts, int n,
                             int64_t deadline_ms, PGresult **results,
                             bool *is_rolled_back, char *errbuf, size_t errcap)
{
    *is_rolled_back = false;
    memset(results, 0, (size_t)n * sizeof *results);
    for (int i = 0; i < n; i++) {
        if (stmts[i].params && stmts[i].params->is_overflow) {
            set_error(errbuf, errcap, p->name, "too many parameters");
            *is_rolled_back = true;
            return PGPOOL_FAILED;
        }
    }
    double started = monotonic_seconds();
    pool_conn *c = borrow(p, deadline_ms);
    if (!c) {
        /* Nothing was sent, and no statement failed: not rolled back, so
         * the jobs are not run again one by one, each waiting as long. */
        set_error(errbuf, errcap, p->name, "no free connection in time");
        return PGPOOL_UNAVAILABLE;
    }
    bool is_fresh;
    pgpool_err err = PGPOOL_UNAVAILABLE; /* nothing sent, as above */
    if (ensure_connected(p, c, deadline_ms, &is_fresh, errbuf, errcap) == 0)
        err = run_pipeline(p, c, stmts, n, deadline_ms, results, is_rolled_back,
                           errbuf, errcap);
    if (err != PGPOOL_OK)
        clear_results(results, n);
    give_back(p, c);
    if (p->metrics)
        metrics_observe_dependency(p->metrics, "postgres",
                                   monotonic_seconds() - started);
    return err;
}

static void param_add(pgpool_params *ps, const char *value, int len, int format)
{
    if (ps->n >= PGPOOL_PARAMS_MAX) {
        ps->is_overflow = true;
        return;
    }
    ps->values[ps->n] = value;
    ps->lengths[ps->n] = len;
    ps->formats[ps->n] = format;
    ps->n++;
}

void pgpool_param_int(pgpool_params *ps, int64_t v)
{
    if (ps->n >= PGPOOL_PARAMS_MAX) {
        ps->is_overflow = true;
        return;
    }
    char *text = ps->numbers[ps->n];
    snprintf(text, sizeof ps->numbers[0], "%" PRId64, v);
    param_add(ps, text, 0, 0);
}

void pgpool_param_text(pgpool_params *ps, const char *s)
{
    param_add(ps, s, 0, 0);
}

void pgpool_param_bytes(pgpool_params *ps, const char *buf, size_t len)
{
    /* An empty bytea still needs a non-NULL pointer (NULL means SQL NULL). */
    param_add(ps, buf ? buf : "", (int)len, 1);
}

void pgpool_param_null(pgpool_params *ps)
{
    param_add(ps, NULL, 0, 0);
}

/* A binary value of the given type and exact size, or NULL. */
static const unsigned char *binary_value(const PGresult *r, int row, int col,
                                         Oid type, int size)
{
    if (row < 0 || row >= PQntuples(r) || col < 0 || col >= PQnfields(r))
        return NULL;
    if (PQgetisnull(r, row, col) || PQftype(r, col) != type ||
        PQfformat(r, col) != 1 || PQgetlength(r, row, col) != size)
        return NULL;
    return (const unsigned char *)PQgetvalue(r, row, col);
}

int pgpool_get_int64(const PGresult *r, int row, int col, int64_t *out)
{
    const unsigned char *v = binary_value(r, row, col, OID_INT8, 8);
    if (v) {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = u << 8 | v[i];
        *out = (int64_t)u;
        return 0;
    }
    v = binary_value(r, row, col, OID_INT4, 4);
    if (v) {
        uint32_t u = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
                     (uint32_t)v[2] << 8 | v[3];
        *out = (int32_t)u;
        return 0;
    }
    return -1;
}

int pgpool_get_bool(const PGresult *r, int row, int col, bool *out)
{
    const unsigned char *v = binary_value(r, row, col, OID_BOOL, 1);
    if (!v)
        return -1;
    *out = v[0] != 0;
    return 0;
}

int pgpool_get_bytes(const PGresult *r, int row, int col, const char **out,
                     size_t *len)
{
    if (row < 0 || row >= PQntuples(r) || col < 0 || col >= PQnfields(r))
        return -1;
    Oid type = PQftype(r, col);
    if (PQgetisnull(r, row, col) || (type != OID_TEXT && type != OID_BYTEA))
        return -1;
    *out = PQgetvalue(r, row, col);
    *len = (size_t)PQgetlength(r, row, col);
    return 0;
}
