/* json: strict RFC 8259 validation and minification in one iterative pass
 * (containers tracked in a bit stack, no recursion), plus readers for the
 * members of a top-level object. The only allocations: the output of
 * jsonx_parse and the index of top-level members. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "json.h"
#include "util.h"

struct parser {
	const char *in;
	size_t len, i;           /* next input byte */
	char *out;
	size_t o;                /* output bytes written */
	size_t copy_from;        /* input not yet copied starts here */
	struct jsonx_member *members; /* offsets in out until the end */
	size_t n, cap;
	const char *reason;
	size_t err_at;
};

/* Where the byte at p->i lands in the output. */
#define OUTPOS(p) ((p)->o + ((p)->i - (p)->copy_from))

static int fail(struct parser *p, size_t at, const char *reason)
{
	p->reason = reason;
	p->err_at = at;
	return -1;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Whitespace outside strings is the only thing dropped: copy what came
 * before it in one move, then step over it. */
static void skip_ws(struct parser *p)
{
	size_t n;

	if (p->i >= p->len || !is_ws(p->in[p->i]))
		return;
	n = p->i - p->copy_from;
	if (n)
		memmove(p->out + p->o, p->in + p->copy_from, n);
	p->o += n;
	while (p->i < p->len && is_ws(p->in[p->i]))
		p->i++;
	p->copy_from = p->i;
}

static int hex4(const unsigned char *s)
{
	int v = 0;

	for (int k = 0; k < 4; k++) {
		unsigned c = s[k];
		int d = c >= '0' && c <= '9' ? (int)c - '0'
		      : c >= 'a' && c <= 'f' ? (int)c - 'a' + 10
		      : c >= 'A' && c <= 'F' ? (int)c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* One escape at s[i] == '\\'. Returns the index after it, or 0 after fail. */
static size_t scan_escape(struct parser *p, const unsigned char *s, size_t i)
{
	size_t len = p->len;
	int cp, lo;

	if (i + 1 >= len)
		return fail(p, i, "unterminated string"), 0;
	switch (s[i + 1]) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
		return i + 2;
	case 'u':
		break;
	default:
		return fail(p, i, "invalid escape"), 0;
	}
	if (i + 6 > len || (cp = hex4(s + i + 2)) < 0)
		return fail(p, i, "invalid \\u escape"), 0;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return fail(p, i, "lone low surrogate escape"), 0;
	if (cp < 0xd800 || cp > 0xdbff)
		return i + 6;
	if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || (lo = hex4(s + i + 8)) < 0xdc00 || lo > 0xdfff)
		return fail(p, i, "high surrogate escape without a low surrogate escape after it"), 0;
	return i + 12;
}

/* The string starting at p->i ('"'): valid UTF-8, no raw control byte,
 * valid escapes. Copied as written. */
static int scan_string(struct parser *p)
{
	const unsigned char *s = (const unsigned char *)p->in;
	size_t i = p->i + 1, len = p->len, n;
	uint32_t cp;

	for (;;) {
		unsigned c;
		/* the common bytes first: printable ASCII other than '"' and '\\' */
		while (i < len && (c = s[i]) >= 0x20 && c < 0x80 && c != '"' && c != '\\')
			i++;
		if (i >= len)
			return fail(p, p->i, "unterminated string");
		c = s[i];
		if (c == '"') {
			p->i = i + 1;
			return 0;
		}
		if (c == '\\') {
			if (!(i = scan_escape(p, s, i)))
				return -1;
		} else if (c < 0x20) {
			return fail(p, i, c ? "raw control character in a string (escape it)" : "NUL byte");
		} else {
			if (!(n = util_utf8_next(s + i, len - i, &cp)))
				return fail(p, i, "invalid UTF-8");
			i += n;
		}
	}
}

static int scan_number(struct parser *p)
{
	const char *s = p->in;
	size_t i = p->i, len = p->len;

	if (s[i] == '-')
		i++;
	if (i >= len || !is_digit(s[i]))
		return fail(p, i, "a number needs digits");
	if (s[i] == '0') {
		if (++i < len && is_digit(s[i]))
			return fail(p, i, "leading zero in a number");
	} else {
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (i < len && s[i] == '.') {
		if (++i >= len || !is_digit(s[i]))
			return fail(p, i, "a fraction needs digits after '.'");
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !is_digit(s[i]))
			return fail(p, i, "an exponent needs digits");
		while (i < len && is_digit(s[i]))
			i++;
	}
	p->i = i;
	return 0;
}

static int scan_literal(struct parser *p, const char *word, size_t n)
{
	if (p->len - p->i < n || memcmp(p->in + p->i, word, n) != 0)
		return fail(p, p->i, "unexpected bytes (true, false and null are lowercase)");
	p->i += n;
	return 0;
}

/* Why a byte cannot start a value, in words a developer recognises. */
static const char *bad_value_reason(char c, int after_comma)
{
	if (c == '\'')
		return "single quotes are not JSON";
	if (c == '/')
		return "comments are not JSON";
	if ((c == ']' || c == '}') && after_comma)
		return "trailing comma";
	if (c == 'N' || c == 'I' || c == '+' || c == '.')
		return "not a JSON number (no NaN, Infinity, '+' or leading '.')";
	if ((unsigned char)c == 0xef)
		return "byte order mark or stray byte";
	return "unexpected byte";
}

static void add_member(struct parser *p, size_t name_out, size_t name_len, size_t name_in)
{
	struct jsonx_member *m;

	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->members = xrealloc(p->members, p->cap * sizeof(*p->members));
	}
	m = &p->members[p->n++];
	memset(m, 0, sizeof(*m));
	/* offsets for now: the output is not final until the end (in place) */
	m->name = (const char *)(uintptr_t)name_out;
	m->name_len = name_len;
	m->value = (const char *)(uintptr_t)(name_out + name_len + 1);
	m->offset = name_in;
}

