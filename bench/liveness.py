#!/usr/bin/python3
"""liveness.py: what --liveness-interval costs with N idle streams open.

For each front server (nginx, lighttpd, Apache httpd, started as
compare.py starts them, around the shipped examples) and each interval:
ssehub with --liveness-interval L and --ping-interval 85 (the longest the
examples' 90 s read timeouts allow; the window ends before the first ping,
so that the liveness comments are the only traffic in it), N streams
opened by sseload, a settling pause of L + 2 s, then a window of --window
seconds in which it
measures, per second: CPU of ssehub and of the front server's processes
(/proc stat ticks) and the bytes the front wrote (wchar of /proc/PID/io:
its writev()s to the clients; nothing else is written by an idle front
with access logs off for streams). A comment is ":\n\n": 11 bytes from
ssehub to the front (an 8-byte FastCGI header, no padding; ssehub writes
with sendmsg(), which wchar does not count) and 8 bytes of chunked HTTP/1.1
to the client ("3\r\n:\n\n\r\n"), so the front's bytes / 8 are the
comments sent. L = 0 is the idle baseline. Prints a Markdown table; --json
FILE keeps every figure.

  bench/liveness.py                       # N = 10,000, L = 0,1,2,5,10, all three fronts (~10 min)
  bench/liveness.py -n 2000 --intervals 0,5 --fronts nginx,apache --window 10

lighttpd holds at most (90 % of the open-file limit - 100) / 2 streams (one
process, two fds per stream; it stops accepting at 90 % of server.max-fds):
with the 20,000 here, 8,850 (room left for the API calls); its figures
are scaled to N and the table says so. Apache gets Debian's 25 threads per child
and as many children as N needs (compare.apache_mpm).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare as c  # noqa: E402

SYSTEM = {"nginx": "ssehub", "lighttpd": "ssehub-lighttpd", "apache": "ssehub-apache"}


def io_bytes(pid, key):
    """rchar / wchar of /proc/PID/io (0 when gone)."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


CHUNKED_COMMENT_BYTES = 8     # "3\r\n:\n\n\r\n"
FCGI_COMMENT_BYTES = 11       # FastCGI header + ":\n\n"


class Sample:
    def __init__(self, system):
        self.t = time.monotonic()
        self.hub_ticks, self.front_ticks = system.cpu()
        self.front_w = sum(io_bytes(p, "wchar") for p in system.front_pids())


PING_INTERVAL = 85


