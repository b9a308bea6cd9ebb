/*
 * auth.h - authentication and authorisation of public calls (SPEC 3).
 *
 * A call authenticates with "Authorization: Bearer <JWT>"; the token's
 * sub is the user the call acts as. Authorisation comes before
 * validation (SPEC 4): a token for user X acting as or reading user Y is
 * a 403 whatever else the request holds, so the checks here read only as
 * much of the request as they need and are lenient about the rest.
 *
 * Pure functions: no I/O, no allocation, safe from any thread (the one
 * setting, the token leeway, is written once by main before any).
 */
#ifndef GATEWAY_AUTH_H
#define GATEWAY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AUTH_OK = 0,
    AUTH_MISSING,    /* no Authorization header */
    AUTH_NOT_BEARER, /* another scheme, no token, or a malformed one */
    AUTH_BAD_TOKEN,  /* the JWT does not verify (see jwt_verify) */
} auth_err;

/* Finds the token in an Authorization value "Bearer <token>". The
 * scheme is case-insensitive (RFC 9110 11.1) and followed by one or more
 * spaces; the token is the rest without trailing blanks, must be
 * non-empty, hold no blank and be at most JWT_TOKEN_MAX bytes. Returns
 * 0 and points *token and *len into header, or -1. */
int auth_bearer_token(const char *header, const char **token, size_t *len);

/* Sets the clock skew tolerated on a token's exp, nbf and iat
 * (MESSENGER_JWT_LEEWAY_S; JWT_LEEWAY_S until set). Call once from main
 * before the server starts: the value is read without a lock. */
void auth_set_leeway(int leeway_s);

/* Authenticates an Authorization header value (NULL when absent) with
 * secret at time now (seconds), with the leeway of auth_set_leeway. On
 * AUTH_OK sets *user_id. On error *detail is a static string for the
 * 401 problem. */
auth_err auth_authenticate(const char *secret, const char *header, int64_t now,
                           int64_t *user_id, const char **detail);

/* True when a path segment names user_id: it must be exactly the
 * user's decimal form (no sign, no leading zeros), so anything else in
 * the path, a number or not, is another user's mailbox: 403. */
bool auth_path_is_user(const char *segment, int64_t user_id);

/* True when a send body, read leniently, names a sender_id other than
 * user_id: a top-level "sender_id" member whose value is a JSON number
 * equal to another user id (1 to 2^53-1; 5, 5.0 and 5e0 alike), or a
 * string holding one ("5"). Bytes inside strings are not checked
 * (invalid UTF-8, bad escapes), so a body that validation would refuse
 * for other reasons is still recognised as acting as someone else. A
 * body whose structure cannot be followed up to its sender_id, or whose
 * sender_id names no other user (absent, null, a boolean, an object, a
 * string that is not an integer, a number that is no user id: 0,
 * negative, 2^53 or more, 5.5, or user_id itself mistyped as "7" or
 * 7.0), is not: it falls through to validation (400, SPEC's bad ids). */
bool auth_body_names_other_sender(const char *body, size_t len,
                                  int64_t user_id);

/* How far a gateway trusts X-Real-IP (GATEWAY_TRUST_PROXY). */
typedef enum {
    AUTH_TRUST_NONE = 0,     /* never: the TCP peer is the client */
    AUTH_TRUST_LOOPBACK = 1, /* from a loopback peer (nginx on the host) */
    AUTH_TRUST_ANY = 2,      /* from any peer: only where nothing but the
                                proxy can reach the gateway (a container
                                network, a Kubernetes NetworkPolicy) */
} auth_trust;

/* The address a request is rate limited by: peer, the TCP peer, unless
 * trust allows that peer's X-Real-IP (the header nginx sets to its own
 * peer): then x_real_ip, when it is present, non-empty and shorter than
 * max. Returns one of the two arguments. With AUTH_TRUST_LOOPBACK, a
 * client that reaches the gateway directly from another host cannot
 * choose its key. */
const char *auth_client_address(const char *peer, const char *x_real_ip,
                                auth_trust trust, size_t max);

#endif
