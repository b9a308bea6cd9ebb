#!/usr/bin/env python3
"""Integration: a cache node paused past its lease is fenced off.

Starts its own cluster (base port 27000, one standby) and runs a small
retrying load (tests/chaos/load.py) whose users live half on cache-1.
Then it freezes cache-1 with SIGSTOP (scripts/cluster pause), as a long
GC pause or a frozen VM would, and while it is frozen sends one more
request straight to it: a send for one of its users, at the epoch it
owned them, which waits in its listen queue. Once the router has given
cache-1's users to another node, cache-1 is resumed (SIGCONT) and the
test shows:

- the request that waited in its queue was not acknowledged by the old
  owner (its lease had expired), and its message is not stored;
- for several seconds after the resume, cache-1 answers no read for any
  of its former users with 200, at the old epoch or the new one (unless
  a newer ring gives it that user back);
- the load lost nothing: every acknowledged send is in both mailboxes
  exactly once, in the same order for both participants, per-sender
  order holds (the chaos checker, tests/chaos/checker.py).

A second test sends a batch of reads (POST /internal/reads) whose
middle read carries an epoch newer than the node's, so the node asks the
routers for the ring, and the routers are frozen while a handoff comes.
The batch asks before it claims any read: the handoff, which waits for
every claimed call, ends while the routers are still frozen (a batch
that claimed its first read before asking held the handoff until they
were thawed, and a ring installed meanwhile waited in its clean-up for
that claim). Both end, and the batch answers only its first read: its
time budget ran out while it waited. The same holds for a single read.

A third test freezes another node and sends at once for its users
through the load balancer: the gateways send those calls to the frozen
node, and once the new ring gives the users to another node they drop
the calls (hc_async_keep) and retry them there. Every send is answered
2xx well before the gateway's hop timeout (18 s, which a call left to
wait would take), and is stored exactly once.

Four more cover the gate and the copies of a planned move (warm handoff,
docs/failover.md): a handoff the leading router does not run is called
off at the node's next heartbeat answer; an import for an epoch the node
already holds is refused; a source keeps its users gated past its 5 s
timer while the router still hands over from others (a frozen target
makes each source's copy wait, and a second source is frozen past the
first one's timer); and after an attempt that was called
off, a later attempt at the same epoch leaves no stale copy behind.
One more covers a publish whose outcome the router cannot know: the
next change waits (503) until a new lease term fenced it; one that a
change whose leader's term moved during it publishes nothing; one that
a leader restarted within its term counts its attempt ids on; and one that
a called-off change's copies are dropped by the names restored, with
no scan of the target's Redis.

Run: python3 tests/integration/test_fencing.py
"""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))

import e2e_lib  # noqa: E402
from e2e_lib import check, fail, new_users, run_tests, test  # noqa: E402

import checker  # noqa: E402
from cluster_ctl import Cluster  # noqa: E402
from ring_model import Ring, hash_user  # noqa: E402
from load import Load  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_FENCING_TEST_BASE_PORT", "27000"))
TARGET = "cache-1"
USERS_ON_TARGET = 12
OTHER_USERS = 12
# How long the router may take to move the paused node's users (its
# defaults fail over in under 2 s; this bounds a slow sanitizer build).
MOVE_WAIT_S = 30.0
# After the resume: how long the old owner is watched.
WATCH_S = 5.0
LOAD_BEFORE_S = 3.0
LOAD_AFTER_S = 4.0
SETTLE_S = 6.0

CLUSTER = None


def cluster_start(var, *args, check_rc=True):
    """run_with_own_cluster's start: scripts/cluster with this layout."""
    global CLUSTER
    if CLUSTER is None:
        # ROUTER_DEAD_MS: a node frozen for 2 s during a planned move
        # (test_a_gate_holds_while_the_router_hands_over_from_others) must
        # not be taken for dead.
        CLUSTER = Cluster(var, BASE_PORT, {"MESSENGER_GATEWAYS": "1", "MESSENGER_CACHES": "3",
                                           "MESSENGER_STANDBYS": "1",
                                           "ROUTER_DEAD_MS": "4000",
                                           "GATEWAY_SEND_RATE": "1000",
                                           "GATEWAY_SEND_BURST": "2000"})
    return e2e_lib.run_cluster(var, BASE_PORT, *args, extra_env=CLUSTER.extra_env,
                               check_rc=check_rc)


def setup(var, env):
    CLUSTER.reload_env()


def users_split(ring):
    """USERS_ON_TARGET + 1 users owned by TARGET and OTHER_USERS + 1
    elsewhere (the last of each takes no part in the load)."""
    on, off = [], []
    for u in new_users(4000):
        if ring.owner(u) == TARGET:
            if len(on) <= USERS_ON_TARGET:
                on.append(u)
        elif len(off) <= OTHER_USERS:
            off.append(u)
        if len(on) > USERS_ON_TARGET and len(off) > OTHER_USERS:
            return on, off
    fail("cannot find users on %s" % TARGET)


def direct_send(url, epoch, body, out):
    """A send straight to a cache node, as a gateway would make it; waits
    up to 60 s. out gets (status, body) or (None, error)."""
    data = json.dumps(body).encode()
    target = "/internal/send"
    req = urllib.request.Request(url + target, data=data, method="POST", headers={
        "Content-Type": "application/json", "X-Ring-Epoch": str(epoch),
        e2e_lib.INTERNAL_AUTH_HEADER: e2e_lib.internal_auth(CLUSTER.secret, "POST", target, data)})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out.append((r.status, r.read()))
    except urllib.error.HTTPError as e:
        out.append((e.code, e.read()))
    except OSError as e:
        out.append((None, str(e)))


