"""The chaos load: senders that retry with the same key, and readers that
follow every mailbox by delta fetches.

Senders. Each sender thread owns a fixed share of the user pool, so every
user's sends are strictly sequential: a send is acknowledged (or given
up) before the same user's next send begins, which is what SPEC section 4
needs to promise per-sender order. A send carries a client_message_id
unique to the run and "s=<sender> n=<seq>" in its content. It is retried
with the same key and body on a timeout, a connection error, 5xx, 421 and
429, with exponential backoff, until it gets 200/201 or GIVE_UP_S passes;
a send that never got 200/201 is "unacknowledged", which the checker
treats differently from a lost one. Threads start on different entry
points (the load balancer and each gateway) and move to the next one
after a failure, as a client with several addresses would.

Readers. Each user's conversation list and each of its conversations is
followed by a delta chain that starts at the list's first token (change
counter 0, the token format of common/synctoken.h). A reader applies
every delta to its model of the lists; the checker later compares the
models with the mailboxes read in full. A reader also checks, as it goes,
that a conversation never names a last message that its message list
does not hold (SPEC 5.6, no half writes), and keeps a few (token,
snapshot) pairs per list so the checker can replay from the middle of a
chain too.

Everything here is bounded: sends by GIVE_UP_S and the HTTP timeout,
threads by the stop flag, memory by the run's length.
"""

import base64
import random
import threading
import time

import e2e_lib
from e2e_lib import TestFailure

# How long one send is retried before it counts as unacknowledged, s.
GIVE_UP_S = 40.0
# Backoff between attempts of one send: first, cap (s).
BACKOFF_FIRST_S = 0.05
BACKOFF_CAP_S = 1.0
RETRYABLE = {421, 429}
PAGE = e2e_lib.PAGE_SIZE_MAX
# Snapshots kept per followed list for replays from the middle of a chain.
SNAPSHOTS_PER_LIST = 2


def token_of(kind, user, cid=None):
    """The first token of a list: change counter 0 (common/synctoken.h:
    base64url without padding of "v1|c|<user>|0" or "v1|m|<user>|0|<cid>")."""
    raw = "v1|c|%d|0" % user if kind == "c" else "v1|m|%d|0|%s" % (user, cid)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def cid_of(a, b):
    return "%d_%d" % (min(a, b), max(a, b))


class SendRecord:
    """One logical send and every attempt made for it."""

    __slots__ = ("thread", "sender", "recipient", "seq", "cmid", "content", "first_start",
                 "ack_start", "ack_time", "status", "message", "attempts", "errors",
                 "rejected", "first_entry", "ack_entry")

    def __init__(self, thread, sender, recipient, seq, cmid, content):
        self.thread, self.sender, self.recipient = thread, sender, recipient
        self.seq, self.cmid, self.content = seq, cmid, content
        self.first_start = self.ack_start = self.ack_time = None
        self.status = None     # 200/201 when acknowledged
        self.message = None    # the acknowledged body
        self.attempts = 0
        self.errors = {}       # what failed attempts got: status or error kind -> count
        self.rejected = None   # a non-retryable answer (a bug), described
        self.first_entry = self.ack_entry = None  # index into Load.apis

    @property
    def acked(self):
        return self.message is not None


class Gate:
    """Lets the driver hold the load still (no new request starts) for a
    measurement, and know when everything in flight has finished."""

    def __init__(self):
        self._cond = threading.Condition()
        self._open = True
        self._busy = 0

    def enter(self, stop):
        with self._cond:
            while not self._open and not stop.is_set():
                self._cond.wait(0.2)
            self._busy += 1

    def leave(self):
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def close(self, idle_timeout_s):
        """Stops new work and waits until nothing is in flight. Returns
        True when the load went idle in time."""
        deadline = time.monotonic() + idle_timeout_s
        with self._cond:
            self._open = False
            while self._busy > 0 and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return self._busy == 0

    def open(self):
        with self._cond:
            self._open = True
            self._cond.notify_all()


class RateLimiter:
    """A global budget of sends per second (token bucket, burst of one
    second), so the load stays under what the machine can serve without
    starving the cluster's own heartbeats."""

    def __init__(self, rate):
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._tokens = self.rate
        self._last = time.monotonic()

    def acquire(self, stop):
        while not stop.is_set():
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                wait = (1.0 - self._tokens) / self.rate
            time.sleep(min(wait, 0.2))
        return False


