#!/usr/bin/env python3
"""The capacity model of docs/capacity.md, computed from make bench's
measured figures.

    capacity.py OUT_PREFIX RESULT.json [RESULT.json ...]

Reads one or more results of scripts/bench and writes OUT_PREFIX.json
and OUT_PREFIX.md (the tables of docs/capacity.md), and prints the
latter. Every figure it starts from is the median over the results of:

- the CPU per request of each component (bench/cpu_snapshot.py) in the
  runs at half of each workload's peak (send-half, delta-half,
  messages-half, conversations-half): a request at a moderate rate pays
  for its own wake-ups, where a saturated one shares them, so a model
  built on these is on the safe side;
- the bytes on disk per row of each table, indexes and TOAST included,
  after the run (pg_total_relation_size over n_live_tup);
- Redis's used memory per hot user over the cache nodes' Redis.

Every assumption is a constant below, with why; scripts/bench runs this
after every make bench, so a deployment plans from its own machines'
figures by running make bench there.
"""
import json
import math
import statistics
import sys

from summarize import load_results

# Sends per second to plan for: 10 billion a day is 115,741/s on
# average; the peak is about three and a half times that.
SEND_RATES = [115_000, 400_000]
# Reads per send: "several times more" in the contract. A third each of
# deltas, message pages and conversation lists.
READS_PER_SEND = 5
READ_MIX = {"delta-half": 1 / 3, "messages-half": 1 / 3,
            "conversations-half": 1 / 3}
SEND_RUN = "send-half"
# A machine: 32 vCPU, planned at 60% busy, the rest headroom for a lost
# zone's share and for bursts.
MACHINE_VCPU = 32
PLANNED_BUSY = 0.6
# Redis is single-threaded: one redis-server per cache node, each
# planned at this share of one core, sets the number of cache nodes.
REDIS_CORE_SHARE = 0.6
# Tiers and the components of the benchmark cluster that each one runs.
# The routers' cost follows the number of nodes, not requests (three
# small replicas), and the load generator is the clients': neither is
# planned here.
TIERS = [
    ("PostgreSQL primaries", ["postgres"]),
    ("cache nodes with their Redis", ["cache", "redis"]),
    ("storage", ["storage"]),
    ("gateways", ["gateway"]),
    ("load balancers (nginx)", ["nginx"]),
]
# Logical shards to create the data with (STORAGE_SHARDS is fixed for
# the data's life; shards move between instances by the shard map).
LOGICAL_SHARDS = 4096
# Stored per send: one message row per copy and one idempotency key
# (kept forever, SPEC 4); conversations and mailboxes grow with pairs
# and users, not sends, and the outbox is empty at rest.
ROWS_PER_SEND = {"messages": 2, "idempotency_keys": 1}
SENDS_PER_DAY = 10_000_000_000
# One synchronous standby per primary holds a second copy.
DATA_COPIES = 2
# Users with a hot mailbox at once: a tenth of 300 million.
ACTIVE_USERS = 30_000_000


def median_of(results, get):
    values = [get(r) for r in results]
    return statistics.median(values)


def cpu_figures(results):
    """{run: {component: us}}, medians over the results."""
    runs = [SEND_RUN] + list(READ_MIX)
    for r in results:
        missing = [n for n in runs if n not in r.get("cpu_us_per_request",
                                                     {})]
        if missing:
            raise ValueError("%s has no CPU figures for %s (a result of an "
                             "older scripts/bench?)" % (r.get("date", "?"),
                                                        ", ".join(missing)))
    comps = {c for _, cs in TIERS for c in cs}
    return {n: {c: median_of(results,
                             lambda r: r["cpu_us_per_request"][n][c])
                for c in sorted(comps)} for n in runs}


def read_cost(cpu, comp):
    """us of CPU per average read of one component."""
    return sum(share * cpu[n][comp] for n, share in READ_MIX.items())


