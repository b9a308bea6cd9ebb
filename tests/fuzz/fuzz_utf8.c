/*
 * fuzz_utf8.c - libFuzzer target for utf8.c: the validator never reads
 * past len, and utf8_prefix always returns a valid prefix within len
 * that is the whole buffer when the buffer is valid and short enough.
 */
#include <stdint.h>
#include <stdlib.h>

#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bool valid = utf8_is_valid(s, size);

    for (size_t max = 0; max <= 4; max++) {
        size_t n = utf8_prefix(s, size, max * 25);
        if (n > size || !utf8_is_valid(s, n))
            abort();
    }
    size_t all = utf8_prefix(s, size, size);
    if (valid != (all == size))
        abort();
    return 0;
}
