"""Topics (issue 13) through nginx and lighttpd: subscribe at connect with the
token's topics claim, publish to a topic, server-side subscribe and
unsubscribe, replay, stats and metrics, bad input, and the largest legal
stream request through the shipped front-server examples.

Every "nothing delivered" is checked with Stack.check_marker: the next event
after the action must be a marker broadcast."""

import json
import time
import urllib.parse
import uuid

import pytest

import ssehub_harness as h
from conftest import require_program
from delivery_support import get_metrics, metric, read_events, summary


def topic_path(*topics, extra=""):
    """/sse/stream with one topic= parameter per topic, percent-encoded as
    a browser's URLSearchParams does ("/" -> %2F)."""
    q = urllib.parse.urlencode([("topic", t) for t in topics])
    return "/sse/stream?" + q + extra


def open_topics(stack, user_id, topics, claim=("*",), **kw):
    tok = stack.tokens.user(user_id, topics=list(claim)) if claim is not None else stack.tokens.user(user_id)
    return stack.open_stream(token=tok, path=topic_path(*topics), **kw)


def refused(stack, path, token):
    s = stack.open_stream(token=token, path=path, wait_connected=False)
    assert not s.is_event_stream(), "a stream opened for %s" % path
    return s


def assert_refused(stack, path, token, status, code, front_may_refuse=False):
    """The stream is refused with ssehub's status and error code, or (with
    front_may_refuse, for bytes lighttpd refuses in any URL: %00, %0D, %0A)
    with the front server's own page and the same status."""
    s = refused(stack, path, token)
    if front_may_refuse and stack.front.kind == "lighttpd" and s.json is None:
        assert s.status == status, "%s -> %s %r" % (path, s.status, s.body[:300])
        return None
    assert s.status == status and isinstance(s.json, dict), "%s -> %s %r" % (path, s.status, s.body[:300])
    assert s.json["error"]["code"] == code, s.json
    return s.json["error"]["message"]


def expect(stream, event, data, msg_id=None, timeout=3):
    ev = stream.next_event(timeout)
    assert ev is not None, "client %s: no %r within %ss" % (stream.client_id, event, timeout)
    assert (ev.type, ev.json()) == (event, data), "client %s got %r" % (stream.client_id, ev)
    if msg_id is not None:
        assert ev.id == msg_id, (ev.id, msg_id)
    return ev


def publish(stack, topic, event, data, **kw):
    return stack.publish("publish", topic=topic, event=event, data=data, **kw)


def topic_stats(stack):
    r = stack.request("GET", "/api/sse/stats?topics=1")
    assert r.status == 200, r
    return r.data


def wait_topic_stats(stack, expected, timeout=2.0):
    seen = []

    def check():
        seen[:] = [topic_stats(stack)["topic_clients"]]
        return seen[0] == expected
    try:
        h.wait_until(check, timeout, message="topic_clients")
    except AssertionError:
        raise AssertionError("topic_clients did not become %r; last %r" % (expected, seen)) from None


# ---------------------------------------------------------------- behaviour


def test_subscribe_at_connect_and_publish(stack):
    a = open_topics(stack, 1, ["orders/42", "rooms/ops", "orders/42"], claim=["orders/*", "rooms/ops"])
    b = open_topics(stack, 2, ["orders/42"])
    c = stack.open_stream(user_id=3)
    everyone = [a, b, c]
    assert a.connected.json()["topics"] == ["orders/42", "rooms/ops"], a.connected.json()
    assert b.connected.json()["topics"] == ["orders/42"]
    assert "topics" not in c.connected.json(), "a stream without topics gets the seed's connected event"

    d = publish(stack, "orders/42", "status", {"state": "shipped"})
    assert d["recipients"] == 2 and d["id"], d
    for s in (a, b):
        ev = expect(s, "status", {"state": "shipped"}, d["id"])
        assert ev.field_names() == ["id", "event", "data"], ev.fields
    stack.check_marker(everyone)

    d = publish(stack, "rooms/ops", "alert", "disk", id="ops-1")
    assert d == {"id": "ops-1", "recipients": 1}, d
    expect(a, "alert", "disk", "ops-1")
    stack.check_marker(everyone)

    assert publish(stack, "orders/43", "status", 1)["recipients"] == 0
    assert publish(stack, "nobody/here", "status", 1)["recipients"] == 0
    stack.check_marker(everyone)

    # user and broadcast targets work as before on a stream with topics
    assert stack.publish("send-to-user", user_id=1, event="dm", data=1)["recipients"] == 1
    expect(a, "dm", 1)
    stack.check_marker(everyone)


