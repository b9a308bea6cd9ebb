/*
 * hot.c - hot mailboxes in Redis over a pool of hiredis connections.
 * See hot.h for the model and hot_scripts.h for the data layout.
 *
 * Scripts run by EVALSHA with the SHA-1 computed here; a Redis that does
 * not know a script yet (NOSCRIPT, e.g. after a restart) gets it by EVAL,
 * which also caches it there.
 */
#include "hot.h"
#include "hot_conn.h"

#include <hiredis.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clockms.h"
#include "hot_scripts.h"
#include "constants.h"
#include "log.h"
#include "memo.h"
#include "ring.h"

/* Redis is on loopback next to the node: anything slower than this is a
 * Redis in trouble, and storage is the better source. */
#define HOT_TIMEOUT_MS 500
#define HOT_POOL_MAX 256
/* Slots of the in-memory meta (memo.h): 2^17 users, about 5 MB. */
#define HOT_MEMO_BITS 17

enum { S_APPLY, S_LOAD_USER, S_LOAD_MSGS, S_N };

static const char *const script_text[S_N] = {HOT_LUA_APPLY, HOT_LUA_LOAD_USER,
                                             HOT_LUA_LOAD_MSGS};

struct hot {
    char host[128];
    int port;
    metrics_t *metrics;
    char sha[S_N][41];

    pthread_mutex_t lock; /* guards free_conns, nfree */
    pthread_cond_t available;
    redisContext *free_conns[HOT_POOL_MAX]; /* NULL: connect on borrow */
    int nfree;

    /* Set when an update may have been lost; cleared by a FLUSHDB. */
    atomic_bool dirty;
    memo *memo; /* meta of users in Redis, answered without a round trip */
};

static void sha1_hex(const char *text, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

hot_t *hot_new(const char *host, int port, int pool_size, metrics_t *metrics)
{
    if (pool_size < 1 || pool_size > HOT_POOL_MAX)
        return NULL;
    hot_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->memo = memo_new(HOT_MEMO_BITS);
    if (!h->memo) {
        free(h);
        return NULL;
    }
    snprintf(h->host, sizeof(h->host), "%s", host);
    h->port = port;
    h->metrics = metrics;
    for (int i = 0; i < S_N; i++)
        sha1_hex(script_text[i], h->sha[i]);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->available, NULL);
    h->nfree = pool_size; /* all slots NULL: connected lazily */
    metrics_gauge_add(metrics, "redis_pool_connections",
                      "Redis connection slots of the pool", pool_size);
    metrics_gauge_add(metrics, "redis_pool_connections_in_use",
                      "Redis connection slots borrowed by commands", 0);
    atomic_init(&h->dirty, false);
    return h;
}

void hot_free(hot_t *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->nfree; i++)
        if (h->free_conns[i])
            redisFree(h->free_conns[i]);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->available);
    memo_free(h->memo);
    free(h);
}

/* Redis may have lost an update: flushed before it is used again, and
 * the memo forgets everything it mirrored. */
static void set_dirty(hot_t *h)
{
    atomic_store(&h->dirty, true);
    memo_clear(h->memo);
}

