"""Message ids and Last-Event-ID replay (issue 4: delivery guarantees).

Every published message carries an `id:`; a stream that comes back with the
last id it saw (Last-Event-ID header or last_event_id query parameter) gets
every later message it may see, in publish order, with no gap and no
duplicate, before the live ones. Through a real nginx.
"""

import collections
import time
import urllib.parse

import pytest

from delivery_support import (GENERATED_ID, ID_LIMIT, PublisherThread, connected_data, expect_event,
                              front_kind, read_events, summary, wait_gone)  # noqa: F401  (fixture)


# --------------------------------------------------------------------------
# ids


@pytest.mark.ssehub_args("--ping-interval", "1")
def test_every_message_has_an_id(stack):
    a = stack.open_stream(user_id=1)
    b = stack.open_stream(user_id=2)
    for s in (a, b):
        assert "id" not in s.connected.field_names(), "connected carries an id: %r" % s.connected.fields

    seen_ids = []
    d = stack.broadcast("b", {"k": 1})
    assert GENERATED_ID.match(d["id"]), "generated id %r is not <hex>-<n>" % d["id"]
    for s in (a, b):
        expect_event(s, "b", {"k": 1}, d["id"])
    seen_ids.append(d["id"])

    d = stack.publish("send-to-user", user_id=1, event="u", data=[1])
    assert GENERATED_ID.match(d["id"]), d
    expect_event(a, "u", [1], d["id"])
    seen_ids.append(d["id"])

    d = stack.publish("send-to-client", client_id=b.client_id, event="c", data="x")
    assert GENERATED_ID.match(d["id"]), d
    expect_event(b, "c", "x", d["id"])
    seen_ids.append(d["id"])
    assert len(set(seen_ids)) == 3, "generated ids repeat: %r" % seen_ids

    # the publisher's own id is kept, on every route, byte for byte
    own = {"broadcast": "order-42/\u00e9t\u00e9:1", "send-to-user": "x" * ID_LIMIT, "send-to-client": "c 1"}
    d = stack.broadcast("b2", 2, id=own["broadcast"])
    assert d == {"id": own["broadcast"], "recipients": 2}, d
    for s in (a, b):
        ev = expect_event(s, "b2", 2, own["broadcast"])
        assert ev.last_event_id == own["broadcast"]
    d = stack.publish("send-to-user", user_id=2, event="u2", data=3, id=own["send-to-user"])
    assert d == {"id": own["send-to-user"], "recipients": 1}, d
    expect_event(b, "u2", 3, own["send-to-user"])
    d = stack.publish("send-to-client", client_id=a.client_id, event="c2", data=4, id=own["send-to-client"])
    assert d == {"id": own["send-to-client"], "recipients": 1}, d
    expect_event(a, "c2", 4, own["send-to-client"])

    # refused ids: too long, CR, LF, NUL, empty, not a string; nothing is delivered
    for bad in ("x" * (ID_LIMIT + 1), "a\rb", "a\nb", "a\x00b", "", 42):
        r = stack.post("/api/sse/broadcast", {"event": "bad", "data": 1, "id": bad})
        assert r.status == 400 and r.error_code == "invalid_field", "id %r -> %r" % (bad, r)

    # pings (1 s) and connected carry no id; the browser's lastEventId stays
    # the last real message's
    blocks = []
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        blk = a.next_block(max(0.0, deadline - time.monotonic()))
        if blk is not None:
            blocks.append(blk)
    pings = [blk for blk in blocks if blk.dispatched and blk.type == "ping"]
    assert pings, "no ping within 1.6 s with --ping-interval 1: %r" % blocks
    for p in pings:
        assert "id" not in p.field_names(), "ping carries an id line: %r" % p.fields
        assert p.last_event_id == own["send-to-client"], p.last_event_id
    assert all(blk.type == "ping" for blk in blocks if blk.dispatched), blocks
    stack.check_marker([a, b])


# --------------------------------------------------------------------------
# resume


