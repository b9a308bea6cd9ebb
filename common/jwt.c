/*
 * jwt.c - verification and signing of HS256 JSON Web Tokens.
 *
 * The gateway calls jwt_verify on every public request, with a token the
 * client chose, so it refuses anything but the one shape we issue: three
 * unpadded base64url parts, a header naming HS256, a signature of exactly
 * 32 bytes compared in constant time, and only then the claims. The
 * header is checked before the signature so "alg":"none" tricks fail on
 * the alg, never reach a downgrade.
 */
#include "jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "constants.h"
#include "ids.h"
#include "hmac.h"

#define SHA256_LEN HMAC_SHA256_LEN
/* Decoded parts are 3/4 of their text; a token is at most JWT_TOKEN_MAX. */
#define PART_MAX (JWT_TOKEN_MAX / 4 * 3 + 3)
/* The header jwt_sign writes and its base64url text. */
#define ISSUED_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define ISSUED_HEADER_B64 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

const char *jwt_strerror(jwt_err err)
{
    switch (err) {
    case JWT_OK:
        return "ok";
    case JWT_MALFORMED:
        return "malformed token";
    case JWT_BAD_ALG:
        return "unsupported token algorithm";
    case JWT_BAD_SIGNATURE:
        return "bad token signature";
    case JWT_EXPIRED:
        return "token expired";
    case JWT_NOT_YET_VALID:
        return "token not yet valid (nbf or iat in the future)";
    }
    return "unknown token error";
}

