"""test_bench_ab - bench/ab, the alternating comparison of two values of
one setting, runs end to end: its own cluster on base port 16000, one
pair of one-second delta runs with the cache nodes restarted between them
(CACHE_STORE_LANES 0, then 2), and a result in which each run has
throughput, not one non-2xx answer or connection error, and CPU per
request for the components a delta passes through. bench/ab itself
checks in /proc that each restarted node runs with the value its run is
labelled with, and fails otherwise; the test also checks that it refuses
a tier it does not know.

The figures of a one-second pass on the sanitizer build are not
performance numbers; this proves the tool keeps working.
"""

import os
import subprocess
import sys
import tempfile

from bench_lib import finish, load_result

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AB = os.path.join(ROOT, "bench", "ab")
TIMEOUT_S = 600
DELTA_COMPONENTS = ["nginx", "gateway", "cache", "loadgen"]


def main():
    out_dir = tempfile.mkdtemp(suffix=".bench-ab")
    out = os.path.join(out_dir, "ab.json")
    env = dict(os.environ, MESSENGER_BASE_PORT=os.environ.get("AB_BASE_PORT", "16000"))
    env.pop("MESSENGER_VAR", None)
    failures = []
    bad = subprocess.run([AB, "nginx", "X", "0", "1"], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if bad.returncode != 2:
        failures.append("an unknown tier exited %d, want 2 (usage)" % bad.returncode)
    r = subprocess.run([AB, "--workload", "delta", "--pairs", "1", "--seconds", "1",
                        "--json", out, "cache", "CACHE_STORE_LANES", "0", "2"],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    text = r.stdout.decode(errors="replace")
    print(text[-3000:])
    if r.returncode != 0:
        failures.append("bench/ab exited %d" % r.returncode)
    result = load_result(out, {"runs": {}, "values": {}}, failures)
    if result.get("values") != {"a": "0", "b": "2"}:
        failures.append("values %r" % result.get("values"))
    for arm in ("a", "b"):
        runs = result["runs"].get(arm, [])
        if len(runs) != 1:
            failures.append("arm %s: %d runs, want 1" % (arm, len(runs)))
            continue
        run = runs[0]
        if not run["throughput"] > 0:
            failures.append("arm %s: no throughput" % arm)
        if run["non_2xx"] or run["errors"]:
            failures.append("arm %s: %d non-2xx, %d errors" % (arm, run["non_2xx"],
                                                               run["errors"]))
        for k in DELTA_COMPONENTS:
            if not run["cpu_us"].get(k, 0) > 0:
                failures.append("arm %s: CPU per request of %s: %r"
                                % (arm, k, run["cpu_us"].get(k)))
        if "CACHE_STORE_LANES=%s" % result["values"].get(arm) not in text:
            failures.append("arm %s: no run line names its setting" % arm)
    if "b against a, pair by pair: more requests/s in" not in text:
        failures.append("no summary line")
    return finish(failures, "PASS test_bench_ab: 2 runs, settings checked in /proc",
                  out_dir)


if __name__ == "__main__":
    sys.exit(main())
