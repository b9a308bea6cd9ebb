"""End-to-end: list reads batched between the gateway and the cache
nodes (POST /internal/reads, docs/internal-api.md).

- A cache node answers every read of a batch exactly as the read's own
  GET: the same status and body bytes for lists, deltas and pages, and
  the same refusals (a user it does not own, a bad query or token, a
  conversation of others, a bad user id), in the batch's order.
- A body that is not a batch of reads is refused whole with 400
  problem+json, and an unsigned batch with 401.
- Through the gateways, many reads at once are batched (the nodes'
  cache_batched_reads_total grows) and every client still gets its own
  answer: each equal to the one read alone beforehand.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_reads_batch.py
"""

import concurrent.futures
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from e2e_lib import (INTERNAL_AUTH_HEADER, check, expect_status, internal_auth, internal_secret,
                     load_cluster_env, metric_total, new_user, owner_index, run_tests,
                     signed_call, test)

# Mirrors of common/constants.h.
READS_BATCH_MAX = 16
REQUEST_ID_MAX = 64
THREADS = 32
READS_PER_THREAD = 40
ROUNDS_MAX = 5


def env():
    return load_cluster_env()


def caches():
    return [u for u in env()["CACHE_URLS"].split(",") if u]


def epoch():
    status, ring = signed_call(internal_secret(), "GET", env()["ROUTER_URL"] + "/internal/ring")
    check(status == 200, "ring fetch: %s" % status)
    return ring["epoch"]


def raw_call(method, url, body=None, headers=None, sign=True):
    """(status, content type, body bytes) of one call to a service."""
    data = body.encode() if isinstance(body, str) else body
    u = urllib.parse.urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    h = dict(headers or {})
    if sign:
        h[INTERNAL_AUTH_HEADER] = internal_auth(internal_secret(), method, target, data)
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def get_alone(node, user, query, conversation=None, ring_epoch=None):
    """The read as its own GET: (status, body bytes)."""
    path = "/internal/users/%s/conversations" % user
    if conversation is not None:
        path += "/%s/messages" % conversation
    status, _, body = raw_call("GET", "%s%s?%s" % (node, path, query),
                               headers={"X-Ring-Epoch": str(ring_epoch)})
    return status, body


def batch(node, reads):
    status, ctype, body = raw_call("POST", node + "/internal/reads", json.dumps({"reads": reads}))
    return status, ctype, body


def read(user, query, ring_epoch, conversation=None, rid="batch-test"):
    r = {"user": str(user), "query": query, "epoch": str(ring_epoch), "request_id": rid}
    if conversation is not None:
        r["conversation"] = conversation
    return r


def pair_with_messages(a, n=3):
    """Two users with n messages between them; (u, v, conversation id)."""
    u, v = new_user(), new_user()
    for i in range(n):
        a.send_ok(u, v, "batched read %d" % i)
    return u, v, "%d_%d" % (min(u, v), max(u, v))


def user_of_node(want, ring_epoch, avoid=None):
    """A fresh user owned by caches()[want]."""
    secret = internal_secret()
    for _ in range(200):
        u = new_user()
        if u != avoid and owner_index(secret, caches(), u, ring_epoch) == want:
            return u
    raise AssertionError("no user of node %d in 200 tries" % want)


