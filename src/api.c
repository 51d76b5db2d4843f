/* api: routing and the admin API. Every byte from the peer is bounded and
 * validated here before it reaches the hub; errors are JSON with a code a
 * developer can act on. Answers are built whole into the caller's buffer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "sse.h"
#include "util.h"

#define JSON_DEPTH 32
#define MAX_REASON 256

static const struct config *cfg;

void api_init(const struct config *c)
{
	cfg = c;
}

struct request {
	struct api_request *api;
	const struct fcgi_req *in;
	const char *method;
	char path[256];
	const char *query;
	const char *body;            /* owned by in */
	size_t body_len;
	struct auth_identity who;
};

enum handler_result { HANDLED, HANDED_OFF, WAITING };

enum route_kind {
	R_STREAM, R_HEALTH, R_STATS, R_BROADCAST, R_TO_USER, R_TO_CLIENT, R_DISCONNECT, R_METRICS,
	R_PUBLISH, R_SUBSCRIBE, R_UNSUBSCRIBE,
};

/* A target's key: a user id, a client id or a topic name, with its NUL. */
#define KEY_SIZE (HUB_MAX_TOPIC > AUTH_MAX_USER ? HUB_MAX_TOPIC + 1 : AUTH_MAX_USER + 1)

static const char *const target_names[] = { "broadcast", "user", "client", "topic" };

/* A request whose answer waits for the hub (the Redis backplane). The hub
 * holds w until done runs; the connection may go first (api_cancel). */
struct api_pending {
	struct hub_wait w;
	struct api_request *api;         /* NULL once the connection is gone */
	enum route_kind kind;
	enum msg_target target;
};

static const char *param(const struct request *r, const char *name)
{
	return fcgi_req_param(r->in, name);
}

/* ---- answers -------------------------------------------------------------- */

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

/* The whole answer: head, body, the end records. */
static void respond(struct request *r, int status, const char *content_type, const char *extra_headers,
		    const char *body, size_t len)
{
	struct buf head = { 0 };

	buf_printf(&head, "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n%s\r\n", status,
		   status_text(status), content_type, extra_headers ? extra_headers : "");
	fcgi_put_response(r->api->out, r->in->id, head.data, head.len, body, len);
	free(head.data);
}

static void respond_json(struct request *r, int status, const char *extra_headers, const struct buf *b)
{
	respond(r, status, "application/json", extra_headers, b->data, b->len);
}

static void respond_ok(struct request *r, const char *data_json)
{
	struct buf b = { 0 };
	buf_printf(&b, "{\"success\":true,\"data\":%s}", data_json);
	respond_json(r, 200, NULL, &b);
	free(b.data);
}

static void error_json(struct buf *b, const char *code, const char *message)
{
	buf_puts(b, "{\"success\":false,\"error\":{\"code\":");
	buf_json_str(b, code);
	buf_puts(b, ",\"message\":");
	buf_json_str(b, message);
	buf_puts(b, "}}");
}

static void respond_error(struct request *r, int status, const char *code, const char *message,
			  const char *extra_headers)
{
	struct buf b = { 0 };

	error_json(&b, code, message);
	respond_json(r, status, extra_headers, &b);
	free(b.data);
}

void api_error_answer(struct buf *out, uint16_t id, int status, const char *code, const char *message)
{
	struct fcgi_req none = { .id = id };
	struct api_request api = { .out = out };
	struct request r = { .api = &api, .in = &none };

	respond_error(&r, status, code, message, NULL);
}

/* ---- request input -------------------------------------------------------- */

/* The body, read by the fcgi parser within --max-message-bytes. Returns 0, or -1
 * when it was longer than max. */
static int read_body(struct request *r, size_t max)
{
	if (r->in->body_over || r->in->body.len > max)
		return -1;
	r->body = r->in->body.data ? r->in->body.data : "";
	r->body_len = r->in->body.len;
	return 0;
}

/* ---- authentication -------------------------------------------------------- */

