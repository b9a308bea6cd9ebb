/*
 * test_gateway_auth.c - Check suite for services/gateway/auth.c: bearer
 * token extraction, authentication against real signed tokens, the path
 * authorisation rule (the segment must be exactly the token's user), and
 * the lenient sender scan that lets authorisation answer 403 before
 * validation would answer 400.
 *
 * auth.c is compiled into this test directly: the unit-test link sees
 * only libcommon, and auth.c needs nothing else.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../services/gateway/auth.c"

#define SECRET "test-secret"
#define ME 4242LL

static bool other_sender(const char *body, int64_t user)
{
    return auth_body_names_other_sender(body, strlen(body), user);
}

static const char *bearer(const char *header, size_t *len)
{
    const char *token = NULL;
    return auth_bearer_token(header, &token, len) == 0 ? token : NULL;
}

START_TEST(test_bearer_takes_the_token)
{
    size_t len = 0;
    const char *t = bearer("Bearer abc.def.ghi", &len);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(len, 11);
    ck_assert_int_eq(strncmp(t, "abc.def.ghi", len), 0);
}
END_TEST

START_TEST(test_bearer_scheme_is_case_insensitive)
{
    size_t len = 0;
    ck_assert_ptr_nonnull(bearer("bearer x", &len));
    ck_assert_ptr_nonnull(bearer("BEARER x", &len));
    ck_assert_ptr_nonnull(bearer("BeArEr x", &len));
    ck_assert_uint_eq(len, 1);
}
END_TEST

START_TEST(test_bearer_trims_blanks_around_the_token)
{
    size_t len = 0;
    const char *t = bearer("Bearer    tok \t ", &len);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(strncmp(t, "tok", 3), 0);
}
END_TEST

START_TEST(test_bearer_refuses_missing_empty_and_other_schemes)
{
    size_t len = 0;
    ck_assert_ptr_null(bearer(NULL, &len));
    ck_assert_ptr_null(bearer("", &len));
    ck_assert_ptr_null(bearer("Bearer", &len));
    ck_assert_ptr_null(bearer("Bearer ", &len));
    ck_assert_ptr_null(bearer("Bearer    ", &len));
    ck_assert_ptr_null(bearer("Basic dXNlcjpwYXNz", &len));
    ck_assert_ptr_null(bearer("Bearerabc", &len));
    ck_assert_ptr_null(bearer("Bearer\tabc", &len));
    ck_assert_ptr_null(bearer("abc.def.ghi", &len));
    ck_assert_ptr_null(bearer(" Bearer abc", &len));
    ck_assert_ptr_null(bearer("Bearer abc def", &len));
}
END_TEST

START_TEST(test_bearer_caps_the_token_length)
{
    size_t len = 0;
    char *h = malloc(7 + JWT_TOKEN_MAX + 2);
    ck_assert_ptr_nonnull(h);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'a', JWT_TOKEN_MAX);
    h[7 + JWT_TOKEN_MAX] = '\0';
    ck_assert_ptr_nonnull(bearer(h, &len));
    ck_assert_uint_eq(len, JWT_TOKEN_MAX);
    h[7 + JWT_TOKEN_MAX] = 'a';
    h[7 + JWT_TOKEN_MAX + 1] = '\0';
    ck_assert_ptr_null(bearer(h, &len));
    free(h);
}
END_TEST

/* "Bearer <token for user, expiring at exp, signed with secret>". */
static void header_for(const char *secret, int64_t user, int64_t exp, char *out,
                       size_t cap)
{
    char token[512];
    ck_assert_int_gt(jwt_sign(secret, user, exp, token, sizeof(token)), 0);
    ck_assert_int_lt(snprintf(out, cap, "Bearer %s", token), (int)cap);
}

START_TEST(test_authenticate_accepts_a_valid_token)
{
    int64_t now = (int64_t)time(NULL);
    char h[600];
    header_for(SECRET, ME, now + 3600, h, sizeof(h));
    int64_t user = 0;
    const char *detail = "unset";
    ck_assert_int_eq(auth_authenticate(SECRET, h, now, &user, &detail),
                     AUTH_OK);
    ck_assert_int_eq(user, ME);
    ck_assert_ptr_null(detail);
    /* Expired 30 s ago: inside the tolerated clock skew. */
    header_for(SECRET, ME, now - 30, h, sizeof(h));
    ck_assert_int_eq(auth_authenticate(SECRET, h, now, &user, &detail),
                     AUTH_OK);
}
END_TEST

