"""What one hostile user or a planted file can still do (issue 17), for the
parts the hub itself enforces: the per-user stream limit, what a reconnect
may replay and learn, and the history file's writes."""

import json
import os
import signal

import pytest

import fcgi_client as fcgi
import ssehub_harness as h
from delivery_support import connected_data, expect_event, wait_gone


def resume(stack, user, last_id):
    return stack.open_stream(user_id=user, headers={"Last-Event-ID": last_id})


# --------------------------------------------------------------------------
# one user cannot take every connection


@pytest.mark.ssehub_args("--ping-interval", "1")  # lighttpd notices a closed client when it next writes
def test_per_user_limit_is_16_by_default(stack):
    mine = [stack.open_stream(user_id="greedy") for _ in range(16)]
    r = stack.open_stream(user_id="greedy", wait_connected=False)
    assert r.status == 429 and r.json["error"]["code"] == "too_many_user_clients", (r.status, r.body[:300])
    r.close()
    other = stack.open_stream(user_id="polite")
    mine.pop().close()
    stack.wait_stats({"total_clients": 16, "user_clients": {"greedy": 15, "polite": 1}}, timeout=3.0)
    again = stack.open_stream(user_id="greedy")
    stack.check_marker([again, other])


# --------------------------------------------------------------------------
# replay


def test_custom_id_of_another_users_message_is_unknown(stack):
    """A custom id chosen by the publisher for user 2's message: user 1
    resuming from it gets exactly what an id that never existed gets."""
    a = stack.open_stream(user_id=1)
    stack.publish("send-to-user", user_id=2, event="secret", data=1, id="invoice-77")
    after = stack.broadcast("after", 1)
    expect_event(a, "after", 1, after["id"])
    guess = resume(stack, 1, "invoice-77")
    never = resume(stack, 1, "invoice-78")
    assert connected_data(guess).get("resumed") is False, connected_data(guess)
    assert connected_data(never).get("resumed") is False, connected_data(never)
    owner = resume(stack, 2, "invoice-77")
    assert connected_data(owner).get("resumed") is True, connected_data(owner)
    expect_event(owner, "after", 1, after["id"])
    stack.check_marker([a, guess, never, owner])


@pytest.mark.ssehub_args("--max-replay-bytes", "40000", "--max-message-bytes", "20000")
def test_replay_is_bounded(stack):
    """One reconnect from an old id may not replay more than
    --max-replay-bytes: it is told resumed:false and counted; a short gap
    still replays."""
    a = stack.open_stream(user_id=1)
    start = stack.broadcast("start", 0)
    expect_event(a, "start", 0, start["id"])
    ids = [stack.broadcast("big", {"n": n, "blob": "z" * 9000})["id"] for n in range(8)]
    for n in range(8):
        expect_event(a, "big", {"n": n, "blob": "z" * 9000}, ids[n])
    far = resume(stack, 1, start["id"])
    assert connected_data(far).get("resumed") is False, connected_data(far)
    near = resume(stack, 1, ids[-3])
    assert connected_data(near).get("resumed") is True
    expect_event(near, "big", {"n": 6, "blob": "z" * 9000}, ids[-2])
    expect_event(near, "big", {"n": 7, "blob": "z" * 9000}, ids[-1])
    metrics = stack.request("GET", "/metrics").body.decode()
    assert "sse_replays_refused_total 1\n" in metrics, [l for l in metrics.splitlines() if "replay" in l]
    stack.check_marker([a, far, near])


# --------------------------------------------------------------------------
# the history file


def _hub_with_history(procs, tokens, history, name):
    hub = procs.hub(name=name, extra_args=["--history-file", str(history)])
    admin = tokens.admin()
    body = json.dumps({"user_id": 7, "event": "private", "data": "for user 7 only"}).encode()
    resp = fcgi.request(hub.listen, "POST", "/api/sse/send-to-user", {"Authorization": "Bearer " + admin}, body)
    assert resp.http()[0] == 200, resp
    return hub


