/*
 * test_query.c - Check suite for query.c: defaults, every refused value
 * and combination (each a 400 naming its parameter), token ownership,
 * and the canonical form that query_parse reads back unchanged.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constants.h"
#include "query.h"

static char errbuf[256];

static char conv_tok[SYNCTOKEN_MAX + 1]; /* user 42, seq 5 */
static char msg_tok[SYNCTOKEN_MAX + 1];  /* user 42, seq 9, "7_42" */

static void make_tokens(void)
{
    sync_token t;

    memset(&t, 0, sizeof t);
    t.kind = SYNC_CONVERSATIONS;
    t.user_id = 42;
    t.seq = 5;
    ck_assert_int_gt(synctoken_encode(&t, conv_tok, sizeof conv_tok), 0);
    t.kind = SYNC_MESSAGES;
    t.seq = 9;
    strcpy(t.conversation_id, "7_42");
    ck_assert_int_gt(synctoken_encode(&t, msg_tok, sizeof msg_tok), 0);
}

static int parse(const query_raw *raw, sync_kind kind, list_query *q)
{
    errbuf[0] = '\0';
    return query_parse(raw, kind, q, errbuf, sizeof errbuf);
}

/* The query must be refused on kind, with errbuf naming the parameter. */
static void refused(query_raw raw, sync_kind kind, const char *names)
{
    list_query q;

    if (parse(&raw, kind, &q) != -1)
        ck_abort_msg("accepted a query that should name %s", names);
    if (strstr(errbuf, names) == NULL)
        ck_abort_msg("error \"%s\" does not name %s", errbuf, names);
}

START_TEST(test_defaults)
{
    query_raw raw = {0};
    list_query q;

    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(q.page_size, LIST_PAGE_SIZE_DEFAULT);
    ck_assert_int_eq(q.page_size, 20);
    ck_assert_int_eq(q.page, 0);
    ck_assert(!q.has_before);
    ck_assert(!q.has_since);
    ck_assert(!q.has_updated_after);
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
}
END_TEST

START_TEST(test_page_size)
{
    static const char *const bad[] = {
        "0",  "101", "abc", "1.5", "",     "-1",
        "+5", " 5",  "5 ",  "1e2", "0x10", "99999999999999999999999"};
    query_raw raw = {0};
    list_query q;

    raw.page_size = "1";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(q.page_size, 1);
    raw.page_size = "100";
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
    ck_assert_int_eq(q.page_size, 100);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw.page_size = bad[i];
        refused(raw, SYNC_MESSAGES, "page_size");
    }
}
END_TEST

START_TEST(test_page)
{
    static const char *const bad[] = {"-1",  "-0", "abc",
                                      "1.5", "",   "+1",
                                      " 1",  "1 ", "99999999999999999999999"};
    query_raw raw = {0};
    list_query q;

    raw.page = "0";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(q.page, 0);
    raw.page = "3";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(q.page, 3);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw.page = bad[i];
        refused(raw, SYNC_MESSAGES, "page");
    }
    raw.page = "-1";
    refused(raw, SYNC_CONVERSATIONS, "negative");
}
END_TEST

START_TEST(test_offset_cap)
{
    query_raw raw = {0};
    list_query q;

    raw.page_size = "100";
    raw.page = "1000"; /* offset 100,000: the deepest allowed */
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    raw.page = "1001";
    refused(raw, SYNC_MESSAGES, "page");
    raw.page_size = "1";
    raw.page = "100000";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    raw.page = "100001";
    refused(raw, SYNC_MESSAGES, "page");
    raw.page_size = NULL; /* default 20: 5000 pages */
    raw.page = "5000";
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
    raw.page = "5001";
    refused(raw, SYNC_CONVERSATIONS, "page");
    raw.page = "2147483648"; /* beyond int */
    refused(raw, SYNC_CONVERSATIONS, "page");
}
END_TEST

START_TEST(test_before)
{
    static const char *const bad[] = {
        "0", "abc", "-5", "+5", "", "05", "9223372036854775808"};
    query_raw raw = {0};
    list_query q;

    raw.before = "7156612312345678901";
    raw.page = "2";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert(q.has_before);
    ck_assert_int_eq(q.before, 7156612312345678901LL);
    ck_assert_int_eq(q.page, 2);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw.before = bad[i];
        refused(raw, SYNC_MESSAGES, "before");
    }
    /* The conversation list has no before, even a valid one. */
    raw.before = "7156612312345678901";
    raw.page = NULL;
    refused(raw, SYNC_CONVERSATIONS, "before");
}
END_TEST

