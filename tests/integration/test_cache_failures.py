#!/usr/bin/env python3
"""Integration: the cache node against real PostgreSQL, Redis and peers.

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR, its
own ports) and proves what the cache tier promises:

- fencing: a call routed by a stale epoch, or to a node that does not own
  the user, is refused with 421 and changes nothing;
- the hot mailbox is written through after the durable write and reads
  are served from it; a window that disagrees with its meta, or holds an
  entry that is not a JSON object, is never served;
- a Redis restart (empty Redis) or a Redis that is down never makes a
  reader miss a message: the node rebuilds from storage;
- a sync token that a delta answered by storage issued while the hot
  meta lagged behind (a write's Redis update under way) still gets a
  delta, from a list and from an events poll, not the full page of a
  token from the future;
- a recipient whose node is down still gets the copy once the node is
  back (the transactional outbox), exactly once;
- a write script Redis answers with an error drops only its user's hot
  mailbox, not every user's.

Its direct calls to the router and cache nodes are signed with the
cluster's internal secret (X-Internal-Auth), as services sign theirs.

Run: python3 tests/integration/test_cache_failures.py
"""

import base64
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, expect_status, fail, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_CACHE_TEST_BASE_PORT", "31000"))
# How long a recipient copy may take to land through the outbox worker
# after its node is back (first retry after 3 s, then every second).
OUTBOX_WAIT_S = 20


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, extra_env={"MESSENGER_GATEWAYS": "1", "MESSENGER_CACHES": "3"}, check_rc=check_rc)


def http_json(method, url, headers=None, body=None):
    """A call signed with the cluster's internal secret (INTERNAL_SECRET)."""
    return e2e_lib.signed_call(INTERNAL_SECRET, method, url, headers, body)


class Layout:
    """The cluster's internal URLs and the ring epoch."""

    def __init__(self, env):
        self.router = env["ROUTER_URL"]
        self.caches = [u for u in env["CACHE_URLS"].split(",") if u]
        self.redis_ports = [p for p in env["REDIS_PORTS"].split(",") if p]

    def epoch(self):
        status, ring = http_json("GET", self.router + "/internal/ring")
        check(status == 200, "router answered %d" % status)
        return ring["epoch"]

    def probe(self, cache_url, user, epoch):
        return http_json("GET", "%s/internal/users/%d/conversations" % (cache_url, user),
                         headers={"X-Ring-Epoch": str(epoch)})[0]

    def owner(self, user):
        """Index (0-based) of the node that owns user: the only one that
        answers 200 at the current epoch."""
        epoch = self.epoch()
        answers = [self.probe(u, user, epoch) for u in self.caches]
        owners = [i for i, s in enumerate(answers) if s == 200]
        check(len(owners) == 1 and all(s in (200, 421) for s in answers),
              "user %d: expected one owner and 421 elsewhere, got %r" % (user, answers))
        return owners[0]

    def users_on(self, node, count, exclude=()):
        out = []
        for _ in range(2000):
            u = new_user()
            if u not in exclude and self.owner(u) == node:
                out.append(u)
                if len(out) == count:
                    return out
        fail("no user found on node %d" % node)


LAYOUT = None
ENV = None
VAR = None
INTERNAL_SECRET = None


def metric(cache_url, name):
    return e2e_lib.metric_total(cache_url, name)


def messages_of(api, user, peer):
    return [m["message_id"] for m in api.all_msgs(user, e2e_lib.conversation_id(user, peer))]


@test
def test_cache_refuses_stale_epoch_and_foreign_users(api):
    user = new_user()
    epoch = LAYOUT.epoch()
    owner = LAYOUT.owner(user)
    for i, url in enumerate(LAYOUT.caches):
        if i != owner:
            check(LAYOUT.probe(url, user, epoch) == 421, "non-owner served user")
    check(LAYOUT.probe(LAYOUT.caches[owner], user, epoch - 1) == 421,
          "owner accepted a stale epoch")
    status, _ = http_json("GET", "%s/internal/users/%d/conversations" % (LAYOUT.caches[owner], user))
    check(status == 400, "a call without X-Ring-Epoch got %d" % status)
    # A refused send stores nothing.
    peer = new_user()
    body = {"sender_id": user, "recipient_id": peer, "content": "fenced",
            "client_message_id": "fence-1"}
    status, _ = http_json("POST", LAYOUT.caches[owner] + "/internal/send",
                          headers={"X-Ring-Epoch": str(epoch - 1)}, body=body)
    check(status == 421, "stale-epoch send got %d" % status)
    check(messages_of(api, user, peer) == [], "a refused send stored a message")


