/*
 * state.c - the routers' shared state in PostgreSQL, or the epoch file of
 * a router that runs alone. See state.h.
 */
#include "state.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epochfile.h"
#include "log.h"

struct rstate {
    char *pg_url; /* NULL when alone */
    char *epoch_file;
    char name[64];
    PGconn *conn;
};

/* Renews when we hold it, takes it when it expired; the term grows on
 * every change of holder, and when $4 (fence) asks for it. The outer
 * SELECT sees the row as it was when the statement began, which is all
 * it needs: epoch and ring are not changed here (a publish that
 * committed meanwhile shows at the next tick). */
static const char SQL_TICK[] =
    "WITH upd AS ("
    " UPDATE router_state SET"
    "  term = CASE WHEN holder = $1 AND lease_until > clock_timestamp()"
    "         AND NOT $4::boolean THEN term ELSE term + 1 END,"
    "  holder = $1,"
    "  lease_until = clock_timestamp() + $2::bigint * interval '1 millisecond'"
    " WHERE id = 1 AND (holder = $1 OR lease_until <= clock_timestamp())"
    " RETURNING term)"
    " SELECT (SELECT term FROM upd), s.epoch,"
    "  CASE WHEN s.epoch > $3::bigint THEN s.ring END"
    " FROM router_state s WHERE s.id = 1";

static const char SQL_PUBLISH[] =
    "UPDATE router_state SET epoch = $3::bigint, ring = $4"
    " WHERE id = 1 AND holder = $1 AND term = $2::bigint"
    " AND lease_until > clock_timestamp() AND epoch < $3::bigint";

static char *dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

rstate *rstate_new(const char *pg_url, const char *epoch_file, const char *name)
{
    rstate *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->pg_url = dup_or_null(pg_url);
    s->epoch_file = dup_or_null(epoch_file);
    snprintf(s->name, sizeof(s->name), "%s", name);
    if ((pg_url && pg_url[0] && !s->pg_url) ||
        (epoch_file && epoch_file[0] && !s->epoch_file)) {
        rstate_free(s);
        return NULL;
    }
    return s;
}

void rstate_free(rstate *s)
{
    if (!s)
        return;
    if (s->conn)
        PQfinish(s->conn);
    free(s->pg_url);
    free(s->epoch_file);
    free(s);
}

bool rstate_is_shared(const rstate *s)
{
    return s->pg_url != NULL;
}

/* A usable connection, made or remade as needed; NULL while the database
 * does not answer. */
static PGconn *conn(rstate *s)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return s->conn;
    if (s->conn)
        PQfinish(s->conn);
    s->conn = PQconnectdb(s->pg_url);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        log_msg("warn", "router state: cannot connect: %s",
                PQerrorMessage(s->conn));
        PQfinish(s->conn);
        s->conn = NULL;
    }
    return s->conn;
}

static PGresult *exec(rstate *s, const char *sql, int n,
                      const char *const *params, ExecStatusType want)
{
    PGconn *c = conn(s);
    if (!c)
        return NULL;
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        log_msg("warn", "router state: %s", PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

int rstate_tick(rstate *s, int lease_ms, int64_t known_epoch, bool fence,
                rstate_view *v)
{
    memset(v, 0, sizeof(*v));
    if (!s->pg_url) {
        v->is_leader = true;
        v->term = 1;
        v->epoch = known_epoch;
        return 0;
    }
    char lease[24], known[24];
    snprintf(lease, sizeof(lease), "%d", lease_ms);
    snprintf(known, sizeof(known), "%" PRId64, known_epoch);
    const char *params[] = {s->name, lease, known, fence ? "t" : "f"};
    PGresult *r = exec(s, SQL_TICK, 4, params, PGRES_TUPLES_OK);
    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        log_msg("error", "router state: router_state has no row (migrations?)");
        PQclear(r);
        return -1;
    }
    v->is_leader = !PQgetisnull(r, 0, 0);
    if (v->is_leader)
        v->term = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    v->epoch = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    if (!PQgetisnull(r, 0, 2))
        v->ring = strdup(PQgetvalue(r, 0, 2));
    PQclear(r);
    return 0;
}

int rstate_publish(rstate *s, int64_t term, int64_t epoch,
                   const char *ring_json, const char *membership)
{
    if (!s->pg_url) {
        int64_t stored = 0;
        char why[256];
        if (!s->epoch_file)
            return 0;
        if (epochfile_resolve(s->epoch_file, membership, &stored, why,
                              sizeof(why))) {
            log_msg("error", "router: epoch file: %s", why);
            return -1;
        }
        return stored == epoch ? 0 : 1;
    }
    char t[24], e[24];
    snprintf(t, sizeof(t), "%" PRId64, term);
    snprintf(e, sizeof(e), "%" PRId64, epoch);
    const char *params[] = {s->name, t, e, ring_json};
    PGresult *r = exec(s, SQL_PUBLISH, 4, params, PGRES_COMMAND_OK);
    if (!r)
        return -1;
    int stored = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return stored ? 0 : 1;
}

int rstate_initial_epoch(rstate *s, const char *membership, int64_t *epoch,
                         char *errbuf, size_t errcap)
{
    return epochfile_resolve(s->epoch_file, membership, epoch, errbuf, errcap);
}
