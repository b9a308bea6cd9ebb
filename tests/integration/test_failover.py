#!/usr/bin/env python3
"""Integration: failover machinery of docs/failover.md, one step at a time.

Starts its own cluster (2 routers, 3 cache nodes + 1 standby, temporary
MESSENGER_VAR, its own ports) and proves, in order:

- a killed cache node is replaced by the standby, which takes exactly its
  slot: only the dead node's users move, sends for them work again within
  seconds and every message stored before the kill is still there;
- a killed node with no standby left leaves the ring and its users move to
  their ring successors;
- a killed node that comes back is a standby, not a ring member;
- killing the leading router hands the lease to the other router, the
  epoch carries on from the stored one, and the new leader changes the
  ring;
- add-node moves about 1/(N+1) of the users, with their hot mailboxes
  (reads of moved users are hits on the new node, not misses);
- remove-node drains a node: its users keep every message and are read
  from their new owners' memory;
- a send acknowledged while a planned move gates its recipient has the
  recipient's copy stored (201 means both copies durable, SPEC 4);
- a node that holds no lease refuses to serve (SIGSTOP past the lease:
  503 or 421 after it resumes, never a stale answer);
- a node whose ring change scans a large Redis (1.5 million keys) keeps
  heartbeating meanwhile, so it is not taken for dead;
- a read that outlasts a ring change's clean-up (a fill waiting on a
  frozen storage while its node is replaced) leaves no keys of the user
  it lost: it forgets them when it ends.

Run: python3 tests/integration/test_failover.py
"""

import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, fail, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_FAILOVER_TEST_BASE_PORT", "20000"))
# Kill to first successful send of an affected user: 1.5 s of silence, a
# tick, a ring fetch, plus slack for the sanitizer build on a busy machine.
FAILOVER_LIMIT_S = 10
VAR = None
ENV = None


def cluster(*args, check_rc=True):
    return e2e_lib.run_cluster(VAR, BASE_PORT, *args,
                               extra_env={"MESSENGER_GATEWAYS": "1", "MESSENGER_CACHES": "3",
                                          "MESSENGER_STANDBYS": "1", "MESSENGER_ROUTERS": "2"},
                               check_rc=check_rc)


def http_json(method, url, headers=None, body=None):
    return e2e_lib.signed_call(ENV["MESSENGER_INTERNAL_SECRET"], method, url, headers, body)


# ------------------------------------------------------------ the ring

MASK = (1 << 64) - 1


def ring_hash(data):
    """common/ring.c: FNV-1a 64 with the splitmix64 finaliser."""
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) & MASK
    h = ((h ^ (h >> 30)) * 0xbf58476d1ce4e5b9) & MASK
    h = ((h ^ (h >> 27)) * 0x94d049bb133111eb) & MASK
    return h ^ (h >> 31)


class Ring:
    def __init__(self, doc):
        self.epoch = doc["epoch"]
        self.nodes = doc["nodes"]
        tokens = []
        for i, n in enumerate(self.nodes):
            slot = n.get("slot") or n["name"]
            for v in range(doc["vnodes"]):
                tokens.append((ring_hash(("%s#%d" % (slot, v)).encode()), slot, i))
        tokens.sort()
        self.hashes = [t[0] for t in tokens]
        self.owners = [t[2] for t in tokens]

    def owner(self, user):
        import bisect
        h = ring_hash(str(user).encode())
        i = bisect.bisect_left(self.hashes, h)
        return self.nodes[self.owners[i % len(self.owners)]]["name"]

    def names(self):
        return [n["name"] for n in self.nodes]


def router_urls():
    return [u for u in ENV["ROUTER_URLS"].split(",") if u]


def router_state(url):
    status, doc = http_json("GET", url + "/internal/router")
    return doc if status == 200 else None


