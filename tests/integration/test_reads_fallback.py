#!/usr/bin/env python3
"""Integration: a gateway's batched list reads against cache nodes that
do not answer a batch as a whole (docs/internal-api.md, "Batched reads").

Runs one gateway (MESSENGER_BUILD, the sanitizer build by default)
against a stand-in router and a stand-in cache node written here
(http.server on loopback, base port MESSENGER_READS_TEST_BASE_PORT,
26500 by default). The stand-in node holds the first list read of each
round for a while, so the reads that follow pile up behind it in the
gateway's lane and go as one POST /internal/reads, and it answers each
read with a body naming its user. It proves, with 24 readers of distinct
users at once:

- a node without the batch route (404, as a node older than it answers)
  still serves every read: each read of a refused batch goes again
  alone, and every client gets the body of its own user;
- a node that answers only the first read of each batch (as when its
  answer budget ran out): the others go again alone, with the same
  result;
- a node that answers batches whole: every read of them is answered from
  the batch, none sent twice;
- reads behind a call that takes long do not wait for it: with the
  first read held 3 s, the others are answered well before it.

Every process it starts is stopped by PID, on failure too. Python
standard library only.

Run: python3 tests/integration/test_reads_fallback.py
"""

import concurrent.futures
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from e2e_lib import TestFailure, check, mint, start_binary, stop_binary  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_READS_TEST_BASE_PORT", "26500"))
BUILD = os.environ.get("MESSENGER_BUILD", os.path.join(ROOT, "build", "asan"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
ROUTER_PORT, NODE_PORT, GATEWAY_PORT = BASE_PORT + 1, BASE_PORT + 2, BASE_PORT + 3
JWT_SECRET = "reads-fallback-jwt-secret-0123456789abcdef"
INTERNAL_SECRET = "reads-fallback-internal-secret-0123456789ab"
READERS = 24
FIRST_USER = 7100000000000000
START_WAIT_S = 20
LIST_PATH = re.compile(r"^/internal/users/(\d+)/conversations\?(.*)$")


class Node:
    """What the stand-in cache node does and what it saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "whole"  # whole | refuse | first-only
        self.hold_first_s = 0.3
        self.held = False
        self.gets = []  # user of every GET
        self.batches = []  # users of every POST /internal/reads

    def reset(self, mode, hold_first_s):
        with self.lock:
            self.mode, self.hold_first_s, self.held = mode, hold_first_s, False
            self.gets, self.batches = [], []

    def hold(self):
        """How long to hold this GET: the first of a round only."""
        with self.lock:
            if self.held:
                return 0
            self.held = True
            return self.hold_first_s


NODE = Node()


def body_for(user):
    return json.dumps({"conversations": [], "has_more": False, "sync_token": "t%s" % user},
                      separators=(",", ":")).encode()


def wire(answers):
    """The batch answer as a node writes it (common/reads_wire.h)."""
    parts = [b'{"status":%d,"length":%d,"body":%s}' % (s, len(b), b) for s, b in answers]
    return b'{"answers":[' + b",".join(parts) + b"]}"


class NodeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        m = LIST_PATH.match(self.path)
        if not m:
            self.reply(404, b'{"status":404}', "application/problem+json")
            return
        user = m.group(1)
        with NODE.lock:
            NODE.gets.append(user)
        time.sleep(NODE.hold())
        self.reply(200, body_for(user))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        reads = json.loads(self.rfile.read(length))["reads"]
        users = [r["user"] for r in reads]
        with NODE.lock:
            NODE.batches.append(users)
            mode = NODE.mode
        if self.path != "/internal/reads" or mode == "refuse":
            self.reply(404, b'{"type":"about:blank","title":"Not Found","status":404}',
                       "application/problem+json")
            return
        if mode == "first-only":
            users = users[:1]
        self.reply(200, wire([(200, body_for(u)) for u in users]))


class RouterHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        ring = {"epoch": 1, "vnodes": 16,
                "nodes": [{"name": "cache-1", "url": "http://127.0.0.1:%d" % NODE_PORT}]}
        body = json.dumps(ring).encode()
        self.send_response(200 if self.path.startswith("/internal/ring") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler, port):
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_gateway():
    env = {"MESSENGER_BIND": "127.0.0.1", "GATEWAY_PORT": str(GATEWAY_PORT),
           "ROUTER_URL": "http://127.0.0.1:%d" % ROUTER_PORT,
           "MESSENGER_JWT_SECRET": JWT_SECRET, "MESSENGER_INTERNAL_SECRET": INTERNAL_SECRET,
           "GATEWAY_HTTP_THREADS": "1"}
    proc, log = start_binary(BUILD, "gateway", env, "detect_leaks=1:abort_on_error=1")
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestFailure("the gateway exited: %s" % stop_binary(proc, log)[-3000:])
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % GATEWAY_PORT,
                                        timeout=2) as r:
                if r.status == 200:
                    return proc, log
        except OSError:
            pass
        time.sleep(0.1)
    stop_binary(proc, log)
    raise TestFailure("the gateway did not serve in %d s" % START_WAIT_S)


def read_as(user):
    """One public list read of user's own mailbox: (status, body, seconds)."""
    req = urllib.request.Request(
        "http://127.0.0.1:%d/v1/users/%d/conversations?page_size=20" % (GATEWAY_PORT, user),
        headers={"Authorization": "Bearer " + mint(JWT_SECRET, user)})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), time.monotonic() - start
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - start


def round_of_reads(mode, hold_first_s):
    """READERS reads at once, the first sent a little ahead so that it is
    the one the node holds; returns {user: (status, body, seconds)}."""
    NODE.reset(mode, hold_first_s)
    users = [FIRST_USER + i for i in range(READERS)]
    with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
        first = pool.submit(read_as, users[0])
        time.sleep(0.1)
        rest = {u: pool.submit(read_as, u) for u in users[1:]}
        results = {u: f.result() for u, f in rest.items()}
        results[users[0]] = first.result()
    for u, (status, body, _) in results.items():
        check(status == 200 and body == body_for(str(u)),
              "%s, user %d: %d %r" % (mode, u, status, body[:200]))
    with NODE.lock:
        batched = [u for b in NODE.batches for u in b]
        gets = list(NODE.gets)
    check(batched, "%s: no read went in a batch (GETs: %d)" % (mode, len(gets)))
    return results, batched, gets


def test_a_node_without_the_route_serves_every_read_alone():
    _, batched, gets = round_of_reads("refuse", 0.3)
    missing = set(batched) - set(gets)
    check(not missing, "reads of refused batches never sent alone: %s" % sorted(missing))
    check(len(gets) == READERS, "%d GETs for %d reads" % (len(gets), READERS))


def test_reads_a_batch_left_out_go_alone():
    _, batched, gets = round_of_reads("first-only", 0.3)
    with NODE.lock:
        firsts = [b[0] for b in NODE.batches]
        left = [u for b in NODE.batches for u in b[1:]]
    check(not set(firsts) & set(gets), "a read answered in its batch was sent again alone")
    check(set(left) <= set(gets), "reads left out of a batch never sent alone")
    check(len(gets) + len(firsts) == READERS,
          "%d GETs and %d answered in batches for %d reads" % (len(gets), len(firsts), READERS))


def test_a_whole_batch_answers_each_read_once():
    _, batched, gets = round_of_reads("whole", 0.3)
    check(not set(batched) & set(gets), "a read answered in a batch was also sent alone")
    check(len(batched) + len(gets) == READERS and len(set(batched + gets)) == READERS,
          "%d in batches, %d alone, for %d reads" % (len(batched), len(gets), READERS))


def test_reads_do_not_wait_for_a_slow_call():
    hold = 3.0
    results, _, _ = round_of_reads("whole", hold)
    first = results[FIRST_USER][2]
    others = sorted(r[2] for u, r in results.items() if u != FIRST_USER)
    check(first >= hold, "the held read took %.2f s" % first)
    check(others[-1] < hold / 2,
          "reads behind the held one took up to %.2f s (held %.1f s)" % (others[-1], hold))
    print("  held read %.2f s; the others at most %.3f s" % (first, others[-1]))


TESTS = [test_a_node_without_the_route_serves_every_read_alone,
         test_reads_a_batch_left_out_go_alone, test_a_whole_batch_answers_each_read_once,
         test_reads_do_not_wait_for_a_slow_call]


def main():
    servers = [serve(RouterHandler, ROUTER_PORT), serve(NodeHandler, NODE_PORT)]
    passed = failed = 0
    proc = log = None
    try:
        proc, log = start_gateway()
        for t in TESTS:
            start = time.monotonic()
            try:
                t()
                passed += 1
                print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - start))
            except TestFailure as e:
                failed += 1
                print("FAIL %s: %s" % (t.__name__, e))
            sys.stdout.flush()
    except TestFailure as e:
        failed += 1
        print("FAIL setup: %s" % e)
    finally:
        if proc is not None:
            out = stop_binary(proc, log)
            if proc.returncode != 0:
                failed += 1
                print("FAIL the gateway exited %s on SIGTERM:\n%s" % (proc.returncode,
                                                                     out[-3000:]))
        for s in servers:
            s.shutdown()
            s.server_close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
