"""Helpers for test_faults.py, test_valgrind.py and bench/soak/soak.py.

Built on ssehub_harness (Hub, NginxFront, Tokens, http_call, SSEStream,
ChunkedDecoder) and fcgi_client (every FastCGI byte); what is added here:

* BigNginxFront - the harness's nginx with room for thousands of streams
                  (worker_connections, worker_rlimit_nofile) and an
                  optional worker_shutdown_timeout; start/stop/restart.
* proc_fds / proc_rss_kb / wait_fds - what /proc says about a process.
* fcgi_get_health - a well-formed FastCGI GET /api/sse/health, timed.
* StreamSwarm   - many event streams through the front in one thread
                  (selectors): non-blocking connects, chunked decoding, a
                  light block parser that keeps (event, id, data), resets.
                  SSEStream's full parser costs too much per byte for 200
                  readers of 8 KB broadcasts or thousands of streams.

Every wait is bounded in time; every loop in count.
"""

import json
import os
import re
import selectors
import signal
import socket
import struct
import time
from pathlib import Path

import fcgi_client as fcgi
import ssehub_harness as h

# --------------------------------------------------------------------------
# /proc


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sanitized_binary():
    """True when the ssehub under test is built with ASan: its allocator
    keeps freed memory in quarantine, so RSS says nothing about leaks there
    (LeakSanitizer checks those at exit instead)."""
    try:
        return b"__asan_init" in h.ssehub_binary().read_bytes()
    except OSError:
        return False


def proc_rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def proc_threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def wait_fds(pid, target, timeout, cmp="<="):
    """Waits until the fd count of pid is <= target (or == with cmp='==').
    Returns the last count seen (the caller asserts)."""
    deadline = time.monotonic() + timeout
    n = proc_fds(pid)
    while time.monotonic() < deadline:
        n = proc_fds(pid)
        if (n <= target) if cmp == "<=" else (n == target):
            return n
        time.sleep(0.05)
    return n


# --------------------------------------------------------------------------
# nginx with room for many streams


class BigNginxFront(h.NginxFront):
    """The harness's nginx, with worker_connections and worker_rlimit_nofile
    raised (two connections per stream: client and upstream) and, when
    shutdown_timeout is given, worker_shutdown_timeout (how long a graceful
    SIGQUIT waits for open streams)."""

    kind = "nginx"

    def __init__(self, workdir, upstream, name="nginx", connections=16384, shutdown_timeout=None):
        main = ["worker_shutdown_timeout %ds" % shutdown_timeout] if shutdown_timeout is not None else []
        super().__init__(workdir, upstream, name=name, worker_connections=connections,
                         rlimit_nofile=connections * 2 + 64, main_extra=main)

    def restart(self, wait=True):
        """Starts the same config again (after stop)."""
        self.start()
        if wait:
            self.wait_ready()
        return self

    def stop_with(self, sig, timeout=10.0):
        """Signals the master and waits for it (SIGQUIT: graceful)."""
        return self.process.stop(sig, timeout)


def start_big_nginx(procs, hub, **kw):
    """A BigNginxFront registered with procs (stopped at cleanup)."""
    f = BigNginxFront(procs.workdir, hub.upstream, name="nginx%d" % len(procs.fronts), **kw)
    f.watch.append(hub.process)
    procs.fronts.append(f)
    f.start()
    f.wait_ready()
    return f


# --------------------------------------------------------------------------
# health, timed


def fcgi_get_health(listen, timeout=5.0):
    """A well-formed FastCGI GET /api/sse/health straight to ssehub.
    Returns (ok, seconds)."""
    t0 = time.monotonic()
    try:
        ok = fcgi.health(listen, timeout=timeout)
    except (OSError, AssertionError, ValueError):
        ok = False
    return ok, time.monotonic() - t0


def http_health(front, timeout=5.0):
    """GET /api/sse/health through the front. Returns (status or None, seconds)."""
    t0 = time.monotonic()
    try:
        r = h.http_call(front, "GET", "/api/sse/health", timeout=timeout)
        status = r.status if (r.json or {}).get("success") is True else -r.status
    except OSError:
        status = None
    return status, time.monotonic() - t0


# --------------------------------------------------------------------------
# many streams in one thread


class _Conn:
    __slots__ = ("sock", "state", "head", "chunked", "pending", "events", "ids", "status", "client_id",
                 "ended", "reset", "opened_at", "connected_at", "error", "bytes", "tag", "body", "length")

    def __init__(self, sock, tag):
        self.sock = sock
        self.state = "connecting"
        self.head = b""
        self.chunked = None
        self.pending = ""
        self.events = []          # (event, id, data) of dispatched events, pings excluded
        self.ids = []             # ids of events that carried one, in order
        self.status = None
        self.client_id = None
        self.ended = False        # the response ended or the connection closed
        self.reset = False
        self.opened_at = time.monotonic()
        self.connected_at = None
        self.error = None
        self.bytes = 0
        self.tag = tag
        self.body = b""           # body of a non-stream answer
        self.length = None        # Content-Length of a non-stream answer