@test
def test_paused_cache_node_is_fenced_after_its_lease(api):
    c = CLUSTER
    check(c.has("pause") and c.has("resume"), "scripts/cluster has no pause/resume verbs")
    r0 = c.ring()
    check(r0 is not None and TARGET in r0.active, "%s is not in the ring: %r" % (
        TARGET, r0 and r0.active))
    on, off = users_split(r0)
    for u in on[:3] + off[:3]:
        check(c.probe_owner(r0, u) == [r0.owner(u)],
              "ring model and cache nodes disagree on user %d" % u)
    # The last user of each half sends the request the frozen node queues.
    lone_sender, lone_recipient = on.pop(), off.pop()
    users = on + off
    # Each user writes to users of both halves.
    peers = {u: [users[(i + k) % len(users)] for k in (1, 5, 12, 13)]
             for i, u in enumerate(users)}
    apis = [e2e_lib.Api(c.env)] + e2e_lib.Api(c.env).gateways()
    load = Load(apis, users, peers, senders=6, readers=1, rate=40.0)
    load.start()
    try:
        time.sleep(LOAD_BEFORE_S)
        old_url = r0.url_of(TARGET)
        c.run("pause", TARGET)
        paused_at = time.monotonic()
        # A request the frozen node will find in its queue on waking.
        stale_cmid = "fence-%d" % int(time.time() * 1000)
        stale_body = {"sender_id": lone_sender, "recipient_id": lone_recipient,
                      "content": "sent to a frozen owner", "client_message_id": stale_cmid}
        stale_answer = []
        t = threading.Thread(target=direct_send, args=(old_url, r0.epoch, stale_body,
                                                       stale_answer), daemon=True)
        t.start()
        r1, waited = c.wait_ring(lambda r: r.epoch > r0.epoch and TARGET not in r.active,
                                 MOVE_WAIT_S)
        if r1 is None:
            c.run("resume", TARGET)
            fail("the router kept %s in the ring %.0f s after it froze" % (TARGET, MOVE_WAIT_S))
        moved_s = time.monotonic() - paused_at
        print("# %s frozen; its users moved after %.2f s (epoch %d -> %d, now %s)"
              % (TARGET, moved_s, r0.epoch, r1.epoch, ",".join(r1.active)))
        time.sleep(1.0)  # the new owner serves while the old one sleeps
        c.run("resume", TARGET)
        served = watch_old_owner(c, old_url, on, r0.epoch)
        t.join(65)
        time.sleep(LOAD_AFTER_S)
    finally:
        stuck = load.stop()
    check(not stuck, "load threads did not stop: %s" % stuck)
    check(not served, "after its resume %s served former users: %s" % (TARGET, served[:5]))
    check(stale_answer, "the request queued at the frozen node got no answer")
    status, body = stale_answer[0]
    print("# the queued request got %s %s" % (status, body[:200] if body else ""))
    check(status not in (200, 201),
          "the frozen node acknowledged a send after losing its lease: %s %r" % (status, body))
    time.sleep(SETTLE_S)
    records = load.snapshot_records()
    figures = checker.check(load, apis[0], users, records)
    missed = checker.selftest(load, records, figures.pop("_boxes"))
    check(not missed, "the checker would miss: %s" % missed)
    print("# load: %d sends, %d acknowledged, %d unacknowledged; lost %d, duplicated %d, "
          "order violations %d, one-sided %d, delta mismatches %d"
          % (figures["sends"], figures["acknowledged"], figures["unacknowledged"],
             figures["lost"], figures["duplicated"], figures["order_violations"],
             figures["one_sided"], figures["delta_mismatches"]))
    check(figures["acknowledged"] > 50, "too few sends acknowledged to prove anything: %d"
          % figures["acknowledged"])
    acked_on = sum(1 for r in records if r.acked and r.sender in set(on) and
                   r.ack_time > paused_at)
    check(acked_on > 0, "no user of %s sent anything after it froze" % TARGET)
    bad = {k: figures[k] for k in checker.VIOLATION_KEYS if figures[k]}
    check(not bad, "checker: %s, examples %s" % (bad, figures["examples"]))
    a, b = sorted((lone_sender, lone_recipient))
    for u in (a, b):
        stored = [m for m in api.all_msgs(u, "%d_%d" % (a, b))]
        check(not stored, "the send refused by the frozen node was stored for %d: %r" % (u, stored))


# The batch-against-handoff test: how long the routers stay frozen once
# the handoff was sent, and how long the batch and the handoff may take.
HANDOFF_SETTLE_S = 0.8
HANDOFF_WAIT_S = 20.0


def router_pids(c):
    """PIDs of the cluster's routers (scripts/cluster's pid files)."""
    pids = []
    for name in c.names():
        if name.startswith("router-"):
            with open(os.path.join(c.var, "pid", name + ".pid")) as f:
                pids.append(int(f.read().strip()))
    check(pids, "no router in the cluster")
    return pids


def signed_async(c, method, url, body, headers, out):
    """c.signed on a thread of its own; out gets (status, body, seconds)."""
    def run():
        t0 = time.monotonic()
        status, text = c.signed(method, url, body=body, headers=headers,
                                timeout=HANDOFF_WAIT_S)
        out.append((status, text, time.monotonic() - t0))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def next_ring_doc(c):
    """The routers' ring at the next epoch, the same nodes: a handoff to
    it moves nobody."""
    status, raw = c.signed("GET", c.router_urls()[0] + "/internal/ring")
    check(status == 200, "ring: %s" % status)
    ring = json.loads(raw)
    ring["epoch"] += 1
    return ring


def handoff_while_routers_frozen(c, url, ring, method, target, body, headers):
    """Freezes the routers, makes a call to the node at url that asks them
    for a newer ring, then hands the node over to ring, and thaws the
    routers HANDOFF_SETTLE_S later. Returns what the call and the handoff
    answered, each [(status, body, seconds)] or [] when it did not end."""
    pids = router_pids(c)
    call_out, handoff_out = [], []
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        tc = signed_async(c, method, url + target, body, headers, call_out)
        time.sleep(0.2)
        th = signed_async(c, "POST", url + "/internal/handoff",
                          {"ring": json.dumps(ring)}, None, handoff_out)
        time.sleep(HANDOFF_SETTLE_S)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    tc.join(HANDOFF_WAIT_S + 5)
    th.join(HANDOFF_WAIT_S + 5)
    return call_out, handoff_out


