/*
 * sseload: Server-Sent Events load client for the ssehub benchmarks.
 * One thread, one epoll set, non-blocking sockets. Opens N HTTP/1.1 streams at
 * a bounded connect rate, decodes chunked or identity bodies, parses SSE
 * incrementally and records fan-out latency (now - "ts_us" found in the data).
 * Limits: plain HTTP over TCP only (no TLS, no redirects, no reconnects once a
 * stream has ended); one request per connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF_SIZE     (64 * 1024)
#define MAX_HEADER_BYTES  (16 * 1024)
#define MAX_LINE_BYTES    (1024 * 1024)
#define MAX_EVENT_NAME    64
#define MAX_REPORTS       5      /* diagnostics of each kind printed to stderr */
#define MAX_EPOLL_EVENTS  1024
#define MAX_CHUNK_SIZE    (1u << 30)
#define MAX_SEQ_STATS     4096   /* per-seq latency figures for seq 1..this */

enum conn_state {
	CS_QUEUED,      /* not started yet */
	CS_WAIT_RETRY,  /* a connect attempt failed; waiting for its backoff */
	CS_CONNECTING,  /* non-blocking connect in progress */
	CS_SENDING,     /* part of the request is still unsent */
	CS_HEADERS,     /* reading the response head */
	CS_BODY,        /* reading the response body */
	CS_FINISHED     /* closed for good (failed, or ended after opening) */
};

enum body_mode { BODY_CHUNKED, BODY_LENGTH, BODY_EOF };

enum chunk_state {
	CH_SIZE,        /* hex digits of a chunk size */
	CH_EXT,         /* chunk extension, skipped up to LF */
	CH_SIZE_LF,     /* CR seen after the size */
	CH_DATA,        /* chunk payload */
	CH_DATA_CR,     /* expecting CRLF (or a bare LF) after the payload */
	CH_DATA_LF,
	CH_TRAILER      /* trailer lines after the last chunk, up to an empty line */
};

/* Incremental SSE parser state (WHATWG "Server-sent events", 9.2.6). */
struct sse_parser {
	char *line;             /* partial line carried across reads; may be NULL */
	uint32_t line_len, line_cap;
	char *data;             /* data buffer of the event being built; NUL-terminated */
	uint32_t data_len, data_cap;
	char event[MAX_EVENT_NAME + 1];
	uint8_t event_len;
	bool have_data;
	bool skip_lf;           /* last line ended with CR: a following LF belongs to it */
};

struct conn {
	int fd;
	uint32_t gen;           /* bumped on every close; tags epoll entries */
	uint8_t state, body_mode, chunk_state;
	bool opened;            /* open marker ("connected" event) seen */
	bool churn_done;        /* churn mode: open; hang up after this read */
	bool in_flight;         /* connect attempt started, not open and not ended */
	bool error_response;    /* status != 200: body is diagnostics, not SSE */
	uint16_t retries;
	uint16_t chunk_digits;
	int status;
	uint64_t deadline_ms;   /* retry time (CS_WAIT_RETRY) or response deadline */
	char *buf;              /* unsent request bytes, then response head bytes */
	uint32_t buf_len, buf_off;
	uint64_t remaining;     /* chunk / Content-Length bytes left, trailer line length */
	uint32_t token_idx;
	int64_t last_seq;
	uint32_t messages;
	struct sse_parser sse;
};

static struct {
	const char *host;
	int port;
	const char *path;
	const char *token;
	const char *token_file;
	const char *query_param;
	int topic_groups;         /* -G: stream i adds TOPIC_PARAM=t(i mod this) */
	const char *topic_param;  /* -g */
	bool auth_header;
	int streams;
	double rate;
	int max_retries;
	int retry_delay_ms;
	double header_timeout_s;
	double duration_s;
	double timeout_s;
	double ready_timeout_s;
	double progress_s;
	uint64_t expected;
	const char *ready_file;
	bool quiet;
	bool per_seq;
	const char *open_event;   /* event that marks a stream open; ":" = first comment */
	int sources;              /* bind to 127.0.0.1..127.0.0.<sources> in turn (-s) */
	int max_pending;          /* connects in flight at most (-P; 0 = rate only) */
	uint64_t cycles;          /* churn mode: connect-then-disconnect cycles (-C) */
} opt = {
	.host = "127.0.0.1", .port = 80, .path = "/sse/stream",
	.query_param = "token", .topic_param = "topic", .streams = 100, .rate = 2000, .max_retries = 8,
	.retry_delay_ms = 50, .header_timeout_s = 30, .duration_s = 0,
	.timeout_s = 600, .ready_timeout_s = 0, .progress_s = 1,
	.open_event = "connected",
};

static struct {
	uint64_t connect_attempts, connect_retries;
	uint64_t retry_eagain, retry_econnrefused, retry_other;
	uint64_t connect_errors;        /* streams that never opened */
	uint64_t http_errors, timeouts, protocol_errors;
	uint64_t streams_open, streams_opened_total, streams_closed;
	uint64_t streams_ended_clean, streams_ended_abrupt;  /* of streams_closed */
	uint64_t events_connected, messages_delivered, pings, comments, other_events;
	uint64_t seq_errors, negative_latency;
	uint64_t bytes_in;
	uint64_t cycles_started, cycles_done, cycles_failed;  /* churn mode */
	uint64_t in_flight;                                   /* attempts not yet open */
	uint64_t status_count[600];
	unsigned reports_conn, reports_http, reports_other;
} st;

static struct conn *conns;
static char **tokens;
static size_t ntokens;
static int epfd = -1;
static struct sockaddr_storage server_addr;
static socklen_t server_addr_len;
static char host_header[128];

static uint32_t *lat_us;
static size_t lat_n, lat_cap;

struct seq_stat {
	uint64_t count, sum_us;
	uint32_t min_us, max_us;
};
static struct seq_stat *seq_stats;  /* index = seq; allocated with -S */

static uint32_t *retry_list;
static size_t retry_n;
static int next_queued;
static uint32_t *restart_list;  /* churn mode: slots whose cycle ended */
static size_t restart_n;

static volatile sig_atomic_t got_signal;
static uint64_t t_start_ms, t_ready_ms, t_last_msg_ms;
static bool ready;
static double cpu_at_ready;   /* client CPU seconds when READY was signalled */
static int64_t now_real_us;     /* wall clock at the last read, for latencies */

