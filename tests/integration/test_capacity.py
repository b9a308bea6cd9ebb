"""test_capacity - bench/capacity.py turns make bench's results into the
capacity model of docs/capacity.md.

Three results of the shape scripts/bench writes, with known figures, go
through the script as make bench runs it. The model must take each
figure's median over the results, and from it: each tier's cores (sends
times the CPU per send plus five reads per send times the CPU of the
average read, a third each delta, message page and conversation list),
machines of 19.2 usable cores rounded up, standbys as many as
primaries, cache nodes from Redis's cores at 0.6 of a core each, bytes
per send (two message rows and one idempotency key) and per day, and
Redis per hot user. A result without the runs at half peak of an older
scripts/bench must be refused with a clear message, not planned with.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

from bench_lib import finish, write_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "capacity.py")
HALF_RUNS = ["send-half", "delta-half", "messages-half", "conversations-half"]
COMPONENTS = ["nginx", "gateway", "cache", "storage", "redis", "postgres"]


def result(i, pg_send):
    """One result. Run k's component c costs base(k, c) + i us, except
    PostgreSQL per send, which is pg_send; i moves the medians."""
    cpu = {}
    for k, run in enumerate(HALF_RUNS):
        cpu[run] = {c: 10.0 * (k + 1) * (j + 1) + i
                    for j, c in enumerate(COMPONENTS)}
        cpu[run]["router"] = 5.0
        cpu[run]["loadgen"] = 50.0
    cpu["send-half"]["postgres"] = pg_send
    workloads = {run: {"throughput": 100.0 * (k + 1) + i}
                 for k, run in enumerate(HALF_RUNS)}
    workloads["send"] = {"throughput": 900.0, "content_bytes": 54}
    return {
        "date": "2026-11-28 02:0%d:00 +0000" % i,
        "ceilings": {"pgbench_send_tps": 1500.0 + i, "echo_rps": 40000.0 + i},
        "workloads": workloads,
        "cpu_us_per_request": cpu,
        "storage": {
            "messages": {"bytes": 500 * 1000 + i * 1000, "rows": 1000},
            "idempotency_keys": {"bytes": 180 * 500, "rows": 500},
            "conversations": {"bytes": 400 * 200, "rows": 200},
            "outbox": {"bytes": 8192, "rows": 0},
        },
        "redis": {"used_bytes": 40000 * 100 + i * 100, "hot_users": 100},
    }


def run(paths, prefix):
    p = subprocess.run([sys.executable, SCRIPT, prefix] + paths,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    return p.returncode, p.stdout.decode()


def expected_cores(sends, comps, i_median):
    """Cores of a tier from the figures result() gives, at the median i."""
    def cost(run, c):
        if run == "send-half" and c == "postgres":
            return 700.0
        k, j = HALF_RUNS.index(run), COMPONENTS.index(c)
        return 10.0 * (k + 1) * (j + 1) + i_median
    send = sum(cost("send-half", c) for c in comps)
    read = sum(cost(r, c) for r in HALF_RUNS[1:] for c in comps) / 3
    return (sends * send + 5 * sends * read) / 1e6


def main():
    d = tempfile.mkdtemp(suffix=".capacity")
    # PostgreSQL per send 600, 700 and 900 us: the median is 700.
    results = [result(0, 600.0), result(1, 900.0), result(2, 700.0)]
    paths = write_results(d, results)
    prefix = os.path.join(d, "capacity")
    rc, text = run(paths, prefix)
    print(text)
    failures = []
    if rc != 0:
        failures.append("capacity.py exited %d" % rc)
    with open(prefix + ".json") as f:
        m = json.load(f)
    p115, p400 = m["plans"]
    tiers = {t["tier"]: t for t in p115["tiers"]}
    pg_cores = expected_cores(115000, ["postgres"], 1)
    cache_cores = expected_cores(115000, ["cache", "redis"], 1)
    redis_cores = expected_cores(115000, ["redis"], 1)
    gw400 = expected_cores(400000, ["gateway"], 1)
    expect = [
        ("results", m["results"], 3),
        ("PostgreSQL CPU per send, median",
         m["cpu_us_per_request"]["send-half"]["postgres"], 700.0),
        ("reads per second at 115k", p115["reads_per_s"], 575000),
        ("PostgreSQL cores at 115k", tiers["PostgreSQL primaries"]["cores"],
         round(pg_cores, 1)),
        ("PostgreSQL machines at 115k",
         tiers["PostgreSQL primaries"]["machines"], math.ceil(pg_cores / 19.2)),
        ("standbys at 115k", tiers["PostgreSQL synchronous standbys "
                                   "(one per primary)"]["machines"],
         math.ceil(pg_cores / 19.2)),
        ("cache tier cores at 115k",
         tiers["cache nodes with their Redis"]["cores"], round(cache_cores, 1)),
        ("cache nodes at 115k", p115["cache_nodes"],
         math.ceil(redis_cores / 0.6)),
        ("gateway machines at 400k",
         {t["tier"]: t for t in p400["tiers"]}["gateways"]["machines"],
         math.ceil(gw400 / 19.2)),
        ("machines at 115k, the tiers' sum", p115["machines"],
         sum(t["machines"] for t in p115["tiers"])),
        ("message bytes per row, median", m["storage"]["bytes_per_row"]["messages"],
         501),
        ("bytes per send", m["storage"]["bytes_per_send"], 2 * 501 + 180),
        ("TB per day", m["storage"]["tb_per_day"],
         round((2 * 501 + 180) * 1e10 / 1e12, 1)),
        ("content bytes", m["storage"]["content_bytes"], 54),
        ("Redis bytes per hot user", m["redis"]["bytes_per_hot_user"], 40001),
        ("pgbench median", m["ceilings"]["pgbench_send_tps"], 1501.0),
    ]
    for what, got, want in expect:
        ok = (abs(got - want) < 1e-9 if isinstance(want, float) else got == want)
        if not ok:
            failures.append("%s: got %r, want %r" % (what, got, want))
    with open(prefix + ".md") as f:
        md = f.read()
    if md not in text:
        failures.append("the printed model is not capacity.md")
    if "| **total** | | **%d** |" % p115["machines"] not in md:
        failures.append("capacity.md has no total row")
    # A result of an older scripts/bench, without the reads at half peak.
    old = result(0, 600.0)
    del old["cpu_us_per_request"]["messages-half"]
    with open(paths[0], "w") as f:
        json.dump(old, f)
    rc, text = run(paths[:1], os.path.join(d, "old"))
    print(text)
    if rc == 0 or "no CPU figures for messages-half" not in text:
        failures.append("an older result was not refused clearly: %d %r"
                        % (rc, text))
    if os.path.exists(os.path.join(d, "old.json")):
        failures.append("a refused model was written")
    return finish(failures, "PASS test_capacity: %d figures checked" % len(expect), d)


if __name__ == "__main__":
    sys.exit(main())
