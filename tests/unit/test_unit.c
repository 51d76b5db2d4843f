/* Unit tests: SSE encoding, parsers, token checks, the FastCGI parser and
 * writers, the loop, and the whole request path (connections, api, hub,
 * streams) over socketpairs with the loops driven by the test. TAP output. */
#include <errno.h>
#include <fastcgi.h>
#include <jwt.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "fcgi.h"
#include "fcgi_peer.h"
#include "hub.h"
#include "json.h"
#include "loop.h"
#include "metrics.h"
#include "server.h"
#include "sse.h"
#include "tap.h"
#include "util.h"

/* ---- a WHATWG event-stream parser, to check the encoder against ---------- */

struct event {
	char id[256], type[128], data[70000];
	long retry;
	int has_id;
};

/* Parses the first event of text (which must end with a blank line). */
static int parse_event(const char *text, struct event *ev)
{
	const char *p = text;
	size_t dlen = 0;

	memset(ev, 0, sizeof(*ev));
	ev->retry = -1;
	while (*p) {
		size_t n = strcspn(p, "\r\n");
		char line[70000], *colon, *value;
		if (n == 0)
			break; /* blank line: dispatch */
		memcpy(line, p, n);
		line[n] = '\0';
		p += n;
		if (p[0] == '\r' && p[1] == '\n')
			p++;
		if (*p)
			p++;
		colon = strchr(line, ':');
		value = colon ? colon + 1 : line + n;
		if (colon)
			*colon = '\0';
		if (*value == ' ')
			value++;
		if (strcmp(line, "data") == 0) {
			size_t vl = strlen(value);
			memcpy(ev->data + dlen, value, vl);
			dlen += vl;
			ev->data[dlen++] = '\n';
		} else if (strcmp(line, "event") == 0) {
			snprintf(ev->type, sizeof(ev->type), "%s", value);
		} else if (strcmp(line, "id") == 0) {
			snprintf(ev->id, sizeof(ev->id), "%s", value);
			ev->has_id = 1;
		} else if (strcmp(line, "retry") == 0) {
			ev->retry = atol(value);
		}
	}
	if (dlen)
		dlen--; /* the last LF goes */
	ev->data[dlen] = '\0';
	return 0;
}

static void test_sse(void)
{
	struct buf b = { 0 };
	struct event ev;

	ok(sse_valid_event("message", 7), "plain event name is valid");
	ok(!sse_valid_event("", 0), "empty event name is rejected");
	ok(!sse_valid_event("a\nb", 3), "LF in event name is rejected");
	ok(!sse_valid_event("a\rb", 3), "CR in event name is rejected");
	ok(!sse_valid_event("a\0b", 3), "NUL in event name is rejected");
	ok(sse_valid_event("0123456789012345678901234567890123456789012345678901234567890123", 64), "64-byte name ok");
	ok(!sse_valid_event("01234567890123456789012345678901234567890123456789012345678901234", 65), "65 bytes rejected");
	ok(!sse_valid_id("x\ny", 3), "LF in id rejected");

	sse_encode(&b, "42-a", "note", 1500, "{\"t\":\"x\"}");
	ok(strcmp(b.data, "id: 42-a\nevent: note\nretry: 1500\ndata: {\"t\":\"x\"}\n\n") == 0, "encoding is exact");
	parse_event(b.data, &ev);
	ok(strcmp(ev.id, "42-a") == 0 && strcmp(ev.type, "note") == 0 && ev.retry == 1500 &&
		   strcmp(ev.data, "{\"t\":\"x\"}") == 0,
	   "encoded event parses back");
	b.len = 0;
	sse_encode(&b, NULL, "ping", -1, "line1\nline2\r\nline3\rline4\n");
	parse_event(b.data, &ev);
	ok(!ev.has_id && ev.retry == -1, "no id or retry line when not asked");
	ok(strcmp(ev.data, "line1\nline2\nline3\nline4\n") == 0, "multi-line data survives (got '%s')", ev.data);
	b.len = 0;
	sse_encode(&b, NULL, "e", -1, " leading");
	parse_event(b.data, &ev);
	ok(strcmp(ev.data, " leading") == 0, "a leading space in data is kept");
	free(b.data);
}

static void test_parsers(void)
{
	struct json_object *o;
	char *out, dst[64];
	size_t len;
	int too_long = 0;

	o = jsonx_json_c("{\"a\":1}", 7, 8);
	ok(o && json_object_is_type(o, json_type_object), "valid JSON object parses");
	json_object_put(o);
	o = jsonx_json_c("{\"a\":1} ", 8, 8);
	ok(o != NULL, "trailing whitespace is fine");
	json_object_put(o);
	ok(jsonx_json_c("{\"a\":1}x", 8, 8) == NULL, "trailing garbage is rejected");
	ok(jsonx_json_c("{\"a\":1", 6, 8) == NULL, "truncated JSON is rejected");
	ok(jsonx_json_c("{\"a\":1}{}", 9, 8) == NULL, "two values are rejected");
	ok(jsonx_json_c("[[[[[[[[[[1]]]]]]]]]]", 21, 8) == NULL, "too deep is rejected");
	ok(jsonx_json_c("{\"a\":\"\0\"}", 9, 8) == NULL, "NUL byte is rejected");
	ok(jsonx_json_c("", 0, 8) == NULL, "empty input is rejected");
	o = jsonx_json_c("123", 3, 8);
	ok(o && json_object_is_type(o, json_type_int), "a bare number parses (callers check the type)");
	json_object_put(o);

	ok(util_b64url_decode("aGVsbG8", 7, &out, &len) == 0 && len == 5 && memcmp(out, "hello", 5) == 0,
	   "base64url decodes");
	free(out);
	ok(util_b64url_decode("aGV*bG8", 7, &out, &len) < 0, "bad base64url is rejected");
	ok(util_b64url_decode("a", 1, &out, &len) < 0, "impossible base64 length is rejected");
	ok(util_url_decode(dst, "a%20b+c", 7) == 5 && strcmp(dst, "a b c") == 0, "url decoding");
	ok(util_url_decode(dst, "a%2", 3) < 0, "truncated escape rejected");
	ok(util_url_decode(dst, "a%00b", 5) < 0, "encoded NUL rejected");
	out = util_query_param("x=1&token=abc%2Edef&y=2", "token", 100, NULL);
	ok(out && strcmp(out, "abc.def") == 0, "query parameter found and decoded");
	free(out);
	ok(util_query_param("xtoken=1", "token", 100, NULL) == NULL, "a longer name does not match");
	ok(util_query_param("token=12345", "token", 3, &too_long) == NULL && too_long, "over-long value flagged");
	ok(util_utf8_valid("h\xc3\xa9llo", 6), "UTF-8 accepted");
	ok(!util_utf8_valid("\xc3", 1), "truncated UTF-8 rejected");
	ok(!util_utf8_valid("\xc0\xaf", 2), "overlong UTF-8 rejected");
	ok(!util_utf8_valid("\xed\xa0\x80", 3), "surrogate rejected");
}

/* util_wall_s never lags the precise clock: sampled after CLOCK_REALTIME,
 * across a new second (glibc's time() reads the coarse clock and did, for up
 * to a tick after each second, which made a fresh token's iat look future
 * with --jwt-leeway 0). Runs until two seconds have begun, at most 2.1 s. */
static void test_wall_clock(void)
{
	struct timespec ts;
	int64_t first, end = util_mono_ms() + 2100, lag = 0;
	long samples = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	first = ts.tv_sec;
	while (util_mono_ms() < end) {
		clock_gettime(CLOCK_REALTIME, &ts);
		if (util_wall_s() < (int64_t)ts.tv_sec)
			lag++;
		samples++;
		if (ts.tv_sec >= first + 2)
			break;
	}
	ok(lag == 0, "util_wall_s is never behind CLOCK_REALTIME (%" PRId64 " of %ld samples behind, "
	   "across %" PRId64 " new seconds)", lag, samples, (int64_t)ts.tv_sec - first);
}

