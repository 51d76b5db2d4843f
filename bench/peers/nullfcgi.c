/*
 * nullfcgi: the cheapest FastCGI back end the topics benchmark can run
 * behind nginx. It is not a hub and checks nothing (no token, no JSON, no
 * history, no ids beyond a counter, one thread): it keeps every
 * GET /sse/stream?topic=tK request open and, for POST /api/sse/publish
 * {"topic":"tK",...,"data":{...}}, writes one event to each stream of tK
 * (one writev each, as ssehub) and answers. It also answers
 * /api/sse/health and /api/sse/stats (total_clients), so bench/compare.sh
 * runs it in ssehub's place:
 *
 *   SSEHUB_BIN=/tmp/nullfcgi bench/compare.sh --systems ssehub,nchan --scenarios topics
 *
 * What it measures: the publishes/s of a back end whose own CPU is close to
 * nothing, i.e. what nginx's FastCGI relay (read every event from the back
 * end, write it to the client) leaves for any FastCGI hub on the machine.
 * Command line: ssehub's; only "--listen unix:PATH" and "--socket-mode"
 * are read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define TOPICS 4096
#define MAXSUBS 32
#define MAXBODY 16384

struct conn;
struct sub {                            /* one stream on one topic */
	struct conn *c;
	struct sub *prev, *next;        /* the topic's streams */
	int topic;
};

struct conn {
	int fd;
	uint16_t rid;
	int keep, stream, nsubs, params_done, closing;
	char *in;
	size_t inlen, incap;
	char *out;                      /* bytes the socket did not take */
	size_t outlen, outcap;
	char method[8], uri[4096];
	char body[MAXBODY];
	size_t blen;
	struct sub subs[MAXSUBS];
};

static struct sub *topics[TOPICS];
static long nstreams;
static unsigned long long next_id;
static int ep;

static void die(const char *m)
{
	perror(m);
	exit(1);
}

static void hdr(unsigned char *h, int type, uint16_t rid, size_t len)
{
	h[0] = 1;
	h[1] = (unsigned char)type;
	h[2] = rid >> 8;
	h[3] = rid & 0xff;
	h[4] = (unsigned char)(len >> 8);
	h[5] = len & 0xff;
	h[6] = 0;
	h[7] = 0;
}

