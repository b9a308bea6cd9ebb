#!/usr/bin/env python3
"""The chaos driver: starts a cluster, runs the load, injects the fault
schedule, checks every mailbox, and prints and writes the figures.

    python3 tests/chaos/driver.py --mode full|short --base-port PORT
                                  [--out FILE.json] [--keep-var]

The cluster is started with scripts/cluster in a new temporary
MESSENGER_VAR (MESSENGER_BUILD chooses the build: build/release for
`make chaos`, build/asan inside `make test`), and cleaned afterwards
whatever happens (also on SIGTERM and Ctrl-C). Exit status: 0 when every
step that ran passed and the checker found no violation, 1 otherwise.

Modes (docs/chaos.md): full is the whole schedule of faults.FULL with at
least --min-acked acknowledged sends; short is faults.SHORT with a
smaller load, sized for a few minutes under the sanitizers.
"""

import argparse
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)

import e2e_lib  # noqa: E402
from e2e_lib import Api, TestFailure  # noqa: E402

import checker  # noqa: E402
import faults  # noqa: E402
from cluster_ctl import Cluster  # noqa: E402
from load import Load, token_of  # noqa: E402

MODES = {
    # users, peers per user, probe pairs, sender threads, reader threads,
    # sends/s, pause after each step (s), minimum acknowledged sends,
    # longest extra load to reach it (s)
    "full": dict(users=200, peers=6, probe_pairs=150, senders=32, readers=4, rate=150.0,
                 pause_s=15.0, min_acked=10000, extra_s=300.0, warmup_s=10.0),
    "short": dict(users=60, peers=4, probe_pairs=40, senders=8, readers=2, rate=30.0,
                  pause_s=6.0, min_acked=0, extra_s=0.0, warmup_s=4.0),
}
# After the load: first wait for the outbox, then re-check while copies
# are still missing, up to SETTLE_MAX_S in all.
SETTLE_S = 8.0
SETTLE_RETRY_S = 10.0
SETTLE_MAX_S = 60.0
# Synthetic user ids over which moved fractions are computed.
SAMPLE_IDS = 20000
PROBE_MESSAGES = 3
# What a sanitizer writes when it finds something (as scripts/run-tests).
SANITIZER_REPORT = re.compile(rb"ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:")


class Interrupted(Exception):
    pass


