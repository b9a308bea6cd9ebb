"""The fault schedule: a table of steps, each a fault injected while the
load runs, and what the step expects of the cluster.

A step is (name, verbs it needs, function). The function gets the run's
context (driver.Run) and returns a dict of what it saw; it raises Failed
when the cluster did not do what the step expects, and Skipped when the
cluster lacks what the step needs (a scripts/cluster verb, a standby).
A skipped step is reported as skipped, never as passed.

Each step records when its fault happened (t_fault, on the monotonic
clock of the load's records: for a kill, when scripts/cluster kill
returned, the process being gone by then; for a restart, when the
restart began) and which users it affects, so the driver can compute the
time from the fault to the first acknowledged send of an affected user
that began after it, and the longest gap between acknowledgements of
affected users around the fault.
"""

import re
import time

from ring_model import hash_user, moved_fraction

# How long a step waits for the cluster to react, s.
FAILOVER_WAIT_S = 20.0
JOIN_WAIT_S = 60.0
LEADER_WAIT_S = 20.0
# How long a killed stateless service stays down before its restart, s.
DOWN_S = 3.0


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def need_verbs(run, *verbs):
    missing = [v for v in verbs if not run.cluster.has(v)]
    if missing:
        raise Skipped("verb missing: scripts/cluster %s" % " ".join(missing))


def first_named(names, prefix):
    for n in names:
        if n.startswith(prefix):
            return n
    return None


def standbys(run, ring):
    """Cache nodes that run but own no tokens."""
    return [n for n in run.cluster.names()
            if n.startswith("cache-") and n not in ring.active and n not in run.dead]


def owned_by(ring, users, node):
    return [u for u in users if ring.owner(u) == node]


def moves(run, r0, r1):
    """What a ring change moved: fractions over the run's sample of user
    ids and over the load's users, where the moved users went, and
    whether anyone moved who was not on a node that left."""
    frac, moved = moved_fraction(r0, r1, run.sample_ids)
    load_frac, _ = moved_fraction(r0, r1, run.users)
    went = {}
    came_from = {}
    for u in moved:
        went[r1.owner(u)] = went.get(r1.owner(u), 0) + 1
        came_from[r0.owner(u)] = came_from.get(r0.owner(u), 0) + 1
    return {"epoch_before": r0.epoch, "epoch_after": r1.epoch,
            "active_before": r0.active, "active_after": r1.active,
            "moved_fraction": round(frac, 4), "moved_fraction_load_users": round(load_frac, 4),
            "moved_to": went, "moved_from": came_from, "sample_size": len(run.sample_ids)}


def check_owners(run, ring, users, result):
    """The cache nodes agree with the ring model for a few users, at the
    newest epoch (the router may have moved on since ring was read)."""
    ring = run.cluster.ring() or ring
    agree = 0
    for u in users[:5]:
        statuses = run.cluster.probe_statuses(ring, u)
        serving = [n for n, s in statuses.items() if s == 200]
        if serving == [ring.owner(u)]:
            agree += 1
        else:
            result.setdefault("owner_disagreements", []).append(
                {"user": u, "epoch": ring.epoch, "model": ring.owner(u), "answers": statuses})
    result["owners_checked"] = "%d/%d" % (agree, min(5, len(users)))
    if agree != min(5, len(users)):
        raise Failed("cache nodes disagree with the ring about who owns moved users: %r"
                     % result["owner_disagreements"])


# ------------------------------------------------------------------ steps


def gateway_kill(run, res):
    names = run.cluster.names()
    target = first_named(names, "gateway-")
    if target is None:
        raise Skipped("no gateway in this cluster")
    res["target"] = target
    res["affected"] = "clients whose entry point was %s" % target
    res["affected_entry"] = run.entry_index(target)
    res["t_fault_begin"] = time.monotonic()
    run.cluster.run("kill", target)
    res["t_fault"] = time.monotonic()
    time.sleep(DOWN_S)
    run.cluster.run("restart", target)
    res["down_s"] = round(time.monotonic() - res["t_fault"], 2)


