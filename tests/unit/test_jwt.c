/*
 * test_jwt.c - Check suite for jwt.c: interoperability with tokens made
 * by another implementation, sign/verify round trip, and refusal of
 * every kind of bad token (signature, algorithm, claims, times and
 * their leeway, encoding). Forged tokens are signed here with OpenSSL directly
 * so the claims checks are reached past a valid signature.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "constants.h"

#define SECRET "s3cret"
#define NOW 1700000000LL
#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static size_t b64url(const void *data, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return (size_t)n;
}

/* header.payload.signature with a valid HS256 signature under secret,
 * whatever the header says. */
static void forge(const char *secret, const char *header, const char *payload,
                  char *out)
{
    unsigned char md[32];
    unsigned int md_len = 0;

    size_t n = b64url(header, strlen(header), out);
    out[n++] = '.';
    n += b64url(payload, strlen(payload), out + n);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, n, md,
         &md_len);
    out[n++] = '.';
    b64url(md, md_len, out + n);
}

static jwt_err verify(const char *token, int64_t *uid)
{
    return jwt_verify(SECRET, token, strlen(token), NOW, JWT_LEEWAY_S, uid);
}

/* Verifies a token forged with claims under the HS256 header, with the
 * given leeway. */
static jwt_err verify_claims_leeway(const char *claims, int leeway_s,
                                    int64_t *uid)
{
    char tok[1024];

    forge(SECRET, HS256_HEADER, claims, tok);
    return jwt_verify(SECRET, tok, strlen(tok), NOW, leeway_s, uid);
}

static jwt_err verify_claims(const char *claims, int64_t *uid)
{
    return verify_claims_leeway(claims, JWT_LEEWAY_S, uid);
}

/* A token of user 42 with one time claim set to now + offset (and exp
 * far ahead unless the claim is exp itself), verified with leeway_s. */
static jwt_err verify_time_claim(const char *claim, int64_t offset,
                                 int leeway_s)
{
    char claims[160];
    int64_t uid = 0;

    if (strcmp(claim, "exp") == 0)
        snprintf(claims, sizeof claims, "{\"sub\":\"42\",\"exp\":%lld}",
                 (long long)(NOW + offset));
    else
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"42\",\"exp\":2000000000,\"%s\":%lld}", claim,
                 (long long)(NOW + offset));
    jwt_err err = verify_claims_leeway(claims, leeway_s, &uid);
    if (err == JWT_OK)
        ck_assert_int_eq(uid, 42);
    return err;
}

START_TEST(test_accepts_token_from_another_implementation)
{
    /* Made with Python's hmac and base64: header keys in the other
     * order, an extra claim. */
    const char *tok = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."
                      "eyJzdWIiOiI0MiIsImV4cCI6MjAwMDAwMDAwMCwibmFtZSI6IngifQ."
                      "QkZcMBUwmdTniYhK5aH2fQbYWVd8LG_R27LfDlLBZlU";
    int64_t uid = 0;

    ck_assert_int_eq(verify(tok, &uid), JWT_OK);
    ck_assert_int_eq(uid, 42);
}
END_TEST

START_TEST(test_sign_matches_another_implementation)
{
    char out[512];

    int n = jwt_sign(SECRET, 42, 2000000000, out, sizeof out);
    ck_assert_str_eq(out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                          "eyJzdWIiOiI0MiIsImV4cCI6MjAwMDAwMDAwMH0."
                          "LeH_swQZfTl-Fc9QYQScEsNpjwHNdnEie0t58Ed38uo");
    ck_assert_int_eq(n, (int)strlen(out));
}
END_TEST

START_TEST(test_sign_verify_round_trip)
{
    char out[512];
    int64_t uid = 0;

    ck_assert_int_gt(
        jwt_sign(SECRET, 9007199254740991LL, NOW + 3600, out, sizeof out), 0);
    ck_assert_int_eq(verify(out, &uid), JWT_OK);
    ck_assert_int_eq(uid, 9007199254740991LL);
    ck_assert_int_gt(jwt_sign(SECRET, 1, NOW, out, sizeof out), 0);
    ck_assert_int_eq(verify(out, &uid), JWT_OK);
    ck_assert_int_eq(uid, 1);
}
END_TEST

