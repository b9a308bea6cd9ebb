"""The chaos driver's handle on its cluster: scripts/cluster verbs, the
router's ring, and the cache nodes' metrics and ownership answers.

Verbs are discovered from scripts/cluster's usage text, so a step that
needs a verb the script does not have (yet) is reported as skipped
instead of failing or, worse, passing. Internal calls (the ring, the
ownership probes) are signed with X-Internal-Auth as services sign
theirs (e2e_lib.internal_auth).
"""

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import e2e_lib
from ring_model import Ring

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
INTERNAL_TIMEOUT_S = 3.0


class Cluster:
    def __init__(self, var, base_port, extra_env=None):
        self.var = var
        self.base_port = base_port
        self.extra_env = dict(extra_env or {})
        self.env = {}
        self.secret = None
        self._verbs = None

    # ---------------------------------------------------------- the script

    def run(self, *args, check_rc=True):
        """scripts/cluster ARGS; returns (rc, output)."""
        r = e2e_lib.run_cluster(self.var, self.base_port, *args, extra_env=self.extra_env,
                                check_rc=check_rc)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def verbs(self):
        """The verbs scripts/cluster's usage names (read once)."""
        if self._verbs is None:
            r = subprocess.run([CLUSTER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30,
                               env=dict(os.environ, MESSENGER_VAR=self.var))
            text = r.stdout.decode("utf-8", "replace")
            self._verbs = set(re.findall(r"[a-z][a-z-]+", text))
        return self._verbs

    def has(self, verb):
        return verb in self.verbs()

    def start(self):
        self.run("start")
        self.reload_env()

    def reload_env(self):
        self.env = e2e_lib.read_cluster_env(self.var)
        self.secret = self.env["MESSENGER_INTERNAL_SECRET"]
        return self.env

    def clean(self):
        return self.run("clean", check_rc=False)

    def names(self):
        """Component names as scripts/cluster status lists them."""
        _, out = self.run("status", check_rc=False)
        names = []
        for line in out.splitlines()[1:]:
            word = line.split(" ", 1)[0]
            if re.fullmatch(r"[a-z]+(-[0-9]+)?", word or ""):
                names.append(word)
        return names

    def down(self):
        """Names status reports as not up and ready."""
        _, out = self.run("status", check_rc=False)
        bad = []
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 4 and re.fullmatch(r"[a-z]+(-[0-9]+)?", cols[0]) and \
                    (cols[2] != "up" or cols[3] != "yes"):
                bad.append(cols[0])
        return bad

    def leader(self):
        """The leading router's name (verb leader), or None."""
        rc, out = self.run("leader", check_rc=False)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if rc != 0 or not lines:
            return None
        return lines[-1].split()[-1]

    # ----------------------------------------------------- internal calls

    def signed(self, method, url, body=None, headers=None, timeout=INTERNAL_TIMEOUT_S):
        """An internal call signed with the cluster's secret. Returns
        (status, body bytes), or (None, b"") when nothing answered."""
        data = json.dumps(body).encode() if body is not None else None
        u = urllib.parse.urlsplit(url)
        target = u.path + ("?" + u.query if u.query else "")
        h = dict(headers or {})
        h[e2e_lib.INTERNAL_AUTH_HEADER] = e2e_lib.internal_auth(self.secret, method, target, data)
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, urllib.error.URLError):
            return None, b""

    def router_urls(self):
        urls = [u for u in self.env.get("ROUTER_URLS", "").split(",") if u]
        if self.env.get("ROUTER_URL"):
            urls.append(self.env["ROUTER_URL"])
        return list(dict.fromkeys(urls))

    def ring(self):
        """The newest ring any router publishes, or None."""
        best = None
        for url in self.router_urls():
            status, body = self.signed("GET", url + "/internal/ring")
            if status != 200:
                continue
            try:
                r = Ring(body)
            except (ValueError, KeyError, TypeError):
                continue
            if best is None or r.epoch > best.epoch:
                best = r
        return best

    def wait_ring(self, pred, timeout_s, poll_s=0.05):
        """Polls the ring until pred(ring) holds; returns (ring, seconds) or
        (None, timeout_s)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            r = self.ring()
            if r is not None and pred(r):
                return r, time.monotonic() - start
            time.sleep(poll_s)
        return None, timeout_s

    def probe_owner(self, ring, user):
        """Which nodes of ring serve user at its epoch (the cache nodes'
        fencing answer: 200 for the owner, 421 elsewhere)."""
        return [n for n, s in self.probe_statuses(ring, user).items() if s == 200]

    def probe_statuses(self, ring, user):
        """name -> status of a read of user at ring's epoch on each node."""
        out = {}
        for name in ring.active:
            url = ring.url_of(name)
            status, _ = self.signed("GET", "%s/internal/users/%d/conversations" % (url, user),
                                     headers={"X-Ring-Epoch": str(ring.epoch)})
            out[name] = status
        return out

    def metrics(self, url):
        """name -> summed value of every sample of that name, or None."""
        try:
            with urllib.request.urlopen(url + "/metrics", timeout=INTERNAL_TIMEOUT_S) as r:
                text = r.read().decode("utf-8", "replace")
        except (OSError, urllib.error.URLError):
            return None
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name = re.split(r"[{ ]", line, 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
        return out
