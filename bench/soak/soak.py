#!/usr/bin/python3
"""Long soak of ssehub behind nginx: connect/disconnect cycles interleaved
with publishes of every kind, then a check that nothing grew and nothing was
lost.

    /usr/bin/python3 bench/soak/soak.py                    # 100,000 cycles
    /usr/bin/python3 bench/soak/soak.py --cycles 5000      # a short run
    /usr/bin/python3 bench/soak/soak.py --cycles 0 --restart-streams 5000
                                                           # only the nginx restart

One cycle: open a stream (random user), do one action, close one stream of
the pool (every 7th with a TCP reset). Actions rotate through broadcast,
send-to-user, send-to-client, disconnect (of a pool stream, by client id),
stats, metrics and a bad request (400/404/405). Every publish carries its own
id ("soak-N"); each stream that was open (connected event received) when a
message was published must receive it, in publish order, exactly once, before
it is closed; a disconnected stream must get its "disconnect" event and end.
The recipient count the hub answers must equal the streams we hold.

Baseline: after a warm-up (cycles/10, at least 200, plus enough broadcasts to
fill the history ring) every stream is closed, the registry is empty, and
ssehub's RSS and open fds are read. The same figures after the run, again
with every stream closed, must be within --tolerance (5 %) of the baseline,
and ssehub's log must hold no level=error or level=warn line.

With --restart-streams N, nginx is also stopped (SIGTERM) with N streams open
and started again: the registry must empty, the fds must come back, new
streams must work.

Prints the figures; exits 1 when a check failed. Needs nginx and the built
src/ssehub (SSEHUB_BIN overrides). Loopback only; every wait is bounded.
"""

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import ssehub_harness as h  # noqa: E402
import fault_support as fs  # noqa: E402

ACTIONS = ("broadcast", "send-to-user", "send-to-client", "disconnect", "stats", "metrics", "bad")


class SoakError(AssertionError):
    pass


class Tracked:
    """A pool stream and what it must receive."""

    def __init__(self, conn, user):
        self.conn = conn
        self.user = user
        self.expected = []          # message ids, in publish order
        self.disconnected = False   # the disconnect API targeted it