START_TEST(test_sign_checks_cap_and_user)
{
    char out[512];

    int n = jwt_sign(SECRET, 42, NOW, out, sizeof out);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(jwt_sign(SECRET, 42, NOW, out, (size_t)n), -1);
    ck_assert_int_eq(jwt_sign(SECRET, 42, NOW, out, (size_t)n + 1), n);
    ck_assert_int_eq(jwt_sign(SECRET, 42, NOW, out, 10), -1);
    ck_assert_int_eq(jwt_sign(SECRET, 0, NOW, out, sizeof out), -1);
    ck_assert_int_eq(
        jwt_sign(SECRET, MSG_USER_ID_MAX + 1, NOW, out, sizeof out), -1);
}
END_TEST

START_TEST(test_bad_signature_is_refused)
{
    char tok[512];
    int64_t uid = -7;

    ck_assert_int_gt(jwt_sign("other", 42, NOW + 60, tok, sizeof tok), 0);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_SIGNATURE);
    ck_assert_int_eq(uid, -7); /* untouched */

    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 60, tok, sizeof tok), 0);
    char *sig = strrchr(tok, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_SIGNATURE);

    /* Claims changed under the original signature. */
    char good[512], evil[512];
    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 60, good, sizeof good), 0);
    forge("x", HS256_HEADER, "{\"sub\":\"1\",\"exp\":2000000000}", evil);
    strcpy(strrchr(evil, '.'), strrchr(good, '.'));
    ck_assert_int_eq(verify(evil, &uid), JWT_BAD_SIGNATURE);

    /* A signature of the wrong length, truncated or empty. */
    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 60, tok, sizeof tok), 0);
    tok[strlen(tok) - 3] = '\0';
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_SIGNATURE);
    strcpy(strrchr(tok, '.') + 1, "AAAA");
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_SIGNATURE);
    *(strrchr(tok, '.') + 1) = '\0';
    ck_assert_int_ne(verify(tok, &uid), JWT_OK);
}
END_TEST

START_TEST(test_alg_none_and_others_are_refused)
{
    const char *claims = "{\"sub\":\"42\",\"exp\":2000000000}";
    char tok[1024];
    int64_t uid;

    /* alg none with an empty signature, the classic downgrade. */
    size_t n = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26, tok);
    tok[n++] = '.';
    n += b64url(claims, strlen(claims), tok + n);
    strcpy(tok + n, ".");
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);

    forge(SECRET, "{\"alg\":\"none\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    forge(SECRET, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    forge(SECRET, "{\"alg\":\"hs256\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    forge(SECRET, "{\"alg\":\"RS256\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    forge(SECRET, "{\"typ\":\"JWT\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    forge(SECRET, "{\"alg\":256}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_BAD_ALG);
    /* typ is optional; crit asks for extensions we do not know. */
    forge(SECRET, "{\"alg\":\"HS256\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_OK);
    forge(SECRET, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_MALFORMED);
    forge(SECRET, "{\"alg\":\"HS256\",\"typ\":1}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_MALFORMED);
    forge(SECRET, "[\"HS256\"]", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_MALFORMED);
    forge(SECRET, "{\"alg\":\"HS256\",\"alg\":\"none\"}", claims, tok);
    ck_assert_int_eq(verify(tok, &uid), JWT_MALFORMED);
}
END_TEST

START_TEST(test_expiry_leeway)
{
    char claims[128];
    int64_t uid;

    snprintf(claims, sizeof claims, "{\"sub\":\"42\",\"exp\":%lld}",
             NOW - JWT_LEEWAY_S - 1);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_EXPIRED);
    snprintf(claims, sizeof claims, "{\"sub\":\"42\",\"exp\":%lld}",
             NOW - 3600);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_EXPIRED);
    snprintf(claims, sizeof claims, "{\"sub\":\"42\",\"exp\":%lld}",
             NOW - JWT_LEEWAY_S);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_OK);
    snprintf(claims, sizeof claims, "{\"sub\":\"42\",\"exp\":%lld}", NOW - 30);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_OK);
    /* Extreme values neither overflow nor pass by accident. */
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":9223372036854775807}", &uid),
        JWT_OK);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":-9223372036854775808}", &uid),
        JWT_EXPIRED);
}
END_TEST