enum state { ST_VALUE, ST_VALUE_OR_CLOSE, ST_KEY, ST_KEY_OR_CLOSE, ST_AFTER };

static int run(struct parser *p, int max_depth)
{
	uint64_t is_object[JSONX_MAX_DEPTH / 64] = { 0 }; /* bit d-1: level d is an object */
	enum state st = ST_VALUE;
	int depth = 0, pending = 0, after_comma = 0;

	if (max_depth < 0)
		max_depth = 0;
	if (max_depth > JSONX_MAX_DEPTH)
		max_depth = JSONX_MAX_DEPTH;
	for (;;) {
		char c;
		int obj;

		skip_ws(p);
		if (p->i >= p->len) {
			if (depth == 0 && st == ST_AFTER)
				break;
			return fail(p, p->i, depth == 0 && st == ST_VALUE ? "empty input" : "truncated input");
		}
		c = p->in[p->i];
		if (c == '\0')
			return fail(p, p->i, "NUL byte");
		obj = depth > 0 && (is_object[(depth - 1) / 64] >> ((depth - 1) % 64) & 1);
		switch (st) {
		case ST_AFTER:
			if (depth == 0)
				return fail(p, p->i, "bytes after the value");
			if (depth == 1 && pending) {
				struct jsonx_member *m = &p->members[p->n - 1];
				m->value_len = OUTPOS(p) - (size_t)(uintptr_t)m->value;
				pending = 0;
			}
			if (c == ',') {
				p->i++;
				st = obj ? ST_KEY : ST_VALUE;
				after_comma = 1;
			} else if (c == (obj ? '}' : ']')) {
				p->i++;
				depth--;
			} else {
				return fail(p, p->i, obj ? "expected ',' or '}'" : "expected ',' or ']'");
			}
			continue;
		case ST_KEY_OR_CLOSE:
			if (c == '}') {
				p->i++;
				depth--;
				st = ST_AFTER;
				continue;
			}
			/* fall through */
		case ST_KEY: {
			size_t name_out = OUTPOS(p), name_in = p->i, name_len;
			if (c != '"')
				return fail(p, p->i, c == '}' && after_comma ? "trailing comma"
						     : c == '\'' ? "single quotes are not JSON"
						     : c == '/' ? "comments are not JSON" : "expected a member name in double quotes");
			if (scan_string(p) < 0)
				return -1;
			name_len = OUTPOS(p) - name_out;
			skip_ws(p);
			if (p->i >= p->len)
				return fail(p, p->i, "truncated input");
			if (p->in[p->i] != ':')
				return fail(p, p->i, "expected ':' after a member name");
			p->i++;
			if (depth == 1) {
				add_member(p, name_out, name_len, name_in);
				pending = 1;
			}
			st = ST_VALUE;
			after_comma = 0;
			continue;
		}
		case ST_VALUE_OR_CLOSE:
			if (c == ']') {
				p->i++;
				depth--;
				st = ST_AFTER;
				continue;
			}
			/* fall through */
		case ST_VALUE:
			break;
		}
		/* a value */
		switch (c) {
		case '{':
		case '[':
			if (depth >= max_depth)
				return fail(p, p->i, "nested deeper than allowed");
			if (c == '{')
				is_object[depth / 64] |= (uint64_t)1 << (depth % 64);
			else
				is_object[depth / 64] &= ~((uint64_t)1 << (depth % 64));
			depth++;
			p->i++;
			st = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
			after_comma = 0;
			continue;
		case '"':
			if (scan_string(p) < 0)
				return -1;
			break;
		case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
			if (scan_number(p) < 0)
				return -1;
			break;
		case 't':
			if (scan_literal(p, "true", 4) < 0)
				return -1;
			break;
		case 'f':
			if (scan_literal(p, "false", 5) < 0)
				return -1;
			break;
		case 'n':
			if (scan_literal(p, "null", 4) < 0)
				return -1;
			break;
		default:
			return fail(p, p->i, bad_value_reason(c, after_comma));
		}
		st = ST_AFTER;
		after_comma = 0;
	}
	/* the tail after the last whitespace */
	if (p->i > p->copy_from)
		memmove(p->out + p->o, p->in + p->copy_from, p->i - p->copy_from);
	p->o += p->i - p->copy_from;
	p->copy_from = p->i;
	p->out[p->o] = '\0';
	return 0;
}

