/* fuzz_common: shared set-up for the libFuzzer targets in this directory.
 * Header-only (static functions), included by each fuzz_*.c, so every target
 * is one translation unit linked against the project's src/ files (all but
 * main.c).
 *
 * Everything here drives the daemon's real functions; the only code that
 * stands in for a peer is tests/common/fcgi_peer.h (what nginx would send
 * and read), shared with the unit tests. */
#ifndef SSEHUB_FUZZ_COMMON_H
#define SSEHUB_FUZZ_COMMON_H

#include <errno.h>
#include <fastcgi.h>
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
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "util.h"

#include "fcgi_peer.h"
#include "loop.h"
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
	/* no threads: every input is run to its end in the fuzzing thread */
	if (server_setup(&fuzz_cfg) < 0)
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

/* ---- one FastCGI connection through the real server --------------------- */

/* What came back: the records of tests/common/fcgi_peer.h. */
#define fcgi_reply peer_reply

static inline void fcgi_begin(struct buf *b)
{
	peer_begin(b, 1, FCGI_RESPONDER, 0);
}

/* Runs one FastCGI connection whose peer sends wire[0..len) and then EOF:
 * the connection is handed to loop 0 as if it had accepted it, and the loop
 * is driven here, in the fuzzing thread, until the peer sees EOF (and once
 * more, so that what was closed is released before the next input).
 * Returns -1 when the hub closed without an answer (management records
 * may have been answered), 1 when the request became a stream (ended by the
 * peer's EOF), 0 when it was answered;
 * reply (may be NULL) gets what came back. */
static inline int fcgi_exchange(const void *wire, size_t len, struct fcgi_reply *reply)
{
	struct fcgi_reply local;
	struct fcgi_reply *r = reply ? reply : &local;
	unsigned char raw[65536 + 16];
	size_t have = 0;
	int sv[2], stream = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("fuzz: socketpair");
		abort();
	}
	if (peer_write_all(sv[0], wire, len) < 0) {
		/* bigger than the socket buffer: the callers cap their input */
		fprintf(stderr, "fuzz: cannot queue %zu request bytes\n", len);
		abort();
	}
	shutdown(sv[0], SHUT_WR);
	peer_reply_init(r);
	server_adopt(loops_get(0), sv[1]);
	for (int pass = 0; pass < 5000 && !r->eof; pass++) {
		loop_pass(loops_get(0), 0);
		for (;;) {
			ssize_t n = recv(sv[0], raw + have, sizeof(raw) - have, MSG_DONTWAIT);
			size_t used;
			if (n == 0)
				r->eof = 1;
			if (n <= 0)
				break;
			have += (size_t)n;
			used = peer_parse(r, raw, have);
			memmove(raw, raw + used, have - used);
			have -= used;
		}
	}
	FUZZ_CHECK(r->eof, "the connection was still open after 5000 passes");
	loop_pass(loops_get(0), 0);
	loop_pass(loops_get(0), 0);
	close(sv[0]);
	/* in the head only: an API answer may echo those bytes in its body (a
	 * publish's id) */
	if (r->out.data) {
		const char *head_end = memmem(r->out.data, r->out.len, "\r\n\r\n", 4);
		size_t head_len = head_end ? (size_t)(head_end - r->out.data) : r->out.len;
		stream = memmem(r->out.data, head_len, "\r\nContent-Type: text/event-stream\r\n", 35) != NULL;
	}
	if (!reply)
		peer_reply_free(&local);
	return stream ? 1 : !r->out.len && !r->stdout_closed && !r->end_request ? -1 : 0;
}

#define cgi_split peer_cgi_split

/* The JSON answer of an API route must be one of the two documented shapes,
 * with success matching the status. Returns the parsed object. */
static inline struct json_object *check_api_answer(int status, const char *body, size_t len, const char *what)
{
	struct json_object *o = jsonx_json_c(body, len, 16), *v, *e;

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
