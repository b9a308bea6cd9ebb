/*
 * hot_move.c - dropping, dumping and restoring whole users' hot keys.
 * See hot_move.h.
 */
#include "hot_move.h"

#include <stdlib.h>
#include <string.h>

#include "hot_conn.h"
#include "ids.h"
#include "log.h"

/* Keys asked per SCAN step: large enough to finish quickly, small enough
 * that Redis is never busy long. */
#define HOT_SCAN_COUNT "1000"

int hot_key_user(const char *key, size_t len, int64_t *uid)
{
    const char *open = memchr(key, '{', len);
    if (!open)
        return -1;
    size_t rest = len - (size_t)(open + 1 - key);
    const char *close = memchr(open + 1, '}', rest);
    if (!close || close == open + 1)
        return -1;
    return ids_parse_user(open + 1, (size_t)(close - open - 1), uid);
}

/* Calls each(key) for every key of the keyspace, one SCAN step at a
 * time. Returns 0, or -1 on a Redis error or when each returned -1. */
typedef int (*key_fn)(redisContext *c, const redisReply *key, void *arg);
/* Called after each page, while its keys are still valid; may be NULL. */
typedef int (*page_fn)(redisContext *c, void *arg);

static int scan_all(redisContext *c, key_fn each, void *arg, page_fn done)
{
    char cursor[32] = "0";
    do {
        redisReply *r =
            redisCommand(c, "SCAN %s COUNT %s", cursor, HOT_SCAN_COUNT);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < keys->elements; i++) {
            if (keys->element[i]->type == REDIS_REPLY_STRING)
                rc = each(c, keys->element[i], arg);
        }
        if (rc == 0 && done)
            rc = done(c, arg);
        freeReplyObject(r);
        if (rc)
            return -1;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

typedef struct drop_ctx {
    hot_key_pred drop;
    void *arg;
    long deleted;
    /* Keys of the current SCAN page to delete, borrowed from its reply:
     * one UNLINK per page, not one round trip per key. */
    const char *argv[1 + 1024];
    size_t argvlen[1 + 1024];
    int argc;
} drop_ctx;

static int flush_drops(redisContext *c, drop_ctx *d)
{
    if (d->argc <= 1)
        return 0;
    redisReply *r = redisCommandArgv(c, d->argc, d->argv, d->argvlen);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    if (ok)
        d->deleted += (long)r->integer;
    if (r)
        freeReplyObject(r);
    d->argc = 1;
    return ok ? 0 : -1;
}

/* A context for one run of UNLINKs; NULL when out of memory. */
static drop_ctx *drop_ctx_new(hot_key_pred drop, void *arg)
{
    drop_ctx *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->drop = drop;
    d->arg = arg;
    d->argv[0] = "UNLINK";
    d->argvlen[0] = 6;
    d->argc = 1;
    return d;
}

/* Adds a key (borrowed until the next flush) to the UNLINK being
 * gathered, which goes out once it is full. */
static int queue_drop(redisContext *c, drop_ctx *d, const char *key, size_t len)
{
    d->argv[d->argc] = key;
    d->argvlen[d->argc] = len;
    d->argc++;
    return d->argc == (int)(sizeof(d->argv) / sizeof(d->argv[0]))
               ? flush_drops(c, d)
               : 0;
}

static int drop_key(redisContext *c, const redisReply *key, void *arg)
{
    drop_ctx *d = arg;
    int64_t uid;
    if (hot_key_user(key->str, key->len, &uid) ||
        !d->drop(key->str, key->len, uid, d->arg))
        return 0;
    return queue_drop(c, d, key->str, key->len);
}

static int page_done(redisContext *c, void *arg)
{
    return flush_drops(c, arg);
}

long hot_drop_users(hot_t *h, hot_key_pred drop, void *arg)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    drop_ctx *d = drop_ctx_new(drop, arg);
    if (!d) {
        hot_conn_give_back(h, c);
        hot_mark_dirty(h);
        return -1;
    }
    int rc = scan_all(c, drop_key, d, page_done);
    long deleted = d->deleted;
    free(d);
    hot_conn_give_back(h, c);
    if (rc) {
        log_msg("warn", "hot: dropping moved users failed; flushing first");
        hot_mark_dirty(h);
        return -1;
    }
    return deleted;
}

long hot_unlink_keys(hot_t *h, const char *names, size_t n)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c) {
        /* The keys may still be there: never served as they are. */
        hot_mark_dirty(h);
        return -1;
    }
    drop_ctx *d = drop_ctx_new(NULL, NULL);
    int rc = d ? 0 : -1;
    const char *p = names;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t len = strlen(p);
        rc = queue_drop(c, d, p, len);
        p += len + 1;
    }
    if (rc == 0)
        rc = flush_drops(c, d);
    long deleted = d ? d->deleted : -1;
    free(d);
    hot_conn_give_back(h, c);
    if (rc) {
        log_msg("warn", "hot: unlinking imported keys failed; flushing first");
        hot_mark_dirty(h);
        return -1;
    }
    return deleted;
}

typedef struct dump_ctx {
    hot_user_pred move;
    void *arg;
    hot_dump_fn emit;
    void *emit_arg;
    long dumped;
} dump_ctx;

static int dump_key(redisContext *c, const redisReply *key, void *arg)
{
    dump_ctx *d = arg;
    hot_dump out = {0};
    if (hot_key_user(key->str, key->len, &out.uid) || !d->move(out.uid, d->arg))
        return 0;
    redisAppendCommand(c, "DUMP %b", key->str, key->len);
    redisAppendCommand(c, "PTTL %b", key->str, key->len);
    redisReply *dump = NULL, *ttl = NULL;
    int rc = -1;
    if (redisGetReply(c, (void **)&dump) != REDIS_OK ||
        redisGetReply(c, (void **)&ttl) != REDIS_OK)
        goto out;
    if (dump->type == REDIS_REPLY_NIL) {
        rc = 0; /* gone meanwhile (evicted): nothing to move */
        goto out;
    }
    if (dump->type != REDIS_REPLY_STRING || ttl->type != REDIS_REPLY_INTEGER)
        goto out;
    out.key = key->str;
    out.key_len = key->len;
    out.payload = dump->str;
    out.payload_len = dump->len;
    out.ttl_ms = ttl->integer > 0 ? ttl->integer : 0;
    rc = d->emit(&out, d->emit_arg);
    d->dumped += rc == 0;
out:
    if (dump)
        freeReplyObject(dump);
    if (ttl)
        freeReplyObject(ttl);
    return rc;
}

long hot_dump_users(hot_t *h, hot_user_pred move, void *arg, hot_dump_fn emit,
                    void *emit_arg)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    dump_ctx d = {move, arg, emit, emit_arg, 0};
    int rc = scan_all(c, dump_key, &d, NULL);
    hot_conn_give_back(h, c);
    return rc ? -1 : d.dumped;
}

int hot_restore(hot_t *h, const char *key, size_t key_len, const char *payload,
                size_t payload_len, long long ttl_ms)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "RESTORE %b %lld %b REPLACE", key, key_len,
                                 ttl_ms, payload, payload_len);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    hot_conn_give_back(h, c);
    return ok ? 0 : -1;
}
