/* busmsg: the messages the nodes of a cluster exchange through Redis (the
 * bus channel and the log stream hold the same bytes). Pure: no I/O, no
 * allocation; every field from Redis is bounded and checked, so a malformed
 * or hostile message is refused, never half-read.
 *
 *   EPOCH ":" SEQ ":" TIME "\n" OWNER "\n" KIND "\n" KEY "\n" ID "\n" BODY
 *
 * EPOCH is 1-32 lowercase hex digits, SEQ 1-20 decimal digits (no leading
 * zero), TIME the publish time in seconds (Redis's clock), OWNER the user of a client message (else empty), KIND one letter
 * (see enum busmsg_kind), KEY the user, client or topic (empty for a
 * broadcast), ID the publisher's own id (empty: the hub makes EPOCH-SEQ),
 * BODY the encoded event without its id line (event, retry, data lines). The
 * publishing node sends KIND "\n" KEY "\n" ID "\n" BODY; the publish script
 * puts the first two lines in front. */
#ifndef SSEHUB_BUSMSG_H
#define SSEHUB_BUSMSG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define BUSMSG_MAX_EPOCH 32
#define BUSMSG_MAX_KEY 200

enum busmsg_kind {
	BUS_BROADCAST = 'b',
	BUS_USER = 'u',
	BUS_CLIENT = 'c',
	BUS_TOPIC = 't',
	BUS_DISCONNECT_USER = 'U',
	BUS_DISCONNECT_CLIENT = 'C',
	/* server-side subscriptions: BODY is the topic names, one per line */
	BUS_SUBSCRIBE_USER = 'j',
	BUS_SUBSCRIBE_CLIENT = 'J',
	BUS_UNSUBSCRIBE_USER = 'l',
	BUS_UNSUBSCRIBE_CLIENT = 'L',
};

struct busmsg {
	const char *epoch;
	size_t epoch_len;
	uint64_t seq;
	int64_t created;                 /* seconds */
	const char *owner, *key, *id;    /* not NUL-terminated */
	size_t owner_len, key_len, id_len;
	enum busmsg_kind kind;
	const char *body;
	size_t body_len;
};

/* Appends what a node publishes (KIND, KEY, ID, BODY) to out. */
void busmsg_payload(struct buf *out, enum busmsg_kind kind, const char *key, const char *id, const char *body,
		    size_t body_len);

/* Splits m[0..len) into out (pointers into m). Returns 0, or -1 with a
 * reason in *why when any field is malformed or out of bounds (max_body:
 * the largest body accepted). */
int busmsg_decode(const char *m, size_t len, size_t max_body, struct busmsg *out, const char **why);

#endif
