"""End-to-end: authentication and authorisation of the public API (SPEC 3
and 4). Missing, malformed, badly signed or expired tokens get 401; a
token for user X acting as or reading user Y gets 403, before any
validation of the body or the query; rejected calls store nothing.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_auth.py
"""

import time

from e2e_lib import (b64url, check, check_problem, expect_status, fail, jwt_encode, mint,
                     new_cmid, new_user, run_tests, test)

HEADER = {"alg": "HS256", "typ": "JWT"}


def send_body(sender, recipient):
    return {"sender_id": sender, "recipient_id": recipient, "content": "hello",
            "client_message_id": new_cmid()}


def expect_401_everywhere(a, token, why, raw_header=None):
    """The token (or a raw Authorization value) is refused with 401 on
    the three routes."""
    user, peer = new_user(), new_user()
    hdr = {"Authorization": raw_header} if raw_header is not None else {"Authorization": "Bearer " + token}
    calls = (("POST", "/v1/messages", send_body(user, peer)),
             ("GET", "/v1/users/%d/conversations" % user, None),
             ("GET", "/v1/users/%d/conversations/%d_%d/messages" % (user, min(user, peer), max(user, peer)), None))
    for method, path, body in calls:
        r = a.call(method, path, body=body, headers=hdr)
        if r.status != 401:
            fail("%s: expected 401, got: %s" % (why, r.describe()))
        check_problem(r)
        check(r.headers.get("www-authenticate") == "Bearer",
              "%s: 401 without WWW-Authenticate: Bearer: %s" % (why, r.describe()))
    # Nothing was stored by the refused send.
    j = a.convs_ok(user)
    check(j["conversations"] == [], "%s: refused send stored something: %r" % (why, j))


@test
def test_missing_token_is_401(a):
    user, peer = new_user(), new_user()
    for method, path, body in (("POST", "/v1/messages", send_body(user, peer)),
                               ("GET", "/v1/users/%d/conversations" % user, None)):
        r = a.call(method, path, body=body)
        expect_status(r, 401)
        check(r.headers.get("www-authenticate") == "Bearer",
              "401 without WWW-Authenticate: Bearer: %s" % r.describe())
    check(a.convs_ok(user)["conversations"] == [], "refused send stored something")


@test
def test_malformed_authorization_is_401(a):
    secret = a.secret
    good = mint(secret, new_user())
    cases = {
        "empty header": "",
        "Bearer without token": "Bearer ",
        "Basic scheme": "Basic dXNlcjpwYXNz",
        "token without scheme": good,
        "one part": "Bearer abc",
        "two parts": "Bearer " + ".".join(good.split(".")[:2]),
        "four parts": "Bearer " + good + ".abc",
        "not base64": "Bearer !!!.@@@.###",
        "header not JSON": "Bearer " + b64url(b"nope") + "." + good.split(".")[1] + "." + good.split(".")[2],
        # Over the longest token accepted (4096) but well under the 8 KiB
        # header line proxies parse.
        "very long token": "Bearer " + "a" * 5000,
    }
    for why, value in cases.items():
        expect_401_everywhere(a, None, why, raw_header=value)


@test
def test_bad_signature_is_401(a):
    user = new_user()
    exp = int(time.time()) + 3600
    claims = {"sub": str(user), "exp": exp}
    cases = {
        "wrong secret": jwt_encode(HEADER, claims, a.secret + "x"),
        "empty signature": jwt_encode(HEADER, claims, a.secret, signature=""),
        "alg none": jwt_encode({"alg": "none", "typ": "JWT"}, claims, a.secret, signature=""),
        "alg none signed": jwt_encode({"alg": "none", "typ": "JWT"}, claims, a.secret),
        "alg HS512 header": jwt_encode({"alg": "HS512", "typ": "JWT"}, claims, a.secret),
        "signature of other payload": (lambda t, o: ".".join(t.split(".")[:2] + o.split(".")[2:]))(
            jwt_encode(HEADER, claims, a.secret),
            jwt_encode(HEADER, {"sub": str(user + 1), "exp": exp}, a.secret)),
    }
    for why, token in cases.items():
        expect_401_everywhere(a, token, why)


@test
def test_expired_token_is_401(a):
    now = int(time.time())
    for why, exp in (("expired 2 minutes ago", now - 120), ("expired an hour ago", now - 3600)):
        token = jwt_encode(HEADER, {"sub": str(new_user()), "exp": exp}, a.secret)
        expect_401_everywhere(a, token, why)


@test
def test_bad_claims_are_401(a):
    user = new_user()
    exp = int(time.time()) + 3600
    cases = {
        "no exp": {"sub": str(user)},
        "no sub": {"exp": exp},
        "sub is a number": {"sub": user, "exp": exp},
        "sub with leading zero": {"sub": "0" + str(user), "exp": exp},
        "sub zero": {"sub": "0", "exp": exp},
        "sub negative": {"sub": "-5", "exp": exp},
        "sub 2^53": {"sub": str(2**53), "exp": exp},
        "sub not decimal": {"sub": "abc", "exp": exp},
        "exp a string": {"sub": str(user), "exp": "tomorrow"},
    }
    for why, claims in cases.items():
        expect_401_everywhere(a, jwt_encode(HEADER, claims, a.secret), why)
    expect_401_everywhere(a, jwt_encode(HEADER, b"[1,2]", a.secret), "payload not an object")


