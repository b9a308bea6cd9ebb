/*
 * test_cache_store_parse.c - Check suite for services/cache/store_parse.c
 * and services/cache/hot_entry.c: the cache node's checks of storage
 * answers (exact status words, ids spelled as ids, counters >= 0, lists
 * of objects) and the hot window entries that must read back from Redis
 * exactly as they were written.
 *
 * Both files are compiled into this test directly: the unit-test link
 * sees only libcommon, and they need nothing else.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/cache/hot_entry.c"
#include "../../services/cache/store_parse.c"

#define MSG_JSON                                                               \
    "{\"message_id\":\"7156612312345678901\",\"conversation_id\":\"1_2\","     \
    "\"sender_id\":1,\"recipient_id\":2,\"content\":\"hi\","                   \
    "\"client_message_id\":\"c-1\",\"sent_at\":1704067200000}"

static json_t *body(const char *text)
{
    json_t *o = store_parse_body(text, strlen(text));
    ck_assert_ptr_nonnull(o);
    return o;
}

START_TEST(test_body_must_be_an_object)
{
    ck_assert_ptr_null(store_parse_body(NULL, 0));
    ck_assert_ptr_null(store_parse_body("[1]", 3));
    ck_assert_ptr_null(store_parse_body("{\"a\":", 5));
    json_t *o = store_parse_body("{\"a\":\"x\\u0000y\"}", 16);
    ck_assert_ptr_nonnull(o);
    json_decref(o);
}
END_TEST

START_TEST(test_send_outcomes)
{
    store_send_result r;
    json_t *o = body("{\"status\":\"stored\",\"seq\":3,\"max_id\":\"42\"}");
    ck_assert_int_eq(store_parse_send(201, o, &r), STORE_OK);
    ck_assert_int_eq(r.outcome, SEND_STORED);
    ck_assert_int_eq(r.meta.seq, 3);
    ck_assert_int_eq(r.meta.max_id, 42);
    /* The right word with the wrong status is not that outcome. */
    ck_assert_int_eq(store_parse_send(200, o, &r), STORE_BAD);
    json_decref(o);

    o = body("{\"status\":\"floor\",\"max_id\":\"99\"}");
    ck_assert_int_eq(store_parse_send(409, o, &r), STORE_OK);
    ck_assert_int_eq(r.outcome, SEND_FLOOR);
    ck_assert_int_eq(r.meta.max_id, 99);
    json_decref(o);

    o = body(
        "{\"status\":\"replay\",\"outbox_pending\":true,\"message\":" MSG_JSON
        "}");
    ck_assert_int_eq(store_parse_send(200, o, &r), STORE_OK);
    ck_assert_int_eq(r.outcome, SEND_REPLAY);
    ck_assert(r.outbox_pending);
    ck_assert_int_eq(r.stored.message_id, 7156612312345678901LL);
    ck_assert_str_eq(r.stored.content, "hi");
    msg_clear(&r.stored);
    json_decref(o);
}
END_TEST

START_TEST(test_status_word_is_compared_whole)
{
    store_send_result r;
    json_t *o =
        body("{\"status\":\"stored\\u0000x\",\"seq\":3,\"max_id\":\"42\"}");
    ck_assert_int_eq(store_parse_send(201, o, &r), STORE_BAD);
    json_decref(o);
}
END_TEST

START_TEST(test_meta_fields_are_checked)
{
    hot_meta m;
    json_t *o = body("{\"seq\":0,\"max_id\":\"0\"}");
    ck_assert_int_eq(store_parse_meta(o, &m), STORE_OK);
    ck_assert_int_eq(m.seq, 0);
    ck_assert_int_eq(m.max_id, 0);
    json_decref(o);
    static const char *const bad[] = {
        "{\"seq\":-1,\"max_id\":\"0\"}",
        "{\"seq\":\"1\",\"max_id\":\"0\"}",
        "{\"seq\":1,\"max_id\":\"007\"}",
        "{\"seq\":1,\"max_id\":\"-7\"}",
        "{\"seq\":1,\"max_id\":\"7\\u0000\"}",
        "{\"seq\":1,\"max_id\":-7}",
        "{\"seq\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = body(bad[i]);
        ck_assert_msg(store_parse_meta(o, &m) == STORE_BAD, "accepted %s",
                      bad[i]);
        json_decref(o);
    }
}
END_TEST

