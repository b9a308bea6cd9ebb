#!/usr/bin/env python3
"""Integration: the long poll across failures, CORS, and the contract of
the page and development routes (docs/realtime.md, docs/api.md).

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR,
base port 12000 unless MESSENGER_EVENTS_MORE_TEST_BASE_PORT says
otherwise: 2 routers, 3 cache nodes and a standby) and proves:

- the page, its files and the (off) development routes answer as
  docs/openapi.yaml says, and CORS is off by default: no
  Access-Control-Allow-Origin, and an OPTIONS preflight is a plain 405;
- a gateway started with GATEWAY_CORS_ORIGIN (and development tokens)
  puts the origin on every answer and answers preflights with 204 and
  the path's methods; its development routes mint a working token;
- three clients that always poll with their last token (the recipient
  on two devices, round robin over the gateways and the load balancer,
  and the sender's own other device) each collect exactly the messages
  of their mailbox while a sender sends 30 with random small pauses;
- a poll held while its user's owner cache node is killed answers 200
  (never a 5xx) within its timeout plus a few seconds; polling on with
  the returned token receives a message sent after the failover, and a
  poll then held at the new owner wakes when the next message lands.

Every events answer is checked against docs/openapi.yaml like the
answers of e2e_lib.Api. The extra gateway and the cluster are stopped
at the end, on failure too. Python standard library only.

Run: python3 tests/integration/test_events_more.py
"""

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, expect_status, fail, new_user, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_EVENTS_MORE_TEST_BASE_PORT", "12000"))
# Free in the cluster's layout (scripts/cluster: gateways from base+101).
CORS_GATEWAY_PORT = BASE_PORT + 190
CORS_ORIGIN = "http://chat.example.test"
# A poll answers within its timeout plus the gateway's grace for the
# owner's answer (EV_CALL_GRACE_MS, 5 s); more is a hang.
POLL_SLACK_S = 8
# A failover takes ~1.5 s of silence, a router tick and a ring fetch;
# the sanitizer build on a busy machine gets slack.
FAILOVER_LIMIT_S = 15
WAKE_MAX_S = 2.0
START_WAIT_S = 30
CHAIN_MESSAGES = 30
CHAIN_LIMIT_S = 30

VAR = None
ENV = None
_rng = random.Random()


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, check_rc=check_rc)


# ------------------------------------------------------------ helpers


def poll(api, user, since, timeout):
    """One events call of user on a fresh connection, read with a timeout
    above the poll's own. The answer is checked against
    docs/openapi.yaml; returns the e2e_lib.Response."""
    path = "/v1/users/%d/events?%s" % (user, urllib.parse.urlencode(
        {"since": since, "timeout": timeout}))
    h = api.http
    conn = http.client.HTTPConnection(h.host, h.port, timeout=timeout + POLL_SLACK_S)
    start = time.monotonic()
    try:
        conn.request("GET", h.prefix + path, headers=api.auth(user))
        r = conn.getresponse()
        body = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        fail("poll of %d (timeout %d) on %s: %s: %s" % (user, timeout, api.url,
                                                         type(e).__name__, e))
    finally:
        conn.close()
    resp = e2e_lib.Response("GET", path, None, r.status, headers, body,
                            time.monotonic() - start)
    e2e_lib.openapi_check(resp)
    return resp


def poll_ok(api, user, since, timeout):
    """A poll that must answer 200 with a delta; returns the Response."""
    r = poll(api, user, since, timeout)
    expect_status(r, 200)
    check(r.json["is_delta_update"] is True, "not a delta: %s" % r.describe())
    return r


def list_token(api, user):
    return api.convs_ok(user)["sync_token"]


def mailbox(api, user):
    """Every message of user's mailbox: {message_id: content}."""
    out = {}
    for c in api.all_convs(user):
        for m in api.all_msgs(user, c["conversation_id"]):
            out[m["message_id"]] = m["content"]
    return out


def send_until_ok(api, sender, recipient, content, limit_s):
    """Retries one send (same key) until acknowledged; returns the
    message. Refusals while the cluster fails over are expected."""
    cmid = e2e_lib.new_cmid("ev")
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        try:
            r = api.send(sender, recipient, content, cmid=cmid, fresh=True)
            if r.status in (200, 201):
                return r.json
            last = r.describe()
        except e2e_lib.TestFailure as e:
            last = str(e)
        time.sleep(0.1)
    fail("send %d->%d not acknowledged within %d s: %s" % (sender, recipient, limit_s, last))