@test
def test_a_read_batch_and_a_waiting_handoff_both_end(api):
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and r0.active, "no ring")
    node = r0.active[0]
    url = r0.url_of(node)
    users = [u for u in new_users(400) if r0.owner(u) == node][:3]
    check(len(users) == 3, "cannot find 3 users of %s" % node)
    ring = next_ring_doc(c)
    check(ring["epoch"] == r0.epoch + 1, "the ring moved: %s" % (ring["epoch"] - 1))
    query = "page_size=20&page=0"
    reads = [{"user": str(u), "query": query, "epoch": str(e), "request_id": "hb-%d" % i}
             for i, (u, e) in enumerate(zip(users, (r0.epoch, r0.epoch + 1, r0.epoch)))]
    # Read 1 makes the node ask the frozen routers for the ring.
    batch_out, handoff_out = handoff_while_routers_frozen(
        c, url, ring, "POST", "/internal/reads", {"reads": reads}, None)
    print("# batch: %s; handoff: %s" % (
        batch_out and (batch_out[0][0], "%.2f s" % batch_out[0][2]),
        handoff_out and (handoff_out[0][0], handoff_out[0][1][:120], "%.2f s" % handoff_out[0][2])))
    check(batch_out and batch_out[0][0] == 200,
          "the batch did not end while a handoff waited: %s" % batch_out)
    check(handoff_out and handoff_out[0][0] == 200,
          "the handoff did not end: %s" % handoff_out)
    answers = json.loads(batch_out[0][1])["answers"]
    # Read 0 is answered, and the other two are left out for the gateway
    # to send alone: the batch's time budget (READS_TIME_BUDGET_MS, 50 ms)
    # ran out while it waited for the routers. Read 0 is claimed once they
    # answer; frozen for a second, they let the node's lease (1 s) lapse
    # until its next heartbeat is answered, so it may be refused for that.
    check(len(answers) == 1 and (answers[0]["status"] == 200 or (
        answers[0]["status"] == 503 and answers[0]["body"]["title"] == "No lease")),
        "the batch's answers: %s, not read 0's alone" % answers)
    # The batch waited for the frozen routers: the handoff came in that
    # time, which is the case under test.
    check(batch_out[0][2] >= HANDOFF_SETTLE_S,
          "the batch ended in %.2f s, before the routers were thawed" % batch_out[0][2])
    # It waited holding no claim: the handoff, which waits for every
    # claimed call, ended before the routers were thawed (0.8 s after it
    # began).
    check(handoff_out[0][2] < HANDOFF_SETTLE_S,
          "the handoff took %.2f s: it waited for the batch's claims while "
          "the batch asked the frozen routers" % handoff_out[0][2])

@test
def test_a_call_asking_for_a_newer_ring_does_not_hold_a_handoff(api):
    """A single read whose epoch is newer than the node's makes the node
    ask the routers for the ring before it enters the handoff barrier:
    a handoff that comes while the routers are frozen ends at once,
    instead of waiting for the read (and, once the routers answer, for
    the ring's clean-up, which waits for calls under the older ring)."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and r0.active, "no ring")
    node = r0.active[0]
    url = r0.url_of(node)
    user = [u for u in new_users(400) if r0.owner(u) == node][0]
    ring = next_ring_doc(c)
    read_out, handoff_out = handoff_while_routers_frozen(
        c, url, ring, "GET", "/internal/users/%d/conversations" % user, None,
        {"X-Ring-Epoch": str(r0.epoch + 1)})
    print("# read at epoch %d: %s; handoff: %s" % (
        r0.epoch + 1, read_out and (read_out[0][0], "%.2f s" % read_out[0][2]),
        handoff_out and (handoff_out[0][0], "%.2f s" % handoff_out[0][2])))
    check(handoff_out and handoff_out[0][0] == 200, "the handoff did not end: %s" % handoff_out)
    # The routers know no such epoch: the node stays behind and refuses.
    check(read_out and read_out[0][0] in (421, 503), "the read: %s" % read_out)
    check(read_out[0][2] >= HANDOFF_SETTLE_S,
          "the read ended in %.2f s, before the routers were thawed" % read_out[0][2])
    check(handoff_out[0][2] < HANDOFF_SETTLE_S,
          "the handoff took %.2f s: it waited for a call that asked the frozen routers "
          "from inside the barrier" % handoff_out[0][2])


# Sends to a frozen node's users: how many, and the gateway's hop
# timeout, which a call left waiting on the frozen node would take.
FROZEN_SENDS = 6
GATEWAY_HOP_TIMEOUT_S = 18.0


@test
def test_calls_held_by_a_frozen_node_are_retried_on_the_new_owner(api):
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes: %r" % (r0 and r0.active))
    target = r0.active[-1]
    senders, recipients = [], []
    for u in new_users(4000):
        owner = r0.owner(u)
        if owner == target and len(senders) < FROZEN_SENDS:
            senders.append(u)
        elif owner != target and len(recipients) < FROZEN_SENDS:
            recipients.append(u)
    check(len(senders) == FROZEN_SENDS and len(recipients) == FROZEN_SENDS,
          "cannot find users on and off %s" % target)
    answers = [None] * FROZEN_SENDS

    def send(i):
        t0 = time.monotonic()
        try:
            r = api.send(senders[i], recipients[i], "to a frozen owner %d" % i)
            answers[i] = (r.status, time.monotonic() - t0, r.json)
        except (OSError, ValueError) as e:  # the client's own timeout included
            answers[i] = ("no answer: %s" % e, time.monotonic() - t0, None)

    threads = [threading.Thread(target=send, args=(i,), daemon=True)
               for i in range(FROZEN_SENDS)]
    c.run("pause", target)
    try:
        for t in threads:
            t.start()
        r1, moved_s = c.wait_ring(lambda r: r.epoch > r0.epoch and target not in r.active,
                                  MOVE_WAIT_S)
        for t in threads:
            t.join(GATEWAY_HOP_TIMEOUT_S + 30)
    finally:
        c.run("resume", target)
    check(r1 is not None, "the router kept %s in the ring" % target)
    print("# %s frozen; users moved after %.2f s; sends answered: %s" % (
        target, moved_s, [(a[0], "%.2f s" % a[1]) if a else None for a in answers]))
    check(all(a is not None and a[0] in (200, 201) for a in answers),
          "sends to the frozen node's users: %s" % [a and a[:2] for a in answers])
    slowest = max(a[1] for a in answers)
    check(slowest < GATEWAY_HOP_TIMEOUT_S,
          "a send waited %.2f s, the hop timeout: its call was not dropped when the ring "
          "moved its user" % slowest)
    for i in range(FROZEN_SENDS):
        cid = e2e_lib.conversation_id(senders[i], recipients[i])
        for u in (senders[i], recipients[i]):
            ids = [m["message_id"] for m in api.all_msgs(u, cid)]
            check(ids == [answers[i][2]["message_id"]],
                  "send %d stored as %r for user %d" % (i, ids, u))


def read_at(c, url, user, epoch):
    """Status of a read of user's conversations straight at a node."""
    status, _ = c.signed("GET", "%s/internal/users/%d/conversations" % (url, user),
                         headers={"X-Ring-Epoch": str(epoch)})
    return status


