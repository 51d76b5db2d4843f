/* log: one line per event, key=value, to stderr or syslog. Thread-safe.
 * Callers must never pass a token, secret or key: values come from the hub's
 * own state (ids, counts, reasons), never raw peer input. */
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

/* Writes s to dst (dstlen >= 8) as a quoted value for a log line: '"' and
 * '\\' are escaped with a backslash and every byte outside printable ASCII
 * as \xNN, so a peer's string can never end the value or forge a field.
 * Long values are cut, with "..." before the closing quote. Returns dst. */
const char *log_quote(char *dst, size_t dstlen, const char *s);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
