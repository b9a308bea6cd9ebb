#!/usr/bin/env python3
"""Integration: calls between services are authenticated, and the
gateway's token rules are strict (docs/internal-api.md, README.md, Configuration).

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR,
MESSENGER_BASE_PORT=25000 unless MESSENGER_IAUTH_TEST_BASE_PORT says
otherwise, one gateway, two cache nodes) and proves:

- the services sign their calls to each other: a send between users
  owned by different cache nodes crosses gateway -> router, gateway ->
  cache, cache -> storage and cache -> peer cache, and lands;
- router, storage and cache nodes refuse an internal call with 401
  problem+json when X-Internal-Auth is missing, carries a bad MAC (wrong
  secret, another body, another target, a flipped digit), is 40 s stale
  or ahead, or is a user's JWT (in that header or in Authorization);
  health, readiness and metrics stay open;
- a correctly signed call works;
- a service without a strong internal secret refuses to start, unless
  MESSENGER_DEV_MODE=1, where it starts and logs a warning; the same for
  the gateway's MESSENGER_JWT_SECRET; the gateway's MESSENGER_JWT_LEEWAY_S
  is honoured and bounded, and a token issued in the future is refused.

Every process it starts is stopped by PID; the cluster is removed at the
end, on failure too. Python standard library only.

Run: python3 tests/integration/test_internal_auth.py
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import (INTERNAL_AUTH_HEADER, check, expect_status, internal_auth, mint,  # noqa: E402
                     new_user, run_tests, test)

BASE_PORT = int(os.environ.get("MESSENGER_IAUTH_TEST_BASE_PORT", "25000"))
BUILD = os.environ.get("MESSENGER_BUILD", os.path.join(ROOT, "build", "asan"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
# Mirrors of common/constants.h.
IAUTH_WINDOW_S = 30
JWT_LEEWAY_S = 60
JWT_LEEWAY_MAX_S = 300
# Ports of the services this test starts on its own, inside the
# cluster's range but on no port scripts/cluster uses (base + 190...).
EXTRA_PORT = BASE_PORT + 190
# How long a service started here may take to answer /healthz, and to
# exit on a bad configuration.
START_WAIT_S = 20
TITLE = "Internal call not authenticated"

VAR = None
ENV = None
SECRET = None


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, extra_env={
        "MESSENGER_GATEWAYS": "1", "MESSENGER_CACHES": "2", "MESSENGER_PG_INSTANCES": "1"}, check_rc=check_rc)


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        try:
            self.json = json.loads(body or b"null")
        except ValueError:
            self.json = None

    def describe(self):
        return "%d %s %r" % (self.status, self.headers.get("content-type"), self.body[:300])


def call(method, url, body=None, auth=None, headers=None):
    """One HTTP call; auth is the X-Internal-Auth value (None: no header)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        req.add_header(INTERNAL_AUTH_HEADER, auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Answer(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, dict(e.headers), e.read())


def target_of(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def signed(method, url, body=None, secret=None, ts=None, headers=None):
    """A call signed like a service signs it."""
    data = body.encode() if isinstance(body, str) else body
    auth = internal_auth(secret or SECRET, method, target_of(url), data, ts)
    return call(method, url, data, auth, headers)


def expect_refused(answer, what):
    check(answer.status == 401, "%s: expected 401, got %s" % (what, answer.describe()))
    check(answer.headers.get("content-type", "").startswith("application/problem+json"),
          "%s: 401 without problem+json: %s" % (what, answer.describe()))
    check(isinstance(answer.json, dict) and answer.json.get("title") == TITLE
          and answer.json.get("status") == 401,
          "%s: problem body %r" % (what, answer.json))


def epoch():
    r = signed("GET", ENV["ROUTER_URL"] + "/internal/ring")
    check(r.status == 200, "signed ring fetch: %s" % r.describe())
    return r.json["epoch"]


def caches():
    return [u for u in ENV["CACHE_URLS"].split(",") if u]


def owner_of(user, ring_epoch):
    """Index of the cache node that serves user at ring_epoch."""
    owners = []
    for i, url in enumerate(caches()):
        r = signed("GET", "%s/internal/users/%d/conversations" % (url, user),
                   headers={"X-Ring-Epoch": str(ring_epoch)})
        check(r.status in (200, 421), "signed cache call: %s" % r.describe())
        if r.status == 200:
            owners.append(i)
    check(len(owners) == 1, "user %d: owners %r" % (user, owners))
    return owners[0]


def internal_calls(user):
    """(name, method, url, body, headers) of one call to each service."""
    e = epoch()
    send = json.dumps({"message": {"message_id": "1", "conversation_id": "1_2"}})
    return [
        ("router ring", "GET", ENV["ROUTER_URL"] + "/internal/ring", None, {}),
        ("storage meta", "GET", "%s/internal/users/%d/meta" % (ENV["STORAGE_URL"], user),
         None, {}),
        ("storage send", "POST", ENV["STORAGE_URL"] + "/internal/send", send, {}),
        ("cache list", "GET",
         "%s/internal/users/%d/conversations?page_size=20" % (caches()[owner_of(user, e)], user),
         None, {"X-Ring-Epoch": str(e)}),
    ]


# ------------------------------------------------------------------ tests


@test
def test_services_sign_their_calls_to_each_other(api):
    e = epoch()
    a = new_user()
    b = None
    for _ in range(200):
        u = new_user()
        if owner_of(u, e) != owner_of(a, e):
            b = u
            break
    check(b is not None, "no pair of users on different cache nodes")
    m = api.send_ok(a, b, "signed all the way")
    got = [x["message_id"] for x in api.all_msgs(b, m["conversation_id"])]
    check(got == [m["message_id"]], "recipient copy on the peer node: %r" % got)


@test
def test_internal_call_without_header_is_401(api):
    for name, method, url, body, headers in internal_calls(new_user()):
        expect_refused(call(method, url, body, None, headers), name + " without header")


@test
def test_internal_call_with_bad_mac_is_401(api):
    wrong_secret = "f" * 64
    for name, method, url, body, headers in internal_calls(new_user()):
        data = body.encode() if body else None
        expect_refused(signed(method, url, body, secret=wrong_secret, headers=headers),
                       name + " under another secret")
        other_target = url + ("&x=1" if "?" in url else "?x=1")
        auth = internal_auth(SECRET, method, target_of(other_target), data)
        expect_refused(call(method, url, body, auth, headers), name + " signed for another target")
        other_method = "POST" if method == "GET" else "GET"
        auth = internal_auth(SECRET, other_method, target_of(url), data)
        expect_refused(call(method, url, body, auth, headers), name + " signed for another method")
        auth = internal_auth(SECRET, method, target_of(url), data)
        flipped = auth[:-1] + ("0" if auth[-1] != "0" else "1")
        expect_refused(call(method, url, body, flipped, headers), name + " with a flipped digit")
        if body:
            auth = internal_auth(SECRET, method, target_of(url), body + " ")
            expect_refused(call(method, url, body, auth, headers), name + " signed for another body")


@test
def test_internal_call_with_stale_timestamp_is_401(api):
    now = int(time.time())
    for name, method, url, body, headers in internal_calls(new_user()):
        expect_refused(signed(method, url, body, ts=now - 40, headers=headers), name + " 40 s old")
        expect_refused(signed(method, url, body, ts=now + 40, headers=headers), name + " 40 s ahead")
        # Inside the window it passes (not a 401, whatever the handler says).
        r = signed(method, url, body, ts=now - IAUTH_WINDOW_S + 5, headers=headers)
        check(r.status != 401, "%s 25 s old refused: %s" % (name, r.describe()))


@test
def test_user_token_is_not_an_internal_credential(api):
    user = new_user()
    jwt = api.token(user)
    jwt_internal = mint(SECRET, user)  # even one keyed with the internal secret
    for name, method, url, body, headers in internal_calls(user):
        for token in (jwt, jwt_internal):
            expect_refused(call(method, url, body, token, headers), name + " with a JWT as header")
            expect_refused(call(method, url, body, "Bearer " + token, headers),
                           name + " with Bearer JWT as header")
            expect_refused(call(method, url, body, None,
                                dict(headers, Authorization="Bearer " + token)),
                           name + " with a JWT in Authorization")


@test
def test_correctly_signed_calls_work(api):
    user = new_user()
    r = signed("GET", ENV["ROUTER_URL"] + "/internal/ring")
    check(r.status == 200 and r.json.get("epoch", 0) >= 1, "ring: %s" % r.describe())
    r = signed("GET", "%s/internal/users/%d/meta" % (ENV["STORAGE_URL"], user))
    check(r.status == 200 and r.json == {"seq": 0, "max_id": "0"}, "meta: %s" % r.describe())
    e = epoch()
    url = "%s/internal/users/%d/conversations?page_size=20" % (caches()[owner_of(user, e)], user)
    r = signed("GET", url, headers={"X-Ring-Epoch": str(e)})
    check(r.status == 200 and r.json.get("conversations") == [], "cache list: %s" % r.describe())
    # A signed call still meets the handler's own checks.
    r = signed("POST", ENV["STORAGE_URL"] + "/internal/send", "{not json")
    check(r.status == 400, "signed malformed send: %s" % r.describe())


@test
def test_health_readiness_and_metrics_stay_open(api):
    for base in [ENV["ROUTER_URL"], ENV["STORAGE_URL"]] + caches():
        for path in ("/healthz", "/readyz", "/metrics"):
            r = call("GET", base + path)
            check(r.status == 200, "%s%s without header: %s" % (base, path, r.describe()))


# ------------------------------------- start-up rules (services run here)


def start_service(name, env):
    """Starts binary name with only env's service variables."""
    return e2e_lib.start_binary(BUILD, name, env)


def wait_serving(proc, port, path="/healthz"):
    """True once the process answers 200 on path, False once it exited."""
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if call("GET", "http://127.0.0.1:%d%s" % (port, path)).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    e2e_lib.fail("service on port %d neither served nor exited in %d s" % (port, START_WAIT_S))


def run_until_healthy_or_exit(name, env, port):
    """Starts binary name; returns (None if it served /healthz, else its
    exit code; its output). A serving process is stopped by PID."""
    proc, log = start_service(name, env)
    try:
        serving = wait_serving(proc, port)
    finally:
        out = e2e_lib.stop_binary(proc, log)
    return (None if serving else proc.returncode), out


def router_env(secret, **extra):
    env = {"MESSENGER_BIND": "127.0.0.1", "ROUTER_PORT": str(EXTRA_PORT),
           "ROUTER_NODES": "cache-1=http://127.0.0.1:1"}
    if secret is not None:
        env["MESSENGER_INTERNAL_SECRET"] = secret
    env.update(extra)
    return env


def gateway_env(jwt_secret, **extra):
    env = {"MESSENGER_BIND": "127.0.0.1", "GATEWAY_PORT": str(EXTRA_PORT + 1),
           "ROUTER_URL": ENV["ROUTER_URL"], "MESSENGER_JWT_SECRET": jwt_secret,
           "MESSENGER_INTERNAL_SECRET": SECRET}
    env.update(extra)
    return env


@test
def test_weak_internal_secret_refuses_start_unless_dev_mode(api):
    for secret, why in ((None, "missing"), ("short-secret", "11 bytes"), ("x" * 31, "31 bytes")):
        code, out = run_until_healthy_or_exit("router", router_env(secret), EXTRA_PORT)
        check(code not in (None, 0), "router started with a %s internal secret" % why)
        check("MESSENGER_INTERNAL_SECRET" in out, "no log line names the variable: %r" % out[-500:])
    code, out = run_until_healthy_or_exit("router", router_env("x" * 32), EXTRA_PORT)
    check(code is None, "router refused a 32-byte secret: %r" % out[-500:])
    code, out = run_until_healthy_or_exit(
        "router", router_env("short-secret", MESSENGER_DEV_MODE="1"), EXTRA_PORT)
    check(code is None, "router refused a short secret in dev mode: %r" % out[-500:])
    warnings = [json.loads(line) for line in out.splitlines()
                if line.startswith("{") and '"warn"' in line]
    check(any("MESSENGER_INTERNAL_SECRET" in w.get("msg", "") and
              "MESSENGER_DEV_MODE=1" in w.get("msg", "") for w in warnings),
          "no warning about the weak secret in dev mode: %r" % out[-800:])
    # Even in dev mode the secret is required.
    code, out = run_until_healthy_or_exit(
        "router", router_env(None, MESSENGER_DEV_MODE="1"), EXTRA_PORT)
    check(code not in (None, 0), "router started without an internal secret in dev mode")


@test
def test_gateway_secret_and_leeway_rules(api):
    port = EXTRA_PORT + 1
    code, out = run_until_healthy_or_exit("gateway", gateway_env("short-jwt-secret"), port)
    check(code not in (None, 0), "gateway started with a 16-byte JWT secret")
    check("MESSENGER_JWT_SECRET" in out, "no log line names the JWT secret: %r" % out[-500:])
    for leeway in ("301", "-1", "x"):
        code, out = run_until_healthy_or_exit(
            "gateway", gateway_env("j" * 32, MESSENGER_JWT_LEEWAY_S=leeway), port)
        check(code not in (None, 0), "gateway started with MESSENGER_JWT_LEEWAY_S=%s" % leeway)
        check("MESSENGER_JWT_LEEWAY_S" in out, "no log line names the leeway: %r" % out[-500:])
    code, out = run_until_healthy_or_exit(
        "gateway", gateway_env("short-jwt-secret", MESSENGER_DEV_MODE="1"), port)
    check(code is None, "gateway refused a short JWT secret in dev mode: %r" % out[-500:])
    check(any('"warn"' in line and "MESSENGER_JWT_SECRET" in line and "MESSENGER_DEV_MODE=1" in line
              for line in out.splitlines()),
          "no warning about the weak JWT secret: %r" % out[-800:])


@test
def test_gateway_honours_its_leeway(api):
    """A token 5 s past exp passes the cluster's gateway (default 60 s of
    leeway) but not one started with MESSENGER_JWT_LEEWAY_S=0."""
    secret = ENV["MESSENGER_JWT_SECRET"]
    user = new_user()
    late = mint(secret, user, exp_in_s=-5)
    path = "/v1/users/%d/conversations" % user
    r = api.call("GET", path, token=late)
    expect_status(r, 200)
    port = EXTRA_PORT + 2
    env = gateway_env(secret, GATEWAY_PORT=str(port), MESSENGER_JWT_LEEWAY_S="0")
    proc, log = start_service("gateway", env)
    try:
        check(wait_serving(proc, port, "/readyz"), "the strict gateway did not start")
        strict = e2e_lib.Api(dict(ENV, MESSENGER_URL="http://127.0.0.1:%d" % port))
        expect_status(strict.call("GET", path, token=late), 401)
        expect_status(strict.call("GET", path, token=mint(secret, user)), 200)
    finally:
        e2e_lib.stop_binary(proc, log)


@test
def test_token_issued_in_the_future_is_refused(api):
    secret = ENV["MESSENGER_JWT_SECRET"]
    user = new_user()
    now = int(time.time())
    path = "/v1/users/%d/conversations" % user
    for claim in ("iat", "nbf"):
        ahead = mint(secret, user, extra={claim: now + JWT_LEEWAY_S + 60})
        expect_status(api.call("GET", path, token=ahead), 401)
        skewed = mint(secret, user, extra={claim: now + JWT_LEEWAY_S - 20})
        expect_status(api.call("GET", path, token=skewed), 200)


def setup(var, env):
    global VAR, ENV, SECRET
    VAR = var
    ENV = env
    SECRET = e2e_lib.internal_secret(ENV)
    check(len(SECRET) >= 32 and SECRET != ENV["MESSENGER_JWT_SECRET"],
          "the cluster's internal secret is weak or the JWT secret")


def main():
    e2e_lib.run_with_own_cluster("messenger-iauth-test.", cluster, setup)


if __name__ == "__main__":
    main()
