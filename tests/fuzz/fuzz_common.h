/* fuzz_common: shared set-up for the libFuzzer targets in this directory.
 * Header-only (static functions), included by each fuzz_*.c, so every target
 * is one translation unit linked against the project's src/ files (all but
 * main.c).
 *
 * Everything here drives the daemon's real functions; the only code that
 * stands in for a peer is the FastCGI record writer (what nginx would send)
 * and the response reader (what nginx would read). */
#ifndef SSEHUB_FUZZ_COMMON_H
#define SSEHUB_FUZZ_COMMON_H

#include <errno.h>
#include <fastcgi.h>
#include <fcgiapp.h>
#include <jwt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"
#include "util.h"

#include "server.h"

/* The test secret. Fixed, so seed files can carry tokens signed with it
 * (tests/fuzz/gen_seeds.py mints them with the same bytes). */
#define FUZZ_SECRET "ssehub-fuzz-secret-0123456789abcdef"
/* exp of every token the targets mint: 2100-01-01, far beyond any run. */
#define FUZZ_EXP 4102444800LL

static struct config fuzz_cfg;

#define FUZZ_CHECK(cond, ...)                                                          \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "FUZZ CHECK FAILED at %s:%d: %s\n", __FILE__,  \
				__LINE__, #cond);                                      \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Writes the secret to a private temporary file and points cfg at it. The
 * file is removed once auth_init has read it. */
static inline void fuzz_config(int start_loops)
{
	char path[] = "/tmp/ssehub-fuzz-secret-XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, FUZZ_SECRET "\n", sizeof(FUZZ_SECRET)) != (ssize_t)sizeof(FUZZ_SECRET)) {
		perror("fuzz: secret file");
		abort();
	}
	close(fd);
	config_defaults(&fuzz_cfg);
	fuzz_cfg.secret_files[0] = xstrdup(path);
	fuzz_cfg.n_secret_files = 1;
	fuzz_cfg.loops = 1;
	fuzz_cfg.log_level = LOG_LVL_ERROR;
	/* Small bounds: the 413 paths and a full history ring are reached with
	 * small inputs, and the history stops growing after a few publishes
	 * (so LeakSanitizer's per-input check sees a steady heap). */
	fuzz_cfg.max_message_bytes = 2048;
	fuzz_cfg.history_size = 16;
	fuzz_cfg.request_timeout = 1;
	log_setup(LOG_LVL_ERROR, 0);
	if (auth_init(&fuzz_cfg) < 0)
		abort();
	unlink(path);
	if (!start_loops)
		return;
	metrics_start_clock();
	hub_init(&fuzz_cfg);
	api_init(&fuzz_cfg);
	server_init(&fuzz_cfg);
	if (loops_start(&fuzz_cfg) < 0)
		abort();
	if (FCGX_Init() != 0)
		abort();
	signal(SIGPIPE, SIG_IGN);
}

/* A token signed with the test secret (HS256) for claims_json, minted with
 * libjwt. Returns a new string (free it) or NULL when libjwt refuses the
 * claims. */
static inline char *fuzz_mint(const char *claims_json, jwt_alg_t alg)
{
	jwt_t *jwt = NULL;
	char *tok = NULL;

	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grants_json(jwt, claims_json) == 0 &&
	    jwt_set_alg(jwt, alg, (const unsigned char *)FUZZ_SECRET, (int)strlen(FUZZ_SECRET)) == 0)
		tok = jwt_encode_str(jwt);
	jwt_free(jwt);
	return tok;
}

/* ---- FastCGI records, as a front server writes them -------------------- */

static void fcgi_record(struct buf *b, int type, int request_id, const void *content, size_t len)
{
	const unsigned char *p = content;

	do {
		size_t n = len > FCGI_MAX_LENGTH ? FCGI_MAX_LENGTH : len;
		unsigned char h[FCGI_HEADER_LEN] = { FCGI_VERSION_1, (unsigned char)type, (unsigned char)(request_id >> 8),
						     (unsigned char)request_id, (unsigned char)(n >> 8), (unsigned char)n, 0, 0 };
		buf_append(b, h, sizeof(h));
		if (n) {
			buf_append(b, p, n);
			p += n;
			len -= n;
		}
	} while (len > 0);
}

static inline void fcgi_nv(struct buf *b, const char *name, const char *value)
{
	size_t lens[2] = { strlen(name), strlen(value) };

	for (int i = 0; i < 2; i++) {
		if (lens[i] < 128) {
			unsigned char c = (unsigned char)lens[i];
			buf_append(b, &c, 1);
		} else {
			unsigned char c[4] = { (unsigned char)((lens[i] >> 24) | 0x80), (unsigned char)(lens[i] >> 16),
					       (unsigned char)(lens[i] >> 8), (unsigned char)lens[i] };
			buf_append(b, c, 4);
		}
	}
	buf_append(b, name, lens[0]);
	buf_append(b, value, lens[1]);
}