def test_server_side_subscribe_and_unsubscribe(stack):
    a1 = stack.open_stream(user_id="ann")
    a2 = open_topics(stack, "ann", ["lobby"])
    b = stack.open_stream(user_id="ben")
    everyone = [a1, a2, b]

    r = stack.post("/api/sse/subscribe", {"user_id": "ann", "topics": ["room/1", "lobby", "room/1"]})
    assert r.status == 200 and r.json == {"success": True, "data": {"recipients": 2}}, r
    expect(a1, "subscribed", {"topics": ["room/1", "lobby"]})
    expect(a2, "subscribed", {"topics": ["room/1"]})   # it had lobby already
    d = publish(stack, "room/1", "msg", "hi")
    assert d["recipients"] == 2
    for s in (a1, a2):
        expect(s, "msg", "hi", d["id"])
    stack.check_marker(everyone)

    # one client only, by its id
    r = stack.post("/api/sse/subscribe", {"client_id": b.client_id, "topics": ["room/1"]})
    assert r.status == 200 and r.data == {"recipients": 1}, r
    expect(b, "subscribed", {"topics": ["room/1"]})
    r = stack.post("/api/sse/unsubscribe", {"user_id": "ann", "topics": ["room/1"]})
    assert r.status == 200 and r.data == {"recipients": 2}, r
    for s in (a1, a2):
        expect(s, "unsubscribed", {"topics": ["room/1"]})
    d = publish(stack, "room/1", "msg", "only ben")
    assert d["recipients"] == 1
    expect(b, "msg", "only ben", d["id"])
    stack.check_marker(everyone)

    # unknown user or client, nothing to change: 0, not an error
    for route, body in (("subscribe", {"user_id": "nobody", "topics": ["x"]}),
                        ("subscribe", {"client_id": str(uuid.uuid4()), "topics": ["x"]}),
                        ("unsubscribe", {"user_id": "nobody", "topics": ["x"]}),
                        ("unsubscribe", {"user_id": "ben", "topics": ["never-joined"]})):
        r = stack.post("/api/sse/" + route, body)
        assert r.status == 200 and r.data == {"recipients": 0}, (route, body, r)
    stack.check_marker(everyone)


def test_subscribed_event_is_ordered_with_publishes(stack):
    """A publish answered before the subscribe is not delivered; one after
    it is, and the subscribed event comes between them."""
    s = stack.open_stream(user_id="ord")
    before = publish(stack, "feed", "n", 0)
    assert before["recipients"] == 0
    stack.post("/api/sse/subscribe", {"user_id": "ord", "topics": ["feed"]})
    ids = [publish(stack, "feed", "n", i)["id"] for i in range(1, 6)]
    got = read_events(s, 6)
    assert summary(got) == [("subscribed", {"topics": ["feed"]}, None)] + [
        ("n", i, ids[i - 1]) for i in range(1, 6)], summary(got)
    stack.check_marker([s])


def test_replay_sees_only_the_topics_of_the_new_stream(stack):
    a = open_topics(stack, 7, ["t/a"], claim=["t/*"])
    first = publish(stack, "t/a", "e", 1)["id"]
    expect(a, "e", 1, first)
    later_a = publish(stack, "t/a", "e", 2)["id"]
    publish(stack, "t/b", "e", 3)
    bc = stack.broadcast("all", 4)["id"]
    a.close()

    tok = stack.tokens.user(7, topics=["t/*"])
    r = stack.open_stream(token=tok, path=topic_path("t/a"), headers={"Last-Event-ID": first})
    assert r.connected.json().get("resumed") is True, r.connected.json()
    got = read_events(r, 2)
    assert summary(got) == [("e", 2, later_a), ("all", 4, bc)], summary(got)
    stack.check_marker([r])

    # the same id from a stream on another topic: unknown, nothing replayed
    o = stack.open_stream(token=tok, path=topic_path("t/b"), headers={"Last-Event-ID": first})
    assert o.connected.json().get("resumed") is False, o.connected.json()
    n = stack.open_stream(token=tok, path="/sse/stream?last_event_id=" + urllib.parse.quote(first))
    assert n.connected.json().get("resumed") is False, n.connected.json()
    stack.check_marker([o, n])


