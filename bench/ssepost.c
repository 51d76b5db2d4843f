/*
 * ssepost: keep-alive publisher for the ssehub benchmarks (bench/compare.sh).
 *
 * Sends COUNT publish requests over CONNS persistent HTTP/1.1 connections, one
 * thread per connection, each request written as soon as the previous answer
 * on that connection has been read (closed loop: the figure is the server's
 * publish throughput). Every message body carries "ts_us" (wall clock in µs
 * just before the request is written) and "seq", so sseload can measure the
 * delivery latency and check order.
 *
 * Targets (-k):
 *   ssehub  POST /api/sse/send-to-user {"user_id":"U","event":"bench","data":{...}}
 *           POST /api/sse/broadcast    {"event":"bench","data":{...}}
 *           POST /api/sse/publish      {"topic":"tK","event":"bench","data":{...}} (-G)
 *           with Authorization: Bearer <admin token>; ssehub and gohub alike.
 *   nchan   POST /pub?id=user_U | /pub?id=broadcast | /pub?id=tK, the body
 *           being the data itself, Accept: application/json.
 * Message i goes to user (i mod USERS) + 1 with seq (i div USERS) + 1, so every
 * user gets its messages in increasing seq; with -b (broadcast) message i has
 * seq i + 1 and is sent at start + i * INTERVAL. With -G TOPICS message i goes
 * to topic t(i mod TOPICS) with seq i + 1 (increasing on every topic, and on a
 * stream on several topics when one connection publishes), and -i paces it as
 * with -b. With -c K > 1 and -i, up to K
 * broadcasts can be outstanding, so a slow answer does not delay the next one
 * (open loop: use -c COUNT to keep the schedule whatever the server does).
 *
 * Output: key=value lines (sent, ok, failed, recipients_total, req_per_s,
 * post_ms_p50/p99/max, http_status_NNN ...). Exit status 1 if any failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (64 * 1024)

static struct {
	const char *host;
	int port;
	bool nchan;
	bool broadcast;
	long topics;            /* -G: message i to topic t(i mod topics); 0: off */
	const char *token;
	long count;
	int conns;
	long users;
	double interval_ms;
	int pad;
	long start_seq;
	double timeout_s;
} opt = {
	.host = "127.0.0.1", .port = 80, .count = 1, .conns = 1, .users = 1,
	.interval_ms = 0, .pad = 150, .start_seq = 1, .timeout_s = 15,
};

static struct sockaddr_in addr;
static char *pad_str;
static atomic_long next_msg;
static atomic_long n_ok, n_failed, n_retries, recipients_total;
static atomic_long status_count[600];
static double *post_ms;         /* per message, -1 if it failed */
static int64_t t0_mono_us;

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct timeval tv;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	tv.tv_sec = (time_t)opt.timeout_s;
	tv.tv_usec = (suseconds_t)((opt.timeout_s - (double)tv.tv_sec) * 1e6);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Builds the request for message i into buf; returns its length. */
static int build(long i, char *buf, size_t cap)
{
	char body[4096], path[128];
	long user = opt.broadcast ? 0 : i % opt.users + 1;
	long seq = opt.start_seq + (opt.broadcast || opt.topics ? i : i / opt.users);
	long topic = opt.topics ? i % opt.topics : 0;
	int64_t ts = real_us();
	int blen, n;

	if (opt.nchan) {
		blen = snprintf(body, sizeof(body), "{\"ts_us\":%" PRId64 ",\"seq\":%ld,\"pad\":\"%s\"}",
				ts, seq, pad_str);
		if (opt.topics)
			snprintf(path, sizeof(path), "/pub?id=t%ld", topic);
		else if (opt.broadcast)
			snprintf(path, sizeof(path), "/pub?id=broadcast");
		else
			snprintf(path, sizeof(path), "/pub?id=user_%ld", user);
		n = snprintf(buf, cap, "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
			     "Accept: application/json\r\nContent-Type: application/json\r\n"
			     "Content-Length: %d\r\n\r\n%s", path, opt.host, opt.port, blen, body);
	} else {
		if (opt.topics)
			blen = snprintf(body, sizeof(body),
					"{\"topic\":\"t%ld\",\"event\":\"bench\",\"data\":{\"ts_us\":%" PRId64
					",\"seq\":%ld,\"pad\":\"%s\"}}", topic, ts, seq, pad_str);
		else if (opt.broadcast)
			blen = snprintf(body, sizeof(body),
					"{\"event\":\"bench\",\"data\":{\"ts_us\":%" PRId64
					",\"seq\":%ld,\"pad\":\"%s\"}}", ts, seq, pad_str);
		else
			blen = snprintf(body, sizeof(body),
					"{\"user_id\":\"%ld\",\"event\":\"bench\",\"data\":{\"ts_us\":%"
					PRId64 ",\"seq\":%ld,\"pad\":\"%s\"}}", user, ts, seq, pad_str);
		n = snprintf(buf, cap, "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
			     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
			     "Content-Length: %d\r\n\r\n%s",
			     opt.topics ? "/api/sse/publish" : opt.broadcast ? "/api/sse/broadcast" : "/api/sse/send-to-user",
			     opt.host, opt.port, opt.token, blen, body);
	}
	return n;
}

