/*
 * test_reads_wire.c - Check suite for reads_wire.c: a batch answer reads
 * back as written, is valid JSON whose bodies are the answers' bodies,
 * and a frame that is wrong anywhere stops the reader without reading
 * past the text.
 */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "reads_wire.h"

typedef struct answer {
    int status;
    const char *body;
} answer;

static const answer sample[] = {
    {200, "{\"conversations\":[],\"has_more\":false}"},
    {404, "{\"type\":\"about:blank\",\"title\":\"Not found\",\"status\":404}"},
    {204, ""},
    {421, "{\"s\":\"}]},{\\\"status\\\":200\"}"}, /* frame-like text inside */
};
#define NSAMPLE (sizeof(sample) / sizeof(sample[0]))

static char *write_sample(size_t n, size_t *len)
{
    jt_buf b;
    jt_init(&b);
    rw_begin(&b);
    for (size_t i = 0; i < n; i++)
        rw_answer(&b, sample[i].status, sample[i].body, strlen(sample[i].body));
    rw_end(&b);
    char *text = jt_finish(&b, len);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(test_round_trip)
{
    for (size_t n = 0; n <= NSAMPLE; n++) {
        size_t len;
        char *text = write_sample(n, &len);
        rw_reader r;
        ck_assert_int_eq(rw_open(&r, text, len), 0);
        for (size_t i = 0; i < n; i++) {
            int status;
            const char *body;
            size_t blen;
            ck_assert_int_eq(rw_next(&r, &status, &body, &blen), 1);
            ck_assert_int_eq(status, sample[i].status);
            ck_assert_uint_eq(blen, strlen(sample[i].body));
            ck_assert(memcmp(body, sample[i].body, blen) == 0);
        }
        int status;
        const char *body;
        size_t blen;
        ck_assert_int_eq(rw_next(&r, &status, &body, &blen), 0);
        free(text);
    }
}
END_TEST

/* The text is JSON: each answer's body parses to what was written. */
START_TEST(test_is_json)
{
    size_t len;
    char *text = write_sample(NSAMPLE, &len);
    json_error_t err;
    json_t *doc = json_loadb(text, len, 0, &err);
    ck_assert_msg(doc != NULL, "%s", err.text);
    json_t *answers = json_object_get(doc, "answers");
    ck_assert_uint_eq(json_array_size(answers), NSAMPLE);
    for (size_t i = 0; i < NSAMPLE; i++) {
        json_t *a = json_array_get(answers, i);
        ck_assert_int_eq(json_integer_value(json_object_get(a, "status")),
                         sample[i].status);
        ck_assert_int_eq(json_integer_value(json_object_get(a, "length")),
                         (json_int_t)strlen(sample[i].body));
        json_t *body = json_object_get(a, "body");
        json_t *want = sample[i].body[0] ? json_loads(sample[i].body, 0, NULL)
                                         : json_null();
        ck_assert(json_equal(body, want));
        json_decref(want);
    }
    json_decref(doc);
    free(text);
}
END_TEST

/* Reads a malformed text: the answers before the fault come out, then
 * -1, and every later call -1 too. */
static void expect_stops(const char *text, int good)
{
    /* A copy of exactly strlen bytes: ASan catches a read past it. */
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    rw_reader r;
    int status;
    const char *body;
    size_t blen;
    if (rw_open(&r, copy, len) == 0) {
        for (int i = 0; i < good; i++)
            ck_assert_msg(rw_next(&r, &status, &body, &blen) == 1,
                          "answer %d of %s", i, text);
        ck_assert_msg(rw_next(&r, &status, &body, &blen) == -1, "%s", text);
        ck_assert_int_eq(rw_next(&r, &status, &body, &blen), -1);
    } else {
        ck_assert_msg(good == -1, "not opened: %s", text);
    }
    free(copy);
}

START_TEST(test_malformed)
{
    const char *one = "{\"status\":200,\"length\":2,\"body\":{}}";
    char text[256];
    expect_stops("", -1);
    expect_stops("{\"answers\":", -1);
    expect_stops("{\"answers\":[", 0);
    expect_stops("{\"answers\" :[]}", -1);
    expect_stops("{\"answers\":[]}x", 0);
    expect_stops("{\"answers\":[]", 0);
    snprintf(text, sizeof(text), "{\"answers\":[%s", one);
    expect_stops(text, 1);
    snprintf(text, sizeof(text), "{\"answers\":[%s%s]}", one, one);
    expect_stops(text, 1); /* no comma */
    snprintf(text, sizeof(text), "{\"answers\":[%s,]}", one);
    expect_stops(text, 1);
    expect_stops("{\"answers\":[{\"status\":99,\"length\":2,\"body\":{}}]}", 0);
    expect_stops("{\"answers\":[{\"status\":600,\"length\":2,\"body\":{}}]}",
                 0);
    expect_stops("{\"answers\":[{\"status\":-1,\"length\":2,\"body\":{}}]}", 0);
    expect_stops("{\"answers\":[{\"status\":200,\"length\":3,\"body\":{}}]}",
                 0);
    /* The frame is checked, not the body's JSON: one byte of body, then
     * the frame's close, then no comma. */
    expect_stops("{\"answers\":[{\"status\":200,\"length\":1,\"body\":{}}]}",
                 1);
    expect_stops("{\"answers\":[{\"status\":200,\"length\":99,\"body\":{}}]}",
                 0);
    expect_stops("{\"answers\":[{\"status\":200,\"length\":"
                 "99999999999999999,\"body\":{}}]}",
                 0);
    expect_stops("{\"answers\":[{\"status\":200,\"length\":0,\"body\":{}}]}",
                 0);
    expect_stops("{\"answers\":[{\"status\":200,\"body\":{},\"length\":2}]}",
                 0);
    expect_stops("{\"answers\":[{\"status\":200,\"length\":2,\"body\":{}", 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reads_wire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_is_json);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
