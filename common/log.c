/*
 * log.c - structured JSON log lines on stdout.
 *
 * Every line is one JSON object written with a single write(2), so lines
 * of concurrent threads never interleave (a pipe keeps writes up to
 * PIPE_BUF atomic; a log collector reading stdout of a container sees
 * whole lines). The service name is set once by log_init in main before
 * any thread starts, and only read after.
 *
 * Every request logs a line, so the usual line is serialised here
 * directly into a stack buffer, with no jansson objects built. It must
 * read byte for byte as jansson would write it (the format is what log
 * collectors and tests parse): the same key order, the same escaping, and
 * jansson's own dumper for reals, arrays and objects. Anything rarer (a
 * byte outside ASCII, whose UTF-8 jansson validates, or a key with an
 * embedded NUL) goes to the reference path, which builds the line with
 * jansson as it always did.
 *
 * Request lines are not written one by one: a write(2) per request was
 * about a tenth of the CPU of a gateway and a cache node on a delta. They
 * gather in a process-wide buffer, which goes out in one write when it
 * fills, when any other line is logged (so the file keeps the order in
 * which lines were logged), at exit, and from a flusher thread at most
 * log_flush_ms after its first line, as nginx's buffered access log does.
 * A crash loses at most that long of request lines; every other line is
 * written at once.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clockms.h"
#include "jsontext.h"

/* Longest message log_msg formats; longer ones are cut. */
#define LOG_MSG_MAX 1024
/* Partial writes are retried this many times before the line is dropped:
 * a logger must never block a request thread forever. */
#define LOG_WRITE_TRIES 8
/* Lines up to this many bytes are built on the stack; longer ones move
 * to the heap. A request line is about 250 bytes. */
#define LOG_LINE_STACK 1024
/* Ten significant digits: durations read 0.020671, not the 17-digit
 * binary expansion. Both paths serialise with these flags. */
#define LOG_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))
/* Size of the buffer format_ts writes a timestamp into. */
#define LOG_TS_MAX 40
/* Request lines buffered before a write: about 250 of them. */
#define LOG_BUFFER_BYTES (64 * 1024)

static char log_service[64] = "unknown";

void log_init(const char *service)
{
    if (service == NULL)
        return;
    snprintf(log_service, sizeof(log_service), "%s", service);
}

/* RFC 3339 UTC time with milliseconds: 2026-11-25T12:00:00.123Z. The
 * text of the whole seconds is kept per thread and reused within the same
 * second: glibc's gmtime_r takes a process-wide lock. */
static void format_ts(char *out, size_t size)
{
    static _Thread_local time_t cached_sec;
    static _Thread_local size_t cached_len;
    static _Thread_local char cached[LOG_TS_MAX];
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    if (cached_len == 0 || now.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = now.tv_sec;
    }
    size_t n = cached_len < size ? cached_len : 0;
    memcpy(out, cached, n);
    snprintf(out + n, size - n, ".%03ldZ", now.tv_nsec / 1000000L);
}

static void write_all(const char *buf, size_t len)
{
    for (int i = 0; i < LOG_WRITE_TRIES && len > 0; i++) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno != EINTR)
            return;
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        }
    }
}

/* ---- the request-line buffer ---------------------------------------- */

/* Two halves: lines go into the active one while the other is written,
 * so a request thread holds buf_mu only for a copy, never for a write.
 * write_mu admits one writer at a time, which keeps the lines in order. */
static pthread_mutex_t buf_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;
static char buf_half[2][LOG_BUFFER_BYTES];
static int buf_active;      /* guarded by buf_mu */
static size_t buf_len;      /* of the active half; guarded by buf_mu */
static atomic_int flush_ms; /* 0: request lines are written at once */
static pthread_once_t flusher_once = PTHREAD_ONCE_INIT;
/* The flusher's pause, cut short when the interval changes. */
static pthread_mutex_t flusher_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flusher_cv;
static pthread_once_t flusher_cv_once = PTHREAD_ONCE_INIT;

/* On the monotonic clock: a step of the wall clock must not hold lines. */
static void flusher_cv_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&flusher_cv, &attr);
    pthread_condattr_destroy(&attr);
}

