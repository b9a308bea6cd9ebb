/*
 * test_message.c - Check suite for message.c: what a valid send is (each
 * 400 and the 413 with its exact boundary, the order the checks run in),
 * and the message JSON round trip with NUL bytes and ids as strings.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

static char errbuf[256];

static msg_err parse(const char *body, msg_send_req *req)
{
    errbuf[0] = '\0';
    return msg_parse_send(body, strlen(body), req, errbuf, sizeof errbuf);
}

/* Parses a body that must fail, and checks the error and its status. */
static void expect(const char *body, msg_err want)
{
    msg_send_req req;

    memset(&req, 0, sizeof req);
    msg_err got = parse(body, &req);
    if (got != want)
        ck_abort_msg("body %s: got %d, want %d (%s)", body, got, want, errbuf);
    ck_assert_ptr_null(req.content);
    ck_assert_int_ne(errbuf[0], '\0');
    ck_assert_int_eq(msg_err_status(got), want == MSG_TOO_LARGE ? 413 : 400);
}

/* A send body whose content is the JSON text piece repeated count
 * times. Caller frees. */
static char *body_with(const char *piece, size_t count, const char *cmid)
{
    size_t plen = strlen(piece);
    char *b = malloc(plen * count + 256);

    ck_assert_ptr_nonnull(b);
    int n = sprintf(b, "{\"sender_id\":1,\"recipient_id\":2,\"content\":\"");
    for (size_t i = 0; i < count; i++)
        memcpy(b + n + i * plen, piece, plen);
    sprintf(b + n + plen * count, "\",\"client_message_id\":\"%s\"}", cmid);
    return b;
}

START_TEST(test_valid_send_parses)
{
    msg_send_req req;

    ck_assert_int_eq(parse("{\"sender_id\":1,\"recipient_id\":2,"
                           "\"content\":\"hi \\u00e9\","
                           "\"client_message_id\":\"c-123\",\"extra\":[1]}",
                           &req),
                     MSG_OK);
    ck_assert_int_eq(req.sender_id, 1);
    ck_assert_int_eq(req.recipient_id, 2);
    ck_assert_uint_eq(req.content_len, 5);
    ck_assert_mem_eq(req.content, "hi \xC3\xA9", 6); /* with its NUL */
    ck_assert_str_eq(req.client_message_id, "c-123");
    ck_assert_int_eq(msg_err_status(MSG_OK), 0);
    msg_send_req_free(&req);
    ck_assert_ptr_null(req.content);
    msg_send_req_free(NULL);
}
END_TEST

START_TEST(test_nul_bytes_in_content_count)
{
    msg_send_req req;

    ck_assert_int_eq(parse("{\"sender_id\":9007199254740991,\"recipient_id\":1,"
                           "\"content\":\"a\\u0000b\",\"client_message_id\":"
                           "\" ~\"}",
                           &req),
                     MSG_OK);
    ck_assert_uint_eq(req.content_len, 3);
    ck_assert_mem_eq(req.content, "a\0b", 4);
    ck_assert_int_eq(req.sender_id, 9007199254740991LL);
    ck_assert_str_eq(req.client_message_id, " ~");
    msg_send_req_free(&req);
}
END_TEST

START_TEST(test_missing_fields)
{
    expect("{\"recipient_id\":2,\"content\":\"x\",\"client_message_id\":\"c\"}",
           MSG_BAD_FIELD);
    ck_assert_ptr_nonnull(strstr(errbuf, "sender_id"));
    expect("{\"sender_id\":1,\"content\":\"x\",\"client_message_id\":\"c\"}",
           MSG_BAD_FIELD);
    ck_assert_ptr_nonnull(strstr(errbuf, "recipient_id"));
    expect("{\"sender_id\":1,\"recipient_id\":2,\"client_message_id\":\"c\"}",
           MSG_BAD_FIELD);
    ck_assert_ptr_nonnull(strstr(errbuf, "content"));
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"x\"}",
           MSG_BAD_FIELD);
    ck_assert_ptr_nonnull(strstr(errbuf, "client_message_id"));
}
END_TEST

