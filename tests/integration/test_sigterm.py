#!/usr/bin/env python3
"""Integration: SIGTERM under load drains a service instead of dropping
requests (README.md, Operations; common/http_server.c, hs_stop).

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR,
MESSENGER_BASE_PORT=22000 unless MESSENGER_SIGTERM_TEST_BASE_PORT says
otherwise). For a gateway, and then for a cache node, it runs the
service itself (the same binary and variables as scripts/cluster, so
that it is this test's child and its exit status can be read), puts it
under a load of concurrent requests sent straight at it, each on a new
connection with its own X-Request-Id, sends SIGTERM in the middle and
proves:

- the process exits with status 0 within the grace period (its
  sanitizer build also checks for leaks at that exit);
- every request whose connection was accepted got a complete answer
  with the expected status: no resets, no truncated replies, none lost;
- requests were in flight when the signal came, and they were answered
  (the drain was exercised, not avoided);
- connections tried after the listener closed were refused (at once, or
  a second later for a SYN the drain's fence dropped); they are counted
  apart, as the clients of a load balancer would retry them elsewhere.

The gateway is an extra one on its own port (base+190); the cache node
takes the place of the cluster's cache-3 (same name, port and Redis),
whose own process is killed first. Every process is stopped by PID and
the cluster is removed at the end, on failure too. Python standard
library only.

Run: python3 tests/integration/test_sigterm.py
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, fail, mint, new_cmid, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_SIGTERM_TEST_BASE_PORT", "22000"))
BUILD = os.environ.get("MESSENGER_BUILD", os.path.join(ROOT, "build", "asan"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
EXTRA_GATEWAY_PORT = BASE_PORT + 190
CACHE_INDEX = 3
# Load: this many client threads, each sending one request at a time on
# a new connection, for at most LOAD_MAX_S and LOAD_MAX_PER_THREAD
# requests; SIGTERM goes LOAD_BEFORE_SIGTERM_S into it.
CLIENTS = 12
LOAD_MAX_S = 20
LOAD_MAX_PER_THREAD = 3000
LOAD_BEFORE_SIGTERM_S = 1.5
# Load goes on this long after the process exited, to see refusals.
LOAD_AFTER_EXIT_S = 0.3
# SHUTDOWN_GRACE_MS (10 s) plus the sanitizer's exit work.
EXIT_WAIT_S = 20
START_WAIT_S = 30
REQUEST_TIMEOUT_S = 30

VAR = None
ENV = None


def cluster(var, *args, check_rc=True):
    # The cache test swaps the cluster's cache-3 for its own process: a
    # long dead timeout keeps the router from failing it over meanwhile.
    return e2e_lib.run_cluster(var, BASE_PORT, *args, check_rc=check_rc,
                               extra_env={"ROUTER_DEAD_MS": "120000"})


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/")[0])


class Service:
    """A service binary run as this test's child, logging to a file."""

    def __init__(self, name, program, env, port):
        self.name, self.port = name, port
        self.log_path = os.path.join(VAR, "log", "sigterm-%s.log" % name)
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith(("MESSENGER_", "GATEWAY_", "CACHE_", "ROUTER_", "STORAGE_", "REDIS_")):
                del full_env[k]
        full_env.update(env)
        self.proc = subprocess.Popen([os.path.join(BUILD, "bin", program)], env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self):
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "%s exited at start: %s" % (self.name, self.tail()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.port, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        fail("%s not ready in %d s: %s" % (self.name, START_WAIT_S, self.tail()))

    def tail(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-1500:].decode("utf-8", "replace")

    def stop(self):
        """Kills the process if it still runs (a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Outcome:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.refused = 0
        self.failed = []           # (request id, what happened)
        self.bad_status = []       # (request id, status, body excerpt)
        self.spanning = 0          # began before SIGTERM, answered after it


def one_request(port, method, path, body, headers, sigterm_at, out, ok_statuses):
    rid = "sigterm-%016x" % new_user()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    began = time.monotonic()
    try:
        conn.connect()
    except ConnectionRefusedError:
        with out.lock:
            out.refused += 1
        return
    except OSError as e:
        with out.lock:
            out.failed.append((rid, "connect: %s: %s" % (type(e).__name__, e)))
        return
    try:
        hdrs = dict(headers)
        hdrs["X-Request-Id"] = rid
        hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        done = time.monotonic()
        with out.lock:
            if r.status in ok_statuses:
                out.ok += 1
                if sigterm_at[0] is not None and began < sigterm_at[0] < done:
                    out.spanning += 1
            else:
                out.bad_status.append((rid, r.status, data[:200]))
    except (OSError, http.client.HTTPException) as e:
        with out.lock:
            out.failed.append((rid, "%s: %s" % (type(e).__name__, e)))
    finally:
        conn.close()


def run_load(service, make_request, ok_statuses):
    """Loads service from CLIENTS threads, SIGTERMs it, waits for its exit;
    returns (Outcome, exit status, seconds from SIGTERM to exit)."""
    out = Outcome()
    sigterm_at = [None]
    stop = threading.Event()
    started = time.monotonic()

    def client(k):
        for i in range(LOAD_MAX_PER_THREAD):
            if stop.is_set() or time.monotonic() - started > LOAD_MAX_S:
                return
            method, path, body, headers = make_request(k, i)
            one_request(service.port, method, path, body, headers, sigterm_at, out, ok_statuses)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    rc = None
    exit_s = None
    try:
        time.sleep(LOAD_BEFORE_SIGTERM_S)
        check(service.proc.poll() is None, "%s died under load: %s" % (service.name, service.tail()))
        sigterm_at[0] = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        try:
            rc = service.proc.wait(EXIT_WAIT_S)
            exit_s = time.monotonic() - sigterm_at[0]
        except subprocess.TimeoutExpired:
            pass
        time.sleep(LOAD_AFTER_EXIT_S)
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + 5)
    return out, rc, exit_s


def check_outcome(service, out, rc, exit_s):
    summary = "%s: %d answered, %d in flight across SIGTERM, %d refused after close, " \
              "%d failed, %d unexpected status; exit %r after %s s" % (
                  service.name, out.ok, out.spanning, out.refused, len(out.failed),
                  len(out.bad_status), rc, "%.2f" % exit_s if exit_s is not None else "-")
    print(summary)
    check(rc is not None, "%s did not exit within %d s of SIGTERM" % (service.name, EXIT_WAIT_S))
    check(rc == 0, "%s exited with %r: %s" % (service.name, rc, service.tail()))
    check(not out.failed, "accepted requests failed (%s): %r" % (summary, out.failed[:5]))
    check(not out.bad_status, "accepted requests answered wrongly (%s): %r" % (summary, out.bad_status[:5]))
    check(out.ok > 0 and out.spanning > 0,
          "no request was in flight when SIGTERM came, the drain was not exercised (%s)" % summary)
    check(out.refused > 0, "no connection was refused after the listener closed (%s)" % summary)
    with open(service.log_path, encoding="utf-8", errors="replace") as f:
        drains = [json.loads(line) for line in f if '"msg":"draining"' in line]
    check(len(drains) == 1, "%s did not log its drain once: %r" % (service.name, drains))
    print("%s drain: %s" % (service.name, json.dumps(drains[0])))


def owner_index(user, epoch, secret):
    """1-based index of the cache node owning user at epoch."""
    caches = [u for u in ENV["CACHE_URLS"].split(",") if u]
    return e2e_lib.owner_index(secret, caches, user, epoch) + 1


def signed_send(secret, port, epoch, sender):
    body = json.dumps({"sender_id": sender, "recipient_id": new_user(), "content": "probe",
                       "client_message_id": new_cmid()})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("POST", "/internal/send", body=body, headers={
            "Content-Type": "application/json", "X-Ring-Epoch": str(epoch),
            e2e_lib.INTERNAL_AUTH_HEADER: e2e_lib.internal_auth(secret, "POST", "/internal/send", body)})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def serving_senders(secret, port):
    """(epoch, 64 users) once the node on port owns them at the ring's
    epoch and takes a send: after the swap the router may have moved its
    users (a failover) and the node may still be getting its lease."""
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        epoch = ring_epoch(secret)
        senders = []
        for _ in range(3000):
            u = new_user()
            if owner_index(u, epoch, secret) == CACHE_INDEX:
                senders.append(u)
                if len(senders) == 64:
                    break
        if len(senders) == 64 and signed_send(secret, port, epoch, senders[0]) == 201:
            return epoch, senders
        time.sleep(0.5)
    fail("cache-%d did not take sends for its users within %d s" % (CACHE_INDEX, START_WAIT_S))


def ring_epoch(secret):
    target = "/internal/ring"
    req = urllib.request.Request(ENV["ROUTER_URL"] + target, headers={
        e2e_lib.INTERNAL_AUTH_HEADER: e2e_lib.internal_auth(secret, "GET", target)})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["epoch"]


@test
def test_gateway_drains_on_sigterm_under_load(api):
    jwt_secret = ENV["MESSENGER_JWT_SECRET"]
    gw = Service("gateway", "gateway", {
        "MESSENGER_BIND": "127.0.0.1",
        "GATEWAY_PORT": str(EXTRA_GATEWAY_PORT),
        "ROUTER_URL": ENV.get("ROUTER_URLS", ENV["ROUTER_URL"]),
        "MESSENGER_JWT_SECRET": jwt_secret,
        "MESSENGER_INTERNAL_SECRET": ENV["MESSENGER_INTERNAL_SECRET"],
    }, EXTRA_GATEWAY_PORT)
    try:
        gw.wait_ready()

        def send(k, i):
            a, b = new_user(), new_user()
            body = json.dumps({"sender_id": a, "recipient_id": b, "content": "drain %d-%d" % (k, i),
                               "client_message_id": new_cmid()})
            return "POST", "/v1/messages", body, {"Authorization": "Bearer " + mint(jwt_secret, a)}

        out, rc, exit_s = run_load(gw, send, (201,))
        check_outcome(gw, out, rc, exit_s)
    finally:
        gw.stop()


@test
def test_cache_node_drains_on_sigterm_under_load(api):
    secret = ENV["MESSENGER_INTERNAL_SECRET"]
    cache_url = ENV["CACHE_URLS"].split(",")[CACHE_INDEX - 1]
    port = port_of(cache_url)
    redis_port = int(ENV["REDIS_PORTS"].split(",")[CACHE_INDEX - 1])
    # The cluster's own cache-3 goes; this test's takes its place.
    cluster(VAR, "kill", "cache-%d" % CACHE_INDEX)
    node = Service("cache-%d" % CACHE_INDEX, "cache", {
        "MESSENGER_BIND": "127.0.0.1",
        "CACHE_NAME": "cache-%d" % CACHE_INDEX,
        "CACHE_NODE_ID": str(CACHE_INDEX),
        "CACHE_PORT": str(port),
        "CACHE_URL": cache_url,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "ROUTER_URL": ENV.get("ROUTER_URLS", ENV["ROUTER_URL"]),
        "STORAGE_URL": ENV["STORAGE_URL"],
        "MESSENGER_INTERNAL_SECRET": secret,
    }, port)
    try:
        node.wait_ready()
        epoch, senders = serving_senders(secret, port)

        def send(k, i):
            a = senders[(k * 7 + i) % len(senders)]
            body = json.dumps({"sender_id": a, "recipient_id": new_user(),
                               "content": "drain %d-%d" % (k, i), "client_message_id": new_cmid()})
            auth = e2e_lib.internal_auth(secret, "POST", "/internal/send", body)
            return "POST", "/internal/send", body, {
                "X-Ring-Epoch": str(epoch), e2e_lib.INTERNAL_AUTH_HEADER: auth}

        out, rc, exit_s = run_load(node, send, (201,))
        check_outcome(node, out, rc, exit_s)
    finally:
        node.stop()


def setup(var, env):
    global VAR, ENV
    VAR, ENV = var, env


def main():
    e2e_lib.run_with_own_cluster("messenger-sigterm-test.", cluster, setup)


if __name__ == "__main__":
    main()