static void logf_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		logf_err("sseload: out of memory (%zu bytes)", n);
		exit(2);
	}
	return q;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Grows *buf so that it holds at least need bytes; returns 0, or -1 past limit. */
static int buf_reserve(char **buf, uint32_t *cap, size_t need, size_t limit)
{
	size_t ncap;

	if (need <= *cap)
		return 0;
	if (need > limit)
		return -1;
	ncap = *cap ? *cap : 256;
	while (ncap < need)
		ncap *= 2;
	if (ncap > limit)
		ncap = limit;
	*buf = xrealloc(*buf, ncap);
	*cap = (uint32_t)ncap;
	return 0;
}

static void sse_free(struct sse_parser *s)
{
	free(s->line);
	free(s->data);
	memset(s, 0, sizeof(*s));
}

static void check_ready(void);

/* The connect attempt is over (opened, failed, retrying or closed): -P count. */
static void leave_flight(struct conn *c)
{
	if (c->in_flight) {
		c->in_flight = false;
		st.in_flight--;
	}
}

/* Closes the socket and frees per-connection buffers; state is left to the caller. */
static void conn_close_fd(struct conn *c)
{
	leave_flight(c);
	if (c->fd >= 0) {
		close(c->fd);   /* also removes it from the epoll set */
		c->fd = -1;
	}
	c->gen++;
	free(c->buf);
	c->buf = NULL;
	c->buf_len = c->buf_off = 0;
	sse_free(&c->sse);
}

static bool err_is_retryable(int err)
{
	switch (err) {
	case EAGAIN:
	case ECONNREFUSED:
	case ECONNRESET:
	case EADDRNOTAVAIL:
	case ETIMEDOUT:
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case EPIPE:
		return true;
	default:
		return false;
	}
}

static void churn_cycle_end(struct conn *c, bool failed);

/* Marks a stream that never opened as failed for good. */
static void conn_fail(struct conn *c, const char *what, int err)
{
	conn_close_fd(c);
	c->state = CS_FINISHED;
	st.connect_errors++;
	if (opt.cycles)
		churn_cycle_end(c, true);
	if (st.reports_conn < MAX_REPORTS) {
		st.reports_conn++;
		if (err)
			logf_err("sseload: stream %td failed: %s: %s",
				 c - conns, what, strerror(err));
		else
			logf_err("sseload: stream %td failed: %s", c - conns, what);
	}
	check_ready();
}

/* A connect-level failure: schedule a retry with backoff, or give up. */
static void conn_retry_or_fail(struct conn *c, const char *what, int err)
{
	uint64_t backoff;
	unsigned shift;

	if (!err_is_retryable(err) || c->retries >= opt.max_retries) {
		conn_fail(c, what, err);
		return;
	}
	conn_close_fd(c);
	c->retries++;
	st.connect_retries++;
	if (err == EAGAIN)
		st.retry_eagain++;
	else if (err == ECONNREFUSED)
		st.retry_econnrefused++;
	else
		st.retry_other++;
	shift = c->retries - 1 < 5 ? c->retries - 1 : 5;
	backoff = (uint64_t)opt.retry_delay_ms << shift;
	c->deadline_ms = mono_ms() + backoff;
	c->state = CS_WAIT_RETRY;
	retry_list[retry_n++] = (uint32_t)(c - conns);
}

/* The stream ended: an open stream is counted closed, anything else failed. */
static void conn_end(struct conn *c, const char *why, bool clean)
{
	if (c->opened) {
		if (clean)
			st.streams_ended_clean++;
		else
			st.streams_ended_abrupt++;
		conn_close_fd(c);
		c->state = CS_FINISHED;
		st.streams_open--;
		st.streams_closed++;
		if (st.reports_other < MAX_REPORTS) {
			st.reports_other++;
			logf_err("sseload: stream %td closed after opening: %s",
				 c - conns, why);
		}
		return;
	}
	if (c->error_response) {  /* already counted in http_errors */
		conn_close_fd(c);
		c->state = CS_FINISHED;
		st.connect_errors++;
		if (opt.cycles)
			churn_cycle_end(c, true);
		check_ready();
		return;
	}
	conn_fail(c, why, 0);
}

static uint64_t epoll_tag(const struct conn *c)
{
	return (uint64_t)(c - conns) | ((uint64_t)c->gen << 32);
}

static int conn_set_events(struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = epoll_tag(c);
	return epoll_ctl(epfd, op, c->fd, &ev);
}

/* -P: room for another connect attempt? */
static bool may_start(void)
{
	return !opt.max_pending || st.in_flight < (uint64_t)opt.max_pending;
}

static void conn_start(struct conn *c)
{
	int fd;

	st.connect_attempts++;
	c->in_flight = true;
	st.in_flight++;
	fd = socket(server_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_retry_or_fail(c, "socket", errno);
		return;
	}
	if (opt.sources > 1) {
		/*
		 * Many connections to one address:port exhaust the kernel's cheap
		 * ephemeral port search (it scans every port in use for that
		 * destination on each connect). Spreading the source address
		 * over 127.0.0.x keeps connect() O(1); the port is still chosen
		 * at connect time (IP_BIND_ADDRESS_NO_PORT).
		 */
		static uint32_t next_src;
		struct sockaddr_in src;
		int one = 1;

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f000001u + next_src++ % (uint32_t)opt.sources);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			c->fd = fd;
			conn_retry_or_fail(c, "bind", errno);
			return;
		}
	}
	c->fd = fd;
	c->state = CS_CONNECTING;
	c->deadline_ms = mono_ms() + (uint64_t)(opt.header_timeout_s * 1000);
	if (connect(fd, (struct sockaddr *)&server_addr, server_addr_len) < 0 &&
	    errno != EINPROGRESS) {
		conn_retry_or_fail(c, "connect", errno);
		return;
	}
	/* Even an immediate success goes through EPOLLOUT: one code path. */
	if (conn_set_events(c, EPOLLOUT, EPOLL_CTL_ADD) < 0)
		conn_retry_or_fail(c, "epoll_ctl", errno);
}

/* Churn mode: a cycle ended (opened and hung up, or failed); reuse the slot. */
static void churn_cycle_end(struct conn *c, bool failed)
{
	if (failed)
		st.cycles_failed++;
	else
		st.cycles_done++;
	if (st.cycles_started < opt.cycles)
		restart_list[restart_n++] = (uint32_t)(c - conns);
}