def leader_state(c):
    """(url, /internal/router document) of the leading router."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for url in c.router_urls():
            status, body = c.signed("GET", url + "/internal/router")
            if status == 200 and json.loads(body)["leader"]:
                return url, json.loads(body)
        time.sleep(0.1)
    fail("no router leads")


# A gate the leading router does not run ends at the node's next
# heartbeat answer (CACHE_HEARTBEAT_MS, 200 ms); the timer alone would
# take HANDOFF_GATE_MS (5 s).
CALL_OFF_LIMIT_S = 2.5


@test
def test_a_handoff_no_router_runs_is_called_off(api):
    """A handoff call the leading router did not make (or one it gave up
    on) gates the node's moving users only until the leader's next
    heartbeat answer, which names no such change. The routers are frozen
    while the handoff comes, so the gate is seen before any answer."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes")
    node = r0.active[0]
    url = r0.url_of(node)
    users = [u for u in new_users(400) if r0.owner(u) == node][:2]
    check(len(users) == 2, "cannot find users of %s" % node)
    for u in users:
        check(read_at(c, url, u, r0.epoch) == 200, "%d not served by %s before" % (u, node))
    doc = dict(r0.doc)
    doc["epoch"] = r0.epoch + 1
    doc["attempt"] = 1  # older than any router's (term << 24 | count)
    doc["nodes"] = [n for n in r0.doc["nodes"] if n["name"] != node]
    pids = router_pids(c)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        status, body = c.signed("POST", url + "/internal/handoff", {"ring": json.dumps(doc)},
                                timeout=HANDOFF_WAIT_S)
        gated, gate_body = c.signed("GET", "%s/internal/users/%d/conversations" % (
            url, users[0]), headers={"X-Ring-Epoch": str(r0.epoch)})
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    thawed = time.monotonic()
    check(status == 200, "handoff: %s %r" % (status, body[:200]))
    check(gated == 503 and b"User moving" in gate_body,
          "a moving user was not gated after the handoff: %s %r" % (gated, gate_body[:200]))
    served_s = None
    while time.monotonic() - t0 < 3 * CALL_OFF_LIMIT_S + 5:
        if read_at(c, url, users[1], r0.epoch) == 200:
            served_s = time.monotonic() - thawed
            break
        time.sleep(0.05)
    r1 = c.ring()
    print("# a handoff no router runs: gated for %.3f s with the routers frozen, served "
          "again %s s after they thawed" % (thawed - t0, served_s and "%.2f" % served_s))
    check(r1.epoch == r0.epoch, "the ring moved meanwhile: %d" % r1.epoch)
    check(served_s is not None and served_s < CALL_OFF_LIMIT_S,
          "the node gated its users %s s past the routers' thaw: the leader's heartbeat "
          "answers name no change, so the gate should end at the next one" % served_s)


@test
def test_an_import_for_an_installed_epoch_is_refused(api):
    c = CLUSTER
    r0 = c.ring()
    node = r0.active[0]
    user = [u for u in new_users(400) if r0.owner(u) == node][0]
    entry = {"key": "u:%d" % user, "dump": "AAAA", "ttl": 0}
    for epoch in (r0.epoch, r0.epoch - 1):
        status, body = c.signed("POST", r0.url_of(node) + "/internal/handoff/import",
                                {"epoch": max(epoch, 1), "attempt": 7, "entries": [entry]})
        check(status == 409, "an import for epoch %d at a node holding %d: %s %r" % (
            epoch, r0.epoch, status, body[:200]))
    # Attempts at one change are ordered: a late copy of an earlier one is
    # refused once a later one began (router attempts are far above these).
    answers = []
    for attempt in (10, 9, 11):
        status, _ = c.signed("POST", r0.url_of(node) + "/internal/handoff/import",
                             {"epoch": r0.epoch + 1, "attempt": attempt, "entries": []})
        answers.append(status)
    check(answers == [200, 409, 200], "imports of attempts 10, 9, 11: %r" % answers)


def redis_port(node):
    return BASE_PORT + 400 + int(node.split("-")[1])


def redis_dump(node, key):
    """DUMP key on node's Redis, raw (redis-cli would escape it)."""
    import socket
    k = key.encode()
    with socket.create_connection(("127.0.0.1", redis_port(node)), timeout=10) as s:
        s.sendall(b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n" % (len(k), k))
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, rest = data.split(b"\r\n", 1)
        check(head.startswith(b"$") and head != b"$-1", "DUMP %s: %r" % (key, head))
        size = int(head[1:])
        while len(rest) < size + 2:
            rest += s.recv(65536)
        return rest[:size]


def redis_pipe(node, commands):
    """Runs commands (lists of strings) through redis-cli --pipe."""
    lines = []
    for cmd in commands:
        lines.append("*%d\r\n" % len(cmd))
        for a in cmd:
            lines.append("$%d\r\n%s\r\n" % (len(a), a))
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port(node)), "--pipe"],
                         input="".join(lines).encode(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=120)
    check(out.returncode == 0, "redis-cli --pipe: %r" % out.stdout[-300:])