START_TEST(test_authenticate_refuses_each_kind_of_bad_header)
{
    int64_t now = (int64_t)time(NULL);
    int64_t user = 0;
    const char *detail = NULL;
    char h[600];

    ck_assert_int_eq(auth_authenticate(SECRET, NULL, now, &user, &detail),
                     AUTH_MISSING);
    ck_assert_ptr_nonnull(detail);
    ck_assert_int_eq(
        auth_authenticate(SECRET, "Basic abc", now, &user, &detail),
        AUTH_NOT_BEARER);
    ck_assert_int_eq(
        auth_authenticate(SECRET, "Bearer abc", now, &user, &detail),
        AUTH_BAD_TOKEN);
    header_for("another-secret", ME, now + 3600, h, sizeof(h));
    ck_assert_int_eq(auth_authenticate(SECRET, h, now, &user, &detail),
                     AUTH_BAD_TOKEN);
    header_for(SECRET, ME, now - 120, h, sizeof(h));
    ck_assert_int_eq(auth_authenticate(SECRET, h, now, &user, &detail),
                     AUTH_BAD_TOKEN);
    ck_assert_ptr_nonnull(detail);
}
END_TEST

START_TEST(test_path_must_be_exactly_the_token_user)
{
    ck_assert(auth_path_is_user("4242", ME));
    ck_assert(auth_path_is_user("9007199254740991", MSG_USER_ID_MAX));
    ck_assert(!auth_path_is_user("4243", ME));
    ck_assert(!auth_path_is_user("04242", ME));
    ck_assert(!auth_path_is_user("+4242", ME));
    ck_assert(!auth_path_is_user("4242 ", ME));
    ck_assert(!auth_path_is_user("4242.0", ME));
    ck_assert(!auth_path_is_user("abc", ME));
    ck_assert(!auth_path_is_user("", ME));
    ck_assert(!auth_path_is_user(NULL, ME));
}
END_TEST

START_TEST(test_sender_scan_compares_the_integer)
{
    const char *body = "{\"sender_id\": 4242, \"recipient_id\": 7, "
                       "\"content\": \"hi\", \"client_message_id\": \"k\"}";
    ck_assert(!other_sender(body, ME));
    ck_assert(other_sender(body, 4243));
    ck_assert(other_sender("{\"sender_id\":1}", ME));
    ck_assert(!other_sender(" \n{ \"sender_id\" \t:\r\n4242 } ", ME));
}
END_TEST

START_TEST(test_sender_scan_reads_past_invalid_strings)
{
    /* Invalid UTF-8 and a lone surrogate escape make jansson refuse the
     * whole body; the scan still sees who the sender is. */
    ck_assert(
        other_sender("{\"content\": \"\xff\xfe\", \"sender_id\": 9}", ME));
    ck_assert(other_sender("{\"sender_id\": 9, \"content\": \"\xff\"}", ME));
    ck_assert(other_sender("{\"content\": \"\\ud800\", \"sender_id\": 9}", ME));
    ck_assert(
        !other_sender("{\"content\": \"\xff\", \"sender_id\": 4242}", ME));
    /* A quote escaped inside a string does not end it. */
    ck_assert(other_sender("{\"content\": \"a\\\"b\", \"sender_id\": 9}", ME));
    ck_assert(!other_sender(
        "{\"content\": \"\\\"sender_id\\\": 9\", \"sender_id\": 4242}", ME));
}
END_TEST

/* A number that is no user id names no one: validation answers 400
 * (SPEC: bad ids), not authorisation. */
