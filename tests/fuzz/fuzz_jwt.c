/*
 * fuzz_jwt.c - libFuzzer target for jwt_verify, which sees every
 * Authorization header. The input is tried twice: as a whole token, and
 * as the claims of a token signed here with the right secret, so the
 * claims checks behind the signature get fuzzed too, each with no leeway
 * and with the largest. A token that verifies must name a user in range,
 * and one that verifies without leeway must verify with more.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "constants.h"

#define SECRET "fuzz-secret"
#define NOW 1700000000

static size_t b64url(const void *data, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return (size_t)n;
}

static void check(const char *token, size_t len)
{
    int64_t user = 0, user_wide = 0;

    jwt_err strict = jwt_verify(SECRET, token, len, NOW, 0, &user);
    jwt_err wide =
        jwt_verify(SECRET, token, len, NOW, JWT_LEEWAY_MAX_S, &user_wide);
    if (strict == JWT_OK &&
        (user < 1 || user > MSG_USER_ID_MAX || wide != JWT_OK))
        abort();
    if (wide == JWT_OK && (user_wide < 1 || user_wide > MSG_USER_ID_MAX))
        abort();
}

/* HS256 header, the input as claims, a valid signature. */
static void check_signed_claims(const uint8_t *data, size_t size)
{
    static const char header[] = "{\"alg\":\"HS256\"}";
    unsigned char md[32];
    unsigned int md_len = 0;

    if (size > JWT_TOKEN_MAX / 2)
        return;
    char *tok = malloc(4 * ((size + 2) / 3) + 128);
    if (tok == NULL)
        return;
    size_t n = b64url(header, sizeof header - 1, tok);
    tok[n++] = '.';
    n += b64url(data, size, tok + n);
    if (HMAC(EVP_sha256(), SECRET, sizeof SECRET - 1, (unsigned char *)tok, n,
             md, &md_len) != NULL) {
        tok[n++] = '.';
        n += b64url(md, md_len, tok + n);
        check(tok, n);
    }
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size);
    check_signed_claims(data, size);
    return 0;
}