static redisContext *connect_redis(hot_t *h)
{
    struct timeval tv = {0, HOT_TIMEOUT_MS * 1000};
    redisContext *c = redisConnectWithTimeout(h->host, h->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static void give_back(hot_t *h, redisContext *c)
{
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    pthread_mutex_lock(&h->lock);
    h->free_conns[h->nfree++] = c;
    pthread_cond_signal(&h->available);
    pthread_mutex_unlock(&h->lock);
    metrics_gauge_add(h->metrics, "redis_pool_connections_in_use", NULL, -1);
}

/* Borrows a connection, connecting the slot if it has none. NULL when
 * Redis cannot be reached (the slot is back in the pool then). */
static redisContext *borrow(hot_t *h)
{
    pthread_mutex_lock(&h->lock);
    while (h->nfree == 0)
        pthread_cond_wait(&h->available, &h->lock);
    redisContext *c = h->free_conns[--h->nfree];
    pthread_mutex_unlock(&h->lock);
    metrics_gauge_add(h->metrics, "redis_pool_connections_in_use", NULL, 1);
    if (!c)
        c = connect_redis(h);
    if (!c)
        give_back(h, NULL);
    return c;
}

/* Runs a script with argv = keys then args. Returns the reply (caller
 * frees) or NULL when Redis failed. */
/* Runs a script; NULL when it did not succeed, with *refused set when
 * Redis answered with an error (the call ended there: an OOM refusal,
 * or a script that failed part way) rather than not at all. */
static redisReply *run_script(hot_t *h, int script, int nkeys, int argc,
                              const char **argv, const size_t *lens,
                              bool *refused)
{
    *refused = false;
    redisContext *c = borrow(h);
    if (!c)
        return NULL;
    const char *full[argc + 3];
    size_t full_len[argc + 3];
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    full[0] = "EVALSHA";
    full[1] = h->sha[script];
    full[2] = nk;
    for (int i = 0; i < 3; i++)
        full_len[i] = strlen(full[i]);
    for (int i = 0; i < argc; i++) {
        full[i + 3] = argv[i];
        full_len[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    redisReply *r = redisCommandArgv(c, argc + 3, full, full_len);
    if (r && r->type == REDIS_REPLY_ERROR &&
        strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        full[0] = "EVAL";
        full[1] = script_text[script];
        full_len[0] = 4;
        full_len[1] = strlen(script_text[script]);
        r = redisCommandArgv(c, argc + 3, full, full_len);
    }
    if (h->metrics)
        metrics_observe_dependency(h->metrics, "redis",
                                   clockms_seconds_since(&t0));
    if (r && r->type == REDIS_REPLY_ERROR) {
        log_msg("error", "redis script failed: %s", r->str);
        freeReplyObject(r);
        r = NULL;
        *refused = true;
    }
    give_back(h, c);
    return r;
}

static bool flush_now(hot_t *h)
{
    redisContext *c = borrow(h);
    if (!c)
        return false;
    /* The sentinel goes in with the flush, in one transaction: an empty
     * index that vouches for the empty keyspace (hot_conn.h). */
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "FLUSHDB");
    redisAppendCommand(c, "ZADD %s -1 %s", HOT_USER_INDEX, HOT_INDEX_SENTINEL);
    redisAppendCommand(c, "EXEC");
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            ok = false;
            break; /* the connection is broken: give_back drops it */
        }
        if (i == 3)
            ok = ok && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
    }
    give_back(h, c);
    memo_clear(h->memo);
    return ok;
}

int hot_flush(hot_t *h)
{
    if (!flush_now(h)) {
        set_dirty(h);
        return -1;
    }
    atomic_store(&h->dirty, false);
    log_msg("info", "hot mailboxes flushed");
    return 0;
}

/* Before any use: a dirty cache is flushed first, or not used at all. */
static bool usable(hot_t *h)
{
    if (!atomic_load(&h->dirty))
        return true;
    return hot_flush(h) == 0;
}

bool hot_ping(hot_t *h)
{
    redisContext *c = borrow(h);
    if (!c)
        return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    give_back(h, c);
    return ok;
}

void hot_index_score(int64_t uid, char buf[HOT_SCORE_MAX])
{
    snprintf(buf, HOT_SCORE_MAX, "%" PRIu64, ring_hash_user(uid) >> 11);
}

typedef struct user_keys {
    char u[HOT_KEY_NAME_MAX], c[HOT_KEY_NAME_MAX], x[HOT_KEY_NAME_MAX];
    char m[HOT_KEY_NAME_MAX + 64];
} user_keys;

static void make_keys(user_keys *k, int64_t uid, const char *cid)
{
    /* Every field is written here, none read. */
    /* cppcheck-suppress ctuuninitvar */
    snprintf(k->u, sizeof(k->u), "u:{%" PRId64 "}", uid);
    snprintf(k->c, sizeof(k->c), "c:{%" PRId64 "}", uid);
    snprintf(k->x, sizeof(k->x), "x:{%" PRId64 "}", uid);
    snprintf(k->m, sizeof(k->m), "m:{%" PRId64 "}:%s", uid, cid ? cid : "");
}

static int64_t reply_int(const redisReply *r)
{
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return -1;
}

hot_result hot_get_meta(hot_t *h, int64_t uid, hot_meta *out)
{
    if (!usable(h))
        return HOT_DOWN;
    if (memo_get(h->memo, uid, out))
        return HOT_HIT;
    memo_ticket t = memo_take_ticket(h->memo, uid);
    user_keys k;
    make_keys(&k, uid, NULL);
    redisContext *c = borrow(h);
    if (!c)
        return HOT_DOWN;
    redisReply *r = redisCommand(c, "HMGET %s seq max", k.u);
    give_back(h, c);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        if (r)
            freeReplyObject(r);
        return HOT_DOWN;
    }
    hot_result res = HOT_MISS;
    if (r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        out->seq = reply_int(r->element[0]);
        out->max_id = reply_int(r->element[1]);
        res = HOT_HIT;
        memo_put(h->memo, t, uid, out);
    }
    freeReplyObject(r);
    return res;
}

