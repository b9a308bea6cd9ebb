/*
 * ids.h - time-ordered 64-bit message ids and conversation ids.
 *
 * A message id is (ms since ID_EPOCH_MS) << 22 | node << 12 | seq. The
 * generator is a hybrid logical clock: each id is larger than every id it
 * issued before and larger than a caller-given floor (the largest id in
 * the sender's mailbox), even if this node's clock is behind. That is how
 * a reply sorts after what it answers and a sender's sends stay ordered
 * across nodes and failovers. sent_at is derived from the id (ids_ms), so
 * it never goes backwards either.
 */
#ifndef MSG_IDS_H
#define MSG_IDS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ids_gen {
    pthread_mutex_t lock; /* guards last_ms and seq */
    int64_t last_ms;      /* ms since ID_EPOCH_MS of the last id issued */
    int seq;
    int node; /* 0..ID_NODE_MAX, unique among live cache nodes */
} ids_gen;

/* Returns 0, or -1 if node is out of range. */
int ids_init(ids_gen *g, int node);
void ids_destroy(ids_gen *g);

/* Next id: greater than floor and than every id g issued. now_ms is the
 * wall clock in ms since the Unix epoch (a parameter so tests can drive
 * it). Thread safe. Returns -1 if no such id fits in 63 bits (a floor
 * at the very end of the id space: only a corrupt mailbox holds one). */
int64_t ids_next(ids_gen *g, int64_t floor, int64_t now_ms);

/* Unix milliseconds encoded in an id. */
int64_t ids_ms(int64_t id);

/* Parses a decimal message id (1..2^63-1, no sign, no leading zeros,
 * no spaces). Returns 0 and sets *id, or -1. */
int ids_parse(const char *s, size_t len, int64_t *id);

/* Parses a decimal user id in [1, MSG_USER_ID_MAX], no leading zeros.
 * Returns 0 and sets *id, or -1. */
int ids_parse_user(const char *s, size_t len, int64_t *id);

/* Conversation id of two distinct users: "<low>_<high>" in decimal.
 * Writes into out (NUL terminated); returns its length or -1. */
int ids_conversation(int64_t a, int64_t b, char *out, size_t cap);
#define IDS_CONVERSATION_MAX 48

/* Parses a conversation id; sets *low < *high. Returns 0 or -1. */
int ids_parse_conversation(const char *s, size_t len, int64_t *low,
                           int64_t *high);

#endif
