"""Times and sizes a peer sends are 64-bit on every build (issue 18).

The test command runs this file on every build, the 32-bit i386 one
included, where time_t and long are 32 bits wide: a claim, a retry or a user
id that went through a 32-bit type on its way would be cut to its low bits.
The values are chosen so that the cut value gives the other answer:

* exp and nbf past 2038 (2^31 s) and past 2106 (2^32 s), and values whose
  low 32 bits look valid (or expired) while the whole value says otherwise;
* an open stream whose token expires after 2038 stays open;
* --history-ttl at its maximum keeps and replays history, also across a
  restart with --history-file;
* retry and numeric user ids beyond 32 bits (and beyond 64);
* message sizes at the --max-message-bytes boundary (the body and the
  encoded event, to the byte), and at the option's maximum (16 MiB) with
  --max-queue-bytes at its maximum (1 GiB), straight on the FastCGI socket
  (nginx's own client_max_body_size would answer first).

    SSEHUB_BIN=... /usr/bin/python3 -m pytest -q tests/integration/test_legacy_time.py
"""

import hashlib
import json
import time

import pytest

import fcgi_client as fc
import ssehub_harness as h
from conftest import require_program

LEEWAY = 30          # the hub's default --jwt-leeway
T31 = 2 ** 31        # 2038-01-19T03:14:08Z
T32 = 2 ** 32        # 2106-02-07T06:28:16Z
HISTORY_TTL_MAX = 31536000
MAX_MESSAGE_MAX = 16777216
MAX_QUEUE_MAX = 1073741824
HUB_ID_MAX = 40      # the longest id the hub makes itself (the room it keeps for it)


@pytest.fixture
def nginx_stack(procs, tokens, request):
    """ssehub (extra options from @pytest.mark.ssehub_args) behind nginx."""
    require_program("nginx")
    marker = request.node.get_closest_marker("ssehub_args")
    hub = procs.hub(extra_args=[str(a) for a in marker.args] if marker else [])
    front = procs.front("nginx", hub=hub)
    return h.Stack(front, tokens, hub=hub)


def _token(tokens, user_id=1, admin=False, **claims):
    # Tokens.make sets exp (and iat) first and the claims given here after.
    return tokens.make(user_id, admin=admin, **claims)


def _stream_status(stack, token):
    """(status, error code) of GET /sse/stream with this token; the stream
    is closed again right away."""
    s = h.SSEStream(stack.host, stack.port, token=token)
    try:
        code = (s.json or {}).get("error", {}).get("code") if s.status != 200 else None
        return s.status, code
    finally:
        s.close()


def _api_status(stack, token):
    r = stack.request("GET", "/api/sse/stats", token=token)
    return r.status, r.error_code


# --------------------------------------------------------------------------
# token times


def _now():
    return int(time.time())


VALID_EXP = {
    "exp past 2038": lambda now: T31 + 10,
    "exp one second past int32": lambda now: T31,
    "exp past 2106": lambda now: T32 + 10,
    # low 32 bits: an hour ago, so a 32-bit cut says expired
    "exp 2^32 after an hour ago": lambda now: T32 + now - 3600,
    "exp at 2^53 - 1": lambda now: 2 ** 53 - 1,
    "exp past 2038, a fraction": lambda now: T31 + 0.5,
}


@pytest.mark.parametrize("name", sorted(VALID_EXP))
def test_exp_beyond_32_bits_is_accepted(nginx_stack, tokens, name):
    exp = VALID_EXP[name](_now())
    st = nginx_stack
    assert _stream_status(st, _token(tokens, exp=exp)) == (200, None), "stream with exp=%r" % exp
    assert _api_status(st, _token(tokens, admin=True, exp=exp)) == (200, None), "admin call with exp=%r" % exp


