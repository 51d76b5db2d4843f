"""Fan-out: send-to-user, broadcast, send-to-client."""

import json
import uuid

import pytest

import ssehub_harness as h


def _expect(stream, event, data, msg_id, timeout=3):
    ev = stream.next_event(timeout)
    assert ev is not None, "client %s: no %r event within %ss" % (stream.client_id, event, timeout)
    assert (ev.type, ev.json()) == (event, data), "client %s got %r" % (stream.client_id, ev)
    assert ev.id == msg_id, "id line %r != published id %r" % (ev.id, msg_id)
    return ev


def test_send_to_user(stack):
    tok = stack.tokens
    u1 = [stack.open_stream(token=tok.user(1)), stack.open_stream(token=tok.user("1"))]
    u2 = [stack.open_stream(token=tok.user(2)), stack.open_stream(token=tok.user("2"))]
    u3 = [stack.open_stream(user_id=3)]
    others = u2 + u3
    everyone = u1 + others

    payload = {"n": 1, "text": "h\u00e9llo", "list": [1, 2.5, None, True]}
    d = stack.publish("send-to-user", user_id=1, event="note", data=payload)
    assert d["recipients"] == 2, d
    assert isinstance(d["id"], str) and d["id"], d
    for s in u1:
        _expect(s, "note", payload, d["id"])
    # exactly once for user 1, nothing for users 2 and 3
    stack.check_marker(everyone)

    # user_id as a JSON string reaches the same streams
    d2 = stack.publish("send-to-user", user_id="1", event="note2", data=[1, 2, 3])
    assert d2["recipients"] == 2, d2
    assert d2["id"] != d["id"]
    for s in u1:
        _expect(s, "note2", [1, 2, 3], d2["id"])
    stack.check_marker(everyone)

    d3 = stack.publish("send-to-user", user_id=3, event="only3", data="x")
    assert d3["recipients"] == 1
    _expect(u3[0], "only3", "x", d3["id"])
    stack.check_marker(everyone)

    d4 = stack.publish("send-to-user", user_id=99, event="nobody", data=None)
    assert d4["recipients"] == 0, d4
    stack.check_marker(everyone)


def test_broadcast(stack):
    streams = [stack.open_stream(user_id=u) for u in (1, 1, 2, "alice")]
    data = {"a": [1, 2], "b": None, "s": "x/y", "u": "\u2603"}
    d = stack.broadcast("news", data)
    assert d["recipients"] == len(streams), d
    assert isinstance(d["id"], str) and d["id"], d
    for s in streams:
        ev = _expect(s, "news", data, d["id"])
        assert ev.field_names() == ["id", "event", "data"], ev.fields
        # as the publisher wrote it (the harness sends json.dumps: "\u2603"
        # escaped), less the whitespace between tokens: nothing re-serialised
        assert ev.data == json.dumps(data, separators=(",", ":")), (
            "data must be the publisher's JSON, compact, on one line: %r" % ev.data)
        assert ev.last_event_id == d["id"]

    # the publisher's own id is kept
    d2 = stack.broadcast("news", 5, id="pub-42")
    assert d2 == {"id": "pub-42", "recipients": len(streams)}, d2
    for s in streams:
        ev = _expect(s, "news", 5, "pub-42")
        assert ev.last_event_id == "pub-42"

    # generated ids are unique
    d3 = stack.broadcast("news", 6)
    assert d3["id"] not in (d["id"], "pub-42")
    for s in streams:
        _expect(s, "news", 6, d3["id"])
    stack.check_marker(streams)


def test_broadcast_retry_field(stack):
    s = stack.open_stream(user_id=1)
    d = stack.broadcast("slow", {"k": 1}, retry=5000)
    ev = _expect(s, "slow", {"k": 1}, d["id"])
    assert ev.retry == 5000 and ("retry", "5000") in ev.fields, ev.fields


def test_send_to_client(stack):
    a = stack.open_stream(user_id=1)
    b = stack.open_stream(user_id=1)
    c = stack.open_stream(user_id=2)
    d = stack.publish("send-to-client", client_id=b.client_id, event="private", data={"x": 1})
    assert d["recipients"] == 1, d
    _expect(b, "private", {"x": 1}, d["id"])
    stack.check_marker([a, b, c])

    d = stack.publish("send-to-client", client_id=str(uuid.uuid4()), event="private", data=1)
    assert d["recipients"] == 0, d
    stack.check_marker([a, b, c])


@pytest.mark.ssehub_args("--ping-interval", "1")
def test_stats_exact(stack):
    # nginx closes the upstream connection as soon as the client leaves, and
    # the hub must then drop the stream within 1 s. lighttpd only notices a
    # client that left when it next writes to it, Apache at the second write
    # (test_liveness.py): the 1 s pings provoke those writes.
    removal = 1.0 if stack.front.kind == "nginx" else 2.5
    assert stack.stats() == {"total_clients": 0, "user_clients": {}}
    a1 = stack.open_stream(user_id=1)
    a2 = stack.open_stream(token=stack.tokens.user("1"))
    b = stack.open_stream(user_id=2)
    c = stack.open_stream(user_id="alice")
    stack.wait_stats({"total_clients": 4, "user_clients": {"1": 2, "2": 1, "alice": 1}}, timeout=1.0)

    a2.close()
    stack.wait_stats({"total_clients": 3, "user_clients": {"1": 1, "2": 1, "alice": 1}}, timeout=removal)
    b.close()
    # a user with no stream left is not listed
    stack.wait_stats({"total_clients": 2, "user_clients": {"1": 1, "alice": 1}}, timeout=removal)
    # the departed clients get nothing and the others still get messages
    d = stack.broadcast("after", 1)
    assert d["recipients"] == 2, d
    for s in (a1, c):
        _expect(s, "after", 1, d["id"])
    assert h.is_uuid(a1.client_id)


@pytest.mark.ssehub_args("--max-message-bytes", "400000")
def test_large_message_is_delivered_intact(stack):
    # 200 KB of data: more than one FastCGI record (65535 bytes at most each)
    a = stack.open_stream(user_id=1)
    b = stack.open_stream(user_id=2)
    data = {"blob": "".join(chr(0x61 + i % 26) for i in range(200000)), "tail": "end"}
    d = stack.broadcast("big", data)
    assert d["recipients"] == 2, d
    for s in (a, b):
        _expect(s, "big", data, d["id"], timeout=5)
    stack.check_marker([a, b])


def test_broadcast_to_many_streams(stack):
    streams = [stack.open_stream(user_id=i % 7) for i in range(40)]
    for n in range(3):
        d = stack.broadcast("tick", n)
        assert d["recipients"] == 40, d
    for s in streams:
        got = [(e.type, e.json()) for e in (s.next_event(3) for _ in range(3)) if e is not None]
        assert got == [("tick", 0), ("tick", 1), ("tick", 2)], "client %s: %r" % (s.client_id, got)
    stack.check_marker(streams)
