"""Redis for the backplane tests: a real redis-server (and redis-sentinel)
started in the test's directory on a unix socket or a free loopback port,
a small RESP client to look inside and to misbehave on purpose, and a TCP
proxy that can cut one node off Redis, or freeze only its subscriber (the
silent pub/sub failure)."""

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import ssehub_harness as h


def find_redis(name="redis-server"):
    return shutil.which(name) or (Path("/usr/bin") / name if (Path("/usr/bin") / name).exists() else None)


# --------------------------------------------------------------------------
# RESP


class RespError(Exception):
    pass


class Resp:
    """A blocking RESP2 client with a timeout (no pipelining needed here)."""

    def __init__(self, address, password=None, timeout=5.0):
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""
        if password:
            self.call("AUTH", password)

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError("bad reply %r" % line)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        self.send(*args)
        return self.read()


# --------------------------------------------------------------------------
# servers


class RedisServer:
    """redis-server in workdir: a unix socket always, a TCP port when tcp
    (Sentinel and replicas need one). No persistence unless asked."""

    def __init__(self, workdir, name="redis", tcp=False, password=None, replica_of=None, persist=False):
        self.workdir = Path(workdir)
        self.name = name
        self.dir = self.workdir / name
        self.dir.mkdir(exist_ok=True)
        self.unix = str(self.dir / "redis.sock")
        self.port = h.free_port() if tcp else 0
        self.password = password
        conf = [
            "port %d" % self.port, "bind 127.0.0.1", "unixsocket %s" % self.unix, "unixsocketperm 700",
            "dir %s" % self.dir, "daemonize no", "loglevel notice", "logfile %s" % (self.dir / "redis.log"),
            "save \"\"", "appendonly %s" % ("yes" if persist else "no"), "protected-mode no",
        ]
        if password:
            conf += ["requirepass %s" % password, "masterauth %s" % password]
        if replica_of:
            conf.append("replicaof 127.0.0.1 %d" % replica_of.port)
        self.conf = self.dir / "redis.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([str(find_redis()), str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h.wait_until(self._ready, 10, message="%s to answer PING" % self.name)
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited: %s" % (self.name, h.tail(self.dir / "redis.log")))
        try:
            c = self.client(timeout=0.5)
            ok = c.call("PING") == "PONG"
            c.close()
            return ok
        except (OSError, RespError, ConnectionError):
            return False

    def client(self, timeout=5.0):
        return Resp(self.unix, self.password, timeout)

    def call(self, *args):
        c = self.client()
        try:
            return c.call(*args)
        finally:
            c.close()

    @property
    def url(self):
        return "unix:%s" % self.unix

    @property
    def tcp_url(self):
        return "redis://127.0.0.1:%d" % self.port

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_files(self):
        return [self.dir / "redis.log"]


class Sentinel:
    def __init__(self, workdir, name, master, master_name="ssehub-m", quorum=2):
        self.dir = Path(workdir) / name
        self.dir.mkdir(exist_ok=True)
        self.port = h.free_port()
        self.name = name
        conf = ["port %d" % self.port, "bind 127.0.0.1", "dir %s" % self.dir, "daemonize no",
                "logfile %s" % (self.dir / "sentinel.log"), "protected-mode no",
                "sentinel monitor %s 127.0.0.1 %d %d" % (master_name, master.port, quorum),
                "sentinel down-after-milliseconds %s 1000" % master_name,
                "sentinel failover-timeout %s 4000" % master_name,
                "sentinel parallel-syncs %s 1" % master_name]
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([str(find_redis("redis-sentinel") or find_redis()), str(self.conf)] +
                                     ([] if find_redis("redis-sentinel") else ["--sentinel"]),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h.wait_until(self._ready, 10, message="%s to answer" % name)

    def _ready(self):
        try:
            c = Resp(("127.0.0.1", self.port), timeout=0.5)
            ok = c.call("PING") == "PONG"
            c.close()
            return ok
        except (OSError, RespError, ConnectionError):
            return False

    def master(self, name="ssehub-m"):
        c = Resp(("127.0.0.1", self.port))
        try:
            return c.call("SENTINEL", "get-master-addr-by-name", name)
        finally:
            c.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log_files(self):
        return [self.dir / "sentinel.log"]


# --------------------------------------------------------------------------
# a proxy to cut one node off


class TcpProxy:
    """Forwards 127.0.0.1:port to a unix socket (or TCP port) of Redis.
    cut(): closes every connection and refuses new ones (a partition);
    freeze_subscribers(): stops forwarding what Redis sends to connections
    that subscribed, without closing them (a subscription that silently
    stops delivering)."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.down = False
        self.frozen = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _connect_target(self):
        if isinstance(self.target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(self.target)
        return s

    def _run(self):
        while not self.stopping:
            with self.lock:
                socks = [self.lsock] + [s for p in self.pairs for s in p[:2]]
            r, _, _ = select.select(socks, [], [], 0.05)
            for s in r:
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    if self.down:
                        c.close()
                        continue
                    try:
                        t = self._connect_target()
                    except OSError:
                        c.close()
                        continue
                    with self.lock:
                        self.pairs.append([c, t, False])
                    continue
                with self.lock:
                    pair = next((p for p in self.pairs if s in p[:2]), None)
                if pair is None:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(pair)
                    continue
                if s is pair[0]:
                    if b"SUBSCRIBE" in data.upper():
                        pair[2] = True
                    pair[1].sendall(data)
                elif not (self.frozen and pair[2]):
                    try:
                        pair[0].sendall(data)
                    except OSError:
                        self._drop(pair)

    def _drop(self, pair):
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        for s in pair[:2]:
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            pairs = list(self.pairs)
        for p in pairs:
            self._drop(p)

    def restore(self):
        self.down = False
        self.frozen = False

    def freeze_subscribers(self):
        self.frozen = True

    def stop(self):
        self.stopping = True
        self.cut()
        self.thread.join(2)
        self.lsock.close()
