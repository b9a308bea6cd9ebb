/*
 * test_ring.c - Check suite for ring.c: the hash is pinned to known
 * values (it decides where users live, forever), lookups agree with a
 * linear scan, membership changes move only the users they must, and
 * the JSON form round-trips and refuses anything malformed.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define USERS 100000

static ring_node node(const char *name, int port)
{
    ring_node n;

    memset(&n, 0, sizeof n);
    snprintf(n.name, sizeof n.name, "%s", name);
    snprintf(n.url, sizeof n.url, "http://127.0.0.1:%d", port);
    return n;
}

/* Nodes cache-1..cache-n. */
static ring_t *make_ring(int n, int vnodes)
{
    ring_node nodes[RING_NODES_MAX];

    for (int i = 0; i < n; i++) {
        char name[24];
        snprintf(name, sizeof name, "cache-%d", i + 1);
        nodes[i] = node(name, 18301 + i);
    }
    return ring_new(1, vnodes, nodes, n);
}

static const char *owner_name(const ring_t *r, int64_t user)
{
    return r->nodes[ring_owner(r, user)].name;
}

static ring_t *from_string(const char *json)
{
    return ring_from_json(json, strlen(json));
}

START_TEST(test_hash_is_pinned)
{
    /* Values from an independent implementation of FNV-1a 64 followed
     * by the splitmix64 finaliser. */
    ck_assert_uint_eq(ring_hash("", 0), 0xf52a15e9a9b5e89bULL);
    ck_assert_uint_eq(ring_hash("a", 1), 0x02c0bdbf481420f8ULL);
    ck_assert_uint_eq(ring_hash("cache-1#0", 9), 0x3f83e6494686cb86ULL);
    ck_assert_uint_eq(ring_hash_user(42), 0xa428ce5471163b02ULL);
    ck_assert_uint_eq(ring_hash_user(9007199254740991LL),
                      0xa209f6e6996e118bULL);
}
END_TEST

START_TEST(test_new_refuses_bad_membership)
{
    ring_node nodes[RING_NODES_MAX + 1];

    for (int i = 0; i <= RING_NODES_MAX; i++) {
        char name[24];
        snprintf(name, sizeof name, "n%d", i);
        nodes[i] = node(name, 1000 + i);
    }
    ck_assert_ptr_null(ring_new(1, 8, nodes, 0));
    ck_assert_ptr_null(ring_new(1, 8, nodes, RING_NODES_MAX + 1));
    ck_assert_ptr_null(ring_new(1, 0, nodes, 3));
    ring_t *r = ring_new(1, 1, nodes, RING_NODES_MAX);
    ck_assert_ptr_nonnull(r);
    ring_free(r);
    nodes[2] = node("n0", 1); /* duplicate name */
    ck_assert_ptr_null(ring_new(1, 8, nodes, 3));
    nodes[2] = node("", 1); /* empty name */
    ck_assert_ptr_null(ring_new(1, 8, nodes, 3));
    ring_free(NULL);
}
END_TEST

START_TEST(test_tokens_are_sorted_and_complete)
{
    ring_t *r = make_ring(3, 128);
    int per_node[3] = {0};

    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->ntokens, 3 * 128);
    for (size_t i = 0; i < r->ntokens; i++) {
        if (i > 0 && r->tokens[i].hash < r->tokens[i - 1].hash)
            ck_abort_msg("token %zu out of order", i);
        per_node[r->tokens[i].node]++;
    }
    for (int n = 0; n < 3; n++)
        ck_assert_int_eq(per_node[n], 128);
    /* Token 0 of cache-1 is where the pinned hash says. */
    int found = 0;
    for (size_t i = 0; i < r->ntokens; i++)
        found += r->tokens[i].hash == 0x3f83e6494686cb86ULL &&
                 r->tokens[i].node == 0;
    ck_assert_int_eq(found, 1);
    ring_free(r);
}
END_TEST

/* Owner by definition: the smallest token hash >= the user's hash, or
 * the smallest token of all when there is none. */
static int linear_owner(const ring_t *r, int64_t user)
{
    uint64_t h = ring_hash_user(user);
    size_t best = 0, first = 0;
    int have = 0;

    for (size_t i = 0; i < r->ntokens; i++) {
        if (r->tokens[i].hash < r->tokens[first].hash)
            first = i;
        if (r->tokens[i].hash >= h &&
            (!have || r->tokens[i].hash < r->tokens[best].hash)) {
            best = i;
            have = 1;
        }
    }
    return r->tokens[have ? best : first].node;
}