def scan_calls(node):
    for line in redis_cmd(node, "INFO", "commandstats"):
        if line.startswith("cmdstat_scan:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


# Keys of nobody's users in the target's Redis while it drops a called-off
# change's copies: a scan of the whole keyspace would walk them all.
JUNK_KEYS = 300000


@test
def test_a_called_off_change_drops_only_its_own_copies(api):
    """The first import of a later attempt drops what the earlier attempt
    copied to the node, by the names it restored and its users' base
    keys (a stray meta of one of them, as a read that ran on under an
    older ring could leave, goes too): no scan of the node's whole Redis
    (which holds many more keys), and nothing else goes."""
    c = CLUSTER
    r0 = c.ring()
    node = r0.active[0]
    url = r0.url_of(node)
    others = [u for u in new_users(400) if r0.owner(u) != node][:4]
    redis_cmd(node, "SET", "t:{1}", "a copied value")
    payload = redis_dump(node, "t:{1}")
    redis_cmd(node, "DEL", "t:{1}")
    dump = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    junk = ["j:{%d}" % (9000000000000000 + i) for i in range(JUNK_KEYS)]
    redis_pipe(node, [["SET", k, "1"] for k in junk])
    stray = "u:{%d}" % others[0]
    redis_cmd(node, "HSET", stray, "seq", "1", "max", "1", "cc", "0", "cn", "0")
    try:
        epoch = r0.epoch + 1
        first = [{"key": "t:{%d}" % u, "dump": dump, "ttl": 0} for u in others[:2]]
        later = [{"key": "t:{%d}" % u, "dump": dump, "ttl": 0} for u in others[2:]]
        status, body = c.signed("POST", url + "/internal/handoff/import",
                                {"epoch": epoch, "attempt": 20, "entries": first})
        check(status == 200 and json.loads(body)["restored"] == 2,
              "import of attempt 20: %s %r" % (status, body[:200]))
        scans = scan_calls(node)
        t0 = time.monotonic()
        status, body = c.signed("POST", url + "/internal/handoff/import",
                                {"epoch": epoch, "attempt": 21, "entries": later})
        took = time.monotonic() - t0
        scanned = scan_calls(node) - scans
        check(status == 200 and json.loads(body)["restored"] == 2,
              "import of attempt 21: %s %r" % (status, body[:200]))
        present = {u: redis_cmd(node, "EXISTS", "t:{%d}" % u)[0] for u in others}
        stray_left = redis_cmd(node, "EXISTS", stray)[0]
        size = int(redis_cmd(node, "DBSIZE")[0])
    finally:
        redis_pipe(node, [["UNLINK"] + junk[i:i + 1000] for i in range(0, len(junk), 1000)])
        redis_cmd(node, "DEL", stray)
    print("# a later attempt's first import on %s (%d keys): %.3f s, %d SCAN calls" % (
        node, size, took, scanned))
    check(present == {others[0]: "0", others[1]: "0", others[2]: "1", others[3]: "1"},
          "the earlier attempt's copies dropped, the later one's kept: %r" % present)
    check(stray_left == "0", "a stray meta of an imported user was left")
    check(size >= JUNK_KEYS + 2, "other keys went too: %d left" % size)
    check(scanned == 0, "the drop scanned the keyspace (%d SCAN calls)" % scanned)


# A copy to a frozen target waits this long before it fails
# (HOP_TIMEOUT_MS); the router hands over from every source at once.
IMPORT_HANG_S = 5.0
# A second source is frozen around the end of that wait, so the change
# lasts past the first source's 5 s gate timer (ROUTER_DEAD_MS is 4 s in
# this cluster: the freeze stays under it).
SECOND_FROZEN_AT_S = IMPORT_HANG_S - 0.4
SECOND_FROZEN_FOR_S = 2.0
CHECK_AT_S = 6.0


def users_moving(r0, after, count):
    """source -> users r0 gives it and after gives the new node."""
    out = {name: [] for name in r0.active}
    for u in new_users(20000):
        a, b = r0.owner(u), after.owner(u)
        if a != b and len(out[a]) < count:
            out[a].append(u)
        if all(len(v) == count for v in out.values()):
            return out
    fail("cannot find users moving from every node: %r" % {k: len(v) for k, v in out.items()})


@test
def test_a_gate_holds_while_the_router_hands_over_from_others(api):
    """Adds a frozen standby: every source's copy to it waits
    IMPORT_HANG_S, and a second source is frozen around the end of that
    wait, so the change outlasts HANDOFF_GATE_MS. The first source must
    still gate its moving users when its own 5 s have passed, and the
    change must then complete with every message in place."""
    c = CLUSTER
    r0 = c.ring()
    leader_url, st = leader_state(c)
    spare = [m for m in st["nodes"] if m["name"] not in r0.active and m["age_ms"] < 1000]
    check(spare, "no standby heartbeating: %r" % st["nodes"])
    new = spare[0]
    doc = dict(r0.doc)
    doc["epoch"] = r0.epoch + 1
    doc["nodes"] = list(r0.doc["nodes"]) + [{"name": new["name"], "url": new["url"]}]
    after = Ring(doc)
    moving = users_moving(r0, after, 2)
    first, second = r0.doc["nodes"][0]["name"], r0.doc["nodes"][1]["name"]
    for name, users in moving.items():  # warm: each source has keys to copy
        a, b = users[:2]
        check(api.send(a, b, "before the move, on %s" % name).status == 201, "warm send")
    out = []
    frozen = [new["name"]]
    c.run("pause", new["name"])
    try:
        t0 = time.monotonic()
        th = threading.Thread(target=lambda: out.append(c.signed(
            "POST", leader_url + "/internal/admin/nodes",
            {"name": new["name"], "url": new["url"]}, timeout=120) +
            (time.monotonic() - t0,)), daemon=True)
        th.start()
        time.sleep(SECOND_FROZEN_AT_S)
        c.run("pause", second)
        frozen.append(second)
        time.sleep(CHECK_AT_S - SECOND_FROZEN_AT_S)
        mid = c.ring()
        gated = read_at(c, r0.url_of(first), moving[first][0], r0.epoch)
        mid_s = time.monotonic() - t0
        # The new node heartbeats again before the change can publish
        # (once the second source answers): unheard, it would be taken
        # for dead as soon as it is in the ring.
        c.run("resume", frozen.pop(0))
        time.sleep(max(0.0, SECOND_FROZEN_AT_S + SECOND_FROZEN_FOR_S -
                       (time.monotonic() - t0)))
    finally:
        for name in frozen:
            c.run("resume", name)
    th.join(120)
    print("# after %.2f s: ring epoch %d (was %d), %s answered %s for a moving user; "
          "add-node answered in %s s: %s" % (
              mid_s, mid.epoch, r0.epoch, first, gated, out and "%.2f" % out[0][2],
              out and (out[0][0], out[0][1][:120])))
    check(mid.epoch == r0.epoch, "the router published before the check: the case is not "
          "made (the sources did not wait on the frozen standby and %s)" % second)
    check(gated == 503, "%s served a moving user %.1f s into the change, before the ring "
          "moved: its gate ended on its timer" % (first, mid_s))
    check(out and out[0][0] == 200, "add-node: %r" % out)
    r1, _ = c.wait_ring(lambda r: new["name"] in r.active, 15)
    check(r1 is not None, "the new node never joined")
    for name, users in moving.items():
        a, b = users[:2]
        cid = e2e_lib.conversation_id(a, b)
        for u in (a, b):
            got = history_retrying(api, u, cid)
            check(got == ["before the move, on %s" % name],
                  "user %d after the move: %r" % (u, got))


def history_retrying(api, user, cid, limit_s=10.0):
    """The conversation's contents; a retryable answer (a node that has
    not installed the new ring yet still gates its moved users) is
    retried as a client would."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return [m["content"] for m in api.all_msgs(user, cid)]
        except e2e_lib.TestFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def redis_cmd(node, *args):
    """A command on node's Redis (BASE_PORT + 400 + i); its output lines."""
    port = str(redis_port(node))
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port] + list(args),
                         stdout=subprocess.PIPE, check=True, timeout=30)
    return out.stdout.decode().splitlines()


