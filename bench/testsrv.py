#!/usr/bin/python3
"""testsrv: a tiny, deliberately awkward SSE server to test sseload.

Not ssehub: it only speaks enough of its HTTP API (GET /sse/stream,
POST /api/sse/broadcast, GET /api/sse/health) to exercise the load client's
HTTP and SSE parsing. Framing modes (--mode):
  chunked  HTTP/1.1 Transfer-Encoding: chunked, every event cut into random
           chunks (mixed-case hex, leading zeros, extensions), and the wire
           bytes written in random pieces with pauses, so chunk headers, CRLFs
           and SSE lines are split across reads
  eof      identity body, no Content-Length, ends when the server closes
  length   identity body with Content-Length: connected + --length-messages
           messages, then the response ends (streams close by themselves)
Also: --line-endings mix (LF, CRLF or CR per stream), comments and pings
between events, data split over two data: lines, --fail-every K (every K-th
stream request gets a 503 JSON error).
"""
import argparse
import asyncio
import json
import random
import time
import uuid

args = None
streams = set()
counter = {"requests": 0, "msg": 0}


class Stream:
    def __init__(self, writer, idx):
        self.w = writer
        self.idx = idx
        self.rng = random.Random(idx)
        self.eol = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}.get(
            args.line_endings) or ["\n", "\r\n", "\r"][idx % 3]
        self.q = asyncio.Queue()
        self.closed = False

    def event_text(self, lines):
        eol = self.eol
        text = "".join(l + eol for l in lines) + eol
        if args.line_endings == "mix" and self.rng.random() < 0.3:
            text = ": comment" + eol + text
        if args.pings and self.rng.random() < 0.2:
            text = "event: ping" + eol + 'data: {"timestamp":%d}' % time.time() + eol + eol + text
        return text.encode()

    def frame(self, payload):
        if args.mode != "chunked":
            return payload
        out, pos = b"", 0
        while pos < len(payload):
            n = self.rng.randint(1, max(1, min(len(payload) - pos, 64)))
            size = "%x" % n
            if self.rng.random() < 0.3:
                size = size.upper()
            if self.rng.random() < 0.2:
                size = "00" + size
            ext = ";x=y" if self.rng.random() < 0.1 else ""
            out += (size + ext + "\r\n").encode() + payload[pos:pos + n] + b"\r\n"
            pos += n
        return out

    async def send_raw(self, data):
        if not args.split:
            self.w.write(data)
            await self.w.drain()
            return
        pos = 0
        while pos < len(data):
            n = self.rng.randint(1, 40)
            self.w.write(data[pos:pos + n])
            await self.w.drain()
            pos += n
            if self.rng.random() < 0.3:
                await asyncio.sleep(0.002)

    async def run(self):
        try:
            while True:
                item = await self.q.get()
                if item is None:
                    break
                await self.send_raw(self.frame(item))
            if args.mode == "chunked":
                await self.send_raw(b"0\r\nX-Trailer: 1\r\n\r\n")
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            streams.discard(self)
            self.w.close()


def message_lines(event, data, mid):
    body = json.dumps(data, separators=(",", ":"))
    lines = ["id: %s" % mid, "event: %s" % event]
    if "," in body and random.random() < 0.5:       # data over two data: lines
        k = body.index(",") + 1
        lines += ["data: " + body[:k], "data:" + body[k:]]
    else:
        lines.append("data: " + body)
    return lines


async def respond(writer, status, obj, extra=""):
    body = json.dumps(obj).encode()
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}[status]
    writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\n%s\r\n" % (status, reason, len(body), extra)).encode() + body)
    await writer.drain()


async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for l in lines[1:]:
                if ":" in l:
                    k, v = l.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            body = b""
            if "content-length" in hdrs:
                body = await reader.readexactly(int(hdrs["content-length"]))
            path = target.split("?", 1)[0]
            if method == "GET" and path == "/sse/stream":
                await open_stream(reader, writer, target, hdrs)
                return
            if method == "POST" and path == "/api/sse/broadcast":
                msg = json.loads(body)
                counter["msg"] += 1
                mid = "%d-test" % counter["msg"]
                targets = [s for s in streams if not s.closed]
                for s in targets:
                    s.q.put_nowait(s.event_text(message_lines(msg["event"], msg["data"], mid)))
                await respond(writer, 200, {"success": True, "data": {"id": mid, "recipients": len(targets)}})
            elif path == "/api/sse/health":
                await respond(writer, 200, {"success": True, "data": {"status": "ok"}})
            else:
                await respond(writer, 404, {"success": False, "error": {"code": "not_found", "message": "no"}})
    except (ConnectionError, OSError):
        writer.close()


async def open_stream(reader, writer, target, hdrs):
    counter["requests"] += 1
    idx = counter["requests"]
    if "token=" not in target and "authorization" not in hdrs:
        await respond(writer, 401, {"success": False, "error": {"code": "missing_token", "message": "no token"}},
                      'WWW-Authenticate: Bearer\r\n')
        writer.close()
        return
    if args.fail_every and idx % args.fail_every == 0:
        await respond(writer, 503, {"success": False, "error": {"code": "too_many_clients", "message": "full"}})
        writer.close()
        return
    s = Stream(writer, idx)
    first = ("retry: 3000" + s.eol + s.eol).encode() + s.event_text(
        ["event: connected", 'data: {"client_id":"%s","timestamp":%d}' % (uuid.uuid4(), time.time())])
    if args.mode == "length":
        body = first
        for i in range(args.length_messages):
            body += s.event_text(message_lines("bench", {"ts_us": time.time_ns() // 1000, "seq": i + 1}, str(i)))
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
        await s.send_raw(head.encode() + body)
        # keep the connection open a moment: the client must end on the length
        await asyncio.sleep(0.5)
        writer.close()
        return
    if args.mode == "chunked":
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    else:
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    await s.send_raw(head.encode())
    streams.add(s)
    s.q.put_nowait(first)
    await s.run()


async def main():
    global args
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["chunked", "eof", "length"], default="chunked")
    ap.add_argument("--split", action="store_true", help="write wire bytes in random pieces")
    ap.add_argument("--line-endings", choices=["lf", "crlf", "cr", "mix"], default="mix")
    ap.add_argument("--pings", action="store_true")
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--length-messages", type=int, default=3)
    ap.add_argument("--lifetime", type=float, default=120, help="exit after this many seconds")
    args = ap.parse_args()
    srv = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=4096)
    print("listening", flush=True)
    async with srv:
        await asyncio.sleep(args.lifetime)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