START_TEST(test_owner_matches_linear_scan_including_wrap)
{
    ring_t *r = make_ring(3, 12);
    int mismatches = 0, wrapped = 0, wrapped_wrong = 0;

    ck_assert_ptr_nonnull(r);
    /* With 12 tokens each, the lowest and highest tokens belong to
     * different nodes, so a wrong wrap would show. */
    ck_assert_int_ne(r->tokens[0].node, r->tokens[r->ntokens - 1].node);
    uint64_t top = r->tokens[r->ntokens - 1].hash;
    for (int64_t u = 1; u <= 20000; u++) {
        mismatches += ring_owner(r, u) != linear_owner(r, u);
        if (ring_hash_user(u) > top) {
            wrapped++;
            wrapped_wrong += ring_owner(r, u) != r->tokens[0].node;
        }
    }
    ck_assert_int_eq(mismatches, 0);
    ck_assert_int_gt(wrapped, 0);
    ck_assert_int_eq(wrapped_wrong, 0);
    ring_free(r);
}
END_TEST

static bool in_ranges(const ring_range *rr, int n, uint64_t h)
{
    for (int i = 0; i < n; i++)
        if (rr[i].lo <= h && h <= rr[i].hi)
            return true;
    return false;
}

START_TEST(test_foreign_ranges_hold_exactly_the_other_nodes_users)
{
    ring_t *r = make_ring(3, 12);
    ring_range rr[3 * 12 + 1];

    ck_assert_ptr_nonnull(r);
    for (int node = 0; node < 3; node++) {
        int n = ring_foreign_ranges(r, node, rr, 3 * 12 + 1);
        ck_assert_int_gt(n, 0);
        /* Ascending, disjoint and never touching (touching ones merge). */
        for (int i = 0; i < n; i++) {
            ck_assert_uint_le(rr[i].lo, rr[i].hi);
            if (i)
                ck_assert_uint_gt(rr[i].lo, rr[i - 1].hi + 1);
        }
        int wrong = 0;
        for (int64_t u = 1; u <= 20000; u++)
            wrong += in_ranges(rr, n, ring_hash_user(u)) !=
                     (ring_owner(r, u) != node);
        ck_assert_int_eq(wrong, 0);
        /* The ends of each range are decided too: a hash equal to a
         * token belongs to that token's node. */
        for (size_t i = 0; i < r->ntokens; i++)
            ck_assert_int_eq(in_ranges(rr, n, r->tokens[i].hash),
                             r->tokens[i].node != node);
    }
    ck_assert_int_eq(ring_foreign_ranges(r, 0, rr, 2), -1);
    /* A node not in the ring owns nothing. */
    ck_assert_int_eq(ring_foreign_ranges(r, -1, rr, 3 * 12 + 1), 1);
    ck_assert_uint_eq(rr[0].lo, 0);
    ck_assert_uint_eq(rr[0].hi, UINT64_MAX);
    ring_free(r);
}
END_TEST

START_TEST(test_every_user_has_a_node_and_load_is_spread)
{
    ring_t *r = make_ring(3, RING_VNODES_DEFAULT);
    int count[3] = {0};

    ck_assert_ptr_nonnull(r);
    for (int64_t u = 1; u <= USERS; u++) {
        int o = ring_owner(r, u);
        if (o < 0 || o >= 3)
            ck_abort_msg("user %lld owned by %d", (long long)u, o);
        count[o]++;
    }
    for (int n = 0; n < 3; n++) {
        ck_assert_int_gt(count[n], USERS / 5);
        ck_assert_int_lt(count[n], USERS / 2);
    }
    ring_free(r);
}
END_TEST

START_TEST(test_owner_does_not_depend_on_node_order)
{
    ring_node fwd[3] = {node("cache-1", 1), node("cache-2", 2),
                        node("cache-3", 3)};
    ring_node rev[3] = {fwd[2], fwd[0], fwd[1]};
    ring_t *a = ring_new(1, 64, fwd, 3);
    ring_t *b = ring_new(9, 64, rev, 3);
    int differ = 0;

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    for (int64_t u = 1; u <= 10000; u++)
        differ += strcmp(owner_name(a, u), owner_name(b, u)) != 0;
    ck_assert_int_eq(differ, 0);
    ring_free(a);
    ring_free(b);
}
END_TEST