class Soak:
    def __init__(self, front, hub, tokens, pool=20, users=8, seed=1, log=print):
        self.front = front
        self.hub = hub
        self.tokens = tokens
        self.admin = tokens.admin()
        self.pool_size = pool
        self.users = ["u%d" % i for i in range(users)]
        self.rng = random.Random(seed)
        self.swarm = fs.StreamSwarm(front.host, front.port, keep_data=True)
        self.pool = []
        self.seq = 0
        self.failures = []
        self.log = log
        self.recent = []            # (monotonic time, client id, user) of streams we closed lately
        self.counts = {a: 0 for a in ACTIONS}
        self.counts.update(cycles=0, opened=0, closed=0, resets=0, delivered=0, messages=0)

    # ---- HTTP

    def call(self, method, path, body=None, expect=200, token="admin"):
        r = h.http_call(self.front, method, path, body=body, token=self.admin if token == "admin" else token,
                        timeout=10)
        if r.status != expect:
            raise SoakError("%s %s %r -> %s %r" % (method, path, body, r.status, r.body[:200]))
        return r

    # ---- streams

    def open_one(self):
        user = self.rng.choice(self.users)
        conns = self.swarm.open(lambda i: self.tokens.user(user), 1, timeout=10)
        c = conns[0]
        if c.state != "streaming":
            raise SoakError("stream for %s not connected: state %s status %s error %s body %r" % (
                user, c.state, c.status, c.error, c.body[:200]))
        t = Tracked(c, user)
        self.pool.append(t)
        self.counts["opened"] += 1
        return t

    def drain(self, t, timeout=5.0):
        """Reads t until it holds every expected id; records a failure if not."""
        c = t.conn
        self.swarm.pump_until(lambda: len(c.ids) >= len(t.expected) or c.state == "done", timeout)
        self.swarm.pump(0)
        if c.state == "done" and not t.disconnected:
            self.failures.append("client %s (user %s): stream ended by the other side (status %s, error %s, "
                                 "reset %s)" % (c.client_id, t.user, c.status, c.error, c.reset))
        if c.ids != t.expected:
            missing = [i for i in t.expected if i not in c.ids]
            extra = [i for i in c.ids if i not in t.expected]
            self.failures.append("client %s (user %s): expected %d messages, got %d; missing %s; unexpected %s; "
                                 "order ok %s" % (c.client_id, t.user, len(t.expected), len(c.ids), missing[:5],
                                                  extra[:5], sorted(c.ids) == sorted(t.expected)))
        self.counts["delivered"] += len([i for i in c.ids if i in t.expected])

    def close_one(self, t=None):
        t = t or self.pool[0]
        self.drain(t)
        self.pool.remove(t)
        reset = self.counts["closed"] % 7 == 6
        self.swarm.close(t.conn, reset=reset)
        self.swarm.conns.remove(t.conn)
        self.recent.append((time.monotonic(), t.conn.client_id, t.user))
        self.counts["closed"] += 1
        self.counts["resets"] += int(reset)

    def close_all(self):
        while self.pool:
            self.close_one(self.pool[0])

    # ---- actions

    def publish(self, route, targets, **body):
        self.seq += 1
        mid = "soak-%d" % self.seq
        body.update(event="soak", data={"n": self.seq, "route": route}, id=mid)
        open_now = [t for t in targets if t.conn.state == "streaming"]
        r = self.call("POST", "/api/sse/" + route, body)
        got = r.json["data"]
        if got["id"] != mid:
            self.failures.append("publish %s answered id %r" % (mid, got["id"]))
        # the hub counts what it holds when the publish arrives: every stream
        # we hold, plus any we closed a moment ago that it has not seen go
        in_flight = self.closing_lately(body)
        if not len(open_now) <= got["recipients"] <= len(open_now) + in_flight:
            self.failures.append("publish %s (%s): recipients %d, streams held %d (+%d closed within 2 s)" % (
                mid, route, got["recipients"], len(open_now), in_flight))
        for t in open_now:
            t.expected.append(mid)
        self.counts["messages"] += 1

    def closing_lately(self, body):
        """How many of the streams we closed in the last 2 s (the hub may not
        have seen them go yet) a publish with this body could reach."""
        now = time.monotonic()
        self.recent = [r for r in self.recent if now - r[0] < 2.0]
        if "client_id" in body:
            return sum(1 for r in self.recent if r[1] == body["client_id"])
        if "user_id" in body:
            return sum(1 for r in self.recent if r[2] == body["user_id"])
        return len(self.recent)

    def act(self, action):
        self.counts[action] += 1
        pool = [t for t in self.pool if not t.disconnected]
        if action == "broadcast":
            self.publish("broadcast", pool)
        elif action == "send-to-user":
            user = self.rng.choice(self.users + ["nobody"])
            self.publish("send-to-user", [t for t in pool if t.user == user], user_id=user)
        elif action == "send-to-client":
            t = self.rng.choice(pool)
            self.publish("send-to-client", [t], client_id=t.conn.client_id)
        elif action == "disconnect":
            t = self.rng.choice(pool)
            r = self.call("POST", "/api/sse/disconnect", {"client_id": t.conn.client_id, "reason": "soak"})
            if r.json["data"]["closed"] != 1:
                self.failures.append("disconnect %s closed %r" % (t.conn.client_id, r.json["data"]))
            t.disconnected = True
            c = t.conn
            self.swarm.pump_until(lambda: c.state == "done", 5)
            if c.state != "done" or not c.events or c.events[-1][0] != "disconnect":
                self.failures.append("client %s: no disconnect event and end (state %s, last %r)" % (
                    c.client_id, c.state, c.events[-1:]))
            self.close_one(t)
            self.open_one()
        elif action == "stats":
            # streams closed a moment ago may still be counted: poll briefly
            deadline = time.monotonic() + 2.0
            while True:
                data = self.call("GET", "/api/sse/stats").json["data"]
                if data["total_clients"] == len(self.pool) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            if data["total_clients"] != len(self.pool):
                self.failures.append("stats total_clients %d, streams held %d (2 s after the last close)" % (
                    data["total_clients"], len(self.pool)))
        elif action == "metrics":
            self.call("GET", "/metrics")
        elif action == "bad":
            kind = self.counts["bad"] % 3
            if kind == 0:
                self.call("POST", "/api/sse/broadcast", '{"event":"e","data":', expect=400)
            elif kind == 1:
                self.call("GET", "/api/sse/nope", expect=404)
            else:
                self.call("GET", "/api/sse/broadcast", expect=405)

    def cycle(self):
        self.open_one()
        self.act(ACTIONS[self.counts["cycles"] % len(ACTIONS)])
        while len(self.pool) > self.pool_size:
            self.close_one(self.rng.choice(self.pool[: max(1, len(self.pool) // 2)]))
        self.counts["cycles"] += 1

    def fill_history(self, n):
        """n broadcasts (with the pool open), so the history ring is full
        before the baseline."""
        for _ in range(n):
            self.publish("broadcast", [t for t in self.pool if not t.disconnected])
            self.swarm.pump(0)

    def wait_empty(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            data = self.call("GET", "/api/sse/stats").json["data"]
            if data["total_clients"] == 0:
                return
            if time.monotonic() > deadline:
                raise SoakError("registry not empty after closing every stream: %r" % data)
            time.sleep(0.02)

    def snapshot(self):
        """RSS (kB) and fds of the hub with every stream closed."""
        self.close_all()
        self.wait_empty()
        time.sleep(0.2)  # let the loops reap what they closed
        return fs.proc_rss_kb(self.hub.pid), fs.proc_fds(self.hub.pid)


def log_problems(path):
    """Lines of the hub's log at level error or warn."""
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if " level=error " in line or " level=warn " in line:
            out.append(line)
    return out


def run_soak(procs, tokens, cycles, pool=20, users=8, warmup=None, history=1000, tolerance=0.05, seed=1,
             progress=None, hub_args=(), rss_tolerance="same"):
    """Starts ssehub (+ nginx) with procs, runs the soak, returns a result
    dict: figures and the list of failures (empty when everything held).
    rss_tolerance None skips the memory check (ASan builds)."""
    if rss_tolerance == "same":
        rss_tolerance = tolerance
    hub = procs.hub(extra_args=["--log-level", "info", "--history-size", str(history)] + list(hub_args))
    front = fs.start_big_nginx(procs, hub)
    s = Soak(front, hub, tokens, pool=pool, users=users, seed=seed)
    warmup = warmup if warmup is not None else max(200, cycles // 10)
    t0 = time.monotonic()
    for _ in range(warmup):
        s.cycle()
    s.fill_history(history)
    rss0, fds0 = s.snapshot()
    t1 = time.monotonic()
    for i in range(cycles):
        s.cycle()
        if progress and (i + 1) % progress == 0:
            print("  %d cycles, %.0f s, hub rss %d kB, fds %d, failures %d" % (
                i + 1, time.monotonic() - t1, fs.proc_rss_kb(hub.pid), fs.proc_fds(hub.pid), len(s.failures)),
                flush=True)
    t2 = time.monotonic()
    rss1, fds1 = s.snapshot()
    problems = log_problems(hub.log_path)
    failures = list(s.failures)
    if rss_tolerance is not None and rss1 > rss0 * (1 + rss_tolerance):
        failures.append("RSS grew from %d kB to %d kB (> %.0f %%)" % (rss0, rss1, rss_tolerance * 100))
    if fds1 > fds0 * (1 + tolerance):
        failures.append("open fds grew from %d to %d" % (fds0, fds1))
    if problems:
        failures.append("%d error/warn lines in the log, first: %s" % (len(problems), problems[0]))
    if not hub.process.alive():
        failures.append("ssehub exited with %r" % hub.process.proc.returncode)
    return {
        "hub": hub, "front": front,
        "cycles": cycles, "warmup": warmup, "counts": dict(s.counts),
        "rss_kb": (rss0, rss1), "fds": (fds0, fds1),
        "seconds": (t1 - t0, t2 - t1), "log_problems": problems, "failures": failures,
    }


def print_result(res):
    c = res["counts"]
    print("cycles %d (+%d warm-up) in %.1f s (warm-up %.1f s)" % (res["cycles"], res["warmup"], res["seconds"][1],
                                                                  res["seconds"][0]))
    print("streams opened %d, closed %d (%d with a TCP reset)" % (c["opened"], c["closed"], c["resets"]))
    print("messages published %d, deliveries checked %d" % (c["messages"], c["delivered"]))
    print("actions: " + ", ".join("%s %d" % (a, c[a]) for a in ACTIONS))
    print("ssehub RSS: baseline %d kB, end %d kB (%+.1f %%)" % (
        res["rss_kb"][0], res["rss_kb"][1], 100.0 * (res["rss_kb"][1] - res["rss_kb"][0]) / res["rss_kb"][0]))
    print("ssehub open fds: baseline %d, end %d" % res["fds"])
    print("log lines at error/warn: %d" % len(res["log_problems"]))
    if res["failures"]:
        print("FAILED:")
        for f in res["failures"][:20]:
            print("  - " + f)
        if len(res["failures"]) > 20:
            print("  ... %d more" % (len(res["failures"]) - 20))
    else:
        print("OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=100000)
    ap.add_argument("--pool", type=int, default=20, help="streams held open at a time (20)")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=None, help="warm-up cycles (cycles/10, at least 200)")
    ap.add_argument("--history", type=int, default=1000, help="ssehub --history-size (1000)")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--restart-streams", type=int, default=0,
                    help="also stop and restart nginx with this many streams open (e.g. 5000)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if not h.find_program("nginx"):
        sys.exit("soak: nginx is not installed")
    binary = h.ssehub_binary()
    if not binary.is_file():
        sys.exit("soak: no ssehub binary at %s (build it, or set SSEHUB_BIN)" % binary)
    workdir = Path(tempfile.mkdtemp(prefix="ssehub-soak-", dir="/tmp"))
    key = h.write_secret(workdir / "jwt.secret")
    tokens = h.Tokens(key)
    failed = False
    print("work directory: %s" % workdir)
    if args.cycles:
        procs = h.Procs(workdir, binary, workdir / "jwt.secret")
        try:
            res = run_soak(procs, tokens, args.cycles, pool=args.pool, users=args.users, warmup=args.warmup,
                           history=args.history, tolerance=args.tolerance, seed=args.seed,
                           progress=max(1000, args.cycles // 20))
            print_result(res)
            failed |= bool(res["failures"])
            rc = res["hub"].stop(timeout=10)
            print("ssehub exit status after SIGTERM: %r" % rc)
            failed |= rc != 0
        finally:
            procs.cleanup()
    if args.restart_streams:
        procs = h.Procs(workdir, binary, workdir / "jwt.secret")
        try:
            hub = procs.hub(name="restart-hub", extra_args=["--log-level", "info"])
            front = fs.start_big_nginx(procs, hub)
            fig = fs.nginx_restart_scenario(procs, hub, tokens, front, args.restart_streams, signal.SIGTERM)
            print(json.dumps({k: v for k, v in fig.items() if k != "failures"}, indent=1))
            if fig["failures"]:
                failed = True
                print("FAILED:\n  - " + "\n  - ".join(fig["failures"]))
            else:
                print("nginx restart with %d streams: OK" % args.restart_streams)
        finally:
            procs.cleanup()
    if not failed and not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
