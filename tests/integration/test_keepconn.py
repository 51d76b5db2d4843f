"""FastCGI connections kept for the next request (FCGI_KEEP_CONN).

nginx with `fastcgi_keep_conn on` and an upstream `keepalive` pool sends
request after request on one connection. ssehub answers each, keeps the
connection in its acceptors' epoll set between requests (no acceptor waits
on an idle peer), closes it when idle for --keepalive-timeout or when the
process runs out of descriptors, and closes after the answer whenever the
flag is not set or the peer sent more than one request at once.
"""

import json
import os
import re
import time

import fcgi_client as fcgi
import ssehub_harness as h


def metrics(listen, token):
    r = fcgi.request(listen, "GET", "/metrics", headers={"Authorization": "Bearer " + token})
    status, _, body = r.http()
    assert status == 200, r
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+) (\d+)$", body.decode(), re.M)}


def health(conn, keep=True, request_id=1):
    conn.send_request(fcgi.cgi_params("GET", "/api/sse/health"), request_id=request_id, keep_conn=keep)
    r = conn.read_response(request_id)
    status, _, body = r.http()
    assert status == 200 and json.loads(body)["success"] is True, r
    assert r.end is not None, "no END_REQUEST: %r" % r
    return r


def closed_by_peer(conn, timeout):
    """True when the hub closes conn within timeout (EOF), False when it
    stays open (nothing readable)."""
    try:
        return conn.read_record(timeout) is None
    except fcgi.FcgiTimeout:
        return False


def test_requests_share_a_kept_connection(procs, tokens):
    hub = procs.hub()
    admin = tokens.admin()
    before = metrics(hub.listen, admin)
    with fcgi.FcgiConnection(hub.listen) as c:
        for i in range(50):
            health(c, request_id=1 + i % 3)  # any id; one request at a time
        # a publish and a stats call on the same connection
        body = json.dumps({"event": "e", "data": {"n": 1}}).encode()
        c.send_request(fcgi.cgi_params("POST", "/api/sse/broadcast", {"Authorization": "Bearer " + admin}, body),
                       stdin=body, keep_conn=True)
        status, _, out = c.read_response().http()
        assert status == 200 and json.loads(out)["data"]["recipients"] == 0, out
        assert not closed_by_peer(c, 0.3), "the hub closed a connection the peer asked to keep"
        after = metrics(hub.listen, admin)
    # 51 requests on one connection, and the second metrics request on its own
    assert after["sse_requests_total"] - before["sse_requests_total"] == 51 + 1
    assert after["sse_fastcgi_connections_total"] - before["sse_fastcgi_connections_total"] == 1 + 1
    assert after["sse_fastcgi_idle_connections"] <= 1


def test_without_the_flag_the_connection_closes(procs):
    hub = procs.hub()
    with fcgi.FcgiConnection(hub.listen) as c:
        health(c, keep=False)
        assert closed_by_peer(c, 2.0), "no EOF after the answer of a request without FCGI_KEEP_CONN"


def test_pipelined_requests_get_one_answer_and_a_close(procs):
    """Two requests written at once: nginx never does this; ssehub answers
    the first and closes rather than guess where the second begins."""
    hub = procs.hub()
    msg = b""
    for rid in (1, 2):
        msg += fcgi.begin_request(rid, flags=fcgi.FLAG_KEEP_CONN)
        msg += fcgi.stream_records(fcgi.PARAMS, fcgi.encode_pairs(fcgi.cgi_params("GET", "/api/sse/health")), rid)
        msg += fcgi.stream_records(fcgi.STDIN, b"", rid)
    with fcgi.FcgiConnection(hub.listen) as c:
        c.send(msg)
        r = c.read_response(1)
        assert r.http()[0] == 200, r
        assert closed_by_peer(c, 2.0), "the connection stayed open after a pipelined request"
    health(fcgi.FcgiConnection(hub.listen))  # still serving


def test_idle_kept_connection_closes_after_keepalive_timeout(procs, tokens):
    hub = procs.hub(extra_args=["--keepalive-timeout", "1"])
    with fcgi.FcgiConnection(hub.listen) as c:
        health(c)
        t0 = time.monotonic()
        assert closed_by_peer(c, 5.0), "an idle kept connection outlived --keepalive-timeout 1"
        took = time.monotonic() - t0
        assert 0.8 <= took <= 4.0, "closed after %.2fs, expected about 1-2 s" % took
    assert metrics(hub.listen, tokens.admin())["sse_fastcgi_idle_connections"] == 0


