#!/usr/bin/env python3
"""test_hot_scripts.py - the cache node's Redis scripts against a real Redis.

Starts redis-server on a free loopback port in a temporary directory, reads
the scripts out of services/cache/hot_scripts.h (the very text the cache
node sends) and proves, for the script that applies a landed message
(HOT_LUA_APPLY):

- what it must do, on worked cases: nothing for a user Redis does not hold;
  a damaged window (its size does not match the meta) is dropped, and so
  is a window whose index lost a conversation or points at an entry the
  window lacks (Redis evicts keys one by one), never patched into a
  window that lists one conversation twice; an entry
  below the lowest of an incomplete window is left out; a full window is
  trimmed to its cap, forgets the trimmed conversations and is no longer
  complete; a retried apply changes nothing; an apply whose seq is not
  the stored one plus one (Redis missed a write) or the same (a retry)
  drops the user;
- that it leaves Redis exactly as the previous version of the script did
  (REFERENCE_APPLY below: one Redis call per step, kept here as the
  reference), after every step of a long random sequence of loads,
  applies, retries and damage, run on two databases side by side; and
  that after every step no window lists a conversation twice and every
  window agrees with its index.

It prints the Redis time per apply of both versions on full windows (the
`usec_per_call` of EVALSHA in INFO commandstats), for docs/performance.md;
that figure is reported, not asserted. The redis-server it starts is
stopped by PID in a finally block.

Python 3 standard library only.
"""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS_H = os.path.join(ROOT, "services", "cache", "hot_scripts.h")
SEED = int(os.environ.get("MESSENGER_HOT_TEST_SEED", "20261126"))
STEPS = 3000

# The apply script as it was before it was made cheaper: the reference
# the current one must match, step by step. Both drop a user whose index
# x disagrees with its window (its size, or an entry the window lacks),
# or whose stored seq is neither the new one less one nor the same.
REFERENCE_APPLY = """\
local u, c, x, m = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', u) == 0 then return 0 end
local cn = tonumber(redis.call('HGET', u, 'cn'))
if cn == nil then redis.call('DEL', u, c, x) return 0 end
local was = tonumber(redis.call('HGET', u, 'seq'))
if was == nil or tonumber(ARGV[1]) > was + 1 or tonumber(ARGV[1]) < was then
  redis.call('DEL', u, c, x) return 0 end
if redis.call('ZCARD', c) ~= cn or redis.call('HLEN', x) ~= cn then
  redis.call('DEL', u, c, x) return 0 end
local cid, ce, me = ARGV[3], ARGV[4], ARGV[5]
local old = redis.call('HGET', x, cid)
if old and old < ce and redis.call('ZSCORE', c, old) == false then
  redis.call('DEL', u, c, x) return 0 end
redis.call('HSET', u, 'seq', ARGV[1], 'max', ARGV[2])
if old then
  if old < ce then redis.call('ZREM', c, old)
    redis.call('ZADD', c, 0, ce) redis.call('HSET', x, cid, ce) end
else
  local low = redis.call('ZRANGE', c, 0, 0)[1]
  if redis.call('HGET', u, 'cc') == '1' or (low and ce > low) then
    redis.call('ZADD', c, 0, ce) redis.call('HSET', x, cid, ce) end
end
while redis.call('ZCARD', c) > tonumber(ARGV[6]) do
  local lo = redis.call('ZRANGE', c, 0, 0)[1]
  redis.call('ZREM', c, lo)
  redis.call('HDEL', x, string.match(lo, '^%d+|([^|]+)|'))
  redis.call('HSET', u, 'cc', '0') end
redis.call('HSET', u, 'cn', redis.call('ZCARD', c))
local mf = redis.call('HGET', u, 'm:' .. cid)
if mf then
  local cnt, comp = string.match(mf, '^(%d+):(%d)$')
  if tonumber(cnt) ~= redis.call('ZCARD', m) then
    redis.call('HDEL', u, 'm:' .. cid) redis.call('DEL', m)
  else
    local lo = redis.call('ZRANGE', m, 0, 0)[1]
    if comp == '1' or (lo and me > lo) then
      redis.call('ZADD', m, 0, me) end
    while redis.call('ZCARD', m) > tonumber(ARGV[7]) do
      redis.call('ZREMRANGEBYRANK', m, 0, 0) comp = '0' end
    redis.call('HSET', u, 'm:' .. cid,
      redis.call('ZCARD', m) .. ':' .. comp)
  end
end
return 1
"""


