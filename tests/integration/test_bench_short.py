"""test_bench_short - a short pass of the benchmark (scripts/bench) runs
end to end: its own cluster on base port 23000, every ceiling (pgbench
and the echo each twice, around the runs compared with them, with their
mean as the ceiling), every workload through the whole stack, and a
result in which each workload
has a non-zero throughput and not one non-2xx answer or connection error,
and a CPU time per request for every component each run passes through.

This proves the benchmark itself keeps working (make bench); the figures
of a short pass on the sanitizer build are not performance numbers.
"""

import os
import subprocess
import sys
import tempfile

from bench_lib import finish, load_result

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKLOADS = ["seed", "send", "conversations", "messages", "delta", "mix",
             "send-half", "delta-half", "messages-half",
             "conversations-half", "delta-direct"]
CEILINGS = ["pgbench_send_tps", "echo_rps", "redis_hmget_ops", "redis_eval_ops"]
BRACKETED = ["pgbench_send_tps", "echo_rps"]
# Runs through nginx whose CPU time per request the result gives, and
# the components each of them must have spent CPU in: a snapshot that
# missed a service (no pid file found, a wrong /proc field) shows as 0.
CPU_RUNS = {
    "send": ["nginx", "gateway", "cache", "storage", "redis", "postgres", "loadgen"],
    "conversations": ["nginx", "gateway", "cache", "redis", "loadgen"],
    "messages": ["nginx", "gateway", "cache", "redis", "loadgen"],
    "delta": ["nginx", "gateway", "cache", "loadgen"],
    "mix": ["nginx", "gateway", "cache", "storage", "redis", "postgres", "loadgen"],
    "send-half": ["nginx", "gateway", "cache", "storage", "redis", "postgres", "loadgen"],
    "delta-half": ["nginx", "gateway", "cache", "loadgen"],
    "messages-half": ["nginx", "gateway", "cache", "redis", "loadgen"],
    "conversations-half": ["nginx", "gateway", "cache", "redis", "loadgen"],
}
# The load generator's default message content, which the capacity
# model's bytes per send are measured with.
CONTENT_BYTES = 54
# The whole pass must end well inside the suite's time limit.
BENCH_TIMEOUT_S = 240


def check_capacity(out_dir, failures):
    """The capacity model scripts/bench computes from the run (its
    arithmetic is test_capacity's): present, with machines for every
    tier at every rate, and sizes from the run's own tables and Redis."""
    model = load_result(os.path.join(out_dir, "capacity.json"), {}, failures)
    if not os.path.exists(os.path.join(out_dir, "capacity.md")):
        failures.append("no capacity.md next to the result")
    plans = model.get("plans", [])
    if [p["sends_per_s"] for p in plans] != [115000, 400000]:
        failures.append("capacity plans: %r" % [p.get("sends_per_s")
                                                for p in plans])
    for p in plans:
        for t in p["tiers"]:
            if not t["machines"] >= 1:
                failures.append("capacity: %s at %d: %r machines"
                                % (t["tier"], p["sends_per_s"], t["machines"]))
    storage = model.get("storage", {})
    if storage.get("content_bytes") != CONTENT_BYTES:
        failures.append("capacity: content bytes %r" % storage.get("content_bytes"))
    if not storage.get("bytes_per_send", 0) > 2 * CONTENT_BYTES:
        failures.append("capacity: bytes per send %r" % storage.get("bytes_per_send"))
    if not model.get("redis", {}).get("bytes_per_hot_user", 0) > 0:
        failures.append("capacity: no Redis bytes per hot user")


def main():
    out_dir = tempfile.mkdtemp(suffix=".bench-short")
    out = os.path.join(out_dir, "result.json")
    env = dict(os.environ, BENCH_SECONDS="2", BENCH_SEED_ROUNDS="2",
               BENCH_USERS="200", BENCH_CONNECTIONS="16", BENCH_OUT=out,
               MESSENGER_BASE_PORT=os.environ.get("BENCH_BASE_PORT", "23000"))
    env.pop("MESSENGER_VAR", None)
    r = subprocess.run([os.path.join(ROOT, "scripts", "bench")], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=BENCH_TIMEOUT_S)
    text = r.stdout.decode(errors="replace")
    print(text[-4000:])
    failures = []
    if r.returncode != 0:
        failures.append("scripts/bench exited %d" % r.returncode)
    result = load_result(out, {"ceilings": {}, "workloads": {}}, failures)
    for name in CEILINGS:
        if not result["ceilings"].get(name, 0) > 0:
            failures.append("ceiling %s missing or zero" % name)
    # The two ceilings a ratio divides by are each measured before and
    # after the runs compared with them; the ceiling is their mean.
    for name in BRACKETED:
        samples = result["ceilings"].get(name + "_samples", [])
        if len(samples) != 2 or not all(v > 0 for v in samples):
            failures.append("ceiling %s: samples %r" % (name, samples))
        elif abs(result["ceilings"].get(name, 0) - sum(samples) / 2) > 0.1:
            failures.append("ceiling %s is not the mean of %r" % (name, samples))
    for name in WORKLOADS:
        w = result["workloads"].get(name)
        if not w:
            failures.append("workload %s missing" % name)
            continue
        if not w["throughput"] > 0 or not w["requests"] > 0:
            failures.append("workload %s: no throughput" % name)
        if w["non_2xx"] or w["errors"]:
            failures.append("workload %s: %d non-2xx, %d errors (%s)"
                            % (name, w["non_2xx"], w["errors"], w["status"]))
    cpu = result.get("cpu_us_per_request", {})
    for name, components in CPU_RUNS.items():
        c = cpu.get(name)
        if not c:
            failures.append("no CPU per request for %s" % name)
            continue
        for k in components:
            if not c.get(k, 0) > 0:
                failures.append("CPU per request of %s in %s: %r" % (k, name, c.get(k)))
        parts = sum(v for k, v in c.items() if k != "total")
        if abs(c.get("total", -1) - parts) > 0.5:
            failures.append("CPU total of %s is not the sum of its parts" % name)
    late = result.get("late_lease_renewals")
    if not isinstance(late, int) or late < 0:
        failures.append("late_lease_renewals missing from the result: %r" % late)
    check_capacity(out_dir, failures)
    return finish(failures, "PASS test_bench_short: %d workloads, %d ceilings"
                  % (len(WORKLOADS), len(CEILINGS)), out_dir)


if __name__ == "__main__":
    sys.exit(main())