/* Copies the JSON part of each entry into p->items. An element that is
 * not an entry as hot_entry writes it fails the whole page. */
static int take_items(const redisReply *arr, hot_page *p)
{
    p->items = calloc(arr->elements ? arr->elements : 1, sizeof(char *));
    if (!p->items)
        return -1;
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        hot_entry_parts parts;
        if (e->type != REDIS_REPLY_STRING ||
            hot_entry_split(e->str, e->len, &parts))
            return -1;
        p->items[i] = strndup(parts.json, parts.json_len);
        if (!p->items[i])
            return -1;
        p->n++;
    }
    return 0;
}

/* One command of an atomic read (at most HMGET key and three fields). */
typedef struct read_cmd {
    int argc;
    const char *argv[6];
} read_cmd;

/* The commands of one page read: the meta, the window's size, the
 * page. */
#define READ_CMDS 3

/* One page read with the strings its commands point into: set up in
 * place by page_read_init, never copied. */
typedef struct page_read {
    user_keys k;
    char field[8 + 64], first[24], last[24];
    read_cmd cmds[READ_CMDS];
} page_read;

/* The window's ZREVRANGE bounds for count entries from off. */
static void range_args(size_t off, size_t count, char first[24], char last[24])
{
    snprintf(first, 24, "%zu", off);
    snprintf(last, 24, "%zu", off + (count ? count : 1) - 1);
}

static void page_read_init(page_read *r, const hot_page_ask *a)
{
    make_keys(&r->k, a->uid, a->cid);
    range_args(a->off, a->count, r->first, r->last);
    if (a->cid) {
        snprintf(r->field, sizeof(r->field), "m:%s", a->cid);
        r->cmds[0] = (read_cmd){4, {"HMGET", r->k.u, "seq", r->field}};
        r->cmds[1] = (read_cmd){2, {"ZCARD", r->k.m}};
        r->cmds[2] = (read_cmd){4, {"ZREVRANGE", r->k.m, r->first, r->last}};
    } else {
        r->cmds[0] = (read_cmd){5, {"HMGET", r->k.u, "seq", "cn", "cc"}};
        r->cmds[1] = (read_cmd){2, {"ZCARD", r->k.c}};
        r->cmds[2] = (read_cmd){4, {"ZREVRANGE", r->k.c, r->first, r->last}};
    }
}

static bool exec_reply_ok(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != READ_CMDS)
        return false;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            log_msg("error", "redis read failed: %s", r->element[i]->str);
            return false;
        }
    return true;
}

/* Runs MULTI, the commands and EXEC of each of the n reads, all in one
 * round trip: Redis runs each read as one, so a page and the change
 * counter beside it come from the same snapshot, as a script would give,
 * without Lua's cost (a read script took about 26 us of Redis's one
 * thread, its three commands about 3). execs[i] is EXEC's array of read
 * i, one reply per command (the caller frees it), or NULL when Redis
 * failed it. */
static void read_atomic(hot_t *h, page_read *reads, size_t n,
                        redisReply **execs)
{
    memset(execs, 0, n * sizeof(*execs));
    redisContext *c = borrow(h);
    if (!c)
        return;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        ok = redisAppendCommand(c, "MULTI") == REDIS_OK;
        for (int j = 0; ok && j < READ_CMDS; j++)
            ok =
                redisAppendCommandArgv(c, reads[i].cmds[j].argc,
                                       reads[i].cmds[j].argv, NULL) == REDIS_OK;
        ok = ok && redisAppendCommand(c, "EXEC") == REDIS_OK;
    }
    /* Every reply is read, whatever it says, so the connection goes back
     * in step; a failed read leaves c->err set and give_back drops it. */
    for (size_t i = 0; ok && i < n; i++)
        for (int j = 0; ok && j < READ_CMDS + 2; j++) {
            void *r = NULL;
            ok = redisGetReply(c, &r) == REDIS_OK;
            if (ok && j == READ_CMDS + 1)
                execs[i] = r;
            else if (r)
                freeReplyObject(r);
        }
    if (h->metrics)
        metrics_observe_dependency(h->metrics, "redis",
                                   clockms_seconds_since(&t0));
    give_back(h, c);
    for (size_t i = 0; i < n; i++)
        if (execs[i] && !exec_reply_ok(execs[i])) {
            freeReplyObject(execs[i]);
            execs[i] = NULL;
        }
}

/* A window's recorded size, from the meta: the conversation window's
 * "cn" (with "cc" for complete), or a message window's "<size>:<0|1>".
 * Returns false when the meta has none (not loaded). */