@test
def test_a_batch_answers_each_read_as_its_get(a):
    u, v, cid = pair_with_messages(a)
    e = epoch()
    secret = internal_secret()
    node_i = owner_index(secret, caches(), u, e)
    node = caches()[node_i]
    token = a.convs_ok(u)["sync_token"]
    mtoken = a.msgs_ok(u, cid)["sync_token"]
    other = user_of_node((node_i + 1) % len(caches()), e) if len(caches()) > 1 else None
    cases = [
        (u, "page_size=20&page=0", None),
        (u, "page_size=2&page=1", None),
        (u, "page_size=20&since=" + token, None),
        (u, "page_size=20&page=0", cid),
        (u, "page_size=1&page=0&before=1", cid),
        (u, "page_size=20&since=" + mtoken, cid),
        (u, "page_size=20&since=" + mtoken, None),  # a token of another list: 400
        (u, "page_size=0&page=0", None),  # 400
        (u, "page_size=20&page=0", "1_2"),  # not u's conversation: 404
        ("0", "page_size=20&page=0", None),  # no such user: 404
    ]
    if other is not None:
        cases.append((other, "page_size=20&page=0", None))  # another node's user: 421
    reads = [read(user, q, e, c) for user, q, c in cases]
    status, ctype, body = batch(node, reads)
    check(status == 200 and ctype.startswith("application/json"),
          "batch: %d %s %r" % (status, ctype, body[:300]))
    answers = json.loads(body)["answers"]
    check(len(answers) == len(cases), "%d answers for %d reads" % (len(answers), len(cases)))
    seen = set()
    for (user, q, c), got in zip(cases, answers):
        want_status, want_body = get_alone(node, user, q, c, e)
        seen.add(want_status)
        check(got["status"] == want_status,
              "%s %s %s: batch %d, alone %d" % (user, c, q, got["status"], want_status))
        check(got["length"] == len(want_body),
              "%s %s %s: batch length %d, alone %d bytes" % (user, c, q, got["length"],
                                                             len(want_body)))
        check(got["body"] == json.loads(want_body),
              "%s %s %s: batch %r, alone %r" % (user, c, q, got["body"], want_body[:300]))
    want = {200, 400, 404} | ({421} if other is not None else set())
    check(seen == want, "statuses seen %r, wanted %r" % (sorted(seen), sorted(want)))
    # The exact bytes: every body of the batch appears in the answer text.
    for (user, q, c) in cases[:6]:
        check(get_alone(node, user, q, c, e)[1] in body, "%s %s: bytes differ" % (q, c))


@test
def test_pages_read_ahead_that_miss_are_loaded_and_answered(a):
    # The recipient of a send has no hot mailbox yet, and nobody read the
    # conversation: the batch's one Redis read ahead misses both windows,
    # the same page asked twice included, and each read loads its window
    # and answers as its GET does afterwards.
    u, v, cid = pair_with_messages(a, 4)
    e = epoch()
    cases = [
        (v, "page_size=20&page=0", None),
        (v, "page_size=3&page=0", cid),
        (v, "page_size=20&page=0", None),
        (v, "page_size=3&page=1", cid),
    ]
    # v's node is found by the batch itself: owner_index would read v's
    # list, and load it. The other nodes refuse every read (421) and load
    # nothing.
    for node in caches():
        hits, misses = (metric_total(node, m) for m in ("cache_hits_total", "cache_misses_total"))
        status, _, body = batch(node, [read(user, q, e, c) for user, q, c in cases])
        check(status == 200, "batch: %d %r" % (status, body[:300]))
        answers = json.loads(body)["answers"]
        if answers[0]["status"] != 421:
            break
    # All four pages were read ahead before any read loaded a window, so
    # none was answered on its first look (one by one, the last two
    # would have been), and v was loaded once.
    got_hits = metric_total(node, "cache_hits_total") - hits
    got_misses = metric_total(node, "cache_misses_total") - misses
    check(got_hits == 0 and got_misses == 1,
          "hits +%d, misses +%d: wanted +0 and +1" % (got_hits, got_misses))
    check(len(answers) == len(cases), "%d answers for %d reads" % (len(answers), len(cases)))
    for (user, q, c), got in zip(cases, answers):
        want_status, want_body = get_alone(node, user, q, c, e)
        check(want_status == 200 and got["status"] == 200,
              "%s %s: batch %d, alone %d" % (q, c, got["status"], want_status))
        check(got["body"] == json.loads(want_body),
              "%s %s: batch %r, alone %r" % (q, c, got["body"], want_body[:300]))
    pages = [json.loads(want) for want in
             (get_alone(node, v, q, c, e)[1] for _, q, c in cases)]
    check(len(pages[0]["conversations"]) == 1 and len(pages[1]["messages"]) == 3
          and len(pages[3]["messages"]) == 1,
          "pages: %r" % [len(p.get("conversations", p.get("messages", []))) for p in pages])


