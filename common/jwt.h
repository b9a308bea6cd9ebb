/*
 * jwt.h - HS256 JSON Web Tokens: the public API's authentication.
 *
 * A token is header.payload.signature, base64url without padding. Only
 * alg HS256 is accepted. Claims used: sub (the user id as a decimal
 * string without leading zeros, required) and exp (seconds since the
 * epoch, required). nbf and iat, when present, must be integers too and
 * not lie in the future. Every time check tolerates the caller's leeway
 * of clock skew (the gateway's MESSENGER_JWT_LEEWAY_S, JWT_LEEWAY_S by
 * default). The signature is compared in constant time. HMAC and base64
 * come from OpenSSL's libcrypto.
 *
 * No I/O; safe from any thread. HMAC runs on per-thread libcrypto
 * contexts (hmac.h), so a fixed secret costs no key setup per call.
 */
#ifndef MSG_JWT_H
#define MSG_JWT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JWT_OK = 0,
    JWT_MALFORMED, /* not three base64url parts, bad JSON, bad claims */
    JWT_BAD_ALG,   /* alg is not HS256 */
    JWT_BAD_SIGNATURE,
    JWT_EXPIRED,       /* exp in the past (beyond the leeway) */
    JWT_NOT_YET_VALID, /* nbf or iat in the future (beyond the leeway) */
} jwt_err;

const char *jwt_strerror(jwt_err err);

/* Verifies token[0..len) with secret at time now (seconds), tolerating
 * leeway_s seconds of clock skew on exp, nbf and iat (a negative leeway
 * counts as 0, one above JWT_LEEWAY_MAX_S as that). On JWT_OK stores the
 * user id of the sub claim in *user_id; on error leaves it untouched. */
jwt_err jwt_verify(const char *secret, const char *token, size_t len,
                   int64_t now, int leeway_s, int64_t *user_id);

/* Writes a signed token for user_id expiring at exp into out (NUL
 * terminated). Returns the length, or -1 if cap is too small. */
int jwt_sign(const char *secret, int64_t user_id, int64_t exp, char *out,
             size_t cap);

#endif
