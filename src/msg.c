/* msg: shared encoded events with an atomic reference count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "util.h"

struct msg *msg_new(enum msg_target target, const char *key, const char *id,
		    const char *bytes, size_t len)
{
	size_t klen = key ? strlen(key) + 1 : 0;
	size_t ilen = id ? strlen(id) + 1 : 0;
	size_t olen = target == MSG_CLIENT ? MSG_MAX_OWNER + 1 : 0;
	struct msg *m = xmalloc(sizeof(*m) + len + klen + ilen + olen);
	char *tail = m->bytes + len;

	m->refs = 1;
	m->seq = 0;
	m->cseq = 0;
	m->created = util_wall_s();
	m->target = target;
	m->raw = 0;
	m->len = len;
	memcpy(m->bytes, bytes, len);
	m->key = NULL;
	m->id = NULL;
	if (key) {
		memcpy(tail, key, klen);
		m->key = tail;
		tail += klen;
	}
	if (id) {
		memcpy(tail, id, ilen);
		m->id = tail;
		tail += ilen;
	}
	m->owner = olen ? tail : NULL;
	if (m->owner)
		m->owner[0] = '\0';
	return m;
}

void msg_set_owner(struct msg *m, const char *user)
{
	if (m->owner)
		snprintf(m->owner, MSG_MAX_OWNER + 1, "%s", user);
}

void msg_ref(struct msg *m, long n)
{
	__atomic_add_fetch(&m->refs, n, __ATOMIC_RELAXED);
}

void msg_unref(struct msg *m)
{
	if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(m);
}
