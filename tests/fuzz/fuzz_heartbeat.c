/*
 * fuzz_heartbeat.c - libFuzzer target for heartbeat_parse, the router's
 * parser of POST /internal/heartbeat bodies. A heartbeat that parses
 * must name a node and URL that fit their buffers as C strings and an
 * epoch >= 0, and must survive its own JSON round trip.
 */
#include <stdlib.h>
#include <string.h>

#include "heartbeat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    heartbeat hb, again;

    if (heartbeat_parse((const char *)data, size, &hb) != 0)
        return 0;
    size_t name_len = strnlen(hb.node.name, sizeof hb.node.name);
    size_t url_len = strnlen(hb.node.url, sizeof hb.node.url);
    if (name_len < 1 || name_len >= sizeof hb.node.name || url_len < 1 ||
        url_len >= sizeof hb.node.url || hb.epoch < 0)
        abort();
    json_t *j = json_pack("{s:s, s:s, s:I}", "name", hb.node.name, "url",
                          hb.node.url, "epoch", (json_int_t)hb.epoch);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text == NULL || heartbeat_parse(text, strlen(text), &again) != 0 ||
        strcmp(again.node.name, hb.node.name) != 0 ||
        strcmp(again.node.url, hb.node.url) != 0 || again.epoch != hb.epoch)
        abort();
    free(text);
    json_decref(j);
    return 0;
}
