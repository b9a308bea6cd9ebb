"""End-to-end: the two list routes (SPEC 4): the conversation objects,
ordering by newest message, snippets cut on character boundaries, paging
with page/page_size and before=, query validation, membership checks, and
the error answers of unknown routes and wrong methods.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_lists.py
"""

import time

from e2e_lib import (SNIPPET_MAX, check, check_problem, expect_status, fail, is_int, new_user, now_ms,
                     run_tests, snippet_of, test)


def convo_with(a, owner, peer):
    for c in a.all_convs(owner):
        if c["peer_id"] == peer:
            return c
    return None


@test
def test_conversation_fields(a):
    x, y = new_user(), new_user()
    m1 = a.send_ok(x, y, "first")
    m2 = a.send_ok(y, x, "second reply")
    for owner, peer in ((x, y), (y, x)):
        j = a.convs_ok(owner)
        check(j["is_delta_update"] is False and j["has_more"] is False,
              "full first page flags: %r" % {k: j[k] for k in ("is_delta_update", "has_more")})
        check(len(j["conversations"]) == 1, "user %d: %r" % (owner, j["conversations"]))
        c = j["conversations"][0]
        check(set(c) == {"conversation_id", "participants", "peer_id", "snippet", "last_message_id",
                         "last_updated_at"}, "unexpected fields %r" % sorted(c))
        check(c["conversation_id"] == m1["conversation_id"], "conversation id %r vs message's %r"
              % (c["conversation_id"], m1["conversation_id"]))
        check(sorted(c["participants"]) == sorted([x, y]), "participants %r" % c["participants"])
        check(c["peer_id"] == peer, "user %d sees peer %r, expected %d" % (owner, c["peer_id"], peer))
        check(c["last_message_id"] == m2["message_id"], "last_message_id %r, expected %r"
              % (c["last_message_id"], m2["message_id"]))
        check(c["snippet"] == "second reply", "snippet %r" % c["snippet"])
        check(is_int(c["last_updated_at"]) and abs(c["last_updated_at"] - m2["sent_at"]) < 120000,
              "last_updated_at %r far from the last message's sent_at %d" % (c["last_updated_at"], m2["sent_at"]))
    cx = a.convs_ok(x)["conversations"][0]
    cy = a.convs_ok(y)["conversations"][0]
    check(cx["participants"] == cy["participants"], "participants differ by viewer: %r vs %r"
          % (cx["participants"], cy["participants"]))


@test
def test_snippet_cut_on_character_boundary(a):
    owner = new_user()
    cases = [("e-acute x150", "\u00e9" * 150), ("emoji x150", "\U0001F600" * 150),
             ("mixed", "a" + "\u00e9\U0001F600\u65e5" * 50), ("cjk", "\u65e5\u672c" * 75),
             ("exactly 100", "\u00e9" * 100), ("short", "short \U0001F600"),
             ("combining", "e\u0301" * 80), ("newline", "line1\nline2")]
    for why, content in cases:
        peer = new_user()
        a.send_ok(owner, peer, content)
        for viewer, other in ((owner, peer), (peer, owner)):
            c = convo_with(a, viewer, other)
            check(c is not None, "%s: conversation missing for %d" % (why, viewer))
            want = snippet_of(content)
            if c["snippet"] != want:
                fail("%s: snippet for %d is %r (%d code points), expected the first %d code points %r"
                     % (why, viewer, c["snippet"][:30], len(c["snippet"]), SNIPPET_MAX, want[:30]))


@test
def test_snippet_of_largest_content(a):
    x, y = new_user(), new_user()
    a.send_ok(x, y, "\U0001F600" * 16383)
    c = a.convs_ok(x)["conversations"][0]
    check(c["snippet"] == "\U0001F600" * SNIPPET_MAX, "snippet of a 64 KiB message: %d code points"
          % len(c["snippet"]))