def log(msg):
    print("chaos: %s" % msg, flush=True)


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Run:
    """One chaos run: the cluster, the users, the load and the results."""

    def __init__(self, mode, cluster, require_failover):
        self.mode = mode
        self.cfg = MODES[mode]
        self.cluster = cluster
        self.require_failover = require_failover
        self.rng = random.SystemRandom()
        self.users = []
        self.peers = {}
        self.probe_users = []
        self.probe_pairs = []
        self.sample_ids = []
        self.dead = set()
        self.promoted = set()
        self.added = []
        self.load = None
        self.apis = []
        self.entry_names = []
        self.steps = []
        self.t0 = time.monotonic()

    # ----------------------------------------------------------- set-up

    def setup(self):
        env = self.cluster.env
        lb = Api(env)
        self.apis = [lb] + [g for g in lb.gateways() if g is not lb]
        self.entry_names = ["lb"] + ["gateway-%d" % (i + 1) for i in range(len(self.apis) - 1)]
        self.api = lb
        self.users = e2e_lib.new_users(self.cfg["users"])
        self.peers = self._peer_graph(self.users, self.cfg["peers"])
        self.probe_users = e2e_lib.new_users(2 * self.cfg["probe_pairs"])
        self.probe_pairs = list(zip(self.probe_users[0::2], self.probe_users[1::2]))
        self.sample_ids = [self.rng.randint(1, 2**53 - 1) for _ in range(SAMPLE_IDS)]
        ring = self.cluster.ring()
        if ring is None:
            raise TestFailure("no router publishes a ring")
        self.ring_check = self._check_ring_model(ring)
        self._check_first_token()
        self._fill_probe_users()

    def _peer_graph(self, users, k):
        """Each user writes to about k fixed peers (symmetric), so
        conversations grow long enough for order checks to bite."""
        peers = {u: set() for u in users}
        order = list(users)
        for _ in range(k):
            self.rng.shuffle(order)
            for a, b in zip(order[0::2], order[1::2]):
                peers[a].add(b)
                peers[b].add(a)
        return {u: sorted(p) for u, p in peers.items()}

    def _check_ring_model(self, ring):
        """ring_model places users as the cache nodes do."""
        users = self.users[:12]
        agree = sum(1 for u in users if self.cluster.probe_owner(ring, u) == [ring.owner(u)])
        if agree != len(users):
            raise TestFailure("ring model disagrees with the cache nodes for %d of %d users"
                              % (len(users) - agree, len(users)))
        log("ring epoch %d, active %s; ring model agrees with the cache nodes for %d/%d users"
            % (ring.epoch, ",".join(ring.active), agree, len(users)))
        return "%d/%d" % (agree, len(users))

    def _check_first_token(self):
        u = self.users[0]
        r = self.api.convs(u, query={"since": token_of("c", u)})
        e2e_lib.expect_status(r, 200)
        if not r.json["is_delta_update"] or r.json["conversations"]:
            raise TestFailure("the first token of an empty list is not an empty delta: %s"
                              % r.describe())

    def _fill_probe_users(self):
        """Probe users hold a small hot mailbox and take no part in the
        load, so reading them right after a move shows whether the new
        owner received their hot mailbox (hits) or starts cold (misses)."""
        for a, b in self.probe_pairs:
            for i in range(PROBE_MESSAGES):
                s, r = (a, b) if i % 2 == 0 else (b, a)
                self._send_retrying(s, r, "probe %d" % i)
            self._read_probe(a)
            self._read_probe(b)
        log("%d probe users hold %d messages each" % (len(self.probe_users), PROBE_MESSAGES))

    def _send_retrying(self, s, r, content):
        cmid = e2e_lib.new_cmid("probe")
        for _ in range(20):
            try:
                resp = self.api.send(s, r, content, cmid)
                if resp.status in (200, 201):
                    return
            except TestFailure:
                pass
            time.sleep(0.5)
        raise TestFailure("probe send from %d never acknowledged" % s)

    def _read_probe(self, u):
        """Conversation list and the first message page of user u: 2 reads.
        Returns the seconds they took, or None when one failed."""
        start = time.monotonic()
        peer = next(b if a == u else a for a, b in self.probe_pairs if u in (a, b))
        try:
            r1 = self.api.convs(u)
            r2 = self.api.msgs(u, "%d_%d" % (min(u, peer), max(u, peer)))
        except TestFailure:
            return None
        if r1.status != 200 or r2.status != 200:
            return None
        return time.monotonic() - start

    def warm_probe_users(self):
        """Reads every probe user once, so each is hot on its owner before
        a move (earlier steps may have moved some cold)."""
        failed = sum(1 for u in self.probe_users if self._read_probe(u) is None)
        return {"probe_users_warmed": len(self.probe_users), "warm_reads_failed": failed}

    def entry_index(self, name):
        return self.entry_names.index(name) if name in self.entry_names else None

    # --------------------------------------------------------- hit probe

    def hit_probe(self, ring, users, epoch, label):
        """Cache hit ratio of moved users right after a move: holds the
        load still, reads each moved probe user once (conversation list
        and first message page), and compares the cache nodes'
        cache_hits_total and cache_misses_total before and after."""
        t_move = time.monotonic()
        idle = self.load.gate.close(idle_timeout_s=30.0)
        try:
            urls = [ring.url_of(n) for n in ring.active]
            before = [self.cluster.metrics(u) for u in urls]
            started = time.monotonic()
            took = [self._read_probe(u) for u in users]
            after = [self.cluster.metrics(u) for u in urls]
        finally:
            self.load.gate.open()
        hits = misses = 0.0
        for b, a in zip(before, after):
            if b is None or a is None:
                continue
            hits += a.get("cache_hits_total", 0.0) - b.get("cache_hits_total", 0.0)
            misses += a.get("cache_misses_total", 0.0) - b.get("cache_misses_total", 0.0)
        ok = [t for t in took if t is not None]
        out = {"kind": label, "moved_probe_users": len(users), "reads": 2 * len(users),
               "failed_reads": len(took) - len(ok), "hits": int(hits), "misses": int(misses),
               "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None,
               "probe_started_s_after_move": round(started - t_move, 2),
               "load_idle": idle,
               "read_pair_p50_ms": round(1000 * statistics.median(ok), 1) if ok else None}
        log("hit ratio after %s: %s (%d hits, %d misses, %d moved probe users)"
            % (label, out["hit_ratio"], hits, misses, len(users)))
        return out

    # ------------------------------------------------------------- steps

    def run_steps(self, table):
        for name, verbs, fn in table:
            res = {"step": name}
            started = time.monotonic()
            log("step %s ..." % name)
            try:
                missing = [v for v in verbs if not self.cluster.has(v)]
                if missing:
                    raise faults.Skipped("verb missing: scripts/cluster %s" % " ".join(missing))
                fn(self, res)
                res["status"] = "passed"
            except faults.Skipped as e:
                res["status"] = "skipped"
                res["reason"] = str(e)
            except (faults.Failed, TestFailure) as e:
                res["status"] = "failed"
                res["reason"] = str(e)[:1000]
            res["t_start"] = started
            res["t_end"] = time.monotonic()
            log("step %s: %s%s" % (name, res["status"],
                                   " (%s)" % res["reason"] if "reason" in res else
                                   " (%s)" % res["outcome"] if "outcome" in res else ""))
            self.steps.append(res)
            if res["status"] != "skipped":
                time.sleep(self.cfg["pause_s"])

    def extend_load(self):
        """Keeps the load running until min_acked sends are acknowledged
        (bounded by extra_s)."""
        deadline = time.monotonic() + self.cfg["extra_s"]
        while self.load.acked_count() < self.cfg["min_acked"] and time.monotonic() < deadline:
            time.sleep(1.0)

    # ------------------------------------------------------------ figures

    @staticmethod
    def _max_gap(records, st, affected, t_end):
        """Longest time without an acknowledged send of an affected user,
        from the fault to the end of the step's window (the outage those
        users saw; all users when the step names none)."""
        t = st.get("t_fault_begin", st["t_fault"])
        aset = set(affected) if isinstance(affected, list) else None
        acks = sorted(r.ack_time for r in records if r.acked and t <= r.ack_time < t_end and
                      (aset is None or r.sender in aset))
        if not acks:
            return None
        gaps = [acks[0] - t] + [b - a for a, b in zip(acks, acks[1:])]
        return round(max(gaps), 3)

    def step_figures(self, records):
        """Per step: sends in its window, and the time from the fault to
        the first acknowledged send of an affected user that began after
        it."""
        for i, st in enumerate(self.steps):
            t_end = self.steps[i + 1]["t_start"] if i + 1 < len(self.steps) else float("inf")
            window = [r for r in records if st["t_start"] <= r.first_start < t_end]
            errs = {}
            for r in window:
                for k, v in r.errors.items():
                    errs[str(k)] = errs.get(str(k), 0) + v
            st["window_sends"] = len(window)
            st["window_acknowledged"] = sum(1 for r in window if r.acked)
            st["window_failed_attempts"] = errs
            t = st.get("t_fault")
            if t is None:
                continue
            affected = st.get("affected_users")
            entry = st.get("affected_entry")
            if isinstance(affected, list):
                aset = set(affected)
                cand = [r for r in records if r.acked and r.sender in aset and r.ack_start >= t]
                st["affected_users"] = len(affected)
            elif entry is not None:
                cand = [r for r in records if r.acked and r.first_entry == entry and
                        r.first_start >= t]
            else:
                cand = [r for r in records if r.acked and r.ack_start >= t]
            first = min((r.ack_time for r in cand), default=None)
            st["first_ack_after_fault_s"] = round(first - t, 3) if first is not None else None
            st["max_ack_gap_s"] = self._max_gap(records, st, affected, t_end)
        for st in self.steps:
            for k in ("t_start", "t_end", "t_fault", "t_fault_begin"):
                if k in st:
                    st[k] = round(st[k] - self.t0, 3)