void log_set_flush_ms(int ms)
{
    atomic_store(&flush_ms, ms > 0 ? ms : 0);
    pthread_once(&flusher_cv_once, flusher_cv_init);
    pthread_mutex_lock(&flusher_mu);
    pthread_cond_broadcast(&flusher_cv);
    pthread_mutex_unlock(&flusher_mu);
}

/* Writes what is buffered, then line (NULL: nothing more). */
static void flush_then_write(const char *line, size_t len)
{
    pthread_mutex_lock(&write_mu);
    pthread_mutex_lock(&buf_mu);
    const char *out = buf_half[buf_active];
    size_t n = buf_len;
    buf_active ^= 1;
    buf_len = 0;
    pthread_mutex_unlock(&buf_mu);
    write_all(out, n);
    if (line != NULL)
        write_all(line, len);
    pthread_mutex_unlock(&write_mu);
}

void log_flush(void)
{
    flush_then_write(NULL, 0);
}

/* Waits one interval (or until it changes); with buffering off, until
 * it is turned on again. */
static void flusher_pause(void)
{
    pthread_mutex_lock(&flusher_mu);
    int ms = atomic_load(&flush_ms);
    if (ms == 0) {
        pthread_cond_wait(&flusher_cv, &flusher_mu);
    } else {
        struct timespec until = clockms_monotonic_deadline_in(ms);
        pthread_cond_timedwait(&flusher_cv, &flusher_mu, &until);
    }
    pthread_mutex_unlock(&flusher_mu);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    for (;;) {
        flusher_pause();
        log_flush();
    }
    return NULL;
}

/* The flusher runs with every signal blocked: a service's SIGTERM must
 * reach its own waiting thread. Without it (no thread could be made) a
 * line still goes out with the next full buffer, other line or exit. */
