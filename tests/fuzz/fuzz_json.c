/* fuzz_json: the strict JSON validator and minifier (src/json.c) against
 * itself, a whitespace-stripping oracle and json-c 0.16, plus the readers
 * built on it (members, arrays, the user-id rule, log quoting).
 * Input: the bytes to parse, whole.
 * Checks: nothing crashes or leaks; a refusal names a reason and an offset
 * inside the input; an accepted input's minified form is the input without
 * the whitespace outside strings, minifies to itself (also in place), and,
 * when json-c parses both, json-c reads the same value from both
 * (json_object_equal); json-c accepts everything we accept; for a
 * top-level object every member is found by its name, its string value
 * unescapes to what json-c reads, its integer reads as json-c's when in
 * range, and every array member's elements re-validate one by one. */
#include "fuzz_common.h"
#include "json.h"

#define FUZZ_MAX_INPUT 65536
#define DEPTH 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOG_LVL_ERROR, 0);
	return 0;
}

/* json-c 0.16 decodes an escaped surrogate pair as U+FFFD when the low 16
 * bits of the character it stands for fall in D800..DFFF (U+1D800..1DFFF,
 * U+2D800..2DFFF, ... : 32,768 characters): its bug, not a difference to
 * look for. 1 when the unescaped v[0..len) holds such a character. */
static int jsonc_misdecodes(const char *v, size_t len)
{
	const unsigned char *s = (const unsigned char *)v;
	uint32_t cp;
	size_t n;

	for (size_t i = 0; i < len; i += n ? n : 1) {
		n = util_utf8_next(s + i, len - i, &cp);
		if (n == 4 && (cp & 0xf800) == 0xd800)
			return 1;
	}
	return 0;
}

/* json-c's reading of s[0..len), as jsonx_json_c does it, but telling
 * a refusal (-1) from a JSON null (0 with *out NULL: json-c's null). */
static int jc_parse(const char *s, size_t len, struct json_object **out)
{
	struct json_tokener *tok = json_tokener_new_ex(DEPTH * 2);
	size_t end;
	int rc = -1;

	*out = json_tokener_parse_ex(tok, s, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!*out && json_tokener_get_error(tok) == json_tokener_continue) {
		*out = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	while (end < len && (s[end] == ' ' || s[end] == '\t' || s[end] == '\r' || s[end] == '\n'))
		end++;
	if (json_tokener_get_error(tok) == json_tokener_success && end == len && !memchr(s, '\0', len))
		rc = 0;
	json_tokener_free(tok);
	if (rc < 0) {
		json_object_put(*out);
		*out = NULL;
	}
	return rc;
}

/* The oracle: drop the four whitespace bytes outside strings. Only valid
 * JSON is given to it, so quotes and backslashes pair up. */
static size_t strip_ws(const char *in, size_t len, char *out)
{
	size_t o = 0;
	int in_string = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (in_string) {
			out[o++] = c;
			if (c == '\\' && i + 1 < len)
				out[o++] = in[++i];
			else if (c == '"')
				in_string = 0;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		} else {
			out[o++] = c;
			in_string = c == '"';
		}
	}
	return o;
}

/* Every element of the array value v[0..len), revalidated on its own and
 * joined again, gives v back. */
static void check_array(const char *v, size_t len)
{
	struct buf joined = { 0 };
	size_t pos = 0, elen, olen;
	const char *e;
	char *tmp;
	int n = 0;

	buf_append(&joined, "[", 1);
	while (jsonx_array_next(v, len, &pos, &e, &elen)) {
		/* alone in an array: an object element may repeat names, a
		 * top-level one may not */
		tmp = xmalloc(elen + 3);
		tmp[0] = '[';
		memcpy(tmp + 1, e, elen);
		tmp[elen + 1] = ']';
		FUZZ_CHECK(jsonx_minify(tmp, elen + 2, DEPTH, tmp, &olen, NULL) == 0 && olen == elen + 2 &&
				   memcmp(tmp + 1, e, elen) == 0,
			   "array element %d is not a minified value on its own: %.*s", n, (int)elen, e);
		free(tmp);
		if (n++)
			buf_append(&joined, ",", 1);
		buf_append(&joined, e, elen);
	}
	buf_append(&joined, "]", 1);
	FUZZ_CHECK(joined.len == len && memcmp(joined.data, v, len) == 0, "array elements do not join back to %.*s",
		   (int)len, v);
	free(joined.data);
}