def test_stats_and_metrics(stack):
    assert stack.stats() == {"total_clients": 0, "user_clients": {}}
    assert topic_stats(stack) == {"total_clients": 0, "user_clients": {}, "topic_clients": {}}
    m0 = get_metrics(stack)
    pub0 = metric(m0, "sse_messages_published_total", target="topic")
    assert metric(m0, "sse_topics") == 0

    a = open_topics(stack, 1, ["x/1", "x/2"])
    b = open_topics(stack, 2, ["x/1"])
    wait_topic_stats(stack, {"x/1": 2, "x/2": 1})
    assert "topic_clients" not in stack.stats(), "without ?topics=1 the answer is the seed's"
    stack.post("/api/sse/subscribe", {"user_id": 2, "topics": ["x/3"]})
    wait_topic_stats(stack, {"x/1": 2, "x/2": 1, "x/3": 1})
    publish(stack, "x/1", "e", 1)
    publish(stack, "x/9", "e", 1)
    m = get_metrics(stack)
    assert metric(m, "sse_topics") == 3
    assert metric(m, "sse_messages_published_total", target="topic") == pub0 + 2

    a.close()
    b.close()
    # lighttpd notices a client that left when it next writes to it
    stack.broadcast("poke", 1)
    wait_topic_stats(stack, {}, timeout=4.0)
    assert metric(get_metrics(stack), "sse_topics") == 0


# ---------------------------------------------------------------- claims and bad input


def test_claims(stack):
    tok = stack.tokens
    # no claim: no topic, but the stream without topics works as before
    msg = assert_refused(stack, topic_path("a"), tok.user(1), 403, "topic_forbidden")
    assert "topic a" in msg, msg
    stack.open_stream(token=tok.user(1))
    # admin tokens are not exempt
    assert_refused(stack, topic_path("a"), tok.admin(), 403, "topic_forbidden")
    # one topic outside the patterns refuses the whole stream
    msg = assert_refused(stack, topic_path("orders/1", "billing/1"), tok.user(1, topics=["orders/*"]), 403,
                         "topic_forbidden")
    assert "billing/1" in msg
    assert_refused(stack, topic_path("orders"), tok.user(1, topics=["orders/*"]), 403, "topic_forbidden")
    # a claim that is not an array, or holds a non-string: allows nothing
    for claim in ("orders/*", {"a": 1}, ["orders/*", 5], ["orders/*", None], [""], True):
        t = tok.user(1, topics=claim)
        msg = assert_refused(stack, topic_path("orders/1"), t, 403, "topic_forbidden")
        assert "claim" in msg, (claim, msg)
        stack.open_stream(token=t)        # the token itself is fine
    # "*" alone allows any topic; exact and prefix patterns
    s = open_topics(stack, 1, ["anything:at@all", "orders/1"], claim=["*"])
    assert s.connected.json()["topics"] == ["anything:at@all", "orders/1"]
    p = open_topics(stack, 1, ["orders/", "rooms/ops"], claim=["orders/*", "rooms/ops"])
    stack.check_marker([x for x in stack.streams if x.is_event_stream()])
    assert p.connected.json()["topics"] == ["orders/", "rooms/ops"]


@pytest.mark.ssehub_args("--topics-claim", "chan", "--max-topics-per-stream", "3")
def test_options(stack):
    tok = stack.tokens
    s = stack.open_stream(token=tok.user(1, chan=["a", "b", "c"]), path=topic_path("a", "b", "c"))
    assert s.connected.json()["topics"] == ["a", "b", "c"]
    assert_refused(stack, topic_path("a"), tok.user(1, topics=["*"]), 403, "topic_forbidden")
    assert_refused(stack, topic_path("a", "b", "c", "d"), tok.user(1, chan=["*"]), 400, "too_many_topics")
    r = stack.post("/api/sse/subscribe", {"client_id": s.client_id, "topics": ["d"]})
    assert r.status == 200 and r.data == {"recipients": 0, "skipped": 1}, r
    r = stack.post("/api/sse/subscribe", {"user_id": 1, "topics": ["a", "b", "c", "d"]})
    assert r.status == 400 and r.error_code == "too_many_topics", r
    stack.check_marker([s])


