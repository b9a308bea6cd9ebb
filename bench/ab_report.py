#!/usr/bin/env python3
"""The figures of bench/ab: one line per run, then a summary per value.

    ab_report.py run WORK LABEL SETTING
    ab_report.py summary WORK OUT PAIRS WHAT VALUE_A VALUE_B WORKLOAD

WORK holds each run's loadgen result (LABEL.json) and the CPU snapshots
around its measured phase (cpu-LABEL-0.json, cpu-LABEL-1.json, from
bench/cpu_snapshot.py). A run's CPU per request is the difference of the
snapshots over the requests of the run, per component, and the load
generator's own. Runs are labelled a-I and b-I, pair I running a first.
The summary gives each value's medians and, pair by pair, how often b
served more requests, had a lower p99 and spent less CPU per request
than a (at a fixed --rate both serve the same, and the p99 and the CPU
tell): on a host whose speed drifts, the pairs are the evidence, not the
medians alone.
"""
import json
import os
import statistics
import sys

from cpu_snapshot import COMPONENTS, per_request


def load(work, name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)


def figures(work, label):
    """throughput, p99 and CPU per request (us, per component and total)
    of run label."""
    w = load(work, label)
    cpu = per_request(load(work, "cpu-%s-0" % label),
                      load(work, "cpu-%s-1" % label), w)
    return {"label": label, "throughput": w["throughput"],
            "p99_ms": w["p99_ms"], "non_2xx": w["non_2xx"],
            "errors": w["errors"],
            "cpu_us": cpu or {k: 0.0 for k in COMPONENTS + ["total"]}}


def line(f, setting):
    parts = " ".join("%s %.0f" % (k, f["cpu_us"][k])
                     for k in COMPONENTS + ["total"] if f["cpu_us"][k] >= 0.5)
    return "%-6s %-28s %9.0f/s  p99 %7.2f ms  non-2xx %d  us/request: %s" % (
        f["label"], setting, f["throughput"], f["p99_ms"], f["non_2xx"],
        parts)


def summary(work, pairs, what, value_a, value_b, workload):
    runs = {arm: [figures(work, "%s-%d" % (arm, i))
                  for i in range(1, pairs + 1)] for arm in ("a", "b")}
    out = {"what": what, "workload": workload, "pairs": pairs,
           "values": {"a": value_a, "b": value_b}, "runs": runs,
           "median": {}}
    for arm, rs in runs.items():
        out["median"][arm] = {
            "throughput": statistics.median(r["throughput"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "cpu_us": {k: statistics.median(r["cpu_us"][k] for r in rs)
                       for k in rs[0]["cpu_us"]},
        }
    pairs_of = list(zip(runs["a"], runs["b"]))
    out["b_ahead"] = {
        "throughput": sum(1 for a, b in pairs_of
                          if b["throughput"] > a["throughput"]),
        "p99": sum(1 for a, b in pairs_of if b["p99_ms"] < a["p99_ms"]),
        "cpu_total": sum(1 for a, b in pairs_of
                         if b["cpu_us"]["total"] < a["cpu_us"]["total"]),
    }
    out["failures"] = sum(r["non_2xx"] + r["errors"]
                          for rs in runs.values() for r in rs)
    return out


def print_summary(s):
    print()
    print("%s, %s, %d pair%s (a first in each)" % (
        s["what"], s["workload"], s["pairs"], "" if s["pairs"] == 1 else "s"))
    for arm in ("a", "b"):
        m = s["median"][arm]
        cpu = " ".join("%s %.0f" % (k, v) for k, v in m["cpu_us"].items()
                       if v >= 0.5)
        print("  %s = %-12s median %9.0f/s  p99 %7.2f ms  us/request: %s" % (
            arm, s["values"][arm], m["throughput"], m["p99_ms"], cpu))
    ahead, n = s["b_ahead"], s["pairs"]
    print("  b against a, pair by pair: more requests/s in %d of %d, a lower "
          "p99 in %d of %d, less CPU per request in %d of %d" % (
              ahead["throughput"], n, ahead["p99"], n, ahead["cpu_total"], n))
    print("  non-2xx and connection errors, all runs: %d" % s["failures"])


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        print(line(figures(sys.argv[2], sys.argv[3]), sys.argv[4]),
              flush=True)
        return
    if len(sys.argv) == 9 and sys.argv[1] == "summary":
        work, out, pairs = sys.argv[2], sys.argv[3], int(sys.argv[4])
        s = summary(work, pairs, *sys.argv[5:9])
        with open(out, "w") as f:
            json.dump(s, f, indent=1)
        print_summary(s)
        print("result: %s" % out)
        sys.exit(1 if s["failures"] else 0)
    sys.exit(__doc__.strip().splitlines()[2].strip())


if __name__ == "__main__":
    main()
