/*
 * auth.c - bearer tokens, the path and body checks of authorisation.
 * See auth.h.
 *
 * The lenient sender scan exists because authorisation must answer
 * before validation: jansson refuses a whole document for one invalid
 * UTF-8 byte in a string, so a body acting as another user with a bad
 * content would be a 400 if we asked jansson. The scan follows only the
 * top-level object's structure and skips string contents byte by byte.
 * It never grants anything: a body it passes is still parsed strictly
 * by msg_parse_send, and the handler compares the parsed sender again.
 */
#include "auth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jwt.h"
#include "constants.h"

#define BEARER "bearer"
#define BEARER_LEN 6

/* The token leeway: written once by main (auth_set_leeway) before any
 * request thread exists, read-only afterwards. */
static int jwt_leeway_s = JWT_LEEWAY_S;

void auth_set_leeway(int leeway_s)
{
    jwt_leeway_s = leeway_s;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int auth_bearer_token(const char *header, const char **token, size_t *len)
{
    if (header == NULL || strncasecmp(header, BEARER, BEARER_LEN) != 0 ||
        header[BEARER_LEN] != ' ')
        return -1;
    const char *t = header + BEARER_LEN;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n > 0 && is_blank(t[n - 1]))
        n--;
    if (n == 0 || n > JWT_TOKEN_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (is_blank(t[i]))
            return -1;
    }
    *token = t;
    *len = n;
    return 0;
}

auth_err auth_authenticate(const char *secret, const char *header, int64_t now,
                           int64_t *user_id, const char **detail)
{
    const char *token;
    size_t len;
    if (header == NULL) {
        *detail = "an Authorization: Bearer <token> header is required";
        return AUTH_MISSING;
    }
    if (auth_bearer_token(header, &token, &len)) {
        *detail = "the Authorization header must be Bearer <token>";
        return AUTH_NOT_BEARER;
    }
    jwt_err err = jwt_verify(secret, token, len, now, jwt_leeway_s, user_id);
    if (err) {
        *detail = jwt_strerror(err);
        return AUTH_BAD_TOKEN;
    }
    *detail = NULL;
    return AUTH_OK;
}

bool auth_path_is_user(const char *segment, int64_t user_id)
{
    char own[24];
    snprintf(own, sizeof(own), "%lld", (long long)user_id);
    return segment != NULL && strcmp(segment, own) == 0;
}

/* 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6. */
static bool is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strncmp(addr, "::ffff:127.", 11) == 0;
}

const char *auth_client_address(const char *peer, const char *x_real_ip,
                                auth_trust trust, size_t max)
{
    bool trusted = trust == AUTH_TRUST_ANY ||
                   (trust == AUTH_TRUST_LOOPBACK && peer && is_loopback(peer));
    if (!trusted || peer == NULL || x_real_ip == NULL || x_real_ip[0] == '\0' ||
        strnlen(x_real_ip, max) >= max)
        return peer;
    return x_real_ip;
}

/* ---- the lenient sender scan ------------------------------------- */

typedef struct scan {
    const char *p;
    const char *end;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Consumes c after optional whitespace. */
static bool eat(scan *s, char c)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The character an escape stands for, after the backslash: ASCII
 * escapes decode, anything else becomes 0x80 (never part of a key we
 * look for). Consumes the escape. */
static unsigned char unescape(scan *s)
{
    char c = *s->p++;
    switch (c) {
    case 'u':
        break;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return (unsigned char)c; /* '"', '\\', '/', or invalid anyway */
    }
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = s->p < s->end ? hex_value(*s->p) : -1;
        if (h < 0)
            return 0x80;
        v = v * 16 + h;
        s->p++;
    }
    return v < 0x80 ? (unsigned char)v : 0x80;
}

/* Skips a string whose opening quote was consumed. When out is given,
 * keeps its first cap bytes (escapes decoded) and sets *out_len, which
 * exceeds cap when the string was longer. Returns false when the string
 * does not end. */
static bool skip_string(scan *s, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        if (c == '"') {
            if (out_len)
                *out_len = n;
            return true;
        }
        if (c == '\\') {
            if (s->p >= s->end)
                return false;
            c = unescape(s);
        }
        if (out && n < cap)
            out[n] = (char)c;
        n++;
    }
    return false;
}

/* Skips an array or object starting at s->p, strings inside included.
 * Brackets are only counted, not matched: validation judges shape. */
