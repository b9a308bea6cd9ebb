/*
 * fuzz_synctoken.c - libFuzzer target for synctoken_decode: whatever a
 * client sends as since, a token that decodes must encode back to the
 * same text and decode to the same value (one spelling per token).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "synctoken.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sync_token a, b;
    char text[SYNCTOKEN_MAX + 1];

    if (synctoken_decode((const char *)data, size, &a) != 0)
        return 0;
    int n = synctoken_encode(&a, text, sizeof text);
    if (n < 0 || (size_t)n != size || memcmp(text, data, size) != 0)
        abort();
    if (synctoken_decode(text, (size_t)n, &b) != 0 || a.kind != b.kind ||
        a.user_id != b.user_id || a.seq != b.seq ||
        strcmp(a.conversation_id, b.conversation_id) != 0)
        abort();
    return 0;
}