static void check_member(const struct jsonx_doc *doc, const struct jsonx_member *m, struct json_object *jobj)
{
	char *name = xmalloc(m->name_len), *val;
	size_t nlen, vlen;
	struct json_object *jv = NULL;
	char user[AUTH_MAX_USER + 1];
	int64_t i64;
	enum jsonx_int_result ir;

	FUZZ_CHECK(m->type == jsonx_type_of(m->value, m->value_len) && m->type != JSONX_INVALID, "member type %d",
		   (int)m->type);
	FUZZ_CHECK(m->value >= doc->text && m->value + m->value_len <= doc->text + doc->len, "member outside the text");
	if (jsonx_unescape(m->name, m->name_len, name, m->name_len - 1, &nlen) < 0) {
		/* only a name holding \u0000 cannot be a C string */
		FUZZ_CHECK(errno == EINVAL, "a name does not fit in name_len - 1 bytes");
		free(name);
		return;
	}
	FUZZ_CHECK(jsonx_get(doc, name) == m, "member %s not found by its own name", name);
	if (m->type == JSONX_ARRAY)
		check_array(m->value, m->value_len);
	if (auth_user_id(m->value, m->value_len, user) == 0)
		FUZZ_CHECK(strlen(user) >= 1 && strlen(user) <= AUTH_MAX_USER && util_text_valid(user, strlen(user)),
			   "auth_user_id accepted an unusable id");
	if (!jobj)
		goto out;
	FUZZ_CHECK(json_object_object_get_ex(jobj, name, &jv), "json-c has no member %s", name);
	switch (m->type) {
	case JSONX_STRING:
		val = xmalloc(m->value_len - 1);
		if (jsonx_unescape(m->value, m->value_len, val, m->value_len - 1, &vlen) == 0)
			FUZZ_CHECK(jsonc_misdecodes(val, vlen) ||
					   (json_object_is_type(jv, json_type_string) &&
					    (size_t)json_object_get_string_len(jv) == vlen &&
					    memcmp(json_object_get_string(jv), val, vlen) == 0),
				   "member %s: json-c reads another string", name);
		else
			FUZZ_CHECK(errno == EINVAL, "a string value does not fit in value_len - 1 bytes");
		free(val);
		break;
	case JSONX_NUMBER:
		ir = jsonx_int64(m->value, m->value_len, &i64);
		if (ir == JSONX_INT_OK)
			FUZZ_CHECK(json_object_is_type(jv, json_type_int) && json_object_get_int64(jv) == i64,
				   "member %s: json-c reads another integer than %lld", name, (long long)i64);
		break;
	default: {
		/* the member's own text, parsed alone, is json-c's member */
		struct json_object *alone;
		FUZZ_CHECK(jc_parse(m->value, m->value_len, &alone) == 0 && json_object_equal(alone, jv),
			   "member %s: its text alone reads another value", name);
		json_object_put(alone);
	}
	}
out:
	free(name);
}

