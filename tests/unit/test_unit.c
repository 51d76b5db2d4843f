/* Unit tests: SSE encoding, parsers, token checks, and the hub with real loop
 * threads writing FastCGI records into socketpairs. TAP output. */
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

#include <fcgiapp.h>

#include "auth.h"
#include "fcgi_in.h"
#include "config.h"
#include "hub.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"
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

	o = util_json_parse("{\"a\":1}", 7, 8);
	ok(o && json_object_is_type(o, json_type_object), "valid JSON object parses");
	json_object_put(o);
	o = util_json_parse("{\"a\":1} ", 8, 8);
	ok(o != NULL, "trailing whitespace is fine");
	json_object_put(o);
	ok(util_json_parse("{\"a\":1}x", 8, 8) == NULL, "trailing garbage is rejected");
	ok(util_json_parse("{\"a\":1", 6, 8) == NULL, "truncated JSON is rejected");
	ok(util_json_parse("{\"a\":1}{}", 9, 8) == NULL, "two values are rejected");
	ok(util_json_parse("[[[[[[[[[[1]]]]]]]]]]", 21, 8) == NULL, "too deep is rejected");
	ok(util_json_parse("{\"a\":\"\0\"}", 9, 8) == NULL, "NUL byte is rejected");
	ok(util_json_parse("", 0, 8) == NULL, "empty input is rejected");
	o = util_json_parse("123", 3, 8);
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

	snprintf(claims, sizeof(claims), "{\"user_id\":\"c1\",\"role\":\"admin\",\"exp\":%ld}", (long)time(NULL) + 3600);
	tok = mint(claims, JWT_ALG_HS256);
	hits = auth_cache_hits();
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_OK && auth_cache_hits() == hits,
	   "cache: a token is verified in full the first time");
	memset(&id, 0, sizeof(id));
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_OK && auth_cache_hits() == hits + 1 &&
		   strcmp(id.user, "c1") == 0 && id.admin && id.exp == (int64_t)time(NULL) + 3600 + 30,
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

/* ---- the FastCGI request reader and writer ---------------------------------- */

static void put_record(struct buf *b, int type, uint16_t id, const void *content, size_t len)
{
	unsigned char h[FCGI_HEADER_LEN];
	fcgi_header(h, type, id, len);
	buf_append(b, h, sizeof(h));
	if (len)
		buf_append(b, content, len);
}

static void put_pair(struct buf *b, const char *name, const char *value, size_t vlen)
{
	unsigned char l[8];
	size_t nl = strlen(name), k = 0;
	l[k++] = (unsigned char)nl;
	if (vlen < 128) {
		l[k++] = (unsigned char)vlen;
	} else {
		l[k++] = (unsigned char)(0x80 | vlen >> 24);
		l[k++] = (unsigned char)(vlen >> 16);
		l[k++] = (unsigned char)(vlen >> 8);
		l[k++] = (unsigned char)vlen;
	}
	buf_append(b, l, k);
	buf_append(b, name, nl);
	buf_append(b, value, vlen);
}

/* A whole request: BEGIN_REQUEST (flags), PARAMS, STDIN. */
static void put_request(struct buf *b, uint16_t id, int flags, const struct buf *params, const char *body)
{
	unsigned char begin[8] = { 0, FCGI_RESPONDER, (unsigned char)flags, 0, 0, 0, 0, 0 };
	put_record(b, FCGI_BEGIN_REQUEST, id, begin, sizeof(begin));
	put_record(b, FCGI_PARAMS, id, params->data, params->len);
	put_record(b, FCGI_PARAMS, id, NULL, 0);
	if (*body)
		put_record(b, FCGI_STDIN, id, body, strlen(body));
	put_record(b, FCGI_STDIN, id, NULL, 0);
}

