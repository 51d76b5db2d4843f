#!/usr/bin/python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (deterministic:
run it again after changing a seed below). Tokens are signed with the fixed
test secret of fuzz_common.h (FUZZ_SECRET) and expire in 2100. The FastCGI
seeds are built with the tests' FastCGI client (tests/integration/
fcgi_client.py), unpadded to keep them small. Only the generated seeds (named
by their SHA-1) are replaced; replayed crashes (regress-*) stay.

    /usr/bin/python3 tests/fuzz/gen_seeds.py
"""

import hashlib
import json
import re
import struct
import sys
from pathlib import Path

import jwt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import fcgi_client as fcgi  # noqa: E402
SECRET = b"ssehub-fuzz-secret-0123456789abcdef"
EXP = 4102444800


def token(claims, alg="HS256", key=SECRET):
    t = jwt.encode(claims, key, algorithm=alg)
    return t.decode() if isinstance(t, bytes) else t


ADMIN = token({"user_id": "fuzz-admin", "role": "admin", "exp": EXP})
USER = token({"user_id": 7, "exp": EXP})


def write(target, seeds):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        if re.fullmatch(r"[0-9a-f]{40}", old.name):
            old.unlink()
    for data in seeds:
        if isinstance(data, str):
            data = data.encode()
        name = hashlib.sha1(data).hexdigest()
        (d / name).write_bytes(data)


# ---- admin_api: route byte + body

def admin_api():
    B, U, C, D, P, S, X = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"
    cid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    return [
        B + b'{"event":"news","data":{"title":"hi"}}',
        B + b'{"event":"news","data":"x","id":"m-1","retry":2500}',
        B + b'{"event":"e","data":[1,2.5,null,true,{"a":"\\u00e9\\n"}]}',
        U + b'{"user_id":1,"event":"notification","data":{"n":1}}',
        U + b'{"user_id":"bob","event":"n","data":null}',
        C + ('{"client_id":"%s","event":"direct","data":1}' % cid).encode(),
        D + b'{"user_id":"1","reason":"logout"}',
        D + ('{"client_id":"%s"}' % cid).encode(),
        B + b'{"event":"bad\\nname","data":1}',
        B + b'{"event":"e","data":1} trailing',
        B + b'{"event":"e","data":',
        B + b'[1,2,3]',
        B + b'{"event":"e","data":"' + b"\xc3\x28" + b'"}',
        B + b'{"event":"' + b"e" * 65 + b'","data":1}',
        B + b'{"event":"e","data":1,"id":"' + b"i" * 129 + b'"}',
        B + b'{"event":"e","data":' + b"[" * 40 + b"]" * 40 + b"}",
        B + b'{"event":"e","data":"\\ud800"}',
        U + b'{"user_id":18446744073709551616,"event":"e","data":1}',
        B + b'{"event":"e","data":"' + b"x" * 2100 + b'"}',
        P + b'{"topic":"orders/42","event":"status","data":{"s":1}}',
        P + b'{"topic":"a\\u0000b","event":"e","data":1}',
        S + b'{"user_id":"u","topics":["room/1","room/1","lobby"]}',
        S + ('{"client_id":"%s","topics":["a:b@c"]}' % cid).encode(),
        X + b'{"user_id":7,"topics":["x y"]}',
        X + b'{"user_id":7,"topics":' + json.dumps(["t%d" % i for i in range(33)]).encode() + b'}',
    ]


# ---- query_cookie: authorization NUL cookie NUL query NUL name

def query_cookie():
    return [
        b"Bearer abc.def.ghi\0theme=dark; token=xyz; lang=en\0foo=bar&token=a%20b&x=1\0token",
        b"\0token=\"quoted\"; other=1\0\0last_event_id",
        b"bearer   spaced   \0\0token=\0token",
        b"Basic dXNlcjpwYXNz\0token=c1\0token=q1&last_event_id=42-7f%0A\0last_event_id",
        b"\0 ; ;token=a;token=b\0token=%zz&token=ok\0token",
        b"\0\0a=1&&b=%41%42+c&=empty&token=%00\0b",
        b"Bearer " + b"t" * 9000 + b"\0\0\0token",
        b"\0\0topic=orders/42&topic=rooms%2Fops&token=x&topic=orders%2F42\0topic",
        b"\0\0topic=a%00b&topic=ok\0topic",
        b"\0\0" + b"&".join(b"topic=t%d" % i for i in range(33)) + b"\0topic",
        b"\0\0topic&topic=&topic=" + b"x" * 201 + b"&topic=%2F" * 3 + b"\0topics",
    ]


# ---- token: mode byte + part

def token_seeds():
    valid_claims = {"user_id": "u1", "role": "admin", "exp": EXP, "iat": 1700000000}
    return [
        b"\x00" + ADMIN.encode(),
        b"\x00" + USER.encode(),
        b"\x00" + token({"user_id": 1, "exp": EXP}, key=b"wrong").encode(),
        b"\x00eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.",
        b"\x00a.b.c.d",
        b"\x01" + json.dumps(valid_claims).encode(),
        b"\x01" + json.dumps({"sub": "s", "exp": 1}).encode(),
        b"\x01" + json.dumps({"user_id": 5, "exp": EXP, "nbf": EXP}).encode(),
        b"\x01" + json.dumps({"user_id": [1], "exp": EXP, "aud": ["a", "b"], "iss": "x"}).encode(),
        b"\x01" + json.dumps({"user_id": "u", "exp": 4.1e9, "role": ["admin"]}).encode(),
        b"\x02" + json.dumps(valid_claims).encode(),
        b"\x02" + b'{"user_id":"u","exp":4102444800,"user_id":"v"}',
        b"\x02" + b'{"user_id":"u","exp":"4102444800"}',
        b"\x02not json at all",
        b"\x03" + b'{"alg":"HS256","typ":"JWT"}',
        b"\x03" + b'{"alg":"HS256","alg":"none"}',
        b"\x03" + b'{"alg":"none"}',
        b"\x04" + json.dumps(valid_claims).encode(),
        b"\x05" + json.dumps(valid_claims).encode(),
    ]


# ---- sse_encode: flags, retry (LE32), event NUL id NUL data

def sse_encode():
    def seed(flags, retry, event, id_, data):
        return bytes([flags]) + struct.pack("<I", retry) + event + b"\0" + id_ + b"\0" + data
    return [
        seed(0, 0, b"message", b"", b'{"a":1}'),
        seed(1, 0, b"news", b"42-7f3a", b"line1\nline2"),
        seed(3, 3000, b"e", b"i", b"a\r\nb\rc\n\nd\r"),
        seed(3, 0, b" spaced", b" id", b""),
        seed(1, 0, b"data", b"data: x", b":not a comment\n:still data"),
        seed(2, 86400000, b"retry", b"", b"\r\r\n\n"),
        seed(1, 0, b"\xef\xbb\xbfbom", b"\xc3\xa9", b"\xe2\x82\xac"),
        seed(1, 0, b"bad\nevent", b"id", b"x"),
    ]


# ---- fastcgi_input: whole connections (records without padding)

def request(method, uri, headers=None, body=b"", role=fcgi.RESPONDER, flags=0, rid=1):
    path, _, query = uri.partition(b"?")
    params = [(b"REQUEST_METHOD", method), (b"REQUEST_URI", uri), (b"DOCUMENT_URI", path),
              (b"QUERY_STRING", query), (b"CONTENT_LENGTH", str(len(body)).encode())]
    params += list((headers or {}).items())
    return fcgi.request_bytes(params, body, rid, role, flags, padding=0)


def fastcgi_input():
    admin = {b"HTTP_AUTHORIZATION": b"Bearer " + ADMIN.encode()}
    user = {b"HTTP_AUTHORIZATION": b"Bearer " + USER.encode()}
    return [
        request(b"GET", b"/api/sse/health"),
        request(b"GET", b"/api/sse/stats", admin),
        request(b"GET", b"/metrics", admin),
        request(b"GET", b"/sse/stream", user),
        request(b"GET", b"/sse/stream?last_event_id=abc&token=" + USER.encode()),
        request(b"GET", b"/sse/stream", {b"HTTP_COOKIE": b"token=" + USER.encode(),
                                          b"HTTP_LAST_EVENT_ID": b"1-1"}),
        request(b"POST", b"/api/sse/broadcast", admin, b'{"event":"e","data":{"x":1}}'),
        request(b"POST", b"/api/sse/send-to-user", admin, b'{"user_id":7,"event":"e","data":[]}'),
        request(b"POST", b"/api/sse/disconnect", admin, b'{"user_id":7}'),
        request(b"POST", b"/api/sse/stats", admin),
        request(b"GET", b"/nope"),
        request(b"GET", b"/api/sse/stats", {b"HTTP_AUTHORIZATION": b"Bearer x.y.z"}),
        request(b"GET", b"/api/sse/health", role=2),
        request(b"GET", b"/api/sse/health", flags=1),
        fcgi.get_values(padding=0) + request(b"GET", b"/api/sse/health"),
        fcgi.record(99, b"abc", 0, padding=0) + fcgi.record(99, b"abc", 1, padding=0) +
        request(b"GET", b"/api/sse/health"),
        request(b"GET", b"/api/sse/health")[:30],
        fcgi.begin_request() + fcgi.abort_request() + fcgi.record(fcgi.PARAMS),
        fcgi.begin_request() + fcgi.begin_request(2) + fcgi.record(fcgi.PARAMS) + fcgi.record(fcgi.STDIN),
        request(b"GET", b"/api/sse/health", {b"HTTP_X": b"v" * 70000})[:65536],
        fcgi.record(fcgi.PARAMS, fcgi.encode_pair(b"A", b"B"), padding=7),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]


if __name__ == "__main__":
    write("fuzz_admin_api", admin_api())
    write("fuzz_query_cookie", query_cookie())
    write("fuzz_token", token_seeds())
    write("fuzz_sse_encode", sse_encode())
    write("fuzz_fastcgi_input", fastcgi_input())
    for d in sorted((HERE / "corpus").iterdir()):
        print("%-22s %d seeds" % (d.name, len(list(d.iterdir()))))
