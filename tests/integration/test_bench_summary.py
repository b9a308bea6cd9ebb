"""test_bench_summary - bench/summarize.py (BENCH_RUNS=N make bench) turns
several benchmark results into medians and ranges.

Three results of the shape scripts/bench writes, with known figures, go
through the script as `BENCH_RUNS=3` runs it; the summary must give each
figure's median, minimum and maximum, count the runs that met the p99
target, add up the failures of all runs, take the median of each
component's CPU per request in the runs' order, and give the range of
each ceiling's drift between its two samples (only over the runs that
have them: results from before the samples have none).
"""

import json
import os
import subprocess
import sys
import tempfile

from bench_lib import finish, write_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "summarize.py")
WORKLOADS = ["send", "conversations", "messages", "delta", "mix",
             "send-half", "delta-half", "messages-half", "conversations-half",
             "delta-direct"]


def result(i, send, pg, p99_send, non_2xx, cpu_send_cache):
    """One result; i also sets every figure the test does not look at."""
    workloads = {w: {"throughput": 1000.0 * (i + 1), "p99_ms": 3.0 + i,
                     "non_2xx": 0, "errors": 0} for w in WORKLOADS}
    workloads["send"]["throughput"] = send
    workloads["send"]["non_2xx"] = non_2xx
    workloads["send-half"]["p99_ms"] = p99_send
    echo = 70000.0 + i
    ratios = {"send_vs_pgbench": send / pg}
    for key, w in (("delta_vs_echo", "delta"),
                   ("delta_direct_vs_echo", "delta-direct"),
                   ("conversations_vs_echo", "conversations"),
                   ("messages_vs_echo", "messages"), ("mix_vs_echo", "mix")):
        ratios[key] = workloads[w]["throughput"] / echo
    return {
        "date": "2026-11-26 16:0%d:00 +0000" % i,
        "command": "BENCH_SECONDS=10 make bench",
        "ceilings": {"pgbench_send_tps": pg, "echo_rps": echo},
        "workloads": workloads,
        "ratios": ratios,
        "late_lease_renewals": i,
        "cpu_us_per_request": {
            "send": {"cache": cpu_send_cache, "postgres": 600.0,
                     "total": cpu_send_cache + 600.0},
            "delta": {"cache": 40.0 + i, "postgres": 2.0, "total": 42.0 + i},
        },
    }


def main():
    results = [result(0, send=1000.0, pg=2500.0, p99_send=12.0, non_2xx=0,
                      cpu_send_cache=500.0),
               result(1, send=1200.0, pg=3000.0, p99_send=9.5, non_2xx=2,
                      cpu_send_cache=560.0),
               result(2, send=900.0, pg=2000.0, p99_send=8.0, non_2xx=0,
                      cpu_send_cache=530.0)]
    # Two runs with both ceilings' samples, one from before them.
    results[0]["ceilings"]["pgbench_send_tps_samples"] = [2500.0, 2250.0]
    results[1]["ceilings"]["pgbench_send_tps_samples"] = [3000.0, 3000.0]
    results[0]["ceilings"]["echo_rps_samples"] = [70000.0, 77000.0]
    results[1]["ceilings"]["echo_rps_samples"] = [70000.0, 63000.0]
    d = tempfile.mkdtemp(suffix=".bench-summary")
    paths = write_results(d, results)
    out = os.path.join(d, "summary.json")
    p = subprocess.run([sys.executable, SCRIPT, out] + paths,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    text = p.stdout.decode()
    print(text)
    failures = []
    if p.returncode != 0:
        failures.append("summarize.py exited %d" % p.returncode)
    with open(out) as f:
        s = json.load(f)
    send = s["throughput"]["send"]
    expect = [
        ("runs", s["runs"], 3),
        ("send median", send["per_second"]["median"], 1000.0),
        ("send min", send["per_second"]["min"], 900.0),
        ("send max", send["per_second"]["max"], 1200.0),
        ("pgbench median", send["ceiling"]["median"], 2500.0),
        ("send ratio median", send["ratio"]["median"], 0.4),
        ("send ratio min", send["ratio"]["min"], 0.4),
        ("send ratio max", send["ratio"]["max"], 0.45),
        ("send p99 median", s["latency"]["send-half"]["p99_ms"]["median"], 9.5),
        ("send p99 runs under 10 ms",
         s["latency"]["send-half"]["runs_under_target"], 2),
        ("delta p99 runs under 10 ms",
         s["latency"]["delta-half"]["runs_under_target"], 3),
        ("message page p99 median",
         s["latency"]["messages-half"]["p99_ms"]["median"], 4.0),
        ("conversation list p99 runs under 10 ms",
         s["latency"]["conversations-half"]["runs_under_target"], 3),
        ("non-2xx of all runs", s["non_2xx"], 2),
        ("late renewals of all runs", s["late_lease_renewals"], 3),
        ("cache CPU per send, median",
         s["cpu_us_per_request"]["send"]["cache"], 530.0),
        ("total CPU per delta, median",
         s["cpu_us_per_request"]["delta"]["total"], 43.0),
        ("CPU runs in the results' order", list(s["cpu_us_per_request"]),
         ["send", "delta"]),
        ("pgbench drift min", s["ceiling_drift_pct"]["pgbench_send_tps"]["min"],
         -10.0),
        ("pgbench drift max", s["ceiling_drift_pct"]["pgbench_send_tps"]["max"], 0.0),
        ("echo drift median", s["ceiling_drift_pct"]["echo_rps"]["median"], 0.0),
        ("echo drift max", s["ceiling_drift_pct"]["echo_rps"]["max"], 10.0),
    ]
    for what, got, want in expect:
        if isinstance(want, float) and isinstance(got, (int, float)):
            ok = abs(got - want) < 1e-9
        else:
            ok = got == want
        if not ok:
            failures.append("%s: got %r, want %r" % (what, got, want))
    if "| send (durable, 201) | 1000 (900-1200) /s |" not in text:
        failures.append("the table's send row is missing or wrong")
    if "pgbench around the send run: median -5%, from -10% to +0%" not in text:
        failures.append("the drift of pgbench is not printed")
    if "met in 2 of 3 runs" not in text:
        failures.append("the table does not count the runs under 10 ms")
    return finish(failures, "PASS test_bench_summary: %d figures checked" % len(expect), d)


if __name__ == "__main__":
    sys.exit(main())