@test
def test_conversations_ordered_by_newest_message(a):
    owner = new_user()
    peers = [new_user() for _ in range(6)]
    last = {}
    for p in peers:
        last[p] = a.send_ok(owner, p, "hello %d" % p)
    order = [c["peer_id"] for c in a.convs_ok(owner)["conversations"]]
    check(order == peers[::-1], "order %r, expected %r" % (order, peers[::-1]))
    # A new message in an old conversation, sent by either side, moves it
    # to the top.
    last[peers[1]] = a.send_ok(owner, peers[1], "again")
    last[peers[3]] = a.send_ok(peers[3], owner, "incoming")
    expected = [peers[3], peers[1], peers[5], peers[4], peers[2], peers[0]]
    j = a.convs_ok(owner)
    order = [c["peer_id"] for c in j["conversations"]]
    check(order == expected, "order after new messages %r, expected %r" % (order, expected))
    for c in j["conversations"]:
        check(c["last_message_id"] == last[c["peer_id"]]["message_id"],
              "conversation with %d points at %r, expected %r"
              % (c["peer_id"], c["last_message_id"], last[c["peer_id"]]["message_id"]))
        check(c["snippet"] == snippet_of(last[c["peer_id"]]["content"]), "snippet %r" % c["snippet"])


@test
def test_messages_newest_first_and_equal_for_both(a):
    x, y = new_user(), new_user()
    sent = []
    for i in range(12):
        s, r = (x, y) if i % 3 else (y, x)
        sent.append(a.send_ok(s, r, "m%d" % i))
    cid = sent[0]["conversation_id"]
    want = sorted(sent, key=lambda m: int(m["message_id"]), reverse=True)
    for user in (x, y):
        got = a.msgs_ok(user, cid)
        check(got["is_delta_update"] is False and got["has_more"] is False, "flags %r" % got)
        check(got["messages"] == want, "user %d list differs from the sent messages:\n got %r\nwant %r"
              % (user, [m["content"] for m in got["messages"]], [m["content"] for m in want]))


@test
def test_default_page_size_is_20(a):
    x, y = new_user(), new_user()
    sent = [a.send_ok(x, y, "n%d" % i) for i in range(23)]
    j = a.msgs_ok(x, sent[0]["conversation_id"])
    check(len(j["messages"]) == 20 and j["has_more"] is True,
          "default page: %d messages, has_more %r" % (len(j["messages"]), j["has_more"]))
    owner = new_user()
    for _ in range(21):
        a.send_ok(new_user(), owner, "hi")
    j = a.convs_ok(owner)
    check(len(j["conversations"]) == 20 and j["has_more"] is True,
          "default conversations page: %d, has_more %r" % (len(j["conversations"]), j["has_more"]))


@test
def test_message_paging_by_page(a):
    x, y = new_user(), new_user()
    sent = [a.send_ok(x if i % 2 else y, y if i % 2 else x, "p%d" % i) for i in range(25)]
    cid = sent[0]["conversation_id"]
    want = [m["message_id"] for m in sorted(sent, key=lambda m: int(m["message_id"]), reverse=True)]
    for user in (x, y):
        pages = [a.msgs_ok(user, cid, {"page_size": 10, "page": p}) for p in range(4)]
        sizes = [len(p["messages"]) for p in pages]
        flags = [p["has_more"] for p in pages]
        check(sizes == [10, 10, 5, 0], "page sizes %r" % sizes)
        check(flags == [True, True, False, False], "has_more %r" % flags)
        ids = [m["message_id"] for p in pages for m in p["messages"]]
        check(ids == want, "pages 0-2 are not the full history newest first: %r vs %r" % (ids, want))
        one = a.msgs_ok(user, cid, {"page_size": 25})["messages"]
        check([m["message_id"] for m in one] == want, "page_size 25 differs")
        big = a.msgs_ok(user, cid, {"page_size": 100})
        check(len(big["messages"]) == 25 and not big["has_more"], "page_size 100: %d" % len(big["messages"]))