START_TEST(test_mistyped_fields)
{
    static const char *const ids[] = {"\"1\"", "1.5",  "1.0", "1e0",
                                      "true",  "null", "[1]", "{}"};
    char body[256];

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(body, sizeof body,
                 "{\"sender_id\":%s,\"recipient_id\":2,\"content\":\"x\","
                 "\"client_message_id\":\"c\"}",
                 ids[i]);
        expect(body, MSG_BAD_FIELD);
        snprintf(body, sizeof body,
                 "{\"sender_id\":1,\"recipient_id\":%s,\"content\":\"x\","
                 "\"client_message_id\":\"c\"}",
                 ids[i]);
        expect(body, MSG_BAD_FIELD);
    }
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":5,"
           "\"client_message_id\":\"c\"}",
           MSG_BAD_FIELD);
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":null,"
           "\"client_message_id\":\"c\"}",
           MSG_BAD_FIELD);
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"x\","
           "\"client_message_id\":123}",
           MSG_BAD_FIELD);
}
END_TEST

START_TEST(test_ids_out_of_range)
{
    static const char *const ids[] = {"0", "-1", "9007199254740992",
                                      "9223372036854775807",
                                      "99999999999999999999"};
    char body[256];

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(body, sizeof body,
                 "{\"sender_id\":%s,\"recipient_id\":2,\"content\":\"x\","
                 "\"client_message_id\":\"c\"}",
                 ids[i]);
        expect(body, MSG_BAD_FIELD);
        snprintf(body, sizeof body,
                 "{\"sender_id\":1,\"recipient_id\":%s,\"content\":\"x\","
                 "\"client_message_id\":\"c\"}",
                 ids[i]);
        expect(body, MSG_BAD_FIELD);
    }
}
END_TEST

START_TEST(test_same_user)
{
    expect("{\"sender_id\":7,\"recipient_id\":7,\"content\":\"x\","
           "\"client_message_id\":\"c\"}",
           MSG_SAME_USER);
}
END_TEST

START_TEST(test_bad_json)
{
    static const char *const bad[] = {
        "",
        "[]",
        "1",
        "\"x\"",
        "null",
        "{",
        "{\"sender_id\":1,}",
        "{\"sender_id\":1,\"recipient_id\":2,\"content\":\"x\","
        "\"client_message_id\":\"c\"} {}",
        /* Duplicate keys are ambiguous: refused. */
        "{\"sender_id\":1,\"sender_id\":3,\"recipient_id\":2,"
        "\"content\":\"x\",\"client_message_id\":\"c\"}",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect(bad[i], MSG_BAD_JSON);
    msg_send_req req;
    ck_assert_int_eq(msg_parse_send(NULL, 0, &req, NULL, 0), MSG_BAD_JSON);
}
END_TEST

START_TEST(test_invalid_utf8)
{
    /* A lone surrogate escape: jansson refuses it while parsing. */
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"a\\ud800b\","
           "\"client_message_id\":\"c\"}",
           MSG_BAD_UTF8);
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"\\udc00\","
           "\"client_message_id\":\"c\"}",
           MSG_BAD_UTF8);
    /* Raw invalid bytes, an overlong NUL and an encoded surrogate. */
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"a\xFF\","
           "\"client_message_id\":\"c\"}",
           MSG_BAD_UTF8);
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"\xC0\x80\","
           "\"client_message_id\":\"c\"}",
           MSG_BAD_UTF8);
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"\xED\xA0\x80\","
           "\"client_message_id\":\"c\"}",
           MSG_BAD_UTF8);
    /* A proper surrogate pair is fine. */
    msg_send_req req;
    ck_assert_int_eq(parse("{\"sender_id\":1,\"recipient_id\":2,\"content\":"
                           "\"\\ud83d\\ude00\",\"client_message_id\":\"c\"}",
                           &req),
                     MSG_OK);
    ck_assert_mem_eq(req.content, "\xF0\x9F\x98\x80", 5);
    msg_send_req_free(&req);
}
END_TEST