def in_thread(fn):
    """Runs fn() in a thread; returns (thread, out) where out holds
    "value" or "error" once it ends."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # reported by the caller
            out["error"] = e
        out["at"] = time.monotonic()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def result_of(th, out, limit_s, what):
    th.join(limit_s)
    check(not th.is_alive(), "%s: no answer within %d s" % (what, limit_s))
    if "error" in out:
        raise out["error"]
    return out["value"]


# ------------------------------------------------------- ring and nodes


def router_ring():
    """The ring the routers publish (the first that answers)."""
    for url in ENV["ROUTER_URLS"].split(","):
        status, ring = e2e_lib.signed_call(ENV["MESSENGER_INTERNAL_SECRET"], "GET",
                                           url + "/internal/ring")
        if status == 200 and ring:
            return ring
    fail("no router published a ring")


def owner_name(user):
    """The name of the cache node that owns user now: the one node that
    serves its list at the ring's epoch (the others answer 421)."""
    ring = router_ring()
    for node in ring["nodes"]:
        status, _ = e2e_lib.signed_call(
            ENV["MESSENGER_INTERNAL_SECRET"], "GET",
            "%s/internal/users/%d/conversations" % (node["url"], user),
            headers={"X-Ring-Epoch": str(ring["epoch"])})
        if status == 200:
            return node["name"]
    fail("no cache node owns user %d at epoch %s" % (user, ring["epoch"]))