def run(mode, base_port, out_path, keep_var=False, build=None):
    """One chaos run on a cluster of its own; returns True when it passed.
    build: the build folder (default MESSENGER_BUILD, else build/release)."""
    cfg = MODES[mode]
    var = tempfile.mkdtemp(suffix=".messenger-chaos")
    build = build or os.environ.get("MESSENGER_BUILD", "build/release")
    extra = {"MESSENGER_BUILD": build,
             # The load's own users must not hit the per-user send limit.
             "GATEWAY_SEND_RATE": "1000", "GATEWAY_SEND_BURST": "2000"}
    cluster = Cluster(var, base_port, extra)
    result = {"mode": mode, "base_port": base_port, "build": build, "config": cfg,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ok = False

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    run_ = None
    try:
        log("starting a cluster in %s on base port %d (%s)" % (var, base_port, build))
        cluster.start()
        verbs = sorted(v for v in ("kill", "restart", "pause", "resume", "add-node",
                                   "remove-node", "leader") if cluster.has(v))
        result["verbs"] = verbs
        require = mode == "full" or cluster.has("leader") or cluster.has("pause")
        run_ = Run(mode, cluster, require_failover=require)
        run_.setup()
        result["ring_model_check"] = run_.ring_check
        run_.load = Load(run_.apis, run_.users, run_.peers, senders=cfg["senders"],
                         readers=cfg["readers"], rate=cfg["rate"])
        log("load: %d users, %d sender threads, %d readers, %.0f sends/s, entry points %s"
            % (len(run_.users), cfg["senders"], cfg["readers"], cfg["rate"],
               ", ".join(run_.entry_names)))
        run_.load.start()
        time.sleep(cfg["warmup_s"])
        run_.run_steps(faults.FULL if mode == "full" else faults.SHORT)
        run_.extend_load()
        log("stopping the load (%d acknowledged so far)" % run_.load.acked_count())
        stuck = run_.load.stop()
        if stuck:
            raise TestFailure("load threads did not stop: %s" % stuck)
        load_seconds = time.monotonic() - run_.t0
        records = run_.load.snapshot_records()
        result["down_after_run"] = [n for n in cluster.down() if n not in run_.dead]
        t_settle = time.monotonic()
        time.sleep(SETTLE_S)
        still_missing = []
        while True:
            figures = checker.check(run_.load, run_.api, run_.users, records,
                                    follow=True)
            waited = time.monotonic() - t_settle
            healing = figures["lost"] + figures["one_sided"]
            if not healing or waited + SETTLE_RETRY_S > SETTLE_MAX_S:
                break
            # Copies still in an outbox land later; say so, then look again.
            still_missing.append({"after_s": round(waited, 1), "missing_copies": healing,
                                  "examples": figures["examples"].get("lost", [])[:3]})
            log("%d copies still missing after %.0f s; checking again" % (healing, waited))
            time.sleep(SETTLE_RETRY_S)
        figures["settle_s"] = round(waited, 1)
        figures["missing_before_settled"] = still_missing
        missed = checker.selftest(run_.load, records, figures.pop("_boxes"))
        figures["checker_selftest"] = "; ".join(missed) if missed else "passed"
        run_.step_figures(records)
        result.update(summarise(run_, figures, records, load_seconds))
        result["sanitizer_reports"] = sanitizer_reports(var)
        ok = result["passed"] = result["passed"] and not result["sanitizer_reports"] and \
            not result["down_after_run"]
    except Interrupted as e:
        result["error"] = "interrupted (%s)" % e
    except TestFailure as e:
        result["error"] = str(e)[:2000]
    finally:
        if run_ is not None and run_.load is not None and not run_.load.stop_flag.is_set():
            run_.load.stop()
        if run_ is not None and "steps" not in result:
            result["steps"] = run_.steps
        if keep_var:
            cluster.run("stop", check_rc=False)
            log("cluster stopped; state kept in %s" % var)
        else:
            cluster.clean()
            try:
                os.rmdir(var)
            except OSError:
                pass
        for s, h in old.items():
            signal.signal(s, h)
    result["passed"] = ok
    print_figures(result)
    if out_path:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True, default=str)
        log("result written to %s" % out_path)
    return ok


