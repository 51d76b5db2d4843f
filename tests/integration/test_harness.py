"""Self-tests of the harness's SSE parser and chunked decoder, of the
FastCGI client and of the example renderer (no ssehub needed): the
integration tests are only as good as these."""

import socket
import subprocess
import threading

import pytest

import fcgi_client as fcgi
import frontconf
from ssehub_harness import ChunkedDecoder, SSEParser, find_program


def parse(pieces):
    p = SSEParser()
    for piece in pieces:
        p.feed(piece)
    return list(p.blocks), p


def split_every(data, n):
    return [data[i:i + n] for i in range(0, len(data), n)]


STREAM = (b"retry: 3000\n\n"
          b"event: connected\ndata: {\"client_id\":\"x\"}\n\n"
          b": keep-alive comment\n\n"
          b"id: 7\r\nevent: note\r\ndata: line1\r\ndata: line2\r\n\r\n"
          b"data:no-space\rid\r\r"
          b"event: empty-data\ndata\n\n"
          b"event: not-dispatched\n\n")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_parser_split_reads(size):
    blocks, p = parse(split_every(STREAM, size))
    assert blocks[0].fields == [("retry", "3000")] and not blocks[0].dispatched
    assert blocks[0].retry == 3000
    assert (blocks[1].type, blocks[1].data, blocks[1].id) == ("connected", '{"client_id":"x"}', None)
    assert blocks[2].comments == [" keep-alive comment"] and not blocks[2].dispatched
    ev = blocks[3]
    assert (ev.type, ev.data, ev.id, ev.last_event_id) == ("note", "line1\nline2", "7", "7")
    ev = blocks[4]
    assert (ev.type, ev.data, ev.id, ev.last_event_id) == ("message", "no-space", "", "")
    ev = blocks[5]
    assert (ev.type, ev.data, ev.dispatched) == ("empty-data", "", True)
    assert blocks[6].dispatched is False and blocks[6].fields == [("event", "not-dispatched")]
    assert len(blocks) == 7
    assert p.reconnection_time == 3000


def test_parser_utf8_split_inside_character():
    data = 'data: {"t":"h\u00e9llo \u2603"}\n\n'.encode()
    blocks, _ = parse(split_every(data, 1))
    assert blocks[0].json() == {"t": "h\u00e9llo \u2603"}


def test_parser_bad_retry_and_bom():
    blocks, p = parse([b"\xef\xbb\xbfretry: 12a\ndata: x\n\n"])
    assert blocks[0].retry is None and p.reconnection_time is None
    assert blocks[0].fields[0] == ("retry", "12a")


def test_parser_incomplete_block_is_held_back():
    blocks, p = parse([b"event: a\ndata: 1\n"])
    assert blocks == []
    p.feed(b"\n")
    assert p.blocks[0].type == "a"


@pytest.mark.parametrize("size", [1, 3, 100])
def test_chunked_decoder(size):
    raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n"
    d = ChunkedDecoder()
    out = b"".join(d.feed(piece) for piece in split_every(raw, size))
    assert out == b"hello world" and d.done


def test_chunked_decoder_not_done_without_last_chunk():
    d = ChunkedDecoder()
    assert d.feed(b"3\r\nabc\r\n") == b"abc"
    assert not d.done


# ---- the FastCGI client


def test_fcgi_record_layout_and_padding():
    assert fcgi.record(fcgi.STDIN, b"abc", 258) == b"\x01\x05\x01\x02\x00\x03\x05\x00abc" + b"\0" * 5
    assert fcgi.record(fcgi.STDIN, b"abc", padding=0, version=2) == b"\x02\x05\x00\x01\x00\x03\x00\x00abc"
    assert fcgi.begin_request(1, flags=fcgi.FLAG_KEEP_CONN) == (b"\x01\x01\x00\x01\x00\x08\x00\x00"
                                                             b"\x00\x01\x01\x00\x00\x00\x00\x00")
    assert fcgi.header(fcgi.PARAMS, 65535) == b"\x01\x04\x00\x01\xff\xff\x00\x00"
    with pytest.raises(ValueError):
        fcgi.record(fcgi.STDIN, b"x" * 65536)