START_TEST(test_adding_a_node_moves_about_a_quarter_to_it)
{
    ring_t *three = make_ring(3, RING_VNODES_DEFAULT);
    ring_t *four = make_ring(4, RING_VNODES_DEFAULT);
    int moved = 0, moved_elsewhere = 0;

    ck_assert_ptr_nonnull(three);
    ck_assert_ptr_nonnull(four);
    for (int64_t u = 1; u <= USERS; u++) {
        const char *before = owner_name(three, u);
        const char *after = owner_name(four, u);
        if (strcmp(before, after) != 0) {
            moved++;
            moved_elsewhere += strcmp(after, "cache-4") != 0;
        }
    }
    ck_assert_int_eq(moved_elsewhere, 0);
    ck_assert_int_gt(moved, USERS * 15 / 100);
    ck_assert_int_lt(moved, USERS * 35 / 100);
    ring_free(three);
    ring_free(four);
}
END_TEST

START_TEST(test_removing_a_node_moves_only_its_users)
{
    ring_t *three = make_ring(3, RING_VNODES_DEFAULT);
    int wrongly_moved = 0, orphans = 0;

    ck_assert_ptr_nonnull(three);
    ring_node left[2] = {three->nodes[0], three->nodes[2]};
    ring_t *two = ring_new(2, RING_VNODES_DEFAULT, left, 2);
    ck_assert_ptr_nonnull(two);
    for (int64_t u = 1; u <= USERS; u++) {
        const char *before = owner_name(three, u);
        const char *after = owner_name(two, u);
        if (strcmp(before, "cache-2") == 0)
            orphans++;
        else
            wrongly_moved += strcmp(before, after) != 0;
    }
    ck_assert_int_eq(wrongly_moved, 0);
    ck_assert_int_gt(orphans, 0);
    ring_free(three);
    ring_free(two);
}
END_TEST

START_TEST(test_find_by_name)
{
    ring_t *r = make_ring(3, 4);

    ck_assert_int_eq(ring_find(r, "cache-1"), 0);
    ck_assert_int_eq(ring_find(r, "cache-3"), 2);
    ck_assert_int_eq(ring_find(r, "cache-4"), -1);
    ck_assert_int_eq(ring_find(r, ""), -1);
    ring_free(r);
}
END_TEST

START_TEST(test_json_round_trip)
{
    ring_t *r = make_ring(3, 32);
    r->epoch = 12345678901LL;
    char *json = ring_to_json(r);

    ck_assert_ptr_nonnull(json);
    ck_assert_ptr_nonnull(strstr(json, "\"epoch\":12345678901"));
    ck_assert_ptr_nonnull(
        strstr(json, "{\"name\":\"cache-1\",\"url\":\"http://127.0.0.1:18301\","
                     "\"slot\":\"cache-1\"}"));
    ring_t *back = ring_from_json(json, strlen(json));
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(back->epoch, r->epoch);
    ck_assert_int_eq(back->vnodes, 32);
    ck_assert_int_eq(back->nnodes, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(back->nodes[i].name, r->nodes[i].name);
        ck_assert_str_eq(back->nodes[i].url, r->nodes[i].url);
    }
    ck_assert_uint_eq(back->ntokens, r->ntokens);
    int differ = 0;
    for (size_t i = 0; i < r->ntokens; i++)
        differ += back->tokens[i].hash != r->tokens[i].hash ||
                  back->tokens[i].node != r->tokens[i].node;
    ck_assert_int_eq(differ, 0);
    free(json);
    ring_free(r);
    ring_free(back);
}
END_TEST

/* A planned change's attempt rides with its ring, so a node can tell the
 * ring it prepared for from another of the same epoch; rings of no
 * attempt keep their old form. */
