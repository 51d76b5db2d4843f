#!/usr/bin/python3
"""frontmem.py: the front server's memory per stream and CPU per message.

What nginx or lighttpd spends per ssehub stream and per delivered message,
one directive at a time.

For each variant (the shipped example with ONE change) and each repetition
(interleaved: A B C A B C): ssehub and the front server started as
compare.py starts them (nginx: 2 workers, reuseport; lighttpd: variant B,
the hub's own socket), the example rendered by tests/integration/frontconf.py
with the variant's edit; N streams opened by sseload; memory of the front's
processes from /proc/PID/smaps_rollup (Pss, Rss, Private_Dirty) idle, with
the streams open, and again after M broadcasts (the buffers that delivery
leaves behind); CPU ticks of the front and the hub during the broadcasts,
divided by the messages delivered; the bytes the front wrote to the
clients (wchar) per message. Prints a Markdown table of medians.

  bench/frontmem.py --list                             # the variants
  bench/frontmem.py -n 5000 --reps 3                   # every nginx variant (~25 min)
  bench/frontmem.py --front lighttpd -n 5000 --reps 3
  bench/frontmem.py --reps 5 --variants nginx:example,lighttpd:example   # both fronts, interleaved
  bench/frontmem.py --browser 600 --variants example,chb-1k    # Chromium's request + 600 B of cookies
  bench/frontmem.py --pools --browser 0 --token-in cookie      # nginx debug log: pool use of 20 streams
  bench/frontmem.py --reps 1 --perf --strace --variants example  # where the CPU per message goes

--variants: names from --list; "front:name" runs a variant of the other
front server in the same interleaving.
--browser COOKIE_BYTES: memory only; the streams are opened by a client in
Python that sends Chromium 156's EventSource request headers (captured) and
a Cookie header of that many bytes; --token-in query|cookie|bearer puts the
token in ?token= (default), the cookie or an Authorization header; --rounds
R opens and closes the N streams R - 1 times before the measured round.
--pad B: the stream URL gets "?pad=xxx..." (B bytes, ssehub ignores it)
before the token (with sseload at most about 7,900: its URL buffer is 8 KB;
with --browser any length).
--pools: one nginx worker with a debug log, 20 streams, 3 broadcasts, the
streams closed; from ngx_destroy_pool's "free: ADDR, unused: U" lines it
prints, per pool (connection, request, upstream connection), its size and
the bytes a stream used in it, and the large allocations (malloc beyond a
pool) of a stream. Needs nginx built --with-debug (Debian's is).
--h2 K: nginx, memory only: the streams over HTTP/2 without TLS (prior
knowledge, a second listen port), K on each connection, opened by node's
http2 client; with --browser, Chromium's headers and the cookie.
Variant names joined by "+" apply both edits (chb-1k+rps-12k).
--perf: perf record -e cpu-clock on the front's workers during the first
repetition's fan-out: the share of the kernel and of the server's own code,
top symbols. --strace: strace -c during that fan-out: system calls per
delivered message (strace slows the server: events then coalesce, so
compare the calls per read, not per message, and ignore that run's CPU).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare as c  # noqa: E402
import frontconf  # noqa: E402  (compare put tests/integration on the path)

# A variant: name -> (edits, what it is). nginx edits:
#   ("server", NAME, VALUE)  the server-level directive NAME set to VALUE
#                            (replaced, or added after server_name); VALUE
#                            None deletes it
#   ("stream", NAME, VALUE)  the same in location /sse/
#   ("stream-drop", PREFIX)  deletes the lines of location /sse/ starting so
#   ("stream-add", LINE)     adds LINE (without ';') to location /sse/
NGINX_VARIANTS = {
    "example": ([], "the shipped example"),
    "rps-4k": ([("server", "request_pool_size", "4k")], "request_pool_size 4k (nginx's default)"),
    "rps-8k": ([("server", "request_pool_size", "8k")], "request_pool_size 8k"),
    "rps-9k": ([("server", "request_pool_size", "9k")], "request_pool_size 9k"),
    "rps-9.5k": ([("server", "request_pool_size", "9728")], "request_pool_size 9728 (9.5k)"),
    "rps-11k": ([("server", "request_pool_size", "11k")], "request_pool_size 11k"),
    "rps-12k": ([("server", "request_pool_size", "12k")], "request_pool_size 12k"),
    "cps-256": ([("server", "connection_pool_size", "256")], "connection_pool_size 256"),
    "cps-1k": ([("server", "connection_pool_size", "1k")], "connection_pool_size 1k"),
    "chb-1k": ([("server", "client_header_buffer_size", None)], "client_header_buffer_size 1k (nginx's default)"),
    "chb-512": ([("server", "client_header_buffer_size", "512")], "client_header_buffer_size 512"),
    "chb-1.5k": ([("server", "client_header_buffer_size", "1536")], "client_header_buffer_size 1536"),
    "lchb-8k": ([("server", "large_client_header_buffers", "4 8k")], "large_client_header_buffers 4 8k "
                "(nginx's default; too small for the longest stream request)"),
    "fbs-4k": ([("stream", "fastcgi_buffer_size", "4k")], "fastcgi_buffer_size 4k (nginx's default)"),
    "fbs-256": ([("stream", "fastcgi_buffer_size", "256")], "fastcgi_buffer_size 256"),
    "fbufs-4x512": ([("stream-add", "fastcgi_buffers 4 512")], "fastcgi_buffers 4 512"),
    "params-all": ([("stream-drop", "fastcgi_pass_request_headers"), ("stream-drop", "fastcgi_param"),
                    ("stream-add", "include fastcgi_params")],
                   "include fastcgi_params and every request header, instead of 5 params"),
    "params-2": ([("stream-drop", "fastcgi_param HTTP_COOKIE"), ("stream-drop", "fastcgi_param HTTP_LAST_EVENT_ID"),
                  ("stream-drop", "fastcgi_param HTTP_AUTHORIZATION")],
                 "2 params (REQUEST_METHOD, REQUEST_URI)"),
    "chunked-off": ([("stream-add", "chunked_transfer_encoding off")], "chunked_transfer_encoding off"),
    "postpone-0": ([("stream-add", "postpone_output 0")], "postpone_output 0"),
    "keepconn-on": ([("stream-add", "fastcgi_keep_conn on")], "fastcgi_keep_conn on (stream location)"),
    "no-cors": ([("server", "add_header", None)], "no add_header (the 6 CORS headers)"),
    "no-if": ([("server-drop-block", "if ($request_method = OPTIONS) {")],
              "no \"if ($request_method = OPTIONS)\" (the preflight answer)"),
}
# lighttpd edits: ("sub", OLD, NEW) the active line OLD (stripped) becomes
# NEW; ("global", LINE) LINE added after the example (global context).
LIGHTTPD_VARIANTS = {
    "example": ([], "the shipped example"),
    "mrfs-8k": ([("sub", "server.max-request-field-size = 32768", "server.max-request-field-size = 8192")],
                "server.max-request-field-size 8192 (lighttpd's default)"),
    "srb-1": ([("sub", "server.stream-response-body = 2", "server.stream-response-body = 1")],
              "server.stream-response-body 1"),
    "ccs-1k": ([("global", "server.chunkqueue-chunk-sz = 1024")], "server.chunkqueue-chunk-sz 1024"),
    "ccs-4k": ([("global", "server.chunkqueue-chunk-sz = 4096")], "server.chunkqueue-chunk-sz 4096"),
    "ka": ([("sub", "server.max-keep-alive-requests = 0", "server.max-keep-alive-requests = 100")],
           "streams' connections kept alive (the /sse/ block's max-keep-alive-requests 0 -> 100)"),
}
VARIANTS = {"nginx": NGINX_VARIANTS, "lighttpd": LIGHTTPD_VARIANTS}


def variant_edits(front, name):
    """The edits of a variant; "a+b" applies a's and b's."""
    return sum((VARIANTS[front][x][0] for x in name.split("+")), [])


def known(front, name):
    return front in VARIANTS and all(x in VARIANTS[front] for x in name.split("+"))
SYSTEM = {"nginx": "ssehub", "lighttpd": "ssehub-lighttpd"}


def _block_end(lines, start):
    """Index of the line closing the block opened on lines[start]."""
    depth = 0
    for i in range(start, len(lines)):
        if not frontconf._active(lines[i]):
            continue
        code = lines[i].split("#", 1)[0]
        depth += code.count("{") - code.count("}")
        if depth == 0:
            return i
    raise frontconf.ExampleDrift("unclosed block at line %d" % (start + 1))


def edit_nginx(text, edits):
    lines = text.split("\n")
    for e in edits:
        if e[0] == "server":
            _, name, value = e
            start = next(i for i, x in enumerate(lines) if frontconf._active(x) and x.strip() == "server {")
            end = _block_end(lines, start)
            depth, hits = 0, []
            for i in range(start + 1, end):
                code = lines[i].split("#", 1)[0]
                if frontconf._active(lines[i]) and depth == 0 and code.split()[:1] == [name]:
                    hits.append(i)
                depth += code.count("{") - code.count("}")
            for i in reversed(hits):
                del lines[i]
            if value is not None:
                at = hits[0] if hits else next(i for i in range(start, end) if
                                               lines[i].strip().startswith("server_name ")) + 1
                lines.insert(at, "    %s %s;" % (name, value))
        elif e[0] == "server-add":
            at = next(i for i, x in enumerate(lines) if frontconf._active(x) and
                      x.strip().startswith("server_name "))
            lines.insert(at + 1, "    %s;" % e[1])
        elif e[0] == "server-drop-block":
            start = next(i for i, x in enumerate(lines) if frontconf._active(x) and x.strip() == e[1])
            del lines[start:_block_end(lines, start) + 1]
        elif e[0] == "stream":
            lines = frontconf._stream_extra(lines, ["%s %s" % (e[1], e[2])], "variant")
        else:
            start = next(i for i, x in enumerate(lines) if frontconf._active(x) and x.strip() == "location /sse/ {")
            end = _block_end(lines, start)
            if e[0] == "stream-drop":
                keep = [x for x in lines[start + 1:end] if not (frontconf._active(x) and
                                                                  x.strip().startswith(e[1]))]
                lines = lines[:start + 1] + keep + lines[end:]
            else:
                lines.insert(start + 1, "        %s;" % e[1])
    return "\n".join(lines)


def edit_lighttpd(text, edits):
    lines, extra = text.split("\n"), []
    for e in edits:
        if e[0] == "sub":
            hits = [i for i, x in enumerate(lines) if frontconf._active(x) and x.strip() == e[1]]
            if len(hits) != 1:
                raise frontconf.ExampleDrift("lighttpd example: %r on %d lines" % (e[1], len(hits)))
            pad = lines[hits[0]][:len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
            lines[hits[0]] = pad + e[2]
        else:
            extra.append(e[1])
    return "\n".join(lines), extra


class Front(c.System):
    """compare.System with the example edited for one variant."""

    def __init__(self, front, env, edits, debug=False, workers=2, h2=False):
        super().__init__(SYSTEM[front], env)
        self.edits, self.debug, self.workers, self.h2 = edits, debug, workers, h2

    def _example(self, src, text):
        path = os.path.join(self.d, os.path.basename(os.path.dirname(src)) + "-example.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def _start_nginx(self, ngx, sock):
        e = self.env
        edits = list(self.edits)
        if self.h2:
            # HTTP/2 without TLS (prior knowledge) on a second port, as the
            # example's commented "listen 443 ssl http2" serves it over TLS;
            # the first stays HTTP/1.1 for the health and stats calls
            self.h2port = c.free_port()
            edits.append(("server-add", "listen 127.0.0.1:%d http2" % self.h2port))
        ex = self._example(frontconf.NGINX_EXAMPLE, edit_nginx(open(frontconf.NGINX_EXAMPLE).read(), edits))
        site = frontconf.nginx_site("unix:" + sock, c.LISTEN % self.port, os.path.join(self.d, "htdocs"),
                                    example=ex)
        conf = frontconf.write_nginx(ngx, site, workers=self.workers, worker_connections=e.nofile,
                                     rlimit_nofile=e.nofile, error_log_level="debug" if self.debug else "warn",
                                     access_log=False)
        self.conf_text = open(os.path.join(ngx, "site.conf")).read()
        return subprocess.Popen(
            ["nginx", "-p", ngx + "/", "-c", str(conf), "-e", os.path.join(ngx, "error.log")],
            stdout=subprocess.DEVNULL, stderr=open(self.d + "/nginx.out", "w"))

    def _start_front(self, kind, fdir, sock, streams):
        if kind != "lighttpd":
            r = super()._start_front(kind, fdir, sock, streams)
            return r[0], 1 + self.workers
        e = self.env
        text, extra = edit_lighttpd(open(frontconf.LIGHTTPD_EXAMPLE).read(), self.edits)
        site = frontconf.lighttpd_site(sock, example=self._example(frontconf.LIGHTTPD_EXAMPLE, text))
        conf = frontconf.write_lighttpd(fdir, "127.0.0.1", self.port, site, [
            "server.max-fds = %d" % e.nofile,
            "server.max-connections = %d" % c.front_max_streams(self.name, e.nofile),
            "server.listen-backlog = 4096"] + extra)
        self.conf_text = open(os.path.join(fdir, "site.conf")).read()
        self.front = subprocess.Popen(["lighttpd", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=open(self.d + "/front.out", "w"))
        return os.path.join(fdir, "error.log"), 1


ROLLUP = ("Rss", "Pss", "Private_Dirty", "Anonymous")


def rollup(pid):
    out = dict.fromkeys(ROLLUP, 0)
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k = line.split(":")[0]
                if k in out:
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def mem(system):
    """kB summed over the front's processes."""
    tot = dict.fromkeys(ROLLUP, 0)
    for p in system.front_pids():
        for k, v in rollup(p).items():
            tot[k] += v
    return tot


