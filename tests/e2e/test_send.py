"""End-to-end: POST /v1/messages (SPEC 4): the stored message, idempotent
retries (200 with the identical body, 409 on a reused key), content and
client_message_id limits, UTF-8 validation, id validation, per-sender
ordering, request size limits, and that a rejected send stores nothing.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_send.py
"""

import json
import time

from e2e_lib import (BODY_MAX, CONTENT_MAX, USER_ID_MAX, check, check_message_shape, expect_status,
                     fail, new_cmid, new_user, now_ms, raw_exchange, raw_problem, run_tests, test)

# sent_at comes from the server's clock; the suite runs next to the
# cluster, so it must be close to ours.
CLOCK_SLACK_MS = 120000


def body_of(sender, recipient, content="hello", cmid=None):
    return {"sender_id": sender, "recipient_id": recipient, "content": content,
            "client_message_id": cmid if cmid is not None else new_cmid()}


def expect_nothing_stored(a, *users):
    for u in users:
        j = a.convs_ok(u)
        check(j["conversations"] == [], "user %d has conversations after rejected sends: %r"
              % (u, j["conversations"]))


def stored_copies(a, user, cid):
    return a.all_msgs(user, cid)


@test
def test_send_returns_stored_message(a):
    s, r = new_user(), new_user()
    cmid = new_cmid()
    before = now_ms()
    resp = a.send(s, r, "hi there", cmid)
    expect_status(resp, 201)
    m = resp.json
    check_message_shape(m, "send answer")
    check(set(m) == {"message_id", "conversation_id", "sender_id", "recipient_id", "content",
                     "client_message_id", "sent_at"}, "unexpected fields: %r" % sorted(m))
    check(m["sender_id"] == s and m["recipient_id"] == r, "ids not echoed: %r" % m)
    check(m["content"] == "hi there" and m["client_message_id"] == cmid, "content/key not echoed: %r" % m)
    check(abs(m["sent_at"] - before) < CLOCK_SLACK_MS, "sent_at %d far from now %d" % (m["sent_at"], before))
    # Both copies are durable and readable as soon as 201 is answered.
    for user in (s, r):
        msgs = stored_copies(a, user, m["conversation_id"])
        check(msgs == [m], "user %d's copy differs from the answer: %r vs %r" % (user, msgs, m))


@test
def test_conversation_id_same_for_both_directions(a):
    x, y = new_user(), new_user()
    m1 = a.send_ok(x, y, "ping")
    m2 = a.send_ok(y, x, "pong")
    check(m1["conversation_id"] == m2["conversation_id"],
          "conversation ids differ: %r vs %r" % (m1["conversation_id"], m2["conversation_id"]))
    m3 = a.send_ok(x, new_user(), "other")
    check(m3["conversation_id"] != m1["conversation_id"], "distinct pairs share a conversation id")


@test
def test_retry_returns_identical_body(a):
    s, r = new_user(), new_user()
    cmid = new_cmid()
    first = a.send(s, r, "once", cmid)
    expect_status(first, 201)
    for i in range(3):
        again = a.send(s, r, "once", cmid)
        expect_status(again, 200)
        check(again.json == first.json, "retry %d body differs: %r vs %r" % (i, again.json, first.json))
    for user in (s, r):
        msgs = stored_copies(a, user, first.json["conversation_id"])
        check(len(msgs) == 1, "user %d has %d copies after retries" % (user, len(msgs)))


@test
def test_key_reuse_with_other_content_or_recipient_is_409(a):
    s, r, other = new_user(), new_user(), new_user()
    cmid = new_cmid()
    first = a.send_ok(s, r, "original", cmid)
    expect_status(a.send(s, r, "changed", cmid), 409)
    expect_status(a.send(s, other, "original", cmid), 409)
    expect_status(a.send(s, other, "changed", cmid), 409)
    # The key still answers the original.
    again = a.send(s, r, "original", cmid)
    expect_status(again, 200)
    check(again.json == first, "replay after 409 differs: %r vs %r" % (again.json, first))
    msgs = stored_copies(a, s, first["conversation_id"])
    check(msgs == [first], "sender mailbox after 409s: %r" % msgs)
    expect_nothing_stored(a, other)
    convs = a.convs_ok(s)["conversations"]
    check(len(convs) == 1, "409 created a conversation: %r" % convs)


