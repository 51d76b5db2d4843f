/* fcgi: a byte-at-a-time-safe state machine over records (header, content,
 * padding) that copies PARAMS and STDIN content into the request as it comes,
 * so a connection needs no buffer of its own for a partial record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

#define MAX_MGMT_CONTENT 4096

void fcgi_req_init(struct fcgi_req *r, size_t max_body, long max_conns)
{
	memset(r, 0, sizeof(*r));
	r->max_body = max_body;
	r->max_conns = max_conns;
}

int fcgi_req_started(const struct fcgi_req *r)
{
	return r->consumed > 0;
}

static unsigned rec_type(const struct fcgi_req *r)
{
	return r->hdr.type;
}

static unsigned rec_id(const struct fcgi_req *r)
{
	return (unsigned)r->hdr.requestIdB1 << 8 | r->hdr.requestIdB0;
}

/* ---- name-value pairs ------------------------------------------------------- */

/* One length of a name-value pair: 1 byte, or 4 with the high bit set. */
static int pair_len(const unsigned char *p, size_t len, size_t *i, size_t *out)
{
	if (*i >= len)
		return -1;
	if (!(p[*i] & 0x80)) {
		*out = p[(*i)++];
		return 0;
	}
	if (len - *i < 4)
		return -1;
	*out = ((size_t)(p[*i] & 0x7f) << 24) | ((size_t)p[*i + 1] << 16) | ((size_t)p[*i + 2] << 8) | p[*i + 3];
	*i += 4;
	return 0;
}

/* Rewrites the PARAMS content in place as "NAME\0VALUE\0" pairs: the two
 * length fields of a pair take at least the two bytes its NULs need, so the
 * write position never passes the read position. Returns the pair count, or
 * -1 when the content is not a sequence of complete pairs or a name or value
 * holds a NUL (it would cut the lookup short: a parser differential). */
static long pairs_to_strings(struct buf *b)
{
	unsigned char *p = (unsigned char *)b->data;
	size_t len = b->len, i = 0, w = 0;
	long n = 0;

	while (i < len) {
		size_t nl, vl;
		if (pair_len(p, len, &i, &nl) < 0 || pair_len(p, len, &i, &vl) < 0)
			return -1;
		if (nl > len - i || vl > len - i - nl || nl == 0)
			return -1;
		if (memchr(p + i, '\0', nl + vl))
			return -1;
		memmove(p + w, p + i, nl);
		p[w + nl] = '\0';
		memmove(p + w + nl + 1, p + i + nl, vl);
		p[w + nl + 1 + vl] = '\0';
		w += nl + vl + 2;
		i += nl + vl;
		n++;
	}
	b->len = w;
	return n;
}

