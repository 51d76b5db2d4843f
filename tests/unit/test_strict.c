/* Unit tests for the hardening leaf modules: the strict JSON validator and
 * minifier (json.c), the text checks for names, ids and user ids, log value
 * quoting, and auth's saturating time checks, key ids and cache generation.
 * auth.c is #included (h2o's habit) to reach the cache directly. TAP. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.c"
#include "config.h"
#include "json.h"
#include "log.h"
#include "sse.h"
#include "tap.h"
#include "util.h"

/* Prints bytes as a C-ish literal for test names. */
static const char *show(const char *s, size_t len)
{
	static char out[4][200];
	static int k;
	char *o = out[k++ % 4];
	size_t n = 0;

	for (size_t i = 0; i < len && n + 5 < sizeof(out[0]); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			o[n++] = (char)c;
		else
			n += (size_t)snprintf(o + n, sizeof(out[0]) - n, "\\x%02x", c);
	}
	o[n] = '\0';
	return o;
}

/* ---- the JSON table ---------------------------------------------------- */

struct jcase {
	const char *in;
	size_t len;
	int depth;
	const char *out;         /* minified form, or NULL: refused */
};

#define ACC(i, o) { i, sizeof(i) - 1, 32, o }
#define REJ(i) { i, sizeof(i) - 1, 32, NULL }

static const struct jcase cases[] = {
	/* accepted: only insignificant whitespace goes */
	ACC("{\"a\":1}", "{\"a\":1}"),
	ACC(" { \"a\" : [ 1 , 2 ] } ", "{\"a\":[1,2]}"),
	ACC("\t\r\n 1 \n", "1"),
	ACC("99999999999999999999", "99999999999999999999"),
	ACC("-0", "-0"),
	ACC("1.5e300", "1.5e300"),
	ACC("-1.25E-3", "-1.25E-3"),
	ACC("1E+2", "1E+2"),
	ACC("0.0", "0.0"),
	ACC("[-0, 0 ,-0.5, 1e5]", "[-0,0,-0.5,1e5]"),
	ACC("123456789012345678901234567890.5e-400", "123456789012345678901234567890.5e-400"),
	ACC("\"\\/\"", "\"\\/\""),
	ACC("\"a\\u0041\\n\"", "\"a\\u0041\\n\""),
	ACC("\"\\b\\f\\n\\r\\t\\\"\\\\\"", "\"\\b\\f\\n\\r\\t\\\"\\\\\""),
	ACC("\"\\ud83d\\ude00\"", "\"\\ud83d\\ude00\""),
	ACC("\"\\uDBFF\\uDFFF\"", "\"\\uDBFF\\uDFFF\""),
	ACC("\"\\uFFFF\\u00e9\"", "\"\\uFFFF\\u00e9\""),
	ACC("\"\\u0000\"", "\"\\u0000\""),
	ACC("\"h\xc3\xa9llo \xf0\x9f\x98\x80\"", "\"h\xc3\xa9llo \xf0\x9f\x98\x80\""),
	ACC("\"line\xe2\x80\xa8sep\"", "\"line\xe2\x80\xa8sep\""),
	ACC("\"del\x7f\"", "\"del\x7f\""),
	ACC("\"a b  c\"", "\"a b  c\""),
	ACC("[ ]", "[]"),
	ACC("{ }", "{}"),
	ACC("[]", "[]"),
	ACC("true", "true"),
	ACC(" false ", "false"),
	ACC("null", "null"),
	ACC("\"\"", "\"\""),
	ACC("{\"\":0}", "{\"\":0}"),
	ACC("{\"a\":{\"a\":1,\"a\":2}}", "{\"a\":{\"a\":1,\"a\":2}}"), /* nested names may repeat */
	ACC("[{\"a\":1},{\"a\":2}]", "[{\"a\":1},{\"a\":2}]"),
	ACC("{ \"a\" : \"x\" ,\n \"b\" : [ true , false , null ] , \"c\" : { \"d\" : \"e f\" } }",
	    "{\"a\":\"x\",\"b\":[true,false,null],\"c\":{\"d\":\"e f\"}}"),
	ACC("[[[[1]]]]", "[[[[1]]]]"),
	ACC("{\"a\":1,\"A\":2,\"\\u00e9\":3,\"e\":4}", "{\"a\":1,\"A\":2,\"\\u00e9\":3,\"e\":4}"),
	/* refused: what json-c 0.16 tolerates */
	REJ("'a'"),
	REJ("{'a':1}"),
	REJ("{\"a\":'x'}"),
	REJ("/* c */ 1"),
	REJ("1 // c"),
	REJ("{\"a\":1 /*x*/}"),
	REJ("[1,]"),
	REJ("{\"a\":1,}"),
	REJ("\"a\rb\""),
	REJ("\"a\nb\""),
	REJ("NaN"),
	REJ("Infinity"),
	REJ("-Infinity"),
	REJ("[NaN]"),
	REJ("1."),
	REJ("01"),
	REJ("TRUE"),
	REJ("True"),
	/* refused: the rest of the grammar */
	REJ(""),
	REJ("   "),
	REJ("[,1]"),
	REJ("{,}"),
	REJ("[1 2]"),
	REJ("{\"a\" 1}"),
	REJ("{1:2}"),
	REJ("{\"a\":1 \"b\":2}"),
	REJ("\"\x01\""),
	REJ("\"a\tb\""),
	REJ("\"\x1f\""),
	REJ("\"\\x41\""),
	REJ("\"\\a\""),
	REJ("\"\\'\""),
	REJ("\"\\u12\""),
	REJ("\"\\u12G4\""),
	REJ("\"\\ud800\""),
	REJ("\"\\udc00\""),
	REJ("\"\\ud800\\u0041\""),
	REJ("\"\\ud800x\""),
	REJ("\"\\ud800\\ud800\""),
	REJ("\"\\uDFFF\\uD800\""),
	REJ("nul"),
	REJ("nulls"),
	REJ("truefalse"),
	REJ(".5"),
	REJ("-"),
	REJ("+1"),
	REJ("-01"),
	REJ("1e"),
	REJ("1e+"),
	REJ("1.e3"),
	REJ("0x10"),
	REJ("1.5.2"),
	REJ("\"\xff\""),
	REJ("\"\xc3\""),
	REJ("\"\xc0\xaf\""),
	REJ("\"\xe0\x80\xaf\""),
	REJ("\"\xed\xa0\x80\""),
	REJ("\"\xf4\x90\x80\x80\""),
	REJ("\"\xe2\x82\""),
	REJ("\"\x80\""),
	REJ("\xef\xbb\xbf" "1"),
	REJ("1\0"),
	REJ("\"a\0b\""),
	REJ("\0"),
	REJ("[1,\0]"),
	REJ("{}x"),
	REJ("1 2"),
	REJ("{}{}"),
	REJ("[1]]"),
	REJ("{\"a\":1"),
	REJ("[1"),
	REJ("\"abc"),
	REJ("\"\\"),
	REJ("{\"a\""),
	REJ("{\"a\":"),
	REJ("{"),
	REJ("\x0b" "1"),
	REJ("\x0c" "1"),
	REJ("\x7f"),
	REJ("{\"a\":1,\"a\":2}"),
	REJ("{\"a\":1,\"\\u0061\":2}"),
	REJ("{\"\xc3\xa9\":1,\"\\u00e9\":2}"),
	REJ("{\"b\":0,\"a\":1,\"c\":2,\"a\":3}"),
	REJ("{\"\":1,\"\":2}"),
};

