/*
 * jsontext.h - JSON text written directly, byte for byte as jansson's
 * json_dumps(JSON_COMPACT) writes the same values: the same escapes and
 * integer digits, no spaces. For the few texts written on every request
 * (log lines, a message and its conversation on every send), where
 * building jansson objects only to dump and free them cost more than the
 * text itself. The unit tests compare every writer with jansson.
 */
#ifndef MSG_JSONTEXT_H
#define MSG_JSONTEXT_H

#include <stdbool.h>
#include <stddef.h>

/* A text being written. Any step that fails (out of memory, invalid
 * UTF-8) marks it failed, and the later steps do nothing. */
typedef struct jt_buf {
    char *data;
    size_t len, cap;
    bool failed;
} jt_buf;

/* Longest text jt_format_int writes ("-9223372036854775808"). */
#define JT_INT_MAX 21

/* s[0..n) as a JSON string, quotes included, into out, which has room
 * for 6 * n + 2 bytes; returns the length written. Escapes '"', '\\' and
 * the control characters as jansson does without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH; every other byte, UTF-8 included, is copied (the
 * caller has checked the UTF-8: jansson refuses a string without it). */
size_t jt_escape(char *out, const char *s, size_t n);

/* v as "%lld" prints it, without the NUL; returns the length. */
size_t jt_format_int(char out[JT_INT_MAX], long long v);

void jt_init(jt_buf *b);
void jt_raw(jt_buf *b, const char *s, size_t n);
void jt_cstr(jt_buf *b, const char *s);
/* s[0..n) as a JSON string; fails the text if it is not UTF-8 (NUL
 * bytes are, and become \u0000). */
void jt_string(jt_buf *b, const char *s, size_t n);
void jt_int(jt_buf *b, long long v);
/* The text, NUL terminated, for the caller to free, and its length in
 * *len (may be NULL); NULL when a step failed. Either way b is spent. */
char *jt_finish(jt_buf *b, size_t *len);

#endif
