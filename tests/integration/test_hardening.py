"""What one hostile user or a planted file can still do (issue 17), for the
parts the hub itself enforces: the per-user stream limit, what a reconnect
may replay and learn, and the history file's writes."""

import json
import os

import pytest

import fcgi_client as fcgi
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
