#!/usr/bin/env python3
"""test_storage.py - the storage service against two real PostgreSQL
instances.

Starts two PostgreSQL instances with scripts/pg in a temporary directory on
free loopback ports, applies schema/ with scripts/migrate, starts the
storage binary ($MESSENGER_BUILD/bin/storage, default build/asan) with an
explicit shard map over both instances, and drives its internal HTTP API
(docs/internal-api.md, section Storage), every call signed with
X-Internal-Auth under a secret generated for the run. Every process it
starts is stopped by PID in a finally block, on failure and on
SIGTERM/SIGINT too.

Each test names the guarantee it proves and uses users of its own, so the
tests do not depend on each other's data. Arguments, if any, name the
tests to run (the clean-stop check always runs). The last line printed is
"N passed, N failed"; the exit status is non-zero on any failure.

Python 3 standard library only.
"""

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from e2e_lib import INTERNAL_AUTH_HEADER, internal_auth, ring_hash_user  # noqa: E402

BUILD = os.environ.get("MESSENGER_BUILD", os.path.join(ROOT, "build", "asan"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
STORAGE_BIN = os.path.join(BUILD, "bin", "storage")
PG_SCRIPT = os.path.join(ROOT, "scripts", "pg")
MIGRATE_SCRIPT = os.path.join(ROOT, "scripts", "migrate")

# Mirrors of constants of common/constants.h that the assertions depend on.
ID_EPOCH_MS = 1577836800000
OUTBOX_FIRST_RETRY_MS = 3000
MSG_SNIPPET_CODEPOINTS = 100
MSG_CONTENT_MAX = 65535
# Mirrors of services/storage/pgpool.h.
PGPOOL_CALL_DEADLINE_MS = 4000

SHARDS = 4
SHARD_MAP = "0-1:0,2-3:1"  # shards 0,1 on instance 0; 2,3 on instance 1
STORAGE_PG_POOL = 3  # connections per instance


def instance_of(user_id):
    shard = ring_hash_user(user_id) % SHARDS
    return 0 if shard <= 1 else 1


def free_port(preferred):
    """preferred if nothing listens there, else a port the kernel picks."""
    for port in (preferred, 0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def now_ms():
    return int(time.time() * 1000)


class Users:
    """Hands out fresh user ids, on a chosen instance."""

    def __init__(self):
        self.next = 1000

    def on(self, instance):
        for _ in range(10000):
            self.next += 1
            if instance_of(self.next) == instance:
                return self.next
        raise RuntimeError("no user found for instance %d" % instance)


class Ids:
    """Time-ordered message ids like common/ids.c (node 1)."""

    def __init__(self):
        self.last = 0

    def next(self):
        candidate = ((now_ms() - ID_EPOCH_MS) << 22) | (1 << 12)
        self.last = max(self.last + 1, candidate)
        return self.last


USERS = Users()
IDS = Ids()


def cid_of(a, b):
    return "%d_%d" % (min(a, b), max(a, b))


def make_msg(sender, recipient, content="hello", cmid=None, message_id=None):
    mid = message_id if message_id is not None else IDS.next()
    return {
        "message_id": str(mid),
        "conversation_id": cid_of(sender, recipient),
        "sender_id": sender,
        "recipient_id": recipient,
        "content": content,
        "client_message_id": cmid or ("c-%d" % mid),
        "sent_at": (mid >> 22) + ID_EPOCH_MS,
    }


class Storage:
    """HTTP client of the storage service; signs every call with secret."""

    def __init__(self, port, secret):
        self.port = port
        self.secret = secret

    def call(self, method, path, body=None, raw=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (
                json.dumps(body).encode() if body is not None else None)
            headers = {"Content-Type": "application/json"} if data is not None else {}
            headers[INTERNAL_AUTH_HEADER] = internal_auth(self.secret, method, path, data)
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            parsed = json.loads(text) if text else None
            return resp.status, parsed, dict(resp.getheaders())
        finally:
            conn.close()

    def send(self, m):
        status, body, _ = self.call("POST", "/internal/send", {"message": m})
        return status, body

    def deliver(self, m):
        status, body, _ = self.call("POST", "/internal/deliver", {"message": m})
        return status, body

    def batch(self, calls):
        """POST /internal/batch of (op, message) pairs; the results."""
        status, body, _ = self.call("POST", "/internal/batch", {
            "calls": [{"op": op, "message": m} for op, m in calls]})
        assert status == 200, (status, body)
        return body["results"]

    def meta(self, user):
        status, body, _ = self.call("GET", "/internal/users/%d/meta" % user)
        assert status == 200, (status, body)
        return body

    def conversations(self, user, query=""):
        status, body, _ = self.call(
            "GET", "/internal/users/%d/conversations%s" % (user, query))
        assert status == 200, (status, body)
        return body

    def messages(self, user, cid, query=""):
        status, body, _ = self.call(
            "GET", "/internal/users/%d/conversations/%s/messages%s" % (user, cid, query))
        assert status == 200, (status, body)
        return body

    def claim(self, limit, lease_ms):
        status, body, _ = self.call(
            "POST", "/internal/outbox/claim", {"limit": limit, "lease_ms": lease_ms})
        assert status == 200, (status, body)
        return body["messages"]

    def ack(self, entries):
        status, body, _ = self.call("POST", "/internal/outbox/ack", {"entries": entries})
        assert status == 200, (status, body)
        return body["deleted"]


def expect_eq(actual, expected, what):
    assert actual == expected, "%s: expected %r, got %r" % (what, expected, actual)


def send_ok(st, m):
    status, body = st.send(m)
    expect_eq(status, 201, "send status")
    expect_eq(body["status"], "stored", "send result")
    expect_eq(body["max_id"], m["message_id"], "max_id after send")
    return body


def ack_key(m):
    return {"sender_id": m["sender_id"], "message_id": m["message_id"]}


# ---------------------------------------------------------------- tests


def test_send_stored_then_replayed(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    m = make_msg(a, b, "first")
    body = send_ok(st, m)
    expect_eq(body["seq"], 1, "seq of first send")
    status, body = st.send(m)
    expect_eq(status, 200, "replay status")
    expect_eq(body["status"], "replay", "replay result")
    expect_eq(body["message"], m, "replayed message")
    expect_eq(body["outbox_pending"], True, "outbox pending before ack")
    # Same key, other id and content: still the stored message, nothing new.
    other = dict(m, message_id=str(IDS.next()), content="changed")
    status, body = st.send(other)
    expect_eq((status, body["status"]), (200, "replay"), "replay of reused key")
    expect_eq(body["message"], m, "replay returns the stored message")
    expect_eq(st.meta(a), {"seq": 1, "max_id": m["message_id"]}, "meta after replays")
    expect_eq(st.ack([ack_key(m)]), 1, "ack deletes the outbox entry")
    status, body = st.send(m)
    expect_eq(body["outbox_pending"], False, "outbox pending after ack")


def test_send_below_floor_is_refused(env):
    st = env.storage
    a, b = USERS.on(1), USERS.on(0)
    m = make_msg(a, b)
    send_ok(st, m)
    for mid in (int(m["message_id"]), int(m["message_id"]) - 1):
        status, body = st.send(make_msg(a, b, "late", cmid="late-%d" % mid,
                                        message_id=mid))
        expect_eq(status, 409, "floor status")
        expect_eq(body, {"status": "floor", "max_id": m["message_id"]}, "floor body")
    expect_eq(st.meta(a)["seq"], 1, "floor refusal writes nothing")
    expect_eq(len(st.messages(a, cid_of(a, b))["messages"]), 1, "messages after floor")
    st.ack([ack_key(m)])


def test_deliver_is_idempotent(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    m = make_msg(a, b, "to b")
    status, body = st.deliver(m)
    expect_eq((status, body), (200, {"status": "stored", "seq": 1,
                                     "max_id": m["message_id"]}), "first deliver")
    status, body = st.deliver(m)
    expect_eq((status, body), (200, {"status": "duplicate", "seq": 1,
                                     "max_id": m["message_id"]}), "second deliver")
    msgs = st.messages(b, cid_of(a, b))
    expect_eq(msgs["messages"], [m], "recipient copy stored once")
    convs = st.conversations(b)["conversations"]
    expect_eq(len(convs), 1, "recipient conversations")
    expect_eq(convs[0]["peer_id"], a, "recipient's peer is the sender")
    expect_eq(st.meta(a), {"seq": 0, "max_id": "0"}, "sender untouched by deliver")


def test_seq_counts_every_change_once(env):
    st = env.storage
    a, b, c = USERS.on(0), USERS.on(1), USERS.on(0)
    sent = []
    for i in range(3):
        m = make_msg(a, b, "n%d" % i)
        expect_eq(send_ok(st, m)["seq"], i + 1, "seq after send %d" % i)
        sent.append(m)
    st.send(sent[0])  # replay
    status, _ = st.send(make_msg(a, b, cmid="floor", message_id=int(sent[0]["message_id"])))
    expect_eq(status, 409, "send at an old id")
    expect_eq(st.meta(a)["seq"], 3, "replay and floor do not count")
    incoming = make_msg(c, a, "from c")
    status, body = st.deliver(incoming)
    expect_eq(body["seq"], 4, "deliver counts")
    st.deliver(incoming)
    expect_eq(st.meta(a), {"seq": 4, "max_id": incoming["message_id"]},
              "duplicate does not count; max_id follows deliveries")
    st.ack([ack_key(m) for m in sent])


def test_conversations_newest_first(env):
    st = env.storage
    a = USERS.on(1)
    b, c, d = USERS.on(0), USERS.on(1), USERS.on(0)
    sent = [make_msg(a, peer, "to %d" % peer) for peer in (b, c, d)]
    last = make_msg(a, b, "again b")
    sent.append(last)
    for m in sent:
        send_ok(st, m)
    body = st.conversations(a)
    expect_eq([x["peer_id"] for x in body["conversations"]], [b, d, c], "order")
    expect_eq(body["seq"], 4, "list seq")
    first = body["conversations"][0]
    expect_eq(first, {
        "conversation_id": cid_of(a, b),
        "participants": sorted([a, b]),
        "peer_id": b,
        "snippet": "again b",
        "last_message_id": last["message_id"],
        "last_updated_at": last["sent_at"],
    }, "conversation object")
    page = st.conversations(a, "?limit=2&offset=1")["conversations"]
    expect_eq([x["peer_id"] for x in page], [d, c], "limit/offset")
    # A late recipient copy with an older id must not move the last
    # message back, but it is a change (seq moves).
    old = make_msg(b, a, "older", message_id=int(last["message_id"]) - 1)
    st.deliver(old)
    conv = st.conversations(a, "?limit=1")["conversations"][0]
    expect_eq((conv["last_message_id"], conv["snippet"]),
              (last["message_id"], "again b"), "last message only moves forward")
    expect_eq(st.conversations(a, "?since_seq=4")["conversations"][0]["conversation_id"],
              cid_of(a, b), "late copy shows in the delta")
    st.ack([ack_key(m) for m in sent])


def test_messages_newest_first_with_paging(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(0)
    sent = [make_msg(a, b, "m%d" % i) for i in range(5)]
    for m in sent:
        send_ok(st, m)
    cid = cid_of(a, b)
    ids = [m["message_id"] for m in reversed(sent)]  # newest first
    body = st.messages(a, cid)
    expect_eq([m["message_id"] for m in body["messages"]], ids, "all newest first")
    expect_eq(body["seq"], 5, "list seq")
    page = st.messages(a, cid, "?limit=2")["messages"]
    expect_eq([m["message_id"] for m in page], ids[0:2], "limit")
    page = st.messages(a, cid, "?limit=2&offset=2")["messages"]
    expect_eq([m["message_id"] for m in page], ids[2:4], "offset")
    page = st.messages(a, cid, "?before=%s" % ids[2])["messages"]
    expect_eq([m["message_id"] for m in page], ids[3:5], "before")
    page = st.messages(a, cid, "?before=%s&limit=1" % ids[2])["messages"]
    expect_eq([m["message_id"] for m in page], ids[3:4], "before with limit")
    expect_eq(st.messages(b, cid)["messages"], [], "no recipient copy without deliver")
    st.ack([ack_key(m) for m in sent])


def test_since_seq_returns_exactly_the_changes(env):
    st = env.storage
    a, b, c, d = USERS.on(1), USERS.on(0), USERS.on(1), USERS.on(0)
    before = [make_msg(a, b, "old b"), make_msg(a, c, "old c"), make_msg(a, d, "old d")]
    for m in before:
        send_ok(st, m)
    token = st.meta(a)["seq"]
    new_b = [make_msg(a, b, "new b1"), make_msg(a, b, "new b2")]
    new_c = make_msg(a, c, "new c")
    for m in new_b + [new_c]:
        send_ok(st, m)
    # A recipient copy that lands now with an id older than everything.
    late = make_msg(b, a, "late", message_id=int(before[0]["message_id"]) - 5)
    st.deliver(late)
    convs = st.conversations(a, "?since_seq=%d" % token)
    expect_eq(convs["seq"], token + 4, "seq of the delta")
    expect_eq([x["conversation_id"] for x in convs["conversations"]],
              [cid_of(a, c), cid_of(a, b)], "changed conversations, newest first")
    msgs = st.messages(a, cid_of(a, b), "?since_seq=%d" % token)["messages"]
    expect_eq([m["message_id"] for m in msgs],
              [new_b[1]["message_id"], new_b[0]["message_id"], late["message_id"]],
              "changed messages, including the late copy")
    expect_eq(st.messages(a, cid_of(a, d), "?since_seq=%d" % token)["messages"], [],
              "untouched conversation has no delta")
    current = st.conversations(a, "?since_seq=%d" % (token + 4))
    expect_eq((current["conversations"], current["seq"]), ([], token + 4),
              "delta from the current seq is empty")
    limited = st.conversations(a, "?since_seq=%d&limit=1" % token)["conversations"]
    expect_eq([x["conversation_id"] for x in limited], [cid_of(a, c)], "delta limit")
    st.ack([ack_key(m) for m in before + new_b + [new_c]])


def test_since_ts_filters_by_landing_time(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    first = make_msg(a, b, "first")
    send_ok(st, first)
    time.sleep(0.05)
    cut = now_ms()
    time.sleep(0.05)
    second = make_msg(a, b, "second")
    send_ok(st, second)
    msgs = st.messages(a, cid_of(a, b), "?since_ts=%d" % cut)["messages"]
    expect_eq([m["message_id"] for m in msgs], [second["message_id"]], "since_ts messages")
    convs = st.conversations(a, "?since_ts=%d" % cut)["conversations"]
    expect_eq([x["last_message_id"] for x in convs], [second["message_id"]],
              "since_ts conversations")
    later = now_ms() + 60000
    expect_eq(st.conversations(a, "?since_ts=%d" % later)["conversations"], [],
              "nothing landed in the future")
    st.ack([ack_key(first), ack_key(second)])


def claimed_ids(messages):
    return {m["message_id"] for m in messages}


def test_outbox_claim_lease_and_ack(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    c, d = USERS.on(1), USERS.on(0)
    m1 = make_msg(a, b, "queued on instance 0")
    m2 = make_msg(c, d, "queued on instance 1")
    send_ok(st, m1)
    send_ok(st, m2)
    mine = {m1["message_id"], m2["message_id"]}
    expect_eq(claimed_ids(st.claim(1000, 500)) & mine, set(), "not due before first retry")
    time.sleep(OUTBOX_FIRST_RETRY_MS / 1000 + 0.3)
    claimed = [m for m in st.claim(1000, 500) if m["message_id"] in mine]
    expect_eq(sorted(claimed, key=lambda m: m["message_id"]),
              sorted([m1, m2], key=lambda m: m["message_id"]),
              "due entries from both instances, whole messages")
    expect_eq(claimed_ids(st.claim(1000, 500)) & mine, set(), "leased entries are not reclaimed")
    time.sleep(0.7)
    expect_eq(claimed_ids(st.claim(1000, 500)) & mine, mine, "reclaimed after the lease")
    expect_eq(st.ack([ack_key(m1), ack_key(m2)]), 2, "ack deletes both")
    expect_eq(st.ack([ack_key(m1)]), 0, "second ack deletes nothing")
    time.sleep(0.7)
    expect_eq(claimed_ids(st.claim(1000, 500)) & mine, set(), "acked entries are gone")


def outbox_pending(st, m):
    status, body = st.send(m)
    expect_eq(status, 200, "replay status")
    return body["outbox_pending"]


def test_deliver_removes_the_outbox_entry(env):
    """The recipient's copy landing removes the sender's outbox entry: in
    the same transaction when both mailboxes share an instance, shortly
    after the deliver's answer (posted to that instance) when not."""
    st = env.storage
    for sender, recipient, posted in ((USERS.on(0), USERS.on(0), False),
                                      (USERS.on(1), USERS.on(0), True)):
        m = make_msg(sender, recipient, "acked by its deliver")
        send_ok(st, m)
        expect_eq(outbox_pending(st, m), True, "outbox pending before the deliver")
        status, body = st.deliver(m)
        expect_eq((status, body["status"]), (200, "stored"), "deliver")
        if not posted:
            expect_eq(outbox_pending(st, m), False, "removed with the deliver")
            continue
        deadline = time.monotonic() + 5
        while outbox_pending(st, m):
            assert time.monotonic() < deadline, \
                "the posted removal did not run within 5 s"
            time.sleep(0.02)
        left = env.psql(1, "SELECT count(*) FROM outbox WHERE sender_id = %d"
                        " AND message_id = %s" % (sender, m["message_id"]))
        expect_eq(left.strip(), "0", "outbox rows left on the sender's instance")


def test_batch_answers_each_write_as_alone(env):
    """One POST /internal/batch carries sends and delivers for mailboxes on
    both instances; each result is what the write's own call would have
    answered, with its status in "code", in the order of the calls."""
    st = env.storage
    a, b, c = USERS.on(0), USERS.on(1), USERS.on(1)
    m0 = make_msg(a, b, "before the batch")
    send_ok(st, m0)
    expect_eq(st.deliver(m0)[0], 200, "deliver before the batch")
    m1 = make_msg(a, b, "in the batch")
    m2 = make_msg(c, a, "from the other instance")
    late = make_msg(a, c, "late", cmid="late-batch", message_id=int(m0["message_id"]))
    results = st.batch([("send", m0), ("send", m1), ("send", late), ("deliver", m0),
                        ("send", m2), ("deliver", m2)])
    expect_eq(len(results), 6, "one result per call")
    expect_eq((results[0]["code"], results[0]["status"], results[0]["message"]),
              (200, "replay", m0), "replayed send")
    # The writes of a batch are not ordered among themselves: a's seq
    # after m1 is 2 or 3 (m2's copy may land first).
    expect_eq((results[1]["code"], results[1]["status"]), (201, "stored"), "new send")
    assert results[1]["seq"] in (2, 3), results[1]
    expect_eq((results[2]["code"], results[2]["status"]), (409, "floor"),
              "send below the floor")
    expect_eq(results[3], {"code": 200, "status": "duplicate", "seq": 1,
                           "max_id": m0["message_id"]}, "deliver again")
    expect_eq(results[4], {"code": 201, "status": "stored", "seq": 1,
                           "max_id": m2["message_id"]}, "send on the other instance")
    expect_eq(results[5]["code"], 200, "deliver to the first instance")
    expect_eq(results[5]["status"], "stored", "deliver to the first instance")
    expect_eq(st.messages(b, cid_of(a, b))["messages"], [m0], "b holds m0 once")
    expect_eq(st.messages(a, cid_of(a, c))["messages"], [m2], "a got c's message")
    expect_eq(st.meta(a), {"seq": 3, "max_id": m2["message_id"]}, "a's mailbox")
    st.ack([ack_key(m) for m in (m1, m2)])


def test_bad_batch_is_refused_whole(env):
    """A batch with one bad write writes nothing, not even its good ones."""
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    good = {"op": "send", "message": make_msg(a, b)}
    bad_msg = dict(make_msg(a, b), conversation_id="1_2")
    cases = [
        (None, b"{not json", 400),
        ({"calls": []}, None, 400),
        ({"calls": {}}, None, 400),
        ({"calls": [good], "more": 1}, None, 400),
        ({"calls": [good] * 65}, None, 400),
        ({"calls": [good, {"op": "erase", "message": make_msg(a, b)}]}, None, 400),
        ({"calls": [good, {"op": "send"}]}, None, 400),
        ({"calls": [good, dict(good, extra=1)]}, None, 400),
        ({"calls": [good, {"op": "deliver", "message": bad_msg}]}, None, 400),
        ({"calls": [good, {"op": "send", "message": dict(
            make_msg(a, b), content="x" * (MSG_CONTENT_MAX + 1))}]}, None, 413),
    ]
    for body, raw, want in cases:
        status, problem, _ = st.call("POST", "/internal/batch", body, raw)
        expect_eq(status, want, ("batch %r" % (body or raw))[:120])
        assert problem and problem.get("status") == want, "problem body"
    expect_eq(st.meta(a), {"seq": 0, "max_id": "0"}, "nothing written for the sender")
    expect_eq(st.meta(b), {"seq": 0, "max_id": "0"}, "nothing written for the recipient")


def count_in_log(env, i, needle):
    with open(os.path.join(env.pg_dirs[i], "postgresql.log"), errors="replace") as f:
        return f.read().count(needle)


def test_writes_run_prepared_and_survive_a_lost_session(env):
    """Batched writes run as statements prepared once per connection, and
    a connection whose session was lost prepares them again."""
    st = env.storage
    executed = "execute pgpool_0: "  # msg_send, as PostgreSQL logs a run
    env.psql(0, "ALTER SYSTEM SET log_min_duration_statement = 0", user="postgres")
    env.psql(0, "SELECT pg_reload_conf()", user="postgres")
    try:
        time.sleep(0.2)
        before = count_in_log(env, 0, executed)
        a, b = USERS.on(0), USERS.on(1)
        send_ok(st, make_msg(a, b, "prepared"))
        time.sleep(0.2)
        after = count_in_log(env, 0, executed)
        expect_eq(after > before, True, "msg_send ran as a prepared statement")
        env.psql(0, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'messenger-storage'", user="postgres")
        time.sleep(0.2)  # the FATAL message and the close reach storage
        # Every pooled connection finds its session gone before it is
        # used: concurrent sends, so that several are borrowed, all land.
        ms = [make_msg(USERS.on(0), b, "after the session was lost")
              for _ in range(6)]
        out = []
        threads = [threading.Thread(target=lambda m=m: out.append(st.send(m)[0]))
                   for m in ms]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        expect_eq(sorted(out), [201] * len(ms), "sends after the sessions were lost")
        time.sleep(0.2)
        expect_eq(count_in_log(env, 0, executed) > after, True,
                  "prepared again on the new session")
    finally:
        env.psql(0, "ALTER SYSTEM RESET log_min_duration_statement", user="postgres")
        env.psql(0, "SELECT pg_reload_conf()", user="postgres")


def test_content_round_trips_nul_and_utf8(env):
    st = env.storage
    a, b = USERS.on(1), USERS.on(1)
    content = "nul\u0000inside \u00e9\u65e5\u672c\U0001F600 end\u0000"
    m = make_msg(a, b, content)
    send_ok(st, m)
    st.deliver(m)
    expect_eq(st.messages(a, cid_of(a, b))["messages"][0]["content"], content,
              "sender copy content")
    expect_eq(st.messages(b, cid_of(a, b))["messages"][0]["content"], content,
              "recipient copy content")
    expect_eq(st.send(m)[1]["message"]["content"], content, "replayed content")
    expect_eq(st.conversations(b)["conversations"][0]["snippet"], content, "snippet")
    long_text = "\u00e9\U0001F600" * 80  # 160 code points, multi-byte
    m2 = make_msg(a, b, long_text)
    send_ok(st, m2)
    snippet = st.conversations(a)["conversations"][0]["snippet"]
    expect_eq(snippet, long_text[:MSG_SNIPPET_CODEPOINTS], "snippet is 100 code points")
    st.ack([ack_key(m), ack_key(m2)])


def test_concurrent_sends_of_one_sender_serialise(env):
    st = env.storage
    a = USERS.on(0)
    peers = [USERS.on(i % 2) for i in range(4)]
    results = []
    lock = threading.Lock()

    def worker(k):
        for i in range(8):
            with lock:
                m = make_msg(a, peers[(k + i) % len(peers)], "w%d-%d" % (k, i))
            status, body = st.send(m)
            with lock:
                results.append((status, body, m))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stored = [m for status, _, m in results if status == 201]
    statuses = {status for status, _, _ in results}
    assert statuses <= {201, 409}, "unexpected statuses %r" % statuses
    meta = st.meta(a)
    expect_eq(meta["seq"], len(stored), "seq equals the number of stored sends")
    expect_eq(meta["max_id"], max(stored, key=lambda m: int(m["message_id"]))["message_id"],
              "max_id is the largest stored id")
    total = sum(len(st.messages(a, cid_of(a, p), "?limit=1000")["messages"]) for p in peers)
    expect_eq(total, len(stored), "every stored send is in the mailbox once")
    st.ack([ack_key(m) for m in stored])


def test_bad_input_is_refused_without_writes(env):
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    good = make_msg(a, b)
    cases = [
        ("POST", "/internal/send", None, b"{not json", 400),
        ("POST", "/internal/send", {"msg": good}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, conversation_id="1_2")}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, recipient_id=a,
                                                    conversation_id=cid_of(a, a))}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, message_id="12x")}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, content="")}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, client_message_id="")}, None, 400),
        ("POST", "/internal/send", {"message": dict(good, client_message_id="\u00e9")},
         None, 400),
        ("POST", "/internal/send", {"message": dict(good, content="x" * (MSG_CONTENT_MAX + 1))},
         None, 413),
        ("POST", "/internal/deliver", {"message": dict(good, sender_id=0)}, None, 400),
        ("POST", "/internal/outbox/claim", {"limit": 0, "lease_ms": 10}, None, 400),
        ("POST", "/internal/outbox/claim", {"limit": "5", "lease_ms": 10}, None, 400),
        ("POST", "/internal/outbox/ack", {"entries": [{"sender_id": a}]}, None, 400),
        ("GET", "/internal/users/0/meta", None, None, 400),
        ("GET", "/internal/users/abc/conversations", None, None, 400),
        ("GET", "/internal/users/%d/conversations?limit=0" % a, None, None, 400),
        ("GET", "/internal/users/%d/conversations?offset=-1" % a, None, None, 400),
        ("GET", "/internal/users/%d/conversations?before=5" % a, None, None, 400),
        ("GET", "/internal/users/%d/conversations?since_seq=x" % a, None, None, 400),
        ("GET", "/internal/users/%d/conversations/%s/messages?before=x" % (a, cid_of(a, b)),
         None, None, 400),
        ("GET", "/internal/users/%d/conversations/nope/messages" % a, None, None, 400),
        ("GET", "/internal/users/%d/conversations/%s/messages" % (a, cid_of(b, b + 1)),
         None, None, 404),
        ("GET", "/internal/nothing", None, None, 404),
        ("GET", "/internal/send", None, None, 405),
    ]
    for method, path, body, raw, want in cases:
        status, problem, headers = st.call(method, path, body, raw)
        expect_eq(status, want, ("%s %s %r" % (method, path, body or raw))[:120])
        assert problem and problem.get("status") == want, "problem body for %s" % path
    expect_eq(st.meta(a), {"seq": 0, "max_id": "0"}, "nothing written for the sender")
    expect_eq(st.meta(b), {"seq": 0, "max_id": "0"}, "nothing written for the recipient")
    expect_eq(st.meta(USERS.on(1)), {"seq": 0, "max_id": "0"}, "meta of an empty mailbox")