static void test_json_table(void)
{
	size_t accepted = 0, refused = 0;

	for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
		const struct jcase *c = &cases[k];
		char *out = xmalloc(c->len + 1), *inplace = xmalloc(c->len + 1), *again;
		size_t olen = 0, ilen = 0, alen = 0;
		struct jsonx_error err = { NULL, 0 }, err2 = { NULL, 0 };
		struct jsonx_doc doc;
		int rc = jsonx_minify(c->in, c->len, c->depth, out, &olen, &err);
		int prc = jsonx_parse(&doc, c->in, c->len, c->depth, &err2);

		memcpy(inplace, c->in, c->len);
		if (c->out) {
			accepted++;
			again = xmalloc(olen + 1);
			ok(rc == 0 && olen == strlen(c->out) && memcmp(out, c->out, olen) == 0 && out[olen] == '\0' &&
				   prc == 0 && doc.len == olen && memcmp(doc.text, out, olen) == 0 &&
				   jsonx_minify(inplace, c->len, c->depth, inplace, &ilen, NULL) == 0 && ilen == olen &&
				   memcmp(inplace, out, olen) == 0 &&
				   jsonx_minify(out, olen, c->depth, again, &alen, NULL) == 0 && alen == olen &&
				   memcmp(again, out, olen) == 0,
			   "json accepts %s -> %s (got rc %d %s at %zu: %s)", show(c->in, c->len), show(c->out, strlen(c->out)),
			   rc, rc ? err.reason : "", err.offset, rc ? "" : show(out, olen));
			free(again);
		} else {
			refused++;
			ok(rc == -1 && prc == -1 && err.reason && err.offset <= c->len && err2.reason == err.reason &&
				   err2.offset == err.offset && doc.text == NULL,
			   "json refuses %s (%s at %zu)", show(c->in, c->len), err.reason ? err.reason : "accepted!",
			   err.offset);
		}
		jsonx_free(&doc);
		free(out);
		free(inplace);
	}
	ok(ARRAY_LEN(cases) >= 60 && accepted >= 20 && refused >= 40, "json table: %zu accepted, %zu refused", accepted,
	   refused);
}

/* Specific reasons and offsets a developer sees in a 400. */
static void test_json_errors(void)
{
	static const struct {
		const char *in;
		const char *reason;
		size_t offset;
	} want[] = {
		{ "[1,]", "trailing comma", 3 },
		{ "{\"a\":1,}", "trailing comma", 7 },
		{ "{\"a\":1,\"a\":2}", "duplicate member name", 7 },
		{ "1 2", "bytes after the value", 2 },
		{ "\"a\x01\"", "raw control character in a string (escape it)", 2 },
		{ "'a'", "single quotes are not JSON", 0 },
		{ "/**/1", "comments are not JSON", 0 },
		{ "01", "leading zero in a number", 1 },
		{ "1.", "a fraction needs digits after '.'", 2 },
		{ "\"\\ud800\"", "high surrogate escape without a low surrogate escape after it", 1 },
		{ "\"\\udc00\"", "lone low surrogate escape", 1 },
		{ "", "empty input", 0 },
		{ "[1", "truncated input", 2 },
		{ "\"\xff\"", "invalid UTF-8", 1 },
	};
	struct jsonx_error err;
	char out[64];
	size_t olen;

	for (size_t k = 0; k < ARRAY_LEN(want); k++) {
		int rc;
		memset(&err, 0, sizeof(err));
		rc = jsonx_minify(want[k].in, strlen(want[k].in), 8, out, &olen, &err);
		ok(rc < 0 && err.reason &&
			   strcmp(err.reason, want[k].reason) == 0 && err.offset == want[k].offset,
		   "json error for %s: '%s' at %zu", show(want[k].in, strlen(want[k].in)), err.reason ? err.reason : "none",
		   err.offset);
	}
	ok(jsonx_minify("\"a\0\"", 4, 8, out, &olen, &err) < 0 && strcmp(err.reason, "NUL byte") == 0 && err.offset == 2,
	   "json error for a NUL in a string: NUL byte at 2");
}

static void test_json_depth(void)
{
	char deep[2 * JSONX_MAX_DEPTH + 8], out[sizeof(deep)];
	size_t olen, n;
	struct jsonx_error err;

	ok(jsonx_minify("[[1]]", 5, 2, out, &olen, NULL) == 0, "depth: [[1]] within 2 levels");
	ok(jsonx_minify("[[[1]]]", 7, 2, out, &olen, &err) < 0 && strcmp(err.reason, "nested deeper than allowed") == 0 &&
		   err.offset == 2,
	   "depth: [[[1]]] refused at 2 levels, at the third '['");
	ok(jsonx_minify("{\"a\":{\"b\":{}}}", 14, 2, out, &olen, NULL) < 0, "depth: objects count too");
	ok(jsonx_minify("1", 1, 0, out, &olen, NULL) == 0 && jsonx_minify("[]", 2, 0, out, &olen, NULL) < 0,
	   "depth 0: scalars only");
	/* the hard cap whatever is asked: JSONX_MAX_DEPTH levels pass, one more does not */
	for (n = 0; n < JSONX_MAX_DEPTH; n++)
		deep[n] = '[';
	for (size_t k = 0; k < JSONX_MAX_DEPTH; k++)
		deep[n++] = ']';
	ok(jsonx_minify(deep, n, 1 << 30, out, &olen, NULL) == 0 && olen == n, "depth: %d levels pass under the cap",
	   JSONX_MAX_DEPTH);
	memmove(deep + 1, deep, n);
	deep[0] = '[';
	deep[++n] = ']';
	n++;
	ok(jsonx_minify(deep, n, 1 << 30, out, &olen, &err) < 0 && err.offset == JSONX_MAX_DEPTH,
	   "depth: %d levels refused whatever the caller asks", JSONX_MAX_DEPTH + 1);
}