/* log_quote's output is printable ASCII and reads back to the input. */
static void check_log_quote(const char *in, size_t len)
{
	size_t cap = LOG_QUOTE_SIZE(len > 256 ? 256 : len), n = 0;
	char *q = xmalloc(cap), *back = xmalloc(len + 1);
	const char *p;

	log_quote_n(q, cap, in, len > 256 ? 256 : len);
	FUZZ_CHECK(q[0] == '"' && q[strlen(q) - 1] == '"' && strlen(q) >= 2, "log_quote: not quoted");
	for (p = q + 1; p < q + strlen(q) - 1; p++) {
		FUZZ_CHECK(*p >= 0x20 && *p < 0x7f && *p != '"', "log_quote: byte 0x%02x in the output", (unsigned char)*p);
		if (*p == '\\') {
			p++;
			if (*p == 'x') {
				unsigned c;
				FUZZ_CHECK(sscanf(p + 1, "%2x", &c) == 1, "log_quote: bad \\x escape");
				back[n++] = (char)c;
				p += 2;
			} else {
				FUZZ_CHECK(*p == '"' || *p == '\\', "log_quote: bad escape \\%c", *p);
				back[n++] = *p;
			}
		} else {
			back[n++] = *p;
		}
	}
	FUZZ_CHECK(n == (len > 256 ? 256 : len) && memcmp(back, in, n) == 0, "log_quote does not read back");
	free(q);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char *out, *again, *inplace, *oracle;
	size_t olen, alen, ilen, rlen;
	struct jsonx_error err = { NULL, 0 };
	struct jsonx_doc doc;
	struct json_object *orig, *mini;
	int rc;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	check_log_quote(in, size);
	out = xmalloc(size + 1);
	rc = jsonx_minify(in, size, DEPTH, out, &olen, &err);
	if (rc < 0) {
		FUZZ_CHECK(err.reason && err.offset <= size, "refused without a reason or with offset %zu of %zu",
			   err.offset, size);
		FUZZ_CHECK(jsonx_parse(&doc, in, size, DEPTH, NULL) < 0 && !doc.text, "parse and minify disagree");
		free(out);
		return 0;
	}
	FUZZ_CHECK(olen <= size && out[olen] == '\0', "minified output longer than the input");

	oracle = xmalloc(size + 1);
	rlen = strip_ws(in, size, oracle);
	FUZZ_CHECK(rlen == olen && memcmp(oracle, out, olen) == 0, "minified output is not the input without whitespace");
	free(oracle);

	again = xmalloc(olen + 1);
	FUZZ_CHECK(jsonx_minify(out, olen, DEPTH, again, &alen, NULL) == 0 && alen == olen && memcmp(again, out, olen) == 0,
		   "minify(minify(x)) != minify(x)");
	free(again);
	inplace = xmalloc(size + 1);
	memcpy(inplace, in, size);
	FUZZ_CHECK(jsonx_minify(inplace, size, DEPTH, inplace, &ilen, NULL) == 0 && ilen == olen &&
			   memcmp(inplace, out, olen) == 0,
		   "minifying in place gives another result");
	free(inplace);

	FUZZ_CHECK(jsonx_parse(&doc, in, size, DEPTH, NULL) == 0 && doc.len == olen && memcmp(doc.text, out, olen) == 0,
		   "parse and minify disagree");

	/* json-c: it must take all we take (it is laxer), and read the same
	 * value from the input and from the minified text */
	FUZZ_CHECK(jc_parse(in, size, &orig) == 0 && jc_parse(out, olen, &mini) == 0,
		   "json-c refuses what jsonx accepted: %.*s", (int)(size > 200 ? 200 : size), in);
	FUZZ_CHECK(json_object_equal(orig, mini), "json-c reads another value from the minified text: %s",
		   json_object_to_json_string(orig));

	if (doc.type == JSONX_OBJECT) {
		int has_nul_name = 0;
		for (size_t k = 0; k < doc.n_members; k++) {
			char *name = xmalloc(doc.members[k].name_len);
			size_t nl;
			if (jsonx_unescape(doc.members[k].name, doc.members[k].name_len, name, doc.members[k].name_len - 1,
					   &nl) < 0 || jsonc_misdecodes(name, nl))
				has_nul_name = 1;
			free(name);
		}
		/* json-c keys are C strings: names with \u0000 may collapse, and
		 * so may names json-c misdecodes */
		if (!has_nul_name)
			FUZZ_CHECK((size_t)json_object_object_length(orig) == doc.n_members,
				   "json-c sees %d members, jsonx %zu", json_object_object_length(orig), doc.n_members);
		for (size_t k = 0; k < doc.n_members; k++)
			check_member(&doc, &doc.members[k], has_nul_name ? NULL : orig);
	} else if (doc.type == JSONX_ARRAY) {
		check_array(doc.text, doc.len);
	}
	json_object_put(orig);
	json_object_put(mini);
	jsonx_free(&doc);
	free(out);
	return 0;
}
