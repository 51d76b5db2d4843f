/* sse: field checks and the encoder. */
#include <string.h>

#include "sse.h"

static int valid_field(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

int sse_valid_event(const char *s, size_t len)
{
	return valid_field(s, len, SSE_MAX_EVENT);
}

int sse_valid_id(const char *s, size_t len)
{
	return valid_field(s, len, SSE_MAX_ID);
}

void sse_encode(struct buf *out, const char *id, const char *event, long retry_ms, const char *data)
{
	const char *p = data;

	if (id) {
		buf_puts(out, "id: ");
		buf_puts(out, id);
		buf_puts(out, "\n");
	}
	buf_puts(out, "event: ");
	buf_puts(out, event);
	buf_puts(out, "\n");
	if (retry_ms >= 0)
		buf_printf(out, "retry: %ld\n", retry_ms);
	/* A CR, LF or CRLF inside data ends a line: each line gets its own
	 * "data:" field and the client joins them back with LF. */
	for (;;) {
		size_t n = strcspn(p, "\r\n");
		buf_puts(out, "data: ");
		buf_append(out, p, n);
		buf_puts(out, "\n");
		p += n;
		if (*p == '\0')
			break;
		if (p[0] == '\r' && p[1] == '\n')
			p++;
		p++;
	}
	buf_puts(out, "\n");
}
