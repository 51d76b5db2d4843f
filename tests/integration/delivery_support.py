"""Helpers shared by the delivery-guarantee tests (issue 4): replay,
limits and metrics, restart, the Node EventSource client.

Import the `front_kind` fixture from here in a test module to run the
conftest `stack` fixture behind nginx only:

    from delivery_support import front_kind  # noqa: F401  (fixture)
"""

import http.client
import json
import re
import threading
import time

import pytest

import ssehub_harness as h
from conftest import require_program

ID_LIMIT = 128
GENERATED_ID = re.compile(r"^[0-9a-f]+-[0-9]+$")


@pytest.fixture
def front_kind():
    """Overrides conftest's nginx/lighttpd parametrization: these suites run
    through a real nginx."""
    require_program("nginx")
    return "nginx"


# --------------------------------------------------------------------------
# events


def expect_event(stream, event, data, msg_id, timeout=3):
    """The next non-ping event on stream is (event, data) with id msg_id."""
    ev = stream.next_event(timeout)
    assert ev is not None, "client %s: no %r event (id %r) within %ss" % (stream.client_id, event, msg_id, timeout)
    assert (ev.type, ev.json(), ev.id) == (event, data, msg_id), (
        "client %s: expected %r id=%r data=%r, got %r" % (stream.client_id, event, msg_id, data, ev))
    return ev


def read_events(stream, count, timeout=5.0, skip=("ping",)):
    """Exactly `count` dispatched non-ping events (AssertionError if fewer
    arrive within timeout or the stream ends first)."""
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < count:
        left = deadline - time.monotonic()
        try:
            ev = stream.next_event(max(0.0, left), skip=skip)
        except h.StreamEnded as exc:
            raise AssertionError("client %s: stream ended after %d of %d events (%s): %r" % (
                stream.client_id, len(got), count, exc, got[-5:]))
        if ev is None:
            raise AssertionError("client %s: %d of %d events within %ss; last %r" % (
                stream.client_id, len(got), count, timeout, got[-5:]))
        got.append(ev)
    return got


def summary(events):
    """[(type, data json, id)] for readable comparisons."""
    return [(e.type, e.json(), e.id) for e in events]


def connected_data(stream):
    return stream.connected.json()


def wait_gone(stack, expected_total, timeout=2.0):
    """Waits until stats.total_clients == expected_total (a closed client
    has been dropped by the hub)."""
    seen = []

    def check():
        d = stack.stats()
        seen[:] = [d]
        return d["total_clients"] == expected_total
    try:
        h.wait_until(check, timeout, interval=0.02, message="total_clients == %d" % expected_total)
    except AssertionError:
        raise AssertionError("total_clients did not become %d within %ss; last stats %r" % (
            expected_total, timeout, seen)) from None


# --------------------------------------------------------------------------
# publishing on a keep-alive connection


class KeepAlivePublisher:
    """Admin POSTs on one persistent HTTP/1.1 connection to the front
    (reconnects if the front closes it). Not thread-safe: one per thread."""

    def __init__(self, front, admin_token, timeout=5.0):
        self.front = front
        self.token = admin_token
        self.timeout = timeout
        self.conn = None
        self.requests = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.front.host, self.front.port, timeout=self.timeout)

    def post(self, route, body):
        """Returns (status, decoded JSON or None, raw body)."""
        payload = json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"}
        for attempt in (1, 2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request("POST", "/api/sse/" + route, body=payload, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest):
                # the front closed the idle keep-alive connection: once more
                # on a new one (the request was not processed)
                self.close()
                if attempt == 2:
                    raise
        self.requests += 1
        try:
            js = json.loads(raw.decode()) if raw else None
        except (ValueError, UnicodeDecodeError):
            js = None
        return resp.status, js, raw

    def publish(self, route, **body):
        status, js, raw = self.post(route, body)
        assert status == 200 and js and js.get("success") is True, "%s %r -> %s %r" % (route, body, status, raw[:300])
        return js["data"]

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class PublisherThread(threading.Thread):
    """Runs fn(publisher) in a thread with its own keep-alive publisher and
    keeps any exception for the main thread (check())."""

    def __init__(self, front, admin_token, fn, name):
        super().__init__(name=name, daemon=True)
        self.pub = KeepAlivePublisher(front, admin_token)
        self.fn = fn
        self.error = None
        self.result = None

    def run(self):
        try:
            self.result = self.fn(self.pub)
        except BaseException as exc:   # reported by check()
            self.error = exc
        finally:
            self.pub.close()

    def check(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), "publisher thread %s still running after %ss" % (self.name, timeout)
        if self.error is not None:
            raise AssertionError("publisher thread %s failed: %r" % (self.name, self.error)) from self.error
        return self.result


# --------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """{(name, ((label, value), ...)): float}; asserts every non-comment
    line is a well-formed sample and no series appears twice."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        key = (name, tuple(sorted(_LABEL.findall(labels))))
        assert key not in out, "series %r appears twice" % (key,)
        out[key] = float(value)
    return out


def metric(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, "metric %s%r missing; have %r" % (name, labels, sorted(k for k in samples if k[0] == name))
    return samples[key]


def get_metrics(stack, token="admin"):
    r = stack.request("GET", "/metrics", token=token)
    assert r.status == 200, "GET /metrics -> %r" % r
    ctype = r.header("content-type") or ""
    assert ctype.startswith("text/plain"), "metrics Content-Type %r" % ctype
    return parse_prometheus(r.body.decode())
