"""Shared helpers for the ssehub integration tests.

Everything here is plain Python (no pytest import) so the fixtures in
conftest.py stay thin:

* ManagedProcess  - a child process with its output in a log file, stopped
                    with a signal and a bounded wait.
* Hub             - one ssehub process (command line built from options).
* NginxFront / LighttpdFront / ApacheFront - a real front server in a
                    private prefix, running the shipped example config
                    (frontconf.py).
* Procs           - owns every process a test starts and cleans them up.
* Tokens          - HS256 tokens minted with PyJWT.
* http_call       - one HTTP request (http.client), JSON decoded.
* SSEParser / SSEStream - an incremental WHATWG event-stream parser and a
                    raw-socket HTTP/1.1 client (chunked decoding) on top of it.
* Stack           - hub + front + tokens with the API shortcuts tests use.

Talking FastCGI straight to ssehub (no front) is fcgi_client.py's job.
Every socket read and every wait has a timeout.
"""

import codecs
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import deque
from pathlib import Path

import jwt

import frontconf
from fcgi_client import connect_to, listen_target

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

DEFAULT_TIMEOUT = 5.0
HOST = "127.0.0.1"
SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


# --------------------------------------------------------------------------
# locating programs


def ssehub_binary():
    """SSEHUB_BIN (relative paths are taken from the repo root) or src/ssehub."""
    value = os.environ.get("SSEHUB_BIN", "src/ssehub")
    path = Path(value)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def find_program(name, extra_dirs=("/usr/sbin", "/sbin", "/usr/local/sbin")):
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host=HOST):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.02, message="condition"):
    """Polls predicate() until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, message, last))
        time.sleep(interval)


def tail(path, limit=6000):
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return "<unreadable: %s>" % exc
    text = data[-limit:].decode("utf-8", "replace")
    if len(data) > limit:
        text = "...[%d bytes cut]...\n%s" % (len(data) - limit, text)
    return text


# --------------------------------------------------------------------------
# processes


class ManagedProcess:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, argv, log_path, name, stdin=subprocess.DEVNULL, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.name = name
        self.returncode = None
        log = open(self.log_path, "ab")
        try:
            log.write(("$ %s\n" % " ".join(self.argv)).encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=log, stderr=log,
                                         cwd=cwd, env=env, start_new_session=True)
        finally:
            log.close()
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """Exit code, or None if still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_TIMEOUT):
        """Sends sig and waits. Returns the exit code, or None when it had to
        be killed (SIGKILL) because it did not stop in time."""
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            return None
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=DEFAULT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def can_connect(listen):
    try:
        connect_to(listen, timeout=0.5).close()
        return True
    except OSError:
        return False


def nginx_upstream(listen):
    """The fastcgi_pass argument for a --listen value."""
    kind, addr = listen_target(listen)
    if kind == "unix":
        return "unix:" + addr
    host, port = addr
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class Hub:
    """One ssehub process.

    With defaults=True the command line starts with
    --listen LISTEN --socket-mode 0666 --jwt-secret-file F --log-level debug
    --shutdown-spread 0, followed by extra_args. With defaults=False only
    extra_args are passed (start-up error tests, config files)."""

    def __init__(self, binary, workdir, name="ssehub", listen=None, secret_file=None,
                 extra_args=(), defaults=True, stdin=subprocess.DEVNULL, argv_prefix=()):
        self.workdir = Path(workdir)
        self.name = name
        self.listen = listen if listen is not None else "unix:%s" % (self.workdir / ("%s.sock" % name))
        args = []
        if defaults:
            args += ["--listen", self.listen, "--socket-mode", "0666"]
            if secret_file:
                args += ["--jwt-secret-file", str(secret_file)]
            args += ["--log-level", "debug", "--shutdown-spread", "0"]
        args += [str(a) for a in extra_args]
        self.argv = list(argv_prefix) + [str(binary)] + args
        self.log_path = self.workdir / ("%s.log" % name)
        self.process = ManagedProcess(self.argv, self.log_path, name, stdin=stdin)

    @property
    def pid(self):
        return self.process.pid

    @property
    def socket_path(self):
        kind, addr = listen_target(self.listen)
        return Path(addr) if kind == "unix" else None

    @property
    def upstream(self):
        return nginx_upstream(self.listen)

    def wait_listening(self, timeout=DEFAULT_TIMEOUT):
        def ready():
            if not self.process.alive():
                raise AssertionError("%s exited early with %r:\n%s" % (
                    self.name, self.process.proc.returncode, tail(self.log_path)))
            return can_connect(self.listen)
        wait_until(ready, timeout, message="%s to accept on %s" % (self.name, self.listen))
        return self

    def stop(self, timeout=DEFAULT_TIMEOUT, sig=signal.SIGTERM):
        return self.process.stop(sig, timeout)

    def log(self):
        return self.process.log()