/*
 * Reads one response (Content-Length or chunked body). Returns the status, or
 * -1 if the connection failed before a whole response arrived (*got_any tells
 * whether any byte came). *close_after is set on "Connection: close" or an
 * HTTP/1.0 answer without keep-alive; *recips gets the recipient count.
 */
static int read_response(int fd, char *buf, bool *got_any, bool *close_after, long *recips)
{
	size_t len = 0, head_len = 0, body_off;
	char *eoh = NULL, *p, *body = NULL;
	long clen = -1;
	bool chunked = false;
	int status;

	*got_any = false;
	*close_after = false;
	*recips = 0;
	for (;;) {             /* the head */
		ssize_t n = recv(fd, buf + len, RESP_MAX - 1 - len, 0);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		*got_any = true;
		len += (size_t)n;
		buf[len] = '\0';
		eoh = strstr(buf, "\r\n\r\n");
		if (eoh)
			break;
		if (len >= RESP_MAX - 1)
			return -1;
	}
	head_len = (size_t)(eoh - buf) + 4;
	if (strncmp(buf, "HTTP/1.", 7) != 0)
		return -1;
	status = atoi(buf + 9);
	if (buf[7] == '0')
		*close_after = true;
	for (p = strstr(buf, "\r\n"); p && p < eoh; p = strstr(p + 2, "\r\n")) {
		char *h = p + 2;

		if (strncasecmp(h, "content-length:", 15) == 0)
			clen = strtol(h + 15, NULL, 10);
		else if (strncasecmp(h, "transfer-encoding:", 18) == 0 &&
			 strcasestr(h, "chunked") && strcasestr(h, "chunked") < strstr(h, "\r\n"))
			chunked = true;
		else if (strncasecmp(h, "connection:", 11) == 0) {
			char *e = strstr(h, "\r\n");
			char *c = strcasestr(h, "close");
			char *k = strcasestr(h, "keep-alive");

			if (c && c < e)
				*close_after = true;
			if (k && k < e)
				*close_after = false;
		}
	}
	body_off = head_len;
	if (chunked) {
		/* decode in place: chunks are appended to the body at body_off */
		size_t rd = head_len, wr = head_len;

		for (;;) {
			char *crlf;
			long sz;

			while (!(crlf = memmem(buf + rd, len - rd, "\r\n", 2))) {
				ssize_t n = recv(fd, buf + len, RESP_MAX - 1 - len, 0);

				if (n <= 0)
					return -1;
				len += (size_t)n;
			}
			sz = strtol(buf + rd, NULL, 16);
			rd = (size_t)(crlf - buf) + 2;
			if (sz == 0) {          /* last chunk: no trailers expected */
				while (len - rd < 2) {
					ssize_t n = recv(fd, buf + len, RESP_MAX - 1 - len, 0);

					if (n <= 0)
						return -1;
					len += (size_t)n;
				}
				break;
			}
			while (len - rd < (size_t)sz + 2) {
				ssize_t n;

				if (len >= RESP_MAX - 1)
					return -1;
				n = recv(fd, buf + len, RESP_MAX - 1 - len, 0);
				if (n <= 0)
					return -1;
				len += (size_t)n;
			}
			memmove(buf + wr, buf + rd, (size_t)sz);
			wr += (size_t)sz;
			rd += (size_t)sz + 2;
		}
		buf[wr] = '\0';
		body = buf + body_off;
	} else if (clen >= 0) {
		if (head_len + (size_t)clen >= RESP_MAX)
			return -1;
		while (len < head_len + (size_t)clen) {
			ssize_t n = recv(fd, buf + len, RESP_MAX - 1 - len, 0);

			if (n <= 0)
				return -1;
			len += (size_t)n;
		}
		buf[head_len + (size_t)clen] = '\0';
		body = buf + body_off;
	} else {
		*close_after = true;    /* body until close: not expected here */
		body = buf + body_off;
	}
	if (body) {
		const char *key = opt.nchan ? "\"subscribers\":" : "\"recipients\":";
		char *r = strstr(body, key);

		if (r)
			*recips = strtol(r + strlen(key), NULL, 10);
	}
	return status;
}

