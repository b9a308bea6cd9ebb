/*
 * log.h - one JSON line per event on stdout.
 *
 * {"ts":"2026-11-25T12:00:00.123Z","level":"info","service":"gateway",
 *  "msg":"...", ...fields}. A line is written whole (one write() holds
 * whole lines only), so concurrent threads never interleave. Request lines
 * (log_request) may wait in a buffer up to the flush interval; every other
 * line flushes them first and is written at once. log_init is called once
 * in main.
 */
#ifndef MSG_LOG_H
#define MSG_LOG_H

#include <jansson.h>

void log_init(const char *service);

/* How long a request line may wait in the buffer, in milliseconds
 * (services: MESSENGER_LOG_FLUSH_MS). 0, the default until set: each is
 * written at once. */
void log_set_flush_ms(int ms);

/* Writes the buffered request lines now (also run at exit). */
void log_flush(void);

/* Logs msg at level ("debug", "info", "warn", "error") with extra fields
 * from `fields` (borrowed; may be NULL). */
void log_event(const char *level, const char *msg, const json_t *fields);

/* The line of one answered request, as log_event writes "request" with
 * the fields service, request_id, method, route, status and duration_ms
 * (in that order), but without building jansson objects or formatting a
 * double: every request logs one, so this is the hot path. duration_us
 * appears as milliseconds with three decimals. */
typedef struct log_request_line {
    const char *service;
    const char *request_id;
    const char *method;
    const char *route;
    int status;
    long long duration_us;
} log_request_line;

void log_request(const char *level, const log_request_line *r);

/* printf-style convenience for a line with only a message. */
void log_msg(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