static enum fcgi_in_result read_from(const struct buf *wire, int close_after, struct fcgi_in *in)
{
	int sv[2];
	enum fcgi_in_result r;
	ssize_t w = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return FCGI_IN_DROP;
	if (wire->len)
		w = write(sv[0], wire->data, wire->len);
	(void)w;
	if (close_after)
		shutdown(sv[0], SHUT_WR);
	r = fcgi_in_read(sv[1], 1024, 1000, in);
	close(sv[0]);
	close(sv[1]);
	return r;
}

static void test_fcgi_in(void)
{
	struct buf params = { 0 }, wire = { 0 }, empty = { 0 }, out = { 0 };
	struct fcgi_in in;
	char **env, big[300], *head = "Status: 200 OK\r\n\r\n", *body;
	size_t body_len = 70000, off = 0, got_len = 0;
	int sv[2], ended = 0, stdout_closed = 0, records = 0;
	char *got;

	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	put_pair(&params, "REQUEST_METHOD", "GET", 3);
	put_pair(&params, "REQUEST_URI", "/api/sse/health?x=1", 19);
	put_pair(&params, "EMPTY", "", 0);
	put_pair(&params, "HTTP_BIG", big, strlen(big));

	put_request(&wire, 7, FCGI_KEEP_CONN, &params, "{}");
	ok(read_from(&wire, 0, &in) == FCGI_IN_OK && in.keep_conn && in.request_id == 7 &&
		   in.body.len == 2 && strcmp(in.body.data, "{}") == 0,
	   "fcgi_in: a request with FCGI_KEEP_CONN is read whole, flag kept");
	env = fcgi_in_envp(&in);
	ok(env && strcmp(FCGX_GetParam("REQUEST_URI", env), "/api/sse/health?x=1") == 0 &&
		   strcmp(FCGX_GetParam("EMPTY", env), "") == 0 && strcmp(FCGX_GetParam("HTTP_BIG", env), big) == 0 &&
		   FCGX_GetParam("REQUEST", env) == NULL && env[4] == NULL,
	   "fcgi_in: envp holds every pair, long lengths and empty values included, for FCGX_GetParam");
	free(env);
	fcgi_in_free(&in);

	wire.len = 0;
	put_request(&wire, 1, 0, &params, "");
	ok(read_from(&wire, 0, &in) == FCGI_IN_OK && !in.keep_conn, "fcgi_in: without the flag, not kept");
	fcgi_in_free(&in);

	wire.len = 0;
	put_request(&wire, 1, FCGI_KEEP_CONN, &params, "");
	put_request(&wire, 2, FCGI_KEEP_CONN, &params, "");
	ok(read_from(&wire, 0, &in) == FCGI_IN_OK && !in.keep_conn,
	   "fcgi_in: bytes after the request (pipelining) mean the connection is not kept");
	fcgi_in_free(&in);

	ok(read_from(&empty, 1, &in) == FCGI_IN_CLOSED, "fcgi_in: a peer that closes without a byte is CLOSED");
	fcgi_in_free(&in);
	wire.len = 0;
	put_request(&wire, 1, 0, &params, "");
	wire.len = 20; /* inside the PARAMS record */
	ok(read_from(&wire, 1, &in) == FCGI_IN_DROP, "fcgi_in: a peer that closes inside a request is DROP");
	fcgi_in_free(&in);

	/* an answer longer than one record: the head and body split across two */
	body = xmalloc(body_len);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (char)('a' + i % 26);
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	ok(fcgi_in_reply(sv[0], 9, head, strlen(head), body, body_len) == 0, "fcgi_in_reply writes 70 KB");
	close(sv[0]);
	for (;;) {
		char tmp[65536];
		ssize_t n = read(sv[1], tmp, sizeof(tmp));
		if (n <= 0)
			break;
		buf_append(&out, tmp, (size_t)n);
	}
	close(sv[1]);
	got = xmalloc(out.len);
	while (off + FCGI_HEADER_LEN <= out.len) {
		const unsigned char *r = (const unsigned char *)out.data + off;
		size_t clen = (size_t)r[4] << 8 | r[5];
		int id = r[2] << 8 | r[3];
		records++;
		if (id != 9 || r[6] != 0)
			break;
		if (r[1] == FCGI_STDOUT && clen) {
			memcpy(got + got_len, r + FCGI_HEADER_LEN, clen);
			got_len += clen;
		} else if (r[1] == FCGI_STDOUT) {
			stdout_closed = 1;
		} else if (r[1] == FCGI_END_REQUEST && clen == 8 && r[FCGI_HEADER_LEN + 4] == FCGI_REQUEST_COMPLETE) {
			ended = 1;
		}
		off += FCGI_HEADER_LEN + clen;
	}
	ok(records == 4 && stdout_closed && ended && off == out.len && got_len == strlen(head) + body_len &&
		   memcmp(got, head, strlen(head)) == 0 && memcmp(got + strlen(head), body, body_len) == 0,
	   "fcgi_in_reply: two STDOUT records carry head and body in order, then the empty STDOUT and END_REQUEST");
	free(got);
	free(body);
	free(out.data);
	free(params.data);
	free(wire.data);
}