START_TEST(test_not_before_leeway)
{
    char claims[128];
    int64_t uid;

    snprintf(claims, sizeof claims,
             "{\"sub\":\"42\",\"exp\":2000000000,\"nbf\":%lld}",
             NOW + JWT_LEEWAY_S + 1);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_NOT_YET_VALID);
    snprintf(claims, sizeof claims,
             "{\"sub\":\"42\",\"exp\":2000000000,\"nbf\":%lld}",
             NOW + JWT_LEEWAY_S);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_OK);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"nbf\":-9223372036854775808}",
                                   &uid),
                     JWT_OK);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"nbf\":\"0\"}",
                                   &uid),
                     JWT_MALFORMED);
}
END_TEST

START_TEST(test_issued_at_leeway)
{
    int64_t uid;

    /* Issued in the future beyond the skew: refused, even though the
     * token has not expired. */
    ck_assert_int_eq(verify_time_claim("iat", JWT_LEEWAY_S + 1, JWT_LEEWAY_S),
                     JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_time_claim("iat", 3600, JWT_LEEWAY_S),
                     JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_time_claim("iat", JWT_LEEWAY_S, JWT_LEEWAY_S),
                     JWT_OK);
    ck_assert_int_eq(verify_time_claim("iat", 0, JWT_LEEWAY_S), JWT_OK);
    ck_assert_int_eq(verify_time_claim("iat", -86400, JWT_LEEWAY_S), JWT_OK);
    /* Extremes neither overflow nor pass by accident. */
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"iat\":9223372036854775807}",
                                   &uid),
                     JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"iat\":-9223372036854775808}",
                                   &uid),
                     JWT_OK);
    /* iat, when present, is an integer like exp and nbf. */
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"iat\":\"1700000000\"}",
                                   &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"iat\":1700000000.5}",
                                   &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000,"
                                   "\"iat\":null}",
                                   &uid),
                     JWT_MALFORMED);
    /* Expiry is judged first: an expired token issued in the future is
     * expired. */
    char claims[160];
    snprintf(claims, sizeof claims,
             "{\"sub\":\"42\",\"exp\":%lld,\"iat\":%lld}", NOW - 3600,
             NOW + 3600);
    ck_assert_int_eq(verify_claims(claims, &uid), JWT_EXPIRED);
}
END_TEST

START_TEST(test_leeway_is_the_callers)
{
    /* No skew at all: one second past exp is too late, one second
     * before nbf or iat too early. */
    ck_assert_int_eq(verify_time_claim("exp", 0, 0), JWT_OK);
    ck_assert_int_eq(verify_time_claim("exp", -1, 0), JWT_EXPIRED);
    ck_assert_int_eq(verify_time_claim("nbf", 0, 0), JWT_OK);
    ck_assert_int_eq(verify_time_claim("nbf", 1, 0), JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_time_claim("iat", 1, 0), JWT_NOT_YET_VALID);
    /* The largest setting, exactly at and just past its edge. */
    ck_assert_int_eq(
        verify_time_claim("exp", -JWT_LEEWAY_MAX_S, JWT_LEEWAY_MAX_S), JWT_OK);
    ck_assert_int_eq(
        verify_time_claim("exp", -JWT_LEEWAY_MAX_S - 1, JWT_LEEWAY_MAX_S),
        JWT_EXPIRED);
    ck_assert_int_eq(
        verify_time_claim("nbf", JWT_LEEWAY_MAX_S, JWT_LEEWAY_MAX_S), JWT_OK);
    ck_assert_int_eq(
        verify_time_claim("iat", JWT_LEEWAY_MAX_S, JWT_LEEWAY_MAX_S), JWT_OK);
    ck_assert_int_eq(
        verify_time_claim("iat", JWT_LEEWAY_MAX_S + 1, JWT_LEEWAY_MAX_S),
        JWT_NOT_YET_VALID);
    /* Out of range leeways are bounded, never widened: a day counts as
     * JWT_LEEWAY_MAX_S, a negative one as none. */
    ck_assert_int_eq(verify_time_claim("exp", -JWT_LEEWAY_MAX_S - 1, 86400),
                     JWT_EXPIRED);
    ck_assert_int_eq(verify_time_claim("iat", JWT_LEEWAY_MAX_S + 1, 86400),
                     JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_time_claim("exp", -1, -60), JWT_EXPIRED);
    ck_assert_int_eq(verify_time_claim("nbf", 1, -60), JWT_NOT_YET_VALID);
    ck_assert_int_eq(verify_time_claim("exp", 0, -60), JWT_OK);
}
END_TEST