START_TEST(test_deliver_knows_two_words)
{
    bool stored = false;
    hot_meta m;
    json_t *o = body("{\"status\":\"duplicate\",\"seq\":5,\"max_id\":\"9\"}");
    ck_assert_int_eq(store_parse_deliver(200, o, &stored, &m), STORE_OK);
    ck_assert(!stored);
    json_decref(o);
    o = body("{\"status\":\"stored\",\"seq\":6,\"max_id\":\"10\"}");
    ck_assert_int_eq(store_parse_deliver(200, o, &stored, &m), STORE_OK);
    ck_assert(stored);
    json_decref(o);
    o = body("{\"status\":\"landed\",\"seq\":6,\"max_id\":\"10\"}");
    ck_assert_int_eq(store_parse_deliver(200, o, &stored, &m), STORE_BAD);
    json_decref(o);
}
END_TEST

START_TEST(test_list_needs_seq_and_objects)
{
    json_t *items = NULL;
    int64_t seq = -1;
    json_t *o = body("{\"seq\":4,\"messages\":[" MSG_JSON "]}");
    ck_assert_int_eq(store_parse_list(o, "messages", &items, &seq), STORE_OK);
    ck_assert_int_eq(seq, 4);
    ck_assert_int_eq(json_array_size(items), 1);
    json_decref(items);
    /* The other list's key is not this list. */
    ck_assert_int_eq(store_parse_list(o, "conversations", &items, &seq),
                     STORE_BAD);
    json_decref(o);
    o = body("{\"seq\":4,\"messages\":[1]}");
    ck_assert_int_eq(store_parse_list(o, "messages", &items, &seq), STORE_BAD);
    json_decref(o);
}
END_TEST

START_TEST(test_entry_round_trip)
{
    char *e = hot_entry(42, "1_2", "{\"a\":\"b|c\"}");
    ck_assert_str_eq(e, "00000000000000000042|1_2|{\"a\":\"b|c\"}");
    hot_entry_parts p;
    ck_assert_int_eq(hot_entry_split(e, strlen(e), &p), 0);
    ck_assert_int_eq(p.id, 42);
    ck_assert_int_eq(p.cid_len, 3);
    ck_assert_int_eq(memcmp(p.cid, "1_2", 3), 0);
    ck_assert_str_eq(p.json, "{\"a\":\"b|c\"}");
    free(e);
}
END_TEST

START_TEST(test_entry_refuses_what_would_not_split)
{
    ck_assert_ptr_null(hot_entry(1, "1|2_3", "{}"));
    ck_assert_ptr_null(hot_entry(1, "2_1", "{}"));
    ck_assert_ptr_null(hot_entry(-1, "1_2", "{}"));
    ck_assert_ptr_null(hot_entry(1, "1_2", ""));
    static const char *const bad[] = {
        "",
        "1|1_2|{}",
        "0000000000000000004a|1_2|{}",
        "99999999999999999999|1_2|{}",
        "00000000000000000042|1_2|",
        "00000000000000000042|12|{}",
        "00000000000000000042|01_2|{}",
        "00000000000000000042|1_2{}",
    };
    hot_entry_parts p;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(hot_entry_split(bad[i], strlen(bad[i]), &p) == -1,
                      "split %s", bad[i]);
}
END_TEST

static Suite *store_parse_suite(void)
{
    Suite *s = suite_create("cache_store_parse");
    TCase *answers = tcase_create("answers");
    TCase *entries = tcase_create("hot_entries");

    tcase_add_test(answers, test_body_must_be_an_object);
    tcase_add_test(answers, test_send_outcomes);
    tcase_add_test(answers, test_status_word_is_compared_whole);
    tcase_add_test(answers, test_meta_fields_are_checked);
    tcase_add_test(answers, test_deliver_knows_two_words);
    tcase_add_test(answers, test_list_needs_seq_and_objects);
    tcase_add_test(entries, test_entry_round_trip);
    tcase_add_test(entries, test_entry_refuses_what_would_not_split);
    suite_add_tcase(s, answers);
    suite_add_tcase(s, entries);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_parse_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
