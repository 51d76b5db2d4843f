"""What is particular to ssehub behind Apache httpd (issue 16); the API and
stream behaviour common to every front runs over Apache through the `stack`
fixture like everything else.

examples/apache/ssehub.conf as rendered for the tests: the configuration
check, CORS for the allowed origin only (preflight included), what reaches
ssehub (the token cookie alone, the Authorization header, the original URI),
one worker thread per stream (MaxRequestWorkers caps streams and starves
everything else, --max-clients keeps a margin), and a graceful restart with
streams open."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import fcgi_client as fcgi
import frontconf
import ssehub_harness as h

ALLOWED = "https://app.example.com"      # the example's one allowed origin
CORS_NAMES = ("access-control-allow-origin", "access-control-allow-credentials",
              "access-control-allow-methods", "access-control-allow-headers", "access-control-max-age")


@pytest.fixture(autouse=True)
def _apache():
    if not h.find_program("apache2"):
        pytest.skip("apache2 is not installed")


def apache_stack(procs, tokens, hub_args=(), mpm=None):
    hub = procs.hub(extra_args=[str(a) for a in hub_args])
    front = h.ApacheFront(procs.workdir, str(hub.socket_path), name="apache%d" % len(procs.fronts), mpm=mpm)
    front.watch.append(hub.process)
    procs.fronts.append(front)
    front.start().wait_ready()
    return h.Stack(front, tokens, hub=hub)


def cors_headers(r):
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


# ---------------------------------------------------------------- the example


def test_example_renders_and_passes_configtest(tmp_path):
    site = frontconf.apache_site(tmp_path / "hub.sock", "127.0.0.1:8080", tmp_path / "root", token_cookie="sse_jwt")
    active = [x.strip() for x in site.splitlines() if not x.lstrip().startswith("#")]
    assert "<VirtualHost 127.0.0.1:8080>" in active and "<VirtualHost *:80>" not in active
    assert site.count("unix:%s|fcgi://" % (tmp_path / "hub.sock")) == 3
    assert 'sse_jwt=([^;\\s]+)" SSEHUB_TOKEN_COOKIE=sse_jwt=$1' in site
    conf = frontconf.write_apache(tmp_path / "apache", site, "127.0.0.1:8080",
                                  user="www-data" if os.geteuid() == 0 else None)
    r = subprocess.run([h.find_program("apache2"), "-t", "-f", str(conf)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0 and "Syntax OK" in r.stderr, r.stderr
    # a substitution point that drifted away is refused, not silently skipped
    drifted = tmp_path / "drifted.conf"
    drifted.write_text(frontconf.APACHE_EXAMPLE.read_text().replace("<VirtualHost *:80>", "<VirtualHost *:8000>"))
    with pytest.raises(frontconf.ExampleDrift):
        frontconf.apache_site(tmp_path / "hub.sock", "127.0.0.1:8080", tmp_path, example=drifted)


# ---------------------------------------------------------------- CORS


def test_cors_for_the_allowed_origin_only(procs, tokens):
    st = apache_stack(procs, tokens)
    # an ordinary answer, and an error answer ("always"), for the allowed origin
    for token, status in (("admin", 200), (None, 401)):
        r = st.request("GET", "/api/sse/stats", token=token, headers={"Origin": ALLOWED})
        assert r.status == status, r
        assert cors_headers(r) == {"access-control-allow-origin": ALLOWED,
                                   "access-control-allow-credentials": "true"}, r.headers.items()
        assert "Origin" in (r.header("Vary") or ""), r.headers.items()
    s = st.open_stream(user_id=1, headers={"Origin": ALLOWED})
    assert s.header("access-control-allow-origin") == ALLOWED, s.header_list

    # any other origin: nothing
    for origin in ("https://evil.example.net", "https://app.example.com.evil.net", "null"):
        r = st.request("GET", "/api/sse/stats", headers={"Origin": origin})
        assert r.status == 200 and cors_headers(r) == {}, (origin, r.headers.items())

    # the preflight is Apache's (ssehub answers OPTIONS 405)
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    for path in ("/api/sse/broadcast", "/sse/stream"):
        r = st.request("OPTIONS", path, token=None, headers=dict(pre, Origin=ALLOWED))
        assert r.status == 204, (path, r)
        got = cors_headers(r)
        assert got.pop("access-control-allow-methods") == "GET, POST", r.headers.items()
        allowed = {x.strip().lower() for x in got.pop("access-control-allow-headers").split(",")}
        assert allowed == {"authorization", "content-type", "last-event-id"}, allowed
        assert got == {"access-control-allow-origin": ALLOWED, "access-control-allow-credentials": "true",
                       "access-control-max-age": "600"}, r.headers.items()
        r = st.request("OPTIONS", path, token=None, headers=dict(pre, Origin="https://evil.example.net"))
        assert r.status == 204 and cors_headers(r) == {}, (path, r.headers.items())
        assert not [n for n in CORS_NAMES if r.header(n)], r.headers.items()


# ---------------------------------------------------------------- what reaches ssehub


class RecordingResponder:
    """A FastCGI responder on a unix socket that records the parameters of
    each request and answers 200 {"success":true}: what Apache passes on, which ssehub
    does not show. Serves until stopped."""

    def __init__(self, path):
        self.path = str(path)
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                self._one(conn)

    def _one(self, conn):
        reader, params, rid = fcgi.RecordReader(), b"", 1
        done = False
        while not done:
            data = conn.recv(65536)
            if not data:
                return
            for rec in reader.feed(data):
                rid = rec.request_id
                if rec.type == fcgi.PARAMS:
                    params += rec.content
                elif rec.type == fcgi.STDIN and not rec.content:
                    done = True
        self.requests.append({n.decode("latin-1"): v.decode("latin-1") for n, v in fcgi.decode_pairs(params)})
        body = b'Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{"success":true}'
        conn.sendall(fcgi.record(fcgi.STDOUT, body, rid) + fcgi.record(fcgi.STDOUT, b"", rid) +
                     fcgi.record(fcgi.END_REQUEST, fcgi.END_BODY.pack(0, fcgi.REQUEST_COMPLETE), rid))

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


def test_what_reaches_ssehub(workdir):
    """Through the example: Authorization (CGIPassAuth), the token cookie
    alone (the application's cookies stay out), the original URI with its
    query, Last-Event-ID; and no cookie at all when there is no token
    cookie."""
    responder = RecordingResponder(workdir / "recorder.sock")
    front = h.ApacheFront(workdir, str(workdir / "recorder.sock"), name="apache-rec")
    try:
        front.start()
        front.wait_ready()
        responder.requests.clear()
        for path, headers in (
                ("/sse/stream?token=abc&last_event_id=7",
                 {"Cookie": "session=app-secret; token=tok.en-1; theme=dark", "Last-Event-ID": "42-1",
                  "Authorization": "Bearer hdr.tok"}),
                ("/api/sse/stats", {"Cookie": "session=app-secret; xtoken=no", "Authorization": "Bearer a.b"})):
            r = h.http_call(front, "GET", path, headers=headers)
            assert r.status == 200, r
        stream, api = responder.requests
        assert stream["REQUEST_URI"] == "/sse/stream?token=abc&last_event_id=7", stream
        assert stream["HTTP_COOKIE"] == "token=tok.en-1", stream
        assert stream["HTTP_AUTHORIZATION"] == "Bearer hdr.tok", stream
        assert stream["HTTP_LAST_EVENT_ID"] == "42-1", stream
        assert stream["REQUEST_METHOD"] == "GET", stream
        assert "HTTP_COOKIE" not in api, api
        assert api["HTTP_AUTHORIZATION"] == "Bearer a.b", api
        assert not [k for req in (stream, api) for k, v in req.items() if "app-secret" in v], (stream, api)
    finally:
        front.stop()
        responder.stop()


# ---------------------------------------------------------------- worker threads


SMALL_MPM = {"StartServers": 1, "ServerLimit": 1, "ThreadLimit": 6, "ThreadsPerChild": 6,
             "MaxRequestWorkers": 6, "MinSpareThreads": 1, "MaxSpareThreads": 6}


def test_max_clients_below_max_request_workers_keeps_apache_answering(procs, tokens):
    """6 workers, --max-clients 4: the 5th and 6th streams get ssehub's 503
    at once, and the API still answers with 4 streams open."""
    st = apache_stack(procs, tokens, ["--max-clients", 4], mpm=SMALL_MPM)
    streams = [st.open_stream(user_id=i) for i in range(4)]
    for i in (4, 5):
        t0 = time.monotonic()
        s = st.open_stream(user_id=i, wait_connected=False)
        assert (s.status, s.json and s.json["error"]["code"]) == (503, "too_many_clients"), (s.status, s.body)
        assert time.monotonic() - t0 < 2.0
    assert st.stats()["total_clients"] == 4
    d = st.broadcast("still", 1)
    assert d["recipients"] == 4, d
    for s in streams:
        assert s.wait_event("still").json() == 1


def test_streams_take_every_worker_and_apache_answers_nothing_else(procs, tokens):
    """Without that margin: 6 streams take the 6 workers, and a 7th request
    (the health check) gets no answer. A tab that closes frees its worker
    only once Apache notices, that is after two liveness comments
    (--liveness-interval 1 here, one a second: the first meets the tab's
    RST, the second fails), so not before a second has passed: then the
    health check is answered."""
    st = apache_stack(procs, tokens, ["--liveness-interval", 1, "--ping-interval", 3600], mpm=SMALL_MPM)
    streams = [st.open_stream(user_id=i) for i in range(6)]
    sock = socket.create_connection((st.host, st.port), timeout=5)
    try:
        sock.sendall(b"GET /api/sse/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(1.5)
        with pytest.raises(socket.timeout):
            sock.recv(1024)
        # read what the tab was sent, as a browser does: its close is then a
        # FIN (unread data would make it a RST, noticed at the first write)
        streams[0].sock.setblocking(False)
        try:
            while streams[0].sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        streams[0].close()
        t0 = time.monotonic()
        sock.settimeout(2 * (1 + 1) + 1.0)
        head = sock.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert time.monotonic() - t0 >= 0.9, "answered before Apache could have noticed the closed tab"
    finally:
        sock.close()
    st.wait_stats({"total_clients": 5, "user_clients": {str(i): 1 for i in range(1, 6)}})


# ---------------------------------------------------------------- reloads


def test_graceful_restart_keeps_open_streams(procs, tokens):
    """apache2 -k graceful (SIGUSR1; Debian's reload, and logrotate's): the
    open stream stays with its old child and keeps receiving, new streams go
    to the new children."""
    st = apache_stack(procs, tokens)
    old = st.open_stream(user_id="before")
    pid = st.front.process.pid
    children = set(open("/proc/%d/task/%d/children" % (pid, pid)).read().split())
    os.kill(pid, signal.SIGUSR1)
    h.wait_until(lambda: set(open("/proc/%d/task/%d/children" % (pid, pid)).read().split()) - children, 5,
                 message="new children after the graceful restart")
    new = st.open_stream(user_id="after")
    d = st.broadcast("after-reload", 1)
    assert d["recipients"] == 2, d
    for s in (old, new):
        assert s.wait_event("after-reload").json() == 1