static int authenticate(struct request *r)
{
	int bad = 0;
	const char *why = "";
	char *token = auth_find_token(param(r, "HTTP_AUTHORIZATION"), param(r, "HTTP_COOKIE"), r->query, &bad);
	enum auth_result res;

	if (!token) {
		if (bad) {
			res = AUTH_INVALID_TOKEN;
			why = "the token is longer than 8192 bytes or badly URL-encoded";
		} else {
			res = AUTH_MISSING_TOKEN;
			why = "send a token: Authorization: Bearer, the token cookie or the token query parameter";
		}
		auth_count_failure(res);
	} else {
		size_t len = strlen(token);
		res = auth_verify(token, len, &r->who, &why);
		util_wipe(token, len);
		free(token);
	}
	if (res == AUTH_OK)
		return 0;
	if (res == AUTH_MISSING_TOKEN)
		respond_error(r, 401, auth_result_code(res), why, "WWW-Authenticate: Bearer\r\n");
	else
		respond_error(r, 401, auth_result_code(res), why, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
	{
		char path[96];
		log_info("event=auth_failed path=%s reason=%s", log_quote(path, sizeof(path), r->path),
			 auth_result_code(res));
	}
	return -1;
}

static int authenticate_admin(struct request *r)
{
	if (authenticate(r) < 0)
		return -1;
	if (!r->who.admin) {
		respond_error(r, 403, "forbidden", "this route needs an admin token", NULL);
		return -1;
	}
	return 0;
}

/* ---- handlers ---------------------------------------------------------------- */

static struct api_pending *pending_new(struct request *r, enum route_kind kind, enum msg_target target);
static enum handler_result settle(struct request *r, struct api_pending *p, enum hub_status st);

/* The answer for a hub status that is not success. */
/* ---- topics -------------------------------------------------------------------- */

#define TOPIC_RULE "1 to 200 bytes of A-Z a-z 0-9 _ - . : / @"

/* Adds name to list[0..*n) unless it is there already; takes it over. */
static void topics_add_unique(char **list, size_t *n, char *name)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(list[i], name) == 0) {
			free(name);
			return;
		}
	}
	list[(*n)++] = name;
}

void api_topics_free(char **topics, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(topics[i]);
	free(topics);
}

/* The next "name[=value]" segment of a query from *p: its start and length;
 * moves *p past it. Returns 0 at the end. */
static int query_segment(const char **p, const char **seg, size_t *len)
{
	const char *end;

	if (!*p || !**p)
		return 0;
	end = strchr(*p, '&');
	*seg = *p;
	*len = end ? (size_t)(end - *p) : strlen(*p);
	*p = end ? end + 1 : NULL;
	return 1;
}

static int is_topic_param(const char *seg, size_t len)
{
	size_t n = strlen("topic");
	return len >= n && strncmp(seg, "topic", n) == 0 && (len == n || seg[n] == '=');
}

enum api_topics_result api_query_topics(const char *query, size_t max, char ***out, size_t *n, size_t *bad_at)
{
	const char *p = query, *seg;
	size_t len, count = 0, k = 0;
	char **list;

	*out = NULL;
	*n = 0;
	*bad_at = 0;
	/* counted first: nothing is decoded for a request over the limit */
	while (query_segment(&p, &seg, &len))
		count += is_topic_param(seg, len);
	if (count > max) {
		*bad_at = max + 1;
		return API_TOPICS_TOO_MANY;
	}
	if (!count)
		return API_TOPICS_OK;
	list = xmalloc(count * sizeof(*list));
	for (p = query; query_segment(&p, &seg, &len);) {
		const char *v = seg + strlen("topic") + 1;
		size_t vlen = len > strlen("topic") ? len - strlen("topic") - 1 : 0;
		char *name;
		long dlen;

		if (!is_topic_param(seg, len))
			continue;
		k++;
		/* %XX triples the bytes at most: longer cannot be a topic */
		name = vlen <= HUB_MAX_TOPIC * 3 ? xmalloc(vlen + 1) : NULL;
		dlen = name ? util_url_decode(name, v, vlen) : -1;
		if (dlen < 0 || !hub_topic_valid(name, (size_t)dlen)) {
			free(name);
			api_topics_free(list, *n);
			*n = 0;
			*bad_at = k;
			return API_TOPICS_INVALID;
		}
		topics_add_unique(list, n, name);
	}
	*out = list;
	return API_TOPICS_OK;
}

