"""End-to-end: guarantees 2-6 of SPEC 5 under concurrency. Many clients
send at once in shared conversations; afterwards every acknowledged send
is in both mailboxes exactly once, both participants see the same list in
the same order, per-sender order holds. Retries racing each other store
one copy. Readers racing a writer never see half a write.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_concurrency.py
"""

import concurrent.futures
import itertools
import threading
import time

from e2e_lib import (PAGE_SIZE_MAX, TestFailure, check, fail, new_cmid, new_user, run_tests,
                     snippet_of, test)

USERS = 8
THREADS = 16
SENDS_PER_THREAD = 50
DEADLINE_S = 240


class Attempt:
    __slots__ = ("thread", "seq", "sender", "recipient", "content", "cmid", "start", "end",
                 "status", "message", "error")

    def __init__(self, thread, seq, sender, recipient, content, cmid):
        self.thread, self.seq = thread, seq
        self.sender, self.recipient = sender, recipient
        self.content, self.cmid = content, cmid
        self.start = self.end = 0.0
        self.status = None
        self.message = None
        self.error = None


def run_sender(a, thread, users, deadline):
    sender = users[thread % len(users)]
    others = [u for u in users if u != sender]
    out = []
    for i in range(SENDS_PER_THREAD):
        if time.monotonic() > deadline:
            break
        recipient = others[(thread * 7 + i * 3) % len(others)]
        at = Attempt(thread, i, sender, recipient, "t%d-%d from %d" % (thread, i, sender), new_cmid())
        at.start = time.monotonic()
        try:
            r = a.send(sender, recipient, at.content, at.cmid)
            at.status = r.status
            if r.status == 201:
                at.message = r.json
            else:
                at.error = r.describe()
        except TestFailure as e:
            at.error = str(e)
        at.end = time.monotonic()
        out.append(at)
    return out


def read_mailbox(a, user):
    """conversation_id -> (conversation, [messages newest first])."""
    box = {}
    for c in a.all_convs(user):
        box[c["conversation_id"]] = (c, a.all_msgs(user, c["conversation_id"]))
    return box


def check_per_sender_order(attempts):
    by_sender = {}
    for at in attempts:
        if at.message is not None:
            by_sender.setdefault(at.sender, []).append(at)
    for sender, ats in by_sender.items():
        ats.sort(key=lambda x: x.start)
        for x, y in itertools.combinations(ats, 2):
            first, second = (x, y) if x.end < y.start else (y, x) if y.end < x.start else (None, None)
            if first is None:
                continue  # overlapping sends: no order promised
            fid, sid = int(first.message["message_id"]), int(second.message["message_id"])
            check(sid > fid, "sender %d: send %r acknowledged before %r began, but ids %d >= %d"
                  % (sender, first.content, second.content, fid, sid))
            check(second.message["sent_at"] >= first.message["sent_at"],
                  "sender %d: sent_at went backwards: %r at %d then %r at %d"
                  % (sender, first.content, first.message["sent_at"], second.content,
                     second.message["sent_at"]))