/* ---- tokens ----------------------------------------------------------------- */

static const char secret[] = "unit-test-secret-0123456789abcdef";
static struct config cfg;

static char *mint(const char *claims_json, jwt_alg_t alg)
{
	jwt_t *jwt;
	char *tok;

	jwt_new(&jwt);
	jwt_add_grants_json(jwt, claims_json);
	jwt_set_alg(jwt, alg, (const unsigned char *)secret, sizeof(secret) - 1);
	tok = jwt_encode_str(jwt);
	jwt_free(jwt);
	return tok;
}

static enum auth_result check(const char *claims_fmt, long offset, struct auth_identity *id)
	__attribute__((format(printf, 1, 0)));
static enum auth_result check(const char *claims_fmt, long offset, struct auth_identity *id)
{
	char claims[512], *tok;
	enum auth_result r;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(claims, sizeof(claims), claims_fmt, (long)time(NULL) + offset);
#pragma GCC diagnostic pop
	tok = mint(claims, JWT_ALG_HS256);
	r = auth_verify(tok, strlen(tok), id, NULL);
	free(tok);
	return r;
}

static void test_auth(void)
{
	struct auth_identity id;
	char path[] = "/tmp/ssehub-unit-XXXXXX", *tok, *hostile;
	int fd = mkstemp(path), too_long;
	ssize_t w;

	w = write(fd, secret, sizeof(secret) - 1);
	w += write(fd, "\n", 1);
	ok(w == (ssize_t)sizeof(secret), "secret file written");
	close(fd);
	cfg.secret_files[cfg.n_secret_files++] = xstrdup(path);
	ok(auth_init(&cfg) == 0, "auth loads the secret (trailing newline dropped)");

	ok(check("{\"user_id\":7,\"exp\":%ld}", 3600, &id) == AUTH_OK && strcmp(id.user, "7") == 0 && !id.admin,
	   "numeric user id becomes its decimal text");
	ok(check("{\"user_id\":\"u-1\",\"role\":\"admin\",\"exp\":%ld}", 3600, &id) == AUTH_OK && id.admin,
	   "role admin grants admin");
	ok(check("{\"sub\":\"s1\",\"role\":[\"x\",\"admin\"],\"exp\":%ld}", 3600, &id) == AUTH_OK &&
		   strcmp(id.user, "s1") == 0 && id.admin,
	   "sub is the fallback user; an array role holding admin counts");
	ok(check("{\"user_id\":1,\"exp\":%ld}", -3600, &id) == AUTH_TOKEN_EXPIRED, "expired token rejected");
	ok(check("{\"user_id\":1,\"exp\":%ld}", -10, &id) == AUTH_OK, "expiry within the leeway accepted");
	ok(check("{\"user_id\":1,\"exp\":9999999999,\"nbf\":%ld}", 3600, &id) == AUTH_NOT_YET_VALID, "future nbf rejected");
	ok(check("{\"user_id\":1,\"exp\":9999999999,\"iat\":%ld}", 3600, &id) == AUTH_NOT_YET_VALID, "future iat rejected");
	ok(check("{\"user_id\":1,\"iat\":%ld}", 0, &id) == AUTH_INVALID_TOKEN, "missing exp rejected by default");
	ok(check("{\"role\":\"admin\",\"exp\":%ld}", 3600, &id) == AUTH_MISSING_USER, "missing user rejected");
	ok(check("{\"user_id\":\"\",\"exp\":%ld}", 3600, &id) == AUTH_MISSING_USER, "empty user rejected");
	ok(check("{\"user_id\":{\"a\":1},\"exp\":%ld}", 3600, &id) == AUTH_MISSING_USER, "object user rejected");
	ok(check("{\"user_id\":1,\"exp\":\"%ld\"}", 3600, &id) == AUTH_INVALID_TOKEN, "string exp rejected");

	tok = mint("{\"user_id\":1,\"exp\":9999999999}", JWT_ALG_HS512);
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_WRONG_ALGORITHM, "HS512 token rejected when HS256 is pinned");
	free(tok);
	/* alg none, no signature */
	hostile = xstrdup("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoxLCJleHAiOjk5OTk5OTk5OTl9.");
	ok(auth_verify(hostile, strlen(hostile), &id, NULL) == AUTH_WRONG_ALGORITHM, "alg none rejected");
	free(hostile);
	tok = mint("{\"user_id\":1,\"exp\":9999999999}", JWT_ALG_HS256);
	tok[strlen(tok) - 2] ^= 1;
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_INVALID_TOKEN, "flipped signature rejected");
	free(tok);
	ok(auth_verify("abc", 3, &id, NULL) == AUTH_INVALID_TOKEN, "one segment rejected");
	ok(auth_verify("a.b.c.d", 7, &id, NULL) == AUTH_INVALID_TOKEN, "four segments rejected");
	ok(auth_verify("!!.b.c", 6, &id, NULL) == AUTH_INVALID_TOKEN, "bad base64 rejected");
	ok(auth_verify("WzFd.e30.c2ln", 13, &id, NULL) == AUTH_INVALID_TOKEN, "header that is not an object rejected");
	ok(auth_failures(AUTH_INVALID_TOKEN) >= 5, "failures are counted per reason");

	tok = auth_find_token("Bearer aaa", "token=bbb", "token=ccc", &too_long);
	ok(tok && strcmp(tok, "aaa") == 0, "Authorization header wins");
	free(tok);
	tok = auth_find_token(NULL, "x=1; token=bbb; y=2", "token=ccc", &too_long);
	ok(tok && strcmp(tok, "bbb") == 0, "cookie comes next");
	free(tok);
	tok = auth_find_token("Basic zzz", NULL, "a=1&token=ccc", &too_long);
	ok(tok && strcmp(tok, "ccc") == 0, "query last; a non-Bearer header is ignored");
	free(tok);
	ok(auth_find_token(NULL, "tokenx=1", "tok=1", &too_long) == NULL && !too_long, "no token found");
	unlink(path);
}

/* ---- the token cache ------------------------------------------------------ */

static void test_auth_cache(void)
{
	struct auth_identity id;
	char claims[256], *tok, *other;
	uint64_t hits;
	FILE *f;
	long now = (long)time(NULL);

	snprintf(claims, sizeof(claims), "{\"user_id\":\"c1\",\"role\":\"admin\",\"exp\":%ld}", now + 3600);
	tok = mint(claims, JWT_ALG_HS256);
	hits = auth_cache_hits();
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_OK && auth_cache_hits() == hits,
	   "cache: a token is verified in full the first time");
	memset(&id, 0, sizeof(id));
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_OK && auth_cache_hits() == hits + 1 &&
		   strcmp(id.user, "c1") == 0 && id.admin && id.exp == (int64_t)now + 3600 + 30,
	   "cache: the same bytes again are a hit, with the same identity and expiry");
	other = xstrdup(tok);
	other[strlen(other) - 3] ^= 1;
	ok(auth_verify(other, strlen(other), &id, NULL) == AUTH_INVALID_TOKEN && auth_cache_hits() == hits + 1,
	   "cache: a token one byte away from a cached one is verified, and refused");
	free(other);

	/* refused from exp + leeway (30 s) on: cached two seconds before that */
	snprintf(claims, sizeof(claims), "{\"user_id\":\"c2\",\"exp\":%ld}", (long)time(NULL) - 28);
	other = mint(claims, JWT_ALG_HS256);
	ok(auth_verify(other, strlen(other), &id, NULL) == AUTH_OK, "cache: a token in its last seconds of leeway passes");
	ok(auth_verify(other, strlen(other), &id, NULL) == AUTH_OK, "cache: ... and is cached");
	sleep(3);
	ok(auth_verify(other, strlen(other), &id, NULL) == AUTH_TOKEN_EXPIRED,
	   "cache: a cached token is refused once it expires");
	free(other);

	/* a reload with other keys: the cached token stops working at once */
	f = fopen(cfg.secret_files[0], "w");
	ok(f && fputs("another-secret-0123456789abcdef-xyz", f) >= 0 && fclose(f) == 0, "cache: secret file replaced");
	ok(auth_reload() == 0, "cache: keys reloaded");
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_INVALID_TOKEN,
	   "cache: a token cached under the old key is refused after the reload");
	free(tok);
	unlink(cfg.secret_files[0]);
}