@test
def test_message_paging_by_before(a):
    x, y = new_user(), new_user()
    sent = [a.send_ok(x, y, "b%d" % i) for i in range(25)]
    cid = sent[0]["conversation_id"]
    want = [m["message_id"] for m in reversed(sent)]
    for user in (x, y):
        walked, before = [], None
        for _ in range(10):
            q = {"page_size": 7}
            if before is not None:
                q["before"] = before
            j = a.msgs_ok(user, cid, q)
            for m in j["messages"]:
                check(before is None or int(m["message_id"]) < int(before),
                      "before=%s returned %s" % (before, m["message_id"]))
            walked += [m["message_id"] for m in j["messages"]]
            if not j["has_more"]:
                break
            before = j["messages"][-1]["message_id"]
        check(walked == want, "before= walk %r, expected %r" % (walked, want))
    # before the middle message: exactly the older ones.
    mid = sent[12]["message_id"]
    j = a.msgs_ok(x, cid, {"before": mid, "page_size": 100})
    check([m["message_id"] for m in j["messages"]] == want[13:], "before=%s gives %r" % (mid, j["messages"]))
    j = a.msgs_ok(x, cid, {"before": sent[0]["message_id"]})
    check(j["messages"] == [] and not j["has_more"], "before the oldest: %r" % j)
    # A before that is a valid id but not one of ours: only older messages.
    j = a.msgs_ok(x, cid, {"before": str(int(mid) + 1), "page_size": 100})
    check([m["message_id"] for m in j["messages"]] == want[12:], "before=mid+1 gives %r" % j["messages"])


@test
def test_conversation_paging(a):
    owner = new_user()
    peers = []
    for i in range(25):
        p = new_user()
        peers.append(p)
        if i % 2:
            a.send_ok(owner, p, "c%d" % i)
        else:
            a.send_ok(p, owner, "c%d" % i)
    pages = [a.convs_ok(owner, {"page_size": 10, "page": p}) for p in range(4)]
    check([len(p["conversations"]) for p in pages] == [10, 10, 5, 0],
          "page sizes %r" % [len(p["conversations"]) for p in pages])
    check([p["has_more"] for p in pages] == [True, True, False, False],
          "has_more %r" % [p["has_more"] for p in pages])
    got = [c["peer_id"] for p in pages for c in p["conversations"]]
    check(got == peers[::-1], "paged conversations %r, expected %r" % (got, peers[::-1]))
    check(len(set(got)) == 25, "duplicates across pages")


@test
def test_page_size_bounds(a):
    x, y = new_user(), new_user()
    cid = a.send_ok(x, y, "hi")["conversation_id"]
    for ps in ("1", "100"):
        j = a.msgs_ok(x, cid, {"page_size": ps})
        check(len(j["messages"]) == 1, "page_size %s: %r" % (ps, j))
        a.convs_ok(x, {"page_size": ps})


BAD_COMMON = ["page_size=0", "page_size=101", "page_size=-1", "page_size=abc", "page_size=",
              "page_size=1.5", "page_size=99999999999999999999", "page=-1", "page=abc", "page=",
              "page=1e3", "since=garbage!!", "since=%25%25%25", "since=", "since=AAAA",
              "last_updated_timestamp=abc", "last_updated_timestamp=1.5",
              "last_updated_timestamp=",
              # A NUL byte would cut a C string short: the value is refused
              # whole, not read as its start. A name without "=" is an
              # empty value, as "name=" is.
              "page_size=5%00abc", "page=1%00x", "last_updated_timestamp=5%00x",
              "page_size", "page", "since", "last_updated_timestamp"]


