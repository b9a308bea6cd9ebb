/*
 * lg_work.h - the workloads of the load generator: which request comes
 * next, and what to keep from an answer.
 *
 * The generator's users are ids base+1 .. base+users, a range far above
 * what the tests draw from by default, each with its own HS256 token
 * minted with the cluster's JWT secret. Users pair up (base+1 with
 * base+2, ...): the seed workload fills each pair's conversation, and the
 * message-page workload reads it.
 *
 *   send           POST /v1/messages, random sender and recipient, a fresh
 *                  client_message_id each time
 *   seed           sends within each pair, round after round (count-bound)
 *   conversations  GET a random user's first page of conversations
 *   messages       GET a random user's first page of its pair conversation
 *   delta          GET conversations?since=<that user's latest token>
 *   tokens         GET each user's conversations once, keeping its
 *                  sync_token (the preparation of delta and mix)
 *   mix            20% send, 80% reads (conversations, messages, delta)
 *   get            GET the URL as given (the HTTP ceiling: /healthz)
 *
 * Building a request is thread safe (per-thread random state, atomics);
 * lg_work_answer for tokens writes one slot per user index, which only
 * the request for that index touches.
 */
#ifndef LG_WORK_H
#define LG_WORK_H

#include <stddef.h>
#include <stdint.h>

#include "lg_http.h"

typedef enum {
    LG_SEND,
    LG_SEED,
    LG_CONVERSATIONS,
    LG_MESSAGES,
    LG_DELTA,
    LG_TOKENS,
    LG_MIX,
    LG_GET,
} lg_kind;

/* Longest request the generator builds, bytes. */
#define LG_REQUEST_MAX 4096
/* Longest content of a sent message, bytes. */
#define LG_CONTENT_MAX 1024

typedef struct lg_work {
    lg_kind kind;
    lg_url url;
    int64_t base_user;
    int users;
    char **tokens;      /* JWT per user, owned */
    char **sync_tokens; /* latest conversations token per user, owned */
    char nonce[24];     /* makes client_message_ids unique per run */
    int content_bytes;
} lg_work;

/* Parses a workload name; -1 when unknown. */
int lg_kind_parse(const char *name, lg_kind *out);
const char *lg_kind_name(lg_kind kind);

/* Mints every user's token with secret (valid ttl_s seconds). Returns 0,
 * or -1 on allocation failure (w then owns what was built). */
int lg_work_init(lg_work *w, const char *secret, int64_t ttl_s);
void lg_work_destroy(lg_work *w);

/* Writes request number index into buf (LG_REQUEST_MAX bytes); rng is
 * the calling thread's random state. Returns the length, or -1. */
int lg_work_request(lg_work *w, uint64_t index, uint64_t *rng, char *buf);

/* The answer to request number index; body is the response body. Only
 * the tokens workload keeps anything. */
void lg_work_answer(lg_work *w, uint64_t index, int status, const char *body,
                    size_t len);

/* How many requests a count-bound workload has (seed: users/2 * rounds,
 * tokens: users); 0 for the others. */
uint64_t lg_work_count(const lg_work *w, int seed_rounds);

#endif