def test_placement_is_the_shard_map(env):
    """GET /internal/placement: the map cache nodes group their writes by."""
    status, body, _ = env.storage.call("GET", "/internal/placement")
    expect_eq(status, 200, "placement status")
    expect_eq(body, {"shards": SHARDS, "instances": 2, "instance_of": [0, 0, 1, 1]},
              "placement of STORAGE_SHARD_MAP %s" % SHARD_MAP)


def test_mailboxes_live_on_their_shard_instance(env):
    owners = [env.psql(i, "SELECT owner_id FROM mailboxes") for i in (0, 1)]
    for i in (0, 1):
        ids = {int(x) for x in owners[i].split()}
        assert ids, "instance %d holds no mailbox" % i
        wrong = {u for u in ids if instance_of(u) != i}
        expect_eq(wrong, set(), "users on the wrong instance %d" % i)
        shards = {int(x) for x in env.psql(i, "SELECT DISTINCT shard FROM messages").split()}
        expect_eq(shards <= ({0, 1} if i == 0 else {2, 3}), True,
                  "shards recorded on instance %d: %r" % (i, shards))


def test_unreachable_instance_answers_503_and_recovers(env):
    st = env.storage
    down, up = USERS.on(1), USERS.on(0)
    st.meta(down)  # warm a connection that will break under it
    env.pg_stop(1)
    try:
        status, problem, headers = st.call("GET", "/internal/users/%d/meta" % down)
        expect_eq(status, 503, "user on the stopped instance")
        expect_eq(headers.get("Retry-After"), "1", "Retry-After header")
        expect_eq(problem["status"], 503, "problem body")
        status, _ = st.send(make_msg(down, up))
        expect_eq(status, 503, "send to the stopped instance")
        # In a batch, only the write on the stopped instance fails.
        fine = make_msg(up, down, "while the other instance is down")
        results = st.batch([("send", make_msg(down, up)), ("send", fine)])
        expect_eq([r["code"] for r in results], [503, 201], "batch across instances")
        expect_eq(results[0]["title"], "Service Unavailable", "the failed write's problem")
        expect_eq(st.call("GET", "/internal/users/%d/meta" % up)[0], 200,
                  "other instance still serves")
        expect_eq(st.call("GET", "/readyz")[0], 503, "not ready with an instance down")
    finally:
        env.pg_start(1)
    deadline = time.time() + 15
    status = None
    while time.time() < deadline:
        status = st.call("GET", "/internal/users/%d/meta" % down)[0]
        if status == 200:
            break
        time.sleep(0.2)
    expect_eq(status, 200, "serves again once the instance is back")
    m = make_msg(down, up)
    send_ok(st, m)
    expect_eq(st.call("GET", "/readyz")[0], 200, "ready again")
    st.ack([ack_key(m), ack_key(fine)])