def measure(env, front, n, interval, window):
    system = c.System(SYSTEM[front], env)
    env.ssehub_args = ["--liveness-interval", str(interval), "--ping-interval", str(PING_INTERVAL)]
    r = {"front": front, "interval": interval, "requested": n}
    system.start(streams=n)
    started = time.monotonic()
    try:
        ld = c.Load(env, system, n, ["-r", str(env.rate), "-P", str(env.pending),
                                     "-W", str(n // 200 + 60), "-i", "1"], "live%s" % interval)
        r["ready"] = ld.wait_ready(n // 200 + 70)
        time.sleep(interval + 2.0)
        r["open"] = system.clients()
        a = Sample(system)
        time.sleep(window)
        b = Sample(system)
        res = ld.stop()
        # what the hub reports, else (the front had no fd left for the
        # stats call) what the load client held open
        r["open"] = r["open"] or int(c.num(res.get("streams_open"), 0))
        r["client_summary"] = {k: res.get(k) for k in ("streams_open", "comments", "connect_errors",
                                                         "stop_reason")}
        dt = b.t - a.t
        # the hub started its ping timer just before the front was up
        r["window_end_s"] = b.t - started
        r["ping_in_window"] = r["window_end_s"] > PING_INTERVAL - 1
        r["window_s"] = dt
        r["hub_cpu_pct"] = (b.hub_ticks - a.hub_ticks) / c.TICK / dt * 100
        r["front_cpu_pct"] = (b.front_ticks - a.front_ticks) / c.TICK / dt * 100
        r["front_bytes_s"] = (b.front_w - a.front_w) / dt
        r["comments_s"] = r["front_bytes_s"] / CHUNKED_COMMENT_BYTES
        r["comments_total"] = int(c.num(res.get("comments"), 0))
        r["front_errors"] = system.errors_logged()[:3]
        r["apache_mpm"] = system.mpm
    finally:
        r["hub_exit"] = system.stop()
    return r


def table(runs, n):
    out = ["| front | interval s | streams | comments/s | ssehub CPU % | front CPU % | "
           "ssehub → front B/s | front → clients B/s | CPU µs per comment: ssehub / front |",
           "|---|---|---|---|---|---|---|---|---|"]
    base = {r["front"]: r for r in runs if r["interval"] == 0}
    for r in runs:
        b0 = base.get(r["front"])
        per = "–"
        if r["interval"] and b0 and r["comments_s"]:
            per = "%.1f / %.1f" % ((r["hub_cpu_pct"] - b0["hub_cpu_pct"]) * 1e4 / r["comments_s"],
                                   (r["front_cpu_pct"] - b0["front_cpu_pct"]) * 1e4 / r["comments_s"])
        scale = n / r["open"] if r.get("open") else 1.0
        note = "" if abs(scale - 1.0) < 0.01 else " (figures ×%.3f to N)" % scale
        out.append("| %s | %s | %s%s | %s | %.2f | %.2f | %s | %s | %s |" % (
            r["front"], r["interval"] or "off", c.fmt(r.get("open")), note, c.fmt(r["comments_s"] * scale),
            r["hub_cpu_pct"] * scale, r["front_cpu_pct"] * scale,
            c.fmt(r["comments_s"] * scale * FCGI_COMMENT_BYTES), c.fmt(r["front_bytes_s"] * scale), per))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="idle streams (10000)")
    ap.add_argument("--fronts", default="nginx,lighttpd,apache")
    ap.add_argument("--intervals", default="0,1,2,5,10", help="seconds; 0 = off (the baseline)")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per run (20)")
    ap.add_argument("--json", help="write every figure there")
    a = ap.parse_args()
    env = c.tool_env("ssehub-liveness.")
    fronts = [f for f in a.fronts.split(",") if f]
    intervals = [int(x) for x in a.intervals.split(",") if x]
    runs = []
    try:
        c.build(env)
        c.tokens(env, a.n)
        c.log("liveness: N = %d, intervals %s, fronts %s, window %.0f s, load %.2f" % (
            a.n, intervals, fronts, a.window, c.loadavg()))
        for front in fronts:
            top = c.front_max_streams(SYSTEM[front], env.nofile)
            n = min(a.n, top) if top else a.n
            for iv in intervals:
                r = measure(env, front, n, iv, a.window)
                r["load1"] = c.loadavg()
                runs.append(r)
                c.log("%-8s L=%-3s open %s: ssehub %.2f %% CPU, front %.2f %% CPU, %s comments/s "
                      "(front writes %s B/s; the client parsed %d comments in the run)" % (
                          front, iv, r.get("open"), r["hub_cpu_pct"], r["front_cpu_pct"],
                          c.fmt(r["comments_s"]), c.fmt(r["front_bytes_s"]), r["comments_total"]))
    finally:
        c.tool_cleanup(env)
    print()
    print("N = %s idle streams, %.0f s windows before the first ping; figures scaled to N where a "
          "front held fewer. CPU %% is of one core; µs per comment = (CPU − CPU with liveness off) / "
          "comments." % (c.fmt(a.n), a.window))
    late = ["%s L=%s" % (r["front"], r["interval"]) for r in runs if r.get("ping_in_window")]
    if late:
        print("\nA ping fell inside the window of: %s (opening took too long)." % ", ".join(late))
    print()
    print(table(runs, a.n))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "window": a.window, "runs": runs}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