/* ---- the FastCGI parser and writers ------------------------------------------ */

/* Feeds wire to a fresh parser in pieces of step bytes (0: all at once).
 * Returns the last status; *used_total counts the bytes taken. */
static enum fcgi_status feed_in_steps(struct fcgi_req *r, const struct buf *wire, size_t step, size_t *used_total,
				      struct buf *reply)
{
	enum fcgi_status st = FCGI_MORE;
	size_t off = 0;

	*used_total = 0;
	while (off < wire->len && st == FCGI_MORE) {
		size_t n = step && wire->len - off > step ? step : wire->len - off, used;
		st = fcgi_req_feed(r, wire->data + off, n, &used, reply);
		off += used;
		*used_total += used;
	}
	return st;
}

static void test_fcgi(void)
{
	struct buf params = { 0 }, wire = { 0 }, reply = { 0 }, out = { 0 }, mgmt = { 0 };
	struct fcgi_req r;
	struct peer_reply pr;
	char big[300], *body;
	size_t used, body_len = 70000;
	int all_steps = 1;
	const char *v;

	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	peer_pair(&params, "REQUEST_METHOD", "GET");
	peer_pair(&params, "REQUEST_URI", "/api/sse/health?x=1");
	peer_pair(&params, "EMPTY", "");
	peer_pair_n(&params, "HTTP_BIG", 8, big, strlen(big), 1);
	peer_request(&wire, 7, FCGI_KEEP_CONN, &params, "{}", 2);

	/* every split of the same bytes gives the same request */
	for (size_t step = 1; step <= wire.len; step += step < 20 ? 1 : 97) {
		fcgi_req_init(&r, 1024, 100);
		if (feed_in_steps(&r, &wire, step, &used, &reply) != FCGI_DONE || used != wire.len || r.id != 7 ||
		    !r.keep_conn || r.body.len != 2 || strcmp(r.body.data, "{}") != 0 || r.nparams != 4 ||
		    strcmp(fcgi_req_param(&r, "HTTP_BIG"), big) != 0)
			all_steps = 0;
		fcgi_req_free(&r);
	}
	ok(all_steps && reply.len == 0, "fcgi: a request split at every byte position parses the same");

	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_DONE, "fcgi: the whole request at once is done");
	ok((v = fcgi_req_param(&r, "REQUEST_URI")) && strcmp(v, "/api/sse/health?x=1") == 0 &&
		   (v = fcgi_req_param(&r, "EMPTY")) && *v == '\0' && fcgi_req_param(&r, "REQUEST") == NULL &&
		   fcgi_req_param(&r, "GET") == NULL,
	   "fcgi: params by exact name, empty values kept, values are not names");
	ok(fcgi_req_feed(&r, "x", 1, &used, &reply) == FCGI_BAD, "fcgi: feeding a done request without a reset is refused");
	fcgi_req_reset(&r);
	ok(r.params.len == 0 && fcgi_req_param(&r, "REQUEST_URI") == NULL && !fcgi_req_started(&r),
	   "fcgi: a reset forgets the request (and wipes its params)");
	wire.len = 0;
	peer_request(&wire, 1, 0, &params, "", 0);
	peer_request(&wire, 2, 0, &params, "", 0);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_DONE && used == wire.len / 2 && !r.keep_conn &&
		   r.body.len == 0,
	   "fcgi: the parser stops at the end of a request; the caller sees the bytes after it");
	fcgi_req_free(&r);

	/* what the front servers never send is refused */
	wire.len = 0;
	peer_begin(&wire, 1, FCGI_AUTHORIZER, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: a role other than responder is refused");
	fcgi_req_free(&r);
	wire.len = 0;
	peer_begin(&wire, 1, FCGI_RESPONDER, 0);
	peer_records(&wire, FCGI_PARAMS, 2, params.data, params.len);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: a record for another request id is refused");
	fcgi_req_free(&r);
	wire.len = 0;
	peer_begin(&wire, 1, FCGI_RESPONDER, 0);
	peer_record_pad(&wire, FCGI_ABORT_REQUEST, 1, NULL, 0, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: FCGI_ABORT_REQUEST ends the request");
	fcgi_req_free(&r);
	wire.len = 0;
	peer_begin(&wire, 1, FCGI_RESPONDER, 0);
	peer_pair_n(&mgmt, "A", 1, "b", 1, 0);
	mgmt.len--; /* the value is cut short */
	peer_records(&wire, FCGI_PARAMS, 1, mgmt.data, mgmt.len);
	peer_record_pad(&wire, FCGI_PARAMS, 1, NULL, 0, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: a truncated name-value pair is refused");
	fcgi_req_free(&r);
	wire.len = 0;
	mgmt.len = 0;
	peer_begin(&wire, 1, FCGI_RESPONDER, 0);
	peer_pair_n(&mgmt, "HTTP_AUTHORIZATION", 18, "Bearer x\0y", 10, 0);
	peer_records(&wire, FCGI_PARAMS, 1, mgmt.data, mgmt.len);
	peer_record_pad(&wire, FCGI_PARAMS, 1, NULL, 0, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD,
	   "fcgi: a NUL inside a param value is refused (it would cut the lookup short)");
	fcgi_req_free(&r);
	wire.len = 0;
	peer_record_pad(&wire, FCGI_BEGIN_REQUEST, 1, "\0\1\0\0\0\0\0\0", 8, 0);
	wire.data[0] = 2;
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: a version other than 1 is refused");
	fcgi_req_free(&r);

	/* padding, and limits answered rather than dropped */
	wire.len = 0;
	peer_begin(&wire, 3, FCGI_RESPONDER, 0);
	peer_record_pad(&wire, FCGI_PARAMS, 3, params.data, params.len, 7);
	peer_record_pad(&wire, FCGI_PARAMS, 3, NULL, 0, 255);
	peer_record_pad(&wire, FCGI_STDIN, 3, "abc", 3, 5);
	peer_record_pad(&wire, FCGI_STDIN, 3, NULL, 0, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 3, &used, &reply) == FCGI_DONE && used == wire.len &&
		   strcmp(r.body.data, "abc") == 0 && r.nparams == 4,
	   "fcgi: padded records are read whole and their padding skipped");
	fcgi_req_free(&r);
	body = xmalloc(body_len);
	memset(body, 'b', body_len);
	wire.len = 0;
	peer_request(&wire, 1, 0, &params, body, 2000);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_DONE && r.body_over && r.body.len == 1025,
	   "fcgi: a body past the limit is drained and flagged (for 413), 1 byte over kept");
	fcgi_req_free(&r);
	{
		struct buf huge = { 0 };
		char *val = xmalloc(70000);
		memset(val, 'h', 70000);
		peer_pair_n(&huge, "HTTP_X", 6, val, 70000, 0);
		wire.len = 0;
		peer_request(&wire, 1, 0, &huge, "", 0);
		fcgi_req_init(&r, 1024, 100);
		ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_DONE && r.params_over,
		   "fcgi: params past 64 KiB are drained and flagged (for 431)");
		fcgi_req_free(&r);
		free(val);
		free(huge.data);
	}

	/* management records: answered as the specification says */
	wire.len = 0;
	mgmt.len = 0;
	peer_pair(&mgmt, FCGI_MAX_CONNS, "");
	peer_pair(&mgmt, "NOT_A_VARIABLE", "");
	peer_pair(&mgmt, FCGI_MPXS_CONNS, "");
	peer_pair(&mgmt, FCGI_MAX_REQS, "");
	peer_record_pad(&wire, FCGI_GET_VALUES, 0, mgmt.data, mgmt.len, 0);
	peer_record_pad(&wire, 42, 0, "x", 1, 0);
	fcgi_req_init(&r, 1024, 321);
	reply.len = 0;
	ok(feed_in_steps(&r, &wire, 2, &used, &reply) == FCGI_MORE && used == wire.len, "fcgi: management records consumed");
	peer_reply_init(&pr);
	peer_parse(&pr, (unsigned char *)reply.data, reply.len);
	{
		struct buf want = { 0 };
		peer_pair(&want, FCGI_MAX_CONNS, "321");
		peer_pair(&want, FCGI_MPXS_CONNS, "0");
		peer_pair(&want, FCGI_MAX_REQS, "321");
		ok(pr.got_values && pr.values.len == want.len && memcmp(pr.values.data, want.data, want.len) == 0,
		   "fcgi: GET_VALUES is answered with FCGI_MAX_CONNS, FCGI_MPXS_CONNS=0 and FCGI_MAX_REQS, unknown names left out");
		free(want.data);
	}
	ok(pr.unknown_type == 42, "fcgi: an unknown management type gets FCGI_UNKNOWN_TYPE naming it");
	peer_reply_free(&pr);
	fcgi_req_free(&r);
	wire.len = 0;
	for (int i = 0; i <= FCGI_MAX_MGMT; i++)
		peer_record_pad(&wire, 50, 0, NULL, 0, 0);
	fcgi_req_init(&r, 1024, 100);
	ok(feed_in_steps(&r, &wire, 0, &used, &reply) == FCGI_BAD, "fcgi: a flood of management records is refused");
	fcgi_req_free(&r);

	/* the writers */
	for (size_t i = 0; i < body_len; i++)
		body[i] = (char)('a' + i % 26);
	fcgi_put_response(&out, 9, "Status: 200 OK\r\n\r\n", 18, body, body_len);
	peer_reply_init(&pr);
	ok(peer_parse(&pr, (unsigned char *)out.data, out.len) == out.len && pr.records == 4 && pr.stdout_closed &&
		   pr.end_request && pr.id == 9 && pr.out.len == 18 + body_len &&
		   memcmp(pr.out.data + 18, body, body_len) == 0 && !pr.malformed,
	   "fcgi: a 70 KB answer is two STDOUT records, the empty STDOUT and END_REQUEST");
	peer_reply_free(&pr);
	ok(fcgi_stdout_len(0) == 0 && fcgi_stdout_len(1) == 9 && fcgi_stdout_len(65535) == 65543 &&
		   fcgi_stdout_len(65536) == 65552,
	   "fcgi: framed sizes (nothing at all for an empty message)");
	out.len = 0;
	fcgi_put_stdout(&out, 1, "", 0);
	ok(out.len == 0, "fcgi: an empty STDOUT is never written by put_stdout (it would end the stream)");
	free(body);
	free(out.data);
	free(mgmt.data);
	free(reply.data);
	free(params.data);
	free(wire.data);
}