def make_due(env, m):
    """Makes m's outbox entry due now instead of after the first retry."""
    env.psql(instance_of(m["sender_id"]),
             "UPDATE outbox SET next_attempt_at = 0 WHERE sender_id = %d"
             " AND message_id = %s" % (m["sender_id"], m["message_id"]))


REFUSE_UPDATES = (
    "CREATE FUNCTION test_refuse_update() RETURNS trigger LANGUAGE plpgsql"
    " AS $$BEGIN RAISE EXCEPTION 'outbox updates refused by the test'; END$$;"
    " CREATE TRIGGER test_refuse_update BEFORE UPDATE ON outbox"
    " FOR EACH ROW EXECUTE FUNCTION test_refuse_update()")
ALLOW_UPDATES = ("DROP TRIGGER IF EXISTS test_refuse_update ON outbox;"
                 " DROP FUNCTION IF EXISTS test_refuse_update()")


def test_outbox_claim_keeps_what_it_claimed_when_an_instance_fails(env):
    """A claim whose statement fails on one instance (a non-transient
    error, MBOX_FAILED) still returns the entries it leased on the others
    rather than dropping them for a whole lease; only a claim that got
    nothing from any instance answers an error, a 500 problem."""
    st = env.storage
    m0 = make_msg(USERS.on(0), USERS.on(1), "due on instance 0")
    m1 = make_msg(USERS.on(1), USERS.on(0), "due on instance 1")
    later = make_msg(m0["sender_id"], m0["recipient_id"], "due on instance 0 later")
    for m in (m0, m1):
        send_ok(st, m)
        make_due(env, m)
    mine = {m0["message_id"], m1["message_id"]}
    try:
        env.psql(1, REFUSE_UPDATES, user="postgres")
        status, body, _ = st.call("POST", "/internal/outbox/claim",
                                  {"limit": 1000, "lease_ms": 60000})
        expect_eq(status, 200, "claim with instance 1 failing")
        expect_eq(claimed_ids(body["messages"]) & mine, {m0["message_id"]},
                  "instance 0's entry is returned, instance 1's is not")
        send_ok(st, later)
        make_due(env, later)
        env.psql(0, REFUSE_UPDATES, user="postgres")
        status, problem, _ = st.call("POST", "/internal/outbox/claim",
                                     {"limit": 1000, "lease_ms": 60000})
        expect_eq((status, problem.get("status"), problem.get("title")),
                  (500, 500, "Internal Server Error"),
                  "claim with every instance failing")
    finally:
        for i in (0, 1):
            env.psql(i, ALLOW_UPDATES, user="postgres")
    # m0 went to the first claim and stays leased to it; m1 and the later
    # entry were never leased (their claims rolled back).
    again = claimed_ids(st.claim(1000, 60000))
    expect_eq(again & (mine | {later["message_id"]}),
              {m1["message_id"], later["message_id"]},
              "only the entries that no claim returned are claimed now")
    expect_eq(st.ack([ack_key(m) for m in (m0, m1, later)]), 3, "ack")