@test
def test_a_source_copies_only_users_it_serves(api):
    """A node may hold keys of a user it no longer owns (its clean-up
    after a ring change still under way). A handoff must not copy them:
    the user's owner has changed them since, and the copy would overwrite
    the owner's."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes")
    source, owner = r0.active[0], r0.active[1]
    user = [u for u in new_users(400) if r0.owner(u) == owner][0]
    peer = new_users(1)[0]
    check(api.send(peer, user, "on its owner").status == 201, "send")
    check(api.convs(user).status == 200, "warm read")
    meta = "u:{%d}" % user
    before = redis_cmd(owner, "HGETALL", meta)
    check(before, "%d is not hot on %s" % (user, owner))
    redis_cmd(source, "HSET", meta, "seq", "1", "max", "1", "cc", "0", "cn", "0")
    try:
        doc = dict(r0.doc)
        doc["epoch"] = r0.epoch + 1  # the same nodes: nobody moves
        doc["attempt"] = 1
        status, body = c.signed("POST", r0.url_of(source) + "/internal/handoff",
                                {"ring": json.dumps(doc)}, timeout=HANDOFF_WAIT_S)
    finally:
        redis_cmd(source, "DEL", meta)
    after = redis_cmd(owner, "HGETALL", meta)
    print("# handoff from %s holding a stale key of %s's user: %s %s" % (
        source, owner, status, body[:100]))
    check(status == 200 and json.loads(body)["keys"] == 0,
          "the source copied keys of a user it does not serve: %s %r" % (status, body))
    check(after == before, "the owner's hot meta was overwritten: %r -> %r" % (before, after))


def redis_forget(c, node, user):
    """Deletes user's hot keys straight from node's Redis, as an eviction
    would (scripts/cluster: Redis of cache-i on BASE_PORT + 400 + i)."""
    port = str(redis_port(node))
    keys = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "--scan",
                           "--pattern", "*{%d}*" % user], stdout=subprocess.PIPE,
                          check=True, timeout=30).stdout.decode().split()
    check(keys, "no hot keys of %d on %s" % (user, node))
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "DEL"] + keys,
                   stdout=subprocess.DEVNULL, check=True, timeout=30)


def router_psql(c, sql):
    """sql on the routers' shared state (the first PostgreSQL instance)."""
    out = subprocess.run(["psql", "-X", "-qAt", c.env["PG_URLS"].split(",")[0], "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(out.returncode == 0, "psql: %s" % out.stderr.decode()[:300])
    return out.stdout.decode().strip()


# Refuses every write of the ring and every new lease term: the router
# cannot tell a refused publish from a COMMIT whose answer was lost, and
# the leader's fencing tick (a new term) fails until the trigger goes.
REFUSE_TRIGGER = """
CREATE FUNCTION test_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.ring IS DISTINCT FROM OLD.ring OR NEW.term IS DISTINCT FROM OLD.term THEN
    RAISE EXCEPTION 'refused by test_fencing';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_change BEFORE UPDATE ON router_state
  FOR EACH ROW EXECUTE FUNCTION test_refuse_change();
"""
DROP_TRIGGER = ("DROP TRIGGER IF EXISTS test_refuse_change ON router_state; "
                "DROP FUNCTION IF EXISTS test_refuse_change()")


def problem_title(body):
    try:
        return json.loads(body).get("title")
    except ValueError:
        return None


@test
def test_an_unknown_publish_holds_the_next_change_until_fenced(api):
    """A planned change whose publish has an unknown outcome stays
    announced: the leader refuses the next change with 503 "Change
    unsettled" (made from the ring it holds, it would call the first
    change off at its sources while that ring may be stored) until it has
    taken a new lease term, so that the publish can no longer commit,
    and read the stored ring. A trigger refuses the publish, and new
    terms for a while, so that window lasts; once it is gone the term has
    grown and the next change goes through."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 3, "too few nodes: %r" % (r0 and r0.active))
    node = r0.active[-1]
    term0 = int(router_psql(c, "SELECT term FROM router_state"))
    leader_url, _ = leader_state(c)
    remove = "%s/internal/admin/nodes/%s/remove" % (leader_url, node)
    router_psql(c, REFUSE_TRIGGER)
    try:
        first, body1 = c.signed("POST", remove, timeout=120)
        second, body2 = c.signed("POST", remove, timeout=120)
        term_held = int(router_psql(c, "SELECT term FROM router_state"))
    finally:
        router_psql(c, DROP_TRIGGER)
    print("# with the trigger: %s %s, then %s %s" % (
        first, problem_title(body1), second, problem_title(body2)))
    check(first == 503 and problem_title(body1) == "Ring not published",
          "a refused publish: %s %r" % (first, body1[:200]))
    check(second == 503 and problem_title(body2) == "Change unsettled",
          "a change right after a publish of unknown outcome: %s %r" % (second, body2[:200]))
    check(term_held == term0, "the term moved while the trigger refused it: %d -> %d" % (
        term0, term_held))
    check(c.ring().epoch == r0.epoch, "a refused publish changed the ring")
    deadline = time.monotonic() + 20
    answers = []
    while True:
        leader_url, _ = leader_state(c)
        status, body = c.signed("POST", "%s/internal/admin/nodes/%s/remove" % (
            leader_url, node), timeout=120)
        answers.append((status, problem_title(body)))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    term1 = int(router_psql(c, "SELECT term FROM router_state"))
    print("# after the trigger: %r; term %d -> %d" % (answers, term0, term1))
    check(status == 200, "remove-node once the publish settled: %r" % answers)
    check(term1 > term0, "no new term fenced the publish of unknown outcome (%d)" % term1)
    r1, _ = c.wait_ring(lambda r: node not in r.active, 15)
    check(r1 is not None and r1.epoch == r0.epoch + 1,
          "the ring after remove-node (was %d): %r" % (r0.epoch, r1 and r1.doc))


@test
def test_a_change_does_not_publish_in_a_later_term(api):
    """A leader publishes a change only in the lease term it began the
    change in. If its term moved meanwhile (it lost the lease and took it
    back), another leader may have run a change of its own in between,
    which this one's sources know nothing of. The term is moved by hand
    while the change waits on its frozen source; the change must answer
    409 and publish nothing."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes")
    node = r0.active[0]
    leader_url, _ = leader_state(c)
    out = []
    c.run("pause", node)
    try:
        th = threading.Thread(target=lambda: out.append(c.signed(
            "POST", "%s/internal/admin/nodes/%s/remove" % (leader_url, node), timeout=120)),
            daemon=True)
        th.start()
        time.sleep(0.5)  # the change waits for its source's copy
        term0 = int(router_psql(c, "SELECT term FROM router_state"))
        router_psql(c, "UPDATE router_state SET term = term + 1")
        time.sleep(0.5)  # the leader ticks in the new term
    finally:
        c.run("resume", node)
    th.join(60)
    r1 = c.ring()
    print("# a change whose leader's term moved from %d during it: %r" % (
        term0, out and (out[0][0], problem_title(out[0][1]))))
    check(out and out[0][0] == 409 and
          problem_title(out[0][1]) == "Ring changed or leadership lost",
          "remove-node across a change of term: %r" % ((out and (out[0][0], out[0][1][:200])),))
    check(r1.epoch == r0.epoch and node in r1.active, "the change published: %r" % (r1.doc,))
    # Its source serves its users again once the leader names no change.
    user = [u for u in new_users(400) if r0.owner(u) == node][0]
    deadline = time.monotonic() + 10
    while read_at(c, r0.url_of(node), user, r0.epoch) != 200:
        check(time.monotonic() < deadline, "%s still gates %d after the change failed" % (
            node, user))
        time.sleep(0.05)


@test
def test_a_restarted_leader_counts_its_attempts_on(api):
    """Attempt ids order the attempts at one change for its targets. A
    router restarted within its lease term keeps that term, so its count
    of attempts must start above its predecessor's last: the leading
    router is restarted, makes two changes, is restarted again at once
    and makes two more; the ids increase throughout."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 3, "too few nodes: %r" % (r0 and r0.active))
    node, url = r0.active[-1], r0.url_of(r0.active[-1])
    seen = []
    for restart, verb in ((True, "remove"), (False, "add"), (True, "remove"), (False, "add")):
        name = c.leader()
        check(name, "no leading router")
        if restart:
            c.run("restart", name)
        leader_url, st = leader_state(c)
        if verb == "remove":
            status, body = c.signed("POST", "%s/internal/admin/nodes/%s/remove" % (
                leader_url, node), timeout=120)
            r, _ = c.wait_ring(lambda r: node not in r.active, 15)
        else:
            deadline = time.monotonic() + 10  # the restarted router hears it
            while not any(m["name"] == node and m["age_ms"] < 1000 for m in st["nodes"]):
                check(time.monotonic() < deadline, "%s unheard: %r" % (node, st["nodes"]))
                time.sleep(0.1)
                leader_url, st = leader_state(c)
            status, body = c.signed("POST", leader_url + "/internal/admin/nodes",
                                    {"name": node, "url": url}, timeout=120)
            r, _ = c.wait_ring(lambda r: node in r.active, 15)
        check(status == 200 and r is not None, "%s-node after restarting %s: %s %r" % (
            verb, name, status, body[:200]))
        seen.append((name, st["term"] if "term" in st else None, r.epoch, r.doc.get("attempt")))
    print("# changes right after restarting the leader (router, term, epoch, attempt): %r" % seen)
    check(all(isinstance(s[3], int) for s in seen), "a published ring without its attempt")
    ids = [s[3] for s in seen]
    check(ids == sorted(set(ids)), "attempt ids do not increase: %r" % ids)
    # Settled before the next test: the re-added node serves its users.
    r1 = c.ring()
    user = [u for u in new_users(400) if r1.owner(u) == node][0]
    deadline = time.monotonic() + 10
    while api.send(new_users(1)[0], user, "after the changes").status != 201:
        check(time.monotonic() < deadline, "%s does not serve %d after the changes" % (
            node, user))
        time.sleep(0.1)


@test
def test_imports_of_a_called_off_attempt_are_dropped(api):
    """A handoff attempt that is called off leaves its copies at the
    targets. When a later attempt at the same change publishes that epoch,
    a copy the later attempt did not send again is stale (the source
    served writes in between) and must not be served. Runs next to last:
    it removes a node."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes")
    node = r0.active[0]
    url = r0.url_of(node)
    doc = dict(r0.doc)
    doc["epoch"] = r0.epoch + 1
    doc["attempt"] = 1  # older than any router's (term << 24 | count)
    doc["nodes"] = [n for n in r0.doc["nodes"] if n["name"] != node]
    user = [u for u in new_users(400) if r0.owner(u) == node][0]
    peer = new_users(1)[0]
    cid = e2e_lib.conversation_id(user, peer)
    # A gate of the changes before may still hold the user (503, retried
    # as a client would, with the same key).
    cmid = e2e_lib.new_cmid("first")
    deadline = time.monotonic() + 10
    first = api.send(peer, user, "one", cmid=cmid)
    while first.status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        first = api.send(peer, user, "one", cmid=cmid)
    check(first.status in (200, 201), "first send: %s" % first.describe())
    check(api.convs(user).status == 200 and api.msgs(user, cid).status == 200, "warm reads")
    # Attempt A copies the user to its successor, then nobody runs it.
    status, body = c.signed("POST", url + "/internal/handoff", {"ring": json.dumps(doc)},
                            timeout=HANDOFF_WAIT_S)
    check(status == 200 and json.loads(body)["keys"] > 0, "handoff A: %s %r" % (status, body))
    deadline = time.monotonic() + 10
    while read_at(c, url, user, r0.epoch) != 200:
        check(time.monotonic() < deadline, "%s never served %d again" % (node, user))
        time.sleep(0.05)
    # The source serves a write the copy lacks, then loses the user's keys.
    check(api.send(peer, user, "two").status == 201, "second send")
    redis_forget(c, node, user)
    # Attempt B, the router's own, publishes that epoch without the user.
    leader_url, _ = leader_state(c)
    status, body = c.signed("POST", "%s/internal/admin/nodes/%s/remove" % (leader_url, node),
                            timeout=120)
    check(status == 200, "remove-node: %s %r" % (status, body[:200]))
    r1, _ = c.wait_ring(lambda r: node not in r.active, 15)
    check(r1 is not None and r1.epoch == r0.epoch + 1,
          "the ring after remove-node (was %d): %r" % (r0.epoch, r1 and r1.doc))
    got = history_retrying(api, user, cid)
    print("# after a called-off attempt and remove-node, %d on %s reads %r" % (
        user, r1.owner(user), got))
    check(got == ["two", "one"], "the new owner served the called-off attempt's copy: %r" % got)


