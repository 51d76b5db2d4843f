/* sse: the text/event-stream wire format (WHATWG HTML, "Server-sent events").
 * Field values that could break the framing are rejected, never cleaned. */
#ifndef SSEHUB_SSE_H
#define SSEHUB_SSE_H

#include <stddef.h>

#include "util.h"

#define SSE_MAX_EVENT 64
#define SSE_MAX_ID 128

/* 1 when s[0..len) is a usable event name: 1..64 bytes of util_text_valid
 * text (valid UTF-8, no C0/C1 control, DEL, U+2028 or U+2029). */
int sse_valid_event(const char *s, size_t len);
/* 1 when s[0..len) is a usable message id: 1..128 bytes, same text rule. */
int sse_valid_id(const char *s, size_t len);

/* Appends one event to out: "id:" (when id is not NULL), "event:",
 * "retry:" (when retry_ms >= 0), one "data:" line per line of data, then the
 * blank line. id and event must have passed the checks above; data may hold
 * any bytes but NUL. */
void sse_encode(struct buf *out, const char *id, const char *event, long retry_ms, const char *data);

#endif
