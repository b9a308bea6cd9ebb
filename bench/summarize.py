#!/usr/bin/env python3
"""Medians and ranges over several results of scripts/bench.

    summarize.py OUT RESULT.json [RESULT.json ...]

`BENCH_RUNS=N make bench` runs the benchmark N times, each with its own
cluster and ceilings, and calls this on the N results: it prints one
table whose every figure is the median of the runs with their range
(the host's speed moves between runs, so one run is one sample), the
runs that met each latency target, the CPU per request by component
(medians), and writes the same as JSON to OUT.
"""
import json
import statistics
import sys

THROUGHPUT = [
    # (figure, workload, ratio key, ceiling key)
    ("send (durable, 201)", "send", "send_vs_pgbench", "pgbench_send_tps"),
    ("delta, nothing new", "delta", "delta_vs_echo", "echo_rps"),
    ("delta, straight to gateways", "delta-direct", "delta_direct_vs_echo",
     "echo_rps"),
    ("conversation list", "conversations", "conversations_vs_echo",
     "echo_rps"),
    ("message page", "messages", "messages_vs_echo", "echo_rps"),
    ("mix 20% send / 80% read", "mix", "mix_vs_echo", "echo_rps"),
]
LATENCY = [("send p99 at half peak", "send-half"),
           ("delta p99 at half peak", "delta-half"),
           ("message page p99 at half peak", "messages-half"),
           ("conversation list p99 at half peak", "conversations-half")]
P99_TARGET_MS = 10.0


def spread(values):
    """{median, min, max} of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values)}


def summarize(results):
    out = {"runs": len(results), "dates": [r["date"] for r in results],
           "command": results[0]["command"], "throughput": {},
           "latency": {}, "cpu_us_per_request": {}}
    for _, name, ratio, ceiling in THROUGHPUT:
        out["throughput"][name] = {
            "per_second": spread([r["workloads"][name]["throughput"]
                                  for r in results]),
            "ceiling": spread([r["ceilings"][ceiling] for r in results]),
            "ratio": spread([r["ratios"][ratio] for r in results]),
        }
    for _, name in LATENCY:
        # Results from before the page and list runs at half peak lack
        # them.
        if not all(name in r["workloads"] for r in results):
            continue
        p99 = [r["workloads"][name]["p99_ms"] for r in results]
        out["latency"][name] = {
            "p99_ms": spread(p99),
            "runs_under_target": sum(1 for v in p99 if v < P99_TARGET_MS),
        }
    # How far each ceiling moved between its runs before and after what
    # it is compared with, in percent (results of scripts/bench from
    # before the ceilings were measured twice have no samples).
    for key in ("pgbench_send_tps", "echo_rps"):
        drifts = [100.0 * (r["ceilings"][key + "_samples"][1] -
                           r["ceilings"][key + "_samples"][0]) /
                  r["ceilings"][key + "_samples"][0]
                  for r in results
                  if len(r["ceilings"].get(key + "_samples", [])) == 2]
        if drifts:
            out.setdefault("ceiling_drift_pct", {})[key] = spread(drifts)
    out["non_2xx"] = sum(w["non_2xx"] for r in results
                         for w in r["workloads"].values())
    out["errors"] = sum(w["errors"] for r in results
                        for w in r["workloads"].values())
    out["late_lease_renewals"] = sum(r.get("late_lease_renewals", 0)
                                     for r in results)
    # In the order of the first result, the runs every result has.
    names = [n for n in results[0].get("cpu_us_per_request", {})
             if all(n in r.get("cpu_us_per_request", {}) for r in results)]
    for name in names:
        parts = results[0]["cpu_us_per_request"][name].keys()
        out["cpu_us_per_request"][name] = {
            k: statistics.median(r["cpu_us_per_request"][name][k]
                                 for r in results)
            for k in parts}
    return out


def fmt(s, form):
    return "%s (%s-%s)" % (form % s["median"], form % s["min"],
                           form % s["max"])


def print_tables(s):
    print("%d runs: %s" % (s["runs"], ", ".join(s["dates"])))
    print()
    print("| figure | measured, median (range) | ceiling, median (range) "
          "| ratio, median (range) |")
    print("| --- | --- | --- | --- |")
    for label, name, _, ceiling in THROUGHPUT:
        t = s["throughput"][name]
        unit = "pgbench tx/s" if ceiling == "pgbench_send_tps" else "echo req/s"
        print("| %s | %s /s | %s %s | %s |" % (
            label, fmt(t["per_second"], "%.0f"), fmt(t["ceiling"], "%.0f"),
            unit, fmt(t["ratio"], "%.2fx")))
    for label, name in LATENCY:
        if name not in s["latency"]:
            continue
        lat = s["latency"][name]
        print("| %s | %s ms | %.0f ms target: met in %d of %d runs | |" % (
            label, fmt(lat["p99_ms"], "%.2f"), P99_TARGET_MS,
            lat["runs_under_target"], s["runs"]))
    if s.get("ceiling_drift_pct"):
        print()
    for key, label in (("pgbench_send_tps", "pgbench around the send run"),
                       ("echo_rps", "echo around the read runs")):
        d = s.get("ceiling_drift_pct", {}).get(key)
        if d:
            print("ceiling drift within a run, %s: median %+.0f%%, "
                  "from %+.0f%% to %+.0f%%" % (label, d["median"], d["min"],
                                              d["max"]))
    print()
    print("non-2xx %d, connection errors %d, late lease renewals %d "
          "(all runs)" % (s["non_2xx"], s["errors"],
                          s["late_lease_renewals"]))
    cpu = s["cpu_us_per_request"]
    if cpu:
        names = list(cpu)
        print()
        print("CPU per request, us, median of the runs")
        width = max(14, max(len(n) for n in names) + 2)
        print("%-10s" % "" + "".join("%*s" % (width, n) for n in names))
        for k in cpu[names[0]]:
            print("%-10s" % k + "".join("%*.1f" % (width, cpu[n][k])
                                        for n in names))


def load_results(paths):
    """The results of scripts/bench at paths, in order (capacity.py
    reads them the same way)."""
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    return results


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: summarize.py OUT RESULT.json [RESULT.json ...]")
    s = summarize(load_results(sys.argv[2:]))
    with open(sys.argv[1], "w") as f:
        json.dump(s, f, indent=1)
    print_tables(s)
    print()
    print("summary: %s" % sys.argv[1])


if __name__ == "__main__":
    main()