START_TEST(test_since)
{
    query_raw raw = {0};
    list_query q;

    raw.since = conv_tok;
    raw.page_size = "50";
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
    ck_assert(q.has_since);
    ck_assert_int_eq(q.since.kind, SYNC_CONVERSATIONS);
    ck_assert_int_eq(q.since.user_id, 42);
    ck_assert_int_eq(q.since.seq, 5);
    ck_assert_int_eq(q.page_size, 50);

    raw.since = msg_tok;
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_str_eq(q.since.conversation_id, "7_42");

    /* A token of the other list, and tokens that do not decode. */
    refused(raw, SYNC_CONVERSATIONS, "since");
    raw.since = conv_tok;
    refused(raw, SYNC_MESSAGES, "since");
    raw.since = "garbage!";
    refused(raw, SYNC_MESSAGES, "since");
    raw.since = "";
    refused(raw, SYNC_CONVERSATIONS, "since");
}
END_TEST

START_TEST(test_since_cannot_be_positioned)
{
    query_raw raw = {0};

    raw.since = msg_tok;
    raw.page = "0"; /* even page 0 */
    refused(raw, SYNC_MESSAGES, "since");
    raw.page = "1";
    refused(raw, SYNC_MESSAGES, "since");
    raw.page = NULL;
    raw.before = "7156612312345678901";
    refused(raw, SYNC_MESSAGES, "since");
    raw.before = NULL;
    raw.since = conv_tok;
    raw.page = "0";
    refused(raw, SYNC_CONVERSATIONS, "since");
}
END_TEST

START_TEST(test_last_updated_timestamp)
{
    static const char *const bad[] = {
        "-1", "abc", "1.5", "", "+1", "1704067200000 ", "99999999999999999999"};
    query_raw raw = {0};
    list_query q;

    raw.last_updated_timestamp = "0";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert(q.has_updated_after);
    ck_assert_int_eq(q.updated_after, 0);
    raw.last_updated_timestamp = "1704067200000";
    raw.page_size = "10";
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
    ck_assert_int_eq(q.updated_after, 1704067200000LL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw.last_updated_timestamp = bad[i];
        refused(raw, SYNC_MESSAGES, "last_updated_timestamp");
    }
}
END_TEST

START_TEST(test_timestamp_combinations)
{
    query_raw raw = {0};

    raw.last_updated_timestamp = "1704067200000";
    raw.page = "0";
    refused(raw, SYNC_MESSAGES, "last_updated_timestamp");
    raw.page = NULL;
    raw.before = "7156612312345678901";
    refused(raw, SYNC_MESSAGES, "last_updated_timestamp");
    raw.before = NULL;
    raw.since = msg_tok;
    refused(raw, SYNC_MESSAGES, "last_updated_timestamp");
    raw.since = conv_tok;
    refused(raw, SYNC_CONVERSATIONS, "since");
}
END_TEST

START_TEST(test_check_token)
{
    query_raw raw = {0};
    list_query q;

    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(query_check_token(&q, 1, "1_2"), 0); /* no token */

    raw.since = conv_tok;
    ck_assert_int_eq(parse(&raw, SYNC_CONVERSATIONS, &q), 0);
    ck_assert_int_eq(query_check_token(&q, 42, NULL), 0);
    ck_assert_int_eq(query_check_token(&q, 43, NULL), -1);
    ck_assert_int_eq(query_check_token(&q, 42, "7_42"), -1);

    raw.since = msg_tok;
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(query_check_token(&q, 42, "7_42"), 0);
    ck_assert_int_eq(query_check_token(&q, 7, "7_42"), -1);
    ck_assert_int_eq(query_check_token(&q, 42, "8_42"), -1);
    ck_assert_int_eq(query_check_token(&q, 42, "7_420"), -1);
    ck_assert_int_eq(query_check_token(&q, 42, NULL), -1);
}
END_TEST

