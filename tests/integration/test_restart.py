"""Stopping and restarting (issue 4): SIGTERM spreads the clients'
reconnect delays; --history-file carries the history (and so Last-Event-ID
replay) across a restart on the same socket. Through a real nginx."""

import signal
import time

import pytest

import ssehub_harness as h
from delivery_support import connected_data, expect_event, front_kind, read_events, summary  # noqa: F401

SPREAD = 5000
STREAMS = 20


@pytest.mark.ssehub_args("--shutdown-spread", str(SPREAD), "--retry", "3000")
def test_sigterm_spreads_reconnect_delays(stack):
    streams = [stack.open_stream(user_id=i % 5) for i in range(STREAMS)]
    stack.wait_stats({"total_clients": STREAMS, "user_clients": {str(u): 4 for u in range(5)}})
    d = stack.broadcast("before-stop", 1)
    for s in streams:
        expect_event(s, "before-stop", 1, d["id"])

    t0 = time.monotonic()
    stack.hub.process.proc.send_signal(signal.SIGTERM)
    limit = 2.5 + SPREAD / 1000.0
    delays = []
    for s in streams:
        blocks = s.read_to_end(timeout=max(0.1, limit - (time.monotonic() - t0)))
        retries = [b.retry for b in blocks if b.retry is not None]
        assert len(retries) == 1, "client %s: expected one retry block before the end, got %r" % (s.client_id, blocks)
        others = [b for b in blocks if b.dispatched and b.type != "ping"]
        assert not others, "client %s: unexpected events at shutdown: %r" % (s.client_id, others)
        assert not s.reset and s.clean_end, "client %s: no clean end (reset=%s eof=%s)" % (
            s.client_id, s.reset, s.eof)
        assert s.parser.reconnection_time == retries[0]
        delays.append(retries[0])
    rc = stack.hub.process.wait(max(0.1, limit - (time.monotonic() - t0)))
    assert rc == 0, "exit status %r after SIGTERM (None: still running %.1fs later)" % (rc, limit)

    assert all(0 <= r <= SPREAD for r in delays), "retry values outside [0, %d]: %r" % (SPREAD, delays)
    assert len(set(delays)) > 1, "every stream got the same retry value %r: no spread" % delays[0]
    # 20 values drawn from [0, 5000]: a handful of distinct ones at the very least
    assert len(set(delays)) >= 5, "only %d distinct retry values: %r" % (len(set(delays)), sorted(delays))


def test_sigterm_without_spread_option_defaults_to_5000(procs, tokens):
    """Without --shutdown-spread (default 5000) the values are spread too."""
    hub = procs.hub(name="dflt", defaults=False, extra_args=[
        "--listen", "unix:%s" % (procs.workdir / "dflt.sock"), "--socket-mode", "0666",
        "--jwt-secret-file", procs.secret_file, "--log-level", "debug"])
    front = procs.front("nginx", hub=hub)
    st = h.Stack(front, tokens, hub)
    streams = [st.open_stream(user_id=i) for i in range(10)]
    hub.process.proc.send_signal(signal.SIGTERM)
    delays = []
    for s in streams:
        blocks = s.read_to_end(timeout=8)
        delays += [b.retry for b in blocks if b.retry is not None]
    assert hub.process.wait(8) == 0
    assert len(delays) == 10 and all(0 <= r <= 5000 for r in delays), delays
    assert len(set(delays)) > 1, delays


# --------------------------------------------------------------------------
# --history-file


def _start_hub(procs, name, listen, history):
    return procs.hub(name=name, listen=listen, extra_args=["--history-file", str(history)])


def _stop(hub):
    rc = hub.stop(timeout=5)
    assert rc == 0, "%s: exit status %r after SIGTERM\n%s" % (hub.name, rc, h.tail(hub.log_path))