/* The stream's topics from the query, each allowed by the token. Returns 0,
 * or -1 after answering 400 or 403. */
static int stream_topics(struct request *r, char ***topics, size_t *n)
{
	struct buf m = { 0 };
	size_t bad_at;
	int rc = -1;

	switch (api_query_topics(r->query, (size_t)cfg->max_topics_per_stream, topics, n, &bad_at)) {
	case API_TOPICS_TOO_MANY:
		buf_printf(&m, "a stream may ask for at most %ld topics (--max-topics-per-stream)",
			   cfg->max_topics_per_stream);
		respond_error(r, 400, "too_many_topics", m.data, NULL);
		goto done;
	case API_TOPICS_INVALID:
		buf_printf(&m, "topic parameter %zu is not a topic name: " TOPIC_RULE " once URL-decoded", bad_at);
		respond_error(r, 400, "invalid_topic", m.data, NULL);
		goto done;
	case API_TOPICS_OK:
		break;
	}
	for (size_t i = 0; i < *n; i++) {
		char user[160];
		if (auth_topic_allowed(&r->who, (*topics)[i]))
			continue;
		/* a topic name needs no quoting: its characters are all plain */
		buf_printf(&m, "the token does not allow topic %s%s", (*topics)[i],
			   r->who.topics_bad ? " (its topics claim is not an array of non-empty strings, or is too long)"
					     : "");
		respond_error(r, 403, "topic_forbidden", m.data, NULL);
		log_info("event=topic_forbidden user=%s topic=%s", log_quote(user, sizeof(user), r->who.user),
			 (*topics)[i]);
		api_topics_free(*topics, *n);
		*topics = NULL;
		*n = 0;
		goto done;
	}
	rc = 0;
done:
	free(m.data);
	return rc;
}

