/*
 * message.h - the message and conversation records, the send request, and
 * their JSON forms.
 *
 * msg_parse_send is the one parser of POST /v1/messages bodies; it takes
 * (buf, len), does no I/O and is what the fuzz target drives. The gateway
 * validates with it before forwarding, the cache node parses the same body
 * again with it, so both agree on what a valid send is.
 */
#ifndef MSG_MESSAGE_H
#define MSG_MESSAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "constants.h"

/* A parsed, validated send request. content points into `owned` memory
 * released by msg_send_req_free. */
typedef struct msg_send_req {
    int64_t sender_id;
    int64_t recipient_id;
    char *content; /* NUL terminated copy; may contain NUL, use content_len */
    size_t content_len;
    char client_message_id[MSG_CMID_MAX + 1];
} msg_send_req;

typedef enum {
    MSG_OK = 0,
    MSG_BAD_JSON,  /* 400: not a JSON object */
    MSG_BAD_FIELD, /* 400: missing or mistyped field, bad id */
    MSG_SAME_USER, /* 400: sender == recipient */
    MSG_BAD_UTF8,  /* 400: content is not valid UTF-8 */
    MSG_EMPTY,     /* 400: content is empty */
    MSG_TOO_LARGE, /* 413: content over MSG_CONTENT_MAX bytes */
    MSG_BAD_CMID,  /* 400: client_message_id not 1-64 printable ASCII */
} msg_err;

/* Parses and fully validates a send body. On MSG_OK the caller owns req's
 * content (msg_send_req_free). On error nothing is allocated and errbuf
 * holds a human-readable detail. Unknown fields are ignored. */
msg_err msg_parse_send(const char *buf, size_t len, msg_send_req *req,
                       char *errbuf, size_t errcap);
void msg_send_req_free(msg_send_req *req);
/* HTTP status for a msg_err: 400, 413 (0 for MSG_OK). */
int msg_err_status(msg_err err);

/* A stored message (one copy; both copies carry the same fields). */
typedef struct msg {
    int64_t message_id;
    char conversation_id[IDS_CONVERSATION_MAX];
    int64_t sender_id;
    int64_t recipient_id;
    char *content; /* owned, NUL terminated */
    size_t content_len;
    char client_message_id[MSG_CMID_MAX + 1];
    int64_t sent_at;
} msg;

void msg_clear(msg *m); /* frees content, leaves *m reusable */

/* Public JSON form: {"message_id":"<dec>","conversation_id",..,
 * "sent_at":<int>}. New reference, or NULL on allocation failure. */
json_t *msg_to_json(const msg *m);
/* The same form as text, exactly what json_dumps(msg_to_json(m),
 * JSON_COMPACT) writes, without building it: a send writes it four
 * times. Returns a string the caller frees (its length in *len, which
 * may be NULL), or NULL when out of memory or the content is not UTF-8. */
char *msg_json_text(const msg *m, size_t *len);
/* The conversation as `owner` (its sender or recipient) sees it after m,
 * as text: {"conversation_id","participants":[lo,hi],"peer_id",
 * "snippet","last_message_id","last_updated_at"}, the snippet the first
 * MSG_SNIPPET_CODEPOINTS code points of the content (up to its first
 * byte that is not UTF-8, as msg_snippet_len cuts). Same ownership as
 * msg_json_text; NULL only when out of memory. */
char *msg_conversation_text(const msg *m, int64_t owner, size_t *len);
/* Parses the public JSON form (also used between services). Returns 0,
 * or -1 if a field is missing or mistyped. On success m->content is
 * owned by m. */
int msg_from_json(const json_t *j, msg *m);
/* Parses an internal {"message":{public JSON form}} body (send and
 * deliver between services) from buf[0..len); U+0000 is allowed in
 * strings. Returns 0 with m owning its content, or -1 (nothing
 * allocated) when buf is NULL or not that shape. Pure: the fuzz target
 * drives it. */
int msg_from_body(const char *buf, size_t len, msg *m);

/* The snippet of content: at most MSG_SNIPPET_CODEPOINTS code points.
 * Returns the byte length of the prefix. */
size_t msg_snippet_len(const char *content, size_t len);

#endif
