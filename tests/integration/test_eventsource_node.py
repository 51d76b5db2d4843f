"""An independent client: npm's `eventsource` (WHATWG EventSource for Node)
through nginx, across a restart of ssehub with --history-file (issue 4).

The client (node/es_client.mjs) connects with ?token=, records every `tick`
event's id; a publisher keeps sending while ssehub is stopped (SIGTERM,
--shutdown-spread 500) and a new one is started on the same socket with the
same history file. Publishes that fail while the hub is down (nginx 502, or
503 shutting_down from the stopping hub) are retried until they succeed. The
client must end with every successfully published message it may see exactly
once, in publish order.

Skips only when node or npm is missing; runs `npm ci` itself when
node/node_modules is missing.
"""

import http.client
import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ssehub_harness as h
from conftest import require_program

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "es_client.mjs"
BEFORE_RESTART = 30
TOTAL = 60
USER = "node-1"


@pytest.fixture(scope="module")
def node_client_ready():
    require_program("nginx")
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the EventSource client test (node=%s npm=%s)" % (node, npm))
    if not (NODE_DIR / "node_modules" / "eventsource" / "package.json").exists():
        try:
            r = subprocess.run([npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                               capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail("npm ci --prefix %s did not finish within 180 s" % NODE_DIR)
        assert r.returncode == 0, "npm ci --prefix %s failed (%d):\n%s\n%s" % (
            NODE_DIR, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return node


class NodeClient:
    """node es_client.mjs, its JSON lines read by a thread into a queue."""

    def __init__(self, node, url, events, log_path, limit=55):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([node, str(SCRIPT), url, ",".join(events), str(limit)],
                                     cwd=str(NODE_DIR), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, start_new_session=True)
        self.lines = queue.Queue()
        self.received = 0
        self.connected = []
        self.result = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.log.write(b"stdout: " + raw)
            self.log.flush()
            try:
                obj = json.loads(raw.decode())
            except ValueError:
                continue
            kind = obj.get("kind")
            if kind == "message":
                self.received = obj["n"]
            elif kind == "connected":
                self.connected.append(obj["data"])
            elif kind == "result":
                self.result = obj
            self.lines.put(obj)

    def wait_for(self, predicate, timeout, what):
        h.wait_until(lambda: predicate(self) or (self.proc.poll() is not None and predicate(self)),
                     timeout, interval=0.02, message=what)

    def stop(self, timeout=10):
        if self.result is None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"stop\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        h.wait_until(lambda: self.result is not None or self.proc.poll() is not None, timeout,
                     message="the node client to print its result")
        self._reader.join(timeout)
        assert self.result is not None, "node client exited (%r) without a result:\n%s" % (
            self.proc.poll(), h.tail(self.log_path))
        return self.result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()


def _post_until_accepted(front, token, route, body, deadline):
    """POSTs until the hub answers 200. While it is down nginx answers 502
    (and a stopping hub 503 shutting_down); those are retried. Returns
    (data, failed attempts)."""
    failed = 0
    payload = json.dumps(body).encode()
    while True:
        try:
            conn = http.client.HTTPConnection(front.host, front.port, timeout=3)
            try:
                conn.request("POST", "/api/sse/" + route, body=payload,
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json",
                                      "Connection": "close"})
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
            finally:
                conn.close()
        except OSError as exc:
            status, raw = None, repr(exc).encode()
        if status == 200:
            js = json.loads(raw.decode())
            assert js.get("success") is True, raw
            return js["data"], failed
        retryable = status in (502, 504) or status is None or (status == 503 and b"shutting_down" in raw)
        assert retryable, "%s %r -> %s %r" % (route, body, status, raw[:300])
        failed += 1
        assert time.monotonic() < deadline, "%s %r still failing (%s %r) after %d attempts" % (
            route, body, status, raw[:200], failed)
        time.sleep(0.05)


@pytest.mark.parametrize("downtime", [0.0, 0.7], ids=["quick-restart", "down-0.7s"])
def test_eventsource_client_across_restart(node_client_ready, procs, tokens, workdir, downtime):
    """downtime 0: hub2 starts as soon as hub1 has exited; the client's own
    reconnect (Last-Event-ID header, after the retry it got at shutdown)
    usually lands on hub2. downtime 0.7 s (> the 500 ms spread): the client's
    reconnect gets nginx's 502, EventSource gives up, the script opens a new
    one with ?last_event_id=, and publishes meet 502s for a while."""
    history = workdir / "history.dat"
    hub_args = ["--history-file", str(history), "--shutdown-spread", "500"]
    hub1 = procs.hub(name="hub1", extra_args=hub_args)
    front = procs.front("nginx", hub=hub1)
    admin = tokens.admin()

    url = "http://%s:%d/sse/stream?token=%s" % (front.host, front.port, tokens.user(USER))
    client = NodeClient(node_client_ready, url, ["tick"], workdir / "node-client.log")
    try:
        client.wait_for(lambda c: c.connected, 10, "the node client's connected event")

        published = []          # (id, n) the client may see, in publish order
        failures = []
        progress = {"done": 0}
        errors = []

        def publisher():
            try:
                deadline = time.monotonic() + 40
                for n in range(TOTAL):
                    if n % 3 == 2:
                        body = {"user_id": USER, "event": "tick", "data": {"n": n}}
                        route = "send-to-user"
                    else:
                        body = {"event": "tick", "data": {"n": n}}
                        route = "broadcast"
                    if n % 5 == 0:
                        body["retry"] = 400      # rides along; the client's reconnect delay stays short
                    d, failed = _post_until_accepted(front, admin, route, body, deadline)
                    published.append((d["id"], n))
                    failures.append(failed)
                    # another user's message, same event name: never for this client
                    _, failed = _post_until_accepted(front, admin, "send-to-user",
                                                     {"user_id": "someone-else", "event": "tick",
                                                      "data": {"n": -n}}, deadline)
                    failures.append(failed)
                    progress["done"] = n + 1
                    time.sleep(0.03)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=publisher, name="publisher", daemon=True)
        t.start()
        h.wait_until(lambda: progress["done"] >= BEFORE_RESTART or errors, 20, message="30 publishes")
        assert not errors, errors

        # restart while the publisher keeps going
        restart_at = progress["done"]
        rc = hub1.stop(timeout=5)
        assert rc == 0, "hub1 exit status %r after SIGTERM\n%s" % (rc, h.tail(hub1.log_path))
        assert history.exists(), "no history file after SIGTERM"
        time.sleep(downtime)
        hub2 = procs.hub(name="hub2", listen=hub1.listen, extra_args=hub_args)
        restarted_at = progress["done"]

        t.join(45)
        assert not t.is_alive(), "publisher still running"
        assert not errors, "publisher failed: %r" % errors
        assert restart_at < TOTAL and restarted_at < TOTAL, (
            "publishing had finished before the restart (%d, %d): the test did not test the restart" % (
                restart_at, restarted_at))

        client.wait_for(lambda c: c.received >= len(published), 15,
                        "the node client to receive %d messages" % len(published))
        time.sleep(0.3)   # anything extra (a duplicate) would arrive now
        result = client.stop()
    finally:
        client.kill()

    got = [(m["id"], json.loads(m["data"])["n"]) for m in result["messages"]]
    expected = list(published)
    diag = ("published %d (restart after %d, hub2 up after %d, %d failed publish attempts); client: %d "
            "messages, opens=%d, recreated=%d, connected=%r, errors=%r" % (
                len(expected), restart_at, restarted_at, sum(failures), len(got), result["opens"],
                result["recreated"], result["connected"], result["errors"][:6]))
    ids = [i for i, _ in got]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, "delivered twice: %r; %s" % (dupes, diag)
    missing = [p for p in expected if p not in got]
    assert not missing, "lost across the restart: %r; %s" % (missing, diag)
    extra = [g for g in got if g not in expected]
    assert not extra, "not published for this client: %r; %s" % (extra, diag)
    assert got == expected, "order differs; %s" % diag
    assert len(result["connected"]) >= 2, "the client never reconnected; %s" % diag
    for data in result["connected"][1:]:
        assert data.get("resumed") is True, "a reconnect did not resume; %s" % diag
    assert "resumed" not in result["connected"][0], result["connected"][0]
    if downtime:
        # the scenario really happened: publishes failed while the hub was down
        # and the client had to open a new EventSource
        assert sum(failures) > 0, "no publish failed during %.1fs without a hub; %s" % (downtime, diag)
        assert result["recreated"] >= 1, "the client never hit the downtime; %s" % diag
    assert hub2.process.alive()