def test_history_file_never_written_through_a_planted_link(procs, tokens, workdir):
    """A symlink planted at PATH.tmp must not make ssehub overwrite its
    target with private history; the file is created 0600."""
    history = workdir / "history.dat"
    victim = workdir / "victim.txt"
    victim.write_text("do not touch\n")
    os.symlink(victim, str(history) + ".tmp")
    hub = _hub_with_history(procs, tokens, history, "hf1")
    assert hub.stop(timeout=5) == 0
    assert victim.read_text() == "do not touch\n", "the history went through the planted link"
    assert history.exists() and not history.is_symlink()
    assert (os.stat(history).st_mode & 0o777) == 0o600, oct(os.stat(history).st_mode)
    assert "for user 7 only" in history.read_text()


def test_history_file_that_is_a_symlink_is_refused(procs, tokens, workdir):
    history = workdir / "history.dat"
    victim = workdir / "victim.txt"
    victim.write_text("do not touch\n")
    os.symlink(victim, history)
    hub = _hub_with_history(procs, tokens, history, "hf2")
    assert hub.stop(timeout=5) == 0
    assert victim.read_text() == "do not touch\n"
    assert "event=history_file_refused" in hub.log()


# --------------------------------------------------------------------------
# publishers get JSON, subscribers get JSON


@pytest.mark.parametrize("body", [
    "{'event':'e','data':1}",                        # single quotes
    '{"event":"e","data":1,}',                       # trailing comma
    '{"event":"e","data":1 /* c */}',                # comment
    '{"event":"e","data":1} // c',
    '{"event":"e","data":"a\nb"}',                   # raw LF in a string
    '{"event":"e","data":NaN}',
    '{"event":"e","data":Infinity}',
    '{"event":"e","data":-Infinity}',
    '{"event":"e","data":TRUE}',
    '{"event":"e","data":1.}',
    '{"event":"e","data":01}',
    '{"event":"e","data":.5}',
    '{"event":"e","data":+1}',
    '{"event":"e","event":"f","data":1}',            # a name twice: parsers disagree on which wins
    '{"event":"e","data":"\\ud800"}',                # a lone surrogate
])
def test_bodies_that_are_not_json_are_refused(stack, body):
    s = stack.open_stream(user_id="json-reader")
    r = stack.request("POST", "/api/sse/broadcast", body=body)
    assert r.status == 400 and r.error_code == "invalid_json", (body, r)
    stack.check_marker([s])


def test_data_goes_out_as_written(stack):
    """Numbers keep their text (no clamping of 99999999999999999999, no
    rewriting of -0 or 1.5e300), escapes stay, only whitespace goes."""
    s = stack.open_stream(user_id="numbers")
    raw = '{ "event" : "n", "data" : { "big" : 99999999999999999999, "neg0" : -0, "e" : 1.5e300, ' \
          '"s" : "a\\/b \\u00e9", "arr" : [ 1 , 2.50 , true , null ] } }'
    r = stack.request("POST", "/api/sse/broadcast", body=raw)
    assert r.status == 200, r
    ev = s.next_event(5)
    assert ev.type == "n", ev
    assert ev.data == '{"big":99999999999999999999,"neg0":-0,"e":1.5e300,"s":"a\\/b \\u00e9","arr":[1,2.50,true,null]}', \
        ev.data


@pytest.mark.parametrize("user_id", ["18446744073709551615", "9223372036854775808", "-9223372036854775809",
                                     "1.0", "1e3", '"a\\u0085b"', '"a\\u2028b"', '""', "true", "[1]"])
def test_user_ids_out_of_range_or_not_text_are_refused(stack, user_id):
    """Never clamped to another user: 18446744073709551615 reached user
    9223372036854775807 in round 1."""
    victim = stack.open_stream(user_id="9223372036854775807")
    body = '{"user_id":%s,"event":"e","data":1}' % user_id
    r = stack.request("POST", "/api/sse/send-to-user", body=body)
    assert r.status == 400 and r.error_code == "invalid_field", (body, r)
    r = stack.request("POST", "/api/sse/disconnect", body='{"user_id":%s}' % user_id)
    assert r.status == 400, (user_id, r)
    stack.check_marker([victim])