@test
def test_bad_list_queries_are_400(a):
    x, y = new_user(), new_user()
    cid = a.send_ok(x, y, "hi")["conversation_id"]
    for q in BAD_COMMON:
        r = a.convs(x, raw_query=q)
        if r.status != 400:
            fail("conversations?%s: expected 400, got %s" % (q, r.describe()))
        check_problem(r)
        r = a.msgs(x, cid, raw_query=q)
        if r.status != 400:
            fail("messages?%s: expected 400, got %s" % (q, r.describe()))
        check_problem(r)
    for q in ("before=abc", "before=-1", "before=", "before=0", "before=1.5",
              "before=99999999999999999999999", "before=%20", "before",
              "before=%s%%00x" % a.msgs_ok(x, cid)["messages"][0]["message_id"]):
        r = a.msgs(x, cid, raw_query=q)
        if r.status != 400:
            fail("messages?%s: expected 400, got %s" % (q, r.describe()))
        check_problem(r)
    token = a.convs_ok(x)["sync_token"]
    r = a.convs(x, raw_query="since=%s%%00junk" % token)
    if r.status != 400:
        fail("conversations?since=<token>%%00junk: expected 400, got %s" % r.describe())
    check_problem(r)


@test
def test_since_with_page_or_before_is_400(a):
    x, y = new_user(), new_user()
    m = a.send_ok(x, y, "hi")
    cid = m["conversation_id"]
    ctok = a.convs_ok(x)["sync_token"]
    mtok = a.msgs_ok(x, cid)["sync_token"]
    for q in ({"since": ctok, "page": 0}, {"since": ctok, "page": 1}):
        expect_status(a.convs(x, query=q), 400)
    for q in ({"since": mtok, "page": 0}, {"since": mtok, "page": 2},
              {"since": mtok, "before": m["message_id"]}):
        expect_status(a.msgs(x, cid, query=q), 400)


@test
def test_token_of_another_list_is_400(a):
    x, y, z = new_user(), new_user(), new_user()
    cxy = a.send_ok(x, y, "xy")["conversation_id"]
    cxz = a.send_ok(x, z, "xz")["conversation_id"]
    ctok_x = a.convs_ok(x)["sync_token"]
    ctok_y = a.convs_ok(y)["sync_token"]
    mtok_xy = a.msgs_ok(x, cxy)["sync_token"]
    mtok_yxy = a.msgs_ok(y, cxy)["sync_token"]
    cases = [("messages token on conversations", lambda: a.convs(x, query={"since": mtok_xy})),
             ("conversations token on messages", lambda: a.msgs(x, cxy, query={"since": ctok_x})),
             ("other user's conversations token", lambda: a.convs(x, query={"since": ctok_y})),
             ("other conversation's token", lambda: a.msgs(x, cxz, query={"since": mtok_xy})),
             ("peer's token of the same conversation", lambda: a.msgs(x, cxy, query={"since": mtok_yxy}))]
    for why, call in cases:
        r = call()
        if r.status != 400:
            fail("%s: expected 400, got %s" % (why, r.describe()))
        check_problem(r)


@test
def test_conversation_of_others_is_404(a):
    x, y, z = new_user(), new_user(), new_user()
    cid = a.send_ok(y, z, "not for x")["conversation_id"]
    r = a.msgs(x, cid)
    check(r.status in (403, 404), "reading a conversation x is not part of: %s" % r.describe())
    check_problem(r)
    # The conversation is judged before the query.
    for q in ("page_size=0", "since=garbage", "before=abc"):
        r = a.msgs(x, cid, raw_query=q)
        check(r.status == 404, "conversation x is not part of, ?%s: %s" % (q, r.describe()))
        check_problem(r)
    for bad in ("nonsense", "1_2_3", "%d_%d" % (y, y), "%d" % x, "0_%d" % x):
        r = a.msgs(x, bad)
        check(r.status in (400, 403, 404), "conversation id %r: %s" % (bad, r.describe()))
        check_problem(r)