class LockHolder:
    """A psql session on instance i that runs sql (a SELECT ... FOR UPDATE)
    in a transaction and holds its row locks until release()."""

    APP = "test-lock-holder"

    def __init__(self, env, i, sql):
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        url = env.url(i).replace("messenger@", "postgres@", 1)
        self.proc = subprocess.Popen(
            [psql, "-X", "-q", url], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PGAPPNAME=self.APP))
        try:
            self.proc.stdin.write("BEGIN;\n%s;\n" % sql)
            self.proc.stdin.flush()
            wait_for(lambda: env.psql(i, "SELECT count(*) FROM pg_stat_activity"
                                         " WHERE application_name = '%s' AND"
                                         " state = 'idle in transaction'" % self.APP,
                                      user="postgres").strip() == "1",
                     "the lock holder's transaction")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def release(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("ROLLBACK;\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, what, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.02)


def wait_for_storage_lock_waits(env, i, count):
    """Until count storage statements on instance i wait for a lock."""
    wait_for(lambda: int(env.psql(i, "SELECT count(*) FROM pg_stat_activity"
                                     " WHERE application_name = 'messenger-storage'"
                                     " AND wait_event_type = 'Lock'",
                                  user="postgres")) >= count,
             "%d storage statements waiting for a lock" % count)


def is_outbox_row_locked(env, i, sender, message_id):
    """Whether another transaction holds the row lock of an outbox entry."""
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    url = env.url(i).replace("messenger@", "postgres@", 1)
    out = subprocess.run(
        [psql, "-X", "-tA", url, "-c",
         "SELECT 1 FROM outbox WHERE sender_id = %d AND message_id = %s"
         " FOR UPDATE NOWAIT" % (sender, message_id)],
        capture_output=True, text=True)
    if out.returncode == 0:
        return False
    assert "could not obtain lock" in out.stderr, out.stderr
    return True


def while_row_locked(env, i, row, calls, probe=None):
    """Holds the row lock of the outbox entry row, (sender, message_id), in
    a psql session and starts the calls in threads one after another, each
    once the storage statements of those before it wait for a lock. Once
    all wait, runs probe() if given, then releases the row. Returns what
    probe returned and the calls' results, in order."""
    holder = LockHolder(env, i, "SELECT 1 FROM outbox WHERE sender_id = %d AND"
                                " message_id = %s FOR UPDATE" % row)
    results = [None] * len(calls)
    threads = []
    probed = None
    try:
        for k, call in enumerate(calls):
            t = threading.Thread(
                target=lambda k=k, call=call: results.__setitem__(k, call()))
            t.start()
            threads.append(t)
            wait_for_storage_lock_waits(env, i, k + 1)
        if probe:
            probed = probe()
    finally:
        holder.release()
        for t in threads:
            t.join(30)
    assert all(r is not None for r in results), "a storage call did not end"
    return probed, results


def test_batch_outbox_deletes_lock_in_message_id_order(env):
    """A batch deletes the outbox entries of one sender in message id
    order, whatever order their delivers came in: the batch whose delete
    of the later entry waits (here for a psql session holding its row)
    already holds the earlier one."""
    st = env.storage
    a, b = USERS.on(0), USERS.on(0)  # one instance: the delete rides along
    first, second = make_msg(a, b, "first"), make_msg(a, b, "second")
    for m in (first, second):
        send_ok(st, m)
    locked, (results,) = while_row_locked(
        env, 0, (a, second["message_id"]),
        [lambda: st.batch([("deliver", second), ("deliver", first)])],
        lambda: is_outbox_row_locked(env, 0, a, first["message_id"]))
    expect_eq(locked, True, "the first entry's row was locked before the second's")
    expect_eq([(r["code"], r["status"]) for r in results],
              [(200, "stored"), (200, "stored")], "both delivers")
    left = env.psql(0, "SELECT count(*) FROM outbox WHERE sender_id = %d" % a)
    expect_eq(left.strip(), "0", "both outbox entries removed")


def test_outbox_ack_locks_in_key_order(env):
    """An ack deletes its entries in (sender, message id) order, the order
    of the batches' deletes, whatever order the keys came in and the rows
    lie in: the ack whose delete of the last entry waits already holds
    the first."""
    st = env.storage
    low, high = USERS.on(0), USERS.on(0)
    assert low < high
    m_high = make_msg(high, USERS.on(1), "stored first, acked first")
    m_low = make_msg(low, USERS.on(1), "stored second, acked second")
    for m in (m_high, m_low):
        send_ok(st, m)
    locked, (deleted,) = while_row_locked(
        env, 0, (high, m_high["message_id"]),
        [lambda: st.ack([ack_key(m_high), ack_key(m_low)])],
        lambda: is_outbox_row_locked(env, 0, low, m_low["message_id"]))
    expect_eq(locked, True, "the lower key's row was locked before the higher's")
    expect_eq(deleted, 2, "both entries deleted")


def ack_call(st, entries):
    status, body, _ = st.call("POST", "/internal/outbox/ack", {"entries": entries})
    return status, body


def two_entries(st):
    """Two outbox entries of one sender on instance 0 (the first with the
    lower message id), for messages to a recipient on instance 0 too."""
    a, b = USERS.on(0), USERS.on(0)
    first, second = make_msg(a, b, "first"), make_msg(a, b, "second")
    for m in (first, second):
        send_ok(st, m)
    return a, first, second


def test_ack_and_batch_on_the_same_entries_do_not_deadlock(env):
    """A batch delivering two messages (so deleting their outbox entries)
    and an ack of the same two entries, each given the keys in its own
    order, run at once: one waits for the other, neither deadlocks. Made
    to overlap by a psql session holding the later entry until both
    wait: before, the batch waited for it holding nothing of the outbox
    while the ack held the earlier one, and took it next."""
    st = env.storage
    a, first, second = two_entries(st)
    before = count_in_log(env, 0, "deadlock detected")
    _, (batch, acked) = while_row_locked(
        env, 0, (a, second["message_id"]),
        [lambda: st.batch([("deliver", second), ("deliver", first)]),
         lambda: ack_call(st, [ack_key(first), ack_key(second)])])
    expect_eq(count_in_log(env, 0, "deadlock detected"), before,
              "deadlocks detected by PostgreSQL")
    expect_eq([r["code"] for r in batch], [200, 200], "both delivers")
    expect_eq(acked[0], 200, "the ack (%r)" % (acked,))
    left = env.psql(0, "SELECT count(*) FROM outbox WHERE sender_id = %d" % a)
    expect_eq(left.strip(), "0", "both outbox entries removed")


def test_two_acks_of_the_same_entries_do_not_deadlock(env):
    """Two acks of the same two entries, given in opposite orders (two
    outbox workers whose claims overlapped after a lease ran out), run at
    once without deadlock, and delete each entry once."""
    st = env.storage
    a, first, second = two_entries(st)
    before = count_in_log(env, 0, "deadlock detected")
    _, acks = while_row_locked(
        env, 0, (a, second["message_id"]),
        [lambda: ack_call(st, [ack_key(second), ack_key(first)]),
         lambda: ack_call(st, [ack_key(first), ack_key(second)])])
    expect_eq(count_in_log(env, 0, "deadlock detected"), before,
              "deadlocks detected by PostgreSQL")
    expect_eq([status for status, _ in acks], [200, 200], "both acks (%r)" % (acks,))
    expect_eq(sum(body["deleted"] for _, body in acks), 2, "each entry deleted once")


def storage_backends(env, i):
    out = env.psql(i, "SELECT pid FROM pg_stat_activity"
                      " WHERE application_name = 'messenger-storage'", user="postgres")
    return [int(x) for x in out.split()]


def renew_pool(env, i, user):
    """Puts every pooled connection to instance i on a new session (no
    statement prepared yet) with a live backend: the old sessions are
    terminated, then bursts of concurrent reads borrow every connection
    and so reconnect it."""
    env.psql(i, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'messenger-storage'", user="postgres")
    wait_for(lambda: not storage_backends(env, i), "end of the old sessions")
    deadline = time.monotonic() + 15
    while len(storage_backends(env, i)) < STORAGE_PG_POOL:
        assert time.monotonic() < deadline, "pool of instance %d not renewed" % i
        threads = [threading.Thread(target=env.storage.meta, args=(user,))
                   for _ in range(2 * STORAGE_PG_POOL)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)


def timed_call(st, method, path, body, outcomes, name):
    """st.call, recording (status, body, headers, seconds) in outcomes."""
    started = time.monotonic()
    try:
        status, body, headers = st.call(method, path, body,
                                        timeout=PGPOOL_CALL_DEADLINE_MS / 1000 + 5)
    except OSError as e:  # no answer at all
        status, body, headers = None, repr(e), {}
    outcomes[name] = (status, body, headers, time.monotonic() - started)


def log_lines_with(env, *needles):
    with open(env.log_path, errors="replace") as f:
        return [line for line in f if all(n in line for n in needles)]


def calls_while_stopped(env, pids, calls, pause_s):
    """SIGSTOPs pids, makes calls [(name, method, path, body)] each in a
    thread of its own, pause_s apart (so they borrow connections and
    lanes in this order), waits for them and SIGCONTs pids. Returns
    {name: (status, body, headers, seconds)} and prints the times."""
    st = env.storage
    outcomes = {}
    threads = []
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for name, method, path, body in calls:
            t = threading.Thread(target=timed_call,
                                 args=(st, method, path, body, outcomes, name))
            t.start()
            threads.append(t)
            time.sleep(pause_s)
        for t in threads:
            t.join(PGPOOL_CALL_DEADLINE_MS / 1000 + 10)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    print("     answered after: %s" % ", ".join(
        "%s %.2f s" % (name, outcomes[name][3]) for name, *_ in calls if name in outcomes),
        flush=True)
    return outcomes


def retry_until_stored(st, m, limit_s=10):
    """A stalled write retried as its caller would, by its key."""
    status = None
    deadline = time.monotonic() + limit_s
    while status not in (200, 201) and time.monotonic() < deadline:
        status, body = st.send(m)
        if status not in (200, 201):
            time.sleep(0.2)
    assert status in (200, 201), "retry of a stalled write: %r" % status


def test_stopped_backend_answers_503_within_the_deadline(env):
    """PostgreSQL backends that stop answering while their host's kernel
    still acknowledges (SIGSTOP: no TCP timeout ever fires) cost each call
    PGPOOL_CALL_DEADLINE_MS, not forever. The backends of every pooled
    connection to instance 1 are stopped between requests; the kernel
    takes each request's statements and nothing answers, as when a
    backend stops mid-request. Three calls meet them at once: a write
    whose statement was prepared on its connection (pipeline sent, its
    results awaited), a read (a single statement) and a write that must
    prepare first; each gets a 503 within the deadline plus a margin. Once
    the backends resume, the stalled writes retried are each stored once
    and new writes succeed."""
    st = env.storage
    a, b, c = USERS.on(1), USERS.on(0), USERS.on(1)
    renew_pool(env, 1, a)
    # A write leaves its connection, with the send prepared, on top of the
    # pool's stack, where the next call takes it; the two below have
    # prepared nothing.
    warm = make_msg(c, b, "prepares the write on its connection")
    send_ok(st, warm)
    pids = storage_backends(env, 1)
    expect_eq(len(pids), STORAGE_PG_POOL, "storage backends on instance 1")
    m1, m2 = make_msg(a, b, "stalled write"), make_msg(c, b, "stalled write 2")
    calls = [("write", "POST", "/internal/send", {"message": m1}),
             ("read", "GET", "/internal/users/%d/meta" % a, None),
             ("write_prepare", "POST", "/internal/send", {"message": m2})]
    outcomes = calls_while_stopped(env, pids, calls, 0.2)
    deadline_s = PGPOOL_CALL_DEADLINE_MS / 1000
    for name, *_ in calls:
        status, problem, headers, took = outcomes[name]
        expect_eq(status, 503, "%s on a stopped backend (%r)" % (name, problem))
        expect_eq(headers.get("Retry-After"), "1", "%s Retry-After" % name)
        assert "no answer by the call's deadline" in problem["detail"], problem
        assert deadline_s - 0.3 <= took <= deadline_s + 1.5, \
            "%s answered after %.2f s, deadline %.1f s" % (name, took, deadline_s)
    # Each path met the deadline: the pipeline's results, the single
    # statement, the prepare before a batch.
    for what in ("postgresql batch outcome unknown", "postgresql statement failed",
                 "postgresql batch not sent"):
        assert log_lines_with(env, what, "no answer by the call's deadline"), "no %r in the log" % what
    # The callers retry idempotently: the write whose pipeline had gone
    # out may have committed once its backend resumed; stored once either way.
    for m in (m1, m2):
        retry_until_stored(st, m)
    m3 = make_msg(a, b, "after the backends resumed")
    send_ok(st, m3)
    msgs = st.messages(a, cid_of(a, b))["messages"]
    expect_eq([m["message_id"] for m in msgs], [m3["message_id"], m1["message_id"]],
              "the stalled write and the new one, once each")
    expect_eq(st.meta(a)["seq"], 2, "two writes in a's mailbox")
    expect_eq(len(st.messages(c, cid_of(c, b))["messages"]), 2, "c's writes once each")
    expect_eq(st.call("GET", "/readyz")[0], 200, "ready")
    st.ack([ack_key(m) for m in (warm, m1, m2, m3)])


def test_a_rolled_back_batch_keeps_its_session(env):
    """A batch the server rolled back leaves its connection's session as
    it is: here a write waits on its mailbox's row lock, held by another
    session, until the statement timeout cancels it. The write gets a
    503, and the same backends, with their prepared statements, serve the
    writes after it. Before, every rolled-back batch reconnected."""
    st = env.storage
    a, b = USERS.on(0), USERS.on(1)
    renew_pool(env, 0, a)  # every pooled connection live
    send_ok(st, make_msg(a, b, "makes a's mailbox"))
    before = sorted(storage_backends(env, 0))
    expect_eq(len(before), STORAGE_PG_POOL, "storage backends on instance 0")
    m = make_msg(a, b, "waits for the lock")
    holder = LockHolder(env, 0, "SELECT 1 FROM mailboxes WHERE owner_id = %d"
                                " FOR UPDATE" % a)
    try:
        status, body = st.send(m)
    finally:
        holder.release()
    expect_eq(status, 503, "a write cancelled by the statement timeout (%r)" % body)
    assert "statement timeout" in body["detail"], body
    send_ok(st, m)  # its retry, now that the lock is gone
    send_ok(st, make_msg(a, b, "after the rolled-back batch"))
    expect_eq(sorted(storage_backends(env, 0)), before,
              "the same sessions before and after the rolled-back batch")
    expect_eq(st.meta(a)["seq"], 3, "a's three writes, once each")
    st.ack([ack_key(x) for x in st.messages(a, cid_of(a, b))["messages"]])


def postmaster_pid(env, i):
    with open(os.path.join(env.pg_dirs[i], "data", "postmaster.pid")) as f:
        return int(f.readline())


def test_a_stalled_instance_answers_every_queued_call_by_its_deadline(env):
    """Every call meets PGPOOL_CALL_DEADLINE_MS from the moment it asks,
    not from the moment it got a lane and a connection. Instance 1 stops
    answering altogether (its backends and its postmaster SIGSTOPped: a
    reconnect hangs too) under eight concurrent writes and three reads.
    Two writes take the instance's two batch lanes and the third pooled
    connection goes to a read; the other six writes queue for a lane and
    two reads for a connection. Each of the eleven gets a 503 within the
    deadline plus a margin of its own start: the queued writes unsent
    once too little time was left to send them. (Before, a queued write
    got its batch once a lane gave up, 4 s in, and then waited for a
    reconnect; a queued read waited up to 5 s for a connection before its
    own 4 s began.) Once the instance resumes, each write retried is
    stored once."""
    st = env.storage
    b = USERS.on(0)
    senders = [USERS.on(1) for _ in range(8)]
    renew_pool(env, 1, senders[0])
    pids = storage_backends(env, 1) + [postmaster_pid(env, 1)]
    writes = [make_msg(s, b, "write to a stalled instance") for s in senders]
    calls = [("write%d" % i, "POST", "/internal/send", {"message": m})
             for i, m in enumerate(writes[:2])]
    calls += [("read0", "GET", "/internal/users/%d/meta" % senders[0], None)]
    calls += [("write%d" % (i + 2), "POST", "/internal/send", {"message": m})
              for i, m in enumerate(writes[2:])]
    calls += [("read%d" % i, "GET", "/internal/users/%d/meta" % senders[i], None)
              for i in (1, 2)]
    outcomes = calls_while_stopped(env, pids, calls, 0.05)
    deadline_s = PGPOOL_CALL_DEADLINE_MS / 1000
    unsent = 0
    for name, *_ in calls:
        assert name in outcomes, "%s: no outcome" % name
        status, problem, headers, took = outcomes[name]
        expect_eq(status, 503, "%s on a stalled instance (%r)" % (name, problem))
        expect_eq(headers.get("Retry-After"), "1", "%s Retry-After" % name)
        assert took <= deadline_s + 0.5, \
            "%s answered after %.2f s, deadline %.1f s" % (name, took, deadline_s)
        unsent += "not sent" in problem["detail"]
    assert unsent >= 4, "queued writes answered unsent: %d of 6" % unsent
    for m in writes:
        retry_until_stored(st, m, limit_s=15)
    for s, m in zip(senders, writes):
        expect_eq(st.meta(s)["seq"], 1, "user %d: its write stored once" % s)
    expect_eq(st.call("GET", "/readyz")[0], 200, "ready")
    st.ack([ack_key(m) for m in writes])


TESTS = [
    test_send_stored_then_replayed,
    test_send_below_floor_is_refused,
    test_deliver_is_idempotent,
    test_seq_counts_every_change_once,
    test_conversations_newest_first,
    test_messages_newest_first_with_paging,
    test_since_seq_returns_exactly_the_changes,
    test_since_ts_filters_by_landing_time,
    test_outbox_claim_lease_and_ack,
    test_deliver_removes_the_outbox_entry,
    test_batch_answers_each_write_as_alone,
    test_bad_batch_is_refused_whole,
    test_writes_run_prepared_and_survive_a_lost_session,
    test_content_round_trips_nul_and_utf8,
    test_concurrent_sends_of_one_sender_serialise,
    test_bad_input_is_refused_without_writes,
    test_placement_is_the_shard_map,
    test_mailboxes_live_on_their_shard_instance,
    test_unreachable_instance_answers_503_and_recovers,
    test_outbox_claim_keeps_what_it_claimed_when_an_instance_fails,
    test_batch_outbox_deletes_lock_in_message_id_order,
    test_outbox_ack_locks_in_key_order,
    test_ack_and_batch_on_the_same_entries_do_not_deadlock,
    test_two_acks_of_the_same_entries_do_not_deadlock,
    test_stopped_backend_answers_503_within_the_deadline,
    test_a_stalled_instance_answers_every_queued_call_by_its_deadline,
    test_a_rolled_back_batch_keeps_its_session,
]

# ---------------------------------------------------------------- harness


class Stop:
    """SIGTERM/SIGINT handling. A signal that arrives while a helper script
    runs (scripts/pg, scripts/migrate) is acted on once the script returns,
    so that no half-started PostgreSQL is left behind; otherwise at once."""

    requested = 0
    in_script = False


def on_signal(signum, frame):
    Stop.requested = signum
    if not Stop.in_script:
        raise SystemExit(128 + signum)


def run_script(args, **kwargs):
    """subprocess.run for the project's scripts, shielded from signals."""
    Stop.in_script = True
    try:
        return subprocess.run(args, check=True, **kwargs)
    finally:
        Stop.in_script = False
        if Stop.requested:
            raise SystemExit(128 + Stop.requested)


class Env:
    """The processes of one run; stop() undoes whatever start() did."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="messenger-storage-")
        # The PostgreSQL user must be able to reach its directories.
        os.chmod(self.tmp, 0o755)
        self.pg_dirs = [os.path.join(self.tmp, "pg%d" % i) for i in (0, 1)]
        self.pg_ports = []
        self.pg_started = [False, False]
        self.proc = None
        self.log_path = os.path.join(self.tmp, "storage.log")
        self.storage = None

    def url(self, i):
        return "postgresql://messenger@127.0.0.1:%d/messenger" % self.pg_ports[i]

    def pg_start(self, i):
        run_script([PG_SCRIPT, "start", self.pg_dirs[i], str(self.pg_ports[i])])
        self.pg_started[i] = True

    def pg_stop(self, i):
        run_script([PG_SCRIPT, "stop", self.pg_dirs[i]])
        self.pg_started[i] = False

    def psql(self, i, sql, user="messenger"):
        """sql on instance i as user (postgres: the bootstrap superuser)."""
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        url = self.url(i).replace("messenger@", user + "@", 1)
        out = subprocess.run([psql, "-X", "-tA", url, "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def start(self):
        if not os.access(STORAGE_BIN, os.X_OK):
            raise RuntimeError("%s not built (make MODE=asan %s)" % (STORAGE_BIN, STORAGE_BIN))
        self.pg_ports = [free_port(27641), free_port(27642)]
        if self.pg_ports[0] == self.pg_ports[1]:
            self.pg_ports[1] = free_port(0)
        for i in (0, 1):
            run_script([PG_SCRIPT, "init", self.pg_dirs[i], str(self.pg_ports[i])])
            self.pg_start(i)
        run_script([MIGRATE_SCRIPT, self.url(0), self.url(1)], stdout=subprocess.DEVNULL)
        port = free_port(0)
        secret = secrets.token_hex(32)
        env = dict(os.environ,
                   MESSENGER_INTERNAL_SECRET=secret,
                   STORAGE_PORT=str(port),
                   STORAGE_PG_URLS="%s,%s" % (self.url(0), self.url(1)),
                   STORAGE_SHARDS=str(SHARDS),
                   STORAGE_SHARD_MAP=SHARD_MAP,
                   STORAGE_PG_POOL=str(STORAGE_PG_POOL),
                   MESSENGER_BIND="127.0.0.1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([STORAGE_BIN], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.storage = Storage(port, secret)
        self.wait_ready()

    def wait_ready(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("storage exited with %d" % self.proc.returncode)
            try:
                if self.storage.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("storage not ready in 30 s")

    def stop_storage(self, timeout=20):
        """SIGTERM by PID; returns the exit status (None if killed)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def stop(self):
        """Stops everything; runs with signals ignored so a second signal
        cannot cut the cleanup short."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.stop_storage()
        for i in (0, 1):
            if os.path.exists(os.path.join(self.pg_dirs[i], "data")):
                subprocess.run([PG_SCRIPT, "stop", self.pg_dirs[i]])
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""




def run_test(env, test):
    try:
        test(env)
        print("ok   %s" % test.__name__, flush=True)
        return True
    except Exception as e:  # any failure, assertion or not, fails the test
        print("FAIL %s: %s" % (test.__name__, e), flush=True)
        if not isinstance(e, AssertionError):
            traceback.print_exc()
        return False


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wanted = sys.argv[1:]
    unknown = set(wanted) - {t.__name__ for t in TESTS}
    if unknown:
        print("unknown tests: %s" % ", ".join(sorted(unknown)))
        return 2
    env = Env()
    passed = failed = 0
    try:
        env.start()
        for test in TESTS:
            if wanted and test.__name__ not in wanted:
                continue
            if run_test(env, test):
                passed += 1
            else:
                failed += 1
        # Graceful stop: SIGTERM finishes cleanly, and under ASan a leak
        # would make the exit status non-zero.
        code = env.stop_storage()
        if code == 0:
            print("ok   test_sigterm_stops_cleanly_without_leaks", flush=True)
            passed += 1
        else:
            print("FAIL test_sigterm_stops_cleanly_without_leaks: exit %r" % code, flush=True)
            failed += 1
    except SystemExit:
        print("FAIL interrupted by a signal", flush=True)
        failed += 1
    except Exception as e:
        print("FAIL setup: %s" % e, flush=True)
        traceback.print_exc()
        failed += 1
    finally:
        if failed:
            print("--- storage log (tail) ---\n%s" % env.log_tail(), flush=True)
        env.stop()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
