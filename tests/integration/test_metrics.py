#!/usr/bin/env python3
"""Integration: every service's /metrics is valid Prometheus text and its
series move with traffic (README.md, Operations; docs/operations.md).

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR,
MESSENGER_BASE_PORT=21000 unless MESSENGER_METRICS_TEST_BASE_PORT says
otherwise), sends traffic through the load balancer and proves:

- the /metrics of every gateway, cache node, the router and storage
  passes `promtool check metrics` (the Prometheus project's own linter)
  and is served as text/plain; version=0.0.4;
- request counters by route and status and the latency histograms moved
  by exactly the requests sent, on the gateways and on storage;
- dependency call latency moved: gateway -> cache, cache -> storage,
  cache -> redis, storage -> postgres;
- cache hits and misses, the writes to storage and the calls that
  carried them, the pools (PostgreSQL, Redis, HTTP client
  handles: sizes, and connections in use seen above 0 under load and
  back to 0 at rest), the ring epoch (the router's, on every service)
  and the outbox depth (above 0 while a recipient's node is down, back
  to 0 once the worker delivered; when the router fails the node over
  first, the delivered counter shows the copies went through the outbox).

The cluster is removed at the end, on failure too. Python standard
library plus promtool (Debian package prometheus).

Run: python3 tests/integration/test_metrics.py
"""

import json
import os
import re
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
from e2e_lib import check, expect_status, fail, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_METRICS_TEST_BASE_PORT", "21000"))
PG_INSTANCES = 2
# Defaults of STORAGE_PG_POOL and CACHE_REDIS_POOL (README, Configuration).
PG_POOL_PER_INSTANCE = 4
REDIS_POOL = 16
# The outbox worker first retries a queued copy 3 s after it was written,
# then every second (common/constants.h): depth shows within this.
OUTBOX_WAIT_S = 20
SCRAPE_TIMEOUT_S = 10

VAR = None
ENV = None
SECRET = None


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, extra_env={
        "MESSENGER_PG_INSTANCES": str(PG_INSTANCES)}, check_rc=check_rc)