/* Churn mode: starts the next cycle in a finished slot. */
static void churn_restart(struct conn *c)
{
	uint32_t gen = c->gen;

	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->fd = -1;
	c->last_seq = INT64_MIN;
	c->token_idx = ntokens ? (uint32_t)(st.cycles_started % ntokens) : 0;
	st.cycles_started++;
	conn_start(c);
}

static size_t url_encode(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		    ch == '.' || ch == '~') {
			out[n++] = (char)ch;
		} else {
			out[n++] = '%';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	out[n] = '\0';
	return n;
}

static int build_request(const struct conn *c, char *out, size_t cap)
{
	char enc[8192], path[8192];
	const char *tok = ntokens ? tokens[c->token_idx] : NULL;
	int n;

	/* -G: the stream's topic, from its place among the streams */
	if (opt.topic_groups > 0)
		n = snprintf(path, sizeof(path), "%s%c%s=t%ld", opt.path, strchr(opt.path, '?') ? '&' : '?',
			     opt.topic_param, (long)((c - conns) % opt.topic_groups));
	else
		n = snprintf(path, sizeof(path), "%s", opt.path);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -1;
	if (!tok) {
		n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s\r\n", path,
			     host_header);
	} else if (opt.auth_header) {
		n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s\r\n"
			     "Authorization: Bearer %s\r\n", path, host_header, tok);
	} else {
		url_encode(enc, sizeof(enc), tok);
		n = snprintf(out, cap, "GET %s%c%s=%s HTTP/1.1\r\nHost: %s\r\n",
			     path, strchr(path, '?') ? '&' : '?',
			     opt.query_param, enc, host_header);
	}
	if (n < 0 || (size_t)n >= cap)
		return -1;
	n += snprintf(out + n, cap - (size_t)n,
		      "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
		      "User-Agent: sseload\r\n\r\n");
	return (size_t)n < cap ? n : -1;
}

static void conn_wait_response(struct conn *c)
{
	free(c->buf);
	c->buf = NULL;
	c->buf_len = c->buf_off = 0;
	c->state = CS_HEADERS;
	if (conn_set_events(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD) < 0)
		conn_retry_or_fail(c, "epoll_ctl", errno);
}

/* Sends (the rest of) the request. */
static void conn_send(struct conn *c)
{
	char req[10240];
	const char *p;
	size_t len;
	ssize_t n;

	if (c->state == CS_CONNECTING) {
		int len0 = build_request(c, req, sizeof(req));

		if (len0 < 0) {
			conn_fail(c, "request too long", 0);
			return;
		}
		p = req;
		len = (size_t)len0;
	} else {
		p = c->buf + c->buf_off;
		len = c->buf_len - c->buf_off;
	}
	n = send(c->fd, p, len, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			conn_retry_or_fail(c, "send", errno);
			return;
		}
		n = 0;
	}
	if ((size_t)n == len) {
		conn_wait_response(c);
		return;
	}
	if (c->state == CS_CONNECTING) {
		c->buf = xrealloc(NULL, len - (size_t)n);
		memcpy(c->buf, p + n, len - (size_t)n);
		c->buf_len = (uint32_t)(len - (size_t)n);
		c->buf_off = 0;
		c->state = CS_SENDING;
	} else {
		c->buf_off += (uint32_t)n;
	}
}

static void record_latency(int64_t lat, int64_t seq)
{
	if (lat < 0) {
		st.negative_latency++;
		lat = 0;
	}
	if (lat > UINT32_MAX)
		lat = UINT32_MAX;
	if (lat_n == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 65536;
		lat_us = xrealloc(lat_us, lat_cap * sizeof(*lat_us));
	}
	lat_us[lat_n++] = (uint32_t)lat;
	if (seq_stats && seq >= 1 && seq <= MAX_SEQ_STATS) {
		struct seq_stat *q = &seq_stats[seq];

		if (!q->count || lat < q->min_us)
			q->min_us = (uint32_t)lat;
		if (lat > q->max_us)
			q->max_us = (uint32_t)lat;
		q->count++;
		q->sum_us += (uint64_t)lat;
	}
}

/* Finds "key": <integer> in a NUL-terminated JSON text; returns 0 when found. */
static int json_find_int(const char *data, const char *quoted_key, int64_t *out)
{
	const char *p = strstr(data, quoted_key);
	char *end;
	long long v;

	if (!p)
		return -1;
	p += strlen(quoted_key);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != ':')
		return -1;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (end == p || errno)
		return -1;
	*out = v;
	return 0;
}

/* The stream is open (its open marker arrived). */
static void mark_open(struct conn *c)
{
	if (c->opened)
		return;
	c->opened = true;
	leave_flight(c);
	st.streams_open++;
	st.streams_opened_total++;
	if (opt.cycles)         /* churn: the cycle is complete; conn_input hangs up */
		c->churn_done = true;
	check_ready();
}

static void on_event(struct conn *c, const char *name, const char *data)
{
	int64_t ts, seq;

	if (strcmp(name, "connected") == 0) {
		st.events_connected++;
		if (strcmp(opt.open_event, "connected") == 0)
			mark_open(c);
		return;
	}
	if (strcmp(name, opt.open_event) == 0 && !c->opened) {
		mark_open(c);
		return;
	}
	if (strcmp(name, "ping") == 0) {
		st.pings++;
		return;
	}
	if (json_find_int(data, "\"ts_us\"", &ts) != 0) {
		st.other_events++;
		if (st.reports_other < MAX_REPORTS) {
			st.reports_other++;
			logf_err("sseload: stream %td: event '%s' without ts_us: %.200s",
				 c - conns, name, data);
		}
		return;
	}
	st.messages_delivered++;
	c->messages++;
	t_last_msg_ms = mono_ms();
	if (json_find_int(data, "\"seq\"", &seq) == 0) {
		if (seq <= c->last_seq)
			st.seq_errors++;   /* duplicate or out of order */
		c->last_seq = seq;
	} else {
		seq = 0;
	}
	record_latency(now_real_us - ts, seq);
}

