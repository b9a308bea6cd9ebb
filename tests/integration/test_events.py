#!/usr/bin/env python3
"""Integration: the long poll GET /v1/users/{id}/events and the web page.

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR, base
port 24000) and proves:

- validation: 401 without a token, 403 for another user, 400 for a
  missing or bad since, a token of a message list, a timeout that is not
  0-60 whole seconds; timeout=0 answers at once;
- a poll whose token is older than the mailbox answers at once with the
  delta (the conversation and the message);
- a waiting poll wakes when a message lands (the recipient's, and the
  sender's own other device), well before its timeout, carrying it;
- a poll that sees no change answers an empty delta at its own token
  when the timeout passes;
- a client that always polls with the last token sees every message of a
  burst exactly as sent, none missed;
- more changed conversations than one answer holds: is_delta_update false
  and the first page of the list;
- the page is served at / with its security headers, the dev token
  endpoint is off (404) without development mode, and there is no CORS
  header by default.

Run: python3 tests/integration/test_events.py
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, expect_status, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_EVENTS_TEST_BASE_PORT", "24000"))
WAKE_MAX_S = 1.0  # a wake-up takes milliseconds; this is generous


def poll(api, user, since, timeout=None, token_user=None):
    """One events call on its own connection (safe from any thread).
    Returns (status, json body, seconds)."""
    query = {"since": since} if since is not None else {}
    if timeout is not None:
        query["timeout"] = timeout
    path = "/v1/users/%s/events?%s" % (user, urllib.parse.urlencode(query))
    u = urllib.parse.urlparse(api.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=70)
    headers = {}
    if token_user is not False:
        headers = api.auth(token_user if token_user is not None else user)
    start = time.monotonic()
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    data = json.loads(body) if body else None
    return r.status, data, time.monotonic() - start


def list_token(api, user):
    r = api.convs(user)
    expect_status(r, 200)
    return r.json["sync_token"]


def check_empty_delta(data, token, what):
    check(data["is_delta_update"] is True and data["conversations"] == [] and
          data["messages"] == [] and data["sync_token"] == token,
          "%s: expected an empty delta at the same token, got %s" % (what, data))


@test
def test_events_validation(api):
    user, other = new_user(), new_user()
    token = list_token(api, user)
    status, _, _ = poll(api, user, token, 0, token_user=False)
    check(status == 401, "no token: %d" % status)
    status, _, _ = poll(api, user, token, 0, token_user=other)
    check(status == 403, "another user's token: %d" % status)
    for since, timeout, what in [(None, "0", "missing since"), ("not-a-token", "0", "bad since"),
                                 (list_token(api, other), "0", "another user's token"),
                                 (token, "61", "timeout 61"), (token, "-1", "timeout -1"),
                                 (token, "abc", "timeout abc"), (token, "1.5", "timeout 1.5")]:
        status, data, _ = poll(api, user, since, timeout)
        check(status == 400 and data["status"] == 400 and data.get("detail"),
              "%s: expected 400 problem, got %d %s" % (what, status, data))
    peer = new_user()
    api.send_ok(peer, user, "hello")
    cid = api.convs_ok(user)["conversations"][0]["conversation_id"]
    r = api.msgs(user, cid)
    status, data, _ = poll(api, user, r.json["sync_token"], "0")
    check(status == 400, "a message-list token: %d %s" % (status, data))
    status, data, took = poll(api, user, list_token(api, user), "0")
    check(status == 200 and took < WAKE_MAX_S, "timeout=0: %d after %.2fs" % (status, took))
    check_empty_delta(data, list_token(api, user), "timeout=0")


@test
def test_events_answer_at_once_when_changed(api):
    a, b = new_user(), new_user()
    token = list_token(api, b)
    m = api.send_ok(a, b, "already there")
    status, data, took = poll(api, b, token, 20)
    check(status == 200 and took < WAKE_MAX_S, "%d after %.2fs" % (status, took))
    check(data["is_delta_update"] is True and data["sync_token"] != token, str(data))
    check([x["message_id"] for x in data["messages"]] == [m["message_id"]], str(data))
    check([c["conversation_id"] for c in data["conversations"]] == [m["conversation_id"]],
          str(data))
    check(data["conversations"][0]["snippet"] == "already there", str(data))
    # The new token is a conversation-list token: a delta with it is empty.
    r = api.convs(b, query={"since": data["sync_token"]})
    expect_status(r, 200)
    check(r.json["is_delta_update"] is True and r.json["conversations"] == [], r.describe())


def wait_while_sending(api, waiter, since, send):
    """Starts a poll of waiter, sends once it waits, returns (status,
    data, seconds from the send's answer to the poll's)."""
    out = {}

    def run():
        out["status"], out["data"], _ = poll(api, waiter, since, 20)
        out["at"] = time.monotonic()

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.5)  # the poll is held by now
    check(th.is_alive(), "the poll answered before any change: %s" % out)
    m = send()
    sent_at = time.monotonic()
    th.join(25)
    check(not th.is_alive(), "the poll did not answer")
    return out["status"], out["data"], out["at"] - sent_at, m


@test
def test_events_wake_the_recipient(api):
    a, b = new_user(), new_user()
    status, data, delay, m = wait_while_sending(api, b, list_token(api, b),
                                                lambda: api.send_ok(a, b, "wake up"))
    print("  recipient woke %.1f ms after the 201" % (delay * 1000))
    check(status == 200 and delay < WAKE_MAX_S, "%d, %.2fs after the send" % (status, delay))
    check([x["message_id"] for x in data["messages"]] == [m["message_id"]], str(data))


@test
def test_events_wake_the_senders_other_device(api):
    a, b = new_user(), new_user()
    status, data, delay, m = wait_while_sending(api, a, list_token(api, a),
                                                lambda: api.send_ok(a, b, "from my phone"))
    check(status == 200 and delay < WAKE_MAX_S, "%d, %.2fs after the send" % (status, delay))
    check([x["message_id"] for x in data["messages"]] == [m["message_id"]], str(data))


@test
def test_events_time_out_with_an_empty_delta(api):
    user = new_user()
    token = list_token(api, user)
    status, data, took = poll(api, user, token, 1)
    check(status == 200 and 0.9 <= took < 3.0, "%d after %.2fs" % (status, took))
    check_empty_delta(data, token, "timeout")


@test
def test_events_chain_misses_nothing(api):
    a, b = new_user(), new_user()
    sent, seen = [], []
    token = list_token(api, b)

    def sender():
        for i in range(30):
            sent.append(api.send_ok(a, b, "burst %d" % i, )["message_id"])
            if i % 7 == 0:
                time.sleep(0.05)

    th = threading.Thread(target=sender)
    th.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (th.is_alive() or len(set(seen)) < len(sent)):
        status, data, _ = poll(api, b, token, 2)
        check(status == 200 and data["is_delta_update"], "%d %s" % (status, data))
        seen.extend(x["message_id"] for x in data["messages"])
        token = data["sync_token"]
    th.join()
    check(set(seen) == set(sent) and len(sent) == 30,
          "sent %d, saw %d distinct, missing %s" % (len(sent), len(set(seen)),
                                                    set(sent) - set(seen)))


@test
def test_events_too_many_changes_give_the_first_page(api):
    b = new_user()
    token = list_token(api, b)
    for _ in range(21):
        api.send_ok(new_user(), b, "one of many")
    status, data, _ = poll(api, b, token, 5)
    check(status == 200 and data["is_delta_update"] is False, "%d %s" % (status, data))
    check(len(data["conversations"]) == 20 and data["has_more"] is True and
          data["messages"] == [], "first page expected: %d conversations"
          % len(data["conversations"]))


@test
def test_page_and_dev_tokens(api):
    # Not through api.call: the contract check there knows JSON only.
    r = api.http.request("GET", "/")
    check(r.status == 200, r.describe(100))
    check(r.headers.get("content-type", "").startswith("text/html"), r.describe(100))
    check("script-src 'self'" in r.headers.get("content-security-policy", ""),
          "the page has a CSP: %s" % r.headers)
    check(b'src="/app.js"' in r.body, "the page loads /app.js")
    for path, kind in [("/app.js", "text/javascript"), ("/app.css", "text/css")]:
        r = api.http.request("GET", path)
        check(r.status == 200, r.describe(100))
        check(r.headers.get("content-type", "").startswith(kind), r.describe(100))
        check(r.headers.get("x-content-type-options") == "nosniff", str(r.headers))
    check("access-control-allow-origin" not in r.headers, "CORS is off by default")
    for method, body in [("GET", None), ("POST", {"user_id": 1})]:
        r = api.call(method, "/v1/dev/token", body=body)
        check(r.status == 404, "dev tokens are off by default: %s" % r.describe())


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, check_rc=check_rc)


def setup(var, env):
    pass


def main():
    e2e_lib.run_with_own_cluster("messenger-events-test.", cluster, setup)


if __name__ == "__main__":
    main()