/* ---- members of a top-level object -------------------------------------- */

static const struct jsonx_member *get(const struct jsonx_doc *d, const char *name)
{
	return jsonx_get(d, name);
}

static int value_is(const struct jsonx_member *m, const char *text)
{
	return m && m->value_len == strlen(text) && memcmp(m->value, text, m->value_len) == 0;
}

static void test_json_members(void)
{
	static const char body[] =
		"{ \"event\" : \"note\", \"data\" : {\"x\": [1, 2], \"s\": \"a  b\"}, \"user_id\": 18446744073709551615,"
		" \"id\":\"a\\u00e9\", \"retry\": 1000, \"n\": null, \"t\": true, \"f\": false, \"neg\": -0,"
		" \"big\": 1e3, \"arr\": [ \"x\" , \"admin\", [\"admin\"], {\"a\":\"admin\"} ], \"nul\": \"a\\u0000b\","
		" \"\\u0064up\": 1, \"min\": -9223372036854775808, \"max\": 9223372036854775807 }";
	struct jsonx_doc doc;
	const struct jsonx_member *m;
	char buf[64];
	size_t len, pos = 0, elen;
	const char *e;
	int64_t v = 42;
	double d;
	int n = 0;

	n = jsonx_parse(&doc, body, sizeof(body) - 1, 8, NULL);
	ok(n == 0 && doc.type == JSONX_OBJECT && doc.n_members == 15, "members: a body of 15 members parses (%zu)",
	   doc.n_members);
	n = 0;
	m = get(&doc, "data");
	ok(m && m->type == JSONX_OBJECT && value_is(m, "{\"x\":[1,2],\"s\":\"a  b\"}"),
	   "members: data is its minified text, spaces inside strings kept");
	m = get(&doc, "event");
	ok(m && m->type == JSONX_STRING && jsonx_unescape(m->value, m->value_len, buf, sizeof(buf), &len) == 0 &&
		   len == 4 && strcmp(buf, "note") == 0,
	   "members: event unescapes to note");
	m = get(&doc, "id");
	ok(m && jsonx_unescape(m->value, m->value_len, buf, sizeof(buf), &len) == 0 && len == 3 &&
		   strcmp(buf, "a\xc3\xa9") == 0,
	   "members: \\u00e9 unescapes to UTF-8");
	ok(m && jsonx_unescape(m->value, m->value_len, buf, 3, &len) < 0 && errno == ERANGE,
	   "members: a buffer too small is ERANGE");
	ok(m && jsonx_unescape(m->value, m->value_len, buf, m->value_len - 1, &len) == 0,
	   "members: value_len - 1 bytes are always enough");
	m = get(&doc, "nul");
	ok(m && jsonx_unescape(m->value, m->value_len, buf, sizeof(buf), &len) < 0 && errno == EINVAL,
	   "members: a string holding \\u0000 is refused by unescape");
	m = get(&doc, "user_id");
	ok(m && m->type == JSONX_NUMBER && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_OUT_OF_RANGE && v == 42,
	   "members: 18446744073709551615 is out of range, never clamped");
	m = get(&doc, "retry");
	ok(m && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_OK && v == 1000, "members: retry is 1000");
	m = get(&doc, "neg");
	ok(m && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_OK && v == 0 && value_is(m, "-0"),
	   "members: -0 reads as 0, its text stays -0");
	m = get(&doc, "big");
	ok(m && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_NOT_INTEGER &&
		   jsonx_double(m->value, m->value_len, &d) == 0 && d == 1000.0,
	   "members: 1e3 is not an integer, but the double 1000");
	m = get(&doc, "min");
	ok(m && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_OK && v == INT64_MIN, "members: INT64_MIN reads");
	m = get(&doc, "max");
	ok(m && jsonx_int64(m->value, m->value_len, &v) == JSONX_INT_OK && v == INT64_MAX, "members: INT64_MAX reads");
	ok(get(&doc, "n") && get(&doc, "n")->type == JSONX_NULL && get(&doc, "t")->type == JSONX_TRUE &&
		   get(&doc, "f")->type == JSONX_FALSE && get(&doc, "arr")->type == JSONX_ARRAY,
	   "members: null, true, false, array types");
	ok(get(&doc, "missing") == NULL && get(&doc, "") == NULL && get(&doc, "dat") == NULL && get(&doc, "datax") == NULL,
	   "members: absent names are NULL (prefixes too)");
	ok(get(&doc, "dup") != NULL && value_is(get(&doc, "dup"), "1"), "members: an escaped name is found by its value");
	m = get(&doc, "arr");
	while (m && jsonx_array_next(m->value, m->value_len, &pos, &e, &elen)) {
		static const char *const want[] = { "\"x\"", "\"admin\"", "[\"admin\"]", "{\"a\":\"admin\"}" };
		if (n < 4 && elen == strlen(want[n]) && memcmp(e, want[n], elen) == 0)
			n++;
		else
			n = 100;
	}
	ok(n == 4, "members: the array's four elements are walked in order");
	ok(jsonx_string_eq("\"a\\u00e9\"", 9, "a\xc3\xa9", 3) && !jsonx_string_eq("\"a\\u00e9\"", 9, "a\xc3", 2) &&
		   !jsonx_string_eq("\"ab\"", 4, "abc", 3) && jsonx_string_eq("\"\"", 2, "", 0) &&
		   !jsonx_string_eq("1", 1, "1", 1) && jsonx_string_eq("\"\\ud83d\\ude00\"", 14, "\xf0\x9f\x98\x80", 4),
	   "members: jsonx_string_eq compares unescaped bytes");
	jsonx_free(&doc);
	ok(doc.text == NULL && doc.members == NULL, "members: jsonx_free zeroes the doc");

	ok(jsonx_parse(&doc, "[{\"a\":1}]", 9, 8, NULL) == 0 && doc.type == JSONX_ARRAY && doc.n_members == 0 &&
		   jsonx_get(&doc, "a") == NULL,
	   "members: an array has no members");
	jsonx_free(&doc);
	pos = 0;
	ok(jsonx_array_next("[]", 2, &pos, &e, &elen) == 0 && jsonx_array_next("{}", 2, &pos, &e, &elen) == 0,
	   "members: an empty array and a non-array have no elements");
}