static void sse_dispatch(struct conn *c)
{
	struct sse_parser *s = &c->sse;

	if (s->have_data) {
		if (s->data_len > 0)
			s->data_len--;          /* the LF after the last data line */
		s->data[s->data_len] = '\0';
		s->event[s->event_len] = '\0';
		on_event(c, s->event_len ? s->event : "message", s->data);
	}
	s->data_len = 0;
	s->event_len = 0;
	s->have_data = false;
}

/* Handles one complete line (without its terminator). Returns 0, or -1 on error. */
static int sse_line(struct conn *c, const char *line, size_t len)
{
	struct sse_parser *s = &c->sse;
	const char *colon, *value;
	size_t name_len, vlen;

	if (len == 0) {
		sse_dispatch(c);
		return 0;
	}
	if (line[0] == ':') {
		st.comments++;
		if (opt.open_event[0] == ':' && !c->opened)
			mark_open(c);
		return 0;
	}
	colon = memchr(line, ':', len);
	name_len = colon ? (size_t)(colon - line) : len;
	value = colon ? colon + 1 : line + len;
	vlen = len - (size_t)(value - line);
	if (vlen > 0 && *value == ' ') {
		value++;
		vlen--;
	}
	if (name_len == 5 && memcmp(line, "event", 5) == 0) {
		s->event_len = (uint8_t)(vlen < MAX_EVENT_NAME ? vlen : MAX_EVENT_NAME);
		memcpy(s->event, value, s->event_len);
	} else if (name_len == 4 && memcmp(line, "data", 4) == 0) {
		if (buf_reserve(&s->data, &s->data_cap, (size_t)s->data_len + vlen + 2,
				MAX_LINE_BYTES) < 0)
			return -1;
		memcpy(s->data + s->data_len, value, vlen);
		s->data_len += (uint32_t)vlen;
		s->data[s->data_len++] = '\n';
		s->have_data = true;
	}
	/* id, retry and unknown fields do not matter here */
	return 0;
}

/* Feeds decoded body bytes to the SSE parser. Returns 0, or -1 on error. */
static int sse_feed(struct conn *c, const char *p, size_t len)
{
	struct sse_parser *s = &c->sse;

	while (len > 0) {
		size_t i = 0;

		if (s->skip_lf) {
			s->skip_lf = false;
			if (*p == '\n') {
				p++;
				len--;
				continue;
			}
		}
		while (i < len && p[i] != '\n' && p[i] != '\r')
			i++;
		/* the line buffer is needed only to carry a line across reads */
		if ((s->line_len > 0 || i == len) &&
		    buf_reserve(&s->line, &s->line_cap, (size_t)s->line_len + i,
				MAX_LINE_BYTES) < 0)
			return -1;
		if (i == len) {         /* no line end yet: keep the piece */
			memcpy(s->line + s->line_len, p, i);
			s->line_len += (uint32_t)i;
			return 0;
		}
		if (p[i] == '\r')
			s->skip_lf = true;
		if (s->line_len == 0) {         /* whole line in this read: no copy */
			if (sse_line(c, p, i) < 0)
				return -1;
		} else {
			memcpy(s->line + s->line_len, p, i);
			s->line_len += (uint32_t)i;
			if (sse_line(c, s->line, s->line_len) < 0)
				return -1;
			s->line_len = 0;
		}
		p += i + 1;
		len -= i + 1;
	}
	return 0;
}