/* ---- hub and loops over socketpairs ------------------------------------------- */

struct peer {
	int fd;
	char stdout_buf[1 << 20];
	size_t len;
	int ended;               /* END_REQUEST seen */
	int eof;
};

/* Reads FastCGI records for up to ms, appending STDOUT content. */
static void pump(struct peer *p, int ms)
{
	static unsigned char raw[1 << 21];
	size_t have = 0;
	int64_t deadline = util_mono_ms() + ms;

	for (;;) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int64_t left = deadline - util_mono_ms();
		ssize_t n;
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = read(p->fd, raw + have, sizeof(raw) - have);
		if (n <= 0) {
			p->eof = 1;
			break;
		}
		have += (size_t)n;
		for (;;) {
			size_t clen, total;
			if (have < FCGI_HEADER_LEN)
				break;
			clen = ((size_t)raw[4] << 8) | raw[5];
			total = FCGI_HEADER_LEN + clen + raw[6];
			if (have < total)
				break;
			if (raw[1] == FCGI_STDOUT && clen) {
				memcpy(p->stdout_buf + p->len, raw + FCGI_HEADER_LEN, clen);
				p->len += clen;
				p->stdout_buf[p->len] = '\0';
			} else if (raw[1] == FCGI_END_REQUEST) {
				p->ended = 1;
			}
			memmove(raw, raw + total, have - total);
			have -= total;
		}
	}
}

