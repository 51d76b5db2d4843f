"""The loop model: no peer holds a thread, management records are answered,
a stop with requests in flight is clean, and admin POSTs need a JSON body
type (a cross-site form cannot make an admin call)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import fcgi_client as fcgi
import ssehub_harness as h


def conn_fds(pid):
    """The hub's connected sockets (all its sockets but the listening one;
    the harness's readiness probe may still be among them at first)."""
    links = []
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            links.append(os.readlink("/proc/%d/fd/%s" % (pid, f)))
        except FileNotFoundError:
            pass
    return sum(1 for l in links if l.startswith("socket:")) - 1


def stats_request(hub, admin):
    return fcgi.request(hub.listen, "GET", "/api/sse/stats", headers={"Authorization": "Bearer " + admin},
                        timeout=10)


def silent_peers(hub, n_silent, n_half, admin):
    """n_silent connections that send nothing and n_half that send half a
    request (BEGIN_REQUEST and part of PARAMS)."""
    params = fcgi.encode_pairs(fcgi.cgi_params("GET", "/api/sse/stats", {"Authorization": "Bearer " + admin}))
    half = fcgi.begin_request(1) + fcgi.record(fcgi.PARAMS, params)[: 8 + len(params) // 2]
    conns = []
    for i in range(n_silent + n_half):
        s = h.connect_to(hub.listen, 5)
        if i >= n_silent:
            s.sendall(half)
        conns.append(s)
    return conns


def closed_by_hub(sock, timeout):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (socket.timeout, BlockingIOError):
        return False


def test_silent_peers_hold_no_thread(procs, tokens, workdir):
    """1,000 connections that send nothing and 200 that send half a request:
    a real request is answered at once, long before the 30 s request timeout
    closes any of them. (Round 1: 12 silent + 6 half peers held 4 acceptor
    threads and a stats call waited more than 3 s.)"""
    admin = tokens.admin()
    hub = procs.hub(extra_args=["--request-timeout", 30, "--loops", 2])
    h.wait_until(lambda: conn_fds(hub.pid) == 0, 5, message="the readiness probe to go")
    conns = silent_peers(hub, 1000, 200, admin)
    try:
        h.wait_until(lambda: conn_fds(hub.pid) == 1200, 10, message="the hub to accept 1,200 peers")
        t0 = time.monotonic()
        r = stats_request(hub, admin)
        took = time.monotonic() - t0
        status, _, body = r.http()
        assert status == 200 and json.loads(body)["success"] is True, r
        (workdir / "silent-peers-latency.txt").write_text("%.4f\n" % took)
        print("stats answered in %.1f ms beside 1,200 silent peers" % (took * 1000))
        assert took < 5.0, "a request waited %.2f s behind silent peers" % took
        assert not any(closed_by_hub(s, 0) for s in conns[:50]), "a silent peer was closed long before the timeout"
    finally:
        for s in conns:
            s.close()


def test_silent_peers_are_closed_at_the_request_timeout(procs, tokens):
    admin = tokens.admin()
    hub = procs.hub(extra_args=["--request-timeout", 2])
    conns = silent_peers(hub, 300, 100, admin)
    try:
        t0 = time.monotonic()
        assert all(closed_by_hub(s, 6.0) for s in conns), "a silent peer outlived --request-timeout 2"
        took = time.monotonic() - t0
        assert 1.0 <= took <= 6.0, "closed after %.2f s" % took
        h.wait_until(lambda: conn_fds(hub.pid) == 0, 5, message="the hub's descriptors to return to baseline")
        assert stats_request(hub, admin).http()[0] == 200
    finally:
        for s in conns:
            s.close()


def test_threads_are_the_loops_and_main(procs, tokens):
    hub = procs.hub(extra_args=["--loops", 3])
    # the socket may accept before the last loop thread has started
    h.wait_until(lambda: len(os.listdir("/proc/%d/task" % hub.pid)) == 3 + 1, 2, message="3 loops and main")
    time.sleep(0.2)
    assert len(os.listdir("/proc/%d/task" % hub.pid)) == 3 + 1


def test_acceptors_option_is_deprecated_but_accepted(procs, tokens):
    hub = procs.hub(extra_args=["--acceptors", 4])
    assert fcgi.request(hub.listen).http()[0] == 200
    assert "--acceptors is deprecated" in hub.log()


def test_management_records_are_answered(procs, tokens):
    """FCGI_GET_VALUES gets FCGI_GET_VALUES_RESULT (MPXS_CONNS 0, our limits;
    unknown names left out), an unknown management type gets
    FCGI_UNKNOWN_TYPE, and the connection still carries a request."""
    hub = procs.hub()
    with fcgi.FcgiConnection(hub.listen) as c:
        c.send(fcgi.get_values(["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "NO_SUCH_VARIABLE"]))
        rec = c.read_record(5)
        assert rec.type == fcgi.GET_VALUES_RESULT and rec.request_id == 0, rec
        values = dict(fcgi.decode_pairs(rec.content))
        assert values[b"FCGI_MPXS_CONNS"] == b"0", values
        assert int(values[b"FCGI_MAX_CONNS"]) > 0 and values[b"FCGI_MAX_REQS"] == values[b"FCGI_MAX_CONNS"], values
        assert b"NO_SUCH_VARIABLE" not in values, values
        c.send(fcgi.record(77, b"whatever", 0))
        rec = c.read_record(5)
        assert rec.type == fcgi.UNKNOWN_TYPE and rec.content[0] == 77, rec
        c.send_request(fcgi.cgi_params("GET", "/api/sse/health"))
        status, _, body = c.read_response(1, 5).http()
        assert status == 200 and json.loads(body)["data"]["status"] == "ok"


def test_cgi_fcgi_health_probe(procs, tokens):
    """The one-line probe the service examples use: libfcgi's cgi-fcgi."""
    tool = shutil.which("cgi-fcgi")
    if not tool:
        pytest.skip("cgi-fcgi (libfcgi-bin) is not installed")
    hub = procs.hub()
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/api/sse/health", "SCRIPT_NAME": "/api/sse/health",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = subprocess.run([tool, "-bind", "-connect", str(hub.socket_path)], env=env, capture_output=True,
                         timeout=10).stdout
    assert out.startswith(b"Status: 200"), out
    assert b'"status":"ok"' in out, out


ROUTES = {
    "publish": ("POST", "/api/sse/broadcast", {"event": "late", "data": 1}),
    "disconnect": ("POST", "/api/sse/disconnect", {"user_id": "inflight"}),
    "stats": ("GET", "/api/sse/stats", None),
    "stream": ("GET", "/sse/stream", None),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_stop_with_a_request_in_flight(procs, tokens, route):
    """Half a request before SIGTERM, the rest after: the request is
    answered (503 while stopping) or the connection closed, never a crash,
    and the process exits 0 (the ASan run of this suite also checks that no
    freed memory is touched: round 1 had a use-after-free here)."""
    method, uri, body = ROUTES[route]
    hub = procs.hub(extra_args=["--loops", 2])
    streams = [fcgi.FcgiRequest(hub.listen, uri="/sse/stream",
                             headers={"Authorization": "Bearer " + tokens.user("inflight")}) for _ in range(3)]
    for s in streams:
        assert s.read(lambda r: b"event: connected" in r.stdout, 5), s.response
    data = json.dumps(body).encode() if body else b""
    params = fcgi.cgi_params(method, uri, {"Authorization": "Bearer " + tokens.admin()}, data)
    wire = (fcgi.begin_request(1) + fcgi.stream_records(fcgi.PARAMS, fcgi.encode_pairs(params))
            + fcgi.stream_records(fcgi.STDIN, data))
    cut = len(wire) - 9
    c = fcgi.FcgiConnection(hub.listen)
    c.send(wire[:cut])
    time.sleep(0.1)
    hub.process.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    c.send(wire[cut:])
    resp = c.read_response(1, 5)
    if resp.stdout:
        status, _, out = resp.http()
        assert status in (200, 503), resp
        if status == 503:
            assert json.loads(out)["error"]["code"] == "shutting_down", out
    c.close()
    for s in streams:
        assert s.read_to_end(timeout=5).end is not None, "a stream did not get END_REQUEST at the stop"
    rc = hub.process.wait(5)
    assert rc == 0, "exit status %r after SIGTERM with a %s request in flight" % (rc, route)


def test_cross_site_admin_post_is_refused(stack):
    """What a form or a no-preflight fetch from another site can send: the
    admin token in the cookie, a body typed text/plain or form-urlencoded.
    Refused with 415 and nothing is delivered; GET routes are unchanged."""
    s = stack.open_stream(user_id="csrf-victim")
    admin = stack.tokens.admin()
    cookie = {"Cookie": "token=" + admin}
    body = json.dumps({"event": "pwned", "data": 1})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = stack.request("POST", "/api/sse/broadcast", body=body, token=None,
                          headers=dict(cookie, **{"Content-Type": ctype}))
        assert r.status == 415 and r.error_code == "unsupported_media_type", (ctype, r)
    r = stack.request("POST", "/api/sse/send-to-user", body="event=pwned&data=1&user_id=csrf-victim", token=None,
                      headers=dict(cookie, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert r.status == 415, r
    # the same cookie on a GET route still works, and a JSON POST with it too
    assert stack.request("GET", "/api/sse/stats", token=None, headers=cookie).status == 200
    stack.check_marker([s])
