/*
 * test_utf8.c - Check suite for utf8.c: strict validation at every
 * boundary RFC 3629 draws, checked against an independent decoder, and
 * snippet cutting by code points.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static bool valid(const char *s)
{
    return utf8_is_valid(s, strlen(s));
}

/* Reference validator written from the definition rather than from
 * byte ranges: decode the code point, then refuse overlong forms,
 * surrogates and values above U+10FFFF. */
static bool reference_valid(const unsigned char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + n > len)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

START_TEST(test_ascii_empty_and_nul_are_valid)
{
    ck_assert(utf8_is_valid("", 0));
    ck_assert(valid("hello, world"));
    ck_assert(utf8_is_valid("a\0b", 3));
    ck_assert(utf8_is_valid("\0", 1));
}
END_TEST

START_TEST(test_boundaries_of_each_length_are_valid)
{
    ck_assert(valid("\xC2\x80"));                     /* U+0080 */
    ck_assert(valid("\xDF\xBF"));                     /* U+07FF */
    ck_assert(valid("\xE0\xA0\x80"));                 /* U+0800 */
    ck_assert(valid("\xED\x9F\xBF"));                 /* U+D7FF */
    ck_assert(valid("\xEE\x80\x80"));                 /* U+E000 */
    ck_assert(valid("\xEF\xBF\xBF"));                 /* U+FFFF */
    ck_assert(valid("\xF0\x90\x80\x80"));             /* U+10000 */
    ck_assert(valid("\xF4\x8F\xBF\xBF"));             /* U+10FFFF */
    ck_assert(valid("caf\xC3\xA9 \xF0\x9F\x98\x80")); /* "café 😀" */
}
END_TEST

START_TEST(test_overlong_forms_are_refused)
{
    ck_assert(!valid("\xC0\x80")); /* NUL, overlong */
    ck_assert(!valid("\xC1\xBF"));
    ck_assert(!valid("\xE0\x80\x80"));
    ck_assert(!valid("\xE0\x9F\xBF")); /* U+07FF in 3 bytes */
    ck_assert(!valid("\xF0\x80\x80\x80"));
    ck_assert(!valid("\xF0\x8F\xBF\xBF")); /* U+FFFF in 4 bytes */
}
END_TEST

START_TEST(test_surrogates_are_refused)
{
    ck_assert(!valid("\xED\xA0\x80"));             /* U+D800 */
    ck_assert(!valid("\xED\xAF\xBF"));             /* U+DBFF */
    ck_assert(!valid("\xED\xB0\x80"));             /* U+DC00 */
    ck_assert(!valid("\xED\xBF\xBF"));             /* U+DFFF */
    ck_assert(!valid("\xED\xA0\xBD\xED\xB8\x80")); /* CESU-8 pair */
}
END_TEST

START_TEST(test_above_max_code_point_is_refused)
{
    ck_assert(!valid("\xF4\x90\x80\x80")); /* U+110000 */
    ck_assert(!valid("\xF5\x80\x80\x80"));
    ck_assert(!valid("\xF7\xBF\xBF\xBF"));
    ck_assert(!valid("\xF8\x88\x80\x80\x80")); /* old 5-byte form */
    ck_assert(!valid("\xFE"));
    ck_assert(!valid("\xFF"));
}
END_TEST

START_TEST(test_truncated_and_stray_bytes_are_refused)
{
    ck_assert(!valid("\xC3"));
    ck_assert(!valid("\xE2\x82"));
    ck_assert(!valid("\xF0\x9F\x98"));
    ck_assert(!valid("ab\xE2\x82"));
    ck_assert(!valid("\xE2\x82z"));      /* truncated before ASCII */
    ck_assert(!valid("\xF0\x9F\x98 x")); /* truncated in the middle */
    ck_assert(!valid("\x80"));
    ck_assert(!valid("a\xBF"));
    ck_assert(!valid("\xC3\xA9\xA9")); /* extra continuation */
    /* A valid sequence cut by len, not by the string. */
    ck_assert(!utf8_is_valid("\xE2\x82\xAC", 2));
    ck_assert(utf8_is_valid("\xE2\x82\xAC", 3));
}
END_TEST

/* Mismatches are counted and asserted once: a Check assertion per
 * input would cost a pipe write each. */
static int mismatch(const unsigned char *b, size_t len)
{
    return utf8_is_valid((const char *)b, len) != reference_valid(b, len);
}

