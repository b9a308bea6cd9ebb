/*
 * hot_entry.h - the members of the hot windows in Redis:
 * "<20-digit id>|<conversation id>|<json>".
 *
 * The fixed-width id first makes Redis's lexical order of equal-score
 * zset members the id order; the conversation id lets the Lua scripts
 * find an entry's conversation (hot_scripts.h); the JSON is the public
 * item as it is served. Building and splitting are pure, so the fuzz
 * target (tests/fuzz/fuzz_hot_entry.c) checks that every entry written
 * reads back as written and that nothing else Redis could hand back is
 * taken for an entry.
 */
#ifndef CACHE_HOT_ENTRY_H
#define CACHE_HOT_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/* Width of the id field: INT64_MAX has 19 digits, zero padded. */
#define HOT_ENTRY_ID_DIGITS 20

/* "<20-digit id>|<cid>|<json>", malloc'd (caller frees), or NULL when
 * id is negative, cid is not a canonical conversation id
 * ("<low>_<high>", so it holds no '|'), json is empty, or allocation
 * fails. */
char *hot_entry(int64_t id, const char *cid, const char *json);

/* The parts of an entry; cid and json point into the entry. */
typedef struct hot_entry_parts {
    int64_t id;
    const char *cid;
    size_t cid_len;
    const char *json; /* up to the end of the entry */
    size_t json_len;
} hot_entry_parts;

/* Splits entry[0..len) as hot_entry writes it. Returns 0, or -1 when it
 * is not such an entry (a corrupt window: the caller reads storage). */
int hot_entry_split(const char *entry, size_t len, hot_entry_parts *out);

#endif