/* parse(format(parse(raw))) gives the same query. */
static void round_trip(query_raw raw, sync_kind kind, const char *want)
{
    list_query a, b;
    char text[512];
    query_raw again;

    ck_assert_int_eq(parse(&raw, kind, &a), 0);
    int n = query_format(&a, text, sizeof text);
    ck_assert_int_gt(n, 0);
    ck_assert_str_eq(text, want);
    ck_assert_int_eq(query_split(text, &again), 0);
    ck_assert_int_eq(parse(&again, kind, &b), 0);
    ck_assert_int_eq(b.page_size, a.page_size);
    ck_assert_int_eq(b.page, a.page);
    ck_assert_int_eq(b.has_before, a.has_before);
    ck_assert_int_eq(b.before, a.before);
    ck_assert_int_eq(b.has_since, a.has_since);
    ck_assert_int_eq(b.since.user_id, a.since.user_id);
    ck_assert_int_eq(b.since.seq, a.since.seq);
    ck_assert_str_eq(b.since.conversation_id, a.since.conversation_id);
    ck_assert_int_eq(b.has_updated_after, a.has_updated_after);
    ck_assert_int_eq(b.updated_after, a.updated_after);
}

START_TEST(test_format_is_canonical_and_parses_back)
{
    query_raw raw = {0};
    char want[256];

    round_trip(raw, SYNC_CONVERSATIONS, "page_size=20&page=0");
    raw.page_size = "005";
    raw.page = "02";
    raw.before = "7156612312345678901";
    round_trip(raw, SYNC_MESSAGES,
               "page_size=5&page=2&before=7156612312345678901");
    memset(&raw, 0, sizeof raw);
    raw.since = msg_tok;
    snprintf(want, sizeof want, "page_size=20&since=%s", msg_tok);
    round_trip(raw, SYNC_MESSAGES, want);
    raw.since = conv_tok;
    raw.page_size = "100";
    snprintf(want, sizeof want, "page_size=100&since=%s", conv_tok);
    round_trip(raw, SYNC_CONVERSATIONS, want);
    memset(&raw, 0, sizeof raw);
    raw.last_updated_timestamp = "1704067200000";
    round_trip(raw, SYNC_MESSAGES,
               "page_size=20&last_updated_timestamp=1704067200000");
}
END_TEST

START_TEST(test_format_checks_cap)
{
    query_raw raw = {0};
    list_query q;
    char out[64];

    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    /* "page_size=20&page=0" is 19 characters. */
    ck_assert_int_eq(query_format(&q, out, 19), -1);
    ck_assert_int_eq(query_format(&q, out, 20), 19);
    ck_assert_int_eq(query_format(&q, out, 0), -1);
    raw.before = "7156612312345678901";
    ck_assert_int_eq(parse(&raw, SYNC_MESSAGES, &q), 0);
    ck_assert_int_eq(query_format(&q, out, 30), -1);
}
END_TEST

/* query_split reads back what query_format writes, and refuses
 * anything else a caller could put in an internal read. */
START_TEST(test_split)
{
    char text[128] = "page_size=7&before=15&page=2";
    query_raw raw;

    ck_assert_int_eq(query_split(text, &raw), 0);
    ck_assert_str_eq(raw.page_size, "7");
    ck_assert_str_eq(raw.before, "15");
    ck_assert_str_eq(raw.page, "2");
    ck_assert_ptr_null(raw.since);
    ck_assert_ptr_null(raw.last_updated_timestamp);

    strcpy(text, "");
    ck_assert_int_eq(query_split(text, &raw), 0);
    ck_assert_ptr_null(raw.page_size);
    strcpy(text, "since=&last_updated_timestamp=9");
    ck_assert_int_eq(query_split(text, &raw), 0);
    ck_assert_str_eq(raw.since, "");
    ck_assert_str_eq(raw.last_updated_timestamp, "9");

    const char *refused[] = {
        "page_size",        /* no '=' */
        "page_size=1&page", /* the second has none */
        "page_size=1&page_size=2",
        "size=1",
        "Page=1",
        "page_size=%31",
        "page_size=1+1",
        "&page=1",
        "page=1&&page_size=2",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        strcpy(text, refused[i]);
        ck_assert_msg(query_split(text, &raw) == -1, "accepted %s", refused[i]);
    }
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("core");

    tcase_add_unchecked_fixture(tc, make_tokens, NULL);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_page_size);
    tcase_add_test(tc, test_page);
    tcase_add_test(tc, test_offset_cap);
    tcase_add_test(tc, test_before);
    tcase_add_test(tc, test_since);
    tcase_add_test(tc, test_since_cannot_be_positioned);
    tcase_add_test(tc, test_last_updated_timestamp);
    tcase_add_test(tc, test_timestamp_combinations);
    tcase_add_test(tc, test_check_token);
    tcase_add_test(tc, test_format_is_canonical_and_parses_back);
    tcase_add_test(tc, test_format_checks_cap);
    tcase_add_test(tc, test_split);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(query_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
