/*
 * test_evquery.c - Check suite for evquery.c: the events query takes a
 * conversation-list token of the same user and a timeout of 0-60 whole
 * seconds (default 25), refuses everything else with a reason, and
 * formats back to a query the parser accepts.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "evquery.h"

static const char *token_of(sync_kind kind, int64_t user, int64_t seq)
{
    static char out[SYNCTOKEN_MAX + 1];
    sync_token t = {.kind = kind, .user_id = user, .seq = seq};
    if (kind == SYNC_MESSAGES)
        strcpy(t.conversation_id, "1_2");
    ck_assert_int_gt(synctoken_encode(&t, out, sizeof(out)), 0);
    return out;
}

START_TEST(test_parse_accepts_a_list_token_and_defaults)
{
    events_query q;
    char why[128];
    ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 7, 3), NULL, 7,
                                   &q, why, sizeof(why)),
                     0);
    ck_assert_int_eq(q.timeout_s, EVENTS_TIMEOUT_DEFAULT_S);
    ck_assert_int_eq(q.since.seq, 3);
    ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 7, 0), "60", 7,
                                   &q, why, sizeof(why)),
                     0);
    ck_assert_int_eq(q.timeout_s, 60);
    ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 7, 0), "0", 7,
                                   &q, why, sizeof(why)),
                     0);
    ck_assert_int_eq(q.timeout_s, 0);
}
END_TEST

START_TEST(test_parse_refuses_bad_timeouts)
{
    const char *bad[] = {"61", "-1", "", "abc", "1.5", "07", "100", " 5"};
    events_query q;
    char why[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 7, 1),
                                       bad[i], 7, &q, why, sizeof(why)),
                         -1);
        ck_assert_ptr_nonnull(strstr(why, "timeout"));
    }
}
END_TEST

START_TEST(test_parse_refuses_bad_tokens)
{
    events_query q;
    char why[128];
    ck_assert_int_eq(evquery_parse(NULL, "5", 7, &q, why, sizeof(why)), -1);
    ck_assert_int_eq(evquery_parse("", "5", 7, &q, why, sizeof(why)), -1);
    ck_assert_int_eq(evquery_parse("%%%", "5", 7, &q, why, sizeof(why)), -1);
    /* Another user's, and a message list's. */
    ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 8, 1), "5", 7,
                                   &q, why, sizeof(why)),
                     -1);
    ck_assert_int_eq(evquery_parse(token_of(SYNC_MESSAGES, 1, 1), "5", 1, &q,
                                   why, sizeof(why)),
                     -1);
}
END_TEST

START_TEST(test_format_round_trips)
{
    events_query q, back;
    char why[128], text[256];
    ck_assert_int_eq(evquery_parse(token_of(SYNC_CONVERSATIONS, 42, 9), "17",
                                   42, &q, why, sizeof(why)),
                     0);
    ck_assert_int_gt(evquery_format(&q, text, sizeof(text)), 0);
    char *amp = strchr(text, '&');
    ck_assert_ptr_nonnull(amp);
    *amp = '\0';
    ck_assert_int_eq(strncmp(text, "since=", 6), 0);
    ck_assert_str_eq(amp + 1, "timeout=17");
    ck_assert_int_eq(evquery_parse(text + 6, "17", 42, &back, why, sizeof(why)),
                     0);
    ck_assert_int_eq(back.since.seq, 9);
    ck_assert_int_eq(evquery_format(&q, text, 10), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("evquery");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse_accepts_a_list_token_and_defaults);
    tcase_add_test(tc, test_parse_refuses_bad_timeouts);
    tcase_add_test(tc, test_parse_refuses_bad_tokens);
    tcase_add_test(tc, test_format_round_trips);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