START_TEST(test_sub_must_be_a_canonical_user_id)
{
    static const char *const bad[] = {
        "\"042\"",
        "\"0\"",
        "\"-42\"",
        "\"+42\"",
        "\" 42\"",
        "\"42 \"",
        "\"4a\"",
        "\"\"",
        "\"0x2a\"",
        "\"9007199254740992\"",
        "\"99999999999999999999\"",
        "42",
        "42.0",
        "null",
        "[\"42\"]",
    };
    char claims[128];
    int64_t uid = 0;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(claims, sizeof claims, "{\"sub\":%s,\"exp\":2000000000}",
                 bad[i]);
        if (verify_claims(claims, &uid) != JWT_MALFORMED)
            ck_abort_msg("accepted sub %s", bad[i]);
    }
    ck_assert_int_eq(verify_claims("{\"exp\":2000000000}", &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"9007199254740991\",\"exp\":2000000000}",
                      &uid),
        JWT_OK);
    ck_assert_int_eq(uid, 9007199254740991LL);
}
END_TEST

START_TEST(test_exp_is_a_required_integer)
{
    int64_t uid;

    ck_assert_int_eq(verify_claims("{\"sub\":\"42\"}", &uid), JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":\"2000000000\"}", &uid),
        JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":2000000000.0}", &uid),
        JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":null}", &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("[1]", &uid), JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("not json", &uid), JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":1,\"exp\":2000000000}", &uid),
        JWT_MALFORMED);
}
END_TEST

START_TEST(test_encoding_and_shape_are_strict)
{
    char tok[512], bad[600];
    int64_t uid;

    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 60, tok, sizeof tok), 0);
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');

    ck_assert_int_eq(verify("", &uid), JWT_MALFORMED);
    ck_assert_int_eq(verify("abc", &uid), JWT_MALFORMED);
    ck_assert_int_eq(verify("a.b", &uid), JWT_MALFORMED);
    /* Four parts. */
    snprintf(bad, sizeof bad, "%s.AAAA", tok);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    /* The payload part is 39 characters: its padded form ends in one
     * '='. Padding is refused, and so is '=' after the header. */
    ck_assert_int_eq((int)(dot2 - dot1 - 1) % 4, 3);
    snprintf(bad, sizeof bad, "%.*s=%s", (int)(dot2 - tok), tok, dot2);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    snprintf(bad, sizeof bad, "%.*s=%s", (int)(dot1 - tok), tok, dot1);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    /* '=' padding on the signature. */
    snprintf(bad, sizeof bad, "%s=", tok);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    /* Standard alphabet characters and whitespace. */
    snprintf(bad, sizeof bad, "%.*s+%s", (int)(dot2 - tok), tok, dot2 + 1);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    snprintf(bad, sizeof bad, " %s", tok);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    snprintf(bad, sizeof bad, "%s\n", tok);
    ck_assert_int_eq(verify(bad, &uid), JWT_MALFORMED);
    /* Embedded NUL: len covers it. */
    memcpy(bad, tok, strlen(tok) + 1);
    bad[5] = '\0';
    ck_assert_int_eq(
        jwt_verify(SECRET, bad, strlen(tok), NOW, JWT_LEEWAY_S, &uid),
        JWT_MALFORMED);
    /* The token as given is fine. */
    ck_assert_int_eq(verify(tok, &uid), JWT_OK);
}
END_TEST