@test
def test_a_stale_epoch_is_refused_per_read(a):
    u, _, _ = pair_with_messages(a, 1)
    e = epoch()
    node = caches()[owner_index(internal_secret(), caches(), u, e)]
    reads = [read(u, "page_size=20&page=0", e), read(u, "page_size=20&page=0", "x1"),
             read(u, "page_size=20&page=0", e + 1000)]
    status, _, body = batch(node, reads)
    check(status == 200, "batch: %d %r" % (status, body[:300]))
    got = [x["status"] for x in json.loads(body)["answers"]]
    want = [get_alone(node, u, "page_size=20&page=0", None, r["epoch"])[0] for r in reads]
    check(got == want and got[0] == 200 and got[1] == 400,
          "statuses %r, alone %r" % (got, want))


@test
def test_what_is_not_a_batch_is_refused_whole(a):
    node = caches()[0]
    e = epoch()
    good = read(1, "page_size=20&page=0", e)
    bodies = [
        "", "not json", "[]", "{}", json.dumps({"reads": []}), json.dumps({"reads": {}}),
        json.dumps({"reads": [good] * (READS_BATCH_MAX + 1)}),
        json.dumps({"reads": [dict(good, user=1)]}),
        json.dumps({"reads": [{k: v for k, v in good.items() if k != "query"}]}),
        json.dumps({"reads": [{k: v for k, v in good.items() if k != "epoch"}]}),
        json.dumps({"reads": [dict(good, request_id="r" * REQUEST_ID_MAX)]}),
        json.dumps({"reads": [dict(good, query="page_size=" + "1" * 600)]}),
        json.dumps({"reads": [good, dict(good, conversation=7)]}),
    ]
    before = metric_total(node, "cache_batched_reads_total")
    for b in bodies:
        status, ctype, body = batch_raw(node, b)
        check(status == 400 and ctype.startswith("application/problem+json"),
              "%r: %d %s %r" % (b[:80], status, ctype, body[:200]))
        check(json.loads(body).get("status") == 400, "%r: body %r" % (b[:80], body[:200]))
    check(metric_total(node, "cache_batched_reads_total") == before,
          "a refused batch read something")
    status, ctype, _ = raw_call("POST", node + "/internal/reads",
                                json.dumps({"reads": [good]}), sign=False)
    check(status == 401 and ctype.startswith("application/problem+json"),
          "unsigned batch: %d %s" % (status, ctype))
    status, _, body = batch(node, [good])
    check(status == 200 and len(json.loads(body)["answers"]) == 1, "one good read: %d" % status)


def batch_raw(node, text):
    return raw_call("POST", node + "/internal/reads", text if text else b"")


def expected_reads(a, pairs):
    """(gateway path, user, expected JSON) of every read the load makes."""
    out = []
    for u, v, cid in pairs:
        for user in (u, v):
            full = a.convs_ok(user)
            out.append(("/v1/users/%d/conversations?page_size=20" % user, user, full))
            delta = a.convs_ok(user, {"since": full["sync_token"]})
            out.append(("/v1/users/%d/conversations?since=%s" % (user, full["sync_token"]),
                        user, delta))
            out.append(("/v1/users/%d/conversations/%s/messages?page_size=2" % (user, cid), user,
                        a.msgs_ok(user, cid, {"page_size": 2})))
    return out


@test
def test_the_gateway_batches_reads_and_each_client_gets_its_own(a):
    pairs = [pair_with_messages(a, 2) for _ in range(6)]
    reads = expected_reads(a, pairs)
    gateways = a.gateways()
    before = sum(metric_total(n, "cache_batched_reads_total") for n in caches())
    errors = []

    def worker(t):
        g = gateways[t % len(gateways)]
        for i in range(READS_PER_THREAD):
            path, user, want = reads[(t * 7 + i) % len(reads)]
            r = g.call("GET", path, user=user)
            if r.status != 200 or r.json != want:
                errors.append("%s: %s" % (path, r.describe()))
                return

    batched = 0
    rounds = 0
    deadline = time.monotonic() + 120
    while batched == 0 and rounds < ROUNDS_MAX and time.monotonic() < deadline:
        rounds += 1
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(worker, range(THREADS)))
        check(not errors, "%d wrong answers, first: %s" % (len(errors), errors[:1]))
        batched = sum(metric_total(n, "cache_batched_reads_total") for n in caches()) - before
    check(batched > 0, "no read was batched in %d rounds of %d concurrent readers"
          % (rounds, THREADS))
    print("  %d reads batched in %d round(s)" % (batched, rounds))
    expect_status(a.convs(pairs[0][0]), 200)


if __name__ == "__main__":
    run_tests()