class FrontServer:
    kind = "?"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.host = HOST
        self.process = None
        self.logs = []
        self.watch = []   # other processes whose death means "not going to be ready"

    def wait_ready(self, path="/api/sse/health", timeout=10.0):
        last = []

        def ready():
            if not self.process.alive():
                raise AssertionError("%s exited early (%r):\n%s" % (
                    self.kind, self.process.proc.returncode, self.describe_logs()))
            for p in self.watch:
                if not p.alive():
                    raise AssertionError("%s exited early (%r):\n%s" % (
                        p.name, p.proc.returncode, tail(p.log_path)))
            try:
                r = http_call(self, "GET", path, timeout=2)
            except OSError as exc:
                last[:] = [repr(exc)]
                return False
            last[:] = [r.status, r.body[:200]]
            return r.status == 200 and isinstance(r.json, dict) and r.json.get("success") is True

        try:
            wait_until(ready, timeout, interval=0.05, message="%s to answer GET %s" % (self.kind, path))
        except AssertionError as exc:
            raise AssertionError("%s (last answer: %r)\n%s" % (exc, last, self.describe_logs())) from None
        return self

    def describe_logs(self):
        return "\n".join("--- %s ---\n%s" % (p, tail(p, 3000)) for p in self.logs)

    def stop(self, timeout=DEFAULT_TIMEOUT):
        if self.process is None:
            return None
        return self.process.stop(signal.SIGTERM, timeout)


class NginxFront(FrontServer):
    """nginx running examples/nginx/ssehub.conf as users copy it (rendered by
    frontconf: this port, the hub's socket, an empty document root), with
    the private prefix, logs and worker sizes around it."""

    kind = "nginx"

    def __init__(self, workdir, upstream, name="nginx", token_cookie="token", worker_connections=1024,
                 rlimit_nofile=None, main_extra=(), http_extra=()):
        """upstream: fastcgi_pass syntax; token_cookie: the hub's
        --token-cookie (the one cookie the example passes on for streams);
        main_extra / http_extra: directives (without ';') around the example."""
        super().__init__(workdir)
        self.prefix = self.workdir / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.error_log = self.prefix / "error.log"
        self.access_log = self.prefix / "access.log"
        self.logs = [self.error_log]
        site = frontconf.nginx_site(upstream, "%s:%d" % (self.host, self.port), self.prefix / "htdocs",
                                    token_cookie=token_cookie)
        (self.prefix / "htdocs").mkdir(exist_ok=True)
        self.conf = frontconf.write_nginx(self.prefix, site, worker_connections=worker_connections,
                                          rlimit_nofile=rlimit_nofile,
                                          user="root" if os.geteuid() == 0 else None,
                                          main_extra=main_extra, http_extra=http_extra)

    def start(self):
        nginx = find_program("nginx")
        self.process = ManagedProcess([nginx, "-e", self.error_log, "-p", str(self.prefix) + "/",
                                       "-c", self.conf], self.prefix / "stdout.log", "nginx")
        self.logs.append(self.prefix / "stdout.log")
        return self


