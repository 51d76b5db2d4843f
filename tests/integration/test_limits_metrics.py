"""The disconnect API, --max-clients / --max-clients-per-user, /metrics and
the health route (issue 4). Through a real nginx; every metric value is
checked against what the test did on a fresh hub."""

import time
import uuid

import pytest

import fcgi_client as fcgi
from delivery_support import (connected_data, expect_event, front_kind, get_metrics, metric,  # noqa: F401
                              read_events, summary, wait_gone)

AUTH_REASONS = ("missing_token", "invalid_token", "token_expired", "token_not_yet_valid", "wrong_algorithm",
                "wrong_issuer", "wrong_audience", "missing_user")


def _ends_after_disconnect(stream, reason, timeout=3):
    """The stream's remaining events end with `disconnect` {"reason": reason}
    (None: any string) and then the response ends cleanly. Returns the
    events before it."""
    blocks = stream.read_to_end(timeout=timeout)
    events = [b for b in blocks if b.dispatched and b.type != "ping"]
    assert events, "client %s ended without a disconnect event (blocks %r)" % (stream.client_id, blocks)
    last = events[-1]
    assert last.type == "disconnect", "client %s: last event %r, not disconnect (all: %r)" % (
        stream.client_id, last, events)
    data = last.json()
    assert set(data) == {"reason"} and isinstance(data["reason"], str), data
    if reason is not None:
        assert data["reason"] == reason, data
    assert "id" not in last.field_names(), "the disconnect event must not move lastEventId: %r" % last.fields
    assert not stream.reset, "client %s: reset instead of a clean end" % stream.client_id
    assert stream.clean_end, "client %s: no chunked terminator after the disconnect event" % stream.client_id
    return events[:-1]


# --------------------------------------------------------------------------
# disconnect


def test_disconnect_by_user(stack):
    tok = stack.tokens
    u1 = [stack.open_stream(token=tok.user(1)), stack.open_stream(token=tok.user("1")),
          stack.open_stream(token=tok.user(1))]
    u2 = stack.open_stream(user_id=2)
    u10 = stack.open_stream(user_id=10)
    stack.wait_stats({"total_clients": 5, "user_clients": {"1": 3, "2": 1, "10": 1}})

    # a message published just before the disconnect is delivered before it
    d = stack.publish("send-to-user", user_id=1, event="last-words", data={"n": 1})
    r = stack.post("/api/sse/disconnect", {"user_id": 1, "reason": "logout"})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 3}}, r
    for s in u1:
        before = _ends_after_disconnect(s, "logout")
        assert summary(before) == [("last-words", {"n": 1}, d["id"])], summary(before)
    stack.wait_stats({"total_clients": 2, "user_clients": {"2": 1, "10": 1}})
    stack.check_marker([u2, u10])

    # nobody left for user 1; user 1 may come back
    r = stack.post("/api/sse/disconnect", {"user_id": "1", "reason": "again"})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 0}}, r
    again = stack.open_stream(user_id=1)
    stack.check_marker([again, u2, u10])

    # user id as a string, no reason: some reason string is given
    r = stack.post("/api/sse/disconnect", {"user_id": "10"})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 1}}, r
    assert _ends_after_disconnect(u10, None) == []
    stack.wait_stats({"total_clients": 2, "user_clients": {"1": 1, "2": 1}})
    stack.check_marker([again, u2])


