/* fcgi_in: a strict, bounded reader for one FastCGI request. nginx and
 * lighttpd send exactly BEGIN_REQUEST, PARAMS..., empty PARAMS, STDIN...,
 * empty STDIN on one request id; anything else is refused. */
#include <errno.h>
#include <fastcgi.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fcgi_in.h"

#define MAX_MGMT_RECORDS 16
#define RECORD_MAX 65535

struct reader {
	int fd;
	int64_t deadline;
	size_t pos, len;
	unsigned char buf[16384];
};

static int fill(struct reader *r)
{
	for (;;) {
		int64_t left;
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		/* the bytes are usually there already: poll only when not */
		ssize_t n = recv(r->fd, r->buf, sizeof(r->buf), MSG_DONTWAIT);

		if (n > 0) {
			r->pos = 0;
			r->len = (size_t)n;
			return 0;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return -1;
		left = r->deadline - util_mono_ms();
		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return -1;
	}
}

/* Reads n bytes into dst, or skips them when dst is NULL. */
static int take(struct reader *r, void *dst, size_t n)
{
	unsigned char *d = dst;

	while (n > 0) {
		size_t k;
		if (r->pos == r->len && fill(r) < 0)
			return -1;
		k = r->len - r->pos < n ? r->len - r->pos : n;
		if (d) {
			memcpy(d, r->buf + r->pos, k);
			d += k;
		}
		r->pos += k;
		n -= k;
	}
	return 0;
}

/* Reads content bytes into b, up to keep bytes in b; the rest is skipped. */
static int take_into(struct reader *r, struct buf *b, size_t n, size_t keep)
{
	while (n > 0) {
		size_t k;
		if (r->pos == r->len && fill(r) < 0)
			return -1;
		k = r->len - r->pos < n ? r->len - r->pos : n;
		if (b->len < keep)
			buf_append(b, r->buf + r->pos, keep - b->len < k ? keep - b->len : k);
		r->pos += k;
		n -= k;
	}
	return 0;
}

/* One name or value length of a name-value pair (1 or 4 bytes). */
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

/* The number of pairs when the PARAMS content is a sequence of complete
 * name-value pairs, else -1. */
static long pairs_count(const unsigned char *p, size_t len)
{
	size_t i = 0;
	long n = 0;

	while (i < len) {
		size_t nl, vl;
		if (pair_len(p, len, &i, &nl) < 0 || pair_len(p, len, &i, &vl) < 0)
			return -1;
		if (nl > len - i || vl > len - i - nl)
			return -1;
		i += nl + vl;
		n++;
	}
	return n;
}

enum fcgi_in_result fcgi_in_read(int fd, size_t max_body, long timeout_ms, struct fcgi_in *in)
{
	struct reader rd, *r = &rd; /* 16 KB on the caller's stack, not a malloc per request */
	enum { BEGIN, PARAMS, STDIN } phase = BEGIN;
	enum fcgi_in_result res = FCGI_IN_DROP;
	size_t params_seen = 0, body_seen = 0;
	int mgmt = 0, too_large = 0;

	memset(in, 0, sizeof(*in));
	r->fd = fd;
	r->pos = r->len = 0;
	r->deadline = util_mono_ms() + timeout_ms;
	for (;;) {
		unsigned char h[FCGI_HEADER_LEN];
		unsigned type, id;
		size_t clen, plen;

		if (take(r, h, sizeof(h)) < 0 || h[0] != FCGI_VERSION_1) {
			if (phase == BEGIN && mgmt == 0 && r->len == 0)
				res = FCGI_IN_CLOSED; /* not one byte came */
			goto out;
		}
		type = h[1];
		id = (unsigned)h[2] << 8 | h[3];
		clen = (size_t)h[4] << 8 | h[5];
		plen = h[6];
		if (id == FCGI_NULL_REQUEST_ID) {
			/* management records (FCGI_GET_VALUES...): front servers send
			 * none; a few are skipped, a flood is refused */
			if (++mgmt > MAX_MGMT_RECORDS || take(r, NULL, clen + plen) < 0)
				goto out;
			continue;
		}
		if (phase == BEGIN) {
			unsigned char body[8];
			if (type != FCGI_BEGIN_REQUEST || clen != sizeof(body) || take(r, body, sizeof(body)) < 0 ||
			    take(r, NULL, plen) < 0)
				goto out;
			if (((unsigned)body[0] << 8 | body[1]) != FCGI_RESPONDER)
				goto out;
			in->request_id = (uint16_t)id;
			in->keep_conn = (body[2] & FCGI_KEEP_CONN) != 0;
			phase = PARAMS;
			continue;
		}
		/* one request per connection: another id, a second BEGIN_REQUEST,
		 * FCGI_ABORT_REQUEST or a record out of order ends it */
		if (id != in->request_id)
			goto out;
		if (phase == PARAMS) {
			if (type != FCGI_PARAMS)
				goto out;
			if (clen == 0) {
				if (take(r, NULL, plen) < 0)
					goto out;
				if (!too_large &&
				    (in->nparams = pairs_count((unsigned char *)in->params.data, in->params.len)) < 0)
					goto out;
				phase = STDIN;
				continue;
			}
			params_seen += clen;
			if (params_seen > FCGI_IN_MAX_PARAMS)
				too_large = 1;
			if (params_seen > FCGI_IN_MAX_DRAIN)
				goto out;
			if (take_into(r, &in->params, clen, FCGI_IN_MAX_PARAMS) < 0 || take(r, NULL, plen) < 0)
				goto out;
			continue;
		}
		if (type != FCGI_STDIN)
			goto out;
		if (clen == 0) {
			if (take(r, NULL, plen) < 0)
				goto out;
			res = too_large ? FCGI_IN_PARAMS_TOO_LARGE : FCGI_IN_OK;
			/* nginx sends the next request only after our answer; bytes
			 * already here would be a pipelining peer: answer this one
			 * and close rather than lose or misread them */
			if (r->pos != r->len)
				in->keep_conn = 0;
			goto out;
		}
		body_seen += clen;
		if (body_seen > max_body)
			in->body_over = 1;
		if (body_seen > max_body + FCGI_IN_MAX_DRAIN)
			goto out;
		if (take_into(r, &in->body, clen, max_body + 1) < 0 || take(r, NULL, plen) < 0)
			goto out;
	}
out:
	if (res == FCGI_IN_OK && in->body.data == NULL)
		buf_append(&in->body, "", 0); /* a NUL-terminated empty body */
	return res;
}

void fcgi_header(unsigned char *h, int type, uint16_t request_id, size_t content_len)
{
	h[0] = FCGI_VERSION_1;
	h[1] = (unsigned char)type;
	h[2] = (unsigned char)(request_id >> 8);
	h[3] = (unsigned char)request_id;
	h[4] = (unsigned char)(content_len >> 8);
	h[5] = (unsigned char)content_len;
	h[6] = 0;
	h[7] = 0;
}

char **fcgi_in_envp(const struct fcgi_in *in)
{
	const unsigned char *p = (const unsigned char *)in->params.data;
	size_t len = in->params.len, i = 0, n = (size_t)in->nparams, k = 0;
	char **env, *str;

	/* the pairs were counted and checked by fcgi_in_read: every length
	 * fits; "NAME=VALUE\0" takes the 2 bytes of two lengths at least (1 + 1) */
	env = xmalloc((n + 1) * sizeof(*env) + len + n);
	str = (char *)(env + n + 1);
	for (i = 0; i < len; k++) {
		size_t nl, vl;
		pair_len(p, len, &i, &nl);
		pair_len(p, len, &i, &vl);
		env[k] = str;
		memcpy(str, p + i, nl);
		str[nl] = '=';
		memcpy(str + nl + 1, p + i + nl, vl);
		str[nl + 1 + vl] = '\0';
		str += nl + vl + 2;
		i += nl + vl;
	}
	env[n] = NULL;
	return env;
}

int fcgi_in_reply(int fd, uint16_t request_id, const char *head, size_t head_len, const char *body, size_t body_len)
{
	struct buf out = { 0 };
	unsigned char h[FCGI_HEADER_LEN], end[8] = { 0 };
	size_t total = head_len + body_len, off = 0;
	int rc = 0;

	while (off < total) {
		size_t k = total - off > RECORD_MAX ? RECORD_MAX : total - off;
		fcgi_header(h, FCGI_STDOUT, request_id, k);
		buf_append(&out, h, sizeof(h));
		/* the record's content: the part of head, then of body, it spans */
		if (off < head_len)
			buf_append(&out, head + off, k < head_len - off ? k : head_len - off);
		if (off + k > head_len) {
			size_t from = off > head_len ? off - head_len : 0;
			buf_append(&out, body + from, off + k - head_len - from);
		}
		off += k;
	}
	fcgi_header(h, FCGI_STDOUT, request_id, 0);
	buf_append(&out, h, sizeof(h));
	fcgi_header(h, FCGI_END_REQUEST, request_id, sizeof(end));
	buf_append(&out, h, sizeof(h));
	end[4] = FCGI_REQUEST_COMPLETE;
	buf_append(&out, end, sizeof(end));
	for (off = 0; off < out.len;) {
		ssize_t n = write(fd, out.data + off, out.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -1;
			break;
		}
		off += (size_t)n;
	}
	free(out.data);
	return rc;
}

int fcgi_in_answer(int fd, uint16_t request_id, const char *status, const char *json)
{
	struct buf head = { 0 };
	int rc;

	buf_printf(&head, "Status: %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\r\n", status);
	rc = fcgi_in_reply(fd, request_id, head.data, head.len, json, strlen(json));
	free(head.data);
	return rc;
}

void fcgi_in_free(struct fcgi_in *in)
{
	free(in->params.data);
	free(in->body.data);
	memset(in, 0, sizeof(*in));
}
