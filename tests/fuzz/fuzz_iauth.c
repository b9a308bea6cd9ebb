/*
 * fuzz_iauth.c - libFuzzer target for the X-Internal-Auth header, which
 * every internal route reads from whoever connects. The input is tried
 * three ways: as a header value (parse and verify, which must never pass
 * for a value nobody signed, and whose accepted form must be the one
 * canonical spelling), and as the target and body of a call signed here,
 * which must verify and must stop verifying when the body changes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "iauth.h"

#define SECRET "fuzz-internal-secret-of-32-bytes"
#define NOW 1700000000

/* An accepted value reads back exactly as it was written: one spelling
 * per (time, MAC), so nothing can smuggle variants past a cache or log. */
static void check_value(const uint8_t *data, size_t size)
{
    iauth_value v;
    char again[IAUTH_VALUE_MAX + 1];

    iauth_err err = iauth_parse((const char *)data, size, &v);
    if (err == IAUTH_MISSING)
        abort();
    if (err != IAUTH_OK)
        return;
    int n = snprintf(again, sizeof again, "v1 %lld ", (long long)v.ts);
    for (size_t i = 0; i < IAUTH_MAC_LEN; i++)
        n += snprintf(again + n, sizeof again - (size_t)n, "%02x", v.mac[i]);
    if ((size_t)n != size || memcmp(again, data, size) != 0)
        abort();
    /* Nobody signed this call with the input as its header. */
    if (iauth_verify(SECRET, (const char *)data, size, "POST", "/internal/send",
                     14, "{}", 2, v.ts) == IAUTH_OK)
        abort();
}

/* The input as target and body of a call signed with the secret. */
static void check_signed(const uint8_t *data, size_t size)
{
    char value[IAUTH_VALUE_MAX + 1];
    const char *text = (const char *)data;

    if (iauth_sign(SECRET, "GET", text, size, data, size, NOW, value,
                   sizeof value) < 0)
        abort();
    if (iauth_verify(SECRET, value, strlen(value), "GET", text, size, data,
                     size, NOW + IAUTH_WINDOW_S) != IAUTH_OK)
        abort();
    if (size > 0 && iauth_verify(SECRET, value, strlen(value), "GET", text,
                                 size, data, size - 1, NOW) != IAUTH_BAD_MAC)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_value(data, size);
    check_signed(data, size);
    return 0;
}