def sanitizer_reports(var):
    """Service logs of the cluster that hold a sanitizer report (an ASan
    or UBSan error aborts the service; the sanitizer build of the short
    pass would show it here)."""
    found = []
    logs = os.path.join(var, "log")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        with open(os.path.join(logs, name), "rb") as f:
            text = f.read()
        if SANITIZER_REPORT.search(text):
            found.append(name)
    return found


def summarise(run_, figures, records, load_seconds):
    steps = run_.steps
    kills = [s for s in steps if s["step"].startswith(("cache_kill",)) and
             s["status"] == "passed" and s.get("first_ack_after_fault_s") is not None and
             "moves" in s]
    any_kill = [s for s in steps if s["status"] == "passed" and
                s.get("first_ack_after_fault_s") is not None]
    fo = [s["first_ack_after_fault_s"] for s in kills]
    fo_all = [s["first_ack_after_fault_s"] for s in any_kill]
    moves = {s["step"]: s["moves"] for s in steps if "moves" in s}
    hits = {s["step"]: s["hit_ratio"] for s in steps if "hit_ratio" in s}
    failed = [s["step"] for s in steps if s["status"] == "failed"]
    skipped = [s["step"] for s in steps if s["status"] == "skipped"]
    enough = figures["acknowledged"] >= run_.cfg["min_acked"]
    passed = figures["violations"] == 0 and not failed and enough and \
        figures["checker_selftest"] == "passed"
    return {
        "figures": figures,
        "load_seconds": round(load_seconds, 1),
        "acknowledged_per_s": round(figures["acknowledged"] / load_seconds, 1),
        "read_status": {str(k): v for k, v in run_.load.read_status.items()},
        "failover_cache_kills_s": {"median": round(statistics.median(fo), 3) if fo else None,
                                   "max": max(fo) if fo else None, "count": len(fo)},
        "recovery_all_faults_s": {"median": round(statistics.median(fo_all), 3) if fo_all else None,
                                  "max": max(fo_all) if fo_all else None, "count": len(fo_all)},
        "moves": moves,
        "hit_ratios": hits,
        "steps": steps,
        "steps_failed": failed,
        "steps_skipped": skipped,
        "enough_acknowledged": enough,
        "passed": passed,
    }


