#!/usr/bin/env python3
"""Integration: rate limits and resource limits against a running cluster.

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR, base
port 32000, one gateway behind nginx) with small rate limits, and proves:

- one user sending faster than its bucket gets 429 problem+json with
  Retry-After, stores nothing for the refused sends, does not slow other
  users down, and can send again after waiting Retry-After;
- a flood of bad tokens from one address gets 401s, then 429; nginx's
  X-Real-IP cannot be forged through the load balancer, the gateway keys
  by it, and valid tokens from the flooding address still work;
- header blocks over the caps are refused (431 at the gateway, 400
  problem+json at nginx, 414 problem+json for a request line over 8 KiB);
- nginx answers what it refuses itself with problem+json: more than 64
  query parameters (which would exhaust a gateway connection's memory),
  request lines it cannot parse, an unknown HTTP version, and 503 with
  Retry-After when no gateway answers;
- slowloris: 300 connections trickling a header byte by byte to the
  gateway and 300 to the load balancer do not delay normal requests, and
  the server closes them (times are printed).

Run: python3 tests/integration/test_limits.py
"""

import math
import os
import select
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import (Api, check, check_problem, expect_status, new_user,  # noqa: E402
                     run_tests, test)

# The cluster takes ports base+80 to base+602: below 32768, where the
# kernel's ephemeral ports begin, so no client connection made during
# start-up (pg_isready, migrations) can hold a port a service must bind.
BASE_PORT = int(os.environ.get("MESSENGER_LIMITS_TEST_BASE_PORT", "32000"))
SEND_RATE, SEND_BURST = 5, 10
ANON_RATE, ANON_BURST = 5, 10
# What the cluster is configured with (README.md, Configuration, nginx.conf.tmpl).
GATEWAY_IDLE_TIMEOUT_S = 30
NGINX_HEADER_TIMEOUT_S = 10

SLOW_PER_TARGET = 300
TRICKLE_EVERY_S = 2.0
# Long enough for nginx's header timeout to fire while bytes still come.
TRICKLE_FOR_S = NGINX_HEADER_TIMEOUT_S + 6
NORMAL_LATENCY_MAX_S = 2.0

VAR = None
GATEWAY_URL = None


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, extra_env={
        "MESSENGER_GATEWAYS": "1", "MESSENGER_CACHES": "2",
        "GATEWAY_SEND_RATE": str(SEND_RATE), "GATEWAY_SEND_BURST": str(SEND_BURST),
        "GATEWAY_ANON_RATE": str(ANON_RATE), "GATEWAY_ANON_BURST": str(ANON_BURST)}, check_rc=check_rc)


def metric(base_url, name):
    r = Api({"MESSENGER_URL": base_url, "MESSENGER_JWT_SECRET": "-"}).call("GET", "/metrics",
                                                                          fresh=True)
    check(r.status == 200, "GET /metrics: %s" % r.describe())
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gateway_api(api):
    env = dict(api.env)
    env["MESSENGER_URL"] = GATEWAY_URL
    g = Api(env)
    g._tokens, g._lock = api._tokens, api._lock
    return g


def check_429(r, max_retry_s):
    expect_status(r, 429)
    check_problem(r)
    ra = r.headers.get("retry-after", "")
    check(ra.isdigit() and 1 <= int(ra) <= max_retry_s,
          "429 with Retry-After %r, expected 1..%d: %s" % (ra, max_retry_s, r.describe()))
    return int(ra)


# ------------------------------------------------------------ rate limits