START_TEST(test_sender_scan_leaves_non_ids_to_validation)
{
    ck_assert(!other_sender("{\"sender_id\": 0}", ME));
    ck_assert(!other_sender("{\"sender_id\": -4242}", ME));
    ck_assert(!other_sender("{\"sender_id\": -0}", ME));
    ck_assert(!other_sender("{\"sender_id\": 9007199254740992}", ME));
    ck_assert(!other_sender("{\"sender_id\": 99999999999999999999999999}", ME));
    ck_assert(!other_sender("{\"sender_id\": 4242.5}", ME));
    ck_assert(!other_sender("{\"sender_id\": 0.0}", ME));
    ck_assert(!other_sender("{\"sender_id\": -9.0}", ME));
    ck_assert(!other_sender("{\"sender_id\": 1e999}", ME));
    ck_assert(!other_sender("{\"sender_id\": 9.007199254740992e15}", ME));
    ck_assert(!other_sender("{\"sender_id\": \"-1\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": \"0\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": \"9007199254740992\"}", ME));
    ck_assert(
        !other_sender("{\"sender_id\": 9007199254740991}", MSG_USER_ID_MAX));
    ck_assert(other_sender("{\"sender_id\": 9007199254740991}", ME));
    ck_assert(other_sender("{\"sender_id\": 1}", ME));
}
END_TEST

START_TEST(test_sender_scan_sees_other_users_in_any_number_form)
{
    ck_assert(other_sender("{\"sender_id\": \"9\"}", ME));
    ck_assert(other_sender("{\"sender_id\": \"\\u0039\"}", ME));
    ck_assert(other_sender("{\"sender_id\": 9.0}", ME));
    ck_assert(other_sender("{\"sender_id\": 9e0}", ME));
    ck_assert(other_sender("{\"sender_id\": 0.9e1}", ME));
    ck_assert(other_sender("{\"sender_id\": 9007199254740991.0}", ME));
}
END_TEST

/* The user's own id mistyped, or a value that names nobody, is left to
 * validation (400). */