START_TEST(test_length_cap)
{
    static char claims[JWT_TOKEN_MAX], tok[2 * JWT_TOKEN_MAX];
    int64_t uid;
    int accepted_at_cap = 0, refused_over_cap = 0;

    /* Pad a valid claim set, a few bytes at a time, until the token
     * passes JWT_TOKEN_MAX characters. */
    int n = snprintf(claims, sizeof claims,
                     "{\"sub\":\"42\",\"exp\":2000000000,\"pad\":\"");
    for (size_t fill = 2800; fill < 3100; fill++) {
        memset(claims + n, 'x', fill);
        strcpy(claims + n + fill, "\"}");
        forge(SECRET, HS256_HEADER, claims, tok);
        size_t len = strlen(tok);
        jwt_err err = jwt_verify(SECRET, tok, len, NOW, JWT_LEEWAY_S, &uid);
        if (len <= JWT_TOKEN_MAX) {
            ck_assert_int_eq(err, JWT_OK);
            accepted_at_cap += len > JWT_TOKEN_MAX - 4;
        } else {
            ck_assert_int_eq(err, JWT_MALFORMED);
            refused_over_cap++;
            break;
        }
    }
    ck_assert_int_gt(accepted_at_cap, 0);
    ck_assert_int_eq(refused_over_cap, 1);
}
END_TEST

START_TEST(test_strerror_names_each_error)
{
    ck_assert_str_eq(jwt_strerror(JWT_OK), "ok");
    ck_assert_str_ne(jwt_strerror(JWT_MALFORMED), jwt_strerror(JWT_BAD_ALG));
    ck_assert_str_ne(jwt_strerror(JWT_BAD_SIGNATURE),
                     jwt_strerror(JWT_EXPIRED));
    ck_assert_str_ne(jwt_strerror(JWT_EXPIRED),
                     jwt_strerror(JWT_NOT_YET_VALID));
}
END_TEST

START_TEST(test_claims_as_issued_and_near_misses)
{
    int64_t uid = 0;

    /* The exact shape jwt_sign writes, at its edges. */
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"7\",\"exp\":999999999999999999}", &uid),
        JWT_OK);
    ck_assert_int_eq(uid, 7);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":0}", &uid),
                     JWT_EXPIRED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":-1}", &uid),
                     JWT_EXPIRED);
    /* Near misses read by jansson, with jansson's verdict. */
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":02000000000}", &uid),
        JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":2000000000}x", &uid),
        JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2000000000", &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(verify_claims("{\"sub\":\"42\",\"exp\":2e9}", &uid),
                     JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"42\",\"exp\":99999999999999999999}", &uid),
        JWT_MALFORMED);
    ck_assert_int_eq(
        verify_claims("{\"sub\":\"\\u0034\",\"exp\":2000000000}", &uid),
        JWT_OK);
    ck_assert_int_eq(uid, 4);
    ck_assert_int_eq(
        verify_claims(" {\"sub\":\"43\",\"exp\":2000000000} ", &uid), JWT_OK);
    ck_assert_int_eq(uid, 43);
    ck_assert_int_eq(verify_claims("{\"exp\":2000000000,\"sub\":\"44\"}", &uid),
                     JWT_OK);
    ck_assert_int_eq(uid, 44);
}
END_TEST