def test_idle_connections_do_not_hold_loops(procs, tokens):
    """More idle kept connections than loop threads (2): each still gets
    its next request answered, and so does a new connection."""
    hub = procs.hub(extra_args=["--loops", "2"])
    conns = [fcgi.FcgiConnection(hub.listen) for _ in range(12)]
    try:
        for c in conns:
            health(c)
        # the answer reaches the peer a moment before its loop counts the
        # connection idle again
        h.wait_until(lambda: metrics(hub.listen, tokens.admin())["sse_fastcgi_idle_connections"] == 12, 2,
                     message="12 idle kept connections")
        t0 = time.monotonic()
        health(fcgi.FcgiConnection(hub.listen), keep=False)
        assert time.monotonic() - t0 < 1.0, "a new connection waited behind idle kept ones"
        for c in reversed(conns):
            health(c, request_id=7)
    finally:
        for c in conns:
            c.close()
    # the hub notices the peers that left
    h.wait_until(lambda: metrics(hub.listen, tokens.admin())["sse_fastcgi_idle_connections"] == 0, 5,
                 message="idle kept connections to go when their peers close them")


def test_stream_on_a_kept_connection_ends_with_a_close(procs, tokens):
    """A kept connection may carry a stream; the stream owns it until it
    ends, and then it is closed (after END_REQUEST), not kept."""
    hub = procs.hub()
    admin = tokens.admin()
    with fcgi.FcgiConnection(hub.listen) as c:
        health(c)
        c.send_request(fcgi.cgi_params("GET", "/sse/stream", {"Authorization": "Bearer " + tokens.user("kc-1")}),
                       keep_conn=True)
        r = c.read_response(until=lambda resp: b"event: connected" in resp.stdout)
        assert r.http()[0] == 200, r
        m = re.search(rb'"client_id":"([0-9a-f-]{36})"', r.stdout)
        assert m, r.stdout
        body = json.dumps({"client_id": m.group(1).decode()}).encode()
        d = fcgi.request(hub.listen, "POST", "/api/sse/disconnect", {"Authorization": "Bearer " + admin}, body)
        assert d.http()[0] == 200, d
        end = c.read_response()
        assert end.end is not None and end.stdout_closed, "the stream did not end with END_REQUEST: %r" % end
        assert closed_by_peer(c, 2.0), "a kept connection that carried a stream stayed open after it"


def test_out_of_descriptors_closes_idle_kept_connections(procs, tokens):
    """At the descriptor limit, idle kept connections are the first to go:
    a new connection is then accepted and answered at once (nginx simply
    opens a new one when it finds its kept connection closed)."""
    limit = 64
    hub = procs.hub(name="lowfd", extra_args=["--acceptors", "2", "--loops", "1"],
                    argv_prefix=["prlimit", "--nofile=%d:%d" % (limit, limit)])
    base = len(os.listdir("/proc/%d/fd" % hub.pid))
    conns = []
    try:
        for _ in range(limit):
            try:
                c = fcgi.FcgiConnection(hub.listen, timeout=3)
                health(c)
            except (AssertionError, OSError):
                break
            conns.append(c)
        # every descriptor the hub has left went to a kept connection, and
        # the last ones were still answered
        assert len(conns) >= limit - base - 4, (len(conns), base)
        t0 = time.monotonic()
        health(fcgi.FcgiConnection(hub.listen, timeout=3), keep=False)
        assert time.monotonic() - t0 < 2.0
        assert metrics(hub.listen, tokens.admin())["sse_fastcgi_idle_connections"] < len(conns)
    finally:
        for c in conns:
            c.close()
    assert hub.process.alive()


def test_nginx_reuses_connections_for_the_api(procs, tokens):
    """Through nginx as configured in examples/nginx (upstream keepalive):
    200 API calls open a handful of FastCGI connections, not 200."""
    hub = procs.hub()
    front = procs.front("nginx", hub=hub)
    admin = tokens.admin()
    stack = h.Stack(front, tokens, hub=hub)
    first = metrics(hub.listen, admin)
    for i in range(200):
        r = stack.request("POST", "/api/sse/send-to-user", body={"user_id": "nobody", "event": "e", "data": i})
        assert r.status == 200, r
    after = metrics(hub.listen, admin)
    assert after["sse_requests_total"] - first["sse_requests_total"] >= 200
    opened = after["sse_fastcgi_connections_total"] - first["sse_fastcgi_connections_total"]
    assert opened <= 5, "nginx opened %d FastCGI connections for 200 API calls" % opened
    # and streams still work beside them
    s = stack.open_stream(user_id="kc-2")
    r = stack.request("POST", "/api/sse/send-to-user", body={"user_id": "kc-2", "event": "e", "data": 1})
    assert r.status == 200 and r.json["data"]["recipients"] == 1, r
    ev = s.next_event(timeout=5)
    assert ev is not None and ev.type == "e", ev
    # an answer larger than the API location's 1k first buffer
    users = ["kc-user-with-a-long-name-%03d" % i for i in range(40)]
    for u in users:
        stack.open_stream(user_id=u)
    r = stack.request("GET", "/api/sse/stats")
    assert r.status == 200 and len(r.body) > 1024, r
    counts = r.json["data"]["user_clients"]
    assert all(counts.get(u) == 1 for u in users) and r.json["data"]["total_clients"] == 41, r.json
    stack.close_streams()
