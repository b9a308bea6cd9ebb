/*
 * fuzz_deliver.c - libFuzzer target for msg_from_body, the parser of the
 * internal {"message":{...}} bodies (POST /internal/deliver on a cache
 * node, /internal/send and /internal/deliver on storage). A body that
 * parses must hold a message whose ids are consistent and whose strings
 * are what the public form allows, and the message must survive its own
 * JSON round trip unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "ids.h"
#include "message.h"
#include "utf8.h"

static void check_fields(const msg *m)
{
    char cid[IDS_CONVERSATION_MAX];
    size_t cmid_len = strlen(m->client_message_id);

    if (m->message_id < 1 || m->sender_id < 1 ||
        m->sender_id > MSG_USER_ID_MAX || m->recipient_id < 1 ||
        m->recipient_id > MSG_USER_ID_MAX || m->sender_id == m->recipient_id ||
        ids_conversation(m->sender_id, m->recipient_id, cid, sizeof cid) < 0 ||
        strcmp(cid, m->conversation_id) != 0 || m->content == NULL ||
        m->content[m->content_len] != '\0' ||
        !utf8_is_valid(m->content, m->content_len) || cmid_len < 1 ||
        cmid_len > MSG_CMID_MAX)
        abort();
    for (size_t i = 0; i < cmid_len; i++) {
        if (m->client_message_id[i] < 0x20 || m->client_message_id[i] > 0x7e)
            abort();
    }
}

/* msg_to_json, wrapped in a body and parsed again, gives m back. */
static void check_round_trip(const msg *m)
{
    json_t *body = json_pack("{s:o}", "message", msg_to_json(m));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    msg again;

    if (text == NULL || msg_from_body(text, strlen(text), &again) != 0)
        abort();
    if (again.message_id != m->message_id || again.sender_id != m->sender_id ||
        again.recipient_id != m->recipient_id || again.sent_at != m->sent_at ||
        strcmp(again.conversation_id, m->conversation_id) != 0 ||
        strcmp(again.client_message_id, m->client_message_id) != 0 ||
        again.content_len != m->content_len ||
        memcmp(again.content, m->content, m->content_len) != 0)
        abort();
    msg_clear(&again);
    free(text);
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msg m;

    if (msg_from_body((const char *)data, size, &m) != 0)
        return 0;
    check_fields(&m);
    check_round_trip(&m);
    msg_clear(&m);
    return 0;
}
