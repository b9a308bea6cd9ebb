/*
 * log.h - one JSON line per event on stdout.
 *
 * {"ts":"2026-11-25T12:00:00.123Z","level":"info","service":"gateway",
 *  "msg":"...", ...fields}. Lines are written with one write() each so
 * concurrent threads never interleave. log_init is called once in main.
 */
#ifndef MSG_LOG_H
#define MSG_LOG_H

#include <jansson.h>

void log_init(const char *service);

/* Logs msg at level ("debug", "info", "warn", "error") with extra fields
 * from `fields` (borrowed; may be NULL). */
void log_event(const char *level, const char *msg, const json_t *fields);

/* printf-style convenience for a line with only a message. */
void log_msg(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