START_TEST(test_keys_are_never_mixed_up)
{
    char tok[512], other[512], prefix[512], empty[512];
    int64_t uid = 0;

    /* One thread, secrets in turn (each change re-keys its context),
     * including a secret that is a prefix of another and the empty one. */
    ck_assert_int_gt(jwt_sign(SECRET, 42, NOW + 60, tok, sizeof tok), 0);
    ck_assert_int_gt(jwt_sign("other", 42, NOW + 60, other, sizeof other), 0);
    ck_assert_int_gt(jwt_sign(SECRET "x", 42, NOW + 60, prefix, sizeof prefix),
                     0);
    forge("", HS256_HEADER, "{\"sub\":\"42\",\"exp\":2000000000}", empty);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(verify(tok, &uid), JWT_OK);
        ck_assert_int_eq(verify(other, &uid), JWT_BAD_SIGNATURE);
        ck_assert_int_eq(verify(prefix, &uid), JWT_BAD_SIGNATURE);
        ck_assert_int_eq(
            jwt_verify("other", other, strlen(other), NOW, JWT_LEEWAY_S, &uid),
            JWT_OK);
        ck_assert_int_eq(
            jwt_verify(SECRET "x", tok, strlen(tok), NOW, JWT_LEEWAY_S, &uid),
            JWT_BAD_SIGNATURE);
        ck_assert_int_eq(
            jwt_verify("", empty, strlen(empty), NOW, JWT_LEEWAY_S, &uid),
            JWT_OK);
        ck_assert_int_eq(verify(empty, &uid), JWT_BAD_SIGNATURE);
    }
}
END_TEST

#define THREADS 4
#define THREAD_ROUNDS 2000

typedef struct thread_case {
    const char *secret;
    char good[512], wrong[512];
    int failures;
} thread_case;

static void *verify_many(void *arg)
{
    thread_case *tc = arg;
    int64_t uid = 0;
    char fresh[512];

    for (int i = 0; i < THREAD_ROUNDS; i++) {
        if (jwt_verify(tc->secret, tc->good, strlen(tc->good), NOW,
                       JWT_LEEWAY_S, &uid) != JWT_OK ||
            uid != 42)
            tc->failures++;
        if (jwt_verify(tc->secret, tc->wrong, strlen(tc->wrong), NOW,
                       JWT_LEEWAY_S, &uid) != JWT_BAD_SIGNATURE)
            tc->failures++;
        if (jwt_sign(tc->secret, 42, NOW + 60, fresh, sizeof fresh) < 0 ||
            strcmp(fresh, tc->good) != 0)
            tc->failures++;
    }
    return NULL;
}

START_TEST(test_threads_verify_at_once)
{
    /* Threads with one secret and threads with another, all at once:
     * each thread's keyed context is its own. */
    static const char *const secrets[2] = {SECRET, "another secret"};
    thread_case cases[THREADS];
    pthread_t threads[THREADS];

    for (int i = 0; i < THREADS; i++) {
        thread_case *tc = &cases[i];
        tc->secret = secrets[i % 2];
        tc->failures = 0;
        ck_assert_int_gt(
            jwt_sign(tc->secret, 42, NOW + 60, tc->good, sizeof tc->good), 0);
        ck_assert_int_gt(jwt_sign(secrets[(i + 1) % 2], 42, NOW + 60, tc->wrong,
                                  sizeof tc->wrong),
                         0);
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(
            pthread_create(&threads[i], NULL, verify_many, &cases[i]), 0);
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_int_eq(cases[i].failures, 0);
    }
}
END_TEST

static Suite *jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_accepts_token_from_another_implementation);
    tcase_add_test(tc, test_sign_matches_another_implementation);
    tcase_add_test(tc, test_sign_verify_round_trip);
    tcase_add_test(tc, test_sign_checks_cap_and_user);
    tcase_add_test(tc, test_bad_signature_is_refused);
    tcase_add_test(tc, test_alg_none_and_others_are_refused);
    tcase_add_test(tc, test_expiry_leeway);
    tcase_add_test(tc, test_not_before_leeway);
    tcase_add_test(tc, test_issued_at_leeway);
    tcase_add_test(tc, test_leeway_is_the_callers);
    tcase_add_test(tc, test_sub_must_be_a_canonical_user_id);
    tcase_add_test(tc, test_exp_is_a_required_integer);
    tcase_add_test(tc, test_encoding_and_shape_are_strict);
    tcase_add_test(tc, test_length_cap);
    tcase_add_test(tc, test_strerror_names_each_error);
    tcase_add_test(tc, test_claims_as_issued_and_near_misses);
    tcase_add_test(tc, test_keys_are_never_mixed_up);
    tcase_add_test(tc, test_threads_verify_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jwt_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