/* Decoded body bytes: SSE for a 200 response, diagnostics for anything else. */
static int body_payload(struct conn *c, const char *p, size_t len)
{
	if (!c->error_response)
		return sse_feed(c, p, len);
	if (st.reports_http < MAX_REPORTS && len > 0) {
		st.reports_http++;
		logf_err("sseload: stream %td: HTTP %d body: %.*s", c - conns,
			 c->status, (int)(len < 300 ? len : 300), p);
	}
	return 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Feeds raw body bytes. Returns 0 when more is expected, 1 when the body is
 * complete, -1 on a framing or parsing error.
 */
static int body_feed(struct conn *c, const char *p, size_t len)
{
	size_t take;

	if (c->body_mode == BODY_EOF)
		return body_payload(c, p, len);
	if (c->body_mode == BODY_LENGTH) {
		take = len < c->remaining ? len : (size_t)c->remaining;
		if (body_payload(c, p, take) < 0)
			return -1;
		c->remaining -= take;
		return c->remaining == 0 ? 1 : 0;
	}
	while (len > 0) {
		char ch;
		int h;

		if (c->chunk_state == CH_DATA) {
			take = len < c->remaining ? len : (size_t)c->remaining;
			if (body_payload(c, p, take) < 0)
				return -1;
			c->remaining -= take;
			p += take;
			len -= take;
			if (c->remaining == 0)
				c->chunk_state = CH_DATA_CR;
			continue;
		}
		ch = *p++;
		len--;
		switch (c->chunk_state) {
		case CH_SIZE:
			h = hexval(ch);
			if (h >= 0) {
				c->remaining = c->remaining * 16 + (uint64_t)h;
				c->chunk_digits++;
				if (c->remaining > MAX_CHUNK_SIZE)
					return -1;
				break;
			}
			if (ch == ';' || ch == ' ' || ch == '\t')
				c->chunk_state = CH_EXT;
			else if (ch == '\r')
				c->chunk_state = CH_SIZE_LF;
			else if (ch == '\n')
				goto size_line_done;
			else
				return -1;
			break;
		case CH_EXT:
			if (ch == '\n')
				goto size_line_done;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -1;
size_line_done:
			if (c->chunk_digits == 0)
				return -1;
			c->chunk_digits = 0;
			c->chunk_state = c->remaining ? CH_DATA : CH_TRAILER;
			/* in CH_TRAILER, remaining is the current trailer line's length */
			break;
		case CH_DATA_CR:
			if (ch == '\r')
				c->chunk_state = CH_DATA_LF;
			else if (ch == '\n')
				c->chunk_state = CH_SIZE;
			else
				return -1;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -1;
			c->chunk_state = CH_SIZE;
			break;
		case CH_TRAILER:
			if (ch == '\n') {
				if (c->remaining == 0)
					return 1;
				c->remaining = 0;
			} else if (ch != '\r') {
				c->remaining++;
			}
			break;
		default:
			return -1;
		}
	}
	return 0;
}

static bool header_is(const char *name, size_t name_len, const char *want)
{
	return strlen(want) == name_len && strncasecmp(name, want, name_len) == 0;
}

/*
 * Parses the response head in c->buf[0..head_len). Sets status and body mode.
 * Returns 0, or -1 when the head is not HTTP/1.x.
 */
static int parse_head(struct conn *c, size_t head_len)
{
	char *p = c->buf, *end = c->buf + head_len, *eol;
	bool chunked = false, have_length = false;
	uint64_t length = 0;

	if (head_len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -1;
	c->status = atoi(p + 9);
	if (c->status < 100 || c->status > 599)
		return -1;
	eol = memchr(p, '\n', head_len);
	p = eol ? eol + 1 : end;
	while (p < end) {
		char *colon, *v, *vend;
		size_t name_len;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		vend = eol;
		if (vend > p && vend[-1] == '\r')
			vend--;
		colon = memchr(p, ':', (size_t)(vend - p));
		if (colon) {
			name_len = (size_t)(colon - p);
			v = colon + 1;
			while (v < vend && (*v == ' ' || *v == '\t'))
				v++;
			if (header_is(p, name_len, "transfer-encoding")) {
				if (memmem(v, (size_t)(vend - v), "chunked", 7) ||
				    memmem(v, (size_t)(vend - v), "Chunked", 7))
					chunked = true;
			} else if (header_is(p, name_len, "content-length")) {
				have_length = true;
				length = strtoull(v, NULL, 10);
			}
		}
		p = eol + 1;
	}
	if (chunked) {
		c->body_mode = BODY_CHUNKED;
		c->chunk_state = CH_SIZE;
		c->chunk_digits = 0;
		c->remaining = 0;
	} else if (have_length) {
		c->body_mode = BODY_LENGTH;
		c->remaining = length;
	} else {
		c->body_mode = BODY_EOF;
	}
	return 0;
}

/* Handles received bytes. Returns 0, or 1 when the connection was finished. */
static int conn_input(struct conn *c, const char *p, size_t len)
{
	int r;

	if (c->state == CS_HEADERS) {
		size_t from = c->buf_len > 3 ? c->buf_len - 3 : 0, head_len = 0, i;
		size_t keep = len;

		if (keep > MAX_HEADER_BYTES - c->buf_len)
			keep = MAX_HEADER_BYTES - c->buf_len;
		c->buf = xrealloc(c->buf, (size_t)c->buf_len + keep + 1);
		memcpy(c->buf + c->buf_len, p, keep);
		c->buf_len += (uint32_t)keep;
		c->buf[c->buf_len] = '\0';
		for (i = from; i < c->buf_len; i++) {
			if (c->buf[i] != '\n')
				continue;
			if (i >= 1 && c->buf[i - 1] == '\n') {
				head_len = i + 1;
				break;
			}
			if (i >= 2 && c->buf[i - 1] == '\r' && c->buf[i - 2] == '\n') {
				head_len = i + 1;
				break;
			}
		}
		if (!head_len) {
			if (c->buf_len >= MAX_HEADER_BYTES) {
				st.protocol_errors++;
				conn_fail(c, "response head too long", 0);
				return 1;
			}
			return 0;
		}
		if (parse_head(c, head_len) < 0) {
			st.protocol_errors++;
			conn_fail(c, "bad response head", 0);
			return 1;
		}
		st.status_count[c->status]++;
		if (c->status != 200) {
			c->error_response = true;
			st.http_errors++;
		}
		/* bytes after the head: from the head buffer, then the rest of p */
		{
			size_t in_buf = c->buf_len - head_len;
			char *rest = NULL;

			if (in_buf) {
				rest = xrealloc(NULL, in_buf);
				memcpy(rest, c->buf + head_len, in_buf);
			}
			free(c->buf);
			c->buf = NULL;
			c->buf_len = 0;
			c->state = CS_BODY;
			r = (c->body_mode == BODY_LENGTH && c->remaining == 0) ? 1 : 0;
			if (in_buf)
				r = body_feed(c, rest, in_buf);
			free(rest);
			if (r == 0 && keep < len)
				r = body_feed(c, p + keep, len - keep);
		}
	} else {
		r = body_feed(c, p, len);
	}
	if (c->churn_done) {    /* churn mode: open, so hang up (rest of the read ignored) */
		st.streams_open--;
		conn_close_fd(c);
		c->state = CS_FINISHED;
		churn_cycle_end(c, false);
		return 1;
	}
	if (r < 0) {
		st.protocol_errors++;
		if (c->opened)
			conn_end(c, "protocol error in body", false);
		else
			conn_fail(c, "protocol error in body", 0);
		return 1;
	}
	if (r > 0) {
		conn_end(c, "end of body", true);
		return 1;
	}
	return 0;
}

static void conn_readable(struct conn *c)
{
	static char rbuf[READ_BUF_SIZE];

	for (;;) {
		ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);

		if (n > 0) {
			st.bytes_in += (uint64_t)n;
			now_real_us = real_us();
			if (conn_input(c, rbuf, (size_t)n))
				return;
			if ((size_t)n < sizeof(rbuf))
				return;         /* level-triggered: epoll reports the rest */
			continue;
		}
		if (n == 0) {
			if (c->state == CS_HEADERS && c->buf_len == 0)
				conn_retry_or_fail(c, "closed before response", ECONNRESET);
			else if (c->state == CS_HEADERS)
				conn_fail(c, "closed inside response head", 0);
			else if (c->body_mode == BODY_EOF)
				conn_end(c, "end of body (close)", true);
			else
				conn_end(c, "connection closed inside the body", false);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return;
		if (c->state == CS_HEADERS && c->buf_len == 0)
			conn_retry_or_fail(c, "recv", errno);
		else
			conn_end(c, strerror(errno), false);
		return;
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t elen = sizeof(err);

	switch (c->state) {
	case CS_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err) {
			conn_retry_or_fail(c, "connect", err);
			return;
		}
		if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			conn_send(c);
		break;
	case CS_SENDING:
		conn_send(c);
		break;
	case CS_HEADERS:
	case CS_BODY:
		conn_readable(c);
		break;
	default:
		break;
	}
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void signal_ready(bool complete)
{
	FILE *f;

	ready = true;
	t_ready_ms = mono_ms();
	cpu_at_ready = cpu_seconds();
	printf("READY\n");
	fflush(stdout);
	if (!opt.quiet)
		logf_err("sseload: %s: %" PRIu64 " of %d streams open after %.2f s",
			 complete ? "ready" : "ready (timeout)", st.streams_open,
			 opt.streams, (double)(t_ready_ms - t_start_ms) / 1000);
	if (opt.ready_file) {
		f = fopen(opt.ready_file, "w");
		if (!f) {
			logf_err("sseload: %s: %s", opt.ready_file, strerror(errno));
			return;
		}
		fprintf(f, "READY open=%" PRIu64 " errors=%" PRIu64 "\n",
			st.streams_open, st.connect_errors);
		fclose(f);
	}
}

static void check_ready(void)
{
	if (ready)
		return;
	if (opt.cycles ? st.cycles_done + st.cycles_failed >= opt.cycles :
	    st.streams_opened_total + st.connect_errors >= (uint64_t)opt.streams)
		signal_ready(true);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples, in ms. */
static double percentile_ms(double q)
{
	size_t rank;

	if (!lat_n)
		return 0;
	rank = (size_t)(q * (double)lat_n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > lat_n)
		rank = lat_n;
	return lat_us[rank - 1] / 1000.0;
}

static void progress(uint64_t now)
{
	uint64_t connecting = 0;
	int i;

	for (i = 0; i < opt.streams; i++)
		if (conns[i].state >= CS_CONNECTING && conns[i].state <= CS_BODY &&
		    !conns[i].opened)
			connecting++;
	logf_err("sseload: t=%.1fs open=%" PRIu64 "/%d pending=%" PRIu64
		 " queued=%d retries=%" PRIu64 " errors=%" PRIu64 " closed=%" PRIu64
		 " msgs=%" PRIu64 " pings=%" PRIu64,
		 (double)(now - t_start_ms) / 1000, st.streams_open, opt.streams,
		 connecting, opt.streams - next_queued, st.connect_retries,
		 st.connect_errors, st.streams_closed, st.messages_delivered, st.pings);
}

/* Fails every stream still waiting for its response past the deadline. */
static void check_timeouts(uint64_t now)
{
	int i;

	for (i = 0; i < opt.streams; i++) {
		struct conn *c = &conns[i];

		if (c->state >= CS_CONNECTING && c->state <= CS_BODY && !c->opened &&
		    !c->error_response && now >= c->deadline_ms) {
			st.timeouts++;
			conn_fail(c, "no connected event before the deadline", 0);
		}
	}
}

static int load_tokens(void)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	size_t tcap = 0;

	if (opt.token) {
		tokens = xrealloc(NULL, sizeof(*tokens));
		tokens[0] = strdup(opt.token);
		ntokens = 1;
		return 0;
	}
	if (!opt.token_file)
		return 0;
	f = fopen(opt.token_file, "r");
	if (!f) {
		logf_err("sseload: %s: %s", opt.token_file, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
				 line[n - 1] == ' '))
			line[--n] = '\0';
		if (n == 0)
			continue;
		if (ntokens == tcap) {
			tcap = tcap ? tcap * 2 : 1024;
			tokens = xrealloc(tokens, tcap * sizeof(*tokens));
		}
		tokens[ntokens++] = strdup(line);
	}
	free(line);
	fclose(f);
	if (!ntokens) {
		logf_err("sseload: %s: no tokens", opt.token_file);
		return -1;
	}
	return 0;
}

static int resolve_server(void)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&server_addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&server_addr;

	memset(&server_addr, 0, sizeof(server_addr));
	if (inet_pton(AF_INET, opt.host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)opt.port);
		server_addr_len = sizeof(*a4);
		snprintf(host_header, sizeof(host_header), "%s:%d", opt.host, opt.port);
		return 0;
	}
	if (inet_pton(AF_INET6, opt.host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)opt.port);
		server_addr_len = sizeof(*a6);
		snprintf(host_header, sizeof(host_header), "[%s]:%d", opt.host, opt.port);
		return 0;
	}
	logf_err("sseload: -H wants a numeric IPv4 or IPv6 address, got '%s'", opt.host);
	return -1;
}