/* ---- unescaping one code unit at a time --------------------------------- */

/* Reads a validated string literal's value byte by byte, escapes decoded to
 * UTF-8, with no buffer: for comparisons and for jsonx_unescape. */
struct decoder {
	const unsigned char *p, *end;   /* inside the quotes */
	unsigned char pend[4];
	int npend, ipend;
};

static int decoder_init(struct decoder *d, const char *lit, size_t len)
{
	d->npend = d->ipend = 0;
	d->p = d->end = (const unsigned char *)lit; /* nothing to read */
	if (len < 2 || lit[0] != '"' || lit[len - 1] != '"')
		return -1;
	d->p = (const unsigned char *)lit + 1;
	d->end = (const unsigned char *)lit + len - 1;
	return 0;
}

/* The next byte (0..255), -1 at the end, -2 on a malformed escape. */
static int decoder_next(struct decoder *d)
{
	int cp, lo;

	if (d->ipend < d->npend)
		return d->pend[d->ipend++];
	if (d->p >= d->end)
		return -1;
	if (*d->p != '\\')
		return *d->p++;
	if (d->end - d->p < 2)
		return -2;
	switch (d->p[1]) {
	case '"': d->p += 2; return '"';
	case '\\': d->p += 2; return '\\';
	case '/': d->p += 2; return '/';
	case 'b': d->p += 2; return '\b';
	case 'f': d->p += 2; return '\f';
	case 'n': d->p += 2; return '\n';
	case 'r': d->p += 2; return '\r';
	case 't': d->p += 2; return '\t';
	case 'u': break;
	default: return -2;
	}
	if (d->end - d->p < 6 || (cp = hex4(d->p + 2)) < 0)
		return -2;
	d->p += 6;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return -2;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || (lo = hex4(d->p + 2)) < 0xdc00 ||
		    lo > 0xdfff)
			return -2;
		d->p += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	d->ipend = 0;
	if (cp < 0x80) {
		d->npend = 0;
		return cp;
	} else if (cp < 0x800) {
		d->pend[0] = (unsigned char)(0xc0 | cp >> 6);
		d->pend[1] = (unsigned char)(0x80 | (cp & 0x3f));
		d->npend = 2;
	} else if (cp < 0x10000) {
		d->pend[0] = (unsigned char)(0xe0 | cp >> 12);
		d->pend[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		d->pend[2] = (unsigned char)(0x80 | (cp & 0x3f));
		d->npend = 3;
	} else {
		d->pend[0] = (unsigned char)(0xf0 | cp >> 18);
		d->pend[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		d->pend[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		d->pend[3] = (unsigned char)(0x80 | (cp & 0x3f));
		d->npend = 4;
	}
	return d->pend[d->ipend++];
}

/* Compares two name literals by their unescaped bytes. */
static int member_cmp(const void *a, const void *b)
{
	const struct jsonx_member *x = a, *y = b;
	struct decoder dx, dy;
	int cx, cy;

	/* names without escapes (nearly all) compare as they are written */
	if (!memchr(x->name, '\\', x->name_len) && !memchr(y->name, '\\', y->name_len)) {
		size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
		int c = memcmp(x->name + 1, y->name + 1, n - 2);
		if (c)
			return c;
		return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
	}
	decoder_init(&dx, x->name, x->name_len);
	decoder_init(&dy, y->name, y->name_len);
	do {
		cx = decoder_next(&dx);
		cy = decoder_next(&dy);
	} while (cx == cy && cx >= 0);
	return cx < cy ? -1 : cx > cy;
}

/* Turns the member offsets into pointers into out, sorts them by name and
 * refuses a name given twice. */
static int index_members(struct parser *p)
{
	for (size_t k = 0; k < p->n; k++) {
		struct jsonx_member *m = &p->members[k];
		m->name = p->out + (uintptr_t)m->name;
		m->value = p->out + (uintptr_t)m->value;
		m->type = jsonx_type_of(m->value, m->value_len);
	}
	if (p->n < 2)
		return 0;
	qsort(p->members, p->n, sizeof(*p->members), member_cmp);
	for (size_t k = 1; k < p->n; k++) {
		if (member_cmp(&p->members[k - 1], &p->members[k]) == 0) {
			size_t a = p->members[k - 1].offset, b = p->members[k].offset;
			return fail(p, a > b ? a : b, "duplicate member name");
		}
	}
	return 0;
}

static int parse(struct parser *p, const char *in, size_t len, int max_depth, char *out, struct jsonx_error *err)
{
	memset(p, 0, sizeof(*p));
	p->in = in;
	p->len = len;
	p->out = out;
	if (run(p, max_depth) < 0 || index_members(p) < 0) {
		if (err) {
			err->reason = p->reason;
			err->offset = p->err_at;
		}
		free(p->members);
		p->members = NULL;
		return -1;
	}
	return 0;
}

int jsonx_minify(const char *in, size_t len, int max_depth, char *out, size_t *out_len, struct jsonx_error *err)
{
	struct parser p;

	if (parse(&p, in, len, max_depth, out, err) < 0)
		return -1;
	free(p.members);
	*out_len = p.o;
	return 0;
}

int jsonx_parse(struct jsonx_doc *doc, const char *in, size_t len, int max_depth, struct jsonx_error *err)
{
	struct parser p;
	char *out = xmalloc(len + 1);

	memset(doc, 0, sizeof(*doc));
	if (parse(&p, in, len, max_depth, out, err) < 0) {
		free(out);
		return -1;
	}
	doc->text = out;
	doc->len = p.o;
	doc->type = jsonx_type_of(out, p.o);
	doc->members = p.members;
	doc->n_members = p.n;
	return 0;
}

void jsonx_free(struct jsonx_doc *doc)
{
	if (!doc)
		return;
	free(doc->text);
	free(doc->members);
	memset(doc, 0, sizeof(*doc));
}

/* Unescaped name literal against a C string, in member_cmp's order. */
static int name_cmp(const char *lit, size_t lit_len, const unsigned char *s)
{
	struct decoder d;
	int c;

	decoder_init(&d, lit, lit_len);
	for (;; s++) {
		c = decoder_next(&d);
		if (c < 0 || c != *s || !*s)
			break;
	}
	if (c < 0)
		return *s ? -1 : 0;
	return c < *s ? -1 : 1;
}

const struct jsonx_member *jsonx_get(const struct jsonx_doc *doc, const char *name)
{
	size_t lo = 0, hi = doc->type == JSONX_OBJECT ? doc->n_members : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct jsonx_member *m = &doc->members[mid];
		int c = name_cmp(m->name, m->name_len, (const unsigned char *)name);
		if (c == 0)
			return m;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

enum jsonx_type jsonx_type_of(const char *v, size_t len)
{
	if (!len)
		return JSONX_INVALID;
	switch (v[0]) {
	case '"': return JSONX_STRING;
	case '{': return JSONX_OBJECT;
	case '[': return JSONX_ARRAY;
	case 't': return JSONX_TRUE;
	case 'f': return JSONX_FALSE;
	case 'n': return JSONX_NULL;
	default: return v[0] == '-' || is_digit(v[0]) ? JSONX_NUMBER : JSONX_INVALID;
	}
}

int jsonx_unescape(const char *lit, size_t lit_len, char *dst, size_t cap, size_t *out_len)
{
	struct decoder d;
	size_t n = 0;
	int c;

	if (decoder_init(&d, lit, lit_len) < 0 || cap == 0) {
		errno = cap ? EINVAL : ERANGE;
		return -1;
	}
	while ((c = decoder_next(&d)) >= 0) {
		if (c == 0) {
			errno = EINVAL;
			return -1;
		}
		if (n + 1 >= cap) {
			errno = ERANGE;
			return -1;
		}
		dst[n++] = (char)c;
	}
	if (c == -2) {
		errno = EINVAL;
		return -1;
	}
	dst[n] = '\0';
	*out_len = n;
	return 0;
}

int jsonx_string_eq(const char *lit, size_t lit_len, const char *s, size_t len)
{
	struct decoder d;
	size_t k = 0;
	int c;

	if (decoder_init(&d, lit, lit_len) < 0)
		return 0;
	while ((c = decoder_next(&d)) >= 0) {
		if (k >= len || c != (unsigned char)s[k])
			return 0;
		k++;
	}
	return c == -1 && k == len;
}

enum jsonx_int_result jsonx_int64(const char *v, size_t len, int64_t *out)
{
	size_t i = len > 0 && v[0] == '-';
	uint64_t acc = 0, limit = i ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	int range = 0;

	if (i >= len)
		return JSONX_INT_NOT_INTEGER;
	for (size_t k = i; k < len; k++)
		if (!is_digit(v[k]))
			return JSONX_INT_NOT_INTEGER;
	for (; i < len; i++) {
		unsigned d = (unsigned)(v[i] - '0');
		if (acc > (limit - d) / 10) {
			range = 1;
			break;
		}
		acc = acc * 10 + d;
	}
	if (range)
		return JSONX_INT_OUT_OF_RANGE;
	if (v[0] == '-')
		*out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
	else
		*out = (int64_t)acc;
	return JSONX_INT_OK;
}

int jsonx_double(const char *v, size_t len, double *out)
{
	char *end;

	if (jsonx_type_of(v, len) != JSONX_NUMBER)
		return -1;
	*out = strtod(v, &end);
	return end == v + len ? 0 : -1;
}

/* The index just past the value that starts at s[i] in minified text. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	do {
		if (s[i] == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			i++;
		} else if (s[i] == '[' || s[i] == '{') {
			depth++;
			i++;
		} else if (s[i] == ']' || s[i] == '}') {
			if (depth)
				depth--;
			i++;
		} else if (s[i] == ',' || s[i] == ':') {
			i++;
		} else {
			while (i < len && s[i] != ',' && s[i] != ']' && s[i] != '}')
				i++;
		}
	} while (depth && i < len);
	return i < len ? i : len;
}

int jsonx_array_next(const char *arr, size_t len, size_t *pos, const char **elem, size_t *elem_len)
{
	size_t i = *pos, end;

	if (len < 2 || arr[0] != '[')
		return 0;
	if (i == 0)
		i = 1;
	else if (i < len && arr[i] == ',')
		i++;
	else
		return 0;
	if (i >= len - 1 || arr[i] == ']')
		return 0;
	end = skip_value(arr, len, i);
	*elem = arr + i;
	*elem_len = end - i;
	*pos = end;
	return 1;
}

struct json_object *jsonx_json_c(const char *s, size_t len, int depth)
{
	struct json_tokener *tok;
	struct json_object *obj = NULL;
	char *min;
	size_t min_len;

	/* jsonx decides what is one whole value (json-c before 0.14 cannot say
	 * where its value ended); json-c then reads the minified text, NUL
	 * included so that a number at the very end is complete */
	if (len > INT_MAX - 1)
		return NULL;
	min = xmalloc(len + 1);
	if (jsonx_minify(s, len, depth, min, &min_len, NULL) == 0 && (tok = json_tokener_new_ex(depth + 1))) {
		obj = json_tokener_parse_ex(tok, min, (int)min_len + 1);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(obj);
			obj = NULL;
		}
		json_tokener_free(tok);
	}
	free(min);
	return obj;
}