class LighttpdFront(FrontServer):
    """lighttpd running examples/lighttpd/ssehub.conf (rendered by
    frontconf): variant B with an external FastCGI socket (socket=...) or
    variant A spawning ssehub itself (bin_path=...; the socket is then
    lighttpd's own). extra: lines after it (e.g. larger header limits)."""

    kind = "lighttpd"

    def __init__(self, workdir, socket_path=None, bin_path=None, name="lighttpd", extra=()):
        super().__init__(workdir)
        self.prefix = self.workdir / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.error_log = self.prefix / "error.log"
        self.logs = [self.error_log]
        if bin_path:
            self.kind = "lighttpd-binpath"
            site = frontconf.lighttpd_site(self.prefix / "spawn.sock", bin_path)
        else:
            site = frontconf.lighttpd_site(socket_path)
        self.conf = frontconf.write_lighttpd(self.prefix, self.host, self.port, site, extra)

    def start(self):
        lighttpd = find_program("lighttpd")
        self.process = ManagedProcess([lighttpd, "-D", "-f", self.conf], self.prefix / "stdout.log", "lighttpd")
        self.logs.append(self.prefix / "stdout.log")
        return self


class ApacheFront(FrontServer):
    """Debian's apache2 (event MPM, mod_proxy_fcgi) running
    examples/apache/ssehub.conf (rendered by frontconf) inside a private,
    self-contained main configuration: its own ServerRoot, pid file and
    logs, never the system service. mpm: MPM directives over Debian's
    mpm_event.conf defaults (MaxRequestWorkers 150); extra: main-config
    lines before the example."""

    kind = "apache"

    def __init__(self, workdir, socket_path, name="apache", token_cookie="token", mpm=None, extra=()):
        super().__init__(workdir)
        self.prefix = self.workdir / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.error_log = self.prefix / "error.log"
        self.logs = [self.error_log, self.prefix / "ssehub-error.log"]
        user = None
        if os.geteuid() == 0:
            # Apache will not run its workers as root: they run as www-data,
            # which must reach the hub's socket through the test directory
            # (traverse only; the socket itself is 0666 in the tests).
            user = "www-data"
            for d in (self.workdir, self.prefix):
                d.chmod(d.stat().st_mode | 0o711)
        site = frontconf.apache_site(socket_path, "%s:%d" % (self.host, self.port), self.prefix / "htdocs",
                                     token_cookie=token_cookie)
        self.conf = frontconf.write_apache(self.prefix, site, "%s:%d" % (self.host, self.port), user=user,
                                           mpm=mpm, log_level="info", extra=extra)

    def start(self):
        apache2 = find_program("apache2")
        self.process = ManagedProcess([apache2, "-f", self.conf, "-k", "start", "-DFOREGROUND"],
                                      self.prefix / "stdout.log", "apache2")
        self.logs.append(self.prefix / "stdout.log")
        return self


FRONT_PROGRAMS = {"nginx": "nginx", "lighttpd": "lighttpd", "apache": "apache2"}