static void on_signal(int sig)
{
	got_signal = sig;
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: sseload [options]\n"
"  -H ADDR     server address, numeric IPv4/IPv6 (127.0.0.1)\n"
"  -p PORT     server port (80)\n"
"  -u PATH     request path (/sse/stream)\n"
"  -t TOKEN    one token for every stream\n"
"  -T FILE     tokens, one a line; stream i uses line i (mod count)\n"
"  -q NAME     query parameter for the token (token)\n"
"  -G N        stream i also asks for topic t(i mod N): NAME=t.. in the query\n"
"  -g NAME     the query parameter of -G (topic)\n"
"  -a          send the token as 'Authorization: Bearer' instead\n"
"  -n N        streams to open (100)\n"
"  -r RATE     connect attempts per second (2000)\n"
"  -x N        retries per stream on EAGAIN/ECONNREFUSED/... (8)\n"
"  -b MS       first retry delay, doubled per retry up to x32 (50)\n"
"  -c SEC      deadline from connect to the 'connected' event (30)\n"
"  -e COUNT    stop once COUNT messages were delivered in all\n"
"  -d SEC      stop SEC seconds after READY (0 = no limit)\n"
"  -w SEC      hard timeout from start (600)\n"
"  -W SEC      signal READY after SEC even if streams are missing (0 = -w)\n"
"  -R FILE     create FILE on READY (READY is also printed on stdout)\n"
"  -i SEC      progress interval on stderr (1; 0 = none)\n"
"  -Q          quiet: no progress or diagnostics on stderr\n"
"  -S          per-seq latency lines (seq_N=count:.. min_ms:.. mean_ms:.. max_ms:..)\n"
"  -O EVENT    event that marks a stream open (connected); ':' = its first comment\n"
"              (Nchan's EventSource sends ': hi' and no connected event)\n"
"  -s K        source addresses 127.0.0.1..127.0.0.K in turn (IPv4 target on\n"
"              loopback; for more streams than one source's ports allow fast)\n"
"  -P K        at most K connect attempts in flight (not yet open); with a\n"
"              high -r the open rate is then what the server sustains\n"
"  -C CYCLES   churn mode: -n streams at a time, each closed as soon as it is\n"
"              open and replaced by the next, until CYCLES cycles have ended;\n"
"              READY and stop when they have (cycles_* lines in the summary)\n"
"Summary on stdout, key=value per line, after the READY line.\n");
}

