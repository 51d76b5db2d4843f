/* fuzz_admin_api: admin JSON bodies through the real request path.
 * Input: byte 0 picks the route (broadcast, send-to-user, send-to-client,
 * disconnect, publish to a topic, subscribe, unsubscribe), the rest is the
 * POST body. The request (BEGIN_REQUEST, PARAMS
 * with an admin token minted at start-up with libjwt, STDIN = the body) is
 * written into a socketpair and read by a loop (fcgi + api) as
 * after an accept. Checks: the request is accepted, the answer is a complete
 * FastCGI response with a documented status and JSON shape, 200 only for a
 * body that is valid UTF-8, and with no stream open every publish reaches 0
 * recipients, every disconnect closes 0 and every (un)subscribe changes 0. */
#include "fuzz_common.h"

#define FUZZ_MAX_INPUT 16384

static const char *const routes[] = { "broadcast", "send-to-user", "send-to-client", "disconnect",
				      "publish",   "subscribe",    "unsubscribe" };
enum { R_DISCONNECT = 3, R_SUBSCRIBE = 5, R_UNSUBSCRIBE = 6 };
static char *auth_header;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char claims[256], *tok;

	(void)argc;
	(void)argv;
	fuzz_config(1);
	snprintf(claims, sizeof(claims), "{\"user_id\":\"fuzz-admin\",\"role\":\"admin\",\"exp\":%lld,\"iat\":%lld}",
		 FUZZ_EXP, (long long)time(NULL) - 10);
	tok = fuzz_mint(claims, JWT_ALG_HS256);
	if (!tok)
		abort();
	auth_header = xmalloc(strlen(tok) + 8);
	sprintf(auth_header, "Bearer %s", tok);
	free(tok);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf wire = { 0 }, params = { 0 };
	struct fcgi_reply reply;
	const char *route, *body;
	char uri[64], clen[32];
	size_t body_len, blen;
	int rc, status;
	struct json_object *answer, *d, *v;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	route = routes[data[0] % ARRAY_LEN(routes)];
	body = (const char *)data + 1;
	body_len = size - 1;

	snprintf(uri, sizeof(uri), "/api/sse/%s", route);
	snprintf(clen, sizeof(clen), "%zu", body_len);
	fcgi_begin(&wire);
	peer_pair(&params, "REQUEST_METHOD", "POST");
	peer_pair(&params, "REQUEST_URI", uri);
	peer_pair(&params, "DOCUMENT_URI", uri);
	peer_pair(&params, "QUERY_STRING", "");
	peer_pair(&params, "CONTENT_TYPE", "application/json");
	peer_pair(&params, "CONTENT_LENGTH", clen);
	peer_pair(&params, "HTTP_AUTHORIZATION", auth_header);
	peer_records(&wire, FCGI_PARAMS, 1, params.data, params.len);
	peer_record_pad(&wire, FCGI_PARAMS, 1, NULL, 0, 0);
	if (body_len)
		peer_records(&wire, FCGI_STDIN, 1, body, body_len);
	peer_record_pad(&wire, FCGI_STDIN, 1, NULL, 0, 0);
	free(params.data);

	rc = fcgi_exchange(wire.data, wire.len, &reply);
	free(wire.data);
	FUZZ_CHECK(rc != -1, "a well-formed request was dropped");
	FUZZ_CHECK(rc == 0, "a POST to /api/sse/%s was handed to a stream loop", route);
	FUZZ_CHECK(reply.end_request && reply.stdout_closed && !reply.malformed,
		   "incomplete FastCGI answer (end_request=%d stdout_closed=%d)", reply.end_request, reply.stdout_closed);
	FUZZ_CHECK(cgi_split(&reply.out, &status, &body, &blen) == 0, "answer without a CGI head: %.*s",
		   (int)reply.out.len, reply.out.data);
	FUZZ_CHECK(status == 200 || status == 400 || status == 413, "/api/sse/%s answered %d", route, status);
	if (status == 200)
		FUZZ_CHECK(util_utf8_valid((const char *)data + 1, size - 1), "200 for a body that is not UTF-8");
	if (status == 413)
		FUZZ_CHECK(body_len > 0, "413 for an empty body");

	answer = check_api_answer(status, body, blen, route);
	if (status == 200) {
		json_object_object_get_ex(answer, "data", &d);
		if (data[0] % ARRAY_LEN(routes) == R_DISCONNECT) {
			FUZZ_CHECK(json_object_object_get_ex(d, "closed", &v) && json_object_get_int64(v) == 0,
				   "disconnect with no stream open: %.*s", (int)blen, body);
		} else if (data[0] % ARRAY_LEN(routes) == R_SUBSCRIBE || data[0] % ARRAY_LEN(routes) == R_UNSUBSCRIBE) {
			FUZZ_CHECK(json_object_object_get_ex(d, "recipients", &v) && json_object_get_int64(v) == 0 &&
					   json_object_object_length(d) == 1,
				   "(un)subscribe with no stream open: %.*s", (int)blen, body);
		} else {
			FUZZ_CHECK(json_object_object_get_ex(d, "recipients", &v) && json_object_get_int64(v) == 0,
				   "publish with no stream open: %.*s", (int)blen, body);
			FUZZ_CHECK(json_object_object_get_ex(d, "id", &v) && json_object_is_type(v, json_type_string) &&
					   sse_valid_id(json_object_get_string(v), (size_t)json_object_get_string_len(v)),
				   "publish answered an unusable id: %.*s", (int)blen, body);
		}
	}
	json_object_put(answer);
	peer_reply_free(&reply);
	return 0;
}
