/*
 * utf8.h - UTF-8 validation and snippet cutting.
 *
 * Validation is strict RFC 3629: no overlong forms, no surrogates
 * (U+D800-U+DFFF), nothing above U+10FFFF. NUL bytes are valid UTF-8 and
 * are accepted. Pure functions, no allocation.
 */
#ifndef MSG_UTF8_H
#define MSG_UTF8_H

#include <stdbool.h>
#include <stddef.h>

bool utf8_is_valid(const char *buf, size_t len);

/* Length in bytes of the longest prefix of buf[0..len) (valid UTF-8)
 * holding at most max_codepoints code points. Never cuts inside a
 * sequence. */
size_t utf8_prefix(const char *buf, size_t len, size_t max_codepoints);

#endif
