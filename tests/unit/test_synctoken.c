/*
 * test_synctoken.c - Check suite for synctoken.c: the wire format is
 * pinned, tokens round-trip, are URL-safe, and every malformed variant
 * (bad base64url, padding, wrong version or kind, bad numbers, foreign
 * conversations, truncation) is refused.
 */
#include <check.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "synctoken.h"

/* Base64url without padding of an arbitrary payload, written here with
 * OpenSSL directly so tests can forge tokens the encoder never makes. */
static void b64url(const char *payload, char *out)
{
    int n =
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)payload,
                        (int)strlen(payload));
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

static int decode(const char *s, sync_token *t)
{
    return synctoken_decode(s, strlen(s), t);
}

static int decode_payload(const char *payload, sync_token *t)
{
    char tok[512];

    b64url(payload, tok);
    return decode(tok, t);
}

static sync_token conv_token(int64_t user, int64_t seq)
{
    sync_token t;

    memset(&t, 0, sizeof t);
    t.kind = SYNC_CONVERSATIONS;
    t.user_id = user;
    t.seq = seq;
    return t;
}

static sync_token msg_token(int64_t user, int64_t seq, const char *cid)
{
    sync_token t = conv_token(user, seq);

    t.kind = SYNC_MESSAGES;
    snprintf(t.conversation_id, sizeof t.conversation_id, "%s", cid);
    return t;
}

START_TEST(test_format_is_pinned)
{
    char out[SYNCTOKEN_MAX + 1];
    sync_token c = conv_token(42, 7), m = msg_token(42, 0, "7_42");

    ck_assert_int_eq(synctoken_encode(&c, out, sizeof out), 12);
    ck_assert_str_eq(out, "djF8Y3w0Mnw3"); /* "v1|c|42|7" */
    ck_assert_int_eq(synctoken_encode(&m, out, sizeof out), 19);
    ck_assert_str_eq(out, "djF8bXw0MnwwfDdfNDI"); /* "v1|m|42|0|7_42" */
}
END_TEST

START_TEST(test_round_trip_both_kinds)
{
    char out[SYNCTOKEN_MAX + 1];
    sync_token t, in[] = {
                      conv_token(1, 0),
                      conv_token(MSG_USER_ID_MAX, INT64_MAX),
                      msg_token(42, 99, "7_42"),
                      msg_token(7, 1, "7_42"),
                      msg_token(MSG_USER_ID_MAX, INT64_MAX,
                                "9007199254740990_9007199254740991"),
                  };

    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        int n = synctoken_encode(&in[i], out, sizeof out);
        ck_assert_int_gt(n, 0);
        ck_assert_int_le(n, SYNCTOKEN_MAX);
        ck_assert_uint_eq(strlen(out), (size_t)n);
        ck_assert_int_eq(decode(out, &t), 0);
        ck_assert_int_eq(t.kind, in[i].kind);
        ck_assert_int_eq(t.user_id, in[i].user_id);
        ck_assert_int_eq(t.seq, in[i].seq);
        ck_assert_str_eq(t.conversation_id, in[i].conversation_id);
    }
}
END_TEST

START_TEST(test_tokens_are_url_safe)
{
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";
    char out[SYNCTOKEN_MAX + 1];
    int unsafe = 0;

    /* The property over many tokens of varied lengths and digits (all
     * three base64 tail shapes). */
    for (int64_t seq = 0; seq < 3000; seq++) {
        char cid[IDS_CONVERSATION_MAX];
        snprintf(cid, sizeof cid, "%lld_%lld", (long long)(1000 + seq),
                 (long long)(1001 + seq));
        sync_token t = msg_token(1000 + seq, seq * 7919, cid);
        ck_assert_int_gt(synctoken_encode(&t, out, sizeof out), 0);
        unsafe += strspn(out, safe) != strlen(out);
    }
    ck_assert_int_eq(unsafe, 0);
}
END_TEST

START_TEST(test_encode_refuses_invalid_tokens)
{
    char out[SYNCTOKEN_MAX + 1];
    sync_token t = conv_token(0, 1);

    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = conv_token(MSG_USER_ID_MAX + 1, 1);
    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = conv_token(5, -1);
    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = msg_token(5, 1, "7_42"); /* user not in the conversation */
    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = msg_token(5, 1, "");
    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = conv_token(5, 1);
    t.kind = (sync_kind)'x';
    ck_assert_int_eq(synctoken_encode(&t, out, sizeof out), -1);
    t = conv_token(42, 7); /* needs 12 characters and the NUL */
    ck_assert_int_eq(synctoken_encode(&t, out, 12), -1);
    ck_assert_int_eq(synctoken_encode(&t, out, 13), 12);
}
END_TEST