def test_disconnect_by_client(stack):
    a = stack.open_stream(user_id=1)
    b = stack.open_stream(user_id=1)
    c = stack.open_stream(user_id=2)
    r = stack.post("/api/sse/disconnect", {"client_id": a.client_id, "reason": "kicked"})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 1}}, r
    assert _ends_after_disconnect(a, "kicked") == []
    stack.wait_stats({"total_clients": 2, "user_clients": {"1": 1, "2": 1}})
    stack.check_marker([b, c])

    r = stack.post("/api/sse/disconnect", {"client_id": a.client_id})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 0}}, r
    r = stack.post("/api/sse/disconnect", {"client_id": str(uuid.uuid4())})
    assert r.status == 200 and r.json == {"success": True, "data": {"closed": 0}}, r

    # refused requests close nothing
    for body in ({}, {"reason": "x"}, {"user_id": 1, "client_id": b.client_id}, {"user_id": [1]},
                 {"client_id": 5}, {"user_id": 1, "reason": 7}):
        r = stack.post("/api/sse/disconnect", body)
        assert r.status == 400 and r.error_code == "invalid_field", "%r -> %r" % (body, r)
    r = stack.post("/api/sse/disconnect", "{\"user_id\": 1")
    assert r.status == 400 and r.error_code == "invalid_json", r
    r = stack.post("/api/sse/disconnect", {"user_id": 1}, token=stack.tokens.user(1))
    assert r.status == 403 and r.error_code == "forbidden", r
    r = stack.post("/api/sse/disconnect", {"user_id": 1}, token=None)
    assert r.status == 401 and r.error_code == "missing_token", r
    r = stack.request("GET", "/api/sse/disconnect")
    assert r.status == 405 and "POST" in (r.header("Allow") or ""), r
    stack.wait_stats({"total_clients": 2, "user_clients": {"1": 1, "2": 1}})
    stack.check_marker([b, c])


# --------------------------------------------------------------------------
# limits


def _refused(stack, user_id, status, code):
    s = stack.open_stream(user_id=user_id, wait_connected=False)
    assert s.status == status, "stream for user %r: expected %d %s, got %s %r" % (
        user_id, status, code, s.status, s.body[:300])
    assert not s.is_event_stream(), s.header_list
    assert s.json and s.json.get("success") is False and s.json["error"]["code"] == code, s.body[:300]
    s.close()


@pytest.mark.ssehub_args("--max-clients", "3")
def test_max_clients(stack):
    streams = [stack.open_stream(user_id=u) for u in (1, 2, 2)]
    for _ in range(2):
        _refused(stack, 3, 503, "too_many_clients")
    _refused(stack, 1, 503, "too_many_clients")
    # the refused streams are nowhere
    stack.wait_stats({"total_clients": 3, "user_clients": {"1": 1, "2": 2}})
    d = stack.broadcast("count", 1)
    assert d["recipients"] == 3, d
    for s in streams:
        expect_event(s, "count", 1, d["id"])

    # a slot freed is a slot available
    streams[1].close()
    wait_gone(stack, 2)
    s = stack.open_stream(user_id=3)
    stack.wait_stats({"total_clients": 3, "user_clients": {"1": 1, "2": 1, "3": 1}})
    _refused(stack, 4, 503, "too_many_clients")
    stack.check_marker([streams[0], streams[2], s])


@pytest.mark.ssehub_args("--max-clients-per-user", "2")
def test_max_clients_per_user(stack):
    a = [stack.open_stream(token=stack.tokens.user(1)), stack.open_stream(token=stack.tokens.user("1"))]
    _refused(stack, 1, 429, "too_many_user_clients")
    _refused(stack, "1", 429, "too_many_user_clients")
    b = [stack.open_stream(user_id=2), stack.open_stream(user_id=2)]
    _refused(stack, 2, 429, "too_many_user_clients")
    c = stack.open_stream(user_id=11)     # "11" is not "1"
    stack.wait_stats({"total_clients": 5, "user_clients": {"1": 2, "2": 2, "11": 1}})
    d = stack.publish("send-to-user", user_id=1, event="mine", data=1)
    assert d["recipients"] == 2, d

    a[0].close()
    wait_gone(stack, 4)
    a.append(stack.open_stream(user_id=1))
    _refused(stack, 1, 429, "too_many_user_clients")
    stack.wait_stats({"total_clients": 5, "user_clients": {"1": 2, "2": 2, "11": 1}})
    expect_event(a[1], "mine", 1, d["id"])
    stack.check_marker(a[1:] + b + [c])


# --------------------------------------------------------------------------
# metrics


def _all_counters(samples):
    return {k: v for k, v in samples.items() if k[0] not in ("sse_uptime_seconds", "sse_requests_total")}


