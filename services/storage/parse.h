/*
 * parse.h - the storage service's parsers and validators of internal
 * requests: message bodies (send, deliver), outbox claim and ack bodies,
 * and the filters of list reads.
 *
 * They take (buf, len) or a query lookup, do no I/O and answer what is
 * wrong with the input, so routes.c only maps their results to replies
 * and the fuzz target (tests/fuzz/fuzz_storage_request.c) links them
 * without libpq or libmicrohttpd. Storage is the last check before
 * durable state, so its callers' input is checked as strictly as public
 * input.
 */
#ifndef STORAGE_PARSE_H
#define STORAGE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
#include "message.h"

/* Parses a {"message":{...}} body and fully checks the message about to
 * be stored (ids, conversation id, content size and UTF-8, client
 * message id, sent_at). Returns 0 with m owning its content (msg_clear),
 * or 400/413 with *detail (a static string) saying why and m holding
 * nothing. */
int parse_message_request(const char *buf, size_t len, msg *m,
                          const char **detail);

/* Most writes one POST /internal/batch carries. */
#define STORAGE_BATCH_CALLS_MAX 64

/* One write of a batch body. */
typedef struct parse_call {
    mbox_op op;
    msg m; /* owns its content */
} parse_call;

/* Parses a {"calls":[{"op":"send"|"deliver","message":{...}},...]} body
 * of 1..STORAGE_BATCH_CALLS_MAX writes, each message checked as
 * parse_message_request does. Returns 0 with *calls a new array of *n
 * (parse_calls_free), or 400/413 with *detail (static) saying why and
 * nothing allocated: one bad write refuses the whole batch. */
int parse_batch_request(const char *buf, size_t len, parse_call **calls,
                        size_t *n, const char **detail);
void parse_calls_free(parse_call *calls, size_t n);

/* Parses {"limit":N,"lease_ms":L} with N in 1..MBOX_OUTBOX_BATCH_MAX and
 * L in 1..MBOX_LEASE_MAX_MS. Returns 0, or -1 with *detail set. */
int parse_outbox_claim(const char *buf, size_t len, int *limit,
                       int64_t *lease_ms, const char **detail);

/* Parses {"entries":[{"sender_id":N,"message_id":"<id>"},...]} with at
 * most MBOX_OUTBOX_BATCH_MAX entries. Returns 0 with *keys a new array of
 * *n keys (caller frees; never NULL on success, even for none), or -1
 * with nothing allocated. */
int parse_outbox_ack(const char *buf, size_t len, mbox_outbox_key **keys,
                     size_t *n);

/* The value of query parameter key (NUL terminated, percent-decoded), or
 * NULL when absent. source is the caller's request. */
typedef const char *(*parse_query_fn)(const void *source, const char *key);

/* The filters of a list read from its query: limit (1..
 * MBOX_LIST_LIMIT_MAX, default LIST_PAGE_SIZE_DEFAULT), offset (0..
 * LIST_OFFSET_MAX), since_seq and since_ts (>= 0), and before (a message
 * id) when allows_before. Returns 0, or -1 with *detail set. */
int parse_list_filter(parse_query_fn query, const void *source,
                      bool allows_before, mbox_filter *f, const char **detail);

#endif
