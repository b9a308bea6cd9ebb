"""The chaos checker: reads every mailbox of the run in full and checks
SPEC section 5 against what the load recorded.

Guarantees checked, with the figure each one feeds:

1. every acknowledged send is in the sender's and the recipient's
   mailbox exactly once, with the acknowledged message_id and content
   ("lost": missing from either mailbox; "duplicated": more than once);
2. a send that was never acknowledged appears at most once per mailbox
   ("duplicated") and, if it landed, in both mailboxes ("one_sided");
3. both participants hold the same message ids in the same order
   ("order_violations", with per-sender order below);
4. per sender, acknowledged sends (strictly sequential by construction of
   the load) have strictly increasing message_id and non-decreasing
   sent_at ("order_violations");
5. the delta chain each reader followed from the list's first token,
   caught up once more now, rebuilds each list exactly, and so does a
   replay from the snapshots kept in the middle of the chains
   ("delta_mismatches");
6. every list is strictly newest first and each conversation's
   last_message_id is its newest message; readers never saw a
   conversation naming a message its list lacked ("half_writes").

Anything in a mailbox that the load did not send counts as "unknown".
"""

import concurrent.futures
import copy
import random
import time
import types

import e2e_lib
from e2e_lib import TestFailure

from load import PAGE, apply_answer

READ_ATTEMPTS = 5
READ_RETRY_S = 1.0
# Examples kept per kind of violation in the report.
EXAMPLES = 5


def _with_retries(fn):
    last = None
    for _ in range(READ_ATTEMPTS):
        try:
            return fn()
        except TestFailure as e:
            last = e
            time.sleep(READ_RETRY_S)
    raise last


def read_mailbox(api, user):
    """conversation_id -> (conversation, [messages newest first])."""
    def once():
        box = {}
        for c in api.all_convs(user):
            box[c["conversation_id"]] = (c, api.all_msgs(user, c["conversation_id"]))
        return box
    return _with_retries(once)


def read_mailboxes(api, users, workers=8):
    """Every user's mailbox, read in parallel. Returns (boxes, unreadable)
    where unreadable maps a user to the reason."""
    boxes, unreadable = {}, {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(read_mailbox, api, u): u for u in users}
        for fut in concurrent.futures.as_completed(futures):
            u = futures[fut]
            try:
                boxes[u] = fut.result()
            except TestFailure as e:
                unreadable[u] = str(e)[:300]
    return boxes, unreadable


class Report:
    """Counters and a few examples per kind of violation."""

    def __init__(self):
        self.counts = {}
        self.examples = {}
        self.pairs = 0

    def add(self, kind, example=None, n=1):
        self.counts[kind] = self.counts.get(kind, 0) + n
        if example is not None:
            ex = self.examples.setdefault(kind, [])
            if len(ex) < EXAMPLES:
                ex.append(example)

    def get(self, kind):
        return self.counts.get(kind, 0)


def _check_lists(boxes, rep):
    """Shape, order and conversation/message agreement of each list;
    returns (user, cid) -> [message ids newest first]."""
    ids = {}
    for user, box in boxes.items():
        for cid, (conv, msgs) in box.items():
            mids = [int(m["message_id"]) for m in msgs]
            ids[(user, cid)] = mids
            if any(a <= b for a, b in zip(mids, mids[1:])):
                rep.add("order_violations", "user %d conversation %s not newest first" % (user, cid))
            if user not in conv["participants"]:
                rep.add("unknown", "user %d holds conversation %s of %r" % (user, cid, conv["participants"]))
            if not msgs:
                rep.add("half_writes", "user %d conversation %s listed with no message" % (user, cid))
            elif conv["last_message_id"] != msgs[0]["message_id"]:
                rep.add("half_writes", "user %d conversation %s: last_message_id %s, newest "
                        "message %s" % (user, cid, conv["last_message_id"], msgs[0]["message_id"]))
            for m in msgs:
                if m["conversation_id"] != cid or {m["sender_id"], m["recipient_id"]} != \
                        set(conv["participants"]):
                    rep.add("unknown", "user %d conversation %s holds %r" % (user, cid, m))
    return ids


def _occurrences(boxes):
    """(sender, client_message_id) -> [(mailbox owner, message)]."""
    occ = {}
    for user, box in boxes.items():
        for _, (_, msgs) in box.items():
            for m in msgs:
                occ.setdefault((m["sender_id"], m["client_message_id"]), []).append((user, m))
    return occ


