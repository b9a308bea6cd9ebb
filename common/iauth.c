/*
 * iauth.c - signing and verification of the X-Internal-Auth header of
 * service-to-service calls. See iauth.h for the format.
 *
 * The receiver parses the value strictly and checks the time window
 * before computing anything, so a missing, malformed or stale header
 * costs no HMAC. The MAC is computed over the canonical string in
 * pieces (EVP_MAC updates), never assembled in one buffer, so a long
 * target costs no allocation. The body enters as its SHA-256 in hex:
 * the canonical string stays printable and its fields unambiguous.
 */
#include "iauth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "hmac.h"

#define IAUTH_VERSION "v1"
#define SHA256_LEN HMAC_SHA256_LEN
#define SECONDS_DIGITS_MAX 18
#define SECONDS_MAX 999999999999999999LL /* 18 digits */

#define STR_(x) #x
#define STR(x) STR_(x)

const char *iauth_strerror(iauth_err err)
{
    switch (err) {
    case IAUTH_OK:
        return "ok";
    case IAUTH_MISSING:
        return "no " IAUTH_HEADER " header";
    case IAUTH_MALFORMED:
        return "malformed " IAUTH_HEADER " header";
    case IAUTH_STALE:
        return IAUTH_HEADER " timestamp outside the accepted window";
    case IAUTH_BAD_MAC:
        return IAUTH_HEADER " signature does not match the call";
    case IAUTH_ERROR:
        return IAUTH_HEADER " could not be checked";
    }
    return "unknown internal authentication error";
}

/* ---- parsing -------------------------------------------------------- */

