"""A raw FastCGI client for talking to ssehub without a front server.

Plain Python (no pytest). It builds every record by hand so that tests can
send exactly what they mean, including things a front server never sends:

* record(), begin_request(), stream_records(): single records and whole
  streams (PARAMS / STDIN / DATA split into records of at most 65535 content
  bytes, ended by the empty record), with any request id, padding or version;
* encode_pair() / encode_pairs(): name-value pairs with 1-byte lengths
  (< 128) or 4-byte lengths (high bit set), the long form forced on demand;
  decode_pairs() for GET_VALUES_RESULT;
* RecordReader: incremental record parsing of what the application sends;
* FcgiConnection: one socket (unix:/path, HOST:PORT, [V6]:PORT) with a
  timeout on every send and read, send_request() for a whole responder
  request, read_response() collecting STDOUT / STDERR / END_REQUEST for one
  request id, and FcgiResponse.http() for the CGI-style status/headers/body.

    resp = request("unix:/tmp/x.sock", "GET", "/api/sse/health")
    status, headers, body = resp.http()
"""

import json
import socket
import struct
import time
from collections import namedtuple

import ssehub_harness as h

VERSION_1 = 1

BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

FLAG_KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

MAX_CONTENT = 0xFFFF
HEADER = struct.Struct("!BBHHBx")

DEFAULT_TIMEOUT = 5.0


class FcgiTimeout(AssertionError):
    pass


# ---------------------------------------------------------------- encoding


def _b(x):
    return x if isinstance(x, bytes) else str(x).encode("utf-8")


def encode_length(n, force_long=False):
    """1 byte for n < 128 (unless force_long), else 4 bytes with the high bit set."""
    if n < 0 or n > 0x7FFFFFFF:
        raise ValueError("FastCGI lengths are 31-bit: %d" % n)
    if n < 128 and not force_long:
        return bytes([n])
    return struct.pack("!I", n | 0x80000000)


def encode_pair(name, value, force_long=False):
    name, value = _b(name), _b(value)
    return (encode_length(len(name), force_long) + encode_length(len(value), force_long) + name + value)


def encode_pairs(pairs, force_long=False):
    """pairs: dict or iterable of (name, value) (str or bytes)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(encode_pair(n, v, force_long) for n, v in items)


def decode_pairs(data):
    """Inverse of encode_pairs: [(name bytes, value bytes)]. ValueError on truncation."""
    out = []
    i = 0

    def length():
        nonlocal i
        if i >= len(data):
            raise ValueError("truncated length at %d" % i)
        if data[i] & 0x80:
            if i + 4 > len(data):
                raise ValueError("truncated long length at %d" % i)
            n = struct.unpack("!I", data[i:i + 4])[0] & 0x7FFFFFFF
            i += 4
        else:
            n = data[i]
            i += 1
        return n

    while i < len(data):
        nl = length()
        vl = length()
        if i + nl + vl > len(data):
            raise ValueError("truncated pair at %d" % i)
        out.append((data[i:i + nl], data[i + nl:i + nl + vl]))
        i += nl + vl
    return out


def record(rtype, content=b"", request_id=1, padding=None, version=VERSION_1):
    """One record. padding=None pads the content to a multiple of 8 (as the
    spec recommends); an int gives that many padding bytes."""
    content = _b(content)
    if len(content) > MAX_CONTENT:
        raise ValueError("record content over 65535 bytes (%d); use stream_records" % len(content))
    if padding is None:
        padding = (-len(content)) % 8
    return HEADER.pack(version, rtype, request_id, len(content), padding) + content + b"\0" * padding


def begin_request(request_id=1, role=RESPONDER, flags=0):
    return record(BEGIN_REQUEST, struct.pack("!HB5x", role, flags), request_id)


def abort_request(request_id=1):
    return record(ABORT_REQUEST, b"", request_id)


def stream_records(rtype, data, request_id=1, chunk=MAX_CONTENT, terminate=True):
    """A stream (PARAMS, STDIN, DATA) cut into records of at most `chunk`
    content bytes, followed by the empty record unless terminate is False.
    Pairs are allowed to span records, as the spec says."""
    data = _b(data)
    if not 1 <= chunk <= MAX_CONTENT:
        raise ValueError("chunk must be 1..65535")
    out = [record(rtype, data[i:i + chunk], request_id) for i in range(0, len(data), chunk)]
    if terminate:
        out.append(record(rtype, b"", request_id))
    return b"".join(out)


def get_values(names):
    """A management GET_VALUES record (request id 0) asking for names."""
    return record(GET_VALUES, encode_pairs([(n, b"") for n in names]), 0)


def cgi_params(method="GET", uri="/api/sse/health", headers=None, body=b"", extra=None):
    """The CGI parameters a front server would send for one HTTP request.
    headers: {"Authorization": "..."} become HTTP_AUTHORIZATION etc.;
    extra: further (name, value) pairs, added last (can override)."""
    path, _, query = uri.partition("?")
    params = [("REQUEST_METHOD", method), ("REQUEST_URI", uri), ("QUERY_STRING", query),
              ("DOCUMENT_URI", path), ("SCRIPT_NAME", path), ("SERVER_PROTOCOL", "HTTP/1.1"),
              ("GATEWAY_INTERFACE", "CGI/1.1"), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
              ("SERVER_ADDR", "127.0.0.1"), ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80")]
    if body:
        params += [("CONTENT_LENGTH", str(len(body))), ("CONTENT_TYPE", "application/json")]
    for k, v in (headers or {}).items():
        params.append(("HTTP_" + k.upper().replace("-", "_"), v))
    params += list(extra or [])
    return params


# ---------------------------------------------------------------- decoding

Record = namedtuple("Record", "version type request_id content padding")


class RecordReader:
    """Feed bytes; complete records come out of feed() in order."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data):
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            version, rtype, rid, clen, plen = HEADER.unpack(bytes(self._buf[:HEADER.size]))
            total = HEADER.size + clen + plen
            if len(self._buf) < total:
                break
            content = bytes(self._buf[HEADER.size:HEADER.size + clen])
            del self._buf[:total]
            out.append(Record(version, rtype, rid, content, plen))
        return out

    @property
    def pending(self):
        return len(self._buf)


