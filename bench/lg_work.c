/*
 * lg_work.c - requests of each workload. See lg_work.h.
 */
#include "lg_work.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"

/* Longest JWT we mint, bytes. */
#define TOKEN_MAX 512
/* Rows of a page read, as a typical client asks. */
#define PAGE_SIZE 20

static const char *const NAMES[] = {
    [LG_SEND] = "send",
    [LG_SEED] = "seed",
    [LG_CONVERSATIONS] = "conversations",
    [LG_MESSAGES] = "messages",
    [LG_DELTA] = "delta",
    [LG_TOKENS] = "tokens",
    [LG_MIX] = "mix",
    [LG_GET] = "get",
};

int lg_kind_parse(const char *name, lg_kind *out)
{
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (strcmp(NAMES[i], name) == 0) {
            *out = (lg_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *lg_kind_name(lg_kind kind)
{
    return NAMES[kind];
}

int lg_work_init(lg_work *w, const char *secret, int64_t ttl_s)
{
    w->tokens = calloc((size_t)w->users, sizeof *w->tokens);
    w->sync_tokens = calloc((size_t)w->users, sizeof *w->sync_tokens);
    if (!w->tokens || !w->sync_tokens)
        return -1;
    int64_t exp = (int64_t)time(NULL) + ttl_s;
    for (int i = 0; i < w->users; i++) {
        char token[TOKEN_MAX];
        if (jwt_sign(secret, w->base_user + 1 + i, exp, token, sizeof token) <
            0)
            return -1;
        w->tokens[i] = strdup(token);
        if (!w->tokens[i])
            return -1;
    }
    return 0;
}

void lg_work_destroy(lg_work *w)
{
    for (int i = 0; i < w->users; i++) {
        if (w->tokens)
            free(w->tokens[i]);
        if (w->sync_tokens)
            free(w->sync_tokens[i]);
    }
    free(w->tokens);
    free(w->sync_tokens);
    w->tokens = NULL;
    w->sync_tokens = NULL;
}

uint64_t lg_work_count(const lg_work *w, int seed_rounds)
{
    if (w->kind == LG_SEED)
        return (uint64_t)(w->users / 2) * (uint64_t)seed_rounds;
    if (w->kind == LG_TOKENS)
        return (uint64_t)w->users;
    return 0;
}

/* xorshift64*: per-thread, fast, good enough to spread users. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t user_id(const lg_work *w, int i)
{
    return w->base_user + 1 + i;
}

/* The other user of i's pair (the last user of an odd count pairs with
 * the one before it). */
static int partner(const lg_work *w, int i)
{
    int p = i ^ 1;
    return p < w->users ? p : i - 1;
}

static int get_request(const lg_work *w, const char *path, int user, char *buf)
{
    int n;
    if (user < 0)
        n = snprintf(buf, LG_REQUEST_MAX,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
                     w->url.host, w->url.port);
    else
        n = snprintf(buf, LG_REQUEST_MAX,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\n\r\n",
                     path, w->url.host, w->url.port, w->tokens[user]);
    return n < LG_REQUEST_MAX ? n : -1;
}

static int send_request(const lg_work *w, int from, int to, uint64_t index,
                        char *buf)
{
    char content[LG_CONTENT_MAX + 1];
    int clen =
        snprintf(content, sizeof content, "bench message %" PRIu64, index);
    while (clen < w->content_bytes && clen < LG_CONTENT_MAX)
        content[clen++] = 'x';
    content[clen] = '\0';
    char body[LG_CONTENT_MAX + 256];
    int blen =
        snprintf(body, sizeof body,
                 "{\"sender_id\":%" PRId64 ",\"recipient_id\":%" PRId64
                 ",\"content\":\"%s\",\"client_message_id\":\"lg-%s-"
                 "%" PRIu64 "\"}",
                 user_id(w, from), user_id(w, to), content, w->nonce, index);
    int n = snprintf(buf, LG_REQUEST_MAX,
                     "POST /v1/messages HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     w->url.host, w->url.port, w->tokens[from], blen, body);
    return n < LG_REQUEST_MAX ? n : -1;
}

static int conversations_request(const lg_work *w, int u, const char *query,
                                 char *buf)
{
    char path[1024];
    snprintf(path, sizeof path, "/v1/users/%" PRId64 "/conversations?%s",
             user_id(w, u), query);
    return get_request(w, path, u, buf);
}

static int messages_request(const lg_work *w, int u, char *buf)
{
    int64_t a = user_id(w, u), b = user_id(w, partner(w, u));
    char path[256];
    snprintf(path, sizeof path,
             "/v1/users/%" PRId64 "/conversations/%" PRId64 "_%" PRId64
             "/messages?page_size=%d",
             a, a < b ? a : b, a < b ? b : a, PAGE_SIZE);
    return get_request(w, path, u, buf);
}

static int delta_request(const lg_work *w, int u, char *buf)
{
    const char *token = __atomic_load_n(&w->sync_tokens[u], __ATOMIC_ACQUIRE);
    char query[512];
    if (token)
        snprintf(query, sizeof query, "since=%s", token);
    else
        snprintf(query, sizeof query, "page_size=%d", PAGE_SIZE);
    return conversations_request(w, u, query, buf);
}

static int send_random(const lg_work *w, uint64_t index, uint64_t *rng,
                       char *buf)
{
    int from = (int)(next_random(rng) % (uint64_t)w->users);
    int to = (from + 1 + (int)(next_random(rng) % (uint64_t)(w->users - 1))) %
             w->users;
    return send_request(w, from, to, index, buf);
}

int lg_work_request(lg_work *w, uint64_t index, uint64_t *rng, char *buf)
{
    int u = (int)(next_random(rng) % (uint64_t)w->users);
    char query[32];
    snprintf(query, sizeof query, "page_size=%d", PAGE_SIZE);
    switch (w->kind) {
    case LG_SEND:
        return send_random(w, index, rng, buf);
    case LG_SEED: {
        int pairs = w->users / 2;
        int a = (int)(index % (uint64_t)pairs) * 2;
        bool is_reply = (index / (uint64_t)pairs) % 2 == 1;
        return is_reply ? send_request(w, a + 1, a, index, buf)
                        : send_request(w, a, a + 1, index, buf);
    }
    case LG_CONVERSATIONS:
        return conversations_request(w, u, query, buf);
    case LG_MESSAGES:
        return messages_request(w, u, buf);
    case LG_DELTA:
        return delta_request(w, u, buf);
    case LG_TOKENS:
        return conversations_request(w, (int)(index % (uint64_t)w->users),
                                     "page_size=1", buf);
    case LG_MIX: {
        uint64_t dice = next_random(rng) % 100;
        if (dice < 20)
            return send_random(w, index, rng, buf);
        if (dice < 47)
            return conversations_request(w, u, query, buf);
        if (dice < 74)
            return messages_request(w, u, buf);
        return delta_request(w, u, buf);
    }
    case LG_GET:
        return get_request(w, w->url.path, -1, buf);
    }
    return -1;
}

/* The value of "sync_token" in a JSON body: URL-safe base64 text, so a
 * plain scan is exact. NULL when absent. */
static char *find_sync_token(const char *body, size_t len)
{
    const char *key = "\"sync_token\":\"";
    const char *at = memmem(body, len, key, strlen(key));
    if (!at)
        return NULL;
    at += strlen(key);
    const char *end = memchr(at, '"', len - (size_t)(at - body));
    if (!end || end - at > 400)
        return NULL;
    return strndup(at, (size_t)(end - at));
}

void lg_work_answer(lg_work *w, uint64_t index, int status, const char *body,
                    size_t len)
{
    if (w->kind != LG_TOKENS || status != 200 || !body)
        return;
    int u = (int)(index % (uint64_t)w->users);
    char *token = find_sync_token(body, len);
    char *old =
        __atomic_exchange_n(&w->sync_tokens[u], token, __ATOMIC_ACQ_REL);
    free(old);
}
