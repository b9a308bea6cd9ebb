/*
 * hot_move.c - dropping, dumping and restoring whole users' hot keys.
 * See hot_move.h.
 */
#include "hot_move.h"

#include <inttypes.h>
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

/* An array v with room for one more element (n in use of *cap, each
 * size bytes): v itself, or v grown to twice its capacity. NULL when out
 * of memory (v and *cap are then unchanged). */
static void *make_room(void *v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return v;
    size_t grown = *cap ? *cap * 2 : 256;
    void *p = realloc(v, grown * size);
    if (p)
        *cap = grown;
    return p;
}

/* A growing list of user ids. */
typedef struct uid_list {
    int64_t *v;
    size_t n, cap;
} uid_list;

static int uids_add(uid_list *l, int64_t uid)
{
    int64_t *v = make_room(l->v, &l->cap, l->n, sizeof(*v));
    if (!v)
        return -1;
    l->v = v;
    l->v[l->n++] = uid;
    return 0;
}

/* Users whose index entries one ZADD of a rebuild carries. */
#define HOT_REBUILD_BATCH 512

typedef struct drop_ctx {
    hot_key_pred drop;
    void *arg;
    long deleted;
    /* Keys of the current SCAN page to delete, borrowed from its reply:
     * one UNLINK per page, not one round trip per key. */
    const char *argv[1 + 1024];
    size_t argvlen[1 + 1024];
    int argc;
    /* A walk that rebuilds the user index: the metas it keeps, as
     * score and member pairs of one ZADD. */
    bool rebuild;
    char pairs[HOT_REBUILD_BATCH][2][HOT_SCORE_MAX];
    int npairs;
    /* A drop from the index: the users whose meta went, to unindex. */
    uid_list gone;
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

/* Sends the index entries a rebuild gathered, in one ZADD. */
static int flush_pairs(redisContext *c, drop_ctx *d)
{
    if (d->npairs == 0)
        return 0;
    const char *argv[2 + 2 * HOT_REBUILD_BATCH];
    int argc = 0;
    argv[argc++] = "ZADD";
    argv[argc++] = HOT_USER_INDEX;
    for (int i = 0; i < d->npairs; i++) {
        argv[argc++] = d->pairs[i][0];
        argv[argc++] = d->pairs[i][1];
    }
    d->npairs = 0;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static bool is_meta(const char *key, size_t len)
{
    return len > 3 && memcmp(key, "u:{", 3) == 0;
}

static int drop_key(redisContext *c, const redisReply *key, void *arg)
{
    drop_ctx *d = arg;
    int64_t uid;
    if (hot_key_user(key->str, key->len, &uid))
        return 0;
    if (d->drop(key->str, key->len, uid, d->arg))
        return queue_drop(c, d, key->str, key->len);
    if (!d->rebuild || !is_meta(key->str, key->len))
        return 0;
    hot_index_score(uid, d->pairs[d->npairs][0]);
    snprintf(d->pairs[d->npairs][1], HOT_SCORE_MAX, "%" PRId64, uid);
    return ++d->npairs == HOT_REBUILD_BATCH ? flush_pairs(c, d) : 0;
}

static int page_done(redisContext *c, void *arg)
{
    drop_ctx *d = arg;
    return flush_drops(c, d) || flush_pairs(c, d) ? -1 : 0;
}

/* The rebuild's marker: in the index from the walk's start, so that the
 * sentinel goes in at its end only if the index was not evicted while
 * the walk ran (users it passed before would be missing). */
#define HOT_REBUILD_MARKER "~walk"

static int mark_rebuild(redisContext *c)
{
    redisReply *r =
        redisCommand(c, "ZADD %s -2 %s", HOT_USER_INDEX, HOT_REBUILD_MARKER);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static const char seal_lua[] =
    "if redis.call('ZSCORE', KEYS[1], ARGV[1]) then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('ZADD', KEYS[1], -1, ARGV[2]) return 1 end\n"
    "return 0\n";

/* Vouches for the rebuilt index (sentinel in, marker out) when its
 * marker survived the walk. */
static int seal_rebuild(redisContext *c)
{
    redisReply *r =
        redisCommand(c, "EVAL %s 1 %s %s %s", seal_lua, HOT_USER_INDEX,
                     HOT_REBUILD_MARKER, HOT_INDEX_SENTINEL);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    if (ok && r->integer == 0)
        log_msg("warn", "hot: the user index went while it was rebuilt; the "
                        "next ring change walks the keyspace again");
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

/* The clean-up without a usable index: a walk of the whole keyspace,
 * which also rebuilds the index from the metas it keeps. */
static int drop_by_walk(redisContext *c, drop_ctx *d)
{
    d->rebuild = true;
    if (mark_rebuild(c) || scan_all(c, drop_key, d, page_done))
        return -1;
    return seal_rebuild(c);
}

/* Adds the users of one range query's answer. */
static int add_members(const redisReply *a, uid_list *out)
{
    if (a->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < a->elements; i++) {
        const redisReply *m = a->element[i];
        int64_t uid;
        if (m->type != REDIS_REPLY_STRING)
            return -1;
        if (ids_parse_user(m->str, m->len, &uid) == 0 && uids_add(out, uid))
            return -1;
    }
    return 0;
}

/* The index's users whose scores fall in the ranges, read in the same
 * transaction as the sentinel, so no eviction falls between. Returns 1
 * with the users in out, 0 when the index cannot be trusted (no
 * sentinel), -1 when Redis failed. */
static int index_users(redisContext *c, const ring_range *rr, int n,
                       uid_list *out)
{
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "ZSCORE %s %s", HOT_USER_INDEX, HOT_INDEX_SENTINEL);
    for (int i = 0; i < n; i++)
        redisAppendCommand(c, "ZRANGEBYSCORE %s %" PRIu64 " %" PRIu64,
                           HOT_USER_INDEX, rr[i].lo >> 11, rr[i].hi >> 11);
    redisAppendCommand(c, "EXEC");
    redisReply *exec = NULL;
    for (int i = 0; i < n + 3; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return -1; /* the connection is broken: give_back drops it */
        if (i == n + 2)
            exec = r;
        else
            freeReplyObject(r);
    }
    int rc = -1;
    if (exec && exec->type == REDIS_REPLY_ARRAY &&
        exec->elements == (size_t)n + 1) {
        rc = exec->element[0]->type == REDIS_REPLY_NIL ? 0 : 1;
        for (int i = 0; rc == 1 && i < n; i++)
            if (add_members(exec->element[1 + i], out))
                rc = -1;
    }
    if (exec)
        freeReplyObject(exec);
    return rc;
}

/* Users per round of HKEYS over the index's users. */
#define HOT_USER_BATCH 256

/* Key names of one round, owned until the round ends. */
typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

/* Adds "<kind>:{uid}", or "m:{uid}:<rest>" for a message window. */
static char *names_add(name_list *l, char kind, int64_t uid, const char *rest,
                       size_t rest_len)
{
    char **v = make_room(l->v, &l->cap, l->n, sizeof(*v));
    if (!v)
        return NULL;
    l->v = v;
    char head[48];
    int hl = snprintf(head, sizeof(head), "%c:{%" PRId64 "}%s", kind, uid,
                      kind == 'm' ? ":" : "");
    char *name = malloc((size_t)hl + rest_len + 1);
    if (!name)
        return NULL;
    memcpy(name, head, (size_t)hl);
    memcpy(name + hl, rest, rest_len);
    name[(size_t)hl + rest_len] = '\0';
    l->v[l->n++] = name;
    return name;
}

static void names_clear(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

/* Called for each key of an indexed user (NUL-terminated, len bytes). */
typedef int (*user_key_fn)(redisContext *c, const char *key, size_t len,
                           int64_t uid, void *arg);

/* Names every key of uid that its meta lists: the meta, the conversation
 * window and index, and each message window named by an "m:<cid>"
 * field (fields: the meta's HKEYS). A message window whose field is gone
 * is read by nobody, and is left to eviction. */
static int name_user_keys(name_list *names, int64_t uid,
                          const redisReply *fields)
{
    if (!names_add(names, 'u', uid, "", 0) ||
        !names_add(names, 'c', uid, "", 0) ||
        !names_add(names, 'x', uid, "", 0))
        return -1;
    for (size_t i = 0;
         fields->type == REDIS_REPLY_ARRAY && i < fields->elements; i++) {
        const redisReply *f = fields->element[i];
        if (f->type == REDIS_REPLY_STRING && f->len > 2 &&
            memcmp(f->str, "m:", 2) == 0 &&
            !names_add(names, 'm', uid, f->str + 2, f->len - 2))
            return -1;
    }
    return 0;
}

/* One round: the metas' fields of up to HOT_USER_BATCH users in one
 * pipeline, then fn for each of their keys, then done (names live
 * until it returned). */
static int user_round(redisContext *c, const int64_t *uids, size_t n,
                      name_list *names, user_key_fn fn, page_fn done, void *arg)
{
    redisReply *fields[HOT_USER_BATCH] = {0};
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        redisAppendCommand(c, "HKEYS u:{%" PRId64 "}", uids[i]);
    for (size_t i = 0; i < n; i++)
        if (redisGetReply(c, (void **)&fields[i]) != REDIS_OK)
            rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t first = names->n;
        rc = name_user_keys(names, uids[i], fields[i]);
        for (size_t k = first; rc == 0 && k < names->n; k++)
            rc = fn(c, names->v[k], strlen(names->v[k]), uids[i], arg);
    }
    if (rc == 0 && done)
        rc = done(c, arg);
    for (size_t i = 0; i < n; i++)
        if (fields[i])
            freeReplyObject(fields[i]);
    names_clear(names);
    return rc;
}

/* Calls fn for every key of every user in users (user_round). */
static int each_user_key(redisContext *c, const uid_list *users, user_key_fn fn,
                         page_fn done, void *arg)
{
    name_list names = {0};
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < users->n; at += HOT_USER_BATCH) {
        size_t n =
            users->n - at < HOT_USER_BATCH ? users->n - at : HOT_USER_BATCH;
        rc = user_round(c, users->v + at, n, &names, fn, done, arg);
    }
    free(names.v);
    return rc;
}

/* Takes the users whose meta a drop deleted out of the index, in one
 * ZREM. */
static int unindex(redisContext *c, drop_ctx *d)
{
    if (d->gone.n == 0)
        return 0;
    const char **argv = calloc(d->gone.n + 2, sizeof(*argv));
    char(*ids)[24] = calloc(d->gone.n, sizeof(*ids));
    int rc = -1;
    if (argv && ids) {
        argv[0] = "ZREM";
        argv[1] = HOT_USER_INDEX;
        for (size_t i = 0; i < d->gone.n; i++) {
            snprintf(ids[i], sizeof(ids[i]), "%" PRId64, d->gone.v[i]);
            argv[2 + i] = ids[i];
        }
        redisReply *r = redisCommandArgv(c, (int)d->gone.n + 2, argv, NULL);
        rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
        if (r)
            freeReplyObject(r);
    }
    free(argv);
    free(ids);
    d->gone.n = 0;
    return rc;
}

static int drop_indexed_key(redisContext *c, const char *key, size_t len,
                            int64_t uid, void *arg)
{
    drop_ctx *d = arg;
    if (!d->drop(key, len, uid, d->arg))
        return 0;
    if (is_meta(key, len) && uids_add(&d->gone, uid))
        return -1;
    return queue_drop(c, d, key, len);
}

static int drop_round_done(redisContext *c, void *arg)
{
    drop_ctx *d = arg;
    return flush_drops(c, d) || unindex(c, d) ? -1 : 0;
}

long hot_drop_users(hot_t *h, const ring_range *foreign, int nforeign,
                    hot_key_pred drop, void *arg, bool *walked)
{
    *walked = false;
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    drop_ctx *d = drop_ctx_new(drop, arg);
    uid_list users = {0};
    int rc = d ? index_users(c, foreign, nforeign, &users) : -1;
    if (rc == 1) {
        rc = each_user_key(c, &users, drop_indexed_key, drop_round_done, d);
    } else if (rc == 0) {
        *walked = true;
        rc = drop_by_walk(c, d);
    }
    long deleted = d ? d->deleted : 0;
    free(users.v);
    if (d)
        free(d->gone.v);
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

/* A key whose DUMP and PTTL are on their way (its name borrowed). */
typedef struct pending_dump {
    const char *key;
    size_t len;
    int64_t uid;
} pending_dump;

typedef struct dump_ctx {
    hot_user_pred move;
    void *arg;
    hot_dump_fn emit;
    void *emit_arg;
    long dumped;
    /* The round's keys, asked for in one pipeline (dump_queue). */
    pending_dump *pending;
    size_t npending, cap;
} dump_ctx;

/* Reads one key's DUMP and PTTL and hands the key to emit; a key gone
 * meanwhile (evicted, or never made) has nothing to move. With stop
 * set, only reads (the pipeline's answers must all be taken). */
static int dump_one(redisContext *c, dump_ctx *d, const pending_dump *p,
                    bool stop)
{
    redisReply *dump = NULL, *ttl = NULL;
    int rc = -1;
    if (redisGetReply(c, (void **)&dump) != REDIS_OK ||
        redisGetReply(c, (void **)&ttl) != REDIS_OK)
        goto out;
    rc = stop ? -1 : 0;
    if (stop || dump->type == REDIS_REPLY_NIL)
        goto out;
    if (dump->type != REDIS_REPLY_STRING || ttl->type != REDIS_REPLY_INTEGER) {
        rc = -1;
        goto out;
    }
    hot_dump out = {.uid = p->uid,
                    .key = p->key,
                    .key_len = p->len,
                    .payload = dump->str,
                    .payload_len = dump->len,
                    .ttl_ms = ttl->integer > 0 ? ttl->integer : 0};
    rc = d->emit(&out, d->emit_arg);
    d->dumped += rc == 0;
out:
    if (dump)
        freeReplyObject(dump);
    if (ttl)
        freeReplyObject(ttl);
    return rc;
}

/* Asks for one key's DUMP and PTTL, answered in dump_flush. */
static int dump_queue(redisContext *c, const char *key, size_t len, int64_t uid,
                      void *arg)
{
    dump_ctx *d = arg;
    pending_dump *p = make_room(d->pending, &d->cap, d->npending, sizeof(*p));
    if (!p)
        return -1;
    d->pending = p;
    d->pending[d->npending++] = (pending_dump){key, len, uid};
    if (redisAppendCommand(c, "DUMP %b", key, len) != REDIS_OK ||
        redisAppendCommand(c, "PTTL %b", key, len) != REDIS_OK)
        return -1;
    return 0;
}

/* Takes the answers of every queued key, in order. */
static int dump_flush(redisContext *c, void *arg)
{
    dump_ctx *d = arg;
    int rc = 0;
    for (size_t i = 0; i < d->npending; i++)
        if (dump_one(c, d, &d->pending[i], rc != 0))
            rc = -1;
    d->npending = 0;
    return rc;
}

/* A key met by a walk: dumped at once if its user moves. */
static int dump_key(redisContext *c, const redisReply *key, void *arg)
{
    dump_ctx *d = arg;
    int64_t uid;
    if (hot_key_user(key->str, key->len, &uid) || !d->move(uid, d->arg))
        return 0;
    return dump_queue(c, key->str, key->len, uid, d) || dump_flush(c, d) ? -1
                                                                         : 0;
}

/* The moving users among the index's users in the ranges. Returns 1, 0
 * when the index cannot be trusted, -1 on a failure (index_users). */
static int moving_users(redisContext *c, const ring_range *rr, int n,
                        const dump_ctx *d, uid_list *out)
{
    uid_list all = {0};
    int rc = index_users(c, rr, n, &all);
    for (size_t i = 0; rc == 1 && i < all.n; i++)
        if (d->move(all.v[i], d->arg) && uids_add(out, all.v[i]))
            rc = -1;
    free(all.v);
    return rc;
}

long hot_dump_users(hot_t *h, const ring_range *leaving, int nleaving,
                    hot_user_pred move, void *arg, hot_dump_fn emit,
                    void *emit_arg)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    dump_ctx d = {.move = move, .arg = arg, .emit = emit, .emit_arg = emit_arg};
    uid_list users = {0};
    int rc = moving_users(c, leaving, nleaving, &d, &users);
    if (rc == 1) {
        rc = each_user_key(c, &users, dump_queue, dump_flush, &d);
        /* A round that stopped part way leaves answers in the pipe: they
         * are taken, or the next borrower of the connection reads them. */
        for (size_t i = 0; i < d.npending; i++)
            dump_one(c, &d, &d.pending[i], true);
    } else if (rc == 0) /* no index to trust: every key is asked about */
        rc = scan_all(c, dump_key, &d, NULL);
    free(users.v);
    free(d.pending);
    hot_conn_give_back(h, c);
    return rc ? -1 : d.dumped;
}

/* Asks to put the user of a restored meta into the index, ahead of the
 * meta's RESTORE in the same pipeline: an entry without its meta costs
 * nothing, a meta the index lacks would outlive the ring change that
 * should drop it. Returns the commands appended (0 or 1), -1 on a
 * failure. */
static int index_restored(redisContext *c, const char *key, size_t key_len)
{
    int64_t uid;
    if (!is_meta(key, key_len) || hot_key_user(key, key_len, &uid))
        return 0;
    char score[HOT_SCORE_MAX];
    hot_index_score(uid, score);
    return redisAppendCommand(c, "ZADD %s %s %" PRId64, HOT_USER_INDEX, score,
                              uid) == REDIS_OK
               ? 1
               : -1;
}

/* Takes one answer; true when it has the type wanted. */
static bool answer_is(redisContext *c, int type, bool *broken)
{
    redisReply *r = NULL;
    if (redisGetReply(c, (void **)&r) != REDIS_OK) {
        *broken = true;
        return false;
    }
    bool ok = r->type == type;
    freeReplyObject(r);
    return ok;
}

long hot_restore(hot_t *h, hot_restore_item *items, size_t n)
{
    redisContext *c = hot_conn_borrow(h);
    if (!c)
        return -1;
    bool broken = false;
    for (size_t i = 0; !broken && i < n; i++) {
        hot_restore_item *it = &items[i];
        int indexed = index_restored(c, it->key, it->key_len);
        it->restored = false;
        it->indexed = indexed == 1;
        broken = indexed < 0 ||
                 redisAppendCommand(c, "RESTORE %b %lld %b REPLACE", it->key,
                                    it->key_len, it->ttl_ms, it->payload,
                                    it->payload_len) != REDIS_OK;
    }
    long restored = 0;
    for (size_t i = 0; !broken && i < n; i++) {
        hot_restore_item *it = &items[i];
        bool indexed =
            !it->indexed || answer_is(c, REDIS_REPLY_INTEGER, &broken);
        it->restored = answer_is(c, REDIS_REPLY_STATUS, &broken) && indexed;
        restored += it->restored;
    }
    if (broken) /* answers may be left in the pipe: never reuse it */
        c->err = REDIS_ERR_OTHER;
    hot_conn_give_back(h, c);
    return broken ? -1 : restored;
}
