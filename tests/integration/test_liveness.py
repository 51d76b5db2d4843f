"""--liveness-interval (issue 16) and the per-user limit behind front servers
that notice a departed client late (issue 17).

nginx watches the client while it relays a stream and closes ssehub's
connection the moment the browser leaves. lighttpd and Apache httpd find out
only when they next write to the client: without traffic, a closed tab stays
registered (in the stats, and against --max-clients-per-user) until the next
ping, 30 s or more. --liveness-interval L sends a stream that had nothing
queued for L seconds the SSE comment ":" (ignored by every EventSource), so
that the front writes, fails, and closes ssehub's connection.

How many writes the front needs after the close is measured here:
lighttpd 1 (the client's RST to that write wakes its event loop), Apache 2
(mod_proxy_fcgi polls only ssehub's socket: its first write after the close
still succeeds, the second fails). A comment goes out at the first one-second
tick once a stream has been silent for L seconds, so a departed client is
dropped within WRITES × (L + 1) seconds of closing.
"""

import time

import pytest

import ssehub_harness as h

SLOW_FRONTS = ["lighttpd", "apache"]
WRITES_TO_NOTICE = {"lighttpd": 1, "apache": 2}
TICK = 1.0          # ssehub's timer tick: a comment waits for the first tick after L
SLACK = 0.5         # scheduling on a shared 2-core machine


def need(kind):
    if not h.find_program(h.FRONT_PROGRAMS[kind]):
        pytest.skip("%s is not installed" % h.FRONT_PROGRAMS[kind])


def stack_behind(procs, tokens, kinds, args):
    """One hub with args and one front of each kind in kinds on it."""
    hub = procs.hub(extra_args=[str(a) for a in args])
    return [h.Stack(procs.front(kind, hub=hub), tokens, hub=hub) for kind in kinds]


def removal_bound(kind, interval):
    return WRITES_TO_NOTICE[kind] * (interval + TICK) + SLACK


def default_interval(procs):
    """--liveness-interval's default, from --help (one table drives both)."""
    out = procs.run_hub(["--help"]).stdout
    line = [x for x in out.splitlines() if "--liveness-interval" in x]
    assert line, out
    return int(line[0].rstrip().rsplit("(", 1)[1].rstrip(")"))


@pytest.mark.parametrize("kind", SLOW_FRONTS)
def test_departed_client_is_dropped_within_the_interval(procs, tokens, kind):
    """L = 2 and no pings (3600 s): a client closes; the stats drop within
    WRITES × (L + 1) s. A stream that keeps getting events gets no comment;
    one that stays idle gets comments and nothing an EventSource would see."""
    need(kind)
    interval = 2
    (st,) = stack_behind(procs, tokens, [kind], ["--liveness-interval", interval, "--ping-interval", 3600])
    busy = st.open_stream(user_id="busy")
    idle = st.open_stream(user_id="idle")
    leaving = st.open_stream(user_id="leaving")
    st.wait_stats({"total_clients": 3, "user_clients": {"busy": 1, "idle": 1, "leaving": 1}})

    leaving.close()
    closed_at = time.monotonic()
    bound = removal_bound(kind, interval)
    gone_after = None
    sent = 0
    # keep "busy" busy for longer than L + a tick, and wait for the removal
    while True:
        elapsed = time.monotonic() - closed_at
        if (gone_after is not None and elapsed > interval + TICK + SLACK) or elapsed > bound + 1.0:
            break
        st.publish("send-to-user", user_id="busy", event="work", data=sent)
        sent += 1
        if gone_after is None and st.stats() == {"total_clients": 2, "user_clients": {"busy": 1, "idle": 1}}:
            gone_after = elapsed
        time.sleep(0.4)
    assert gone_after is not None, "%s: the departed client was still counted %.1f s after it closed: %r" % (
        kind, bound + 1.0, st.stats())
    assert gone_after <= bound, "%s: the departed client was dropped after %.2f s, bound %.1f s" % (
        kind, gone_after, bound)

    busy_blocks, idle_blocks = drain(busy), drain(idle)
    assert [b.type for b in busy_blocks if b.dispatched] == ["work"] * sent, busy_blocks
    assert not [b for b in busy_blocks if b.comments], (
        "a stream with traffic every 0.4 s got a liveness comment: %r" % busy_blocks)
    assert [b for b in idle_blocks if b.comments == [""] and not b.fields], (
        "the idle stream got no ':' comment in %.1f s: %r" % (time.monotonic() - closed_at, idle_blocks))
    assert not [b for b in idle_blocks if b.dispatched or b.fields], idle_blocks


