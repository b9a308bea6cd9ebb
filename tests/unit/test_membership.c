/*
 * test_membership.c - the router's node list parsing and heartbeat table
 * (services/router/membership.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/router/membership.c"

START_TEST(test_parse_and_canonical_string)
{
    ring_node nodes[RING_NODES_MAX];
    int n = 0;
    char why[256];
    ck_assert_int_eq(membership_parse(" a=http://h:1 , b=http://h:2", nodes, &n,
                                      why, sizeof why),
                     0);
    ck_assert_int_eq(n, 2);
    snprintf(nodes[1].slot, sizeof nodes[1].slot, "c");
    char text[MEMBERSHIP_STRING_MAX];
    ck_assert_int_gt(membership_string(nodes, n, 8, text, sizeof text), 0);
    ck_assert_str_eq(text, "vnodes=8,a=http://h:1@a,b=http://h:2@c");
    ck_assert_int_eq(membership_parse("a=http://h:1,a=http://h:2", nodes, &n,
                                      why, sizeof why),
                     -1);
    ck_assert_int_eq(membership_parse("a=ftp://h", nodes, &n, why, sizeof why),
                     -1);
}
END_TEST

START_TEST(test_heartbeats_age_and_spares)
{
    member_table t;
    ck_assert_int_eq(members_init(&t, 0), 0);
    ck_assert_int_eq(members_age(&t, "a", 10), -1);
    ck_assert_int_eq(members_heartbeat(&t, "a", "http://h:1", 1, 100), 0);
    ck_assert_int_eq(members_heartbeat(&t, "s", "http://h:9", 1, 150), 0);
    ck_assert_int_eq(members_age(&t, "a", 400), 300);
    ring_node a = {.name = "a", .url = "http://h:1"};
    ring_t *r = ring_new(1, 4, &a, 1);
    ck_assert_ptr_nonnull(r);
    ring_node spare;
    /* s is outside the ring and heard recently: the spare. */
    ck_assert_int_eq(members_pick_spare(&t, r, 200, 100, &spare), 0);
    ck_assert_str_eq(spare.name, "s");
    ck_assert_str_eq(spare.url, "http://h:9");
    ck_assert_str_eq(spare.slot, "");
    /* Unheard for longer than the limit: no spare. */
    ck_assert_int_eq(members_pick_spare(&t, r, 1000, 100, &spare), -1);
    ring_free(r);
    members_destroy(&t);
}
END_TEST

/* A full table makes room by forgetting a node long unheard, and only
 * then. */
START_TEST(test_full_table_forgets_the_longest_unheard)
{
    member_table t;
    ck_assert_int_eq(members_init(&t, 0), 0);
    char name[32];
    for (int i = 0; i < MEMBERS_MAX; i++) {
        snprintf(name, sizeof name, "n%d", i);
        ck_assert_int_eq(members_heartbeat(&t, name, "http://h:1", 1, 1000 + i),
                         0);
    }
    ck_assert_int_eq(members_heartbeat(&t, "new", "http://h:2", 1, 2000), -1);
    int64_t later = 1000 + MEMBERS_FORGET_MS + 1;
    ck_assert_int_eq(members_heartbeat(&t, "new", "http://h:2", 1, later), 0);
    ck_assert_int_eq(members_age(&t, "n0", later), -1);
    ck_assert_int_eq(members_age(&t, "new", later), 0);
    ck_assert_int_eq(members_age(&t, "n1", later), later - 1001);
    members_destroy(&t);
}
END_TEST

/* The failover check reads the clock, then each node's age; a heartbeat
 * landing in between is newer than that clock. Such a node was heard
 * just now: a negative age read as "never heard" failed over a healthy
 * node under load (its beats arriving every 200 ms all along). */
START_TEST(test_heartbeat_after_the_clock_read_is_age_zero)
{
    member_table t;
    ck_assert_int_eq(members_init(&t, 0), 0);
    ck_assert_int_eq(members_heartbeat(&t, "a", "http://h:1", 1, 5000), 0);
    ck_assert_int_eq(members_age(&t, "a", 4990), 0);
    ck_assert_int_eq(members_age(&t, "a", 5000), 0);
    ck_assert_int_eq(members_age(&t, "a", 5007), 7);
    ck_assert_int_eq(members_age(&t, "never", 4990), -1);
    members_destroy(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("membership");
    TCase *tc = tcase_create("membership");
    tcase_add_test(tc, test_parse_and_canonical_string);
    tcase_add_test(tc, test_heartbeats_age_and_spares);
    tcase_add_test(tc, test_full_table_forgets_the_longest_unheard);
    tcase_add_test(tc, test_heartbeat_after_the_clock_read_is_age_zero);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