START_TEST(test_empty_content)
{
    expect("{\"sender_id\":1,\"recipient_id\":2,\"content\":\"\","
           "\"client_message_id\":\"c\"}",
           MSG_EMPTY);
}
END_TEST

START_TEST(test_client_message_id)
{
    static const char *const bad[] = {
        "",
        "12345678901234567890123456789012345678901234567890123456789012345",
        "a\\u007f",
        "a\\n",
        "a\\t",
        "a\\u0000b",
        "\\u00e9",
        "\\u001f",
    };
    char body[256];
    msg_send_req req;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body,
                 "{\"sender_id\":1,\"recipient_id\":2,\"content\":\"x\","
                 "\"client_message_id\":\"%s\"}",
                 bad[i]);
        expect(body, MSG_BAD_CMID);
    }
    const char *max64 =
        "1234567890123456789012345678901234567890123456789012345678901234";
    snprintf(body, sizeof body,
             "{\"sender_id\":1,\"recipient_id\":2,\"content\":\"x\","
             "\"client_message_id\":\"%s\"}",
             max64);
    ck_assert_int_eq(parse(body, &req), MSG_OK);
    ck_assert_str_eq(req.client_message_id, max64);
    msg_send_req_free(&req);
}
END_TEST

START_TEST(test_content_size_limit)
{
    msg_send_req req;
    char *b = body_with("a", MSG_CONTENT_MAX, "c");

    ck_assert_int_eq(parse(b, &req), MSG_OK);
    ck_assert_uint_eq(req.content_len, 65535);
    msg_send_req_free(&req);
    free(b);

    b = body_with("a", MSG_CONTENT_MAX + 1, "c");
    expect(b, MSG_TOO_LARGE);
    ck_assert_int_eq(msg_err_status(MSG_TOO_LARGE), 413);
    free(b);

    /* Size is counted after decoding: 65,535 escaped newlines are 131,070
     * bytes of JSON but 65,535 bytes of content. */
    b = body_with("\\n", MSG_CONTENT_MAX, "c");
    ck_assert_int_eq(parse(b, &req), MSG_OK);
    ck_assert_uint_eq(req.content_len, 65535);
    msg_send_req_free(&req);
    free(b);

    /* Multi-byte characters count in bytes: 21,845 x 3 = 65,535. */
    b = body_with("\xE2\x82\xAC", 21845, "c");
    ck_assert_int_eq(parse(b, &req), MSG_OK);
    msg_send_req_free(&req);
    free(b);
    b = body_with("\xE2\x82\xAC", 21846, "c");
    expect(b, MSG_TOO_LARGE);
    free(b);
}
END_TEST

START_TEST(test_checks_run_in_order)
{
    char *b;

    /* ids before content */
    expect("{\"sender_id\":0,\"recipient_id\":2,\"content\":\"\","
           "\"client_message_id\":\"\"}",
           MSG_BAD_FIELD);
    /* size before the cmid */
    b = body_with("a", MSG_CONTENT_MAX + 1, "");
    expect(b, MSG_TOO_LARGE);
    free(b);
    /* empty before cmid */
    expect("{\"sender_id\":1,\"recipient_id\":1,\"content\":\"\","
           "\"client_message_id\":\"\"}",
           MSG_EMPTY);
    /* cmid before same user */
    expect("{\"sender_id\":1,\"recipient_id\":1,\"content\":\"x\","
           "\"client_message_id\":\"\"}",
           MSG_BAD_CMID);
}
END_TEST

START_TEST(test_err_status_covers_every_error)
{
    ck_assert_int_eq(msg_err_status(MSG_BAD_JSON), 400);
    ck_assert_int_eq(msg_err_status(MSG_BAD_FIELD), 400);
    ck_assert_int_eq(msg_err_status(MSG_SAME_USER), 400);
    ck_assert_int_eq(msg_err_status(MSG_BAD_UTF8), 400);
    ck_assert_int_eq(msg_err_status(MSG_EMPTY), 400);
    ck_assert_int_eq(msg_err_status(MSG_BAD_CMID), 400);
    ck_assert_int_eq(msg_err_status(MSG_TOO_LARGE), 413);
}
END_TEST

