/*
 * memo.c - mailbox meta of owned users in memory. See memo.h.
 *
 * A slot is valid while its gen equals the table's: memo_clear only
 * increments the table's gen, so it costs nothing per slot. Slots are
 * guarded by one of MEMO_STRIPES mutexes (slot index modulo), short
 * critical sections of a few loads and stores.
 */
#include "memo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MEMO_STRIPES 64

typedef struct slot {
    int64_t uid;
    hot_meta meta;
    uint64_t gen;   /* 0: empty */
    uint64_t stamp; /* forgets of this slot */
} slot;

struct memo {
    uint64_t mask;
    _Atomic uint64_t gen; /* starts at 1 */
    pthread_mutex_t stripes[MEMO_STRIPES];
    slot *slots;
};

memo *memo_new(unsigned bits)
{
    if (bits < 4 || bits > 24)
        return NULL;
    memo *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->slots = calloc((size_t)1 << bits, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->mask = ((uint64_t)1 << bits) - 1;
    atomic_init(&m->gen, 1);
    for (int i = 0; i < MEMO_STRIPES; i++)
        pthread_mutex_init(&m->stripes[i], NULL);
    return m;
}

void memo_free(memo *m)
{
    if (!m)
        return;
    for (int i = 0; i < MEMO_STRIPES; i++)
        pthread_mutex_destroy(&m->stripes[i]);
    free(m->slots);
    free(m);
}

/* User ids are dense in places (sequential sign-ups): mix the bits so
 * neighbours spread over the table. */
static uint64_t slot_of(const memo *m, int64_t uid)
{
    uint64_t x = (uint64_t)uid;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return x & m->mask;
}

static pthread_mutex_t *stripe_of(memo *m, uint64_t i)
{
    return &m->stripes[i % MEMO_STRIPES];
}

memo_ticket memo_take_ticket(memo *m, int64_t uid)
{
    uint64_t i = slot_of(m, uid);
    memo_ticket t;
    pthread_mutex_lock(stripe_of(m, i));
    t.gen = atomic_load(&m->gen);
    t.stamp = m->slots[i].stamp;
    pthread_mutex_unlock(stripe_of(m, i));
    return t;
}

bool memo_get(memo *m, int64_t uid, hot_meta *out)
{
    uint64_t i = slot_of(m, uid);
    bool hit = false;
    pthread_mutex_lock(stripe_of(m, i));
    const slot *s = &m->slots[i];
    if (s->gen == atomic_load(&m->gen) && s->uid == uid) {
        *out = s->meta;
        hit = true;
    }
    pthread_mutex_unlock(stripe_of(m, i));
    return hit;
}

void memo_put(memo *m, memo_ticket t, int64_t uid, const hot_meta *meta)
{
    uint64_t i = slot_of(m, uid);
    pthread_mutex_lock(stripe_of(m, i));
    slot *s = &m->slots[i];
    uint64_t gen = atomic_load(&m->gen);
    bool is_newer =
        !(s->gen == gen && s->uid == uid && s->meta.seq >= meta->seq);
    if (t.gen == gen && t.stamp == s->stamp && is_newer) {
        /* Taking the slot from another user also takes away what this
         * user's entry would have refused: a reader of uid that read
         * before a newer put, then lost the slot to another user, must
         * not install its older meta now. So such tickets go stale. */
        if (s->gen == gen && s->uid != uid)
            s->stamp++;
        s->uid = uid;
        s->meta = *meta;
        s->gen = gen;
    }
    pthread_mutex_unlock(stripe_of(m, i));
}

void memo_forget(memo *m, int64_t uid)
{
    uint64_t i = slot_of(m, uid);
    pthread_mutex_lock(stripe_of(m, i));
    slot *s = &m->slots[i];
    /* The stamp moves even if another user holds the slot: a reader of
     * uid with an older ticket must not install what it read. */
    s->stamp++;
    if (s->uid == uid)
        s->gen = 0;
    pthread_mutex_unlock(stripe_of(m, i));
}

void memo_clear(memo *m)
{
    atomic_fetch_add(&m->gen, 1);
}