class FcgiResponse:
    """What the application sent for one request id."""

    def __init__(self, request_id):
        self.request_id = request_id
        self.stdout = b""
        self.stderr = b""
        self.stdout_closed = False      # the empty STDOUT record arrived
        self.end = None                 # (app_status, protocol_status)
        self.records = []               # Record, in order (this request id and management ones)
        self.eof = False                # the peer closed the connection
        self.elapsed = None             # seconds from the end of sending to END_REQUEST/EOF

    @property
    def complete(self):
        return self.end is not None

    def http(self):
        """(status int, headers {lower name: value}, body bytes) from the
        CGI-style stdout (Status: header, default 200)."""
        return h.split_cgi(self.stdout, require_separator=True)

    def json(self):
        return json.loads(self.http()[2].decode("utf-8"))

    def __repr__(self):
        return "<FcgiResponse id=%d end=%r eof=%s stdout=%r>" % (
            self.request_id, self.end, self.eof, self.stdout[:200])


# ---------------------------------------------------------------- connection


class FcgiConnection:
    """One connection to a FastCGI application. Every send and read is
    bounded by a timeout."""

    def __init__(self, listen, timeout=DEFAULT_TIMEOUT):
        self.listen = listen
        self.timeout = timeout
        self.sock = h.connect_to(listen, timeout)
        self.reader = RecordReader()
        self.backlog = []               # records read but not consumed yet
        self.eof = False
        self.send_error = None          # exception raised while sending, if any

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data, timeout=None):
        """sendall with a deadline. A peer that closes or resets while we are
        still sending is recorded in send_error (the answer it may have sent
        before can still be read); a timeout raises FcgiTimeout."""
        data = memoryview(_b(data))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FcgiTimeout("could not send %d more bytes in time" % len(data))
                self.sock.settimeout(left)
                try:
                    n = self.sock.send(data[:262144])
                except socket.timeout:
                    continue
                data = data[n:]
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.send_error = exc
            return False
        return True

    def send_request(self, params, stdin=b"", request_id=1, role=RESPONDER, keep_conn=False,
                     chunk=MAX_CONTENT, force_long=False, timeout=None):
        """BEGIN_REQUEST, the PARAMS stream, the STDIN stream."""
        msg = begin_request(request_id, role, FLAG_KEEP_CONN if keep_conn else 0)
        msg += stream_records(PARAMS, encode_pairs(params, force_long), request_id, chunk)
        msg += stream_records(STDIN, stdin, request_id, chunk)
        return self.send(msg, timeout)

    def read_record(self, timeout=None):
        """The next record; None at EOF; FcgiTimeout when none arrives in time."""
        if self.backlog:
            return self.backlog.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.backlog:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise FcgiTimeout("no FastCGI record within %ss" % (self.timeout if timeout is None else timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                if self.reader.pending:
                    raise AssertionError("connection closed inside a record (%d bytes pending)" % self.reader.pending)
                continue
            self.backlog += self.reader.feed(data)
        return self.backlog.pop(0)

    def read_response(self, request_id=1, timeout=None, until=None):
        """Collects records for request_id until END_REQUEST, EOF, or
        until(response) is true. Raises FcgiTimeout (with what came so far)."""
        resp = FcgiResponse(request_id)
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        while True:
            if until is not None and until(resp):
                return resp
            try:
                rec = self.read_record(max(0.0, deadline - time.monotonic()))
            except FcgiTimeout:
                raise FcgiTimeout("no END_REQUEST within %.1fs; so far %r" % (deadline - start, resp)) from None
            if rec is None:
                resp.eof = True
                resp.elapsed = time.monotonic() - start
                return resp
            if rec.request_id not in (request_id, 0):
                continue
            resp.records.append(rec)
            if rec.type == STDOUT:
                if rec.content:
                    resp.stdout += rec.content
                else:
                    resp.stdout_closed = True
            elif rec.type == STDERR:
                resp.stderr += rec.content
            elif rec.type == END_REQUEST:
                resp.end = struct.unpack("!IB3x", rec.content[:8])
                resp.elapsed = time.monotonic() - start
                return resp

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request(listen, method="GET", uri="/api/sse/health", headers=None, body=b"", extra=None,
            timeout=DEFAULT_TIMEOUT):
    """One complete responder request on a fresh connection -> FcgiResponse."""
    with FcgiConnection(listen, timeout) as c:
        c.send_request(cgi_params(method, uri, headers, body, extra), stdin=_b(body))
        return c.read_response(1, timeout)
