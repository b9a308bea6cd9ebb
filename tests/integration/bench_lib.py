"""Shared by the tests of the benchmark tools (test_bench_short,
test_bench_ab, test_bench_summary, test_capacity): results written for
a tool to read, and the end of a run that wrote its JSON into a
temporary folder."""

import json
import os
import shutil


def load_result(out, empty, failures):
    """The JSON a tool wrote to out, or empty (with a failure noted)."""
    try:
        with open(out) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        failures.append("no JSON result: %s" % e)
        return empty


def write_results(d, results):
    """Writes results as run-1.json, run-2.json... into d, as BENCH_RUNS=N
    make bench does; returns their paths."""
    paths = []
    for i, r in enumerate(results):
        paths.append(os.path.join(d, "run-%d.json" % (i + 1)))
        with open(paths[-1], "w") as f:
            json.dump(r, f)
    return paths


def finish(failures, passed, out_dir):
    """Prints each failure, or passed when there is none, removes the
    temporary folder the tool wrote into, and returns the exit status."""
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(passed)
    shutil.rmtree(out_dir, ignore_errors=True)
    return 1 if failures else 0