static void test_json_ints(void)
{
	static const struct {
		const char *text;
		enum jsonx_int_result r;
		int64_t v;
	} want[] = {
		{ "0", JSONX_INT_OK, 0 },
		{ "-0", JSONX_INT_OK, 0 },
		{ "7", JSONX_INT_OK, 7 },
		{ "9223372036854775807", JSONX_INT_OK, INT64_MAX },
		{ "9223372036854775808", JSONX_INT_OUT_OF_RANGE, 0 },
		{ "-9223372036854775808", JSONX_INT_OK, INT64_MIN },
		{ "-9223372036854775809", JSONX_INT_OUT_OF_RANGE, 0 },
		{ "18446744073709551615", JSONX_INT_OUT_OF_RANGE, 0 },
		{ "18446744073709551616", JSONX_INT_OUT_OF_RANGE, 0 },
		{ "99999999999999999999999999999", JSONX_INT_OUT_OF_RANGE, 0 },
		{ "1.0", JSONX_INT_NOT_INTEGER, 0 },
		{ "1e3", JSONX_INT_NOT_INTEGER, 0 },
		{ "1E3", JSONX_INT_NOT_INTEGER, 0 },
		{ "-", JSONX_INT_NOT_INTEGER, 0 },
		{ "\"1\"", JSONX_INT_NOT_INTEGER, 0 },
		{ "true", JSONX_INT_NOT_INTEGER, 0 },
	};

	for (size_t k = 0; k < ARRAY_LEN(want); k++) {
		int64_t v = 12345;
		enum jsonx_int_result r = jsonx_int64(want[k].text, strlen(want[k].text), &v);
		ok(r == want[k].r && (r != JSONX_INT_OK ? v == 12345 : v == want[k].v), "int64 %s -> %d (%" PRId64 ")",
		   want[k].text, (int)r, v);
	}
}

/* ---- text checks ------------------------------------------------------------- */

static void test_text(void)
{
	static const struct {
		const char *s;
		size_t len;
		int valid;
		const char *what;
	} want[] = {
#define T(s, v, w) { s, sizeof(s) - 1, v, w }
		T("plain-event_1.x", 1, "ASCII"),
		T("h\xc3\xa9llo", 1, "UTF-8 e acute"),
		T("\xf0\x9f\x98\x80", 1, "an emoji"),
		T("\xc2\xa0", 1, "U+00A0 (first after C1)"),
		T("\xe2\x80\xa7", 1, "U+2027"),
		T("\xe2\x80\xaa", 1, "U+202A"),
		T("a b", 1, "a space"),
		T("", 1, "empty (callers bound the length)"),
		T("note\x0b" "event: logout", 0, "VT (\\x0b)"),
		T("a\tb", 0, "TAB"),
		T("a\rb", 0, "CR"),
		T("a\nb", 0, "LF"),
		T("a\0b", 0, "NUL"),
		T("\x1f", 0, "U+001F"),
		T("a\x7f", 0, "DEL"),
		T("\xc2\x80", 0, "U+0080"),
		T("a\xc2\x85" "b", 0, "U+0085 NEL"),
		T("\xc2\x9f", 0, "U+009F"),
		T("a\xe2\x80\xa8" "b", 0, "U+2028"),
		T("a\xe2\x80\xa9" "b", 0, "U+2029"),
		T("\xc0\xaf", 0, "overlong 2-byte"),
		T("\xc1\x81", 0, "overlong 2-byte A"),
		T("\xe0\x80\xaf", 0, "overlong 3-byte"),
		T("\xf0\x80\x80\xaf", 0, "overlong 4-byte"),
		T("\xed\xa0\x80", 0, "surrogate U+D800"),
		T("\xed\xbf\xbf", 0, "surrogate U+DFFF"),
		T("\xf4\x90\x80\x80", 0, "above U+10FFFF"),
		T("\xc3", 0, "truncated"),
		T("\xe2\x80", 0, "truncated 3-byte"),
		T("\x80", 0, "lone continuation byte"),
		T("\xff", 0, "0xff"),
#undef T
	};

	for (size_t k = 0; k < ARRAY_LEN(want); k++)
		ok(util_text_valid(want[k].s, want[k].len) == want[k].valid, "text: %s is %s", want[k].what,
		   want[k].valid ? "valid" : "refused");
	ok(util_utf8_valid("a\xc2\x85\xe2\x80\xa8", 6) && !util_utf8_valid("\xc0\xaf", 2),
	   "text: util_utf8_valid still only checks UTF-8");

	ok(!sse_valid_event("note\x0b" "event: logout", 19), "sse: an event name with VT is refused");
	ok(!sse_valid_event("a\xc2\x85", 3) && !sse_valid_event("a\xe2\x80\xa8", 4) && !sse_valid_event("a\xe2\x80\xa9", 4),
	   "sse: NEL, LS, PS in event names are refused");
	ok(sse_valid_event("caf\xc3\xa9", 5) && !sse_valid_event("a\tb", 3) && !sse_valid_event("a\x7f", 2),
	   "sse: UTF-8 names pass; TAB and DEL do not");
	ok(sse_valid_event("0123456789012345678901234567890123456789012345678901234567890123", 64) &&
		   !sse_valid_event("01234567890123456789012345678901234567890123456789012345678901234", 65) &&
		   !sse_valid_event("", 0),
	   "sse: event names are 1..64 bytes");
	{
		char id[130];
		memset(id, 'i', sizeof(id));
		ok(sse_valid_id(id, 128) && !sse_valid_id(id, 129) && !sse_valid_id(id, 0), "sse: ids are 1..128 bytes");
		memcpy(id + 10, "\xc2\x9b", 2);
		ok(!sse_valid_id(id, 20) && !sse_valid_id("x\ny", 3) && !sse_valid_id("\xed\xa0\x80", 3),
		   "sse: ids with C1 (CSI), LF or a surrogate are refused");
	}
}