REFUSED = {
    # correct reading: not valid yet / expired; a 32-bit cut reads the other way
    "nbf past 2038": ({"nbf": lambda now: T31 + 10}, "token_not_yet_valid"),
    "nbf past 2106": ({"nbf": lambda now: T32 + 10}, "token_not_yet_valid"),
    "nbf 2^32 after an hour ago": ({"nbf": lambda now: T32 + now - 3600}, "token_not_yet_valid"),
    "iat past 2038": ({"iat": lambda now: T31 + 10}, "token_not_yet_valid"),
    "iat 2^32 after an hour ago": ({"iat": lambda now: T32 + now - 3600}, "token_not_yet_valid"),
    # low 32 bits: an hour from now, so a 32-bit cut says valid
    "exp 2^32 before an hour from now": ({"exp": lambda now: now + 3600 - T32}, "token_expired"),
    "exp 2^31 before now (negative)": ({"exp": lambda now: now - T31}, "token_expired"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_times_beyond_32_bits_are_refused(nginx_stack, tokens, name):
    claims, code = REFUSED[name]
    now = _now()
    values = {k: f(now) for k, f in claims.items()}
    st = nginx_stack
    assert _stream_status(st, _token(tokens, **values)) == (401, code), "stream with %r" % values
    assert _api_status(st, _token(tokens, admin=True, **values)) == (401, code), "admin call with %r" % values
    # and a valid token still works on the same hub
    assert _stream_status(st, _token(tokens)) == (200, None)


def test_times_at_the_ends_of_int64(nginx_stack, tokens):
    """A far-future exp (or a far-past nbf/iat) is either accepted or
    refused as invalid_token, never read as expired, and the hub lives on."""
    st = nginx_stack
    for claims in ({"exp": 2 ** 63 - 1}, {"exp": 2 ** 64}, {"exp": 2 ** 63}, {"nbf": -(2 ** 63)},
                   {"iat": -(2 ** 63)}):
        status, code = _stream_status(st, _token(tokens, **claims))
        assert (status, code) in ((200, None), (401, "invalid_token")), (claims, status, code)
        assert _stream_status(st, _token(tokens)) == (200, None), "after %r" % claims


def test_exp_as_a_huge_float(nginx_stack, tokens):
    """exp 1e300: a far future (accepted) or not a usable time (refused as
    invalid_token), never expired, and the hub lives on."""
    st = nginx_stack
    assert _stream_status(st, _token(tokens, exp=1e300)) in ((200, None), (401, "invalid_token"))
    assert _stream_status(st, _token(tokens, nbf=-1e300)) in ((200, None), (401, "invalid_token"))
    assert _stream_status(st, _token(tokens)) == (200, None)


@pytest.mark.ssehub_args("--ping-interval", "1")
def test_stream_with_exp_past_2038_stays_open(nginx_stack, tokens):
    """The expiry timer of an open stream is set from the whole exp: cut to
    32 bits it would fire at once (or never for the other cases above)."""
    st = nginx_stack
    far = st.open_stream(token=_token(tokens, user_id="far", exp=T32 + _now() - 3600))
    soon = st.open_stream(token=_token(tokens, user_id="soon", exp=_now() + 1 - LEEWAY))
    # the short one ends with token_expired within its second or two...
    ev = soon.wait_event("token_expired", timeout=6)
    assert ev is not None, "the stream whose token expires now was not closed"
    # ...the far one is still there, pings go on and messages arrive
    pings = far.events_during(2.5)
    assert not [e for e in pings if e.type == "token_expired"], pings
    assert [e for e in pings if e.type == "ping"], "no ping in 2.5 s with --ping-interval 1: %r" % pings
    st.check_marker([far])


# --------------------------------------------------------------------------
# --history-ttl at its maximum


def _replay_after(stack, user_id, last_id):
    s = stack.open_stream(user_id=user_id, headers={"Last-Event-ID": last_id})
    assert s.connected.json().get("resumed") is True, s.connected.json()
    return s


@pytest.mark.ssehub_args("--history-ttl", HISTORY_TTL_MAX)
def test_history_ttl_at_its_maximum_replays(nginx_stack):
    st = nginx_stack
    a = st.open_stream(user_id=1)
    ids = [st.broadcast("h", {"n": n})["id"] for n in range(3)]
    for n, mid in enumerate(ids):
        ev = a.next_event()
        assert (ev.type, ev.json(), ev.last_event_id) == ("h", {"n": n}, mid), ev
    b = _replay_after(st, 2, ids[0])
    got = [b.next_event() for _ in range(2)]
    assert [(e.type, e.json(), e.last_event_id) for e in got] == [("h", {"n": 1}, ids[1]), ("h", {"n": 2}, ids[2])]
    st.check_marker([a, b])


def test_history_ttl_above_its_maximum_is_refused(procs):
    r = procs.run_hub(["--jwt-secret-file", procs.secret_file, "--listen", "127.0.0.1:1",
                       "--history-ttl", str(HISTORY_TTL_MAX + 1)])
    assert r.returncode != 0, r
    assert "history-ttl" in r.stderr, r.stderr
    r = procs.run_hub(["--jwt-secret-file", procs.secret_file, "--listen", "127.0.0.1:1",
                       "--history-ttl", str(T32 + 3600)])
    assert r.returncode != 0 and "history-ttl" in r.stderr, r


def test_history_ttl_at_its_maximum_survives_a_restart(procs, tokens, workdir):
    require_program("nginx")
    history = workdir / "history.dat"
    args = ["--history-file", history, "--history-ttl", HISTORY_TTL_MAX]
    hub1 = procs.hub(name="t1", extra_args=args)
    st1 = h.Stack(procs.front("nginx", hub=hub1), tokens, hub=hub1)
    ids = [st1.broadcast("r", {"n": n})["id"] for n in range(3)]
    assert hub1.stop() == 0
    hub2 = procs.hub(name="t2", listen=hub1.listen, extra_args=args)
    st2 = h.Stack(procs.front("nginx", hub=hub2), tokens, hub=hub2)
    b = _replay_after(st2, 5, ids[0])
    got = [b.next_event() for _ in range(2)]
    assert [(e.type, e.json(), e.last_event_id) for e in got] == [("r", {"n": 1}, ids[1]), ("r", {"n": 2}, ids[2])]


# --------------------------------------------------------------------------
# other numbers a publisher sends


def test_retry_beyond_32_bits_is_refused(nginx_stack):
    st = nginx_stack
    s = st.open_stream(user_id=1)
    d = st.broadcast("r", {"n": 1}, retry=86400000)
    ev = s.next_event()
    assert (ev.type, ev.last_event_id, ev.retry) == ("r", d["id"], 86400000), ev
    # 2^32 + 3000 cut to 32 bits would be a fine 3000
    for bad in (86400001, T32 + 3000, 2 ** 63 - 1, -1):
        r = st.post("/api/sse/broadcast", {"event": "r", "data": 1, "retry": bad})
        assert (r.status, r.error_code) == (400, "invalid_field"), (bad, r)
    st.check_marker([s])


def test_numeric_user_ids_beyond_32_bits(nginx_stack, tokens):
    st = nginx_stack
    big = 2 ** 40 + 7
    low = big % T32  # what a 32-bit cut would leave: 7
    s_big = st.open_stream(token=tokens.user(big))
    s_low = st.open_stream(token=tokens.user(low))
    s_str = st.open_stream(token=tokens.user(str(2 ** 53 + 1)))
    st.wait_stats({"total_clients": 3, "user_clients": {str(big): 1, str(low): 1, str(2 ** 53 + 1): 1}})
    d = st.publish("send-to-user", user_id=big, event="u", data={"to": "big"})
    assert d["recipients"] == 1, d
    ev = s_big.next_event()
    assert (ev.type, ev.json()) == ("u", {"to": "big"}), ev
    # a number past 2^53 (not exact as a double) is still exact as text
    d = st.publish("send-to-user", user_id=2 ** 53 + 1, event="u", data={"to": "str"})
    assert d["recipients"] == 1, d
    assert s_str.next_event().json() == {"to": "str"}
    st.check_marker([s_big, s_low, s_str])


def test_user_ids_beyond_int64_are_not_clamped(nginx_stack, tokens):
    """A publisher's user_id past int64 is refused, or names a user of its
    own: it never reaches the streams of user 2^63-1."""
    st = nginx_stack
    edge = st.open_stream(token=tokens.user(2 ** 63 - 1))
    for uid in (2 ** 63, 2 ** 64, 2 ** 65, -(2 ** 63) - 1):
        r = st.post("/api/sse/send-to-user", {"user_id": uid, "event": "u", "data": 1})
        assert (r.status, r.error_code) == (400, "invalid_field") or (
            r.status == 200 and r.data["recipients"] == 0), (uid, r)
    st.check_marker([edge])


# --------------------------------------------------------------------------
# sizes at --max-message-bytes


def _padded_body(size, event="pad", data="x"):
    """A JSON object of exactly size bytes: insignificant spaces before its
    closing brace."""
    core = '{"event":%s,"data":%s' % (json.dumps(event), json.dumps(data))
    pad = size - len(core) - 1
    assert pad >= 0, (size, len(core))
    return (core + " " * pad + "}").encode()


@pytest.mark.ssehub_args("--max-message-bytes", 256)
def test_body_size_boundary(nginx_stack):
    st = nginx_stack
    s = st.open_stream(user_id=1)
    r = st.post("/api/sse/broadcast", _padded_body(256))
    assert r.status == 200, r
    ev = s.next_event()
    assert (ev.type, ev.json()) == ("pad", "x"), ev
    r = st.post("/api/sse/broadcast", _padded_body(257))
    assert (r.status, r.error_code) == (413, "payload_too_large"), r
    st.check_marker([s])


def _encoded_size(mid, event, data_json):
    return len("id: %s\n" % mid) + len("event: %s\n" % event) + len("data: %s\n" % data_json) + 1


@pytest.mark.ssehub_args("--max-message-bytes", 512)
def test_encoded_event_size_boundary(nginx_stack):
    """Without an id of its own a message's encoded event (the hub's id
    line added) is longer than its body. What the hub delivers never
    exceeds the limit; it refuses from one size on, with 413, though the
    body fits; it keeps no more room for its id than an id can take
    (HUB_ID_MAX); and nothing refused reaches a stream."""
    st = nginx_stack
    limit, event = 512, "e"
    s = st.open_stream(user_id=1)
    fixed = len("event: %s\n" % event) + len('data: ""\n') + 1
    last_ok = first_refused = None
    # bodies as the harness sends them (json.dumps), all within the limit
    top = limit - len(json.dumps({"event": event, "data": ""}))
    for n in range(limit - fixed - 5 - HUB_ID_MAX - 8, top + 1):
        body = {"event": event, "data": "y" * n}
        r = st.post("/api/sse/broadcast", body)
        if r.status == 200:
            assert first_refused is None, "accepted %d after refusing %d" % (n, first_refused)
            ev = s.next_event()
            assert (ev.type, ev.data, ev.last_event_id) == (event, json.dumps("y" * n), r.data["id"]), ev
            size = _encoded_size(r.data["id"], event, json.dumps("y" * n))
            assert size <= limit, "delivered an event of %d bytes over --max-message-bytes %d" % (size, limit)
            last_ok = n
            continue
        assert (r.status, r.error_code) == (413, "payload_too_large"), (n, r)
        assert len(json.dumps(body)) <= limit
        if first_refused is None:
            first_refused = n
    assert last_ok is not None, "every size from %d bytes of data on was refused" % (limit - fixed - 5 - HUB_ID_MAX - 8)
    assert first_refused is not None, "no 413 up to %d bytes of data (a body of %d bytes)" % (top, limit)
    # the room kept for the id line: at most "id: " + HUB_ID_MAX bytes + "\n"
    assert limit - (fixed + last_ok) <= 5 + HUB_ID_MAX, (last_ok, limit)
    st.check_marker([s])


# --- straight on the FastCGI socket: bodies over 64 KiB in several records


def _fcgi_big_request(listen, uri, token, body, timeout=60):
    """(status, headers, body) of one POST straight on the FastCGI socket
    (the body cut into records of 65535 bytes)."""
    resp = fc.request(listen, "POST", uri, headers={"Authorization": "Bearer " + token}, body=body,
                      timeout=timeout)
    assert resp.complete, resp
    return resp.http()


class _RawStream:
    """A stream read straight from the FastCGI socket, its STDOUT bytes kept
    in a list of chunks (a 16 MiB event in one line is too much for the
    line parser's rescans)."""

    def __init__(self, listen, token):
        self.conn = fc.FcgiConnection(listen, timeout=60)
        self.conn.send_request(fc.cgi_params("GET", "/sse/stream", {"Authorization": "Bearer " + token}))
        got = b""
        while b"event: connected" not in got:
            got += self.read_until(b"\n\n", 1, timeout=10)

    def read_until(self, needle, size_hint, timeout=60):
        """Reads STDOUT until at least size_hint bytes came and they end
        with needle; returns them."""
        chunks, tail, total = [], b"", 0
        deadline = time.monotonic() + timeout
        while total < size_hint or not tail.endswith(needle):
            rec = self.conn.read_record(max(0.1, deadline - time.monotonic()))
            assert rec is not None, "stream ended after %d bytes" % total
            if rec.type == fc.STDOUT and rec.content:
                chunks.append(rec.content)
                total += len(rec.content)
                tail = (tail + rec.content)[-64:]
        return b"".join(chunks)

    def close(self):
        self.conn.close()


def test_sizes_at_the_options_maximum(procs, tokens):
    hub = procs.hub(extra_args=["--max-message-bytes", MAX_MESSAGE_MAX, "--max-queue-bytes", MAX_QUEUE_MAX])
    admin = tokens.admin()
    stream = _RawStream(hub.listen, tokens.user(1))
    try:
        # with an id of its own the body is the longer one: a body of
        # exactly the maximum is delivered, byte for byte
        mid, event = "big-1", "big"
        n = MAX_MESSAGE_MAX - len(json.dumps({"event": event, "id": mid, "data": ""}, separators=(",", ":")))
        data = "z" * n
        body = json.dumps({"event": event, "id": mid, "data": data}, separators=(",", ":")).encode()
        assert len(body) == MAX_MESSAGE_MAX
        status, _, resp = _fcgi_big_request(hub.listen, "/api/sse/broadcast", admin, body)
        assert status == 200, (status, resp[:300])
        assert json.loads(resp)["data"]["recipients"] == 1, resp
        got = stream.read_until(b'"\n\n', n)
        want = ("id: %s\nevent: %s\ndata: \"" % (mid, event)).encode()
        start = got.find(want)
        assert start >= 0, got[:200]
        payload = got[start + len(want):-3]
        assert len(payload) == n and hashlib.sha256(payload).digest() == hashlib.sha256(data.encode()).digest()
        assert len(got) - start == _encoded_size(mid, event, json.dumps(data))

        # a body one byte over the maximum
        status, _, resp = _fcgi_big_request(hub.listen, "/api/sse/broadcast", admin,
                                            _padded_body(MAX_MESSAGE_MAX + 1, event="small"))
        assert status == 413 and json.loads(resp)["error"]["code"] == "payload_too_large", (status, resp[:300])
        # a body of exactly the maximum without an id: the hub's id line
        # makes the encoded event longer than the maximum
        n = MAX_MESSAGE_MAX - len(json.dumps({"event": event, "data": ""}, separators=(",", ":")))
        body = json.dumps({"event": event, "data": "z" * n}, separators=(",", ":")).encode()
        assert len(body) == MAX_MESSAGE_MAX
        status, _, resp = _fcgi_big_request(hub.listen, "/api/sse/broadcast", admin, body)
        assert status == 413 and json.loads(resp)["error"]["code"] == "payload_too_large", (status, resp[:300])
        # and the stream got neither: the next event is this one
        status, _, resp = _fcgi_big_request(hub.listen, "/api/sse/broadcast", admin,
                                            b'{"event":"after","data":1}')
        assert status == 200, resp
        got = stream.read_until(b"\n\n", 10, timeout=10)
        events = [b for b in got.split(b"\n\n") if b and not b.startswith(b"event: ping")]
        assert len(events) == 1 and b"event: after\ndata: 1" in events[0], got[:300]
    finally:
        stream.close()
