#!/usr/bin/env python3
"""Benchmark of the long poll GET /v1/users/{id}/events (docs/realtime.md).

Starts its own release cluster (scripts/cluster, temporary MESSENGER_VAR,
base port BENCH_EVENTS_BASE_PORT, default 27000) in its usual layout
(each gateway and cache node with a long-poll listener of 2 epoll
threads) and a raised connection limit, then:

1. opens BENCH_EVENTS_CLIENTS (default 5000) connections to ONE gateway's
   long-poll listener, each a different user waiting on its events poll
   (timeout 60 s), checks that all of them are held (none answered after
   a pause), and counts the threads of that gateway and of the cache
   nodes while they wait;
2. sends BENCH_EVENTS_SENDS messages (default 300, paced) through the
   other gateway, each to a random waiting user, and measures for each
   the delay from the send's 201 to the recipient's wake-up (its poll's
   answer arriving, carrying that message), then re-arms that poll;
3. prints the held count, p50/p99/max of the delay and writes JSON to
   build/bench/events.json.

Bounded in count and time (BENCH_EVENTS_SECONDS, default 120, for the
whole run); stops the cluster whatever happens. Python standard library
only: one selectors loop holds every waiting connection.

Run: python3 bench/events.py   (after make MODE=release build)
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = int(os.environ.get("BENCH_EVENTS_CLIENTS", "5000"))
SENDS = int(os.environ.get("BENCH_EVENTS_SENDS", "300"))
SEND_RATE = float(os.environ.get("BENCH_EVENTS_SEND_RATE", "50"))  # sends/s
DEADLINE_S = float(os.environ.get("BENCH_EVENTS_SECONDS", "120"))
BASE_PORT = int(os.environ.get("BENCH_EVENTS_BASE_PORT", "27000"))
POLL_TIMEOUT_S = 60
HOLD_CHECK_S = 3.0
USER_BASE = 8_000_000_000 + random.randrange(0, 1_000_000) * 10_000
OUT = os.path.join(ROOT, "build", "bench", "events.json")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, user):
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": str(user), "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(secret.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64url(sig)


def first_token(user):
    """The conversation-list token of a new (empty) mailbox: change
    counter 0 (common/synctoken.h). Building it saves a read per user."""
    return b64url(("v1|c|%d|0" % user).encode())


def cluster(var, *args, check=True):
    env = dict(os.environ, MESSENGER_VAR=var, MESSENGER_BASE_PORT=str(BASE_PORT),
               MESSENGER_MAX_CONNECTIONS="30000", MESSENGER_BUILD="build/release",
               GATEWAY_SEND_RATE="100000", GATEWAY_SEND_BURST="100000")
    env.pop("MESSENGER_JWT_SECRET", None)
    env.pop("MESSENGER_INTERNAL_SECRET", None)
    r = subprocess.run([os.path.join(ROOT, "scripts", "cluster")] + list(args), env=env,
                       cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=180)
    if check and r.returncode != 0:
        sys.exit("scripts/cluster %s failed:\n%s" % (" ".join(args), r.stdout.decode()[-3000:]))


def read_env(var):
    env = {}
    with open(os.path.join(var, "cluster.env"), encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v.strip("'\"")
    return env


class Waiter:
    """One waiting client: a keep-alive connection and its user's poll."""

    def __init__(self, user, token):
        self.user = user
        self.token = token
        self.since = first_token(user)
        self.sock = None
        self.buf = b""
        self.waiting = False

    def request(self):
        return ("GET /v1/users/%d/events?since=%s&timeout=%d HTTP/1.1\r\n"
                "Host: bench\r\nAuthorization: Bearer %s\r\n\r\n"
                % (self.user, self.since, POLL_TIMEOUT_S, self.token)).encode()

    def take_response(self):
        """A whole response from buf, or None. Returns (status, body)."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if len(self.buf) < end + 4 + length:
            return None
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        return int(head[0].split()[1]), body


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if CLIENTS + 100 > hard:
        sys.exit("descriptor limit %d is below %d clients" % (hard, CLIENTS))
    started = time.monotonic()
    deadline = started + DEADLINE_S
    var = tempfile.mkdtemp(suffix=".messenger-bench-events")
    try:
        cluster(var, "start")
        env = read_env(var)
        run(env, deadline, started)
    finally:
        cluster(var, "clean", check=False)


def connect_all(waiters, host, port, sel, deadline):
    for i, w in enumerate(waiters):
        if time.monotonic() > deadline:
            sys.exit("deadline passed while connecting (%d connected)" % i)
        w.sock = socket.create_connection((host, port), timeout=10)
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        w.sock.sendall(w.request())
        w.sock.setblocking(False)
        w.waiting = True
        sel.register(w.sock, selectors.EVENT_READ, w)
        if i % 250 == 249:
            time.sleep(0.05)  # stay under the listen backlog


def thread_count(var, name):
    """Threads of the cluster's process NAME (its pid file)."""
    with open(os.path.join(var, "pid", name + ".pid"), encoding="utf-8") as f:
        pid = int(f.read().split()[0])
    return len(os.listdir("/proc/%d/task" % pid))