static msg sample(void)
{
    msg m;

    memset(&m, 0, sizeof m);
    m.message_id = 7156612312345678901LL; /* not exact as a double */
    strcpy(m.conversation_id, "7_42");
    m.sender_id = 42;
    m.recipient_id = 7;
    m.content_len = 5;
    m.content = malloc(6);
    memcpy(m.content, "a\0\xC3\xA9z", 6);
    strcpy(m.client_message_id, "c-1");
    m.sent_at = 1704067200123LL;
    return m;
}

START_TEST(test_json_round_trip)
{
    msg m = sample(), back;
    json_t *j = msg_to_json(&m);

    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_string(json_object_get(j, "message_id")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "message_id")),
                     "7156612312345678901");
    ck_assert(json_is_integer(json_object_get(j, "sender_id")));
    ck_assert(json_is_integer(json_object_get(j, "sent_at")));
    ck_assert_uint_eq(json_string_length(json_object_get(j, "content")), 5);

    /* Through text and back, as between services. */
    char *text = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(
        strstr(text, "\"message_id\":\"7156612312345678901\""));
    ck_assert_ptr_nonnull(strstr(text, "\"sent_at\":1704067200123"));
    json_t *parsed = json_loads(text, JSON_ALLOW_NUL, NULL);
    ck_assert_ptr_nonnull(parsed);
    memset(&back, 0, sizeof back);
    ck_assert_int_eq(msg_from_json(parsed, &back), 0);
    ck_assert_int_eq(back.message_id, m.message_id);
    ck_assert_str_eq(back.conversation_id, "7_42");
    ck_assert_int_eq(back.sender_id, 42);
    ck_assert_int_eq(back.recipient_id, 7);
    ck_assert_uint_eq(back.content_len, 5);
    ck_assert_mem_eq(back.content, m.content, 6);
    ck_assert_str_eq(back.client_message_id, "c-1");
    ck_assert_int_eq(back.sent_at, m.sent_at);
    free(text);
    json_decref(parsed);
    json_decref(j);
    msg_clear(&m);
    msg_clear(&back);
    ck_assert_ptr_null(back.content);
    ck_assert_uint_eq(back.content_len, 0);
    msg_clear(&back); /* reusable, and clearing twice is safe */
    msg_clear(NULL);
}
END_TEST

START_TEST(test_to_json_refuses_invalid_utf8)
{
    msg m = sample();

    m.content[2] = '\xFF';
    ck_assert_ptr_null(msg_to_json(&m));
    msg_clear(&m);
}
END_TEST

/* ---- the direct texts against jansson ---- */

/* A deterministic generator (xorshift64*), so a failure repeats. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A code point that JSON escaping cares about more often than chance:
 * controls, NUL, quote, backslash, slash, DEL, and every UTF-8 length
 * (never a surrogate). */
static uint32_t some_code_point(void)
{
    static const uint32_t special[] = {
        0,    '\n',  '\t',  0x1F,   '"',     '\\',     '/',   0x7F,
        0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF, 0x2028};
    switch (rng() % 4) {
    case 0:
        return special[rng() % (sizeof special / sizeof special[0])];
    case 1:
        return (uint32_t)(rng() % 0x80);
    default: {
        uint32_t cp = (uint32_t)(rng() % 0x110000);
        return cp >= 0xD800 && cp <= 0xDFFF ? 'x' : cp;
    }
    }
}

/* A random message: content of up to 300 code points, a client id of
 * printable ASCII (quotes and backslashes included), ids over int64. */