@test
def test_unknown_routes_are_404(a):
    u = new_user()
    # "/" is the web client (docs/realtime.md).
    for path in ("/v1", "/v1/nothing", "/v2/messages", "/v1/messages/123", "/v1/users",
                 "/v1/users/%d" % u, "/v1/users/%d/things" % u,
                 "/v1/users/%d/conversations/x/messages/extra" % u, "/internal/ring"):
        r = a.call("GET", path, user=u)
        if r.status != 404:
            fail("GET %s: expected 404, got %s" % (path, r.describe()))
        check_problem(r)


@test
def test_wrong_methods_are_405(a):
    u, peer = new_user(), new_user()
    cid = a.send_ok(u, peer, "hi")["conversation_id"]
    cases = [("GET", "/v1/messages"), ("DELETE", "/v1/messages"), ("PUT", "/v1/messages"),
             ("PATCH", "/v1/messages"), ("POST", "/v1/users/%d/conversations" % u),
             ("PUT", "/v1/users/%d/conversations" % u), ("DELETE", "/v1/users/%d/conversations" % u),
             ("POST", "/v1/users/%d/conversations/%s/messages" % (u, cid)),
             ("DELETE", "/v1/users/%d/conversations/%s/messages" % (u, cid))]
    for method, path in cases:
        body = "{}" if method in ("POST", "PUT", "PATCH") else None
        r = a.call(method, path, user=u, body=body)
        if r.status != 405:
            fail("%s %s: expected 405, got %s" % (method, path, r.describe()))
        check_problem(r)
    # Nothing changed.
    check(len(a.all_msgs(u, cid)) == 1, "a refused method changed the conversation")


@test
def test_empty_mailbox_lists(a):
    u = new_user()
    j = a.convs_ok(u)
    check(j["conversations"] == [] and j["has_more"] is False and j["is_delta_update"] is False,
          "empty mailbox: %r" % j)
    j2 = a.convs_ok(u, {"page": 5})
    check(j2["conversations"] == [] and j2["has_more"] is False, "page 5 of empty: %r" % j2)


@test
def test_last_updated_timestamp_on_lists(a):
    x = new_user()
    peers = [new_user() for _ in range(4)]
    early = [a.send_ok(x, p, "early") for p in peers[:2]]
    # The server's landing clock is best-effort (SPEC 4) and this suite
    # runs next to the cluster: 300 ms either side of t absorbs the skew.
    time.sleep(0.3)
    t = now_ms()
    time.sleep(0.3)
    late = [a.send_ok(x, peers[2], "late 1"), a.send_ok(peers[3], x, "late 2"),
            a.send_ok(x, peers[2], "late 3")]
    j = a.convs_ok(x, {"last_updated_timestamp": t})
    got = [c["peer_id"] for c in j["conversations"]]
    check(got == [peers[2], peers[3]], "conversations updated after t: %r, expected %r"
          % (got, [peers[2], peers[3]]))
    cid = late[0]["conversation_id"]
    a.send_ok(x, peers[0], "later in another conversation")
    j = a.msgs_ok(x, cid, {"last_updated_timestamp": t})
    check([m["message_id"] for m in j["messages"]] == [late[2]["message_id"], late[0]["message_id"]],
          "messages after t: %r" % [m["content"] for m in j["messages"]])
    j = a.msgs_ok(x, early[0]["conversation_id"], {"last_updated_timestamp": t})
    check([m["content"] for m in j["messages"]] == ["later in another conversation"],
          "messages of an early conversation after t: %r" % [m["content"] for m in j["messages"]])
    j = a.convs_ok(x, {"last_updated_timestamp": now_ms() + 60000})
    check(j["conversations"] == [], "conversations after the future: %r" % j["conversations"])
    j = a.convs_ok(x, {"last_updated_timestamp": 0})
    check(len(j["conversations"]) == 4, "conversations after 0: %d" % len(j["conversations"]))


if __name__ == "__main__":
    run_tests()