def _kill_cache(run, res, want_standby):
    if not want_standby:
        # The cold move's hit ratio is measured on users that were hot.
        res.update(run.warm_probe_users())
    r0 = run.cluster.ring()
    if r0 is None:
        raise Failed("no router publishes a ring")
    spare = standbys(run, r0)
    res["standbys_before"] = spare
    if want_standby and not spare:
        raise Skipped("no standby cache node in this cluster")
    if not want_standby and spare:
        raise Skipped("a standby is still free (%s): the kill would promote it" % ", ".join(spare))
    # A node that was active from the start, so its users are load users.
    candidates = [n for n in r0.active if n not in run.promoted]
    target = candidates[0]
    res["target"] = target
    res["affected_users"] = owned_by(r0, run.users, target)
    probe_moving = owned_by(r0, run.probe_users, target)
    res["t_fault_begin"] = time.monotonic()
    run.cluster.run("kill", target)
    res["t_fault"] = time.monotonic()
    run.dead.add(target)
    r1, waited = run.cluster.wait_ring(lambda r: r.epoch > r0.epoch and target not in r.active,
                                       FAILOVER_WAIT_S)
    if r1 is None:
        if run.require_failover:
            run.cluster.run("restart", target)
            run.dead.discard(target)
            raise Failed("no new ring without %s within %.0f s of its kill; restarted it"
                         % (target, FAILOVER_WAIT_S))
        # A cluster without failover: the node comes back and its users
        # with it (outbox delivery and Redis rebuild are still exercised).
        time.sleep(DOWN_S)
        run.cluster.run("restart", target)
        run.dead.discard(target)
        res["outcome"] = "no failover in this cluster: killed and restarted"
        res["down_s"] = round(time.monotonic() - res["t_fault"], 2)
        return
    res["ring_change_s"] = round(waited, 3)
    res["moves"] = mv = moves(run, r0, r1)
    strays = {k: v for k, v in mv["moved_from"].items() if k != target}
    if strays:
        raise Failed("users of live nodes moved too: %r" % strays)
    if want_standby:
        new = [n for n in mv["moved_to"] if n not in r0.active]
        if set(mv["moved_to"]) != set(new) or len(new) != 1:
            raise Failed("the dead node's users went to %r, not to one standby" % mv["moved_to"])
        run.promoted.add(new[0])
        res["promoted"] = new[0]
        res["outcome"] = "standby %s took over the tokens of %s" % (new[0], target)
    else:
        if any(n not in r0.active for n in mv["moved_to"]):
            raise Failed("the dead node's users went to a new node: %r" % mv["moved_to"])
        res["outcome"] = "users of %s moved to ring successors %s" % (
            target, ", ".join(sorted(mv["moved_to"])))
        res["hit_ratio"] = run.hit_probe(r1, probe_moving, r1.epoch, "cold move")
    check_owners(run, r1, owned_by(r0, run.probe_users, target), res)


def cache_kill_promote(run, res):
    _kill_cache(run, res, want_standby=True)


def cache_kill_cold(run, res):
    _kill_cache(run, res, want_standby=False)


def cache_kill_any(run, res):
    """The short pass's cache kill: promotion when the cluster has a
    standby, a move to successors when it does not, or (in a cluster
    without failover) a kill followed by a restart."""
    r0 = run.cluster.ring()
    _kill_cache(run, res, want_standby=bool(r0 and standbys(run, r0)))


def router_leader_kill(run, res):
    need_verbs(run, "leader")
    leader = run.cluster.leader()
    if leader is None:
        raise Failed("scripts/cluster leader names no router")
    r0 = run.cluster.ring()
    res["target"] = leader
    res["affected_users"] = "all"
    res["t_fault_begin"] = time.monotonic()
    run.cluster.run("kill", leader)
    res["t_fault"] = time.monotonic()
    deadline = time.monotonic() + LEADER_WAIT_S
    new = None
    while time.monotonic() < deadline:
        new = run.cluster.leader()
        if new and new != leader:
            break
        time.sleep(0.2)
    if not new or new == leader:
        run.cluster.run("restart", leader)
        raise Failed("no other router took the lead within %.0f s" % LEADER_WAIT_S)
    res["new_leader"] = new
    res["takeover_s"] = round(time.monotonic() - res["t_fault"], 2)
    r1 = run.cluster.ring()
    res["epoch_before"] = r0.epoch if r0 else None
    res["epoch_after"] = r1.epoch if r1 else None
    if r0 and r1 and r1.epoch < r0.epoch:
        raise Failed("the new leader went back from epoch %d to %d" % (r0.epoch, r1.epoch))
    run.cluster.run("restart", leader)


def storage_kill(run, res):
    res["target"] = "storage"
    res["affected_users"] = "all"
    res["t_fault_begin"] = time.monotonic()
    run.cluster.run("kill", "storage")
    res["t_fault"] = time.monotonic()
    time.sleep(DOWN_S)
    run.cluster.run("restart", "storage")
    res["down_s"] = round(time.monotonic() - res["t_fault"], 2)


