/* log: one line per event, key=value, to stderr or syslog. Thread-safe.
 * Callers must never pass a token, secret or key. A value that came from a
 * peer (user id, client id, event name, message id, path, reason) goes
 * through log_quote, so that it can neither end the line nor forge a field. */
#ifndef SSEHUB_LOG_H
#define SSEHUB_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Parses "error", "warn", "info" or "debug". Returns the level or -1. */
int log_parse_level(const char *s);
/* Sets the threshold and the destination; use_syslog opens syslog with
 * ident "ssehub". May be called again (SIGHUP, tests). */
void log_setup(enum log_level level, int use_syslog);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The buffer size that holds log_quote's output for n input bytes whole. */
#define LOG_QUOTE_SIZE(n) (4 * (size_t)(n) + 3)

/* Writes s[0..len) into dst (dstlen bytes) as one double-quoted value:
 * '"' and '\\' get a backslash before them, and every byte outside
 * printable ASCII (below 0x20, 0x7f and above, so NUL, CR, LF, TAB and each
 * byte of a UTF-8 character too) is written as \xNN with two lowercase hex
 * digits. The result is always NUL-terminated; a value too long for dst is
 * cut at a whole character or escape and ends with "..." inside the quotes
 * (that needs 6 bytes; a value cut with fewer gives ""). s may be NULL: the
 * output is then - (unquoted). Returns dst, for use as a printf argument:
 *   char q[LOG_QUOTE_SIZE(AUTH_MAX_USER)];
 *   log_info("event=x user=%s", log_quote(q, sizeof(q), user));
 */
char *log_quote_n(char *dst, size_t dstlen, const char *s, size_t len);
/* log_quote_n for the NUL-terminated s. */
char *log_quote(char *dst, size_t dstlen, const char *s);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
