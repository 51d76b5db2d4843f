/* fuzz_query_cookie: query-string and cookie parsing.
 * Input: up to four NUL-separated parts: the Authorization value, the Cookie
 * header, the query string, and a parameter name (a missing part is NULL, so
 * splits with 0..3 NULs cover every combination of absent sources). Calls
 * auth_find_token, util_query_param and util_url_decode. Checks:
 *  - a token found is non-empty, at most AUTH_MAX_TOKEN bytes, and too_long
 *    is never set together with a result;
 *  - a usable "Bearer" header always wins (the documented precedence);
 *  - util_query_param returns at most max bytes, and percent-encoding the
 *    value it returned and looking it up again gives the same value back;
 *  - util_url_decode never writes more than len + 1 bytes (ASan) and never
 *    returns a length above len. */
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
