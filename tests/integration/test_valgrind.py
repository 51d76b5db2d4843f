"""ssehub under valgrind (memcheck with a full leak check) behind nginx.

One scenario touches every path a request can take: streams through nginx
and one straight on the FastCGI socket, every kind of publish (broadcast,
send-to-user with a number and a string, send-to-client, with id and retry),
a Last-Event-ID replay, stats, metrics, health, a range of bad requests
(400, 401, 403, 404, 405, 413), the disconnect API for a user and a client,
a client that leaves by itself, a token that expires on an open stream, a
slow consumer closed with messages queued, then SIGTERM with a stream open.
valgrind must exit 0 (--error-exitcode=99) and report
"ERROR SUMMARY: 0 errors" (definite and indirect leaks count as errors).

    /usr/bin/python3 -m pytest -q tests/integration/test_valgrind.py

Skips only when valgrind (or nginx) is not installed. valgrind is slow:
every wait here is generous, and the per-test alarm is raised to 240 s.
"""

import re
import signal

import pytest

import fcgi_client as fcgi
import ssehub_harness as h

SLOW = 30.0          # seconds for any single answer under valgrind
TEST_BUDGET = 240    # seconds for the whole test


def _valgrind_argv(log_file):
    return [h.find_program("valgrind"), "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99", "--num-callers=30", "--log-file=%s" % log_file]


