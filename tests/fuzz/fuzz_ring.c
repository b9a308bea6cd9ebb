/*
 * fuzz_ring.c - libFuzzer target for ring_from_json, which reads the
 * ring the router publishes. A ring that parses must be usable (every
 * user owned by a real node) and survive its own JSON round trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ring_t *r = ring_from_json((const char *)data, size);

    if (r == NULL)
        return 0;
    for (int64_t user = 1; user <= 64; user++) {
        int o = ring_owner(r, user);
        if (o < 0 || o >= r->nnodes)
            abort();
    }
    char *json = ring_to_json(r);
    ring_t *again = json ? ring_from_json(json, strlen(json)) : NULL;
    if (again == NULL || again->epoch != r->epoch ||
        again->ntokens != r->ntokens)
        abort();
    for (size_t i = 0; i < r->ntokens; i++) {
        if (again->tokens[i].hash != r->tokens[i].hash ||
            again->tokens[i].node != r->tokens[i].node)
            abort();
    }
    free(json);
    ring_free(again);
    ring_free(r);
    return 0;
}