@pytest.mark.ssehub_args("--max-clients-per-user", "2", "--ping-interval", "60")
def test_metrics_match_what_the_test_did(stack):
    started = time.monotonic()
    m = get_metrics(stack)
    expected = {
        ("sse_active_connections", ()): 0,
        ("sse_connections_total", ()): 0,
        ("sse_messages_sent_total", ()): 0,
        ("sse_messages_published_total", (("target", "broadcast"),)): 0,
        ("sse_messages_published_total", (("target", "user"),)): 0,
        ("sse_messages_published_total", (("target", "client"),)): 0,
        ("sse_messages_replayed_total", ()): 0,
        ("sse_slow_consumer_closes_total", ()): 0,
        ("sse_disconnects_total", ()): 0,
        ("sse_rejected_total", ()): 0,
        ("sse_history_messages", ()): 0,
    }
    for reason in AUTH_REASONS:
        expected[("sse_auth_failures_total", (("reason", reason),))] = 0

    def check(what, history_alternatives=None):
        got = get_metrics(stack)
        uptime = metric(got, "sse_uptime_seconds")
        assert 0 <= uptime <= time.monotonic() - started + 2, "uptime %r after %.1fs" % (
            uptime, time.monotonic() - started)
        have = _all_counters(got)
        want = dict(expected)
        if history_alternatives and have.get(("sse_history_messages", ())) in history_alternatives:
            want[("sse_history_messages", ())] = have[("sse_history_messages", ())]
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        assert not diff, "%s: metrics (got, expected) differ: %r" % (what, diff)
        return got

    check("fresh hub")

    a1 = stack.open_stream(user_id=1)
    a2 = stack.open_stream(user_id=1)
    b = stack.open_stream(user_id=2)
    expected[("sse_active_connections", ())] = 3
    expected[("sse_connections_total", ())] = 3
    _refused(stack, 1, 429, "too_many_user_clients")
    expected[("sse_rejected_total", ())] = 1

    # token failures on the stream route
    for token, reason in ((None, "missing_token"), ("not.a.token", "invalid_token"),
                          (stack.tokens.user(1, exp_in=-3600), "token_expired"),
                          (stack.tokens.user(1, key=b"wrong-key-wrong-key-wrong-key-32"), "invalid_token")):
        s = stack.open_stream(token=token, wait_connected=False)
        assert s.status == 401, (reason, s.status, s.body)
        s.close()
        expected[("sse_auth_failures_total", (("reason", reason),))] += 1
    check("after 3 streams, 1 refused, 4 bad tokens")

    # publishes: 2 broadcasts (3 streams), user 1 (2 streams), user 99
    # (nobody), one client
    ids = []
    for n in range(2):
        d = stack.broadcast("b", n)
        assert d["recipients"] == 3
        ids.append(d["id"])
    d = stack.publish("send-to-user", user_id=1, event="u", data=2)
    assert d["recipients"] == 2
    ids.append(d["id"])
    assert stack.publish("send-to-user", user_id=99, event="u", data=3)["recipients"] == 0
    assert stack.publish("send-to-client", client_id=b.client_id, event="c", data=4)["recipients"] == 1
    for s, n in ((a1, 3), (a2, 3), (b, 3)):
        read_events(s, n, timeout=3)
    expected[("sse_messages_published_total", (("target", "broadcast"),))] = 2
    expected[("sse_messages_published_total", (("target", "user"),))] = 2
    expected[("sse_messages_published_total", (("target", "client"),))] = 1
    expected[("sse_messages_sent_total", ())] = 2 * 3 + 2 + 1
    # whether a send-to-client message is kept (it is never replayed) is the hub's business
    expected[("sse_history_messages", ())] = 4
    check("after 5 publishes", history_alternatives=(4, 5))

    # replay: user 1 comes back after the first broadcast: 2 messages replayed
    a2.close()
    wait_gone(stack, 2)
    r = stack.open_stream(user_id=1, headers={"Last-Event-ID": ids[0]})
    assert connected_data(r).get("resumed") is True
    got = read_events(r, 2, timeout=3)
    assert [e.id for e in got] == ids[1:3], summary(got)
    expected[("sse_connections_total", ())] = 4
    expected[("sse_messages_replayed_total", ())] = 2
    m = get_metrics(stack)
    sent = metric(m, "sse_messages_sent_total")
    # a replayed message may or may not count as "sent" as well; either way exactly
    assert sent in (9, 11), "sse_messages_sent_total %r after 9 live deliveries and 2 replayed" % sent
    expected[("sse_messages_sent_total", ())] = sent
    check("after a replay of 2", history_alternatives=(4, 5))

    # the disconnect API closes user 2's stream
    r2 = stack.post("/api/sse/disconnect", {"user_id": 2})
    assert r2.json == {"success": True, "data": {"closed": 1}}, r2
    _ends_after_disconnect(b, None)
    wait_gone(stack, 2)
    expected[("sse_disconnects_total", ())] = 1
    expected[("sse_active_connections", ())] = 2
    m = check("after disconnecting user 2", history_alternatives=(4, 5))
    assert metric(m, "sse_active_connections") == stack.stats()["total_clients"]

    # health and metrics calls themselves count no auth failure
    for _ in range(3):
        assert stack.request("GET", "/api/sse/health", token=None).status == 200
    check("after health calls", history_alternatives=(4, 5))


