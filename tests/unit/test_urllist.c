/*
 * test_urllist.c - parsing comma-separated URL lists (ROUTER_URL).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "urllist.h"

START_TEST(test_one_and_many)
{
    urllist l;
    char why[128];
    ck_assert_int_eq(urllist_parse("http://a:1", &l, why, sizeof why), 0);
    ck_assert_int_eq(l.n, 1);
    ck_assert_str_eq(l.url[0], "http://a:1");
    ck_assert_int_eq(
        urllist_parse(" http://a:1 ,https://b:2\t", &l, why, sizeof why), 0);
    ck_assert_int_eq(l.n, 2);
    ck_assert_str_eq(l.url[0], "http://a:1");
    ck_assert_str_eq(l.url[1], "https://b:2");
}
END_TEST

START_TEST(test_refuses_bad_lists)
{
    urllist l;
    char why[128];
    const char *bad[] = {"",
                         ",",
                         "http://a:1,",
                         "ftp://a",
                         "http://",
                         "http://a:1/",
                         "http://a b",
                         "http://a,http://b,http://c,http://d,http://e,"
                         "http://f,http://g,http://h,http://i"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        ck_assert_msg(urllist_parse(bad[i], &l, why, sizeof why) == -1,
                      "accepted '%s'", bad[i]);
        ck_assert_msg(why[0] != '\0', "no reason for '%s'", bad[i]);
    }
    ck_assert_int_eq(urllist_parse(NULL, &l, why, sizeof why), -1);
}
END_TEST

START_TEST(test_refuses_overlong_url)
{
    urllist l;
    char why[128];
    char url[URLLIST_URL_MAX + 8];
    memset(url, 'a', sizeof url);
    memcpy(url, "http://", 7);
    url[URLLIST_URL_MAX] = '\0';
    ck_assert_int_eq(urllist_parse(url, &l, why, sizeof why), -1);
    url[URLLIST_URL_MAX - 1] = '\0';
    ck_assert_int_eq(urllist_parse(url, &l, why, sizeof why), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("urllist");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_one_and_many);
    tcase_add_test(tc, test_refuses_bad_lists);
    tcase_add_test(tc, test_refuses_overlong_url);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
