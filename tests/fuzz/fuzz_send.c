/*
 * fuzz_send.c - libFuzzer target for msg_parse_send, the parser of every
 * POST /v1/messages body. Any input must either be refused with a 4xx
 * or yield a request that meets every documented limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msg_send_req req;
    char errbuf[128];

    msg_err err =
        msg_parse_send((const char *)data, size, &req, errbuf, sizeof errbuf);
    int status = msg_err_status(err);
    if (err != MSG_OK) {
        if (status != 400 && status != 413)
            abort();
        return 0;
    }
    if (req.content_len < 1 || req.content_len > MSG_CONTENT_MAX ||
        !utf8_is_valid(req.content, req.content_len) ||
        req.content[req.content_len] != '\0' || req.sender_id < 1 ||
        req.sender_id > MSG_USER_ID_MAX || req.recipient_id < 1 ||
        req.recipient_id > MSG_USER_ID_MAX ||
        req.sender_id == req.recipient_id ||
        strlen(req.client_message_id) < 1 ||
        strlen(req.client_message_id) > MSG_CMID_MAX)
        abort();
    msg_send_req_free(&req);
    return 0;
}