class Procs:
    """Starts processes for one test (or one module) and cleans them all up."""

    def __init__(self, workdir, binary, secret_file=None):
        self.workdir = Path(workdir)
        self.binary = binary
        self.secret_file = secret_file
        self.hubs = []
        self.fronts = []
        self.others = []

    # ssehub
    def hub(self, name=None, wait=True, **kw):
        name = name or "ssehub%d" % len(self.hubs)
        kw.setdefault("secret_file", self.secret_file)
        h = Hub(self.binary, self.workdir, name=name, **kw)
        self.hubs.append(h)
        if wait:
            h.wait_listening()
        return h

    def run_hub(self, args, timeout=DEFAULT_TIMEOUT, stdin=subprocess.DEVNULL):
        """Runs ssehub to completion (start-up errors, --help). Returns
        CompletedProcess with text stdout/stderr."""
        try:
            return subprocess.run([str(self.binary)] + [str(a) for a in args], stdin=stdin,
                                  capture_output=True, timeout=timeout, text=True, errors="replace")
        except subprocess.TimeoutExpired as exc:
            raise AssertionError("ssehub %s did not exit within %ss (stderr so far: %r)" % (
                args, timeout, exc.stderr)) from None

    # front servers
    def front(self, kind, hub=None, upstream=None, wait=True):
        """kind: nginx | lighttpd | apache. upstream: nginx fastcgi_pass
        syntax, from hub by default, or a list of them (the nodes of a
        cluster; nginx and lighttpd). lighttpd and apache: unix: only."""
        upstream = upstream or hub.upstream
        nodes = upstream if isinstance(upstream, list) else [upstream]
        if kind != "nginx" and not all(u.startswith("unix:") for u in nodes):
            raise ValueError("%s front only wired for unix sockets here" % kind)
        name = "%s%d" % (kind, len(self.fronts))
        if kind == "nginx":
            f = NginxFront(self.workdir, upstream, name=name)
        elif kind == "lighttpd":
            paths = [u[5:] for u in nodes]
            f = LighttpdFront(self.workdir, socket_path=paths if isinstance(upstream, list) else paths[0], name=name)
        elif kind == "apache":
            if isinstance(upstream, list):
                raise ValueError("apache front: one hub only (the example has no balancer)")
            f = ApacheFront(self.workdir, upstream[5:], name=name)
        else:
            raise ValueError(kind)
        if hub is not None:
            f.watch.append(hub.process)
        self.fronts.append(f)
        f.start()
        if wait:
            f.wait_ready()
        return f

    def lighttpd_binpath(self, hub_args, wait=True, name="binpath"):
        """lighttpd spawning ssehub (socket on fd 0) through a wrapper that
        sends ssehub's stderr to our own log file. Returns the front; the
        hub's log is front.hub_log and its pid file front.hub_pid_file."""
        log = self.workdir / ("%s-ssehub.log" % name)
        pid_file = self.workdir / ("%s-ssehub.pid" % name)
        wrapper = self.workdir / ("%s-wrapper.sh" % name)
        # the example hands ssehub only PATH and TZ (bin-copy-environment):
        # the wrapper restores the sanitizer settings of a sanitizer run
        env = "".join("export %s='%s'\n" % (k, os.environ[k]) for k in SANITIZER_ENV if k in os.environ)
        wrapper.write_text('#!/bin/sh\n%sexec "%s" "$@" 2>>"%s"\n' % (env, self.binary, log))
        wrapper.chmod(0o755)
        args = ["--pid-file", str(pid_file)] + [str(a) for a in hub_args]
        for a in args:
            if not a or any(c.isspace() or c in '"\\' for c in a):
                raise ValueError("bin-path arguments cannot contain spaces or quotes: %r" % a)
        f = LighttpdFront(self.workdir, bin_path=" ".join([str(wrapper)] + args),
                          name="lighttpd%d" % len(self.fronts))
        f.hub_log = log
        f.hub_pid_file = pid_file
        f.logs.append(log)
        self.fronts.append(f)
        f.start()
        if wait:
            f.wait_ready()
        return f

    def other(self, argv, name, stdin=subprocess.DEVNULL):
        p = ManagedProcess(argv, self.workdir / ("%s.log" % name), name, stdin=stdin)
        self.others.append(p)
        return p

    def log_files(self):
        files = [h.log_path for h in self.hubs]
        for f in self.fronts:
            files += f.logs
        files += [p.log_path for p in self.others]
        return files

    def cleanup(self):
        for h in self.hubs:
            h.process.stop(signal.SIGTERM, DEFAULT_TIMEOUT)
        for p in self.others:
            p.stop(signal.SIGTERM, DEFAULT_TIMEOUT)
        for f in self.fronts:
            f.stop()


