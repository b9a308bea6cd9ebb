/*
 * message.c - the send request parser and the message JSON forms.
 *
 * msg_parse_send decides what a valid send is for the whole system (the
 * gateway and the cache node both call it), so its checks run in one
 * fixed order and each failure maps to one msg_err: the JSON shape, then
 * field presence and types, id ranges, content size (413 before any
 * other content check, so a huge body is never scanned twice), empty
 * content, UTF-8, client_message_id, and last sender == recipient.
 *
 * Content may hold NUL bytes (JSON "\u0000"): they are valid UTF-8 and
 * count as bytes, so lengths always come from jansson, never strlen.
 */
#include "message.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "jsontext.h"
#include "utf8.h"

#define ID_RANGE_FMT "%s must be an integer from 1 to %lld"

__attribute__((format(printf, 4, 5))) static msg_err
fail(msg_err err, char *errbuf, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    errbuf_vformat(errbuf, errcap, fmt, ap);
    va_end(ap);
    return err;
}

/* jansson refuses invalid UTF-8 and lone surrogate escapes while
 * parsing, before we ever see the string: those failures are reported
 * as bad UTF-8 (still a 400), the rest as bad JSON. */
static msg_err load_error(const json_error_t *e)
{
    enum json_error_code code = json_error_code(e);

    if (code == json_error_invalid_utf8 ||
        (code == json_error_invalid_syntax &&
         strncmp(e->text, "invalid Unicode", 15) == 0))
        return MSG_BAD_UTF8;
    if (code == json_error_numeric_overflow)
        return MSG_BAD_FIELD;
    return MSG_BAD_JSON;
}

static int is_user_id(const json_t *j)
{
    return json_is_integer(j) && json_integer_value(j) >= 1 &&
           json_integer_value(j) <= MSG_USER_ID_MAX;
}

/* 1 to MSG_CMID_MAX printable ASCII characters (0x20-0x7E). */
static int is_cmid(const char *s, size_t len)
{
    if (len < 1 || len > MSG_CMID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E)
            return 0;
    }
    return 1;
}

/* Field presence and JSON types; the values are checked after. */
static msg_err check_types(const json_t *root, char *errbuf, size_t errcap)
{
    static const char *const ints[] = {"sender_id", "recipient_id"};
    static const char *const strs[] = {"content", "client_message_id"};

    if (!json_is_object(root))
        return fail(MSG_BAD_JSON, errbuf, errcap,
                    "the body must be a JSON object");
    for (size_t i = 0; i < 2; i++) {
        if (!json_is_integer(json_object_get(root, ints[i])))
            return fail(MSG_BAD_FIELD, errbuf, errcap, ID_RANGE_FMT, ints[i],
                        MSG_USER_ID_MAX);
    }
    for (size_t i = 0; i < 2; i++) {
        if (!json_is_string(json_object_get(root, strs[i])))
            return fail(MSG_BAD_FIELD, errbuf, errcap, "%s must be a string",
                        strs[i]);
    }
    return MSG_OK;
}

static msg_err check_values(const json_t *root, char *errbuf, size_t errcap)
{
    const json_t *sender = json_object_get(root, "sender_id");
    const json_t *recipient = json_object_get(root, "recipient_id");
    const json_t *content = json_object_get(root, "content");
    const json_t *cmid = json_object_get(root, "client_message_id");
    size_t len = json_string_length(content);

    if (!is_user_id(sender) || !is_user_id(recipient))
        return fail(MSG_BAD_FIELD, errbuf, errcap, ID_RANGE_FMT,
                    is_user_id(sender) ? "recipient_id" : "sender_id",
                    MSG_USER_ID_MAX);
    if (len > MSG_CONTENT_MAX)
        return fail(MSG_TOO_LARGE, errbuf, errcap,
                    "content is %zu bytes, more than %d", len, MSG_CONTENT_MAX);
    if (len == 0)
        return fail(MSG_EMPTY, errbuf, errcap, "content is empty");
    if (!utf8_is_valid(json_string_value(content), len))
        return fail(MSG_BAD_UTF8, errbuf, errcap, "content is not valid UTF-8");
    if (!is_cmid(json_string_value(cmid), json_string_length(cmid)))
        return fail(MSG_BAD_CMID, errbuf, errcap,
                    "client_message_id must be 1 to %d printable ASCII "
                    "characters",
                    MSG_CMID_MAX);
    if (json_integer_value(sender) == json_integer_value(recipient))
        return fail(MSG_SAME_USER, errbuf, errcap,
                    "sender_id and recipient_id must differ");
    return MSG_OK;
}