class Gateway:
    """An extra gateway run as this test's child, with the cluster's
    binaries, router and secrets plus the variables given."""

    def __init__(self, port, extra):
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log_path = os.path.join(VAR, "log", "events-more-gateway-%d.log" % port)
        self.log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MESSENGER_", "GATEWAY_", "CACHE_", "ROUTER_", "STORAGE_"))}
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
        env.update({
            "MESSENGER_BIND": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "ROUTER_URL": ENV["ROUTER_URLS"],
            "MESSENGER_JWT_SECRET": ENV["MESSENGER_JWT_SECRET"],
            "MESSENGER_INTERNAL_SECRET": ENV["MESSENGER_INTERNAL_SECRET"],
        })
        env.update(extra)
        self.proc = subprocess.Popen([os.path.join(ENV["MESSENGER_BUILD"], "bin", "gateway")],
                                     env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self):
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "gateway exited at start: %s" % self.tail())
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        fail("gateway not ready in %d s: %s" % (START_WAIT_S, self.tail()))

    def tail(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-1500:].decode("utf-8", "replace")

    def stop(self):
        """SIGTERM, then SIGKILL if it has not exited after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def api_at(url):
    """An e2e_lib.Api whose calls go to url (answers still validated)."""
    env = dict(ENV)
    env["MESSENGER_URL"] = url
    return e2e_lib.Api(env)


def preflight(api, path, method):
    """A browser's CORS preflight for method on path (raw: the contract
    check knows no OPTIONS operations, docs/openapi.yaml says why)."""
    return api.http.request("OPTIONS", path, headers={
        "Origin": CORS_ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"}, fresh=True)


# -------------------------------------------------------------- tests


@test
def test_page_routes_and_cors_off_by_default(api):
    for path, kind in [("/", "text/html"), ("/index.html", "text/html"),
                       ("/app.js", "text/javascript"), ("/app.css", "text/css")]:
        r = api.call("GET", path, headers={"Origin": CORS_ORIGIN})
        check(r.status == 200 and r.headers.get("content-type", "").startswith(kind),
              r.describe(80))
        check("access-control-allow-origin" not in r.headers, "CORS header on %s" % path)
    for method, body in [("GET", None), ("POST", {"user_id": new_user()})]:
        r = api.call(method, "/v1/dev/token", body=body)
        check(r.status == 404, "development tokens are off by default: %s" % r.describe())
    user = new_user()
    r = api.call("GET", e2e_lib.conv_path(user), user=user, headers={"Origin": CORS_ORIGIN})
    expect_status(r, 200)
    check("access-control-allow-origin" not in r.headers, "CORS header by default: %s" % r.headers)
    for gw in [api] + api.gateways():
        r = preflight(gw, "/v1/messages", "POST")
        e2e_lib.check_problem(r)
        check(r.status == 405 and r.headers.get("allow") == "POST",
              "a preflight with CORS off on %s: %s %s" % (gw.url, r.describe(), r.headers))
        check(not any(h.startswith("access-control-") for h in r.headers),
              "CORS headers with CORS off: %s" % r.headers)


@test
def test_cors_and_dev_tokens_when_configured(api):
    gw = Gateway(CORS_GATEWAY_PORT, {"GATEWAY_CORS_ORIGIN": CORS_ORIGIN,
                                     "MESSENGER_DEV_MODE": "1", "GATEWAY_DEV_TOKENS": "1"})
    try:
        gw.wait_ready()
        g = api_at(gw.url)
        user = new_user()
        # Every answer carries the origin: a success, a problem, the page.
        for r, want in [(g.call("GET", e2e_lib.conv_path(user), user=user), 200),
                        (g.call("GET", e2e_lib.conv_path(user)), 401),
                        (g.call("GET", "/"), 200)]:
            check(r.status == want, r.describe(60))
            check(r.headers.get("access-control-allow-origin") == CORS_ORIGIN and
                  "origin" in r.headers.get("vary", "").lower(),
                  "no CORS headers: %s %s" % (r.describe(60), r.headers))
        for path, method, allowed in [("/v1/messages", "POST", "POST"),
                                      ("/v1/users/%d/events" % user, "GET", "GET"),
                                      ("/v1/dev/token", "POST", "GET, POST")]:
            r = preflight(g, path, method)
            check(r.status == 204 and r.body == b"", "preflight of %s: %s" % (path, r.describe()))
            h = r.headers
            check(h.get("access-control-allow-origin") == CORS_ORIGIN, "%s: %s" % (path, h))
            check(h.get("access-control-allow-methods") == allowed, "%s: %s" % (path, h))
            allow_headers = h.get("access-control-allow-headers", "").lower()
            check("authorization" in allow_headers and "content-type" in allow_headers,
                  "%s: %s" % (path, h))
            check(h.get("access-control-max-age") == "600", "%s: %s" % (path, h))
            check(h.get("x-request-id"), "preflight without X-Request-Id: %s" % h)
        r = preflight(g, "/v1/no/such/route", "GET")
        check(r.status == 404, "a preflight of an unknown path: %s" % r.describe())
        # Development tokens: on here, and the token works.
        r = g.call("GET", "/v1/dev/token")
        expect_status(r, 200)
        check(r.json == {"enabled": True}, r.describe())
        r = g.call("POST", "/v1/dev/token", body={"user_id": user})
        expect_status(r, 200)
        check(r.json["user_id"] == user and r.json["expires_at"] > time.time() + 3000,
              r.describe())
        r = g.call("GET", e2e_lib.conv_path(user), token=r.json["token"])
        expect_status(r, 200)
        for body in [{"user_id": 0}, {"user_id": "1"}, {}, "not json"]:
            r = g.call("POST", "/v1/dev/token", body=body)
            check(r.status == 400, "dev token body %r: %s" % (body, r.describe()))
    finally:
        gw.stop()


@test
def test_pollers_with_the_last_token_miss_nothing(api):
    sender, b, c = e2e_lib.new_users(3)
    entry = [api] + api.gateways()
    pollers = [("recipient", b, 0), ("recipient's other device", b, 1),
               ("sender's other device", sender, 2), ("second recipient", c, 0)]
    tokens = {u: list_token(api, u) for u in (sender, b, c)}
    stop_at = [None]
    seen = [set() for _ in pollers]

    def run_poller(k):
        _, user, offset = pollers[k]
        token = tokens[user]
        deadline = time.monotonic() + CHAIN_LIMIT_S
        for i in range(1000):
            done = stop_at[0]
            if time.monotonic() > deadline or (done is not None and time.monotonic() > done):
                return
            r = poll_ok(entry[(i + offset) % len(entry)], user, token, 2)
            seen[k].update(m["message_id"] for m in r.json["messages"])
            token = r.json["sync_token"]

    threads = [in_thread(lambda k=k: run_poller(k)) for k in range(len(pollers))]
    sent = []
    for i in range(CHAIN_MESSAGES):
        to = b if _rng.random() < 0.7 else c
        sent.append((api.send_ok(sender, to, "chain %d" % i)["message_id"], to))
        time.sleep(_rng.uniform(0, 0.12))
    # Every poller gets one more full round after the last send: a poll
    # started before it returns with it, or the next one sees it at once.
    stop_at[0] = time.monotonic() + 2 * 2 + 1
    for th, out in threads:
        result_of(th, out, CHAIN_LIMIT_S + POLL_SLACK_S, "poller")
    boxes = {u: set(mailbox(api, u)) for u in (sender, b, c)}
    check(len(boxes[sender]) == CHAIN_MESSAGES, "sender's mailbox: %d" % len(boxes[sender]))
    check(boxes[b] | boxes[c] == boxes[sender] and not boxes[b] & boxes[c],
          "mailboxes of the recipients do not split the sender's")
    for k, (name, user, _) in enumerate(pollers):
        check(seen[k] == boxes[user],
              "%s (user %d): missed %s, extra %s" % (name, user, sorted(boxes[user] - seen[k]),
                                                     sorted(seen[k] - boxes[user])))


@test
def test_poll_across_owner_failover(api):
    peer, user = e2e_lib.new_users(2)
    token = list_token(api, user)
    victim = owner_name(user)
    timeout = 10
    th, out = in_thread(lambda: poll(api, user, token, timeout))
    time.sleep(0.7)
    check(th.is_alive(), "the poll answered before any change: %s" % out)
    killed_at = time.monotonic()
    cluster(VAR, "kill", victim)
    # Sent while the poll is held: acknowledged once the standby serves.
    m = send_until_ok(api, peer, user, "after the failover", FAILOVER_LIMIT_S)
    print("    send acknowledged %.2f s after %s was killed" % (time.monotonic() - killed_at,
                                                               victim))
    r = result_of(th, out, timeout + POLL_SLACK_S, "the poll held across the kill")
    took = out["at"] - killed_at
    print("    the held poll answered %d %.2f s after the kill with %d messages" % (
        r.status, took, len((r.json or {}).get("messages", []))))
    expect_status(r, 200)
    check(took < timeout + 5, "answered %.2f s after the kill (timeout %d)" % (took, timeout))
    j = r.json
    got = {x["message_id"]: x["content"] for x in j["messages"]}
    check(j["is_delta_update"] is True, r.describe())
    check(got == {m["message_id"]: "after the failover"} or
          (got == {} and j["sync_token"] == token),
          "the held poll answers the change or an empty delta at its token: %s" % r.describe())
    # Polling on with the last token brings the message; no answer on
    # the way may be an error.
    token = j["sync_token"]
    deadline = time.monotonic() + FAILOVER_LIMIT_S
    while m["message_id"] not in got:
        check(time.monotonic() < deadline, "the message sent across the failover never came")
        r = poll_ok(api, user, token, 3)
        got.update((x["message_id"], x["content"]) for x in r.json["messages"])
        token = r.json["sync_token"]
    check(got == {m["message_id"]: "after the failover"}, str(got))
    new_owner = owner_name(user)
    check(new_owner != victim, "user %d still owned by the killed %s" % (user, victim))
    # A poll held at the new owner wakes when a message lands.
    th, out = in_thread(lambda: poll(api, user, token, 20))
    time.sleep(0.7)
    check(th.is_alive(), "the poll at %s answered before any change: %s" % (new_owner, out))
    m = api.send_ok(peer, user, "wake at the new owner")
    sent_at = time.monotonic()
    r = result_of(th, out, 20 + POLL_SLACK_S, "the poll at the new owner")
    expect_status(r, 200)
    delay = out["at"] - sent_at
    print("    poll at %s woke %.1f ms after the 201" % (new_owner, delay * 1000))
    check(delay < WAKE_MAX_S, "woke %.2f s after the send" % delay)
    check([x["message_id"] for x in r.json["messages"]] == [m["message_id"]], r.describe())


def setup(var, env):
    global VAR, ENV
    VAR, ENV = var, env


def main():
    e2e_lib.run_with_own_cluster("messenger-events-more-test.", cluster, setup)


if __name__ == "__main__":
    main()
