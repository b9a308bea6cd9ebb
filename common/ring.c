/*
 * ring.c - consistent hashing of users onto cache nodes, and the ring's
 * JSON form.
 *
 * The hash decides where every user's hot mailbox lives, so it is fixed
 * forever: FNV-1a 64 over the bytes, then the splitmix64 finaliser to
 * spread FNV's weak low bits. A ring is built once from a membership and
 * never changed; lookups are a binary search over the sorted tokens.
 *
 * ring_from_json reads what the router publishes over the network, so it
 * validates every field and must survive any input (a fuzz target drives
 * it).
 */
#include "ring.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most virtual tokens per node accepted from JSON: 64 nodes of 4096
 * tokens is a 4 MiB token table, well past any useful spread. */
#define RING_VNODES_MAX 4096

uint64_t ring_hash(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL; /* FNV-1a 64 prime */
    }
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

uint64_t ring_hash_user(int64_t user_id)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)user_id);

    return ring_hash(buf, (size_t)n);
}

void ring_free(ring_t *r)
{
    if (r == NULL)
        return;
    free(r->tokens);
    free(r);
}

const char *ring_node_slot(const ring_node *node)
{
    return node->slot[0] ? node->slot : node->name;
}

/* Names are identities: each must be a non-empty C string inside its
 * buffer and unique, or ring_find would be ambiguous; slots must be
 * unique, or two nodes would share tokens. URLs must at least be
 * terminated. */
static int nodes_are_valid(const ring_node *nodes, int nnodes)
{
    for (int i = 0; i < nnodes; i++) {
        const ring_node *n = &nodes[i];
        if (n->name[0] == '\0' ||
            memchr(n->name, '\0', sizeof n->name) == NULL ||
            memchr(n->url, '\0', sizeof n->url) == NULL ||
            memchr(n->slot, '\0', sizeof n->slot) == NULL)
            return 0;
        for (int j = 0; j < i; j++) {
            if (strcmp(nodes[j].name, n->name) == 0 ||
                strcmp(ring_node_slot(&nodes[j]), ring_node_slot(n)) == 0)
                return 0;
        }
    }
    return 1;
}

/* qsort has no context argument, so the sort works on tokens that carry
 * their node's name for the tie-break. */
typedef struct sort_token {
    uint64_t hash;
    int node;
    const char *name;
} sort_token;

static int sort_token_cmp(const void *pa, const void *pb)
{
    const sort_token *a = pa, *b = pb;

    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    /* Equal hashes are all but impossible; ordering them by name keeps
     * the owner independent of the order nodes were listed in. */
    return strcmp(a->name, b->name);
}

static int build_tokens(ring_t *r)
{
    sort_token *tmp = malloc(r->ntokens * sizeof *tmp);
    size_t k = 0;

    if (tmp == NULL)
        return -1;
    for (int n = 0; n < r->nnodes; n++) {
        for (int i = 0; i < r->vnodes; i++) {
            char key[sizeof r->nodes[n].slot + 16];
            const char *slot = ring_node_slot(&r->nodes[n]);
            int len = snprintf(key, sizeof key, "%s#%d", slot, i);
            tmp[k].hash = ring_hash(key, (size_t)len);
            tmp[k].node = n;
            tmp[k].name = slot;
            k++;
        }
    }
    qsort(tmp, r->ntokens, sizeof *tmp, sort_token_cmp);
    for (k = 0; k < r->ntokens; k++) {
        r->tokens[k].hash = tmp[k].hash;
        r->tokens[k].node = tmp[k].node;
    }
    free(tmp);
    return 0;
}

ring_t *ring_new(int64_t epoch, int vnodes, const ring_node *nodes, int nnodes)
{
    if (nnodes < 1 || nnodes > RING_NODES_MAX || vnodes < 1 ||
        !nodes_are_valid(nodes, nnodes))
        return NULL;
    ring_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->epoch = epoch;
    r->vnodes = vnodes;
    r->nnodes = nnodes;
    memcpy(r->nodes, nodes, (size_t)nnodes * sizeof *nodes);
    r->ntokens = (size_t)nnodes * (size_t)vnodes;
    r->tokens = malloc(r->ntokens * sizeof *r->tokens);
    if (r->tokens == NULL || build_tokens(r) != 0) {
        ring_free(r);
        return NULL;
    }
    return r;
}

ring_t *ring_copy(const ring_t *r)
{
    ring_t *c = ring_new(r->epoch, r->vnodes, r->nodes, r->nnodes);
    if (c)
        c->attempt = r->attempt;
    return c;
}

/* First token whose hash is >= the user's, wrapping past the top. */
int ring_owner(const ring_t *r, int64_t user_id)
{
    uint64_t h = ring_hash_user(user_id);
    size_t lo = 0, hi = r->ntokens;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->tokens[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == r->ntokens)
        lo = 0;
    return r->tokens[lo].node;
}

