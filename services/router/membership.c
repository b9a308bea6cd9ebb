/*
 * membership.c - parsing ROUTER_NODES, its canonical string, and the
 * heartbeat table. See membership.h.
 *
 * The canonical string is what decides whether a restart keeps the epoch
 * (epochfile.c): it must change whenever the placement of any user could
 * change, so it holds vnodes and every name and URL in configured order.
 * Names cannot hold '=' and entries cannot hold ',', so distinct
 * memberships never share a string.
 */
#include "membership.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "errbuf.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Printable ASCII without blanks: safe in the epoch file (space is its
 * separator), in logs and in URLs. */
static bool is_plain(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    }
    return true;
}

static bool has_http_scheme(const char *url, size_t len)
{
    return (len > 7 && strncmp(url, "http://", 7) == 0) ||
           (len > 8 && strncmp(url, "https://", 8) == 0);
}

/* Parses one "name=url" entry of entry[0..len) (blanks trimmed). */
static int parse_entry(const char *entry, size_t len, ring_node *node,
                       char *errbuf, size_t errcap)
{
    while (len > 0 && is_blank(*entry)) {
        entry++;
        len--;
    }
    while (len > 0 && is_blank(entry[len - 1]))
        len--;
    const char *eq = memchr(entry, '=', len);
    if (eq == NULL)
        return errbuf_fail(errbuf, errcap, "entry '%.*s' is not name=url",
                           (int)len, entry);
    size_t name_len = (size_t)(eq - entry);
    const char *url = eq + 1;
    size_t url_len = len - name_len - 1;
    if (name_len == 0 || name_len >= sizeof(node->name) ||
        !is_plain(entry, name_len))
        return errbuf_fail(
            errbuf, errcap,
            "node name '%.*s' must be 1-%zu printable characters",
            (int)name_len, entry, sizeof(node->name) - 1);
    if (url_len >= sizeof(node->url) || !is_plain(url, url_len) ||
        !has_http_scheme(url, url_len))
        return errbuf_fail(
            errbuf, errcap,
            "URL '%.*s' of node %.*s must be an http:// or https:// "
            "URL of at most %zu characters",
            (int)url_len, url, (int)name_len, entry, sizeof(node->url) - 1);
    memcpy(node->name, entry, name_len);
    node->name[name_len] = '\0';
    memcpy(node->url, url, url_len);
    node->url[url_len] = '\0';
    return 0;
}

static int find_duplicate(const ring_node *nodes, int nnodes)
{
    for (int i = 0; i < nnodes; i++) {
        for (int j = i + 1; j < nnodes; j++) {
            if (strcmp(nodes[i].name, nodes[j].name) == 0)
                return i;
        }
    }
    return -1;
}

int membership_parse(const char *spec, ring_node *nodes, int *nnodes,
                     char *errbuf, size_t errcap)
{
    if (spec == NULL || spec[0] == '\0')
        return errbuf_fail(errbuf, errcap, "no nodes given");
    int n = 0;
    const char *p = spec;
    /* One entry per pass; the count bound also bounds the loop. */
    while (n < RING_NODES_MAX) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        memset(&nodes[n], 0, sizeof(nodes[n]));
        if (parse_entry(p, len, &nodes[n], errbuf, errcap))
            return -1;
        n++;
        if (comma == NULL) {
            int dup = find_duplicate(nodes, n);
            if (dup >= 0)
                return errbuf_fail(errbuf, errcap, "node name %s appears twice",
                                   nodes[dup].name);
            *nnodes = n;
            return 0;
        }
        p = comma + 1;
    }
    return errbuf_fail(errbuf, errcap, "more than %d nodes", RING_NODES_MAX);
}

int membership_string(const ring_node *nodes, int nnodes, int vnodes, char *out,
                      size_t cap)
{
    int len = snprintf(out, cap, "vnodes=%d", vnodes);
    if (len < 0 || (size_t)len >= cap)
        return -1;
    for (int i = 0; i < nnodes; i++) {
        int n =
            snprintf(out + len, cap - (size_t)len, ",%s=%s@%s", nodes[i].name,
                     nodes[i].url, ring_node_slot(&nodes[i]));
        if (n < 0 || (size_t)n >= cap - (size_t)len)
            return -1;
        len += n;
    }
    return len;
}

int members_init(member_table *t, int64_t start_ms)
{
    memset(t, 0, sizeof(*t));
    t->start_ms = start_ms;
    return pthread_mutex_init(&t->lock, NULL) ? -1 : 0;
}

void members_destroy(member_table *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* Under t->lock. */
static member_state *find(member_table *t, const char *name)
{
    for (int i = 0; i < t->n; i++) {
        if (strcmp(t->members[i].name, name) == 0)
            return &t->members[i];
    }
    return NULL;
}

/* Under t->lock: the longest unheard entry, if unheard for
 * MEMBERS_FORGET_MS, else NULL. */
static member_state *forgettable(member_table *t, int64_t now_ms)
{
    member_state *oldest = NULL;
    for (int i = 0; i < t->n; i++) {
        member_state *m = &t->members[i];
        if (!oldest || m->last_seen_ms < oldest->last_seen_ms)
            oldest = m;
    }
    return oldest && now_ms - oldest->last_seen_ms > MEMBERS_FORGET_MS ? oldest
                                                                       : NULL;
}

int members_heartbeat(member_table *t, const char *name, const char *url,
                      int64_t epoch, int64_t now_ms)
{
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    member_state *m = find(t, name);
    if (!m && t->n < MEMBERS_MAX)
        m = &t->members[t->n++];
    else if (!m)
        m = forgettable(t, now_ms);
    if (m && strcmp(m->name, name) != 0) {
        memset(m, 0, sizeof(*m));
        snprintf(m->name, sizeof(m->name), "%s", name);
    }
    if (m) {
        snprintf(m->url, sizeof(m->url), "%s", url);
        m->epoch = epoch;
        m->last_seen_ms = now_ms;
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int64_t members_age(member_table *t, const char *name, int64_t now_ms)
{
    pthread_mutex_lock(&t->lock);
    const member_state *m = find(t, name);
    /* A heartbeat may land after the caller read its clock: that node
     * was heard just now (age 0), not never (-1), which the failover
     * check would take for a node gone since this router started. */
    int64_t age = -1;
    if (m)
        age = now_ms > m->last_seen_ms ? now_ms - m->last_seen_ms : 0;
    pthread_mutex_unlock(&t->lock);
    return age;
}

int members_pick_spare(member_table *t, const ring_t *r, int64_t now_ms,
                       int64_t max_age_ms, ring_node *out)
{
    const member_state *best = NULL;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->n; i++) {
        const member_state *m = &t->members[i];
        if (now_ms - m->last_seen_ms > max_age_ms || ring_find(r, m->name) >= 0)
            continue;
        if (!best || strcmp(m->name, best->name) < 0)
            best = m;
    }
    if (best) {
        memset(out, 0, sizeof(*out));
        snprintf(out->name, sizeof(out->name), "%s", best->name);
        snprintf(out->url, sizeof(out->url), "%s", best->url);
    }
    pthread_mutex_unlock(&t->lock);
    return best ? 0 : -1;
}

json_t *members_to_json(member_table *t, int64_t now_ms)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&t->lock);
    for (int i = 0; arr && i < t->n; i++) {
        const member_state *m = &t->members[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:I,s:I}", "name", m->name, "url", m->url,
                           "epoch", (json_int_t)m->epoch, "age_ms",
                           (json_int_t)(now_ms - m->last_seen_ms)));
    }
    pthread_mutex_unlock(&t->lock);
    return arr;
}