class TestFailure(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise TestFailure(reason)


# ---- scripts ----------------------------------------------------------


def read_scripts(path):
    """{macro name: Lua text} of every HOT_LUA_* in the header."""
    scripts, name, parts = {}, None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#define (HOT_LUA_\w+)", line)
            if m:
                name, parts = m.group(1), []
            if name is None:
                continue
            for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
                parts.append(lit.replace('\\"', '"').replace("\\n", "\n")
                             .replace("\\\\", "\\"))
            if not line.rstrip().endswith("\\"):
                scripts[name] = "".join(parts)
                name = None
    return scripts


# ---- a small RESP client ------------------------------------------------


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise TestFailure("redis error: %s" % rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exactly(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise TestFailure("unexpected reply %r" % line)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def start_redis(tmp):
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tmp],
        stdout=open(os.path.join(tmp, "redis.log"), "w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            r = Redis(port)
            if r.call("PING") == "PONG":
                return proc, r
            r.close()
        except OSError:
            pass
        if proc.poll() is not None:
            raise TestFailure("redis-server exited at start")
        time.sleep(0.05)
    raise TestFailure("redis-server did not answer")


# ---- the model's keys and entries ----------------------------------------


def keys(user, cid):
    return ("u:{%d}" % user, "c:{%d}" % user, "x:{%d}" % user,
            "m:{%d}:%s" % (user, cid))


def entry(msg_id, cid, text="t"):
    return "%020d|%s|{\"x\":\"%s\"}" % (msg_id, cid, text)


class Scripts:
    """Runs the header's scripts, with apply chosen per instance."""

    def __init__(self, r, texts, apply_text):
        self.r, self.texts, self.apply_text = r, texts, apply_text

    def load_user(self, user, seq, complete, entries):
        u, c, x, _ = keys(user, "")
        # The score is the node's to compute (its ring hash); any number
        # does here.
        return self.r.call("EVAL", self.texts["HOT_LUA_LOAD_USER"], 4, u, c, x,
                           "hot:users", seq, seq, "1" if complete else "0",
                           str(user), str(user * 10), *entries)

    def load_msgs(self, user, cid, complete, entries):
        u, _, _, m = keys(user, cid)
        return self.r.call("EVAL", self.texts["HOT_LUA_LOAD_MSGS"], 2, u, m,
                           cid, "1" if complete else "0", *entries)

    def apply(self, user, seq, msg_id, cid, cmax, mmax):
        u, c, x, m = keys(user, cid)
        return self.r.call("EVAL", self.apply_text, 4, u, c, x, m, seq, msg_id,
                           cid, entry(msg_id, cid, "conv"),
                           entry(msg_id, cid, "msg"), cmax, mmax)


def snapshot(r):
    """Everything in the selected database, comparable."""
    out = {}
    for k in sorted(r.call("KEYS", "*")):
        kind = r.call("TYPE", k)
        if kind == "hash":
            flat = r.call("HGETALL", k)
            out[k] = ("hash", dict(zip(flat[::2], flat[1::2])))
        elif kind == "zset":
            out[k] = ("zset", r.call("ZRANGE", k, 0, -1, "WITHSCORES"))
        else:
            out[k] = (kind, None)
    return out


# ---- worked cases -------------------------------------------------------


def case_missing_user(s, r):
    check(s.apply(1, 5, 500, "a", 4, 3) == 0, "apply to a user Redis lacks")
    check(r.call("KEYS", "*") == [], "nothing may be created for a missing user")


def case_damaged_window(s, r):
    s.load_user(2, 1, True, [entry(10, "a"), entry(11, "b")])
    r.call("ZREM", "c:{2}", entry(10, "a"))  # as if evicted in part
    check(s.apply(2, 2, 12, "a", 4, 3) == 0, "damaged window must refuse")
    check(r.call("EXISTS", "u:{2}", "c:{2}", "x:{2}") == 0,
          "a damaged window is dropped with its meta")


def case_lost_index_drops_the_window(s, r):
    s.load_user(6, 1, True, [entry(10, "a"), entry(11, "b")])
    r.call("DEL", "x:{6}")  # evicted alone under maxmemory
    check(s.apply(6, 2, 12, "a", 4, 3) == 0, "a window without its index must refuse")
    check(r.call("EXISTS", "u:{6}", "c:{6}", "x:{6}") == 0,
          "a window without its index is dropped, not given a second entry for a")
    s.load_user(7, 1, True, [entry(10, "a"), entry(11, "b")])
    r.call("HSET", "x:{7}", "a", entry(9, "a"))  # points at no entry of the window
    check(s.apply(7, 2, 12, "a", 4, 3) == 0, "an index out of step must refuse")
    check(r.call("EXISTS", "u:{7}", "c:{7}", "x:{7}") == 0,
          "a window whose index is out of step is dropped")


def case_load_indexes_the_user(s, r):
    s.load_user(11, 1, True, [entry(10, "a")])
    check(r.call("ZSCORE", "hot:users", "11") == "110",
          "a loaded user is in the user index: %r" % r.call("ZRANGE", "hot:users", 0, -1))
    s.load_user(11, 2, True, [entry(10, "a")])
    check(r.call("ZCARD", "hot:users") == 1, "a reload indexes the user once")


def case_below_incomplete_window(s, r):
    s.load_user(3, 1, False, [entry(20, "a"), entry(30, "b")])
    check(s.apply(3, 2, 15, "z", 4, 3) == 1, "apply")
    check(r.call("ZCARD", "c:{3}") == 2 and r.call("HGET", "x:{3}", "z") is None,
          "an entry below an incomplete window stays out")
    check(r.call("HMGET", "u:{3}", "seq", "max", "cn") == ["2", "15", "2"],
          "meta after an apply: %s" % r.call("HGETALL", "u:{3}"))


def case_trim_full_window(s, r):
    s.load_user(4, 1, True, [entry(i, "c%d" % i) for i in range(1, 5)])
    s.load_msgs(4, "c9", True, [])
    check(s.apply(4, 2, 50, "c9", 4, 3) == 1, "apply")
    check(r.call("ZRANGE", "c:{4}", 0, -1) ==
          [entry(i, "c%d" % i) for i in (2, 3, 4)] + [entry(50, "c9", "conv")],
          "window after trim: %s" % r.call("ZRANGE", "c:{4}", 0, -1))
    check(r.call("HEXISTS", "x:{4}", "c1") == 0 and
          r.call("HGET", "x:{4}", "c9") == entry(50, "c9", "conv"),
          "the index forgets the trimmed conversation")
    check(r.call("HMGET", "u:{4}", "cn", "cc", "m:c9") == ["4", "0", "1:1"],
          "meta after trim: %s" % r.call("HGETALL", "u:{4}"))
    for seq, i in ((3, 51), (4, 52), (5, 53)):
        s.apply(4, seq, i, "c9", 4, 3)
    check(r.call("ZCARD", "m:{4}:c9") == 3 and r.call("HGET", "u:{4}", "m:c9") == "3:0",
          "a message window trimmed to its cap is no longer complete")


def case_retry_changes_nothing(s, r):
    s.load_user(5, 1, True, [entry(1, "a")])
    s.load_msgs(5, "a", True, [entry(1, "a", "msg")])
    s.apply(5, 2, 7, "a", 4, 3)
    before = snapshot(r)
    check(s.apply(5, 2, 7, "a", 4, 3) == 1, "retried apply")
    check(snapshot(r) == before, "a retried apply must change nothing")


def case_seq_gap_drops_the_user(s, r):
    s.load_user(8, 4, True, [entry(1, "a")])
    check(s.apply(8, 5, 7, "a", 4, 3) == 1, "the next seq applies")
    check(s.apply(8, 5, 7, "a", 4, 3) == 1, "a retry of it applies (changing nothing)")
    check(s.apply(8, 7, 9, "a", 4, 3) == 0, "a seq past the next must refuse")
    check(r.call("EXISTS", "u:{8}", "c:{8}", "x:{8}") == 0,
          "a user whose Redis missed a write is dropped")
    s.load_user(9, 4, True, [entry(1, "a")])
    check(s.apply(9, 3, 7, "a", 4, 3) == 0, "a seq below the stored one must refuse")
    check(r.call("EXISTS", "u:{9}", "c:{9}", "x:{9}") == 0,
          "a user whose Redis is ahead of the write is dropped")


# ---- differential run ---------------------------------------------------


def random_step(rng, next_id):
    """One operation, as data: (kind, args)."""
    user = rng.randrange(1, 4)
    cid = "c%d" % rng.randrange(8)
    roll = rng.random()
    if roll < 0.08:
        n = rng.randrange(0, 6)
        ids = sorted(rng.sample(range(1, next_id + 1), min(n, next_id)))
        newest = {i % 8: i for i in ids}  # storage lists a conversation once
        return ("load_user", user, rng.random() < 0.5,
                [entry(i, "c%d" % (i % 8)) for i in sorted(newest.values())])
    if roll < 0.16:
        n = rng.randrange(0, 5)
        ids = sorted(rng.sample(range(1, next_id + 1), min(n, next_id)))
        return ("load_msgs", user, cid, rng.random() < 0.5,
                [entry(i, cid, "msg") for i in ids])
    if roll < 0.20:
        return ("damage", user, cid, rng.randrange(5))
    if roll < 0.30:
        return ("apply_old_id", user, cid, rng.randrange(1, next_id + 1))
    return ("apply", user, cid, next_id + 1)


def run_step(s, r, step):
    kind = step[0]
    if kind == "load_user":
        return s.load_user(step[1], 1, step[2], step[3])
    if kind == "load_msgs":
        return s.load_msgs(step[1], step[2], step[3], step[4])
    if kind == "damage":
        u, c, x, m = keys(step[1], step[2])
        if step[3] == 4:  # an index entry left behind by an older window
            return r.call("HSET", x, step[2], entry(0, step[2]))
        victim = [c, m, x, u][step[3]]
        if step[3] in (0, 1):
            first = r.call("ZRANGE", victim, 0, 0)
            return r.call("ZREM", victim, first[0]) if first else 0
        return r.call("DEL", victim)
    user, cid, msg_id, seq = step[1], step[2], step[3], step[4]
    return s.apply(user, seq, msg_id, cid, 4, 3)


def check_windows(r, where):
    """No window lists a conversation twice, and every window that has its
    meta agrees with its index: what pages are served from."""
    for user in (1, 2, 3):
        u, c, x, _ = keys(user, "")
        if not r.call("EXISTS", u):
            continue
        cids = [e.split("|")[1] for e in r.call("ZRANGE", c, 0, -1)]
        check(len(cids) == len(set(cids)), "%s: user %d's window lists a "
              "conversation twice: %r" % (where, user, cids))
        index = r.call("HGETALL", x)
        index = dict(zip(index[::2], index[1::2]))
        if int(r.call("HGET", u, "cn")) == len(cids) == len(index):
            check(sorted(index) == sorted(cids), "%s: user %d's index %r, window %r"
                  % (where, user, sorted(index), cids))


def differential(texts, r):
    rng = random.Random(SEED)
    ref = Scripts(r, texts, REFERENCE_APPLY)
    new = Scripts(r, texts, texts["HOT_LUA_APPLY"])
    next_id = 0
    applied = 0
    seqs = {}  # user -> the seq Redis holds for it, as far as the steps tell
    for i in range(STEPS):
        step = random_step(rng, max(next_id, 1))
        if step[0] == "apply":
            next_id += 1
        if step[0].startswith("apply"):
            # Mostly the next seq; now and then a retry, or a gap (a write
            # Redis missed).
            roll = rng.random()
            held = seqs.get(step[1], 1)
            step = step + (held if roll < 0.05 else held + 2 if roll < 0.10 else held + 1,)
        r.call("SELECT", 1)
        want = run_step(ref, r, step)
        want_state = snapshot(r)
        r.call("SELECT", 2)
        got = run_step(new, r, step)
        got_state = snapshot(r)
        check(got == want, "step %d %s: returned %r, the reference %r" %
              (i, step, got, want))
        check(got_state == want_state, "step %d %s: state differs:\n new %s\n ref %s" %
              (i, step, got_state, want_state))
        if step[0] != "damage":
            check_windows(r, "step %d %s" % (i, step))
        if step[0] == "load_user":
            seqs[step[1]] = 1
        elif step[0].startswith("apply") and want == 1:
            seqs[step[1]] = step[4]
        applied += step[0].startswith("apply") and want == 1
    r.call("SELECT", 0)
    check(applied > STEPS // 4, "too few applies landed (%d): the sequence "
          "does not exercise the script" % applied)
    return applied


def usec_per_apply(r, texts, apply_text, rounds=2000):
    """Redis time per EVALSHA of apply_text on full windows (100 each)."""
    sha = r.call("SCRIPT", "LOAD", apply_text)
    r.call("FLUSHALL")
    s = Scripts(r, texts, apply_text)
    for user in range(1, 21):
        s.load_user(user, 1, True, [entry(i, "c%d" % i) for i in range(1, 101)])
        s.load_msgs(user, "c100", True,
                    [entry(i, "c100", "msg") for i in range(1, 101)])
    r.call("CONFIG", "RESETSTAT")
    for i in range(rounds):
        user = 1 + i % 20
        msg_id = 1000 + i
        seq = 2 + i // 20  # each user's next
        u, c, x, m = keys(user, "c100")
        r.call("EVALSHA", sha, 4, u, c, x, m, seq, msg_id, "c100",
               entry(msg_id, "c100", "conv"), entry(msg_id, "c100", "msg"),
               100, 100)
    stats = r.call("INFO", "commandstats")
    m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)", stats)
    check(m is not None and int(m.group(1)) == rounds, "commandstats: %s" % stats)
    return int(m.group(2)) / rounds


def main():
    texts = read_scripts(SCRIPTS_H)
    for name in ("HOT_LUA_APPLY", "HOT_LUA_LOAD_USER", "HOT_LUA_LOAD_MSGS"):
        check(name in texts and "return" in texts[name], "%s not read" % name)
    tmp = tempfile.mkdtemp(prefix="hot-scripts-")
    proc, r = None, None
    passed = failed = 0
    try:
        proc, r = start_redis(tmp)
        cases = [case_missing_user, case_damaged_window, case_lost_index_drops_the_window,
                 case_load_indexes_the_user,
                 case_below_incomplete_window, case_trim_full_window,
                 case_retry_changes_nothing, case_seq_gap_drops_the_user]
        for ref_too in (False, True):
            for case in cases:
                name = case.__name__ + (" (reference)" if ref_too else "")
                r.call("FLUSHALL")
                apply_text = REFERENCE_APPLY if ref_too else texts["HOT_LUA_APPLY"]
                try:
                    case(Scripts(r, texts, apply_text), r)
                    print("PASS %s" % name)
                    passed += 1
                except TestFailure as e:
                    print("FAIL %s: %s" % (name, e))
                    failed += 1
        r.call("FLUSHALL")
        try:
            applied = differential(texts, r)
            print("PASS differential: %d steps (seed %d), %d applies landed, "
                  "same replies and state as the reference" % (STEPS, SEED, applied))
            passed += 1
        except TestFailure as e:
            print("FAIL differential: %s" % e)
            failed += 1
        ref_us = usec_per_apply(r, texts, REFERENCE_APPLY)
        new_us = usec_per_apply(r, texts, texts["HOT_LUA_APPLY"])
        print("redis time per apply on full windows: %.1f us (reference %.1f us)"
              % (new_us, ref_us))
    except Exception:
        traceback.print_exc()
        failed += 1
    finally:
        if r is not None:
            r.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