def leader():
    """(url, state) of the leading router; waits up to 10 s for one."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for url in router_urls():
            st = router_state(url)
            if st and st["leader"]:
                return url, st
        time.sleep(0.2)
    fail("no router leads")


def ring():
    return Ring(leader()[1]["ring"])


def wait_ring(pred, what, limit_s=15):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        r = ring()
        if pred(r):
            return r
        time.sleep(0.2)
    fail("ring never %s: %r" % (what, ring().nodes))


def cache_url(name):
    return "http://127.0.0.1:%d" % (BASE_PORT + 300 + int(name.split("-")[1]))


def metric(name, series):
    return e2e_lib.metric_total(cache_url(name), series)


def users_on(r, node, count):
    out = []
    for _ in range(20000):
        u = new_user()
        if r.owner(u) == node:
            out.append(u)
            if len(out) == count:
                return out
    fail("no user on %s" % node)


def send_until_ok(api, sender, recipient, content, limit_s):
    """Retries one send (same key) until it is acknowledged; returns the
    seconds it took."""
    cmid = e2e_lib.new_cmid("fo")
    t0 = time.time()
    while time.time() - t0 < limit_s:
        try:
            r = api.send(sender, recipient, content, cmid=cmid, fresh=True)
            if r.status in (200, 201):
                return time.time() - t0
        except e2e_lib.TestFailure:
            pass  # timed out: retry with the same key
        time.sleep(0.05)
    fail("send %d->%d not acknowledged within %d s" % (sender, recipient, limit_s))


def read_until_ok(api, user, limit_s=FAILOVER_LIMIT_S):
    """The user's conversation list, retried like a client on a retryable
    answer (503 with Retry-After: a node between leases or gated by a
    handoff, 421 while a ring spreads)."""
    t0 = time.time()
    while time.time() - t0 < limit_s:
        r = api.convs(user)
        if r.status == 200:
            return r
        check(r.status in (421, 503), "conversation list of %d: %s" % (user, r.describe()))
        time.sleep(0.05)
    fail("conversation list of %d not answered within %d s" % (user, limit_s))


def history(api, user, peer):
    """The contents of the pair's conversation in user's mailbox; a read
    that meets a retryable answer part way starts again."""
    cid = e2e_lib.conversation_id(user, peer)
    t0 = time.time()
    while True:
        try:
            return [m["content"] for m in api.all_msgs(user, cid)]
        except e2e_lib.TestFailure:
            if time.time() - t0 > FAILOVER_LIMIT_S:
                raise
            time.sleep(0.2)



# ------------------------------------------------------------ the tests


@test
def test_standby_takes_exactly_the_dead_nodes_slot(api):
    before = ring()
    check(before.names() == ["cache-1", "cache-2", "cache-3"],
          "first ring: %r" % before.names())
    victims = users_on(before, "cache-2", 3)
    peer = new_user()
    for u in victims:
        send_until_ok(api, u, peer, "before %d" % u, FAILOVER_LIMIT_S)
    sample = [new_user() for _ in range(3000)]
    cluster("kill", "cache-2")
    took = send_until_ok(api, victims[0], peer, "after", FAILOVER_LIMIT_S)
    after = wait_ring(lambda r: "cache-2" not in r.names(), "without cache-2")
    node = [n for n in after.nodes if n["name"] == "cache-4"]
    check(node and node[0]["slot"] == "cache-2",
          "standby cache-4 did not take slot cache-2: %r" % after.nodes)
    check(after.epoch > before.epoch, "epoch did not grow")
    for u in sample:
        want = before.owner(u)
        want = "cache-4" if want == "cache-2" else want
        check(after.owner(u) == want, "user %d moved from %s to %s" % (u, before.owner(u),
                                                                        after.owner(u)))
    for u in victims:
        check(history(api, u, peer).count("before %d" % u) == 1,
              "user %d lost its message across the failover" % u)
    print("    failover: first acknowledged send %.2f s after the kill" % took)


@test
def test_without_a_standby_users_move_to_successors(api):
    before = ring()
    victims = users_on(before, "cache-3", 2)
    peer = new_user()
    for u in victims:
        send_until_ok(api, u, peer, "kept %d" % u, FAILOVER_LIMIT_S)
    cluster("kill", "cache-3")
    took = send_until_ok(api, victims[0], peer, "again", FAILOVER_LIMIT_S)
    after = wait_ring(lambda r: "cache-3" not in r.names(), "without cache-3")
    check(len(after.nodes) == len(before.nodes) - 1, "ring did not shrink: %r" % after.nodes)
    for u in [new_user() for _ in range(2000)]:
        if before.owner(u) != "cache-3":
            check(after.owner(u) == before.owner(u), "user %d of a live node moved" % u)
    for u in victims:
        check(history(api, u, peer).count("kept %d" % u) == 1, "user %d lost a message" % u)
    print("    no standby: first acknowledged send %.2f s after the kill" % took)


@test
def test_a_returning_node_is_a_standby(api):
    cluster("restart", "cache-2")
    time.sleep(1)
    st = leader()[1]
    check("cache-2" not in Ring(st["ring"]).names(), "a restarted dead node rejoined the ring")
    heard = {n["name"]: n["age_ms"] for n in st["nodes"]}
    check(heard.get("cache-2", 10 ** 9) < 2000, "the router does not hear cache-2: %r" % heard)


@test
def test_leader_router_dies_and_the_other_carries_on(api):
    url, st = leader()
    name = st["name"]
    epoch = st["ring"]["epoch"]
    cluster("kill", name)
    t0 = time.time()
    deadline = t0 + 10
    while time.time() < deadline:
        new_url, new_st = leader()
        if new_st["name"] != name:
            break
    check(new_st["name"] != name, "leadership did not move off %s" % name)
    check(new_st["ring"]["epoch"] >= epoch, "the new leader went back in epochs")
    check(new_st["term"] > st["term"], "the term did not grow")
    print("    router: %s leads %.2f s after %s was killed" % (new_st["name"],
                                                               time.time() - t0, name))
    # Sends still work on the new leader's leases.
    send_until_ok(api, new_user(), new_user(), "post-router-failover", FAILOVER_LIMIT_S)
    cluster("restart", name)


@test
def test_add_node_moves_a_share_with_hot_mailboxes(api):
    before = ring()
    n = len(before.nodes)
    # Warm every user's hot mailbox on its current owner.
    users = [new_user() for _ in range(120)]
    for i, u in enumerate(users):
        send_until_ok(api, u, users[(i + 1) % len(users)], "warm %d" % i, FAILOVER_LIMIT_S)
    for u in users:
        read_until_ok(api, u)
    out = cluster("add-node").stdout.decode().strip().splitlines()
    name = out[-1].strip()
    check(name.startswith("cache-"), "add-node printed %r" % out[-3:])
    after = wait_ring(lambda r: name in r.names(), "with %s" % name)
    sample = [new_user() for _ in range(20000)]
    moved = sum(1 for u in sample if before.owner(u) != after.owner(u))
    to_new = sum(1 for u in sample if after.owner(u) == name)
    check(moved == to_new, "users moved between old nodes: %d moved, %d to the new" % (moved,
                                                                                      to_new))
    share = moved / len(sample)
    expected = 1.0 / (n + 1)
    check(0.5 * expected < share < 1.6 * expected,
          "add-node moved %.3f of users, expected about %.3f" % (share, expected))
    hits0, misses0 = metric(name, "cache_hits_total"), metric(name, "cache_misses_total")
    moved_users = [u for u in users if after.owner(u) == name]
    check(moved_users, "none of the warmed users moved")
    for u in moved_users:
        read_until_ok(api, u)
    hits = metric(name, "cache_hits_total") - hits0
    misses = metric(name, "cache_misses_total") - misses0
    check(misses == 0 and hits >= len(moved_users),
          "moved users were not warm on %s: %d hits, %d misses" % (name, hits, misses))
    print("    add-node: %.3f of users moved (expected %.3f); %d hits, %d misses" % (
        share, expected, hits, misses))


@test
def test_remove_node_drains_with_hot_mailboxes(api):
    before = ring()
    target = before.names()[-1]
    users = users_on(before, target, 5)
    peer = new_user()
    for u in users:
        send_until_ok(api, u, peer, "drain %d" % u, FAILOVER_LIMIT_S)
        read_until_ok(api, u)
    cluster("remove-node", target)
    after = wait_ring(lambda r: target not in r.names(), "without %s" % target)
    owners = {after.owner(u) for u in users}
    hits0 = sum(metric(o, "cache_hits_total") for o in owners)
    misses0 = sum(metric(o, "cache_misses_total") for o in owners)
    for u in users:
        check(history(api, u, peer) == ["drain %d" % u], "user %d lost a message" % u)
        read_until_ok(api, u)
    misses = sum(metric(o, "cache_misses_total") for o in owners) - misses0
    hits = sum(metric(o, "cache_hits_total") for o in owners) - hits0
    check(misses == 0, "drained users were cold on their new owners: %d misses" % misses)
    check(hits >= len(users), "drained users' reads were not hits: %d" % hits)


def stored_ids(user, peer):
    """The message ids of the pair's conversation as storage holds them in
    user's mailbox (durable, whatever the cache nodes say)."""
    cid = e2e_lib.conversation_id(user, peer)
    status, doc = http_json("GET", ENV["STORAGE_URL"] +
                            "/internal/users/%d/conversations/%s/messages?page_size=100"
                            % (user, cid))
    if status != 200:
        return None
    return {m["message_id"] for m in doc["messages"]}


