/* busmsg: the bus message codec. */
#include <string.h>

#include "busmsg.h"

void busmsg_payload(struct buf *out, enum busmsg_kind kind, const char *key, const char *id, const char *body,
		    size_t body_len)
{
	char k[2] = { (char)kind, '\n' };

	buf_append(out, k, 2);
	buf_puts(out, key ? key : "");
	buf_append(out, "\n", 1);
	buf_puts(out, id ? id : "");
	buf_append(out, "\n", 1);
	buf_append(out, body, body_len);
}

/* The next field up to a LF: [*p, lf). */
static int field(const char **p, const char *end, const char **start, size_t *len)
{
	const char *lf = memchr(*p, '\n', (size_t)(end - *p));

	if (!lf)
		return -1;
	*start = *p;
	*len = (size_t)(lf - *p);
	*p = lf + 1;
	return 0;
}

/* A field from another node's user: no control characters (they were
 * checked where they came in; a message that breaks this is not ours). */
static int printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return util_utf8_valid(s, len);
}

/* Decimal digits s[0..n) into *out: 1-20 digits, no leading zero. */
static int decimal(const char *s, size_t n, uint64_t *out)
{
	*out = 0;
	if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || *out > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		*out = *out * 10 + (uint64_t)(s[i] - '0');
	}
	return 0;
}

int busmsg_decode(const char *m, size_t len, size_t max_body, struct busmsg *out, const char **why)
{
	const char *p = m, *end = m + len, *head, *c1, *c2, *kind;
	size_t head_len, kind_len;
	uint64_t t;

	memset(out, 0, sizeof(*out));
	*why = "not a bus message";
	if (field(&p, end, &head, &head_len) < 0 || !(c1 = memchr(head, ':', head_len)) ||
	    !(c2 = memchr(c1 + 1, ':', head_len - (size_t)(c1 + 1 - head))))
		return -1;
	out->epoch = head;
	out->epoch_len = (size_t)(c1 - head);
	if (out->epoch_len == 0 || out->epoch_len > BUSMSG_MAX_EPOCH)
		return (*why = "bad epoch"), -1;
	for (size_t i = 0; i < out->epoch_len; i++)
		if (!((head[i] >= '0' && head[i] <= '9') || (head[i] >= 'a' && head[i] <= 'f')))
			return (*why = "bad epoch"), -1;
	if (decimal(c1 + 1, (size_t)(c2 - c1 - 1), &out->seq) < 0 || out->seq == 0)
		return (*why = "bad sequence"), -1;
	if (decimal(c2 + 1, head_len - (size_t)(c2 + 1 - head), &t) < 0 || t > INT64_MAX)
		return (*why = "bad time"), -1;
	out->created = (int64_t)t;
	if (field(&p, end, &out->owner, &out->owner_len) < 0 || field(&p, end, &kind, &kind_len) < 0 ||
	    field(&p, end, &out->key, &out->key_len) < 0 || field(&p, end, &out->id, &out->id_len) < 0)
		return (*why = "missing fields"), -1;
	if (kind_len != 1 || !strchr("bucUCtjJlL", kind[0]))
		return (*why = "bad kind"), -1;
	out->kind = (enum busmsg_kind)kind[0];
	if (out->owner_len > 128 || !printable(out->owner, out->owner_len))
		return (*why = "bad owner"), -1;
	if (out->key_len > BUSMSG_MAX_KEY || !printable(out->key, out->key_len) ||
	    (out->kind == BUS_BROADCAST) != (out->key_len == 0))
		return (*why = "bad key"), -1;
	if (out->id_len > 128 || !printable(out->id, out->id_len))
		return (*why = "bad id"), -1;
	out->body = p;
	out->body_len = (size_t)(end - p);
	if (out->body_len == 0 || out->body_len > max_body || memchr(out->body, '\0', out->body_len))
		return (*why = "bad body"), -1;
	return 0;
}