/* Copies the validated fields out of root; content is the only
 * allocation. */
static msg_err fill_req(const json_t *root, msg_send_req *req, char *errbuf,
                        size_t errcap)
{
    const json_t *content = json_object_get(root, "content");
    const json_t *cmid = json_object_get(root, "client_message_id");
    size_t len = json_string_length(content);
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return fail(MSG_BAD_JSON, errbuf, errcap, "out of memory");
    memcpy(copy, json_string_value(content), len + 1);
    req->sender_id = json_integer_value(json_object_get(root, "sender_id"));
    req->recipient_id =
        json_integer_value(json_object_get(root, "recipient_id"));
    req->content = copy;
    req->content_len = len;
    memcpy(req->client_message_id, json_string_value(cmid),
           json_string_length(cmid) + 1);
    return MSG_OK;
}

msg_err msg_parse_send(const char *buf, size_t len, msg_send_req *req,
                       char *errbuf, size_t errcap)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

    if (root == NULL)
        return fail(load_error(&jerr), errbuf, errcap, "invalid JSON: %s",
                    jerr.text);
    msg_err err = check_types(root, errbuf, errcap);
    if (err == MSG_OK)
        err = check_values(root, errbuf, errcap);
    if (err == MSG_OK)
        err = fill_req(root, req, errbuf, errcap);
    json_decref(root);
    return err;
}

void msg_send_req_free(msg_send_req *req)
{
    if (req == NULL)
        return;
    free(req->content);
    req->content = NULL;
    req->content_len = 0;
}

int msg_err_status(msg_err err)
{
    switch (err) {
    case MSG_OK:
        return 0;
    case MSG_TOO_LARGE:
        return 413;
    case MSG_BAD_JSON:
    case MSG_BAD_FIELD:
    case MSG_SAME_USER:
    case MSG_BAD_UTF8:
    case MSG_EMPTY:
    case MSG_BAD_CMID:
        break;
    }
    return 400;
}

void msg_clear(msg *m)
{
    if (m == NULL)
        return;
    free(m->content);
    memset(m, 0, sizeof *m);
}

json_t *msg_to_json(const msg *m)
{
    char id[24];

    snprintf(id, sizeof id, "%lld", (long long)m->message_id);
    /* "s%" is json_stringn: keeps NUL bytes, refuses invalid UTF-8. */
    return json_pack("{s:s, s:s, s:I, s:I, s:s%, s:s, s:I}", "message_id", id,
                     "conversation_id", m->conversation_id, "sender_id",
                     (json_int_t)m->sender_id, "recipient_id",
                     (json_int_t)m->recipient_id, "content", m->content,
                     m->content_len, "client_message_id", m->client_message_id,
                     "sent_at", (json_int_t)m->sent_at);
}

char *msg_json_text(const msg *m, size_t *len)
{
    char id[JT_INT_MAX];
    jt_buf b;

    jt_init(&b);
    jt_cstr(&b, "{\"message_id\":");
    jt_string(&b, id, jt_format_int(id, m->message_id));
    jt_cstr(&b, ",\"conversation_id\":");
    jt_string(&b, m->conversation_id, strlen(m->conversation_id));
    jt_cstr(&b, ",\"sender_id\":");
    jt_int(&b, m->sender_id);
    jt_cstr(&b, ",\"recipient_id\":");
    jt_int(&b, m->recipient_id);
    jt_cstr(&b, ",\"content\":");
    jt_string(&b, m->content, m->content_len);
    jt_cstr(&b, ",\"client_message_id\":");
    jt_string(&b, m->client_message_id, strlen(m->client_message_id));
    jt_cstr(&b, ",\"sent_at\":");
    jt_int(&b, m->sent_at);
    jt_raw(&b, "}", 1);
    return jt_finish(&b, len);
}