/* ---- the user-id rule ------------------------------------------------------ */

static void test_user_id(void)
{
	static const struct {
		const char *json;
		const char *user;        /* NULL: refused */
	} want[] = {
		{ "\"alice\"", "alice" },
		{ "7", "7" },
		{ "-0", "0" },
		{ "-12", "-12" },
		{ "\"7\"", "7" },
		{ "9223372036854775807", "9223372036854775807" },
		{ "-9223372036854775808", "-9223372036854775808" },
		{ "\"caf\\u00e9\"", "caf\xc3\xa9" },
		{ "\"mallory\\\" admin=1\"", "mallory\" admin=1" },
		{ "18446744073709551615", NULL },
		{ "9223372036854775808", NULL },
		{ "1.0", NULL },
		{ "1e3", NULL },
		{ "\"\"", NULL },
		{ "\"a\\u0085b\"", NULL },
		{ "\"a\xc2\x85" "b\"", NULL },
		{ "\"a\\u2028b\"", NULL },
		{ "\"a\xe2\x80\xa8" "b\"", NULL },
		{ "\"a\\u2029b\"", NULL },
		{ "\"a\\u000bb\"", NULL },
		{ "\"a\\u007f\"", NULL },
		{ "\"a\\u0000\"", NULL },
		{ "\"a\\tb\"", NULL },
		{ "true", NULL },
		{ "null", NULL },
		{ "{}", NULL },
		{ "[\"a\"]", NULL },
	};
	char user[AUTH_MAX_USER + 1], lit[400];

	for (size_t k = 0; k < ARRAY_LEN(want); k++) {
		int rc = auth_user_id(want[k].json, strlen(want[k].json), user);
		ok(want[k].user ? rc == 0 && strcmp(user, want[k].user) == 0 : rc == -1 && user[0] == '\0',
		   "user id %s -> %s", show(want[k].json, strlen(want[k].json)), rc ? "refused" : show(user, strlen(user)));
	}
	/* 128 bytes is the bound, counted after unescaping */
	lit[0] = '"';
	memset(lit + 1, 'u', 128);
	strcpy(lit + 129, "\"");
	ok(auth_user_id(lit, 130, user) == 0 && strlen(user) == 128, "user id: 128 bytes pass");
	strcpy(lit + 129, "u\"");
	ok(auth_user_id(lit, 131, user) < 0, "user id: 129 bytes are refused");
	lit[0] = '"';
	for (int i = 0; i < 64; i++)
		memcpy(lit + 1 + 6 * i, "\\u00e9", 6);
	strcpy(lit + 1 + 6 * 64, "\"");
	ok(auth_user_id(lit, strlen(lit), user) == 0 && strlen(user) == 128, "user id: 64 escaped e-acutes = 128 bytes pass");
	strcpy(lit + 1 + 6 * 64, "a\"");
	ok(auth_user_id(lit, strlen(lit), user) < 0, "user id: one byte more is refused");
}

/* ---- log quoting -------------------------------------------------------------- */

/* Splits a key=value line (values bare or double-quoted with backslash
 * escapes) and counts its keys; the value of key want is unescaped into
 * got. Returns the key count, or -1 when the line is malformed. */
static int logfmt(const char *line, const char *want, char *got, size_t gotlen)
{
	int keys = 0;
	const char *p = line;

	got[0] = '\0';
	while (*p) {
		const char *k = p, *eq;
		char val[2048];
		size_t n = 0;
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		k = p;
		eq = strchr(p, '=');
		if (!eq || memchr(k, ' ', (size_t)(eq - k)))
			return -1;
		p = eq + 1;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\') {
					p++;
					if (*p == 'x') {
						unsigned c;
						if (sscanf(p + 1, "%2x", &c) != 1)
							return -1;
						val[n++] = (char)c;
						p += 2;
						continue;
					}
				}
				val[n++] = *p;
			}
			if (*p != '"')
				return -1;
			p++;
		} else {
			while (*p && *p != ' ')
				val[n++] = *p++;
		}
		val[n] = '\0';
		keys++;
		if ((size_t)(eq - k) == strlen(want) && strncmp(k, want, (size_t)(eq - k)) == 0) {
			if (n >= gotlen)
				return -1;
			memcpy(got, val, n + 1);
		}
		if (*p && *p != ' ')
			return -1;
	}
	return keys;
}