/* Lowercase hex only: the one spelling iauth_sign writes. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* Decimal seconds: 1 to 18 digits, no sign, no leading zero. */
static bool parse_seconds(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (len == 0 || len > SECONDS_DIGITS_MAX || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool parse_mac(const char *hex, size_t len,
                      unsigned char mac[IAUTH_MAC_LEN])
{
    if (len != 2 * IAUTH_MAC_LEN)
        return false;
    for (size_t i = 0; i < IAUTH_MAC_LEN; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        mac[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

iauth_err iauth_parse(const char *value, size_t len, iauth_value *out)
{
    static const char prefix[] = IAUTH_VERSION " ";
    const size_t prefix_len = sizeof prefix - 1;
    iauth_value v;

    if (value == NULL)
        return IAUTH_MISSING;
    if (len <= prefix_len || len > IAUTH_VALUE_MAX ||
        memcmp(value, prefix, prefix_len) != 0)
        return IAUTH_MALFORMED;
    const char *ts = value + prefix_len;
    const char *end = value + len;
    const char *space = memchr(ts, ' ', (size_t)(end - ts));
    if (space == NULL || !parse_seconds(ts, (size_t)(space - ts), &v.ts) ||
        !parse_mac(space + 1, (size_t)(end - space - 1), v.mac))
        return IAUTH_MALFORMED;
    *out = v;
    return IAUTH_OK;
}

iauth_err iauth_check_time(int64_t ts, int64_t now)
{
    /* The distance in unsigned arithmetic: exact for any two int64. */
    uint64_t distance =
        ts > now ? (uint64_t)ts - (uint64_t)now : (uint64_t)now - (uint64_t)ts;
    return distance <= IAUTH_WINDOW_S ? IAUTH_OK : IAUTH_STALE;
}

/* ---- the MAC -------------------------------------------------------- */

static bool mac_update(EVP_MAC_CTX *ctx, const void *data, size_t len)
{
    return EVP_MAC_update(ctx, data, len) == 1;
}

/* HMAC-SHA256 under secret of the canonical string
 * "v1\n<method>\n<target>\n<ts>\n<hex sha256(body)>". */
static int compute_mac(const char *secret, const char *method,
                       const char *target, size_t target_len, const void *body,
                       size_t body_len, int64_t ts,
                       unsigned char mac[IAUTH_MAC_LEN])
{
    unsigned char digest[SHA256_LEN];
    char body_hex[2 * SHA256_LEN + 1], ts_text[24];
    size_t mac_len = 0;

    if (!hmac_digest_sha256(body, body_len, digest))
        return -1;
    to_hex(digest, SHA256_LEN, body_hex);
    int ts_len = snprintf(ts_text, sizeof ts_text, "%lld", (long long)ts);

    EVP_MAC_CTX *ctx = hmac_begin(secret);
    bool ok =
        ctx != NULL && mac_update(ctx, IAUTH_VERSION "\n", 3) &&
        mac_update(ctx, method, strlen(method)) && mac_update(ctx, "\n", 1) &&
        mac_update(ctx, target, target_len) && mac_update(ctx, "\n", 1) &&
        mac_update(ctx, ts_text, (size_t)ts_len) && mac_update(ctx, "\n", 1) &&
        mac_update(ctx, body_hex, 2 * SHA256_LEN) &&
        EVP_MAC_final(ctx, mac, &mac_len, IAUTH_MAC_LEN) == 1 &&
        mac_len == IAUTH_MAC_LEN;
    return ok ? 0 : -1;
}

/* The arguments every MAC needs: an empty key is never a key. */
static bool can_compute(const char *secret, const char *method,
                        const char *target, const void *body, size_t body_len)
{
    return secret != NULL && secret[0] != '\0' && method != NULL &&
           target != NULL && (body != NULL || body_len == 0);
}

int iauth_sign(const char *secret, const char *method, const char *target,
               size_t target_len, const void *body, size_t body_len,
               int64_t now, char *out, size_t cap)
{
    unsigned char mac[IAUTH_MAC_LEN];
    char mac_hex[2 * IAUTH_MAC_LEN + 1];

    if (out == NULL || cap < IAUTH_VALUE_MAX + 1 || now < 0 ||
        now > SECONDS_MAX ||
        !can_compute(secret, method, target, body, body_len) ||
        compute_mac(secret, method, target, target_len, body, body_len, now,
                    mac) != 0)
        return -1;
    to_hex(mac, IAUTH_MAC_LEN, mac_hex);
    int n =
        snprintf(out, cap, IAUTH_VERSION " %lld %s", (long long)now, mac_hex);
    return n > 0 && (size_t)n < cap ? n : -1;
}

iauth_err iauth_verify(const char *secret, const char *value, size_t value_len,
                       const char *method, const char *target,
                       size_t target_len, const void *body, size_t body_len,
                       int64_t now)
{
    iauth_value v;
    unsigned char expected[IAUTH_MAC_LEN];

    iauth_err err = iauth_parse(value, value_len, &v);
    if (err == IAUTH_OK)
        err = iauth_check_time(v.ts, now);
    if (err != IAUTH_OK)
        return err;
    if (!can_compute(secret, method, target, body, body_len) ||
        compute_mac(secret, method, target, target_len, body, body_len, v.ts,
                    expected) != 0)
        return IAUTH_ERROR;
    return CRYPTO_memcmp(expected, v.mac, IAUTH_MAC_LEN) == 0 ? IAUTH_OK
                                                              : IAUTH_BAD_MAC;
}

/* ---- secrets -------------------------------------------------------- */

#define SECRET_SHORT "shorter than " STR(SECRET_MIN_BYTES) " bytes"
#define SECRET_TOO_SHORT                                                       \
    "at least " STR(SECRET_MIN_BYTES) " bytes (shorter only with "             \
                                      "MESSENGER_DEV_MODE=1)"
#define SECRET_WEAK_WARNING                                                    \
    SECRET_SHORT ", accepted only because MESSENGER_DEV_MODE=1: never run "    \
                 "like this in production"

const char *iauth_secret_problem(const char *secret, bool dev_mode,
                                 const char **warning)
{
    *warning = NULL;
    if (secret == NULL || secret[0] == '\0')
        return "required, not empty";
    if (strlen(secret) >= SECRET_MIN_BYTES)
        return NULL;
    if (!dev_mode)
        return SECRET_TOO_SHORT;
    *warning = SECRET_WEAK_WARNING;
    return NULL;
}
