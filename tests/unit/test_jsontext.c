/*
 * test_jsontext.c - Check suite for jsontext.c: integers and strings
 * written as jansson's json_dumps(JSON_COMPACT) writes them, and a failed
 * step failing the whole text.
 */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

/* What jansson writes for the value v (stolen). */
static char *jansson_text(json_t *v)
{
    ck_assert_ptr_nonnull(v);
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    ck_assert_ptr_nonnull(text);
    return text;
}

static void expect_text(jt_buf *b, char *want)
{
    size_t len = 0;
    char *got = jt_finish(b, &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(len, strlen(want));
    free(got);
    free(want);
}

START_TEST(test_integers)
{
    static const long long values[] = {
        0, 1, -1, 9, 10, -10, 123456789, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        jt_buf b;
        jt_init(&b);
        jt_int(&b, values[i]);
        expect_text(&b, jansson_text(json_integer(values[i])));
    }
}
END_TEST

/* Every ASCII byte alone, then all of them in one string. */
START_TEST(test_every_ascii_byte)
{
    char all[128];
    for (int c = 0; c < 128; c++) {
        char s[1] = {(char)c};
        all[c] = (char)c;
        jt_buf b;
        jt_init(&b);
        jt_string(&b, s, 1);
        expect_text(&b, jansson_text(json_stringn(s, 1)));
    }
    jt_buf b;
    jt_init(&b);
    jt_string(&b, all, sizeof all);
    expect_text(&b, jansson_text(json_stringn(all, sizeof all)));
}
END_TEST

START_TEST(test_utf8_is_copied)
{
    static const char s[] = "\xC3\xA9\xE2\x80\xA8\xF0\x9F\x98\x80/end";
    jt_buf b;
    jt_init(&b);
    jt_string(&b, s, sizeof s - 1);
    expect_text(&b, jansson_text(json_stringn(s, sizeof s - 1)));
}
END_TEST

/* Invalid UTF-8 fails the text, as json_stringn refuses it, and nothing
 * after it is written. */
START_TEST(test_invalid_utf8_fails_the_text)
{
    static const char *const bad[] = {"\xFF", "\xC3", "\xED\xA0\x80",
                                      "\xC0\xAF", "\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(json_stringn(bad[i], strlen(bad[i])));
        jt_buf b;
        jt_init(&b);
        jt_raw(&b, "[", 1);
        jt_string(&b, bad[i], strlen(bad[i]));
        jt_int(&b, 1);
        ck_assert(b.failed);
        size_t len = 7;
        ck_assert_ptr_null(jt_finish(&b, &len));
        ck_assert_uint_eq(len, 7);
    }
}
END_TEST

/* A text past the first capacity grows and stays whole. */
START_TEST(test_long_text)
{
    json_t *arr = json_array();
    jt_buf b;
    jt_init(&b);
    jt_raw(&b, "[", 1);
    for (int i = 0; i < 2000; i++) {
        if (i)
            jt_raw(&b, ",", 1);
        jt_string(&b, "a\"b\\c\n", 6);
        json_array_append_new(arr, json_stringn("a\"b\\c\n", 6));
    }
    jt_raw(&b, "]", 1);
    expect_text(&b, jansson_text(arr));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsontext");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_integers);
    tcase_add_test(tc, test_every_ascii_byte);
    tcase_add_test(tc, test_utf8_is_copied);
    tcase_add_test(tc, test_invalid_utf8_fails_the_text);
    tcase_add_test(tc, test_long_text);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