def test_valgrind_clean_run(procs, tokens, workdir):
    if not h.find_program("valgrind"):
        pytest.skip("valgrind is not installed")
    if not h.find_program("nginx"):
        pytest.skip("nginx is not installed")
    signal.alarm(TEST_BUDGET)  # conftest armed 60 s; valgrind needs more
    vg_log = workdir / "valgrind.log"
    hub = procs.hub(wait=False, argv_prefix=_valgrind_argv(vg_log),
                    extra_args=["--max-message-bytes", "4096", "--max-queue-bytes", "4096", "--loops", "2",
                                "--acceptors", "2", "--jwt-leeway", "0"])
    hub.wait_listening(timeout=60)
    front = procs.front("nginx", hub=hub, wait=False)
    front.wait_ready(timeout=60)
    stack = h.Stack(front, tokens, hub=hub)

    def call(method, path, body=None, token="admin", expect=200, **kw):
        r = stack.request(method, path, body=body, token=token, timeout=SLOW, **kw)
        assert r.status == expect, "%s %s -> %r (wanted %d)" % (method, path, r, expect)
        return r

    def publish(route, **body):
        return call("POST", "/api/sse/" + route, body).data

    def stream(user_id, **kw):
        s = stack.open_stream(user_id=user_id, timeout=SLOW, **kw)
        return s

    a1, a2 = stream(1), stream(1)
    b = stream("bob")
    c2 = stream(2)
    direct = fcgi.FcgiRequest(hub.listen, uri="/sse/stream", headers={"Authorization": "Bearer " + tokens.user(3)},
                           timeout=SLOW)
    assert direct.read(lambda r: b"event: connected" in r.stdout, SLOW), direct.response

    # every kind of publish
    d = publish("broadcast", event="news", data={"t": "hello", "n": [1, 2.5, None, True]}, id="m-1", retry=2500)
    assert d["recipients"] == 5, d
    assert publish("send-to-user", user_id=1, event="to-user", data="one")["recipients"] == 2
    assert publish("send-to-user", user_id="bob", event="to-user", data={"who": "bob"})["recipients"] == 1
    assert publish("send-to-client", client_id=c2.client_id, event="to-client", data=[1])["recipients"] == 1
    assert publish("send-to-user", user_id="nobody", event="e", data=1)["recipients"] == 0
    publish("broadcast", event="news", data={"t": "second"})
    for s, want in ((a1, ["news", "to-user", "news"]), (a2, ["news", "to-user", "news"]),
                    (b, ["news", "to-user", "news"]), (c2, ["news", "to-client", "news"])):
        got = []
        for _ in want:
            ev = s.next_event(SLOW)
            assert ev is not None, "client %s got %r, wanted %r" % (s.client_id, got, want)
            got.append(ev.type)
        assert got == want, (s.client_id, got)
    assert direct.read(lambda r: r.stdout.count(b"event: news") == 2, SLOW), direct.response.stdout[-500:]

    # replay after a Last-Event-ID, stats, metrics, health
    replay = stream(1, headers={"Last-Event-ID": "m-1"})
    assert replay.connected.json().get("resumed") is True, replay.connected
    kinds = [replay.next_event(SLOW).type for _ in range(2)]
    assert kinds == ["to-user", "news"], kinds
    stats = call("GET", "/api/sse/stats").data
    assert stats["total_clients"] == 6, stats
    assert b"sse_messages_published_total" in call("GET", "/metrics").body
    call("GET", "/api/sse/health", token=None)

    # bad requests
    call("POST", "/api/sse/broadcast", '{"event":"e","data":', expect=400)
    call("POST", "/api/sse/broadcast", '{"event":"e","data":1} trailing', expect=400)
    call("POST", "/api/sse/broadcast", "[1,2]", expect=400)
    call("POST", "/api/sse/broadcast", {"event": "a\nb", "data": 1}, expect=400)
    call("POST", "/api/sse/broadcast", {"event": "e"}, expect=400)
    call("POST", "/api/sse/send-to-user", {"event": "e", "data": 1}, expect=400)
    call("POST", "/api/sse/send-to-client", {"client_id": "nope", "event": "e", "data": 1}, expect=400)
    call("POST", "/api/sse/broadcast", {"event": "e", "data": "x" * 5000}, expect=413)
    call("POST", "/api/sse/broadcast", b"\xff\xfe{}", expect=400)
    call("GET", "/api/sse/stats", token=None, expect=401)
    call("GET", "/api/sse/stats", token="not.a.token", expect=401)
    call("GET", "/api/sse/stats", token=tokens.user(1, exp_in=-3600), expect=401)
    call("GET", "/api/sse/stats", token=tokens.user(1), expect=403)
    call("GET", "/api/sse/nope", expect=404)
    call("GET", "/api/sse/broadcast", expect=405)
    call("POST", "/api/sse/stats", {}, expect=405)
    r = h.SSEStream(stack.host, stack.port, token="bad.token.here", timeout=SLOW)
    assert r.status == 401, (r.status, r.body)
    r.close()

    # a token that expires while its stream is open (--jwt-leeway 0: the hub
    # ends a stream at exp + leeway); a slow consumer closed
    # with messages still queued (--max-queue-bytes 4096, straight on the
    # socket so no front server buffers for it)
    expiring = stream(4, token=tokens.user(4, exp_in=2))
    slow = fcgi.FcgiRequest(hub.listen, uri="/sse/stream", headers={"Authorization": "Bearer " + tokens.user("slow")},
                         timeout=SLOW)
    assert slow.read(lambda r: b"event: connected" in r.stdout, SLOW), slow.response
    for i in range(150):
        call("POST", "/api/sse/send-to-user", {"user_id": "slow", "event": "bulk", "data": "z" * 3500})
        if i % 10 == 9 and "event=slow_consumer" in hub.log():
            break
    assert "event=slow_consumer" in hub.log(), "the slow consumer was not closed"
    slow.close()
    ev = expiring.wait_event("token_expired", SLOW)
    expiring.close()

    # disconnect by user and by client, a client that leaves, raw FastCGI abuse
    assert call("POST", "/api/sse/disconnect", {"user_id": 1, "reason": "logout"}).data["closed"] == 3
    for s in (a1, a2, replay):
        ev = s.wait_event("disconnect", SLOW)
        assert ev.json() == {"reason": "logout"}, ev
    assert call("POST", "/api/sse/disconnect", {"client_id": b.client_id}).data["closed"] == 1
    b.wait_event("disconnect", SLOW)
    c2.close()
    c = fcgi.FcgiConnection(hub.listen, timeout=SLOW)
    c.send(b"garbage that is not FastCGI")
    c.read_until_eof(SLOW)
    c.close()
    h.wait_until(lambda: call("GET", "/api/sse/stats").data["total_clients"] == 1, SLOW,
                 interval=0.2, message="only the direct stream left")
    stack.close_streams()

    # SIGTERM with the direct stream still open
    rc = hub.stop(timeout=120)
    direct.read_to_end(timeout=SLOW)
    direct.close()
    report = vg_log.read_text(errors="replace") if vg_log.exists() else "<no valgrind log>"
    summary = re.findall(r"ERROR SUMMARY: \d+ errors.*", report)
    assert rc == 0, "valgrind/ssehub exit status %r (99: valgrind found errors; None: killed)\n%s" % (
        rc, h.tail(str(vg_log), 8000))
    assert summary and summary[-1].startswith("ERROR SUMMARY: 0 errors"), (
        "valgrind: %r\n%s" % (summary, h.tail(str(vg_log), 8000)))
    assert direct.response.end == (0, fcgi.REQUEST_COMPLETE), (
        "direct stream not ended with END_REQUEST: %r" % direct.response.records)