@test
def test_same_key_from_different_senders_is_independent(a):
    s1, s2, r = new_user(), new_user(), new_user()
    cmid = new_cmid()
    m1 = a.send_ok(s1, r, "from one", cmid)
    m2 = a.send_ok(s2, r, "from two", cmid)
    check(m1["message_id"] != m2["message_id"], "two senders' messages share an id")


@test
def test_content_size_limits(a):
    s, r = new_user(), new_user()
    ok = [("ascii 65535 bytes", "a" * CONTENT_MAX),
          ("2-byte chars 65535 bytes", "\u00e9" * 32767 + "a"),
          ("4-byte chars 65532 bytes", "\U0001F600" * 16383),
          ("one byte", "x")]
    for why, content in ok:
        resp = a.send(s, r, content)
        if resp.status != 201:
            fail("%s: expected 201, got %s" % (why, resp.describe()))
        check(resp.json["content"] == content, "%s: content changed" % why)
        cid = resp.json["conversation_id"]
    stored = {m["content"] for m in stored_copies(a, r, cid)}
    check(stored == {c for _, c in ok}, "recipient copies differ from what was sent")
    too_big = [("ascii 65536 bytes", "a" * (CONTENT_MAX + 1)),
               ("2-byte chars 65536 bytes", "\u00e9" * 32768),
               ("4-byte chars 65536 bytes", "\U0001F600" * 16384),
               ("ascii 100000 bytes", "a" * 100000)]
    for why, content in too_big:
        resp = a.send(s, r, content)
        if resp.status != 413:
            fail("%s: expected 413, got %s" % (why, resp.describe()))
    check(len(stored_copies(a, s, cid)) == len(ok), "a refused oversized send was stored")


@test
def test_content_size_counts_decoded_bytes(a):
    s, r = new_user(), new_user()
    # 65,535 bytes after decoding, ~393 KB of \u escapes on the wire.
    content = "\u00e9" * 32767 + "a"
    body = json.dumps(body_of(s, r, content), ensure_ascii=True)
    check(len(body) > 6 * 32767, "test body not escaped")
    expect_status(a.call("POST", "/v1/messages", user=s, body=body), 201)
    body = json.dumps(body_of(s, r, "\u00e9" * 32768), ensure_ascii=True)
    expect_status(a.call("POST", "/v1/messages", user=s, body=body), 413)


@test
def test_empty_content_is_400(a):
    s, r = new_user(), new_user()
    expect_status(a.send(s, r, ""), 400)
    expect_nothing_stored(a, s, r)


@test
def test_invalid_utf8_is_400(a):
    s, r = new_user(), new_user()
    cases = {
        "raw 0xff": b"a\xffb",
        "raw continuation byte": b"\x80",
        "truncated sequence": b"\xc3",
        "overlong slash": b"\xc0\xaf",
        "overlong 3-byte": b"\xe0\x80\xaf",
        "utf-8 encoded surrogate": b"\xed\xa0\x80",
        "above U+10FFFF": b"\xf4\x90\x80\x80",
        "lone high surrogate escape": b"\\ud800",
        "lone low surrogate escape": b"\\udc00",
        "reversed surrogate pair": b"\\ude00\\ud83d",
        "high surrogate then text": b"\\ud800abc",
    }
    for why, raw in cases.items():
        body = (b'{"sender_id": %d, "recipient_id": %d, "content": "' % (s, r) + raw
                + b'", "client_message_id": "' + new_cmid().encode() + b'"}')
        resp = a.call("POST", "/v1/messages", user=s, body=body)
        if resp.status != 400:
            fail("%s: expected 400, got %s" % (why, resp.describe()))
        expect_status(resp, 400)
    expect_nothing_stored(a, s, r)


@test
def test_valid_unicode_round_trips(a):
    s, r = new_user(), new_user()
    contents = ["caf\u00e9 \u65e5\u672c \U0001F600 \u0645\u0631\u062d\u0628\u0627",
                "quote \" backslash \\ slash / tab \t newline \n",
                "\U0010FFFF last code point"]
    sent = [a.send_ok(s, r, c) for c in contents]
    pair = (b'{"sender_id": %d, "recipient_id": %d, "content": "\\ud83d\\ude00", '
            b'"client_message_id": "%s"}' % (s, r, new_cmid().encode()))
    resp = a.call("POST", "/v1/messages", user=s, body=pair)
    expect_status(resp, 201)
    check(resp.json["content"] == "\U0001F600", "escaped surrogate pair decoded to %r" % resp.json["content"])
    sent.append(resp.json)
    for user in (s, r):
        got = {m["message_id"]: m for m in stored_copies(a, user, sent[0]["conversation_id"])}
        for m in sent:
            check(got.get(m["message_id"]) == m, "user %d's copy of %r differs: %r"
                  % (user, m["content"], got.get(m["message_id"])))