char *msg_conversation_text(const msg *m, int64_t owner, size_t *len)
{
    int64_t peer = owner == m->sender_id ? m->recipient_id : m->sender_id;
    int64_t lo =
        m->sender_id < m->recipient_id ? m->sender_id : m->recipient_id;
    int64_t hi = m->sender_id ^ m->recipient_id ^ lo;
    char id[JT_INT_MAX];
    jt_buf b;

    jt_init(&b);
    jt_cstr(&b, "{\"conversation_id\":");
    jt_string(&b, m->conversation_id, strlen(m->conversation_id));
    jt_cstr(&b, ",\"participants\":[");
    jt_int(&b, lo);
    jt_raw(&b, ",", 1);
    jt_int(&b, hi);
    jt_cstr(&b, "],\"peer_id\":");
    jt_int(&b, peer);
    jt_cstr(&b, ",\"snippet\":");
    jt_string(&b, m->content, msg_snippet_len(m->content, m->content_len));
    jt_cstr(&b, ",\"last_message_id\":");
    jt_string(&b, id, jt_format_int(id, m->message_id));
    jt_cstr(&b, ",\"last_updated_at\":");
    jt_int(&b, m->sent_at);
    jt_raw(&b, "}", 1);
    return jt_finish(&b, len);
}

/* The ids of j: message_id a decimal string, the users integers in
 * range and distinct, conversation_id the one derived from them. */
static int ids_from_json(const json_t *j, msg *m)
{
    const json_t *id = json_object_get(j, "message_id");
    const json_t *sender = json_object_get(j, "sender_id");
    const json_t *recipient = json_object_get(j, "recipient_id");
    const json_t *cid = json_object_get(j, "conversation_id");

    if (!json_is_string(id) || !is_user_id(sender) || !is_user_id(recipient) ||
        !json_is_string(cid) ||
        ids_parse(json_string_value(id), json_string_length(id),
                  &m->message_id) != 0)
        return -1;
    m->sender_id = json_integer_value(sender);
    m->recipient_id = json_integer_value(recipient);
    if (ids_conversation(m->sender_id, m->recipient_id, m->conversation_id,
                         sizeof m->conversation_id) < 0 ||
        strlen(m->conversation_id) != json_string_length(cid) ||
        strcmp(m->conversation_id, json_string_value(cid)) != 0)
        return -1;
    return 0;
}

int msg_from_json(const json_t *j, msg *m)
{
    const json_t *content = json_object_get(j, "content");
    const json_t *cmid = json_object_get(j, "client_message_id");
    const json_t *sent_at = json_object_get(j, "sent_at");
    msg tmp = {0};

    if (!json_is_object(j) || ids_from_json(j, &tmp) != 0 ||
        !json_is_string(content) || !json_is_string(cmid) ||
        !is_cmid(json_string_value(cmid), json_string_length(cmid)) ||
        !json_is_integer(sent_at))
        return -1;
    tmp.content_len = json_string_length(content);
    tmp.content = malloc(tmp.content_len + 1);
    if (tmp.content == NULL)
        return -1;
    memcpy(tmp.content, json_string_value(content), tmp.content_len + 1);
    memcpy(tmp.client_message_id, json_string_value(cmid),
           json_string_length(cmid) + 1);
    tmp.sent_at = json_integer_value(sent_at);
    *m = tmp;
    return 0;
}

int msg_from_body(const char *buf, size_t len, msg *m)
{
    if (buf == NULL)
        return -1;
    json_t *root = json_loadb(buf, len, JSON_ALLOW_NUL, NULL);
    const json_t *message = json_object_get(root, "message");
    int rc = json_is_object(root) && json_is_object(message)
                 ? msg_from_json(message, m)
                 : -1;
    json_decref(root);
    return rc;
}

size_t msg_snippet_len(const char *content, size_t len)
{
    return utf8_prefix(content, len, MSG_SNIPPET_CODEPOINTS);
}