START_TEST(test_agrees_with_reference_on_all_short_sequences)
{
    unsigned char b[4];
    long bad = 0;

    for (unsigned i = 0; i < 256; i++) {
        b[0] = (unsigned char)i;
        bad += mismatch(b, 1);
        for (unsigned j = 0; j < 256; j++) {
            b[1] = (unsigned char)j;
            bad += mismatch(b, 2);
        }
    }
    for (unsigned i = 0xE0; i < 0x100; i++) {
        for (unsigned j = 0; j < 256; j++) {
            for (unsigned k = 0; k < 256; k++) {
                b[0] = (unsigned char)i, b[1] = (unsigned char)j;
                b[2] = (unsigned char)k;
                bad += mismatch(b, 3);
            }
        }
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(test_agrees_with_reference_on_four_byte_leads)
{
    static const unsigned char tails[] = {0x00, 0x41, 0x80, 0x8F,
                                          0x90, 0xBF, 0xC0, 0xFF};
    unsigned char b[4];
    long bad = 0, accepted = 0;

    for (unsigned i = 0xF0; i < 0x100; i++) {
        for (unsigned j = 0; j < 256; j++) {
            for (size_t k = 0; k < sizeof tails; k++) {
                for (size_t l = 0; l < sizeof tails; l++) {
                    b[0] = (unsigned char)i, b[1] = (unsigned char)j;
                    b[2] = tails[k], b[3] = tails[l];
                    bad += mismatch(b, 4);
                    accepted += utf8_is_valid((const char *)b, 4);
                }
            }
        }
    }
    ck_assert_int_eq(bad, 0);
    /* Leads F0-F4 with their allowed second bytes (48 + 3 * 64 + 16),
     * times 4 x 4 continuation tails. */
    ck_assert_int_eq(accepted, (48 + 3 * 64 + 16) * 4 * 4);
}
END_TEST

START_TEST(test_prefix_counts_code_points_not_bytes)
{
    char buf[600];

    for (int i = 0; i < 150; i++)
        memcpy(buf + 2 * i, "\xC3\xA9", 2); /* é, 2 bytes */
    ck_assert_uint_eq(utf8_prefix(buf, 300, 100), 200);
    for (int i = 0; i < 150; i++)
        memcpy(buf + 4 * i, "\xF0\x9F\x98\x80", 4); /* 😀, 4 bytes */
    ck_assert_uint_eq(utf8_prefix(buf, 600, 100), 400);
    memset(buf, 'a', 150);
    ck_assert_uint_eq(utf8_prefix(buf, 150, 100), 100);
    ck_assert_uint_eq(utf8_prefix(buf, 42, 100), 42);
    ck_assert_uint_eq(utf8_prefix(buf, 150, 0), 0);
}
END_TEST

START_TEST(test_prefix_never_cuts_a_sequence)
{
    char buf[200];

    /* 99 ASCII then a 4-byte emoji: the emoji is the 100th code point
     * and is kept whole. */
    memset(buf, 'a', 99);
    memcpy(buf + 99, "\xF0\x9F\x98\x80zz", 6);
    ck_assert_uint_eq(utf8_prefix(buf, 105, 100), 103);
    /* 100 ASCII then the emoji: it is the 101st and is left out. */
    memset(buf, 'a', 100);
    memcpy(buf + 100, "\xF0\x9F\x98\x80", 4);
    ck_assert_uint_eq(utf8_prefix(buf, 104, 100), 100);
    /* len ends inside the emoji: the partial sequence is dropped. */
    memcpy(buf, "ab\xF0\x9F\x98\x80", 6);
    for (size_t len = 2; len < 6; len++)
        ck_assert_uint_eq(utf8_prefix(buf, len, 100), 2);
    ck_assert_uint_eq(utf8_prefix(buf, 6, 100), 6);
    /* Every prefix it returns is valid. */
    for (size_t max = 0; max < 10; max++) {
        size_t n = utf8_prefix("x\xC3\xA9\xE2\x82\xACy", 7, max);
        ck_assert(utf8_is_valid("x\xC3\xA9\xE2\x82\xACy", n));
    }
}
END_TEST

START_TEST(test_prefix_stops_at_invalid_bytes)
{
    ck_assert_uint_eq(utf8_prefix("ab\xFF"
                                  "cd",
                                  5, 100),
                      2);
    ck_assert_uint_eq(utf8_prefix("\xED\xA0\x80", 3, 100), 0);
    ck_assert_uint_eq(utf8_prefix("a\0b", 3, 100), 3);
}
END_TEST

static Suite *utf8_suite(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ascii_empty_and_nul_are_valid);
    tcase_add_test(tc, test_boundaries_of_each_length_are_valid);
    tcase_add_test(tc, test_overlong_forms_are_refused);
    tcase_add_test(tc, test_surrogates_are_refused);
    tcase_add_test(tc, test_above_max_code_point_is_refused);
    tcase_add_test(tc, test_truncated_and_stray_bytes_are_refused);
    tcase_add_test(tc, test_agrees_with_reference_on_all_short_sequences);
    tcase_add_test(tc, test_agrees_with_reference_on_four_byte_leads);
    tcase_add_test(tc, test_prefix_counts_code_points_not_bytes);
    tcase_add_test(tc, test_prefix_never_cuts_a_sequence);
    tcase_add_test(tc, test_prefix_stops_at_invalid_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(utf8_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
