"""GET /sse/stream: the connected event, token sources, pings."""

import time

import pytest

import ssehub_harness as h


def test_connected_event(stack):
    before = time.time()
    s = stack.open_stream(user_id=1, wait_connected=False)
    assert s.status == 200, (s.status, s.body)
    assert s.header("content-type").split(";")[0].strip() == "text/event-stream", s.header_list
    assert s.header("cache-control") == "no-cache", s.header_list

    first = s.next_block(3)
    assert first is not None, "no retry block within 3 s"
    assert first.fields == [("retry", "3000")] and not first.dispatched, first

    ev = s.next_block(3)
    assert ev is not None and ev.dispatched, "no connected event within 3 s: %r" % ev
    assert ev.type == "connected"
    assert ev.field_names() == ["event", "data"], "connected must carry no id/retry line: %r" % ev.fields
    data = ev.json()
    assert set(data) == {"client_id", "timestamp"}, data
    assert h.is_uuid(data["client_id"]), data
    ts = data["timestamp"]
    assert isinstance(ts, int) and not isinstance(ts, bool), data
    assert before - 2 <= ts <= time.time() + 2, (ts, before)

    other = stack.open_stream(user_id=1)
    assert other.client_id != data["client_id"]


@pytest.mark.ssehub_args("--retry", "1234")
def test_retry_option(stack):
    s = stack.open_stream(user_id=1, wait_connected=False)
    assert s.first_retry() == 1234
    assert s.parser.reconnection_time == 1234


def _open_with(stack, source, token):
    if source == "header":
        return stack.open_stream(token=token, wait_connected=False)
    if source == "cookie":
        return stack.open_stream(cookie="theme=dark; token=%s; lang=en" % token, wait_connected=False)
    if source == "query":
        return stack.open_stream(path="/sse/stream?foo=bar&token=%s&x=1" % token, wait_connected=False)
    raise ValueError(source)


@pytest.mark.parametrize("source", ["header", "cookie", "query"])
def test_token_source(stack, source):
    s = _open_with(stack, source, stack.tokens.user(7))
    assert s.status == 200 and s.is_event_stream(), (s.status, s.body)
    cid = s.wait_event("connected").json()["client_id"]
    d = stack.publish("send-to-user", user_id=7, event="hello", data={"via": source})
    assert d["recipients"] == 1
    ev = s.next_event(3)
    assert ev is not None and (ev.type, ev.json()) == ("hello", {"via": source}), ev
    assert stack.stats() == {"total_clients": 1, "user_clients": {"7": 1}}
    assert h.is_uuid(cid)


def test_token_source_precedence(stack):
    good = stack.tokens.user(5)
    bad = stack.tokens.user(5, key=b"not-the-secret")
    # header first: a valid header wins over a bad cookie and a bad query token
    s = stack.open_stream(token=good, cookie="token=" + bad, path="/sse/stream?token=" + bad,
                          wait_connected=False)
    assert s.status == 200, (s.status, s.body)
    # the first present source is the one used: a bad header is not rescued by a good cookie
    s = stack.open_stream(token=bad, cookie="token=" + good, wait_connected=False)
    assert (s.status, s.json and s.json["error"]["code"]) == (401, "invalid_token"), (s.status, s.body)
    # cookie before query
    s = stack.open_stream(cookie="token=" + bad, path="/sse/stream?token=" + good, wait_connected=False)
    assert (s.status, s.json and s.json["error"]["code"]) == (401, "invalid_token"), (s.status, s.body)
    s = stack.open_stream(cookie="token=" + good, path="/sse/stream?token=" + bad, wait_connected=False)
    assert s.status == 200, (s.status, s.body)


@pytest.mark.ssehub_args("--ping-interval", "1")
def test_ping_events(stack):
    s = stack.open_stream(user_id=1)
    start = time.time()
    events = s.events_during(3.3)
    pings = [e for e in events if e.type == "ping"]
    assert len(pings) >= 2, "expected >= 2 pings in 3.3 s with --ping-interval 1, got %r" % events
    assert [e for e in events if e.type != "ping"] == []
    for p in pings:
        assert p.field_names() == ["event", "data"], "ping must carry no id line: %r" % p.fields
        data = p.json()
        assert list(data) == ["timestamp"], data
        assert isinstance(data["timestamp"], int) and not isinstance(data["timestamp"], bool)
        assert start - 2 <= data["timestamp"] <= time.time() + 2, data
    # pings never disturb lastEventId
    assert s.parser.last_event_id == ""
