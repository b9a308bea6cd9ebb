/*
 * errbuf.h - the reason buffer of functions that fail with -1.
 *
 * Parsers and loaders that can refuse their input take (char *errbuf,
 * size_t errcap) and write there, for a log line or a problem detail,
 * why they refused. errbuf_fail is the one way that text gets written,
 * so every such function treats a NULL or empty buffer alike and a
 * failing path stays one line: return errbuf_fail(errbuf, errcap, ...).
 *
 * No global state, safe from any thread.
 */
#ifndef MSG_ERRBUF_H
#define MSG_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* Formats the reason into errbuf (snprintf rules: truncated to errcap
 * bytes, NUL terminated) unless errbuf is NULL or errcap is 0. Returns
 * -1. */
__attribute__((format(printf, 3, 4))) int
errbuf_fail(char *errbuf, size_t errcap, const char *fmt, ...);

/* The same with a va_list and no return value, for callers that fail
 * with an error code of their own. */
__attribute__((format(printf, 3, 0))) void
errbuf_vformat(char *errbuf, size_t errcap, const char *fmt, va_list ap);

#endif