# --------------------------------------------------------------------------
# tokens


def write_secret(path):
    """Writes a random HS256 secret with one trailing newline (which ssehub
    must ignore). Returns the key bytes."""
    key = secrets.token_hex(32).encode()
    Path(path).write_bytes(key + b"\n")
    os.chmod(path, 0o600)
    return key


class Tokens:
    def __init__(self, key):
        self.key = key

    def make(self, user_id=None, admin=False, exp_in=3600, key=None, alg="HS256", **claims):
        now = int(time.time())
        payload = {"iat": now, "exp": now + exp_in}
        if user_id is not None:
            payload["user_id"] = user_id
        if admin:
            payload["role"] = "admin"
        payload.update(claims)
        if exp_in is None:
            payload.pop("exp")
        token = jwt.encode(payload, self.key if key is None else key, algorithm=alg)
        return token.decode() if isinstance(token, bytes) else token

    def user(self, user_id, **kw):
        return self.make(user_id, **kw)

    def admin(self, user_id="admin", **kw):
        return self.make(user_id, admin=True, **kw)


# --------------------------------------------------------------------------
# plain HTTP


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers          # http.client.HTTPMessage (case-insensitive)
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def header(self, name):
        return self.headers.get(name)

    @property
    def data(self):
        return (self.json or {}).get("data")

    @property
    def error_code(self):
        err = (self.json or {}).get("error")
        return err.get("code") if isinstance(err, dict) else None

    def __repr__(self):
        return "<Response %s %r>" % (self.status, self.body[:300])


def http_call(front, method, path, body=None, token=None, headers=None, timeout=DEFAULT_TIMEOUT):
    """One request on a fresh connection. body: dict/list -> JSON, str/bytes -> raw."""
    import http.client
    h = {"Connection": "close"}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    elif isinstance(body, (str, bytes)):
        # raw bodies are JSON too (the admin POST routes require the type);
        # a test that means another type passes it in headers
        body = body.encode() if isinstance(body, str) else body
        h["Content-Type"] = "application/json"
    if headers:
        h.update(headers)
    conn = http.client.HTTPConnection(front.host, front.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.msg, data)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Server-sent events


class Block:
    """What one blank-line-terminated group of lines produced.

    fields: [(name, value)] in order, comments: [text], id: value of an id
    field in this block (None if there was none), retry: int from a valid
    retry field in this block, dispatched: whether an event was dispatched
    (WHATWG: only when the data buffer is not empty), type/data/last_event_id:
    the dispatched event's type, data and lastEventId."""

    def __init__(self):
        self.fields = []
        self.comments = []
        self.id = None
        self.retry = None
        self.dispatched = False
        self.type = None
        self.data = None
        self.last_event_id = ""

    def field_names(self):
        return [n for n, _ in self.fields]

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        if self.dispatched:
            return "<event %r id=%r data=%r>" % (self.type, self.id, self.data[:200])
        return "<block fields=%r comments=%r>" % (self.fields, self.comments)


