/*
 * store_parse.h - reading the storage service's answers on a cache node
 * (docs/internal-api.md, section Storage): the pure steps of store.c.
 *
 * Each function takes the answer's status and parsed body and checks its
 * whole shape before anything of it is used, so an answer this node
 * cannot use is STORE_BAD, never a half-read result. No I/O: the fuzz
 * target (tests/fuzz/fuzz_store_answer.c) drives them with arbitrary
 * bodies.
 */
#ifndef CACHE_STORE_PARSE_H
#define CACHE_STORE_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hot.h"
#include "message.h"

typedef enum {
    STORE_OK = 0,
    STORE_DOWN, /* storage or PostgreSQL unreachable: retryable 503 */
    STORE_BAD,  /* storage answered something this node cannot use */
} store_err;

typedef enum { SEND_STORED, SEND_REPLAY, SEND_FLOOR } send_outcome;

typedef struct store_send_result {
    send_outcome outcome;
    hot_meta meta;       /* STORED: the mailbox after; FLOOR: max_id */
    msg stored;          /* REPLAY: the message stored under the key */
    bool outbox_pending; /* REPLAY: recipient copy not yet acknowledged */
} store_send_result;

/* The body of an answer: a new reference to the JSON object in
 * buf[0..len) (U+0000 allowed in strings), or NULL when it is not one. */
json_t *store_parse_body(const char *buf, size_t len);

/* {"seq":S,"max_id":"M"}: S an integer >= 0, M a message id or "0"
 * (also accepted as a JSON integer >= 0). */
store_err store_parse_meta(const json_t *o, hot_meta *meta);

/* The answer to POST /internal/send: 201 stored (meta), 409 floor
 * (meta.max_id) or 200 replay (the stored message). On STORE_OK with
 * SEND_REPLAY out->stored is owned by the caller (msg_clear); on any
 * error out holds nothing. */
store_err store_parse_send(long status, const json_t *o,
                           store_send_result *out);

/* The answer to POST /internal/deliver: 200 with status "stored" or
 * "duplicate" (*stored says which) and the mailbox meta after. */
store_err store_parse_deliver(long status, const json_t *o, bool *stored,
                              hot_meta *meta);

/* A list page, {"seq":S,"<items_key>":[object,...]}: *items is a new
 * reference to the array, *seq its snapshot's change counter (>= 0). */
store_err store_parse_list(const json_t *o, const char *items_key,
                           json_t **items, int64_t *seq);

/* The answer to POST /internal/outbox/claim: 200 {"messages":[...]}.
 * *messages is a new reference to the array; its entries are checked one
 * by one where they are delivered (msg_from_json). */
store_err store_parse_claim(long status, const json_t *o, json_t **messages);

#endif