def _check_sends(records, occ, rep):
    by_key = {}
    for rec in records:
        by_key[(rec.sender, rec.cmid)] = rec
        if rec.rejected:
            rep.add("rejected", "%s: %s" % (rec.cmid, rec.rejected[:300]))
    for key, found in occ.items():
        if key not in by_key:
            rep.add("unknown", "message %s of sender %d was never sent by the load" % (key[1], key[0]))
    for rec in records:
        found = occ.get((rec.sender, rec.cmid), [])
        copies = {rec.sender: [], rec.recipient: []}
        for owner, m in found:
            copies.setdefault(owner, []).append(m)
        for owner, ms in copies.items():
            if owner not in (rec.sender, rec.recipient) and ms:
                rep.add("unknown", "%s found in mailbox of %d" % (rec.cmid, owner))
            if len(ms) > 1:
                rep.add("duplicated", "%s %d times in mailbox of %d (%s)" % (
                    rec.cmid, len(ms), owner, "acknowledged" if rec.acked else "unacknowledged"))
        s_copies, r_copies = copies[rec.sender], copies[rec.recipient]
        if rec.acked:
            want = rec.message
            missing = [who for who, ms in (("sender", s_copies), ("recipient", r_copies)) if not ms]
            if missing:
                rep.add("lost", "%s (acknowledged %d, message %s) missing from the %s mailbox" % (
                    rec.cmid, rec.status, want["message_id"], " and ".join(missing)))
                rep.add("lost_" + "_and_".join(missing))
            for m in s_copies + r_copies:
                if m["message_id"] != want["message_id"] or m["content"] != want["content"] or \
                        m["sent_at"] != want["sent_at"] or m["recipient_id"] != rec.recipient:
                    rep.add("mismatched", "%s acknowledged as %r, stored as %r" % (rec.cmid, want, m))
        else:
            if bool(s_copies) != bool(r_copies):
                rep.add("one_sided", "unacknowledged %s only in the %s mailbox" % (
                    rec.cmid, "sender" if s_copies else "recipient"))
            if s_copies or r_copies:
                rep.add("unacked_landed")
    return by_key


def _check_same_order(ids, rep):
    for (user, cid), mids in ids.items():
        a, b = (int(x) for x in cid.split("_"))
        peer = b if user == a else a
        if user > peer:
            continue  # each pair once
        other = ids.get((peer, cid))
        if other is None:
            rep.add("order_violations", "conversation %s in %d's mailbox, not in %d's" % (cid, user, peer))
        elif other != mids:
            only_a = set(mids) - set(other)
            only_b = set(other) - set(mids)
            rep.add("order_violations", "conversation %s differs between %d and %d: %d only in "
                    "the first, %d only in the second%s" % (
                        cid, user, peer, len(only_a), len(only_b),
                        ", same ids in another order" if not only_a and not only_b else ""))
    for (user, cid) in ids:
        a, b = (int(x) for x in cid.split("_"))
        peer = b if user == a else a
        if user > peer and (peer, cid) not in ids:
            rep.add("order_violations", "conversation %s in %d's mailbox, not in %d's" % (cid, user, peer))


def _check_per_sender_order(records, rep):
    by_sender = {}
    for rec in records:
        if rec.acked:
            by_sender.setdefault(rec.sender, []).append(rec)
    pairs = 0
    for sender, recs in by_sender.items():
        recs.sort(key=lambda r: r.seq)
        for x, y in zip(recs, recs[1:]):
            pairs += 1
            if x.ack_time > y.first_start:
                rep.add("load_overlap", "sends %s and %s of one sender overlapped" % (x.cmid, y.cmid))
                continue
            if int(y.message["message_id"]) <= int(x.message["message_id"]) or \
                    y.message["sent_at"] < x.message["sent_at"]:
                rep.add("order_violations", "sender %d: %s (id %s, sent_at %d) acknowledged before "
                        "%s began, which got id %s, sent_at %d" % (
                            sender, x.cmid, x.message["message_id"], x.message["sent_at"], y.cmid,
                            y.message["message_id"], y.message["sent_at"]))
    return pairs