START_TEST(test_sender_scan_leaves_non_integers_to_validation)
{
    ck_assert(!other_sender("{\"sender_id\": \"4242\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": 4242.0}", ME));
    ck_assert(!other_sender("{\"sender_id\": 4242e0}", ME));
    ck_assert(!other_sender("{\"sender_id\": 4.242E3 , \"x\": 1}", ME));
    ck_assert(!other_sender("{\"sender_id\": \"abc\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": \" 9\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": \"\"}", ME));
    ck_assert(!other_sender("{\"sender_id\": 9.0.1}", ME));
    ck_assert(!other_sender("{\"sender_id\": null}", ME));
    ck_assert(!other_sender("{\"sender_id\": true}", ME));
    ck_assert(!other_sender("{\"sender_id\": [9]}", ME));
    ck_assert(!other_sender("{\"sender_id\": {\"id\": 9}}", ME));
    ck_assert(!other_sender("{\"sender_id\": -}", ME));
}
END_TEST

START_TEST(test_sender_scan_looks_only_at_the_top_level)
{
    ck_assert(
        !other_sender("{\"x\": {\"sender_id\": 9}, \"sender_id\": 4242}", ME));
    ck_assert(!other_sender("{\"x\": [{\"sender_id\": 9}]}", ME));
    ck_assert(other_sender(
        "{\"a\": [\"]}\", {\"b\": \"{\"}], \"sender_id\": 9}", ME));
    ck_assert(!other_sender("{\"sender_idx\": 9, \"xsender_id\": 9}", ME));
}
END_TEST

START_TEST(test_sender_scan_sees_every_duplicate_and_escaped_keys)
{
    ck_assert(other_sender("{\"sender_id\": 4242, \"sender_id\": 9}", ME));
    ck_assert(other_sender("{\"sender_id\": 9, \"sender_id\": 4242}", ME));
    ck_assert(other_sender("{\"sender\\u005fid\": 9}", ME));
    ck_assert(other_sender("{\"\\u0073ender_id\": 9}", ME));
    ck_assert(!other_sender("{\"sende\\r_id\": 9}", ME));
    ck_assert(!other_sender("{\"sender\\u00e9id\": 9}", ME));
}
END_TEST

START_TEST(test_sender_scan_gives_up_on_unreadable_bodies)
{
    ck_assert(!auth_body_names_other_sender(NULL, 0, ME));
    ck_assert(!other_sender("", ME));
    ck_assert(!other_sender("hello", ME));
    ck_assert(!other_sender("[{\"sender_id\": 9}]", ME));
    ck_assert(!other_sender("{}", ME));
    ck_assert(!other_sender("{\"content\": \"unterminated", ME));
    ck_assert(
        !other_sender("{\"content\": \"ends early\" \"sender_id\": 9}", ME));
    ck_assert(!other_sender("{\"content\": 5 5, \"sender_id\": 9}", ME));
    ck_assert(!other_sender("{\"content\" 5, \"sender_id\": 9}", ME));
    ck_assert(!other_sender("{sender_id: 9}", ME));
    /* Readable up to the sender: the rest does not matter. */
    ck_assert(
        other_sender("{\"sender_id\": 9, \"content\": \"unterminated", ME));
}
END_TEST

START_TEST(test_sender_scan_respects_the_length)
{
    const char *body = "{\"sender_id\": 9}";
    /* Cut before the value: nothing to read. */
    ck_assert(!auth_body_names_other_sender(body, 13, ME));
    ck_assert(auth_body_names_other_sender(body, strlen(body), ME));
    /* A raw NUL inside a string is skipped like any other byte. */
    const char nul[] = "{\"content\": \"a\0b\", \"sender_id\": 9}";
    ck_assert(auth_body_names_other_sender(nul, sizeof(nul) - 1, ME));
}
END_TEST

/* X-Real-IP is taken only from a peer GATEWAY_TRUST_PROXY trusts. */
START_TEST(test_client_address_follows_the_trust_level)
{
    const char *nginx = "127.0.0.1", *remote = "10.1.2.3", *xri = "192.0.2.7";
    ck_assert_ptr_eq(auth_client_address(nginx, xri, AUTH_TRUST_NONE, 64),
                     nginx);
    ck_assert_ptr_eq(auth_client_address(nginx, xri, AUTH_TRUST_LOOPBACK, 64),
                     xri);
    ck_assert_ptr_eq(auth_client_address(remote, xri, AUTH_TRUST_LOOPBACK, 64),
                     remote);
    ck_assert_ptr_eq(auth_client_address(remote, xri, AUTH_TRUST_ANY, 64), xri);
    ck_assert_ptr_eq(auth_client_address(remote, "", AUTH_TRUST_ANY, 64),
                     remote);
    ck_assert_ptr_eq(auth_client_address(remote, NULL, AUTH_TRUST_ANY, 64),
                     remote);
    ck_assert_ptr_eq(auth_client_address(remote, xri, AUTH_TRUST_ANY, 4),
                     remote);
}
END_TEST

static Suite *gateway_auth_suite(void)
{
    Suite *s = suite_create("gateway_auth");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bearer_takes_the_token);
    tcase_add_test(tc, test_bearer_scheme_is_case_insensitive);
    tcase_add_test(tc, test_bearer_trims_blanks_around_the_token);
    tcase_add_test(tc, test_bearer_refuses_missing_empty_and_other_schemes);
    tcase_add_test(tc, test_bearer_caps_the_token_length);
    tcase_add_test(tc, test_authenticate_accepts_a_valid_token);
    tcase_add_test(tc, test_authenticate_refuses_each_kind_of_bad_header);
    tcase_add_test(tc, test_path_must_be_exactly_the_token_user);
    tcase_add_test(tc, test_sender_scan_compares_the_integer);
    tcase_add_test(tc, test_client_address_follows_the_trust_level);
    tcase_add_test(tc, test_sender_scan_reads_past_invalid_strings);
    tcase_add_test(tc, test_sender_scan_leaves_non_ids_to_validation);
    tcase_add_test(tc, test_sender_scan_sees_other_users_in_any_number_form);
    tcase_add_test(tc, test_sender_scan_leaves_non_integers_to_validation);
    tcase_add_test(tc, test_sender_scan_looks_only_at_the_top_level);
    tcase_add_test(tc, test_sender_scan_sees_every_duplicate_and_escaped_keys);
    tcase_add_test(tc, test_sender_scan_gives_up_on_unreadable_bodies);
    tcase_add_test(tc, test_sender_scan_respects_the_length);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gateway_auth_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