@test
def test_reads_are_served_from_the_hot_mailbox(api):
    a, b = LAYOUT.users_on(0, 1)[0], new_user()
    sent = [api.send_ok(a, b, "hot %d" % i)["message_id"] for i in range(5)]
    url = LAYOUT.caches[0]
    api.convs_ok(a)  # fills the window if needed
    hits = metric(url, "cache_hits_total")
    for _ in range(5):
        j = api.convs_ok(a)
        check(j["conversations"][0]["last_message_id"] == sent[-1], "stale conversation list")
    check(metric(url, "cache_hits_total") >= hits + 5, "list reads did not hit the hot mailbox")
    # A send after the window was filled is visible at once (write-through).
    newer = api.send_ok(a, b, "after fill")["message_id"]
    check(api.convs_ok(a)["conversations"][0]["last_message_id"] == newer,
          "write-through did not update the hot conversation list")
    check(messages_of(api, a, b) == [newer] + sent[::-1], "messages differ after write-through")


def redis_on(node, *args):
    """A command on the Redis of cache node `node` (0-based)."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", LAYOUT.redis_ports[node]] + list(args),
                         capture_output=True, text=True, timeout=10)
    check(out.returncode == 0, "redis-cli %r failed: %s" % (args, out.stderr))
    return out.stdout.splitlines()


def damage_newest(node, key, replacement=None):
    """Removes the newest entry of a hot window, or swaps its JSON part
    for replacement (the window keeps its size then)."""
    newest = redis_on(node, "ZREVRANGE", key, "0", "0")
    check(len(newest) == 1 and newest[0].count("|") >= 2, "window %s is not loaded: %r" % (key, newest))
    check(redis_on(node, "ZREM", key, newest[0]) == ["1"], "could not remove from " + key)
    if replacement is not None:
        prefix = "|".join(newest[0].split("|")[:2])
        redis_on(node, "ZADD", key, "0", prefix + "|" + replacement)


@test
def test_hot_pages_are_whole_or_not_served(api):
    a = LAYOUT.users_on(0, 1)[0]
    peers = [new_user() for _ in range(3)]
    for i, b in enumerate(peers):
        for j in range(4):
            api.send_ok(a, b, "page %d.%d \u00e9\u4e2d \\ \"quoted\"" % (i, j))
    cid = e2e_lib.conversation_id(a, peers[-1])
    url = LAYOUT.caches[0]
    # The first reads fill the windows; the next ones are answered from them.
    want_convs, want_msgs = api.convs_ok(a), api.msgs_ok(a, cid)
    hits = metric(url, "cache_hits_total")
    check(api.convs_ok(a) == want_convs and api.msgs_ok(a, cid) == want_msgs,
          "a hot page differs from the first read")
    check(metric(url, "cache_hits_total") >= hits + 2, "pages were not served from the hot windows")
    check(len(want_convs["conversations"]) == 3 and len(want_msgs["messages"]) == 4,
          "unexpected pages: %r %r" % (want_convs, want_msgs))
    # A window shorter than its meta says (an entry lost): not served, and
    # rebuilt from storage.
    damage_newest(0, "m:{%d}:%s" % (a, cid))
    check(api.msgs_ok(a, cid) == want_msgs, "a window missing its newest message was served")
    damage_newest(0, "c:{%d}" % a)
    check(api.convs_ok(a) == want_convs, "a window missing its newest conversation was served")
    # An entry whose JSON is damaged, in a window of the right size: not
    # served either.
    damage_newest(0, "m:{%d}:%s" % (a, cid), replacement="not json")
    check(api.msgs_ok(a, cid) == want_msgs, "a window holding a damaged entry was served")
    damage_newest(0, "c:{%d}" % a, replacement='{"half":')
    check(api.convs_ok(a) == want_convs, "a conversation window holding a damaged entry was served")


@test
def test_a_refused_redis_update_drops_only_its_user(api):
    """Redis answering a write script with an error (here: the user's meta
    is no longer a hash, so the script fails on it) ends that call: only
    the user it was for is dropped from the hot mailboxes, not the whole
    Redis of the node."""
    a, b = LAYOUT.users_on(0, 2)
    peer = [u for u in (new_user() for _ in range(2000)) if LAYOUT.owner(u) != 0][0]
    url = LAYOUT.caches[0]
    first = api.send_ok(peer, a, "before")["message_id"]
    api.send_ok(peer, b, "to b")
    for u in (a, b):
        api.convs_ok(u)
        api.msgs_ok(u, e2e_lib.conversation_id(u, peer))
    misses0 = metric(url, "cache_misses_total")
    check(api.convs_ok(b) and metric(url, "cache_misses_total") == misses0,
          "b is not hot before the test")
    meta = "u:{%d}" % a
    redis_on(0, "DEL", meta)
    redis_on(0, "SET", meta, "not a hash")
    second = api.send_ok(peer, a, "after the damage")["message_id"]
    misses = metric(url, "cache_misses_total")
    api.convs_ok(b)
    after = metric(url, "cache_misses_total")
    print("# b's list after a refused update of a: %s" % ("hit" if after == misses else "miss"))
    check(after == misses, "b's hot mailbox was flushed with a's")
    check(redis_on(0, "EXISTS", meta) == ["0"], "a's damaged hot mailbox survived the failed update")
    check(messages_of(api, a, peer) == [second, first], "a's messages after the refusal")


@test
def test_redis_restart_rebuilds_from_storage(api):
    a = LAYOUT.users_on(1, 1)[0]
    b = new_user()
    before = [api.send_ok(a, b, "before restart %d" % i)["message_id"] for i in range(3)]
    check(messages_of(api, a, b) == before[::-1], "history wrong before the restart")
    cluster(VAR, "restart", "redis-2")
    after = api.send_ok(a, b, "after restart")["message_id"]
    check(messages_of(api, a, b) == [after] + before[::-1], "history lost across a Redis restart")
    check(api.convs_ok(a)["conversations"][0]["last_message_id"] == after,
          "conversation list stale after a Redis restart")


@test
def test_redis_down_serves_from_storage_and_recovers(api):
    a = LAYOUT.users_on(2, 1)[0]
    b = new_user()
    first = api.send_ok(a, b, "with redis")["message_id"]
    api.convs_ok(a)
    cluster(VAR, "kill", "redis-3")
    try:
        during = api.send_ok(a, b, "without redis")["message_id"]
        check(messages_of(api, a, b) == [during, first], "reads wrong while Redis is down")
    finally:
        cluster(VAR, "restart", "redis-3")
    after = api.send_ok(a, b, "redis back")["message_id"]
    check(messages_of(api, a, b) == [after, during, first], "history wrong after Redis came back")
    check(api.convs_ok(a)["conversations"][0]["last_message_id"] == after,
          "conversation list stale after Redis came back")


def token_seq(token):
    """The change counter in a sync token (common/synctoken.h: base64url
    of "v1|kind|user|seq[|cid]")."""
    text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return int(text.split("|")[3])


# How long the test looks for the write that waits on the frozen Redis
# (the node gives up on Redis after 500 ms, hot.c HOT_TIMEOUT_MS).
LAG_POLL_S = 0.4


@test
def test_a_token_ahead_of_the_hot_meta_gets_a_delta(api):
    me = LAYOUT.users_on(1, 1)[0]
    peer = LAYOUT.users_on(0, 1)[0]
    api.send_ok(peer, me, "one")
    old = api.convs_ok(me)["sync_token"]
    api.send_ok(peer, me, "two")
    check(api.convs_ok(me, {"since": old})["is_delta_update"], "a plain delta was not one")
    hot_seq = token_seq(api.convs_ok(me)["sync_token"])
    sent = []
    writer = threading.Thread(target=lambda: sent.append(api.send(peer, me, "three").status))
    cluster(VAR, "pause", "redis-2")
    try:
        # The copy of "three" commits in storage, then its Redis update
        # waits on the frozen Redis while the node's meta still says
        # hot_seq: a delta from an older token goes to storage and comes
        # back with storage's counter.
        writer.start()
        ahead, lagging, polled = None, None, None
        deadline = time.monotonic() + LAG_POLL_S
        while time.monotonic() < deadline:
            j = api.convs_ok(me, {"since": old})
            if token_seq(j["sync_token"]) > hot_seq:
                ahead = j["sync_token"]
                lagging = api.convs_ok(me, {"since": ahead})
                polled = api.call("GET", "/v1/users/%d/events?since=%s&timeout=0" % (me, ahead),
                                  user=me)
                break
    finally:
        cluster(VAR, "resume", "redis-2")
        writer.join(30)
    check(sent == [201], "the send during the freeze answered %r" % sent)
    check(ahead is not None, "storage never ran ahead of the hot meta within %.1f s"
          % LAG_POLL_S)
    check(lagging["is_delta_update"] and lagging["conversations"] == [],
          "token %s (storage's counter, ahead of the hot meta) got %r"
          % (ahead, {k: lagging[k] for k in ("is_delta_update", "sync_token", "has_more")}))
    expect_status(polled, 200)
    check(polled.json["is_delta_update"] and polled.json["conversations"] == [],
          "an events poll at token %s got %r" % (ahead, polled.json))


@test
def test_outbox_delivers_once_the_recipient_node_is_back(api):
    a = LAYOUT.users_on(0, 1)[0]
    b = LAYOUT.users_on(1, 1, exclude=(a,))[0]
    cluster(VAR, "kill", "cache-2")
    try:
        m = api.send_ok(a, b, "while your node is down")
        r = api.send(a, b, "while your node is down", cmid=m["client_message_id"])
        expect_status(r, 200)
        check(r.json == m, "replay differs from the first answer")
        cid = m["conversation_id"]
        check([x["message_id"] for x in api.all_msgs(a, cid)] == [m["message_id"]],
              "sender's copy missing")
    finally:
        cluster(VAR, "restart", "cache-2")
    deadline = time.monotonic() + OUTBOX_WAIT_S
    got = []
    while time.monotonic() < deadline:
        r = api.msgs(b, cid)
        if r.status == 200:
            got = [x["message_id"] for x in r.json["messages"]]
            if got:
                break
        time.sleep(0.5)
    check(got == [m["message_id"]], "recipient copy did not land exactly once: %r" % got)
    conv = api.convs_ok(b)["conversations"]
    check(len(conv) == 1 and conv[0]["last_message_id"] == m["message_id"],
          "recipient's conversation list wrong: %r" % conv)


class Placement:
    """Storage's shard map (GET /internal/placement)."""

    def __init__(self):
        status, body = http_json("GET", ENV["STORAGE_URL"] + "/internal/placement")
        check(status == 200, "placement answered %d" % status)
        self.shards, self.of = body["shards"], body["instance_of"]

    def instance(self, user):
        return self.of[e2e_lib.ring_hash_user(user) % self.shards]

    def users(self, node, instance, count):
        out = []
        while len(out) < count:
            u = LAYOUT.users_on(node, 1, exclude=out)[0]
            if self.instance(u) == instance:
                out.append(u)
        return out