def plan(cpu, sends):
    """Cores and machines of each tier at a send rate with its reads."""
    reads = sends * READS_PER_SEND
    usable = MACHINE_VCPU * PLANNED_BUSY
    tiers = []
    for name, comps in TIERS:
        send_cores = sum(sends * cpu[SEND_RUN][c] for c in comps) / 1e6
        read_cores = sum(reads * read_cost(cpu, c) for c in comps) / 1e6
        cores = send_cores + read_cores
        tiers.append({"tier": name, "send_cores": round(send_cores, 1),
                      "read_cores": round(read_cores, 1),
                      "cores": round(cores, 1),
                      "machines": max(1, math.ceil(cores / usable))})
    pg = tiers[0]
    redis_cores = (sends * cpu[SEND_RUN]["redis"] +
                   reads * read_cost(cpu, "redis")) / 1e6
    cache_nodes = max(1, math.ceil(redis_cores / REDIS_CORE_SHARE))
    standbys = {"tier": "PostgreSQL synchronous standbys (one per primary)",
                "send_cores": None, "read_cores": None, "cores": None,
                "machines": pg["machines"]}
    tiers.insert(1, standbys)
    return {"sends_per_s": sends, "reads_per_s": reads, "tiers": tiers,
            "machines": sum(t["machines"] for t in tiers),
            "redis_cores": round(redis_cores, 1),
            "cache_nodes": cache_nodes,
            "sends_per_primary": round(sends / pg["machines"]),
            "shards_per_primary": math.ceil(LOGICAL_SHARDS / pg["machines"])}


def bytes_per_row(results, table):
    def one(r):
        t = r["storage"][table]
        return t["bytes"] / t["rows"] if t["rows"] else 0.0
    return median_of(results, one)


def storage(results):
    rows = {t: round(bytes_per_row(results, t))
            for t in sorted(results[0]["storage"])}
    per_send = sum(n * rows[t] for t, n in ROWS_PER_SEND.items())
    per_day = per_send * SENDS_PER_DAY
    content = median_of(results, lambda r: r["workloads"]["send"]
                        .get("content_bytes", 0))
    return {"bytes_per_row": rows, "bytes_per_send": per_send,
            "content_bytes": content,
            "tb_per_day": round(per_day / 1e12, 1),
            "pb_per_year": round(per_day * 365 / 1e15, 2),
            "tb_per_day_all_copies": round(per_day * DATA_COPIES / 1e12, 1),
            "pb_per_year_all_copies": round(per_day * 365 * DATA_COPIES /
                                            1e15, 2)}


def redis_memory(results, plans):
    per_user = median_of(results, lambda r: r["redis"]["used_bytes"] /
                         r["redis"]["hot_users"]
                         if r["redis"]["hot_users"] else 0.0)
    total = per_user * ACTIVE_USERS
    return {"bytes_per_hot_user": round(per_user),
            "active_users": ACTIVE_USERS,
            "total_gb": round(total / 1e9),
            "gb_per_cache_node": {str(p["sends_per_s"]):
                                  round(total / p["cache_nodes"] / 1e9, 1)
                                  for p in plans}}


def model(results):
    if not results:
        raise ValueError("no results")
    cpu = cpu_figures(results)
    plans = [plan(cpu, s) for s in SEND_RATES]
    return {"results": len(results),
            "dates": [r["date"] for r in results],
            "ceilings": {
                "pgbench_send_tps": median_of(
                    results, lambda r: r["ceilings"]["pgbench_send_tps"]),
                "echo_rps": median_of(results,
                                      lambda r: r["ceilings"]["echo_rps"])},
            "rates": {n: median_of(results, lambda r: r["workloads"][n]
                                   ["throughput"]) for n in cpu},
            "cpu_us_per_request": cpu,
            "cpu_us_per_read": {c: round(read_cost(cpu, c), 1)
                                for c in cpu[SEND_RUN]},
            "plans": plans, "storage": storage(results),
            "redis": redis_memory(results, plans)}