def _resume(stack, user_id, last_id, how):
    if how == "header":
        return stack.open_stream(user_id=user_id, headers={"Last-Event-ID": last_id})
    path = "/sse/stream?last_event_id=%s" % urllib.parse.quote(last_id, safe="")
    return stack.open_stream(user_id=user_id, path=path)


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_gets_exactly_the_later_messages_it_may_see(stack, how):
    a = stack.open_stream(user_id=1)          # leaves after m1 and comes back
    other1 = stack.open_stream(user_id=1)     # user 1's second stream, stays
    b = stack.open_stream(user_id=2)

    before = stack.publish("send-to-user", user_id=1, event="early", data=0)
    expect_event(a, "early", 0, before["id"])
    m1 = stack.broadcast("m", {"n": 1}, id="m1 \u2713")
    expect_event(a, "m", {"n": 1}, m1["id"])
    assert a.parser.last_event_id == m1["id"]
    old_client = a.client_id
    a.close()
    wait_gone(stack, 2)

    visible = []   # (event, data, id) user 1 may see, in publish order

    def pub(route, event, data, **kw):
        d = stack.publish(route, event=event, data=data, **kw)
        return (event, data, d["id"])

    visible.append(pub("send-to-user", "u1", {"n": 2}, user_id=1))
    pub("send-to-user", "u2", {"n": 3}, user_id=2)                        # never for user 1
    visible.append(pub("broadcast", "all", {"n": 4}))
    pub("send-to-client", "c", {"n": 5}, client_id=other1.client_id)      # never replayed
    pub("send-to-client", "c", {"n": 6}, client_id=b.client_id)
    pub("send-to-client", "c", {"n": 6.5}, client_id=old_client)          # the departed stream's own id
    visible.append(pub("send-to-user", "u1", {"n": 7}, user_id="1", retry=2500))
    pub("send-to-user", "u3", {"n": 8}, user_id=3)
    pub("send-to-user", "u10", {"n": 8.5}, user_id=10)                  # "10" is not "1"
    visible.append(pub("broadcast", "all", {"n": 9}, id="own-9"))
    visible.append(pub("send-to-user", "u1", "ten", user_id=1))

    back = _resume(stack, 1, m1["id"], how)
    data = connected_data(back)
    assert data.get("resumed") is True, "connected after Last-Event-ID %r (%s): %r" % (m1["id"], how, data)
    assert back.client_id != old_client
    got = read_events(back, len(visible), timeout=3)
    assert summary(got) == visible, "replay after %r" % m1["id"]
    assert got[2].retry == 2500 and ("retry", "2500") in got[2].fields, "replayed message lost its retry: %r" % got[2].fields
    for e in got:
        assert e.field_names()[0] == "id", "replayed event without a leading id line: %r" % e.fields
    assert back.parser.last_event_id == visible[-1][2]

    # then the live ones, each once, and nothing else (marker)
    live = stack.publish("send-to-user", user_id=1, event="live", data=11)
    expect_event(back, "live", 11, live["id"])
    d = stack.broadcast("live-all", 12)
    assert d["recipients"] == 3, d
    expect_event(back, "live-all", 12, d["id"])
    stack.check_marker([back])

    # and the streams that stayed saw exactly their own share, live
    got_other = read_events(other1, 10, timeout=3)
    assert [(e.type, e.json()) for e in got_other] == [
        ("early", 0), ("m", {"n": 1}), ("u1", {"n": 2}), ("all", {"n": 4}), ("c", {"n": 5}), ("u1", {"n": 7}),
        ("all", {"n": 9}), ("u1", "ten"), ("live", 11), ("live-all", 12)], summary(got_other)


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_from_the_newest_id_replays_nothing(stack, how):
    a = stack.open_stream(user_id=1)
    ids = [stack.broadcast("e", n)["id"] for n in range(3)]
    for n, i in enumerate(ids):
        expect_event(a, "e", n, i)
    back = _resume(stack, 1, ids[-1], how)
    assert connected_data(back).get("resumed") is True, connected_data(back)
    stack.check_marker([a, back])

    # and from the one before: exactly one
    back2 = _resume(stack, 1, ids[1], how)
    assert connected_data(back2).get("resumed") is True
    expect_event(back2, "e", 2, ids[2])
    # the marker broadcast above is later than ids[2]: it is replayed too
    ev = back2.next_event(3)
    assert ev is not None and ev.type == "marker", ev
    stack.check_marker([a, back, back2])