def drain(stream, quiet=0.3):
    """Every block the stream has received, up to quiet seconds of silence."""
    out = []
    while True:
        b = stream.next_block(quiet)
        if b is None:
            return out
        out.append(b)


@pytest.mark.parametrize("kind", SLOW_FRONTS)
def test_without_liveness_closed_tabs_linger(procs, tokens, kind):
    """The case the option exists for: liveness off, pings far apart, a
    limit of 4 per user; a user who reloads 5 times in a row is refused
    (429), because the 4 closed streams are still registered."""
    need(kind)
    (st,) = stack_behind(procs, tokens, [kind], ["--liveness-interval", 0, "--ping-interval", 3600,
                                                  "--max-clients-per-user", 4])
    tab = st.open_stream(user_id="reloader")
    for i in range(4):
        tab.close()
        tab = st.open_stream(user_id="reloader", wait_connected=False)
        if tab.status != 200:
            break
        tab.wait_event("connected")
    assert (tab.status, tab.json and tab.json["error"]["code"]) == (429, "too_many_user_clients"), (
        "reload %d: %s %r" % (i + 1, tab.status, tab.body[:200]))
    assert st.stats()["user_clients"] == {"reloader": 4}


def test_reloading_user_is_not_locked_out_with_the_defaults(procs, tokens):
    """Defaults (the per-user limit and the liveness interval): one user
    reloads a page behind lighttpd and another behind Apache, once a second,
    17 times, more than the limit of 16 streams per user: every reload gets
    its stream, and no more closed tabs linger than the bound allows."""
    kinds = [k for k in SLOW_FRONTS if h.find_program(h.FRONT_PROGRAMS[k])]
    if not kinds:
        pytest.skip("neither lighttpd nor apache2 is installed")
    limit = 16
    help_text = procs.run_hub(["--help"]).stdout
    assert "open streams per user, 0 = no limit (%d)" % limit in help_text, help_text
    interval = default_interval(procs)
    assert interval > 0, "liveness is off by default"
    stacks = stack_behind(procs, tokens, kinds, [])
    tabs = {k: st.open_stream(user_id="reload-%s" % k) for k, st in zip(kinds, stacks)}
    peak = {k: 1 for k in kinds}
    for i in range(limit + 1):
        t0 = time.monotonic()
        for k, st in zip(kinds, stacks):
            tabs[k].close()
            tab = st.open_stream(user_id="reload-%s" % k, wait_connected=False)
            assert tab.status == 200, "%s, reload %d: %s %r (stats %r)" % (k, i + 1, tab.status, tab.body[:200],
                                                                          st.stats())
            tab.wait_event("connected")
            tabs[k] = tab
            peak[k] = max(peak[k], st.stats()["user_clients"].get("reload-%s" % k, 0))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    print("streams registered for one reloading tab, at most: %r (limit %d, --liveness-interval %d)" % (
        peak, limit, interval))
    for k in kinds:
        # one reload a second: at most about WRITES x (L + 1) closed tabs linger
        assert peak[k] <= WRITES_TO_NOTICE[k] * (interval + TICK) + 2, (
            "%s: %d streams registered for one tab" % (k, peak[k]))
