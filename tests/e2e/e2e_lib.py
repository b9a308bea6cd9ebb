"""Shared helpers of the end-to-end suite: they drive the public API of a
running cluster over HTTP (SPEC section 4) and nothing else.

A test file imports this module, registers its tests with @test, and ends
with run_tests(). The cluster is named by MESSENGER_CLUSTER_ENV, a file of
KEY=VALUE lines holding at least MESSENGER_URL (the public base URL) and
MESSENGER_JWT_SECRET (to mint user tokens the way a login service would).

Every run uses fresh random user ids, so runs never see each other's data.
Every HTTP call has a timeout and every loop a bound, so a broken cluster
makes tests fail, never hang. Python standard library only.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import select
import socket
import sys
import threading
import time
import traceback
import urllib.parse

HTTP_TIMEOUT_S = 10.0
USER_ID_MIN = 10**9
USER_ID_MAX = 2**53 - 1
PAGE_SIZE_MAX = 100
CONTENT_MAX = 65535
BODY_MAX = 1024 * 1024
SNIPPET_MAX = 100
# Upper bound on pages walked by any paging loop: a mailbox of a test is
# at most a few thousand items, so more pages than this means the server
# repeats itself.
PAGES_MAX = 200

_rng = random.SystemRandom()


class TestFailure(Exception):
    """A test's assertion failed; the message is the reason printed."""


# ---------------------------------------------------------------- config


def load_cluster_env():
    """Reads the KEY=VALUE file named by MESSENGER_CLUSTER_ENV, falling back
    to the process environment for each key. Raises TestFailure when the
    two required keys are missing."""
    env = {}
    path = os.environ.get("MESSENGER_CLUSTER_ENV")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("#") or "=" not in line:
                        continue
                    if line.startswith("export "):
                        line = line[len("export "):]
                    key, value = line.split("=", 1)
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                        value = value[1:-1]
                    env[key.strip()] = value
        except OSError as e:
            raise TestFailure("cannot read MESSENGER_CLUSTER_ENV %s: %s" % (path, e))
    for key in ("MESSENGER_URL", "MESSENGER_JWT_SECRET"):
        if key not in env and os.environ.get(key):
            env[key] = os.environ[key]
        if not env.get(key):
            raise TestFailure("%s missing (set MESSENGER_CLUSTER_ENV to a cluster.env file)" % key)
    return env


