/*
 * log.c - structured JSON log lines on stdout.
 *
 * Every line is one JSON object built with jansson, serialised compactly
 * and written with a single write(2), so lines of concurrent threads never
 * interleave (a pipe keeps writes up to PIPE_BUF atomic; a log collector
 * reading stdout of a container sees whole lines). The service name is set
 * once by log_init in main before any thread starts, and only read after.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest message log_msg formats; longer ones are cut. */
#define LOG_MSG_MAX 1024
/* Partial writes are retried this many times before the line is dropped:
 * a logger must never block a request thread forever. */
#define LOG_WRITE_TRIES 8

static char log_service[64] = "unknown";

void log_init(const char *service)
{
    if (service == NULL)
        return;
    snprintf(log_service, sizeof(log_service), "%s", service);
}

/* RFC 3339 UTC time with milliseconds: 2026-11-25T12:00:00.123Z. */
static void format_ts(char *out, size_t size)
{
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
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

/* The line without the trailing newline, or NULL when out of memory. */
static char *build_line(const char *level, const char *msg,
                        const json_t *fields)
{
    char ts[40];
    format_ts(ts, sizeof(ts));

    json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level",
                             level ? level : "info", "service", log_service,
                             "msg", msg ? msg : "");
    if (line == NULL)
        return NULL;
    /* json_object_update only takes new references to the values of
     * `fields`; the cast drops a const that jansson's API lacks. */
    if (json_is_object(fields))
        json_object_update(line, (json_t *)fields);
    /* Ten significant digits: durations read 0.020671, not the 17-digit
     * binary expansion. */
    char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(line);
    return text;
}

void log_event(const char *level, const char *msg, const json_t *fields)
{
    char *text = build_line(level, msg, fields);
    if (text == NULL) {
        static const char oom[] = "{\"level\":\"error\",\"msg\":\"log line "
                                  "dropped: out of memory\"}\n";
        write_all(oom, sizeof(oom) - 1);
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
    write_all(with_nl, len + 1);
    free(with_nl);
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