@test
def test_content_with_nul_round_trips(a):
    """U+0000 is valid UTF-8 (SPEC 4: content is valid UTF-8), so a message
    holding it is accepted and must come back unchanged from both
    mailboxes, and must not break the lists that hold it."""
    s, r = new_user(), new_user()
    m = a.send_ok(s, r, "nul \u0000 inside")
    check(m["content"] == "nul \u0000 inside", "content changed: %r" % m["content"])
    for user in (s, r):
        msgs = stored_copies(a, user, m["conversation_id"])
        check(msgs == [m], "user %d holds %r, sent %r" % (user, msgs, m))
        convs = a.convs_ok(user)["conversations"]
        check(len(convs) == 1 and convs[0]["snippet"] == m["content"], "user %d conversations %r" % (user, convs))


@test
def test_bad_json_is_400(a):
    s, r = new_user(), new_user()
    good = json.dumps(body_of(s, r))
    cases = {
        "empty body": b"",
        "not json": b"hello",
        "array": b"[1,2]",
        "string": b'"x"',
        "null": b"null",
        "truncated": good[:-1].encode(),
        "trailing garbage": good.encode() + b"xyz",
        "nested deep": b"[" * 10000 + b"]" * 10000,
    }
    for why, body in cases.items():
        resp = a.call("POST", "/v1/messages", user=s, body=body)
        if resp.status != 400:
            fail("%s: expected 400, got %s" % (why, resp.describe()))
        expect_status(resp, 400)
    expect_nothing_stored(a, s, r)


@test
def test_missing_or_mistyped_fields_are_400(a):
    s, r = new_user(), new_user()
    base = body_of(s, r)
    cases = {}
    for f in ("recipient_id", "content", "client_message_id"):
        b = dict(base)
        del b[f]
        cases["missing " + f] = b
    for f, bad in (("recipient_id", str(r)), ("recipient_id", 1.5), ("recipient_id", None),
                   ("recipient_id", True), ("recipient_id", [r]), ("content", 5), ("content", None),
                   ("content", ["hi"]), ("content", {"t": "hi"}), ("client_message_id", 7),
                   ("client_message_id", None), ("client_message_id", ["k"])):
        b = dict(base)
        b[f] = bad
        cases["%s = %r" % (f, bad)] = b
    for why, body in cases.items():
        resp = a.call("POST", "/v1/messages", user=s, body=body)
        if resp.status != 400:
            fail("%s: expected 400, got %s" % (why, resp.describe()))
        expect_status(resp, 400)
    expect_nothing_stored(a, s, r)


@test
def test_bad_sender_ids_are_refused(a):
    """A sender id that is missing, mistyped or no user id at all (out of
    range, a fraction) names no other user: 400 as a bad id (SPEC 4), not
    403, and nothing is stored."""
    s, r = new_user(), new_user()
    for bad in (0, -1, -s, 2**53, 2**64, 99999999999999999999999, str(s), 1.5, 0.0, "0",
                "-1", None):
        body = body_of(s, r)
        body["sender_id"] = bad
        resp = a.call("POST", "/v1/messages", user=s, body=body)
        if resp.status != 400:
            fail("sender_id %r: expected 400, got %s" % (bad, resp.describe()))
        expect_status(resp, 400)
    body = body_of(s, r)
    del body["sender_id"]
    expect_status(a.call("POST", "/v1/messages", user=s, body=body), 400)
    expect_nothing_stored(a, s, r)


@test
def test_bad_recipient_ids_are_400(a):
    s, r = new_user(), new_user()
    for bad in (0, -1, -r, 2**53, 2**63, 2**64, 99999999999999999999999):
        resp = a.send(s, bad, "hi")
        if resp.status != 400:
            fail("recipient_id %r: expected 400, got %s" % (bad, resp.describe()))
        expect_status(resp, 400)
    expect_nothing_stored(a, s)