@pytest.mark.parametrize("size", [1, 5, 8, 1000])
def test_fcgi_reader_split_reads(size):
    wire = fcgi.request_bytes(fcgi.cgi_params("POST", "/api/sse/broadcast", body=b"{}"), b"{}", request_id=7)
    reader = fcgi.RecordReader()
    recs = [r for piece in split_every(wire, size) for r in reader.feed(piece)]
    assert reader.pending == 0
    assert [(r.type, r.request_id) for r in recs] == [(fcgi.BEGIN_REQUEST, 7), (fcgi.PARAMS, 7), (fcgi.PARAMS, 7),
                                                      (fcgi.STDIN, 7), (fcgi.STDIN, 7)]
    assert all(len(r.content) % 8 + r.padding in (0, 8) for r in recs)
    params = dict(fcgi.decode_pairs(recs[1].content))
    assert params[b"REQUEST_URI"] == b"/api/sse/broadcast" and params[b"CONTENT_LENGTH"] == b"2"


def test_fcgi_pairs_short_and_long_lengths():
    pairs = [(b"A" * 127, b""), (b"B" * 128, b"v" * 300), (b"C", b"x")]
    data = fcgi.encode_pairs(pairs)
    assert data[:2] == b"\x7f\x00" and data[129:137] == b"\x80\x00\x00\x80\x80\x00\x01\x2c"
    assert fcgi.decode_pairs(data) == pairs
    forced = fcgi.encode_pairs([("N", "V")], force_long=True)
    assert forced == b"\x80\x00\x00\x01\x80\x00\x00\x01NV" and fcgi.decode_pairs(forced) == [(b"N", b"V")]
    for cut in (1, 130, 135, len(data) - 1):
        with pytest.raises(ValueError):
            fcgi.decode_pairs(data[:cut])


def test_fcgi_stream_records_split_and_terminated():
    recs = fcgi.RecordReader().feed(fcgi.stream_records(fcgi.PARAMS, b"p" * 70000, 3))
    assert [len(r.content) for r in recs] == [65535, 4465, 0] and {r.request_id for r in recs} == {3}
    recs = fcgi.RecordReader().feed(fcgi.stream_records(fcgi.STDIN, b"abc", chunk=1, terminate=False))
    assert [r.content for r in recs] == [b"a", b"b", b"c"]
    assert fcgi.stream_records(fcgi.STDIN, b"") == fcgi.record(fcgi.STDIN)


# The answers the FastCGI specification prescribes, written out byte by byte.
GET_VALUES_RESULT = (b"\x01\x0a\x00\x00\x00\x39\x07\x00"
                     b"\x0e\x04FCGI_MAX_CONNS1000" b"\x0d\x04FCGI_MAX_REQS1000" b"\x0f\x01FCGI_MPXS_CONNS0"
                     + b"\0" * 7)
UNKNOWN_TYPE = b"\x01\x0b\x00\x00\x00\x08\x00\x00" b"\x63\0\0\0\0\0\0\0"
END_REQUEST = b"\x01\x03\x00\x01\x00\x08\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00\x00"


def test_fcgi_management_answers_decode():
    values, unknown, end = fcgi.RecordReader().feed(GET_VALUES_RESULT + UNKNOWN_TYPE + END_REQUEST)
    assert fcgi.decode_get_values_result(values) == {fcgi.MAX_CONNS: "1000", fcgi.MAX_REQS: "1000",
                                                     fcgi.MPXS_CONNS: "0"}
    assert fcgi.decode_unknown_type(unknown) == 99
    assert fcgi.decode_end_request(end) == (0, fcgi.REQUEST_COMPLETE)
    for decode, rec in ((fcgi.decode_unknown_type, end), (fcgi.decode_end_request, unknown),
                        (fcgi.decode_get_values_result, end), (fcgi.decode_end_request, end._replace(content=b"\0"))):
        with pytest.raises(ValueError):
            decode(rec)
    assert fcgi.get_values() == (b"\x01\x09\x00\x00\x00\x30\x00\x00" b"\x0e\x00FCGI_MAX_CONNS"
                                 b"\x0d\x00FCGI_MAX_REQS" b"\x0f\x00FCGI_MPXS_CONNS")