/* Runs fn with stderr sent to a file and returns what was written. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[] = "/tmp/ssehub-strict-log-XXXXXX", *out;
	int fd = mkstemp(path), saved;
	size_t len;

	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	out = util_read_file(path, 1 << 20, &len);
	unlink(path);
	return out;
}

static void log_forged(void *arg)
{
	char q[LOG_QUOTE_SIZE(AUTH_MAX_USER)];
	log_info("event=auth_failed user=%s reason=bad", log_quote(q, sizeof(q), arg));
}

static void test_log(void)
{
	static const char evil[] = "mallory\" admin=1 x=\"\nforged=1 \\ \xc3\xa9";
	char q[64], got[256], small[12], *line;

	ok(strcmp(log_quote(q, sizeof(q), "plain"), "\"plain\"") == 0, "log: a plain value is quoted");
	ok(strcmp(log_quote(q, sizeof(q), "a\"b\\c"), "\"a\\\"b\\\\c\"") == 0, "log: quote and backslash are escaped");
	ok(strcmp(log_quote(q, sizeof(q), "a\nb\rc\td\x7f"), "\"a\\x0ab\\x0dc\\x09d\\x7f\"") == 0,
	   "log: LF CR TAB DEL become \\xNN");
	ok(strcmp(log_quote(q, sizeof(q), "\xc3\xa9\xe2\x80\xa8"), "\"\\xc3\\xa9\\xe2\\x80\\xa8\"") == 0,
	   "log: every non-ASCII byte is \\xNN");
	ok(strcmp(log_quote_n(q, sizeof(q), "a\0b", 3), "\"a\\x00b\"") == 0, "log: a NUL inside is \\x00");
	ok(strcmp(log_quote(q, sizeof(q), NULL), "-") == 0 && strcmp(log_quote(q, sizeof(q), ""), "\"\"") == 0,
	   "log: NULL is -, empty is \"\"");
	ok(strcmp(log_quote(small, sizeof(small), "abcdefghijkl"), "\"abcdef...\"") == 0,
	   "log: a long value is cut and marked (%s)", small);
	ok(strcmp(log_quote(small, sizeof(small), "abcdefghi"), "\"abcdefghi\"") == 0,
	   "log: a value that just fits is whole (%s)", small);
	ok(strcmp(log_quote(small, sizeof(small), "\n\n\n\n"), "\"\\x0a...\"") == 0,
	   "log: cut only between whole escapes (%s)", small);
	ok(strcmp(log_quote(small, 5, "abc"), "") == 0 && strcmp(log_quote(small, 3, ""), "\"\"") == 0 &&
		   strcmp(log_quote(small, 4, "a"), "\"a\"") == 0,
	   "log: a value cut in under 6 bytes is an empty string; a whole one fits as it is");
	{
		char big[LOG_QUOTE_SIZE(sizeof(evil) - 1)];
		log_quote(big, sizeof(big), evil);
		ok(strlen(big) <= sizeof(big) - 1 && !strstr(big, "...\""), "log: LOG_QUOTE_SIZE holds the worst case whole");
		memset(got, 0, sizeof(got));
		ok(logfmt("user=x", "user", got, sizeof(got)) == 1, "log: the test's logfmt reader works");
	}

	log_setup(LOG_LVL_INFO, 0);
	line = capture_stderr(log_forged, (void *)evil);
	ok(line && strchr(line, '\n') == line + strlen(line) - 1, "log: a forged user id stays on one line");
	if (line)
		line[strlen(line) - 1] = '\0';
	ok(line && logfmt(line, "user", got, sizeof(got)) == 5 && strcmp(got, evil) == 0,
	   "log: the line has exactly time, level, event, user, reason and user reads back whole: %s", line ? line : "");
	ok(line && logfmt(line, "admin", got, sizeof(got)) == 5 && got[0] == '\0' &&
		   logfmt(line, "forged", got, sizeof(got)) == 5 && got[0] == '\0',
	   "log: no admin or forged field was made");
	free(line);
}

/* ---- tokens: time checks, key ids, cache generation ---------------------- */

static struct config cfg;

static void b64url(struct buf *out, const void *data, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = data;
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			buf_append(out, &tab[(acc >> bits) & 63], 1);
		}
	}
	if (bits)
		buf_append(out, &tab[(acc << (6 - bits)) & 63], 1);
}

/* An HS256 token over exactly these bytes (libjwt would re-serialise). */
static char *sign(const char *key, const char *header, const char *payload)
{
	struct buf t = { 0 };
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	b64url(&t, header, strlen(header));
	buf_puts(&t, ".");
	b64url(&t, payload, strlen(payload));
	if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)t.data, t.len, mac, &maclen))
		abort();
	buf_puts(&t, ".");
	b64url(&t, mac, maclen);
	return t.data;
}

#define HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
static const char key_a[] = "strict-test-key-A-0123456789abcdef";
static const char key_b[] = "strict-test-key-B-0123456789abcdef";
static const char key_c[] = "strict-test-key-C-0123456789abcdef";

static enum auth_result verify_claims(const char *key, const char *claims, struct auth_identity *id)
{
	char *tok = sign(key, HDR, claims);
	enum auth_result r = auth_verify(tok, strlen(tok), id, NULL);

	free(tok);
	return r;
}

/* check_claims on claims read by our parser, without a signature. */
static enum auth_result direct_claims(const char *claims, struct auth_identity *id)
{
	struct jsonx_doc doc;
	int64_t valid_from;
	const char *why;
	enum auth_result r = AUTH_INVALID_TOKEN;

	memset(id, 0, sizeof(*id));
	if (jsonx_parse(&doc, claims, strlen(claims), 16, NULL) == 0)
		r = check_claims(&doc, id, &valid_from, &why);
	jsonx_free(&doc);
	return r;
}

static void write_file(const char *path, const char *data)
{
	FILE *f = fopen(path, "w");
	ok(f && fputs(data, f) >= 0 && fclose(f) == 0, "wrote %s", path);
}

