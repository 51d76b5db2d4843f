#!/usr/bin/python3
"""cluster: ssehub with the Redis backplane, measured (issue 12).

Scenarios, each system started in turn on its own Redis (redis-server on a
loopback TCP port, no persistence) and a private nginx:

  scale     3 ssehub nodes behind nginx with 6 workers hold --scale streams
            (45,000: more than one process's 20,000 descriptors allow),
            opened by 3 sseload processes from 8 source addresses each, then
            10 broadcasts: every one delivered to every stream exactly once;
            memory per stream (the nodes, nginx, Redis).
  fanout    N streams (10,000), 20 broadcasts 250 ms apart: latency p50/p99,
            for ssehub alone (in memory), ssehub alone with --redis, 3 ssehub
            nodes with --redis, and Nchan in its Redis mode (nchan_redis_pass
            to the same kind of redis-server, one channel per user plus the
            broadcast channel, as in compare.py).
  targeted  N users with one stream each; 2 x N send-to-user messages over
            16 keep-alive publishers: publishes/s and delivery p99, same
            systems; and Redis commands per publish (INFO commandstats).

  bench/cluster.py                 # full run, ~10 min: writes bench/CLUSTER.md and results/cluster.json
  bench/cluster.py --quick         # 1,500 streams, one repetition, to a temp dir
  bench/cluster.py --reps 3 --scenarios fanout,targeted -n 10000

Needs what compare.py needs, plus redis-server and libnginx-mod-nchan.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import compare as C  # noqa: E402  (the shared measuring tools)
import frontconf  # noqa: E402

SYSTEMS = ("ssehub", "ssehub-redis", "ssehub-3", "nchan-redis")
LABEL = {"ssehub": "ssehub, one node, in memory", "ssehub-redis": "ssehub, one node, --redis",
         "ssehub-3": "ssehub, 3 nodes, --redis", "nchan-redis": "Nchan, Redis mode"}

NCHAN_REDIS_HTTP = """    nchan_shared_memory_size 256M;
    upstream redis_server {{
        nchan_redis_server redis://127.0.0.1:{port};
    }}
