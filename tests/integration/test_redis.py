"""Several ssehub processes act as one hub through Redis (issue 12): every
API route acts on the whole cluster, one id sequence, Last-Event-ID on any
node, gaps repaired, exact cluster stats, and what happens when Redis or a
node fails. Real redis-server (and redis-sentinel) in the test's directory,
the nodes behind a real nginx."""

import json
import os
import re
import signal
import threading
import time

import pytest

import fcgi_client as fcgi
import ssehub_harness as h
from redis_support import RedisServer, Resp, Sentinel, TcpProxy, find_redis

pytestmark = pytest.mark.skipif(not find_redis(), reason="redis-server is not installed")
SLOW = 10.0


# --------------------------------------------------------------------------
# helpers


def health(hub):
    status, _, body = fcgi.request(hub.listen, "GET", "/api/sse/health", timeout=5).http()
    return json.loads(body)["data"] if status == 200 else None


def wait_backplane(hub, state="ok", timeout=SLOW):
    h.wait_until(lambda: (health(hub) or {}).get("backplane") == state, timeout,
                 message="%s's backplane to be %s" % (hub.name, state))


class Direct:
    """A stream straight on one node's socket, with its events parsed."""

    def __init__(self, hub, token, headers=None, uri="/sse/stream"):
        hdr = {"Authorization": "Bearer " + token}
        hdr.update(headers or {})
        self.hub = hub
        self.req = fcgi.FcgiRequest(hub.listen, uri=uri, headers=hdr, timeout=SLOW)
        self.parser = h.SSEParser()
        self.fed = 0
        self.events = []
        assert self.wait(lambda: any(e.type == "connected" for e in self.events), SLOW), (hub.name, self.req.response)
        self.connected = next(e.json() for e in self.events if e.type == "connected")

    def _pump(self):
        out = self.req.response.stdout
        if self.fed == 0:
            head = out.find(b"\r\n\r\n")
            if head < 0:
                return
            self.fed = head + 4
        if len(out) > self.fed:
            self.parser.feed(out[self.fed:])
            self.fed = len(out)
            while self.parser.blocks:
                b = self.parser.blocks.popleft()
                if b.dispatched and b.type != "ping":
                    self.events.append(b)

    def wait(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if cond():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self.req.response.eof or self.req.response.end:
                self._pump()
                return cond()
            self.req.read(lambda r: False, min(left, 0.2))

    def named(self, event):
        return [e for e in self.events if e.type == event]

    def close(self):
        self.req.close()


class Cluster:
    def __init__(self, procs, tokens, redis_url, n=3, extra=(), front=True, wait=True, prefix="n"):
        self.procs = procs
        self.prefix = prefix
        self.tokens = tokens
        self.admin = tokens.admin()
        self.hubs = []
        for i in range(n):
            self.add(redis_url, extra, wait)
        self.front = procs.front("nginx", upstream=[x.upstream for x in self.hubs]) if front else None
        self.stack = h.Stack(self.front, tokens) if front else None

    def add(self, redis_url, extra=(), wait=True, name=None):
        name = name or "%s%d" % (self.prefix, len(self.hubs))
        hub = self.procs.hub(name=name, extra_args=["--redis", redis_url, "--node-id", name, "--loops", 2,
                                                     "--ping-interval", 1] + list(extra))
        if wait:
            wait_backplane(hub)
        self.hubs.append(hub)
        return hub

    def stream(self, i, user, topics=(), **kw):
        if topics:
            # the token allows what the stream asks for, and no more
            return Direct(self.hubs[i], self.tokens.user(user, topics=list(topics)),
                          uri="/sse/stream?" + "&".join("topic=" + t for t in topics), **kw)
        return Direct(self.hubs[i], self.tokens.user(user), **kw)

    def api(self, i, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        r = fcgi.request(self.hubs[i].listen, method, path, {"Authorization": "Bearer " + self.admin}, data,
                         timeout=SLOW)
        status, headers, out = r.http()
        return status, headers, json.loads(out) if out else None

    def publish(self, i, route, **body):
        status, _, out = self.api(i, "POST", "/api/sse/" + route, body)
        assert status == 200, (route, body, status, out)
        return out["data"]

    def stats(self, i, topics=False):
        status, _, out = self.api(i, "GET", "/api/sse/stats" + ("?topics=1" if topics else ""))
        assert status == 200, out
        return out["data"]


@pytest.fixture
def redis(workdir):
    r = RedisServer(workdir)
    yield r
    r.stop()


def ids_seq(ident):
    m = re.fullmatch(r"([0-9a-f]+)-(\d+)", ident)
    assert m, ident
    return m.group(1), int(m.group(2))


# --------------------------------------------------------------------------
# every route acts on the whole cluster


def test_every_route_acts_on_the_whole_cluster(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url)
    a0, a1 = c.stream(0, "alice"), c.stream(1, "alice")
    b2 = c.stream(2, "bob")
    everyone = [a0, a1, b2]
    # a broadcast through nginx (any node) and through each node: once each, in order
    got = [c.stack.broadcast("news", {"n": 0})]
    for i in range(3):
        got.append(c.publish(i, "broadcast", event="news", data={"n": i + 1}))
    assert [g["recipients"] for g in got] == [3, 3, 3, 3], got
    for s in everyone:
        assert s.wait(lambda s=s: len(s.named("news")) == 4, SLOW), s.events
        assert [e.json()["n"] for e in s.named("news")] == [0, 1, 2, 3]
        assert [e.id for e in s.named("news")] == [g["id"] for g in got]
    # one id sequence for the cluster, in publish order
    epochs, seqs = zip(*(ids_seq(g["id"]) for g in got))
    assert len(set(epochs)) == 1 and list(seqs) == sorted(seqs) and len(set(seqs)) == 4, got
    # a user's streams on two nodes, from the third node
    r = c.publish(2, "send-to-user", user_id="alice", event="for-alice", data=1)
    assert r["recipients"] == 2, r
    # a client on node 2, from node 0
    r = c.publish(0, "send-to-client", client_id=b2.connected["client_id"], event="for-bob", data=2)
    assert r["recipients"] == 1, r
    for s, want in ((a0, ["for-alice"]), (a1, ["for-alice"]), (b2, ["for-bob"])):
        assert s.wait(lambda s=s, w=want: [e.type for e in s.events if e.type.startswith("for-")] == w, SLOW), s.events
    # nothing else arrived
    time.sleep(0.3)
    for s in everyone:
        s._pump()
        assert len([e for e in s.events if e.type.startswith("for-")]) == 1, s.events
    # disconnect a user from a node that holds none of its streams
    status, _, out = c.api(2, "POST", "/api/sse/disconnect", {"user_id": "alice", "reason": "bye"})
    assert status == 200 and out["data"]["closed"] == 2, out
    for s in (a0, a1):
        assert s.wait(lambda s=s: s.req.response.end is not None, SLOW), s.events
        assert s.named("disconnect") and s.named("disconnect")[0].json() == {"reason": "bye"}
    h.wait_until(lambda: c.stats(1)["total_clients"] == 1, SLOW, message="cluster total 1")
    for s in everyone:
        s.close()


def test_cluster_stats_are_exact_and_a_dead_node_drops_out(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, front=False)
    streams = [c.stream(0, "u1"), c.stream(0, "u2"), c.stream(1, "u1"), c.stream(2, "u3"), c.stream(2, "u3")]
    st = c.stats(1)
    assert st["total_clients"] == 5 and st["user_clients"] == {"u1": 2, "u2": 1, "u3": 2}, st
    assert sorted((n["id"], n["clients"]) for n in st["nodes"]) == [("n0", 2), ("n1", 1), ("n2", 2)], st
    assert st["node"] == {"id": "n1", "clients": 1} and "partial" not in st, st
    # counts move at once, not only on the heartbeat
    streams[0].close()
    h.wait_until(lambda: c.stats(2)["user_clients"].get("u1") == 1, 2.0, message="u1 down to 1 at once")
    # a node killed with -9 leaves the totals within 10 s; no counter drifts
    t0 = time.monotonic()
    c.hubs[2].process.proc.send_signal(signal.SIGKILL)
    h.wait_until(lambda: c.stats(0)["total_clients"] == 2, 12, message="the dead node to drop out")
    took = time.monotonic() - t0
    st = c.stats(0)
    assert st["user_clients"] == {"u1": 1, "u2": 1} and [n["id"] for n in st["nodes"]] == ["n0", "n1"] or \
        sorted(n["id"] for n in st["nodes"]) == ["n0", "n1"], st
    assert took <= 10.5, "the dead node stayed in the totals for %.1f s" % took
    for s in streams[1:3]:
        s.close()


def test_per_user_limit_is_cluster_wide(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, extra=["--max-clients-per-user", 2], front=False)
    a = c.stream(0, "greedy")
    b = c.stream(1, "greedy")
    for i in (0, 1):
        r = fcgi.request(c.hubs[i].listen, "GET", "/sse/stream", {"Authorization": "Bearer " + tokens.user("greedy")},
                         timeout=SLOW)
        status, headers, body = r.http()
        assert status == 429 and json.loads(body)["error"]["code"] == "too_many_user_clients", (i, status, body)
    a.close()
    h.wait_until(lambda: c.stats(1)["user_clients"].get("greedy") == 1, 3, message="the slot to free")
    again = c.stream(1, "greedy")
    again.close()
    b.close()


# --------------------------------------------------------------------------
# Last-Event-ID on any node


def test_resume_on_another_node_replays_exactly_what_was_missed(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    s = c.stream(0, "carol")
    first = c.publish(0, "broadcast", event="m", data=0)
    assert s.wait(lambda: len(s.named("m")) == 1, SLOW)
    s.close()
    missed = [c.publish(1, "broadcast", event="m", data=1),
              c.publish(0, "send-to-user", user_id="carol", event="m", data=2),
              c.publish(1, "send-to-user", user_id="dave", event="m", data="not for carol"),
              c.publish(0, "broadcast", event="m", data=3, id="custom-3")]
    # a node that started after all of it has no local history: the log answers
    late = c.add(redis.url, name="late")
    for idx, node in ((1, c.hubs[1]), (2, late)):
        back = Direct(node, tokens.user("carol"), headers={"Last-Event-ID": first["id"]})
        assert back.connected.get("resumed") is True, (node.name, back.connected)
        assert back.wait(lambda: len(back.named("m")) == 3, SLOW), (node.name, back.events)
        assert [e.json() for e in back.named("m")] == [1, 2, 3], (node.name, back.events)
        assert [e.id for e in back.named("m")] == [missed[0]["id"], missed[1]["id"], "custom-3"]
        back.close()
    # from the publisher's own id, on the late node
    back = Direct(late, tokens.user("carol"), headers={"Last-Event-ID": missed[1]["id"]})
    assert back.connected.get("resumed") is True and back.wait(lambda: len(back.named("m")) == 1, SLOW)
    assert back.named("m")[0].id == "custom-3"
    back.close()
    # another user's message id is unknown there too
    other = Direct(late, tokens.user("carol"), headers={"Last-Event-ID": missed[2]["id"]})
    assert other.connected.get("resumed") is False, other.connected
    other.close()


def test_a_gap_on_the_bus_is_repaired_from_the_log(procs, tokens, redis):
    """A sequence number that never came over pub/sub (at-most-once): the
    node reads it from the log before it delivers the next one."""
    c = Cluster(procs, tokens, redis.url, n=1, front=False)
    s = c.stream(0, "erin")
    one = c.publish(0, "broadcast", event="g", data=1)
    assert s.wait(lambda: len(s.named("g")) == 1, SLOW)
    # what the publish script does, without its PUBLISH: seq+1 only in the log
    epoch, seq = ids_seq(one["id"])
    r = redis.client()
    nseq = r.call("HINCRBY", "ssehub:{h}:meta", "seq", 1)
    assert nseq == seq + 1
    msg = "%s:%d:%d\n\nb\n\n\nevent: g\ndata: 2\n\n" % (epoch, nseq, int(time.time()))
    r.call("XADD", "ssehub:{h}:log", "%d-0" % nseq, "m", msg)
    r.close()
    three = c.publish(0, "broadcast", event="g", data=3)
    assert s.wait(lambda: len(s.named("g")) == 3, SLOW), s.events
    assert [e.json() for e in s.named("g")] == [1, 2, 3]
    assert [e.id for e in s.named("g")] == [one["id"], "%s-%d" % (epoch, nseq), three["id"]]
    m = fcgi.request(c.hubs[0].listen, "GET", "/metrics", {"Authorization": "Bearer " + c.admin}).http()[2].decode()
    assert "sse_backplane_gap_repairs_total 1\n" in m, m
    s.close()


# --------------------------------------------------------------------------
# when things fail


def test_redis_unreachable_then_back(procs, tokens, redis):
    """One node loses Redis (a partition): its streams stay open with their
    pings, a publish answers 503 backplane_unavailable within 1 s, new
    streams are accepted, stats are partial, health degraded; when Redis is
    back, what the other node published meanwhile reaches it."""
    proxy = TcpProxy(redis.unix)
    try:
        c = Cluster(procs, tokens, redis.url, n=1, front=False)
        cut = c.add(proxy.url, name="cut")
        s = Direct(cut, tokens.user("frank"))
        proxy.cut()
        wait_backplane(cut, "unavailable", 6)
        assert health(cut)["status"] == "degraded"
        t0 = time.monotonic()
        status, headers, out = c.api(1, "POST", "/api/sse/broadcast", {"event": "x", "data": 1})
        took = time.monotonic() - t0
        assert status == 503 and out["error"]["code"] == "backplane_unavailable", (status, out)
        assert headers.get("retry-after") == "1" and took < 1.0, (headers, took)
        st = c.stats(1)
        assert st["partial"] is True and st["total_clients"] == 1, st
        fresh = Direct(cut, tokens.user("frank"))
        meanwhile = [c.publish(0, "broadcast", event="while-away", data=i)["id"] for i in range(5)]
        s.wait(lambda: False, 1.5)
        assert not s.named("while-away") and not s.req.response.end, "the stream ended or got messages while cut off"
        assert b"event: ping" in s.req.response.stdout[-2000:], "no ping while Redis was away"
        proxy.restore()
        wait_backplane(cut, "ok", 15)
        for x in (s, fresh):
            assert x.wait(lambda x=x: len(x.named("while-away")) == 5, SLOW), x.events
            assert [e.id for e in x.named("while-away")] == meanwhile
        s.close()
        fresh.close()
    finally:
        proxy.stop()


def test_a_subscription_that_goes_silent_is_noticed(procs, tokens, redis):
    proxy = TcpProxy(redis.unix)
    try:
        c = Cluster(procs, tokens, redis.url, n=1, front=False)
        quiet = c.add(proxy.url, name="quiet")
        s = Direct(quiet, tokens.user("gina"))
        proxy.freeze_subscribers()
        t0 = time.monotonic()
        wait_backplane(quiet, "unavailable", 6)
        took = time.monotonic() - t0
        assert took < 6, took
        published = c.publish(0, "broadcast", event="after-freeze", data=1)
        proxy.restore()
        wait_backplane(quiet, "ok", 15)
        assert s.wait(lambda: len(s.named("after-freeze")) == 1, SLOW), s.events
        assert s.named("after-freeze")[0].id == published["id"]
        assert "event=bus_probe_lost" in quiet.log()
        s.close()
    finally:
        proxy.stop()


def test_redis_restarted_without_its_data_changes_the_epoch(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    s = c.stream(0, "hank")
    old = c.publish(1, "broadcast", event="e", data=1)
    assert s.wait(lambda: len(s.named("e")) == 1, SLOW)
    redis.kill()
    redis.start()
    for hub in c.hubs:
        wait_backplane(hub, "ok", 20)
    new = c.publish(1, "broadcast", event="e", data=2)
    assert ids_seq(new["id"])[0] != ids_seq(old["id"])[0], (old, new)
    assert s.wait(lambda: len(s.named("e")) == 2, SLOW), s.events
    # the old id is of another numbering: not resumed, nothing replayed wrongly
    back = Direct(c.hubs[1], tokens.user("hank"), headers={"Last-Event-ID": old["id"]})
    assert back.connected.get("resumed") is False, back.connected
    back.close()
    s.close()


def test_sequence_going_back_rotates_the_epoch(procs, tokens, redis):
    """After a failover that lost writes the sequence in Redis is lower
    than what the nodes saw: they take a new epoch instead of reusing ids."""
    c = Cluster(procs, tokens, redis.url, n=1, front=False)
    ids = [c.publish(0, "broadcast", event="e", data=i)["id"] for i in range(5)]
    epoch, seq = ids_seq(ids[-1])
    redis.call("HSET", "ssehub:{h}:meta", "seq", seq - 3)
    redis.call("CLIENT", "KILL", "TYPE", "pubsub")
    redis.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    wait_backplane(c.hubs[0], "ok", 15)
    h.wait_until(lambda: redis.call("HGET", "ssehub:{h}:meta", "epoch").decode() != epoch, 10,
                 message="a new epoch")
    # every loop's connection comes back on its own backoff: 503 until then
    h.wait_until(lambda: c.api(0, "POST", "/api/sse/broadcast", {"event": "e", "data": "after"})[0] == 200, 10,
                 message="publishes to work again")
    new = c.publish(0, "broadcast", event="e", data="after")
    assert ids_seq(new["id"])[0] != epoch and new["id"] not in ids, (ids, new)
    assert "event=epoch_changed" in c.hubs[0].log()


def test_sentinel_failover_is_followed(procs, tokens, workdir):
    master = RedisServer(workdir, "master", tcp=True)
    replica = RedisServer(workdir, "replica", tcp=True, replica_of=master)
    sentinels = []
    try:
        h.wait_until(lambda: b"master_link_status:up" in replica.call("INFO", "replication"), 10,
                     message="the replica to sync")
        sentinels = [Sentinel(workdir, "s%d" % i, master) for i in range(3)]
        spec = ",".join("127.0.0.1:%d" % x.port for x in sentinels)
        c = Cluster(procs, tokens, None, n=0, front=False)
        for i in range(2):
            hub = procs.hub(name="f%d" % i, extra_args=["--redis-sentinel", spec, "--redis-master", "ssehub-m",
                                                         "--node-id", "f%d" % i, "--ping-interval", 1])
            wait_backplane(hub)
            c.hubs.append(hub)
        s = c.stream(1, "ivy")
        before = c.publish(0, "broadcast", event="e", data=1)
        assert s.wait(lambda: len(s.named("e")) == 1, SLOW)
        time.sleep(0.5)  # let the write reach the replica
        t0 = time.monotonic()
        master.kill()
        h.wait_until(lambda: int(sentinels[0].master()[1]) == replica.port, 30, message="the sentinels to promote")
        for hub in c.hubs:
            wait_backplane(hub, "ok", 30)
        took = time.monotonic() - t0
        after = c.publish(0, "broadcast", event="e", data=2)
        assert s.wait(lambda: len(s.named("e")) == 2, SLOW), s.events
        assert after["id"] != before["id"]
        print("failover followed in %.1f s" % took)
        s.close()
    finally:
        for x in sentinels:
            x.stop()
        replica.stop()
        master.stop()


def test_a_node_killed_mid_broadcast(procs, tokens, redis):
    """Publishes keep going through nginx while one node is killed: the
    other nodes' streams get every message that was accepted, once, in
    order; the dead node's clients come back on another node with their
    Last-Event-ID and replay what they missed."""
    c = Cluster(procs, tokens, redis.url)
    streams = {i: [c.stream(i, "k%d" % j) for j in range(3)] for i in range(3)}
    accepted = []
    stop = threading.Event()

    def publisher():
        n = 0
        while not stop.is_set() and n < 300:
            mid = "kill-%d" % n
            for _ in range(20):
                r = c.stack.request("POST", "/api/sse/broadcast", body={"event": "k", "data": n, "id": mid})
                if r.status == 200:
                    accepted.append(mid)
                    break
                time.sleep(0.05)  # a 502 or 503 while the node goes: the same id again
            n += 1

    t = threading.Thread(target=publisher)
    t.start()
    time.sleep(0.5)
    c.hubs[2].process.proc.send_signal(signal.SIGKILL)
    t.join(60)
    stop.set()
    assert len(accepted) == 300, len(accepted)
    for i in (0, 1):
        for s in streams[i]:
            assert s.wait(lambda s=s: len(s.named("k")) >= 300, SLOW), (i, len(s.named("k")))
            assert [e.id for e in s.named("k")] == accepted, "node %d: not every message once, in order" % i
    for s in streams[2]:
        s._pump()
        last = s.named("k")[-1].id if s.named("k") else None
        if last is None:
            continue
        back = Direct(c.hubs[0], tokens.user("k0"), headers={"Last-Event-ID": last})
        assert back.connected.get("resumed") is True, back.connected
        rest = accepted[accepted.index(last) + 1:]
        assert back.wait(lambda: len(back.named("k")) == len(rest), SLOW), (len(back.named("k")), len(rest))
        assert [e.id for e in back.named("k")] == rest
        back.close()
    for i in (0, 1):
        for s in streams[i]:
            s.close()


# --------------------------------------------------------------------------
# set-up, bad input, isolation


def test_password_file_and_url_rules(procs, tokens, workdir):
    r = RedisServer(workdir, "pw", password="s3cret-Pass")
    try:
        pw = workdir / "redis.pw"
        pw.write_text("s3cret-Pass\n")
        hub = procs.hub(name="pw", extra_args=["--redis", r.url, "--redis-password-file", pw])
        wait_backplane(hub)
        assert "s3cret" not in hub.log()
        bad = procs.run_hub(["--listen", "unix:%s" % (workdir / "x.sock"), "--jwt-secret-file", procs.secret_file,
                             "--redis", "redis://user:s3cret@127.0.0.1:6379"])
        assert bad.returncode == 2 and "password in the URL is refused" in bad.stderr, bad.stderr
        nopw = procs.hub(name="nopw", extra_args=["--redis", r.url])
        time.sleep(1.5)
        assert health(nopw)["backplane"] == "unavailable"
    finally:
        r.stop()


def test_prefixes_keep_hubs_apart(procs, tokens, redis):
    a = Cluster(procs, tokens, redis.url, n=1, front=False, extra=["--redis-prefix", "appa"], prefix="a")
    b = Cluster(procs, tokens, redis.url, n=1, front=False, extra=["--redis-prefix", "appb"], prefix="b")
    sa, sb = a.stream(0, "x"), b.stream(0, "x")
    a.publish(0, "broadcast", event="only-a", data=1)
    b.publish(0, "broadcast", event="only-b", data=2)
    assert sa.wait(lambda: sa.named("only-a"), SLOW) and sb.wait(lambda: sb.named("only-b"), SLOW)
    time.sleep(0.3)
    sa._pump()
    sb._pump()
    assert not sa.named("only-b") and not sb.named("only-a")
    assert a.stats(0)["total_clients"] == 1 and b.stats(0)["total_clients"] == 1
    sa.close()
    sb.close()


def test_bad_input_from_redis_is_logged_and_skipped(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=1, front=False)
    s = c.stream(0, "jay")
    for garbage in (b"garbage", b"ffff:1:1\n\nq\n\n\nbody", b"zz:1:1\n\nb\n\n\nbody", b"ab:18446744073709551616:1\n\nb\n\n\nx",
                    b"ab:1:1\n" + b"u" * 300 + b"\nb\n\n\nx", b"ab:1:1\n\nb\nkey-for-broadcast\n\nx", b"ab:1:1\n\nb\n\n\n"):
        redis.call("PUBLISH", "ssehub:{h}:bus", garbage)
    ok = c.publish(0, "broadcast", event="fine", data=1)
    assert s.wait(lambda: s.named("fine"), SLOW), s.events
    assert s.named("fine")[0].id == ok["id"]
    assert c.hubs[0].log().count("event=bad_bus_message") >= 7
    # a key of the wrong type under the prefix: the publish fails cleanly
    redis.call("DEL", "ssehub:{h}:meta")
    redis.call("SET", "ssehub:{h}:meta", "not a hash")
    status, _, out = c.api(0, "POST", "/api/sse/broadcast", {"event": "x", "data": 1})
    assert status == 503 and out["error"]["code"] == "backplane_unavailable", out
    assert "event=redis_script_error" in c.hubs[0].log()
    assert health(c.hubs[0]) is not None and c.hubs[0].process.alive()
    s.close()


def test_one_script_call_per_publish(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    streams = [c.stream(i % 2, "s%d" % i) for i in range(6)]
    redis.call("CONFIG", "RESETSTAT")
    for i in range(20):
        c.publish(i % 2, "broadcast", event="e", data=i)
    stats = redis.call("INFO", "commandstats").decode()
    calls = {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", stats)}
    assert calls.get("evalsha", 0) + calls.get("eval", 0) >= 20
    # per publish one script; the rest is the heartbeats and probes, not per stream
    assert calls.get("publish", 0) <= 20 + 10, calls
    for s in streams:
        assert s.wait(lambda s=s: len(s.named("e")) == 20, SLOW)
        s.close()


@pytest.mark.parametrize("front", ["nginx", "lighttpd"])
def test_nodes_behind_one_front_server(procs, tokens, redis, front):
    """The shipped examples with one server/host line per node: streams
    and API calls land on any node and act on all of them."""
    if not h.find_program(front):
        pytest.skip("%s is not installed" % front)
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    f = procs.front(front, upstream=[x.upstream for x in c.hubs])
    stack = h.Stack(f, tokens)
    streams = [stack.open_stream(user_id="front-%d" % i) for i in range(6)]
    direct = [c.stream(i, "direct-%d" % i) for i in range(2)]
    r = stack.broadcast("everyone", {"n": 1})
    assert r["recipients"] == 8, r
    for s in streams:
        ev = s.next_event(SLOW)
        assert ev is not None and ev.type == "everyone", ev
    for d in direct:
        assert d.wait(lambda d=d: len(d.named("everyone")) == 1, SLOW)
    st = stack.stats()
    assert st["total_clients"] == 8 and sum(n["clients"] for n in st["nodes"]) == 8, st
    stack.check_marker(streams)
    for s in streams:
        s.close()
    for d in direct:
        d.close()


def test_a_publishers_id_is_an_idempotency_key(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    s = c.stream(1, "ola")
    first = c.publish(0, "send-to-user", user_id="ola", event="pay", data=1, id="payment-77")
    again = c.publish(1, "send-to-user", user_id="ola", event="pay", data=1, id="payment-77")
    assert first == {"id": "payment-77", "recipients": 1}, first
    assert again["id"] == "payment-77" and again.get("duplicate") is True and again["recipients"] == 0, again
    marker = c.publish(0, "broadcast", event="marker", data=0)
    assert s.wait(lambda: s.named("marker"), SLOW)
    assert [e.id for e in s.events if e.type in ("pay", "marker")] == ["payment-77", marker["id"]], s.events
    s.close()


# --------------------------------------------------------------------------
# topics across the nodes (issue 13 with issue 12)


def topic_clients(c, i=0):
    return c.stats(i, topics=True)["topic_clients"]


def test_topics_work_across_nodes_with_exact_cluster_counts(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, front=False)
    s0 = c.stream(0, "t-a", topics=["orders/42"])
    s1 = c.stream(1, "t-b", topics=["orders/42", "rooms/ops"])
    s2 = c.stream(2, "t-c", topics=["rooms/ops"])
    assert s1.connected["topics"] == ["orders/42", "rooms/ops"], s1.connected
    # counted at once (not on the next heartbeat), on every node's answer
    h.wait_until(lambda: topic_clients(c, 2) == {"orders/42": 2, "rooms/ops": 2}, 2.0,
                 message="cluster topic_clients")
    st = c.stats(1, topics=True)
    assert st["node"] == {"id": "n1", "clients": 1, "topic_clients": {"orders/42": 1, "rooms/ops": 1}}, st
    assert "topic_clients" not in c.stats(1), "without ?topics=1 the answer is the seed's"
    # a publish on node 2 reaches the two streams of orders/42 on nodes 0 and 1, once each
    r = c.publish(2, "publish", topic="orders/42", event="status", data={"n": 1})
    assert r["recipients"] == 2, r
    r2 = c.publish(0, "publish", topic="rooms/ops", event="status", data={"n": 2})
    assert r2["recipients"] == 2, r2
    assert c.publish(1, "publish", topic="nobody/here", event="status", data=0)["recipients"] == 0
    marker = c.publish(0, "broadcast", event="marker", data=0)
    for s, want in ((s0, [1]), (s1, [1, 2]), (s2, [2])):
        assert s.wait(lambda s=s: s.named("marker"), SLOW), s.events
        assert [e.json()["n"] for e in s.named("status")] == want, (s.hub.name, s.events)
    assert [e.id for e in s1.named("status")] == [r["id"], r2["id"]]
    # a stream that goes leaves the counts at once
    s1.close()
    h.wait_until(lambda: topic_clients(c, 0) == {"orders/42": 1, "rooms/ops": 1}, 2.0,
                 message="the closed stream to leave its topics")
    assert c.publish(1, "publish", topic="orders/42", event="status", data={"n": 3})["recipients"] == 1
    assert s0.wait(lambda: len(s0.named("status")) == 2, SLOW), s0.events
    s0.close()
    s2.close()
    h.wait_until(lambda: topic_clients(c, 1) == {}, 2.0, message="no topic left")


def test_server_side_subscriptions_reach_every_node(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, front=False)
    a0, a1 = c.stream(0, "alice"), c.stream(1, "alice")
    b2 = c.stream(2, "bob")
    # from the node that holds none of alice's streams
    r = c.publish(2, "subscribe", user_id="alice", topics=["rooms/x", "rooms/y"])
    assert r == {"recipients": 2}, r
    # the change is in the bus's order: a publish right after it, from
    # another node, reaches both streams after their "subscribed" event
    pub = c.publish(0, "publish", topic="rooms/x", event="say", data="hello")
    for s in (a0, a1):
        assert s.wait(lambda s=s: s.named("say"), SLOW), (s.hub.name, s.events)
        kinds = [e.type for e in s.events if e.type in ("subscribed", "say")]
        assert kinds == ["subscribed", "say"], (s.hub.name, kinds)
        assert s.named("subscribed")[0].json() == {"topics": ["rooms/x", "rooms/y"]}
        assert s.named("say")[0].id == pub["id"]
    h.wait_until(lambda: topic_clients(c, 2) == {"rooms/x": 2, "rooms/y": 2}, 2.0, message="subscribed counts")
    assert c.publish(2, "publish", topic="rooms/y", event="say", data="y")["recipients"] == 2
    # one client of alice, from node 0, leaves rooms/x
    r = c.publish(0, "unsubscribe", client_id=a1.connected["client_id"], topics=["rooms/x"])
    assert r == {"recipients": 1}, r
    assert a1.wait(lambda: a1.named("unsubscribed"), SLOW), a1.events
    assert a1.named("unsubscribed")[0].json() == {"topics": ["rooms/x"]}
    h.wait_until(lambda: topic_clients(c, 1) == {"rooms/x": 1, "rooms/y": 2}, 2.0, message="unsubscribed counts")
    last = c.publish(1, "publish", topic="rooms/x", event="say", data="only a0")
    assert last["recipients"] == 1, last
    marker = c.publish(2, "broadcast", event="marker", data=0)
    for s, want in ((a0, ["hello", "y", "only a0"]), (a1, ["hello", "y"]), (b2, [])):
        assert s.wait(lambda s=s: s.named("marker"), SLOW), s.events
        assert [e.json() for e in s.named("say")] == want, (s.hub.name, s.events)
    assert not b2.named("subscribed"), b2.events
    # unknown user or client: nothing changed, not an error
    assert c.publish(1, "subscribe", user_id="nobody", topics=["rooms/x"]) == {"recipients": 0}
    assert c.publish(1, "unsubscribe", client_id="00000000-0000-4000-8000-000000000000",
                     topics=["rooms/x"]) == {"recipients": 0}
    for s in (a0, a1, b2):
        s.close()


def test_topic_replay_on_another_node_follows_the_streams_topics(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    s = c.stream(0, "rita", topics=["orders/7"])
    first = c.publish(0, "publish", topic="orders/7", event="o", data=0)
    assert s.wait(lambda: s.named("o"), SLOW)
    s.close()
    missed = [c.publish(1, "publish", topic="orders/7", event="o", data=1),
              c.publish(0, "publish", topic="orders/8", event="o", data="not rita's topic"),
              c.publish(1, "subscribe", user_id="someone", topics=["orders/7"]),
              c.publish(0, "broadcast", event="o", data=2),
              c.publish(1, "publish", topic="orders/7", event="o", data=3)]
    late = c.add(redis.url, name="late")
    back = Direct(late, tokens.user("rita", topics=["orders/7"]), uri="/sse/stream?topic=orders/7",
                  headers={"Last-Event-ID": first["id"]})
    assert back.connected.get("resumed") is True, back.connected
    assert back.wait(lambda: len(back.named("o")) == 3, SLOW), back.events
    assert [e.json() for e in back.named("o")] == [1, 2, 3], back.events
    assert [e.id for e in back.named("o")] == [missed[0]["id"], missed[3]["id"], missed[4]["id"]]
    back.close()
    # the id of another topic's message is unknown to a stream without it
    other = Direct(late, tokens.user("rita", topics=["orders/7"]), uri="/sse/stream?topic=orders/7",
                   headers={"Last-Event-ID": missed[1]["id"]})
    assert other.connected.get("resumed") is False, other.connected
    other.close()


def test_lost_topic_counts_are_rewritten_by_the_heartbeat(procs, tokens, redis):
    c = Cluster(procs, tokens, redis.url, n=2, front=False)
    streams = [c.stream(0, "h1", topics=["beat/a"]), c.stream(1, "h2", topics=["beat/a", "beat/b"])]
    h.wait_until(lambda: topic_clients(c) == {"beat/a": 2, "beat/b": 1}, 2.0, message="counts")
    # Redis loses node 1's topic counts (and gets a wrong one for node 0)
    redis.call("HDEL", "ssehub:{h}:node:n1", "t:beat/a", "t:beat/b")
    redis.call("HSET", "ssehub:{h}:node:n0", "t:beat/a", "9")
    assert topic_clients(c) == {"beat/a": 9}
    h.wait_until(lambda: topic_clients(c) == {"beat/a": 2, "beat/b": 1}, 6.0,
                 message="the heartbeat to rewrite the counts")
    assert c.publish(0, "publish", topic="beat/b", event="x", data=1)["recipients"] == 1
    for s in streams:
        s.close()


def test_a_subscription_change_from_redis_is_checked(procs, tokens, redis):
    """A node trusts Redis no more than a peer: a subscribe message whose
    topic list is not one (a bad name, a repeated name, too many, empty) is
    dropped whole, logged, and the stream keeps working."""
    c = Cluster(procs, tokens, redis.url, n=1, front=False)
    s = c.stream(0, "vic")
    c.publish(0, "broadcast", event="warm", data=0)  # the epoch exists
    assert s.wait(lambda: s.named("warm"), SLOW)
    epoch = redis.call("HGET", "ssehub:{h}:meta", "epoch").decode()
    bad_lists = [b"rooms/ok\nbad topic", b"rooms/ok\nrooms/ok", b"\n".join(b"t%d" % i for i in range(33)),
                 b"x" * 201, b"rooms/\x00", b"\n"]
    for body in bad_lists:
        seq = redis.call("HINCRBY", "ssehub:{h}:meta", "seq", 1)
        m = b"%s:%d:%d\n\nj\nvic\n\n%s" % (epoch.encode(), seq, int(time.time()), body)
        redis.call("XADD", "ssehub:{h}:log", "%d-0" % seq, "m", m)
        redis.call("PUBLISH", "ssehub:{h}:bus", m)
    ok = c.publish(0, "subscribe", user_id="vic", topics=["rooms/fine"])
    assert ok == {"recipients": 1}, ok
    assert s.wait(lambda: s.named("subscribed"), SLOW), s.events
    assert [e.json() for e in s.named("subscribed")] == [{"topics": ["rooms/fine"]}], s.events
    log = c.hubs[0].log()
    assert log.count('reason="not a topic list"') + log.count("event=bad_bus_message") >= len(bad_lists), log[-3000:]
    assert c.hubs[0].process.alive()
    s.close()
