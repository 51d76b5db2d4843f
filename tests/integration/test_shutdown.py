"""SIGTERM ends every stream cleanly and the process exits 0."""

import signal
import time

import ssehub_harness as h


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
        r = h.FcgiRequest(hub.listen, uri="/sse/stream",
                          headers={"Authorization": "Bearer " + tokens.user(user)})
        assert r.read(lambda r: b"event: connected" in r.stdout, 3), r.stdout
        assert r.end_request is None and not r.eof, (r.end_request, r.stdout)
        direct.append(r)
    assert h.fcgi_request(hub.listen)[0] == 200

    t0 = time.monotonic()
    hub.process.proc.send_signal(signal.SIGTERM)
    for r in direct:
        r.read_to_end(timeout=max(0.1, 3.0 - (time.monotonic() - t0)))
        assert r.stdout_closed, "no empty FCGI_STDOUT record before the end: %r" % r.records
        assert r.end_request == (0, 0), "END_REQUEST (appStatus, protocolStatus) = %r, records %r" % (
            r.end_request, r.records)
        r.close()
    rc = hub.process.wait(max(0.1, 3.0 - (time.monotonic() - t0)))
    assert rc == 0, "exit status %r after SIGTERM" % rc