_BLOCK_SPLIT = re.compile(r"\n\n")


class StreamSwarm:
    """Event streams through a front server (HTTP/1.1, chunked), all driven
    from one selector. keep_data=False drops event data except for the
    connected event (cheap for big broadcasts)."""

    def __init__(self, host, port, keep_data=True, rcvbuf=None):
        self.host, self.port = host, port
        self.keep_data = keep_data
        self.rcvbuf = rcvbuf
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self._outbuf = {}

    # ---- opening

    def open(self, token_for, count, tag=None, path="/sse/stream", batch=200, timeout=20.0, headers=None):
        """Opens count streams (token_for(i) gives the token), batch at a time,
        and waits until each has its connected event or a final answer.
        Returns the new conns."""
        new = []
        deadline = time.monotonic() + timeout
        for start in range(0, count, batch):
            group = []
            for i in range(start, min(count, start + batch)):
                group.append(self._start(token_for(i), tag, path, headers))
            new += group
            self.pump_until(lambda: all(c.state in ("streaming", "done") for c in group),
                            max(0.0, deadline - time.monotonic()))
        return new

    def _start(self, token, tag, path, headers):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.setblocking(False)
        c = _Conn(s, tag)
        try:
            s.connect((self.host, self.port))
        except BlockingIOError:
            pass
        req = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (self.host, self.port), "Accept: text/event-stream"]
        if token:
            req.append("Authorization: Bearer %s" % token)
        for k, v in (headers or {}).items():
            req.append("%s: %s" % (k, v))
        self._outbuf[s] = ("\r\n".join(req) + "\r\n\r\n").encode()
        self.sel.register(s, selectors.EVENT_WRITE, c)
        self.conns.append(c)
        return c

    # ---- reading

    def pump(self, timeout):
        """One selector pass (waits at most timeout). Returns events handled."""
        n = 0
        for key, mask in self.sel.select(timeout):
            c = key.data
            n += 1
            if mask & selectors.EVENT_WRITE:
                self._write(c)
            elif mask & selectors.EVENT_READ:
                self._read(c)
        return n

    def pump_until(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return predicate()
            self.pump(min(left, 0.05))

    def pump_for(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pump(min(left, 0.05))

    def _write(self, c):
        data = self._outbuf.get(c.sock)
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(c, error="connect/send: %s" % exc)
            return
        data = data[n:]
        if data:
            self._outbuf[c.sock] = data
        else:
            del self._outbuf[c.sock]
            c.state = "head"
            self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def _read(self, c):
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        except ConnectionResetError:
            c.reset = True
            data = b""
        except OSError as exc:
            self._finish(c, error=str(exc))
            return
        if not data:
            self._finish(c)
            return
        c.bytes += len(data)
        if c.state == "head":
            c.head += data
            if b"\r\n\r\n" not in c.head:
                return
            head, rest = c.head.split(b"\r\n\r\n", 1)
            lines = head.decode("iso-8859-1").split("\r\n")
            m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
            c.status = int(m.group(1)) if m else -1
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if "chunked" in hdrs.get("transfer-encoding", "").lower():
                c.chunked = h.ChunkedDecoder()
            elif "content-length" in hdrs:
                c.length = int(hdrs["content-length"])
            c.state = "body" if c.status == 200 and hdrs.get("content-type", "").startswith(
                "text/event-stream") else "answer"
            data = rest
        if c.state == "answer":
            body = c.chunked.feed(data) if c.chunked else data
            c.body += body
            # an answer ends with its framing (nginx keeps the connection
            # alive after its own error pages, which carry Content-Length)
            if (c.chunked and c.chunked.done) or (c.length is not None and len(c.body) >= c.length):
                self._finish(c)
            return
        body = c.chunked.feed(data) if c.chunked else data
        if body:
            self._parse(c, body.decode("utf-8", "replace"))
        if c.chunked and c.chunked.done:
            self._finish(c)

    def _parse(self, c, text):
        c.pending += text
        if "\n\n" not in c.pending:
            return
        parts = _BLOCK_SPLIT.split(c.pending)
        c.pending = parts.pop()
        for block in parts:
            event, eid, data = "message", None, []
            for line in block.split("\n"):
                if line.startswith("data: "):
                    data.append(line[6:])
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("id: "):
                    eid = line[4:]
            if not data:
                continue
            if event == "ping":
                continue
            if event == "connected":
                c.client_id = json.loads(data[0])["client_id"]
                c.connected_at = time.monotonic()
                c.state = "streaming"
                continue
            if eid is not None:
                c.ids.append(eid)
            c.events.append((event, eid, "\n".join(data) if self.keep_data else None))

    def _finish(self, c, error=None):
        if c.state == "done":
            return
        c.state = "done"
        c.ended = True
        c.error = error
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        self._outbuf.pop(c.sock, None)
        try:
            c.sock.close()
        except OSError:
            pass

    # ---- closing

    def close(self, c, reset=False):
        """Closes one stream; reset=True sends an RST (SO_LINGER 0)."""
        if c.state == "done":
            return
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._finish(c)

    def close_all(self, reset=False):
        for c in list(self.conns):
            self.close(c, reset)

    def streaming(self):
        return [c for c in self.conns if c.state == "streaming"]

    def done(self):
        return [c for c in self.conns if c.state == "done"]


def signal_name(sig):
    return signal.Signals(sig).name


# --------------------------------------------------------------------------
# scenarios shared by test_faults.py and bench/soak/soak.py


def stats_via(front, admin_token, timeout=5.0):
    r = h.http_call(front, "GET", "/api/sse/stats", token=admin_token, timeout=timeout)
    if r.status != 200:
        raise AssertionError("stats -> %r" % r)
    return r.data


def nginx_restart_scenario(procs, hub, tokens, front, streams, sig, open_timeout=120.0):
    """Opens `streams` streams through front (a BigNginxFront), checks a
    broadcast reaches them, stops the nginx master with sig, starts it again
    and checks: the hub's registry empties, its fd count returns to the
    baseline taken before the streams, and new streams work. Returns a dict
    of figures with a 'failures' list (empty when everything held)."""
    admin = tokens.admin()
    fig = {"streams": streams, "signal": signal_name(sig), "failures": []}
    fail = fig["failures"].append
    fds0 = proc_fds(hub.pid)
    fig["hub_fds_before"] = fds0
    swarm = StreamSwarm(front.host, front.port, keep_data=False)
    t0 = time.monotonic()
    swarm.open(lambda i: tokens.user("n%d" % (i % 100)), streams, timeout=open_timeout)
    fig["open_seconds"] = round(time.monotonic() - t0, 2)
    up = len(swarm.streaming())
    fig["streams_up"] = up
    if up != streams:
        fail("only %d of %d streams connected" % (up, streams))
    fig["hub_fds_open"] = proc_fds(hub.pid)
    fig["stats_open"] = stats_via(front, admin)["total_clients"]
    if fig["stats_open"] != up:
        fail("stats total_clients %d with %d streams up" % (fig["stats_open"], up))
    r = h.http_call(front, "POST", "/api/sse/broadcast", body={"event": "before", "data": 1, "id": "before-1"},
                    token=admin, timeout=10)
    if r.status != 200 or r.data["recipients"] != up:
        fail("broadcast before the restart: %r" % r)
    swarm.pump_until(lambda: all(c.ids == ["before-1"] for c in swarm.streaming()), 20)
    fig["got_broadcast"] = sum(c.ids == ["before-1"] for c in swarm.streaming())
    if fig["got_broadcast"] != up:
        fail("broadcast before the restart reached %d of %d streams" % (fig["got_broadcast"], up))

    t1 = time.monotonic()
    rc = front.stop_with(sig, timeout=20)
    fig["nginx_stop_seconds"] = round(time.monotonic() - t1, 2)
    fig["nginx_exit"] = rc
    if rc is None:
        fail("nginx did not stop within 20 s of %s" % fig["signal"])
    swarm.pump_until(lambda: not swarm.streaming(), 10)
    fig["client_side_closed"] = len(swarm.done())
    swarm.close_all()
    front.restart()
    t2 = time.monotonic()
    deadline = t2 + 10
    while True:
        total = stats_via(front, admin)["total_clients"]
        if total == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    fig["registry_after"] = total
    fig["registry_empty_seconds"] = round(time.monotonic() - t2, 2)
    if total != 0:
        fail("registry still holds %d streams 10 s after nginx went away" % total)
    fds1 = wait_fds(hub.pid, fds0, 10)
    fig["hub_fds_after"] = fds1
    if fds1 > fds0:
        fail("hub fds %d after the restart, %d before the streams" % (fds1, fds0))
    fresh = StreamSwarm(front.host, front.port, keep_data=True)
    fresh.open(lambda i: tokens.user("fresh%d" % i), 20, timeout=20)
    r = h.http_call(front, "POST", "/api/sse/broadcast", body={"event": "after", "data": 2, "id": "after-1"},
                    token=admin, timeout=10)
    fresh.pump_until(lambda: all(c.ids == ["after-1"] for c in fresh.conns), 10)
    fig["new_streams_ok"] = sum(c.ids == ["after-1"] for c in fresh.conns)
    if r.status != 200 or fig["new_streams_ok"] != 20:
        fail("after the restart: broadcast %r reached %d of 20 new streams" % (r, fig["new_streams_ok"]))
    fresh.close_all()
    fig["hub_alive"] = hub.process.alive()
    if not fig["hub_alive"]:
        fail("ssehub died: %r" % hub.process.proc.returncode)
    return fig