@test
def test_a_201_during_a_move_means_both_copies_are_durable(api):
    """SPEC 4: with both nodes up, 201 means both copies are durable. A
    planned move gates the users it moves (503 User moving) for about a
    second; a send to one of them must not answer 201 with the copy left
    in the outbox, but wait for the move to end."""
    import threading
    pairs = [(new_user(), new_user()) for _ in range(40)]
    for sender, recipient in pairs:
        send_until_ok(api, sender, recipient, "before the move", FAILOVER_LIMIT_S)
    stop = threading.Event()
    acked, late, errors, bad = [], [], [], []

    def pump():
        for round_no in range(200):
            if stop.is_set():
                return
            for sender, recipient in pairs:
                try:
                    r = api.send(sender, recipient, "during the move %d" % round_no, fresh=True)
                except e2e_lib.TestFailure as e:
                    errors.append(str(e))
                    continue
                if r.status != 201:
                    if r.status != 503:
                        bad.append(r.describe())
                    continue
                mid = r.json["message_id"]
                acked.append(mid)
                ids = stored_ids(recipient, sender)
                if ids is None:
                    bad.append("storage did not answer a read of %d" % recipient)
                elif mid not in ids:
                    late.append((sender, recipient, mid))

    before = ring()
    t = threading.Thread(target=pump)
    t.start()
    try:
        out = cluster("add-node").stdout.decode().strip().splitlines()
        name = out[-1].strip()
        after = wait_ring(lambda r: name in r.names(), "with %s" % name)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(120)
    moved = sum(1 for _, recipient in pairs if before.owner(recipient) != after.owner(recipient))
    print("    %d sends acknowledged during add-node, %d of 40 recipients moved, "
          "%d transport errors" % (len(acked), moved, len(errors)))
    check(not bad, "unexpected answers during the move: %r" % bad[:5])
    check(acked, "no send was acknowledged during the move")
    check(not late, "acknowledged with the recipient's copy not stored: %r" % late[:5])