class ListChain:
    """A delta chain over one list: the last token, the model built from
    the answers, and a few snapshots (token, model copy) from the middle."""

    __slots__ = ("token", "model", "snapshots", "deltas", "resyncs", "broken", "seen")

    def __init__(self, token):
        self.token = token
        self.model = {}
        self.snapshots = []
        self.deltas = 0
        self.resyncs = 0
        self.broken = 0
        self.seen = 0


class UserFollow:
    """What the readers know of one user: the conversation-list chain and
    one message chain per conversation."""

    def __init__(self, user):
        self.user = user
        self.lock = threading.Lock()
        self.convs = ListChain(token_of("c", user))
        self.msgs = {}

    def msg_chain(self, cid):
        chain = self.msgs.get(cid)
        if chain is None:
            chain = ListChain(token_of("m", self.user, cid))
            self.msgs[cid] = chain
        return chain


def apply_answer(chain, j, key, id_key, rng):
    """Applies one list answer to a chain. A delta adds or replaces the
    changed items; a full answer that holds the whole list (has_more
    false) replaces the model; a full answer that does not breaks the
    chain (the client would have to page: counted, never silently
    ignored). Returns the items of the answer."""
    items = j[key]
    if j["is_delta_update"]:
        for it in items:
            chain.model[it[id_key]] = it
        chain.deltas += 1
    else:
        if chain.seen and j["has_more"]:
            chain.broken += 1
        elif chain.seen:
            chain.resyncs += 1
        chain.model = {it[id_key]: it for it in items}
    chain.seen += 1
    chain.token = j["sync_token"]
    # Reservoir of snapshots, so replays start from anywhere in the run.
    if len(chain.snapshots) < SNAPSHOTS_PER_LIST:
        chain.snapshots.append((chain.token, dict(chain.model)))
    elif rng.random() < 0.1:
        chain.snapshots[rng.randrange(SNAPSHOTS_PER_LIST)] = (chain.token, dict(chain.model))
    return items


