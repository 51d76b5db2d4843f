/* fuzz_sse_encode: the SSE encoder against the WHATWG event-stream rules.
 * Input: byte 0 holds flags (bit 0: give an id, bit 1: give a retry), bytes
 * 1..4 the retry value, then "event NUL id NUL data" (data ends at the next
 * NUL or at the end). Whenever sse_valid_event / sse_valid_id accept the
 * event and id, the output of sse_encode is parsed with the "interpret an
 * event stream" rules of WHATWG HTML 9.2.6 (a small parser below) and must
 * give exactly one event, with the same type, lastEventId and retry, and the
 * data with every CRLF and lone CR turned into LF.
 * The parser works on bytes: the rules' delimiters are all ASCII, so for
 * UTF-8 input it is the same as decoding first (bytes that are not UTF-8
 * would reach a browser as U+FFFD; the API rejects bodies that are not
 * UTF-8 before anything is encoded). */
#include "fuzz_common.h"

#define FUZZ_MAX_INPUT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct parsed {
	int events;              /* events dispatched */
	struct buf type, data, last_id;
	long retry;              /* -1: never set */
	struct buf cur_type, cur_data, id_buf;
};

static void buf_set(struct buf *b, const char *p, size_t n)
{
	b->len = 0;
	buf_append(b, p, n);
}

static void parser_field(struct parsed *ps, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (nlen == 5 && memcmp(name, "event", 5) == 0) {
		buf_set(&ps->cur_type, value, vlen);
	} else if (nlen == 4 && memcmp(name, "data", 4) == 0) {
		buf_append(&ps->cur_data, value, vlen);
		buf_append(&ps->cur_data, "\n", 1);
	} else if (nlen == 2 && memcmp(name, "id", 2) == 0) {
		if (!memchr(value, '\0', vlen))
			buf_set(&ps->id_buf, value, vlen);
	} else if (nlen == 5 && memcmp(name, "retry", 5) == 0) {
		long v = 0;
		size_t i;
		for (i = 0; i < vlen && value[i] >= '0' && value[i] <= '9' && v < 1000000000L; i++)
			v = v * 10 + (value[i] - '0');
		if (vlen > 0 && i == vlen)
			ps->retry = v;
	}
	/* any other field is ignored */
}

static void parser_dispatch(struct parsed *ps)
{
	if (ps->cur_data.len == 0) {
		ps->cur_type.len = 0;
		return;
	}
	if (ps->cur_data.data[ps->cur_data.len - 1] == '\n')
		ps->cur_data.len--;
	ps->events++;
	buf_set(&ps->last_id, ps->id_buf.data ? ps->id_buf.data : "", ps->id_buf.len);
	if (ps->cur_type.len)
		buf_set(&ps->type, ps->cur_type.data, ps->cur_type.len);
	else
		buf_set(&ps->type, "message", 7);
	buf_set(&ps->data, ps->cur_data.data, ps->cur_data.len);
	ps->cur_data.len = 0;
	ps->cur_type.len = 0;
}

static void parser_line(struct parsed *ps, const char *line, size_t len)
{
	const char *colon;

	if (len == 0) {
		parser_dispatch(ps);
		return;
	}
	if (line[0] == ':')
		return; /* comment */
	colon = memchr(line, ':', len);
	if (colon) {
		const char *v = colon + 1;
		size_t vlen = len - (size_t)(v - line);
		if (vlen > 0 && *v == ' ') {
			v++;
			vlen--;
		}
		parser_field(ps, line, (size_t)(colon - line), v, vlen);
	} else {
		parser_field(ps, line, len, "", 0);
	}
}

/* Lines end at CRLF, LF or CR; a leading BOM is skipped; an event not
 * terminated by a blank line before the end is discarded. */
static void parse_stream(struct parsed *ps, const char *s, size_t len)
{
	size_t i = 0, start;

	if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	start = i;
	while (i < len) {
		if (s[i] == '\r' || s[i] == '\n') {
			parser_line(ps, s + start, i - start);
			if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
				i++;
			start = i + 1;
		}
		i++;
	}
}

