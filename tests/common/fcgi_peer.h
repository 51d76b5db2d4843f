/* fcgi_peer: what a front server does on a FastCGI connection, for the C
 * unit tests and the fuzzers (header-only): write records, name-value pairs
 * and whole requests, and split what ssehub answers into its records. It is
 * written from the specification, apart from src/fcgi.c, so that the tests
 * do not check the parser against itself. */
#ifndef SSEHUB_TEST_FCGI_PEER_H
#define SSEHUB_TEST_FCGI_PEER_H

#include <errno.h>
#include <fastcgi.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* One record (content_len <= 65535) with padding bytes of padding. */
static inline void peer_record_pad(struct buf *b, int type, unsigned id, const void *content, size_t len, unsigned padding)
{
	unsigned char h[8] = { FCGI_VERSION_1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
			       (unsigned char)(len >> 8), (unsigned char)len, (unsigned char)padding, 0 };
	static const unsigned char zeros[255];

	buf_append(b, h, sizeof(h));
	if (len)
		buf_append(b, content, len);
	if (padding)
		buf_append(b, zeros, padding);
}

/* content as records of at most 65535 bytes; an empty content is one empty
 * record (the end of a PARAMS or STDIN stream). */
static inline void peer_records(struct buf *b, int type, unsigned id, const void *content, size_t len)
{
	const char *p = content;

	do {
		size_t n = len > 65535 ? 65535 : len;
		peer_record_pad(b, type, id, p, n, 0);
		p += n;
		len -= n;
	} while (len > 0);
}

/* A name-value pair; force_long uses the 4-byte form even for short lengths. */
static inline void peer_pair_n(struct buf *b, const char *name, size_t nlen, const char *value, size_t vlen, int force_long)
{
	size_t lens[2] = { nlen, vlen };

	for (int i = 0; i < 2; i++) {
		if (lens[i] < 128 && !force_long) {
			unsigned char c = (unsigned char)lens[i];
			buf_append(b, &c, 1);
		} else {
			unsigned char c[4] = { (unsigned char)((lens[i] >> 24) | 0x80), (unsigned char)(lens[i] >> 16),
					       (unsigned char)(lens[i] >> 8), (unsigned char)lens[i] };
			buf_append(b, c, 4);
		}
	}
	buf_append(b, name, nlen);
	buf_append(b, value, vlen);
}

static inline void peer_pair(struct buf *b, const char *name, const char *value)
{
	peer_pair_n(b, name, strlen(name), value, strlen(value), 0);
}

static inline void peer_begin(struct buf *b, unsigned id, int role, int flags)
{
	unsigned char body[8] = { (unsigned char)(role >> 8), (unsigned char)role, (unsigned char)flags, 0, 0, 0, 0, 0 };
	peer_record_pad(b, FCGI_BEGIN_REQUEST, id, body, sizeof(body), 0);
}

/* A whole responder request: BEGIN_REQUEST (flags), the PARAMS content
 * params (pairs), the empty PARAMS, body as STDIN, the empty STDIN. */
static inline void peer_request(struct buf *b, unsigned id, int flags, const struct buf *params, const char *body,
				size_t body_len)
{
	peer_begin(b, id, FCGI_RESPONDER, flags);
	if (params->len)
		peer_records(b, FCGI_PARAMS, id, params->data, params->len);
	peer_record_pad(b, FCGI_PARAMS, id, NULL, 0, 0);
	if (body_len)
		peer_records(b, FCGI_STDIN, id, body, body_len);
	peer_record_pad(b, FCGI_STDIN, id, NULL, 0, 0);
}

/* What came back, record by record. */
struct peer_reply {
	struct buf out;          /* STDOUT content of the request */
	unsigned id;             /* request id of the STDOUT/END_REQUEST records */
	int stdout_closed;       /* the empty STDOUT arrived */
	int end_request;         /* END_REQUEST with FCGI_REQUEST_COMPLETE arrived */
	int unknown_type;        /* type named by an FCGI_UNKNOWN_TYPE, or -1 */
	struct buf values;       /* content of an FCGI_GET_VALUES_RESULT */
	int got_values;
	int malformed;           /* not FastCGI 1, or records after END_REQUEST */
	int records;
	int eof;                 /* the peer closed */
};

/* Splits raw[0..len) into records; returns the bytes used (whole records). */
static inline size_t peer_parse(struct peer_reply *r, const unsigned char *raw, size_t len)
{
	size_t off = 0;

	while (len - off >= 8) {
		const unsigned char *h = raw + off;
		size_t clen = ((size_t)h[4] << 8) | h[5], plen = h[6];
		unsigned id = (unsigned)h[2] << 8 | h[3];
		if (h[0] != FCGI_VERSION_1) {
			r->malformed = 1;
			return len;
		}
		if (len - off < 8 + clen + plen)
			break;
		r->records++;
		if (r->end_request && id != 0)
			r->malformed = 1;
		if (h[1] == FCGI_STDOUT) {
			r->id = id;
			if (clen == 0)
				r->stdout_closed = 1;
			else
				buf_append(&r->out, h + 8, clen);
		} else if (h[1] == FCGI_END_REQUEST) {
			r->id = id;
			r->end_request = clen == 8 && h[8 + 4] == FCGI_REQUEST_COMPLETE;
		} else if (h[1] == FCGI_UNKNOWN_TYPE && clen == 8) {
			r->unknown_type = h[8];
		} else if (h[1] == FCGI_GET_VALUES_RESULT) {
			buf_append(&r->values, h + 8, clen);
			r->got_values = 1;
		}
		off += 8 + clen + plen;
	}
	return off;
}

static inline void peer_reply_init(struct peer_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->unknown_type = -1;
}

static inline void peer_reply_free(struct peer_reply *r)
{
	free(r->out.data);
	free(r->values.data);
	memset(r, 0, sizeof(*r));
}

/* The CGI answer's status ("Status: NNN ...") and where its body starts.
 * Returns 0, or -1 when the head is missing or not ended by a blank line. */
static inline int peer_cgi_split(const struct buf *out, int *status, const char **body, size_t *body_len)
{
	const char *end;

	if (!out->data || out->len < 12 || strncmp(out->data, "Status: ", 8) != 0)
		return -1;
	*status = atoi(out->data + 8);
	end = memmem(out->data, out->len, "\r\n\r\n", 4);
	if (!end)
		return -1;
	*body = end + 4;
	*body_len = out->len - (size_t)(end + 4 - out->data);
	return 0;
}

static inline int peer_write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len > 0) {
		ssize_t n = write(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

#endif
