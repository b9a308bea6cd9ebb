"""End-to-end: delta fetches with sync tokens (SPEC 4 "Delta fetch" and
SPEC 5 guarantee 5): a chain of since tokens, replayed from any token,
reconstructs the full list, for the conversation list and for a message
list, on the sender's and the recipient's side, also while writes are
going on; a delta holds exactly the changed items; too many changes give
the full first page; a token newer than the mailbox gives the full page.

Run: MESSENGER_CLUSTER_ENV=var/cluster.env python3 tests/e2e/test_delta.py
"""

import base64
import threading
import time

from e2e_lib import (PAGE_SIZE_MAX, TestFailure, check, expect_status, fail, new_user, run_tests,
                     test)


def conv_key(c):
    return -int(c["last_message_id"])


def apply_conv_delta(state, items):
    """state: conversation_id -> conversation. A delta item replaces its
    conversation."""
    for c in items:
        state[c["conversation_id"]] = c


def conv_list(state):
    return sorted(state.values(), key=conv_key)


def msg_list(state):
    return sorted(state.values(), key=lambda m: -int(m["message_id"]))


def full_convs(a, user):
    return a.all_convs(user)


def full_msgs(a, user, cid):
    return a.all_msgs(user, cid)


def delta_convs(a, user, token, page_size=PAGE_SIZE_MAX):
    return a.convs_ok(user, {"since": token, "page_size": page_size})


def delta_msgs(a, user, cid, token, page_size=PAGE_SIZE_MAX):
    return a.msgs_ok(user, cid, {"since": token, "page_size": page_size})


def expect_delta(j, key, want_ids, id_key, what):
    check(j["is_delta_update"] is True, "%s: is_delta_update false for a small change" % what)
    check(j["has_more"] is False, "%s: delta with has_more true" % what)
    got = sorted(it[id_key] for it in j[key])
    check(got == sorted(want_ids), "%s: delta holds %r, expected exactly %r" % (what, got, sorted(want_ids)))


def diff_lists(got, want, id_key):
    gi = [x[id_key] for x in got]
    wi = [x[id_key] for x in want]
    if gi != wi:
        return "ids %r vs full %r" % (gi, wi)
    for g, w in zip(got, want):
        if g != w:
            return "item %r differs: %r vs full %r" % (g[id_key], g, w)
    return None


@test
def test_conversation_delta_chain(a):
    me = new_user()
    peers = [new_user() for _ in range(6)]
    for p in peers[:3]:
        a.send_ok(me, p, "seed %d" % p)
    first = a.convs_ok(me, {"page_size": PAGE_SIZE_MAX})
    check(first["is_delta_update"] is False, "plain fetch marked as delta")
    state = {c["conversation_id"]: c for c in first["conversations"]}
    checkpoints = [(first["sync_token"], dict(state))]
    token = first["sync_token"]
    batches = [[(me, peers[0]), (peers[3], me)],
               [(peers[1], me), (me, peers[4]), (me, peers[1])],
               [],
               [(peers[5], me), (me, peers[2]), (peers[0], me), (me, peers[3])]]
    for n, batch in enumerate(batches):
        touched = set()
        for s, r in batch:
            touched.add(a.send_ok(s, r, "batch %d %d->%d" % (n, s, r))["conversation_id"])
        j = delta_convs(a, me, token)
        expect_delta(j, "conversations", touched, "conversation_id", "batch %d" % n)
        apply_conv_delta(state, j["conversations"])
        full = full_convs(a, me)
        problem = diff_lists(conv_list(state), full, "conversation_id")
        check(problem is None, "after batch %d, snapshot + deltas != full list: %s" % (n, problem))
        token = j["sync_token"]
        checkpoints.append((token, dict(state)))
        again = delta_convs(a, me, token)
        expect_delta(again, "conversations", [], "conversation_id", "no change after batch %d" % n)
    final = full_convs(a, me)
    # Replay from every token ever issued: each reconstructs the full list.
    for i, (tok, snap) in enumerate(checkpoints):
        j = delta_convs(a, me, tok)
        check(j["is_delta_update"], "replay from token %d not a delta" % i)
        st = dict(snap)
        apply_conv_delta(st, j["conversations"])
        problem = diff_lists(conv_list(st), final, "conversation_id")
        check(problem is None, "replay from token %d: %s" % (i, problem))


