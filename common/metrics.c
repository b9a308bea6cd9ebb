/*
 * metrics.c - Prometheus series kept in fixed tables, rendered as text.
 *
 * A service has a handful of routes, statuses and dependencies, so every
 * series lives in a fixed-size table allocated with the metrics_t: no
 * allocation after start-up and a bounded memory footprint. A series that
 * does not fit (or has an invalid name) is dropped and counted in
 * metrics_dropped_total instead, so a label explosion shows up on the
 * dashboard rather than as a crash or unbounded growth.
 *
 * One mutex guards all tables; updates are a few additions under it and
 * metrics_render formats into a memory stream under it.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_REQUEST_SERIES 64 /* (route, status) pairs */
#define METRICS_ROUTE_SERIES 64   /* (route, status) latency histograms */
#define METRICS_DEP_SERIES 16     /* dependency latency histograms */
#define METRICS_NAMED_SERIES 32   /* service counters and gauges */
#define METRICS_NAME_MAX 64
#define METRICS_HELP_MAX 128

/* Latency bucket upper bounds in seconds: from a Redis round trip on
 * loopback (0.5 ms) to a hop that hit its timeout (5 s and beyond). */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,  0.1,    0.25,  0.5,
                                       1,      2.5,   5,      10};
#define METRICS_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