# Users copied to a node for a later ring, and users with a stray key
# there (whose going shows that the node's clean-up ran).
COPIED_USERS = 8
STRAY_USERS = 8
CLEAN_UP_WAIT_S = 15.0


@test
def test_a_ring_change_keeps_copies_for_a_later_ring(api):
    """The router prepares a planned change as soon as it published the
    ring before it, so a target may get that change's copies before it
    installed that ring, or while the ring's clean-up scan runs. The
    clean-up drops the keys of every user the node does not own under the
    ring in force; it must keep the ones copied for the later ring, and
    only those. Runs last: it pauses a node past its lease, and leaves
    copies for a ring that never comes."""
    c = CLUSTER
    r0 = c.ring()
    check(r0 is not None and len(r0.active) >= 2, "too few nodes")
    node, paused = r0.active[0], r0.active[1]
    url = r0.url_of(node)
    foreign = [u for u in new_users(4000) if r0.owner(u) != node]
    copied, stray = foreign[:COPIED_USERS], foreign[COPIED_USERS:COPIED_USERS + STRAY_USERS]
    redis_cmd(node, "HSET", "t:{1}", "seq", "1", "m:c1", "1:1")
    payload = redis_dump(node, "t:{1}")
    redis_cmd(node, "DEL", "t:{1}")
    dump = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    # Copies (metas, which the import puts in the node's user index) for
    # the change after the next ring (the node holds r0).
    entries = [{"key": "u:{%d}" % u, "dump": dump, "ttl": 0} for u in copied]
    status, body = c.signed("POST", url + "/internal/handoff/import",
                            {"epoch": r0.epoch + 2, "attempt": 40, "entries": entries})
    check(status == 200 and json.loads(body)["restored"] == COPIED_USERS,
          "import for epoch %d: %s %r" % (r0.epoch + 2, status, body[:200]))
    # Metas of users the node does not own, indexed as a fill indexes them
    # (hot_index_score: the top 53 bits of the ring hash).
    for u in stray:
        redis_cmd(node, "HSET", "u:{%d}" % u, "seq", "1")
        redis_cmd(node, "ZADD", "hot:users", str(hash_user(u) >> 11), str(u))
    # Keys of the copied users that were not copied (left by a call under
    # an older ring; the copied meta names this message window): they go,
    # as any lost user's keys do.
    for u in copied:
        redis_cmd(node, "SET", "m:{%d}:c1" % u, "not copied")
    # The next ring: a failover, which copies nothing.
    c.run("pause", paused)
    try:
        r1, _ = c.wait_ring(lambda r: paused not in r.active, MOVE_WAIT_S)
    finally:
        c.run("resume", paused)
    check(r1 is not None and r1.epoch == r0.epoch + 1,
          "the ring after %s froze (was %d): %r" % (paused, r0.epoch, r1 and r1.doc))
    lost = [u for u in stray if r1.owner(u) != node]
    kept = [u for u in copied if r1.owner(u) != node]
    check(lost and kept, "no user that %s does not own at epoch %d" % (node, r1.epoch))

    def present(users):
        return [u for u in users if redis_cmd(node, "EXISTS", "u:{%d}" % u)[0] == "1"]

    deadline = time.monotonic() + CLEAN_UP_WAIT_S
    while present(lost):
        check(time.monotonic() < deadline,
              "%s kept stray keys of users it does not own at epoch %d" % (node, r1.epoch))
        time.sleep(0.1)
    left = present(kept)
    not_copied = [u for u in kept if redis_cmd(node, "EXISTS", "m:{%d}:c1" % u)[0] == "1"]
    print("# %s's clean-up for epoch %d: %d stray users' keys dropped, %d of %d users copied "
          "for epoch %d kept, %d of their keys not copied left" % (
              node, r1.epoch, len(lost), len(left), len(kept), r0.epoch + 2, len(not_copied)))
    check(left == kept, "the clean-up dropped copies for a later ring: %r of %r left" % (
        left, kept))
    check(not not_copied, "the clean-up kept keys of copied users that were not copied: %r"
          % not_copied)


def watch_old_owner(c, url, users, old_epoch):
    """Reads each former user straight from the resumed node, at the old
    epoch and at the newest, for WATCH_S. Returns the (user, epoch) pairs
    it answered 200 for while the newest ring gave the user to another
    node."""
    served = []
    answers = {}
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        ring = c.ring()
        for u in users:
            for epoch in {old_epoch, ring.epoch if ring else old_epoch}:
                status, _ = c.signed("GET", "%s/internal/users/%d/conversations" % (url, u),
                                      headers={"X-Ring-Epoch": str(epoch)})
                answers[status] = answers.get(status, 0) + 1
                if status == 200:
                    now = c.ring()
                    if now is None or now.owner(u) != TARGET:
                        served.append((u, epoch))
        time.sleep(0.1)
    print("# reads of former users at the resumed node: %s" % answers)
    check(sum(answers.values()) > 0 and None not in answers,
          "the resumed node did not answer every read: %s" % answers)
    return served


if __name__ == "__main__":
    e2e_lib.run_with_own_cluster("messenger-fencing-", cluster_start, setup)