@test
def test_send_rate_limit_per_user(api):
    alice, bob, carol = new_user(), new_user(), new_user()
    statuses, refused = [], []
    start = time.monotonic()
    for i in range(30):
        r = api.send(alice, bob, "burst %d" % i)
        statuses.append(r.status)
        if r.status == 429:
            refused.append(r)
        else:
            expect_status(r, 201)
    elapsed = time.monotonic() - start
    accepted = statuses.count(201)
    print("  sends: %d x 201, %d x 429 in %.2fs: %s" % (
        accepted, len(refused), elapsed, "".join("." if s == 201 else "x" for s in statuses)))
    check(statuses[:SEND_BURST] == [201] * SEND_BURST,
          "the first %d sends were not all accepted: %r" % (SEND_BURST, statuses))
    most = SEND_BURST + math.floor(SEND_RATE * elapsed) + 1
    check(accepted <= most, "%d sends accepted in %.2fs, the bucket allows %d" % (accepted, elapsed, most))
    check(refused, "no send was refused")
    # A wait of at most one token (200 ms) rounds up to one second.
    retry = max(check_429(r, math.ceil(1 / SEND_RATE)) for r in refused)
    # Another user is not affected, even through the same gateway.
    for i in range(3):
        expect_status(api.send(carol, bob, "other %d" % i), 201)
    # Refused sends stored nothing.
    cid = "%d_%d" % (min(alice, bob), max(alice, bob))
    stored = api.all_msgs(alice, cid)
    check(len(stored) == accepted, "alice has %d messages, %d were accepted" % (len(stored), accepted))
    time.sleep(retry)
    expect_status(api.send(alice, bob, "after the wait"), 201)
    check(metric(GATEWAY_URL, "gateway_send_limited_total") == len(refused),
          "gateway_send_limited_total differs from the 429s seen (%d)" % len(refused))


@test
def test_bad_tokens_from_one_address_get_429(api):
    bad = {"Authorization": "Bearer not.a.token"}
    path = "/v1/users/%d/conversations" % new_user()
    statuses = []
    start = time.monotonic()
    limited = metric(GATEWAY_URL, "gateway_anon_limited_total")
    for _ in range(40):
        r = api.call("GET", path, headers=bad)
        statuses.append(r.status)
        if r.status == 429:
            check_429(r, math.ceil(1 / ANON_RATE))
        else:
            expect_status(r, 401)
    elapsed = time.monotonic() - start
    refused = statuses.count(429)
    print("  bad tokens: %d x 401, %d x 429 in %.2fs: %s" % (
        statuses.count(401), refused, elapsed, "".join("." if s == 401 else "x" for s in statuses)))
    check(statuses[:ANON_BURST] == [401] * ANON_BURST,
          "the first %d bad tokens did not all get 401: %r" % (ANON_BURST, statuses))
    check(statuses.count(401) <= ANON_BURST + math.floor(ANON_RATE * elapsed) + 1,
          "too many 401s for the bucket: %r" % statuses)
    check(refused >= 10, "only %d of 40 got 429" % refused)
    check(metric(GATEWAY_URL, "gateway_anon_limited_total") - limited == refused,
          "gateway_anon_limited_total differs from the 429s seen (%d)" % refused)

    # nginx replaces a forged X-Real-IP: the flood's bucket still applies.
    r = api.call("GET", path, headers=dict(bad, **{"X-Real-IP": "198.51.100.7"}))
    check_429(r, 1)
    # The gateway keys by X-Real-IP from loopback (nginx): another
    # address has its own bucket.
    g = gateway_api(api)
    expect_status(g.call("GET", path, headers=dict(bad, **{"X-Real-IP": "198.51.100.8"})), 401)
    # A valid token from the flooding address is served.
    expect_status(api.convs(new_user()), 200)