static inline void fcgi_begin(struct buf *b)
{
	unsigned char body[8] = { 0, FCGI_RESPONDER, 0, 0, 0, 0, 0, 0 };
	fcgi_record(b, FCGI_BEGIN_REQUEST, 1, body, sizeof(body));
}

static int write_all(int fd, const void *p, size_t len)
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

static void set_timeouts(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* What came back on the peer's end of the connection. */
struct fcgi_reply {
	struct buf stdout_bytes;
	int end_request;       /* an FCGI_END_REQUEST record arrived */
	int stdout_closed;     /* the empty FCGI_STDOUT record arrived */
	int malformed;         /* a record that is not FastCGI version 1 */
};

/* Reads the peer end until EOF (bounded by its receive timeout) and splits
 * the records. */
static void fcgi_read_reply(int fd, struct fcgi_reply *r)
{
	struct buf raw = { 0 };
	char chunk[16384];
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 4096; i++) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_append(&raw, chunk, (size_t)n);
	}
	while (raw.len - off >= FCGI_HEADER_LEN) {
		const unsigned char *h = (const unsigned char *)raw.data + off;
		size_t clen = ((size_t)h[4] << 8) | h[5], plen = h[6];
		if (h[0] != FCGI_VERSION_1) {
			r->malformed = 1;
			break;
		}
		if (raw.len - off < FCGI_HEADER_LEN + clen + plen)
			break;
		if (h[1] == FCGI_STDOUT) {
			if (clen == 0)
				r->stdout_closed = 1;
			else
				buf_append(&r->stdout_bytes, h + FCGI_HEADER_LEN, clen);
		} else if (h[1] == FCGI_END_REQUEST) {
			r->end_request = 1;
		}
		off += FCGI_HEADER_LEN + clen + plen;
	}
	free(raw.data);
}

/* Runs one FastCGI connection whose peer sends wire[0..len) and then EOF,
 * through server_serve, the very function an acceptor thread runs.
 * Returns -1 when the request was refused without an answer, 1 when it was
 * handed to a stream loop, 0 when it was answered; reply (may be NULL) gets
 * what came back (only when 0 is returned). */
static inline int fcgi_exchange(const void *wire, size_t len, struct fcgi_reply *reply)
{
	int sv[2], handed;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("fuzz: socketpair");
		abort();
	}
	set_timeouts(sv[0], 2);
	set_timeouts(sv[1], 1);
	if (write_all(sv[0], wire, len) < 0) {
		/* bigger than the socket buffer: the callers cap their input */
		fprintf(stderr, "fuzz: cannot queue %zu request bytes\n", len);
		abort();
	}
	shutdown(sv[0], SHUT_WR);

	handed = server_serve(sv[1], 0);
	if (handed < 0) {
		close(sv[0]);
		return -1;
	}
	if (handed == 2) {
		/* answered, and kept for a next request (FCGI_KEEP_CONN): the
		 * acceptor would park it; here it ends, so that the reply below
		 * reads to EOF */
		close(sv[1]);
		handed = 0;
	}
	if (handed) {
		close(sv[0]); /* the loop sees the hang-up and ends the stream */
		return 1;
	}
	if (reply)
		fcgi_read_reply(sv[0], reply);
	close(sv[0]);
	return 0;
}

/* Splits the CGI-style answer into its status and body. Returns 0, or -1
 * when it has no "Status: NNN" head ending in a blank line. */
static inline int cgi_split(const struct buf *out, int *status, const char **body, size_t *body_len)
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

/* The JSON answer of an API route must be one of the two documented shapes,
 * with success matching the status. Returns the parsed object. */
static inline struct json_object *check_api_answer(int status, const char *body, size_t len, const char *what)
{
	struct json_object *o = util_json_parse(body, len, 16), *v, *e;

	FUZZ_CHECK(o && json_object_is_type(o, json_type_object), "%s: status %d, body is not a JSON object: %.*s",
		   what, status, (int)len, body);
	FUZZ_CHECK(json_object_object_get_ex(o, "success", &v) && json_object_is_type(v, json_type_boolean),
		   "%s: no boolean success: %.*s", what, (int)len, body);
	if (status == 200) {
		FUZZ_CHECK(json_object_get_boolean(v) && json_object_object_get_ex(o, "data", NULL),
			   "%s: 200 without success/data: %.*s", what, (int)len, body);
	} else {
		FUZZ_CHECK(!json_object_get_boolean(v) && json_object_object_get_ex(o, "error", &e) &&
				   json_object_object_get_ex(e, "code", &v) && json_object_is_type(v, json_type_string),
			   "%s: status %d without error.code: %.*s", what, status, (int)len, body);
	}
	return o;
}

#endif