# lighttpd refuses %00, %0D and %0A in any URL itself (400, its own page),
# which the cases holding them accept; the unit tests check ssehub's answer.
BAD_QUERIES = {
    "nul": ("topic=a%00b", 400, "invalid_topic"),
    "cr": ("topic=a%0Db", 400, "invalid_topic"),
    "lf": ("topic=a%0Ab", 400, "invalid_topic"),
    "crlf-header": ("topic=a%0D%0AX-Injected:%201", 400, "invalid_topic"),
    "space": ("topic=a+b", 400, "invalid_topic"),
    "empty": ("topic=", 400, "invalid_topic"),
    "bare": ("topic", 400, "invalid_topic"),
    "over-200": ("topic=" + "x" * 201, 400, "invalid_topic"),
    "over-200-encoded": ("topic=" + "%2F" * 201, 400, "invalid_topic"),
    "bad-escape": ("topic=%zz", 400, "invalid_topic"),
    "non-ascii": ("topic=caf%C3%A9", 400, "invalid_topic"),
    "star": ("topic=orders%2F*", 400, "invalid_topic"),
    "second-bad": ("topic=ok&topic=a%00", 400, "invalid_topic"),
    "33-topics": ("&".join("topic=t%d" % i for i in range(33)), 400, "too_many_topics"),
    "33-same": ("&".join(["topic=t"] * 33), 400, "too_many_topics"),
}


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
def test_bad_topic_queries(stack, case):
    query, status, code = BAD_QUERIES[case]
    watcher = open_topics(stack, "w", ["t"])
    ctl = any(x in query for x in ("%00", "%0D", "%0A"))
    assert_refused(stack, "/sse/stream?" + query, stack.tokens.user("w", topics=["*"]), status, code,
                   front_may_refuse=ctl)
    assert stack.stats()["total_clients"] == 1
    publish(stack, "t", "after", 1)
    expect(watcher, "after", 1)
    stack.check_marker([watcher])


def test_percent_encoded_names_are_decoded(stack):
    s = stack.open_stream(token=stack.tokens.user(1, topics=["*"]),
                          path="/sse/stream?topic=a%2Fb&topic=c%3Ad%40e&topic=%61")
    assert s.connected.json()["topics"] == ["a/b", "c:d@e", "a"]
    d = publish(stack, "a/b", "e", 1)
    assert d["recipients"] == 1
    expect(s, "e", 1, d["id"])
    stack.check_marker([s])