@test
def test_a_node_without_lease_does_not_serve(api):
    r = ring()
    node = r.names()[0]
    user = users_on(r, node, 1)[0]
    peer = new_user()
    send_until_ok(api, user, peer, "before pause", FAILOVER_LIMIT_S)
    cluster("pause", node)
    try:
        after = wait_ring(lambda x: node not in x.names(), "without paused %s" % node)
        # The gateway may still route by the old ring for up to its refresh
        # period: the paused node then holds the call until the hop times
        # out, and the client retries with the same key.
        send_until_ok(api, user, peer, "while paused", 4 * FAILOVER_LIMIT_S)
    finally:
        cluster("resume", node)
    # The resumed node refuses: its lease ran out and its ring moved on.
    status, _ = http_json("GET", cache_url(node) + "/internal/users/%d/conversations" % user,
                          headers={"X-Ring-Epoch": str(r.epoch)})
    check(status in (421, 503), "a node paused past its lease served at the old epoch: %d"
          % status)
    status, _ = http_json("GET", cache_url(node) + "/internal/users/%d/conversations" % user,
                          headers={"X-Ring-Epoch": str(after.epoch)})
    check(status in (421, 503), "a replaced node served a moved user: %d" % status)
    got = sorted(history(api, user, peer))
    check(got == ["before pause", "while paused"], "history across the pause: %r" % got)

@test
def test_a_node_without_lease_is_not_ready(api):
    """SPEC 7: /readyz says whether the dependencies answer. With the
    routers' database (pg-1) down no router can lead, so no cache node
    holds a lease and each refuses every user: none is ready, although
    the routers still hand out the ring. All are ready again once it is
    back."""
    import urllib.request

    def ready(url):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_all(want, limit_s, what):
        deadline = time.time() + limit_s
        while any(ready(u) != want for u in nodes):
            check(time.time() < deadline, what)
            time.sleep(0.2)

    nodes = [cache_url(name) for name in ring().names()]
    wait_all(True, 15, "the ring's nodes are not all ready: %r" % nodes)
    cluster("kill", "pg-1")
    try:
        wait_all(False, 15, "cache nodes still ready 15 s after the routers' database died")
    finally:
        cluster("restart", "pg-1")
    wait_all(True, 30, "cache nodes not ready 30 s after the routers' database came back")