def _catch_up(load, api, boxes, rep):
    """Advances every reader's chains to now and compares the models with
    the mailboxes; then replays from the kept snapshots."""
    rng = random.Random()
    chains = replays = 0
    for user, box in boxes.items():
        f = load.follows.get(user)
        if f is None:
            continue
        for attempt in range(READ_ATTEMPTS):
            if load.follow_user(api, f, rng, record_half_writes=False):
                break
            time.sleep(READ_RETRY_S)
        else:
            rep.add("delta_mismatches", "user %d: catch-up delta reads failed" % user)
            continue
        chains += 1 + len(box)
        _compare_models(f, box, rep)
        replays += _replay(load, api, f, box, rep)
    return chains, replays


def _compare_models(f, box, rep):
    """The lists a reader rebuilt from deltas (UserFollow f) against the
    full read of the same user's mailbox."""
    user = f.user
    model = {cid: c["last_message_id"] for cid, c in f.convs.model.items()}
    full = {cid: c["last_message_id"] for cid, (c, _) in box.items()}
    if model != full:
        rep.add("delta_mismatches", "user %d: conversation list rebuilt from deltas has %d "
                "entries, %d differ from the full read of %d" % (
                    user, len(model), sum(1 for k in full if model.get(k) != full[k]), len(full)))
    for cid, (_, msgs) in box.items():
        chain = f.msgs.get(cid)
        got = set(chain.model) if chain else set()
        want = {m["message_id"] for m in msgs}
        if got != want:
            rep.add("delta_mismatches", "user %d conversation %s: %d messages rebuilt from "
                    "deltas, %d in the full read, %d missing, %d extra" % (
                        user, cid, len(got), len(want), len(want - got), len(got - want)))


def _replay(load, api, f, box, rep):
    """From each kept (token, snapshot): one delta fetch must bring the
    snapshot to the full list. A delta that does not fit one page is
    counted as not replayable, not as a failure (the contract then
    answers the first page in full)."""
    done = 0
    lists = [("c", None, f.convs)] + [("m", cid, f.msgs[cid]) for cid in box if cid in f.msgs]
    for kind, cid, chain in lists:
        for token, snap in chain.snapshots:
            if kind == "c":
                path = e2e_lib.conv_path(f.user, {"since": token, "page_size": PAGE})
                key, id_key = "conversations", "conversation_id"
                want = {c: conv["last_message_id"] for c, (conv, _) in box.items()}
            else:
                path = e2e_lib.msgs_path(f.user, cid, {"since": token, "page_size": PAGE})
                key, id_key = "messages", "message_id"
                want = {m["message_id"]: m["message_id"] for m in box[cid][1]}
            j = load._get(api, path, f.user)
            if j is None:
                rep.add("delta_mismatches", "user %d: replay read failed" % f.user)
                continue
            if not j["is_delta_update"]:
                rep.add("replays_not_delta")
                continue
            model = dict(snap)
            for it in j[key]:
                model[it[id_key]] = it
            got = {k: (v["last_message_id"] if kind == "c" else k) for k, v in model.items()}
            done += 1
            if got != want:
                rep.add("delta_mismatches", "user %d %s: replay from a mid-chain token rebuilds %d "
                        "items, the full read has %d" % (
                            f.user, "conversation list" if kind == "c" else "conversation " + cid,
                            len(got), len(want)))
    return done


def check(load, api, users, records, follow=True):
    """Reads every mailbox of users and checks everything listed at the
    top. Returns a dict of figures and examples; the mailboxes read are
    kept under "_boxes" for selftest (the caller drops them)."""
    started = time.monotonic()
    boxes, unreadable = read_mailboxes(api, users)
    rep = analyse(records, boxes, unreadable, load.half_writes)
    chains = replays = 0
    if follow:
        chains, replays = _catch_up(load, api, boxes, rep)
    out = figures(rep, records, boxes)
    out.update({"delta_chains_checked": chains, "delta_replays_checked": replays,
                "delta_replays_not_delta": rep.get("replays_not_delta"),
                "check_seconds": round(time.monotonic() - started, 1), "_boxes": boxes})
    return out


def analyse(records, boxes, unreadable=None, half_writes=()):
    """Every check that needs no further read: a Report."""
    rep = Report()
    for u, why in (unreadable or {}).items():
        rep.add("unreadable", "user %d: %s" % (u, why))
    ids = _check_lists(boxes, rep)
    occ = _occurrences(boxes)
    _check_sends(records, occ, rep)
    _check_same_order(ids, rep)
    rep.pairs = _check_per_sender_order(records, rep)
    for hw in half_writes:
        rep.add("half_writes", hw)
    return rep