@test
def test_concurrent_senders_in_shared_conversations(a):
    users = [new_user() for _ in range(USERS)]
    deadline = time.monotonic() + DEADLINE_S
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(run_sender, a, t, users, deadline) for t in range(THREADS)]
        attempts = [at for f in futures for at in f.result(timeout=DEADLINE_S + 30)]
    acked = [at for at in attempts if at.message is not None]
    unknown = {at.content: at for at in attempts if at.message is None}
    check(len(attempts) == THREADS * SENDS_PER_THREAD,
          "only %d of %d sends ran before the deadline" % (len(attempts), THREADS * SENDS_PER_THREAD))
    for at in acked:
        m = at.message
        check(m["sender_id"] == at.sender and m["recipient_id"] == at.recipient
              and m["content"] == at.content and m["client_message_id"] == at.cmid,
              "ack does not echo the request: %r" % m)
    ids = [at.message["message_id"] for at in acked]
    check(len(set(ids)) == len(ids), "two acknowledged sends share a message_id")

    boxes = {u: read_mailbox(a, u) for u in users}
    # 1 and 2: every ack in both mailboxes exactly once, nothing else.
    for at in acked:
        m = at.message
        for owner in (at.sender, at.recipient):
            conv = boxes[owner].get(m["conversation_id"])
            check(conv is not None, "user %d has no conversation %s for acknowledged %r"
                  % (owner, m["conversation_id"], m["content"]))
            copies = [x for x in conv[1] if x["message_id"] == m["message_id"]]
            check(len(copies) == 1, "user %d holds %d copies of acknowledged %r"
                  % (owner, len(copies), m["content"]))
            check(copies[0] == m, "user %d's copy differs from the ack: %r vs %r" % (owner, copies[0], m))
    acked_ids = set(ids)
    for u in users:
        want = {at.recipient if at.sender == u else at.sender for at in acked if u in (at.sender, at.recipient)}
        maybe = {at.recipient if at.sender == u else at.sender for at in unknown.values()
                 if u in (at.sender, at.recipient)}
        got = {conv["peer_id"] for conv, _ in boxes[u].values()}
        check(want <= got <= want | maybe, "user %d has conversations with %s, expected %s"
              % (u, sorted(got), sorted(want)))
    for u, box in boxes.items():
        for cid, (conv, msgs) in box.items():
            for x in msgs:
                if x["message_id"] not in acked_ids and x["content"] not in unknown:
                    fail("user %d holds a message nobody sent: %r" % (u, x))
    # 3: both participants see the same list, in the same order.
    for u, box in boxes.items():
        for cid, (conv, msgs) in box.items():
            peer = conv["peer_id"]
            check(peer in boxes, "user %d has a conversation with a stranger %d" % (u, peer))
            other = boxes[peer].get(cid)
            check(other is not None, "user %d has conversation %s but peer %d does not" % (u, cid, peer))
            mine = [x["message_id"] for x in msgs]
            theirs = [x["message_id"] for x in other[1]]
            if mine != theirs:
                fail("users %d and %d see conversation %s differently: %d vs %d messages, first difference "
                     "at %s" % (u, peer, cid, len(mine), len(theirs),
                                next((i for i, (p, q) in enumerate(zip(mine, theirs)) if p != q),
                                     min(len(mine), len(theirs)))))
            check(conv["participants"] == other[0]["participants"], "participants differ by viewer")
            check(msgs and conv["last_message_id"] == msgs[0]["message_id"],
                  "user %d conversation %s points at %s, newest message is %s"
                  % (u, cid, conv["last_message_id"], msgs[0]["message_id"] if msgs else None))
            check(conv["snippet"] == snippet_of(msgs[0]["content"]),
                  "user %d conversation %s snippet %r is not of the newest message" % (u, cid, conv["snippet"]))
    # 4: per-sender order.
    check_per_sender_order(acked)
    failed = [at for at in attempts if at.message is None]
    check(not failed, "%d of %d sends were not acknowledged (guarantees held for the rest); first: %s"
          % (len(failed), len(attempts), failed[0].error if failed else ""))


def race(n, fn):
    """Runs fn(i) in n threads released together; returns the results."""
    barrier = threading.Barrier(n, timeout=30)

    def run(i):
        barrier.wait()
        return fn(i)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return [f.result(timeout=60) for f in [pool.submit(run, i) for i in range(n)]]


@test
def test_parallel_retries_store_one_copy(a):
    apis = [a] + a.gateways()
    for k in range(6):
        s, r = new_user(), new_user()
        cmid = new_cmid()
        content = "retried %d" % k
        # Spread over the gateways directly as well as the load balancer.
        results = race(8, lambda i: apis[i % len(apis)].send(s, r, content, cmid, fresh=True))
        statuses = sorted(x.status for x in results)
        check(statuses == [200] * 7 + [201], "round %d: statuses %r; first other: %s"
              % (k, statuses, next((x.describe() for x in results if x.status not in (200, 201)), "")))
        bodies = [x.json for x in results]
        check(all(b == bodies[0] for b in bodies), "round %d: retries answered different bodies: %r"
              % (k, {x["message_id"] for x in bodies}))
        for user in (s, r):
            msgs = a.all_msgs(user, bodies[0]["conversation_id"])
            check(msgs == [bodies[0]], "round %d: user %d holds %r" % (k, user, msgs))
            convs = a.convs_ok(user)["conversations"]
            check(len(convs) == 1, "round %d: user %d has %d conversations" % (k, user, len(convs)))


@test
def test_parallel_key_reuse_stores_one_winner(a):
    for k in range(4):
        s, r = new_user(), new_user()
        cmid = new_cmid()
        results = race(8, lambda i: a.send(s, r, "variant %d" % (i % 2), cmid, fresh=True))
        winners = [x for x in results if x.status == 201]
        check(len(winners) == 1, "round %d: %d answers were 201: %r" % (k, len(winners), [x.status for x in results]))
        win = winners[0].json
        for i, x in enumerate(results):
            same = ("variant %d" % (i % 2)) == win["content"]
            if x.status == 201:
                continue
            want = 200 if same else 409
            check(x.status == want, "round %d: request %d (%s content) answered %s"
                  % (k, i, "same" if same else "other", x.describe()))
            if same:
                check(x.json == win, "round %d: replay body differs from the winner" % k)
        for user in (s, r):
            msgs = a.all_msgs(user, win["conversation_id"])
            check(msgs == [win], "round %d: user %d holds %r, winner %r" % (k, user, msgs, win))