# Keys put in one node's Redis before a ring change: its clean-up scan
# (SCAN of the whole keyspace) then takes seconds, as on a large Redis.
JUNK_KEYS = 1500000


def redis_port(node):
    """The port of cache-i's Redis (scripts/cluster: BASE_PORT + 400 + i)."""
    return BASE_PORT + 400 + int(node.split("-")[1])


def fill_redis(node, count):
    """count keys of users nobody owns here, through redis-cli --pipe."""
    port = str(redis_port(node))
    lines = []
    for i in range(count):
        key = "j:{%d}" % (9000000000000000 + i)
        lines.append("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (len(key), key))
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "--pipe"],
                         input="".join(lines).encode(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=120)
    check(out.returncode == 0, "redis-cli --pipe: %r" % out.stdout[-300:])
    got = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "DBSIZE"],
                         stdout=subprocess.PIPE, timeout=30).stdout.decode().strip()
    return int(got)


def redis_cli(node, *args):
    """A command on node's Redis; its output lines."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port(node))] +
                         [str(a) for a in args], stdout=subprocess.PIPE, check=True,
                         timeout=30)
    return out.stdout.decode().splitlines()


def scan_calls(node):
    """SCAN commands node's Redis has run so far."""
    for line in redis_cli(node, "INFO", "commandstats"):
        if line.startswith("cmdstat_scan:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def wait_log(node, text, limit_s=120):
    """The first line of node's log holding text, waited for."""
    log = os.path.join(VAR, "log", node + ".log")
    deadline = time.time() + limit_s
    while time.time() < deadline:
        with open(log, errors="replace") as f:
            for line in f:
                if text in line:
                    return line.strip()
        time.sleep(0.2)
    fail("%s logged no %r within %d s" % (node, text, limit_s))


# Keys of nobody's users beside the hot mailboxes in the test of the
# index: a walk of the keyspace would have them all to visit.
INDEX_JUNK_KEYS = 300000


@test
def test_a_planned_move_finds_its_users_in_the_index(api):
    """A node gives users away on add-node: it copies the leaving users'
    keys and, once the new ring is in, drops them. Both find those users
    in the node's user index by ring range, so neither walks the node's
    keyspace (which holds many other keys); the users that stay keep
    their keys and their place in the index."""
    before = ring()
    node = before.names()[0]
    users = users_on(before, node, 40)
    peer = new_user()
    for u in users:
        send_until_ok(api, u, peer, "index %d" % u, FAILOVER_LIMIT_S)
        read_until_ok(api, u)
    check(all(redis_cli(node, "ZSCORE", "hot:users", u) != [""] for u in users),
          "a warmed user is not in %s's index" % node)
    fill_redis(node, INDEX_JUNK_KEYS)
    scans0 = scan_calls(node)
    out = cluster("add-node").stdout.decode().strip().splitlines()
    name = out[-1].strip()
    check(name.startswith("cache-"), "add-node printed %r" % out[-3:])
    after = wait_ring(lambda r: name in r.names(), "with %s" % name)
    line = wait_log(node, "not owned at epoch %d" % after.epoch)
    scans = scan_calls(node) - scans0
    left = [u for u in users if after.owner(u) != node]
    stayed = [u for u in users if after.owner(u) == node]
    metas_left = [u for u in left if redis_cli(node, "EXISTS", "u:{%d}" % u) == ["1"]]
    indexed_left = [u for u in left if redis_cli(node, "ZSCORE", "hot:users", u) != [""]]
    metas_stayed = [u for u in stayed if redis_cli(node, "EXISTS", "u:{%d}" % u) == ["1"]]
    size = int(redis_cli(node, "DBSIZE")[0])
    print("    %s: %s" % (node, line[:200]))
    print("    add-node took %d of %d warm users from %s; %d SCAN calls there" % (
        len(left), len(users), node, scans))
    check(left and stayed, "add-node moved %d of %d users" % (len(left), len(users)))
    check("from the user index" in line, "the clean-up did not use the index: %s" % line)
    check(scans == 0, "%s walked its keyspace (%d SCAN calls)" % (node, scans))
    check(not metas_left, "metas of users that left are still on %s: %r" % (node, metas_left))
    check(not indexed_left, "users that left are still in the index: %r" % indexed_left)
    check(metas_stayed == stayed, "users that stayed lost their keys: %r" % (
        sorted(set(stayed) - set(metas_stayed))))
    check(size >= INDEX_JUNK_KEYS, "other keys went too: %d left" % size)
    hits0 = metric(name, "cache_hits_total")
    misses0 = metric(name, "cache_misses_total")
    for u in left:
        read_until_ok(api, u)
    hits = metric(name, "cache_hits_total") - hits0
    misses = metric(name, "cache_misses_total") - misses0
    check(misses == 0 and hits >= len(left),
          "users copied from the index were not warm on %s: %d hits, %d misses" % (
              name, hits, misses))


@test
def test_a_long_clean_up_scan_does_not_stop_heartbeats(api):
    """A node whose user index was lost (evicted whole under maxmemory)
    walks its whole Redis for users it no longer owns when it installs a
    new ring, and rebuilds the index. That walk must not hold up its
    heartbeats: a node unheard for ROUTER_DEAD_MS is replaced, and one
    whose lease runs out stops serving."""
    r = ring()
    check(len(r.names()) >= 3, "too few nodes: %r" % r.names())
    node, other = r.names()[0], r.names()[-1]
    keys = fill_redis(node, JUNK_KEYS)
    check(keys >= JUNK_KEYS, "%s's Redis holds %d keys" % (node, keys))
    redis_cli(node, "DEL", "hot:users")
    leader_url = leader()[0]
    ages, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            st = router_state(leader_url)
            for m in (st or {}).get("nodes", []):
                if m["name"] == node:
                    ages.append(m["age_ms"])
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.time()
    cluster("remove-node", other)
    after = wait_ring(lambda x: other not in x.names(), "without %s" % other)
    # The scan is over once the node logs what it dropped for that epoch.
    done = "not owned at epoch %d" % after.epoch
    log = os.path.join(VAR, "log", node + ".log")
    deadline = time.time() + 120
    finished = False
    while time.time() < deadline and not finished:
        with open(log, errors="replace") as f:
            finished = done in f.read()
        time.sleep(0.2)
    scan_s = time.time() - t0
    with open(log, errors="replace") as f:
        for line in f:
            if "ring epoch %d" % after.epoch in line or done in line:
                print("    %s: %s" % (node, line.strip()[:200]))
    time.sleep(1.0)
    stop.set()
    t.join(5)
    print("    clean-up of %d keys on %s: done %.1f s after remove-node; its heartbeats' "
          "largest age at the router %d ms (%d samples)" % (keys, node, scan_s, max(ages),
                                                           len(ages)))
    check(finished, "%s logged no clean-up for epoch %d within 120 s" % (node, after.epoch))
    walked = wait_log(node, done, 5)
    check("walked the keyspace" in walked, "no walk without the index: %s" % walked)
    check(redis_cli(node, "ZSCORE", "hot:users", "~") == ["-1"],
          "the walk did not rebuild %s's index" % node)
    check(node in ring().names() and ring().epoch == after.epoch,
          "the ring changed again: %s was taken for dead" % node)
    check(max(ages) < 1000, "%s went unheard for %d ms during its clean-up scan" % (
        node, max(ages)))


def hot_keys_of(node, user):
    """Names of the keys of user in node's Redis (every one holds {user})."""
    port = str(redis_port(node))
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "--scan",
                          "--pattern", "*{%d}*" % user],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    check(out.returncode == 0, "redis-cli --scan: %r" % out.stdout[-300:])
    return out.stdout.decode().split()