@pytest.mark.parametrize("name", ["note\u000bevent: logout", "a\u0085b", "a\u2028b", "a\u2029b", "a\tb", "a\u007fb"])
def test_event_names_and_ids_are_text(stack, name):
    s = stack.open_stream(user_id="text")
    for field in ("event", "id"):
        body = {"event": "ok", "data": 1}
        body[field] = name
        r = stack.request("POST", "/api/sse/broadcast", body=body)
        assert r.status == 400 and r.error_code == "invalid_field", (field, name, r)
    stack.check_marker([s])


@pytest.mark.ssehub_args("--ping-interval", "1")  # lighttpd notices the close at the next write
def test_log_lines_cannot_be_forged(stack):
    """A user id with quotes and spaces stays one quoted value: the
    connect and disconnect lines hold it escaped, and no line gains a field."""
    user = 'mallory" admin=1 reason=forged x="'
    s = stack.open_stream(user_id=user)
    s.close()
    h.wait_until(lambda: any("event=disconnect" in l and "mallory" in l for l in stack.hub.log().splitlines()), 5,
                 message="the disconnect line")
    lines = [l for l in stack.hub.log().splitlines() if "mallory" in l and "event=" in l]
    assert len(lines) >= 2, lines
    for l in lines:
        assert 'user="mallory\\" admin=1 reason=forged x=\\""' in l, l


# --------------------------------------------------------------------------
# a leaked key stops working on open streams


def test_streams_of_a_rotated_out_key_end_with_token_revoked(procs, tokens, workdir):
    """Key A is rotated out and SIGHUP reloads: A's open streams (tokens
    valid for ten more years) end with a token_revoked event, B's stay;
    a new stream with A's token is refused."""
    fa, fb = workdir / "a.secret", workdir / "b.secret"
    ka, kb = h.write_secret(fa), h.write_secret(fb)
    hub = procs.hub(name="rot", secret_file=fa, extra_args=["--jwt-secret-file", fb])
    stack = h.Stack(procs.front("nginx", hub=hub), h.Tokens(ka))
    year = 365 * 24 * 3600
    ta, tb = h.Tokens(ka).make("leaked", exp_in=10 * year), h.Tokens(kb).make("kept", exp_in=10 * year)
    on_a = [stack.open_stream(token=ta) for _ in range(2)]  # the second is a token cache hit
    on_b = stack.open_stream(token=tb)
    h.write_secret(fa)
    hub.process.proc.send_signal(signal.SIGHUP)
    for s in on_a:
        ev = s.next_event(5)
        assert ev is not None and ev.type == "token_revoked", ev
        s.read_to_end(timeout=5)
        assert s.clean_end, "the revoked stream did not end cleanly"
    r = stack.open_stream(token=ta, wait_connected=False)
    assert r.status == 401, (r.status, r.body[:200])
    r.close()
    stack.tokens = h.Tokens(kb)
    stack.admin_token = stack.tokens.admin()
    stack.check_marker([on_b])


# --------------------------------------------------------------------------
# time arithmetic never overflows (the UBSan run of this suite checks it)


@pytest.mark.parametrize("claims", [
    {"exp": 2 ** 63 - 1},                       # "never expires": UBSan died on exp + leeway in round 1
    {"exp": 2 ** 63 - 1, "nbf": -(2 ** 63)},
    {"exp": 2 ** 63 - 1, "iat": -(2 ** 63), "nbf": 0},
    {"exp": 1e300},
])
def test_extreme_token_times_are_handled(stack, claims):
    tok = stack.tokens.make("times", exp_in=0, **claims)  # claims["exp"] replaces it
    s = stack.open_stream(token=tok)
    stack.check_marker([s])
    assert stack.hub.process.alive()
