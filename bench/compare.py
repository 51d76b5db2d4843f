#!/usr/bin/python3
"""compare.py: side-by-side benchmark of ssehub, Nchan and the seed's Go design,
and of ssehub behind each front server (nginx, lighttpd, Apache httpd).
Nchan runs twice: multiplexed as ssehub is used, and on one channel.

Run through bench/compare.sh. Starts each system in turn on loopback behind
its front server (nginx: 2 workers, reuseport), drives it with sseload
(streams) and ssepost (publishers), stops it, and repeats the scenarios
interleaved (A B C A B C) so that drift of a shared machine falls on every
system alike; reports medians. See bench/README.md ("Comparison with Nchan
and Go"). The topics scenario runs ssehub's topics against Nchan's
channels (the Go design has none).
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import frontconf  # noqa: E402
PY = "/usr/bin/python3"
NCHAN_SO = "/usr/lib/nginx/modules/ngx_nchan_module.so"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SYSTEMS = ("ssehub", "nchan", "nchan-cheap", "gohub", "ssehub-lighttpd", "ssehub-apache", "nullfcgi")
LABEL = {"ssehub": "ssehub + nginx", "nchan": "Nchan, user + broadcast channels",
         "nchan-cheap": "Nchan, one channel", "gohub": "Go hub + nginx",
         "ssehub-lighttpd": "ssehub + lighttpd", "ssehub-apache": "ssehub + Apache",
         "nullfcgi": "nullfcgi + nginx (a back end that does nothing)"}
SHORT = {"ssehub": "ssehub", "nchan": "Nchan", "nchan-cheap": "Nchan 1 channel", "gohub": "Go",
         "ssehub-lighttpd": "lighttpd", "ssehub-apache": "Apache", "nullfcgi": "nullfcgi"}
# The front server of each system, and the systems whose back end is ssehub.
FRONT = {"ssehub": "nginx", "nchan": "nginx", "nchan-cheap": "nginx", "gohub": "nginx",
         "ssehub-lighttpd": "lighttpd", "ssehub-apache": "apache", "nullfcgi": "nginx"}
HUB_SYSTEMS = ("ssehub", "ssehub-lighttpd", "ssehub-apache")
# Nchan twice: as the other systems are used (each subscriber on its user's
# channel and the broadcast channel, multiplexed), and at its cheapest (one
# channel, every subscriber on it, no per-user channel to create or keep).
NCHAN_SYSTEMS = ("nchan", "nchan-cheap")
# The scenarios a system runs when it cannot run them all (the others run
# every one; topics: ssehub and nchan only). Nchan on one channel can only
# broadcast: no send-to-user, no topics; its churn cycles are meaningful
# (connect, first comment, close). lighttpd runs everything but topics, at
# the stream counts it can hold (front_max_streams). Apache holds a worker
# thread per stream until ssehub notices the client gone (--liveness-
# interval): 1,000 churn cycles 32 at a time ran at 17 cycles/s, 103 streams
# still open 10 s after (Debian's 150 workers), and 10,000 targeted users
# would need 400 children: hold and fan-out only.
ONLY_SCENARIOS = {"nchan-cheap": ("fanout", "churn"), "ssehub-lighttpd": ("fanout", "targeted", "churn"),
                  "ssehub-apache": ("fanout",), "nullfcgi": ()}
TOPIC_SYSTEMS = ("ssehub", "nchan", "nullfcgi")
# nullfcgi (bench/peers/nullfcgi.c): the cheapest FastCGI back end, not a hub
# (no token, JSON, history or ids; one thread; one writev per stream and
# event, as ssehub), behind ssehub's nginx example. It runs the topics cases
# only: what the FastCGI hop itself costs, with no hub behind it.
NULL_SYSTEMS = ("nullfcgi",)
# Debian's mpm_event.conf: MaxRequestWorkers 150, ThreadsPerChild 25. Every
# stream holds one worker thread (mod_proxy_fcgi), and API requests need
# their own while they last.
APACHE_DEFAULT_WORKERS = 150
APACHE_THREADS_PER_CHILD = 25
APACHE_API_WORKERS = 10
APACHE_DEFAULT_N = APACHE_DEFAULT_WORKERS - APACHE_API_WORKERS

T_START = time.monotonic()


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T_START, msg), flush=True)


def die(msg):
    print("compare: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------- /proc helpers

def proc_field(pid, name, key):
    """The number after key (e.g. "VmRSS:") in /proc/PID/name; 0 when the
    process or the line is gone."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid):
    return proc_field(pid, "status", "VmRSS:")


def pss_kb(pid):
    return proc_field(pid, "smaps_rollup", "Pss:")


def threads(pid):
    return proc_field(pid, "status", "Threads:")


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return 0


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def all_proc_ticks():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            comm = s[s.index("(") + 1:s.rindex(")")]
            rest = s.rsplit(")", 1)[1].split()
            out[int(d)] = (int(rest[11]) + int(rest[12]), comm)
        except (OSError, ValueError, IndexError):
            pass
    return out


def sys_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, v[7] if len(v) > 7 else 0


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def kv_parse(text):
    d = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z0-9_]+)=(.*)$", line)
        if m:
            d[m.group(1)] = m.group(2)
    return d


