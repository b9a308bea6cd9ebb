/*
 * test_hmac.c - Check suite for hmac.c, the per-thread keyed contexts
 * behind every JWT check and every internal hop's signature.
 *
 * Every MAC is compared with OpenSSL's one-shot HMAC(), which keys a
 * fresh context on each call, so a context reused under the wrong key
 * cannot pass. The re-key counter shows that a thread using a few
 * secrets in turn (a gateway thread uses two per request) keys each
 * once, and that more secrets than contexts still give right answers.
 */
#include <check.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "hmac.h"

static const char *const SECRETS[] = {
    "jwt-secret-0123456789abcdef0123456789",
    "internal-0123456789abcdef01234567",
    "internal-0123456789abcdef01234567x", /* extends the one before */
    "fourth", "fifth secret"};
#define NSECRETS (int)(sizeof SECRETS / sizeof SECRETS[0])

/* hmac_sha256 agrees with a one-shot HMAC under secret. */
static int agrees(const char *secret, const char *data)
{
    unsigned char got[HMAC_SHA256_LEN], want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    if (hmac_sha256(secret, data, strlen(data), got) != 0)
        return 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data,
         strlen(data), want, &want_len);
    return want_len == HMAC_SHA256_LEN &&
           memcmp(got, want, HMAC_SHA256_LEN) == 0;
}

START_TEST(test_two_secrets_in_turn_key_once_each)
{
    unsigned long before = hmac_thread_rekeys();
    char data[64];
    for (int i = 0; i < 200; i++) {
        snprintf(data, sizeof data, "{\"round\":%d}", i);
        ck_assert(agrees(SECRETS[i % 2], data));
    }
    ck_assert_uint_eq(hmac_thread_rekeys() - before, 2);
}
END_TEST

START_TEST(test_more_secrets_than_contexts_stay_right)
{
    char data[64];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < NSECRETS; i++) {
            snprintf(data, sizeof data, "payload %d/%d", round, i);
            ck_assert_msg(agrees(SECRETS[i], data), "secret %d round %d", i,
                          round);
        }
    /* Back to a steady pair: no more keying once both are held. */
    ck_assert(agrees(SECRETS[0], "a"));
    ck_assert(agrees(SECRETS[1], "b"));
    unsigned long steady = hmac_thread_rekeys();
    for (int i = 0; i < 50; i++)
        ck_assert(agrees(SECRETS[i % 2], "steady"));
    ck_assert_uint_eq(hmac_thread_rekeys(), steady);
}
END_TEST

START_TEST(test_a_prefix_is_another_key)
{
    unsigned char a[HMAC_SHA256_LEN], b[HMAC_SHA256_LEN];
    ck_assert_int_eq(hmac_sha256(SECRETS[1], "x", 1, a), 0);
    ck_assert_int_eq(hmac_sha256(SECRETS[2], "x", 1, b), 0);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(agrees(SECRETS[1], "x"));
    ck_assert(agrees(SECRETS[2], "x"));
}
END_TEST

static void *count_rekeys(void *arg)
{
    unsigned long *out = arg;
    for (int i = 0; i < 10; i++)
        if (!agrees(SECRETS[i % 2], "thread"))
            return NULL;
    *out = hmac_thread_rekeys();
    return NULL;
}

START_TEST(test_each_thread_has_its_own_contexts)
{
    ck_assert(agrees(SECRETS[0], "main thread keys first"));
    unsigned long other = 0;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, count_rekeys, &other), 0);
    pthread_join(t, NULL);
    /* A fresh thread keys its own two contexts, whatever this one holds. */
    ck_assert_uint_eq(other, 2);
}
END_TEST

static Suite *hmac_suite(void)
{
    Suite *s = suite_create("hmac");
    TCase *tc = tcase_create("keyed contexts");
    tcase_add_test(tc, test_two_secrets_in_turn_key_once_each);
    tcase_add_test(tc, test_more_secrets_than_contexts_stay_right);
    tcase_add_test(tc, test_a_prefix_is_another_key);
    tcase_add_test(tc, test_each_thread_has_its_own_contexts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hmac_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
