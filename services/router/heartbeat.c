/*
 * heartbeat.c - parsing of cache node heartbeats. See heartbeat.h.
 */
#include "heartbeat.h"

int heartbeat_parse(const char *buf, size_t len, heartbeat *hb)
{
    if (buf == NULL)
        return -1;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *epoch = json_object_get(root, "epoch");
    int rc = json_is_integer(epoch) && json_integer_value(epoch) >= 0 &&
                     ring_node_from_json(root, &hb->node) == 0
                 ? 0
                 : -1;
    if (rc == 0)
        hb->epoch = json_integer_value(epoch);
    json_decref(root);
    return rc;
}