static msg random_msg(void)
{
    msg m;
    memset(&m, 0, sizeof m);
    m.message_id = (int64_t)(rng() >> 1);
    m.sender_id = (int64_t)(rng() % 1000000000000000ULL) + 1;
    m.recipient_id = m.sender_id + 1 + (int64_t)(rng() % 1000);
    if (rng() % 2) {
        int64_t t = m.sender_id;
        m.sender_id = m.recipient_id;
        m.recipient_id = t;
    }
    ck_assert_int_ge(ids_conversation(m.sender_id, m.recipient_id,
                                      m.conversation_id,
                                      sizeof m.conversation_id),
                     0);
    size_t cps = rng() % 301;
    m.content = malloc(4 * cps + 1);
    ck_assert_ptr_nonnull(m.content);
    for (size_t i = 0; i < cps; i++)
        m.content_len += put_utf8(m.content + m.content_len, some_code_point());
    m.content[m.content_len] = '\0';
    size_t cmid_len = 1 + rng() % MSG_CMID_MAX;
    for (size_t i = 0; i < cmid_len; i++)
        m.client_message_id[i] = (char)(0x21 + rng() % 94);
    m.sent_at = (int64_t)(rng() >> 20);
    return m;
}

/* The conversation as the cache node built it with jansson before. */
static json_t *reference_conversation(const msg *m, int64_t owner)
{
    int64_t peer = owner == m->sender_id ? m->recipient_id : m->sender_id;
    int64_t lo =
        m->sender_id < m->recipient_id ? m->sender_id : m->recipient_id;
    int64_t hi = m->sender_id ^ m->recipient_id ^ lo;
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)m->message_id);
    json_t *snippet =
        json_stringn(m->content, msg_snippet_len(m->content, m->content_len));
    return json_pack("{s:s,s:[I,I],s:I,s:o,s:s,s:I}", "conversation_id",
                     m->conversation_id, "participants", (json_int_t)lo,
                     (json_int_t)hi, "peer_id", (json_int_t)peer, "snippet",
                     snippet, "last_message_id", idbuf, "last_updated_at",
                     (json_int_t)m->sent_at);
}

static void expect_same_text(json_t *reference, char *text, size_t len)
{
    char *want = json_dumps(reference, JSON_COMPACT);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(want));
    if (strcmp(text, want) != 0)
        ck_abort_msg("text differs\n got: %s\nwant: %s", text, want);
    free(want);
    free(text);
    json_decref(reference);
}

START_TEST(test_texts_match_jansson)
{
    for (int i = 0; i < 3000; i++) {
        msg m = random_msg();
        size_t len = 0;
        char *text = msg_json_text(&m, &len);
        expect_same_text(msg_to_json(&m), text, len);
        int64_t owner = rng() % 2 ? m.sender_id : m.recipient_id;
        text = msg_conversation_text(&m, owner, &len);
        expect_same_text(reference_conversation(&m, owner), text, len);
        /* And back: the text parses to the same message. */
        text = msg_json_text(&m, &len);
        json_t *parsed = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
        msg back;
        memset(&back, 0, sizeof back);
        ck_assert_int_eq(msg_from_json(parsed, &back), 0);
        ck_assert_uint_eq(back.content_len, m.content_len);
        ck_assert_mem_eq(back.content, m.content, m.content_len);
        json_decref(parsed);
        free(text);
        msg_clear(&back);
        msg_clear(&m);
    }
}
END_TEST

START_TEST(test_texts_and_invalid_utf8)
{
    msg m = sample();
    m.content[2] = '\xFF';
    ck_assert_ptr_null(msg_json_text(&m, NULL));
    /* The snippet stops before the bad byte, as jansson's did. */
    size_t len = 0;
    char *text = msg_conversation_text(&m, m.sender_id, &len);
    expect_same_text(reference_conversation(&m, m.sender_id), text, len);
    m.content[0] = '\xFF'; /* an empty snippet */
    text = msg_conversation_text(&m, m.sender_id, &len);
    expect_same_text(reference_conversation(&m, m.sender_id), text, len);
    msg_clear(&m);
}
END_TEST