def test_no_id_no_resumed_key_and_unknown_id_resumed_false(stack):
    plain = stack.open_stream(user_id=1)
    assert "resumed" not in connected_data(plain), "no id given, yet a resumed key: %r" % connected_data(plain)

    d = stack.broadcast("before", 1)
    expect_event(plain, "before", 1, d["id"])
    for how, value in (("header", "no-such-id"), ("query", "no-such-id"), ("header", "661542acf75a8-999999")):
        s = _resume(stack, 1, value, how)
        assert connected_data(s).get("resumed") is False, (how, value, connected_data(s))
        # nothing is replayed for an id the hub does not know; live ones flow
        stack.check_marker([s])
        s.close()


@pytest.mark.ssehub_args("--history-size", "5")
def test_id_pushed_out_of_history_resumed_false(stack):
    first = stack.broadcast("old", 0)["id"]
    second = stack.broadcast("old", 1)["id"]
    for n in range(2, 6):
        stack.broadcast("old", n)
    # 6 published, 5 kept: first is gone, second is the oldest kept
    s = _resume(stack, 1, second, "header")
    assert connected_data(s).get("resumed") is True, "id still in a 5-message history: %r" % connected_data(s)
    got = read_events(s, 4, timeout=3)
    assert [(e.type, e.json()) for e in got] == [("old", n) for n in range(2, 6)], summary(got)
    s.close()
    s = _resume(stack, 1, first, "header")
    assert connected_data(s).get("resumed") is False, "id pushed out of a 5-message history: %r" % connected_data(s)
    stack.check_marker([s])


@pytest.mark.ssehub_args("--history-ttl", "1")
def test_expired_id_resumed_false(stack):
    aged = stack.broadcast("aged", 0)["id"]
    young = _resume(stack, 1, aged, "header")
    assert connected_data(young).get("resumed") is True, connected_data(young)
    time.sleep(2.2)
    s = _resume(stack, 1, aged, "header")
    assert connected_data(s).get("resumed") is False, "id older than --history-ttl 1: %r" % connected_data(s)
    stack.check_marker([s, young])


def test_resume_from_a_private_message_id(stack):
    """The browser's lastEventId may be the id of a send-to-client message
    (its own): that id is a position too, or everything after it is lost."""
    a = stack.open_stream(user_id=1)
    d1 = stack.broadcast("b", 1)
    expect_event(a, "b", 1, d1["id"])
    p = stack.publish("send-to-client", client_id=a.client_id, event="p", data=2)
    expect_event(a, "p", 2, p["id"])
    assert a.parser.last_event_id == p["id"]
    a.close()
    wait_gone(stack, 0)
    d3 = stack.broadcast("b", 3)
    d4 = stack.publish("send-to-user", user_id=1, event="u", data=4)
    back = _resume(stack, 1, p["id"], "header")
    assert connected_data(back).get("resumed") is True, (
        "Last-Event-ID of the client's own send-to-client message: %r" % connected_data(back))
    got = read_events(back, 2, timeout=3)
    assert summary(got) == [("b", 3, d3["id"]), ("u", 4, d4["id"])], summary(got)
    stack.check_marker([back])


def test_header_wins_over_a_stale_query_parameter(stack):
    """An application that opened EventSource('/sse/stream?last_event_id=X')
    keeps that URL; on its own reconnects the browser adds the newer
    Last-Event-ID header. The header must win, or X..newer is sent again."""
    a = stack.open_stream(user_id=1)
    ids = [stack.broadcast("e", n)["id"] for n in range(4)]
    for n, i in enumerate(ids):
        expect_event(a, "e", n, i)
    s = stack.open_stream(user_id=1, headers={"Last-Event-ID": ids[2]},
                          path="/sse/stream?last_event_id=%s" % urllib.parse.quote(ids[0], safe=""))
    assert connected_data(s).get("resumed") is True, connected_data(s)
    expect_event(s, "e", 3, ids[3])
    stack.check_marker([a, s])


