/*
 * test_b64url.c - Check suite for b64url.c: the RFC 4648 vectors in the
 * URL alphabet, round trips of every length across the internal chunk
 * sizes, exact buffer bounds, and the strict decoder refusing padding,
 * foreign characters, impossible lengths and non-zero unused bits.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"

/* Longer than several encode and decode chunks of b64url.c. */
#define LONG_LEN 1000

static int decode(const char *text, unsigned char *out, size_t cap)
{
    return b64url_decode(text, strlen(text), out, cap);
}

/* Deterministic bytes that use every value. */
static void fill(unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 167 + 13);
}

START_TEST(test_rfc4648_vectors)
{
    static const struct {
        const char *bytes, *text;
    } v[] = {{"", ""},
             {"f", "Zg"},
             {"fo", "Zm8"},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg"},
             {"fooba", "Zm9vYmE"},
             {"foobar", "Zm9vYmFy"}};
    char text[16];
    unsigned char bytes[16];

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = strlen(v[i].bytes);
        ck_assert_int_eq(b64url_encode(v[i].bytes, len, text, sizeof text),
                         (int)strlen(v[i].text));
        ck_assert_str_eq(text, v[i].text);
        if (len == 0)
            continue;
        ck_assert_int_eq(decode(v[i].text, bytes, sizeof bytes), (int)len);
        ck_assert_mem_eq(bytes, v[i].bytes, len);
    }
}
END_TEST

START_TEST(test_url_alphabet_replaces_plus_and_slash)
{
    static const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    unsigned char back[3];
    char text[8];

    ck_assert_int_eq(b64url_encode(bytes, 3, text, sizeof text), 4);
    ck_assert_str_eq(text, "-_-_");
    ck_assert_int_eq(b64url_encode(bytes, 2, text, sizeof text), 3);
    ck_assert_str_eq(text, "-_8");
    ck_assert_int_eq(decode("-_-_", back, sizeof back), 3);
    ck_assert_mem_eq(back, bytes, 3);
}
END_TEST

START_TEST(test_every_length_round_trips)
{
    unsigned char in[LONG_LEN], back[LONG_LEN];
    char text[LONG_LEN / 3 * 4 + 8];

    fill(in, sizeof in);
    for (size_t len = 1; len <= LONG_LEN; len++) {
        int n = b64url_encode(in, len, text, sizeof text);
        ck_assert_int_eq(n, (int)((len * 4 + 2) / 3));
        ck_assert_uint_eq(strlen(text), (size_t)n);
        ck_assert_ptr_null(strchr(text, '='));
        ck_assert_int_eq(b64url_decode(text, (size_t)n, back, sizeof back),
                         (int)len);
        ck_assert_mem_eq(back, in, len);
    }
}
END_TEST

START_TEST(test_encode_needs_room_for_the_nul)
{
    char text[5];

    ck_assert_int_eq(b64url_encode("foo", 3, text, 4), -1);
    ck_assert_int_eq(b64url_encode("foo", 3, text, 5), 4);
    ck_assert_str_eq(text, "Zm9v");
    ck_assert_int_eq(b64url_encode("", 0, text, 0), -1);
    ck_assert_int_eq(b64url_encode("", 0, text, 1), 0);
    ck_assert_str_eq(text, "");
}
END_TEST

/* The decoder writes exactly the decoded bytes: a heap buffer of that
 * size lets AddressSanitizer catch any byte written beyond it. */
START_TEST(test_decode_fits_an_exact_buffer)
{
    unsigned char in[LONG_LEN];
    char text[LONG_LEN / 3 * 4 + 8];

    fill(in, sizeof in);
    for (size_t len = 1; len <= 200; len++) {
        int n = b64url_encode(in, len, text, sizeof text);
        unsigned char *out = malloc(len);
        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(b64url_decode(text, (size_t)n, out, len), (int)len);
        ck_assert_mem_eq(out, in, len);
        ck_assert_int_eq(b64url_decode(text, (size_t)n, out, len - 1), -1);
        free(out);
    }
}
END_TEST

START_TEST(test_decode_refuses_non_canonical_text)
{
    static const char *const bad[] = {
        "",         /* nothing */
        "Z",        /* 4k+1 characters cannot be */
        "Zm9vY",    /* same, after a whole group */
        "Zg==",     /* padding */
        "Zg=",      /* partial padding */
        "Zm8=",     /* padding after three characters */
        "Zh",       /* low 4 bits of the last character set */
        "Zm9",      /* low 2 bits of the last character set */
        "Zm+v",     /* standard alphabet */
        "Zm/v",     /* standard alphabet */
        "Zm 9v",    /* blank */
        "Zm9v\n",   /* newline */
        "Zm9v.Zm9v" /* separator */
    };
    unsigned char out[16];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (decode(bad[i], out, sizeof out) != -1)
            ck_abort_msg("accepted \"%s\"", bad[i]);
    }
}
END_TEST

START_TEST(test_decode_refuses_nul_and_high_bytes)
{
    static const char with_nul[] = {'Z', 'm', '\0', 'v'};
    static const char high[] = {'Z', 'm', (char)0xc3, 'v'};
    unsigned char out[8];

    ck_assert_int_eq(b64url_decode(with_nul, 4, out, sizeof out), -1);
    ck_assert_int_eq(b64url_decode(high, 4, out, sizeof out), -1);
}
END_TEST

START_TEST(test_is_char_is_the_url_alphabet)
{
    int count = 0;

    for (int c = -128; c < 128; c++)
        count += b64url_is_char((char)c);
    ck_assert_int_eq(count, 64);
    ck_assert(b64url_is_char('A') && b64url_is_char('z') &&
              b64url_is_char('0') && b64url_is_char('-') &&
              b64url_is_char('_'));
    ck_assert(!b64url_is_char('+') && !b64url_is_char('/') &&
              !b64url_is_char('=') && !b64url_is_char('.'));
}
END_TEST

/* A bad character far into a long text, beyond the first chunks, is
 * still refused. */
START_TEST(test_long_text_is_checked_to_the_end)
{
    unsigned char in[LONG_LEN], out[LONG_LEN];
    char text[LONG_LEN / 3 * 4 + 8];

    fill(in, sizeof in);
    int n = b64url_encode(in, sizeof in, text, sizeof text);
    ck_assert_int_gt(n, 200);
    text[n - 5] = '+';
    ck_assert_int_eq(b64url_decode(text, (size_t)n, out, sizeof out), -1);
}
END_TEST

static Suite *b64url_suite(void)
{
    Suite *s = suite_create("b64url");
    TCase *encode = tcase_create("encode");
    TCase *strict = tcase_create("strict");

    tcase_add_test(encode, test_rfc4648_vectors);
    tcase_add_test(encode, test_url_alphabet_replaces_plus_and_slash);
    tcase_add_test(encode, test_every_length_round_trips);
    tcase_add_test(encode, test_encode_needs_room_for_the_nul);
    tcase_add_test(encode, test_decode_fits_an_exact_buffer);
    tcase_add_test(strict, test_decode_refuses_non_canonical_text);
    tcase_add_test(strict, test_decode_refuses_nul_and_high_bytes);
    tcase_add_test(strict, test_is_char_is_the_url_alphabet);
    tcase_add_test(strict, test_long_text_is_checked_to_the_end);
    suite_add_tcase(s, encode);
    suite_add_tcase(s, strict);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(b64url_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
