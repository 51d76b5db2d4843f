/* sse: field checks and the encoder. */
#include <string.h>

#include "sse.h"

/* Event names and ids reach every client: besides CR, LF and NUL (which
 * would break the framing), no character that any parser on the way may
 * treat as a line break or that a terminal would act on. */
static int valid_field(const char *s, size_t len, size_t max)
{
	return len > 0 && len <= max && util_text_valid(s, len);
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