@pytest.mark.parametrize("how,value", [
    ("header", "y" * 129), ("header", "z" * 4000), ("header", "{id}x"),
    ("query", "{id}\n"), ("query", "a\x00{id}"), ("query", "{id}\r"), ("query", "%"), ("query", "%zz"), ("query", "q" * 500)],
    ids=["header-129-bytes", "header-4000-bytes", "header-other", "query-LF", "query-NUL", "query-CR",
         "query-lone-percent", "query-bad-escape", "query-500-bytes"])
def test_ids_the_hub_could_not_have_sent(stack, how, value):
    """Overlong ids, control characters, broken escapes: an id was given but
    the hub cannot know it, so resumed is false (as for any unknown id), and
    nothing is replayed; never an error or a crash."""
    d = stack.broadcast("x", 1)
    value = value.replace("{id}", d["id"])
    if how == "header":
        s = stack.open_stream(user_id=1, headers={"Last-Event-ID": value})
    else:
        raw = value if value.startswith("%") else urllib.parse.quote(value, safe="")
        s = stack.open_stream(user_id=1, path="/sse/stream?last_event_id=%s" % raw)
    assert connected_data(s).get("resumed") is False, (
        "%s last_event_id %r -> connected %r" % (how, value[:40], connected_data(s)))
    stack.check_marker([s])
    assert stack.hub.process.alive()


@pytest.mark.ssehub_args("--max-queue-bytes", "65536", "--max-message-bytes", "20000")
def test_replay_larger_than_the_queue_bound_is_delivered(stack):
    """A replay of ~300 KB to a stream whose live queue may hold 64 KB: the
    client must get all of it (closing it as a slow consumer would make it
    reconnect with the same id forever)."""
    a = stack.open_stream(user_id=1)
    start = stack.broadcast("start", 0)
    expect_event(a, "start", 0, start["id"])
    a.close()
    wait_gone(stack, 0)
    blob = "q" * 15000
    ids = [stack.broadcast("big", {"n": n, "blob": blob})["id"] for n in range(20)]
    back = _resume(stack, 1, start["id"], "header")
    assert connected_data(back).get("resumed") is True
    got = read_events(back, 20, timeout=10)
    assert [(e.id, e.json()["n"]) for e in got] == list(zip(ids, range(20)))
    stack.check_marker([back])
    m = stack.request("GET", "/metrics")
    assert "sse_slow_consumer_closes_total 0" in m.body.decode(), m.body.decode()


def test_other_users_id_does_not_leak(stack):
    """An id of a message the client could not see (another user's) is
    unknown, exactly like an id that never existed: resuming from it would
    tell one user which ids exist for another."""
    a = stack.open_stream(user_id=1)
    secret = stack.publish("send-to-user", user_id=2, event="secret", data="u2-only")
    after = stack.broadcast("after", 1)
    expect_event(a, "after", 1, after["id"])
    mine = stack.publish("send-to-user", user_id=1, event="mine", data=2)
    expect_event(a, "mine", 2, mine["id"])
    stack.publish("send-to-user", user_id=2, event="secret", data="again")

    back = _resume(stack, 1, secret["id"], "header")
    assert connected_data(back).get("resumed") is False, connected_data(back)
    stack.check_marker([a, back])


def test_retry_in_a_message(stack):
    s = stack.open_stream(user_id=1)
    d = stack.broadcast("slow", {"k": 1}, retry=1500)
    ev = expect_event(s, "slow", {"k": 1}, d["id"])
    assert ev.field_names() == ["id", "event", "retry", "data"], ev.fields
    assert ev.retry == 1500 and s.parser.reconnection_time == 1500
    d2 = stack.publish("send-to-user", user_id=1, event="u", data=0, retry=0)
    ev = expect_event(s, "u", 0, d2["id"])
    assert ev.retry == 0, ev.fields
    d3 = stack.broadcast("plain", 2)
    ev = expect_event(s, "plain", 2, d3["id"])
    assert "retry" not in ev.field_names(), ev.fields
    for bad in ("1000", -1, 1.5, True, None):
        r = stack.post("/api/sse/broadcast", {"event": "x", "data": 1, "retry": bad})
        assert r.status == 400 and r.error_code == "invalid_field", "retry %r -> %r" % (bad, r)
    stack.check_marker([s])