class SSEParser:
    """Incremental parser following WHATWG HTML 9.2.6 (event stream
    interpretation). feed() bytes in any pieces; complete blocks appear in
    self.blocks (a deque)."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._first = True
        self._skip_lf = False
        self._block = Block()
        self._data = ""
        self._type = ""
        self.last_event_id = ""
        self.reconnection_time = None
        self.blocks = deque()

    def feed(self, data):
        text = self._decoder.decode(data)
        if self._first and text:
            if text.startswith("\ufeff"):
                text = text[1:]
            self._first = False
        self._buf += text
        while self._buf:
            if self._skip_lf:
                self._skip_lf = False
                if self._buf[0] == "\n":
                    self._buf = self._buf[1:]
                    continue
            m = re.search(r"[\r\n]", self._buf)
            if not m:
                break
            line = self._buf[:m.start()]
            self._skip_lf = self._buf[m.start()] == "\r"
            self._buf = self._buf[m.end():]
            self._line(line)

    def _line(self, line):
        b = self._block
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            b.comments.append(line[1:])
            return
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        b.fields.append((name, value))
        if name == "event":
            self._type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            b.id = value
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value and all(c in "0123456789" for c in value):
                b.retry = int(value)
                self.reconnection_time = b.retry

    def _dispatch(self):
        b = self._block
        self._block = Block()
        if self._data:
            b.dispatched = True
            b.type = self._type or "message"
            b.data = self._data[:-1] if self._data.endswith("\n") else self._data
        b.last_event_id = self.last_event_id
        self._data = ""
        self._type = ""
        if b.fields or b.comments or b.dispatched:
            self.blocks.append(b)


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer decoding, incremental. done is True once
    the last-chunk and trailer section have been read."""

    def __init__(self):
        self._buf = b""
        self._state = "size"
        self._left = 0
        self.done = False

    def feed(self, data):
        self._buf += data
        out = []
        while not self.done:
            if self._state == "size":
                i = self._buf.find(b"\r\n")
                if i < 0:
                    break
                size_text = self._buf[:i].split(b";", 1)[0].strip()
                self._buf = self._buf[i + 2:]
                try:
                    self._left = int(size_text, 16)
                except ValueError:
                    raise ValueError("bad chunk size line %r" % size_text)
                self._state = "data" if self._left else "trailer"
            elif self._state == "data":
                if not self._buf:
                    break
                piece = self._buf[:self._left]
                self._buf = self._buf[len(piece):]
                self._left -= len(piece)
                out.append(piece)
                if self._left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF: %r" % self._buf[:10])
                self._buf = self._buf[2:]
                self._state = "size"
            elif self._state == "trailer":
                i = self._buf.find(b"\r\n")
                if i < 0:
                    break
                line = self._buf[:i]
                self._buf = self._buf[i + 2:]
                if line == b"":
                    self.done = True
        return b"".join(out)


class StreamEnded(Exception):
    pass