/* ---- the loop: timers, inbox order, deferred release ------------------------------ */

static int fired[8], nfired;
static void on_timer(struct loop *l, struct loop_timer *t)
{
	fired[nfired++] = (int)t->when;
}

static long jobs_seen[4];
static int njobs;
static void count_job(struct loop *l, void *a, void *b)
{
	jobs_seen[njobs++] = (long)(intptr_t)a;
}

static int released;
static void on_release(struct loop_later *x)
{
	released++;
}

static void later_job(struct loop *l, void *a, void *b)
{
	ok(released == 0, "loop: a job posted before the release still sees its object");
}

static void test_loop(void)
{
	struct loop_timer t[5] = { { 0 } };
	struct loop_later x;
	struct loop *l;
	int64_t base;

	ok(loops_create(1) == 0, "loop: created");
	l = loops_get(0);
	base = util_mono_ms() - 1000;
	/* due in the past, out of order; one stopped, one re-armed */
	loop_timer_set(l, &t[0], base + 30, on_timer);
	loop_timer_set(l, &t[1], base + 10, on_timer);
	loop_timer_set(l, &t[2], base + 20, on_timer);
	loop_timer_set(l, &t[3], base + 5, on_timer);
	loop_timer_set(l, &t[4], base + 40, on_timer);
	loop_timer_stop(l, &t[2]);
	loop_timer_set(l, &t[0], base + 1, on_timer);
	loop_pass(l, 0);
	ok(nfired == 4 && fired[0] == (int)(base + 1) && fired[1] == (int)(base + 5) && fired[2] == (int)(base + 10) &&
		   fired[3] == (int)(base + 40) && !t[0].slot && !t[2].slot,
	   "loop: due timers run once, in time order; a stopped one never");
	loop_post(l, count_job, (void *)1, NULL);
	loop_post(l, count_job, (void *)2, NULL);
	loop_post(l, later_job, NULL, NULL);
	/* given up in this thread before the drain: released after it */
	loop_free_later(l, &x, on_release);
	loop_pass(l, 0);
	ok(njobs == 2 && jobs_seen[0] == 1 && jobs_seen[1] == 2, "loop: posted jobs run in order");
	ok(released == 1, "loop: the object is released after the drain that ran the jobs naming it");
	loops_free();
}

/* ---- the whole path: connections, api, hub, streams (loops driven here) ---------- */

static const char hub_secret[] = "unit-test-hub-secret-0123456789abcdef";

static char *hub_token(const char *user, int admin)
{
	char claims[256];
	jwt_t *jwt;
	char *tok;

	snprintf(claims, sizeof(claims), "{\"user_id\":\"%s\",\"exp\":%ld%s}", user, (long)time(NULL) + 3600,
		 admin ? ",\"role\":\"admin\"" : "");
	jwt_new(&jwt);
	jwt_add_grants_json(jwt, claims);
	jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)hub_secret, sizeof(hub_secret) - 1);
	tok = jwt_encode_str(jwt);
	jwt_free(jwt);
	return tok;
}

/* A token with extra claims (a JSON fragment such as ",\"topics\":[\"a\"]"). */
static char *hub_token_with(const char *user, const char *extra)
{
	char claims[4096];
	jwt_t *jwt;
	char *tok;

	snprintf(claims, sizeof(claims), "{\"user_id\":\"%s\",\"exp\":%ld%s}", user, (long)time(NULL) + 3600, extra);
	jwt_new(&jwt);
	jwt_add_grants_json(jwt, claims);
	jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)hub_secret, sizeof(hub_secret) - 1);
	tok = jwt_encode_str(jwt);
	jwt_free(jwt);
	return tok;
}

/* Runs every loop for ms (or until done() says so). */
static void run_loops(int ms)
{
	int64_t end = util_mono_ms() + ms;

	while (util_mono_ms() < end)
		for (int i = 0; i < loops_count(); i++)
			loop_pass(loops_get(i), 1);
}

struct peer {
	int fd;
	struct peer_reply r;
	unsigned char raw[1 << 18];
	size_t have;
};

/* Reads what has arrived, without waiting. */
static void peer_pump(struct peer *p)
{
	for (;;) {
		ssize_t n = recv(p->fd, p->raw + p->have, sizeof(p->raw) - p->have, MSG_DONTWAIT);
		size_t used;
		if (n == 0)
			p->r.eof = 1;
		if (n <= 0)
			break;
		p->have += (size_t)n;
		used = peer_parse(&p->r, p->raw, p->have);
		memmove(p->raw, p->raw + used, p->have - used);
		p->have -= used;
	}
	buf_append(&p->r.out, "", 0);
}