class Load:
    """Senders and readers over a pool of users.

    apis: e2e_lib.Api per entry point (load balancer first, then the
    gateways); users: the pool; peers: user -> list of users it writes
    to. Call start(), later stop(); records and follows hold the results.
    Thread safety: records is appended under _lock; each UserFollow under
    its own lock; counters under _lock."""

    def __init__(self, apis, users, peers, senders=32, readers=4, rate=150.0,
                 give_up_s=GIVE_UP_S, run_id=None, reader_pause_s=0.02):
        self.apis = apis
        self.users = list(users)
        self.peers = peers
        self.n_senders = senders
        self.n_readers = readers
        self.give_up_s = give_up_s
        self.run_id = run_id or "%08x" % random.getrandbits(32)
        self.reader_pause_s = reader_pause_s
        self.limiter = RateLimiter(rate)
        self.gate = Gate()
        self.stop_flag = threading.Event()
        self.records = []
        self.follows = {u: UserFollow(u) for u in self.users}
        self.half_writes = []
        self.read_status = {}
        self._lock = threading.Lock()
        self._threads = []
        self._next_seq = {u: 0 for u in self.users}

    # ----------------------------------------------------------- senders

    def _sender_loop(self, index):
        rng = random.Random()
        mine = self.users[index::self.n_senders]
        if not mine:
            return
        entry = index % len(self.apis)
        while not self.stop_flag.is_set():
            if not self.limiter.acquire(self.stop_flag):
                break
            self.gate.enter(self.stop_flag)
            try:
                if self.stop_flag.is_set():
                    break
                sender = rng.choice(mine)
                recipient = rng.choice(self.peers[sender])
                seq = self._next_seq[sender]
                self._next_seq[sender] = seq + 1
                cmid = "ch-%s-%d-%d" % (self.run_id, sender, seq)
                rec = SendRecord(index, sender, recipient, seq, cmid,
                                 "chaos s=%d n=%d" % (sender, seq))
                with self._lock:
                    self.records.append(rec)
                entry = self._send(rec, entry, rng)
            finally:
                self.gate.leave()

    def _send(self, rec, entry, rng):
        """Runs one send to the end: acknowledged, rejected, or given up.
        Returns the entry point to use next."""
        rec.first_start = time.monotonic()
        rec.first_entry = entry
        delay = BACKOFF_FIRST_S
        while True:
            api = self.apis[entry]
            start = time.monotonic()
            rec.attempts += 1
            retry_after = 0.0
            try:
                r = api.send(rec.sender, rec.recipient, rec.content, rec.cmid)
                status = r.status
            except TestFailure:
                r, status = None, "conn"
            if status in (200, 201):
                body = r.json
                if isinstance(body, dict) and body.get("client_message_id") == rec.cmid:
                    rec.status, rec.message = status, body
                    rec.ack_start, rec.ack_time = start, time.monotonic()
                    rec.ack_entry = entry
                    return entry
                rec.rejected = "2xx with an unexpected body: " + r.describe()
                return entry
            rec.errors[status] = rec.errors.get(status, 0) + 1
            retryable = not isinstance(status, int) or status >= 500 or status in RETRYABLE
            if not retryable:
                rec.rejected = r.describe()
                return entry
            if r is not None:
                try:
                    retry_after = float(r.headers.get("retry-after", "0"))
                except ValueError:
                    retry_after = 0.0
            if time.monotonic() - rec.first_start > self.give_up_s:
                return entry
            # A dead entry point or node: try the next address.
            if not isinstance(status, int) or status in (502, 503, 504):
                entry = (entry + 1) % len(self.apis)
            time.sleep(min(max(delay, min(retry_after, BACKOFF_CAP_S)), BACKOFF_CAP_S)
                       * (0.5 + rng.random()))
            delay = min(delay * 2, BACKOFF_CAP_S)

    # ----------------------------------------------------------- readers

    def _count_read(self, status):
        with self._lock:
            self.read_status[status] = self.read_status.get(status, 0) + 1

    def _get(self, api, path, user):
        try:
            r = api.call("GET", path, user=user)
        except TestFailure:
            self._count_read("conn")
            return None
        self._count_read(r.status)
        if r.status != 200:
            return None
        return r.json

    def follow_user(self, api, f, rng, record_half_writes=True):
        """One round of delta fetches for user f: the conversation list
        since its token, then each conversation that changed since its
        own token. Returns False when a read failed."""
        with f.lock:
            j = self._get(api, e2e_lib.conv_path(f.user, {"since": f.convs.token,
                                                            "page_size": PAGE}), f.user)
            if j is None:
                return False
            # Each conversation the answer names is fetched before the
            # answer is applied: a failure leaves the list's token where it
            # was, so the next round names the same conversations again.
            for conv in j["conversations"]:
                cid = conv["conversation_id"]
                chain = f.msg_chain(cid)
                m = self._get(api, e2e_lib.msgs_path(f.user, cid, {"since": chain.token,
                                                                   "page_size": PAGE}), f.user)
                if m is None:
                    return False
                apply_answer(chain, m, "messages", "message_id", rng)
                if record_half_writes and conv["last_message_id"] not in chain.model:
                    with self._lock:
                        self.half_writes.append(
                            "user %d conversation %s names last message %s, absent from "
                            "its messages read after it" % (f.user, cid, conv["last_message_id"]))
            apply_answer(f.convs, j, "conversations", "conversation_id", rng)
        return True

    def _reader_loop(self, index):
        rng = random.Random()
        mine = self.users[index::self.n_readers]
        api = self.apis[index % len(self.apis)]
        while not self.stop_flag.is_set():
            for u in mine:
                if self.stop_flag.is_set():
                    break
                self.gate.enter(self.stop_flag)
                try:
                    self.follow_user(api, self.follows[u], rng)
                finally:
                    self.gate.leave()
                time.sleep(self.reader_pause_s)

    # ------------------------------------------------------------ control

    def start(self):
        for i in range(self.n_senders):
            self._threads.append(threading.Thread(target=self._sender_loop, args=(i,),
                                                  name="sender-%d" % i, daemon=True))
        for i in range(self.n_readers):
            self._threads.append(threading.Thread(target=self._reader_loop, args=(i,),
                                                  name="reader-%d" % i, daemon=True))
        for t in self._threads:
            t.start()

    def stop(self):
        """Stops starting sends and reads, lets each send in flight finish
        (bounded by give_up_s), and joins. Returns the threads still alive
        (none when all went well)."""
        self.stop_flag.set()
        self.gate.open()
        deadline = time.monotonic() + self.give_up_s + 2 * e2e_lib.HTTP_TIMEOUT_S
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def snapshot_records(self):
        with self._lock:
            return list(self.records)

    def acked_count(self):
        with self._lock:
            return sum(1 for r in self.records if r.acked)