def test_restart_with_history_file(procs, tokens, workdir):
    history = workdir / "history.dat"
    hub1 = _start_hub(procs, "hub1", None, history)
    front = procs.front("nginx", hub=hub1)
    st = h.Stack(front, tokens, hub1)

    s = st.open_stream(user_id=1)
    other = st.open_stream(user_id=2)
    visible = []           # what user 1 may see, in publish order

    def pub(route, event, data, mine, **kw):
        d = st.publish(route, event=event, data=data, **kw)
        item = (event, data, d["id"])
        if mine:
            visible.append(item)
        return item

    pub("broadcast", "a", 1, True)
    pub("send-to-user", "u", 2, True, user_id=1)
    noted = visible[-1][2]           # the id the client will come back with
    pub("send-to-user", "u2", 3, False, user_id=2)
    pub("broadcast", "b", {"x": [1, "\u00e9"]}, True, retry=1234)
    private = pub("send-to-client", "c", 5, False, client_id=s.client_id)   # never replayed
    pub("send-to-user", "u", 6, True, user_id="1", id="custom/6")
    got = read_events(s, 5, timeout=3)
    assert summary(got) == visible[:3] + [private] + visible[3:], summary(got)
    live_fields = {e.id: e.fields for e in got}
    last_seen = s.parser.last_event_id
    assert last_seen == "custom/6"
    old_ids = {v[2] for v in visible}

    # stop: the stream ends, the history goes to the file
    _stop(hub1)
    s.read_to_end(timeout=3)
    other.read_to_end(timeout=3)
    assert history.exists() and history.stat().st_size > 0, "no history file written on stop"
    assert not hub1.socket_path.exists()
    r = h.http_call(front, "GET", "/api/sse/health")
    assert r.status == 502, "nginx with no hub behind it: %r" % r

    # a new process on the same socket, same file
    hub2 = _start_hub(procs, "hub2", hub1.listen, history)
    st.hub = hub2
    back = st.open_stream(user_id=1, headers={"Last-Event-ID": noted})
    assert connected_data(back).get("resumed") is True, (
        "Last-Event-ID %r from before the restart: %r" % (noted, connected_data(back)))
    later = visible[2:]
    got = read_events(back, len(later), timeout=3)
    assert summary(got) == later, "replay after a restart"
    for e in got:
        assert e.fields == live_fields[e.id], "replayed %r differs from the original %r" % (e.fields, live_fields[e.id])
    assert got[0].retry == 1234

    # the client that saw everything resumes with nothing to catch up on
    caught_up = st.open_stream(user_id=1, path="/sse/stream?last_event_id=custom%2F6")
    assert connected_data(caught_up).get("resumed") is True, connected_data(caught_up)
    # user 2 resumes from the first message and gets only what user 2 may see
    u2 = st.open_stream(user_id=2, headers={"Last-Event-ID": visible[0][2]})
    assert connected_data(u2).get("resumed") is True
    got2 = read_events(u2, 2, timeout=3)
    assert [(e.type, e.json()) for e in got2] == [("u2", 3), ("b", {"x": [1, "\u00e9"]})], summary(got2)

    # live messages on the new process: new, unique ids
    d = st.broadcast("after", 7)
    assert d["id"] not in old_ids, "id %r reused after the restart" % d["id"]
    for x in (back, caught_up, u2):
        expect_event(x, "after", 7, d["id"])
    st.check_marker([back, caught_up, u2])

    # a second restart keeps both processes' messages
    st.close_streams()
    _stop(hub2)
    hub3 = _start_hub(procs, "hub3", hub1.listen, history)
    st.hub = hub3
    again = st.open_stream(user_id=1, headers={"Last-Event-ID": noted})
    assert connected_data(again).get("resumed") is True, connected_data(again)
    got = read_events(again, len(later) + 1, timeout=3)
    assert summary(got[:len(later)]) == later, summary(got)
    assert (got[-1].type, got[-1].json(), got[-1].id) == ("after", 7, d["id"]), got[-1]
    # the markers of check_marker above were broadcasts too
    ev = again.next_event(3)
    assert ev is not None and ev.type == "marker", ev
    st.check_marker([again])
    st.close_streams()
    _stop(hub3)


def test_restart_without_history_file_forgets(procs, tokens):
    """Without --history-file an id from the previous process is unknown:
    resumed false, and nothing is replayed."""
    hub1 = procs.hub(name="nf1")
    front = procs.front("nginx", hub=hub1)
    st = h.Stack(front, tokens, hub1)
    m = st.broadcast("x", 1)["id"]
    st.broadcast("x", 2)
    _stop(hub1)
    hub2 = procs.hub(name="nf2", listen=hub1.listen)
    st.hub = hub2
    s = st.open_stream(user_id=1, headers={"Last-Event-ID": m})
    assert connected_data(s).get("resumed") is False, connected_data(s)
    st.check_marker([s])
    st.close_streams()
    _stop(hub2)


def test_history_file_limits_apply_on_load(procs, tokens, workdir):
    """The loaded history obeys the new process's --history-size and
    --history-ttl (ages survive the restart); SIGINT saves like SIGTERM; a
    damaged file is skipped, not fatal."""
    history = workdir / "history.dat"
    hub = procs.hub(name="l1", extra_args=["--history-file", history])
    front = procs.front("nginx", hub=hub)
    st = h.Stack(front, tokens, hub)
    ids = [st.broadcast("e", n)["id"] for n in range(10)]
    _stop(hub)

    def resume(i):
        s = st.open_stream(user_id=1, headers={"Last-Event-ID": i})
        data = connected_data(s)
        s.close()
        return data.get("resumed")

    # only the newest 3 survive --history-size 3
    hub = procs.hub(name="l2", listen=hub.listen, extra_args=["--history-file", history, "--history-size", "3"])
    st.hub = hub
    assert resume(ids[6]) is False, "ids[6] is the 4th newest: not kept with --history-size 3"
    s = st.open_stream(user_id=1, headers={"Last-Event-ID": ids[7]})
    assert connected_data(s).get("resumed") is True
    got = read_events(s, 2, timeout=3)
    assert [(e.id, e.json()) for e in got] == [(ids[8], 8), (ids[9], 9)], summary(got)
    st.check_marker([s])
    st.close_streams()
    rc = hub.stop(sig=signal.SIGINT, timeout=5)
    assert rc == 0, "exit status %r after SIGINT" % rc

    # SIGINT saved it (3 messages + the marker); now let it age past a 1 s ttl
    hub = procs.hub(name="l3", listen=hub.listen, extra_args=["--history-file", history, "--history-ttl", "1"])
    st.hub = hub
    assert resume(ids[8]) is True, "history saved on SIGINT"
    _stop(hub)
    time.sleep(2.2)
    hub = procs.hub(name="l4", listen=hub.listen, extra_args=["--history-file", history, "--history-ttl", "1"])
    st.hub = hub
    assert resume(ids[8]) is False, "messages older than --history-ttl 1 came back from the file"
    _stop(hub)

    # damaged file: the hub starts, knows nothing, works
    history.write_bytes(b"not a history file\n\x00\xff{{{\n")
    hub = procs.hub(name="l5", listen=hub.listen, extra_args=["--history-file", history])
    st.hub = hub
    assert resume(ids[9]) is False
    s = st.open_stream(user_id=1)
    d = st.broadcast("fresh", 1)
    expect_event(s, "fresh", 1, d["id"])
    st.close_streams()
    _stop(hub)