typedef struct histogram {
    char label[METRICS_NAME_MAX];      /* route or dependency */
    int status;                        /* a route's answers; 0: none */
    uint64_t buckets[METRICS_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;                    /* includes observations > 10 s */
    double sum;
} histogram;

typedef struct request_series {
    char route[METRICS_NAME_MAX];
    int status;
    uint64_t count;
} request_series;

/* A float counter counts seconds, which a whole-number counter cannot. */
typedef enum { NAMED_COUNTER, NAMED_FLOAT_COUNTER, NAMED_GAUGE } named_kind;

typedef struct named_series {
    char name[METRICS_NAME_MAX];
    char help[METRICS_HELP_MAX];
    named_kind kind;
    uint64_t count;
    double value;
} named_series;

struct metrics {
    pthread_mutex_t mu; /* guards everything below */
    char service[METRICS_NAME_MAX];
    request_series requests[METRICS_REQUEST_SERIES];
    size_t nrequests;
    histogram routes[METRICS_ROUTE_SERIES];
    size_t nroutes;
    histogram deps[METRICS_DEP_SERIES];
    size_t ndeps;
    named_series named[METRICS_NAMED_SERIES];
    size_t nnamed;
    uint64_t dropped;
};

metrics_t *metrics_new(const char *service)
{
    metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    snprintf(m->service, sizeof(m->service), "%s",
             service ? service : "unknown");
    return m;
}

void metrics_free(metrics_t *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- recording ------------------------------------------------------ */

static void histogram_add(histogram *h, double seconds)
{
    if (!(seconds >= 0)) /* negative or NaN: a clock step, count as 0 */
        seconds = 0;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        if (seconds <= bucket_bounds[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

/* The histogram labelled (label, status) in table, created if there is
 * room; NULL when the table is full. */
static histogram *histogram_find(histogram *table, size_t *n, size_t cap,
                                 const char *label, int status)
{
    for (size_t i = 0; i < *n; i++)
        if (table[i].status == status &&
            strncmp(table[i].label, label, METRICS_NAME_MAX - 1) == 0)
            return &table[i];
    if (*n == cap)
        return NULL;
    histogram *h = &table[(*n)++];
    snprintf(h->label, sizeof(h->label), "%s", label);
    h->status = status;
    return h;
}

static request_series *request_find(metrics_t *m, const char *route, int status)
{
    for (size_t i = 0; i < m->nrequests; i++) {
        request_series *r = &m->requests[i];
        if (r->status == status &&
            strncmp(r->route, route, METRICS_NAME_MAX - 1) == 0)
            return r;
    }
    if (m->nrequests == METRICS_REQUEST_SERIES)
        return NULL;
    request_series *r = &m->requests[m->nrequests++];
    snprintf(r->route, sizeof(r->route), "%s", route);
    r->status = status;
    return r;
}

void metrics_observe_request(metrics_t *m, const char *route, int status,
                             double seconds)
{
    if (m == NULL)
        return;
    if (route == NULL || route[0] == '\0')
        route = "unknown";
    pthread_mutex_lock(&m->mu);
    request_series *r = request_find(m, route, status);
    if (r != NULL)
        r->count++;
    else
        m->dropped++;
    histogram *h = histogram_find(m->routes, &m->nroutes, METRICS_ROUTE_SERIES,
                                  route, status);
    if (h != NULL)
        histogram_add(h, seconds);
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_observe_dependency(metrics_t *m, const char *dep, double seconds)
{
    if (m == NULL)
        return;
    if (dep == NULL || dep[0] == '\0')
        dep = "unknown";
    pthread_mutex_lock(&m->mu);
    histogram *h =
        histogram_find(m->deps, &m->ndeps, METRICS_DEP_SERIES, dep, 0);
    if (h != NULL)
        histogram_add(h, seconds);
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

/* Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, and short enough to
 * be stored whole (a cut name would merge two series). */
static bool name_is_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= METRICS_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     *p == '_' || *p == ':';
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != name))
            return false;
    }
    return true;
}

/* Names the built-in families use (with their suffixes); a service
 * series must not shadow them or the output would hold a family twice. */
static bool name_is_reserved(const char *name)
{
    static const char *const prefixes[] = {
        "http_requests_total", "http_request_duration_seconds",
        "dependency_duration_seconds", "metrics_dropped_total"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* The named series, created with kind on first use; NULL when the name
 * is invalid, taken by the other kind, or the table is full. */
static named_series *named_find(metrics_t *m, const char *name,
                                const char *help, named_kind kind)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < m->nnamed; i++) {
        if (strcmp(m->named[i].name, name) == 0)
            return m->named[i].kind == kind ? &m->named[i] : NULL;
    }
    if (!name_is_valid(name) || name_is_reserved(name) ||
        m->nnamed == METRICS_NAMED_SERIES)
        return NULL;
    named_series *s = &m->named[m->nnamed++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->help, sizeof(s->help), "%s", help ? help : name);
    s->kind = kind;
    return s;
}

void metrics_count(metrics_t *m, const char *name, const char *help,
                   uint64_t delta)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    named_series *s = named_find(m, name, help, NAMED_COUNTER);
    if (s != NULL)
        s->count += delta;
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_count_seconds(metrics_t *m, const char *name, const char *help,
                           double seconds)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    named_series *s = named_find(m, name, help, NAMED_FLOAT_COUNTER);
    if (s != NULL && seconds >= 0)
        s->value += seconds;
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauge(metrics_t *m, const char *name, const char *help,
                   double value)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    named_series *s = named_find(m, name, help, NAMED_GAUGE);
    if (s != NULL)
        s->value = value;
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauge_add(metrics_t *m, const char *name, const char *help,
                       double delta)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    named_series *s = named_find(m, name, help, NAMED_GAUGE);
    if (s != NULL)
        s->value += delta;
    else
        m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ------------------------------------------------------ */

/* Label values escape backslash, double quote and newline. */
static void put_label_value(FILE *f, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '"')
            fputs("\\\"", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

/* HELP text escapes backslash and newline. */
static void put_family(FILE *f, const char *name, const char *type,
                       const char *help)
{
    fprintf(f, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* The shortest of %.15g and %.17g that reads back as v: 0.203, not
 * 0.20300000000000001. */
static const char *shortest_double(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
    return buf;
}

/* Sample values: Prometheus spells the non-finite ones its own way. */
static void put_double(FILE *f, double v)
{
    char buf[32];
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else
        fputs(shortest_double(v, buf, sizeof(buf)), f);
}

/* `{service="s",<key>="<value>"` without the closing brace. */
static void put_labels_open(FILE *f, const metrics_t *m, const char *key,
                            const char *value)
{
    fputs("{service=\"", f);
    put_label_value(f, m->service);
    fprintf(f, "\",%s=\"", key);
    put_label_value(f, value);
    fputc('"', f);
}

/* The labels of one histogram's samples, without the closing brace. */
static void put_histogram_labels(FILE *f, const metrics_t *m, const char *key,
                                 const histogram *h)
{
    put_labels_open(f, m, key, h->label);
    if (h->status != 0)
        fprintf(f, ",status=\"%d\"", h->status);
}

static void put_histogram(FILE *f, const metrics_t *m, const char *family,
                          const char *key, const histogram *h)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += h->buckets[i];
        fprintf(f, "%s_bucket", family);
        put_histogram_labels(f, m, key, h);
        fprintf(f, ",le=\"%g\"} %llu\n", bucket_bounds[i],
                (unsigned long long)cumulative);
    }
    fprintf(f, "%s_bucket", family);
    put_histogram_labels(f, m, key, h);
    fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
    fprintf(f, "%s_sum", family);
    put_histogram_labels(f, m, key, h);
    fputs("} ", f);
    put_double(f, h->sum);
    fprintf(f, "\n%s_count", family);
    put_histogram_labels(f, m, key, h);
    fprintf(f, "} %llu\n", (unsigned long long)h->count);
}

static void put_histogram_family(FILE *f, const metrics_t *m,
                                 const char *family, const char *help,
                                 const char *key, const histogram *table,
                                 size_t n)
{
    if (n == 0)
        return;
    put_family(f, family, "histogram", help);
    for (size_t i = 0; i < n; i++)
        put_histogram(f, m, family, key, &table[i]);
}

static void put_requests(FILE *f, const metrics_t *m)
{
    if (m->nrequests == 0)
        return;
    put_family(f, "http_requests_total", "counter",
               "HTTP requests served, by route and status.");
    for (size_t i = 0; i < m->nrequests; i++) {
        const request_series *r = &m->requests[i];
        fputs("http_requests_total", f);
        put_labels_open(f, m, "route", r->route);
        fprintf(f, ",status=\"%d\"} %llu\n", r->status,
                (unsigned long long)r->count);
    }
}

static void put_named(FILE *f, const metrics_t *m)
{
    for (size_t i = 0; i < m->nnamed; i++) {
        const named_series *s = &m->named[i];
        bool counter = s->kind == NAMED_COUNTER;
        put_family(f, s->name, s->kind == NAMED_GAUGE ? "gauge" : "counter",
                   s->help);
        fprintf(f, "%s{service=\"", s->name);
        put_label_value(f, m->service);
        fputs("\"} ", f);
        if (counter)
            fprintf(f, "%llu\n", (unsigned long long)s->count);
        else {
            put_double(f, s->value);
            fputc('\n', f);
        }
    }
}

static void put_all(FILE *f, const metrics_t *m)
{
    put_requests(f, m);
    put_histogram_family(f, m, "http_request_duration_seconds",
                         "HTTP request latency, by route and status.", "route",
                         m->routes, m->nroutes);
    put_histogram_family(f, m, "dependency_duration_seconds",
                         "Latency of calls to dependencies.", "dependency",
                         m->deps, m->ndeps);
    put_named(f, m);
    put_family(
        f, "metrics_dropped_total", "counter",
        "Observations dropped: a series table was full or a name invalid.");
    fputs("metrics_dropped_total{service=\"", f);
    put_label_value(f, m->service);
    fprintf(f, "\"} %llu\n", (unsigned long long)m->dropped);
}

char *metrics_render(metrics_t *m)
{
    if (m == NULL)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;

    pthread_mutex_lock(&m->mu);
    put_all(f, m);
    pthread_mutex_unlock(&m->mu);

    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}