def read_cluster_env(var):
    """The KEY=VALUE lines of $var/cluster.env as a dict."""
    env = {}
    with open(os.path.join(var, "cluster.env"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v.strip("'\"")
    return env


def run_cluster(var, base_port, *args, extra_env=None, check_rc=True):
    """Runs scripts/cluster ARGS on the cluster kept in var, listening from
    base_port. The cluster makes its own secrets: none leak in from the
    caller. Raises TestFailure when it fails and check_rc is set."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, MESSENGER_VAR=var, MESSENGER_BASE_PORT=str(base_port))
    env.update(extra_env or {})
    env.pop("MESSENGER_INTERNAL_SECRET", None)
    env.pop("MESSENGER_JWT_SECRET", None)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
    r = subprocess.run([os.path.join(root, "scripts", "cluster")] + list(args), env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=180)
    if check_rc and r.returncode != 0:
        raise TestFailure("scripts/cluster %s failed:\n%s" % (" ".join(args),
                                                             r.stdout.decode()[-3000:]))
    return r


def run_with_own_cluster(prefix, start, setup):
    """Main of a suite that needs its own cluster: makes a temporary
    MESSENGER_VAR, start(var) starts the cluster there, setup(var, env)
    prepares the suite from its cluster.env, then the registered tests
    run. The cluster is cleaned whatever happens (start(var, "clean"))."""
    import tempfile
    var = tempfile.mkdtemp(prefix=prefix)
    try:
        start(var, "start")
        setup(var, read_cluster_env(var))
        os.environ["MESSENGER_CLUSTER_ENV"] = os.path.join(var, "cluster.env")
        run_tests()
    except TestFailure as e:
        print("FAIL setup: %s" % e)
        print("0 passed, 1 failed")
        sys.exit(1)
    finally:
        start(var, "clean", check_rc=False)


# ------------------------------------------------------------------- JWT


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_encode(header, payload, secret, signature=None):
    """Builds header.payload.signature. header and payload are dicts (or
    raw bytes, to send malformed JSON); the signature is HS256 with secret
    unless given."""
    def part(x):
        if isinstance(x, (bytes, bytearray)):
            return b64url(bytes(x))
        return b64url(json.dumps(x, separators=(",", ":")).encode())

    signing_input = part(header) + "." + part(payload)
    if signature is None:
        mac = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256)
        signature = b64url(mac.digest())
    return signing_input + "." + signature


def mint(secret, sub, exp_in_s=3600, extra=None):
    """A valid token for user sub (an int, or a raw claim value)."""
    claims = {"sub": str(sub) if isinstance(sub, int) else sub,
              "exp": int(time.time()) + exp_in_s}
    if extra:
        claims.update(extra)
    return jwt_encode({"alg": "HS256", "typ": "JWT"}, claims, secret)


# -------------------------------------------------------- internal calls

INTERNAL_AUTH_HEADER = "X-Internal-Auth"


def internal_auth(secret, method, target, body=None, ts=None):
    """The X-Internal-Auth value of a call between services
    (docs/internal-api.md, common/iauth.h): "v1 <ts> <hex mac>", the MAC
    HMAC-SHA256 under secret of "v1\\n<METHOD>\\n<target>\\n<ts>\\n<hex
    SHA-256 of the body>". target is the path and query exactly as sent;
    body the bytes sent (None or str accepted); ts defaults to now."""
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode("utf-8")
    ts = int(time.time()) if ts is None else int(ts)
    canonical = "v1\n%s\n%s\n%d\n%s" % (method, target, ts, hashlib.sha256(body).hexdigest())
    mac = hmac.new(secret.encode(), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return "v1 %d %s" % (ts, mac)


def internal_secret(env=None):
    """MESSENGER_INTERNAL_SECRET of the cluster (its cluster.env, named by
    MESSENGER_CLUSTER_ENV, or the environment)."""
    secret = (env or load_cluster_env()).get("MESSENGER_INTERNAL_SECRET") or \
        os.environ.get("MESSENGER_INTERNAL_SECRET")
    if not secret:
        raise TestFailure("MESSENGER_INTERNAL_SECRET missing from the cluster env")
    return secret


def signed_call(secret, method, url, headers=None, body=None, timeout=10):
    """An internal call (router, cache node, storage) signed with the
    cluster's internal secret. body is JSON-encoded when given. Returns
    (status, decoded JSON or None); (0, None) when nothing answered."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    u = urllib.parse.urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    headers = dict(headers or {})
    headers[INTERNAL_AUTH_HEADER] = internal_auth(secret, method, target, data)
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, OSError):
        return 0, None


def metric_total(base_url, series):
    """Sum of every sample of series in base_url's /metrics."""
    import urllib.request
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(series + " ") or line.startswith(series + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def owner_index(secret, cache_urls, user, epoch):
    """Index (0-based) in cache_urls of the cache node that owns user at
    the ring's epoch: the only one that answers 200 (the others refuse
    with 421). Raises TestFailure when none does."""
    for i, url in enumerate(cache_urls):
        status, _ = signed_call(secret, "GET", "%s/internal/users/%d/conversations" % (url, user),
                                headers={"X-Ring-Epoch": str(epoch)})
        if status == 200:
            return i
    raise TestFailure("no cache node owns user %d" % user)


MASK64 = (1 << 64) - 1


def ring_hash_user(user_id):
    """common/ring.c: FNV-1a 64 of the decimal id, splitmix64 finaliser."""
    h = 14695981039346656037
    for b in str(user_id).encode():
        h ^= b
        h = (h * 1099511628211) & MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
    return h ^ (h >> 31)


def conversation_id(a, b):
    return "%d_%d" % (min(a, b), max(a, b))


# ---------------------------------------------------------- one process

SERVICE_ENV_PREFIXES = ("MESSENGER_", "GATEWAY_", "STORAGE_", "ROUTER_", "CACHE_")


def start_binary(build, name, env, asan_options="detect_leaks=0:abort_on_error=1"):
    """Starts build/bin/name alone, with env's service variables and none
    of ours (MESSENGER_*, GATEWAY_*, ...); returns the process and the
    temporary file that takes its output (stop_binary reads it)."""
    import subprocess
    import tempfile
    log = tempfile.TemporaryFile()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
    full_env.update(env)
    full_env.setdefault("ASAN_OPTIONS", asan_options)
    proc = subprocess.Popen([os.path.join(build, "bin", name)], env=full_env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, log


def stop_binary(proc, log, grace_s=15):
    """SIGTERM by PID, SIGKILL after grace_s; returns the process's output.
    proc.returncode then says how it ended."""
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.seek(0)
    out = log.read().decode("utf-8", "replace")
    log.close()
    return out


# ------------------------------------------------------------------ HTTP


class Response:
    def __init__(self, method, path, req_body, status, headers, body, elapsed):
        self.method = method
        self.path = path
        self.req_body = req_body
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.elapsed = elapsed
        self._json = None
        self._json_done = False

    @property
    def json(self):
        if not self._json_done:
            self._json_done = True
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self._json = None
        return self._json

    def describe(self, limit=400):
        """One line naming the request and the answer, for failure reasons."""
        rb = self.req_body
        if isinstance(rb, str):
            rb = rb.encode()
        req = ""
        if rb:
            req = " body=%s" % _excerpt(rb, 200)
        return "%s %s%s -> %s %s %s" % (
            self.method, self.path, req, self.status,
            self.headers.get("content-type", "-"), _excerpt(self.body, limit))


def _excerpt(data, limit):
    text = data[:limit].decode("utf-8", "backslashreplace")
    if len(data) > limit:
        text += "...(%d bytes)" % len(data)
    return repr(text)


class _NoDelayConnection(http.client.HTTPConnection):
    """Disables Nagle, so a request written in two segments is not held
    back waiting for a delayed ACK (latency the suite should not add)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpClient:
    """Keep-alive HTTP/1.1 client, one connection per thread. A request on
    a reused connection that the server had already closed is retried once
    on a fresh one (nothing was processed then); fresh=True never reuses."""

    def __init__(self, base_url):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise TestFailure("MESSENGER_URL must be http://host:port, got %r" % base_url)
        self.host = u.hostname
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self._local = threading.local()

    def _new_conn(self):
        return _NoDelayConnection(self.host, self.port, timeout=HTTP_TIMEOUT_S)

    def request(self, method, path, body=None, headers=None, fresh=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = {"Host": "%s:%d" % (self.host, self.port)}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        full = self.prefix + path
        for attempt in range(2):
            reused = False
            if fresh:
                conn = self._new_conn()
            else:
                conn = getattr(self._local, "conn", None)
                reused = conn is not None
                if conn is None:
                    conn = self._new_conn()
                    self._local.conn = conn
            start = time.monotonic()
            try:
                conn.request(method, full, body=body, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                elapsed = time.monotonic() - start
                resp_headers = {k.lower(): v for k, v in r.getheaders()}
                if fresh or r.will_close:
                    conn.close()
                    if not fresh:
                        self._local.conn = None
                return Response(method, path, body, r.status, resp_headers, data, elapsed)
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, http.client.BadStatusLine) as e:
                conn.close()
                if not fresh:
                    self._local.conn = None
                if reused and attempt == 0 and time.monotonic() - start < 1.0:
                    continue
                raise TestFailure("%s %s: connection error %s: %s" % (method, path, type(e).__name__, e))
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if not fresh:
                    self._local.conn = None
                raise TestFailure("%s %s: %s: %s" % (method, path, type(e).__name__, e))
        raise TestFailure("%s %s: unreachable" % (method, path))


# ------------------------------------------------------------------- API


class Api:
    """The public API with tokens minted on demand per user."""

    def __init__(self, env):
        self.env = env
        self.url = env["MESSENGER_URL"]
        self.secret = env["MESSENGER_JWT_SECRET"]
        self.http = HttpClient(self.url)
        self._tokens = {}
        self._lock = threading.Lock()

    def gateways(self):
        """An Api per gateway named in GATEWAY_URLS (the cluster's own
        layout, optional), sharing this one's tokens; [self] without it."""
        urls = [u for u in self.env.get("GATEWAY_URLS", "").split(",") if u]
        out = []
        for u in urls:
            env = dict(self.env)
            env["MESSENGER_URL"] = u
            g = Api(env)
            g._tokens, g._lock = self._tokens, self._lock
            out.append(g)
        return out or [self]

    def token(self, user):
        with self._lock:
            t = self._tokens.get(user)
            if t is None:
                t = mint(self.secret, user)
                self._tokens[user] = t
            return t

    def auth(self, user):
        return {"Authorization": "Bearer " + self.token(user)}

    def call(self, method, path, user=None, body=None, headers=None, token=None, fresh=False):
        """user: act with that user's token; token: use this raw token;
        neither: no Authorization header."""
        h = {}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        elif user is not None:
            h.update(self.auth(user))
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False)
        resp = self.http.request(method, path, body=body, headers=h, fresh=fresh)
        openapi_check(resp)
        return resp

    def send(self, sender, recipient, content, cmid=None, as_user=None, fresh=False):
        """POST /v1/messages as as_user (default the sender)."""
        if cmid is None:
            cmid = new_cmid()
        body = {"sender_id": sender, "recipient_id": recipient,
                "content": content, "client_message_id": cmid}
        return self.call("POST", "/v1/messages", user=as_user if as_user is not None else sender,
                         body=body, fresh=fresh)

    def send_ok(self, sender, recipient, content, cmid=None):
        """A send that must answer 201; returns the message."""
        r = self.send(sender, recipient, content, cmid)
        expect_status(r, 201)
        return r.json

    def convs(self, user, as_user=None, query=None, raw_query=None):
        return self.call("GET", conv_path(user, query, raw_query),
                         user=as_user if as_user is not None else user)

    def msgs(self, user, cid, as_user=None, query=None, raw_query=None):
        return self.call("GET", msgs_path(user, cid, query, raw_query),
                         user=as_user if as_user is not None else user)

    def convs_ok(self, user, query=None):
        r = self.convs(user, query=query)
        expect_status(r, 200)
        check_list_shape(r, "conversations")
        return r.json

    def msgs_ok(self, user, cid, query=None):
        r = self.msgs(user, cid, query=query)
        expect_status(r, 200)
        check_list_shape(r, "messages")
        return r.json

    def all_convs(self, user, page_size=PAGE_SIZE_MAX):
        """Every conversation of user, walking pages until has_more is
        false; fails on a repeated item."""
        return self._walk(lambda p: self.convs_ok(user, {"page_size": page_size, "page": p}),
                          "conversations", "conversation_id")

    def all_msgs(self, user, cid, page_size=PAGE_SIZE_MAX):
        return self._walk(lambda p: self.msgs_ok(user, cid, {"page_size": page_size, "page": p}),
                          "messages", "message_id")

    def _walk(self, fetch, key, id_key):
        items, seen = [], set()
        for page in range(PAGES_MAX):
            j = fetch(page)
            for it in j[key]:
                if it[id_key] in seen:
                    raise TestFailure("%s %s repeated on page %d" % (id_key, it[id_key], page))
                seen.add(it[id_key])
                items.append(it)
            if not j["has_more"]:
                return items
            if not j[key]:
                raise TestFailure("page %d empty but has_more true" % page)
        raise TestFailure("more than %d pages" % PAGES_MAX)


def _query_string(query, raw_query):
    if raw_query is not None:
        return "?" + raw_query
    if query:
        return "?" + urllib.parse.urlencode(query)
    return ""


def conv_path(user, query=None, raw_query=None):
    return "/v1/users/%s/conversations%s" % (user, _query_string(query, raw_query))


def msgs_path(user, cid, query=None, raw_query=None):
    return "/v1/users/%s/conversations/%s/messages%s" % (
        user, urllib.parse.quote(str(cid), safe=""), _query_string(query, raw_query))


# ----------------------------------------------------------- test values


def new_user():
    return _rng.randint(USER_ID_MIN, USER_ID_MAX)


def new_users(n):
    users = set()
    while len(users) < n:
        users.add(new_user())
    return sorted(users, key=lambda _: _rng.random())


def new_cmid(prefix="c"):
    return "%s-%016x" % (prefix, _rng.getrandbits(64))


def now_ms():
    return int(time.time() * 1000)


# ------------------------------------------------------------ assertions


def check(cond, reason):
    if not cond:
        raise TestFailure(reason)


def fail(reason):
    raise TestFailure(reason)


def expect_status(resp, *codes):
    if resp.status not in codes:
        raise TestFailure("expected %s, got: %s" % ("/".join(map(str, codes)), resp.describe()))
    if 200 <= resp.status < 300:
        ct = resp.headers.get("content-type", "")
        if not ct.startswith("application/json"):
            raise TestFailure("success without application/json content type: %s" % resp.describe())
        if not isinstance(resp.json, dict):
            raise TestFailure("success body is not a JSON object: %s" % resp.describe())
    else:
        check_problem(resp)
    return resp


def check_problem(resp):
    """An error answer is RFC 9457 problem+json with type, title, status
    (equal to the HTTP status) and detail."""
    ct = resp.headers.get("content-type", "")
    if not ct.startswith("application/problem+json"):
        raise TestFailure("error without application/problem+json: %s" % resp.describe())
    j = resp.json
    if not isinstance(j, dict):
        raise TestFailure("problem body is not a JSON object: %s" % resp.describe())
    for field in ("type", "title", "detail"):
        if not isinstance(j.get(field), str):
            raise TestFailure("problem without string %r: %s" % (field, resp.describe()))
    if j.get("status") != resp.status or isinstance(j.get("status"), bool):
        raise TestFailure("problem status %r != HTTP %d: %s" % (j.get("status"), resp.status, resp.describe()))


def is_decimal_id(s):
    return isinstance(s, str) and s.isdigit() and s.isascii() and s[0] != "0" and int(s) < 2**63


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


MESSAGE_FIELDS = {"message_id", "conversation_id", "sender_id", "recipient_id",
                  "content", "client_message_id", "sent_at"}
CONVERSATION_FIELDS = {"conversation_id", "participants", "peer_id", "snippet",
                       "last_message_id", "last_updated_at"}


def check_message_shape(m, where="message"):
    check(isinstance(m, dict), "%s is not an object: %r" % (where, m))
    missing = MESSAGE_FIELDS - set(m)
    check(not missing, "%s lacks %s: %r" % (where, sorted(missing), m))
    check(is_decimal_id(m["message_id"]), "%s message_id not a decimal string: %r" % (where, m["message_id"]))
    check(isinstance(m["conversation_id"], str) and m["conversation_id"],
          "%s conversation_id not a string: %r" % (where, m["conversation_id"]))
    for f in ("sender_id", "recipient_id", "sent_at"):
        check(is_int(m[f]), "%s %s not an integer: %r" % (where, f, m[f]))
    check(isinstance(m["content"], str), "%s content not a string" % where)
    check(isinstance(m["client_message_id"], str), "%s client_message_id not a string" % where)


def check_conversation_shape(c, owner=None, where="conversation"):
    check(isinstance(c, dict), "%s is not an object: %r" % (where, c))
    missing = CONVERSATION_FIELDS - set(c)
    check(not missing, "%s lacks %s: %r" % (where, sorted(missing), c))
    p = c["participants"]
    check(isinstance(p, list) and len(p) == 2 and all(is_int(x) for x in p) and p[0] != p[1],
          "%s participants not two distinct ints: %r" % (where, p))
    check(is_int(c["peer_id"]) and c["peer_id"] in p, "%s peer_id not a participant: %r" % (where, c))
    if owner is not None:
        check(owner in p and c["peer_id"] != owner,
              "%s of user %d: participants %r peer %r" % (where, owner, p, c["peer_id"]))
    check(is_decimal_id(c["last_message_id"]), "%s last_message_id not a decimal string: %r" % (where, c))
    check(is_int(c["last_updated_at"]), "%s last_updated_at not an int: %r" % (where, c))
    check(isinstance(c["snippet"], str), "%s snippet not a string" % where)
    check(len(c["snippet"]) <= SNIPPET_MAX, "%s snippet has %d code points" % (where, len(c["snippet"])))


def check_list_shape(resp, key):
    j = resp.json
    for f, typ in ((key, list), ("is_delta_update", bool), ("sync_token", str), ("has_more", bool)):
        if not isinstance(j.get(f), typ):
            raise TestFailure("list answer field %r missing or not %s: %s" % (f, typ.__name__, resp.describe()))
    tok = j["sync_token"]
    check(tok and all(ch.isalnum() or ch in "-_.~" for ch in tok) and tok.isascii(),
          "sync_token not URL-safe: %r" % tok)
    if j["is_delta_update"]:
        check(not j["has_more"], "delta answer with has_more true: %s" % resp.describe())
    for i, it in enumerate(j[key]):
        if key == "messages":
            check_message_shape(it, "messages[%d]" % i)
        else:
            check_conversation_shape(it, where="conversations[%d]" % i)
    ids = [int(it["message_id" if key == "messages" else "last_message_id"]) for it in j[key]]
    check(all(a > b for a, b in zip(ids, ids[1:])),
          "%s not strictly newest first by id: %s" % (key, ids))


def snippet_of(content):
    return content[:SNIPPET_MAX]


# --------------------------------------------------------------- runner

_tests = []
_api = None


def test(fn):
    """Registers fn(api) as a test, run in definition order."""
    _tests.append(fn)
    return fn


def api():
    return _api


def run_tests():
    """Runs the registered tests (or those named on the command line),
    prints PASS/FAIL per test and the summary line, exits 1 on failure."""
    global _api
    passed = failed = 0
    try:
        env = load_cluster_env()
        _api = Api(env)
    except TestFailure as e:
        print("FAIL setup: %s" % e)
        print("0 passed, 1 failed")
        sys.stdout.flush()
        sys.exit(1)
    selected = sys.argv[1:]
    for fn in _tests:
        if selected and fn.__name__ not in selected:
            continue
        start = time.monotonic()
        try:
            fn(_api)
            passed += 1
            print("PASS %s (%.2fs)" % (fn.__name__, time.monotonic() - start))
        except TestFailure as e:
            failed += 1
            print("FAIL %s: %s" % (fn.__name__, e))
        except Exception as e:  # a bug in the test or an unexpected answer
            failed += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            print("FAIL %s: %s: %s (at %s:%d)" % (fn.__name__, type(e).__name__, e,
                                                 os.path.basename(tb.filename), tb.lineno))
        sys.stdout.flush()
    if _openapi["checked"]:
        print("openapi: %d answers valid against docs/openapi.yaml" % _openapi["checked"])
    for route in sorted(_openapi["undocumented"]):
        print("openapi: route not in docs/openapi.yaml: %s" % route)
    print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------- OpenAPI
#
# Every answer of the public API that Api.call receives is checked
# against docs/openapi.yaml: the route and status must be documented,
# the content type must be one the document lists for that status, the
# body must match its schema and X-Request-Id must be present. The YAML
# is read once with js-yaml from deploy/node_modules (scripts/install-deps
# runs npm ci there); schemas are checked by the small validator below,
# which knows the JSON Schema keywords the document uses and refuses any
# other, so a new keyword cannot be silently ignored. A route missing
# from the document is reported at the end of the run (a new route gets
# documented), not failed.

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENAPI_PATH = os.path.join(_ROOT, "docs", "openapi.yaml")
_JS_YAML = os.path.join(_ROOT, "deploy", "node_modules", "js-yaml")
_openapi = {"doc": None, "routes": None, "checked": 0, "undocumented": set(),
            "lock": threading.Lock()}
_SCHEMA_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum",
                    "const", "pattern", "minLength", "maxLength", "minimum", "maximum",
                    "minItems", "maxItems", "$ref", "description", "default"}


def _openapi_load():
    """The document as a dict, and its routes as (method, regex, op)."""
    import re
    import subprocess
    with _openapi["lock"]:
        if _openapi["doc"] is not None:
            return _openapi["doc"], _openapi["routes"]
        script = ("const y=require(process.argv[1]);const fs=require('fs');"
                  "process.stdout.write(JSON.stringify(y.load(fs.readFileSync(process.argv[2],'utf8'))))")
        try:
            r = subprocess.run(["node", "-e", script, _JS_YAML, OPENAPI_PATH], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TestFailure("cannot run node to read docs/openapi.yaml: %s" % e)
        if r.returncode != 0:
            raise TestFailure("cannot read docs/openapi.yaml (run npm ci in deploy/): %s" %
                              r.stderr.decode()[-500:])
        doc = json.loads(r.stdout)
        routes = []
        for template, item in doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            for method, op in item.items():
                if method in ("get", "post", "put", "delete", "patch"):
                    routes.append((method.upper(), rx, template, op))
        _openapi["doc"], _openapi["routes"] = doc, routes
        return doc, routes


def _resolve(doc, node):
    for _ in range(20):
        if not isinstance(node, dict) or "$ref" not in node:
            return node
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise TestFailure("openapi: only local $ref is supported: %s" % ref)
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    raise TestFailure("openapi: $ref chain too deep")


def _type_ok(value, typ):
    if typ == "object":
        return isinstance(value, dict)
    if typ == "array":
        return isinstance(value, list)
    if typ == "string":
        return isinstance(value, str)
    if typ == "integer":
        return is_int(value)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "null":
        return value is None
    raise TestFailure("openapi: unknown type %r" % typ)


def schema_errors(doc, schema, value, where="body"):
    """The ways value breaks schema (a list of strings; empty when valid)."""
    import re
    schema = _resolve(doc, schema)
    unknown = set(schema) - _SCHEMA_KEYWORDS
    if unknown:
        raise TestFailure("openapi: the validator does not know %s (at %s)" % (sorted(unknown), where))
    errs = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            return ["%s: %s is not of type %s" % (where, _short(value), schema["type"])]
    if "const" in schema and value != schema["const"]:
        errs.append("%s: %s is not %r" % (where, _short(value), schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %s not one of %r" % (where, _short(value), schema["enum"]))
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append("%s: %s does not match %s" % (where, _short(value), schema["pattern"]))
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errs.append("%s: length %d out of bounds" % (where, len(value)))
    if is_int(value) or isinstance(value, float):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append("%s: %r below %r" % (where, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errs.append("%s: %r above %r" % (where, value, schema["maximum"]))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errs.append("%s: %d items out of bounds" % (where, len(value)))
        if "items" in schema:
            for i, item in enumerate(value):
                errs += schema_errors(doc, schema["items"], item, "%s[%d]" % (where, i))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errs.append("%s: lacks %r" % (where, name))
        extra = schema.get("additionalProperties", True)
        for name, v in value.items():
            if name in props:
                errs += schema_errors(doc, props[name], v, "%s.%s" % (where, name))
            elif extra is False:
                errs.append("%s: unexpected property %r" % (where, name))
            elif isinstance(extra, dict):
                errs += schema_errors(doc, extra, v, "%s.%s" % (where, name))
    return errs


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def openapi_check(resp):
    """Raises TestFailure when resp (an answer of the public API) does
    not match docs/openapi.yaml."""
    doc, routes = _openapi_load()
    path = resp.path.split("?", 1)[0]
    matches = [(m, rx, t, op) for m, rx, t, op in routes if rx.match(path)]
    op = next((o for m, rx, t, o in matches if m == resp.method), None)
    what = "%s %s -> %d" % (resp.method, path, resp.status)
    if op is None:
        if matches and resp.status != 405:
            raise TestFailure("openapi: %s, but the path has no %s operation" % (what, resp.method))
        if not matches and resp.status != 404:
            with _openapi["lock"]:
                _openapi["undocumented"].add("%s %s" % (resp.method, path))
            return
        spec = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    else:
        spec = op["responses"].get(str(resp.status)) or op["responses"].get("default")
        if spec is None:
            raise TestFailure("openapi: status not documented: %s" % resp.describe())
        spec = _resolve(doc, spec)
    rid = resp.headers.get("x-request-id")
    if not rid:
        raise TestFailure("openapi: answer without X-Request-Id: %s" % resp.describe())
    content = spec.get("content")
    if content:
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        media = content.get(ctype)
        if media is None:
            raise TestFailure("openapi: content type %r not documented (%s) for %s" % (
                ctype, sorted(content), resp.describe()))
        if ctype.endswith("json"):
            if resp.json is None:
                raise TestFailure("openapi: body is not JSON: %s" % resp.describe())
            errs = schema_errors(doc, media.get("schema", {}), resp.json)
            if errs:
                raise TestFailure("openapi: %s: %s" % ("; ".join(errs[:5]), resp.describe()))
    with _openapi["lock"]:
        _openapi["checked"] += 1


# ---------------------------------------------------------- raw sockets


def raw_exchange(api_, head, body_chunks=(), wait_s=HTTP_TIMEOUT_S):
    """Sends raw request bytes (head, then chunks) on a new socket and
    returns (status, headers, body) of the answer, or raises TestFailure.
    Stops sending as soon as an answer starts arriving, so a server that
    answers early (413 before reading a body) is seen even if it then
    closes the connection."""
    h = api_.http
    deadline = time.monotonic() + wait_s
    s = socket.create_connection((h.host, h.port), timeout=HTTP_TIMEOUT_S)
    got = b""
    try:
        s.setblocking(False)
        answered = False
        for chunk in [head] + list(body_chunks):
            view = memoryview(chunk)
            while view and not answered and time.monotonic() < deadline:
                readable, writable, _ = select.select([s], [s], [], deadline - time.monotonic())
                if readable:
                    answered = True
                    break
                if writable:
                    try:
                        view = view[s.send(view):]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        answered = True
                        break
            if answered:
                break
        while time.monotonic() < deadline:
            parsed = _parse_raw_response(got)
            if parsed is not None:
                return parsed
            readable, _, _ = select.select([s], [], [], deadline - time.monotonic())
            if not readable:
                break
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                break
            if not data:
                break
            got += data
        parsed = _parse_raw_response(got)
        if parsed is None:
            raise TestFailure("no complete HTTP answer within %.0fs (got %r)" % (wait_s, got[:200]))
        return parsed
    finally:
        s.close()


def _parse_raw_response(data):
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        return None
    head = data[:sep].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise TestFailure("bad status line %r" % head[0])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = data[sep + 4:]
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(body) < n:
            return None
        body = body[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        decoded = _dechunk(body)
        if decoded is None:
            return None
        body = decoded
    return int(parts[1]), headers, body


def _dechunk(data):
    out = b""
    pos = 0
    for _ in range(100000):
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(data[pos:eol].split(b";")[0] or b"0", 16)
        if size == 0:
            return out
        if len(data) < eol + 2 + size + 2:
            return None
        out += data[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2
    return None


def raw_problem(status, headers, body, want, what):
    """Checks a raw answer is a problem+json with status want."""
    r = Response("RAW", what, None, status, headers, body, 0.0)
    expect_status(r, want)
    return r