def num(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def http_get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return None, b""


def stop_pid(pid, sig=signal.SIGTERM, secs=10):
    """Signals one process we started, waits, then SIGKILLs it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            wpid, _ = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                return
        except ChildProcessError:
            if not os.path.exists("/proc/%d" % pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# ---------------------------------------------------------------- systems

# ssehub runs behind examples/nginx/ssehub.conf as users copy it (rendered
# by tests/integration/frontconf.py for this socket and port); the peers get
# a server block of their own on the same private nginx.
LISTEN = "127.0.0.1:%d reuseport backlog=4096"
SERVER = """    server {{
        listen {listen};
{locations}
    }}
"""
# The Go hub: its read timeout as the ssehub example's fastcgi_read_timeout.
LOC_GOHUB = """        location / {{
            proxy_pass http://unix:{d}/gohub.sock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 90s;
        }}"""

# A subscriber joins its user channel and the broadcast channel (multiplexed);
# nchan-cheap's subscribers join the broadcast channel alone (/sse/cheap).
HTTP_NCHAN = """    nchan_shared_memory_size 256M;
"""
LOC_NCHAN = """        location = /sse/stream {{
            nchan_subscriber eventsource;
            nchan_subscriber_channel_id user_$arg_u broadcast;
        }}
        location = /sse/cheap {{
            nchan_subscriber eventsource;
            nchan_subscriber_channel_id broadcast;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
        }}
        # Topics: the channels named by ?topic= (several: comma-separated).
        location = /sse/topics {{
            nchan_subscriber eventsource;
            nchan_channel_id_split_delimiter ",";
            nchan_subscriber_channel_id $arg_topic;
        }}
        location = /api/sse/health {{
            return 200 '{{"success":true}}';
        }}"""


def apache_mpm(streams):
    """MPM directives for Apache to hold `streams` streams: none (Debian's
    mpm_event.conf as shipped) when they fit in its 150 workers with
    APACHE_API_WORKERS to spare, else Debian's 25 threads per child and as
    many children as needed."""
    need = streams + APACHE_API_WORKERS
    if need <= APACHE_DEFAULT_WORKERS:
        return None
    children_n = -(-need // APACHE_THREADS_PER_CHILD)
    return {"ServerLimit": children_n, "MaxRequestWorkers": children_n * APACHE_THREADS_PER_CHILD}


def front_max_streams(name, nofile):
    """The most streams the system's front server can hold here (None: no
    limit of its own below the load client's). lighttpd is one process
    with 2 fds per stream that stops accepting ("sockets disabled,
    out-of-fds") at 90 % of server.max-fds; Apache is sized per run
    (apache_mpm)."""
    if FRONT[name] == "lighttpd":
        return (nofile * 9 // 10 - 300) // 2     # room for the API calls
    return None


class System:
    """One system under test: a back end (ssehub, gohub or none) and its
    front server (nginx, lighttpd or Apache httpd)."""

    def __init__(self, name, env):
        self.name = name
        self.env = env
        self.d = None
        self.port = None
        self.hub = None          # Popen of ssehub / gohub
        self.front = None        # Popen of the front server's main process
        self.valgrind = None     # callgrind output file, when run under valgrind
        self.mpm = None          # Apache: the MPM directives of this run

    def start(self, valgrind_out=None, streams=0):
        """streams: how many streams the run opens (sizes Apache's MPM)."""
        e = self.env
        self.d = tempfile.mkdtemp(prefix="run-%s-" % self.name, dir=e.tmp)
        os.chmod(self.d, 0o755)
        self.port = free_port()
        d = self.d
        if self.name in HUB_SYSTEMS:
            cmd = [e.ssehub_bin, "--listen", "unix:%s/ssehub.sock" % d,
                   "--socket-mode", "0666", "--jwt-secret-file", e.secret,
                   "--shutdown-spread", "0", "--log-level", "warn"] + e.ssehub_args
            if valgrind_out:
                cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + valgrind_out,
                       "--log-file=%s/valgrind.log" % d] + cmd
            self.hub = subprocess.Popen(cmd, stdout=open(d + "/hub.log", "w"),
                                        stderr=subprocess.STDOUT)
            sock = d + "/ssehub.sock"
        elif self.name == "nullfcgi":
            self.hub = subprocess.Popen([e.nullfcgi_bin, "--listen", "unix:%s/ssehub.sock" % d,
                                         "--socket-mode", "0666"],
                                        stdout=open(d + "/hub.log", "w"), stderr=subprocess.STDOUT)
            sock = d + "/ssehub.sock"
        elif self.name == "gohub":
            self.hub = subprocess.Popen(
                [e.gohub_bin, "-listen", "unix:%s/gohub.sock" % d, "-secret-file", e.secret],
                stdout=open(d + "/hub.log", "w"), stderr=subprocess.STDOUT)
            sock = d + "/gohub.sock"
        else:
            sock = None
        if sock:
            end = time.monotonic() + (60 if valgrind_out else 10)
            while not os.path.exists(sock):
                if self.hub.poll() is not None or time.monotonic() > end:
                    self.stop()
                    raise RuntimeError("%s did not start: %s" % (
                        self.name, open(d + "/hub.log").read()[-500:]))
                time.sleep(0.05)
        kind = FRONT[self.name]
        try:
            elog, least = self._start_front(kind, os.path.join(d, kind), sock, streams)
        except (OSError, ValueError):      # a drifted example (frontconf.ExampleDrift), no binary
            self.stop()
            raise
        end = time.monotonic() + (60 if valgrind_out else 10)
        while True:
            st, _ = http_get("http://127.0.0.1:%d/api/sse/health" % self.port, timeout=2)
            if st == 200 and len(self.front_pids()) >= least:
                break
            if self.front.poll() is not None or time.monotonic() > end:
                err = open(elog).read()[-800:] if os.path.exists(elog) else ""
                self.stop()
                raise RuntimeError("%s: %s/health failed (status %s): %s" % (self.name, kind, st, err))
            time.sleep(0.05)

    def _start_front(self, kind, fdir, sock, streams):
        """Starts the front server in fdir (self.front); returns its error
        log and the number of processes it has once up."""
        e, d = self.env, self.d
        if kind == "nginx":
            self.front = self._start_nginx(fdir, sock)
            return os.path.join(fdir, "error.log"), 3      # master + 2 workers
        if kind == "lighttpd":
            site = frontconf.lighttpd_site(sock)
            conf = frontconf.write_lighttpd(fdir, "127.0.0.1", self.port, site, [
                "server.max-fds = %d" % e.nofile,
                "server.max-connections = %d" % front_max_streams(self.name, e.nofile),
                "server.listen-backlog = 4096"])
            self.front = subprocess.Popen(["lighttpd", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=open(d + "/front.out", "w"))
            return os.path.join(fdir, "error.log"), 1
        self.mpm = apache_mpm(streams)
        listen = "127.0.0.1:%d" % self.port
        site = frontconf.apache_site(sock, listen, os.path.join(fdir, "htdocs"))
        conf = frontconf.write_apache(fdir, site, listen, mpm=self.mpm,
                                      user="www-data" if os.geteuid() == 0 else None)
        self.front = subprocess.Popen(["apache2", "-f", str(conf), "-k", "start", "-DFOREGROUND"],
                                      stdout=subprocess.DEVNULL, stderr=open(d + "/front.out", "w"))
        return os.path.join(fdir, "error.log"), 2          # parent + 1 child

    def _start_nginx(self, ngx, sock):
        e, d = self.env, self.d
        listen = LISTEN % self.port
        if self.name in ("ssehub", "nullfcgi"):
            site = frontconf.nginx_site("unix:" + sock, listen, os.path.join(d, "htdocs"),
                                        stream_extra=e.ssehub_nginx_extra)
        elif self.name == "gohub":
            site = SERVER.format(listen=listen, locations=LOC_GOHUB.format(d=d))
        else:
            site = HTTP_NCHAN + SERVER.format(listen=listen, locations=LOC_NCHAN.format())
        conf = frontconf.write_nginx(ngx, site, workers=2, worker_connections=e.nofile, rlimit_nofile=e.nofile,
                                     error_log_level="warn", access_log=False,
                                     main_extra=["load_module %s" % NCHAN_SO]
                                     if self.name in NCHAN_SYSTEMS else [])
        return subprocess.Popen(
            ["nginx", "-p", ngx + "/", "-c", str(conf), "-e", os.path.join(ngx, "error.log")],
            stdout=subprocess.DEVNULL, stderr=open(d + "/nginx.out", "w"))

    def front_pids(self):
        """The front server's processes: nginx's master and workers, lighttpd,
        Apache's parent and children."""
        if not self.front or self.front.poll() is not None:
            return []
        return [self.front.pid] + children(self.front.pid)

    def hub_pids(self):
        if self.hub and self.hub.poll() is None:
            return [self.hub.pid]
        return []

    def pids(self):
        return self.hub_pids() + self.front_pids()

    def sample(self):
        """Memory, fds and threads of the hub and of the front server (all its
        processes; the keys say nginx_ whatever the front, as results/*.json
        always had them)."""
        h, n = self.hub_pids(), self.front_pids()
        return {
            "hub_rss_kb": sum(rss_kb(p) for p in h),
            "nginx_rss_kb": sum(rss_kb(p) for p in n),
            "hub_pss_kb": sum(pss_kb(p) for p in h),
            "nginx_pss_kb": sum(pss_kb(p) for p in n),
            "hub_fds": sum(nfds(p) for p in h),
            "nginx_fds": sum(nfds(p) for p in n),
            "hub_threads": sum(threads(p) for p in h),
            "nginx_workers": len(n) - 1 if n else 0,
        }

    def cpu(self):
        return (sum(cpu_ticks(p) for p in self.hub_pids()),
                sum(cpu_ticks(p) for p in self.front_pids()))

    def clients(self):
        """Streams the system itself reports (hub stats, Nchan channel info)."""
        base = "http://127.0.0.1:%d" % self.port
        if self.name in NCHAN_SYSTEMS:
            st, body = http_get(base + "/pub?id=broadcast", {"Accept": "application/json"})
            if st == 200:
                m = re.search(rb'"subscribers":\s*(\d+)', body)
                return int(m.group(1)) if m else None
            return 0 if st == 404 else None   # no channel yet: nobody subscribed
        st, body = http_get(base + "/api/sse/stats",
                            {"Authorization": "Bearer " + self.env.admin_token})
        try:
            return json.loads(body)["data"]["total_clients"]
        except (ValueError, KeyError, TypeError):
            return None

    def kept(self):
        """FastCGI connections the front keeps open to ssehub (nginx's upstream
        keepalive pool, Apache's enablereuse pool, used by /api/sse/), 0 for
        the others. Each holds one fd in the hub and one in the front; they
        are a bounded pool, not a leak. Asked through the /metrics location,
        which does not keep its connection: call it just before counting fds."""
        if self.name not in HUB_SYSTEMS:
            return 0
        st, body = http_get("http://127.0.0.1:%d/metrics" % self.port,
                            {"Authorization": "Bearer " + self.env.admin_token})
        m = re.search(rb"^sse_fastcgi_idle_connections (\d+)$", body or b"", re.M)
        return int(m.group(1)) if st == 200 and m else 0

    def stream_args(self):
        if self.name == "nchan":
            return ["-T", self.env.user_ids, "-q", "u", "-O", ":"]
        if self.name == "nchan-cheap":
            return ["-u", "/sse/cheap", "-O", ":"]     # no token, no user
        return ["-T", self.env.user_tokens]

    def topic_stream_args(self, groups=0, topics=()):
        """sseload arguments for streams on topics: stream i on t(i mod
        groups), or every stream on all of topics. ssehub: /sse/stream with
        one topic= each and tokens whose claim allows any topic; Nchan: its
        channels, comma-separated in one topic=."""
        if self.name == "nchan":
            args = ["-T", self.env.user_ids, "-q", "u", "-O", ":"]
            if topics:
                return args + ["-u", "/sse/topics?topic=" + ",".join(topics)]
            return args + ["-u", "/sse/topics", "-G", str(groups)]
        args = ["-T", self.env.topic_tokens]
        if topics:
            return args + ["-u", "/sse/stream?" + "&".join("topic=" + t for t in topics)]
        return args + ["-G", str(groups)]

    def pub_args(self):
        if self.name in NCHAN_SYSTEMS:
            return ["-k", "nchan"]
        return ["-k", "ssehub", "-T", self.env.admin_file]

    def errors_logged(self):
        """The front server's error lines (nginx: alert, crit, emerg, error;
        lighttpd: every line but start and stop; Apache: error and worse,
        from both its logs)."""
        out = []
        if not self.d:
            return out
        kind = FRONT[self.name]
        logs = [os.path.join(self.d, kind, "error.log")]
        if kind == "apache":
            logs.append(os.path.join(self.d, kind, "ssehub-error.log"))
        bad = {"nginx": r"\[(alert|crit|emerg|error)\]", "apache": r"\[[a-z_0-9]*:(emerg|alert|crit|error)\]",
               "lighttpd": r"\) (?!server started|server stopped)"}[kind]
        for p in logs:
            if os.path.exists(p):
                for line in open(p, errors="replace"):
                    if re.search(bad, line):
                        out.append(line.strip())
        return out

    def stop(self):
        """Stops the front server, then the hub (Apache: the hub first);
        returns the hub's exit status."""
        rc = None
        if self.front and FRONT[self.name] == "apache":
            # Apache's workers sit in mod_proxy_fcgi until ssehub ends their
            # streams (it notices a departed client only when it writes):
            # stopped first with streams open, it waits 10 s, then SIGKILLs
            # its children. ssehub's SIGTERM ends every stream cleanly.
            rc = self._stop_hub()
        if self.front:
            pids = self.front_pids()
            stop_pid(self.front.pid, signal.SIGTERM, 10)
            for p in pids[1:]:
                if os.path.exists("/proc/%d" % p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.front = None
        if self.hub:
            rc = self._stop_hub()
        return rc

    def _stop_hub(self):
        self.hub.send_signal(signal.SIGTERM)
        try:
            rc = self.hub.wait(60 if self.valgrind else 10)
        except subprocess.TimeoutExpired:
            self.hub.kill()
            rc = "killed after SIGTERM: %s" % self.hub.wait()
        self.hub = None
        return rc


# ---------------------------------------------------------------- load tools

class Load:
    """A running sseload."""

    def __init__(self, env, system, n, extra, tag, stream_args=None):
        self.out = os.path.join(system.d, "load-%s.out" % tag)
        self.err = os.path.join(system.d, "load-%s.err" % tag)
        self.ready = os.path.join(system.d, "ready-%s" % tag)
        cmd = [env.sseload, "-p", str(system.port), "-n", str(n), "-R", self.ready,
               "-c", "60", "-i", "0.2", "-w", "400", "-s", "8"] + (
                   stream_args if stream_args is not None else system.stream_args()) + extra
        self.p = subprocess.Popen(cmd, stdout=open(self.out, "w"), stderr=open(self.err, "w"))
        self.t0 = time.monotonic()
        env.loads.append(self)

    def wait_ready(self, timeout):
        return wait_file(self.ready, self.p, timeout)

    def msgs(self):
        """Messages delivered so far, from the last progress line."""
        try:
            with open(self.err, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 4096))
                tail = f.read().decode(errors="replace")
        except OSError:
            return 0
        m = re.findall(r"msgs=(\d+)", tail)
        return int(m[-1]) if m else 0

    def wait_msgs(self, target, idle_s, hard_s):
        """Waits until target messages arrived (progress lines), or idle_s
        without a new one, or hard_s in all; sseload keeps running."""
        end = time.monotonic() + hard_s
        last, last_t = -1, time.monotonic()
        while self.p.poll() is None:
            now = time.monotonic()
            m = self.msgs()
            if m >= target:
                return True
            if m != last:
                last, last_t = m, now
            if now - last_t > idle_s or now > end:
                return False
            time.sleep(0.05)
        return False

    def wait_done(self, idle_s, hard_s):
        """Waits for sseload to stop by itself; stops it after idle_s without new
        messages or hard_s in all."""
        end = time.monotonic() + hard_s
        last, last_t = -1, time.monotonic()
        while self.p.poll() is None:
            now = time.monotonic()
            m = self.msgs()
            if m != last:
                last, last_t = m, now
            if now - last_t > idle_s or now > end:
                stop_pid(self.p.pid, signal.SIGTERM, 5)
                break
            time.sleep(0.1)
        self.p.wait()
        return self.result()

    def stop(self):
        if self.p.poll() is None:
            stop_pid(self.p.pid, signal.SIGTERM, 5)
        self.p.wait()
        return self.result()

    def result(self):
        return kv_parse(open(self.out).read())


def run_pub(env, system, args, timeout):
    cmd = [env.ssepost, "-p", str(system.port)] + system.pub_args() + args
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        d = kv_parse(r.stdout)
        d["_stderr"] = r.stderr[-500:]
        return d
    except subprocess.TimeoutExpired:
        return {"failed": "timeout"}


class Window:
    """CPU accounting over a phase: the systems' processes, the machine, others."""

    def __init__(self, system, exclude):
        self.system = system
        self.exclude = set(exclude)
        self.hub0, self.ngx0 = system.cpu()
        self.sys0, self.steal0 = sys_cpu()
        self.procs0 = all_proc_ticks()
        self.t0 = time.monotonic()

    def close(self, exclude=()):
        hub1, ngx1 = self.system.cpu()
        sys1, steal1 = sys_cpu()
        procs1 = all_proc_ticks()
        wall = time.monotonic() - self.t0
        ours = self.exclude | set(exclude) | set(self.system.pids()) | {os.getpid()}
        other = {}
        for pid, (t1, comm) in procs1.items():
            if pid in ours or comm in ("sseload", "ssepost", "perf"):
                continue
            t0 = self.procs0.get(pid, (0, comm))[0] if pid in self.procs0 else 0
            if t1 - t0 > 0:
                other[comm] = other.get(comm, 0) + (t1 - t0) / TICK
        top = sorted(other.items(), key=lambda x: -x[1])[:4]
        return {
            "wall_s": wall,
            "hub_cpu_s": (hub1 - self.hub0) / TICK,
            "nginx_cpu_s": (ngx1 - self.ngx0) / TICK,
            "machine_busy_s": (sys1 - self.sys0) / TICK,
            "steal_s": (steal1 - self.steal0) / TICK,
            "other_cpu_s": sum(other.values()),
            "other_top": ", ".join("%s %.1f" % (c, s) for c, s in top if s >= 0.1),
        }


# ---------------------------------------------------------------- scenarios

def scenario_fanout(env, system, n, msgs, interval_ms, perf=False):
    """Opens n streams (hold figures), then msgs broadcasts (fan-out figures)."""
    r = {"scenario": "fanout", "system": system.name, "n": n, "load1": loadavg()}
    system.start(streams=n)
    try:
        time.sleep(0.5)
        idle = system.sample()
        ld = Load(env, system, n, ["-r", str(env.rate), "-P", str(env.pending), "-S",
                                   "-W", str(n // 1000 + 60)], "fan")
        ok = ld.wait_ready(n // 1000 + 70)
        r["ready"] = ok
        time.sleep(1.0)
        held = system.sample()
        r["clients_reported"] = system.clients()
        r.update({"idle_" + k: v for k, v in idle.items()})
        r.update({"held_" + k: v for k, v in held.items()})
        win = Window(system, [ld.p.pid])
        perfs = []
        if perf:
            perfs = start_perf(env, system, "fanout")
        # open loop: one connection per broadcast, each sent at its time whatever
        # the answers to the earlier ones took (a slow answer must not thin the load)
        pub = run_pub(env, system, ["-b", "-n", str(msgs), "-c", str(msgs), "-i", str(interval_ms)],
                      msgs * interval_ms / 1000 + 60) if ok else {}
        # the publish phase ends when the last message arrived (before teardown)
        ld.wait_msgs(n * msgs, idle_s=3, hard_s=30)
        if perfs:
            stop_perf(perfs)
        r.update(win.close([ld.p.pid]))
        r["after_rss_kb"] = system.sample()["hub_rss_kb"]
        r["load"] = ld.stop()
        r["pub"] = pub
        r["nginx_errors"] = system.errors_logged()[:5]
        r["apache_mpm"] = system.mpm
    finally:
        r["hub_exit"] = system.stop()
    lr = r["load"]
    opened = num(lr.get("streams_opened_total"), 0)
    r["open"] = int(opened)
    r["open_time_s"] = num(lr.get("open_time_s"))
    r["delivered"] = int(num(lr.get("messages_delivered"), 0))
    r["expected"] = n * msgs
    for q in ("p50", "p99", "max"):
        r["lat_" + q] = num(lr.get("latency_%s_ms" % q))
    r["seq_errors"] = int(num(lr.get("seq_errors"), 0))
    m = re.search(r"max_ms:([\d.]+)", lr.get("seq_1", ""))
    r["first_bcast_ms"] = float(m.group(1)) if m else None
    r["connect_errors"] = int(num(lr.get("connect_errors"), 0))
    r["retries"] = int(num(lr.get("connect_retries"), 0))
    if opened:
        r["hub_b_per_stream"] = (r["held_hub_rss_kb"] - r["idle_hub_rss_kb"]) * 1024 / opened
        r["nginx_b_per_stream"] = (r["held_nginx_rss_kb"] - r["idle_nginx_rss_kb"]) * 1024 / opened
        r["b_per_stream"] = r["hub_b_per_stream"] + r["nginx_b_per_stream"]
        r["pss_b_per_stream"] = ((r["held_hub_pss_kb"] + r["held_nginx_pss_kb"]) -
                                 (r["idle_hub_pss_kb"] + r["idle_nginx_pss_kb"])) * 1024 / opened
    if r["delivered"]:
        r["cpu_us_per_msg"] = (r["hub_cpu_s"] + r["nginx_cpu_s"]) * 1e6 / r["delivered"]
        r["hub_cpu_us_per_msg"] = r["hub_cpu_s"] * 1e6 / r["delivered"]
    return r


def scenario_targeted(env, system, users, msgs, conns, perf=False):
    r = {"scenario": "targeted", "system": system.name, "n": users, "load1": loadavg()}
    system.start()
    try:
        time.sleep(0.5)
        ld = Load(env, system, users, ["-r", str(env.rate), "-P", str(env.pending),
                                       "-W", str(users // 1000 + 60)], "tgt")
        ok = ld.wait_ready(users // 1000 + 70)
        time.sleep(1.0)
        r["clients_reported"] = system.clients() if system.name not in NCHAN_SYSTEMS else None
        win = Window(system, [ld.p.pid])
        perfs = start_perf(env, system, "targeted") if perf else []
        pub = run_pub(env, system, ["-n", str(msgs), "-c", str(conns), "-U", str(users)],
                      300) if ok else {}
        ld.wait_msgs(msgs, idle_s=3, hard_s=30)
        if perfs:
            stop_perf(perfs)
        r.update(win.close([ld.p.pid]))
        r["load"] = ld.stop()
        r["pub"] = pub
        r["nginx_errors"] = system.errors_logged()[:5]
    finally:
        r["hub_exit"] = system.stop()
    lr, p = r["load"], r["pub"]
    r["open"] = int(num(lr.get("streams_opened_total"), 0))
    r["delivered"] = int(num(lr.get("messages_delivered"), 0))
    r["expected"] = msgs
    r["pub_ok"] = int(num(p.get("ok"), 0))
    r["pub_failed"] = msgs - r["pub_ok"]
    r["req_per_s"] = num(p.get("req_per_s"))
    r["post_p99"] = num(p.get("post_ms_p99"))
    r["recipients"] = int(num(p.get("recipients_total"), 0))
    for q in ("p50", "p99", "max"):
        r["lat_" + q] = num(lr.get("latency_%s_ms" % q))
    r["seq_errors"] = int(num(lr.get("seq_errors"), 0))
    r["lost"] = msgs - r["delivered"]
    return r


TOPIC_CASES = ("topics-fan", "topics-multi", "topics-one")


def scenario_topics(env, system, case, n, topics, msgs, conns, interval_ms=0):
    """Streams on topics, publishes to topics (ssehub: POST /api/sse/publish;
    Nchan: its channels). case:
      topics-fan    n streams, stream i on t(i mod topics); msgs publishes,
                    message i to t(i mod topics), over conns keep-alive
                    connections (closed loop: the publish throughput)
      topics-multi  one stream on the topics t0..t(topics-1); msgs publishes
                    round robin over one connection (in order)
      topics-one    n streams on t0; msgs publishes interval_ms apart, each on
                    its own connection (open loop, as the fan-out broadcasts)"""
    r = {"scenario": case, "system": system.name, "n": n, "topics": topics, "load1": loadavg()}
    if case == "topics-multi":
        sargs = system.topic_stream_args(topics=["t%d" % k for k in range(topics)])
    else:
        sargs = system.topic_stream_args(groups=topics)
    if case == "topics-one":
        per_topic = [n]
        pub_args = ["-G", "1", "-n", str(msgs), "-c", str(msgs), "-i", str(interval_ms)]
        pub_timeout = msgs * interval_ms / 1000 + 60
    else:
        per_topic = [len(range(k, n, topics)) for k in range(topics)] if case == "topics-fan" else [1] * topics
        pub_args = ["-G", str(topics), "-n", str(msgs), "-c", str(conns)]
        pub_timeout = 300
    expected = sum(per_topic[i % len(per_topic)] for i in range(msgs))
    system.start()
    try:
        time.sleep(0.5)
        ld = Load(env, system, n, ["-r", str(env.rate), "-P", str(env.pending),
                                   "-W", str(n // 1000 + 60)], case, stream_args=sargs)
        ok = ld.wait_ready(n // 1000 + 70)
        r["ready"] = ok
        time.sleep(1.0)
        r["clients_reported"] = system.clients() if system.name not in NCHAN_SYSTEMS else None
        win = Window(system, [ld.p.pid])
        pub = run_pub(env, system, pub_args, pub_timeout) if ok else {}
        ld.wait_msgs(expected, idle_s=3, hard_s=60)
        r.update(win.close([ld.p.pid]))
        r["load"] = ld.stop()
        r["pub"] = pub
        r["nginx_errors"] = system.errors_logged()[:5]
    finally:
        r["hub_exit"] = system.stop()
    lr, p = r["load"], r["pub"]
    r["open"] = int(num(lr.get("streams_opened_total"), 0))
    r["delivered"] = int(num(lr.get("messages_delivered"), 0))
    r["expected"] = expected
    r["msgs"] = msgs
    r["pub_ok"] = int(num(p.get("ok"), 0))
    r["pub_failed"] = msgs - r["pub_ok"]
    r["req_per_s"] = num(p.get("req_per_s"))
    r["post_p99"] = num(p.get("post_ms_p99"))
    r["recipients"] = int(num(p.get("recipients_total"), 0))
    for q in ("p50", "p99", "max"):
        r["lat_" + q] = num(lr.get("latency_%s_ms" % q))
    r["seq_errors"] = int(num(lr.get("seq_errors"), 0))
    r["lost"] = expected - r["delivered"]
    if r["delivered"]:
        r["cpu_us_per_msg"] = (r["hub_cpu_s"] + r["nginx_cpu_s"]) * 1e6 / r["delivered"]
    return r


def run_topic_case(env, system, case):
    P = env.params
    if case == "topics-fan":
        return scenario_topics(env, system, case, P["topic_n"], P["topic_groups"], P["topic_msgs"],
                               P["topic_conns"])
    if case == "topics-multi":
        return scenario_topics(env, system, case, 1, P["multi_topics"], P["multi_msgs"], 1)
    return scenario_topics(env, system, case, P["topic_n"], 1, P["one_msgs"], 1, P["fan_interval"])


def scenario_churn(env, system, cycles, conc, warm):
    r = {"scenario": "churn", "system": system.name, "n": cycles, "load1": loadavg()}
    system.start()
    try:
        time.sleep(0.5)
        r["start"] = system.sample()
        # warm-up: first-use allocations (pools, caches) are not leaks
        ld = Load(env, system, conc, ["-C", str(warm), "-r", "1000000"], "warm")
        ld.wait_ready(120)
        ld.stop()
        # Behind lighttpd ssehub learns that a client left only when it next
        # writes to it (--liveness-interval, 5 s): the baseline is taken once
        # the warm-up's streams are gone, as the "after" figures are.
        for _ in range(60):
            if system.clients() == 0:
                break
            time.sleep(0.25)
        time.sleep(1.5)
        r["clients_before"] = system.clients()
        before_kept = system.kept()
        before = system.sample()
        win = Window(system, [])
        ld = Load(env, system, conc, ["-C", str(cycles), "-r", "1000000"], "churn")
        ld.wait_ready(300)
        res = ld.stop()
        r.update(win.close([ld.p.pid]))
        # let the last closes reach the back end
        left = None
        for _ in range(40):
            left = system.clients()
            if left == 0:
                break
            time.sleep(0.25)
        time.sleep(1.0)
        after_kept = system.kept()
        after = system.sample()
        r["clients_after"] = left
        r["before_kept"], r["after_kept"] = before_kept, after_kept
        r["load"] = res
        r.update({"before_" + k: v for k, v in before.items()})
        r.update({"after_" + k: v for k, v in after.items()})
        r["nginx_errors"] = system.errors_logged()[:5]
    finally:
        r["hub_exit"] = system.stop()
    lr = r["load"]
    r["cycles_done"] = int(num(lr.get("cycles_done"), 0))
    r["errors"] = int(num(lr.get("cycles_failed"), 0))
    r["cycles_per_s"] = num(lr.get("cycles_per_s"))
    r["rss_before_kb"] = r["before_hub_rss_kb"] + r["before_nginx_rss_kb"]
    r["rss_after_kb"] = r["after_hub_rss_kb"] + r["after_nginx_rss_kb"]
    r["fds_before"] = r["before_hub_fds"] + r["before_nginx_fds"]
    r["fds_after"] = r["after_hub_fds"] + r["after_nginx_fds"]
    return r


# ---------------------------------------------------------------- profiles

def start_perf(env, system, tag):
    """perf record -e cpu-clock -g on the hub and (separately) the nginx workers."""
    if not env.perf:
        return []
    out = []
    targets = [("hub", system.hub_pids()), ("nginx", system.front_pids()[1:])]
    for name, pids in targets:
        if not pids:
            continue
        data = os.path.join(env.tmp, "perf-%s-%s-%s.data" % (tag, system.name, name))
        p = subprocess.Popen([env.perf, "record", "-e", "cpu-clock", "-g", "-o", data,
                              "-p", ",".join(map(str, pids))],
                             stdout=subprocess.DEVNULL, stderr=open(data + ".log", "w"))
        out.append((name, p, data))
    time.sleep(0.5)
    env.perf_data += [(tag, n, d) for n, _, d in out]
    return out


def stop_perf(perfs):
    for _, p, _ in perfs:
        try:
            p.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
    for _, p, _ in perfs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            stop_pid(p.pid, signal.SIGKILL, 1)


def perf_report(env, data, limit=30):
    r = subprocess.run([env.perf, "report", "-i", data, "--stdio", "--no-children",
                        "-g", "none", "--sort", "dso,symbol", "--percent-limit", "0.7"],
                       capture_output=True, text=True, timeout=300)
    lines = [re.sub(r"(\s+-)+\s*$", "", l) for l in r.stdout.splitlines()
             if l.strip() and not l.startswith("#")]
    head = [l for l in r.stdout.splitlines() if l.startswith("# Samples") or
            l.startswith("# Event count")]
    return head + lines[:limit]


def perf_callers(env, data, limit=60):
    """Inclusive (children) view: where the time goes by call path."""
    r = subprocess.run([env.perf, "report", "-i", data, "--stdio", "--children",
                        "-g", "none", "--sort", "symbol", "--percent-limit", "3"],
                       capture_output=True, text=True, timeout=300)
    lines = [re.sub(r"(\s+-)+\s*$", "", l) for l in r.stdout.splitlines()
             if l.strip() and not l.startswith("#")]
    return lines[:limit]


def callgrind_total(path):
    tot = 0
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                tot = max(tot, int(line.split()[1]))
    return tot


def callgrind_functions(path):
    """Self cost per function from callgrind_annotate (inclusive=no)."""
    r = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no",
                        "--tree=none", "--auto=no", path],
                       capture_output=True, text=True, timeout=300)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$", line)
        if not m:
            continue
        name = m.group(2).strip()
        if (name.startswith("PROGRAM TOTALS") or "file:function" in name or
                name.startswith("=>") or name.startswith("<") or "events annotated" in name):
            continue
        obj = re.search(r"\[([^\]]*)\]\s*$", name)
        name = re.sub(r"\s*\[[^\]]*\]\s*$", "", name)
        if name.startswith("???") and obj:      # no symbols: name the library
            name += " (%s)" % os.path.basename(obj.group(1))
        if "start_thread" in name or name.endswith(":clone"):
            continue        # thread entry frames: their cost is everything below them
        out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    return out


def callgrind_calls(path, names=("sendmsg", "writev", "write", "epoll_wait", "epoll_ctl",
                                 "read", "recvmsg", "malloc", "free")):
    """Calls of a few libc functions (summed over callers) from the call arcs."""
    r = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=yes",
                        "--tree=calling", "--auto=no", path],
                       capture_output=True, text=True, timeout=300)
    out = dict.fromkeys(names, 0)
    for m in re.finditer(r"(?m)^\s*[\d,]+\s+\([^)]*\)\s+=?>\s+\S*?:([A-Za-z_0-9]+)\s+"
                         r"\(([\d,]+)x\)", r.stdout):
        name = m.group(1)
        for n in names:
            if name in (n, "__libc_" + n, "__" + n, "__GI___" + n):
                out[n] += int(m.group(2).replace(",", ""))
    return out


def callgrind_dump(pid):
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, timeout=60)


def run_callgrind(env, n, msgs, interval_ms, window_s=0.0, targeted=0):
    """ssehub under callgrind behind nginx: n streams open, then msgs broadcasts
    (or `targeted` send-to-user requests over 16 connections, or nothing for
    window_s seconds), streams closed, SIGTERM. callgrind_control dumps the
    counters when the publish window starts (part 1: startup + opening) and
    when the last message has arrived (part 2: the window); the exit writes the
    rest (part 3: teardown)."""
    system = System("ssehub", env)
    tag = "t%d" % targeted if targeted else str(msgs)
    out = os.path.join(env.tmp, "callgrind.%s.out" % tag)
    system.valgrind = out
    r = {"n": n, "msgs": msgs, "targeted": targeted}
    system.start(valgrind_out=out)
    try:
        time.sleep(1.0)
        ld = Load(env, system, n, ["-r", "250", "-W", "150"], "cg" + tag)
        r["ready"] = ld.wait_ready(160)
        time.sleep(1.0)
        pid = system.hub.pid
        callgrind_dump(pid)
        t0 = time.monotonic()
        if targeted:
            r["pub"] = run_pub(env, system, ["-n", str(targeted), "-c", "16", "-U", str(n),
                                             "-w", "60"], 300)
            ld.wait_msgs(targeted, idle_s=5, hard_s=120)
        elif msgs:
            r["pub"] = run_pub(env, system, ["-b", "-n", str(msgs), "-c", str(msgs),
                                             "-i", str(interval_ms), "-w", "60"], 300)
            ld.wait_msgs(n * msgs, idle_s=5, hard_s=120)
        while time.monotonic() - t0 < window_s:
            time.sleep(0.05)
        r["window_s"] = time.monotonic() - t0
        callgrind_dump(pid)
        r["load"] = ld.stop()
        for _ in range(100):
            if system.clients() == 0:
                break
            time.sleep(0.2)
    finally:
        r["hub_exit"] = system.stop()
    r["delivered"] = int(num(r["load"].get("messages_delivered"), 0))
    r["open"] = int(num(r["load"].get("streams_opened_total"), 0))
    parts = [out + ".1", out + ".2", out]
    r["parts"] = [callgrind_total(p) if os.path.exists(p) else 0 for p in parts]
    r["instructions"] = sum(r["parts"])      # the whole process, start to exit
    r["window_ir"] = r["parts"][1]
    r["window_file"] = parts[1]
    return r


# ---------------------------------------------------------------- aggregation

def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0, unit=""):
    if v is None:
        return "–"
    if nd == 0:
        return "{:,.0f}{}".format(v, unit)
    return "{:,.{}f}{}".format(v, nd, unit)


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "–"
    return "%.*f×" % (nd, a / b)


def agg(runs, scenario, system, n, key):
    return median([r.get(key) for r in runs
                   if r["scenario"] == scenario and r["system"] == system and r["n"] == n])


def agg_all(runs, scenario, system, n, key):
    return [r.get(key) for r in runs
            if r["scenario"] == scenario and r["system"] == system and r["n"] == n]


def minmax(vals, nd=0):
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return ""
    return " (%s–%s)" % (fmt(min(vals), nd), fmt(max(vals), nd))


def machine_info():
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cores"] = os.cpu_count()
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1048576, 1)
    except OSError:
        pass
    info["kernel"] = os.uname().release
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass

    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    info["nginx"] = out(["nginx", "-v"]).replace("nginx version: ", "")
    info["nchan"] = out(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"])
    info["go"] = out(["go", "version"]).replace("go version ", "")
    info["lighttpd"] = out(["lighttpd", "-v"]).split(" - ")[0]
    info["apache"] = (out(["apache2", "-v"]).splitlines() or [""])[0].replace("Server version: ", "")
    info["ssehub"] = out([os.environ.get("SSEHUB_BIN") or os.path.join(ROOT, "src/ssehub"),
                          "--version"])
    info["commit"] = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "src"],
                           capture_output=True).returncode
    if dirty == 1:
        info["commit"] += " (src/ modified)"
    info["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return info


# ---------------------------------------------------------------- report

def report(env, runs, cg, prof, info, out_md, plots_dir, wall_s, load_samples):
    P = env.params
    systems = [s for s in SYSTEMS if s in env.systems]
    peers = [s for s in systems if s not in HUB_SYSTEMS and s not in NULL_SYSTEMS]
    fronts = [s for s in systems if s in HUB_SYSTEMS and s != "ssehub"]
    ns = P["hold_ns"]
    nf = P["fan_n"]
    L = []
    w = L.append
    title = "ssehub vs Nchan vs the seed's Go design" + (
        ", and ssehub behind " + " and ".join(SHORT[s] for s in fronts) if fronts else "") + (
        " (--quick smoke run)" if env.quick else "")
    w("# " + title)
    w("")
    w("Generated by `bench/compare.sh%s` — do not edit by hand; rerun it." %
      (" --quick" if env.quick else ""))
    w("")
    w("| | |")
    w("|---|---|")
    w("| date | %s |" % info.get("date"))
    w("| commit | `%s` (%s) |" % (info.get("commit"), info.get("ssehub")))
    w("| machine | %s, %s cores, %s GiB, %s, kernel %s |" % (
        info.get("cpu"), info.get("cores"), info.get("mem_gib"), info.get("os"), info.get("kernel")))
    w("| peers | nginx %s; libnginx-mod-nchan %s; %s |" % (
        info.get("nginx"), info.get("nchan") or "not installed", info.get("go") or "no Go"))
    if fronts:
        w("| front servers | %s |" % "; ".join(
            x for x in (info.get("lighttpd") if "ssehub-lighttpd" in systems else None,
                        info.get("apache") if "ssehub-apache" in systems else None) if x))
    w("| repetitions | %d, interleaved %s per scenario; medians (min–max in brackets) |" % (
        env.reps_done, " ".join(SHORT[s] for s in systems)))
    la = [x for x in load_samples if x is not None]
    oth_rate = [r["other_cpu_s"] / r["wall_s"] for r in runs
                if r.get("other_cpu_s") is not None and r.get("wall_s")]
    w("| machine load | 1-min load average %s–%s (median %s) at the start of the runs; "
      "other processes used a median %.2f cores (max %.2f) during the measured phases; "
      "suite wall time %s s |" % (
          fmt(min(la), 2) if la else "?", fmt(max(la), 2) if la else "?",
          fmt(median(la), 2) if la else "?",
          median(oth_rate) or 0, max(oth_rate) if oth_rate else 0, fmt(wall_s)))
    w("")
    w("Every system runs behind nginx %s with 2 workers, `reuseport`, "
      "`worker_rlimit_nofile %d`, on 127.0.0.1; streams are opened by `sseload` "
      "(one thread, epoll) as fast as the system takes them (at most %d connects in flight, "
      "source addresses 127.0.0.1–8); publishers are `ssepost` (C, keep-alive). "
      "ssehub: FastCGI over a unix socket, default options (one loop thread per core, "
      "no other thread serving requests), "
      "behind `examples/nginx/ssehub.conf` as shipped (socket and port filled in). "
      "Nchan: EventSource subscriber on `user_$arg_u broadcast` (multiplexed), "
      "publisher location `/pub?id=...` inside the same nginx, no authentication. "
      "Nchan, one channel: Nchan at its cheapest, every EventSource subscriber on the one "
      "channel `broadcast` (`/sse/cheap`, no user channel, no token), in the hold, fan-out "
      "and churn scenarios (it cannot address one user, so no targeted or topics runs). "
      "Go: `bench/peers/gohub` (hub singleton, buffered channel and JSON encoding per "
      "client, 30 s ping ticker, HS256 with crypto/hmac) behind `proxy_pass` on a unix "
      "socket with `proxy_buffering off`." % (info.get("nginx"), env.nofile, env.pending))
    w("")
    if fronts:
        w("ssehub behind the other front servers, at the stream counts each can hold: "
          "lighttpd running `examples/lighttpd/ssehub.conf` "
          "(variant B, the hub on its own socket; one process, `server.max-fds %d`, so at most "
          "%s streams) in the hold, fan-out, targeted and churn scenarios; Apache httpd "
          "in hold and fan-out only, running `examples/apache/ssehub.conf` (event MPM, "
          "mod_proxy_fcgi; one worker thread per open stream: at N = %d Debian's "
          "`mpm_event.conf` as shipped, MaxRequestWorkers %d with %d left for the API; above "
          "that %d threads per child and as many children as N needs). Their \"front\" "
          "columns are lighttpd's and Apache's processes." % (
              env.nofile, fmt(front_max_streams("ssehub-lighttpd", env.nofile)), APACHE_DEFAULT_N,
              APACHE_DEFAULT_WORKERS, APACHE_API_WORKERS, APACHE_THREADS_PER_CHILD))
        w("")

    # --- targets
    # Against Nchan: the cheaper of its two rows (lower figure at that N),
    # so that ssehub is measured against Nchan at its best, not only against
    # Nchan set up like ssehub (a channel per user besides the broadcast one).
    tgt_ns = sorted(set([nf, ns[-1]]))
    nchans = [s for s in NCHAN_SYSTEMS if s in systems]
    w("## Targets")
    w("")
    if len(nchans) > 1:
        w("\"the cheaper Nchan row\" is, for each figure and N, whichever of %s has the lower "
          "median; the measured column names it and gives the other." % " and ".join(
              "\"%s\"" % LABEL[s] for s in nchans))
        w("")
    w("| target | measured | ratio | verdict |")
    w("|---|---|---|---|")
    tgt_rows = []

    def verdict(ok):
        return "met" if ok else "**missed**"

    def vs_nchan(what, scen, n, key, nd, unit, factor, lower_better=True, rows=None):
        """A target row: ssehub against the Nchan row that does best on
        this figure at N (of `rows`, default both)."""
        a = agg(runs, scen, "ssehub", n, key)
        got = [(agg(runs, scen, s, n, key), s) for s in (rows or nchans)]
        got = [(v, s) for v, s in got if v is not None]
        if a is None or not got:
            return
        b, best = (min if lower_better else max)(got)
        others = "; ".join("*%s* %s" % (LABEL[s], fmt(v, nd, unit)) for v, s in got if s != best)
        which = "*%s*" % LABEL[best] + (" (the %s)" % ("cheaper" if lower_better else "faster")
                                        if len(got) > 1 else "")
        tgt_rows.append((what, "ssehub %s vs %s %s%s" % (
            fmt(a, nd, unit), which, fmt(b, nd, unit), ("; " + others) if others else ""),
            ratio(a, b), verdict(a <= factor * b if lower_better else a >= factor * b)))

    for n in tgt_ns:
        vs_nchan("fan-out p99 ≤ 1.0× the cheaper Nchan row (N = %s)" % fmt(n),
                 "fanout", n, "lat_p99", 1, " ms", 1.0)
    if "gohub" in systems:
        a, b = agg(runs, "fanout", "ssehub", nf, "lat_p99"), agg(runs, "fanout", "gohub", nf, "lat_p99")
        if a is not None and b is not None:
            tgt_rows.append(("fan-out p99 ≤ 1.0× Go's (N = %s)" % fmt(nf),
                             "%s vs %s ms" % (fmt(a, 1), fmt(b, 1)), ratio(a, b), verdict(a <= b)))
    for n in tgt_ns:
        vs_nchan("memory per stream ssehub+nginx ≤ 1.0× the cheaper Nchan row (N = %s)" % fmt(n),
                 "fanout", n, "b_per_stream", 0, " B", 1.0)
    for n in tgt_ns:
        hub_alone = agg(runs, "fanout", "ssehub", n, "hub_b_per_stream")
        if hub_alone is not None:
            tgt_rows.append(("ssehub alone ≤ 400 B per idle stream (N = %s)" % fmt(n),
                             "%s B" % fmt(hub_alone), ratio(hub_alone, 400), verdict(hub_alone <= 400)))
    # send-to-user needs a channel per user: the multiplexed row only
    if "nchan" in systems:
        vs_nchan("targeted publishes/s ≥ 1.2× Nchan's (%s users)" % fmt(P["tgt_users"]),
                 "targeted", P["tgt_users"], "req_per_s", 0, " req/s", 1.2, lower_better=False,
                 rows=["nchan"])
        vs_nchan("topic publishes/s ≥ 1.0× Nchan's channels (N = %s on %s topics)" % (
                 fmt(P.get("topic_n")), P.get("topic_groups")),
                 "topics-fan", P.get("topic_n"), "req_per_s", 0, " req/s", 1.0, lower_better=False,
                 rows=["nchan"])
    ch = [r for r in runs if r["scenario"] == "churn" and r["system"] == "ssehub"]
    if ch:
        errs = sum(r["errors"] for r in ch)
        back_mem = all(r["after_hub_rss_kb"] <= r["before_hub_rss_kb"] * 1.05 + 256 for r in ch)
        # the FastCGI connections nginx keeps for API calls (a pool of at
        # most 16 per worker) are counted out on both sides
        back_fd = all(r["after_hub_fds"] - r.get("after_kept", 0) <= r["before_hub_fds"] - r.get("before_kept", 0) and
                      r["after_nginx_fds"] - r.get("after_kept", 0) <= r["before_nginx_fds"] - r.get("before_kept", 0)
                      for r in ch)
        tgt_rows.append(("churn: zero errors", "%d errors in %d runs" % (errs, len(ch)), "–",
                         verdict(errs == 0)))
        tgt_rows.append(("churn: fds back to baseline",
                         "; ".join("hub %d→%d, nginx %d→%d%s" % (
                             r["before_hub_fds"], r["after_hub_fds"], r["before_nginx_fds"],
                             r["after_nginx_fds"],
                             " (kept API connections %d→%d)" % (r["before_kept"], r["after_kept"])
                             if r.get("before_kept") or r.get("after_kept") else "") for r in ch),
                         "–", verdict(back_fd)))
        tgt_rows.append(("churn: memory back to baseline (ssehub within 5 %)",
                         "; ".join("hub %s→%s kB, nginx %s→%s kB" % (
                             fmt(r["before_hub_rss_kb"]), fmt(r["after_hub_rss_kb"]),
                             fmt(r["before_nginx_rss_kb"]), fmt(r["after_nginx_rss_kb"]))
                             for r in ch), "–", verdict(back_mem)))
    for row in tgt_rows:
        w("| %s | %s | %s | %s |" % row)
    w("")

    # --- hold
    w("## Hold: streams open, time to open them, memory per stream")
    w("")
    w("Memory is VmRSS summed over the system's processes (ssehub + nginx master and "
      "workers, or lighttpd, or Apache's parent and children; Nchan's nginx; Go + nginx), "
      "measured 1 s after the last stream opened, "
      "minus the same sum idle, divided by the streams open. \"back end\" is ssehub "
      "or the Go process alone. The N = %s runs are the fan-out runs (measured before "
      "the first broadcast)." % fmt(nf))
    w("")
    w("| N | system | open | time to open (s) | B/stream total | B/stream back end | "
      "B/stream front | Pss B/stream | fds held (back end + front) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for s in systems:
            rs = [r for r in runs if r["scenario"] == "fanout" and r["system"] == s and r["n"] == n]
            if not rs:
                continue
            w("| %s | %s | %s/%s | %s%s | %s%s | %s | %s | %s | %s |" % (
                fmt(n), LABEL[s], fmt(median([r["open"] for r in rs])), fmt(n),
                fmt(median([r["open_time_s"] for r in rs]), 2),
                minmax([r["open_time_s"] for r in rs], 2),
                fmt(median([r.get("b_per_stream") for r in rs])),
                minmax([r.get("b_per_stream") for r in rs]),
                fmt(median([r.get("hub_b_per_stream") for r in rs])) if s not in NCHAN_SYSTEMS else "–",
                fmt(median([r.get("nginx_b_per_stream") for r in rs])),
                fmt(median([r.get("pss_b_per_stream") for r in rs])),
                fmt(median([r["held_hub_fds"] + r["held_nginx_fds"] for r in rs]))))
    w("")

    # --- fan-out
    w("## Fan-out: %d broadcasts of ~200 bytes, %d ms apart" % (P["fan_msgs"], P["fan_interval"]))
    w("")
    w("Broadcasts are sent open-loop: each on its own keep-alive connection at start + "
      "i × %d ms, whatever the earlier answers took (\"publish span\" = first send to "
      "last answer). Latency = receive time in sseload − publisher's clock just before "
      "it wrote the POST; nearest-rank over every delivered message. CPU per delivered "
      "message = CPU of the system's processes from the first broadcast until the last "
      "message arrived / messages delivered (10 ms clock ticks). \"first broadcast\" "
      "= latency of the last stream to get broadcast 1 (no queue ahead of it)." %
      P["fan_interval"])
    w("")
    w("| N | system | delivered | p50 ms | p99 ms | max ms | first broadcast ms | "
      "publish span s | CPU µs/msg (back end + front) | other load (cores) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for s in systems:
            rs = [r for r in runs if r["scenario"] == "fanout" and r["system"] == s and r["n"] == n]
            if not rs:
                continue
            w("| %s | %s | %s/%s | %s%s | %s%s | %s | %s | %s | %s (%s + %s) | %s |" % (
                fmt(n), LABEL[s], fmt(median([r["delivered"] for r in rs])),
                fmt(rs[0]["expected"]),
                fmt(median([r["lat_p50"] for r in rs]), 1), minmax([r["lat_p50"] for r in rs], 1),
                fmt(median([r["lat_p99"] for r in rs]), 1), minmax([r["lat_p99"] for r in rs], 1),
                fmt(median([r["lat_max"] for r in rs]), 1),
                fmt(median([r.get("first_bcast_ms") for r in rs]), 1),
                fmt(median([num(r["pub"].get("elapsed_s")) for r in rs]), 2),
                fmt(median([r.get("cpu_us_per_msg") for r in rs]), 1),
                fmt(median([r["hub_cpu_s"] * 1e6 / r["delivered"] if r["delivered"] else None
                            for r in rs]), 1),
                fmt(median([r["nginx_cpu_s"] * 1e6 / r["delivered"] if r["delivered"] else None
                            for r in rs]), 1),
                fmt(median([r["other_cpu_s"] / r["wall_s"] for r in rs]), 2)))
    w("")

    reps = sorted(set(r.get("rep", 1) for r in runs if r["scenario"] == "fanout"))
    if len(reps) > 1:
        w("Every run at N = %s, in the order run (p50 / p99 ms; other load = cores used by "
          "other processes during that run's publish phase):" % fmt(nf))
        w("")
        fan = [s for s in systems if s not in NULL_SYSTEMS]     # nullfcgi runs topics only
        w("| rep | " + " | ".join("%s p50 / p99 (other load)" % SHORT[s] for s in fan) + " |")
        w("|---|" + "---|" * len(fan))
        for rp in reps:
            cells = []
            for s in fan:
                rr = [r for r in runs if r["scenario"] == "fanout" and r["system"] == s and
                      r["n"] == nf and r.get("rep", 1) == rp]
                cells.append("%s / %s (%.2f)" % (fmt(rr[0]["lat_p50"], 0), fmt(rr[0]["lat_p99"], 0),
                                                 rr[0]["other_cpu_s"] / rr[0]["wall_s"])
                             if rr else "–")
            w("| %d | %s |" % (rp, " | ".join(cells)))
        w("")

    # --- targeted
    u = P["tgt_users"]
    w("## Targeted: %s users with one stream each, %s send-to-user messages over %d "
      "keep-alive connections" % (fmt(u), fmt(P["tgt_msgs"]), P["tgt_conns"]))
    w("")
    w("| system | publish req/s | publish p99 ms | failed | delivered | lost | "
      "delivery p50 ms | delivery p99 ms | out of order | CPU µs per message: front | back end |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")

    def per_msg(r, key):
        return r.get(key, 0) * 1e6 / r["delivered"] if r.get("delivered") else None

    for s in systems:
        rs = [r for r in runs if r["scenario"] == "targeted" and r["system"] == s]
        if not rs:
            continue
        w("| %s | %s%s | %s | %s | %s/%s | %s | %s | %s%s | %s | %s | %s |" % (
            LABEL[s], fmt(median([r["req_per_s"] for r in rs])),
            minmax([r["req_per_s"] for r in rs]),
            fmt(median([r["post_p99"] for r in rs]), 1),
            fmt(median([r["pub_failed"] for r in rs])),
            fmt(median([r["delivered"] for r in rs])), fmt(rs[0]["expected"]),
            fmt(median([r["lost"] for r in rs])),
            fmt(median([r["lat_p50"] for r in rs]), 1),
            fmt(median([r["lat_p99"] for r in rs]), 1), minmax([r["lat_p99"] for r in rs], 1),
            fmt(median([r["seq_errors"] for r in rs])),
            fmt(median([per_msg(r, "nginx_cpu_s") for r in rs]), 1),
            fmt(median([per_msg(r, "hub_cpu_s") for r in rs]), 1) if s not in NCHAN_SYSTEMS else "–"))
    w("")
    w("CPU per message counts the publish request and its delivery, over the publishing phase. "
      "Nchan does both inside nginx; through ssehub nginx relays the request to the hub and the "
      "event back, two FastCGI hops, which is where the difference in throughput comes from.")
    w("")

    # --- topics
    if any(r["scenario"] in TOPIC_CASES for r in runs):
        topics_section(w, runs, systems, P)

    # --- churn
    w("## Churn: %s connect-then-disconnect cycles, %d at a time" % (
        fmt(P["churn_cycles"]), P["churn_conc"]))
    w("")
    w("A cycle = connect, request, read up to the `connected` event (Nchan: its first "
      "comment), close. Before = after a %s-cycle warm-up; after = 1 s after the "
      "system reports 0 streams. Memory is VmRSS in kB." % fmt(P["churn_warm"]))
    w("")
    w("| system | cycles/s | errors | back end kB before → after | front kB before → after | "
      "back end fds before → after | front fds before → after | streams left |")
    w("|---|---|---|---|---|---|---|---|")
    for s in systems:
        rs = [r for r in runs if r["scenario"] == "churn" and r["system"] == s]
        if not rs:
            continue
        w("| %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
            LABEL[s], fmt(median([r["cycles_per_s"] for r in rs])),
            minmax([r["cycles_per_s"] for r in rs]),
            fmt(sum(r["errors"] for r in rs)),
            "–" if s in NCHAN_SYSTEMS else "; ".join("%s → %s" % (
                fmt(r["before_hub_rss_kb"]), fmt(r["after_hub_rss_kb"])) for r in rs),
            "; ".join("%s → %s" % (fmt(r["before_nginx_rss_kb"]), fmt(r["after_nginx_rss_kb"]))
                      for r in rs),
            "–" if s in NCHAN_SYSTEMS else "; ".join("%d → %d" % (
                r["before_hub_fds"], r["after_hub_fds"]) for r in rs),
            "; ".join("%d → %d" % (r["before_nginx_fds"], r["after_nginx_fds"]) for r in rs),
            ", ".join(str(r.get("clients_after")) for r in rs)))
    w("")
    if any(r["scenario"] == "churn" and r["system"] == "ssehub-lighttpd" for r in runs):
        w("Behind lighttpd ssehub learns that a client left only when it next writes to it "
          "(`--liveness-interval`, 5 s), so the cycles of the last seconds stay open in lighttpd "
          "and in the hub while the run goes on. lighttpd keeps the memory of the most "
          "connections it had at once: its growth here is that high-water mark, not a leak "
          "(after a warm-up as long as the run, another run leaves it flat).")
        w("")

    # --- lighttpd against nginx
    if "ssehub" in systems and "ssehub-lighttpd" in systems:
        fronts_section(w, env, runs, P)

    # --- ratios
    w("## Ratios: ssehub ÷ peer (medians)")
    w("")
    w("Below 1 is better for ssehub on every line except throughput and cycles/s, "
      "where above 1 is better.")
    w("")
    w("| figure | " + " | ".join("ssehub ÷ " + SHORT[p] for p in peers) + " |")
    w("|---|" + "---|" * len(peers))

    def rrow(label, scen, n, key):
        a = agg(runs, scen, "ssehub", n, key)
        w("| %s | %s |" % (label, " | ".join(ratio(a, agg(runs, scen, p, n, key)) for p in peers)))
    for n in ns:
        rrow("fan-out p99, N = %s" % fmt(n), "fanout", n, "lat_p99")
    rrow("fan-out p50, N = %s" % fmt(nf), "fanout", nf, "lat_p50")
    rrow("CPU per delivered message, N = %s" % fmt(nf), "fanout", nf, "cpu_us_per_msg")
    for n in ns:
        rrow("memory per stream (total), N = %s" % fmt(n), "fanout", n, "b_per_stream")
    rrow("time to open N = %s" % fmt(ns[-1]), "fanout", ns[-1], "open_time_s")
    rrow("targeted publish req/s", "targeted", u, "req_per_s")
    rrow("targeted delivery p99", "targeted", u, "lat_p99")
    if P.get("topic_n"):
        rrow("topic publish req/s (%s on %s topics)" % (fmt(P["topic_n"]), P["topic_groups"]),
             "topics-fan", P["topic_n"], "req_per_s")
        rrow("topic delivery p99 (%s on %s topics)" % (fmt(P["topic_n"]), P["topic_groups"]),
             "topics-fan", P["topic_n"], "lat_p99")
        rrow("1 topic, %s streams: delivery p99" % fmt(P["topic_n"]), "topics-one", P["topic_n"], "lat_p99")
    rrow("churn cycles/s", "churn", P["churn_cycles"], "cycles_per_s")
    w("")

    # --- instructions
    if cg:
        w("## Instructions per delivered message (callgrind)")
        w("")
        c0, c1 = cg
        w("ssehub alone under `valgrind --tool=callgrind` behind nginx: %s streams opened, "
          "then %d broadcasts %d ms apart (open loop), streams closed, SIGTERM; the same "
          "run with 0 broadcasts is the startup/idle baseline. `callgrind_control -d` "
          "splits each run into startup + opening, the publish window (first broadcast "
          "to last message received; the baseline idles for as long) and teardown." % (
              fmt(c1["n"]), c1["msgs"], P["fan_interval"]))
        w("")
        w("| run | streams open | delivered | Ir startup + opening | Ir publish window | "
          "Ir teardown | Ir whole process |")
        w("|---|---|---|---|---|---|---|")
        for label, c in (("0 broadcasts", c0), ("%d broadcasts" % c1["msgs"], c1)):
            w("| %s | %s | %s | %s | %s (%.1f s) | %s | %s |" % (
                label, fmt(c["open"]), fmt(c["delivered"]), fmt(c["parts"][0]),
                fmt(c["parts"][1]), c["window_s"], fmt(c["parts"][2]),
                fmt(c["instructions"])))
        w("")
        w("**%s instructions per delivered message** in the publish window ((window − "
          "baseline window) / delivered); the whole-process difference gives %s, but the "
          "startup and opening of 1,000 streams (~%s Ir, JWT checks and hand-offs) vary "
          "by a few million Ir from run to run, as much as the whole signal, so the "
          "windowed figure is the stable one." % (
              fmt(prof.get("callgrind_window_per_msg")),
              fmt(prof.get("callgrind_total_per_msg")), fmt(c1["parts"][0])))
        w("")
        if prof.get("callgrind_calls"):
            w("Calls per delivered message in the window: " + ", ".join(
                "%s %.3f" % (x, v) for x, v in prof["callgrind_calls"].items() if abs(v) >= 0.001)
              + ". Callgrind counts user-space instructions only: the kernel's share of a "
              "`sendmsg` (most of ssehub's CPU time in the perf profile below) is not in "
              "the figure.")
            w("")
        if prof.get("callgrind_top"):
            w("Self cost per function in the window, minus the baseline window, top entries "
              "(Ir per delivered message):")
            w("")
            w("```")
            for line in prof["callgrind_top"]:
                w(line)
            w("```")
            w("")
    ct = prof.get("callgrind_targeted")
    if ct:
        w("### Instructions per send-to-user request")
        w("")
        w("The same setup with %s send-to-user requests (one delivery each) over 16 "
          "keep-alive connections instead of broadcasts: **%s instructions per request** "
          "in the window (%s requests answered, %s delivered, %.1f s). Each request is a "
          "new FastCGI connection from nginx, an admin JWT check, a JSON parse and one "
          "delivery. Self cost per function in the window, minus the baseline window:" % (
              fmt(ct["requests"]), fmt(ct["per_request"]), fmt(ct["requests"]),
              fmt(ct["delivered"]), ct["window_s"]))
        w("")
        w("```")
        for line in prof.get("callgrind_targeted_top", []):
            w(line)
        w("```")
        w("")
    if prof.get("perf"):
        w("## CPU profiles (perf)")
        w("")
        w("`perf record -e cpu-clock -g` attached during the publish phase of one extra "
          "ssehub fan-out run at N = %s and of one extra targeted run (not part of the "
          "medians); `perf report --stdio --no-children --sort dso,symbol`, top entries "
          "(the inclusive view is in `results/perf-children.txt`):" % fmt(nf))
        w("")
        for name, lines in prof["perf"]:
            w("**%s**" % name)
            w("")
            w("```")
            for line in lines:
                w(line)
            w("```")
            w("")

    # --- plots
    if env.plots_ok:
        w("## Plots")
        w("")
        w("![fan-out latency vs N](plots/latency_vs_n.png)")
        w("")
        w("![memory per stream vs N](plots/memory_vs_n.png)")
        w("")
    w("## Notes")
    w("")
    for note in env.notes:
        w("* " + note)
    w("")
    w("Raw figures of every run: `%s`." % os.path.relpath(env.raw_json, os.path.dirname(out_md)))
    w("")
    with open(out_md, "w") as f:
        f.write("\n".join(L))


def fronts_section(w, env, runs, P):
    """ssehub behind lighttpd and behind nginx, the same scenarios side by
    side: every figure of the runs both made, then a paragraph of the main
    differences."""
    a, b = "ssehub", "ssehub-lighttpd"
    w("## ssehub behind lighttpd and behind nginx")
    w("")
    w("The same hub, the same scenarios, at the N both ran (lighttpd holds at most %s "
      "streams here). \"front\" is nginx's master and workers, or the one lighttpd "
      "process. Medians." % fmt(front_max_streams(b, env.nofile)))
    w("")
    table = []

    def row(scen, n, label, key, nd=0, unit=""):
        x, y = agg(runs, scen, a, n, key), agg(runs, scen, b, n, key)
        if x is None and y is None:
            return
        table.append("| %s | %s | %s | %s | %s |" % (
            "fan-out, N = %s" % fmt(n) if scen == "fanout" else
            "targeted, %s users" % fmt(n) if scen == "targeted" else
            "churn, %s cycles" % fmt(n), label, fmt(x, nd, unit), fmt(y, nd, unit), ratio(y, x)))

    both = [n for n in P["hold_ns"] if agg_all(runs, "fanout", a, n, "open") and
            agg_all(runs, "fanout", b, n, "open")]
    for n in both:
        row("fanout", n, "time to open (s)", "open_time_s", 2)
        row("fanout", n, "B/stream, all processes", "b_per_stream")
        row("fanout", n, "B/stream, front alone", "nginx_b_per_stream")
        row("fanout", n, "Pss B/stream", "pss_b_per_stream")
        row("fanout", n, "delivery p50 (ms)", "lat_p50", 1)
        row("fanout", n, "delivery p99 (ms)", "lat_p99", 1)
        row("fanout", n, "CPU µs per delivered message", "cpu_us_per_msg", 1)
    u = P["tgt_users"]
    if agg_all(runs, "targeted", b, u, "req_per_s"):
        row("targeted", u, "publish req/s", "req_per_s")
        row("targeted", u, "publish p99 (ms)", "post_p99", 1)
        row("targeted", u, "lost", "lost")
        row("targeted", u, "delivery p99 (ms)", "lat_p99", 1)
    c = P["churn_cycles"]
    if agg_all(runs, "churn", b, c, "cycles_per_s"):
        row("churn", c, "cycles/s", "cycles_per_s")
        row("churn", c, "errors", "errors")
    if table:
        w("| scenario | figure | nginx | lighttpd | lighttpd ÷ nginx |")
        w("|---|---|---|---|---|")
        for line in table:
            w(line)
        w("")
    # the paragraph: the figures that differ most, in words
    said = []
    nf = P["fan_n"] if P["fan_n"] in both else (both[-1] if both else None)
    if nf is not None:
        m = (agg(runs, "fanout", a, nf, "b_per_stream"), agg(runs, "fanout", b, nf, "b_per_stream"))
        q = (agg(runs, "fanout", a, nf, "lat_p99"), agg(runs, "fanout", b, nf, "lat_p99"))
        said.append("at N = %s a stream costs %s B behind lighttpd against %s B behind nginx "
                    "(%s), and fan-out p99 is %s against %s ms (%s)" % (
                        fmt(nf), fmt(m[1]), fmt(m[0]), ratio(m[1], m[0]), fmt(q[1], 1), fmt(q[0], 1),
                        ratio(q[1], q[0])))
    t = (agg(runs, "targeted", a, u, "req_per_s"), agg(runs, "targeted", b, u, "req_per_s"))
    if t[1] is not None:
        said.append("send-to-user runs at %s req/s through lighttpd against %s through nginx (%s)" % (
            fmt(t[1]), fmt(t[0]), ratio(t[1], t[0])))
    elif u > (front_max_streams(b, env.nofile) or u):
        said.append("the targeted scenario's %s streams are more than lighttpd holds here, so it "
                    "did not run (a smaller --tgt-users runs it)" % fmt(u))
    k = (agg(runs, "churn", a, c, "cycles_per_s"), agg(runs, "churn", b, c, "cycles_per_s"))
    if k[1] is not None:
        said.append("churn makes %s cycles/s against %s (%s), %s errors behind lighttpd" % (
            fmt(k[1]), fmt(k[0]), ratio(k[1], k[0]),
            fmt(sum(r["errors"] for r in runs if r["scenario"] == "churn" and r["system"] == b))))
    if said:
        w("In short: " + "; ".join(said) + ".")
        w("")


def null_section(w, runs, P):
    """The FastCGI hop alone: nullfcgi's topic publishes/s against Nchan's
    and ssehub's, and where each one's CPU goes."""
    n = P.get("topic_n")
    nul, hub, nc = (agg(runs, "topics-fan", s, n, "req_per_s") for s in ("nullfcgi", "ssehub", "nchan"))
    if nul is None:
        return

    def us(s, key):
        v = [r[key] * 1e6 / r["delivered"] for r in runs
             if r["scenario"] == "topics-fan" and r["system"] == s and r["delivered"]]
        return median(v) if v else None
    w("**The FastCGI hop alone.** `bench/peers/nullfcgi.c` is the cheapest FastCGI back end "
      "the topics cases can run: no token, no JSON, no history, one thread, one writev per "
      "stream and event (as ssehub), behind the same nginx example. With %s streams on %s "
      "topics it makes %s req/s, %s Nchan's %s; ssehub makes %s, %s nullfcgi's. CPU per "
      "delivered message: ssehub %s µs and its nginx %s µs; nullfcgi %s µs and its nginx %s "
      "µs; Nchan, all in nginx, %s µs. The back end's microseconds are the kernel's: the "
      "write of each event to nginx over the unix socket and the wake-up of the nginx "
      "worker, which every FastCGI back end pays once per event and stream, on top of "
      "nginx's relay (read the event, write it to the client)." % (
          fmt(n), P.get("topic_groups"), fmt(nul), ratio(nul, nc), fmt(nc), fmt(hub), ratio(hub, nul),
          fmt(us("ssehub", "hub_cpu_s"), 1), fmt(us("ssehub", "nginx_cpu_s"), 1),
          fmt(us("nullfcgi", "hub_cpu_s"), 1), fmt(us("nullfcgi", "nginx_cpu_s"), 1),
          fmt(us("nchan", "nginx_cpu_s"), 1)))
    w("")


def topics_section(w, runs, systems, P):
    """The topics scenario's tables (ssehub topics vs Nchan channels)."""
    w("## Topics: ssehub's topics and Nchan's channels")
    w("")
    w("ssehub: streams on `GET /sse/stream?topic=…` (tokens whose topics claim is `[\"*\"]`), "
      "publishes `POST /api/sse/publish {\"topic\":…}`. Nchan: an EventSource subscriber "
      "on the channels of `?topic=` (`nchan_channel_id_split_delimiter \",\"` for several), "
      "publishes `POST /pub?id=…`. Message i goes to topic t(i mod topics); latency and "
      "order are checked per stream as in the other scenarios. \"out of order\" counts "
      "deliveries of a publish that overtook an earlier one between the concurrent "
      "publisher connections before the system received it; each system delivers in the "
      "order it received them.")
    w("")
    w("| case | system | open | publish req/s | publish p99 ms | failed | delivered | "
      "delivery p50 ms | delivery p99 ms | max ms | out of order | CPU µs/msg (back end + nginx) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    labels = {
        "topics-fan": "%s streams, each on 1 of %s topics; %s publishes over %d keep-alive connections" % (
            fmt(P.get("topic_n")), P.get("topic_groups"), fmt(P.get("topic_msgs")), P.get("topic_conns", 0)),
        "topics-multi": "1 stream on %s topics; %s publishes round robin over 1 connection" % (
            P.get("multi_topics"), fmt(P.get("multi_msgs"))),
        "topics-one": "%s streams on 1 topic; %s publishes %s ms apart (as the fan-out broadcasts)" % (
            fmt(P.get("topic_n")), P.get("one_msgs"), P.get("fan_interval")),
    }
    for case in TOPIC_CASES:
        for s in systems:
            rs = [r for r in runs if r["scenario"] == case and r["system"] == s]
            if not rs:
                continue
            w("| %s | %s | %s/%s | %s%s | %s | %s | %s/%s | %s | %s%s | %s | %s | %s |" % (
                labels[case], LABEL[s], fmt(median([r["open"] for r in rs])), fmt(rs[0]["n"]),
                fmt(median([r["req_per_s"] for r in rs])), minmax([r["req_per_s"] for r in rs]),
                fmt(median([r["post_p99"] for r in rs]), 1),
                fmt(median([r["pub_failed"] for r in rs])),
                fmt(median([r["delivered"] for r in rs])), fmt(rs[0]["expected"]),
                fmt(median([r["lat_p50"] for r in rs]), 1),
                fmt(median([r["lat_p99"] for r in rs]), 1), minmax([r["lat_p99"] for r in rs], 1),
                fmt(median([r["lat_max"] for r in rs]), 1),
                fmt(median([r["seq_errors"] for r in rs])),
                fmt(median([r.get("cpu_us_per_msg") for r in rs]), 1)))
    w("")
    null_section(w, runs, P)
    one = agg(runs, "topics-one", "ssehub", P.get("topic_n"), "lat_p99")
    bc = agg(runs, "fanout", "ssehub", P.get("topic_n"), "lat_p99")
    if one is not None and bc is not None:
        w("One topic with %s streams against a broadcast to %s streams (ssehub, fan-out "
          "table): delivery p99 %s vs %s ms = %s. A topic publish posts one batch per loop "
          "naming the topic's streams in it (O(streams on the topic)); a broadcast posts one job "
          "per loop that walks the loop's streams." % (
              fmt(P["topic_n"]), fmt(P["topic_n"]), fmt(one, 1), fmt(bc, 1), ratio(one, bc)))
        w("")


def plots(env, runs, plots_dir):
    systems = [s for s in SYSTEMS if s in env.systems and s not in NULL_SYSTEMS]   # fan-out only
    ns = env.params["hold_ns"]
    os.makedirs(plots_dir, exist_ok=True)
    dat = os.path.join(env.tmp, "plot.dat")
    with open(dat, "w") as f:
        for s in systems:
            f.write("# %s\n" % s)
            for n in ns:
                f.write("%d %s %s %s %s %s\n" % (
                    n, agg(runs, "fanout", s, n, "lat_p50") or "NaN",
                    agg(runs, "fanout", s, n, "lat_p99") or "NaN",
                    (agg(runs, "fanout", s, n, "b_per_stream") or float("nan")) / 1024,
                    (agg(runs, "fanout", s, n, "hub_b_per_stream") or float("nan")) / 1024
                    if s not in NCHAN_SYSTEMS else "NaN",
                    (agg(runs, "fanout", s, n, "nginx_b_per_stream") or float("nan")) / 1024))
            f.write("\n\n")
    colors = {"ssehub": "#1f77b4", "nchan": "#2ca02c", "nchan-cheap": "#17becf", "gohub": "#d62728",
              "ssehub-lighttpd": "#9467bd", "ssehub-apache": "#ff7f0e"}
    lat = []
    mem = []
    for i, s in enumerate(systems):
        c = colors[s]
        lat.append("'%s' index %d using 1:3 with linespoints lw 2 pt 7 lc rgb '%s' title '%s p99'"
                   % (dat, i, c, LABEL[s]))
        lat.append("'%s' index %d using 1:2 with linespoints lw 1 dt 2 pt 6 lc rgb '%s' "
                   "title '%s p50'" % (dat, i, c, LABEL[s]))
        mem.append("'%s' index %d using 1:4 with linespoints lw 2 pt 7 lc rgb '%s' "
                   "title '%s, all processes'" % (dat, i, c, LABEL[s]))
        if s not in NCHAN_SYSTEMS:
            mem.append("'%s' index %d using 1:5 with linespoints lw 1 dt 2 pt 6 lc rgb '%s' "
                       "title '%s alone'" % (dat, i, c, "Go hub" if s == "gohub" else
                                             "ssehub (%s)" % FRONT[s]))
    sub = "%s, %d reps (medians)%s" % (env.info.get("date", ""), env.reps_done,
                                       ", --quick" if env.quick else "")
    gp = """set terminal pngcairo size 900,560 font ',10'
set grid
set key below
set xlabel 'streams (N)'
set xtics ({xtics})
set xrange [0:{xmax}]
set output '{lat_png}'
set title "Fan-out latency: {msgs} broadcasts {iv} ms apart\\n{sub}"
set ylabel 'latency (ms)'
set yrange [0:*]
plot {lat}
set output '{mem_png}'
set title "Memory per open stream (VmRSS growth / streams)\\n{sub}"
set ylabel 'KiB per stream'
plot {mem}
""".format(lat_png=os.path.join(plots_dir, "latency_vs_n.png"),
           xtics=", ".join('"%s" %d' % (("%gk" % (n / 1000)) if n >= 1000 else str(n), n)
                           for n in ns),
           xmax=int(max(ns) * 1.05),
           mem_png=os.path.join(plots_dir, "memory_vs_n.png"),
           msgs=env.params["fan_msgs"], iv=env.params["fan_interval"], sub=sub,
           lat=", \\\n     ".join(lat), mem=", \\\n     ".join(mem))
    gpf = os.path.join(env.tmp, "plots.gp")
    with open(gpf, "w") as f:
        f.write(gp)
    r = subprocess.run(["gnuplot", gpf], capture_output=True, text=True)
    if r.returncode != 0:
        env.notes.append("gnuplot failed: " + r.stderr[-300:])
        return False
    return True


# ---------------------------------------------------------------- main

def standard_notes(env):
    P = env.params
    return [
        ("N = %d is the most streams this setup allows: the hard open-file limit is %d "
         "per process; nginx holds 2 connections per stream (client + upstream) in each "
         "of its 2 workers (`worker_connections %d`) and starts closing fresh "
         "connections (\"worker_connections are not enough, reusing connections\") once "
         "fewer than 1/16 of them are free, i.e. above ~%d streams per worker; 500 "
         "streams are left for reuseport's uneven split. (Nchan needs one connection per "
         "stream and could hold twice as many; the load client's own limit is ~%d.)" % (
             max(P["hold_ns"]), env.nofile, env.nofile,
             (env.nofile - env.nofile // 16) // 2, env.nofile - 100)) if not env.quick else
        "--quick: small N, one repetition; a smoke run, not a measurement.",
        "Nchan checks no token (an auth subrequest would add work); ssehub and the Go "
        "hub verify an HS256 JWT on every stream and every publish.",
        "Nchan's streams are identity bodies (no chunked encoding) that start with "
        "`: hi`; ssehub's and Go's are chunked and start with `retry` and `connected`.",
        "Nchan keeps channels and messages in shared memory, which VmRSS counts once "
        "per worker that touched it; the Pss column splits shared pages instead. With a "
        "channel per user its nginx grows by ~70 MB over the churn run (the users' "
        "channels in shared memory, counted in both workers), which is not a leak of streams.",
    ]


def write_outputs(env, runs, cg, prof, out_dir, wall, load_samples):
    """results/compare.json, perf-children.txt, plots/, RESULTS.md."""
    P = env.params
    res_dir = os.path.join(out_dir, "results")
    os.makedirs(res_dir, exist_ok=True)
    env.raw_json = os.path.join(res_dir, "compare-quick.json" if env.quick else "compare.json")
    with open(env.raw_json, "w") as f:
        json.dump({"info": env.info, "params": P, "runs": runs,
                   "callgrind": [{k: v for k, v in c.items() if k != "load"} for c in cg]
                   if cg else None,
                   "profile": prof, "notes": env.notes, "systems": env.systems,
                   "reps_done": env.reps_done, "nofile": env.nofile, "pending": env.pending,
                   "quick": env.quick, "wall_s": wall, "load_samples": load_samples},
                  f, indent=1, default=str)
    if prof.get("perf_children"):
        with open(os.path.join(res_dir, "perf-children.txt"), "w") as f:
            for who, lines in prof["perf_children"]:
                f.write("== %s (perf report --children --sort symbol, >= 3%%)\n" % who)
                f.write("\n".join(lines) + "\n\n")
    notes = list(env.notes)
    plots_dir = os.path.join(out_dir, "plots")
    # the plots are of the fan-out runs (gnuplot fails on a file of NaN)
    env.plots_ok = bool(shutil.which("gnuplot")) and any(r["scenario"] == "fanout" for r in runs) and \
        plots(env, runs, plots_dir)
    if not shutil.which("gnuplot"):
        env.notes.append("plots skipped: no gnuplot (apt-get install gnuplot-nox)")
    env.notes += standard_notes(env)
    out_md = os.path.join(out_dir, "RESULTS.md")
    report(env, runs, cg, prof, env.info, out_md, plots_dir, wall, load_samples)
    env.notes = notes
    log("wrote %s" % out_md)
    with open(out_md) as f:
        sys.stdout.write(f.read())


def from_json(path, out_dir):
    """Renders RESULTS.md and the plots again from a results/compare.json."""
    with open(path) as f:
        d = json.load(f)
    env = Env()
    env.info, env.params, env.notes = d["info"], d["params"], d.get("notes", [])
    runs = d["runs"]
    env.systems = d.get("systems") or [s for s in SYSTEMS if any(r["system"] == s for r in runs)]
    env.reps_done = d.get("reps_done") or max([r.get("rep", 1) for r in runs] or [0])
    env.nofile = d.get("nofile", 20000)
    env.pending = d.get("pending", 200)
    env.quick = d.get("quick", "quick" in os.path.basename(path))
    env.tmp = tempfile.mkdtemp(prefix="ssehub-compare.")
    cg = tuple(d["callgrind"]) if d.get("callgrind") else None
    load_samples = d.get("load_samples") or [r.get("load1") for r in runs]
    try:
        write_outputs(env, runs, cg, d.get("profile") or {}, out_dir, d.get("wall_s"),
                      load_samples)
    finally:
        shutil.rmtree(env.tmp, ignore_errors=True)
    return 0



class Env:
    pass


def tool_env(prefix):
    """An Env for the single-purpose tools built on this file (liveness.py,
    frontmem.py): quick mode, no systems yet, this tree's ssehub (or
    $SSEHUB_BIN), the descriptor limit raised to the hard one (at most
    20,000, as the suite assumes), a temp dir nginx's workers can reach."""
    env = Env()
    env.notes, env.loads, env.systems, env.quick = [], [], [], True
    env.ssehub_bin = os.environ.get("SSEHUB_BIN") or os.path.join(ROOT, "src", "ssehub")
    env.ssehub_args, env.ssehub_nginx_extra = [], []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env.nofile = min(hard if hard != resource.RLIM_INFINITY else 65536, 20000)
    env.rate, env.pending = 100000, 200
    env.tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(env.tmp, 0o755)
    return env


def tool_cleanup(env):
    """Ends a tool_env's load clients still running and removes its temp dir."""
    for ld in env.loads:
        if ld.p.poll() is None:
            stop_pid(ld.p.pid)
    shutil.rmtree(env.tmp, ignore_errors=True)


def wait_file(path, proc, timeout):
    """Waits until path exists (a load client's "ready" file); False when
    proc ended first or the time ran out."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def build(env):
    cc = ["gcc", "-O2", "-Wall", "-Wextra"]
    env.sseload = os.path.join(env.tmp, "sseload")
    env.ssepost = os.path.join(env.tmp, "ssepost")
    subprocess.run(cc + ["-o", env.sseload, os.path.join(HERE, "sseload.c")], check=True)
    subprocess.run(cc + ["-pthread", "-o", env.ssepost, os.path.join(HERE, "ssepost.c")],
                   check=True)
    if "nullfcgi" in env.systems:
        env.nullfcgi_bin = os.path.join(env.tmp, "nullfcgi")
        subprocess.run(cc + ["-o", env.nullfcgi_bin, os.path.join(HERE, "peers", "nullfcgi.c")], check=True)
    if "gohub" in env.systems:
        env.gohub_bin = os.path.join(env.tmp, "gohub")
        genv = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", CGO_ENABLED="0")
        if not os.environ.get("GOCACHE") and not os.environ.get("HOME"):
            genv["GOCACHE"] = os.path.join(tempfile.gettempdir(), "ssehub-bench-gocache")
        if not shutil.which("go"):
            env.notes.append("Go hub skipped: no `go` (apt-get install golang-go)")
            env.systems.remove("gohub")
        else:
            r = subprocess.run(["go", "build", "-o", env.gohub_bin, "."],
                               cwd=os.path.join(HERE, "peers", "gohub"), env=genv,
                               capture_output=True, text=True)
            if r.returncode != 0:
                env.notes.append("Go hub skipped: build failed: " + r.stderr[-300:])
                env.systems.remove("gohub")
    for name, prog, pkg in (("ssehub-lighttpd", "lighttpd", "lighttpd"), ("ssehub-apache", "apache2", "apache2")):
        if name in env.systems and not shutil.which(prog):
            env.notes.append("%s skipped: no %s (apt-get install %s)" % (LABEL[name], prog, pkg))
            env.systems.remove(name)
    if any(s in env.systems for s in NCHAN_SYSTEMS) and not os.path.exists(NCHAN_SO):
        env.notes.append("Nchan skipped: %s missing (apt-get install libnginx-mod-nchan)"
                         % NCHAN_SO)
        env.systems = [s for s in env.systems if s not in NCHAN_SYSTEMS]


def runs_at(env, system, scen, n):
    """Whether a system runs this scenario at N: (True, None), or (False,
    why) when its front server cannot hold the streams (a note for the
    report), or (False, None) when the system does not run the scenario at
    all (ONLY_SCENARIOS, TOPIC_SYSTEMS) or Apache not at this N (it runs at
    APACHE_DEFAULT_N, Debian's MPM as shipped, and at the N of --apache-n,
    its MPM sized for them)."""
    if scen in TOPIC_CASES:
        return system in TOPIC_SYSTEMS, None
    if scen not in ONLY_SCENARIOS.get(system, (scen,)):
        return False, None
    if FRONT[system] == "apache":
        return n in env.params["apache_ns"], None
    top = front_max_streams(system, env.nofile)
    held = env.params["churn_conc"] if scen == "churn" else n
    if top is not None and held > top:
        return False, "%s: no %s run at N = %s, more streams than %s holds here (%s, from %s fds)" % (
            LABEL[system], scen, fmt(held), FRONT[system], fmt(top), fmt(env.nofile))
    return True, None


def tokens(env, n):
    env.secret = os.path.join(env.tmp, "secret")
    with open(env.secret, "w") as f:
        f.write(os.urandom(32).hex())
    os.chmod(env.secret, 0o644)
    env.user_tokens = os.path.join(env.tmp, "users.tok")
    env.admin_file = os.path.join(env.tmp, "admin.tok")
    subprocess.run([PY, os.path.join(HERE, "mktokens.py"), "--secret-file", env.secret,
                    "-n", str(n), "--out", env.user_tokens, "--admin-out", env.admin_file],
                   check=True)
    env.admin_token = open(env.admin_file).read().strip()
    # the topics scenario's users: the same ids, with a claim allowing any topic
    env.topic_tokens = os.path.join(env.tmp, "topic-users.tok")
    subprocess.run([PY, os.path.join(HERE, "mktokens.py"), "--secret-file", env.secret,
                    "-n", str(n), "--out", env.topic_tokens, "--topic", "*",
                    "--admin-out", os.path.join(env.tmp, "admin-again.tok")], check=True)
    env.user_ids = os.path.join(env.tmp, "users.ids")
    with open(env.user_ids, "w") as f:
        for i in range(n):
            f.write("%d\n" % (i + 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="~2 minute smoke run (N = 200 and 1,000, one repetition)")
    ap.add_argument("--reps", type=int, help="repetitions (3; --quick 1)")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma list of %s (all)" % ",".join(SYSTEMS))
    ap.add_argument("--apache-n", default="",
                    help="comma list of N for ssehub-apache besides %d, the most Debian's "
                    "default MPM allows (the MPM is sized for each: %d threads per child, "
                    "as many children as needed)" % (APACHE_DEFAULT_N, APACHE_THREADS_PER_CHILD))
    ap.add_argument("--budget", type=float, help="seconds for the repeated scenarios "
                    "(full 900; more reps are skipped when the next would not fit)")
    ap.add_argument("--no-profile", action="store_true", help="skip callgrind and perf")
    ap.add_argument("--scenarios", default="fanout,targeted,topics,churn",
                    help="comma list of fanout,targeted,topics,churn (all)")
    ap.add_argument("--tgt-users", type=int, help="users (one stream each) of the targeted "
                    "scenario (full 10000, --quick 500; lighttpd runs it only when it holds them)")
    ap.add_argument("--topic-streams", type=int, help="streams of the topics scenario "
                    "(full 10000, --quick 1000)")
    ap.add_argument("--topic-msgs", type=int, help="topic publishes of its first case "
                    "(full 2000, --quick 500)")
    ap.add_argument("-n", "--streams", help="comma list of N for hold/fan-out "
                    "(full: 1000,5000,10000,max; --quick: 200,1000)")
    ap.add_argument("--out", help="directory for RESULTS.md, plots/ and results/ "
                    "(full run: bench/; --quick: a temp dir, printed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only render RESULTS.md and plots/ again from a results/*.json "
                    "(into --out, default the directory above results/)")
    a = ap.parse_args()
    if a.from_json:
        return from_json(a.from_json, os.path.abspath(a.out) if a.out else
                         os.path.dirname(os.path.dirname(os.path.abspath(a.from_json))))

    env = Env()
    env.quick = a.quick
    env.notes = []
    env.systems = [s for s in a.systems.split(",") if s]
    for s in env.systems:
        if s not in SYSTEMS:
            die("unknown system %r" % s)
    env.ssehub_bin = os.environ.get("SSEHUB_BIN") or os.path.join(ROOT, "src", "ssehub")
    env.ssehub_args = os.environ.get("SSEHUB_ARGS", "").split()
    # extra nginx directives for ssehub's location, e.g. "fastcgi_buffer_size 1k"
    env.ssehub_nginx_extra = [x for x in os.environ.get("SSEHUB_NGINX_EXTRA", "").split(";")
                              if x.strip()]
    if env.ssehub_args or env.ssehub_nginx_extra:
        env.notes.append("ssehub run with SSEHUB_ARGS=%r SSEHUB_NGINX_EXTRA=%r" % (
            " ".join(env.ssehub_args), ";".join(env.ssehub_nginx_extra)))
    if "ssehub" in env.systems and not os.access(env.ssehub_bin, os.X_OK):
        die("no ssehub binary at %s (make, or set SSEHUB_BIN)" % env.ssehub_bin)
    for t in ("nginx", "gcc"):
        if not shutil.which(t):
            die("%s not found" % t)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hard = hard if hard != resource.RLIM_INFINITY else 65536
    env.nofile = min(hard, 20000)
    # the most streams: each of the 2 nginx workers holds 2 connections per
    # stream (client + upstream) and starts closing fresh connections ("not
    # enough, reusing connections") once fewer than 1/16 of worker_connections
    # are free; keep ~500 streams of slack for reuseport's uneven split.
    nmax = max(1000, (env.nofile - env.nofile // 16 - 500) // 1000 * 1000)
    env.rate = 100000     # connects/s: no real cap; -P bounds the attempts in flight
    env.pending = 200
    if a.quick:
        P = dict(hold_ns=[200, 1000], fan_n=1000, fan_msgs=5, fan_interval=250,
                 tgt_users=500, tgt_msgs=2000, tgt_conns=16,
                 topic_n=1000, topic_groups=100, topic_msgs=500, topic_conns=16,
                 multi_topics=32, multi_msgs=320, one_msgs=5,
                 churn_cycles=1000, churn_conc=32, churn_warm=100)
        reps = a.reps or 1
        budget = a.budget or 80
    else:
        P = dict(hold_ns=[1000, 5000, 10000, nmax], fan_n=10000, fan_msgs=20,
                 fan_interval=250, tgt_users=10000, tgt_msgs=20000, tgt_conns=16,
                 topic_n=10000, topic_groups=100, topic_msgs=2000, topic_conns=16,
                 multi_topics=32, multi_msgs=3200, one_msgs=20,
                 churn_cycles=20000, churn_conc=64, churn_warm=1000)
        reps = a.reps or 3
        budget = a.budget or 900
    if a.streams:
        P["hold_ns"] = [nmax if x == "max" else int(x) for x in a.streams.split(",")]
        if P["fan_n"] not in P["hold_ns"]:
            P["fan_n"] = max(P["hold_ns"])
    P["apache_ns"] = sorted(set([APACHE_DEFAULT_N] + [int(x) for x in a.apache_n.split(",") if x]))
    if "ssehub-apache" in env.systems:
        # every system runs beside Apache at the N it can hold
        P["hold_ns"] += P["apache_ns"]
    P["hold_ns"] = sorted(set(P["hold_ns"]))
    if a.tgt_users:
        P["tgt_users"] = a.tgt_users
    if a.topic_streams:
        P["topic_n"] = a.topic_streams
    if a.topic_msgs:
        P["topic_msgs"] = a.topic_msgs
    env.scenarios = [x for x in a.scenarios.split(",") if x]
    env.params = P
    env.profile = not a.no_profile and not a.quick
    env.perf = shutil.which("perf") if env.profile else None
    env.perf_data = []

    if a.out:
        out_dir = os.path.abspath(a.out)
    elif a.quick:
        out_dir = tempfile.mkdtemp(prefix="ssehub-compare-quick.")
    else:
        out_dir = HERE
    os.makedirs(out_dir, exist_ok=True)
    env.tmp = tempfile.mkdtemp(prefix="ssehub-compare.")
    os.chmod(env.tmp, 0o755)
    env.loads = []

    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    rc = 0
    try:
        log("building sseload, ssepost%s; tokens for %d users" % (
            ", gohub" if "gohub" in env.systems else "",
            max(P["hold_ns"] + [P["tgt_users"], P["topic_n"]])))
        build(env)
        tokens(env, max(P["hold_ns"] + [P["tgt_users"], P["churn_conc"], P["topic_n"]]))
        env.info = machine_info()
        log("systems: %s; %d reps; N = %s; load average %.2f" % (
            ", ".join(env.systems), reps, P["hold_ns"], loadavg()))
        systems = {s: System(s, env) for s in env.systems}
        runs = []
        load_samples = []
        env.reps_done = 0
        t_reps = time.monotonic()
        for rep in range(reps):
            if rep > 0:
                per_rep = (time.monotonic() - t_reps) / rep
                if time.monotonic() - t_reps + per_rep > budget:
                    env.notes.append("stopped after %d of %d repetitions (time budget %.0f s)"
                                     % (rep, reps, budget))
                    log(env.notes[-1])
                    break
            plan = [("fanout", n) for n in P["hold_ns"]] + [("targeted", P["tgt_users"])] + [
                (c, P["topic_n"] if c != "topics-multi" else 1) for c in TOPIC_CASES] + [
                ("churn", P["churn_cycles"])]
            plan = [x for x in plan if x[0] in env.scenarios or
                    (x[0] in TOPIC_CASES and "topics" in env.scenarios)]
            for scen, n in plan:
                for s in env.systems:
                    sysm = systems[s]
                    ok, why = runs_at(env, s, scen, n)
                    if not ok:
                        if why and why not in env.notes:
                            env.notes.append(why)
                            log(why)
                        continue
                    load_samples.append(loadavg())
                    try:
                        if scen == "fanout":
                            r = scenario_fanout(env, sysm, n, P["fan_msgs"], P["fan_interval"])
                            log("rep %d %-8s N=%-6d %-6s open %d/%d in %ss, delivered %d/%d, "
                                "p50 %s p99 %s max %s ms, %s B/stream (back end %s), "
                                "other load %.2f" % (
                                    rep + 1, scen, n, s, r["open"], n, fmt(r["open_time_s"], 2),
                                    r["delivered"], r["expected"], fmt(r["lat_p50"], 1),
                                    fmt(r["lat_p99"], 1), fmt(r["lat_max"], 1),
                                    fmt(r.get("b_per_stream")), fmt(r.get("hub_b_per_stream")),
                                    r["other_cpu_s"] / r["wall_s"]))
                        elif scen in TOPIC_CASES:
                            r = run_topic_case(env, sysm, scen)
                            log("rep %d %-12s N=%-6d %-6s %s req/s, failed %d, delivered %d/%d, "
                                "p50 %s p99 %s ms, out of order %d" % (
                                    rep + 1, scen, n, s, fmt(r["req_per_s"]), r["pub_failed"],
                                    r["delivered"], r["expected"], fmt(r["lat_p50"], 1),
                                    fmt(r["lat_p99"], 1), r["seq_errors"]))
                        elif scen == "targeted":
                            r = scenario_targeted(env, sysm, n, P["tgt_msgs"], P["tgt_conns"])
                            log("rep %d %-8s N=%-6d %-6s %s req/s, failed %d, delivered %d/%d, "
                                "p99 %s ms" % (rep + 1, scen, n, s, fmt(r["req_per_s"]),
                                               r["pub_failed"], r["delivered"], r["expected"],
                                               fmt(r["lat_p99"], 1)))
                        else:
                            r = scenario_churn(env, sysm, n, P["churn_conc"], P["churn_warm"])
                            log("rep %d %-8s N=%-6d %-6s %s cycles/s, errors %d, rss %s→%s kB, "
                                "fds %d→%d, left %s" % (
                                    rep + 1, scen, n, s, fmt(r["cycles_per_s"]), r["errors"],
                                    fmt(r["rss_before_kb"]), fmt(r["rss_after_kb"]),
                                    r["fds_before"], r["fds_after"], r.get("clients_after")))
                    except RuntimeError as e:
                        log("rep %d %s %s: %s" % (rep + 1, scen, s, e))
                        env.notes.append("rep %d %s %s N=%d failed to run: %s" % (
                            rep + 1, scen, s, n, e))
                        continue
                    r["rep"] = rep + 1
                    runs.append(r)
            env.reps_done = rep + 1

        prof = {}
        cg = None
        if env.profile and "ssehub" in env.systems:
            if env.perf:
                log("perf: one extra ssehub fan-out run, N=%d" % P["fan_n"])
                r = scenario_fanout(env, systems["ssehub"], P["fan_n"], P["fan_msgs"],
                                    P["fan_interval"], perf=True)
                log("perf run: delivered %d/%d, p99 %s ms" % (
                    r["delivered"], r["expected"], fmt(r["lat_p99"], 1)))
                log("perf: one extra ssehub targeted run, %d users" % P["tgt_users"])
                r = scenario_targeted(env, systems["ssehub"], P["tgt_users"], P["tgt_msgs"],
                                      P["tgt_conns"], perf=True)
                log("perf run: %s req/s, delivered %d/%d" % (
                    fmt(r["req_per_s"]), r["delivered"], r["expected"]))
                prof["perf"] = []
                for tag, who, data in env.perf_data:
                    if os.path.exists(data):
                        title = "%s: %s" % (
                            "fan-out, N = %s" % fmt(P["fan_n"]) if tag == "fanout" else
                            "targeted (%s send-to-user over %d connections)" % (
                                fmt(P["tgt_msgs"]), P["tgt_conns"]),
                            "ssehub process" if who == "hub" else "nginx workers (ssehub setup)")
                        prof["perf"].append((title, perf_report(env, data, 25)))
                        prof.setdefault("perf_children", []).append(
                            (title, perf_callers(env, data, 40)))
            if shutil.which("valgrind") and shutil.which("callgrind_control"):
                cgn, cgm, ntg = 1000, P["fan_msgs"], 1000
                log("callgrind: ssehub with %d streams, %d broadcasts" % (cgn, cgm))
                c1 = run_callgrind(env, cgn, cgm, P["fan_interval"])
                log("callgrind: ssehub with %d streams, 0 broadcasts for %.1f s" % (
                    cgn, c1["window_s"]))
                c0 = run_callgrind(env, cgn, 0, P["fan_interval"], window_s=c1["window_s"])
                log("callgrind: ssehub with %d streams, %d send-to-user requests" % (cgn, ntg))
                ct = run_callgrind(env, cgn, 0, P["fan_interval"], targeted=ntg)
                log("callgrind: Ir %s (0), %s (%d broadcasts, %d delivered), %s (%d requests)" % (
                    c0["parts"], c1["parts"], cgm, c1["delivered"], ct["parts"], ntg))
                if all(c0["parts"]) and all(c1["parts"]) and c1["delivered"]:
                    cg = (c0, c1)
                    f0 = callgrind_functions(c0["window_file"])
                    f1 = callgrind_functions(c1["window_file"])
                    # the baseline window scaled to the same length (idle work)
                    k = c1["window_s"] / c0["window_s"] if c0["window_s"] else 1.0
                    tot = c1["window_ir"] - c0["window_ir"] * k
                    diff = sorted(((f1.get(x, 0) - f0.get(x, 0) * k, x) for x in set(f0) | set(f1)),
                                  reverse=True)
                    prof["callgrind_top"] = ["%10s %6s  %s" % ("Ir/msg", "share", "function")] + [
                        "%10.1f %5.1f%%  %s" % (d / c1["delivered"], 100.0 * d / tot, x)
                        for d, x in diff[:25] if d > 0]
                    k0 = callgrind_calls(c0["window_file"])
                    k1 = callgrind_calls(c1["window_file"])
                    prof["callgrind_calls"] = {x: (k1[x] - k0[x] * k) / c1["delivered"] for x in k1}
                    prof["callgrind_window_per_msg"] = tot / c1["delivered"]
                    prof["callgrind_total_per_msg"] = (
                        (c1["instructions"] - c0["instructions"]) / c1["delivered"])
                else:
                    env.notes.append("callgrind runs incomplete: %s / %s" % (
                        {x: v for x, v in c0.items() if x != "load"},
                        {x: v for x, v in c1.items() if x != "load"}))
                pub_ok = int(num(ct.get("pub", {}).get("ok"), 0))
                if all(c0["parts"]) and all(ct["parts"]) and pub_ok:
                    k = ct["window_s"] / c0["window_s"] if c0["window_s"] else 1.0
                    tot = ct["window_ir"] - c0["window_ir"] * k
                    prof["callgrind_targeted"] = {"requests": pub_ok, "delivered": ct["delivered"],
                                                  "window_ir": ct["window_ir"],
                                                  "window_s": ct["window_s"],
                                                  "per_request": tot / pub_ok}
                    f0 = callgrind_functions(c0["window_file"])
                    ft = callgrind_functions(ct["window_file"])
                    diff = sorted(((ft.get(x, 0) - f0.get(x, 0) * k, x) for x in set(f0) | set(ft)),
                                  reverse=True)
                    prof["callgrind_targeted_top"] = [
                        "%10s %6s  %s" % ("Ir/req", "share", "function")] + [
                        "%10.1f %5.1f%%  %s" % (d / pub_ok, 100.0 * d / tot, x)
                        for d, x in diff[:25] if d > 0]
            else:
                env.notes.append("callgrind skipped: no valgrind / callgrind_control")

        wall = time.monotonic() - T_START
        write_outputs(env, runs, cg, prof, out_dir, wall, load_samples)
        # exit status: ssehub's correctness in every run
        for r in runs:
            if r["system"] not in HUB_SYSTEMS:
                continue
            if r["scenario"] == "fanout" and (r["open"] != r["n"] or r["delivered"] != r["expected"]):
                rc = 1
            if r["scenario"] == "targeted" and (r["lost"] or r["pub_failed"]):
                rc = 1
            if r["scenario"] == "churn" and (r["errors"] or r.get("clients_after") != 0):
                rc = 1
            if r["scenario"] in TOPIC_CASES and (r["lost"] or r["pub_failed"] or r["open"] != r["n"]):
                rc = 1
        if not any(r["system"] == "ssehub" for r in runs) and "ssehub" in env.systems:
            rc = 1
        log("done in %.0f s, exit %d" % (time.monotonic() - T_START, rc))
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        for ld in env.loads:
            if ld.p.poll() is None:
                stop_pid(ld.p.pid, signal.SIGTERM, 5)
        if a.keep:
            log("kept %s" % env.tmp)
        else:
            shutil.rmtree(env.tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
