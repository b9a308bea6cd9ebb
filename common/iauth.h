/*
 * iauth.h - authentication of service-to-service calls.
 *
 * Every internal call carries one header
 *
 *     X-Internal-Auth: v1 <unix seconds> <hex HMAC-SHA256>
 *
 * whose MAC, keyed with the cluster's internal secret
 * (MESSENGER_INTERNAL_SECRET), covers
 *
 *     "v1\n<METHOD>\n<path and query as sent>\n<seconds>\n<hex SHA-256 of
 *     the body>"
 *
 * so a valid header proves the caller holds the secret and binds the
 * method, the target, the body and the time: it cannot be moved to
 * another call. The receiver accepts it within IAUTH_WINDOW_S of its own
 * clock. Within that window a captured call could be replayed as is;
 * the internal writes are idempotent by key (docs/internal-api.md), so a
 * replay stores nothing twice. A user's JWT never passes: it is not of
 * this shape, and it is keyed with another secret.
 *
 * The value is strict: "v1", one space, the seconds in decimal (no sign,
 * no leading zero, at most 18 digits), one space, exactly 64 lowercase
 * hex digits, nothing else. The MAC is compared in constant time.
 *
 * Functions on (buf, len): no I/O, safe from any thread. HMAC and
 * SHA-256 come from OpenSSL's libcrypto on per-thread contexts
 * (hmac.h), so a fixed secret costs no key setup per call.
 */
#ifndef MSG_IAUTH_H
#define MSG_IAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IAUTH_HEADER "X-Internal-Auth"
#define IAUTH_MAC_LEN 32
/* Longest valid value: "v1 " + 18 digits + " " + 64 hex digits. */
#define IAUTH_VALUE_MAX (3 + 18 + 1 + 2 * IAUTH_MAC_LEN)

typedef enum {
    IAUTH_OK = 0,
    IAUTH_MISSING,   /* no header */
    IAUTH_MALFORMED, /* not "v1 <seconds> <64 hex>" */
    IAUTH_STALE,     /* timestamp outside IAUTH_WINDOW_S of now */
    IAUTH_BAD_MAC,   /* the MAC does not match the call */
    IAUTH_ERROR,     /* libcrypto failed, or an argument is NULL */
} iauth_err;

const char *iauth_strerror(iauth_err err);

/* A parsed header value. */
typedef struct iauth_value {
    int64_t ts; /* unix seconds */
    unsigned char mac[IAUTH_MAC_LEN];
} iauth_value;

/* Parses value[0..len) (the header's value, NULL when absent) into *out.
 * IAUTH_OK, IAUTH_MISSING or IAUTH_MALFORMED. */
iauth_err iauth_parse(const char *value, size_t len, iauth_value *out);

/* IAUTH_OK when ts is within IAUTH_WINDOW_S of now, else IAUTH_STALE. */
iauth_err iauth_check_time(int64_t ts, int64_t now);

/* Writes the header value for a call, NUL terminated, into out: method
 * ("GET"), target[0..target_len) the path and query exactly as they go
 * on the request line, body[0..body_len) (body may be NULL when
 * body_len is 0), signed at time now. Returns the length written, or -1
 * when cap is below IAUTH_VALUE_MAX + 1 or libcrypto fails. */
int iauth_sign(const char *secret, const char *method, const char *target,
               size_t target_len, const void *body, size_t body_len,
               int64_t now, char *out, size_t cap);

/* Verifies the header value value[0..value_len) of a call received at
 * time now: parse, time window, then the MAC in constant time. */
iauth_err iauth_verify(const char *secret, const char *value, size_t value_len,
                       const char *method, const char *target,
                       size_t target_len, const void *body, size_t body_len,
                       int64_t now);

/* Judges an HMAC secret read from the environment (the internal secret,
 * the JWT secret): NULL when it may be used, else the reason for the
 * start-up error. Empty is always refused; shorter than SECRET_MIN_BYTES
 * only passes with dev_mode (MESSENGER_DEV_MODE=1), and then *warning is
 * the text main must log as a warning after the variable's name (NULL
 * otherwise). Both strings are static. */
const char *iauth_secret_problem(const char *secret, bool dev_mode,
                                 const char **warning);

#endif