static void *worker(void *arg)
{
	char req[8192];
	char *resp = malloc(RESP_MAX);
	int fd = -1;

	(void)arg;
	if (!resp)
		return NULL;
	for (;;) {
		long i = atomic_fetch_add(&next_msg, 1);
		int attempt, status = -1, len;
		bool close_after = false, got_any = false;
		long recips = 0;
		int64_t t1 = 0;

		if (i >= opt.count)
			break;
		if ((opt.broadcast || opt.topics) && opt.interval_ms > 0) {
			if (fd < 0)     /* connect before the due time, not after it */
				fd = dial();
			int64_t due = t0_mono_us + (int64_t)((double)i * opt.interval_ms * 1000);
			int64_t now = mono_us();

			if (due > now)
				usleep((useconds_t)(due - now));
		}
		for (attempt = 0; attempt < 2; attempt++) {
			if (fd < 0) {
				fd = dial();
				if (fd < 0)
					break;
			}
			len = build(i, req, sizeof(req));
			t1 = mono_us();
			if (send_all(fd, req, (size_t)len) == 0)
				status = read_response(fd, resp, &got_any, &close_after, &recips);
			else
				status = -1;
			if (status < 0 || close_after) {
				close(fd);
				fd = -1;
			}
			/* a keep-alive connection the server had just closed: once more */
			if (status < 0 && !got_any && attempt == 0) {
				atomic_fetch_add(&n_retries, 1);
				continue;
			}
			break;
		}
		if (status >= 100 && status < 600)
			atomic_fetch_add(&status_count[status], 1);
		if (status >= 200 && status < 300) {
			atomic_fetch_add(&n_ok, 1);
			atomic_fetch_add(&recipients_total, recips);
			post_ms[i] = (double)(mono_us() - t1) / 1000;
		} else {
			atomic_fetch_add(&n_failed, 1);
			post_ms[i] = -1;
			if (atomic_load(&n_failed) <= 5)
				fprintf(stderr, "ssepost: message %ld: %s %d\n", i,
					status < 0 ? "connection failed" : "HTTP", status);
		}
	}
	if (fd >= 0)
		close(fd);
	free(resp);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: ssepost -p PORT [options]\n"
"  -H ADDR     server IPv4 address (127.0.0.1)\n"
"  -p PORT     server port\n"
"  -k KIND     ssehub (also gohub) or nchan (ssehub)\n"
"  -t TOKEN | -T FILE   admin token (ssehub kind)\n"
"  -b          broadcast (default: send-to-user)\n"
"  -n COUNT    messages (1)\n"
"  -c CONNS    keep-alive connections, one thread each (1)\n"
"  -U USERS    users 1..USERS, message i to user i mod USERS + 1 (1)\n"
"  -G TOPICS   publish to topics t0..t(TOPICS-1), message i to t(i mod TOPICS)\n"
"  -i MS       with -b or -G: send message i at start + i * MS (each connection\n"
"              waits for its answer: -c COUNT keeps the schedule open-loop)\n"
"  -P BYTES    pad string in each message (150)\n"
"  -s SEQ      first seq (1)\n"
"  -w SEC      socket timeout (15)\n");
}