/* msg_from_json on sample() with one field replaced by the JSON text
 * value, or removed when value is "". */
static int from_json_with(const char *key, const char *value)
{
    msg m = sample(), back;
    json_t *j = msg_to_json(&m);
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    int rc;

    ck_assert_ptr_nonnull(j);
    if (v == NULL)
        json_object_del(j, key);
    else
        json_object_set_new(j, key, v);
    memset(&back, 0, sizeof back);
    rc = msg_from_json(j, &back);
    msg_clear(&back);
    msg_clear(&m);
    json_decref(j);
    return rc;
}

START_TEST(test_from_json_refuses_bad_fields)
{
    ck_assert_int_eq(from_json_with("sent_at", "1"), 0);
    ck_assert_int_eq(from_json_with("message_id", "7156612312345678901"), -1);
    ck_assert_int_eq(from_json_with("message_id", "\"0123\""), -1);
    ck_assert_int_eq(from_json_with("message_id", "\"abc\""), -1);
    ck_assert_int_eq(from_json_with("message_id", ""), -1);
    ck_assert_int_eq(from_json_with("sender_id", "\"42\""), -1);
    ck_assert_int_eq(from_json_with("sender_id", "7"), -1); /* same user */
    ck_assert_int_eq(from_json_with("recipient_id", "0"), -1);
    ck_assert_int_eq(from_json_with("conversation_id", "\"42_7\""), -1);
    ck_assert_int_eq(from_json_with("conversation_id", "\"7_43\""), -1);
    ck_assert_int_eq(from_json_with("content", "1"), -1);
    ck_assert_int_eq(from_json_with("content", ""), -1);
    ck_assert_int_eq(from_json_with("client_message_id", "\"a\\nb\""), -1);
    ck_assert_int_eq(from_json_with("sent_at", "1.5"), -1);
    ck_assert_int_eq(from_json_with("sent_at", ""), -1);

    msg m;
    json_t *arr = json_array();
    ck_assert_int_eq(msg_from_json(arr, &m), -1);
    json_decref(arr);
}
END_TEST

START_TEST(test_snippet_is_100_code_points)
{
    char buf[400];

    for (int i = 0; i < 150; i++)
        memcpy(buf + 2 * i, "\xC3\xA9", 2);
    ck_assert_uint_eq(msg_snippet_len(buf, 300), 200);
    ck_assert_uint_eq(msg_snippet_len(buf, 10), 10);
    memset(buf, 'a', 99);
    memcpy(buf + 99, "\xE2\x82\xAC\xE2\x82\xAC", 6);
    ck_assert_uint_eq(msg_snippet_len(buf, 105), 102);
}
END_TEST

static Suite *message_suite(void)
{
    Suite *s = suite_create("message");
    TCase *send = tcase_create("send");
    TCase *json = tcase_create("json");

    tcase_add_test(send, test_valid_send_parses);
    tcase_add_test(send, test_nul_bytes_in_content_count);
    tcase_add_test(send, test_missing_fields);
    tcase_add_test(send, test_mistyped_fields);
    tcase_add_test(send, test_ids_out_of_range);
    tcase_add_test(send, test_same_user);
    tcase_add_test(send, test_bad_json);
    tcase_add_test(send, test_invalid_utf8);
    tcase_add_test(send, test_empty_content);
    tcase_add_test(send, test_client_message_id);
    tcase_add_test(send, test_content_size_limit);
    tcase_add_test(send, test_checks_run_in_order);
    tcase_add_test(send, test_err_status_covers_every_error);
    tcase_add_test(json, test_json_round_trip);
    tcase_add_test(json, test_to_json_refuses_invalid_utf8);
    tcase_add_test(json, test_texts_match_jansson);
    tcase_add_test(json, test_texts_and_invalid_utf8);
    tcase_add_test(json, test_from_json_refuses_bad_fields);
    tcase_add_test(json, test_snippet_is_100_code_points);
    suite_add_tcase(s, send);
    suite_add_tcase(s, json);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(message_suite());

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
