/*
 * jsontext.c - JSON text written directly. See jsontext.h.
 */
#include "jsontext.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* First capacity: a message with a short content fits. */
#define JT_FIRST_CAP 256

size_t jt_escape(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* jansson's %04X */
    char *p = out;

    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            memcpy(p, "u00", 3);
            p[3] = hex[c >> 4];
            p[4] = hex[c & 0x0f];
            p += 5;
        }
    }
    *p++ = '"';
    return (size_t)(p - out);
}

size_t jt_format_int(char out[JT_INT_MAX], long long v)
{
    char text[JT_INT_MAX];
    char *p = text + sizeof(text);
    unsigned long long u =
        v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        *--p = '-';
    size_t len = (size_t)(text + sizeof(text) - p);
    memcpy(out, p, len);
    return len;
}

void jt_init(jt_buf *b)
{
    *b = (jt_buf){0};
}

/* Room for n more bytes and the final NUL. */
static bool reserve(jt_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n < b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : JT_FIRST_CAP;
    while (n >= cap - b->len) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void jt_raw(jt_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void jt_cstr(jt_buf *b, const char *s)
{
    jt_raw(b, s, strlen(s));
}

void jt_string(jt_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (!utf8_is_valid(s, n) || n > (SIZE_MAX - 2) / 6) {
        b->failed = true;
        return;
    }
    if (!reserve(b, 6 * n + 2))
        return;
    b->len += jt_escape(b->data + b->len, s, n);
}

void jt_int(jt_buf *b, long long v)
{
    char text[JT_INT_MAX];
    size_t n = jt_format_int(text, v);
    jt_raw(b, text, n);
}

char *jt_finish(jt_buf *b, size_t *len)
{
    if (!b->failed && reserve(b, 0)) {
        b->data[b->len] = '\0';
        if (len)
            *len = b->len;
        char *out = b->data;
        *b = (jt_buf){.failed = true};
        return out;
    }
    free(b->data);
    *b = (jt_buf){.failed = true};
    return NULL;
}