static void flusher_start(void)
{
    atexit(log_flush);
    pthread_once(&flusher_cv_once, flusher_cv_init);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    if (pthread_create(&t, NULL, flusher_main, NULL) == 0)
        pthread_detach(t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A request line: into the buffer, or out at once when buffering is off
 * or the line would not fit an empty buffer. */
static void buffer_line(const char *line, size_t len)
{
    if (atomic_load(&flush_ms) == 0 || len > LOG_BUFFER_BYTES) {
        flush_then_write(line, len);
        return;
    }
    pthread_once(&flusher_once, flusher_start);
    for (;;) {
        pthread_mutex_lock(&buf_mu);
        if (len <= LOG_BUFFER_BYTES - buf_len) {
            memcpy(buf_half[buf_active] + buf_len, line, len);
            buf_len += len;
            pthread_mutex_unlock(&buf_mu);
            return;
        }
        pthread_mutex_unlock(&buf_mu);
        log_flush();
    }
}

/* ---- the reference path: jansson ------------------------------------ */

/* The line without the trailing newline, or NULL when out of memory. */
static char *build_line_jansson(const char *ts, const char *level,
                                const char *msg, const json_t *fields)
{
    json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level,
                             "service", log_service, "msg", msg);
    if (line == NULL)
        return NULL;
    /* json_object_update only takes new references to the values of
     * `fields`; the cast drops a const that jansson's API lacks. */
    if (json_is_object(fields))
        json_object_update(line, (json_t *)fields);
    char *text = json_dumps(line, LOG_JSON_FLAGS);
    json_decref(line);
    return text;
}

/* ---- the usual path: direct serialisation --------------------------- */

/* A line being built: in `stack` until it outgrows it, then on the heap.
 * is_failed is sticky: out of memory, or input left to jansson. */
typedef struct line_buf {
    char *data;
    size_t len, cap;
    bool is_failed;
    char stack[LOG_LINE_STACK];
} line_buf;

static void line_init(line_buf *b)
{
    b->data = b->stack;
    b->len = 0;
    b->cap = sizeof(b->stack);
    b->is_failed = false;
}

static void line_destroy(line_buf *b)
{
    if (b->data != b->stack)
        free(b->data);
}

static bool line_reserve(line_buf *b, size_t n)
{
    if (b->is_failed)
        return false;
    if (n <= b->cap - b->len)
        return true;
    size_t cap = b->cap;
    while (n > cap - b->len) {
        if (cap > SIZE_MAX / 2) {
            b->is_failed = true;
            return false;
        }
        cap *= 2;
    }
    char *data = b->data == b->stack ? malloc(cap) : realloc(b->data, cap);
    if (data == NULL) {
        b->is_failed = true;
        return false;
    }
    if (b->data == b->stack)
        memcpy(data, b->stack, b->len);
    b->data = data;
    b->cap = cap;
    return true;
}

static void line_append(line_buf *b, const char *s, size_t n)
{
    if (!line_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* json_dump_callback's sink. */
static int line_dump(const char *s, size_t n, void *data)
{
    line_buf *b = data;

    line_append(b, s, n);
    return b->is_failed ? -1 : 0;
}

static bool is_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* s[0..n) as a JSON string, escaped as jansson escapes it. A byte
 * outside ASCII fails the line: jansson would check its UTF-8. */
static void line_append_string(line_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) {
            b->is_failed = true;
            return;
        }
    /* At most 6 bytes per input byte (\u00XX), plus the quotes. */
    if (n > (SIZE_MAX - 2) / 6 || !line_reserve(b, 6 * n + 2))
        return;
    b->len += jt_escape(b->data + b->len, s, n);
}

/* v as "%lld" prints it. */
static void line_append_integer(line_buf *b, long long v)
{
    char text[JT_INT_MAX];
    line_append(b, text, jt_format_int(text, v));
}

static void line_append_value(line_buf *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        line_append_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        line_append_integer(b, (long long)json_integer_value(v));
        break;
    case JSON_TRUE:
        line_append(b, "true", 4);
        break;
    case JSON_FALSE:
        line_append(b, "false", 5);
        break;
    case JSON_NULL:
        line_append(b, "null", 4);
        break;
    default:
        /* Reals, arrays and objects: jansson's own dumper, so precision,
         * exponent and locale handling are its own. */
        if (json_dump_callback(v, line_dump, b,
                               LOG_JSON_FLAGS | JSON_ENCODE_ANY) != 0)
            b->is_failed = true;
    }
}

/* The members every line starts with, in this order. */
static const struct {
    const char *name;
    size_t len;
} base_keys[] = {{"ts", 2}, {"level", 5}, {"service", 7}, {"msg", 3}};
#define BASE_KEYS (sizeof(base_keys) / sizeof(base_keys[0]))

/* The index of key[0..len) in base_keys, or -1. */
static int base_index(const char *key, size_t len)
{
    for (size_t i = 0; i < BASE_KEYS; i++)
        if (base_keys[i].len == len && memcmp(key, base_keys[i].name, len) == 0)
            return (int)i;
    return -1;
}

/* The line as build_line_jansson writes it, into b. A field named like a
 * base member replaces its value in place (json_object_update); the other
 * fields follow in their order. Fails b on anything left to jansson. */
static void build_line_direct(line_buf *b, const char *const base[BASE_KEYS],
                              const json_t *fields)
{
    json_t *obj = json_is_object(fields) ? (json_t *)fields : NULL;
    const json_t *replaced[BASE_KEYS] = {NULL};

    for (size_t i = 0; i < BASE_KEYS; i++)
        if (!is_ascii(base[i]))
            b->is_failed = true;
    for (void *it = obj ? json_object_iter(obj) : NULL; it != NULL;
         it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        /* json_object_update cuts a key at an embedded NUL. */
        if (strlen(key) != key_len)
            b->is_failed = true;
        int i = base_index(key, key_len);
        if (i >= 0)
            replaced[i] = json_object_iter_value(it);
    }
    line_append(b, "{", 1);
    for (size_t i = 0; i < BASE_KEYS; i++) {
        if (i > 0)
            line_append(b, ",", 1);
        line_append_string(b, base_keys[i].name, base_keys[i].len);
        line_append(b, ":", 1);
        if (replaced[i] != NULL)
            line_append_value(b, replaced[i]);
        else
            line_append_string(b, base[i], strlen(base[i]));
    }
    for (void *it = obj ? json_object_iter(obj) : NULL;
         it != NULL && !b->is_failed; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        if (base_index(key, key_len) >= 0)
            continue;
        line_append(b, ",", 1);
        line_append_string(b, key, key_len);
        line_append(b, ":", 1);
        line_append_value(b, json_object_iter_value(it));
    }
    line_append(b, "}", 1);
}

/* ---- writing -------------------------------------------------------- */

static void write_line_jansson(const char *ts, const char *level,
                               const char *msg, const json_t *fields)
{
    char *text = build_line_jansson(ts, level, msg, fields);
    if (text == NULL) {
        static const char oom[] = "{\"level\":\"error\",\"msg\":\"log line "
                                  "dropped: out of memory\"}\n";
        flush_then_write(oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    char *with_nl = realloc(text, len + 2);
    if (with_nl == NULL) {
        free(text);
        return;
    }
    with_nl[len] = '\n';
    with_nl[len + 1] = '\0';
    flush_then_write(with_nl, len + 1);
    free(with_nl);
}

void log_event(const char *level, const char *msg, const json_t *fields)
{
    char ts[LOG_TS_MAX];
    format_ts(ts, sizeof(ts));
    const char *base[BASE_KEYS] = {ts, level ? level : "info", log_service,
                                   msg ? msg : ""};
    line_buf b;

    line_init(&b);
    build_line_direct(&b, base, fields);
    line_append(&b, "\n", 1);
    if (b.is_failed)
        write_line_jansson(base[0], base[1], base[3], fields);
    else
        flush_then_write(b.data, b.len);
    line_destroy(&b);
}

/* us (>= 0) as milliseconds with three decimals: 1234 -> 1.234. */
static void line_append_ms(line_buf *b, long long us)
{
    char frac[4] = {(char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10), '\0'};
    line_append_integer(b, us / 1000);
    line_append(b, ".", 1);
    line_append(b, frac, 3);
}

/* ,"key":"s" (NULL reads as ""). */
static void line_append_member(line_buf *b, const char *key, const char *s)
{
    if (s == NULL)
        s = "";
    line_append(b, ",", 1);
    line_append_string(b, key, strlen(key));
    line_append(b, ":", 1);
    line_append_string(b, s, strlen(s));
}

/* The same line through log_event, for what the direct path leaves to
 * jansson (a byte outside ASCII). */
static void log_request_jansson(const char *level, const log_request_line *r)
{
    json_t *fields = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:f}", "service", r->service, "request_id",
        r->request_id, "method", r->method, "route", r->route, "status",
        r->status, "duration_ms", (double)r->duration_us / 1000.0);
    log_event(level, "request", fields);
    json_decref(fields);
}

void log_request(const char *level, const log_request_line *r)
{
    char ts[LOG_TS_MAX];
    format_ts(ts, sizeof(ts));
    log_request_line v = *r;
    v.service = r->service ? r->service : log_service;
    v.request_id = r->request_id ? r->request_id : "";
    v.method = r->method ? r->method : "";
    v.route = r->route ? r->route : "";
    v.duration_us = r->duration_us < 0 ? 0 : r->duration_us; /* clock step */
    line_buf b;

    line_init(&b);
    line_append(&b, "{\"ts\":", 6);
    line_append_string(&b, ts, strlen(ts));
    line_append_member(&b, "level", level ? level : "info");
    line_append_member(&b, "service", v.service);
    line_append(&b, ",\"msg\":\"request\"", 16);
    line_append_member(&b, "request_id", v.request_id);
    line_append_member(&b, "method", v.method);
    line_append_member(&b, "route", v.route);
    line_append(&b, ",\"status\":", 10);
    line_append_integer(&b, v.status);
    line_append(&b, ",\"duration_ms\":", 15);
    line_append_ms(&b, v.duration_us);
    line_append(&b, "}\n", 2);
    if (b.is_failed)
        log_request_jansson(level, &v);
    else
        buffer_line(b.data, b.len);
    line_destroy(&b);
}

void log_msg(const char *level, const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_event(level, msg, NULL);
}