static void test_auth_times(void)
{
	struct auth_identity id;
	char claims[256];
	long now = (long)time(NULL);
	enum auth_result r;

	r = verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":9223372036854775807}", &id);
	ok(r == AUTH_OK && id.exp == INT64_MAX && strcmp(id.user, "u") == 0, "time: exp = 2^63-1 never expires (exp %" PRId64 ")",
	   id.exp);
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":9223372036854775807}", &id) == AUTH_OK && id.exp == INT64_MAX,
	   "time: ... and its cached copy too");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":1e300}", &id) == AUTH_OK && id.exp == INT64_MAX,
	   "time: exp = 1e300 never expires");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":9.3e18}", &id) == AUTH_OK && id.exp == INT64_MAX,
	   "time: exp = 9.3e18 (just past int64) never expires");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":-1e300}", &id) == AUTH_TOKEN_EXPIRED,
	   "time: exp = -1e300 is long expired");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":-9223372036854775808}", &id) == AUTH_TOKEN_EXPIRED,
	   "time: exp = INT64_MIN is expired, without overflow");
	r = verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":99999999999999999999}", &id);
	ok(r == AUTH_OK ? id.exp == INT64_MAX : r == AUTH_INVALID_TOKEN,
	   "time: exp = 99999999999999999999 saturates (or libjwt's parser refuses it): %s", auth_result_code(r));
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800}", &id) == AUTH_OK && id.exp == 4102444800LL + 30,
	   "time: an exp in 2100 works (past 2038)");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"nbf\":2200000000}", &id) == AUTH_NOT_YET_VALID,
	   "time: an nbf in 2039 is not yet valid");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"nbf\":-9223372036854775808}", &id) == AUTH_OK,
	   "time: nbf = INT64_MIN is valid, without overflow");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"nbf\":9223372036854775807}", &id) ==
		   AUTH_NOT_YET_VALID,
	   "time: nbf = INT64_MAX is never valid");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"iat\":-9223372036854775808}", &id) == AUTH_OK,
	   "time: iat = INT64_MIN is valid, without overflow");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"iat\":1e300}", &id) == AUTH_NOT_YET_VALID,
	   "time: iat = 1e300 is in the future");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":4102444800,\"nbf\":-1e300,\"iat\":-1e300}", &id) == AUTH_OK,
	   "time: nbf and iat = -1e300 are valid");
	snprintf(claims, sizeof(claims), "{\"user_id\":\"u\",\"exp\":%ld.9}", now - 40);
	ok(verify_claims(key_a, claims, &id) == AUTH_TOKEN_EXPIRED, "time: a fractional exp past the leeway is expired");
	snprintf(claims, sizeof(claims), "{\"user_id\":\"u\",\"exp\":%ld.5}", now + 100);
	ok(verify_claims(key_a, claims, &id) == AUTH_OK && id.exp == now + 100 + 30,
	   "time: a fractional exp counts whole seconds");
	/* libjwt's own parser refuses integers beyond int64 before our checks
	 * run: check_claims itself, on what our parser reads */
	ok(direct_claims("{\"user_id\":\"u\",\"exp\":99999999999999999999,\"nbf\":-99999999999999999999,"
			 "\"iat\":-99999999999999999999}", &id) == AUTH_OK && id.exp == INT64_MAX,
	   "time: exp = 99999999999999999999 saturates to never, nbf and iat below int64 to always");
	ok(direct_claims("{\"user_id\":\"u\",\"exp\":4102444800,\"nbf\":99999999999999999999}", &id) ==
		   AUTH_NOT_YET_VALID,
	   "time: nbf = 99999999999999999999 is never valid");
	ok(direct_claims("{\"user_id\":18446744073709551615,\"exp\":4102444800}", &id) == AUTH_MISSING_USER,
	   "claims: user_id = 18446744073709551615 is refused by the claim check, never clamped");
	ok(direct_claims("{\"user_id\":-9223372036854775808,\"exp\":4102444800}", &id) == AUTH_OK &&
		   strcmp(id.user, "-9223372036854775808") == 0,
	   "claims: user_id = INT64_MIN is its decimal text");
	ok(verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":\"4102444800\"}", &id) == AUTH_INVALID_TOKEN &&
		   verify_claims(key_a, "{\"user_id\":\"u\",\"exp\":null}", &id) == AUTH_INVALID_TOKEN,
	   "time: exp that is not a number is invalid");
}

static void test_auth_claims(void)
{
	struct auth_identity id;
	char *tok;

	ok(verify_claims(key_a, "{\"user_id\":\"a\",\"user_id\":\"b\",\"exp\":4102444800}", &id) == AUTH_INVALID_TOKEN,
	   "claims: a user claim given twice is refused");
	ok(verify_claims(key_a, "{\"user_id\":\"a\",\"exp\":4102444800,\"role\":\"user\",\"role\":\"admin\"}", &id) ==
		   AUTH_INVALID_TOKEN,
	   "claims: a role given twice is refused (parsers differ on which one wins)");
	ok(verify_claims(key_a, "{\"user_id\":\"a\",\"exp\":4102444800,\"\\u0065xp\":1}", &id) == AUTH_INVALID_TOKEN,
	   "claims: exp given twice, once escaped, is refused");
	ok(verify_claims(key_a, "{\"user_id\":\"a\\u2028b\",\"exp\":4102444800}", &id) == AUTH_MISSING_USER,
	   "claims: a user id with U+2028 is refused");
	ok(verify_claims(key_a, "{\"user_id\":\"a\\u0085\",\"exp\":4102444800}", &id) == AUTH_MISSING_USER,
	   "claims: a user id with U+0085 is refused");
	ok(verify_claims(key_a, "{\"user_id\":18446744073709551615,\"exp\":4102444800}", &id) == AUTH_MISSING_USER ||
		   verify_claims(key_a, "{\"user_id\":18446744073709551615,\"exp\":4102444800}", &id) == AUTH_INVALID_TOKEN,
	   "claims: a user id beyond int64 is refused, never clamped");
	ok(verify_claims(key_a, "{\"user_id\":1.0,\"exp\":4102444800}", &id) == AUTH_MISSING_USER,
	   "claims: a user id of 1.0 is refused");
	ok(verify_claims(key_a, "{\"sub\":\"s\",\"exp\":4102444800,\"role\":[\"x\",\"admin\"],\"aud\":[\"a\"]}", &id) ==
		   AUTH_OK && strcmp(id.user, "s") == 0 && id.admin,
	   "claims: sub fallback and an array role still work");
	ok(verify_claims(key_a, "{\"sub\":\"s\",\"exp\":4102444800,\"role\":[[\"admin\"]]}", &id) == AUTH_OK && !id.admin,
	   "claims: a nested array holding admin does not count");
	ok(verify_claims(key_a, "{\"sub\":\"s\",\"exp\":4102444800,\"role\":\"\\u0061dmin\"}", &id) == AUTH_OK && id.admin,
	   "claims: an escaped role value compares by its value");
	ok(verify_claims(key_a, "{'user_id':'a','exp':4102444800}", &id) == AUTH_INVALID_TOKEN,
	   "claims: single-quoted claims are refused");
	tok = sign(key_a, "{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"user_id\":\"a\",\"exp\":4102444800}");
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_INVALID_TOKEN && id.key_id == 0 && id.user[0] == '\0',
	   "claims: a header naming alg twice is refused, and the identity stays empty");
	free(tok);
	tok = sign(key_a, "{\"alg\":\"HS\\u00325\\u0036\"}", "{\"user_id\":\"a\",\"exp\":4102444800}");
	ok(auth_verify(tok, strlen(tok), &id, NULL) == AUTH_OK, "claims: an escaped alg is read by its value");
	free(tok);
}