def wchar(system):
    total = 0
    for p in system.front_pids():
        try:
            with open("/proc/%d/io" % p) as f:
                total += int(re.search(r"^wchar: (\d+)", f.read(), re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total


# What Chromium 156 sends for new EventSource("/sse/stream?token=...") on
# its own origin (captured), with a cookie header of --cookie bytes.
BROWSER_HEADERS = (
    "Host: {host}\r\nConnection: keep-alive\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\nAccept: text/event-stream\r\n"
    "sec-ch-ua: \"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"156\"\r\nsec-ch-ua-mobile: ?0\r\n"
    "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n"
    "Referer: https://{host}/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n")


def browser_client(port, tokens, n, cookie, ready, token_in="query", pad=0, rate=2000):
    """Holds n streams with a browser's request (run in a process of its
    own until SIGTERM); creates ready once every stream has its connected
    event. Prints open=, failed=, request_bytes=."""
    import asyncio
    import signal
    toks = [x.strip() for x in open(tokens) if x.strip()]
    stats = {"open": 0, "failed": 0, "bytes": 0}

    async def one(i, done):
        host = "127.0.0.1:%d" % port
        tok = toks[i % len(toks)]
        query = (["pad=" + "x" * pad] if pad else []) + (["token=" + tok] if token_in == "query" else [])
        req = "GET /sse/stream%s HTTP/1.1\r\n" % ("?" + "&".join(query) if query else "")
        req += BROWSER_HEADERS.format(host=host)
        if token_in == "bearer":
            req += "Authorization: Bearer %s\r\n" % tok
        jar = "token=%s; " % tok if token_in == "cookie" else ""
        if cookie or jar:
            req += "Cookie: %ssession=%s\r\n" % (jar, "c" * max(0, cookie - len("Cookie: session=\r\n")))
        req += "\r\n"
        stats["bytes"] = len(req)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req.encode())
            buf = b""
            while b"event: connected" not in buf:
                d = await asyncio.wait_for(r.read(65536), 60)
                if not d:
                    raise ConnectionError("closed")
                buf += d
            stats["open"] += 1
        except (OSError, asyncio.TimeoutError, ConnectionError):
            stats["failed"] += 1
            done()
            return
        done()
        while await r.read(65536):
            pass

    async def main():
        left = [n]
        fin = asyncio.get_running_loop().create_future()

        def done():
            left[0] -= 1
            if left[0] == 0 and not fin.done():
                fin.set_result(None)
        tasks = []
        for i in range(n):
            tasks.append(asyncio.ensure_future(one(i, done)))
            if i % 100 == 99:
                await asyncio.sleep(100 / rate)
        await fin
        print("open=%d\nfailed=%d\nrequest_bytes=%d" % (stats["open"], stats["failed"], stats["bytes"]), flush=True)
        open(ready, "w").close()
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await stop
    asyncio.run(main())


class BrowserLoad:
    """compare.Load's interface for browser_client in a process of its own."""

    def __init__(self, env, system, n, cookie, token_in="query", pad=0):
        k = len(env.loads)
        self.out = os.path.join(system.d, "browser%d.out" % k)
        self.ready = os.path.join(system.d, "browser%d.ready" % k)
        self.p = subprocess.Popen([c.PY, os.path.abspath(__file__), "--_client", str(system.port),
                                   env.user_tokens, str(n), str(cookie), self.ready, token_in, str(pad)],
                                  stdout=open(self.out, "w"), stderr=subprocess.STDOUT)
        env.loads.append(self)

    def wait_ready(self, timeout):
        return c.wait_file(self.ready, self.p, timeout)

    def stop(self):
        if self.p.poll() is None:
            c.stop_pid(self.p.pid, c.signal.SIGTERM, 5)
        r = c.kv_parse(open(self.out).read())
        return {"streams_opened_total": r.get("open"), "request_bytes": r.get("request_bytes"),
                "failed": r.get("failed")}


# An HTTP/2 client in node (curl 7.88 fails the second stream on a
# prior-knowledge connection): argv host port tokens n per_conn ready headers.json
H2_CLIENT = r"""
const http2 = require('http2'), fs = require('fs');
const [host, port, tokfile, n, per, ready, hfile] = process.argv.slice(2);
const toks = fs.readFileSync(tokfile, 'utf8').split('\n').filter(Boolean);
const extra = JSON.parse(fs.readFileSync(hfile, 'utf8'));
let left = +n, open = 0, failed = 0;
const done = () => { if (--left === 0) { console.log('open=' + open + '\nfailed=' + failed); fs.writeFileSync(ready, ''); } };
for (let k = 0; k < +n; k += +per) {
  const s = http2.connect('http://' + host + ':' + port, { settings: { initialWindowSize: 65535 } });
  s.on('error', () => {});
  for (let i = k; i < Math.min(+n, k + +per); i++) {
    const h = Object.assign({ ':path': '/sse/stream?token=' + toks[i % toks.length] }, extra);
    const r = s.request(h);
    let seen = false, buf = '';
    r.setEncoding('utf8');
    r.on('data', d => { if (!seen) { buf += d; if (buf.includes('event: connected')) { seen = true; open++; done(); } } });
    r.on('error', () => { if (!seen) { seen = true; failed++; done(); } });
    r.on('close', () => { if (!seen) { seen = true; failed++; done(); } });
  }
}
process.on('SIGTERM', () => process.exit(0));
"""


def hold_h2(env, front, variant, n, per_conn, cookie=None):
    """Memory only: n streams over HTTP/2 (nginx, prior knowledge), per_conn
    streams on each connection (node's http2 client); cookie None: no
    headers but the pseudo-headers, else Chromium's headers and a Cookie
    header of cookie bytes."""
    edits = variant_edits(front, variant)
    system = Front(front, env, edits, h2=True)
    r = {"front": front, "variant": variant, "n": n, "load1": c.loadavg(), "h2": per_conn, "browser": cookie}
    client = None
    try:
        system.start(streams=n)
        time.sleep(1.0)
        idle = mem(system)
        hdrs = {}
        if cookie is not None:
            for x in BROWSER_HEADERS.format(host="h").split("\r\n"):
                if x and not x.startswith(("Host:", "Connection:")):
                    k, v = x.split(": ", 1)
                    hdrs[k.lower()] = v
            if cookie:
                hdrs["cookie"] = "session=" + "c" * max(0, cookie - len("Cookie: session=\r\n"))
        js, hfile = os.path.join(system.d, "h2client.js"), os.path.join(system.d, "h2headers.json")
        ready = os.path.join(system.d, "h2.ready")
        open(js, "w").write(H2_CLIENT)
        json.dump(hdrs, open(hfile, "w"))
        out = os.path.join(system.d, "h2.out")
        client = subprocess.Popen(["node", js, "127.0.0.1", str(system.h2port), env.user_tokens, str(n),
                                   str(per_conn), ready, hfile], stdout=open(out, "w"), stderr=subprocess.STDOUT)
        end = time.monotonic() + n / 200 + 60
        while not os.path.exists(ready) and client.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(2.0)
        held = mem(system)
        res = c.kv_parse(open(out).read())
        r["open"] = opened = int(c.num(res.get("open"), 0))
        r["clients"] = system.clients()
        r["ready"] = opened == n
        r["errors"] = system.errors_logged()[:3]
    finally:
        if client:
            c.stop_pid(client.pid, c.signal.SIGTERM, 5)
        r["hub_exit"] = system.stop()
    r["delivered"] = r["expected"] = 0
    if opened:
        for k in ROLLUP:
            r["held_" + k] = (held[k] - idle[k]) * 1024 / opened
    return r


def stream_args(env, pad):
    args = ["-T", env.user_tokens]
    if pad:
        args += ["-u", "/sse/stream?pad=" + "x" * pad]
    return args


def hold_browser(env, front, variant, n, cookie, token_in="query", rounds=1, pad=0):
    """Memory only: n streams with a browser's request; with rounds > 1, n
    streams are opened and closed rounds - 1 times first (a heap that has
    served streams before), the growth still counted from the fresh start."""
    edits = variant_edits(front, variant)
    system = Front(front, env, edits)
    r = {"front": front, "variant": variant, "n": n, "load1": c.loadavg(), "browser": cookie,
         "token_in": token_in}
    try:
        # inside: a start that fails midway still stops what it started
        system.start(streams=n)
        time.sleep(1.0)
        idle = mem(system)
        for _ in range(rounds - 1):
            ld = BrowserLoad(env, system, n, cookie, token_in, pad)
            ld.wait_ready(n // 500 + 70)
            ld.stop()
            time.sleep(2.0)
        ld = BrowserLoad(env, system, n, cookie, token_in, pad)
        r["ready"] = ld.wait_ready(n // 500 + 70)
        time.sleep(2.0)
        held = mem(system)
        r["clients"] = system.clients()
        res = ld.stop()
        r["errors"] = system.errors_logged()[:3]
    finally:
        r["hub_exit"] = system.stop()
    r["open"] = opened = int(c.num(res.get("streams_opened_total"), 0))
    r["request_bytes"] = res.get("request_bytes")
    r["http_errors"] = {"failed": res.get("failed")} if c.num(res.get("failed"), 0) else {}
    r["delivered"] = r["expected"] = 0
    if opened:
        for k in ROLLUP:
            r["held_" + k] = (held[k] - idle[k]) * 1024 / opened
    return r


def perf_split(data):
    """Shares of the front's CPU samples by object (kernel, the server,
    libc) and its top symbols, from perf record -e cpu-clock."""
    out = {}
    for key, sort in (("dso", "dso"), ("symbols", "dso,symbol")):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                            "--percent-limit", "1.5"], capture_output=True, text=True, timeout=300)
        out[key] = [re.sub(r"\s+", " ", x.strip()) for x in r.stdout.splitlines()
                    if x.strip() and not x.startswith("#")]
    return out


def strace_calls(path, delivered):
    """Syscalls per delivered message from strace -c's summary."""
    out = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit() and f[-1] != "total":
            out[f[-1]] = int(f[3]) / delivered
    return out


def measure(env, front, variant, n, msgs, interval_ms, pad, perf=False, trace=False):
    edits = variant_edits(front, variant)
    system = Front(front, env, edits)
    r = {"front": front, "variant": variant, "n": n, "load1": c.loadavg()}
    try:
        # inside: a start that fails midway still stops what it started
        system.start(streams=n)
        time.sleep(1.0)
        idle = mem(system)
        ld = c.Load(env, system, n, ["-r", str(env.rate), "-P", str(env.pending), "-W", str(n // 500 + 60)],
                    "mem", stream_args=stream_args(env, pad))
        r["ready"] = ld.wait_ready(n // 500 + 70)
        time.sleep(2.0)
        held = mem(system)
        r["clients"] = system.clients()
        perf_p = None
        if perf and r["ready"]:
            data = os.path.join(system.d, "perf.data")
            pids = system.front_pids()[1:] if front == "nginx" else system.front_pids()
            perf_p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-o", data,
                                       "-p", ",".join(map(str, pids))],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        strace_p = None
        if trace and r["ready"]:
            sdata = os.path.join(system.d, "strace.txt")
            pids = system.front_pids()[1:] if front == "nginx" else system.front_pids()
            strace_p = subprocess.Popen(["strace", "-c", "-o", sdata] + sum((["-p", str(p)] for p in pids), []),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        hub0, front0 = system.cpu()
        w0 = wchar(system)
        pub = c.run_pub(env, system, ["-b", "-n", str(msgs), "-c", str(msgs), "-i", str(interval_ms)],
                        msgs * interval_ms / 1000 + 60) if r["ready"] else {}
        ld.wait_msgs(n * msgs, idle_s=3, hard_s=60)
        hub1, front1 = system.cpu()
        w1 = wchar(system)
        if strace_p:
            strace_p.send_signal(c.signal.SIGINT)
            strace_p.wait(60)
        if perf_p:
            perf_p.send_signal(c.signal.SIGINT)
            perf_p.wait(60)
            r["perf"] = perf_split(data)
        time.sleep(1.0)
        after = mem(system)
        res = ld.stop()
        r["pub_ok"] = pub.get("ok")
        r["errors"] = system.errors_logged()[:3]
    finally:
        r["hub_exit"] = system.stop()
    opened = int(c.num(res.get("streams_opened_total"), 0))
    r["open"] = opened
    r["delivered"] = int(c.num(res.get("messages_delivered"), 0))
    r["expected"] = n * msgs
    r["http_errors"] = {k: v for k, v in res.items() if k.startswith("http_status_") and k != "http_status_200"}
    if opened:
        for k in ROLLUP:
            r["held_" + k] = (held[k] - idle[k]) * 1024 / opened
            r["after_" + k] = (after[k] - idle[k]) * 1024 / opened
    if r["delivered"]:
        r["front_us_msg"] = (front1 - front0) / c.TICK * 1e6 / r["delivered"]
        r["hub_us_msg"] = (hub1 - hub0) / c.TICK * 1e6 / r["delivered"]
        r["front_b_msg"] = (w1 - w0) / r["delivered"]
        if strace_p:
            r["syscalls_per_msg"] = strace_calls(sdata, r["delivered"])
            r["strace_raw"] = open(sdata).read()
    return r


# ---------------------------------------------------------------- --pools


POOL_ALLOC = re.compile(r"posix_memalign: ([0-9A-F]+):(\d+) @16")
LARGE_ALLOC = re.compile(r"\*(\d+) malloc: ([0-9A-F]+):(\d+)")
POOL_FREE = re.compile(r"\*(\d+) free: ([0-9A-F]+), unused: (\d+)")


def pools(env, front, variant, n=20, msgs=3, pad=0, browser=None, token_in="query"):
    """Pool use per stream from nginx's debug log (one worker)."""
    edits = variant_edits(front, variant)
    system = Front(front, env, edits, debug=True, workers=1)
    try:
        # inside: a start that fails midway still stops what it started
        system.start(streams=n)
        time.sleep(0.5)
        log = os.path.join(system.d, "nginx", "error.log")
        mark = os.path.getsize(log)
        if browser is None:
            ld = c.Load(env, system, n, ["-r", "1000", "-W", "30"], "pools", stream_args=stream_args(env, pad))
        else:
            ld = BrowserLoad(env, system, n, browser, token_in, pad)
        ld.wait_ready(40)
        time.sleep(0.5)
        c.run_pub(env, system, ["-b", "-n", str(msgs), "-c", "1", "-i", "100"], 30)
        if browser is None:
            ld.wait_msgs(n * msgs, idle_s=3, hard_s=20)
        else:
            time.sleep(1.0)
        ld.stop()
        time.sleep(1.0)
    finally:
        system.stop()
    with open(log, errors="replace") as f:
        f.seek(mark)
        text = f.read()
    # which connection numbers are streams: the ones whose request was /sse/stream
    streams = set(re.findall(r"\*(\d+) http request line: \"GET /sse/stream", text))
    # the upstream connection's pool is logged under the client connection's number
    size, kinds, large = {}, {}, {}
    per = {}
    for line in text.split("\n"):
        # the connection's pool is made before the connection has a number
        m = POOL_ALLOC.search(line)
        if m:
            size[m.group(1)] = int(m.group(2))
            continue
        m = LARGE_ALLOC.search(line)
        if m and m.group(1) in streams:
            large.setdefault(m.group(1), []).append(int(m.group(3)))
            continue
        m = POOL_FREE.search(line)
        if m and m.group(1) in streams and m.group(2) in size:
            sz = size[m.group(2)]
            per.setdefault(m.group(1), []).append((sz, sz - int(m.group(3))))
    kinds = {}
    for conn, blocks in per.items():
        for sz, used in blocks:
            kinds.setdefault(sz, []).append(used)
    out = {"streams": len(streams), "pools": {}, "large": {}}
    for sz, used in sorted(kinds.items()):
        out["pools"][sz] = {"blocks_per_stream": len(used) / max(1, len(streams)),
                            "used_min": min(used), "used_max": max(used)}
    for conn, sizes in large.items():
        for s in sizes:
            out["large"][s] = out["large"].get(s, 0) + 1 / len(streams)
    return out


# ---------------------------------------------------------------- main


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def table(front, runs, variants):
    out = ["| variant | Pss B/stream held | after fan-out | Private_Dirty B/stream | front µs/msg "
           "(min–max) | hub µs/msg | front B written/msg | ok |", "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        us = [r["front_us_msg"] for r in rs if r.get("front_us_msg") is not None]
        ok = all(r["open"] == r["n"] and r["delivered"] == r["expected"] and not r["errors"] for r in rs)
        out.append("| %s | %s | %s | %s | %s%s | %s | %s | %s |" % (
            v, c.fmt(med(rs, "held_Pss")), c.fmt(med(rs, "after_Pss")), c.fmt(med(rs, "held_Private_Dirty")),
            c.fmt(med(rs, "front_us_msg"), 1), c.minmax(us, 1), c.fmt(med(rs, "hub_us_msg"), 1),
            c.fmt(med(rs, "front_b_msg"), 1), "yes" if ok else "NO"))
    return "\n".join(out)


def main():
    if sys.argv[1:2] == ["--_client"]:
        port, tokens, n, cookie, ready, token_in, pad = sys.argv[2:9]
        browser_client(int(port), tokens, int(n), int(cookie), ready, token_in, int(pad))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--front", default="nginx", choices=sorted(VARIANTS))
    ap.add_argument("-n", type=int, default=5000, help="streams (5000)")
    ap.add_argument("-m", "--msgs", type=int, default=20, help="broadcasts (20)")
    ap.add_argument("-i", "--interval", type=int, default=250, help="ms between broadcasts (250)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", help="comma-separated (default: all of the front's)")
    ap.add_argument("--pad", type=int, default=0, help="bytes of ?pad= in each stream's request line")
    ap.add_argument("--browser", type=int, metavar="COOKIE_BYTES",
                    help="memory only, streams opened with Chromium's request headers and a Cookie "
                    "header of this many bytes (0: none)")
    ap.add_argument("--token-in", default="query", choices=("query", "cookie", "bearer"),
                    help="with --browser: where the request carries the token (query: ?token=)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --browser: open and close the streams this many times, measure the last")
    ap.add_argument("--h2", type=int, metavar="STREAMS_PER_CONN",
                    help="nginx, memory only: the streams over HTTP/2 (prior knowledge, no TLS), this many on "
                    "each connection, one curl per connection; with --browser, Chromium's headers")
    ap.add_argument("--pools", action="store_true", help="nginx pool use from a debug log instead")
    ap.add_argument("--perf", action="store_true",
                    help="perf record the front during the first repetition's fan-out; prints where its CPU went")
    ap.add_argument("--strace", action="store_true",
                    help="strace -c the front during the first repetition's fan-out (its CPU figures "
                    "are then not comparable): system calls per delivered message")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", help="write every figure there")
    a = ap.parse_args()
    # "front:variant" runs a variant of the other front in the same interleaving
    variants = a.variants.split(",") if a.variants else list(VARIANTS[a.front])
    pairs = [tuple(v.split(":", 1)) if ":" in v else (a.front, v) for v in variants]
    if a.list:
        for front, vs in VARIANTS.items():
            for k, (_, what) in vs.items():
                print("%-8s %-12s %s" % (front, k, what))
        return 0
    unknown = ["%s:%s" % (f, v) for f, v in pairs if not known(f, v)]
    if unknown:
        sys.exit("frontmem.py: no %s variant %s (--list)" % (a.front, ", ".join(unknown)))
    env = c.tool_env("ssehub-frontmem.")
    runs = []
    try:
        c.build(env)
        c.tokens(env, a.n)
        if a.pools:
            for f, v in pairs:
                p = pools(env, f, v, pad=a.pad, browser=a.browser, token_in=a.token_in)
                print("%s: %d streams" % (v, p["streams"]))
                for sz, d in p["pools"].items():
                    print("  pool of %d B: %.2f blocks per stream, %d-%d B used" % (
                        sz, d["blocks_per_stream"], d["used_min"], d["used_max"]))
                for sz, k in sorted(p["large"].items()):
                    print("  large allocation of %d B: %.2f per stream" % (sz, k))
            return 0
        tops = [c.front_max_streams(SYSTEM[f], env.nofile) for f, _ in pairs]
        n = min([a.n] + [t for t in tops if t])
        c.log("frontmem: %s, N = %d, %d broadcasts, variants %s, %d reps, pad %d, load %.2f" % (
            a.front, n, a.msgs, ",".join(variants), a.reps, a.pad, c.loadavg()))
        for rep in range(a.reps):
            for f, v in pairs:
                if a.h2:
                    r = hold_h2(env, f, v, n, a.h2, a.browser)
                elif a.browser is not None:
                    r = hold_browser(env, f, v, n, a.browser, a.token_in, a.rounds, a.pad)
                else:
                    r = measure(env, f, v, n, a.msgs, a.interval, a.pad, perf=a.perf and rep == 0,
                                trace=a.strace and rep == 0)
                if len({x for x, _ in pairs}) > 1:
                    r["variant"] = "%s:%s" % (f, v)
                r["rep"] = rep
                runs.append(r)
                c.log("%-12s rep %d: open %d/%d, delivered %d/%d, Pss %s B/stream held, %s after; "
                      "front %s µs/msg, hub %s µs/msg, %s B/msg written; errors %s %s; load %.2f" % (
                          v, rep, r["open"], n, r["delivered"], r["expected"], c.fmt(r.get("held_Pss")),
                          c.fmt(r.get("after_Pss")), c.fmt(r.get("front_us_msg"), 1),
                          c.fmt(r.get("hub_us_msg"), 1), c.fmt(r.get("front_b_msg"), 1), r["errors"],
                          r.get("http_errors") or "", c.loadavg()))
    finally:
        c.tool_cleanup(env)
    print()
    print("%s, N = %s streams%s, %d broadcasts %d ms apart, medians of %d runs:" % (
        a.front, c.fmt(n), " (request line padded by %d B)" % a.pad if a.pad else
        " (Chromium's request, %s B, token in the %s)" % (runs[0].get("request_bytes"), a.token_in)
        if a.browser is not None and runs else "", a.msgs,
        a.interval, a.reps))
    print()
    print(table(a.front, runs, [r["variant"] for r in runs[:len(pairs)]]))
    for r in runs:
        if r.get("syscalls_per_msg"):
            print("\nsystem calls per delivered message, %s:" % r["variant"])
            print("    " + ", ".join("%s %.2f" % kv for kv in sorted(r["syscalls_per_msg"].items(),
                                                                     key=lambda kv: -kv[1]) if kv[1] >= 0.01))
        if r.get("perf"):
            print("\nperf, %s, %s (CPU samples of the front during the fan-out):" % (a.front, r["variant"]))
            for line in r["perf"]["dso"][:6] + ["top symbols:"] + r["perf"]["symbols"][:15]:
                print("    " + line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"front": a.front, "n": n, "msgs": a.msgs, "runs": runs}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
