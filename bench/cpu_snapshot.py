#!/usr/bin/env python3
"""CPU time used so far by each component of a local cluster.

    cpu_snapshot.py VAR OUT

Writes to OUT a JSON object {component: seconds of CPU, user and system}
for the cluster whose MESSENGER_VAR is VAR: the services of VAR/pid/*.pid
(gateway, cache, storage, router, redis, and lb for nginx) summed by
kind, and every PostgreSQL instance of VAR/pg-*/ (its postmaster; under
the directory VAR/pg.root names, when there is one).

A process counts with its descendants, live or exited: PostgreSQL's
backends and nginx's workers are children of the postmaster and the
master, and the kernel adds a child's time to its parent's when the
child is reaped (cutime, cstime). scripts/bench and bench/ab take one
snapshot before and one after a measured run (loadgen --on-start,
--on-end) and divide the difference by the requests served
(per_request, which both import).
"""
import glob
import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")
KINDS = {"lb": "nginx"}
# What per_request reports, the load generator's own time last.
COMPONENTS = ["nginx", "gateway", "cache", "storage", "redis", "postgres",
              "router", "loadgen"]


def per_request(before, after, result):
    """us of CPU per request of each component, and their total, between
    two snapshots around a run whose loadgen result is result (its
    requests, and its own cpu_ms); None for a run without requests."""
    n = result["requests"]
    if not n:
        return None
    us = {k: (after.get(k, 0) - before.get(k, 0)) * 1e6 / n
          for k in COMPONENTS if k != "loadgen"}
    us["loadgen"] = result.get("cpu_ms", 0) * 1e3 / n
    us["total"] = sum(us.values())
    return {k: round(v, 1) for k, v in us.items()}


def read_stats():
    """{pid: (ppid, own ticks, reaped children's ticks)} of every process."""
    stats = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:  # the process ended meanwhile
            continue
        # The command name may hold spaces: fields start after its ')'.
        fields = text[text.rindex(")") + 2:].split()
        pid = int(path.split("/")[2])
        # fields[1] is the ppid; 11-14 are utime, stime, cutime, cstime.
        stats[pid] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                      int(fields[13]) + int(fields[14]))
    return stats


def tree_ticks(root, stats, children):
    """Ticks of root and its live descendants, reaped ones included."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid not in stats:
            continue
        _, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, ()))
    return total


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def roots(var):
    """(component, pid) of every process to count."""
    for path in sorted(glob.glob(os.path.join(var, "pid", "*.pid"))):
        name = os.path.basename(path)[:-len(".pid")]
        kind = name.split("-")[0]
        pid = read_pid(path)
        if pid:
            yield KINDS.get(kind, kind), pid
    # scripts/cluster may keep PostgreSQL's data outside VAR (pg.root).
    pg_root = var
    try:
        with open(os.path.join(var, "pg.root")) as f:
            pg_root = f.read().strip() or var
    except OSError:
        pass
    for path in sorted(glob.glob(os.path.join(pg_root, "pg-*", "data",
                                              "postmaster.pid"))):
        pid = read_pid(path)
        if pid:
            yield "postgres", pid


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cpu_snapshot.py VAR OUT")
    var, out = sys.argv[1:3]
    stats = read_stats()
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    seconds = {}
    for kind, pid in roots(var):
        ticks = tree_ticks(pid, stats, children)
        seconds[kind] = seconds.get(kind, 0.0) + ticks / TICKS
    with open(out, "w") as f:
        json.dump(seconds, f)


if __name__ == "__main__":
    main()