static struct peer *connect_stream(const char *user, const char *last_id)
{
	int sv[2];
	struct peer *p = xcalloc(1, sizeof(*p));
	struct stream *s;

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	p->fd = sv[0];
	s = stream_new(sv[1], 1, user, 0, 0);
	ok(hub_attach(s, last_id) == HUB_ATTACHED, "stream for user %s attached", user);
	return p;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void publish(enum msg_target target, const char *key, const char *event, const char *data, char *id_out)
{
	struct buf b = { 0 };
	char id[64];
	long recipients;
	struct msg *m;

	hub_new_id(id, sizeof(id));
	sse_encode(&b, id, event, -1, data);
	m = msg_new(target, key, id, b.data, b.len);
	hub_publish(m, &recipients);
	msg_unref(m);
	free(b.data);
	if (id_out)
		strcpy(id_out, id);
}

static void test_hub(void)
{
	struct peer *a1, *a2, *b1, *late;
	struct buf stats = { 0 };
	char id1[64], *big;

	cfg.loops = 2;
	cfg.max_queue_bytes = 256 * 1024;
	hub_init(&cfg);
	ok(loops_start(&cfg) == 0, "two loops started");
	a1 = connect_stream("alice", NULL);
	a2 = connect_stream("alice", NULL);
	b1 = connect_stream("bob", NULL);
	pump(a1, 200);
	ok(strstr(a1->stdout_buf, "Content-Type: text/event-stream\r\n") != NULL, "headers written by the loop");
	ok(strstr(a1->stdout_buf, "event: connected\n") != NULL && strstr(a1->stdout_buf, "\"client_id\":\""),
	   "connected event with a client id");
	hub_stats_json(&stats);
	ok(strstr(stats.data, "\"total_clients\":3") && strstr(stats.data, "\"alice\":2") && strstr(stats.data, "\"bob\":1"),
	   "stats count streams per user: %s", stats.data);

	publish(MSG_USER, "alice", "for-alice", "1", id1);
	publish(MSG_BROADCAST, NULL, "for-all", "2", NULL);
	pump(a1, 200);
	pump(a2, 200);
	pump(b1, 200);
	ok(count(a1->stdout_buf, "event: for-alice") == 1 && count(a2->stdout_buf, "event: for-alice") == 1,
	   "user message reaches both of alice's streams once");
	ok(count(b1->stdout_buf, "event: for-alice") == 0, "user message does not reach bob");
	ok(count(b1->stdout_buf, "event: for-all") == 1 && count(a1->stdout_buf, "event: for-all") == 1,
	   "broadcast reaches everyone");

	/* replay after id1: the broadcast, not bob's message */
	publish(MSG_USER, "bob", "for-bob", "3", NULL);
	late = connect_stream("alice", id1);
	pump(late, 200);
	ok(strstr(late->stdout_buf, "\"resumed\":true") != NULL, "known Last-Event-ID resumes");
	ok(count(late->stdout_buf, "event: for-all") == 1 && count(late->stdout_buf, "event: for-alice") == 0 &&
		   count(late->stdout_buf, "event: for-bob") == 0,
	   "replay holds exactly the later messages alice may see");
	close(late->fd);
	free(late);
	late = connect_stream("alice", "no-such-id");
	pump(late, 200);
	ok(strstr(late->stdout_buf, "\"resumed\":false") != NULL, "unknown Last-Event-ID says resumed false");

	/* a message longer than one FastCGI record */
	big = xmalloc(150001);
	memset(big, 'x', 150000);
	big[0] = '"';
	big[149999] = '"';
	big[150000] = '\0';
	publish(MSG_USER, "bob", "big", big, NULL);
	pump(b1, 500);
	ok(strstr(b1->stdout_buf, big) != NULL, "a 150 kB event arrives whole across several records (%zu bytes read)", b1->len);
	free(big);

	/* a client that leaves is removed from the registry */
	close(a2->fd);
	for (int i = 0; i < 100 && hub_total_clients() != 3; i++)
		usleep(10000);
	ok(hub_total_clients() == 3, "closed stream removed within a second");

	/* slow consumer: bob never reads while we publish past his bound */
	for (int i = 0; i < 100; i++) {
		char data[8200];
		memset(data, 'y', sizeof(data) - 1);
		data[0] = data[sizeof(data) - 2] = '"';
		data[sizeof(data) - 1] = '\0';
		publish(MSG_USER, "bob", "flood", data, NULL);
	}
	for (int i = 0; i < 100 && hub_total_clients() != 2; i++)
		usleep(10000);
	ok(hub_total_clients() == 2, "slow consumer closed at the queue bound");
	ok(METRIC_GET(slow_consumer_total) == 1, "slow consumer counted");
	pump(a1, 100);
	ok(!a1->eof, "other streams unaffected");

	loops_stop(1000, 1000);
	pump(a1, 300);
	ok(a1->ended && strstr(a1->stdout_buf, "retry: "), "stop sends retry then END_REQUEST");
	ok(hub_total_clients() == 0, "registry empty after stop");
	close(a1->fd);
	close(b1->fd);
	close(late->fd);
	free(a1);
	free(a2);
	free(b1);
	free(late);
	free(stats.data);
	hub_free();
}

int main(void)
{
	config_defaults(&cfg);
	test_sse();
	test_parsers();
	test_auth();
	test_auth_cache();
	test_fcgi_in();
	test_hub();
	auth_shutdown();
	config_free(&cfg);
	return tap_done();
}