static bool window_size(const redisReply *size, const redisReply *complete,
                        int64_t *n, bool *is_complete)
{
    if (size->type != REDIS_REPLY_STRING)
        return false;
    char *end;
    *n = strtoll(size->str, &end, 10);
    if (end == size->str || *n < 0)
        return false;
    if (complete == NULL) { /* "<size>:<complete>" */
        if (end[0] != ':' || (end[1] != '0' && end[1] != '1') || end[2])
            return false;
        *is_complete = end[1] == '1';
        return true;
    }
    *is_complete = reply_int(complete) == 1;
    return *end == '\0';
}

/* A page from EXEC's replies (meta fields seq, size[, complete]; ZCARD;
 * ZREVRANGE). A window whose size disagrees with its meta is being
 * rebuilt or was cut short: a miss, never a partial page. */
static hot_result page_of(const redisReply *exec, hot_page *out)
{
    const redisReply *meta = exec->element[0];
    const redisReply *card = exec->element[1];
    const redisReply *items = exec->element[2];
    if (meta->type != REDIS_REPLY_ARRAY || meta->elements < 2 ||
        card->type != REDIS_REPLY_INTEGER || items->type != REDIS_REPLY_ARRAY)
        return HOT_DOWN;
    int64_t n;
    bool complete;
    if (meta->element[0]->type != REDIS_REPLY_STRING ||
        !window_size(meta->element[1],
                     meta->elements > 2 ? meta->element[2] : NULL, &n,
                     &complete) ||
        n != card->integer)
        return HOT_MISS;
    out->seq = reply_int(meta->element[0]);
    out->card = (size_t)card->integer;
    out->complete = complete;
    if (take_items(items, out) != 0) {
        hot_page_free(out);
        return HOT_DOWN;
    }
    return HOT_HIT;
}

/* Reads of one round trip at most: their commands live on the stack. */
#define READ_PAGES_CHUNK 16

static void read_chunk(hot_t *h, const hot_page_ask *asks, size_t n,
                       hot_page *out, hot_result *res)
{
    page_read reads[READ_PAGES_CHUNK];
    redisReply *execs[READ_PAGES_CHUNK];
    for (size_t i = 0; i < n; i++)
        page_read_init(&reads[i], &asks[i]);
    read_atomic(h, reads, n, execs);
    for (size_t i = 0; i < n; i++) {
        if (!execs[i])
            continue;
        res[i] = page_of(execs[i], &out[i]);
        freeReplyObject(execs[i]);
        /* The user (or a window) is gone from Redis, evicted or never
         * loaded: a memo hit would keep the reload in fill.c from
         * running. */
        if (res[i] == HOT_MISS)
            memo_forget(h->memo, asks[i].uid);
    }
}

void hot_read_pages(hot_t *h, const hot_page_ask *asks, size_t n, hot_page *out,
                    hot_result *res)
{
    memset(out, 0, n * sizeof(*out));
    for (size_t i = 0; i < n; i++)
        res[i] = HOT_DOWN;
    if (!usable(h))
        return;
    for (size_t at = 0; at < n; at += READ_PAGES_CHUNK) {
        size_t k = n - at < READ_PAGES_CHUNK ? n - at : READ_PAGES_CHUNK;
        read_chunk(h, asks + at, k, out + at, res + at);
    }
}

void hot_page_free(hot_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    memset(p, 0, sizeof(*p));
}

/* Runs a write script for uid and returns its integer reply (-1 when it
 * did not run). A failure may leave Redis behind storage. A script
 * touches only its user's keys, so when Redis answered (the call is
 * over) forgetting that user is enough; when it did not, the call may
 * still run later, so the whole cache is marked dirty and flushed
 * before it is used again. */
static int64_t run_write(hot_t *h, int64_t uid, int script, int nkeys, int argc,
                         const char **argv)
{
    if (!usable(h))
        return -1;
    bool refused;
    redisReply *r = run_script(h, script, nkeys, argc, argv, NULL, &refused);
    if (!r && refused) {
        log_msg("warn",
                "redis refused an update: user %" PRId64
                "'s hot mailbox dropped",
                uid);
        hot_forget_user(h, uid);
        return -1;
    }
    if (!r) {
        set_dirty(h);
        log_msg("warn", "redis update failed: hot mailboxes will be flushed");
        return -1;
    }
    int64_t v = reply_int(r);
    freeReplyObject(r);
    return v;
}