START_TEST(test_json_carries_the_attempt)
{
    ring_t *r = make_ring(2, 8);
    char *plain = ring_to_json(r);
    ck_assert_ptr_nonnull(plain);
    ck_assert_ptr_null(strstr(plain, "attempt"));
    r->attempt = 4611686018427387905LL;
    char *json = ring_to_json(r);
    ck_assert_ptr_nonnull(strstr(json, "\"attempt\":4611686018427387905"));
    ring_t *back = ring_from_json(json, strlen(json));
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(back->attempt, r->attempt);
    ring_t *copy = ring_copy(back);
    ck_assert_ptr_nonnull(copy);
    ck_assert_int_eq(copy->attempt, r->attempt);
    ck_assert_int_eq(copy->epoch, r->epoch);
    ck_assert_uint_eq(copy->ntokens, r->ntokens);
    ring_t *none = ring_from_json(plain, strlen(plain));
    ck_assert_ptr_nonnull(none);
    ck_assert_int_eq(none->attempt, 0);
    const char *bad[] = {
        "{\"epoch\":1,\"vnodes\":1,\"attempt\":-1,\"nodes\":[{\"name\":\"a\","
        "\"url\":\"http://x\"}]}",
        "{\"epoch\":1,\"vnodes\":1,\"attempt\":\"7\",\"nodes\":[{\"name\":"
        "\"a\",\"url\":\"http://x\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_ptr_null(ring_from_json(bad[i], strlen(bad[i])));
    free(plain);
    free(json);
    ring_free(r);
    ring_free(back);
    ring_free(copy);
    ring_free(none);
}
END_TEST

START_TEST(test_json_accepts_limits)
{
    char name63[64], json[512];

    memset(name63, 'n', 63);
    name63[63] = '\0';
    snprintf(json, sizeof json,
             "{\"epoch\":0,\"vnodes\":4096,\"extra\":true,"
             "\"nodes\":[{\"name\":\"%s\",\"url\":\"u\"}]}",
             name63);
    ring_t *r = from_string(json);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->nodes[0].name, name63);
    ck_assert_uint_eq(r->ntokens, 4096);
    ring_free(r);
}
END_TEST

START_TEST(test_json_refuses_malformed)
{
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "{}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]"
        "} trailing",
        "{\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]}",
        "{\"epoch\":-1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]"
        "}",
        "{\"epoch\":1.5,\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]"
        "}",
        "{\"epoch\":\"1\",\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":"
        "\"u\"}]}",
        "{\"epoch\":1,\"vnodes\":0,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]}",
        "{\"epoch\":1,\"vnodes\":4097,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}"
        "]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":{}}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[1]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\"}]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"url\":\"u\"}]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":1,\"url\":\"u\"}]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"\",\"url\":\"u\"}]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"\"}]}",
        "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\",\"url\":\"u\"},"
        "{\"name\":\"a\",\"url\":\"v\"}]}",
        "{\"epoch\":1,\"epoch\":2,\"vnodes\":8,"
        "\"nodes\":[{\"name\":\"a\",\"url\":\"u\"}]}",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ring_t *r = from_string(bad[i]);
        if (r != NULL) {
            ring_free(r);
            ck_abort_msg("accepted %s", bad[i]);
        }
    }
}
END_TEST

START_TEST(test_json_refuses_oversized_fields)
{
    char long_name[65], long_url[129], json[1024];

    memset(long_name, 'n', 64);
    long_name[64] = '\0';
    memset(long_url, 'u', 128);
    long_url[128] = '\0';
    snprintf(json, sizeof json,
             "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"%s\","
             "\"url\":\"u\"}]}",
             long_name);
    ck_assert_ptr_null(from_string(json));
    snprintf(json, sizeof json,
             "{\"epoch\":1,\"vnodes\":8,\"nodes\":[{\"name\":\"a\","
             "\"url\":\"%s\"}]}",
             long_url);
    ck_assert_ptr_null(from_string(json));

    /* 65 nodes is one too many. */
    size_t pos = (size_t)snprintf(json, sizeof json,
                                  "{\"epoch\":1,\"vnodes\":1,\"nodes\":[");
    char *big = malloc(8192);
    ck_assert_ptr_nonnull(big);
    memcpy(big, json, pos);
    for (int i = 0; i <= RING_NODES_MAX; i++)
        pos += (size_t)snprintf(big + pos, 8192 - pos,
                                "%s{\"name\":\"n%d\",\"url\":\"u\"}",
                                i ? "," : "", i);
    pos += (size_t)snprintf(big + pos, 8192 - pos, "]}");
    ck_assert_ptr_null(ring_from_json(big, pos));
    free(big);
}
END_TEST