def test_fcgi_connection_collects_management_answers(tmp_path):
    """A canned peer: read_response keeps request id 0 records beside the
    answer of request 1, and skips other requests' records."""
    path = str(tmp_path / "peer.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    other = fcgi.record(fcgi.STDOUT, b"not ours", 2)
    stdout = fcgi.record(fcgi.STDOUT, b"Status: 204\r\n\r\n") + fcgi.record(fcgi.STDOUT)

    def peer():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for piece in split_every(GET_VALUES_RESULT + other + UNKNOWN_TYPE + stdout + END_REQUEST, 3):
                conn.sendall(piece)
    t = threading.Thread(target=peer)
    t.start()
    try:
        with fcgi.FcgiConnection("unix:" + path, timeout=5) as c:
            c.send(fcgi.get_values() + fcgi.record(99, b"", 0) + fcgi.request_bytes(fcgi.cgi_params()))
            r = c.read_response(1)
            assert r.complete and r.end == (0, 0) and r.stdout_closed and r.http()[0] == 204
            assert r.values()[fcgi.MPXS_CONNS] == "0" and r.unknown_types() == [99]
            assert {x.request_id for x in r.records} == {0, 1} and b"not ours" not in r.stdout
            assert c.read_until_eof(5) and len(c.received) == 6
    finally:
        t.join(5)
        server.close()


# ---- the example renderer


def _active_lines(text):
    return [x.strip() for x in text.split("\n") if x.strip() and not x.strip().startswith("#")]


def test_nginx_example_renders_as_documented(tmp_path):
    site = frontconf.nginx_site("unix:/tmp/t.sock", "127.0.0.1:8080 reuseport", tmp_path, token_cookie="sse_jwt",
                                stream_extra=["fastcgi_buffer_size 1k", "tcp_nodelay on"])
    lines = _active_lines(site)
    example = _active_lines(frontconf.NGINX_EXAMPLE.read_text())
    assert "listen 127.0.0.1:8080 reuseport;" in lines and "root %s;" % tmp_path in lines
    assert not [x for x in lines if "/run/ssehub" in x or x.startswith("listen [::]")]
    assert lines.count("server unix:/tmp/t.sock;") == 2 and lines.count("fastcgi_pass ssehub_streams;") == 2
    assert 'default "sse_jwt=$cookie_sse_jwt";' in lines
    assert "fastcgi_buffer_size 1k;" in lines and "fastcgi_buffer_size 512;" not in lines
    # every other line as users copy it, the read timeout included
    assert len(lines) == len(example) and "fastcgi_read_timeout 90s;" in lines  # [::]:80 out, tcp_nodelay in
    changed = set(example) - set(lines)
    assert changed == {"listen 80;", "listen [::]:80;", "root /var/www/ssehub;", "server unix:/run/ssehub/ssehub.sock;",
                       "map $cookie_token $ssehub_token_cookie {",
                       'default "token=$cookie_token";', "fastcgi_buffer_size 512;"}, changed
    cluster = _active_lines(frontconf.nginx_site(["unix:/tmp/a.sock", "unix:/tmp/b.sock", "127.0.0.1:9001"],
                                                 "127.0.0.1:8080", tmp_path))
    assert [cluster.count("server %s;" % n) for n in ("unix:/tmp/a.sock", "unix:/tmp/b.sock", "127.0.0.1:9001")] == [2] * 3
    if not find_program("nginx"):
        pytest.skip("nginx is not installed")
    conf = frontconf.write_nginx(tmp_path / "ngx", site, error_log_level="warn")
    r = subprocess.run([find_program("nginx"), "-t", "-q", "-p", str(tmp_path / "ngx") + "/", "-c", str(conf),
                        "-e", str(tmp_path / "ngx" / "error.log")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("variant", ["A-bin-path", "B-socket"])
def test_lighttpd_example_renders_as_documented(tmp_path, variant):
    bin_path = "/usr/local/sbin/ssehub-test --log stderr" if variant == "A-bin-path" else None
    site = frontconf.lighttpd_site(tmp_path / "x.sock", bin_path)
    lines = _active_lines(site)
    assert lines.count("fastcgi.server = (") == 1 and '"read-timeout"   => 90,' in lines
    assert '"socket"         => "%s",' % (tmp_path / "x.sock") in lines
    assert not [x for x in lines if "/run/" in x]
    assert ('"bin-path" => "%s",' % bin_path in lines) == (bin_path is not None)
    if not find_program("lighttpd"):
        pytest.skip("lighttpd is not installed")
    conf = frontconf.write_lighttpd(tmp_path / "lt", "127.0.0.1", 8080, site)
    r = subprocess.run([find_program("lighttpd"), "-tt", "-f", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("edit", [("\n    listen 80;\n", "\n    listen 8080;\n"),
                                  ("\n    root /var/www/ssehub;\n", "\n    root /srv;\n"),
                                  ("unix:/run/ssehub/ssehub.sock;\n", "unix:/run/x.sock;\n")])
def test_renderer_refuses_a_drifted_example(tmp_path, edit):
    text = frontconf.NGINX_EXAMPLE.read_text()
    assert edit[0] in text
    drifted = tmp_path / "drifted.conf"
    drifted.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(frontconf.ExampleDrift):
        frontconf.nginx_site("unix:/tmp/t.sock", "127.0.0.1:8080", tmp_path, example=drifted)