# Under both bounds a stall may meet: storage's statement timeout (3 s)
# and a cache node's wait for its queue (STORE_QUEUE_WAIT_MS, 3 s), past
# which the stalled writes answer 503 instead.
STALL_S = 2.6


@test
def test_a_stalled_instance_holds_up_only_its_own_writes(api):
    """A cache node queues its writes per storage instance: while every
    write on one instance waits for a lock, the node's calls for that
    instance stall, and writes for the other instance go through at once
    instead of queueing behind them."""
    place = Placement()
    stalled = place.users(0, 1, 4)
    fine_sender = place.users(0, 0, 1)[0]
    fine_peers = [u for u in (new_user() for _ in range(200)) if place.instance(u) == 0][:3]
    peers = [u for u in (new_user() for _ in range(200)) if place.instance(u) == 1][:4]
    for a, b in zip(stalled, peers):  # their nodes now hold their hot meta
        api.send_ok(a, b, "before the stall")
    api.send_ok(fine_sender, fine_peers[0], "before the stall")
    # Every write on instance 1 touches its mailboxes row, so this lock
    # holds them all for STALL_S seconds.
    pg_url = ENV["PG_URLS"].split(",")[1]
    locker = subprocess.Popen(
        ["psql", "-qAt", pg_url, "-c",
         "BEGIN; LOCK TABLE mailboxes IN ACCESS EXCLUSIVE MODE; "
         "SELECT pg_sleep(%.1f); COMMIT;" % STALL_S],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        results = {}

        def stalled_send(k):
            t0 = time.monotonic()
            r = api.send(stalled[k], peers[k], "during the stall", fresh=True)
            results[k] = (r.status, time.monotonic() - t0)

        workers = [threading.Thread(target=stalled_send, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        quick = []
        for b in fine_peers:
            t0 = time.monotonic()
            api.send_ok(fine_sender, b, "past the stall")
            quick.append(time.monotonic() - t0)
        for w in workers:
            w.join(60)
    finally:
        locker.wait(30)
    check(locker.returncode == 0, "the lock did not run: %r" % locker.stderr.read())
    slow = sorted(t for _, t in results.values())
    check(len(results) == 4 and all(s == 201 for s, _ in results.values()),
          "stalled sends: %r" % results)
    check(slow[0] > 1.5, "the sends on the locked instance did not stall: %r" % slow)
    check(max(quick) < 1.5, "writes on the other instance waited: %r s "
          "(stalled ones %r s)" % (quick, slow))


def setup(var, env):
    global VAR, INTERNAL_SECRET, LAYOUT, ENV
    VAR, ENV = var, env
    INTERNAL_SECRET = e2e_lib.internal_secret(env)
    LAYOUT = Layout(env)


def main():
    e2e_lib.run_with_own_cluster("messenger-cache-test.", cluster, setup)


if __name__ == "__main__":
    main()
