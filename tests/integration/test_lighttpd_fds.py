"""lighttpd's descriptor and connection limits against the admin API.

lighttpd 1.4 stops accepting connections, on every port and for every URL,
while more than 90 % of server.max-fds descriptors are open ("sockets
disabled, out-of-fds") or while it holds server.max-connections connections
("sockets disabled, connection limit reached"); a publish then waits
unanswered. A stream holds one connection and two descriptors there. The
sizing in examples/lighttpd/ssehub.conf keeps ssehub's --max-clients below
both, so streams past it are refused (503) and a publish through lighttpd
is still answered. These tests run the example (variant A) as shipped and
with a small server.max-fds sized by the same formula, and show the failure
without --max-clients.
"""

import os
import re

import pytest

import frontconf
import ssehub_harness as h
from conftest import require_program

# The formula of the example's header (and examples/lighttpd/README.md):
# descriptors lighttpd keeps for itself (listeners, logs, its event fd;
# 9 in these tests, 10 with Debian's lighttpd.conf), and the connections
# kept free for publishes and refused streams.
RESERVED_FDS = 64
MIN_HEADROOM = 100


def max_connections_for(max_fds):
    return (max_fds * 9 // 10 - RESERVED_FDS) // 2


def headroom(max_clients):
    return max(MIN_HEADROOM, max_clients // 10)


def max_clients_for(max_connections):
    m = max_connections - MIN_HEADROOM
    while m > 0 and m + headroom(m) > max_connections:
        m -= 1
    return m


def example_sizing():
    """server.max-fds, server.max-connections and the bin-path's
    --max-clients of examples/lighttpd/ssehub.conf; variant B's command line
    (a comment) must name the same --max-clients."""
    text = frontconf.LIGHTTPD_EXAMPLE.read_text()
    active = [x for x in text.split("\n") if not x.lstrip().startswith("#")]
    found = {}
    for name in frontconf.LIGHTTPD_SIZING:
        values = [int(m.group(1)) for x in active for m in [re.match(r"%s\s*=\s*(\d+)\s*$" % re.escape(name), x)]
                  if m]
        assert len(values) == 1, "%s: %r" % (name, values)
        found[name] = values[0]
    bin_path = [x for x in active if '"bin-path"' in x]
    assert len(bin_path) == 1, bin_path
    m = re.search(r"--max-clients (\d+)\b", bin_path[0])
    assert m, "no --max-clients in the bin-path: %s" % bin_path[0]
    commented = re.findall(r"#\s*ssehub --listen .*--max-clients (\d+)\b", text)
    assert commented == [m.group(1)], "variant B's command line: %r" % commented
    return found["server.max-fds"], found["server.max-connections"], int(m.group(1))


SMALL_FDS = 400
SIZINGS = {
    # what users copy
    "shipped": None,
    # the formula at a small server.max-fds: 148 connections, 48 streams
    "small": (SMALL_FDS, max_connections_for(SMALL_FDS), max_clients_for(max_connections_for(SMALL_FDS))),
}


def sizing(name):
    return example_sizing() if SIZINGS[name] is None else SIZINGS[name]


def start_lighttpd(procs, secret, max_fds, max_connections, max_clients=None):
    """lighttpd running the example's variant A (it spawns ssehub), with
    server.max-fds / server.max-connections replacing the example's unless
    they are its own; ssehub's stderr goes to a log file of ours."""
    require_program("lighttpd")
    shipped, shipped_conns, _ = example_sizing()
    extra = []
    if max_fds != shipped:
        extra.append("server.max-fds = %d" % max_fds)
    if max_connections != shipped_conns:
        extra.append("server.max-connections = %d" % max_connections)
    log = procs.workdir / "fds-ssehub.log"
    wrapper = procs.workdir / "fds-wrapper.sh"
    env = "".join("export %s='%s'\n" % (k, os.environ[k]) for k in h.SANITIZER_ENV if k in os.environ)
    wrapper.write_text('#!/bin/sh\n%sexec "%s" "$@" 2>>"%s"\n' % (env, procs.binary, log))
    wrapper.chmod(0o755)
    args = [wrapper, "--jwt-secret-file", secret.path, "--log-level", "info", "--shutdown-spread", "0"]
    if max_clients is not None:
        args += ["--max-clients", max_clients]
    front = h.LighttpdFront(procs.workdir, bin_path=" ".join(str(a) for a in args),
                            name="lighttpd%d" % len(procs.fronts), extra=extra)
    front.logs.append(log)
    procs.fronts.append(front)
    front.start()
    return front.wait_ready()


def open_ok(st, user):
    s = st.open_stream(user_id=user)
    assert s.status == 200
    return s


def error_log(front):
    return front.error_log.read_text(errors="replace")


def test_example_follows_its_formula():
    max_fds, max_connections, max_clients = example_sizing()
    # at max-connections, every connection with a backend, lighttpd stays
    # under 90 % of its descriptors: the connection limit comes first
    assert 2 * max_connections + RESERVED_FDS <= max_fds * 9 // 10
    assert max_clients + headroom(max_clients) <= max_connections
    assert max_clients >= 1


@pytest.mark.parametrize("which", sorted(SIZINGS))
def test_streams_past_max_clients_refused_publish_answered(procs, secret, tokens, which):
    max_fds, max_connections, max_clients = sizing(which)
    front = start_lighttpd(procs, secret, max_fds, max_connections, max_clients)
    st = h.Stack(front, tokens)
    streams = [open_ok(st, u) for u in range(max_clients)]
    # More browsers than the headroom, past --max-clients: refused at once.
    # Like a browser, each keeps its connection for the next request unless
    # the answer says "Connection: close" (the example's
    # max-keep-alive-requests = 0 for /sse/); kept ones would hold
    # lighttpd's connections and lock the publisher out.
    kept = []
    for u in range(max_clients, max_connections + 50):
        s = h.SSEStream(st.host, st.port, token=tokens.user(u))
        assert (s.status, s.json["error"]["code"]) == (503, "too_many_clients"), (u, s.status, s.body[:200])
        if (s.header("connection") or "").lower() == "close":
            s.close()
        else:
            kept.append(s)
    # lighttpd kept accepting: the publish is answered and reaches everyone
    r = st.post("/api/sse/broadcast", {"event": "news", "data": {"n": 1}}, timeout=5)
    assert r.status == 200, r
    assert not kept, "%d refused streams kept alive: %r" % (len(kept), kept[0].header_list)
    d = r.data
    assert d["recipients"] == max_clients
    for s in streams:
        ev = s.next_event(5)
        assert ev is not None and (ev.type, ev.json()) == ("news", {"n": 1}), (s.client_id, ev)
    assert "sockets disabled" not in error_log(front)
    st.close_streams()


# "fds": server.max-connections above the formula (lighttpd's own cap,
# max-fds / 2): the descriptors run out first.
FAILURES = {"shipped": "connection limit reached", "small": "connection limit reached", "fds": "out-of-fds"}


@pytest.mark.parametrize("which", sorted(FAILURES))
def test_without_max_clients_lighttpd_stops_accepting(procs, secret, tokens, which):
    if which == "fds":
        max_fds, max_connections = SMALL_FDS, SMALL_FDS // 2
        assert max_connections > max_connections_for(max_fds)
    else:
        max_fds, max_connections, _ = sizing(which)
    front = start_lighttpd(procs, secret, max_fds, max_connections)
    st = h.Stack(front, tokens)
    streams = []
    # Open streams until lighttpd says it stopped accepting. It checks its
    # limits once per turn of its event loop, and a stream's "connected"
    # event takes more than one turn (browser, then ssehub): by then the
    # stream that crossed a limit has been counted.
    for u in range(max_connections + 1):
        if "sockets disabled" in error_log(front):
            break
        streams.append(open_ok(st, u))
    else:
        pytest.fail("lighttpd took %d streams with max-connections %d" % (len(streams), max_connections))
    log = error_log(front)
    assert "sockets disabled, %s" % FAILURES[which] in log, log[-2000:]
    if which == "fds":
        assert len(streams) < max_connections
    else:
        # max-connections streams, every one with its backend, and still
        # under 90 % of the descriptors: the formula's first half
        assert len(streams) >= max_connections - 2, len(streams)
        assert "out-of-fds" not in log
    # the publisher is locked out with the browsers (bounded wait)
    try:
        r = h.http_call(front, "POST", "/api/sse/broadcast", body={"event": "news", "data": {"n": 1}},
                        token=st.admin_token, timeout=3)
        answered = r.status
    except OSError as exc:
        answered = repr(exc)
    assert answered != 200, "the publish got through: %r" % answered
    st.close_streams()