static double parse_num(const char *s, char flag)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0) {
		logf_err("sseload: -%c: bad number '%s'", flag, s);
		exit(2);
	}
	return v;
}

static void print_summary(const char *reason, uint64_t now)
{
	double cpu = cpu_seconds(), sum = 0;
	size_t i;
	int s;

	qsort(lat_us, lat_n, sizeof(*lat_us), cmp_u32);
	for (i = 0; i < lat_n; i++)
		sum += lat_us[i];

	printf("streams_requested=%d\n", opt.streams);
	printf("streams_open=%" PRIu64 "\n", st.streams_open);
	printf("connect_errors=%" PRIu64 "\n", st.connect_errors);
	printf("events_connected=%" PRIu64 "\n", st.events_connected);
	printf("messages_delivered=%" PRIu64 "\n", st.messages_delivered);
	printf("latency_p50_ms=%.3f\n", percentile_ms(0.50));
	printf("latency_p99_ms=%.3f\n", percentile_ms(0.99));
	printf("latency_max_ms=%.3f\n", lat_n ? lat_us[lat_n - 1] / 1000.0 : 0.0);
	printf("messages_expected=%" PRIu64 "\n", opt.expected);
	printf("latency_min_ms=%.3f\n", lat_n ? lat_us[0] / 1000.0 : 0.0);
	printf("latency_mean_ms=%.3f\n", lat_n ? sum / (double)lat_n / 1000 : 0.0);
	printf("latency_p90_ms=%.3f\n", percentile_ms(0.90));
	printf("latency_p999_ms=%.3f\n", percentile_ms(0.999));
	printf("latency_samples=%zu\n", lat_n);
	printf("negative_latency=%" PRIu64 "\n", st.negative_latency);
	printf("streams_opened_total=%" PRIu64 "\n", st.streams_opened_total);
	printf("streams_closed=%" PRIu64 "\n", st.streams_closed);
	printf("streams_ended_clean=%" PRIu64 "\n", st.streams_ended_clean);
	printf("streams_ended_abrupt=%" PRIu64 "\n", st.streams_ended_abrupt);
	printf("connect_attempts=%" PRIu64 "\n", st.connect_attempts);
	printf("connect_retries=%" PRIu64 "\n", st.connect_retries);
	printf("retries_eagain=%" PRIu64 "\n", st.retry_eagain);
	printf("retries_econnrefused=%" PRIu64 "\n", st.retry_econnrefused);
	printf("retries_other=%" PRIu64 "\n", st.retry_other);
	printf("http_errors=%" PRIu64 "\n", st.http_errors);
	for (s = 100; s < 600; s++)
		if (st.status_count[s] && s != 200)
			printf("http_status_%d=%" PRIu64 "\n", s, st.status_count[s]);
	printf("timeouts=%" PRIu64 "\n", st.timeouts);
	printf("protocol_errors=%" PRIu64 "\n", st.protocol_errors);
	printf("pings=%" PRIu64 "\n", st.pings);
	printf("comments=%" PRIu64 "\n", st.comments);
	printf("other_events=%" PRIu64 "\n", st.other_events);
	printf("seq_errors=%" PRIu64 "\n", st.seq_errors);
	printf("bytes_in=%" PRIu64 "\n", st.bytes_in);
	printf("open_time_s=%.3f\n",
	       ready ? (double)(t_ready_ms - t_start_ms) / 1000 : -1.0);
	printf("elapsed_s=%.3f\n", (double)(now - t_start_ms) / 1000);
	printf("client_cpu_s=%.3f\n", cpu);
	printf("client_cpu_after_ready_s=%.3f\n", cpu - cpu_at_ready);
	printf("stop_reason=%s\n", reason);
	if (opt.cycles) {
		double secs = ready ? (double)(t_ready_ms - t_start_ms) / 1000 :
			      (double)(now - t_start_ms) / 1000;

		printf("cycles_requested=%" PRIu64 "\n", opt.cycles);
		printf("cycles_done=%" PRIu64 "\n", st.cycles_done);
		printf("cycles_failed=%" PRIu64 "\n", st.cycles_failed);
		printf("cycles_time_s=%.3f\n", secs);
		printf("cycles_per_s=%.1f\n", secs > 0 ? (double)st.cycles_done / secs : 0.0);
	}
	for (s = 1; seq_stats && s <= MAX_SEQ_STATS; s++) {
		const struct seq_stat *q = &seq_stats[s];

		if (q->count)
			printf("seq_%d=count:%" PRIu64 " min_ms:%.3f mean_ms:%.3f max_ms:%.3f\n",
			       s, q->count, q->min_us / 1000.0,
			       (double)q->sum_us / (double)q->count / 1000, q->max_us / 1000.0);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EPOLL_EVENTS];
	uint64_t now, next_progress, next_timeout_check, last_refill;
	double tokens_avail = 1, burst;
	const char *reason = NULL;
	struct sigaction sa;
	int ch, i;

	while ((ch = getopt(argc, argv, "H:p:u:t:T:q:G:g:an:r:x:b:c:e:d:w:W:R:i:QSO:C:s:P:h")) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = (int)parse_num(optarg, 'p'); break;
		case 'u': opt.path = optarg; break;
		case 't': opt.token = optarg; break;
		case 'T': opt.token_file = optarg; break;
		case 'q': opt.query_param = optarg; break;
		case 'G': opt.topic_groups = (int)parse_num(optarg, 'G'); break;
		case 'g': opt.topic_param = optarg; break;
		case 'a': opt.auth_header = true; break;
		case 'n': opt.streams = (int)parse_num(optarg, 'n'); break;
		case 'r': opt.rate = parse_num(optarg, 'r'); break;
		case 'x': opt.max_retries = (int)parse_num(optarg, 'x'); break;
		case 'b': opt.retry_delay_ms = (int)parse_num(optarg, 'b'); break;
		case 'c': opt.header_timeout_s = parse_num(optarg, 'c'); break;
		case 'e': opt.expected = (uint64_t)parse_num(optarg, 'e'); break;
		case 'd': opt.duration_s = parse_num(optarg, 'd'); break;
		case 'w': opt.timeout_s = parse_num(optarg, 'w'); break;
		case 'W': opt.ready_timeout_s = parse_num(optarg, 'W'); break;
		case 'R': opt.ready_file = optarg; break;
		case 'i': opt.progress_s = parse_num(optarg, 'i'); break;
		case 'Q': opt.quiet = true; break;
		case 'S': opt.per_seq = true; break;
		case 'O': opt.open_event = optarg; break;
		case 'C': opt.cycles = (uint64_t)parse_num(optarg, 'C'); break;
		case 's': opt.sources = (int)parse_num(optarg, 's'); break;
		case 'P': opt.max_pending = (int)parse_num(optarg, 'P'); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || opt.streams < 1 || opt.rate <= 0 || opt.port < 1 ||
	    opt.port > 65535 || opt.max_retries > 60000) {
		usage(stderr);
		return 2;
	}
	if (opt.token && opt.token_file) {
		logf_err("sseload: -t and -T exclude each other");
		return 2;
	}
	if (resolve_server() < 0 || load_tokens() < 0)
		return 2;
	if (opt.sources > 1 && (server_addr.ss_family != AF_INET || opt.sources > 254)) {
		logf_err("sseload: -s wants an IPv4 target and at most 254 sources");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	conns = calloc((size_t)opt.streams, sizeof(*conns));
	/* one pass over the list can re-append every entry behind itself: 2N */
	retry_list = calloc(2 * (size_t)opt.streams + 1, sizeof(*retry_list));
	restart_list = calloc((size_t)opt.streams + 1, sizeof(*restart_list));
	if (!conns || !retry_list || !restart_list) {
		logf_err("sseload: out of memory");
		return 2;
	}
	for (i = 0; i < opt.streams; i++) {
		conns[i].fd = -1;
		conns[i].last_seq = INT64_MIN;
		conns[i].token_idx = ntokens ? (uint32_t)((size_t)i % ntokens) : 0;
	}
	if (opt.per_seq)
		seq_stats = xrealloc(NULL, (MAX_SEQ_STATS + 1) * sizeof(*seq_stats));
	if (seq_stats)
		memset(seq_stats, 0, (MAX_SEQ_STATS + 1) * sizeof(*seq_stats));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		logf_err("sseload: epoll_create1: %s", strerror(errno));
		return 2;
	}

	burst = opt.rate / 20 > 1 ? opt.rate / 20 : 1;   /* at most 50 ms worth at once */
	t_start_ms = last_refill = now = mono_ms();
	next_progress = now + (uint64_t)(opt.progress_s * 1000);
	next_timeout_check = now + 250;
	if (opt.ready_timeout_s <= 0)
		opt.ready_timeout_s = opt.timeout_s;

	while (!reason) {
		int n, timeout_ms, j;
		size_t k, kept;

		now = mono_ms();
		tokens_avail += (double)(now - last_refill) * opt.rate / 1000;
		if (tokens_avail > burst)
			tokens_avail = burst;
		last_refill = now;

		/* retries first, then streams never tried */
		for (k = 0, kept = 0; k < retry_n; k++) {
			struct conn *c = &conns[retry_list[k]];

			if (c->deadline_ms <= now && tokens_avail >= 1 && may_start()) {
				tokens_avail -= 1;
				conn_start(c);
			} else {
				retry_list[kept++] = retry_list[k];
			}
		}
		/* conn_start may append again behind the scan: the loop sees those too */
		retry_n = kept;
		while (next_queued < opt.streams && tokens_avail >= 1 && may_start() &&
		       (!opt.cycles || st.cycles_started < opt.cycles)) {
			tokens_avail -= 1;
			if (opt.cycles)
				st.cycles_started++;
			conn_start(&conns[next_queued++]);
		}
		/* churn mode: next cycles in the slots that finished one */
		for (k = 0, kept = 0; k < restart_n; k++) {
			if (tokens_avail >= 1 && may_start() && st.cycles_started < opt.cycles) {
				tokens_avail -= 1;
				churn_restart(&conns[restart_list[k]]);
			} else if (st.cycles_started < opt.cycles) {
				restart_list[kept++] = restart_list[k];
			}
		}
		restart_n = kept;

		timeout_ms = (next_queued < opt.streams || retry_n || restart_n) ? 5 : 100;
		if (opt.cycles && next_queued < opt.streams && st.cycles_started >= opt.cycles)
			timeout_ms = 100;  /* more slots than cycles */
		n = epoll_wait(epfd, evs, MAX_EPOLL_EVENTS, timeout_ms);
		if (n < 0 && errno != EINTR) {
			logf_err("sseload: epoll_wait: %s", strerror(errno));
			reason = "error";
			break;
		}
		for (j = 0; j < n; j++) {
			uint32_t idx = (uint32_t)evs[j].data.u64;
			uint32_t gen = (uint32_t)(evs[j].data.u64 >> 32);
			struct conn *c = &conns[idx];

			if (c->gen != gen || c->fd < 0)
				continue;       /* stale event of a closed connection */
			conn_event(c, evs[j].events);
		}

		now = mono_ms();
		if (now >= next_timeout_check) {
			check_timeouts(now);
			next_timeout_check = now + 250;
		}
		if (!ready && (double)(now - t_start_ms) >= opt.ready_timeout_s * 1000 &&
		    opt.ready_timeout_s < opt.timeout_s)
			signal_ready(false);
		if (opt.progress_s > 0 && now >= next_progress && !opt.quiet) {
			progress(now);
			next_progress = now + (uint64_t)(opt.progress_s * 1000);
		}
		if (got_signal)
			reason = "signal";
		else if (opt.cycles && st.cycles_done + st.cycles_failed >= opt.cycles)
			reason = "cycles";
		else if (opt.expected && st.messages_delivered >= opt.expected)
			reason = "expected";
		else if (ready && opt.duration_s > 0 &&
			 (double)(now - t_ready_ms) >= opt.duration_s * 1000)
			reason = "duration";
		else if ((double)(now - t_start_ms) >= opt.timeout_s * 1000)
			reason = "timeout";
		else if (ready && st.streams_open == 0 && next_queued >= opt.streams &&
			 retry_n == 0)
			reason = "all_closed";
	}
	if (!ready)
		signal_ready(false);  /* a driver waiting for READY must not hang */
	if (!opt.quiet) {
		progress(now);
		logf_err("sseload: stopping: %s", reason);
	}
	print_summary(reason, now);
	for (i = 0; i < opt.streams; i++)
		conn_close_fd(&conns[i]);
	return 0;
}