/* A connection to loop `loop` carrying one request. */
static struct peer *peer_send(int loop, const char *method, const char *uri, const char *token, const char *ctype,
			      const char *body, const char *last_id)
{
	struct peer *p = xcalloc(1, sizeof(*p));
	struct buf params = { 0 }, wire = { 0 };
	int sv[2];

	peer_reply_init(&p->r);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	p->fd = sv[0];
	peer_pair(&params, "REQUEST_METHOD", method);
	peer_pair(&params, "REQUEST_URI", uri);
	if (token) {
		char auth[4096];
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		peer_pair(&params, "HTTP_AUTHORIZATION", auth);
	}
	if (ctype)
		peer_pair(&params, "CONTENT_TYPE", ctype);
	if (last_id)
		peer_pair(&params, "HTTP_LAST_EVENT_ID", last_id);
	peer_request(&wire, 1, 0, &params, body ? body : "", body ? strlen(body) : 0);
	peer_write_all(p->fd, wire.data, wire.len);
	server_adopt(loops_get(loop), sv[1]);
	free(params.data);
	free(wire.data);
	return p;
}

static void peer_free(struct peer *p)
{
	close(p->fd);
	peer_reply_free(&p->r);
	free(p);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* An admin POST answered in one pass; returns the status. */
static int admin_post(const char *path, const char *body, const char *ctype, char *answer, size_t answer_len)
{
	char *tok = hub_token("root", 1);
	struct peer *p = peer_send(0, "POST", path, tok, ctype, body, NULL);
	const char *b;
	size_t blen;
	int status = 0;

	run_loops(30);
	peer_pump(p);
	if (peer_cgi_split(&p->r.out, &status, &b, &blen) < 0)
		status = -1;
	else if (answer)
		snprintf(answer, answer_len, "%.*s", (int)blen, b);
	peer_free(p);
	free(tok);
	return status;
}

static void test_hub(void)
{
	struct peer *a1, *a2, *b1, *late;
	struct buf stats = { 0 };
	char answer[512], id1[64], *ta, *tb, body[200000], *q;
	const char *e;
	FILE *f;

	f = fopen(cfg.secret_files[0], "w");
	ok(f && fputs(hub_secret, f) >= 0 && fclose(f) == 0 && auth_reload() == 0, "hub: a fresh secret");
	cfg.loops = 2;
	cfg.max_queue_bytes = 256 * 1024;
	hub_init(&cfg);
	api_init(&cfg);
	ok(server_setup(&cfg) == 0, "hub: two loops set up");
	ta = hub_token("alice", 0);
	tb = hub_token("bob", 0);
	a1 = peer_send(0, "GET", "/sse/stream", ta, NULL, NULL, NULL);
	a2 = peer_send(1, "GET", "/sse/stream", ta, NULL, NULL, NULL);
	b1 = peer_send(1, "GET", "/sse/stream", tb, NULL, NULL, NULL);
	run_loops(50);
	peer_pump(a1);
	ok(strstr(a1->r.out.data, "Content-Type: text/event-stream\r\n") != NULL, "hub: stream head written by its loop");
	ok(strstr(a1->r.out.data, "event: connected\n") && strstr(a1->r.out.data, "\"client_id\":\""),
	   "hub: connected event with a client id");
	{
		struct hub_wait w = { 0 };
		ok(hub_stats(loops_get(0), &w) == HUB_OK, "hub: stats answered at once without Redis");
		stats = w.json;
	}
	ok(strstr(stats.data, "\"total_clients\":3") && strstr(stats.data, "\"alice\":2") && strstr(stats.data, "\"bob\":1"),
	   "hub: stats count streams per user: %s", stats.data);

	ok(admin_post("/api/sse/send-to-user", "{\"user_id\":\"alice\",\"event\":\"for-alice\",\"data\":1}",
		      "application/json", answer, sizeof(answer)) == 200 &&
		   strstr(answer, "\"recipients\":2"),
	   "hub: send-to-user answered with 2 recipients: %s", answer);
	q = strstr(answer, "\"id\":\"");
	snprintf(id1, sizeof(id1), "%s", q ? q + 6 : "");
	if ((q = strchr(id1, '"')))
		*q = '\0';
	ok(admin_post("/api/sse/broadcast", "{\"event\":\"for-all\",\"data\":2}", "application/json; charset=utf-8",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":3"),
	   "hub: broadcast to 3 (a JSON type with parameters is fine)");
	ok(admin_post("/api/sse/broadcast", "{\"event\":\"csrf\",\"data\":2}", "text/plain", answer, sizeof(answer)) == 415 &&
		   admin_post("/api/sse/broadcast", "{\"event\":\"csrf\",\"data\":2}", NULL, NULL, 0) == 415 &&
		   admin_post("/api/sse/broadcast", "event=csrf&data=2", "application/x-www-form-urlencoded", NULL, 0) == 415,
	   "hub: an admin POST without Content-Type: application/json is refused (415)");
	run_loops(30);
	peer_pump(a1);
	peer_pump(a2);
	peer_pump(b1);
	ok(count(a1->r.out.data, "event: for-alice") == 1 && count(a2->r.out.data, "event: for-alice") == 1,
	   "hub: a user message reaches both of alice's streams (two loops) once");
	ok(count(b1->r.out.data, "event: for-alice") == 0, "hub: a user message does not reach bob");
	ok(count(b1->r.out.data, "event: for-all") == 1 && count(a1->r.out.data, "event: for-all") == 1 &&
		   count(a2->r.out.data, "event: for-all") == 1,
	   "hub: a broadcast reaches everyone once");
	ok(count(a1->r.out.data, "csrf") == 0, "hub: nothing of a refused publish was delivered");
	e = strstr(a1->r.out.data, "event: for-alice");
	ok(e && strstr(a1->r.out.data, "event: for-all") > e, "hub: in publish order");

	/* replay after id1: the broadcast, not bob's message */
	admin_post("/api/sse/send-to-user", "{\"user_id\":\"bob\",\"event\":\"for-bob\",\"data\":3}", "application/json",
		   NULL, 0);
	late = peer_send(0, "GET", "/sse/stream", ta, NULL, NULL, id1);
	run_loops(30);
	peer_pump(late);
	ok(strstr(late->r.out.data, "\"resumed\":true") != NULL, "hub: a known Last-Event-ID resumes");
	ok(count(late->r.out.data, "event: for-all") == 1 && count(late->r.out.data, "event: for-alice") == 0 &&
		   count(late->r.out.data, "event: for-bob") == 0,
	   "hub: replay holds exactly the later messages alice may see");
	peer_free(late);
	late = peer_send(0, "GET", "/sse/stream", tb, NULL, NULL, id1);
	run_loops(30);
	peer_pump(late);
	ok(strstr(late->r.out.data, "\"resumed\":false") != NULL && count(late->r.out.data, "event: for-all") == 0,
	   "hub: an id of another user's message is unknown (resumed false, nothing replayed)");
	peer_free(late);

	/* a message longer than one FastCGI record */
	memset(body, 0, sizeof(body));
	snprintf(body, sizeof(body), "{\"user_id\":\"bob\",\"event\":\"big\",\"data\":\"");
	memset(body + strlen(body), 'x', 150000);
	strcat(body, "\"}");
	cfg.max_message_bytes = 200000;
	ok(admin_post("/api/sse/send-to-user", body, "application/json", NULL, 0) == 200, "hub: a 150 kB event accepted");
	run_loops(50);
	peer_pump(b1);
	q = body + strlen("{\"user_id\":\"bob\",\"event\":\"big\",\"data\":");
	q[150002] = '\0'; /* the quoted string, without the closing brace */
	ok(b1->r.out.data && strstr(b1->r.out.data, q) != NULL,
	   "hub: a 150 kB event arrives whole across several records (%zu bytes read)", b1->r.out.len);

	/* a client that leaves is removed */
	close(a2->fd);
	a2->fd = -1;
	run_loops(30);
	ok(hub_total_clients() == 2, "hub: a closed stream is removed at once");

	/* disconnect one user: final event, end records */
	ok(admin_post("/api/sse/disconnect", "{\"user_id\":\"bob\",\"reason\":\"bye\"}", "application/json", answer,
		      sizeof(answer)) == 200 && strstr(answer, "\"closed\":1"),
	   "hub: disconnect answers closed 1");
	run_loops(30);
	peer_pump(b1);
	ok(strstr(b1->r.out.data, "event: disconnect") && b1->r.end_request && hub_total_clients() == 1,
	   "hub: bob got the disconnect event and the end of the response");

	hub_set_stopping();
	ok(admin_post("/api/sse/disconnect", "{\"user_id\":\"alice\"}", "application/json", answer, sizeof(answer)) == 503 &&
		   strstr(answer, "shutting_down"),
	   "hub: once stopping, a disconnect is answered 503 and posts nothing");
	server_stop(0, 1000);
	peer_pump(a1);
	ok(a1->r.end_request && strstr(a1->r.out.data, "retry: 0\n"), "hub: the stop sends retry then END_REQUEST");
	ok(hub_total_clients() == 0, "hub: registry empty after stop");
	peer_free(a1);
	peer_free(a2);
	peer_free(b1);
	free(ta);
	free(tb);
	free(stats.data);
	hub_free();
}

/* The status of a stream request that was refused (0 while it streams). */
static int refused_status(struct peer *p, char *answer, size_t answer_len)
{
	const char *b;
	size_t blen;
	int status = 0;

	peer_pump(p);
	if (!p->r.end_request || peer_cgi_split(&p->r.out, &status, &b, &blen) < 0)
		return 0;
	if (answer)
		snprintf(answer, answer_len, "%.*s", (int)blen, b);
	return status;
}

/* Opens a stream of a token on uri in loop 0 and returns the refusal's
 * status (0: it streams; the peer is freed either way). */
static int stream_refused(const char *uri, const char *tok, char *answer, size_t answer_len)
{
	struct peer *p = peer_send(0, "GET", uri, tok, NULL, NULL, NULL);
	int status;

	run_loops(30);
	status = refused_status(p, answer, answer_len);
	peer_free(p);
	run_loops(10);
	return status;
}

/* The stats object (hub_stats without Redis answers at once) into *out,
 * replacing what it held; topics: ?topics=1. */
static void stats_json(struct buf *out, int topics)
{
	struct hub_wait w = { 0 };

	w.topics = topics;
	if (hub_stats(loops_get(0), &w) != HUB_OK)
		buf_puts(&w.json, "(stats not answered at once)");
	buf_append(&w.json, "", 0);
	free(out->data);
	*out = w.json;
}

/* The id of a publish answer. */
static void answer_id(const char *answer, char *id, size_t idlen)
{
	const char *q = strstr(answer, "\"id\":\"");
	char *end;

	snprintf(id, idlen, "%s", q ? q + 6 : "");
	if ((end = strchr(id, '"')))
		*end = '\0';
}

static void test_topics(void)
{
	struct peer *a1, *b1, *c1, *late;
	struct buf stats = { 0 };
	char answer[2048], uri[16384], id1[64], *ta, *tb, *tc, *tbad, *tstr, *tempty;
	const char *e, *m;
	long topics_before;

	cfg.loops = 2;
	cfg.max_message_bytes = 65536;
	hub_init(&cfg);
	api_init(&cfg);
	ok(server_setup(&cfg) == 0, "topics: two loops set up");
	ta = hub_token_with("alice", ",\"topics\":[\"orders/*\",\"rooms/ops\"]");
	tb = hub_token_with("bob", ",\"topics\":[\"*\"]");
	tc = hub_token_with("carol", "");
	tbad = hub_token_with("dave", ",\"topics\":[\"orders/*\",7]");
	tstr = hub_token_with("erin", ",\"topics\":\"orders/*\"");
	tempty = hub_token_with("fred", ",\"topics\":[\"\"]");
	{
		struct auth_identity id;
		char big[2600], *tbig;
		uint64_t hits = auth_cache_hits();
		int first, second;

		first = auth_verify(ta, strlen(ta), &id, NULL) == AUTH_OK && auth_topic_allowed(&id, "orders/42") &&
			auth_topic_allowed(&id, "orders/") && auth_topic_allowed(&id, "rooms/ops") &&
			!auth_topic_allowed(&id, "orders") && !auth_topic_allowed(&id, "rooms/ops2") &&
			!auth_topic_allowed(&id, "rooms") && !id.topics_bad;
		memset(&id, 0, sizeof(id));
		second = auth_verify(ta, strlen(ta), &id, NULL) == AUTH_OK && auth_cache_hits() > hits &&
			 auth_topic_allowed(&id, "orders/42") && auth_topic_allowed(&id, "rooms/ops") &&
			 !auth_topic_allowed(&id, "orders");
		ok(first && second, "topics: exact and prefix patterns; a cache hit carries the claim");
		ok(auth_verify(tb, strlen(tb), &id, NULL) == AUTH_OK && auth_topic_allowed(&id, "x") &&
			   auth_topic_allowed(&id, "a:b@c.d_e-f"),
		   "topics: \"*\" alone allows any topic");
		ok(auth_verify(tc, strlen(tc), &id, NULL) == AUTH_OK && !auth_topic_allowed(&id, "x") && !id.topics_bad,
		   "topics: no claim allows none");
		ok(auth_verify(tbad, strlen(tbad), &id, NULL) == AUTH_OK && !auth_topic_allowed(&id, "orders/1") &&
			   id.topics_bad &&
			   auth_verify(tstr, strlen(tstr), &id, NULL) == AUTH_OK && !auth_topic_allowed(&id, "orders/1") &&
			   id.topics_bad,
		   "topics: a claim holding a non-string, or not an array, allows none (the token itself is good)");
		/* patterns of 195 bytes: 10 fit in the identity (2048 bytes), 11 do not */
		for (int n = 10; n <= 11; n++) {
			char pat[200], topic[200];
			snprintf(big, sizeof(big), ",\"topics\":[");
			for (int i = 0; i < n; i++) {
				memset(pat, 'p', sizeof(pat));
				snprintf(pat, 3, "%02d", i);
				pat[2] = 'p';
				pat[194] = '*';
				pat[195] = '\0';
				snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s\"%s\"", i ? "," : "", pat);
			}
			strcat(big, "]");
			/* a topic the last pattern allows: its prefix, then "x" */
			snprintf(topic, sizeof(topic), "%.194sx", pat);
			tbig = hub_token_with("gina", big);
			if (n == 10)
				ok(auth_verify(tbig, strlen(tbig), &id, NULL) == AUTH_OK && !id.topics_bad &&
					   auth_topic_allowed(&id, topic),
				   "topics: 10 patterns of 195 bytes are kept");
			else
				ok(auth_verify(tbig, strlen(tbig), &id, NULL) == AUTH_OK && id.topics_bad &&
					   !auth_topic_allowed(&id, "00p"),
				   "topics: a claim longer than the identity keeps allows none rather than part of it");
			free(tbig);
		}
	}

	a1 = peer_send(0, "GET", "/sse/stream?topic=orders/42&topic=rooms%2Fops&topic=orders%2F42", ta, NULL, NULL, NULL);
	b1 = peer_send(1, "GET", "/sse/stream?topic=orders/42&x=1&topic=a:b@c.d_e-f", tb, NULL, NULL, NULL);
	c1 = peer_send(1, "GET", "/sse/stream", tc, NULL, NULL, NULL);
	run_loops(50);
	peer_pump(a1);
	peer_pump(b1);
	peer_pump(c1);
	ok(a1->r.out.data && strstr(a1->r.out.data, "\"topics\":[\"orders/42\",\"rooms/ops\"]}"),
	   "topics: connected lists the topics once each, in order, %%2F decoded: %s",
	   a1->r.out.data ? a1->r.out.data : "");
	ok(b1->r.out.data && strstr(b1->r.out.data, "\"topics\":[\"orders/42\",\"a:b@c.d_e-f\"]}"),
	   "topics: \"*\" allows any topic; every legal character passes");
	ok(c1->r.out.data && strstr(c1->r.out.data, "event: connected") && !strstr(c1->r.out.data, "topics"),
	   "topics: without topics, connected is the seed's event");

	/* refused streams: nothing opened, nothing delivered */
	ok(stream_refused("/sse/stream?topic=orders/42", tc, answer, sizeof(answer)) == 403 &&
		   strstr(answer, "\"topic_forbidden\"") && strstr(answer, "orders/42"),
	   "topics: a token without the claim may not subscribe (403 topic_forbidden naming it)");
	ok(stream_refused("/sse/stream?topic=orders/42&topic=secret", ta, answer, sizeof(answer)) == 403 &&
		   strstr(answer, "topic secret"),
	   "topics: one topic outside the patterns refuses the stream");
	ok(stream_refused("/sse/stream?topic=orders", ta, NULL, 0) == 403,
	   "topics: \"orders/*\" does not allow \"orders\"");
	ok(stream_refused("/sse/stream?topic=orders/1", tbad, answer, sizeof(answer)) == 403 &&
		   strstr(answer, "claim is not an array") && stream_refused("/sse/stream", tbad, NULL, 0) == 0,
	   "topics: a claim holding a non-string allows no topic; the stream without topics opens");
	ok(stream_refused("/sse/stream?topic=orders/1", tstr, NULL, 0) == 403 &&
		   stream_refused("/sse/stream?topic=orders/1", tempty, NULL, 0) == 403,
	   "topics: a claim that is a string, or holds an empty pattern, allows nothing");
	{
		static const char *const bad[] = { "topic=a%00b", "topic=a%0Db", "topic=a%0Ab", "topic=", "topic",
						   "topic=a+b", "topic=a%20b", "topic=%zz", "topic=a%", "topic=%C3%A9",
						   "topic=a*", "topic=orders/1&topic=%00" };
		int all = 1;
		for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
			snprintf(uri, sizeof(uri), "/sse/stream?%s", bad[i]);
			if (stream_refused(uri, tb, answer, sizeof(answer)) != 400 || !strstr(answer, "\"invalid_topic\"")) {
				all = 0;
				printf("#   not refused with 400 invalid_topic: %s -> %s\n", bad[i], answer);
			}
		}
		ok(all, "topics: NUL, CR, LF, space, empty, bad escapes, non-ASCII, '*' are 400 invalid_topic");
	}
	snprintf(uri, sizeof(uri), "/sse/stream?topic=");
	memset(uri + strlen(uri), 'x', 201);
	uri[strlen("/sse/stream?topic=") + 201] = '\0';
	ok(stream_refused(uri, tb, answer, sizeof(answer)) == 400 && strstr(answer, "invalid_topic"),
	   "topics: 201 bytes is 400 invalid_topic");
	uri[strlen(uri) - 1] = '\0';
	ok(stream_refused(uri, tb, NULL, 0) == 0, "topics: 200 bytes is a topic");
	snprintf(uri, sizeof(uri), "/sse/stream?");
	for (int i = 0; i < 33; i++)
		snprintf(uri + strlen(uri), sizeof(uri) - strlen(uri), "topic=t%d&", i);
	ok(stream_refused(uri, tb, answer, sizeof(answer)) == 400 && strstr(answer, "too_many_topics"),
	   "topics: 33 topics is 400 too_many_topics");
	*strstr(uri, "topic=t32&") = '\0';
	ok(stream_refused(uri, tb, NULL, 0) == 0, "topics: 32 topics open");
	run_loops(30);
	ok(hub_total_clients() == 3, "topics: only the three streams remain (%ld)", hub_total_clients());

	/* publish */
	ok(admin_post("/api/sse/publish", "{\"topic\":\"orders/42\",\"event\":\"status\",\"data\":{\"n\":1}}",
		      "application/json", answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":2"),
	   "topics: publish to a topic reaches its 2 streams: %s", answer);
	answer_id(answer, id1, sizeof(id1));
	ok(admin_post("/api/sse/publish", "{\"topic\":\"rooms/ops\",\"event\":\"ops\",\"data\":2}", "application/json",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":1"),
	   "topics: a topic of one stream");
	ok(admin_post("/api/sse/publish", "{\"topic\":\"nobody\",\"event\":\"x\",\"data\":3}", "application/json",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":0"),
	   "topics: a topic without streams: 0 recipients");
	ok(admin_post("/api/sse/publish", "{\"topic\":\"a b\",\"event\":\"x\",\"data\":3}", "application/json", answer,
		      sizeof(answer)) == 400 && strstr(answer, "invalid_topic") &&
		   admin_post("/api/sse/publish", "{\"event\":\"x\",\"data\":3}", "application/json", NULL, 0) == 400 &&
		   admin_post("/api/sse/publish", "{\"topic\":\"a\\u0000b\",\"event\":\"x\",\"data\":3}",
			      "application/json", NULL, 0) == 400 &&
		   admin_post("/api/sse/publish", "{\"topic\":5,\"event\":\"x\",\"data\":3}", "application/json", NULL,
			      0) == 400,
	   "topics: publish with a bad, missing, NUL-holding or non-string topic is 400");
	run_loops(30);
	peer_pump(a1);
	peer_pump(b1);
	peer_pump(c1);
	ok(count(a1->r.out.data, "event: status") == 1 && count(b1->r.out.data, "event: status") == 1 &&
		   count(c1->r.out.data, "event: status") == 0,
	   "topics: exactly once per subscribed stream, not to others");
	ok(count(a1->r.out.data, "event: ops") == 1 && count(b1->r.out.data, "event: ops") == 0,
	   "topics: rooms/ops only to alice");
	ok(count(a1->r.out.data, "event: x\n") == 0 && count(b1->r.out.data, "event: x\n") == 0,
	   "topics: nothing of the refused or unheard publishes delivered");

	/* stats */
	stats_json(&stats, 0);
	ok(!strstr(stats.data, "topic_clients"), "topics: stats without ?topics=1 is the seed's: %s", stats.data);
	stats_json(&stats, 1);
	ok(strstr(stats.data, "\"topic_clients\":{") && strstr(stats.data, "\"orders/42\":2") &&
		   strstr(stats.data, "\"rooms/ops\":1") && strstr(stats.data, "\"a:b@c.d_e-f\":1"),
	   "topics: stats with topics: %s", stats.data);
	ok(hub_topics_count() == 3, "topics: three topics have streams (%ld)", hub_topics_count());

	/* server-side subscriptions */
	ok(admin_post("/api/sse/subscribe", "{\"user_id\":\"carol\",\"topics\":[\"news\",\"news\",\"orders/42\"]}",
		      "application/json", answer, sizeof(answer)) == 200 && strcmp(answer, "{\"success\":true,\"data\":{\"recipients\":1}}") == 0,
	   "topics: subscribe carol (no claim needed): %s", answer);
	ok(admin_post("/api/sse/publish", "{\"topic\":\"news\",\"event\":\"headline\",\"data\":1}", "application/json",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":1"),
	   "topics: a publish right after the subscribe reaches the new member");
	ok(admin_post("/api/sse/subscribe", "{\"user_id\":\"carol\",\"topics\":[\"news\"]}", "application/json", answer,
		      sizeof(answer)) == 200 && strstr(answer, "\"recipients\":0"),
	   "topics: subscribing again changes nothing (0)");
	run_loops(30);
	peer_pump(c1);
	e = c1->r.out.data ? strstr(c1->r.out.data, "event: subscribed\ndata: {\"topics\":[\"news\",\"orders/42\"]}\n\n")
			   : NULL;
	m = c1->r.out.data ? strstr(c1->r.out.data, "event: headline") : NULL;
	ok(e && m && e < m && count(c1->r.out.data, "event: subscribed") == 1,
	   "topics: carol gets one subscribed event with the topics, before the next message");
	ok(e && strncmp(e - 4, "id:", 3) != 0 && !strstr(c1->r.out.data, "id: \nevent: subscribed"),
	   "topics: the subscribed event carries no id");
	ok(admin_post("/api/sse/unsubscribe", "{\"user_id\":\"alice\",\"topics\":[\"rooms/ops\",\"never\"]}",
		      "application/json", answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":1"),
	   "topics: unsubscribe alice from rooms/ops");
	ok(admin_post("/api/sse/publish", "{\"topic\":\"rooms/ops\",\"event\":\"ops2\",\"data\":2}", "application/json",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":0"),
	   "topics: ... after which rooms/ops has nobody");
	run_loops(30);
	peer_pump(a1);
	ok(strstr(a1->r.out.data, "event: unsubscribed\ndata: {\"topics\":[\"rooms/ops\"]}\n\n") &&
		   count(a1->r.out.data, "event: ops2") == 0,
	   "topics: alice gets the unsubscribed event (only what changed) and no more rooms/ops");
	ok(admin_post("/api/sse/subscribe", "{\"user_id\":\"nobody\",\"topics\":[\"news\"]}", "application/json", answer,
		      sizeof(answer)) == 200 && strstr(answer, "\"recipients\":0") &&
		   admin_post("/api/sse/unsubscribe",
			      "{\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"topics\":[\"news\"]}",
			      "application/json", answer, sizeof(answer)) == 200 &&
		   strstr(answer, "\"recipients\":0"),
	   "topics: subscribe/unsubscribe for an unknown user or client: 0, not an error");
	{
		static const char *const bad[] = {
			"{\"user_id\":\"carol\"}", "{\"user_id\":\"carol\",\"topics\":[]}",
			"{\"user_id\":\"carol\",\"topics\":\"news\"}", "{\"user_id\":\"carol\",\"topics\":[\"a b\"]}",
			"{\"user_id\":\"carol\",\"topics\":[1]}", "{\"topics\":[\"news\"]}",
			"{\"user_id\":\"carol\",\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"topics\":[\"a\"]}",
		};
		int all = 1;
		for (size_t i = 0; i < ARRAY_LEN(bad); i++)
			if (admin_post("/api/sse/subscribe", bad[i], "application/json", NULL, 0) != 400) {
				all = 0;
				printf("#   not 400: %s\n", bad[i]);
			}
		snprintf(uri, sizeof(uri), "{\"user_id\":\"carol\",\"topics\":[");
		for (int i = 0; i < 33; i++)
			snprintf(uri + strlen(uri), sizeof(uri) - strlen(uri), "%s\"t%d\"", i ? "," : "", i);
		strcat(uri, "]}");
		if (admin_post("/api/sse/subscribe", uri, "application/json", answer, sizeof(answer)) != 400 ||
		    !strstr(answer, "too_many_topics")) {
			all = 0;
			printf("#   33 topics: %s\n", answer);
		}
		ok(all, "topics: bad subscribe bodies are 400 and change nothing");
	}
	cfg.max_topics_per_stream = 3;
	ok(admin_post("/api/sse/subscribe", "{\"user_id\":\"carol\",\"topics\":[\"n1\",\"n2\"]}", "application/json",
		      answer, sizeof(answer)) == 200 && strstr(answer, "\"recipients\":0") && strstr(answer, "\"skipped\":1"),
	   "topics: a stream that would pass --max-topics-per-stream is skipped and left unchanged: %s", answer);
	cfg.max_topics_per_stream = 32;
	run_loops(30);
	peer_pump(c1);
	ok(count(c1->r.out.data, "event: subscribed") == 1, "topics: ... and told nothing");
	stats_json(&stats, 1);
	ok(strstr(stats.data, "\"news\":1") && strstr(stats.data, "\"orders/42\":3") && !strstr(stats.data, "rooms/ops") &&
		   !strstr(stats.data, "\"n1\""),
	   "topics: stats follow the server-side changes: %s", stats.data);

	/* replay: only what the new stream may see */
	admin_post("/api/sse/publish", "{\"topic\":\"orders/42\",\"event\":\"status2\",\"data\":5}", "application/json",
		   NULL, 0);
	admin_post("/api/sse/publish", "{\"topic\":\"orders/7\",\"event\":\"other-order\",\"data\":6}", "application/json",
		   NULL, 0);
	late = peer_send(0, "GET", "/sse/stream?topic=orders/42", ta, NULL, NULL, id1);
	run_loops(30);
	peer_pump(late);
	ok(late->r.out.data && strstr(late->r.out.data, "\"resumed\":true") &&
		   count(late->r.out.data, "event: status2") == 1 && count(late->r.out.data, "event: ops") == 0 &&
		   count(late->r.out.data, "event: other-order") == 0 && count(late->r.out.data, "event: headline") == 0,
	   "topics: a reconnect on orders/42 replays its later messages only");
	peer_free(late);
	late = peer_send(0, "GET", "/sse/stream?topic=orders/7", ta, NULL, NULL, id1);
	run_loops(30);
	peer_pump(late);
	ok(late->r.out.data && strstr(late->r.out.data, "\"resumed\":false") && !strstr(late->r.out.data, "event: other-order"),
	   "topics: an id of a topic the new stream does not subscribe to is unknown (resumed false)");
	peer_free(late);
	late = peer_send(0, "GET", "/sse/stream", tc, NULL, NULL, id1);
	run_loops(30);
	peer_pump(late);
	ok(late->r.out.data && strstr(late->r.out.data, "\"resumed\":false"),
	   "topics: ... also for a stream without topics");
	peer_free(late);
	/* an id no message could have (a control character): unknown, and the
	 * topics still go with the stream */
	late = peer_send(0, "GET", "/sse/stream?topic=orders/42&topic=rooms/ops", ta, NULL, NULL, "bad\001id");
	run_loops(30);
	peer_pump(late);
	ok(late->r.out.data && strstr(late->r.out.data, "\"topics\":[\"orders/42\",\"rooms/ops\"],\"resumed\":false"),
	   "topics: a stream with topics and an impossible Last-Event-ID: resumed false, its topics listed");
	peer_free(late);
	run_loops(30);

	/* a closed stream leaves its topics */
	topics_before = hub_topics_count();
	close(b1->fd);
	b1->fd = -1;
	run_loops(30);
	stats_json(&stats, 1);
	ok(hub_topics_count() == topics_before - 1 && !strstr(stats.data, "a:b@c.d_e-f") &&
		   strstr(stats.data, "\"orders/42\":2"),
	   "topics: a closed stream leaves its topics (%ld -> %ld): %s", topics_before, hub_topics_count(), stats.data);

	hub_set_stopping();
	ok(admin_post("/api/sse/subscribe", "{\"user_id\":\"carol\",\"topics\":[\"z\"]}", "application/json", answer,
		      sizeof(answer)) == 503,
	   "topics: once stopping, subscribe is 503");
	server_stop(0, 1000);
	ok(hub_total_clients() == 0 && hub_topics_count() == 0, "topics: registry and topics empty after stop");
	peer_free(a1);
	peer_free(b1);
	peer_free(c1);
	free(ta);
	free(tb);
	free(tc);
	free(tbad);
	free(tstr);
	free(tempty);
	free(stats.data);
	hub_free();
}

int main(void)
{
	config_defaults(&cfg);
	test_sse();
	test_parsers();
	test_wall_clock();
	test_auth();
	test_auth_cache();
	test_fcgi();
	test_loop();
	test_hub();
	test_topics();
	auth_shutdown();
	config_free(&cfg);
	return tap_done();
}