/* The JSON object in text[0..len), or NULL. New reference. */
static json_t *parse_object(const unsigned char *text, size_t len)
{
    json_t *j =
        json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The JSON object encoded in part[0..len), or NULL. New reference. */
static json_t *decode_object(const char *part, size_t len)
{
    unsigned char buf[PART_MAX];
    int n = b64url_decode(part, len, buf, sizeof buf);

    if (n < 0)
        return NULL;
    return parse_object(buf, (size_t)n);
}

/* "crit" names extensions the issuer requires us to understand; we
 * understand none, so such a token is refused (RFC 7515 4.1.11). The
 * header jwt_sign writes is recognised by its text without parsing:
 * base64url decoding is canonical (b64url.h), so only that text decodes
 * to that header, which the checks below accept. */
static jwt_err check_header(const char *part, size_t len)
{
    if (len == sizeof ISSUED_HEADER_B64 - 1 &&
        memcmp(part, ISSUED_HEADER_B64, len) == 0)
        return JWT_OK;
    json_t *h = decode_object(part, len);
    jwt_err err = JWT_OK;

    if (h == NULL)
        return JWT_MALFORMED;
    const json_t *alg = json_object_get(h, "alg");
    const json_t *typ = json_object_get(h, "typ");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
        err = JWT_BAD_ALG;
    else if ((typ != NULL && !json_is_string(typ)) ||
             json_object_get(h, "crit") != NULL)
        err = JWT_MALFORMED;
    json_decref(h);
    return err;
}

/* signed_part is "header.payload", sig the third part's text. */
static jwt_err check_signature(const char *secret, const char *signed_part,
                               size_t signed_len, const char *sig,
                               size_t sig_len)
{
    unsigned char given[PART_MAX], expected[SHA256_LEN];
    int n = b64url_decode(sig, sig_len, given, sizeof given);

    if (n < 0)
        return JWT_MALFORMED;
    if (n != SHA256_LEN ||
        hmac_sha256(secret, signed_part, signed_len, expected) != 0 ||
        CRYPTO_memcmp(given, expected, SHA256_LEN) != 0)
        return JWT_BAD_SIGNATURE;
    return JWT_OK;
}

/* The claims the checks use. */
typedef struct jwt_claims {
    int64_t user_id; /* sub */
    int64_t exp;
    int64_t nbf, iat; /* when has_nbf, has_iat */
    bool has_nbf, has_iat;
} jwt_claims;

/* An optional time claim: absent, or an integer. Returns false when
 * present with another type. */
static bool optional_time(const json_t *obj, const char *name, bool *present,
                          int64_t *value)
{
    const json_t *v = json_object_get(obj, name);

    *present = v != NULL;
    if (v == NULL)
        return true;
    if (!json_is_integer(v))
        return false;
    *value = json_integer_value(v);
    return true;
}

/* Any claim set, with jansson: sub a canonical user id, exp an integer,
 * nbf and iat absent or integers. */
static jwt_err read_claims_json(const unsigned char *text, size_t len,
                                jwt_claims *c)
{
    json_t *obj = parse_object(text, len);

    if (obj == NULL)
        return JWT_MALFORMED;
    const json_t *sub = json_object_get(obj, "sub");
    const json_t *exp = json_object_get(obj, "exp");
    bool ok = json_is_string(sub) &&
              ids_parse_user(json_string_value(sub), json_string_length(sub),
                             &c->user_id) == 0 &&
              json_is_integer(exp) &&
              optional_time(obj, "nbf", &c->has_nbf, &c->nbf) &&
              optional_time(obj, "iat", &c->has_iat, &c->iat);
    if (ok)
        c->exp = json_integer_value(exp);
    json_decref(obj);
    return ok ? JWT_OK : JWT_MALFORMED;
}

/* Skips the digits at *pos; returns how many. */
static size_t skip_digits(const unsigned char *text, size_t len, size_t *pos)
{
    size_t start = *pos;

    while (*pos < len && text[*pos] >= '0' && text[*pos] <= '9')
        (*pos)++;
    return *pos - start;
}

static bool skip_literal(const unsigned char *text, size_t len, size_t *pos,
                         const char *literal)
{
    size_t n = strlen(literal);

    if (len - *pos < n || memcmp(text + *pos, literal, n) != 0)
        return false;
    *pos += n;
    return true;
}

/* The claim set exactly as jwt_sign writes it, {"sub":"<digits>","exp":
 * <digits>}, read without jansson: every request carries one. exp takes
 * at most 18 digits, so it fits in int64, and no leading zero, which JSON
 * forbids. Returns false for any other text, which read_claims_json then
 * judges: what this reads, jansson would read the same way. On true,
 * *err says whether sub is a canonical user id. */
static bool read_issued_claims(const unsigned char *text, size_t len,
                               jwt_claims *c, jwt_err *err)
{
    size_t pos = 0, sub = 0, exp = 0;
    int64_t value = 0;

    if (!skip_literal(text, len, &pos, "{\"sub\":\""))
        return false;
    sub = pos;
    size_t sub_len = skip_digits(text, len, &pos);
    if (sub_len == 0 || !skip_literal(text, len, &pos, "\",\"exp\":"))
        return false;
    exp = pos;
    size_t exp_len = skip_digits(text, len, &pos);
    if (exp_len == 0 || exp_len > 18 || (exp_len > 1 && text[exp] == '0') ||
        !skip_literal(text, len, &pos, "}") || pos != len)
        return false;
    for (size_t i = exp; i < exp + exp_len; i++)
        value = value * 10 + (text[i] - '0');
    c->exp = value;
    c->has_nbf = c->has_iat = false;
    *err = ids_parse_user((const char *)text + sub, sub_len, &c->user_id) == 0
               ? JWT_OK
               : JWT_MALFORMED;
    return true;
}

/* True when t lies more than leeway seconds after now, written so that
 * no claim value can overflow the arithmetic (leeway is 0..300). */
static bool is_in_future(int64_t t, int64_t now, int64_t leeway)
{
    return t > INT64_MIN + leeway && now < t - leeway;
}

/* A token issued or valid only in the future (beyond the skew) is
 * refused: a clock-skewed or forged issuer must not mint tokens that
 * become valid later. */
static jwt_err check_times(const jwt_claims *c, int64_t now, int64_t leeway)
{
    if (c->exp < INT64_MAX - leeway && now > c->exp + leeway)
        return JWT_EXPIRED;
    if ((c->has_nbf && is_in_future(c->nbf, now, leeway)) ||
        (c->has_iat && is_in_future(c->iat, now, leeway)))
        return JWT_NOT_YET_VALID;
    return JWT_OK;
}

static jwt_err check_claims(const char *part, size_t len, int64_t now,
                            int64_t leeway, int64_t *user_id)
{
    unsigned char buf[PART_MAX];
    int n = b64url_decode(part, len, buf, sizeof buf);
    jwt_claims c;
    jwt_err err;

    if (n < 0)
        return JWT_MALFORMED;
    if (!read_issued_claims(buf, (size_t)n, &c, &err))
        err = read_claims_json(buf, (size_t)n, &c);
    if (err == JWT_OK)
        err = check_times(&c, now, leeway);
    if (err == JWT_OK)
        *user_id = c.user_id;
    return err;
}

/* Splits token[0..len) into its three parts: exactly two dots and
 * nothing but the base64url alphabet elsewhere, so '=' padding, '+',
 * '/' or whitespace anywhere make the token malformed before any
 * decoding or signature work. */
static int split_token(const char *token, size_t len, const char *part[3],
                       size_t part_len[3])
{
    size_t start = 0;
    int count = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && token[i] != '.') {
            if (!b64url_is_char(token[i]))
                return -1;
            continue;
        }
        if (count == 3)
            return -1;
        part[count] = token + start;
        part_len[count] = i - start;
        count++;
        start = i + 1;
    }
    return count == 3 ? 0 : -1;
}