/* Appends [lo, hi] to out, merged into the last range when they touch. */
static int add_range(ring_range *out, size_t cap, int *n, uint64_t lo,
                     uint64_t hi)
{
    if (*n > 0 && out[*n - 1].hi + 1 == lo) {
        out[*n - 1].hi = hi;
        return 0;
    }
    if ((size_t)*n == cap)
        return -1;
    out[(*n)++] = (ring_range){lo, hi};
    return 0;
}

int ring_foreign_ranges(const ring_t *r, int node, ring_range *out, size_t cap)
{
    int n = 0;
    /* Token i holds (token i-1, token i]; token 0 also holds the wrap
     * past the last token, listed at the end to keep the order. */
    for (size_t i = 0; i < r->ntokens; i++) {
        if (r->tokens[i].node == node)
            continue;
        uint64_t lo = i ? r->tokens[i - 1].hash + 1 : 0;
        if (add_range(out, cap, &n, lo, r->tokens[i].hash))
            return -1;
    }
    uint64_t last = r->ntokens ? r->tokens[r->ntokens - 1].hash : UINT64_MAX;
    if (r->ntokens && r->tokens[0].node != node && last != UINT64_MAX &&
        add_range(out, cap, &n, last + 1, UINT64_MAX))
        return -1;
    return n;
}

int ring_find(const ring_t *r, const char *name)
{
    for (int i = 0; i < r->nnodes; i++) {
        if (strcmp(r->nodes[i].name, name) == 0)
            return i;
    }
    return -1;
}

char *ring_to_json(const ring_t *r)
{
    json_t *root = json_pack("{s:I, s:i, s:[]}", "epoch", (json_int_t)r->epoch,
                             "vnodes", r->vnodes, "nodes");
    json_t *nodes = json_object_get(root, "nodes"); /* borrowed */
    char *out = NULL;

    if (root == NULL)
        return NULL;
    if (r->attempt != 0 &&
        json_object_set_new(root, "attempt", json_integer(r->attempt)) != 0)
        goto out;
    for (int i = 0; i < r->nnodes; i++) {
        json_t *n =
            json_pack("{s:s, s:s, s:s}", "name", r->nodes[i].name, "url",
                      r->nodes[i].url, "slot", ring_node_slot(&r->nodes[i]));
        if (json_array_append_new(nodes, n) != 0)
            goto out;
    }
    out = json_dumps(root, JSON_COMPACT);
out:
    json_decref(root);
    return out;
}

/* Copies the JSON string j into buf of cap bytes: non-empty, no NUL
 * inside, and short enough to leave room for the terminator. */
static int copy_field(const json_t *j, char *buf, size_t cap)
{
    if (!json_is_string(j))
        return -1;
    size_t len = json_string_length(j);
    const char *s = json_string_value(j);
    if (len == 0 || len >= cap || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len + 1);
    return 0;
}

int ring_node_from_json(const json_t *j, ring_node *node)
{
    if (!json_is_object(j) ||
        copy_field(json_object_get(j, "name"), node->name, sizeof node->name) ||
        copy_field(json_object_get(j, "url"), node->url, sizeof node->url))
        return -1;
    const json_t *slot = json_object_get(j, "slot");
    node->slot[0] = '\0';
    return slot ? copy_field(slot, node->slot, sizeof node->slot) : 0;
}

static int nodes_from_json(const json_t *arr, ring_node *nodes, int *nnodes)
{
    size_t count = json_array_size(arr);

    if (!json_is_array(arr) || count < 1 || count > RING_NODES_MAX)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (ring_node_from_json(json_array_get(arr, i), &nodes[i]) != 0)
            return -1;
    }
    *nnodes = (int)count;
    return 0;
}

ring_t *ring_from_json(const char *buf, size_t len)
{
    ring_node nodes[RING_NODES_MAX];
    int nnodes = 0;
    ring_t *r = NULL;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);

    if (!json_is_object(root))
        goto out;
    const json_t *epoch = json_object_get(root, "epoch");
    const json_t *vnodes = json_object_get(root, "vnodes");
    const json_t *attempt = json_object_get(root, "attempt");
    if (attempt &&
        (!json_is_integer(attempt) || json_integer_value(attempt) < 0))
        goto out;
    if (!json_is_integer(epoch) || json_integer_value(epoch) < 0 ||
        !json_is_integer(vnodes) || json_integer_value(vnodes) < 1 ||
        json_integer_value(vnodes) > RING_VNODES_MAX)
        goto out;
    memset(nodes, 0, sizeof nodes);
    if (nodes_from_json(json_object_get(root, "nodes"), nodes, &nnodes) != 0)
        goto out;
    r = ring_new(json_integer_value(epoch), (int)json_integer_value(vnodes),
                 nodes, nnodes);
    if (r && attempt)
        r->attempt = json_integer_value(attempt);
out:
    json_decref(root);
    return r;
}
