"""SIGTERM ends every stream cleanly and the process exits 0."""

import signal
import time

import fcgi_client as fcgi


def test_sigterm_ends_streams_cleanly(stack):
    streams = [stack.open_stream(user_id=u) for u in (1, 1, 2, "bob")]
    sock = stack.hub.socket_path
    assert sock.exists()

    t0 = time.monotonic()
    stack.hub.process.proc.send_signal(signal.SIGTERM)
    for s in streams:
        left = max(0.1, 3.0 - (time.monotonic() - t0))
        s.read_to_end(timeout=left)
        assert not s.reset, "client %s: connection reset instead of a clean end" % s.client_id
        assert s.framing == "chunked", s.header_list
        assert s.clean_end, ("client %s: EOF without the chunked terminator (the front saw the upstream "
                             "close without END_REQUEST)" % s.client_id)
    rc = stack.hub.process.wait(max(0.1, 3.0 - (time.monotonic() - t0)))
    assert rc is not None, "ssehub still running 3 s after SIGTERM"
    assert rc == 0, "exit status %r after SIGTERM" % rc
    assert not sock.exists(), "unix socket %s left behind" % sock


def test_sigterm_ends_fastcgi_streams_with_end_request(procs, tokens):
    """Straight on the FastCGI socket (nginx hides an upstream that just
    closes): each stream gets an empty FCGI_STDOUT record and an
    FCGI_END_REQUEST (appStatus 0, FCGI_REQUEST_COMPLETE) before the close."""
    hub = procs.hub()
    direct = []
    for user in (1, 2, "carol"):
        r = fcgi.FcgiRequest(hub.listen, uri="/sse/stream",
                             headers={"Authorization": "Bearer " + tokens.user(user)})
        assert r.read(lambda resp: b"event: connected" in resp.stdout, 3), r.response
        assert not r.response.complete and not r.response.eof, r.response
        direct.append(r)
    assert fcgi.request(hub.listen).http()[0] == 200

    t0 = time.monotonic()
    hub.process.proc.send_signal(signal.SIGTERM)
    for r in direct:
        resp = r.read_to_end(timeout=max(0.1, 3.0 - (time.monotonic() - t0)))
        assert resp.stdout_closed, "no empty FCGI_STDOUT record before the end: %r" % resp.records
        assert resp.end == (0, fcgi.REQUEST_COMPLETE), "END_REQUEST (appStatus, protocolStatus) = %r, records %r" % (
            resp.end, resp.records)
        r.close()
    rc = hub.process.wait(max(0.1, 3.0 - (time.monotonic() - t0)))
    assert rc == 0, "exit status %r after SIGTERM" % rc
