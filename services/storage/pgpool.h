/*
 * pgpool.h - a fixed pool of libpq connections to one PostgreSQL instance.
 *
 * The storage service keeps one pool per instance, created at start-up and
 * freed at shutdown. A statement borrows a connection, runs, and gives it
 * back, so every request reuses warm connections. A connection found
 * broken is reset (PQreset) before its next use; while an instance stays
 * unreachable the pool answers PGPOOL_UNAVAILABLE at once for a short
 * back-off instead of making every caller wait for a connect timeout.
 * No call lasts longer than PGPOOL_CALL_DEADLINE_MS, its wait for a free
 * connection included (a batch: until the deadline it is given): one
 * that has no answer by then gives up and resets its connection.
 *
 * Statements are parameterised (PQexecParams, one round trip each; the
 * statements of batches named by pgpool_prepare run prepared) and
 * results come back in binary format, read with the pgpool_get_* helpers:
 * bytea values then arrive as raw bytes, NUL bytes included, without hex
 * decoding.
 */
#ifndef STORAGE_PGPOOL_H
#define STORAGE_PGPOOL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/* libpq connect_timeout, seconds: a dead instance is reported quickly. */
#define PGPOOL_CONNECT_TIMEOUT_S 2
/* Server-side statement_timeout, ms: a stuck statement becomes a 503
 * instead of holding a connection (and a mailbox lock) indefinitely.
 * Below PGPOOL_CALL_DEADLINE_MS, so a statement that is merely slow is
 * ended by the server, which reports the rollback. */
#define PGPOOL_STATEMENT_TIMEOUT_MS 3000
/* Client-side bound on one call, ms: waiting for a free connection,
 * reconnecting, preparing, sending, and reading every result. It ends a
 * call whose server stopped answering while its kernel still
 * acknowledges (a stopped or wedged backend, which TCP timeouts never
 * notice) with PGPOOL_UNAVAILABLE and an unknown outcome. The margin
 * over the statement timeout lets the server's own cancel arrive first
 * for a call that found a connection at once (one that waited has less
 * time left, and may stop first); the whole stays under a cache node's
 * HOP_TIMEOUT_MS (checked in pgpool.c), so storage answers 503 before
 * its caller gives up. */
#define PGPOOL_CALL_DEADLINE_MS (PGPOOL_STATEMENT_TIMEOUT_MS + 1000)
/* TCP's own bound on a server that stopped answering (a hung host, a
 * dropped network), ms: sent data unacknowledged this long ends the
 * connection (tcp_user_timeout), and so do keepalives unanswered for
 * 5 + 3 x 2 s on an idle one. A call gives up earlier
 * (PGPOOL_CALL_DEADLINE_MS); this ends the idle connections of a host
 * that is gone. */
#define PGPOOL_TCP_TIMEOUT_MS 10000
/* After a failed reconnect, calls fail fast for this long, ms. */
#define PGPOOL_BACKOFF_MS 500
/* Most parameters one statement takes. */
#define PGPOOL_PARAMS_MAX 12
/* Most statements a pool runs prepared (pgpool_prepare). */
#define PGPOOL_PREPARED_MAX 8

typedef enum {
    PGPOOL_OK = 0,
    PGPOOL_UNAVAILABLE, /* instance unreachable, connection lost, timeout,
                           or a transient server condition: retry later */
    PGPOOL_FAILED,      /* the statement failed (a bug or bad data) */
} pgpool_err;

const char *pgpool_strerror(pgpool_err err);

typedef struct pgpool pgpool;

/* Creates a pool of size connections to url (a postgresql:// URI),
 * connecting them now. An unreachable instance is not an error: its
 * connections are retried on use. name labels log lines ("pg0"). metrics
 * is borrowed and may be NULL. Returns NULL on allocation failure or a
 * size below 1. */
pgpool *pgpool_new(const char *url, const char *name, int size,
                   metrics_t *metrics);
