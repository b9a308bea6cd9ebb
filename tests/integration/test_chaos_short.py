#!/usr/bin/env python3
"""Integration: the short chaos pass. A cluster of its own (sanitizer
build, base port 29000), a load of retrying senders and delta readers,
and a subset of the fault schedule of `make chaos` (tests/chaos/faults.py
SHORT): a gateway SIGKILLed and restarted, a cache node SIGKILLed (its
standby takes over, or its users move to the ring successors), the
storage service SIGKILLed and restarted, a PostgreSQL instance and a
Redis restarted. Then the chaos checker reads every mailbox: the suite
fails on any acknowledged send lost, any duplicate, any order violation,
any delta chain that does not rebuild its list, and on any step whose
fault the cluster did not handle as expected. docs/chaos.md has the
details and the full run.

Run: python3 tests/integration/test_chaos_short.py
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))

import driver  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_CHAOS_SHORT_BASE_PORT", "29000"))


def main():
    build = os.environ.get("MESSENGER_BUILD") or os.path.join(ROOT, "build", "asan")
    start = time.monotonic()
    ok = driver.run("short", BASE_PORT, out_path=None, build=build)
    print("%s test_chaos_short_loses_nothing (%.1fs)" % ("PASS" if ok else "FAIL",
                                                        time.monotonic() - start))
    print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
