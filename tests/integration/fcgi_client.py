"""The FastCGI client of the tests and benches: the one place in Python that
writes and reads FastCGI records.

Standard library only, no pytest and no harness import: the integration
harness, the fault and keep-conn tests, tests/fuzz/gen_seeds.py,
tests/install/run.sh and bench/ all import it. It builds every record by
hand so that a test can send exactly what it means, including what a front
server never sends:

* header() alone (it may announce more content than follows), record() with
  any type, request id, version and padding, begin_request(),
  abort_request(), get_values(), stream_records() (a PARAMS / STDIN / DATA
  stream cut into records of at most 65535 bytes, or any smaller size, ended
  by the empty record), params_records() and request_bytes() (a whole
  request);
* encode_pair() / encode_pairs(): name-value pairs with 1-byte lengths
  (< 128) or 4-byte lengths (high bit set), the long form forced on demand;
  cgi_params(): what a front server sends for one HTTP request;
* decoding: RecordReader (incremental), decode_pairs(), decode_end_request(),
  decode_unknown_type(), decode_get_values_result(), split_cgi();
* FcgiConnection: one socket (unix:/path, HOST:PORT, [V6]:PORT) with a
  deadline on every send and read; send_request(), read_record(),
  read_response() (STDOUT / STDERR / END_REQUEST of one request id, plus the
  management records) and read_until_eof(); every record read is kept in
  .received;
* FcgiRequest: a connection that sent one request at once and reads its
  answer as it comes (a stream held open); request() and health(): one whole
  request on a fresh connection.

    resp = request("unix:/tmp/x.sock", "GET", "/api/sse/health")
    status, headers, body = resp.http()
"""

import json
import re
import socket
import struct
import time
from collections import namedtuple

# ---------------------------------------------------------------- the protocol (fastcgi.h)

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

MAX_CONNS = "FCGI_MAX_CONNS"
MAX_REQS = "FCGI_MAX_REQS"
MPXS_CONNS = "FCGI_MPXS_CONNS"

MAX_CONTENT = 0xFFFF
HEADER = struct.Struct("!BBHHBx")           # FCGI_Header
BEGIN_BODY = struct.Struct("!HB5x")         # FCGI_BeginRequestBody
END_BODY = struct.Struct("!IB3x")           # FCGI_EndRequestBody
UNKNOWN_BODY = struct.Struct("!B7x")        # FCGI_UnknownTypeBody

DEFAULT_TIMEOUT = 5.0


class FcgiTimeout(AssertionError):
    pass


# ---------------------------------------------------------------- addresses


def listen_target(listen):
    """'unix:/p' -> ('unix', '/p'); '127.0.0.1:9' -> ('tcp', ('127.0.0.1', 9));
    '[::1]:9' -> ('tcp', ('::1', 9))."""
    if listen.startswith("unix:"):
        return "unix", listen[5:]
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", listen) or re.fullmatch(r"([^:]+):(\d+)", listen)
    if not m:
        raise ValueError("bad listen address %r" % listen)
    return "tcp", (m.group(1), int(m.group(2)))


def connect_to(listen, timeout=DEFAULT_TIMEOUT):
    """A connected stream socket for a --listen value (OSError when refused)."""
    kind, addr = listen_target(listen)
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


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


def header(rtype, content_length, request_id=1, padding=0, version=VERSION_1):
    """A record header alone; it may announce content that never follows."""
    return HEADER.pack(version, rtype, request_id, content_length, padding)


def record(rtype, content=b"", request_id=1, padding=None, version=VERSION_1):
    """One record. padding=None pads the content to a multiple of 8 (as the
    spec recommends and nginx does); an int gives that many padding bytes."""
    content = _b(content)
    if len(content) > MAX_CONTENT:
        raise ValueError("record content over 65535 bytes (%d); use stream_records" % len(content))
    if padding is None:
        padding = (-len(content)) % 8
    return header(rtype, len(content), request_id, padding, version) + content + b"\0" * padding


def begin_request(request_id=1, role=RESPONDER, flags=0, **kw):
    """kw: record()'s padding and version."""
    return record(BEGIN_REQUEST, BEGIN_BODY.pack(role, flags), request_id, **kw)


def abort_request(request_id=1, **kw):
    return record(ABORT_REQUEST, b"", request_id, **kw)


