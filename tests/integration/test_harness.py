"""Self-tests of the harness's SSE parser and chunked decoder (no ssehub
needed): the integration tests are only as good as these."""

import pytest

from ssehub_harness import ChunkedDecoder, SSEParser


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