def markdown(m):
    out = []
    say = out.append
    say("Capacity model from %d result(s) of make bench: %s." %
        (m["results"], ", ".join(m["dates"])))
    say("The host's ceilings in those runs (medians): pgbench %s tx/s, "
        "echo %s req/s." % ("{:,.0f}".format(m["ceilings"]["pgbench_send_tps"]),
                            "{:,.0f}".format(m["ceilings"]["echo_rps"])))
    say("")
    say("CPU per request at half of each workload's peak, us (medians):")
    say("")
    runs = list(m["cpu_us_per_request"])
    say("| component | " + " | ".join(
        "%s (%.0f/s)" % (n, m["rates"][n]) for n in runs) +
        " | average read |")
    say("| --- |" + " --- |" * (len(runs) + 1))
    for comp in m["cpu_us_per_request"][SEND_RUN]:
        say("| %s | " % comp + " | ".join(
            "%.0f" % m["cpu_us_per_request"][n][comp] for n in runs) +
            " | %.0f |" % m["cpu_us_per_read"][comp])
    say("")
    say("Machines of %d vCPU planned at %d%% busy (%.1f usable cores), "
        "%d reads per send:" % (MACHINE_VCPU, PLANNED_BUSY * 100,
                                MACHINE_VCPU * PLANNED_BUSY, READS_PER_SEND))
    say("")
    head = "| tier |"
    rule = "| --- |"
    for p in m["plans"]:
        head += " cores at %dk sends/s (sends + reads) | machines |" % (
            p["sends_per_s"] // 1000)
        rule += " --- | --- |"
    say(head)
    say(rule)
    for i, t in enumerate(m["plans"][0]["tiers"]):
        line = "| %s |" % t["tier"]
        for p in m["plans"]:
            pt = p["tiers"][i]
            cores = ("%.1f + %.1f = %.0f" % (pt["send_cores"],
                                             pt["read_cores"], pt["cores"])
                     if pt["cores"] is not None else "as the primaries")
            line += " %s | %d |" % (cores, pt["machines"])
        say(line)
    line = "| **total** |"
    for p in m["plans"]:
        line += " | **%d** |" % p["machines"]
    say(line)
    say("")
    for p in m["plans"]:
        say("- At %dk sends/s: Redis %.1f cores, so **%d cache nodes** "
            "(one redis-server each at %.1f of a core); %s sends/s per "
            "PostgreSQL primary; %s logical shards make %d per primary." % (
                p["sends_per_s"] // 1000, p["redis_cores"], p["cache_nodes"],
                REDIS_CORE_SHARE, "{:,}".format(p["sends_per_primary"]),
                "{:,}".format(LOGICAL_SHARDS), p["shards_per_primary"]))
    s = m["storage"]
    say("")
    content = ("content of %d bytes" % s["content_bytes"]
               if s["content_bytes"] else "content size not recorded")
    say("Bytes on disk per row, indexes and TOAST included (%s): " % content
        + ", ".join(
            "%s %d" % (t, b) for t, b in s["bytes_per_row"].items()) + ".")
    say("Per send (%s): **%s bytes**; %s sends a day: **%.1f TB/day, "
        "%.2f PB/year** per copy, **%.1f TB/day, %.2f PB/year** with one "
        "standby copy." % (
            " + ".join("%d x %s" % (n, t) for t, n in ROWS_PER_SEND.items()),
            "{:,}".format(s["bytes_per_send"]), "{:,}".format(SENDS_PER_DAY),
            s["tb_per_day"], s["pb_per_year"], s["tb_per_day_all_copies"],
            s["pb_per_year_all_copies"]))
    r = m["redis"]
    say("")
    say("Redis: **%s bytes per hot user**; %s active users: **%s GB** "
        "in all, " % ("{:,}".format(r["bytes_per_hot_user"]),
                      "{:,}".format(r["active_users"]),
                      "{:,}".format(r["total_gb"])) +
        " and ".join("%.1f GB per cache node at %dk sends/s" % (
            r["gb_per_cache_node"][str(p["sends_per_s"])],
            p["sends_per_s"] // 1000) for p in m["plans"]) + ".")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: capacity.py OUT_PREFIX RESULT.json [RESULT.json ...]")
    try:
        m = model(load_results(sys.argv[2:]))
    except (KeyError, ValueError) as e:
        sys.exit("capacity.py: %s" % e)
    text = markdown(m)
    with open(sys.argv[1] + ".json", "w") as f:
        json.dump(m, f, indent=1)
    with open(sys.argv[1] + ".md", "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