def stream_records(rtype, data, request_id=1, chunk=MAX_CONTENT, terminate=True, padding=None):
    """A stream (PARAMS, STDIN, DATA) cut into records of at most `chunk`
    content bytes, followed by the empty record unless terminate is False.
    Pairs are allowed to span records, as the spec says."""
    data = _b(data)
    if not 1 <= chunk <= MAX_CONTENT:
        raise ValueError("chunk must be 1..65535")
    out = [record(rtype, data[i:i + chunk], request_id, padding) for i in range(0, len(data), chunk)]
    if terminate:
        out.append(record(rtype, b"", request_id, padding))
    return b"".join(out)


def get_values(names=(MAX_CONNS, MAX_REQS, MPXS_CONNS), **kw):
    """A management GET_VALUES record (request id 0) asking for names."""
    return record(GET_VALUES, encode_pairs([(n, b"") for n in names]), 0, **kw)


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


def params_records(params, request_id=1, chunk=MAX_CONTENT, force_long=False, padding=None):
    """The PARAMS stream of params (see cgi_params), ended by the empty record."""
    return stream_records(PARAMS, encode_pairs(params, force_long), request_id, chunk, padding=padding)


def request_bytes(params, stdin=b"", request_id=1, role=RESPONDER, flags=0, chunk=MAX_CONTENT,
                  force_long=False, padding=None):
    """BEGIN_REQUEST, the PARAMS stream and the STDIN stream of one request."""
    return (begin_request(request_id, role, flags, padding=padding) +
            params_records(params, request_id, chunk, force_long, padding) +
            stream_records(STDIN, stdin, request_id, chunk, padding=padding))


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


def _body(rec, rtype, body):
    if rec.type != rtype:
        raise ValueError("record type %d, expected %d: %r" % (rec.type, rtype, rec))
    if len(rec.content) != body.size:
        raise ValueError("record type %d with %d content bytes, expected %d" % (
            rtype, len(rec.content), body.size))
    return body.unpack(rec.content)


def decode_end_request(rec):
    """(app_status, protocol_status) of an END_REQUEST record (ValueError otherwise)."""
    return _body(rec, END_REQUEST, END_BODY)


def decode_unknown_type(rec):
    """The type an UNKNOWN_TYPE record says it did not know (ValueError otherwise)."""
    return _body(rec, UNKNOWN_TYPE, UNKNOWN_BODY)[0]


def decode_get_values_result(rec):
    """{name: value} (str) of a GET_VALUES_RESULT record; ValueError for
    another type, a request id other than 0, or malformed pairs."""
    if rec.type != GET_VALUES_RESULT or rec.request_id != 0:
        raise ValueError("not a management GET_VALUES_RESULT record: %r" % (rec,))
    return {n.decode("latin-1"): v.decode("latin-1") for n, v in decode_pairs(rec.content)}


def split_cgi(stdout, require_separator=False):
    """(status int, headers {lower name: value}, body bytes) from a CGI-style
    answer (a Status: header, 200 when absent). Without a blank line after
    the headers, the whole answer is the head -- or, with
    require_separator, that is an AssertionError."""
    head, sep, rest = stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = stdout.partition(b"\n\n")
    if not sep and require_separator:
        raise AssertionError("no header/body separator in stdout %r" % stdout[:300])
    hdrs = {}
    for line in head.decode("iso-8859-1").splitlines():
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    status = int(hdrs.get("status", "200").split()[0])
    return status, hdrs, rest