static void respond_status(struct request *r, enum hub_status st)
{
	switch (st) {
	case HUB_TOO_MANY_CLIENTS:
		METRIC_ADD(rejected_limit_total, 1);
		respond_error(r, 503, "too_many_clients", "the hub holds --max-clients streams", "Retry-After: 5\r\n");
		break;
	case HUB_TOO_MANY_USER_CLIENTS:
		METRIC_ADD(rejected_limit_total, 1);
		respond_error(r, 429, "too_many_user_clients", "this user has --max-clients-per-user streams open",
			      "Retry-After: 5\r\n");
		break;
	case HUB_KEY_REVOKED:
		respond_error(r, 401, "token_revoked", "the key that signed this token is no longer configured",
			      "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
		break;
	case HUB_UNAVAILABLE:
		respond_error(r, 503, "backplane_unavailable",
			      "the Redis backplane cannot take this now; nothing was published, try again",
			      "Retry-After: 1\r\n");
		break;
	default:
		respond_error(r, 503, "shutting_down", "the hub is stopping; try again shortly", "Retry-After: 1\r\n");
		break;
	}
}

static enum handler_result handle_stream(struct request *r)
{
	char *leid = NULL;
	const char *hdr;
	struct hub_who who;
	struct api_pending *p;
	enum hub_status st;
	char **topics = NULL;
	size_t ntopics = 0;

	if (read_body(r, 0) < 0) {
		respond_error(r, 413, "payload_too_large", "a stream request has no body", NULL);
		return HANDLED;
	}
	if (authenticate(r) < 0 || stream_topics(r, &topics, &ntopics) < 0)
		return HANDLED;
	if (r->api->fd_pressure) {
		METRIC_ADD(rejected_limit_total, 1);
		respond_error(r, 503, "too_many_open_files",
			      "the hub is out of file descriptors; raise its limit (ulimit -n)", "Retry-After: 5\r\n");
		api_topics_free(topics, ntopics);
		return HANDLED;
	}
	hdr = param(r, "HTTP_LAST_EVENT_ID");
	if (hdr && *hdr) {
		leid = xstrdup(hdr);
	} else {
		int bad = 0;
		leid = util_query_param(r->query ? r->query : "", "last_event_id", SSE_MAX_ID * 3, &bad);
		if (bad)
			leid = xstrdup("\n");
	}
	/* An id we could never have sent is simply unknown: resumed=false. */
	if (leid && !sse_valid_id(leid, strlen(leid))) {
		free(leid);
		leid = xstrdup("\n");
	}
	who.user = r->who.user;
	who.admin = r->who.admin;
	who.token_exp = r->who.exp;
	who.key_id = r->who.key_id;
	who.topics = topics;
	who.ntopics = ntopics;
	/* the fd is the stream's from here: its watcher must go first */
	loop_io_del(r->api->loop, r->api->io);
	p = pending_new(r, R_STREAM, MSG_BROADCAST);
	st = hub_open_stream(r->api->loop, r->api->fd, r->in->id, &who, leid, &p->w);
	free(leid);
	api_topics_free(topics, ntopics);
	return settle(r, p, st);
}

/* Parses the body as one strict JSON object (RFC 8259: what json-c would
 * let through, such as single quotes, NaN or comments, is refused). Answers
 * 400/413 itself and returns -1. */
static int parse_body(struct request *r, struct jsonx_doc *doc)
{
	struct jsonx_error e;
	char why[160];

	if (read_body(r, (size_t)cfg->max_message_bytes) < 0) {
		respond_error(r, 413, "payload_too_large", "the body is larger than --max-message-bytes", NULL);
		return -1;
	}
	if (!r->body_len) {
		respond_error(r, 400, "invalid_json", "the body is empty; send a JSON object", NULL);
		return -1;
	}
	if (jsonx_parse(doc, r->body, r->body_len, JSON_DEPTH, &e) < 0) {
		snprintf(why, sizeof(why), "the body is not strict JSON: %s at byte %zu", e.reason, e.offset);
		respond_error(r, 400, "invalid_json", why, NULL);
		return -1;
	}
	if (doc->type != JSONX_OBJECT) {
		jsonx_free(doc);
		respond_error(r, 400, "invalid_json", "the body must be one JSON object", NULL);
		return -1;
	}
	return 0;
}

/* A string member into dst (cap bytes). Returns 1 when present and a
 * string that fits, 0 when absent, -1 when present but not usable. */
static int string_field(const struct jsonx_doc *doc, const char *name, char *dst, size_t cap, size_t *len)
{
	const struct jsonx_member *m = jsonx_get(doc, name);

	if (!m)
		return 0;
	if (m->type != JSONX_STRING || jsonx_unescape(m->value, m->value_len, dst, cap, len) < 0)
		return -1;
	return 1;
}

static int client_id_valid(const char *s, size_t len)
{
	if (len != 36)
		return 0;
	for (size_t i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

/* Reads the target field of a publish or disconnect body into key (at
 * least KEY_SIZE bytes). Returns 0, or -1 after answering 400. */
static int target_field(struct request *r, const struct jsonx_doc *doc, enum msg_target target, char *key)
{
	const struct jsonx_member *m;
	size_t len;

	key[0] = '\0';
	if (target == MSG_USER) {
		/* one rule with the token's user claim (auth_user_id) */
		if (!(m = jsonx_get(doc, "user_id")) || auth_user_id(m->value, m->value_len, key) < 0) {
			respond_error(r, 400, "invalid_field",
				      "user_id must be a non-empty string of at most 128 bytes of text, or an integer "
				      "in the 64-bit range", NULL);
			return -1;
		}
	} else if (target == MSG_CLIENT) {
		if (string_field(doc, "client_id", key, AUTH_MAX_USER + 1, &len) != 1 || !client_id_valid(key, len)) {
			respond_error(r, 400, "invalid_field", "client_id must be a client id from a connected event", NULL);
			return -1;
		}
	} else if (target == MSG_TOPIC) {
		if (string_field(doc, "topic", key, HUB_MAX_TOPIC + 1, &len) != 1 || !hub_topic_valid(key, len)) {
			respond_error(r, 400, "invalid_topic", "topic must be a topic name: " TOPIC_RULE, NULL);
			return -1;
		}
	}
	return 0;
}

/* The user_id or client_id (not both) of a disconnect or subscribe body
 * into key (KEY_SIZE bytes). Returns 0, or -1 after answering 400. */
static int streams_field(struct request *r, const struct jsonx_doc *doc, enum msg_target *target, char *key)
{
	int has_client = jsonx_get(doc, "client_id") != NULL;

	key[0] = '\0';
	if (has_client && jsonx_get(doc, "user_id")) {
		respond_error(r, 400, "invalid_field", "give user_id or client_id, not both", NULL);
		return -1;
	}
	*target = has_client ? MSG_CLIENT : MSG_USER;
	return target_field(r, doc, *target, key);
}

static enum handler_result handle_publish(struct request *r, enum msg_target target)
{
	struct jsonx_doc doc = { 0 };
	const struct jsonx_member *m;
	char key[KEY_SIZE], event[SSE_MAX_EVENT + 1], given_id[SSE_MAX_ID + 1], *data = NULL;
	int has_id;
	size_t len;
	long retry = -1;
	struct buf enc = { 0 };
	struct hub_pub pub;
	struct api_pending *p;
	enum handler_result res = HANDLED;

	if (authenticate_admin(r) < 0 || parse_body(r, &doc) < 0)
		return HANDLED;
	if (target_field(r, &doc, target, key) < 0)
		goto done;
	if (string_field(&doc, "event", event, sizeof(event), &len) != 1 || !sse_valid_event(event, len)) {
		respond_error(r, 400, "invalid_field",
			      "event must be a string of 1 to 64 bytes of text (no control characters, U+2028 or U+2029)",
			      NULL);
		goto done;
	}
	if (!(m = jsonx_get(&doc, "data"))) {
		respond_error(r, 400, "invalid_field", "data is required (any JSON value)", NULL);
		goto done;
	}
	/* sent as the publisher wrote it, less insignificant whitespace */
	data = xstrndup(m->value, m->value_len);
	has_id = string_field(&doc, "id", given_id, sizeof(given_id), &len);
	if (has_id < 0 || (has_id && !sse_valid_id(given_id, len))) {
		respond_error(r, 400, "invalid_field",
			      "id must be a string of 1 to 128 bytes of text (no control characters, U+2028 or U+2029)",
			      NULL);
		goto done;
	}
	if ((m = jsonx_get(&doc, "retry")) != NULL) {
		int64_t v;
		if (jsonx_int64(m->value, m->value_len, &v) != JSONX_INT_OK || v < 0 || v > 86400000) {
			respond_error(r, 400, "invalid_field", "retry must be an integer number of milliseconds", NULL);
			goto done;
		}
		retry = (long)v;
	}
	/* the hub puts the id line in front: an id of its own is at most 40 bytes */
	sse_encode(&enc, NULL, event, retry, data);
	if (enc.len + 5 + (has_id ? strlen(given_id) : 40) > (size_t)cfg->max_message_bytes) {
		respond_error(r, 413, "payload_too_large", "the encoded event is larger than --max-message-bytes", NULL);
		goto done;
	}
	pub.target = target;
	pub.key = target == MSG_BROADCAST ? NULL : key;
	pub.id = has_id ? given_id : NULL;
	pub.body = enc.data;
	pub.body_len = enc.len;
	p = pending_new(r,
			target == MSG_BROADCAST ? R_BROADCAST
			: target == MSG_USER	? R_TO_USER
			: target == MSG_CLIENT	? R_TO_CLIENT
						: R_PUBLISH,
			target);
	res = settle(r, p, hub_publish(r->api->loop, &pub, &p->w));
done:
	free(enc.data);
	free(data);
	jsonx_free(&doc);
	return res;
}

static enum handler_result handle_disconnect(struct request *r)
{
	struct jsonx_doc doc = { 0 };
	enum msg_target target;
	char key[KEY_SIZE], reason[MAX_REASON + 1];
	size_t len;
	int has_reason;
	struct buf data = { 0 }, enc = { 0 };
	struct hub_pub pub = { 0 };
	struct api_pending *p;
	enum handler_result res = HANDLED;

	if (authenticate_admin(r) < 0 || parse_body(r, &doc) < 0)
		return HANDLED;
	if (streams_field(r, &doc, &target, key) < 0)
		goto done;
	has_reason = string_field(&doc, "reason", reason, sizeof(reason), &len);
	if (has_reason < 0) {
		respond_error(r, 400, "invalid_field", "reason must be a string of at most 256 bytes", NULL);
		goto done;
	}
	buf_puts(&data, "{\"reason\":");
	buf_json_str(&data, has_reason ? reason : "disconnected");
	buf_puts(&data, "}");
	sse_encode(&enc, NULL, "disconnect", -1, data.data);
	pub.target = target;
	pub.key = key;
	pub.body = enc.data;
	pub.body_len = enc.len;
	p = pending_new(r, R_DISCONNECT, target);
	res = settle(r, p, hub_disconnect(r->api->loop, &pub, &p->w));
done:
	free(data.data);
	free(enc.data);
	jsonx_free(&doc);
	return res;
}

/* The "topics" array of a subscribe body into *out, distinct, *n of them.
 * Returns 0, or -1 after answering 400. */
static int topics_field(struct request *r, const struct jsonx_doc *doc, char ***out, size_t *n)
{
	const struct jsonx_member *m = jsonx_get(doc, "topics");
	struct buf msg = { 0 };
	size_t pos = 0, len, elen, count = 0, i = 0;
	const char *e;

	*out = NULL;
	*n = 0;
	if (m && m->type == JSONX_ARRAY)
		while (jsonx_array_next(m->value, m->value_len, &pos, &e, &elen))
			count++;
	if (!count) {
		respond_error(r, 400, "invalid_field", "topics must be a non-empty array of topic names", NULL);
		return -1;
	}
	if (count > (size_t)cfg->max_topics_per_stream) {
		buf_printf(&msg, "at most %ld topics at a time (--max-topics-per-stream)", cfg->max_topics_per_stream);
		respond_error(r, 400, "too_many_topics", msg.data, NULL);
		free(msg.data);
		return -1;
	}
	*out = xmalloc(count * sizeof(**out));
	for (pos = 0; jsonx_array_next(m->value, m->value_len, &pos, &e, &elen); i++) {
		char name[HUB_MAX_TOPIC + 1];
		if (jsonx_type_of(e, elen) != JSONX_STRING || jsonx_unescape(e, elen, name, sizeof(name), &len) < 0 ||
		    !hub_topic_valid(name, len)) {
			buf_printf(&msg, "topics[%zu] is not a topic name: " TOPIC_RULE, i);
			respond_error(r, 400, "invalid_topic", msg.data, NULL);
			free(msg.data);
			api_topics_free(*out, *n);
			*out = NULL;
			*n = 0;
			return -1;
		}
		topics_add_unique(*out, n, xstrdup(name));
	}
	return 0;
}

static enum handler_result handle_subscribe(struct request *r, int add)
{
	struct jsonx_doc doc = { 0 };
	enum msg_target target;
	char key[KEY_SIZE], **topics = NULL;
	size_t ntopics = 0;
	struct api_pending *p;
	enum handler_result res = HANDLED;

	if (authenticate_admin(r) < 0 || parse_body(r, &doc) < 0)
		return HANDLED;
	if (streams_field(r, &doc, &target, key) < 0 || topics_field(r, &doc, &topics, &ntopics) < 0)
		goto done;
	p = pending_new(r, add ? R_SUBSCRIBE : R_UNSUBSCRIBE, target);
	res = settle(r, p, hub_subscribe(r->api->loop, target, key, topics, ntopics, add, &p->w));
done:
	api_topics_free(topics, ntopics);
	jsonx_free(&doc);
	return res;
}

static enum handler_result handle_stats(struct request *r)
{
	struct api_pending *p;
	char *topics;

	if (authenticate_admin(r) < 0)
		return HANDLED;
	p = pending_new(r, R_STATS, MSG_BROADCAST);
	/* ?topics=1 adds the streams per topic; without it, the seed's answer */
	topics = util_query_param(r->query ? r->query : "", "topics", 8, NULL);
	p->w.topics = topics && (strcmp(topics, "1") == 0 || strcmp(topics, "true") == 0);
	free(topics);
	return settle(r, p, hub_stats(r->api->loop, &p->w));
}

/* ok, or with Redis "degraded" while the backplane cannot deliver (still
 * 200: the node serves its streams, and a balancer should keep it). */
static void handle_health(struct request *r)
{
	int bp = hub_backplane();
	struct buf b = { 0 };

	buf_printf(&b, "{\"status\":\"%s\"", bp == 0 ? "degraded" : "ok");
	if (bp >= 0)
		buf_printf(&b, ",\"backplane\":\"%s\"", bp ? "ok" : "unavailable");
	buf_puts(&b, "}");
	respond_ok(r, b.data);
	free(b.data);
}

static void handle_metrics(struct request *r)
{
	static const char *reasons[AUTH__COUNT];
	struct metrics_gauges g = { .auth_reasons = reasons, .nauth_reasons = AUTH__COUNT };
	struct buf b = { 0 };

	if (!cfg->metrics_public && authenticate_admin(r) < 0)
		return;
	for (int i = 0; i < AUTH__COUNT; i++)
		reasons[i] = auth_result_code((enum auth_result)i);
	g.active_streams = hub_total_clients();
	g.history_messages = hub_history_len();
	g.topics = hub_topics_count();
	g.backplane = hub_backplane();
	metrics_render(&b, &g);
	respond(r, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
	free(b.data);
}

/* ---- answers from the hub, now or later --------------------------------------- */

static struct api_pending *pending_new(struct request *r, enum route_kind kind, enum msg_target target)
{
	struct api_pending *p = xcalloc(1, sizeof(*p));

	p->kind = kind;
	p->target = target;
	return p;
}

/* Writes the answer for a settled hub operation. */
static enum handler_result answer(struct request *r, struct api_pending *p)
{
	struct hub_wait *w = &p->w;
	struct buf out = { 0 };
	if (w->status != HUB_OK) {
		respond_status(r, w->status);
		return HANDLED;
	}
	switch (p->kind) {
	case R_STREAM:
		return HANDED_OFF;
	case R_STATS:
		respond_ok(r, w->json.data);
		break;
	case R_SUBSCRIBE:
	case R_UNSUBSCRIBE:
		buf_printf(&out, "{\"recipients\":%ld", w->count);
		/* only when it happened: the usual answer is the documented one */
		if (w->skipped)
			buf_printf(&out, ",\"skipped\":%ld", w->skipped);
		buf_puts(&out, "}");
		respond_ok(r, out.data);
		log_info("event=%s target=%s changed=%ld skipped=%ld", p->kind == R_SUBSCRIBE ? "subscribe" : "unsubscribe",
			 target_names[p->target], w->count, w->skipped);
		if (w->skipped)
			log_warn("event=subscribe_skipped streams=%ld reason=\"over --max-topics-per-stream\"", w->skipped);
		break;
	case R_DISCONNECT:
		buf_printf(&out, "{\"closed\":%ld}", w->count);
		respond_ok(r, out.data);
		log_info("event=disconnect_request target=%s closed=%ld", target_names[p->target], w->count);
		break;
	default:
		buf_puts(&out, "{\"id\":");
		buf_json_str(&out, w->id);
		buf_printf(&out, ",\"recipients\":%ld%s}", w->count, w->duplicate ? ",\"duplicate\":true" : "");
		respond_ok(r, out.data);
		if (log_enabled(LOG_LVL_DEBUG)) {
			char id[160];
			log_debug("event=publish target=%s id=%s recipients=%ld", target_names[p->target],
				  log_quote(id, sizeof(id), w->id), w->count);
		}
		break;
	}
	free(out.data);
	return HANDLED;
}

static void pending_free(struct api_pending *p)
{
	free(p->w.json.data);
	free(p);
}

/* The hub settled an operation that waited. */
static void on_settled(struct hub_wait *w)
{
	struct api_pending *p = container_of(w, struct api_pending, w);
	struct api_request *api = p->api;

	if (api) {
		struct request r = { .api = api, .in = api->req };
		enum handler_result res = answer(&r, p);
		api->pending = NULL;
		api->resume(api, res == HANDED_OFF ? API_STREAM : API_ANSWERED);
	}
	pending_free(p);
}

/* After a hub operation: answer now, or wait for on_settled. */
static enum handler_result settle(struct request *r, struct api_pending *p, enum hub_status st)
{
	enum handler_result res;

	if (st == HUB_PENDING) {
		p->api = r->api;
		p->w.done = on_settled;
		r->api->pending = p;
		return WAITING;
	}
	res = answer(r, p);
	pending_free(p);
	return res;
}

void api_cancel(struct api_request *api)
{
	if (api->pending) {
		api->pending->api = NULL;
		api->pending->w.cancelled = 1;
		api->pending = NULL;
	}
}

/* ---- routing -------------------------------------------------------------- */

/* 1 when ct is application/json, optionally with parameters
 * ("application/json; charset=utf-8"); the type is case-insensitive. */
static int json_content_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (!ct || strncasecmp(ct, "application/json", n) != 0)
		return 0;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static const struct route {
	const char *path, *method;
	enum route_kind kind;
} routes[] = {
	{ "/sse/stream", "GET", R_STREAM },
	{ "/api/sse/health", "GET", R_HEALTH },
	{ "/api/sse/stats", "GET", R_STATS },
	{ "/api/sse/broadcast", "POST", R_BROADCAST },
	{ "/api/sse/send-to-user", "POST", R_TO_USER },
	{ "/api/sse/send-to-client", "POST", R_TO_CLIENT },
	{ "/api/sse/disconnect", "POST", R_DISCONNECT },
	{ "/api/sse/publish", "POST", R_PUBLISH },
	{ "/api/sse/subscribe", "POST", R_SUBSCRIBE },
	{ "/api/sse/unsubscribe", "POST", R_UNSUBSCRIBE },
	{ "/metrics", "GET", R_METRICS },
};

enum api_result api_handle(struct api_request *api)
{
	struct request r = { .api = api, .in = api->req };
	const char *uri = param(&r, "REQUEST_URI");
	const struct route *route = NULL;
	enum handler_result res = HANDLED;
	size_t plen;

	METRIC_ADD(requests_total, 1);
	if (!uri)
		uri = param(&r, "DOCUMENT_URI");
	if (!uri)
		uri = param(&r, "SCRIPT_NAME");
	r.method = param(&r, "REQUEST_METHOD");
	r.query = param(&r, "QUERY_STRING");
	if (!r.method)
		r.method = "";
	plen = uri ? strcspn(uri, "?") : 0;
	if (plen >= sizeof(r.path))
		plen = 0; /* no route is that long: 404 */
	memcpy(r.path, uri ? uri : "", plen);
	r.path[plen] = '\0';
	if (!r.query && uri && uri[plen] == '?')
		r.query = uri + plen + 1;

	for (size_t i = 0; i < ARRAY_LEN(routes); i++)
		if (strcmp(routes[i].path, r.path) == 0)
			route = &routes[i];
	if (!route) {
		respond_error(&r, 404, "not_found", "no such route", NULL);
	} else if (strcmp(route->method, r.method) != 0) {
		char allow[32];
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", route->method);
		respond_error(&r, 405, "method_not_allowed", route->method[0] == 'G' ? "use GET" : "use POST", allow);
	} else if (route->method[0] == 'P' && !json_content_type(param(&r, "CONTENT_TYPE"))) {
		/* A form or a no-preflight fetch from another site cannot send
		 * this type, so a token in a cookie cannot be used against us. */
		respond_error(&r, 415, "unsupported_media_type", "send the body with Content-Type: application/json",
			      "Accept-Post: application/json\r\n");
	} else {
		switch (route->kind) {
		case R_STREAM: res = handle_stream(&r); break;
		case R_HEALTH: handle_health(&r); break;
		case R_STATS: res = handle_stats(&r); break;
		case R_BROADCAST: res = handle_publish(&r, MSG_BROADCAST); break;
		case R_TO_USER: res = handle_publish(&r, MSG_USER); break;
		case R_TO_CLIENT: res = handle_publish(&r, MSG_CLIENT); break;
		case R_DISCONNECT: res = handle_disconnect(&r); break;
		case R_METRICS: handle_metrics(&r); break;
		case R_PUBLISH: res = handle_publish(&r, MSG_TOPIC); break;
		case R_SUBSCRIBE: res = handle_subscribe(&r, 1); break;
		case R_UNSUBSCRIBE: res = handle_subscribe(&r, 0); break;
		}
	}
	return res == HANDED_OFF ? API_STREAM : res == WAITING ? API_PENDING : API_ANSWERED;
}