@test
def test_largest_user_id_is_accepted(a):
    s = new_user()
    m = a.send_ok(s, USER_ID_MAX, "to the largest id")
    check(m["recipient_id"] == USER_ID_MAX, "recipient id changed: %r" % m)
    check(any(c["peer_id"] == USER_ID_MAX for c in a.convs_ok(s)["conversations"]),
          "conversation with the largest id missing")


@test
def test_send_to_self_is_400(a):
    s = new_user()
    expect_status(a.send(s, s, "me"), 400)
    expect_nothing_stored(a, s)


@test
def test_client_message_id_rules(a):
    s, r = new_user(), new_user()
    bad = {"empty": "", "65 chars": "k" * 65, "DEL 0x7f": "ab\u007fcd", "newline": "ab\ncd",
           "tab": "ab\tcd", "NUL": "ab\u0000cd", "non-ascii": "caf\u00e9", "emoji": "\U0001F600"}
    for why, cmid in bad.items():
        resp = a.send(s, r, "hi", cmid)
        if resp.status != 400:
            fail("client_message_id %s: expected 400, got %s" % (why, resp.describe()))
        expect_status(resp, 400)
    expect_nothing_stored(a, s, r)
    printable = "".join(chr(c) for c in range(0x20, 0x7F))  # 95 characters
    good = [printable[:64], printable[31:95], " " * 64, "k", "\"\\/ ?&=#%"]
    for cmid in good:
        resp = a.send(s, r, "hi " + cmid, cmid)
        if resp.status != 201:
            fail("client_message_id %r: expected 201, got %s" % (cmid, resp.describe()))
        check(resp.json["client_message_id"] == cmid, "key changed: %r -> %r" % (cmid, resp.json["client_message_id"]))
        again = a.send(s, r, "hi " + cmid, cmid)
        expect_status(again, 200)
        check(again.json == resp.json, "replay of key %r differs" % cmid)


@test
def test_sequential_sends_are_ordered(a):
    s = new_user()
    peers = [new_user() for _ in range(4)]
    sent = []
    for i in range(24):
        sent.append(a.send_ok(s, peers[i % len(peers)], "n%d" % i))
    for prev, cur in zip(sent, sent[1:]):
        check(int(cur["message_id"]) > int(prev["message_id"]),
              "message_id went backwards: %s then %s" % (prev["message_id"], cur["message_id"]))
        check(cur["sent_at"] >= prev["sent_at"], "sent_at went backwards: %d then %d"
              % (prev["sent_at"], cur["sent_at"]))


@test
def test_sends_ordered_across_gateways(a):
    """Sequential sends of one sender alternate between every gateway
    (directly, not through the load balancer): ids still increase."""
    gws = a.gateways()
    s = new_user()
    peers = [new_user() for _ in range(3)]
    sent = []
    for i in range(30):
        g = gws[i % len(gws)]
        resp = g.send(s, peers[i % 3], "via gateway %d: %d" % (i % len(gws), i))
        expect_status(resp, 201)
        sent.append(resp.json)
    for prev, cur in zip(sent, sent[1:]):
        check(int(cur["message_id"]) > int(prev["message_id"]) and cur["sent_at"] >= prev["sent_at"],
              "order broken between %r (%s, %d) and %r (%s, %d)" % (prev["content"], prev["message_id"],
              prev["sent_at"], cur["content"], cur["message_id"], cur["sent_at"]))
    # Each gateway reads the same lists.
    views = [[m["message_id"] for m in g.all_msgs(s, sent[0]["conversation_id"])] for g in gws]
    check(all(v == views[0] for v in views), "gateways disagree on a message list: %r" % views)


@test
def test_reply_sorts_after_what_it_answers(a):
    x, y = new_user(), new_user()
    last = None
    for i in range(10):
        sender, recipient = (x, y) if i % 2 == 0 else (y, x)
        if last is not None:
            # The replier sees the message first, then answers.
            newest = a.msgs_ok(sender, last["conversation_id"], {"page_size": 1})["messages"]
            check(newest and newest[0]["message_id"] == last["message_id"],
                  "replier does not see the message it answers: %r" % newest)
        m = a.send_ok(sender, recipient, "turn %d" % i)
        if last is not None:
            check(int(m["message_id"]) > int(last["message_id"]),
                  "reply %s does not sort after %s" % (m["message_id"], last["message_id"]))
        last = m
    for user in (x, y):
        msgs = stored_copies(a, user, last["conversation_id"])
        check([m["content"] for m in msgs] == ["turn %d" % i for i in range(9, -1, -1)],
              "user %d sees turns out of order: %r" % (user, [m["content"] for m in msgs]))