class FcgiResponse:
    """What the application sent for one request id (and on request id 0)."""

    def __init__(self, request_id):
        self.request_id = request_id
        self.stdout = b""
        self.stderr = b""
        self.stdout_closed = False      # the empty STDOUT record arrived
        self.end = None                 # (app_status, protocol_status)
        self.records = []               # Record, in order (this request id and management ones)
        self.eof = False                # the peer closed the connection
        self.elapsed = None             # seconds from the start of reading to END_REQUEST/EOF

    @property
    def complete(self):
        return self.end is not None

    def http(self):
        """(status int, headers {lower name: value}, body bytes) from the
        CGI-style stdout (Status: header, default 200)."""
        return split_cgi(self.stdout, require_separator=True)

    def json(self):
        return json.loads(self.http()[2].decode("utf-8"))

    def values(self):
        """{name: value} from every GET_VALUES_RESULT record received."""
        out = {}
        for rec in self.records:
            if rec.type == GET_VALUES_RESULT:
                out.update(decode_get_values_result(rec))
        return out

    def unknown_types(self):
        """The types named by the UNKNOWN_TYPE records received, in order."""
        return [decode_unknown_type(rec) for rec in self.records if rec.type == UNKNOWN_TYPE]

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
        self.sock = connect_to(listen, timeout)
        self.reader = RecordReader()
        self.backlog = []               # records read from the socket, not returned yet
        self.received = []              # every record returned by read_record, in order
        self.eof = False
        self.send_error = None          # exception raised while sending, if any

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def send(self, data, timeout=None):
        """sendall with a deadline. A peer that closes or resets while we are
        still sending is recorded in send_error and False is returned (the
        answer it may have sent before can still be read); a timeout raises
        FcgiTimeout."""
        data = memoryview(_b(data))
        deadline = self._deadline(timeout)
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
        return self.send(request_bytes(params, _b(stdin), request_id, role, FLAG_KEEP_CONN if keep_conn else 0,
                                       chunk, force_long), timeout)

    def read_record(self, timeout=None):
        """The next record; None at EOF; FcgiTimeout when none arrives in time.
        A connection that ends inside a record is an AssertionError."""
        deadline = self._deadline(timeout)
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
        rec = self.backlog.pop(0)
        self.received.append(rec)
        return rec

    def read_until_eof(self, timeout=None):
        """Reads every record until the peer closes (True) or the timeout
        passes (False); the records are in .received."""
        deadline = self._deadline(timeout)
        try:
            while self.read_record(max(0.0, deadline - time.monotonic())) is not None:
                pass
        except FcgiTimeout:
            return False
        return True

    def read_response(self, request_id=1, timeout=None, until=None, into=None):
        """Collects the records of request_id (and management records) until
        END_REQUEST, EOF, or until(response) is true. into: an FcgiResponse
        to go on filling (a stream read in several steps). Raises
        FcgiTimeout (with what came so far)."""
        resp = into if into is not None else FcgiResponse(request_id)
        start = time.monotonic()
        deadline = self._deadline(timeout)
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
            elif rec.type == END_REQUEST and rec.request_id == request_id:
                resp.end = decode_end_request(rec)
                resp.elapsed = time.monotonic() - start
                return resp

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class FcgiRequest(FcgiConnection):
    """A fresh connection that sends one responder request at once and reads
    its answer as it comes, in as many steps as the test wants (a stream
    held open straight on the socket). The answer so far is .response."""

    def __init__(self, listen, method="GET", uri="/api/sse/health", headers=None, body=b"",
                 timeout=DEFAULT_TIMEOUT, request_id=1):
        super().__init__(listen, timeout)
        self.response = FcgiResponse(request_id)
        body = _b(body)
        self.send_request(cgi_params(method, uri, headers, body), stdin=body, request_id=request_id)

    def read(self, until, timeout=None):
        """Reads until until(response) is true or the request ended
        (END_REQUEST or EOF): True; False when the timeout passed first."""
        r = self.response
        try:
            self.read_response(r.request_id, timeout, lambda x: until(x) or x.complete or x.eof, into=r)
        except FcgiTimeout:
            return False
        return True

    def read_to_end(self, timeout=None):
        """Reads until END_REQUEST or EOF; AssertionError on timeout."""
        if not self.read(lambda r: False, timeout):
            raise AssertionError("no FastCGI END_REQUEST within %ss (stdout %r)" % (
                self.timeout if timeout is None else timeout, self.response.stdout[:300]))
        return self.response


def request(listen, method="GET", uri="/api/sse/health", headers=None, body=b"", extra=None,
            timeout=DEFAULT_TIMEOUT):
    """One complete responder request on a fresh connection -> FcgiResponse."""
    with FcgiConnection(listen, timeout) as c:
        c.send_request(cgi_params(method, uri, headers, body, extra), stdin=_b(body))
        return c.read_response(1, timeout)


def health(listen, timeout=DEFAULT_TIMEOUT):
    """True when GET /api/sse/health straight on the socket answers 200 with
    {"success": true} and END_REQUEST."""
    r = request(listen, timeout=timeout)
    return r.complete and r.http()[0] == 200 and r.json().get("success") is True
