/* json: a strict RFC 8259 validator and minifier (its own code, not json-c), and
 * read access to the members of a top-level object straight from the
 * minified text, so a value can be passed on as its sender wrote it.
 * Functions are prefixed jsonx_ (json_ is json-c's); jsonx_json_c hands a
 * checked value to json-c. Thread-safe, no state. */
#ifndef SSEHUB_JSON_H
#define SSEHUB_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Containers nested deeper than this are refused whatever the caller asks. */
#define JSONX_MAX_DEPTH 1024

enum jsonx_type {
	JSONX_INVALID = 0,
	JSONX_STRING,
	JSONX_NUMBER,
	JSONX_OBJECT,
	JSONX_ARRAY,
	JSONX_TRUE,
	JSONX_FALSE,
	JSONX_NULL,
};

/* Why and where input was refused: reason is a short static English phrase
 * ("trailing comma", "invalid UTF-8", ...), offset the byte of the input
 * where the parser stopped. */
struct jsonx_error {
	const char *reason;
	size_t offset;
};

/* One member of a top-level object. Every pointer points into the text of
 * the jsonx_doc (or the output buffer of jsonx_minify) it came from. */
struct jsonx_member {
	const char *name;        /* the name as written, quotes included */
	size_t name_len;
	const char *value;       /* the value's minified text */
	size_t value_len;
	enum jsonx_type type;
	size_t offset;           /* where the name starts in the input */
};

/* A parsed value: its minified text and, when it is an object, an index of
 * its members. Zero-initialise or let jsonx_parse fill it. */
struct jsonx_doc {
	char *text;              /* the minified value, NUL-terminated; owned */
	size_t len;
	enum jsonx_type type;    /* of the top-level value */
	struct jsonx_member *members; /* top-level object only, sorted by name; owned */
	size_t n_members;
};

/*
 * What is accepted: exactly one RFC 8259 value, optionally surrounded by
 * the four whitespace bytes (space, TAB, LF, CR); strings of valid UTF-8
 * with no raw byte below 0x20 and only the escapes \" \\ \/ \b \f \n \r \t
 * \uXXXX, where a \uD800-\uDBFF escape must be followed by a \uDC00-\uDFFF
 * one and a low-surrogate escape may not stand alone (a lone surrogate has
 * no UTF-8 form, so it is refused rather than passed on); numbers as the
 * grammar writes them (no '+', no leading zero, digits on both sides of
 * '.', no NaN or Infinity); lowercase true, false and null; objects and
 * arrays nested at most max_depth levels (a scalar is depth 0, "[1]" depth
 * 1; max_depth is clamped to 0..JSONX_MAX_DEPTH); and a top-level object
 * whose member names are all different once unescaped ("a" and "\u0061"
 * are the same name), because other parsers keep the first or the last of
 * two and would read another value than ours. Everything else is refused:
 * empty input, a NUL byte, a byte order mark, comments, single quotes,
 * trailing commas, bytes after the value.
 *
 * The minified form is the input with the whitespace outside strings
 * removed, nothing else: numbers, escapes and member order stay as written.
 */

/* Validates in[0..len) (which may hold any bytes) and writes its minified
 * form to out, which must hold len + 1 bytes, followed by a NUL; out may be
 * in itself (minifying in place; then in needs len + 1 bytes). Returns 0
 * with the length in *out_len, or -1 with err filled (err may be NULL) and
 * out's content unspecified. One pass; allocates only a small index of the
 * top-level members for the duplicate check. */
int jsonx_minify(const char *in, size_t len, int max_depth, char *out, size_t *out_len, struct jsonx_error *err)
	__attribute__((nonnull(4, 5)));

/* The same check, keeping the result: fills doc (text, type, and for an
 * object the member index) and returns 0, or returns -1 with err filled
 * (may be NULL) and doc zeroed. Release doc with jsonx_free. */
int jsonx_parse(struct jsonx_doc *doc, const char *in, size_t len, int max_depth, struct jsonx_error *err)
	__attribute__((nonnull(1)));
/* Frees what doc owns and zeroes it. doc may be NULL or zeroed. */
void jsonx_free(struct jsonx_doc *doc);

/* The member of doc's top-level object whose unescaped name is the
 * NUL-terminated name, or NULL (also when doc is not an object). */
const struct jsonx_member *jsonx_get(const struct jsonx_doc *doc, const char *name) __attribute__((nonnull));

/* The type of a value's text, from its first byte (JSONX_INVALID when len
 * is 0). v must be a value that passed the checks above. */
enum jsonx_type jsonx_type_of(const char *v, size_t len);

/* Unescapes the string literal lit[0..lit_len) (quotes included, as in a
 * member's name or value) into dst, which holds cap bytes, and adds a NUL.
 * A buffer of lit_len - 1 bytes is always enough. Returns 0 with the byte
 * length in *out_len, or -1 with errno EINVAL when lit is not a string or
 * its value holds a NUL (\u0000: it could not be a C string), ERANGE when
 * it does not fit in cap bytes. */
int jsonx_unescape(const char *lit, size_t lit_len, char *dst, size_t cap, size_t *out_len)
	__attribute__((nonnull));

/* 1 when the string literal lit[0..lit_len) unescapes to exactly s[0..len),
 * 0 otherwise (also when lit is not a string). Allocates nothing. */
int jsonx_string_eq(const char *lit, size_t lit_len, const char *s, size_t len) __attribute__((nonnull));

enum jsonx_int_result {
	JSONX_INT_OK = 0,
	JSONX_INT_NOT_INTEGER,   /* not a number, or written with '.' or an exponent ("1.0", "1e3") */
	JSONX_INT_OUT_OF_RANGE,  /* an integer outside int64_t: never clamped */
};
/* Reads the number v[0..len) as an int64_t into *out (untouched unless
 * JSONX_INT_OK). "-0" is 0. */
enum jsonx_int_result jsonx_int64(const char *v, size_t len, int64_t *out) __attribute__((nonnull));

/* Reads the number v[0..len) as the nearest double (strtod in the C
 * locale; a magnitude beyond the double range is +-HUGE_VAL). v must point
 * into a jsonx text, where a delimiter or the NUL follows every number.
 * Returns 0, or -1 when v is not a number. */
int jsonx_double(const char *v, size_t len, double *out) __attribute__((nonnull));

/* Walks the elements of the minified array arr[0..len) (a value from a
 * jsonx doc): start with *pos = 0; each call stores the next element's text
 * in *elem / *elem_len and returns 1, then 0 at the end (or when arr is not
 * an array). */
int jsonx_array_next(const char *arr, size_t len, size_t *pos, const char **elem, size_t *elem_len)
	__attribute__((nonnull));

struct json_object;
/* json-c's object for exactly s[0..len), when this validator accepts it as
 * one value nested at most depth levels deep (truncated input, trailing
 * bytes other than whitespace and NUL bytes are errors): json-c reads the
 * minified text, so json-c before 0.14 (which cannot say where its value
 * ended) reads the same. Returns a new object (json_object_put it) or
 * NULL. The one function here that uses json-c. */
struct json_object *jsonx_json_c(const char *s, size_t len, int depth);

#endif