BAD_BODIES = {
    "publish-no-topic": ("publish", {"event": "e", "data": 1}, "invalid_topic"),
    "publish-empty": ("publish", {"topic": "", "event": "e", "data": 1}, "invalid_topic"),
    "publish-crlf": ("publish", {"topic": "a\r\nb", "event": "e", "data": 1}, "invalid_topic"),
    "publish-nul": ("publish", {"topic": "a\u0000b", "event": "e", "data": 1}, "invalid_topic"),
    "publish-201": ("publish", {"topic": "x" * 201, "event": "e", "data": 1}, "invalid_topic"),
    "publish-number": ("publish", {"topic": 42, "event": "e", "data": 1}, "invalid_topic"),
    "publish-bad-event": ("publish", {"topic": "t", "event": "a\nb", "data": 1}, "invalid_field"),
    "subscribe-no-topics": ("subscribe", {"user_id": "w"}, "invalid_field"),
    "subscribe-empty": ("subscribe", {"user_id": "w", "topics": []}, "invalid_field"),
    "subscribe-string": ("subscribe", {"user_id": "w", "topics": "t"}, "invalid_field"),
    "subscribe-bad-name": ("subscribe", {"user_id": "w", "topics": ["ok", "a b"]}, "invalid_topic"),
    "subscribe-number": ("subscribe", {"user_id": "w", "topics": [1]}, "invalid_topic"),
    "subscribe-33": ("subscribe", {"user_id": "w", "topics": ["t%d" % i for i in range(33)]}, "too_many_topics"),
    "subscribe-both": ("subscribe", {"user_id": "w", "client_id": str(uuid.uuid4()), "topics": ["x"]},
                       "invalid_field"),
    "subscribe-no-target": ("subscribe", {"topics": ["x"]}, "invalid_field"),
    "unsubscribe-bad-name": ("unsubscribe", {"user_id": "w", "topics": ["t", "a%2Fb"]}, "invalid_topic"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies(stack, case):
    route, body, code = BAD_BODIES[case]
    watcher = open_topics(stack, "w", ["t"])
    r = stack.post("/api/sse/" + route, body)
    assert r.status == 400 and r.error_code == code, r
    # nothing changed: still on "t" and on nothing else
    assert topic_stats(stack)["topic_clients"] == {"t": 1}
    stack.check_marker([watcher])


def test_admin_routes_need_admin_and_json(stack):
    s = open_topics(stack, 1, ["t"])
    for route, body in (("publish", {"topic": "t", "event": "e", "data": 1}),
                        ("subscribe", {"user_id": 1, "topics": ["u"]}),
                        ("unsubscribe", {"user_id": 1, "topics": ["t"]})):
        r = stack.post("/api/sse/" + route, body, token=stack.tokens.user(1, topics=["*"]))
        assert r.status == 403 and r.error_code == "forbidden", (route, r)
        r = stack.post("/api/sse/" + route, json.dumps(body), headers={"Content-Type": "text/plain"})
        assert r.status == 415, (route, r)
        r = stack.request("GET", "/api/sse/" + route)
        assert r.status == 405 and r.header("Allow") == "POST", (route, r)
    stack.check_marker([s])


# ---------------------------------------------------------------- the largest legal request


def _biggest_token(stack):
    base = len(stack.tokens.user("big", topics=["*"], pad=""))
    pad = (8192 - base) * 3 // 4
    tok = stack.tokens.user("big", topics=["*"], pad="p" * pad)
    while len(tok) > 8192:
        pad -= 1
        tok = stack.tokens.user("big", topics=["*"], pad="p" * pad)
    assert 8180 < len(tok) <= 8192, len(tok)
    return tok


def _open_big(stack, topics, encode):
    tok = _biggest_token(stack)
    path = "/sse/stream?" + "&".join(
        "topic=" + (urllib.parse.quote(t, safe="") if encode else t) for t in topics) + "&token=" + tok
    return path, stack.open_stream(path=path, wait_connected=False)


def _check_streams(stack, s, topics):
    assert s.status == 200, (s.status, s.body[:300])
    ev = s.wait_event("connected")
    assert ev.json()["topics"] == topics
    s.client_id = ev.json()["client_id"]
    d = publish(stack, topics[31], "big", 1)
    assert d["recipients"] == 1
    expect(s, "big", 1, d["id"])
    stack.check_marker([s])


def test_largest_legal_stream_request_passes_the_front(stack):
    """32 topics of 200 bytes, each percent-encoded whole (600 bytes: what
    URLSearchParams makes of "/"), plus a token of nearly 8 KB in the query:
    the header buffers of the shipped examples must let it through (nginx,
    lighttpd). Apache's mod_proxy_fcgi passes no variable over 16 KB: its
    example answers such a line 414 itself, loudly, rather than hand ssehub
    a request without its query; 32 topics of 200 plain bytes and the token
    pass."""
    topics = [("%02d" % i) + "/" * 198 for i in range(32)]
    path, s = _open_big(stack, topics, encode=True)
    assert len(path) > 27000, len(path)
    if stack.front.kind == "apache":
        assert s.status == 414, (s.status, s.body[:200])
        assert stack.stats()["total_clients"] == 0
        plain = [("%02d" % i) + "x" * 198 for i in range(32)]
        path, s = _open_big(stack, plain, encode=False)
        assert len(path) > 14500, len(path)
        _check_streams(stack, s, plain)
        return
    _check_streams(stack, s, topics)


# ---------------------------------------------------------------- across a restart


def test_topic_history_survives_a_restart(procs, tokens, workdir):
    """--history-file keeps topic messages with their topic: after a restart
    a stream on the topic resumes from one of them and gets the rest, a
    stream on another topic does not know the id."""
    require_program("nginx")
    history = workdir / "history.dat"
    hub1 = procs.hub(name="hub1", extra_args=["--history-file", str(history)])
    front = procs.front("nginx", hub=hub1)
    st = h.Stack(front, tokens, hub1)
    tok = tokens.user(1, topics=["room/*"])
    s = st.open_stream(token=tok, path=topic_path("room/1"))
    first = publish(st, "room/1", "m", 1)["id"]
    publish(st, "room/2", "m", 2)
    later = publish(st, "room/1", "m", 3)["id"]
    got = read_events(s, 2, timeout=3)
    assert summary(got) == [("m", 1, first), ("m", 3, later)]
    assert hub1.stop(timeout=5) == 0
    s.read_to_end(timeout=3)

    hub2 = procs.hub(name="hub2", listen=hub1.listen, extra_args=["--history-file", str(history)])
    st.hub = hub2
    back = st.open_stream(token=tok, path=topic_path("room/1"), headers={"Last-Event-ID": first})
    assert back.connected.json().get("resumed") is True, back.connected.json()
    assert summary(read_events(back, 1, timeout=3)) == [("m", 3, later)]
    other = st.open_stream(token=tok, path=topic_path("room/2"), headers={"Last-Event-ID": first})
    assert other.connected.json().get("resumed") is False, other.connected.json()
    st.check_marker([back, other])
    st.close_streams()
    assert hub2.stop(timeout=5) == 0