@pytest.mark.ssehub_args("--max-queue-bytes", "65536", "--max-message-bytes", "40000")
def test_slow_consumer_is_closed_and_counted(stack, procs, tokens):
    """A stream that does not read (straight on the FastCGI socket, so no
    front-server buffer hides it) is closed once its queue passes
    --max-queue-bytes; a stream that reads through nginx gets everything."""
    fast = stack.open_stream(user_id=1)
    slow = fcgi.FcgiRequest(stack.hub.listen, uri="/sse/stream",
                            headers={"Authorization": "Bearer " + tokens.user(2)})
    assert slow.read(lambda r: b"event: connected" in r.stdout, 3), slow.response
    stack.wait_stats({"total_clients": 2, "user_clients": {"1": 1, "2": 1}})
    blob = "x" * 30000
    try:
        sent = 0
        for n in range(40):            # 1.2 MB: more than the socket buffers plus 64 KB
            d = stack.broadcast("big", {"n": n, "blob": blob})
            sent += 1
            ev = fast.next_event(3)
            assert ev is not None and ev.json()["n"] == n and ev.id == d["id"], ev
        stack.wait_stats({"total_clients": 1, "user_clients": {"1": 1}}, timeout=3)
        m = get_metrics(stack)
        assert metric(m, "sse_slow_consumer_closes_total") == 1, m
        assert metric(m, "sse_active_connections") == 1
    finally:
        slow.close()
    stack.check_marker([fast])


def test_metrics_needs_admin(stack):
    r = stack.request("GET", "/metrics", token=None)
    assert r.status == 401 and r.error_code == "missing_token", r
    r = stack.request("GET", "/metrics", token=stack.tokens.user(1))
    assert r.status == 403 and r.error_code == "forbidden", r
    m = get_metrics(stack)
    assert metric(m, "sse_auth_failures_total", reason="missing_token") == 1
    r = stack.request("POST", "/metrics", body={})
    assert r.status == 405, r


@pytest.mark.ssehub_args("--metrics-public", "yes")
def test_metrics_public(stack):
    r = stack.request("GET", "/metrics", token=None)
    assert r.status == 200, r
    samples = get_metrics(stack, token=None)
    assert metric(samples, "sse_active_connections") == 0
    assert metric(samples, "sse_auth_failures_total", reason="missing_token") == 0


def test_health_without_token(stack):
    for _ in range(2):
        r = stack.request("GET", "/api/sse/health", token=None)
        assert r.status == 200, r
        assert r.json == {"success": True, "data": {"status": "ok"}}, r
        assert (r.header("content-type") or "").startswith("application/json"), r.header("content-type")
    r = stack.request("GET", "/api/sse/health")       # an admin token does no harm
    assert r.status == 200 and r.json == {"success": True, "data": {"status": "ok"}}, r
    m = get_metrics(stack)
    for reason in AUTH_REASONS:
        assert metric(m, "sse_auth_failures_total", reason=reason) == 0, reason
