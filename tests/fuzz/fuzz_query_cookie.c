/* fuzz_query_cookie: query-string and cookie parsing.
 * Input: up to four NUL-separated parts: the Authorization value, the Cookie
 * header, the query string, and a parameter name (a missing part is NULL, so
 * splits with 0..3 NULs cover every combination of absent sources). Calls
 * auth_find_token, util_query_param, util_url_decode and api_query_topics
 * (repeated "topic=" parameters). Checks:
 *  - a token found is non-empty, at most AUTH_MAX_TOKEN bytes, and too_long
 *    is never set together with a result;
 *  - a usable "Bearer" header always wins (the documented precedence);
 *  - util_query_param returns at most max bytes, and percent-encoding the
 *    value it returned and looking it up again gives the same value back;
 *  - util_url_decode never writes more than len + 1 bytes (ASan) and never
 *    returns a length above len;
 *  - api_query_topics: too many only when the "topic" parameters (counted
 *    here, apart) pass the limit; an error names one of them; the names it
 *    returns are valid topics, distinct, at most the limit, and encoding
 *    them into a query again gives the same list back. */
#include <strings.h>

#include "fuzz_common.h"

#define FUZZ_MAX_INPUT (3 * AUTH_MAX_TOKEN * 3 + 64)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_config(0);
	return 0;
}

/* Part i of the NUL-separated input as a new string, or NULL when absent. */
static char *part(const uint8_t *data, size_t size, int i)
{
	size_t start = 0;

	for (int k = 0; k < i; k++) {
		const uint8_t *nul = memchr(data + start, '\0', size - start);
		if (!nul)
			return NULL;
		start = (size_t)(nul - data) + 1;
	}
	{
		const uint8_t *nul = memchr(data + start, '\0', size - start);
		size_t end = nul ? (size_t)(nul - data) : size;
		return xstrndup((const char *)data + start, end - start);
	}
}

/* The token a usable Authorization header carries, by the documented rule:
 * "Bearer " (any case), then the value without surrounding spaces. NULL when
 * it carries none or one over the cap. */
static char *bearer_value(const char *authorization)
{
	const char *v;
	size_t len;

	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	v = authorization + 7;
	while (*v == ' ')
		v++;
	len = strlen(v);
	while (len > 0 && v[len - 1] == ' ')
		len--;
	if (len == 0 || len > AUTH_MAX_TOKEN)
		return NULL;
	return xstrndup(v, len);
}

static void check_query_roundtrip(const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	struct buf q = { 0 };
	char *again;
	int too_long = 0;

	/* the name first: an earlier segment could carry the same name */
	buf_puts(&q, name);
	buf_puts(&q, "=");
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
		buf_append(&q, e, 3);
	}
	buf_puts(&q, "&y=2");
	again = util_query_param(q.data, name, strlen(value) * 3, &too_long);
	FUZZ_CHECK(again && strcmp(again, value) == 0 && !too_long,
		   "query round trip failed for name '%s': got %s", name, again ? again : "(null)");
	free(again);
	free(q.data);
}

/* The "topic" parameters of query, counted without the parser under test. */
static size_t count_topic_params(const char *query)
{
	size_t n = 0;

	for (const char *p = query; p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
		if (strncmp(p, "topic", 5) == 0 && (p[5] == '\0' || p[5] == '&' || p[5] == '='))
			n++;
	return n;
}

static void check_topics(const char *query, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0, bad_at = 0, params = count_topic_params(query);
	char **topics = NULL;
	enum api_topics_result r = api_query_topics(query, max, &topics, &n, &bad_at);

	if (r == API_TOPICS_TOO_MANY) {
		FUZZ_CHECK(params > max && !topics && n == 0, "too many with %zu parameters, max %zu", params, max);
		return;
	}
	FUZZ_CHECK(params <= max, "%zu topic parameters over max %zu were accepted", params, max);
	if (r == API_TOPICS_INVALID) {
		FUZZ_CHECK(bad_at >= 1 && bad_at <= params && !topics && n == 0, "invalid at %zu of %zu", bad_at, params);
		return;
	}
	FUZZ_CHECK(r == API_TOPICS_OK && n <= params && (n == 0) == (topics == NULL), "result %d, %zu names", (int)r, n);
	{
		struct buf q = { 0 };
		char **again = NULL;
		size_t n2 = 0, bad2 = 0;

		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(hub_topic_valid(topics[i], strlen(topics[i])), "an invalid name returned");
			for (size_t k = 0; k < i; k++)
				FUZZ_CHECK(strcmp(topics[i], topics[k]) != 0, "a name returned twice");
			buf_puts(&q, i ? "&x=1&topic=" : "topic=");
			for (const unsigned char *c = (const unsigned char *)topics[i]; *c; c++) {
				char e[3] = { '%', hex[*c >> 4], hex[*c & 15] };
				buf_append(&q, e, 3);
			}
		}
		buf_append(&q, "", 0);
		FUZZ_CHECK(api_query_topics(q.data ? q.data : "", max, &again, &n2, &bad2) == API_TOPICS_OK && n2 == n,
			   "the names, encoded again, do not parse back (%zu of %zu)", n2, n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(strcmp(topics[i], again[i]) == 0, "name %zu differs after a round trip", i);
		api_topics_free(again, n2);
		free(q.data);
	}
	api_topics_free(topics, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *authz, *cookie, *query, *name, *tok, *want;
	int too_long = -1;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	authz = part(data, size, 0);
	cookie = part(data, size, 1);
	query = part(data, size, 2);
	name = part(data, size, 3);

	tok = auth_find_token(authz, cookie, query, &too_long);
	FUZZ_CHECK(too_long == 0 || too_long == 1, "too_long left at %d", too_long);
	if (tok) {
		size_t len = strlen(tok);
		FUZZ_CHECK(len > 0 && len <= AUTH_MAX_TOKEN, "token of %zu bytes", len);
		FUZZ_CHECK(!too_long, "a token returned with too_long set");
	}
	want = bearer_value(authz);
	if (want)
		FUZZ_CHECK(tok && strcmp(tok, want) == 0, "a usable Bearer header did not win (got %s)",
			   tok ? "another token" : "nothing");
	free(want);
	free(tok);

	if (query) {
		check_topics(query, size > 1 ? data[1] % 40 : 32);
	}
	if (query) {
		const char *names[] = { name ? name : "token", "token", "last_event_id" };
		for (size_t i = 0; i < ARRAY_LEN(names); i++) {
			size_t max = i == 0 ? (size ? data[0] : 0) : AUTH_MAX_TOKEN * 3;
			int tl = 0;
			char *v = util_query_param(query, names[i], max, &tl);
			if (v) {
				FUZZ_CHECK(!tl, "value and too_long both returned");
				FUZZ_CHECK(strlen(v) <= max, "decoded value of %zu bytes above max %zu", strlen(v), max);
				/* names holding '=' or '&' cannot be looked up by design */
				if (*names[i] && !strpbrk(names[i], "=&"))
					check_query_roundtrip(names[i], v);
				free(v);
			}
		}
	}
	{
		/* the decoder on its own, with an exact-size destination */
		size_t len = size;
		char *dst = xmalloc(len + 1);
		long n = util_url_decode(dst, (const char *)data, len);
		FUZZ_CHECK(n < 0 || (size_t)n <= len, "decoded %ld bytes from %zu", n, len);
		if (n >= 0)
			FUZZ_CHECK(strlen(dst) == (size_t)n, "decoded value holds a NUL or lacks its terminator");
		free(dst);
	}
	free(authz);
	free(cookie);
	free(query);
	free(name);
	return 0;
}
