/*
 * reads_wire.h - the answer of a batch of list reads (POST
 * /internal/reads, docs/internal-api.md), written by the cache node and
 * read by the gateway:
 *
 *   {"answers":[{"status":200,"length":57,"body":{...}},...]}
 *
 * Each body is the exact text its GET would have sent (JSON), "length"
 * bytes of it, or null with length 0 for an empty one. The text stays
 * JSON for anyone who looks, but its reader needs no JSON parser: it
 * checks each answer's fixed frame and slices the body by its length,
 * so passing a page on costs one copy instead of an escape, a parse and
 * an unescape.
 */
#ifndef MSG_READS_WIRE_H
#define MSG_READS_WIRE_H

#include <stddef.h>

#include "jsontext.h"

/* Writing: rw_begin, one rw_answer per read in order, rw_end. */
void rw_begin(jt_buf *b);
void rw_answer(jt_buf *b, int status, const char *body, size_t len);
void rw_end(jt_buf *b);

/* Reading: the answers of text[0..len), in order. */
typedef struct rw_reader {
    const char *p, *end;
    int count; /* answers read so far */
} rw_reader;

/* Returns 0 when text starts an answer list, else -1. */
int rw_open(rw_reader *r, const char *text, size_t len);
/* Returns 1 with the next answer (*body points into the text, *len
 * bytes; status in 100..599), 0 at the end of a well-formed list, -1 on
 * anything else: the reader then stops, and the answers read so far
 * stay good. */
int rw_next(rw_reader *r, int *status, const char **body, size_t *len);

#endif
