#!/usr/bin/python3
"""abtest: two ssehub binaries (before and after a change) through the same
compare.py scenarios, interleaved, and one table of medians.

  bench/abtest.py OLD_BIN NEW_BIN                   # 3 reps, fan-out at 10,000 and 18,000, targeted
  bench/abtest.py OLD NEW --reps 5 -n 5000,max --scenarios fanout

Each repetition runs compare.py once for OLD and once for NEW (the order
alternates), ssehub behind nginx only, so both see the same machine. The
table: fan-out p99, memory per stream (ssehub alone and with nginx), the
threads of the ssehub process while holding the streams, targeted
publishes/s. Build the old binary from a worktree, e.g.
  git worktree add --detach /tmp/old COMMIT && (cd /tmp/old && autoreconf -fi && ./configure -q && make -j2)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(binary, out, a):
    env = dict(os.environ, SSEHUB_BIN=binary)
    cmd = ["/usr/bin/python3", os.path.join(HERE, "compare.py"), "--systems", "ssehub", "--reps", "1",
           "--no-profile", "--scenarios", a.scenarios, "-n", a.n, "--out", out]
    if a.tgt_users:
        cmd += ["--tgt-users", str(a.tgt_users)]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(out, "abtest.log"), "w") as fh:
        fh.write(r.stdout)
    if r.returncode not in (0, 1):   # 1: a run lost something (listed below)
        sys.exit("compare.py failed for %s (exit %d), see %s/abtest.log" % (binary, r.returncode, out))
    with open(os.path.join(out, "results", "compare.json")) as fh:
        return json.load(fh)["runs"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-n", default="10000,max")
    ap.add_argument("--scenarios", default="fanout,targeted")
    ap.add_argument("--tgt-users", type=int)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="ssehub-abtest.")
    runs = {"old": [], "new": []}
    for rep in range(a.reps):
        order = ("old", "new") if rep % 2 == 0 else ("new", "old")
        for which in order:
            out = os.path.join(base, "%s-%d" % (which, rep + 1))
            os.makedirs(out)
            print("rep %d: %s (%s)" % (rep + 1, which, getattr(a, which)), flush=True)
            runs[which] += run(getattr(a, which), out, a)

    def fig(which, scen, n, key):
        return med([r.get(key) for r in runs[which] if r["scenario"] == scen and (n is None or r["n"] == n)])

    def fmt(v, nd=0):
        return "–" if v is None else "{:,.{}f}".format(v, nd)

    rows = []
    ns = sorted({r["n"] for w in runs for r in runs[w] if r["scenario"] == "fanout"})
    for n in ns:
        rows.append(("fan-out p99, N = %d (ms)" % n, fig("old", "fanout", n, "lat_p99"),
                     fig("new", "fanout", n, "lat_p99"), 1))
        rows.append(("memory per stream, ssehub, N = %d (B)" % n, fig("old", "fanout", n, "hub_b_per_stream"),
                     fig("new", "fanout", n, "hub_b_per_stream"), 0))
        rows.append(("memory per stream, ssehub + nginx, N = %d (B)" % n, fig("old", "fanout", n, "b_per_stream"),
                     fig("new", "fanout", n, "b_per_stream"), 0))
        rows.append(("ssehub threads holding N = %d" % n, fig("old", "fanout", n, "held_hub_threads"),
                     fig("new", "fanout", n, "held_hub_threads"), 0))
    if any(r["scenario"] == "targeted" for w in runs for r in runs[w]):
        rows.append(("targeted publishes/s", fig("old", "targeted", None, "req_per_s"),
                     fig("new", "targeted", None, "req_per_s"), 0))
        rows.append(("targeted delivery p99 (ms)", fig("old", "targeted", None, "lat_p99"),
                     fig("new", "targeted", None, "lat_p99"), 1))
    print()
    print("medians of %d interleaved repetitions; old %s, new %s; runs in %s" % (a.reps, a.old, a.new, base))
    print()
    print("| | before | after | after / before |")
    print("|---|---|---|---|")
    for name, o, nw, nd in rows:
        ratio = "%.2f×" % (nw / o) if o and nw is not None else "–"
        print("| %s | %s | %s | %s |" % (name, fmt(o, nd), fmt(nw, nd), ratio))
    bad = [r for w in runs for r in runs[w] if r.get("delivered") != r.get("expected")]
    for r in bad:
        print("not everything delivered: %s %s N=%s %s/%s" % (r["scenario"], r["system"], r["n"],
                                                              r.get("delivered"), r.get("expected")))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