static void test_auth_keys(char *path_a, char *path_b)
{
	struct auth_identity id, id2;
	uint64_t gen, ka = 0, kb = 0, kc = 0, hits, checked;
	char *ta = sign(key_a, HDR, "{\"user_id\":\"a\",\"exp\":4102444800}");
	char *tb = sign(key_b, HDR, "{\"user_id\":\"b\",\"exp\":4102444800}");
	char *tc = sign(key_c, HDR, "{\"user_id\":\"c\",\"exp\":4102444800}");
	struct keyset *before;
	enum auth_result r;
	uint64_t h;

	gen = auth_keys_generation();
	ok(gen >= 1, "keys: a generation after init (%" PRIu64 ")", gen);
	r = auth_verify(ta, strlen(ta), &id, NULL);
	ka = id.key_id;
	ok(r == AUTH_OK && ka != 0, "keys: A verifies, key id %" PRIu64, ka);
	r = auth_verify(tb, strlen(tb), &id, NULL);
	kb = id.key_id;
	ok(r == AUTH_OK && kb != 0 && kb != ka, "keys: B verifies with another key id (%" PRIu64 ")", kb);
	/* the cache is direct-mapped under a random seed: B may have taken A's
	 * slot (1 run in 64), so A is verified once more before the hit */
	ok(auth_verify(ta, strlen(ta), &id2, NULL) == AUTH_OK, "keys: A verifies again");
	hits = auth_cache_hits();
	ok(auth_verify(ta, strlen(ta), &id2, NULL) == AUTH_OK && auth_cache_hits() == hits + 1 && id2.key_id == ka,
	   "keys: a cache hit carries the key id");
	ok(auth_key_active(ka) && auth_key_active(kb) && !auth_key_active(0) && !auth_key_active(kb + 1000),
	   "keys: both active; 0 and unknown ids are not");

	/* B is replaced by C */
	write_file(path_b, key_c);
	ok(auth_reload() == 0 && auth_keys_generation() == gen + 1, "keys: reload bumps the generation");
	ok(auth_key_active(ka) && !auth_key_active(kb), "keys: the kept key A is active, the removed key B is not");
	hits = auth_cache_hits();
	ok(auth_verify(ta, strlen(ta), &id, NULL) == AUTH_OK && id.key_id == ka && auth_cache_hits() == hits,
	   "keys: A verifies in full after the reload (cache emptied) with the same key id");
	ok(auth_verify(tb, strlen(tb), &id, NULL) == AUTH_INVALID_TOKEN && id.key_id == 0,
	   "keys: a token signed with B is refused");
	r = auth_verify(tc, strlen(tc), &id, NULL);
	kc = id.key_id;
	ok(r == AUTH_OK && kc != 0 && kc != ka && kc != kb && auth_key_active(kc), "keys: C has a new key id (%" PRIu64 ")",
	   kc);

	/* the same files again: nothing changes but the generation */
	ok(auth_reload() == 0 && auth_keys_generation() == gen + 2 && auth_key_active(ka) && auth_key_active(kc),
	   "keys: a reload without changes keeps every id");
	ok(auth_verify(tc, strlen(tc), &id, NULL) == AUTH_OK && id.key_id == kc, "keys: C keeps its id");
	/* B back: it is a new key now, never the old id again */
	write_file(path_b, key_b);
	ok(auth_reload() == 0 && auth_verify(tb, strlen(tb), &id, NULL) == AUTH_OK && id.key_id != kb &&
		   id.key_id != kc && !auth_key_active(kb) && !auth_key_active(kc),
	   "keys: a key that comes back gets a fresh id; C is gone");
	/* a failing reload changes nothing */
	unlink(path_a);
	gen = auth_keys_generation();
	ok(auth_reload() == -1 && auth_keys_generation() == gen && auth_key_active(ka),
	   "keys: a failed reload keeps keys, ids and generation");
	write_file(path_a, key_a);

	/* ABA: a verification that started before two reloads must not cache
	 * its result, even if the new key set sits at the old address */
	checked = auth_keys_generation();
	before = active;
	ok(auth_reload() == 0 && auth_reload() == 0, "cache: two reloads during one verification");
	ok(auth_verify(ta, strlen(ta), &id, NULL) == AUTH_OK, "cache: A verifies under the new keys");
	h = token_hash(ta, strlen(ta));
	cache_clear();
	cache_put(ta, strlen(ta), h, INT64_MIN, &id, checked);
	ok(!cache_get(ta, strlen(ta), h, &id2),
	   "cache: a result checked under generation %" PRIu64 " is not cached under %" PRIu64 " (key set %s address)",
	   checked, auth_keys_generation(), before == active ? "at the same" : "at another");
	cache_put(ta, strlen(ta), h, INT64_MIN, &id, auth_keys_generation());
	ok(cache_get(ta, strlen(ta), h, &id2) && id2.key_id == ka, "cache: under the current generation it is");

	free(ta);
	free(tb);
	free(tc);
}

static void reload_with_bad_path(void *arg)
{
	(void)arg;
	auth_reload();
}

static void test_auth_log(char *path_b)
{
	char *saved = cfg.secret_files[1], *line, got[512];
	char evil[] = "/nonexistent/ssehub\" admin=1 x=\"y";

	cfg.secret_files[1] = evil;
	log_setup(LOG_LVL_INFO, 0);
	line = capture_stderr(reload_with_bad_path, NULL);
	cfg.secret_files[1] = saved;
	if (line && *line)
		line[strlen(line) - 1] = '\0';
	ok(line && strstr(line, "event=keys_reload_failed") && logfmt(line, "reason", got, sizeof(got)) == 5 &&
		   strstr(got, evil) && logfmt(line, "admin", got, sizeof(got)) == 5 && got[0] == '\0',
	   "auth log: a path with quotes cannot forge a field: %s", line ? line : "(nothing)");
	free(line);
	(void)path_b;
}

static void test_auth(void)
{
	char dir[] = "/tmp/ssehub-strict-XXXXXX", path_a[64], path_b[64];

	ok(mkdtemp(dir) != NULL, "temporary directory");
	snprintf(path_a, sizeof(path_a), "%s/a", dir);
	snprintf(path_b, sizeof(path_b), "%s/b", dir);
	write_file(path_a, key_a);
	write_file(path_b, key_b);
	config_defaults(&cfg);
	cfg.secret_files[0] = xstrdup(path_a);
	cfg.secret_files[1] = xstrdup(path_b);
	cfg.n_secret_files = 2;
	log_setup(LOG_LVL_ERROR, 0);
	ok(auth_init(&cfg) == 0, "auth loads two secrets");
	test_auth_times();
	test_auth_claims();
	test_auth_keys(path_a, path_b);
	test_auth_log(path_b);
	auth_shutdown();
	unlink(path_a);
	unlink(path_b);
	rmdir(dir);
	config_free(&cfg);
}

int main(void)
{
	test_json_table();
	test_json_errors();
	test_json_depth();
	test_json_members();
	test_json_ints();
	test_text();
	test_user_id();
	test_log();
	test_auth();
	return tap_done();
}