@test
def test_short_lived_valid_token_is_accepted(a):
    user, peer = new_user(), new_user()
    token = jwt_encode(HEADER, {"sub": str(user), "exp": int(time.time()) + 30}, a.secret)
    r = a.call("GET", "/v1/users/%d/conversations" % user, token=token)
    expect_status(r, 200)
    r = a.call("POST", "/v1/messages", body=send_body(user, peer), token=token)
    expect_status(r, 201)


@test
def test_acting_as_another_user_is_403(a):
    me, other, peer = new_user(), new_user(), new_user()
    r = a.call("POST", "/v1/messages", user=me, body=send_body(other, peer))
    expect_status(r, 403)
    # Sending to oneself as someone else is still 403, not 400.
    r = a.call("POST", "/v1/messages", user=me, body=send_body(other, me))
    expect_status(r, 403)
    check(a.convs_ok(other)["conversations"] == [], "refused send stored a copy for the sender")
    check(a.convs_ok(peer)["conversations"] == [], "refused send stored a copy for the recipient")
    check(a.convs_ok(me)["conversations"] == [], "refused send stored a copy for the token's user")


@test
def test_reading_another_user_is_403(a):
    alice, bob, eve = new_user(), new_user(), new_user()
    m = a.send_ok(alice, bob, "private")
    cid = m["conversation_id"]
    expect_status(a.convs(alice, as_user=eve), 403)
    expect_status(a.msgs(alice, cid, as_user=eve), 403)
    expect_status(a.msgs(bob, cid, as_user=eve), 403)
    # Bob may not read Alice's mailbox either, even for their shared
    # conversation.
    expect_status(a.msgs(alice, cid, as_user=bob), 403)
    expect_status(a.convs(alice, as_user=bob), 403)


@test
def test_authorisation_before_validation(a):
    me, other, peer = new_user(), new_user(), new_user()
    bodies = {
        "content missing": {"sender_id": other, "recipient_id": peer, "client_message_id": "k"},
        "content too large": {"sender_id": other, "recipient_id": peer, "content": "x" * 70000,
                              "client_message_id": "k"},
        "bad recipient": {"sender_id": other, "recipient_id": 0, "content": "x", "client_message_id": "k"},
        "recipient is sender": {"sender_id": other, "recipient_id": other, "content": "x",
                                "client_message_id": "k"},
        "bad client_message_id": {"sender_id": other, "recipient_id": peer, "content": "x",
                                  "client_message_id": ""},
        "content not a string": {"sender_id": other, "recipient_id": peer, "content": 5,
                                 "client_message_id": "k"},
        # Another user's id mistyped still names another user.
        "sender as a string": {"sender_id": str(other), "recipient_id": peer, "content": "x",
                               "client_message_id": "k"},
        "sender as a float": {"sender_id": float(other), "recipient_id": peer, "content": "x",
                              "client_message_id": "k"},
    }
    for why, body in bodies.items():
        r = a.call("POST", "/v1/messages", user=me, body=body)
        if r.status != 403:
            fail("%s: expected 403, got: %s" % (why, r.describe()))
        check_problem(r)
    # Invalid UTF-8 makes the whole body unparseable JSON, so the sender
    # may be unknowable: 403 or 400, but never a stored message.
    raw = ('{"sender_id": %d, "recipient_id": %d, "content": "\xff", "client_message_id": "k"}'
           % (other, peer)).encode("latin-1")
    expect_status(a.call("POST", "/v1/messages", user=me, body=raw), 403, 400)
    # The token's own user mistyped is a validation error.
    for mistyped in (str(me), float(me)):
        r = a.call("POST", "/v1/messages", user=me,
                   body={"sender_id": mistyped, "recipient_id": peer, "content": "x",
                         "client_message_id": "k"})
        expect_status(r, 400)
        check_problem(r)
    for u in (me, other, peer):
        check(a.convs_ok(u)["conversations"] == [], "refused send stored something for %d" % u)
    for q in ("page_size=0", "page=-1", "since=%%%", "page_size=abc"):
        expect_status(a.convs(other, as_user=me, raw_query=q), 403)
        expect_status(a.msgs(other, "%d_%d" % (min(other, peer), max(other, peer)), as_user=me,
                             raw_query=q + "&before=zz"), 403)


@test
def test_health_and_metrics_need_no_token(a):
    for path in ("/healthz", "/metrics"):
        r = a.call("GET", path)
        check(r.status == 200, "GET %s without token: %s" % (path, r.describe()))


if __name__ == "__main__":
    run_tests()