jwt_err jwt_verify(const char *secret, const char *token, size_t len,
                   int64_t now, int leeway_s, int64_t *user_id)
{
    const char *part[3];
    size_t part_len[3];
    int64_t leeway = leeway_s < 0                  ? 0
                     : leeway_s > JWT_LEEWAY_MAX_S ? JWT_LEEWAY_MAX_S
                                                   : leeway_s;

    if (len == 0 || len > JWT_TOKEN_MAX ||
        split_token(token, len, part, part_len) != 0)
        return JWT_MALFORMED;
    jwt_err err = check_header(part[0], part_len[0]);
    if (err == JWT_OK)
        err = check_signature(secret, token, part_len[0] + 1 + part_len[1],
                              part[2], part_len[2]);
    if (err == JWT_OK)
        err = check_claims(part[1], part_len[1], now, leeway, user_id);
    return err;
}

/* Appends the base64url of data[0..len) at out + *pos, then sep when it
 * is not NUL. Returns 0 or -1 if cap is too small. */
static int append_part(const void *data, size_t len, char sep, char *out,
                       size_t cap, size_t *pos)
{
    int n = b64url_encode(data, len, out + *pos, cap - *pos);

    if (n < 0)
        return -1;
    *pos += (size_t)n;
    if (sep != '\0') {
        if (*pos + 1 >= cap)
            return -1;
        out[(*pos)++] = sep;
        out[*pos] = '\0';
    }
    return 0;
}

int jwt_sign(const char *secret, int64_t user_id, int64_t exp, char *out,
             size_t cap)
{
    static const char header[] = ISSUED_HEADER;
    char claims[96];
    unsigned char md[SHA256_LEN];
    size_t pos = 0;

    if (user_id < 1 || user_id > MSG_USER_ID_MAX)
        return -1;
    int n = snprintf(claims, sizeof claims, "{\"sub\":\"%lld\",\"exp\":%lld}",
                     (long long)user_id, (long long)exp);
    if (n < 0 || (size_t)n >= sizeof claims)
        return -1;
    if (append_part(header, sizeof header - 1, '.', out, cap, &pos) != 0 ||
        append_part(claims, (size_t)n, '.', out, cap, &pos) != 0 ||
        hmac_sha256(secret, out, pos - 1, md) != 0 ||
        append_part(md, sizeof md, '\0', out, cap, &pos) != 0)
        return -1;
    return (int)pos;
}