@test
def test_same_sender_many_threads_unique_ids(a):
    s = new_user()
    peers = [new_user() for _ in range(4)]

    def burst(i):
        out = []
        for j in range(10):
            r = a.send(s, peers[(i + j) % 4], "burst %d.%d" % (i, j))
            out.append(r)
        return out

    results = [r for rs in race(8, burst) for r in rs]
    bad = [r for r in results if r.status != 201]
    check(not bad, "%d sends failed, first: %s" % (len(bad), bad[0].describe() if bad else ""))
    ids = [int(r.json["message_id"]) for r in results]
    check(len(set(ids)) == len(ids), "duplicate message ids among one sender's concurrent sends")
    total = sum(len(a.all_msgs(s, c["conversation_id"])) for c in a.all_convs(s))
    check(total == len(results), "sender holds %d messages, %d were acknowledged" % (total, len(results)))


def half_write_reader(a, owner, cid, stop, problems, counts):
    deadline = time.monotonic() + DEADLINE_S
    while not stop.is_set() and time.monotonic() < deadline and not problems:
        try:
            # Conversation first, then messages: the message the
            # conversation points at must exist, with the same snippet.
            convs = a.convs_ok(owner, {"page_size": PAGE_SIZE_MAX})["conversations"]
            conv = next((c for c in convs if c["conversation_id"] == cid), None)
            msgs = a.msgs_ok(owner, cid, {"page_size": PAGE_SIZE_MAX})["messages"]
            if conv is not None:
                last = int(conv["last_message_id"])
                ids = [int(m["message_id"]) for m in msgs]
                if not ids or ids[0] < last:
                    problems.append("user %d: conversation points at %d, newest message read after it is %s"
                                    % (owner, last, ids[0] if ids else None))
                elif ids[-1] <= last and last not in ids:
                    problems.append("user %d: conversation points at %d, which is not among its messages"
                                    % (owner, last))
                elif last in ids:
                    m = msgs[ids.index(last)]
                    if snippet_of(m["content"]) != conv["snippet"]:
                        problems.append("user %d: snippet %r is not of message %d %r"
                                        % (owner, conv["snippet"], last, m["content"]))
            elif msgs:
                problems.append("user %d: no conversation in the list read before messages %s"
                                % (owner, msgs[0]["message_id"]))
            # Messages first, then the conversation: a visible message
            # must already be reflected in the conversation.
            msgs = a.msgs_ok(owner, cid, {"page_size": 1})["messages"]
            convs = a.convs_ok(owner, {"page_size": PAGE_SIZE_MAX})["conversations"]
            conv = next((c for c in convs if c["conversation_id"] == cid), None)
            if msgs:
                newest = int(msgs[0]["message_id"])
                if conv is None or int(conv["last_message_id"]) < newest:
                    problems.append("user %d: message %d visible but the conversation read after it shows %s"
                                    % (owner, newest, conv and conv["last_message_id"]))
            counts.append(1)
        except TestFailure as e:
            problems.append("user %d reader: %s" % (owner, e))


@test
def test_readers_never_see_half_a_write(a):
    x, y = new_user(), new_user()
    noise = [new_user() for _ in range(3)]
    cid = a.send_ok(x, y, "start")["conversation_id"]
    stop = threading.Event()
    problems, counts, writer_errors = [], [], []

    def writer(sender, recipient, tag):
        try:
            for i in range(60):
                if stop.is_set():
                    return
                a.send_ok(sender, recipient, "%s %d %s" % (tag, i, "\u00e9" * (i % 120)))
                if i % 5 == 0:
                    a.send_ok(sender, noise[i % 3], "noise %d" % i)
        except TestFailure as e:
            writer_errors.append(str(e))

    readers = [threading.Thread(target=half_write_reader, args=(a, owner, cid, stop, problems, counts))
               for owner in (x, y, x, y)]
    writers = [threading.Thread(target=writer, args=(x, y, "xy")),
               threading.Thread(target=writer, args=(y, x, "yx"))]
    for t in readers + writers:
        t.start()
    for w in writers:
        w.join(DEADLINE_S)
    stop.set()
    for t in readers:
        t.join(60)
    check(not writer_errors, "writer: %s" % "; ".join(writer_errors[:3]))
    check(not problems, "; ".join(problems[:3]))
    check(len(counts) >= 10, "readers completed only %d rounds" % len(counts))


if __name__ == "__main__":
    run_tests()