"""
NCHAN_REDIS_LOC = """        location = /sse/stream {{
            nchan_subscriber eventsource;
            nchan_subscriber_channel_id user_$arg_u broadcast;
            nchan_redis_pass redis_server;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
            nchan_redis_pass redis_server;
        }}
        location = /api/sse/health {{
            return 200 '{{"success":true}}';
        }}"""


class Redis:
    def __init__(self, d):
        self.dir = os.path.join(d, "redis")
        os.makedirs(self.dir)
        self.port = C.free_port()
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\nprotected-mode no\n"
                    "logfile %s/redis.log\nclient-output-buffer-limit pubsub 256mb 128mb 60\n"
                    % (self.port, self.dir, self.dir))
        self.p = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if self.call("PING") == "PONG":
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def call(self, *args):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(b"".join([b"*%d\r\n" % len(args)] +
                               [b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode()) for a in args]))
            data = b""
            while not data.endswith(b"\r\n") or (data[:1] == b"$" and data.count(b"\r\n") < 2):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            if data[:1] == b"+":
                return data[1:-2].decode()
            if data[:1] == b"$":
                return data.split(b"\r\n", 1)[1][:-2].decode()
            return data.decode()
        finally:
            s.close()

    def commandstats(self):
        out = {}
        for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", self.call("INFO", "commandstats")):
            out[m.group(1)] = int(m.group(2))
        return out

    def rss_kb(self):
        return C.rss_kb(self.p.pid)

    def stop(self):
        C.stop_pid(self.p.pid, signal.SIGTERM, 10)


class ClusterSystem:
    """ssehub with 1 or 3 nodes (with or without Redis), or Nchan in Redis
    mode, behind one private nginx."""

    def __init__(self, name, env, nodes=1, workers=2):
        self.name = name
        self.env = env
        self.nodes = 3 if name == "ssehub-3" else nodes
        self.workers = workers
        self.hubs = []
        self.redis = None
        self.front = None

    def start(self):
        e = self.env
        self.d = tempfile.mkdtemp(prefix="cl-%s-" % self.name, dir=e.tmp)
        os.chmod(self.d, 0o755)
        self.port = C.free_port()
        if self.name != "ssehub":
            self.redis = Redis(self.d)
        socks = []
        if self.name.startswith("ssehub"):
            for i in range(self.nodes):
                sock = "%s/n%d.sock" % (self.d, i)
                cmd = [e.ssehub_bin, "--listen", "unix:" + sock, "--socket-mode", "0666",
                       "--jwt-secret-file", e.secret, "--shutdown-spread", "0", "--log-level", "warn",
                       "--node-id", "n%d" % i]
                if self.redis:
                    cmd += ["--redis", "redis://127.0.0.1:%d" % self.redis.port]
                self.hubs.append(subprocess.Popen(cmd + e.ssehub_args, stdout=open("%s/n%d.log" % (self.d, i), "w"),
                                                  stderr=subprocess.STDOUT))
                socks.append("unix:" + sock)
            for s in socks:
                end = time.monotonic() + 10
                while not os.path.exists(s[5:]):
                    if time.monotonic() > end:
                        raise RuntimeError("%s: a node did not start" % self.name)
                    time.sleep(0.05)
        ngx = os.path.join(self.d, "nginx")
        listen = C.LISTEN % self.port
        nofile = e.nofile
        if self.name.startswith("ssehub"):
            site = frontconf.nginx_site(socks, listen, os.path.join(self.d, "htdocs"))
        else:
            site = NCHAN_REDIS_HTTP.format(port=self.redis.port) + C.SERVER.format(listen=listen,
                                                                                   locations=NCHAN_REDIS_LOC.format())
        conf = frontconf.write_nginx(ngx, site, workers=self.workers, worker_connections=nofile, rlimit_nofile=nofile,
                                     error_log_level="warn", access_log=False,
                                     main_extra=["load_module %s" % C.NCHAN_SO] if "nchan" in self.name else [])
        self.front = subprocess.Popen(["nginx", "-p", ngx + "/", "-c", str(conf), "-e", os.path.join(ngx, "error.log")],
                                      stdout=subprocess.DEVNULL, stderr=open(self.d + "/nginx.out", "w"))
        end = time.monotonic() + 20
        while True:
            st, body = C.http_get("http://127.0.0.1:%d/api/sse/health" % self.port, timeout=2)
            healthy = st == 200 and (self.name in ("ssehub", "nchan-redis") or b'"backplane":"ok"' in body)
            if healthy and len(self.front_pids()) >= self.workers + 1:
                break
            if time.monotonic() > end:
                raise RuntimeError("%s: not healthy (%s %r)" % (self.name, st, body[:200]))
            time.sleep(0.1)
        if self.nodes > 1:
            # every node's backplane up, not just the one nginx asked
            time.sleep(2.5)

    def front_pids(self):
        if not self.front or self.front.poll() is not None:
            return []
        return [self.front.pid] + C.children(self.front.pid)

    def hub_pids(self):
        return [h.pid for h in self.hubs if h.poll() is None]

    def sample(self):
        return {"hub_rss_kb": sum(C.rss_kb(p) for p in self.hub_pids()),
                "nginx_rss_kb": sum(C.rss_kb(p) for p in self.front_pids()),
                "redis_rss_kb": self.redis.rss_kb() if self.redis else 0}

    def stream_args(self):
        if "nchan" in self.name:
            return ["-T", self.env.user_ids, "-q", "u", "-O", ":"]
        return ["-T", self.env.user_tokens]

    def pub_args(self):
        if "nchan" in self.name:
            return ["-k", "nchan"]
        return ["-k", "ssehub", "-T", self.env.admin_file]

    def stop(self):
        if self.front:
            C.stop_pid(self.front.pid, signal.SIGTERM, 10)
        for h in self.hubs:
            h.send_signal(signal.SIGTERM)
        rcs = []
        for h in self.hubs:
            try:
                rcs.append(h.wait(15))
            except subprocess.TimeoutExpired:
                h.kill()
                rcs.append("killed")
        if self.redis:
            self.redis.stop()
        return rcs


def load(env, system, n, extra, tag, parts=1):
    """parts sseload processes sharing n streams (one process holds at most
    the open-file limit)."""
    loads = []
    per = -(-n // parts)
    for i in range(parts):
        k = min(per, n - i * per)
        out, err, ready = ["%s/load-%s-%d.%s" % (system.d, tag, i, x) for x in ("out", "err", "ready")]
        args = [env.sseload, "-p", str(system.port), "-n", str(k), "-R", ready, "-c", "120", "-i", "0.5",
                "-w", "900", "-s", "8", "-r", str(env.rate // parts), "-P", str(max(50, env.pending // parts))]
        args += system.stream_args() + extra
        if "-T" in args and parts > 1:
            # each process starts at its own token line: every stream its own user
            toks = os.path.join(system.d, "tok-%s-%d" % (tag, i))
            src = args[args.index("-T") + 1]
            with open(src) as f, open(toks, "w") as g:
                lines = f.read().splitlines()
                g.write("\n".join(lines[(i * per) % len(lines):] + lines[:(i * per) % len(lines)]) + "\n")
            args[args.index("-T") + 1] = toks
        loads.append((subprocess.Popen(args, stdout=open(out, "w"), stderr=open(err, "w")), out, err, ready))
    return loads


def wait_ready(loads, timeout):
    end = time.monotonic() + timeout
    while not all(os.path.exists(r) for _, _, _, r in loads):
        if time.monotonic() > end or any(p.poll() is not None for p, _, _, _ in loads):
            return False
        time.sleep(0.1)
    return True


def delivered_so_far(loads):
    total = 0
    for _, _, err, _ in loads:
        try:
            tail = open(err, "rb").read()[-4096:].decode(errors="replace")
        except OSError:
            continue
        m = re.findall(r"msgs=(\d+)", tail)
        total += int(m[-1]) if m else 0
    return total


def finish(loads):
    res = []
    for p, out, _, _ in loads:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        res.append(C.kv_parse(open(out).read()))
    return res


def merged(results):
    """The load figures of several sseload processes together (latency
    percentiles: the worst of the parts)."""
    out = {"open": 0, "delivered": 0, "seq_errors": 0}
    for r in results:
        out["open"] += int(C.num(r.get("streams_opened_total"), 0))
        out["delivered"] += int(C.num(r.get("messages_delivered"), 0))
        out["seq_errors"] += int(C.num(r.get("seq_errors"), 0))
        for q in ("p50", "p99", "max"):
            v = C.num(r.get("latency_%s_ms" % q))
            if v is not None:
                out["lat_" + q] = max(out.get("lat_" + q, 0), v)
    return out


def run_pub(env, system, args, timeout):
    cmd = [env.ssepost, "-p", str(system.port)] + system.pub_args() + args
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return C.kv_parse(r.stdout)
    except subprocess.TimeoutExpired:
        return {"failed": "timeout"}


def scenario_fanout(env, name, n, msgs, interval_ms, workers=2, parts=1):
    sysm = ClusterSystem(name, env, workers=workers)
    r = {"scenario": "fanout" if parts == 1 else "scale", "system": name, "n": n}
    sysm.start()
    try:
        time.sleep(0.5)
        idle = sysm.sample()
        loads = load(env, sysm, n, ["-S", "-W", str(n // 1000 + 90)], "fan", parts)
        r["ready"] = wait_ready(loads, n // 500 + 120)
        time.sleep(1.5)
        held = sysm.sample()
        st, body = C.http_get("http://127.0.0.1:%d/api/sse/stats" % sysm.port,
                              {"Authorization": "Bearer " + env.admin_token})
        try:
            r["clients_reported"] = json.loads(body)["data"]["total_clients"]
        except (ValueError, KeyError, TypeError):
            r["clients_reported"] = None
        # One publisher connection: its broadcasts reach the hub one after
        # the other, so the order of their seq is the order the cluster
        # gives them, and "out of order" counts the hub's. (With one
        # connection per broadcast, as compare.py publishes, a request that
        # waits in a busy node's queue is overtaken by the next one at
        # another node; 45,000 streams saw 3 such swaps, the same 3 at
        # every stream.)
        pub = run_pub(env, sysm, ["-b", "-n", str(msgs), "-c", "1", "-i", str(interval_ms)],
                      msgs * interval_ms / 1000 + 120) if r["ready"] else {}
        end = time.monotonic() + 60
        last, last_t = -1, time.monotonic()
        while time.monotonic() < end:
            got = delivered_so_far(loads)
            if got >= n * msgs:
                break
            if got != last:
                last, last_t = got, time.monotonic()
            elif time.monotonic() - last_t > 5:
                break
            time.sleep(0.2)
        r["pub_ok"] = int(C.num(pub.get("ok"), 0))
        r.update(merged(finish(loads)))
    finally:
        r["exit"] = sysm.stop()
    r["expected"] = n * msgs
    if r["open"]:
        for k in ("hub", "nginx", "redis"):
            r["%s_b_per_stream" % k] = (held["%s_rss_kb" % k] - idle["%s_rss_kb" % k]) * 1024 / r["open"]
        r["b_per_stream"] = sum(r["%s_b_per_stream" % k] for k in ("hub", "nginx", "redis"))
    return r


def scenario_targeted(env, name, users, msgs, conns):
    sysm = ClusterSystem(name, env)
    r = {"scenario": "targeted", "system": name, "n": users}
    sysm.start()
    try:
        time.sleep(0.5)
        loads = load(env, sysm, users, ["-W", str(users // 1000 + 90)], "tgt")
        ok = wait_ready(loads, users // 500 + 120)
        time.sleep(1.0)
        before = sysm.redis.commandstats() if sysm.redis else {}
        pub = run_pub(env, sysm, ["-n", str(msgs), "-c", str(conns), "-U", str(users)], 600) if ok else {}
        after = sysm.redis.commandstats() if sysm.redis else {}
        end = time.monotonic() + 30
        while delivered_so_far(loads) < msgs and time.monotonic() < end:
            time.sleep(0.2)
        r.update(merged(finish(loads)))
        r["pub_ok"] = int(C.num(pub.get("ok"), 0))
        r["req_per_s"] = C.num(pub.get("req_per_s"))
        r["post_p99"] = C.num(pub.get("post_ms_p99"))
        if sysm.redis and r["pub_ok"]:
            diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            r["redis_calls"] = {k: v for k, v in diff.items() if v}
            r["scripts_per_publish"] = (diff.get("evalsha", 0) + diff.get("eval", 0)) / r["pub_ok"]
            r["commands_per_publish"] = sum(diff.values()) / r["pub_ok"]
    finally:
        r["exit"] = sysm.stop()
    r["expected"] = msgs
    return r


def med(vals):
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None


def report(runs, env, out_md):
    def pick(scen, name, key):
        return med([r.get(key) for r in runs if r["scenario"] == scen and r["system"] == name])

    def f(v, nd=0):
        return "–" if v is None else ("%.*f" % (nd, v))

    lines = ["# ssehub with the Redis backplane", "",
             "Written by `bench/cluster.py` on %s; commit %s; %s; medians of %d repetition(s), interleaved." % (
                 time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), env.commit, env.machine, env.reps), ""]
    if any(r["scenario"] == "scale" for r in runs):
        r = [x for x in runs if x["scenario"] == "scale"][-1]
        lines += ["## Beyond one process's descriptors", "",
                  "3 ssehub nodes with `--redis`, nginx with 6 workers, %d streams (one user each) opened by 3 "
                  "sseload processes from 8 source addresses each, then %d broadcasts from one publisher connection "
                  "(so their order is the hub's: a stream that saw one twice or out of that order counts)." % (
                      r["n"], env.scale_msgs), "",
                  "| streams open | stats total_clients | delivered / expected | out of order or twice | "
                  "latency p50 / p99 | memory per stream: nodes / nginx / Redis / all |",
                  "|---|---|---|---|---|---|",
                  "| %d | %s | %d / %d | %d | %s / %s ms | %s / %s / %s / %s B |" % (
                      r["open"], r.get("clients_reported"), r["delivered"], r["expected"], r["seq_errors"],
                      f(r.get("lat_p50")), f(r.get("lat_p99")), f(r.get("hub_b_per_stream")),
                      f(r.get("nginx_b_per_stream")), f(r.get("redis_b_per_stream")), f(r.get("b_per_stream"))), ""]
    if any(r["scenario"] == "fanout" for r in runs):
        lines += ["## Fan-out, %d streams, %d broadcasts %d ms apart" % (env.n, env.msgs, env.interval), "",
                  "| system | delivered / expected | p50 | p99 | max | memory per stream (all) |", "|---|---|---|---|---|---|"]
        for name in env.systems:
            lines.append("| %s | %s / %s | %s ms | %s ms | %s ms | %s B |" % (
                LABEL[name], f(pick("fanout", name, "delivered")), f(pick("fanout", name, "expected")),
                f(pick("fanout", name, "lat_p50")), f(pick("fanout", name, "lat_p99")),
                f(pick("fanout", name, "lat_max")), f(pick("fanout", name, "b_per_stream"))))
        base, ch = pick("fanout", "nchan-redis", "lat_p99"), pick("fanout", "ssehub-3", "lat_p99")
        mem, red = pick("fanout", "ssehub", "lat_p99"), pick("fanout", "ssehub-redis", "lat_p99")
        lines += ["", "p99, 3 nodes against Nchan with Redis: **%s×** (target ≤ 1.0); one node with `--redis` against "
                  "one node in memory: **%s×** (target ≤ 1.2)." % (
                      f(ch / base, 2) if ch and base else "–", f(red / mem, 2) if red and mem else "–"), ""]
    if any(r["scenario"] == "targeted" for r in runs):
        lines += ["## Targeted publishes, %d users, %d send-to-user over 16 keep-alive publishers" % (env.n, 2 * env.n), "",
                  "| system | publishes/s | publish p99 | delivered / expected | delivery p99 | Redis scripts per publish | Redis commands per publish |",
                  "|---|---|---|---|---|---|---|"]
        for name in env.systems:
            lines.append("| %s | %s | %s ms | %s / %s | %s ms | %s | %s |" % (
                LABEL[name], f(pick("targeted", name, "req_per_s")), f(pick("targeted", name, "post_p99"), 1),
                f(pick("targeted", name, "delivered")), f(pick("targeted", name, "expected")),
                f(pick("targeted", name, "lat_p99")), f(pick("targeted", name, "scripts_per_publish"), 2),
                f(pick("targeted", name, "commands_per_publish"), 2)))
        lines += ["", "Commands per publish counts everything Redis ran during the publish phase (`INFO "
                  "commandstats`), the nodes' heartbeats and probes included: one script call per publish, not "
                  "one command per stream.", ""]
    with open(out_md, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--scale", type=int, default=45000)
    ap.add_argument("--scenarios", default="scale,fanout,targeted")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    env = C.Env()
    env.tmp = tempfile.mkdtemp(prefix="ssehub-cluster.")
    os.chmod(env.tmp, 0o755)  # nginx workers (nobody) reach the sockets
    env.notes = []
    env.systems = [s for s in a.systems.split(",") if s]
    env.ssehub_bin = os.environ.get("SSEHUB_BIN", os.path.join(os.path.dirname(HERE), "src", "ssehub"))
    env.ssehub_args = os.environ.get("SSEHUB_ARGS", "").split()
    env.nofile = 20000
    env.rate, env.pending = 3000, 400
    env.reps = 1 if a.quick else a.reps
    env.n = 1500 if a.quick else a.n
    env.scale_n = 3000 if a.quick else a.scale
    env.msgs, env.interval, env.scale_msgs = 20, 250, 10
    env.commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    env.machine = "%d cores" % os.cpu_count()
    out = a.out or (tempfile.mkdtemp(prefix="ssehub-cluster-out.") if a.quick else HERE)
    C.build(env)
    C.tokens(env, max(env.n, env.scale_n))
    runs = []
    scen = a.scenarios.split(",")
    try:
        for rep in range(env.reps):
            if "scale" in scen and rep == 0:
                C.log("scale: 3 nodes, %d streams" % env.scale_n)
                runs.append(scenario_fanout(env, "ssehub-3", env.scale_n, env.scale_msgs, 500, workers=6, parts=3))
            for name in env.systems:
                if "fanout" in scen:
                    C.log("fanout %s, rep %d" % (name, rep + 1))
                    runs.append(scenario_fanout(env, name, env.n, env.msgs, env.interval))
                if "targeted" in scen:
                    C.log("targeted %s, rep %d" % (name, rep + 1))
                    runs.append(scenario_targeted(env, name, env.n, 2 * env.n, 16))
    finally:
        with open(os.path.join(out, "results", "cluster.json") if not a.quick else os.path.join(out, "cluster.json"),
                  "w") as fh:
            json.dump(runs, fh, indent=1, default=str)
    md = os.path.join(out, "CLUSTER.md")
    report(runs, env, md)
    print(open(md).read())
    shutil.rmtree(env.tmp, ignore_errors=True)
    bad = [r for r in runs if r["system"].startswith("ssehub") and r.get("delivered") != r.get("expected")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