def messages_chain(a, owner, peer, first_sender_is_owner):
    """A delta chain on owner's copy of the conversation with peer, with
    messages in both directions and noise in other conversations."""
    m0 = a.send_ok(owner, peer, "seed") if first_sender_is_owner else a.send_ok(peer, owner, "seed")
    cid = m0["conversation_id"]
    first = a.msgs_ok(owner, cid, {"page_size": PAGE_SIZE_MAX})
    state = {m["message_id"]: m for m in first["messages"]}
    check(list(state) == [m0["message_id"]], "seed list %r" % list(state))
    token = first["sync_token"]
    checkpoints = [(token, dict(state))]
    other = new_user()
    for n in range(5):
        new_ids = []
        for i in range(n + 1):
            s, r = (owner, peer) if (n + i) % 2 else (peer, owner)
            new_ids.append(a.send_ok(s, r, "b%d.%d" % (n, i))["message_id"])
            # Changes elsewhere in the mailbox must not show up here.
            a.send_ok(owner, other, "noise %d.%d" % (n, i))
        j = delta_msgs(a, owner, cid, token)
        expect_delta(j, "messages", new_ids, "message_id", "user %d batch %d" % (owner, n))
        for m in j["messages"]:
            state[m["message_id"]] = m
        token = j["sync_token"]
        checkpoints.append((token, dict(state)))
        problem = diff_lists(msg_list(state), full_msgs(a, owner, cid), "message_id")
        check(problem is None, "user %d after batch %d: %s" % (owner, n, problem))
    final = full_msgs(a, owner, cid)
    for i, (tok, snap) in enumerate(checkpoints):
        j = delta_msgs(a, owner, cid, tok)
        check(j["is_delta_update"], "user %d replay from token %d not a delta" % (owner, i))
        st = dict(snap)
        for m in j["messages"]:
            st[m["message_id"]] = m
        problem = diff_lists(msg_list(st), final, "message_id")
        check(problem is None, "user %d replay from token %d: %s" % (owner, i, problem))


@test
def test_message_delta_chain_sender_side(a):
    messages_chain(a, new_user(), new_user(), True)


@test
def test_message_delta_chain_recipient_side(a):
    messages_chain(a, new_user(), new_user(), False)


@test
def test_too_many_changes_give_full_first_page(a):
    me = new_user()
    a.send_ok(me, new_user(), "seed")
    token = a.convs_ok(me)["sync_token"]
    for _ in range(5):
        a.send_ok(new_user(), me, "change")
    j = a.convs_ok(me, {"since": token, "page_size": 3})
    check(j["is_delta_update"] is False, "5 changes in a page of 3 answered as a delta")
    full = a.convs_ok(me, {"page_size": 3})
    check(j["conversations"] == full["conversations"], "overflow answer is not the full first page")
    check(j["has_more"] is True, "overflow answer of a 6-conversation mailbox has has_more false")
    # Exactly fitting still is a delta.
    j = a.convs_ok(me, {"since": token, "page_size": 5})
    check(j["is_delta_update"] is True and len(j["conversations"]) == 5,
          "5 changes in a page of 5: delta %r with %d items" % (j["is_delta_update"], len(j["conversations"])))
    # Same for messages.
    peer = new_user()
    cid = a.send_ok(me, peer, "m0")["conversation_id"]
    mtok = a.msgs_ok(me, cid)["sync_token"]
    for i in range(4):
        a.send_ok(peer, me, "m%d" % (i + 1))
    j = a.msgs_ok(me, cid, {"since": mtok, "page_size": 2})
    check(j["is_delta_update"] is False, "4 new messages in a page of 2 answered as a delta")
    check(j["messages"] == a.msgs_ok(me, cid, {"page_size": 2})["messages"],
          "overflow answer is not the full first page of messages")
    check(j["has_more"] is True, "overflow page of 5 messages has has_more false")


def future_token(real):
    """A token like real (the format of common/synctoken.h: base64url of
    "v1|kind|user|seq[|cid]") whose seq is far beyond the mailbox's, as a
    token from before a restore would be. No client can get one otherwise."""
    try:
        text = base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)).decode()
    except ValueError:
        text = ""
    fields = text.split("|")
    if len(fields) < 4 or fields[0] != "v1" or not fields[3].isdigit():
        fail("cannot build a future token: %r is not in the synctoken.h format" % real)
    fields[3] = str(int(fields[3]) + 10**12)
    return base64.urlsafe_b64encode("|".join(fields).encode()).rstrip(b"=").decode()


@test
def test_token_newer_than_mailbox_gives_full_page(a):
    me, peer = new_user(), new_user()
    m = a.send_ok(me, peer, "hello")
    r = a.convs(me, query={"since": future_token(a.convs_ok(me)["sync_token"])})
    expect_status(r, 200)
    j = r.json
    check(j["is_delta_update"] is False, "token from the future answered as a delta: %r" % j)
    check([c["last_message_id"] for c in j["conversations"]] == [m["message_id"]],
          "token from the future: not the full first page: %r" % j)
    cid = m["conversation_id"]
    r = a.msgs(me, cid, query={"since": future_token(a.msgs_ok(me, cid)["sync_token"])})
    expect_status(r, 200)
    check(r.json["is_delta_update"] is False and r.json["messages"] == [m],
          "messages token from the future: %r" % r.json)