# --------------------------------------------------------------------------
# replay while a publisher is busy


TOTAL = 1000
THREADS = 4


@pytest.mark.ssehub_args("--history-size", "5000")
def test_replay_while_publishing_1000_messages(stack):
    """THREADS publishers on keep-alive connections send TOTAL messages to
    user 1 (broadcasts and send-to-user, mixed) and noise to user 2, while
    the client leaves mid-way and reconnects with the last id it saw. What
    it received before plus after is exactly what a client that never left
    received: all TOTAL, in the same order, none twice, nothing else."""
    witness = stack.open_stream(user_id=1)
    client = stack.open_stream(user_id=1)
    u2 = stack.open_stream(user_id=2)
    per = TOTAL // THREADS
    progress = [0] * THREADS

    def worker(t):
        def run(pub):
            ids = []
            for i in range(per):
                if i % 2:
                    d = pub.publish("broadcast", event="load", data={"t": t, "i": i})
                else:
                    d = pub.publish("send-to-user", user_id=1, event="load", data={"t": t, "i": i})
                if i % 10 == 0:
                    pub.publish("send-to-user", user_id=2, event="noise", data={"t": t, "i": i})
                    time.sleep(0.005)   # spread the load over ~1 s: the reconnect lands mid-way
                ids.append(d["id"])
                progress[t] = i + 1
            return ids
        return run

    threads = [PublisherThread(stack.front, stack.admin_token, worker(t), "pub%d" % t) for t in range(THREADS)]
    for th in threads:
        th.start()

    first = read_events(client, 150, timeout=15)
    last_id = first[-1].id
    assert last_id, first[-1]
    client.close()
    at_close = sum(progress)
    time.sleep(0.1)   # away for a while: what is published meanwhile must come from history
    back = stack.open_stream(user_id=1, headers={"Last-Event-ID": last_id})
    at_reopen = sum(progress)
    assert connected_data(back).get("resumed") is True, connected_data(back)

    published = [th.check(30) for th in threads]
    print("reconnect after %d received; %d published at close, %d at reopen" % (len(first), at_close, at_reopen))
    assert at_close < TOTAL and at_reopen < TOTAL, (
        "publishing had ended before the reconnect (%d, %d of %d): the test did not test the race" % (
            at_close, at_reopen, TOTAL))

    rest = read_events(back, TOTAL - len(first), timeout=15)
    seen = read_events(witness, TOTAL, timeout=15)
    union = first + rest

    def key(e):
        return (e.type, e.id, e.data)
    got_ids = [e.id for e in union]
    dupes = sorted(i for i, c in collections.Counter(got_ids).items() if c > 1)
    assert not dupes, "delivered twice across the reconnect: %r" % dupes[:10]
    all_ids = {i for ids in published for i in ids}
    assert len(all_ids) == TOTAL, "publish ids not unique"
    missing = all_ids - set(got_ids)
    assert not missing, "%d messages lost across the reconnect (close after %d received, %d published at close, " \
        "%d at reopen); e.g. %r" % (len(missing), len(first), at_close, at_reopen, sorted(missing)[:5])
    assert [key(e) for e in union] == [key(e) for e in seen], "order differs from the stream that never left"
    # each publisher's messages in its own order
    for t in range(THREADS):
        mine = [e.json()["i"] for e in union if e.json()["t"] == t]
        assert mine == list(range(per)), "publisher %d: order %r..." % (t, mine[:20])
    assert all(e.type == "load" for e in union)
    # user 2 got the broadcasts and its own noise, none of user 1's messages
    n_noise = THREADS * ((per + 9) // 10)
    n_broadcast = THREADS * (per // 2)
    u2_got = read_events(u2, n_noise + n_broadcast, timeout=10)
    assert sum(1 for e in u2_got if e.type == "noise") == n_noise
    assert sum(1 for e in u2_got if e.type == "load") == n_broadcast
    stack.check_marker([back, witness, u2])
