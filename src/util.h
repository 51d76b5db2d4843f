/* util: allocation wrappers that never return NULL, clocks, small string
 * helpers shared by every module. Nothing here keeps state. */
#ifndef SSEHUB_UTIL_H
#define SSEHUB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* The struct of type that holds member at address ptr. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Allocation wrappers: on failure they log and abort, so callers never see
 * NULL. Memory is released with free(). */
void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull, nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull, nonnull));

/* Overwrites p[0..n) with zeros in a way the compiler may not remove (a
 * memset before free may be optimised away): explicit_bzero when the C
 * library has it (HAVE_EXPLICIT_BZERO, from configure), OPENSSL_cleanse
 * otherwise. p may be NULL when n is 0. For tokens, secrets and keys. */
void util_wipe(void *p, size_t n);

/* A pipe with both ends close-on-exec and non-blocking. Returns 0 or -1. */
int util_pipe_cloexec_nonblock(int fds[2]);

/* Monotonic milliseconds, for timers. */
int64_t util_mono_ms(void);
/* Wall-clock seconds and microseconds since the epoch. */
int64_t util_wall_s(void);
int64_t util_wall_us(void);

/* Parses a decimal integer in [min, max] from the whole of s.
 * Returns 0 and stores it in *out, or -1 when s is not such a number. */
int util_parse_long(const char *s, long min, long max, long *out) __attribute__((nonnull));

/* Decodes base64url (RFC 4648 §5, no padding required, '=' tolerated at the
 * end) from in[0..len) into a new NUL-terminated buffer stored in *out with
 * its length in *outlen. Returns 0, or -1 on an invalid character (nothing
 * allocated). The caller frees *out. */
int util_b64url_decode(const char *in, size_t len, char **out, size_t *outlen);

/* Decodes %XX and '+' (as space) of a query-string component into dst, which
 * must hold len + 1 bytes. Returns the decoded length, or -1 when the result
 * would contain a NUL or a %-escape is malformed. */
long util_url_decode(char *dst, const char *src, size_t len);

/* Finds parameter name in a query string ("a=1&b=2") and returns its
 * URL-decoded value as a new string, or NULL. When the parameter is present
 * but unusable (longer than max encoded bytes, or a bad %-escape or %00),
 * NULL is returned and *bad is set (bad may be NULL). */
char *util_query_param(const char *query, const char *name, size_t max, int *bad);

/* Reads a whole file of at most max bytes into a new NUL-terminated buffer.
 * Returns it (length in *len), or NULL with errno set (EFBIG when too big);
 * what was read before a failure is wiped (key files go through here). */
char *util_read_file(const char *path, size_t max, size_t *len);


/* Decodes the UTF-8 sequence at s[0..len) (len > 0). Returns its length
 * (1..4) and stores the code point in *cp, or 0 when the bytes are not a
 * valid sequence (truncated, overlong, surrogate, above U+10FFFF). */
size_t util_utf8_next(const unsigned char *s, size_t len, uint32_t *cp) __attribute__((nonnull));

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int util_utf8_valid(const char *s, size_t len);

/* 1 when s[0..len) is text that is safe as a name, an id or a user id on
 * every wire and in every log: valid UTF-8 without a C0 control (U+0000 to
 * U+001F, so no NUL, TAB, CR or LF), DEL (U+007F), a C1 control (U+0080 to
 * U+009F, among them NEL) or a Unicode line or paragraph separator (U+2028,
 * U+2029), which some parsers split lines at. Empty text is valid here;
 * callers bound the length. */
int util_text_valid(const char *s, size_t len);

/* A growable byte buffer. Zero-initialise before use; free b->data. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (with quotes and escapes). */
void buf_json_str(struct buf *b, const char *s);

#endif