class SSEStream:
    """GET an event stream over a raw socket (HTTP/1.1, keep-alive like a
    browser, so the front uses chunked encoding and the end of a response
    is visible as the last-chunk)."""

    def __init__(self, host, port, path="/sse/stream", token=None, cookie=None,
                 headers=None, timeout=DEFAULT_TIMEOUT):
        self.host, self.port, self.path = host, port, path
        self.timeout = timeout
        self.parser = SSEParser()
        self.status = None
        self.reason = None
        self.headers = {}
        self.header_list = []
        self.body = b""
        self.json = None
        self.eof = False
        self.reset = False
        self.framing = None        # chunked | length | close
        self.clean_end = False     # response ended as the framing says
        self.raw = bytearray()     # every decoded body byte (debugging)
        self.client_id = None
        self.connected = None
        self._chunked = None
        self._length_left = None
        self.sock = socket.create_connection((host, port), timeout=timeout)
        req = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
               "Accept: text/event-stream", "Cache-Control: no-cache", "User-Agent: ssehub-it"]
        if token is not None:
            req.append("Authorization: Bearer %s" % token)
        if cookie is not None:
            req.append("Cookie: %s" % cookie)
        for k, v in (headers or {}).items():
            req.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        self._read_head(time.monotonic() + timeout)
        if not self.is_event_stream():
            self.body = self._read_all(time.monotonic() + timeout)
            try:
                self.json = json.loads(self.body.decode())
            except (ValueError, UnicodeDecodeError):
                self.json = None

    # ---- HTTP layer

    def header(self, name):
        return self.headers.get(name.lower())

    def is_event_stream(self):
        return self.status == 200 and (self.header("content-type") or "").startswith("text/event-stream")

    def _recv(self, deadline):
        """One recv bounded by deadline. Returns bytes, b'' on EOF, None on timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            self.reset = True
            self.eof = True
            return b""
        if not data:
            self.eof = True
        return data

    def _read_head(self, deadline):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = self._recv(deadline)
            if data is None:
                raise AssertionError("no response head within %ss from %s%s (got %r)" % (
                    self.timeout, self.host, self.path, buf))
            if not data:
                raise AssertionError("connection closed before the response head (got %r)" % buf)
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        m = re.match(r"HTTP/\d\.\d (\d{3}) ?(.*)", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        self.status, self.reason = int(m.group(1)), m.group(2)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.header_list.append((name.strip(), value.strip()))
            self.headers[name.strip().lower()] = value.strip()
        te = self.header("transfer-encoding") or ""
        if "chunked" in te.lower():
            self.framing = "chunked"
            self._chunked = ChunkedDecoder()
        elif self.header("content-length") is not None:
            self.framing = "length"
            self._length_left = int(self.header("content-length"))
        else:
            self.framing = "close"
        self._body_bytes(rest)

    def _body_bytes(self, data):
        """Decodes transfer framing; returns the body bytes in data."""
        if self.framing == "chunked":
            out = self._chunked.feed(data)
            if self._chunked.done:
                self.clean_end = True
        elif self.framing == "length":
            out = data[:self._length_left]
            self._length_left -= len(out)
            if self._length_left == 0:
                self.clean_end = True
        else:
            out = data
        self.raw += out
        if self.is_event_stream():
            self.parser.feed(out)
        return out

    def _finished(self):
        return self.clean_end or self.eof

    def _read_all(self, deadline):
        body = bytes(self.raw)
        while not self._finished():
            data = self._recv(deadline)
            if data is None:
                raise AssertionError("response body not complete within %ss: %r" % (self.timeout, body[:300]))
            if not data:
                break
            body += self._body_bytes(data)
        return body

    # ---- events

    def next_block(self, timeout=DEFAULT_TIMEOUT):
        """Next complete block (dispatched event or not); None on timeout;
        raises StreamEnded when the response ended first."""
        deadline = time.monotonic() + timeout
        while not self.parser.blocks:
            if self._finished():
                raise StreamEnded("stream ended (clean=%s reset=%s eof=%s)" % (
                    self.clean_end, self.reset, self.eof))
            data = self._recv(deadline)
            if data is None:
                return None
            if data:
                self._body_bytes(data)
        return self.parser.blocks.popleft()

    def next_event(self, timeout=DEFAULT_TIMEOUT, skip=("ping",)):
        """Next dispatched event whose type is not in skip; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.next_block(max(0.0, deadline - time.monotonic()))
            if b is None:
                return None
            if b.dispatched and b.type not in skip:
                return b

    def wait_event(self, name, timeout=DEFAULT_TIMEOUT):
        """Reads until an event of type name and returns it; AssertionError
        on timeout or when the stream ends first."""
        return self.blocks_until(name, timeout)[-1]

    def blocks_until(self, name, timeout=DEFAULT_TIMEOUT):
        """Every block up to and including the first event named name;
        AssertionError on timeout or when the stream ends first."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                b = self.next_block(max(0.0, deadline - time.monotonic()))
            except StreamEnded as exc:
                raise AssertionError("stream ended before event %r (%s); seen %r" % (name, exc, got))
            if b is None:
                raise AssertionError("no event %r within %ss; seen %r" % (name, timeout, got))
            got.append(b)
            if b.dispatched and b.type == name:
                return got

    def first_retry(self, timeout=3.0):
        """The first retry value set before or with the connected event."""
        retries = [b.retry for b in self.blocks_until("connected", timeout) if b.retry is not None]
        return retries[0] if retries else None

    def events_during(self, seconds):
        """Every dispatched event received during the next `seconds`."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                b = self.next_block(left)
            except StreamEnded:
                return got
            if b is None:
                return got
            if b.dispatched:
                got.append(b)

    def read_to_end(self, timeout=DEFAULT_TIMEOUT):
        """Reads until the response ends. Returns the blocks read on the way.
        Check .clean_end / .reset / .eof afterwards; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                b = self.next_block(max(0.0, deadline - time.monotonic()))
            except StreamEnded:
                return got
            if b is None:
                raise AssertionError("stream still open after %ss (seen %r)" % (timeout, got))
            got.append(b)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# a hub behind a front, with the API shortcuts


class Stack:
    def __init__(self, front, tokens, hub=None):
        self.front = front
        self.hub = hub
        self.tokens = tokens
        self.admin_token = tokens.admin()
        self.streams = []

    @property
    def host(self):
        return self.front.host

    @property
    def port(self):
        return self.front.port

    def request(self, method, path, body=None, token="admin", **kw):
        """token='admin' (default) uses an admin token; None sends none."""
        if token == "admin":
            token = self.admin_token
        return http_call(self.front, method, path, body=body, token=token, **kw)

    def post(self, path, body, token="admin", **kw):
        return self.request("POST", path, body=body, token=token, **kw)

    def publish(self, route, **body):
        """POST /api/sse/<route> with an admin token; asserts success and
        returns the data object ({"id", "recipients"})."""
        r = self.post("/api/sse/" + route, body)
        assert r.status == 200, "%s %s -> %r" % (route, body, r)
        assert r.json.get("success") is True, r
        return r.data

    def broadcast(self, event, data, **kw):
        return self.publish("broadcast", event=event, data=data, **kw)

    def stats(self):
        r = self.request("GET", "/api/sse/stats")
        assert r.status == 200, "stats -> %r" % r
        return r.data

    def open_stream(self, user_id=None, token=None, wait_connected=True, path="/sse/stream", **kw):
        """Opens GET /sse/stream (token from user_id unless given). With
        wait_connected, asserts a 200 event stream and reads up to and
        including the connected event (stored in .connected, .client_id)."""
        if token is None and user_id is not None:
            token = self.tokens.user(user_id)
        s = SSEStream(self.host, self.port, path=path, token=token, **kw)
        self.streams.append(s)
        if wait_connected:
            assert s.status == 200, "stream for %r: %s %r" % (user_id, s.status, s.body[:300])
            assert s.is_event_stream(), "not an event stream: %r" % (s.header_list,)
            ev = s.wait_event("connected")
            s.connected = ev
            s.client_id = ev.json()["client_id"]
        return s

    def check_marker(self, streams, timeout=3.0):
        """Broadcasts a unique marker; the next non-ping event on every stream
        must be that marker (proves nothing else was delivered before it)."""
        marker = "marker-%s" % uuid.uuid4()
        self.broadcast("marker", {"marker": marker})
        for s in streams:
            ev = s.next_event(timeout)
            assert ev is not None, "marker not delivered to client %s" % s.client_id
            assert (ev.type, ev.json()) == ("marker", {"marker": marker}), (
                "client %s got an unexpected event before the marker: %r" % (s.client_id, ev))
        return marker

    def wait_stats(self, expected, timeout=1.0):
        """Polls stats until data == expected; returns elapsed seconds."""
        start = time.monotonic()
        seen = []

        def check():
            data = self.stats()
            seen[:] = [data]
            return data == expected
        try:
            wait_until(check, timeout, interval=0.02, message="stats == %r" % (expected,))
        except AssertionError:
            raise AssertionError("stats did not become %r within %ss; last %r" % (expected, timeout, seen)) from None
        return time.monotonic() - start

    def close_streams(self):
        for s in self.streams:
            s.close()
        self.streams = []


def is_uuid(text):
    try:
        return str(uuid.UUID(text)) == text.lower() and len(text) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still "exists"; look at its state
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False