static void normalise_newlines(struct buf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\r') {
			buf_append(out, "\n", 1);
			if (s[1] == '\n')
				s++;
		} else {
			buf_append(out, s, 1);
		}
	}
	if (!out->data)
		buf_append(out, "", 0);
}

static int same(const struct buf *b, const char *s, size_t len)
{
	return b->len == len && (len == 0 || memcmp(b->data, s, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
	const char *rest, *event, *id = NULL, *data_in;
	char *ev = NULL, *idc = NULL, *datac = NULL;
	size_t rlen, elen, ilen = 0;
	const char *p, *nul;
	long retry = -1;
	int flags;
	struct buf out = { 0 }, want = { 0 };
	struct parsed ps = { .retry = -1 };

	if (size < 5 || size > FUZZ_MAX_INPUT)
		return 0;
	flags = d[0];
	if (flags & 2)
		retry = (long)(((uint32_t)d[1] | (uint32_t)d[2] << 8 | (uint32_t)d[3] << 16 | (uint32_t)d[4] << 24) %
			       86400001u);
	rest = (const char *)d + 5;
	rlen = size - 5;

	/* event NUL id NUL data */
	p = rest;
	nul = memchr(p, '\0', rlen);
	elen = nul ? (size_t)(nul - p) : rlen;
	ev = xstrndup(p, elen);
	event = ev;
	p = nul ? nul + 1 : rest + rlen;
	nul = memchr(p, '\0', (size_t)(rest + rlen - p));
	ilen = nul ? (size_t)(nul - p) : (size_t)(rest + rlen - p);
	idc = xstrndup(p, ilen);
	p = nul ? nul + 1 : rest + rlen;
	nul = memchr(p, '\0', (size_t)(rest + rlen - p));
	datac = xstrndup(p, nul ? (size_t)(nul - p) : (size_t)(rest + rlen - p));
	data_in = datac;
	if (flags & 1)
		id = idc;

	if (!sse_valid_event(event, elen) || (id && !sse_valid_id(id, ilen)))
		goto done;
	/* what the encoder relies on: the validators keep line breaks out */
	FUZZ_CHECK(elen >= 1 && elen <= SSE_MAX_EVENT && !strpbrk(event, "\r\n"), "bad event name accepted");
	if (id)
		FUZZ_CHECK(ilen >= 1 && ilen <= SSE_MAX_ID && !strpbrk(id, "\r\n"), "bad id accepted");

	sse_encode(&out, id, event, retry, data_in);
	FUZZ_CHECK(out.len >= 2 && out.data[out.len - 1] == '\n' && out.data[out.len - 2] == '\n',
		   "the event does not end with a blank line");
	parse_stream(&ps, out.data, out.len);
	normalise_newlines(&want, data_in);

	FUZZ_CHECK(ps.events == 1, "%d events parsed from: %.*s", ps.events, (int)out.len, out.data);
	FUZZ_CHECK(same(&ps.type, event, elen), "event type changed: '%s' -> '%.*s'", event, (int)ps.type.len,
		   ps.type.data);
	FUZZ_CHECK(same(&ps.last_id, id ? id : "", id ? ilen : 0), "lastEventId changed: '%s' -> '%.*s'",
		   id ? id : "", (int)ps.last_id.len, ps.last_id.data);
	FUZZ_CHECK(same(&ps.data, want.data, want.len), "data changed: wanted %zu bytes, parsed %zu", want.len,
		   ps.data.len);
	FUZZ_CHECK(ps.retry == retry, "retry changed: %ld -> %ld", retry, ps.retry);
	/* nothing left over that a following event would inherit */
	FUZZ_CHECK(ps.cur_data.len == 0 && ps.cur_type.len == 0, "state left after the event");

done:
	free(out.data);
	free(want.data);
	free(ps.type.data);
	free(ps.data.data);
	free(ps.last_id.data);
	free(ps.cur_type.data);
	free(ps.cur_data.data);
	free(ps.id_buf.data);
	free(ev);
	free(idc);
	free(datac);
	return 0;
}
