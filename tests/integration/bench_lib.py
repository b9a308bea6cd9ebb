"""Shared by the tests of the benchmark tools (test_bench_short,
test_bench_ab): the end of a run that wrote its JSON into a temporary
folder."""

import json
import os


def load_result(out, empty, failures):
    """The JSON a tool wrote to out, or empty (with a failure noted)."""
    try:
        with open(out) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        failures.append("no JSON result: %s" % e)
        return empty


def finish(failures, passed, out, out_dir):
    """Prints each failure, or passed when there is none, removes out and
    its folder, and returns the exit status."""
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(passed)
    try:
        os.remove(out)
        os.rmdir(out_dir)
    except OSError:
        pass
    return 1 if failures else 0
