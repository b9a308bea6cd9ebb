/*
 * hmac.c - per-thread HMAC-SHA256 and SHA-256. See hmac.h.
 *
 * A slot is only ever touched by its own thread and freed when the
 * thread exits. It keeps a copy of the secret its context is keyed
 * with, compared in constant time, and wiped before it is freed.
 */
#include "hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    EVP_MAC_CTX *mac; /* keyed with key[0..key_len) when is_keyed */
    EVP_MD_CTX *digest;
    char *key; /* copy of the secret, NUL terminated */
    size_t key_len;
    bool is_keyed;
} slot;

static pthread_once_t once = PTHREAD_ONCE_INIT;
/* Written once by setup under once, then only read. */
static EVP_MAC *fetched_hmac;
static EVP_MD *fetched_sha256;
static pthread_key_t slot_key;
static bool is_ready;

static void forget_key(slot *s)
{
    if (s->key != NULL) {
        OPENSSL_cleanse(s->key, s->key_len);
        free(s->key);
    }
    s->key = NULL;
    s->key_len = 0;
    s->is_keyed = false;
}

static void slot_free(void *p)
{
    slot *s = p;
    if (s == NULL)
        return;
    forget_key(s);
    EVP_MAC_CTX_free(s->mac);
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
    s->mac = EVP_MAC_CTX_new(fetched_hmac);
    s->digest = EVP_MD_CTX_new();
    if (s->mac == NULL || s->digest == NULL ||
        pthread_setspecific(slot_key, s) != 0) {
        slot_free(s);
        return NULL;
    }
    return s;
}

/* Keys the slot's HMAC context with secret[0..len); on failure the slot
 * holds no key, so the next call keys it afresh. */
static bool set_key(slot *s, const char *secret, size_t len)
{
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    forget_key(s);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return false;
    memcpy(copy, secret, len + 1);
    if (EVP_MAC_init(s->mac, (const unsigned char *)secret, len, params) != 1) {
        OPENSSL_cleanse(copy, len);
        free(copy);
        return false;
    }
    s->key = copy;
    s->key_len = len;
    s->is_keyed = true;
    return true;
}

EVP_MAC_CTX *hmac_begin(const char *secret)
{
    slot *s = thread_slot();
    if (s == NULL || secret == NULL)
        return NULL;
    size_t len = strlen(secret);
    if (s->is_keyed && s->key_len == len &&
        CRYPTO_memcmp(s->key, secret, len) == 0)
        return EVP_MAC_init(s->mac, NULL, 0, NULL) == 1 ? s->mac : NULL;
    return set_key(s, secret, len) ? s->mac : NULL;
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