const char *fcgi_req_param(const struct fcgi_req *r, const char *name)
{
	const char *p = r->params.data, *end;

	if (!p)
		return NULL;
	end = p + r->params.len;
	while (p < end) {
		size_t nl = strlen(p);
		const char *v = p + nl + 1;
		if (strcmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

/* ---- management records --------------------------------------------------------- */

static void put_pair(struct buf *out, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	unsigned char l[2] = { (unsigned char)nl, (unsigned char)vl }; /* both < 128 */

	buf_append(out, l, 2);
	buf_append(out, name, nl);
	buf_append(out, value, vl);
}

/* FCGI_GET_VALUES: the variables we know, with their values; the names we
 * do not know are left out, as the specification asks. */
static int answer_get_values(struct fcgi_req *r, struct buf *reply)
{
	const unsigned char *p = (const unsigned char *)r->mgmt.data;
	size_t len = r->mgmt.len, i = 0;
	struct buf pairs = { 0 };
	char conns[24];
	FCGI_Header h;

	snprintf(conns, sizeof(conns), "%ld", r->max_conns);
	while (i < len) {
		size_t nl, vl;
		const char *name;
		if (pair_len(p, len, &i, &nl) < 0 || pair_len(p, len, &i, &vl) < 0 || nl > len - i || vl > len - i - nl) {
			free(pairs.data);
			return -1;
		}
		name = (const char *)p + i;
		if (nl == strlen(FCGI_MAX_CONNS) && memcmp(name, FCGI_MAX_CONNS, nl) == 0)
			put_pair(&pairs, FCGI_MAX_CONNS, conns);
		else if (nl == strlen(FCGI_MAX_REQS) && memcmp(name, FCGI_MAX_REQS, nl) == 0)
			put_pair(&pairs, FCGI_MAX_REQS, conns);
		else if (nl == strlen(FCGI_MPXS_CONNS) && memcmp(name, FCGI_MPXS_CONNS, nl) == 0)
			put_pair(&pairs, FCGI_MPXS_CONNS, "0");
		i += nl + vl;
	}
	fcgi_header(&h, FCGI_GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID, pairs.len);
	buf_append(reply, &h, sizeof(h));
	if (pairs.len)
		buf_append(reply, pairs.data, pairs.len);
	free(pairs.data);
	return 0;
}

static int end_management(struct fcgi_req *r, struct buf *reply)
{
	int rc = 0;

	if (rec_type(r) == FCGI_GET_VALUES)
		rc = answer_get_values(r, reply);
	else
		fcgi_put_unknown_type(reply, (int)rec_type(r));
	r->mgmt.len = 0;
	return rc;
}

/* ---- records ------------------------------------------------------------------- */

/* A header is complete: is this record acceptable here? */
static enum fcgi_status check_header(struct fcgi_req *r)
{
	unsigned type = rec_type(r), id = rec_id(r);

	if (r->hdr.version != FCGI_VERSION_1)
		return FCGI_BAD;
	r->content_left = (size_t)r->hdr.contentLengthB1 << 8 | r->hdr.contentLengthB0;
	r->pad_left = r->hdr.paddingLength;
	if (id == FCGI_NULL_REQUEST_ID) {
		/* front servers send none; a few are answered, a flood is refused */
		if (++r->nmgmt > FCGI_MAX_MGMT || r->content_left > MAX_MGMT_CONTENT)
			return FCGI_BAD;
		return FCGI_MORE;
	}
	switch (r->phase) {
	case FCGI_PH_BEGIN:
		if (type != FCGI_BEGIN_REQUEST || r->content_left != sizeof(FCGI_BeginRequestBody))
			return FCGI_BAD;
		r->id = (uint16_t)id;
		return FCGI_MORE;
	case FCGI_PH_PARAMS:
		/* one request per connection and in order: another id, a second
		 * BEGIN_REQUEST, FCGI_ABORT_REQUEST or FCGI_DATA ends it */
		return id == r->id && type == FCGI_PARAMS ? FCGI_MORE : FCGI_BAD;
	case FCGI_PH_STDIN:
		return id == r->id && type == FCGI_STDIN ? FCGI_MORE : FCGI_BAD;
	default:
		return FCGI_BAD;
	}
}

/* Content bytes of the current record. */
static enum fcgi_status take_content(struct fcgi_req *r, const unsigned char *p, size_t n)
{
	if (rec_id(r) == FCGI_NULL_REQUEST_ID) {
		buf_append(&r->mgmt, p, n);
		return FCGI_MORE;
	}
	switch (r->phase) {
	case FCGI_PH_BEGIN:
		memcpy(r->begin + r->begin_len, p, n);
		r->begin_len += (unsigned)n;
		return FCGI_MORE;
	case FCGI_PH_PARAMS:
		r->params_seen += n;
		if (r->params_seen > FCGI_MAX_PARAMS)
			r->params_over = 1;
		if (r->params_seen > FCGI_MAX_DRAIN)
			return FCGI_BAD;
		if (r->params.len < FCGI_MAX_PARAMS)
			buf_append(&r->params, p, FCGI_MAX_PARAMS - r->params.len < n ? FCGI_MAX_PARAMS - r->params.len : n);
		return FCGI_MORE;
	default:
		r->body_seen += n;
		if (r->body_seen > r->max_body)
			r->body_over = 1;
		if (r->body_seen > r->max_body + FCGI_MAX_DRAIN)
			return FCGI_BAD;
		if (r->body.len <= r->max_body) {
			size_t room = r->max_body + 1 - r->body.len;
			buf_append(&r->body, p, room < n ? room : n);
		}
		return FCGI_MORE;
	}
}

/* The current record (content and padding) is over. */
static enum fcgi_status end_record(struct fcgi_req *r, struct buf *reply)
{
	const FCGI_BeginRequestBody *b = (const FCGI_BeginRequestBody *)r->begin;
	int empty = r->hdr.contentLengthB1 == 0 && r->hdr.contentLengthB0 == 0;
	long n;

	if (rec_id(r) == FCGI_NULL_REQUEST_ID)
		return end_management(r, reply) < 0 ? FCGI_BAD : FCGI_MORE;
	switch (r->phase) {
	case FCGI_PH_BEGIN:
		if (((unsigned)b->roleB1 << 8 | b->roleB0) != FCGI_RESPONDER)
			return FCGI_BAD;
		r->keep_conn = (b->flags & FCGI_KEEP_CONN) != 0;
		r->phase = FCGI_PH_PARAMS;
		return FCGI_MORE;
	case FCGI_PH_PARAMS:
		if (!empty)
			return FCGI_MORE;
		if (!r->params_over) {
			if ((n = pairs_to_strings(&r->params)) < 0)
				return FCGI_BAD;
			r->nparams = (size_t)n;
		}
		r->phase = FCGI_PH_STDIN;
		return FCGI_MORE;
	default:
		if (!empty)
			return FCGI_MORE;
		buf_append(&r->body, "", 0); /* NUL-terminated, even when empty */
		r->phase = FCGI_PH_DONE;
		return FCGI_DONE;
	}
}

enum fcgi_status fcgi_req_feed(struct fcgi_req *r, const void *data, size_t len, size_t *used, struct buf *reply)
{
	const unsigned char *p = data;
	size_t i = 0;
	enum fcgi_status st = FCGI_MORE;

	if (r->phase == FCGI_PH_DONE)
		return FCGI_BAD;
	while (i < len && st == FCGI_MORE) {
		if (r->hlen < sizeof(r->hdr)) {
			size_t k = sizeof(r->hdr) - r->hlen < len - i ? sizeof(r->hdr) - r->hlen : len - i;
			memcpy((unsigned char *)&r->hdr + r->hlen, p + i, k);
			r->hlen += (unsigned)k;
			i += k;
			if (r->hlen < sizeof(r->hdr))
				break;
			if ((st = check_header(r)) != FCGI_MORE)
				break;
		} else if (r->content_left) {
			size_t k = r->content_left < len - i ? r->content_left : len - i;
			st = take_content(r, p + i, k);
			r->content_left -= k;
			i += k;
		} else if (r->pad_left) {
			size_t k = r->pad_left < len - i ? r->pad_left : len - i;
			r->pad_left -= k;
			i += k;
		}
		if (st == FCGI_MORE && r->hlen == sizeof(r->hdr) && !r->content_left && !r->pad_left) {
			st = end_record(r, reply);
			r->hlen = 0;
		}
	}
	r->consumed += i;
	*used = i;
	return st;
}

void fcgi_req_reset(struct fcgi_req *r)
{
	size_t max_body = r->max_body;
	long max_conns = r->max_conns;
	struct buf params = r->params, body = r->body, mgmt = r->mgmt;

	if (params.data)
		util_wipe(params.data, params.cap);
	params.len = body.len = mgmt.len = 0;
	fcgi_req_init(r, max_body, max_conns);
	r->params = params;
	r->body = body;
	r->mgmt = mgmt;
}

void fcgi_req_free(struct fcgi_req *r)
{
	if (r->params.data)
		util_wipe(r->params.data, r->params.cap);
	free(r->params.data);
	free(r->body.data);
	free(r->mgmt.data);
	memset(r, 0, sizeof(*r));
}

/* ---- writers ------------------------------------------------------------------------ */

void fcgi_header(FCGI_Header *h, int type, uint16_t id, size_t content_len)
{
	h->version = FCGI_VERSION_1;
	h->type = (unsigned char)type;
	h->requestIdB1 = (unsigned char)(id >> 8);
	h->requestIdB0 = (unsigned char)id;
	h->contentLengthB1 = (unsigned char)(content_len >> 8);
	h->contentLengthB0 = (unsigned char)content_len;
	h->paddingLength = 0;
	h->reserved = 0;
}

size_t fcgi_stdout_len(size_t n)
{
	return n + (n + FCGI_MAX_CONTENT - 1) / FCGI_MAX_CONTENT * sizeof(FCGI_Header);
}

void fcgi_put_stdout(struct buf *out, uint16_t id, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		size_t k = n > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : n;
		FCGI_Header h;
		fcgi_header(&h, FCGI_STDOUT, id, k);
		buf_append(out, &h, sizeof(h));
		buf_append(out, p, k);
		p += k;
		n -= k;
	}
}

void fcgi_put_end(struct buf *out, uint16_t id)
{
	FCGI_EndRequestRecord end;
	FCGI_Header h;

	fcgi_header(&h, FCGI_STDOUT, id, 0);
	buf_append(out, &h, sizeof(h));
	memset(&end, 0, sizeof(end));
	fcgi_header(&end.header, FCGI_END_REQUEST, id, sizeof(end.body));
	end.body.protocolStatus = FCGI_REQUEST_COMPLETE;
	buf_append(out, &end, sizeof(end));
}

void fcgi_put_response(struct buf *out, uint16_t id, const char *head, size_t head_len, const char *body,
		       size_t body_len)
{
	/* head and body share records: the head alone is rarely worth one */
	size_t total = head_len + body_len, off = 0;

	while (off < total) {
		size_t k = total - off > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : total - off;
		FCGI_Header h;
		fcgi_header(&h, FCGI_STDOUT, id, k);
		buf_append(out, &h, sizeof(h));
		if (off < head_len)
			buf_append(out, head + off, k < head_len - off ? k : head_len - off);
		if (off + k > head_len) {
			size_t from = off > head_len ? off - head_len : 0;
			buf_append(out, body + from, off + k - head_len - from);
		}
		off += k;
	}
	fcgi_put_end(out, id);
}

void fcgi_put_unknown_type(struct buf *out, int type)
{
	FCGI_UnknownTypeRecord rec;

	memset(&rec, 0, sizeof(rec));
	fcgi_header(&rec.header, FCGI_UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, sizeof(rec.body));
	rec.body.type = (unsigned char)type;
	buf_append(out, &rec, sizeof(rec));
}