START_TEST(test_decode_refuses_bad_text)
{
    static const char *const bad[] = {
        "",
        "!!!!",
        "djF8Y3w0Mnw3=", /* padding */
        "djF8Y3w0Mnw3==",
        "djF8Y3w0Mnw", /* truncated by one character */
        "djF8Y3w0Mn",  /* truncated */
        "djF8Y3w0M",   /* impossible length (4n + 1) */
        "djF8Y3w0Mnw3 ",
        " djF8Y3w0Mnw3",
        "djF8Y3w0Mn+3", /* standard alphabet */
        "djF8Y3w0Mn/3",
        "djF8Y3w0Mnw3\n",
        "djF8bXw0MnwwfDdfNDJ", /* non-zero trailing bits, 3-char tail */
        "djF8Y3w0MnwxMB",      /* non-zero trailing bits, 2-char tail */
    };
    sync_token t;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (decode(bad[i], &t) != -1)
            ck_abort_msg("accepted \"%s\"", bad[i]);
    }
    ck_assert_int_eq(synctoken_decode("djF8Y3w0Mnw3\0", 13, &t), -1);
    ck_assert_int_eq(decode("djF8Y3w0Mnw3", &t), 0);
    ck_assert_int_eq(decode("djF8Y3w0MnwxMA", &t), 0); /* "v1|c|42|10" */
    ck_assert_int_eq(t.seq, 10);
}
END_TEST

START_TEST(test_decode_refuses_bad_payloads)
{
    static const char *const bad[] = {
        "v2|c|42|7",
        "V1|c|42|7",
        "v1|x|42|7",
        "v1|cc|42|7",
        "v1|c|0|7",
        "v1|c|042|7",
        "v1|c|9007199254740992|7",
        "v1|c|-42|7",
        "v1|c|42|-1",
        "v1|c|42|07",
        "v1|c|42|+7",
        "v1|c|42|7a",
        "v1|c|42|",
        "v1|c|42|9223372036854775808",
        "v1|c|42",
        "v1|c|42|7|",
        "v1|c|42|7|7_42",
        "v1|m|42|7",
        "v1|m|42|7|",
        "v1|m|42|7|8_9",  /* not a conversation of user 42 */
        "v1|m|42|7|42_7", /* not canonical */
        "v1|m|42|7|42_42",
        "v1|m|42|7|7_42|x",
        "v1|m|42|7|7_42\n",
        "|v1|c|42|7",
    };
    sync_token t;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (decode_payload(bad[i], &t) != -1)
            ck_abort_msg("accepted payload \"%s\"", bad[i]);
    }
    ck_assert_int_eq(decode_payload("v1|c|42|0", &t), 0);
    ck_assert_int_eq(t.seq, 0);
}
END_TEST

START_TEST(test_decode_refuses_over_long_tokens)
{
    char tok[SYNCTOKEN_MAX + 2];
    sync_token t;

    memset(tok, 'A', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    ck_assert_int_eq(synctoken_decode(tok, SYNCTOKEN_MAX + 1, &t), -1);
    ck_assert_int_eq(synctoken_decode(tok, SYNCTOKEN_MAX, &t), -1);
}
END_TEST

START_TEST(test_failed_decode_leaves_output_alone)
{
    sync_token t = conv_token(5, 5);

    ck_assert_int_eq(decode_payload("v1|m|42|7|8_9", &t), -1);
    ck_assert_int_eq(t.kind, SYNC_CONVERSATIONS);
    ck_assert_int_eq(t.user_id, 5);
    ck_assert_int_eq(t.seq, 5);
}
END_TEST

static Suite *synctoken_suite(void)
{
    Suite *s = suite_create("synctoken");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_format_is_pinned);
    tcase_add_test(tc, test_round_trip_both_kinds);
    tcase_add_test(tc, test_tokens_are_url_safe);
    tcase_add_test(tc, test_encode_refuses_invalid_tokens);
    tcase_add_test(tc, test_decode_refuses_bad_text);
    tcase_add_test(tc, test_decode_refuses_bad_payloads);
    tcase_add_test(tc, test_decode_refuses_over_long_tokens);
    tcase_add_test(tc, test_failed_decode_leaves_output_alone);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(synctoken_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
