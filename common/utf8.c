/*
 * utf8.c - strict UTF-8 validation (RFC 3629) and snippet cutting.
 *
 * Message content must be valid UTF-8 before it is stored, and snippets
 * are cut on code point boundaries so they stay valid. Both walk the
 * buffer one sequence at a time with seq_len, the single place that
 * knows the encoding rules.
 */
#include "utf8.h"

/* Length (1-4) of the valid UTF-8 sequence at p, with left > 0 bytes
 * available, or 0 if the bytes there are not a valid sequence. The
 * second byte's range depends on the lead byte: that is what excludes
 * overlong forms (E0, F0), surrogates (ED) and code points above
 * U+10FFFF (F4); C0, C1 and F5-FF never start a sequence. */
static size_t seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    }
    return n;
}

bool utf8_is_valid(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = 0;

    while (off < len) {
        size_t n = seq_len(p + off, len - off);
        if (n == 0)
            return false;
        off += n;
    }
    return true;
}

/* Stops early at an invalid sequence too, so the prefix returned is
 * valid UTF-8 whatever buf holds. */
size_t utf8_prefix(const char *buf, size_t len, size_t max_codepoints)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = 0;

    for (size_t count = 0; count < max_codepoints && off < len; count++) {
        size_t n = seq_len(p + off, len - off);
        if (n == 0)
            break;
        off += n;
    }
    return off;
}