# ------------------------------------------------------------- scraping

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Prometheus text -> {(name, frozenset of (label, value)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        check(m is not None, "not a sample line: %r" % line)
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def scrape_raw(url):
    with urllib.request.urlopen(url + "/metrics", timeout=SCRAPE_TIMEOUT_S) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")


def scrape(url):
    return parse(scrape_raw(url)[2])


def value(samples, name, **labels):
    """Sum of the samples of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def has(samples, name, **labels):
    want = set(labels.items())
    return any(n == name and want <= set(ls) for (n, ls) in samples)


def total(urls, name, **labels):
    return sum(value(scrape(u), name, **labels) for u in urls)


def urls(key):
    return [u for u in ENV[key].split(",") if u]


def all_services():
    return (urls("GATEWAY_URLS") + urls("CACHE_URLS") + [ENV["ROUTER_URL"], ENV["STORAGE_URL"]])


def signed_get(url):
    """A GET signed with the cluster's internal secret, as services sign."""
    target = urllib.parse.urlsplit(url).path
    req = urllib.request.Request(url, headers={
        e2e_lib.INTERNAL_AUTH_HEADER: e2e_lib.internal_auth(SECRET, "GET", target)})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def owner_of(user, epoch):
    """Index of the cache node that owns user at the ring's epoch."""
    return e2e_lib.owner_index(SECRET, urls("CACHE_URLS"), user, epoch)


def ring_epoch():
    status, ring = signed_get(ENV["ROUTER_URL"] + "/internal/ring")
    check(status == 200, "router ring answered %d" % status)
    return ring["epoch"]


# ---------------------------------------------------------------- tests


@test
def test_every_service_passes_promtool(api):
    # Some traffic first, so that every family has samples to lint.
    a, b = new_user(), new_user()
    api.send_ok(a, b, "lint me")
    api.convs_ok(b)
    for url in all_services():
        status, ctype, text = scrape_raw(url)
        check(status == 200, "%s/metrics answered %d" % (url, status))
        check(ctype.startswith("text/plain") and "version=0.0.4" in ctype,
              "%s/metrics content type %r" % (url, ctype))
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        check(r.returncode == 0, "promtool check metrics failed for %s:\n%s" % (
            url, r.stdout.decode()[-2000:]))
        samples = parse(text)
        for family in ("http_requests_total", "http_request_duration_seconds_bucket",
                       "metrics_dropped_total"):
            check(has(samples, family), "%s/metrics lacks %s" % (url, family))
        check(value(samples, "metrics_dropped_total") == 0,
              "%s dropped observations" % url)


@test
def test_request_counters_and_latency_move_by_route_and_status(api):
    gws, storage = urls("GATEWAY_URLS"), ENV["STORAGE_URL"]
    sends = 12
    before_gw = [scrape(u) for u in gws]
    before_st = scrape(storage)
    users = [new_user() for _ in range(4)]
    for i in range(sends):
        api.send_ok(users[i % 2], users[2 + i % 2], "count me %d" % i)
    expect_status(api.call("POST", "/v1/messages", user=users[0], body={"sender_id": users[0]}), 400)
    after_gw = [scrape(u) for u in gws]
    after_st = scrape(storage)

    def delta(before, after, name, **labels):
        return sum(value(a, name, **labels) - value(b, name, **labels)
                   for b, a in zip(before, after))

    got = delta(before_gw, after_gw, "http_requests_total", route="send", status="201")
    check(got == sends, "gateways counted %r sends with 201, sent %d" % (got, sends))
    got = delta(before_gw, after_gw, "http_requests_total", route="send", status="400")
    check(got == 1, "gateways counted %r sends with 400, sent 1" % got)
    got = delta(before_gw, after_gw, "http_request_duration_seconds_count", route="send")
    check(got == sends + 1, "send latency histogram counted %r, expected %d" % (got, sends + 1))
    got = delta(before_gw, after_gw, "http_request_duration_seconds_count", route="send",
                status="400")
    check(got == 1, "send latency histogram counted %r answers of 400, expected 1" % got)
    inf = delta(before_gw, after_gw, "http_request_duration_seconds_bucket", route="send", le="+Inf")
    check(inf == sends + 1, "+Inf bucket moved by %r" % inf)
    check(delta(before_gw, after_gw, "http_request_duration_seconds_sum", route="send") > 0,
          "send latency sum did not grow")
    got = delta(before_gw, after_gw, "dependency_duration_seconds_count", dependency="cache")
    check(got >= sends, "gateway -> cache calls counted %r, expected >= %d" % (got, sends))
    got = delta([before_st], [after_st], "http_requests_total", route="send", status="201")
    check(got == sends, "storage counted %r sends with 201, expected %d" % (got, sends))
    got = delta([before_st], [after_st], "dependency_duration_seconds_count", dependency="postgres")
    check(got >= sends, "storage -> postgres calls counted %r, expected >= %d" % (got, sends))


@test
def test_cache_nodes_count_hits_misses_and_dependencies(api):
    caches = urls("CACHE_URLS")
    before = {k: total(caches, *k[:1], **dict(k[1:])) for k in (
        ("cache_hits_total",), ("cache_misses_total",),
        ("dependency_duration_seconds_count", ("dependency", "storage")),
        ("dependency_duration_seconds_count", ("dependency", "redis")))}
    a, b = new_user(), new_user()
    api.send_ok(a, b, "hit or miss")
    api.convs_ok(a)
    api.convs_ok(a)
    for k, old in before.items():
        new = total(caches, *k[:1], **dict(k[1:]))
        check(new > old, "cache nodes' %r did not move (%r -> %r)" % (k, old, new))


@test
def test_cache_nodes_count_writes_and_their_calls(api):
    """Every send writes two copies through the nodes' write queues; the
    queues' calls carry one write or more each."""
    caches = urls("CACHE_URLS")
    names = ("cache_storage_writes_total", "cache_storage_write_calls_total")
    before = [total(caches, n) for n in names]
    errors = []

    def load(k):
        try:
            for i in range(10):
                api.send_ok(new_user(), new_user(), "queued %d-%d" % (k, i))
        except Exception as e:  # reported below
            errors.append(e)

    workers = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    check(not errors, "sends failed: %s" % errors[:3])
    writes, calls = [total(caches, n) - b for n, b in zip(names, before)]
    check(writes == 2 * 80, "writes moved by %r for 80 sends, expected 160" % writes)
    check(1 <= calls <= writes, "calls moved by %r for %r writes" % (calls, writes))


@test
def test_pools_report_size_and_use(api):
    st = scrape(ENV["STORAGE_URL"])
    size = value(st, "pg_pool_connections")
    check(size == PG_INSTANCES * PG_POOL_PER_INSTANCE,
          "pg_pool_connections %r, expected %d" % (size, PG_INSTANCES * PG_POOL_PER_INSTANCE))
    for u in urls("CACHE_URLS"):
        c = scrape(u)
        check(value(c, "redis_pool_connections") == REDIS_POOL,
              "%s redis_pool_connections %r" % (u, value(c, "redis_pool_connections")))
        check(value(c, "http_client_handles") > 0, "%s has no http_client_handles" % u)
    for u in urls("GATEWAY_URLS"):
        check(value(scrape(u), "http_client_handles") > 0, "%s has no http_client_handles" % u)

    # Under concurrent sends, a sampler sees connections in use.
    seen = {"pg": 0.0, "redis": 0.0, "http": 0.0}
    stop = threading.Event()
    errors = []

    def load(k):
        try:
            for i in range(15):
                api.send_ok(new_user(), new_user(), "pool %d-%d" % (k, i))
        except Exception as e:  # reported below
            errors.append(e)

    def sample():
        while not stop.is_set():
            seen["pg"] = max(seen["pg"], value(scrape(ENV["STORAGE_URL"]), "pg_pool_connections_in_use"))
            for u in urls("CACHE_URLS"):
                c = scrape(u)
                seen["redis"] = max(seen["redis"], value(c, "redis_pool_connections_in_use"))
                seen["http"] = max(seen["http"], value(c, "http_client_handles_in_use"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    stop.set()
    sampler.join(30)
    check(not errors, "sends failed under load: %s" % errors[:3])
    check(seen["pg"] > 0 and seen["http"] > 0,
          "no pool connection seen in use under load: %r" % seen)
    check(seen["pg"] <= size, "more PostgreSQL connections in use than exist: %r" % seen)
    # At rest every borrowed connection has been given back.
    deadline = time.monotonic() + 5
    while True:
        at_rest = [value(scrape(ENV["STORAGE_URL"]), "pg_pool_connections_in_use")] + \
            [value(scrape(u), g) for u in urls("CACHE_URLS")
             for g in ("redis_pool_connections_in_use", "http_client_handles_in_use")]
        if all(x == 0 for x in at_rest) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(all(x == 0 for x in at_rest), "connections still in use at rest: %r" % at_rest)


@test
def test_every_service_reports_the_routers_ring_epoch(api):
    epoch = ring_epoch()
    check(epoch >= 1, "router epoch %r" % epoch)
    for u in urls("GATEWAY_URLS") + urls("CACHE_URLS") + [ENV["ROUTER_URL"]]:
        got = value(scrape(u), "ring_epoch")
        check(got == epoch, "%s ring_epoch %r, router's ring is at %d" % (u, got, epoch))


def cache_nodes():
    """URL of every cache node the router hears from, the standby too:
    any node's outbox worker may claim an entry (storage hands entries to
    whichever claims first)."""
    status, body = signed_get(ENV["ROUTER_URL"] + "/internal/router")
    check(status == 200, "router state answered %d" % status)
    return sorted({n["url"] for n in body["nodes"]} | set(urls("CACHE_URLS")))


def delivered_counts(nodes):
    """outbox_delivered_total of each node that answers."""
    out = {}
    for u in nodes:
        try:
            out[u] = value(scrape(u), "outbox_delivered_total")
        except OSError:
            pass
    return out


def delivered_since(before, nodes):
    """Copies the outbox workers of nodes delivered since before; a node
    restarted meanwhile counts from zero."""
    total = 0.0
    for u, now in delivered_counts(nodes).items():
        was = before.get(u, 0.0)
        total += now - was if now >= was else now
    return total


@test
def test_outbox_depth_rises_while_a_recipient_node_is_down(api):
    epoch = ring_epoch()
    caches = urls("CACHE_URLS")
    senders, recipients = [], []
    for _ in range(2000):
        u = new_user()
        node = owner_of(u, epoch)
        if node == 0 and len(senders) < 1:
            senders.append(u)
        elif node == 1 and len(recipients) < 3:
            recipients.append(u)
        if senders and len(recipients) == 3:
            break
    check(senders and len(recipients) == 3, "could not place users on cache-1 and cache-2")
    nodes = cache_nodes()
    delivered_before = delivered_counts(nodes)
    cluster(VAR, "kill", "cache-2")
    depth_seen = 0.0
    try:
        for r in recipients:
            api.send_ok(senders[0], r, "queued for a node that is down")
        deadline = time.monotonic() + OUTBOX_WAIT_S
        while time.monotonic() < deadline and depth_seen < len(recipients):
            m = scrape(caches[0])
            depth_seen = max(depth_seen, value(m, "outbox_depth"))
            if delivered_since(delivered_before, nodes) >= len(recipients) and \
                    ring_epoch() != epoch:
                break
            time.sleep(0.2)
    finally:
        cluster(VAR, "restart", "cache-2")
    failed_over = ring_epoch() != epoch
    print("outbox: depth seen %r, ring %s" % (
        depth_seen, "failed over (epoch changed)" if failed_over else "unchanged"))
    if not failed_over:
        check(depth_seen == len(recipients),
              "outbox_depth of the sender's node reached %r, expected %d" % (
                  depth_seen, len(recipients)))
    # With a failover (a standby or a successor took the dead node's
    # users), a worker delivers the queued copies to the new owner at its
    # first retry, possibly before any claim finds them undelivered; then
    # only the delivered counters prove they went through the outbox.
    # Any node's worker may be the one.
    deadline = time.monotonic() + OUTBOX_WAIT_S
    while time.monotonic() < deadline:
        m = scrape(caches[0])
        delivered = delivered_since(delivered_before, nodes)
        if value(m, "outbox_depth") == 0 and delivered >= len(recipients):
            after = delivered_counts(nodes)
            print("outbox: delivered by %s" % {
                u.rsplit(":", 1)[1]: after[u] - delivered_before.get(u, 0.0)
                for u in after if after[u] != delivered_before.get(u, 0.0)})
            return
        time.sleep(0.3)
    fail("outbox not drained after the node returned: depth %r, delivered %r more" % (
        value(m, "outbox_depth"), delivered))


def setup(var, env):
    global VAR, ENV, SECRET
    VAR, ENV = var, env
    SECRET = e2e_lib.internal_secret(env)


def main():
    e2e_lib.run_with_own_cluster("messenger-metrics-test.", cluster, setup)


if __name__ == "__main__":
    main()