# Reads that outlast a ring change's clean-up: how many, and how long the
# test waits for what it watches (the sanitizer build on a busy machine).
STRAGGLERS = 3
STRAGGLER_WAIT_S = 15


@test
def test_a_read_outlasting_the_clean_up_is_cleaned_up_after(api):
    """A read that passed its epoch check before the ring changed (here:
    a fill of a cold user, waiting on a frozen storage) may write the
    user's keys after the ring change's clean-up scanned past them. The
    clean-up waits for such calls only for a bound (250 ms), so such a
    call forgets its user when it ends: the node keeps no keys of a user
    it no longer owns that could be read (a later ring that gave the user
    back would serve them, behind what the other owner stored). A
    conversation list's fill writes the user's meta, conversation window
    and index, which are all a forget deletes."""
    r = ring()
    # Not the node whose Redis the test before filled: its scans take
    # seconds.
    node = r.names()[1]
    users = users_on(r, node, STRAGGLERS)
    # And one read on another node, of a user the change leaves there:
    # it must keep what it loaded.
    stays_on = [x for x in r.names() if x != node][-1]
    stayer = users_on(r, stays_on, 1)[0]
    log = os.path.join(VAR, "log", node + ".log")
    went_ahead = "calls under an older ring still running"

    def clean_ups_without_calls():
        with open(log, errors="replace") as f:
            return f.read().count(went_ahead)

    drains0 = clean_ups_without_calls()
    forgets0 = metric(node, "cache_replaced_ring_forgets_total")
    answers = []

    stayer_answer = []

    def read(u, where=node, out=answers):
        out.append(http_json(
            "GET", cache_url(where) + "/internal/users/%d/conversations" % u,
            headers={"X-Ring-Epoch": str(r.epoch)})[0])

    cluster("pause", "storage")
    threads = []
    try:
        for u in users:
            t = threading.Thread(target=read, args=(u,), daemon=True)
            t.start()
            threads.append(t)
        t = threading.Thread(target=read, args=(stayer, stays_on, stayer_answer), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(0.5)  # the fills wait on storage, their ring held
        cluster("pause", node)
        try:
            after = wait_ring(lambda x: node not in x.names(), "without paused %s" % node)
        finally:
            cluster("resume", node)
        # The node installs the ring without it, and its clean-up goes
        # ahead without the fills.
        deadline = time.time() + STRAGGLER_WAIT_S
        while clean_ups_without_calls() == drains0:
            check(time.time() < deadline, "%s logged no clean-up without its calls under "
                  "epoch %d" % (node, r.epoch))
            time.sleep(0.05)
    finally:
        cluster("resume", "storage")
    for t in threads:
        t.join(STRAGGLER_WAIT_S)
    # The fills that storage answered within the node's hop timeout (5 s:
    # all of them, unless the machine is very slow) wrote their users'
    # keys after the clean-up.
    check(200 in answers, "no read under epoch %d was answered: %r" % (r.epoch, answers))
    deadline = time.time() + STRAGGLER_WAIT_S
    left = {u: hot_keys_of(node, u) for u in users}
    while any(left.values()) and time.time() < deadline:
        time.sleep(0.2)
        left = {u: hot_keys_of(node, u) for u in users}
    print("    %s: ring %d -> %d, reads answered %r, keys left %r" % (
        node, r.epoch, after.epoch, answers, {u: len(k) for u, k in left.items()}))
    check(not any(left.values()),
          "%s still holds keys of users it lost at epoch %d: %r" % (node, after.epoch, left))
    check(metric(node, "cache_ring_drain_timeouts_total") >= 1,
          "%s counted no clean-up that went ahead without its calls" % node)
    # The reads did run past the clean-up and clean up after themselves
    # (a fill that storage no longer answered in time writes nothing,
    # and would leave the check above nothing to find).
    forgets = metric(node, "cache_replaced_ring_forgets_total") - forgets0
    check(forgets >= answers.count(200),
          "%d reads answered under epoch %d, %d forgot their user" % (
              answers.count(200), r.epoch, forgets))
    # The next ring left the stayer on its node: nothing could have
    # changed its mailbox elsewhere, so its read kept what it loaded.
    kept = hot_keys_of(stays_on, stayer)
    print("    %s: the read of %d, which the ring %d left there: %r, keys %r" % (
        stays_on, stayer, after.epoch, stayer_answer, kept))
    check(after.owner(stayer) == stays_on, "the ring moved %d too" % stayer)
    check(stayer_answer == [200] and kept,
          "%s forgot %d, which the next ring left there: %r" % (stays_on, stayer, stayer_answer))


def start(var, what, check_rc=True):
    global VAR
    VAR = var
    return cluster(what, check_rc=check_rc)


def setup(var, env):
    global ENV
    ENV = env


if __name__ == "__main__":
    e2e_lib.run_with_own_cluster("failover-", start, setup)