@test
def test_delta_follower_during_writes(a):
    """A client follows since tokens while other clients write to its
    mailbox; every answer is a delta (a page holds every change between
    two polls), and the state it builds equals the full list at the end.
    (A token that runs ahead of the hot meta, which this can meet by
    chance, is forced in test_cache_failures.py.)"""
    me = new_user()
    peers = [new_user() for _ in range(5)]
    cid_of = {}
    for p in peers:
        cid_of[p] = a.send_ok(p, me, "seed")["conversation_id"]
    watched = cid_of[peers[0]]
    first = a.convs_ok(me, {"page_size": PAGE_SIZE_MAX})
    cstate = {c["conversation_id"]: c for c in first["conversations"]}
    ctok = first["sync_token"]
    mfirst = a.msgs_ok(me, watched, {"page_size": PAGE_SIZE_MAX})
    mstate = {m["message_id"]: m for m in mfirst["messages"]}
    mtok = mfirst["sync_token"]
    errors = []

    def writer(idx):
        try:
            for i in range(30):
                p = peers[(idx + i) % len(peers)]
                if i % 3 == 0:
                    a.send_ok(me, p, "w%d.%d" % (idx, i))
                else:
                    a.send_ok(p, me, "w%d.%d" % (idx, i))
        except TestFailure as e:
            errors.append("writer %d: %s" % (idx, e))

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for w in writers:
        w.start()
    polls = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            finished = all(not w.is_alive() for w in writers)
            j = a.convs_ok(me, {"since": ctok, "page_size": PAGE_SIZE_MAX})
            if not j["is_delta_update"]:
                fail("poll %d: a token this mailbox issued (%s) got the full page, not a delta "
                     "of its 5 conversations" % (polls, ctok))
            apply_conv_delta(cstate, j["conversations"])
            ctok = j["sync_token"]
            j = a.msgs_ok(me, watched, {"since": mtok, "page_size": PAGE_SIZE_MAX})
            if not j["is_delta_update"]:
                fail("poll %d: a token this conversation issued (%s) got the full page, not a "
                     "delta of at most 18 messages" % (polls, mtok))
            for m in j["messages"]:
                check(m["message_id"] not in mstate, "delta repeated message %s" % m["message_id"])
                mstate[m["message_id"]] = m
            mtok = j["sync_token"]
            polls += 1
            if finished:
                break
            time.sleep(0.02)
    finally:
        for w in writers:
            w.join(60)
    check(not errors, "; ".join(errors))
    check(polls >= 2, "follower polled only %d times" % polls)
    # One more step after the writers finished, then compare.
    j = a.convs_ok(me, {"since": ctok, "page_size": PAGE_SIZE_MAX})
    apply_conv_delta(cstate, j["conversations"])
    problem = diff_lists(conv_list(cstate), full_convs(a, me), "conversation_id")
    check(problem is None, "followed conversation list != full list: %s" % problem)
    j = a.msgs_ok(me, watched, {"since": mtok, "page_size": PAGE_SIZE_MAX})
    for m in j["messages"]:
        mstate[m["message_id"]] = m
    problem = diff_lists(msg_list(mstate), full_msgs(a, me, watched), "message_id")
    check(problem is None, "followed message list != full list: %s" % problem)


@test
def test_last_updated_timestamp_selects_landed_items(a):
    me, peer = new_user(), new_user()
    old = [a.send_ok(me, peer, "old %d" % i) for i in range(3)]
    cid = old[0]["conversation_id"]
    # The server's landing clock is best-effort (SPEC 4) and this suite
    # runs next to the cluster: 300 ms either side of t absorbs the skew.
    time.sleep(0.3)
    t = int(time.time() * 1000)
    time.sleep(0.3)
    new = [a.send_ok(peer, me, "new 0"), a.send_ok(me, peer, "new 1")]
    for user in (me, peer):
        j = a.msgs_ok(user, cid, {"last_updated_timestamp": t})
        got = [m["message_id"] for m in j["messages"]]
        want = [new[1]["message_id"], new[0]["message_id"]]
        check(got == want, "user %d: messages landed after t %r, expected %r" % (user, got, want))
        j = a.convs_ok(user, {"last_updated_timestamp": t})
        check([c["conversation_id"] for c in j["conversations"]] == [cid],
              "user %d: conversations after t: %r" % (user, j["conversations"]))
    j = a.msgs_ok(me, cid, {"last_updated_timestamp": int(time.time() * 1000) + 60000})
    check(j["messages"] == [], "messages after a future time: %r" % j["messages"])
    # Every value the API accepts, up to 2^63-1, is a time nothing landed
    # after, not an error.
    for t in (10**18, 2**63 - 1):
        j = a.msgs_ok(me, cid, {"last_updated_timestamp": t})
        check(j["messages"] == [], "messages after %d: %r" % (t, j["messages"]))
        j = a.convs_ok(me, {"last_updated_timestamp": t})
        check(j["conversations"] == [], "conversations after %d: %r" % (t, j["conversations"]))


if __name__ == "__main__":
    run_tests()
