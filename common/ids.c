/*
 * ids.c - message id generation (a hybrid logical clock) and the parsing
 * and formatting of message, user and conversation ids.
 *
 * Every id that crosses a process boundary is a decimal string; the
 * parsers here are the only ones, so "007", "+7" or " 7" are refused the
 * same way everywhere and each id has exactly one spelling.
 */
#include "ids.h"

#include <stdio.h>

#include "constants.h"

/* The millisecond field has 63 - ID_NODE_BITS - ID_SEQ_BITS bits: ids
 * stay positive int64_t values. */
#define ID_MS_BITS (63 - ID_NODE_BITS - ID_SEQ_BITS)
#define ID_MS_MAX ((INT64_C(1) << ID_MS_BITS) - 1)
#define ID_SEQ_MAX ((1 << ID_SEQ_BITS) - 1)

int ids_init(ids_gen *g, int node)
{
    if (node < 0 || node > ID_NODE_MAX)
        return -1;
    if (pthread_mutex_init(&g->lock, NULL) != 0)
        return -1;
    g->last_ms = 0;
    g->seq = 0;
    g->node = node;
    return 0;
}

void ids_destroy(ids_gen *g)
{
    pthread_mutex_destroy(&g->lock);
}

/* The clock never goes back (last_ms) and never falls behind the floor:
 * when the floor's millisecond is not behind us, we jump past it rather
 * than reuse it, so the id is larger than the floor whatever its node
 * and seq bits are. The jump is kept in last_ms, so later ids stay
 * ordered after it even once the floor is gone. Returns -1 when the
 * millisecond field would overflow (a floor at the end of the id space,
 * which only a corrupt mailbox can hold). */
int64_t ids_next(ids_gen *g, int64_t floor, int64_t now_ms)
{
    int64_t floor_ms = floor > 0 ? floor >> (ID_NODE_BITS + ID_SEQ_BITS) : 0;
    int64_t id = -1;

    pthread_mutex_lock(&g->lock);
    int64_t ms = g->last_ms;
    if (now_ms > ID_EPOCH_MS + ms) /* cannot overflow: ms < 2^41 */
        ms = now_ms - ID_EPOCH_MS;
    if (ms <= floor_ms)
        ms = floor_ms + 1;
    int seq = 0;
    if (ms == g->last_ms) {
        seq = g->seq + 1;
        if (seq > ID_SEQ_MAX) {
            ms++;
            seq = 0;
        }
    }
    if (ms <= ID_MS_MAX) {
        g->last_ms = ms;
        g->seq = seq;
        id = ms << (ID_NODE_BITS + ID_SEQ_BITS) |
             (int64_t)g->node << ID_SEQ_BITS | seq;
    }
    pthread_mutex_unlock(&g->lock);
    return id;
}

int64_t ids_ms(int64_t id)
{
    return (id >> (ID_NODE_BITS + ID_SEQ_BITS)) + ID_EPOCH_MS;
}

/* A decimal in [1, max]: digits only, no leading zero, no overflow. */
static int parse_positive(const char *s, size_t len, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (len == 0 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int ids_parse(const char *s, size_t len, int64_t *id)
{
    return parse_positive(s, len, INT64_MAX, id);
}

int ids_parse_user(const char *s, size_t len, int64_t *id)
{
    return parse_positive(s, len, MSG_USER_ID_MAX, id);
}

static int is_user_id(int64_t id)
{
    return id >= 1 && id <= MSG_USER_ID_MAX;
}

int ids_conversation(int64_t a, int64_t b, char *out, size_t cap)
{
    if (!is_user_id(a) || !is_user_id(b) || a == b)
        return -1;
    long long low = a < b ? a : b;
    long long high = a < b ? b : a;
    int n = snprintf(out, cap, "%lld_%lld", low, high);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

int ids_parse_conversation(const char *s, size_t len, int64_t *low,
                           int64_t *high)
{
    size_t sep = 0;
    int64_t a, b;

    while (sep < len && s[sep] != '_')
        sep++;
    if (sep == len)
        return -1;
    if (ids_parse_user(s, sep, &a) != 0 ||
        ids_parse_user(s + sep + 1, len - sep - 1, &b) != 0 || a >= b)
        return -1;
    *low = a;
    *high = b;
    return 0;
}