static void out_append(struct conn *c, const void *p, size_t n)
{
	if (c->outlen + n > c->outcap) {
		c->outcap = (c->outlen + n) * 2;
		c->out = realloc(c->out, c->outcap);
		if (!c->out)
			die("realloc");
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
}

static void want_out(struct conn *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes iov (after what is already waiting), keeping what the socket does not take. */
static void send_iov(struct conn *c, struct iovec *iov, int n)
{
	ssize_t w = 0;
	size_t total = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (!c->outlen) {
		w = writev(c->fd, iov, n);
		if (w < 0)
			w = 0;
		if ((size_t)w == total)
			return;
	}
	for (int i = 0; i < n; i++) {
		size_t skip = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
		w -= (ssize_t)skip;
		out_append(c, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
	}
	want_out(c, 1);
}

static void stdout_rec(struct conn *c, const char *p, size_t n)
{
	unsigned char h[8];
	struct iovec iov[2] = { { h, 8 }, { (void *)p, n } };

	hdr(h, 6, c->rid, n);
	send_iov(c, iov, n ? 2 : 1);
}

static void unlink_stream(struct conn *c)
{
	if (!c->stream)
		return;
	for (int i = 0; i < c->nsubs; i++) {
		struct sub *u = &c->subs[i];
		if (u->prev)
			u->prev->next = u->next;
		else
			topics[u->topic] = u->next;
		if (u->next)
			u->next->prev = u->prev;
	}
	c->nsubs = 0;
	c->stream = 0;
	nstreams--;
}

static void conn_close(struct conn *c)
{
	unlink_stream(c);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static void end_request(struct conn *c)
{
	unsigned char rec[16] = { 0 };

	hdr(rec, 6, c->rid, 0);
	hdr(rec + 8, 3, c->rid, 8);
	struct iovec iov[2] = { { rec, 8 }, { rec + 8, 8 } };
	unsigned char body[8] = { 0 };
	struct iovec all[3] = { iov[0], iov[1], { body, 8 } };
	send_iov(c, all, 3);
}

static void answer(struct conn *c, const char *status, const char *json)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "Status: %s\r\nContent-Type: application/json\r\n\r\n%s", status, json);

	stdout_rec(c, buf, (size_t)n);
	end_request(c);
}

static int topic_of(const char *s)
{
	long k;

	if (*s != 't')
		return -1;
	k = strtol(s + 1, NULL, 10);
	return k >= 0 && k < TOPICS ? (int)k : -1;
}

static void publish(struct conn *c)
{
	const char *t, *d;
	char resp[128], ev[MAXBODY + 128];
	unsigned char h[8];
	long n = 0;
	int k, len;

	c->body[c->blen] = '\0';
	t = strstr(c->body, "\"topic\":\"");
	d = strstr(c->body, "\"data\":");
	if (!t || !d || (k = topic_of(t + 9)) < 0) {
		answer(c, "400 Bad Request", "{\"success\":false}");
		return;
	}
	d += 7;
	/* data's value runs to the body's last '}' (the body's own) */
	len = snprintf(ev, sizeof(ev), "id: %llu\nevent: bench\ndata: %.*s\n\n", ++next_id,
		       (int)(strrchr(d, '}') - d), d);
	for (struct sub *u = topics[k]; u; u = u->next) {
		struct iovec iov[2] = { { h, 8 }, { ev, (size_t)len } };
		hdr(h, 6, u->c->rid, (size_t)len);
		send_iov(u->c, iov, 2);
		n++;
	}
	snprintf(resp, sizeof(resp), "{\"success\":true,\"data\":{\"id\":\"%llu\",\"recipients\":%ld}}", next_id, n);
	answer(c, "200 OK", resp);
}

static void request(struct conn *c)
{
	char *q = strchr(c->uri, '?');
	char resp[128];

	if (q)
		*q++ = '\0';
	if (strcmp(c->uri, "/sse/stream") == 0) {
		static const char head[] = "Status: 200 OK\r\nContent-Type: text/event-stream\r\n"
					   "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\r\n"
					   "event: connected\ndata: {\"client_id\":\"null\"}\n\n";
		/* every topic=tK of the query (several, or one "tA,tB" list as Nchan takes) */
		for (char *t = q; t && c->nsubs < MAXSUBS; t = strpbrk(t, "&,")) {
			int k;
			t += *t == '&' || *t == ',';
			if (strncmp(t, "topic=", 6) == 0)
				t += 6;
			else if (t == q || t[-1] != ',')
				continue;
			if ((k = topic_of(t)) < 0)
				continue;
			struct sub *u = &c->subs[c->nsubs++];
			u->c = c;
			u->topic = k;
			u->prev = NULL;
			u->next = topics[k];
			if (u->next)
				u->next->prev = u;
			topics[k] = u;
		}
		if (!c->nsubs) {
			answer(c, "400 Bad Request", "{\"success\":false}");
			return;
		}
		c->stream = 1;
		nstreams++;
		stdout_rec(c, head, sizeof(head) - 1);
	} else if (strcmp(c->uri, "/api/sse/publish") == 0) {
		publish(c);
	} else if (strcmp(c->uri, "/api/sse/stats") == 0) {
		snprintf(resp, sizeof(resp), "{\"success\":true,\"data\":{\"total_clients\":%ld}}", nstreams);
		answer(c, "200 OK", resp);
	} else if (strcmp(c->uri, "/api/sse/health") == 0) {
		answer(c, "200 OK", "{\"success\":true}");
	} else {
		answer(c, "404 Not Found", "{\"success\":false}");
	}
}

static void param(struct conn *c, const char *name, size_t nl, const char *val, size_t vl)
{
	if (nl == 11 && memcmp(name, "REQUEST_URI", 11) == 0 && vl < sizeof(c->uri)) {
		memcpy(c->uri, val, vl);
		c->uri[vl] = '\0';
	} else if (nl == 14 && memcmp(name, "REQUEST_METHOD", 14) == 0 && vl < sizeof(c->method)) {
		memcpy(c->method, val, vl);
		c->method[vl] = '\0';
	}
}

static size_t nvlen(const unsigned char *p, size_t *used)
{
	if (p[0] < 128) {
		*used = 1;
		return p[0];
	}
	*used = 4;
	return ((size_t)(p[0] & 0x7f) << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
}

static void params(struct conn *c, const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i + 2 <= n) {
		size_t u1, u2, nl, vl;
		if (i + 8 > n && (p[i] >= 128 || p[i + 1] >= 128))
			return;
		nl = nvlen(p + i, &u1);
		vl = nvlen(p + i + u1, &u2);
		i += u1 + u2;
		if (i + nl + vl > n)
			return;
		param(c, (const char *)p + i, nl, (const char *)p + i + nl, vl);
		i += nl + vl;
	}
}

/* Returns -1 when the connection is to be closed. */
static int records(struct conn *c)
{
	size_t off = 0;

	while (c->inlen - off >= 8) {
		unsigned char *h = (unsigned char *)c->in + off;
		size_t clen = ((size_t)h[4] << 8) | h[5], rlen = 8 + clen + h[6];
		if (c->inlen - off < rlen)
			break;
		switch (h[1]) {
		case 1: /* BEGIN_REQUEST */
			c->rid = (uint16_t)(h[2] << 8 | h[3]);
			c->keep = h[8 + 2] & 1;
			c->params_done = 0;
			c->blen = 0;
			c->uri[0] = c->method[0] = '\0';
			break;
		case 2: /* ABORT_REQUEST */
			return -1;
		case 4: /* PARAMS */
			if (clen)
				params(c, h + 8, clen);
			else
				c->params_done = 1;
			break;
		case 5: /* STDIN */
			if (clen) {
				if (c->blen + clen < MAXBODY) {
					memcpy(c->body + c->blen, h + 8, clen);
					c->blen += clen;
				}
			} else if (c->params_done) {
				request(c);
				if (!c->stream && !c->keep) {
					off += rlen;
					return -2;
				}
			}
			break;
		default:
			break;
		}
		off += rlen;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return 0;
}

static void on_conn(struct conn *c, uint32_t events)
{
	if (events & EPOLLOUT && c->outlen) {
		ssize_t w = write(c->fd, c->out, c->outlen);
		if (w > 0) {
			memmove(c->out, c->out + w, c->outlen - (size_t)w);
			c->outlen -= (size_t)w;
		}
		if (!c->outlen) {
			if (c->closing) {
				conn_close(c);
				return;
			}
			want_out(c, 0);
		}
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			ssize_t r;
			if (c->incap - c->inlen < 4096) {
				c->incap = c->incap ? c->incap * 2 : 8192;
				c->in = realloc(c->in, c->incap);
				if (!c->in)
					die("realloc");
			}
			r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
			if (r > 0) {
				c->inlen += (size_t)r;
				int rc = records(c);
				if (rc == -1 || (rc == -2 && !c->outlen)) {
					conn_close(c);
					return;
				}
				if (rc == -2) {
					c->closing = 1;     /* once the answer is out */
					return;
				}
				continue;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				conn_close(c);
				return;
			}
			break;
		}
	}
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	mode_t mode = 0660;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev, evs[256];
	int lfd;

	for (int i = 1; i + 1 < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && strncmp(argv[i + 1], "unix:", 5) == 0)
			path = argv[i + 1] + 5;
		else if (strcmp(argv[i], "--socket-mode") == 0)
			mode = (mode_t)strtol(argv[i + 1], NULL, 8);
	}
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: nullfcgi --listen unix:PATH [--socket-mode MODE]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	strcpy(sa.sun_path, path);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0)
		die("listen");
	chmod(path, mode);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr) {
				int fd;
				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct conn *c = calloc(1, sizeof(*c));
					if (!c)
						die("calloc");
					c->fd = fd;
					ev.events = EPOLLIN | EPOLLRDHUP;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			on_conn(evs[i].data.ptr, evs[i].events);
		}
	}
}