/* Closes every connection. The caller guarantees no statement is running.
 * NULL is a no-op. */
void pgpool_free(pgpool *p);

/* Names sqls[0..n) as the statements that batches (pgpool_exec_batch)
 * run prepared: a connection prepares one the first time a batch runs it
 * there, and PostgreSQL then parses and plans it once per connection
 * instead of on every run. The texts must be static (they are recognised
 * by address) with every parameter's type cast in the text. Call before
 * the pool is used. Returns 0, or -1 when n is over PGPOOL_PREPARED_MAX. */
int pgpool_prepare(pgpool *p, const char *const *sqls, int n);

/* Parameters of one statement. Integers are sent as text; bytes as binary
 * (for bytea). The strings and buffers are borrowed until the statement
 * has run. */
typedef struct pgpool_params {
    int n;
    bool is_overflow; /* more than PGPOOL_PARAMS_MAX were added */
    const char *values[PGPOOL_PARAMS_MAX];
    int lengths[PGPOOL_PARAMS_MAX];
    int formats[PGPOOL_PARAMS_MAX];
    char numbers[PGPOOL_PARAMS_MAX][24]; /* text of integer parameters */
} pgpool_params;

void pgpool_param_int(pgpool_params *ps, int64_t v);
/* NUL-terminated text; NULL sends SQL NULL. */
void pgpool_param_text(pgpool_params *ps, const char *s);
/* Raw bytes for a bytea parameter. */
void pgpool_param_bytes(pgpool_params *ps, const char *buf, size_t len);
void pgpool_param_null(pgpool_params *ps);

/* Runs one statement (params may be NULL) on a pooled connection.
 * is_retry_safe: the statement may run a second time if the connection
 * turns out to have been broken while idle (reads; never writes, whose
 * first attempt may have committed). A call that has no answer within
 * PGPOOL_CALL_DEADLINE_MS fails PGPOOL_UNAVAILABLE and is not retried
 * (the statement may still run). On PGPOOL_OK, *out is a successful
 * result in binary format that the caller frees with PQclear. On error
 * *out is NULL and errbuf holds the reason. Thread safe. */
pgpool_err pgpool_exec(pgpool *p, const char *sql, const pgpool_params *params,
                       bool is_retry_safe, PGresult **out, char *errbuf,
                       size_t errcap);

/* One statement of a batch: sql and its parameters (borrowed). */
typedef struct pgpool_stmt {
    const char *sql;
    const pgpool_params *params;
} pgpool_stmt;

/* Runs stmts[0..n) as one transaction on one pooled connection, in libpq
 * pipeline mode: BEGIN, every statement and COMMIT go out together and
 * their results come back together, one round trip and one commit (one
 * WAL flush) for the lot. On PGPOOL_OK everything committed and
 * results[i] is statement i's result (binary format; the caller PQclears
 * each). On error nothing is in results, errbuf says why, and
 * *is_rolled_back tells whether the server reported the failure of a
 * statement (the transaction certainly did not commit, so running the
 * statements again is safe) or the outcome is unknown (the connection
 * failed, perhaps during COMMIT, or the results did not all come by
 * deadline_ms, a time of clockms_monotonic that bounds the wait for a
 * connection too). Never retried here. Thread safe. */
pgpool_err pgpool_exec_batch(pgpool *p, const pgpool_stmt *stmts, int n,
                             int64_t deadline_ms, PGresult **results,
                             bool *is_rolled_back, char *errbuf, size_t errcap);

/* Binary result readers. Each returns 0, or -1 when the value is SQL NULL
 * or not of the expected type and size. */
int pgpool_get_int64(const PGresult *r, int row, int col, int64_t *out);
int pgpool_get_bool(const PGresult *r, int row, int col, bool *out);
/* Text or bytea: a pointer into r (NUL terminated by libpq, but may hold
 * NUL bytes) and its length. */
int pgpool_get_bytes(const PGresult *r, int row, int col, const char **out,
                     size_t *len);

#endif
