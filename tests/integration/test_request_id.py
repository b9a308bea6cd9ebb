#!/usr/bin/env python3
"""Integration: one request id follows a request through every service,
and every service logs one JSON object per line (README.md, Operations).

Starts its own cluster with scripts/cluster (temporary MESSENGER_VAR,
MESSENGER_BASE_PORT=21000 unless MESSENGER_REQID_TEST_BASE_PORT says
otherwise) and proves, through the load balancer (nginx):

- an X-Request-Id sent by the client comes back in the response and is
  in the JSON request lines of the gateway, of the sender's and the
  recipient's cache nodes and of storage (their logs, var/log/*.log),
  each line with time, level, service, request id, route, status and
  duration;
- without one (or with one that is not 1-63 characters of
  [A-Za-z0-9._-]) the gateway makes one, returns it, and the services
  behind it log that one;
- every line every service wrote is a JSON object with ts, level,
  service and msg.

The cluster is removed at the end, on failure too. Python standard
library only.

Run: python3 tests/integration/test_request_id.py
"""

import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2e_lib  # noqa: E402
from e2e_lib import check, expect_status, fail, new_user, run_tests, test  # noqa: E402

BASE_PORT = int(os.environ.get("MESSENGER_REQID_TEST_BASE_PORT", "21000"))
# A log line is written when the reply is queued; give the last one this
# long to reach the file.
LOG_WAIT_S = 5
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
REQUEST_FIELDS = {"ts": str, "level": str, "service": str, "msg": str, "request_id": str,
                  "route": str, "status": int, "duration_ms": (int, float)}

# The services' logs; PostgreSQL, Redis, nginx and the migration script
# write their own formats.
SERVICES = ("gateway", "cache", "storage", "router")

VAR = None


def cluster(var, *args, check_rc=True):
    return e2e_lib.run_cluster(var, BASE_PORT, *args, check_rc=check_rc)


def log_files():
    d = os.path.join(VAR, "log")
    return {name[:-4]: os.path.join(d, name) for name in sorted(os.listdir(d))
            if name.endswith(".log") and name[:-4].split("-")[0] in SERVICES}


def json_lines(path):
    """The JSON objects of a service log; other lines (a sanitizer's
    report would be one) are returned apart."""
    objs, other = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            (objs if isinstance(obj, dict) else other).append(obj if isinstance(obj, dict) else line)
    return objs, other


def storage_routes(found):
    return {line["route"] for ls in found.values() for line in ls if line["service"] == "storage"}


def lines_with(request_id, want_components, complete=lambda found: True):
    """{component: [request log lines with request_id]}, waiting until
    every component in want_components has one and complete(found) holds
    (request lines are buffered up to MESSENGER_LOG_FLUSH_MS, each
    process's on its own)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        found = {}
        for comp, path in log_files().items():
            objs, _ = json_lines(path)
            hits = [o for o in objs if o.get("request_id") == request_id and o.get("msg") == "request"]
            if hits:
                found[comp] = hits
        kinds = {c.split("-")[0] for c in found}
        if (want_components <= kinds and complete(found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def check_request_line(line, where):
    for field, typ in REQUEST_FIELDS.items():
        check(isinstance(line.get(field), typ) and not isinstance(line.get(field), bool),
              "%s: request line lacks %s of type %s: %r" % (where, field, typ, line))
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["ts"]),
          "%s: ts not RFC 3339 UTC with milliseconds: %r" % (where, line["ts"]))
    check(line["level"] in ("debug", "info", "warn", "error"), "%s: level %r" % (where, line["level"]))
    check(line["duration_ms"] >= 0, "%s: negative duration" % where)


def follow(request_id, resp, complete=lambda found: True):
    """Checks that request_id is in the logs of gateway, cache and storage
    and that each of those lines is a complete request line."""
    found = lines_with(request_id, {"gateway", "cache", "storage"}, complete)
    kinds = {c.split("-")[0] for c in found}
    check({"gateway", "cache", "storage"} <= kinds,
          "request id %s logged only by %s" % (request_id, sorted(found)))
    for comp, lines in found.items():
        for line in lines:
            check_request_line(line, comp)
            check(line["service"] == comp.split("-")[0],
                  "%s logged service %r" % (comp, line["service"]))
    gw = [line for c, ls in found.items() if c.startswith("gateway") for line in ls]
    check(len(gw) == 1 and gw[0]["route"] == "send" and gw[0]["status"] == resp.status,
          "gateway request lines for %s: %r" % (request_id, gw))
    return found


@test
def test_client_request_id_follows_a_send_through_every_service(api):
    rid = "trace-%016x" % new_user()
    a, b = new_user(), new_user()
    body = {"sender_id": a, "recipient_id": b, "content": "trace me",
            "client_message_id": e2e_lib.new_cmid()}
    r = api.call("POST", "/v1/messages", user=a, body=body, headers={"X-Request-Id": rid})
    expect_status(r, 201)
    check(r.headers.get("x-request-id") == rid,
          "response X-Request-Id %r, sent %r" % (r.headers.get("x-request-id"), rid))
    found = follow(rid, r, lambda found: {"send", "deliver"} <= storage_routes(found))
    routes = storage_routes(found)
    check({"send", "deliver"} <= routes, "storage lines for the send lack send/deliver: %r" % routes)


@test
def test_gateway_generates_a_request_id_when_absent_or_unusable(api):
    for sent in (None, "has spaces in it", "x" * 64, "semi;colon"):
        a, b = new_user(), new_user()
        body = {"sender_id": a, "recipient_id": b, "content": "no id",
                "client_message_id": e2e_lib.new_cmid()}
        r = api.call("POST", "/v1/messages", user=a, body=body,
                     headers={"X-Request-Id": sent} if sent else None)
        expect_status(r, 201)
        rid = r.headers.get("x-request-id", "")
        check(GENERATED_ID.match(rid), "sent %r, got X-Request-Id %r" % (sent, rid))
        follow(rid, r)


@test
def test_an_error_answer_carries_the_request_id_too(api):
    rid = "bad-%016x" % new_user()
    r = api.call("GET", "/v1/users/1/conversations", headers={"X-Request-Id": rid})
    expect_status(r, 401)
    check(r.headers.get("x-request-id") == rid, "401 without the request id: %r" % r.headers)
    found = lines_with(rid, {"gateway"})
    lines = [line for c, ls in found.items() for line in ls]
    check(len(lines) == 1 and lines[0]["status"] == 401, "gateway lines for %s: %r" % (rid, lines))


@test
def test_every_service_log_line_is_a_json_object(api):
    files = log_files()
    for kind in ("gateway", "cache", "storage", "router"):
        check(any(c.split("-")[0] == kind for c in files), "no %s log in %s" % (kind, sorted(files)))
    for comp, path in files.items():
        objs, other = json_lines(path)
        check(not other, "%s wrote lines that are not JSON objects: %r" % (comp, other[:3]))
        check(objs, "%s logged nothing" % comp)
        for o in objs:
            for field in ("ts", "level", "service", "msg"):
                check(isinstance(o.get(field), str), "%s line lacks %s: %r" % (comp, field, o))
            check(o["service"] == comp.split("-")[0], "%s line of service %r" % (comp, o["service"]))


def setup(var, env):
    global VAR
    VAR = var


def main():
    e2e_lib.run_with_own_cluster("messenger-reqid-test.", cluster, setup)


if __name__ == "__main__":
    main()
