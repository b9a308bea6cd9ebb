/*
 * synctoken.h - opaque, URL-safe sync tokens for delta fetches.
 *
 * A token names the list it was issued for (the conversation list of a
 * user, or one conversation's messages of a user) and the mailbox change
 * counter (seq) at the time of the answer. It is base64url (no padding) of
 * "v1|c|<user>|<seq>" or "v1|m|<user>|<seq>|<conversation id>". A token
 * that does not decode, or that was issued for another list, is a 400.
 */
#ifndef MSG_SYNCTOKEN_H
#define MSG_SYNCTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"

typedef enum { SYNC_CONVERSATIONS = 'c', SYNC_MESSAGES = 'm' } sync_kind;

typedef struct sync_token {
    sync_kind kind;
    int64_t user_id;
    int64_t seq;                                /* >= 0 */
    char conversation_id[IDS_CONVERSATION_MAX]; /* "" for SYNC_CONVERSATIONS */
} sync_token;

#define SYNCTOKEN_MAX 160

/* Encodes t into out (NUL terminated). Returns the length or -1. */
int synctoken_encode(const sync_token *t, char *out, size_t cap);

/* Decodes s[0..len). Returns 0 and fills *t, or -1 if malformed. */
int synctoken_decode(const char *s, size_t len, sync_token *t);

#endif