/* The node shape alone, as a heartbeat carries it: extra members are
 * ignored, each field is a non-empty string without NUL that fits. */
START_TEST(test_node_from_json)
{
    static const char *const bad[] = {
        "[]",
        "\"a\"",
        "{\"name\":\"a\"}",
        "{\"url\":\"u\"}",
        "{\"name\":\"\",\"url\":\"u\"}",
        "{\"name\":\"a\",\"url\":2}",
        "{\"name\":\"a\\u0000b\",\"url\":\"u\"}",
        "{\"name\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaa\",\"url\":\"u\"}",
    };
    ring_node n;
    json_t *j = json_loads(
        "{\"name\":\"cache-1\",\"url\":\"http://127.0.0.1:1\",\"epoch\":3}",
        JSON_ALLOW_NUL, NULL);

    ck_assert_int_eq(ring_node_from_json(j, &n), 0);
    ck_assert_str_eq(n.name, "cache-1");
    ck_assert_str_eq(n.url, "http://127.0.0.1:1");
    json_decref(j);
    ck_assert_int_eq(ring_node_from_json(NULL, &n), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = json_loads(bad[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        ck_assert_ptr_nonnull(j);
        if (ring_node_from_json(j, &n) != -1)
            ck_abort_msg("accepted %s", bad[i]);
        json_decref(j);
    }
}
END_TEST

/* A standby that takes cache-2's slot owns exactly cache-2's users, and
 * the ring keeps the slot through its JSON form. */
START_TEST(test_standby_takes_exactly_a_slot)
{
    ring_t *before = make_ring(3, 64);
    ring_node nodes[3] = {before->nodes[0], node("cache-4", 4),
                          before->nodes[2]};
    snprintf(nodes[1].slot, sizeof nodes[1].slot, "cache-2");
    ring_t *after = ring_new(2, 64, nodes, 3);
    ck_assert_ptr_nonnull(after);
    for (int64_t u = 1; u <= USERS; u++) {
        int was = ring_owner(before, u), is = ring_owner(after, u);
        ck_assert_str_eq(ring_node_slot(&after->nodes[is]),
                         before->nodes[was].name);
    }
    char *text = ring_to_json(after);
    ring_t *copy = ring_from_json(text, strlen(text));
    ck_assert_ptr_nonnull(copy);
    ck_assert_str_eq(copy->nodes[1].slot, "cache-2");
    ck_assert_str_eq(copy->nodes[0].slot, "cache-1");
    ck_assert_int_eq(ring_owner(copy, 12345), ring_owner(after, 12345));
    free(text);
    ring_free(copy);
    ring_free(after);
    ring_free(before);
}
END_TEST

/* Two nodes may not hold one slot: they would share every token. */
START_TEST(test_slots_are_unique)
{
    ring_node nodes[2] = {node("cache-1", 1), node("cache-4", 4)};
    snprintf(nodes[1].slot, sizeof nodes[1].slot, "cache-1");
    ck_assert_ptr_null(ring_new(1, 8, nodes, 2));
}
END_TEST

static Suite *ring_suite(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("placement");
    TCase *json = tcase_create("json");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hash_is_pinned);
    tcase_add_test(tc, test_new_refuses_bad_membership);
    tcase_add_test(tc, test_tokens_are_sorted_and_complete);
    tcase_add_test(tc, test_owner_matches_linear_scan_including_wrap);
    tcase_add_test(tc, test_foreign_ranges_hold_exactly_the_other_nodes_users);
    tcase_add_test(tc, test_every_user_has_a_node_and_load_is_spread);
    tcase_add_test(tc, test_owner_does_not_depend_on_node_order);
    tcase_add_test(tc, test_adding_a_node_moves_about_a_quarter_to_it);
    tcase_add_test(tc, test_removing_a_node_moves_only_its_users);
    tcase_add_test(tc, test_find_by_name);
    tcase_add_test(tc, test_standby_takes_exactly_a_slot);
    tcase_add_test(tc, test_slots_are_unique);
    tcase_add_test(json, test_json_round_trip);
    tcase_add_test(json, test_json_carries_the_attempt);
    tcase_add_test(json, test_json_accepts_limits);
    tcase_add_test(json, test_json_refuses_malformed);
    tcase_add_test(json, test_json_refuses_oversized_fields);
    tcase_add_test(json, test_node_from_json);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, json);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ring_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