@test
def test_body_over_1mib_is_413(a):
    s, r = new_user(), new_user()
    # A valid send padded with whitespace past the limit: the size alone
    # decides.
    body = json.dumps(body_of(s, r)).encode()
    padded = body[:-1] + b" " * (BODY_MAX + 1 - len(body)) + b"}"
    check(len(padded) == BODY_MAX + 1, "test body size")
    resp = a.call("POST", "/v1/messages", user=s, body=padded, fresh=True)
    expect_status(resp, 413)
    huge = json.dumps(body_of(s, r, "a" * (2 * BODY_MAX))).encode()
    resp = a.call("POST", "/v1/messages", user=s, body=huge, fresh=True)
    expect_status(resp, 413)
    expect_nothing_stored(a, s, r)


@test
def test_oversized_body_refused_before_it_is_read(a):
    s = new_user()
    h = a.http
    head = ("POST %s/v1/messages HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (h.prefix, h.host, h.port, a.token(s), 64 * BODY_MAX)).encode()
    start = time.monotonic()
    # Only the head and 1 KiB of the announced 64 MiB: an answer can only
    # come if the server refuses on Content-Length.
    status, headers, body = raw_exchange(a, head, [b"{" + b" " * 1023], wait_s=8)
    raw_problem(status, headers, body, 413, "POST /v1/messages Content-Length 64 MiB")
    check(time.monotonic() - start < 8, "413 took too long")


@test
def test_chunked_body_over_1mib_is_413(a):
    s, r = new_user(), new_user()
    h = a.http
    head = ("POST %s/v1/messages HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            % (h.prefix, h.host, h.port, a.token(s))).encode()
    piece = b" " * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    chunks = [b"1\r\n{\r\n"] + [chunk] * 20 + [b"1\r\n}\r\n0\r\n\r\n"]
    status, headers, body = raw_exchange(a, head, chunks, wait_s=10)
    raw_problem(status, headers, body, 413, "POST /v1/messages chunked 1.25 MiB")
    expect_nothing_stored(a, s, r)


@test
def test_small_chunked_body_is_accepted(a):
    s, r = new_user(), new_user()
    h = a.http
    payload = json.dumps(body_of(s, r, "chunked")).encode()
    head = ("POST %s/v1/messages HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            % (h.prefix, h.host, h.port, a.token(s))).encode()
    half = len(payload) // 2
    chunks = [b"%x\r\n" % half + payload[:half] + b"\r\n",
              b"%x\r\n" % (len(payload) - half) + payload[half:] + b"\r\n0\r\n\r\n"]
    status, headers, body = raw_exchange(a, head, chunks)
    check(status == 201, "chunked send answered %d %r" % (status, body[:300]))


@test
def test_rejected_sends_store_nothing(a):
    """Every kind of refused send between two fresh users, then both
    mailboxes must still be empty."""
    s, r = new_user(), new_user()
    attempts = [
        body_of(s, r, ""), body_of(s, r, "x" * (CONTENT_MAX + 1)), body_of(s, r, "x", ""),
        body_of(s, r, "x", "k" * 65), body_of(s, r, "x", "a\nb"), body_of(s, s, "x"),
        {"sender_id": s, "recipient_id": r, "content": "x"},
        {"sender_id": s, "recipient_id": 0, "content": "x", "client_message_id": "k"},
    ]
    for body in attempts:
        resp = a.call("POST", "/v1/messages", user=s, body=body)
        check(400 <= resp.status < 500, "refused send answered %s" % resp.describe())
    resp = a.call("POST", "/v1/messages", user=r, body=body_of(s, r))
    expect_status(resp, 403)
    resp = a.call("POST", "/v1/messages", body=body_of(s, r))
    expect_status(resp, 401)
    expect_nothing_stored(a, s, r)
    # And a valid send afterwards is the only thing there.
    m = a.send_ok(s, r, "the only one")
    for user in (s, r):
        convs = a.convs_ok(user)["conversations"]
        check(len(convs) == 1 and convs[0]["last_message_id"] == m["message_id"],
              "user %d conversations: %r" % (user, convs))
        check(stored_copies(a, user, m["conversation_id"]) == [m], "user %d messages differ" % user)


if __name__ == "__main__":
    run_tests()
