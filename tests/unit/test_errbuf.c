/*
 * test_errbuf.c - Check suite for errbuf.c: the reason is formatted,
 * truncated to the buffer, skipped for a NULL or empty buffer, and the
 * failure value is always -1.
 */
#include <check.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

START_TEST(test_fail_formats_and_returns_minus_one)
{
    char buf[64];

    ck_assert_int_eq(errbuf_fail(buf, sizeof buf, "%s: %d", "limit", 7), -1);
    ck_assert_str_eq(buf, "limit: 7");
}
END_TEST

START_TEST(test_fail_truncates_to_the_buffer)
{
    char buf[8];

    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(errbuf_fail(buf, 5, "%s", "abcdefgh"), -1);
    ck_assert_str_eq(buf, "abcd");
    ck_assert_int_eq(buf[5], 'x');
}
END_TEST

START_TEST(test_fail_without_a_buffer_writes_nothing)
{
    char buf[4] = "abc";

    ck_assert_int_eq(errbuf_fail(NULL, 16, "%s", "ignored"), -1);
    ck_assert_int_eq(errbuf_fail(buf, 0, "%s", "ignored"), -1);
    ck_assert_str_eq(buf, "abc");
}
END_TEST

__attribute__((format(printf, 3, 4))) static void vformat(char *buf, size_t cap,
                                                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    errbuf_vformat(buf, cap, fmt, ap);
    va_end(ap);
}

START_TEST(test_vformat_follows_the_same_rules)
{
    char buf[6] = "";

    vformat(buf, sizeof buf, "%d-%d", 12, 345);
    ck_assert_str_eq(buf, "12-34");
    vformat(NULL, 8, "%s", "ignored");
    vformat(buf, 0, "%s", "ignored");
    ck_assert_str_eq(buf, "12-34");
}
END_TEST

static Suite *errbuf_suite(void)
{
    Suite *s = suite_create("errbuf");
    TCase *tc = tcase_create("format");

    tcase_add_test(tc, test_fail_formats_and_returns_minus_one);
    tcase_add_test(tc, test_fail_truncates_to_the_buffer);
    tcase_add_test(tc, test_fail_without_a_buffer_writes_nothing);
    tcase_add_test(tc, test_vformat_follows_the_same_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(errbuf_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