void hot_load_user(hot_t *h, int64_t uid, const hot_meta *meta, bool complete,
                   char *const *entries, size_t n)
{
    user_keys k;
    make_keys(&k, uid, NULL);
    char seq[24], max[24];
    snprintf(seq, sizeof(seq), "%" PRId64, meta->seq);
    snprintf(max, sizeof(max), "%" PRId64, meta->max_id);
    char id[24], score[HOT_SCORE_MAX];
    snprintf(id, sizeof(id), "%" PRId64, uid);
    hot_index_score(uid, score);
    const char **argv = calloc(n + 9, sizeof(char *));
    if (!argv)
        return;
    argv[0] = k.u;
    argv[1] = k.c;
    argv[2] = k.x;
    argv[3] = HOT_USER_INDEX;
    argv[4] = seq;
    argv[5] = max;
    argv[6] = complete ? "1" : "0";
    argv[7] = id;
    argv[8] = score;
    for (size_t i = 0; i < n; i++)
        argv[9 + i] = entries[i];
    memo_ticket t = memo_take_ticket(h->memo, uid);
    if (run_write(h, uid, S_LOAD_USER, 4, (int)n + 9, argv) == 1)
        memo_put(h->memo, t, uid, meta);
    free(argv);
}

void hot_load_msgs(hot_t *h, int64_t uid, const char *cid, bool complete,
                   char *const *entries, size_t n)
{
    user_keys k;
    make_keys(&k, uid, cid);
    const char **argv = calloc(n + 4, sizeof(char *));
    if (!argv)
        return;
    argv[0] = k.u;
    argv[1] = k.m;
    argv[2] = cid;
    argv[3] = complete ? "1" : "0";
    for (size_t i = 0; i < n; i++)
        argv[4 + i] = entries[i];
    run_write(h, uid, S_LOAD_MSGS, 2, (int)n + 4, argv);
    free(argv);
}

void hot_apply(hot_t *h, int64_t uid, const hot_meta *meta, const char *cid,
               const char *conv_entry, const char *msg_entry)
{
    user_keys k;
    make_keys(&k, uid, cid);
    char seq[24], max[24], cmax[16], mmax[16];
    snprintf(seq, sizeof(seq), "%" PRId64, meta->seq);
    snprintf(max, sizeof(max), "%" PRId64, meta->max_id);
    snprintf(cmax, sizeof(cmax), "%d", HOT_CONVS_MAX);
    snprintf(mmax, sizeof(mmax), "%d", HOT_MSGS_MAX);
    const char *argv[] = {k.u, k.c,        k.x,       k.m,  seq, max,
                          cid, conv_entry, msg_entry, cmax, mmax};
    memo_ticket t = memo_take_ticket(h->memo, uid);
    /* 0: Redis did not hold the user (or dropped a damaged window). */
    if (run_write(h, uid, S_APPLY, 4, 11, argv) == 1)
        memo_put(h->memo, t, uid, meta);
    else
        memo_forget(h->memo, uid);
}

void hot_user_base_keys(int64_t uid, char u[HOT_KEY_NAME_MAX],
                        char c[HOT_KEY_NAME_MAX], char x[HOT_KEY_NAME_MAX])
{
    user_keys k;
    make_keys(&k, uid, NULL);
    memcpy(u, k.u, HOT_KEY_NAME_MAX);
    memcpy(c, k.c, HOT_KEY_NAME_MAX);
    memcpy(x, k.x, HOT_KEY_NAME_MAX);
}

void hot_forget_user(hot_t *h, int64_t uid)
{
    memo_forget(h->memo, uid);
    if (!usable(h))
        return;
    user_keys k;
    make_keys(&k, uid, NULL);
    redisContext *c = borrow(h);
    redisReply *r = c ? redisCommand(c, "DEL %s %s %s", k.u, k.c, k.x) : NULL;
    bool ok = r && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    if (c)
        give_back(h, c);
    if (!ok)
        set_dirty(h);
    /* Again after the DEL: a reader that read the old meta from Redis
     * between the first forget and the DEL holds a ticket from before
     * this one, so it cannot put the old meta back. */
    memo_forget(h->memo, uid);
}

/* Raw access (drops, dumps, restores of whole users) changes Redis behind
 * the memo's back: it forgets everything before and after. */
redisContext *hot_conn_borrow(hot_t *h)
{
    memo_clear(h->memo);
    return usable(h) ? borrow(h) : NULL;
}

void hot_conn_give_back(hot_t *h, redisContext *c)
{
    give_back(h, c);
    memo_clear(h->memo);
}

void hot_mark_dirty(hot_t *h)
{
    set_dirty(h);
}