def pg_restart(run, res):
    target = first_named(run.cluster.names(), "pg-")
    index = int(target.split("-")[1]) - 1
    pgs = int(run.cluster.env.get("MESSENGER_PG_INSTANCES", "1"))
    shards = int(run.cluster.env.get("MESSENGER_SHARDS", "16"))
    # Storage's default shard map: shard s lives on instance s % instances.
    res["target"] = target
    res["affected_users"] = [u for u in run.users if (hash_user(u) % shards) % pgs == index]
    res["t_fault"] = time.monotonic()
    run.cluster.run("restart", target)
    res["down_s"] = round(time.monotonic() - res["t_fault"], 2)


def redis_restart(run, res):
    ring = run.cluster.ring()
    node = ring.active[0]
    m = re.fullmatch(r"cache-([0-9]+)", node)
    if not m:
        raise Skipped("cannot tell the Redis of node %s" % node)
    target = "redis-" + m.group(1)
    res["target"] = target
    res["node"] = node
    res["affected_users"] = owned_by(ring, run.users, node)
    res["t_fault"] = time.monotonic()
    run.cluster.run("restart", target)
    res["down_s"] = round(time.monotonic() - res["t_fault"], 2)


def add_node(run, res):
    need_verbs(run, "add-node")
    # The warm handoff can only carry mailboxes that are hot: make every
    # probe user hot on its owner first (earlier kills moved some cold).
    res.update(run.warm_probe_users())
    r0 = run.cluster.ring()
    res["t_fault"] = time.monotonic()
    _, out = run.cluster.run("add-node")
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    name = lines[-1].split()[-1] if lines else ""
    if not re.fullmatch(r"cache-[0-9]+", name):
        raise Failed("add-node printed no node name on its last line: %r" % out[-300:])
    res["target"] = name
    run.added.append(name)
    r1, waited = run.cluster.wait_ring(lambda r: name in r.active, JOIN_WAIT_S)
    if r1 is None:
        raise Failed("%s owns no tokens %.0f s after add-node" % (name, JOIN_WAIT_S))
    res["join_s"] = round(time.monotonic() - res["t_fault"], 2)
    res["moves"] = mv = moves(run, r0, r1)
    n = len(r0.active)
    mv["expected_fraction"] = round(1.0 / (n + 1), 4)
    if set(mv["moved_to"]) != {name}:
        raise Failed("users moved elsewhere than to the new node: %r" % mv["moved_to"])
    res["affected_users"] = [u for u in run.users if r0.owner(u) != r1.owner(u)]
    res["hit_ratio"] = run.hit_probe(r1, [u for u in run.probe_users
                                          if r0.owner(u) != r1.owner(u)], r1.epoch, "warm handoff")
    check_owners(run, r1, [u for u in run.probe_users if r1.owner(u) == name], res)


def remove_node(run, res):
    need_verbs(run, "remove-node")
    r0 = run.cluster.ring()
    target = run.added[-1] if run.added else [n for n in r0.active if n not in run.promoted][-1]
    res["target"] = target
    res["affected_users"] = owned_by(r0, run.users, target)
    res["t_fault"] = time.monotonic()
    run.cluster.run("remove-node", target)
    r1, waited = run.cluster.wait_ring(lambda r: target not in r.active, JOIN_WAIT_S)
    if r1 is None:
        raise Failed("%s still owns tokens %.0f s after remove-node" % (target, JOIN_WAIT_S))
    run.dead.add(target)
    res["leave_s"] = round(time.monotonic() - res["t_fault"], 2)
    res["moves"] = mv = moves(run, r0, r1)
    mv["expected_fraction"] = round(1.0 / len(r0.active), 4)
    strays = {k: v for k, v in mv["moved_from"].items() if k != target}
    if strays:
        raise Failed("users of nodes that stay moved too: %r" % strays)


# name, verbs it needs (informational; the function checks), function
FULL = [
    ("gateway_kill", (), gateway_kill),
    ("cache_kill_promote", (), cache_kill_promote),
    ("cache_kill_cold", (), cache_kill_cold),
    ("router_leader_kill", ("leader",), router_leader_kill),
    ("storage_kill", (), storage_kill),
    ("pg_restart", (), pg_restart),
    ("redis_restart", (), redis_restart),
    ("add_node", ("add-node",), add_node),
    ("remove_node", ("remove-node",), remove_node),
]

SHORT = [
    ("gateway_kill", (), gateway_kill),
    ("cache_kill", (), cache_kill_any),
    ("storage_kill", (), storage_kill),
    ("pg_restart", (), pg_restart),
    ("redis_restart", (), redis_restart),
]