@test
def test_header_blocks_over_the_caps_are_refused(api):
    g = gateway_api(api)
    head = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
            b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(70)) + b"\r\n")
    status, _, _ = e2e_lib.raw_exchange(g, head)
    check(status == 431, "gateway answered %d to a 70 KiB header block" % status)
    head = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
            b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(40)) + b"\r\n")
    status, headers, body = e2e_lib.raw_exchange(api, head)
    e2e_lib.raw_problem(status, headers, body, 400, "40 KiB header block through nginx")
    status, headers, body = e2e_lib.raw_exchange(
        api, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    e2e_lib.raw_problem(status, headers, body, 414, "9 KB request line through nginx")
    expect_status(api.call("GET", "/healthz"), 200)


@test
def test_the_edge_answers_malformed_requests_with_problems(api):
    user = new_user()
    path = "/v1/users/%d/conversations" % user

    def params(n):
        return "&".join("p%d=1" % i for i in range(n))

    # 64 parameters reach the gateway (which ignores unknown ones); 65
    # are refused by nginx before any gateway sees them.
    expect_status(api.call("GET", path + "?" + params(64), user=user), 200)
    r = api.call("GET", path + "?" + params(65), user=user)
    expect_status(r, 400)
    check("64 query parameters" in r.json["detail"], "detail: %s" % r.describe())
    # About 900 would exhaust a gateway connection's memory: the answer
    # is the same 400, and the next request, another user's, is served
    # at once (nginx did not count a failure against the gateway).
    r = api.call("GET", path + "?" + params(1000), user=user)
    expect_status(r, 400)
    other = new_user()
    expect_status(api.call("GET", "/v1/users/%d/conversations" % other, user=other), 200)

    # Request lines nginx cannot parse leave it no URI to redirect to a
    # named location; the answer is still problem+json.
    for line in (b"GET /v1/users/1%00/conversations HTTP/1.1",
                 b"GET /v1/../../etc HTTP/1.1", b"G@T /v1/messages HTTP/1.1"):
        status, headers, body = e2e_lib.raw_exchange(api, line + b"\r\nHost: x\r\n\r\n")
        e2e_lib.raw_problem(status, headers, body, 400, repr(line))
    status, headers, body = e2e_lib.raw_exchange(api, b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n")
    e2e_lib.raw_problem(status, headers, body, 505, "HTTP/9.9")
    expect_status(api.call("GET", "/healthz"), 200)

    # Methods nginx refuses itself: a 405 with the path's Allow, as a
    # gateway answers it, or 404 for a path no gateway serves.
    for method, target, allow in ((b"TRACE", b"/v1/messages", "POST"),
                                  (b"CONNECT", b"/v1/messages", "POST"),
                                  (b"TRACE", path.encode() + b"?page=1", "GET"),
                                  (b"TRACE", b"/healthz", "GET")):
        status, headers, body = e2e_lib.raw_exchange(
            api, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        e2e_lib.raw_problem(status, headers, body, 405, repr((method, target)))
        check(headers.get("allow") == allow, "%r: Allow %r" % ((method, target), headers))
    status, headers, body = e2e_lib.raw_exchange(api, b"TRACE /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    e2e_lib.raw_problem(status, headers, body, 404, "TRACE /nowhere")
    # A transfer coding other than chunked.
    for te in (b"gzip", b"gzip, chunked"):
        status, headers, body = e2e_lib.raw_exchange(
            api, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
            b"\r\n\r\n0\r\n\r\n")
        e2e_lib.raw_problem(status, headers, body, 501, repr(te))


@test
def test_no_gateway_answers_503_with_retry_after(api):
    cluster(VAR, "kill", "gateway-1")
    try:
        r = api.call("GET", "/healthz", fresh=True)
        expect_status(r, 503)
        check(r.headers.get("retry-after") == "1", "Retry-After: %s" % r.describe())
    finally:
        cluster(VAR, "restart", "gateway-1")
    # nginx tries the gateway again once fail_timeout (2 s) has passed.
    deadline = time.monotonic() + 15
    while api.call("GET", "/healthz", fresh=True).status != 200:
        check(time.monotonic() < deadline, "the gateway did not come back behind nginx")
        time.sleep(0.2)


# --------------------------------------------------------------- slowloris


class SlowClient:
    """A connection that sends a request header one byte at a time and
    never finishes it."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: "

    def __init__(self, target, port):
        self.target = target
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.sent = 0
        self.last_byte = self.opened
        self.closed_at = None

    def next_byte(self):
        if self.sent < len(self.HEAD):
            return self.HEAD[self.sent:self.sent + 1]
        return b"a"

    def trickle(self):
        if self.closed_at is not None:
            return
        try:
            if self.sock.send(self.next_byte()) == 1:
                self.sent += 1
                self.last_byte = time.monotonic()
        except BlockingIOError:
            pass
        except OSError:
            self.mark_closed()

    def poll_closed(self):
        """Reads what the server sent; a close (or a reset) marks it."""
        if self.closed_at is not None:
            return
        try:
            data = self.sock.recv(4096)
            if not data:
                self.mark_closed()
        except BlockingIOError:
            pass
        except OSError:
            self.mark_closed()

    def mark_closed(self):
        self.closed_at = time.monotonic()

    def close(self):
        self.sock.close()


def watch(clients, until):
    """Polls the sockets for closes until the monotonic time until."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        live = {c.sock.fileno(): c for c in clients if c.closed_at is None}
        if not live:
            time.sleep(min(left, 0.2))
            continue
        poller = select.poll()
        for fd in live:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        for fd, _ in poller.poll(min(left, 0.2) * 1000):
            live[fd].poll_closed()


def timed_requests(api_, user, n):
    """n requests on fresh connections; returns the slowest time."""
    worst = 0.0
    for _ in range(n):
        r = api_.call("GET", "/v1/users/%d/conversations" % user, user=user, fresh=True)
        expect_status(r, 200)
        worst = max(worst, r.elapsed)
    return worst


def summary(times):
    times = sorted(times)
    if not times:
        return "none"
    return "min %.1fs, median %.1fs, max %.1fs" % (times[0], times[len(times) // 2], times[-1])


@test
def test_slow_clients_do_not_starve_others(api):
    gw_port = int(GATEWAY_URL.rsplit(":", 1)[1])
    lb_port = int(api.url.rsplit(":", 1)[1])
    g = gateway_api(api)
    user = new_user()
    clients = []
    try:
        for _ in range(SLOW_PER_TARGET):
            clients.append(SlowClient("gateway", gw_port))
            clients.append(SlowClient("lb", lb_port))
        start = time.monotonic()
        worst_lb = worst_gw = 0.0
        normal_done = False
        trickle_end = start + TRICKLE_FOR_S
        next_round = start
        while time.monotonic() < trickle_end:
            if time.monotonic() >= next_round:
                for c in clients:
                    c.trickle()
                next_round += TRICKLE_EVERY_S
            if not normal_done and time.monotonic() > start + 2 * TRICKLE_EVERY_S:
                open_now = sum(1 for c in clients if c.closed_at is None)
                worst_lb = timed_requests(api, user, 10)
                worst_gw = timed_requests(g, user, 10)
                normal_done = True
                print("  with %d slow connections open: normal request worst %.3fs via nginx, "
                      "%.3fs direct to the gateway" % (open_now, worst_lb, worst_gw))
            watch(clients, min(next_round, trickle_end))
        check(normal_done, "the normal requests never ran")
        check(worst_lb < NORMAL_LATENCY_MAX_S and worst_gw < NORMAL_LATENCY_MAX_S,
              "normal requests took %.2fs (nginx) / %.2fs (gateway) while slow clients were open"
              % (worst_lb, worst_gw))

        # Trickling stops: what is still open is idle from now on.
        lb = [c for c in clients if c.target == "lb"]
        gw = [c for c in clients if c.target == "gateway"]
        deadline = max(c.last_byte for c in gw) + GATEWAY_IDLE_TIMEOUT_S + 10
        watch(clients, deadline)

        lb_after_open = [c.closed_at - c.opened for c in lb if c.closed_at is not None]
        gw_after_open = [c.closed_at - c.opened for c in gw if c.closed_at is not None]
        gw_after_last = [c.closed_at - c.last_byte for c in gw if c.closed_at is not None]
        gw_while_trickling = sum(1 for c in gw if c.closed_at is not None and c.closed_at < trickle_end)
        print("  nginx closed %d/%d slow connections, %s after they opened (while still trickling)"
              % (len(lb_after_open), len(lb), summary(lb_after_open)))
        print("  gateway closed %d/%d slow connections, %s after they opened, %s after their last "
              "byte; %d while they were still trickling"
              % (len(gw_after_open), len(gw), summary(gw_after_open), summary(gw_after_last),
                 gw_while_trickling))
        check(len(lb_after_open) == len(lb), "nginx left %d slow connections open"
              % (len(lb) - len(lb_after_open)))
        check(max(lb_after_open) <= NGINX_HEADER_TIMEOUT_S + 3,
              "nginx took %.1fs to drop a trickling header" % max(lb_after_open))
        check(len(gw_after_open) == len(gw), "the gateway left %d slow connections open"
              % (len(gw) - len(gw_after_open)))
        check(max(gw_after_last) <= GATEWAY_IDLE_TIMEOUT_S + 5,
              "the gateway took %.1fs after the last byte to drop an idle connection"
              % max(gw_after_last))
        # Still serving afterwards.
        check(timed_requests(api, user, 3) < NORMAL_LATENCY_MAX_S, "slow after the slowloris")
    finally:
        for c in clients:
            c.close()


def setup(var, env):
    global VAR, GATEWAY_URL
    VAR = var
    GATEWAY_URL = env["GATEWAY_URLS"].split(",")[0]


def main():
    e2e_lib.run_with_own_cluster("messenger-limits-test.", cluster, setup)


if __name__ == "__main__":
    main()
