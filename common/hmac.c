/*
 * hmac.c - per-thread HMAC-SHA256 and SHA-256. See hmac.h.
 *
 * A slot is only ever touched by its own thread and freed when the
 * thread exits. Each of its keyed contexts keeps a copy of the secret it
 * is keyed with, compared in constant time, and wiped before it is
 * freed.
 */
#include "hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Secrets a thread keeps a context for. A gateway thread uses two on
 * every request (the JWT secret, then the internal one to sign its hop):
 * with one context it keyed HMAC again on every call, 4% of its CPU. */
#define HMAC_KEYS_PER_THREAD 4

typedef struct keyed {
    EVP_MAC_CTX *mac; /* keyed with key[0..key_len) when key != NULL */
    char *key;        /* copy of the secret, NUL terminated */
    size_t key_len;
} keyed;

typedef struct slot {
    keyed keys[HMAC_KEYS_PER_THREAD];
    int next_evict; /* round robin once every context is keyed */
    unsigned long rekeys;
    EVP_MD_CTX *digest;
} slot;

static pthread_once_t once = PTHREAD_ONCE_INIT;
/* Written once by setup under once, then only read. */
static EVP_MAC *fetched_hmac;
static EVP_MD *fetched_sha256;
static pthread_key_t slot_key;
static bool is_ready;

static void forget_key(keyed *k)
{
    if (k->key != NULL) {
        OPENSSL_cleanse(k->key, k->key_len);
        free(k->key);
    }
    k->key = NULL;
    k->key_len = 0;
}

static void slot_free(void *p)
{
    slot *s = p;
    if (s == NULL)
        return;
    for (int i = 0; i < HMAC_KEYS_PER_THREAD; i++) {
        forget_key(&s->keys[i]);
        EVP_MAC_CTX_free(s->keys[i].mac);
    }
    EVP_MD_CTX_free(s->digest);
    free(s);
}

static void setup(void)
{
    fetched_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    fetched_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    is_ready = fetched_hmac != NULL && fetched_sha256 != NULL &&
               pthread_key_create(&slot_key, slot_free) == 0;
}

/* The calling thread's slot, made on first use; NULL on failure. */
static slot *thread_slot(void)
{
    if (pthread_once(&once, setup) != 0 || !is_ready)
        return NULL;
    slot *s = pthread_getspecific(slot_key);
    if (s != NULL)
        return s;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    bool ok = (s->digest = EVP_MD_CTX_new()) != NULL;
    for (int i = 0; ok && i < HMAC_KEYS_PER_THREAD; i++)
        ok = (s->keys[i].mac = EVP_MAC_CTX_new(fetched_hmac)) != NULL;
    if (!ok || pthread_setspecific(slot_key, s) != 0) {
        slot_free(s);
        return NULL;
    }
    return s;
}

/* Keys k with secret[0..len); on failure k holds no key, so the next
 * call keys it afresh. */
static bool set_key(keyed *k, const char *secret, size_t len)
{
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    forget_key(k);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return false;
    memcpy(copy, secret, len + 1);
    if (EVP_MAC_init(k->mac, (const unsigned char *)secret, len, params) != 1) {
        OPENSSL_cleanse(copy, len);
        free(copy);
        return false;
    }
    k->key = copy;
    k->key_len = len;
    return true;
}

/* The context keyed with secret, if the slot has one. */
static keyed *find_key(slot *s, const char *secret, size_t len)
{
    for (int i = 0; i < HMAC_KEYS_PER_THREAD; i++) {
        keyed *k = &s->keys[i];
        if (k->key != NULL && k->key_len == len &&
            CRYPTO_memcmp(k->key, secret, len) == 0)
            return k;
    }
    return NULL;
}

/* A context to key for a new secret: a free one, else the next in turn. */
static keyed *free_key(slot *s)
{
    for (int i = 0; i < HMAC_KEYS_PER_THREAD; i++)
        if (s->keys[i].key == NULL)
            return &s->keys[i];
    keyed *k = &s->keys[s->next_evict];
    s->next_evict = (s->next_evict + 1) % HMAC_KEYS_PER_THREAD;
    return k;
}

EVP_MAC_CTX *hmac_begin(const char *secret)
{
    slot *s = thread_slot();
    if (s == NULL || secret == NULL)
        return NULL;
    size_t len = strlen(secret);
    keyed *k = find_key(s, secret, len);
    if (k != NULL) /* back to the keyed state: no key hashing */
        return EVP_MAC_init(k->mac, NULL, 0, NULL) == 1 ? k->mac : NULL;
    k = free_key(s);
    s->rekeys++;
    return set_key(k, secret, len) ? k->mac : NULL;
}

unsigned long hmac_thread_rekeys(void)
{
    slot *s = thread_slot();
    return s != NULL ? s->rekeys : 0;
}

int hmac_sha256(const char *secret, const void *data, size_t len,
                unsigned char out[HMAC_SHA256_LEN])
{
    EVP_MAC_CTX *ctx = hmac_begin(secret);
    size_t out_len = 0;
    if (ctx == NULL ||
        EVP_MAC_update(ctx, (const unsigned char *)data, len) != 1 ||
        EVP_MAC_final(ctx, out, &out_len, HMAC_SHA256_LEN) != 1 ||
        out_len != HMAC_SHA256_LEN)
        return -1;
    return 0;
}

bool hmac_digest_sha256(const void *data, size_t len,
                        unsigned char out[HMAC_SHA256_LEN])
{
    slot *s = thread_slot();
    unsigned int out_len = 0;
    return s != NULL &&
           EVP_DigestInit_ex2(s->digest, fetched_sha256, NULL) == 1 &&
           EVP_DigestUpdate(s->digest, len > 0 ? data : "", len) == 1 &&
           EVP_DigestFinal_ex(s->digest, out, &out_len) == 1 &&
           out_len == HMAC_SHA256_LEN;
}