def figures(rep, records, boxes):
    acked = [r for r in records if r.acked]
    out = {
        "sends": len(records),
        "acknowledged": len(acked),
        "acknowledged_201": sum(1 for r in acked if r.status == 201),
        "acknowledged_200": sum(1 for r in acked if r.status == 200),
        "unacknowledged": len(records) - len(acked),
        "unacknowledged_landed": rep.get("unacked_landed"),
        "per_sender_pairs_checked": rep.pairs,
        "stored_copies": sum(len(msgs) for box in boxes.values() for (_, msgs) in box.values()),
        "users_read": len(boxes),
        "examples": rep.examples,
    }
    for k in VIOLATION_KEYS:
        out[k] = rep.get("unreadable" if k == "unreadable_users" else k)
    out["violations"] = sum(out[k] for k in VIOLATION_KEYS)
    return out


def selftest(load, records, boxes):
    """Proves the checker can fail: plants one fault of each kind in
    copies of the run's own data and expects the matching figure to
    move. Returns a list of what went undetected (empty: all caught)."""
    try:
        return _selftest(load, records, boxes)
    except (KeyError, StopIteration, IndexError) as e:
        return ["could not plant faults: %s %s" % (type(e).__name__, e)]


def _selftest(load, records, boxes):
    acked = [r for r in records if r.acked]
    by_sender = {}
    for r in acked:
        by_sender.setdefault(r.sender, []).append(r)
    twice = next((rs for rs in by_sender.values() if len(rs) >= 2), None)
    if not acked or twice is None:
        return ["too few acknowledged sends to plant faults"]
    victim = acked[len(acked) // 2]
    cid = victim.message["conversation_id"]
    missed = []

    def expect(what, kind, recs, bxs):
        if analyse(recs, bxs).get(kind) < 1:
            missed.append("%s not counted as %s" % (what, kind))

    # An acknowledged message missing from the recipient's mailbox.
    bxs = copy.deepcopy(boxes)
    conv, msgs = bxs[victim.recipient][cid]
    bxs[victim.recipient][cid] = (conv, [m for m in msgs if m["client_message_id"] != victim.cmid])
    expect("a deleted recipient copy", "lost", records, bxs)
    # The same message stored twice in the sender's mailbox.
    bxs = copy.deepcopy(boxes)
    conv, msgs = bxs[victim.sender][cid]
    mine = next(m for m in msgs if m["client_message_id"] == victim.cmid)
    bxs[victim.sender][cid] = (conv, msgs + [dict(mine)])
    expect("a second copy", "duplicated", records, bxs)
    # One participant's list in another order.
    bxs = copy.deepcopy(boxes)
    conv, msgs = bxs[victim.sender][cid]
    if len(msgs) >= 2:
        bxs[victim.sender][cid] = (conv, [msgs[1], msgs[0]] + msgs[2:])
        expect("two messages swapped", "order_violations", records, bxs)
    # A later send of one sender acknowledged with a smaller id.
    recs = [copy.copy(r) for r in records]
    first, second = sorted(twice, key=lambda r: r.seq)[:2]
    for r in recs:
        if r.cmid == second.cmid:
            r.message = dict(r.message, message_id=str(int(first.message["message_id"]) - 1))
    expect("a per-sender inversion", "order_violations", recs, boxes)
    # A delta chain that missed a message.
    f = load.follows.get(victim.sender)
    if f is not None and cid in f.msgs:
        g = types.SimpleNamespace(user=f.user, convs=f.convs, msgs=dict(f.msgs))
        g.msgs[cid] = types.SimpleNamespace(model=dict(f.msgs[cid].model))
        g.msgs[cid].model.pop(victim.message["message_id"], None)
        rep = Report()
        _compare_models(g, boxes[victim.sender], rep)
        if rep.get("delta_mismatches") < 1:
            missed.append("a message missing from a delta chain not counted")
    return missed


# Figures that must all be zero for a run to pass.
VIOLATION_KEYS = ("lost", "duplicated", "order_violations", "one_sided", "mismatched", "unknown",
                  "rejected", "half_writes", "delta_mismatches", "unreadable_users", "load_overlap")