static bool skip_container(scan *s)
{
    size_t depth = 0;
    while (s->p < s->end) {
        char c = *s->p++;
        if (c == '"' && !skip_string(s, NULL, 0, NULL))
            return false;
        if (c == '{' || c == '[')
            depth++;
        if ((c == '}' || c == ']') && --depth == 0)
            return true;
    }
    return false;
}

static bool is_scalar_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.';
}

/* Skips a number or literal; sets *tok and *tok_len to its text. */
static bool skip_scalar(scan *s, const char **tok, size_t *tok_len)
{
    const char *start = s->p;
    while (s->p < s->end && is_scalar_char(*s->p))
        s->p++;
    *tok = start;
    *tok_len = (size_t)(s->p - start);
    return s->p > start;
}

/* Skips one value. When it is a scalar, *tok and *tok_len give its text,
 * else *tok is NULL. */
static bool skip_value(scan *s, const char **tok, size_t *tok_len)
{
    *tok = NULL;
    skip_ws(s);
    if (s->p >= s->end)
        return false;
    if (*s->p == '"') {
        s->p++;
        return skip_string(s, NULL, 0, NULL);
    }
    if (*s->p == '{' || *s->p == '[')
        return skip_container(s);
    return skip_scalar(s, tok, tok_len);
}

/* True when tok is a JSON integer literal ('-'? digits) of a user id
 * (1 to MSG_USER_ID_MAX) other than user_id. A value outside that range
 * names no user: validation refuses it (400, a bad id), not
 * authorisation. */
static bool integer_names_other(const char *tok, size_t len, int64_t user_id)
{
    if (len == 0 || tok[0] == '-')
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return false;
        v = v * 10 + (tok[i] - '0');
        if (v > MSG_USER_ID_MAX)
            return false;
    }
    return v >= 1 && v != user_id;
}

/* True when tok is a JSON number with a fraction or an exponent whose
 * value is a user id other than user_id (9.0 and 9e0 name user 9; 9.5
 * names no one). Longer texts than a double can tell apart are left to
 * validation. */
static bool fraction_names_other(const char *tok, size_t len, int64_t user_id)
{
    char text[64];
    if (len == 0 || len >= sizeof(text) ||
        !(tok[0] == '-' || (tok[0] >= '0' && tok[0] <= '9')))
        return false;
    memcpy(text, tok, len);
    text[len] = '\0';
    char *end;
    double v = strtod(text, &end);
    if (end != text + len || !isfinite(v) || v != floor(v) || v < 1 ||
        v > (double)MSG_USER_ID_MAX)
        return false;
    return (int64_t)v != user_id;
}

static bool number_names_other(const char *tok, size_t len, int64_t user_id)
{
    if (memchr(tok, '.', len) || memchr(tok, 'e', len) || memchr(tok, 'E', len))
        return fraction_names_other(tok, len, user_id);
    return integer_names_other(tok, len, user_id);
}

/* Reads the value of the sender_id member: *other is set when it names
 * another user. False when the value does not end. */
static bool read_sender(scan *s, int64_t user_id, bool *other)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == '"') {
        char text[32];
        size_t text_len;
        s->p++;
        if (!skip_string(s, text, sizeof(text), &text_len))
            return false;
        *other = text_len <= sizeof(text) &&
                 integer_names_other(text, text_len, user_id);
        return true;
    }
    const char *tok;
    size_t tok_len;
    if (!skip_value(s, &tok, &tok_len))
        return false;
    *other = tok != NULL && number_names_other(tok, tok_len, user_id);
    return true;
}

bool auth_body_names_other_sender(const char *body, size_t len, int64_t user_id)
{
    static const char key_sender[] = "sender_id";
    if (body == NULL)
        return false;
    scan s = {body, body + len};
    if (!eat(&s, '{') || eat(&s, '}'))
        return false;
    /* One member per pass; each consumes at least `"":x`. */
    while (s.p < s.end) {
        char key[sizeof(key_sender)];
        size_t key_len;
        const char *tok;
        size_t tok_len;
        if (!eat(&s, '"') || !skip_string(&s, key, sizeof(key), &key_len) ||
            !eat(&s, ':'))
            return false;
        if (key_len == sizeof(key_sender) - 1 &&
            memcmp(key, key_sender, key_len) == 0) {
            bool other = false;
            if (!read_sender(&s, user_id, &other))
                return false;
            if (other)
                return true;
        } else if (!skip_value(&s, &tok, &tok_len)) {
            return false;
        }
        if (!eat(&s, ','))
            return false;
    }
    return false;
}
