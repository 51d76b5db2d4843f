/* msg: an immutable, reference-counted event, encoded once and shared by the
 * history and every stream queue that carries it. Only the reference count
 * changes after creation, atomically, so any thread may hold a reference. */
#ifndef SSEHUB_MSG_H
#define SSEHUB_MSG_H

#include <stddef.h>
#include <stdint.h>

enum msg_target {
	MSG_BROADCAST,   /* every stream */
	MSG_USER,        /* every stream of user `key` */
	MSG_CLIENT,      /* the stream whose client id is `key` */
	MSG_TOPIC,       /* every stream subscribed to topic `key` */
	MSG_PRIVATE,     /* one stream's own bytes (preamble, final events) */
};

struct msg {
	long refs;               /* atomic */
	uint64_t seq;            /* this node's delivery order; 0 for private messages */
	uint64_t cseq;           /* with Redis: the cluster's sequence number; else 0 */
	int64_t created;         /* wall seconds, for the history TTL */
	enum msg_target target;
	unsigned raw : 1;        /* bytes are complete FastCGI records, not SSE text */
	const char *key;         /* user id, client id or topic; NULL for broadcast/private */
	const char *id;          /* SSE id; NULL for private messages */
	char *owner;             /* MSG_CLIENT: the user of that client when published
				  * (set by the publisher before sharing); else NULL */
	size_t len;
	char bytes[];            /* the encoded event, then key and id strings */
};

/* Creates a message holding a copy of bytes[0..len) and of key and id (which
 * may be NULL). The reference count of the returned message is 1. A
 * MSG_CLIENT message has room for its owner's user id (msg_set_owner). */
struct msg *msg_new(enum msg_target target, const char *key, const char *id,
		    const char *bytes, size_t len);

#define MSG_MAX_OWNER 128

/* Sets the owner of a MSG_CLIENT message, before anyone else holds it. */
void msg_set_owner(struct msg *m, const char *user);

/* Takes n more references. */
void msg_ref(struct msg *m, long n);

/* Drops one reference; frees the message when it was the last. m may be NULL. */
void msg_unref(struct msg *m);

#endif
