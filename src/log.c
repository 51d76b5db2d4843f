/* log: key=value lines with a timestamp and level, to stderr or syslog. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static enum log_level threshold = LOG_LVL_INFO;
static int to_syslog;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

void log_setup(enum log_level level, int use_syslog)
{
	threshold = level;
	if (use_syslog && !to_syslog)
		openlog("ssehub", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	to_syslog = use_syslog;
}

int log_enabled(enum log_level level)
{
	return level <= threshold;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024];
	va_list ap;

	if (level > threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (to_syslog) {
		syslog(prio[level], "level=%s %s", level_names[level], line);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "time=%s.%03ldZ level=%s %s\n", when, ts.tv_nsec / 1000000,
			level_names[level], line);
	}
}

/* How many bytes the escaped form of byte c takes. */
static size_t quoted_len(unsigned char c)
{
	if (c == '"' || c == '\\')
		return 2;
	return c < 0x20 || c >= 0x7f ? 4 : 1;
}

char *log_quote_n(char *dst, size_t dstlen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, need = 2;
	int cut;

	if (dstlen == 0)
		return dst;
	if (!s) {
		snprintf(dst, dstlen, "-");
		return dst;
	}
	for (size_t i = 0; i < len && need < dstlen; i++)
		need += quoted_len((unsigned char)s[i]);
	cut = need >= dstlen; /* the quotes and the NUL included */
	if (cut && dstlen < 6) {
		dst[0] = '\0';
		return dst;
	}
	dst[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t n = quoted_len(c);
		/* when cutting, keep room for "...", the closing quote and the NUL */
		if (cut && o + n + 5 > dstlen) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (n == 1) {
			dst[o] = (char)c;
		} else if (n == 2) {
			dst[o] = '\\';
			dst[o + 1] = (char)c;
		} else {
			dst[o] = '\\';
			dst[o + 1] = 'x';
			dst[o + 2] = hex[c >> 4];
			dst[o + 3] = hex[c & 15];
		}
		o += n;
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}

char *log_quote(char *dst, size_t dstlen, const char *s)
{
	return log_quote_n(dst, dstlen, s, s ? strlen(s) : 0);
}