def print_figures(result):
    print()
    print("== chaos %s run: %s" % (result["mode"], "PASSED" if result.get("passed") else "FAILED"))
    if result.get("error"):
        print("error: %s" % result["error"])
    if result.get("down_after_run"):
        print("down after the run (not killed by the schedule): %s"
              % ", ".join(result["down_after_run"]))
    if result.get("sanitizer_reports"):
        print("sanitizer reports in: %s" % ", ".join(result["sanitizer_reports"]))
    print("verbs: %s" % ", ".join(result.get("verbs", [])))
    print()
    print("%-20s %-8s %9s %8s %9s %s" % ("step", "status", "to 1st ok", "max gap", "sends",
                                          "what happened"))
    for s in result.get("steps", []):
        fa = s.get("first_ack_after_fault_s")
        what = s.get("reason") or s.get("outcome") or s.get("target", "")
        if s["status"] == "skipped":
            what = "skipped (%s)" % s.get("reason", "")
        gap = s.get("max_ack_gap_s")
        print("%-20s %-8s %9s %8s %9s %s" % (
            s["step"], s["status"], "%.3fs" % fa if fa is not None else "-",
            "%.2fs" % gap if gap is not None else "-",
            "%s/%s" % (s.get("window_acknowledged", "-"), s.get("window_sends", "-")), what))
    f = result.get("figures")
    if not f:
        return
    print()
    for k in ("sends", "acknowledged", "unacknowledged", "unacknowledged_landed", "lost",
              "duplicated", "order_violations", "one_sided", "mismatched", "unknown",
              "rejected", "half_writes", "delta_mismatches", "unreadable_users",
              "per_sender_pairs_checked", "delta_chains_checked", "delta_replays_checked",
              "stored_copies", "settle_s", "checker_selftest"):
        print("%-28s %s" % (k, f.get(k)))
    print("%-28s %s" % ("acknowledged per s", result.get("acknowledged_per_s")))
    fo = result.get("failover_cache_kills_s", {})
    print("%-28s median %s s, max %s s (%d kills)" % (
        "failover, cache kills", fo.get("median"), fo.get("max"), fo.get("count", 0)))
    ra = result.get("recovery_all_faults_s", {})
    print("%-28s median %s s, max %s s (%d faults)" % (
        "first ok send, all faults", ra.get("median"), ra.get("max"), ra.get("count", 0)))
    for step, mv in result.get("moves", {}).items():
        print("%-28s %.4f of users moved (expected %s; load users %.4f)" % (
            "moves, " + step, mv["moved_fraction"], mv.get("expected_fraction", "-"),
            mv["moved_fraction_load_users"]))
    for step, h in result.get("hit_ratios", {}).items():
        print("%-28s hit ratio %s (%d hits, %d misses, %d users)" % (
            "cache, " + h["kind"], h["hit_ratio"], h["hits"], h["misses"],
            h["moved_probe_users"]))
    for kind, ex in f.get("examples", {}).items():
        for e in ex:
            print("  %s: %s" % (kind, e))
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=sorted(MODES), default="full")
    p.add_argument("--base-port", type=int, default=30000)
    p.add_argument("--out", default=None)
    p.add_argument("--keep-var", action="store_true",
                   help="stop the cluster but keep its logs and data")
    a = p.parse_args()
    sys.exit(0 if run(a.mode, a.base_port, a.out, a.keep_var) else 1)


if __name__ == "__main__":
    main()
