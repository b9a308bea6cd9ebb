/*
 * test_placement.c - Check suite for services/cache/placement.c: the
 * cache node's copy of storage's shard map. Malformed answers change
 * nothing; a user's instance is the one storage computes (ring hash
 * modulo the shards, then the shard's instance); a different map replaces
 * the old one; the fetch is claimed by one caller at a time and spaced.
 */
#include <check.h>
#include <stdlib.h>

#include "../../services/cache/placement.c"

static json_t *answer(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* Installs text; returns placement_install's result. */
static int install(placement *p, const char *text)
{
    json_t *j = answer(text);
    int rc = placement_install(p, j);
    json_decref(j);
    return rc;
}

/* A user whose shard, of `shards`, is `shard`. */
static int64_t user_on_shard(int shards, int shard)
{
    for (int64_t u = 1; u < 100000; u++)
        if ((int)(ring_hash_user(u) % (uint64_t)shards) == shard)
            return u;
    ck_abort_msg("no user on shard %d", shard);
    return 0;
}

START_TEST(test_unknown_map_is_instance_0)
{
    placement *p = placement_new();
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(placement_instance(p, 42), 0);
    placement_free(p);
}
END_TEST

START_TEST(test_malformed_answers_change_nothing)
{
    placement *p = placement_new();
    const char *bad[] = {
        "{}",
        "[]",
        "{\"shards\":2,\"instances\":2}",
        "{\"shards\":2,\"instances\":2,\"instance_of\":[0]}",
        "{\"shards\":2,\"instances\":2,\"instance_of\":[0,2]}",
        "{\"shards\":2,\"instances\":2,\"instance_of\":[0,-1]}",
        "{\"shards\":2,\"instances\":2,\"instance_of\":[0,\"1\"]}",
        "{\"shards\":0,\"instances\":2,\"instance_of\":[]}",
        "{\"shards\":1,\"instances\":0,\"instance_of\":[0]}",
        "{\"shards\":1,\"instances\":65,\"instance_of\":[0]}",
        "{\"shards\":\"2\",\"instances\":2,\"instance_of\":[0,1]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(install(p, bad[i]) == -1, "accepted %s", bad[i]);
    int64_t u = user_on_shard(2, 1);
    ck_assert_int_eq(placement_instance(p, u), 0);
    placement_free(p);
}
END_TEST

START_TEST(test_instance_follows_shard_map)
{
    placement *p = placement_new();
    ck_assert_int_eq(
        install(p, "{\"shards\":4,\"instances\":2,\"instance_of\":[1,1,0,0]}"),
        0);
    ck_assert_int_eq(placement_instance(p, user_on_shard(4, 0)), 1);
    ck_assert_int_eq(placement_instance(p, user_on_shard(4, 1)), 1);
    ck_assert_int_eq(placement_instance(p, user_on_shard(4, 2)), 0);
    ck_assert_int_eq(placement_instance(p, user_on_shard(4, 3)), 0);
    /* A shard moved: the new map replaces the old one. */
    ck_assert_int_eq(
        install(p, "{\"shards\":4,\"instances\":3,\"instance_of\":[1,2,0,0]}"),
        0);
    ck_assert_int_eq(placement_instance(p, user_on_shard(4, 1)), 2);
    const map *before = atomic_load(&p->current);
    /* The same map again keeps the installed one. */
    ck_assert_int_eq(
        install(p, "{\"shards\":4,\"instances\":3,\"instance_of\":[1,2,0,0]}"),
        0);
    ck_assert_ptr_eq(atomic_load(&p->current), before);
    placement_free(p);
}
END_TEST

START_TEST(test_fetch_is_claimed_once_and_spaced)
{
    placement *p = placement_new();
    ck_assert(placement_claim_fetch(p, 1000));
    ck_assert(!placement_claim_fetch(p, 1000)); /* one fetch at a time */
    placement_fetched(p, false, 1000);
    ck_assert(!placement_claim_fetch(p, 1000 + PLACEMENT_RETRY_MS - 1));
    ck_assert(placement_claim_fetch(p, 1000 + PLACEMENT_RETRY_MS));
    placement_fetched(p, true, 10000);
    ck_assert(!placement_claim_fetch(p, 10000 + PLACEMENT_REFRESH_MS - 1));
    ck_assert(placement_claim_fetch(p, 10000 + PLACEMENT_REFRESH_MS));
    placement_free(p);
}
END_TEST

static Suite *placement_suite(void)
{
    Suite *s = suite_create("placement");
    TCase *tc = tcase_create("map");

    tcase_add_test(tc, test_unknown_map_is_instance_0);
    tcase_add_test(tc, test_malformed_answers_change_nothing);
    tcase_add_test(tc, test_instance_follows_shard_map);
    tcase_add_test(tc, test_fetch_is_claimed_once_and_spaced);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(placement_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