int main(int argc, char **argv)
{
	pthread_t *th;
	int ch, i;
	long k, ok_n;
	double *sorted, sum = 0, elapsed;
	int64_t t_end;
	char tokbuf[8192];

	while ((ch = getopt(argc, argv, "H:p:k:t:T:bn:c:U:G:i:P:s:w:h")) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'k':
			if (strcmp(optarg, "nchan") == 0)
				opt.nchan = true;
			else if (strcmp(optarg, "ssehub") != 0 && strcmp(optarg, "gohub") != 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 't': opt.token = optarg; break;
		case 'T': {
			FILE *f = fopen(optarg, "r");
			size_t n;

			if (!f) {
				perror(optarg);
				return 2;
			}
			n = fread(tokbuf, 1, sizeof(tokbuf) - 1, f);
			fclose(f);
			while (n > 0 && (tokbuf[n - 1] == '\n' || tokbuf[n - 1] == '\r' ||
					 tokbuf[n - 1] == ' '))
				n--;
			tokbuf[n] = '\0';
			opt.token = tokbuf;
			break;
		}
		case 'b': opt.broadcast = true; break;
		case 'n': opt.count = atol(optarg); break;
		case 'c': opt.conns = atoi(optarg); break;
		case 'U': opt.users = atol(optarg); break;
		case 'G': opt.topics = atol(optarg); break;
		case 'i': opt.interval_ms = atof(optarg); break;
		case 'P': opt.pad = atoi(optarg); break;
		case 's': opt.start_seq = atol(optarg); break;
		case 'w': opt.timeout_s = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (opt.port < 1 || opt.port > 65535 || opt.count < 1 || opt.conns < 1 ||
	    opt.users < 1 || opt.topics < 0 || (opt.topics && opt.broadcast) || opt.pad < 0 || opt.pad > 3000 || (!opt.nchan && !opt.token)) {
		usage(stderr);
		return 2;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
		fprintf(stderr, "ssepost: -H wants a numeric IPv4 address\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	pad_str = malloc((size_t)opt.pad + 1);
	post_ms = calloc((size_t)opt.count, sizeof(*post_ms));
	th = calloc((size_t)opt.conns, sizeof(*th));
	if (!pad_str || !post_ms || !th)
		return 2;
	memset(pad_str, 'x', (size_t)opt.pad);
	pad_str[opt.pad] = '\0';

	t0_mono_us = mono_us();
	for (i = 0; i < opt.conns; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (i = 0; i < opt.conns; i++)
		pthread_join(th[i], NULL);
	t_end = mono_us();
	elapsed = (double)(t_end - t0_mono_us) / 1e6;

	sorted = malloc((size_t)opt.count * sizeof(*sorted));
	ok_n = 0;
	for (k = 0; k < opt.count; k++)
		if (post_ms[k] >= 0) {
			sorted[ok_n++] = post_ms[k];
			sum += post_ms[k];
		}
	qsort(sorted, (size_t)ok_n, sizeof(*sorted), cmp_d);
#define PCT(q) (ok_n ? sorted[(long)((q) * (double)ok_n + 0.999999) - 1 < 0 ? 0 : \
		(long)((q) * (double)ok_n + 0.999999) - 1] : 0.0)
	printf("sent=%ld\n", opt.count);
	printf("ok=%ld\n", atomic_load(&n_ok));
	printf("failed=%ld\n", atomic_load(&n_failed));
	printf("retries=%ld\n", atomic_load(&n_retries));
	printf("recipients_total=%ld\n", atomic_load(&recipients_total));
	printf("elapsed_s=%.3f\n", elapsed);
	printf("req_per_s=%.1f\n", elapsed > 0 ? (double)atomic_load(&n_ok) / elapsed : 0.0);
	printf("post_ms_mean=%.3f\n", ok_n ? sum / (double)ok_n : 0.0);
	printf("post_ms_p50=%.3f\n", PCT(0.50));
	printf("post_ms_p99=%.3f\n", PCT(0.99));
	printf("post_ms_max=%.3f\n", ok_n ? sorted[ok_n - 1] : 0.0);
	for (i = 100; i < 600; i++)
		if (atomic_load(&status_count[i]))
			printf("http_status_%d=%ld\n", i, atomic_load(&status_count[i]));
	return atomic_load(&n_failed) ? 1 : 0;
}