def run(env, deadline, started):
    gateways = env["GATEWAY_URLS"].split(",")
    host, port = env["GATEWAY_EVENTS_URLS"].split(",")[0].split("//")[1].split(":")
    send_url = gateways[-1].split("//")[1]
    secret = env["MESSENGER_JWT_SECRET"]
    waiters = [Waiter(USER_BASE + i, mint(secret, USER_BASE + i)) for i in range(CLIENTS)]
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    connect_all(waiters, host, int(port), sel, deadline)
    print("opened %d waiting polls on one gateway in %.1f s" % (CLIENTS, time.monotonic() - t0))

    early = []
    wake_at = {}  # user -> (monotonic time, body) of the latest answer
    lock = threading.Lock()

    def pump(until):
        while time.monotonic() < until:
            for key, _ in sel.select(timeout=0.05):
                w = key.data
                try:
                    data = w.sock.recv(65536)
                except BlockingIOError:
                    continue
                now = time.monotonic()
                if not data:
                    sys.exit("the gateway closed the poll of user %d" % w.user)
                w.buf += data
                resp = w.take_response()
                if resp is None:
                    continue
                status, body = resp
                if status != 200:
                    sys.exit("poll of user %d answered %d: %s" % (w.user, status, body[:200]))
                answer = json.loads(body)
                with lock:
                    wake_at[w.user] = (now, answer)
                    if not sending.is_set():
                        early.append(w.user)
                w.since = answer["sync_token"]
                w.sock.send(w.request())  # re-arm at once

    sending = threading.Event()
    pump(time.monotonic() + HOLD_CHECK_S)
    held = CLIENTS - len(early)
    print("held %d of %d polls waiting after %.0f s (%d answered early)"
          % (held, CLIENTS, HOLD_CHECK_S, len(early)))
    if early:
        sys.exit("polls answered without any change: %s" % early[:5])
    threads = {name: thread_count(env["MESSENGER_VAR"], name)
               for name in ("gateway-1", "cache-1", "cache-2", "cache-3")}
    print("threads while %d polls wait: %s" % (held, threads))

    # Sends run in a thread; this one keeps pumping the waiting sockets.
    delays, send_ms = [], []
    sender = USER_BASE + CLIENTS + 1
    sender_token = mint(secret, sender)
    targets = random.sample(waiters, min(SENDS, CLIENTS))
    results = []

    def do_sends():
        conn = http.client.HTTPConnection(send_url, timeout=10)
        for i, w in enumerate(targets):
            if time.monotonic() > deadline - 10:
                break
            body = json.dumps({"sender_id": sender, "recipient_id": w.user,
                               "content": "bench %d" % i, "client_message_id": "ev-%d" % i})
            t_start = time.monotonic()
            conn.request("POST", "/v1/messages", body=body,
                         headers={"Authorization": "Bearer " + sender_token,
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            t_201 = time.monotonic()
            if r.status != 201:
                results.append(("error", r.status, data[:200]))
                continue
            results.append((w.user, json.loads(data)["message_id"], t_start, t_201))
            time.sleep(max(0.0, 1.0 / SEND_RATE - (time.monotonic() - t_start)))
        sending.clear()

    sending.set()
    th = threading.Thread(target=do_sends)
    th.start()
    while th.is_alive():
        pump(time.monotonic() + 0.2)
    pump(time.monotonic() + 2.0)  # the last wake-ups
    th.join()

    errors = [r for r in results if r[0] == "error"]
    missed = 0
    for user, mid, t_start, t_201 in (r for r in results if r[0] != "error"):
        got = wake_at.get(user)
        if not got or not any(m["message_id"] == mid for m in got[1].get("messages", [])):
            missed += 1
            continue
        delays.append((got[0] - t_201) * 1000.0)
        send_ms.append((t_201 - t_start) * 1000.0)
    still = sum(1 for w in waiters if w.sock is not None)
    for w in waiters:
        w.sock.close()
    report = {
        "waiting_clients": CLIENTS,
        "held": held,
        "threads_while_waiting": threads,
        "sends": len(results),
        "send_errors": len(errors),
        "wakeups_missed": missed,
        "wake_after_201_ms": {"p50": percentile(delays, 50), "p99": percentile(delays, 99),
                              "max": max(delays) if delays else None,
                              "min": min(delays) if delays else None},
        "send_ms": {"p50": percentile(send_ms, 50), "p99": percentile(send_ms, 99)},
        "open_connections_at_end": still,
        "seconds": time.monotonic() - started,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print("sends %d (errors %d), wake-ups missed %d" % (len(results), len(errors), missed))
    print("wake-up after the send's 201: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
          "(negative: the recipient woke before the sender read its 201)"
          % (report["wake_after_201_ms"]["p50"], report["wake_after_201_ms"]["p99"],
             report["wake_after_201_ms"]["max"] or 0))
    print("send latency: p50 %.2f ms, p99 %.2f ms" % (report["send_ms"]["p50"],
                                                      report["send_ms"]["p99"]))
    print("JSON: %s" % OUT)
    if errors or missed or held < CLIENTS:
        sys.exit(1)


if __name__ == "__main__":
    main()
