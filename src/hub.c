/* hub: registry, target resolution, ids, history. Streams live in the
 * loops; the hub holds a subscription (struct sub) per stream and posts to
 * the stream's loop. A topic is a list of (stream, topic) members, each also
 * in its stream's list: a stream without topics costs one list head. With
 * the Redis backplane (bus.c), publishes and disconnects go through Redis
 * and come back, numbered, to every node's hub_deliver; this node's stream
 * counts are kept in loop 0 (bus hooks). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "auth.h"
#include "bus.h"
#include "htab.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"

struct hub_user;
struct member;

/* The hub's record of one open stream: the owner's bytes of its struct
 * stream (one allocation for both; sub_stream gives the stream, which keeps
 * the client id, and the user is the name in the user's record, see
 * sub_user). */
struct sub {
	struct htab_entry by_client;     /* hub.clients */
	LIST_ENTRY(sub) user_link;       /* user->subs */
	LIST_HEAD(, member) topics;      /* its memberships, newest first (at most
					  * --max-topics-per-stream: counted when needed) */
};
/* With the stream's 168 bytes and malloc's 8, 40 bytes fit a 224-byte
 * chunk (glibc, 64-bit) with 8 to spare; the next chunk costs 16 more per
 * stream (bench/run.sh: 378 B per idle stream at 10,000) */
_Static_assert(sizeof(struct sub) <= 40 || sizeof(void *) < 8, "struct sub outgrew its share of the chunk");

/* A topic with at least one stream; freed with its last member. */
struct topic {
	struct htab_entry by_name;       /* hub.topics */
	LIST_HEAD(, member) members;
	char name[];
};

/* One stream on one topic, in both lists: O(1) to remove from either. */
struct member {
	LIST_ENTRY(member) topic_link;   /* topic->members */
	LIST_ENTRY(member) sub_link;     /* sub->topics */
	struct topic *topic;
	struct sub *sub;
};

struct hub_user {
	struct htab_entry by_name;       /* hub.users */
	LIST_HEAD(, sub) subs;
	long count;
	char name[];
};

/* A user's (or a topic's) stream count for the stats, under stats_lock
 * only. */
struct stat_user {
	struct htab_entry by_name;
	long count;
	char name[];
};

static struct {
	pthread_mutex_t lock;            /* the hub lock */
	const struct config *cfg;
	uint64_t seq;                    /* this node's delivery order */
	uint64_t last_cseq;              /* with Redis: the last cluster sequence delivered */
	int stopping;
	struct htab clients, users, topics;
	struct msg **hist;               /* ring */
	size_t hist_cap, hist_head, hist_len;
	char boot[24];
	uint64_t next_id;

	pthread_mutex_t stats_lock;      /* never held with the hub lock */
	struct htab stat_users, stat_topics;
	long total;
} hub = { .lock = PTHREAD_MUTEX_INITIALIZER, .stats_lock = PTHREAD_MUTEX_INITIALIZER };

/* The user of a registered stream: the stream was opened with the name in
 * its hub_user record (open_now), so the record is around that name. */
static struct stream *sub_stream(const struct sub *sub)
{
	return stream_of_owner((void *)(uintptr_t)sub);
}

static struct hub_user *sub_user(const struct sub *sub)
{
	return container_of(stream_user(sub_stream(sub)), struct hub_user, name);
}

static const char *sub_key(const struct htab_entry *e)
{
	return stream_client_id(sub_stream(container_of(e, struct sub, by_client)));
}

static const char *user_key(const struct htab_entry *e)
{
	return container_of(e, struct hub_user, by_name)->name;
}

static const char *topic_key(const struct htab_entry *e)
{
	return container_of(e, struct topic, by_name)->name;
}

static const char *stat_key(const struct htab_entry *e)
{
	return container_of(e, struct stat_user, by_name)->name;
}

static void bus_deliver(const struct busmsg *m);
static void bus_reset(const char *epoch);
static void bus_skip(uint64_t seq);
static void bus_each_user(void (*emit)(void *, const char *, long), void *arg);
static void bus_each_client(void (*emit)(void *, const char *, const char *), void *arg);
static void bus_each_topic(void (*emit)(void *, const char *, long), void *arg);
static void stats_topics(char *const *names, const long *delta, size_t n);
static void stats_count(const char *user, long delta);

int hub_init(const struct config *cfg)
{
	hub.cfg = cfg;
	hub.seq = hub.last_cseq = 0;
	hub.stopping = 0;
	htab_init(&hub.clients, sub_key);
	htab_init(&hub.users, user_key);
	htab_init(&hub.topics, topic_key);
	htab_init(&hub.stat_users, stat_key);
	htab_init(&hub.stat_topics, stat_key);
	hub.total = 0;
	hub.hist_cap = (size_t)cfg->history_size;
	hub.hist = hub.hist_cap ? xcalloc(hub.hist_cap, sizeof(*hub.hist)) : NULL;
	hub.hist_head = hub.hist_len = 0;
	/* Microseconds at start: ids of this run never collide with an earlier
	 * run's, and they sort by start time. */
	snprintf(hub.boot, sizeof(hub.boot), "%" PRIx64, (uint64_t)util_wall_us());
	hub.next_id = 0;
	return 0;
}

void hub_start(void)
{
	static const struct bus_hooks hooks = { bus_deliver, bus_reset,	  bus_skip,	bus_each_user,
						bus_each_client, stats_count, stats_topics, bus_each_topic };

	bus_start(&hooks);
}

void hub_stop_loop(struct loop *l)
{
	bus_stop_loop(l);
}

void hub_free(void)
{
	size_t i;
	struct htab_entry *e, *next;

	bus_free();
	for (i = 0; i < hub.hist_len; i++)
		msg_unref(hub.hist[(hub.hist_head + i) % hub.hist_cap]);
	free(hub.hist);
	hub.hist = NULL;
	hub.hist_len = hub.hist_cap = 0;
	/* streams are closed, so the tables are empty; stats entries too, but
	 * for topic counts that met at zero in another order (never with
	 * streams closed in their loops) */
	for (int k = 0; k < 2; k++) {
		struct htab *t = k ? &hub.stat_topics : &hub.stat_users;
		for (e = htab_first(t, &i); e; e = next) {
			next = htab_next(t, e, &i);
			free(container_of(e, struct stat_user, by_name));
		}
	}
	htab_free(&hub.clients);
	htab_free(&hub.users);
	htab_free(&hub.topics);
	htab_free(&hub.stat_users);
	htab_free(&hub.stat_topics);
}

void hub_set_stopping(void)
{
	pthread_mutex_lock(&hub.lock);
	hub.stopping = 1;
	pthread_mutex_unlock(&hub.lock);
}

int hub_backplane(void)
{
	return bus_enabled() ? bus_healthy() : -1;
}

/* A fresh id for a message published without Redis, unique across
 * restarts: the start time, then a counter. */
static void new_local_id(char *out, size_t outlen)
{
	uint64_t n = __atomic_add_fetch(&hub.next_id, 1, __ATOMIC_RELAXED);
	snprintf(out, outlen, "%s-%" PRIu64, hub.boot, n);
}

/* ---- lookups (hub lock held) ------------------------------------------------ */

static struct hub_user *user_find(const char *name)
{
	struct htab_entry *e = htab_find(&hub.users, name, htab_hash(&hub.users, name));
	return e ? container_of(e, struct hub_user, by_name) : NULL;
}

static struct sub *client_find(const char *client_id)
{
	struct htab_entry *e = htab_find(&hub.clients, client_id, htab_hash(&hub.clients, client_id));
	return e ? container_of(e, struct sub, by_client) : NULL;
}

static struct topic *topic_find(const char *name)
{
	struct htab_entry *e = htab_find(&hub.topics, name, htab_hash(&hub.topics, name));
	return e ? container_of(e, struct topic, by_name) : NULL;
}

/* ---- topic membership (hub lock held) --------------------------------------- */

int hub_topic_valid(const char *s, size_t len)
{
	if (len == 0 || len > HUB_MAX_TOPIC)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.' || c == ':' || c == '/' || c == '@'))
			return 0;
	}
	return 1;
}

/* sub's membership of the topic named name, or NULL. */
static struct member *member_find(const struct sub *sub, const char *name)
{
	struct member *mb;

	LIST_FOREACH(mb, &sub->topics, sub_link)
		if (strcmp(mb->topic->name, name) == 0)
			return mb;
	return NULL;
}

/* Puts sub on topic name (created with its first member). The caller
 * checked that sub is not on it yet. */
static void member_add(struct sub *sub, const char *name)
{
	struct topic *t = topic_find(name);
	struct member *mb = xmalloc(sizeof(*mb));

	if (!t) {
		size_t len = strlen(name);
		t = xmalloc(sizeof(*t) + len + 1);
		memcpy(t->name, name, len + 1);
		LIST_INIT(&t->members);
		htab_insert(&hub.topics, &t->by_name, htab_hash(&hub.topics, t->name));
	}
	mb->topic = t;
	mb->sub = sub;
	LIST_INSERT_HEAD(&t->members, mb, topic_link);
	LIST_INSERT_HEAD(&sub->topics, mb, sub_link);
}

static size_t sub_ntopics(const struct sub *sub)
{
	const struct member *mb;
	size_t n = 0;

	LIST_FOREACH(mb, &sub->topics, sub_link)
		n++;
	return n;
}

/* Takes mb off both lists; a topic left without members goes. */
static void member_remove(struct member *mb)
{
	struct topic *t = mb->topic;

	LIST_REMOVE(mb, topic_link);
	LIST_REMOVE(mb, sub_link);
	free(mb);
	if (LIST_EMPTY(&t->members)) {
		htab_remove(&hub.topics, &t->by_name);
		free(t);
	}
}

/* ---- stats counts (stats_lock, never under the hub lock) ---------------------- */

static void stats_count(const char *user, long delta)
{
	uint32_t h;
	struct htab_entry *e;
	struct stat_user *u;

	pthread_mutex_lock(&hub.stats_lock);
	h = htab_hash(&hub.stat_users, user);
	e = htab_find(&hub.stat_users, user, h);
	if (e) {
		u = container_of(e, struct stat_user, by_name);
	} else {
		size_t len = strlen(user);
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->name, user, len + 1);
		htab_insert(&hub.stat_users, &u->by_name, h);
	}
	u->count += delta;
	hub.total += delta;
	if (u->count <= 0) {
		htab_remove(&hub.stat_users, &u->by_name);
		free(u);
	}
	pthread_mutex_unlock(&hub.stats_lock);
}

/* Applies delta[i] to topic names[i] for i < n (a zero delta is skipped).
 * Topic counts are applied after the hub lock is released, by whichever
 * thread changed the membership, so a -1 may arrive before its +1: an
 * entry goes only at exactly zero, and only positive counts are shown. */
static void stats_topics(char *const *names, const long *delta, size_t n)
{
	pthread_mutex_lock(&hub.stats_lock);
	for (size_t i = 0; i < n; i++) {
		uint32_t h;
		struct htab_entry *e;
		struct stat_user *t;

		if (!delta[i])
			continue;
		h = htab_hash(&hub.stat_topics, names[i]);
		e = htab_find(&hub.stat_topics, names[i], h);
		if (e) {
			t = container_of(e, struct stat_user, by_name);
		} else {
			size_t len = strlen(names[i]);
			t = xcalloc(1, sizeof(*t) + len + 1);
			memcpy(t->name, names[i], len + 1);
			htab_insert(&hub.stat_topics, &t->by_name, h);
		}
		t->count += delta[i];
		if (t->count == 0) {
			htab_remove(&hub.stat_topics, &t->by_name);
			free(t);
		}
	}
	pthread_mutex_unlock(&hub.stats_lock);
}

/* ,"topic_clients":{...} from this node's counts (stats_lock held). */
static void topic_stats(struct buf *out)
{
	struct htab_entry *e;
	size_t i;
	int first = 1;

	buf_puts(out, ",\"topic_clients\":{");
	for (e = htab_first(&hub.stat_topics, &i); e; e = htab_next(&hub.stat_topics, e, &i)) {
		struct stat_user *t = container_of(e, struct stat_user, by_name);
		if (t->count <= 0)
			continue;
		if (!first)
			buf_puts(out, ",");
		first = 0;
		buf_json_str(out, t->name);
		buf_printf(out, ":%ld", t->count);
	}
	buf_puts(out, "}");
}

/* Streams joined or left topics: with Redis counted in loop 0 (in order
 * with the opens and closes there, and told to Redis), else here. */
static void count_topics(char *const *names, const long *delta, size_t n)
{
	if (bus_enabled())
		bus_topics(names, delta, n);
	else
		stats_topics(names, delta, n);
}

static void bus_each_topic(void (*emit)(void *, const char *, long), void *arg)
{
	struct htab_entry *e;
	size_t i;

	pthread_mutex_lock(&hub.stats_lock);
	for (e = htab_first(&hub.stat_topics, &i); e; e = htab_next(&hub.stat_topics, e, &i)) {
		struct stat_user *t = container_of(e, struct stat_user, by_name);
		if (t->count > 0)
			emit(arg, t->name, t->count);
	}
	pthread_mutex_unlock(&hub.stats_lock);
}

static void local_topic_stats(struct buf *out)
{
	pthread_mutex_lock(&hub.stats_lock);
	topic_stats(out);
	pthread_mutex_unlock(&hub.stats_lock);
}

long hub_topics_count(void)
{
	long n;

	pthread_mutex_lock(&hub.lock);
	n = (long)hub.topics.count;
	pthread_mutex_unlock(&hub.lock);
	return n;
}

/* The seed's stats object members for this node. */
static long local_stats(struct buf *out)
{
	struct htab_entry *e;
	size_t i;
	int first = 1;
	long total;

	pthread_mutex_lock(&hub.stats_lock);
	total = hub.total;
	buf_printf(out, "\"total_clients\":%ld,\"user_clients\":{", hub.total);
	for (e = htab_first(&hub.stat_users, &i); e; e = htab_next(&hub.stat_users, e, &i)) {
		struct stat_user *u = container_of(e, struct stat_user, by_name);
		if (!first)
			buf_puts(out, ",");
		first = 0;
		buf_json_str(out, u->name);
		buf_printf(out, ":%ld", u->count);
	}
	buf_puts(out, "}");
	pthread_mutex_unlock(&hub.stats_lock);
	return total;
}

static void bus_each_user(void (*emit)(void *, const char *, long), void *arg)
{
	struct htab_entry *e;
	size_t i;

	pthread_mutex_lock(&hub.stats_lock);
	for (e = htab_first(&hub.stat_users, &i); e; e = htab_next(&hub.stat_users, e, &i)) {
		struct stat_user *u = container_of(e, struct stat_user, by_name);
		emit(arg, u->name, u->count);
	}
	pthread_mutex_unlock(&hub.stats_lock);
}

/* After Redis came back: every stream of this node (O(streams) under the
 * hub lock, once per reconnect). */
static void bus_each_client(void (*emit)(void *, const char *, const char *), void *arg)
{
	struct htab_entry *e;
	size_t i;

	pthread_mutex_lock(&hub.lock);
	for (e = htab_first(&hub.clients, &i); e; e = htab_next(&hub.clients, e, &i)) {
		struct sub *sub = container_of(e, struct sub, by_client);
		emit(arg, stream_client_id(sub_stream(sub)), sub_user(sub)->name);
	}
	pthread_mutex_unlock(&hub.lock);
}

long hub_total_clients(void)
{
	long n;

	pthread_mutex_lock(&hub.stats_lock);
	n = hub.total;
	pthread_mutex_unlock(&hub.stats_lock);
	return n;
}

struct stats_wait {
	struct hub_wait *w;
};

static void node_block(struct buf *out, long clients, int topics)
{
	buf_puts(out, ",\"node\":{\"id\":");
	buf_json_str(out, bus_node_id());
	buf_printf(out, ",\"clients\":%ld", clients);
	if (topics)
		local_topic_stats(out);
	buf_puts(out, "}");
}

static void cluster_stats(void *arg, const struct buf *json)
{
	struct hub_wait *w = arg;
	struct buf mine = { 0 };
	long clients = local_stats(&mine);

	free(mine.data);
	buf_puts(&w->json, "{");
	if (json) {
		buf_append(&w->json, json->data, json->len);
	} else {
		/* Redis could not answer after all: this node's figures */
		local_stats(&w->json);
		buf_puts(&w->json, ",\"partial\":true");
	}
	node_block(&w->json, clients, w->topics);
	buf_puts(&w->json, "}");
	w->status = HUB_OK;
	w->done(w);
}

enum hub_status hub_stats(struct loop *l, struct hub_wait *w)
{
	long clients;

	w->status = HUB_OK;
	if (bus_enabled() && bus_stats(l, w->topics, cluster_stats, w) == 0)
		return HUB_PENDING;
	buf_puts(&w->json, "{");
	clients = local_stats(&w->json);
	if (bus_enabled()) {
		buf_puts(&w->json, ",\"partial\":true");
		node_block(&w->json, clients, w->topics);
	} else if (w->topics) {
		local_topic_stats(&w->json);
	}
	buf_puts(&w->json, "}");
	return HUB_OK;
}

/* ---- history (hub lock held) ------------------------------------------------ */

static struct msg *hist_at(size_t i)
{
	return hub.hist[(hub.hist_head + i) % hub.hist_cap];
}

static void hist_drop_oldest(void)
{
	msg_unref(hist_at(0));
	hub.hist_head = (hub.hist_head + 1) % hub.hist_cap;
	hub.hist_len--;
}

static void hist_expire(int64_t now)
{
	while (hub.hist_len > 0 && hist_at(0)->created < now - hub.cfg->history_ttl)
		hist_drop_oldest();
}

static void hist_append(struct msg *m)
{
	if (!hub.hist_cap)
		return;
	hist_expire(m->created);
	if (hub.hist_len == hub.hist_cap)
		hist_drop_oldest();
	msg_ref(m, 1);
	hub.hist[(hub.hist_head + hub.hist_len) % hub.hist_cap] = m;
	hub.hist_len++;
}

long hub_history_len(void)
{
	long n;

	pthread_mutex_lock(&hub.lock);
	n = (long)hub.hist_len;
	pthread_mutex_unlock(&hub.lock);
	return n;
}

/* A stream being opened, as the history sees it: its user and the topics
 * it asks for at connect. */
struct viewer {
	const char *user;
	char *const *topics;
	size_t ntopics;
};

/* What the new stream v may be sent again from the history: broadcasts,
 * its user's messages and those of the topics it asks for (a client message
 * was for one stream, now gone). */
static int replay_visible(const struct msg *m, const struct viewer *v)
{
	switch (m->target) {
	case MSG_BROADCAST:
		return 1;
	case MSG_USER:
		return strcmp(m->key, v->user) == 0;
	case MSG_TOPIC:
		for (size_t i = 0; i < v->ntopics; i++)
			if (strcmp(m->key, v->topics[i]) == 0)
				return 1;
		return 0;
	default:
		return 0;
	}
}

/* What a stream of v's user could have received before it reconnected:
 * also the client messages sent to one of its user's streams. A message of
 * a topic the new stream does not ask for is not among them: its id would
 * tell the stream which ids exist on that topic. */
static int could_have_received(const struct msg *m, const struct viewer *v)
{
	return replay_visible(m, v) || (m->target == MSG_CLIENT && strcmp(m->owner, v->user) == 0);
}

/* A replay being collected: the messages the new stream v may see, within
 * --max-replay-bytes. */
struct replay {
	const struct viewer *v;
	struct msg **m;
	size_t n, cap, bytes;
	int over;
};

static void replay_add(struct replay *r, struct msg *m)
{
	if (!replay_visible(m, r->v) || r->over)
		return;
	r->bytes += m->len;
	if (r->bytes > (size_t)hub.cfg->max_replay_bytes) {
		r->over = 1;
		return;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->m = xrealloc(r->m, r->cap * sizeof(*r->m));
	}
	msg_ref(m, 1);
	r->m[r->n++] = m;
}

static void replay_drop(struct replay *r)
{
	for (size_t i = 0; i < r->n; i++)
		msg_unref(r->m[i]);
	free(r->m);
	r->m = NULL;
	r->n = r->cap = 0;
}

/* Finds last_event_id among the messages v could have received (newest
 * first) in the local history. Returns its position + 1, or 0. */
static size_t hist_find(const struct viewer *v, const char *last_event_id)
{
	size_t i;

	if (!hub.hist_cap)
		return 0;
	hist_expire(util_wall_s());
	/* An id of a message this user could not have received is unknown:
	 * resuming from it would tell one user which ids exist for another. */
	for (i = hub.hist_len; i > 0; i--)
		if (could_have_received(hist_at(i - 1), v) && strcmp(hist_at(i - 1)->id, last_event_id) == 0)
			return i;
	return 0;
}

/* Collects the local history from position from, or (from_cseq) the
 * messages after cluster sequence after. Returns 1, or 0 when the replay
 * is over --max-replay-bytes (r is then emptied). */
static int collect_local(struct replay *r, size_t from, int from_cseq, uint64_t after)
{
	for (size_t i = from; i < hub.hist_len; i++)
		if (!from_cseq || hist_at(i)->cseq > after)
			replay_add(r, hist_at(i));
	if (r->over) {
		METRIC_ADD(replay_refused_total, 1);
		replay_drop(r);
		return 0;
	}
	return 1;
}

/* ---- open / close ------------------------------------------------------------- */

void hub_stream_closed(struct stream *s, void *owner)
{
	struct sub *sub = owner;
	struct hub_user *u = sub_user(sub);
	char **names = NULL;
	long *minus = NULL;
	size_t n = 0;
	struct member *mb;

	if (bus_enabled())
		bus_close(u->name, stream_client_id(sub_stream(sub))); /* counted in loop 0, in order */
	else
		stats_count(u->name, -1);
	pthread_mutex_lock(&hub.lock);
	htab_remove(&hub.clients, &sub->by_client);
	LIST_REMOVE(sub, user_link);
	if (!LIST_EMPTY(&sub->topics)) {
		/* the names outlive their topics, for the stats after the lock */
		size_t k = sub_ntopics(sub);
		names = xmalloc(k * sizeof(*names));
		minus = xmalloc(k * sizeof(*minus));
		while ((mb = LIST_FIRST(&sub->topics)) != NULL) {
			minus[n] = -1;
			names[n++] = xstrdup(mb->topic->name);
			member_remove(mb);
		}
	}
	if (--u->count == 0) {
		htab_remove(&hub.users, &u->by_name);
		free(u);
	}
	pthread_mutex_unlock(&hub.lock);
	if (n) {
		count_topics(names, minus, n);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
	}
	free(names);
	free(minus);
	/* sub goes with the stream */
}

/* Appends ",\"topics\":[...]" with names[i] for each i where on[i], or
 * nothing when there are none. */
static void topics_fragment(struct buf *b, char *const *names, const long *on, size_t n)
{
	int first = 1;

	for (size_t i = 0; i < n; i++) {
		if (!on[i])
			continue;
		buf_puts(b, first ? ",\"topics\":[" : ",");
		buf_json_str(b, names[i]);
		first = 0;
	}
	if (!first)
		buf_puts(b, "]");
}

/* A stream being opened; with Redis it waits for the admission and maybe
 * for the log. */
struct opening {
	struct loop *loop;
	int fd;
	uint16_t request_id;
	struct hub_who who;
	char user[MSG_MAX_OWNER + 1];    /* user ids are at most 128 bytes, like owners */
	char client_id[37];
	char *last_event_id;
	char **topics;                   /* who.topics, copied: the opening may outlive the call */
	struct viewer viewer;            /* user and topics, for the history */
	struct hub_wait *w;
	struct replay redis;             /* messages read from the Redis log */
	uint64_t redis_upto;             /* the last cluster sequence in them */
	int from_redis;                  /* -1: not asked, 0: unknown there, 1: resumed there */
};

static void opening_free(struct opening *o)
{
	replay_drop(&o->redis);
	free(o->last_event_id);
	for (size_t i = 0; i < o->who.ntopics; i++)
		free(o->topics[i]);
	free(o->topics);
	free(o);
}

/* Registers and starts the stream (the final step, in o->loop's thread).
 * Returns the status for the caller. */
static enum hub_status open_now(struct opening *o)
{
	struct stream_params p = { .fd = o->fd, .request_id = o->request_id, .token_exp = o->who.token_exp,
				   .key_id = o->who.key_id };
	struct replay r = { .v = &o->viewer };
	struct hub_user *u;
	struct sub *sub;
	struct stream *s;
	struct buf extra = { 0 };
	long *plus = NULL;
	uint64_t start_seq;
	int resumed = -1;

	/* A key removed by a reload since the token was verified: the reload's
	 * sweep of this loop's streams runs in this thread, before or after
	 * this, so the stream is either refused here or ended by the sweep. */
	if (o->who.key_id && !auth_key_active(o->who.key_id))
		return HUB_KEY_REVOKED;
	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_STOPPING;
	}
	u = user_find(o->user);
	/* checked again under the lock: another loop may have opened one since
	 * (with Redis, the cluster's count has admitted this stream already) */
	if (!bus_enabled() && hub.cfg->max_clients_per_user && u && u->count >= hub.cfg->max_clients_per_user) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_TOO_MANY_USER_CLIENTS;
	}
	if (hub.cfg->max_clients && (long)hub.clients.count >= hub.cfg->max_clients) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_TOO_MANY_CLIENTS;
	}
	if (!u) {
		size_t len = strlen(o->user);
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->name, o->user, len + 1);
		LIST_INIT(&u->subs);
		htab_insert(&hub.users, &u->by_name, htab_hash(&hub.users, u->name));
	}
	u->count++;
	p.client_id = o->client_id;
	p.user = u->name;
	p.owner_size = sizeof(*sub);
	s = stream_new(o->loop, &p);
	sub = stream_owner(s);
	LIST_INIT(&sub->topics);
	LIST_INSERT_HEAD(&u->subs, sub, user_link);
	htab_insert(&hub.clients, &sub->by_client, htab_hash(&hub.clients, stream_client_id(sub_stream(sub))));
	if (o->who.ntopics) {
		plus = xcalloc(o->who.ntopics, sizeof(*plus));
		for (size_t i = 0; i < o->who.ntopics; i++) {
			if (member_find(sub, o->topics[i]))
				continue;
			member_add(sub, o->topics[i]);
			plus[i] = 1;
		}
	}
	start_seq = hub.seq;
	if (o->last_event_id) {
		size_t at;
		resumed = 0;
		if (o->from_redis == 1) {
			/* the log's messages up to what this node has delivered,
			 * then the local ones after them */
			for (size_t i = 0; i < o->redis.n && !r.over; i++)
				if (o->redis.m[i]->cseq <= hub.last_cseq)
					replay_add(&r, o->redis.m[i]);
			resumed = r.over ? (METRIC_ADD(replay_refused_total, 1), replay_drop(&r), 0)
					 : collect_local(&r, 0, 1, o->redis_upto);
		} else if ((at = hist_find(&o->viewer, o->last_event_id)) != 0) {
			resumed = collect_local(&r, at, 0, 0);
		}
	}
	pthread_mutex_unlock(&hub.lock);

	if (!bus_enabled())
		stats_count(u->name, 1);
	if (plus) {
		count_topics(o->topics, plus, o->who.ntopics);
		topics_fragment(&extra, o->topics, plus, o->who.ntopics);
	}
	free(plus);
	if (log_enabled(LOG_LVL_INFO)) {
		char user[LOG_QUOTE_SIZE(MSG_MAX_OWNER)];
		log_info("event=connect client=%s user=%s admin=%d loop=%d resumed=%d replayed=%zu topics=%zu", o->client_id,
			 log_quote(user, sizeof(user), o->user), o->who.admin, loop_index(o->loop), resumed, r.n,
			 o->who.ntopics);
	}
	if (resumed >= 0)
		buf_puts(&extra, resumed ? ",\"resumed\":true" : ",\"resumed\":false");
	stream_start(s, start_seq, extra.data, r.m, r.n);
	free(extra.data);
	return HUB_OK;
}

/* The id's cluster sequence when it is one of ours ("<epoch>-<seq>" in the
 * current epoch); 0 otherwise. */
static uint64_t cluster_seq_of(const char *id)
{
	char epoch[BUSMSG_MAX_EPOCH + 1];
	size_t n;
	uint64_t v = 0;
	const char *p;

	bus_epoch(epoch, sizeof(epoch));
	n = strlen(epoch);
	if (!n || strncmp(id, epoch, n) != 0 || id[n] != '-')
		return 0;
	for (p = id + n + 1; *p >= '0' && *p <= '9' && v < UINT64_MAX / 10; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return *p || p == id + n + 1 ? 0 : v;
}

static struct msg *msg_from_bus(const struct busmsg *m);

/* The end of an opening the cluster admitted: the stream opens unless its
 * waiter went away; either way the waiter hears, and a stream that did not
 * open is taken off the cluster's count. */
static void opening_end(struct opening *o)
{
	struct hub_wait *w = o->w;

	w->status = w->cancelled ? HUB_STOPPING : open_now(o);
	if (w->status != HUB_OK)
		bus_close(o->user, o->client_id);
	opening_free(o);
	w->done(w);
}

/* The Redis log's answer to a Last-Event-ID this node's history lacks:
 * the messages after cluster sequence after. */
static void since_done(void *arg, int status, uint64_t after, const char *const *entries, const size_t *lens,
		       size_t n)
{
	struct opening *o = arg;

	o->from_redis = status == 1;
	o->redis_upto = after;
	o->redis.v = &o->viewer;
	for (size_t i = 0; i < n && o->from_redis; i++) {
		struct busmsg bm;
		const char *why;
		struct msg *m;
		if (busmsg_decode(entries[i], lens[i], (size_t)hub.cfg->max_message_bytes + 256, &bm, &why) < 0)
			continue;
		if (!(m = msg_from_bus(&bm))) {
			/* a subscription change: nothing to replay, and no
			 * stream was ever given its number */
			if (bm.seq == after)
				o->from_redis = 0;
			else
				o->redis_upto = bm.seq;
			continue;
		}
		if (m->cseq == after) {
			/* the resume point: an id this stream could not have
			 * received is unknown, as in the local history */
			o->from_redis = could_have_received(m, &o->viewer);
		} else {
			o->redis_upto = m->cseq;
			if (m->created >= util_wall_s() - hub.cfg->history_ttl)
				replay_add(&o->redis, m);
		}
		msg_unref(m);
	}
	if (o->from_redis && (!n || !entries))
		o->from_redis = 0; /* not even the resume point: trimmed */
	if (o->redis.over) {
		METRIC_ADD(replay_refused_total, 1);
		replay_drop(&o->redis);
		o->from_redis = 0;
	}
	opening_end(o);
}

/* Does this reconnect need the Redis log? (Not when the local history has
 * the id, or when the id cannot be in the log at all.) */
static int needs_log(struct opening *o, uint64_t *seq, const char **custom)
{
	int found;

	*seq = cluster_seq_of(o->last_event_id);
	*custom = *seq ? NULL : o->last_event_id;
	pthread_mutex_lock(&hub.lock);
	found = hist_find(&o->viewer, o->last_event_id) != 0;
	pthread_mutex_unlock(&hub.lock);
	return !found && bus_healthy();
}

/* The cluster admitted (or refused) the stream. */
static void admitted(void *arg, int ok)
{
	struct opening *o = arg;
	struct hub_wait *w = o->w;
	uint64_t seq;
	const char *custom;

	if (w->cancelled || !ok) {
		if (ok)
			bus_close(o->user, o->client_id);
		w->status = ok ? HUB_STOPPING : HUB_TOO_MANY_USER_CLIENTS;
		opening_free(o);
		w->done(w);
		return;
	}
	if (o->last_event_id && needs_log(o, &seq, &custom) &&
	    bus_since(o->loop, seq, custom, since_done, o) == 0)
		return;
	opening_end(o);
}

enum hub_status hub_open_stream(struct loop *l, int fd, uint16_t request_id, const struct hub_who *who,
				const char *last_event_id, struct hub_wait *w)
{
	struct opening *o;
	struct hub_user *u;
	long on_node, limit = hub.cfg->max_clients_per_user;
	uuid_t id;
	enum hub_status st;

	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return w->status = HUB_STOPPING;
	}
	if (hub.cfg->max_clients && (long)hub.clients.count >= hub.cfg->max_clients) {
		pthread_mutex_unlock(&hub.lock);
		return w->status = HUB_TOO_MANY_CLIENTS;
	}
	u = user_find(who->user);
	on_node = u ? u->count : 0;
	pthread_mutex_unlock(&hub.lock);
	if (limit && on_node >= limit)
		return w->status = HUB_TOO_MANY_USER_CLIENTS;

	o = xcalloc(1, sizeof(*o));
	o->loop = l;
	o->fd = fd;
	o->request_id = request_id;
	o->who = *who;
	snprintf(o->user, sizeof(o->user), "%s", who->user);
	o->who.user = o->user;
	if (who->ntopics) {
		o->topics = xmalloc(who->ntopics * sizeof(*o->topics));
		for (size_t i = 0; i < who->ntopics; i++)
			o->topics[i] = xstrdup(who->topics[i]);
	}
	o->who.topics = o->topics;
	o->viewer = (struct viewer){ .user = o->user, .topics = o->topics, .ntopics = who->ntopics };
	uuid_generate_random(id);
	uuid_unparse_lower(id, o->client_id);
	o->last_event_id = last_event_id ? xstrdup(last_event_id) : NULL;
	o->from_redis = -1;
	o->w = w;
	if (bus_enabled()) {
		/* the cluster-wide limit and this node's count, in loop 0 */
		bus_open(l, o->user, o->client_id, limit, admitted, o);
		return w->status = HUB_PENDING;
	}
	st = open_now(o);
	opening_free(o);
	return w->status = st;
}

/* ---- publish and disconnect (hub lock held while resolving) ---------------------- */

/* Loops to wake once the lock is released: bit i is loop i. */
typedef uint64_t wake_set;

static void wake(wake_set w)
{
	for (int i = 0; w; i++, w >>= 1)
		if (w & 1)
			loop_wake(loops_get(i));
}

static wake_set post_to(struct stream *s, struct msg *m, int (*post)(struct stream *, struct msg *))
{
	msg_ref(m, 1);
	return post(s, m) ? 1ULL << loop_index(stream_loop(s)) : 0;
}

/* Posts m to the streams on topic key: one batch per loop, not one post per
 * stream (a topic may hold every stream, as a broadcast). Returns how many
 * streams, and the loops to wake in *w. */
static long publish_topic(const char *key, struct msg *m, wake_set *w)
{
	struct stream_batch *batch[64] = { 0 };  /* --loops is at most 64, a wake_set bit each */
	size_t count[64] = { 0 };
	struct topic *t = topic_find(key);
	struct member *mb;
	long n = 0;
	int nloops = loops_count();

	if (!t)
		return 0;
	LIST_FOREACH(mb, &t->members, topic_link)
		count[loop_index(stream_loop(sub_stream(mb->sub)))]++;
	for (int i = 0; i < nloops; i++) {
		if (count[i]) {
			batch[i] = xmalloc(sizeof(*batch[i]) + count[i] * sizeof(batch[i]->s[0]));
			batch[i]->n = 0;
		}
	}
	LIST_FOREACH(mb, &t->members, topic_link) {
		struct stream_batch *b = batch[loop_index(stream_loop(sub_stream(mb->sub)))];
		b->s[b->n++] = sub_stream(mb->sub);
	}
	for (int i = 0; i < nloops; i++) {
		if (!batch[i])
			continue;
		n += (long)batch[i]->n;
		msg_ref(m, 1);
		if (stream_post_deliver_batch(loops_get(i), m, batch[i]))
			*w |= 1ULL << i;
	}
	return n;
}

/* Posts m to every stream target names, with post; returns how many, and
 * the loops to wake in *w. */
static long resolve(enum msg_target target, const char *key, struct msg *m,
		    int (*post)(struct stream *, struct msg *), wake_set *w)
{
	struct hub_user *u;
	struct sub *sub;
	long n = 0;

	switch (target) {
	case MSG_BROADCAST:
		/* one post per loop; each walks its own streams */
		for (int i = 0; i < loops_count(); i++) {
			msg_ref(m, 1);
			if (stream_post_broadcast(loops_get(i), m))
				*w |= 1ULL << i;
		}
		n = (long)hub.clients.count;
		break;
	case MSG_USER:
		if ((u = user_find(key)) != NULL) {
			LIST_FOREACH(sub, &u->subs, user_link) {
				*w |= post_to(sub_stream(sub), m, post);
				n++;
			}
		}
		break;
	case MSG_CLIENT:
		if ((sub = client_find(key)) != NULL) {
			if (m->owner && !m->owner[0])
				msg_set_owner(m, sub_user(sub)->name);
			*w |= post_to(sub_stream(sub), m, post);
			n++;
		}
		break;
	case MSG_TOPIC:
		/* published, never disconnected: the API has no such target */
		if (post == stream_post_deliver)
			n = publish_topic(key, m, w);
		break;
	default:
		break;
	}
	return n;
}

/* Delivers m (seq, and with Redis cseq, set) to this node's streams and
 * its history. Returns the recipients here, or -1 when stopping. */
static long deliver(struct msg *m, int finish)
{
	wake_set w = 0;
	long n;

	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return -1;
	}
	m->seq = ++hub.seq;
	if (m->cseq)
		hub.last_cseq = m->cseq;
	n = resolve(m->target, m->key, m, finish ? stream_post_finish : stream_post_deliver, &w);
	if (!finish)
		hist_append(m);
	pthread_mutex_unlock(&hub.lock);
	wake(w);
	return n;
}

/* The SSE bytes of a message: its id line, then the body. */
static struct msg *build_msg(enum msg_target target, const char *key, const char *id, const char *body, size_t len,
			     int with_id)
{
	struct buf b = { 0 };
	struct msg *m;

	if (with_id) {
		buf_puts(&b, "id: ");
		buf_puts(&b, id);
		buf_puts(&b, "\n");
	}
	buf_append(&b, body, len);
	m = msg_new(target, key, with_id ? id : NULL, b.data, b.len);
	free(b.data);
	return m;
}

enum bus_op { OP_PUBLISH, OP_DISCONNECT, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

static enum busmsg_kind bus_kind(enum msg_target t, enum bus_op op)
{
	static const enum busmsg_kind users[] = { BUS_USER, BUS_DISCONNECT_USER, BUS_SUBSCRIBE_USER,
						  BUS_UNSUBSCRIBE_USER };
	static const enum busmsg_kind clients[] = { BUS_CLIENT, BUS_DISCONNECT_CLIENT, BUS_SUBSCRIBE_CLIENT,
						    BUS_UNSUBSCRIBE_CLIENT };

	switch (t) {
	case MSG_USER: return users[op];
	case MSG_CLIENT: return clients[op];
	case MSG_TOPIC: return BUS_TOPIC;
	default: return BUS_BROADCAST;
	}
}

/* A cluster publish or disconnect was numbered (or failed). */
static void bus_done(void *arg, const struct bus_result *r)
{
	struct hub_wait *w = arg;

	if (!r->ok) {
		w->status = HUB_UNAVAILABLE;
	} else {
		w->status = HUB_OK;
		w->count = r->count;
		w->duplicate = r->duplicate;
		if (!w->id[0])
			snprintf(w->id, sizeof(w->id), "%s-%" PRIu64, r->epoch, r->seq);
	}
	w->done(w);
}

static enum hub_status send_to_cluster(struct loop *l, const struct hub_pub *p, enum bus_op op, struct hub_wait *w)
{
	if (__atomic_load_n(&hub.stopping, __ATOMIC_RELAXED))
		return w->status = HUB_STOPPING;
	w->id[0] = '\0';
	if (p->id)
		snprintf(w->id, sizeof(w->id), "%s", p->id);
	if (bus_publish(l, bus_kind(p->target, op), p->key, p->id, p->body, p->body_len, bus_done, w) < 0)
		return w->status = HUB_UNAVAILABLE;
	return w->status = HUB_PENDING;
}

enum hub_status hub_publish(struct loop *l, const struct hub_pub *p, struct hub_wait *w)
{
	struct msg *m;
	long n;

	if (bus_enabled()) {
		enum hub_status st = send_to_cluster(l, p, OP_PUBLISH, w);
		if (st != HUB_UNAVAILABLE && st != HUB_STOPPING)
			METRIC_ADD(published[p->target], 1);
		return st;
	}
	if (p->id)
		snprintf(w->id, sizeof(w->id), "%s", p->id);
	else
		new_local_id(w->id, sizeof(w->id));
	m = build_msg(p->target, p->key, w->id, p->body, p->body_len, 1);
	n = deliver(m, 0);
	msg_unref(m);
	if (n < 0)
		return w->status = HUB_STOPPING;
	w->count = n;
	METRIC_ADD(published[p->target], 1);
	return w->status = HUB_OK;
}

enum hub_status hub_disconnect(struct loop *l, const struct hub_pub *p, struct hub_wait *w)
{
	struct msg *m;
	long n;

	if (bus_enabled())
		return send_to_cluster(l, p, OP_DISCONNECT, w);
	m = build_msg(p->target, p->key, NULL, p->body, p->body_len, 0);
	n = deliver(m, 1);
	msg_unref(m);
	if (n < 0)
		return w->status = HUB_STOPPING;
	w->count = n;
	return w->status = HUB_OK;
}

/* ---- server-side subscriptions ------------------------------------------------ */

/* Changes sub's membership of names[0..n) (add or remove); changed[i] says
 * which changed. Returns how many did, or -1 (nothing changed) when adding
 * would take sub past --max-topics-per-stream. */
static long sub_change(struct sub *sub, char *const *names, size_t n, int add, unsigned char *changed)
{
	long count = 0;

	for (size_t i = 0; i < n; i++)
		changed[i] = (member_find(sub, names[i]) != NULL) != add;
	for (size_t i = 0; i < n; i++)
		count += changed[i];
	if (add && (long)sub_ntopics(sub) + count > hub.cfg->max_topics_per_stream)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!changed[i])
			continue;
		if (add)
			member_add(sub, names[i]);
		else
			member_remove(member_find(sub, names[i]));
	}
	return count;
}

/* The subscribed / unsubscribed event: {"topics":[names[i] where changed[i]]}. */
static struct msg *change_event(int add, char *const *names, const unsigned char *changed, size_t n, uint64_t seq)
{
	struct buf data = { 0 }, b = { 0 };
	struct msg *m;
	int first = 1;

	buf_puts(&data, "{\"topics\":[");
	for (size_t i = 0; i < n; i++) {
		if (!changed[i])
			continue;
		if (!first)
			buf_puts(&data, ",");
		buf_json_str(&data, names[i]);
		first = 0;
	}
	buf_puts(&data, "]}");
	sse_encode(&b, NULL, add ? "subscribed" : "unsubscribed", -1, data.data);
	m = msg_new(MSG_PRIVATE, NULL, NULL, b.data, b.len);
	m->seq = seq;
	free(data.data);
	free(b.data);
	return m;
}

/* Changes one stream; counts it in *changed_streams or *skipped. */
static void subscribe_one(struct sub *sub, char *const *names, size_t n, int add, uint64_t seq, long *delta,
			  unsigned char *changed, long *changed_streams, long *skipped, wake_set *w)
{
	long c = sub_change(sub, names, n, add, changed);
	struct msg *m;

	if (c < 0) {
		(*skipped)++;
		return;
	}
	if (c == 0)
		return;
	for (size_t i = 0; i < n; i++)
		delta[i] += changed[i] ? (add ? 1 : -1) : 0;
	m = change_event(add, names, changed, n, seq);
	if (stream_post_event(sub_stream(sub), m))
		*w |= 1ULL << loop_index(stream_loop(sub_stream(sub)));
	(*changed_streams)++;
}

/* hub_subscribe on this node's streams; cseq: the cluster sequence of the
 * bus message asking it (0: none). */
static long subscribe_local(enum msg_target target, const char *key, char *const *topics, size_t n, int add,
			    uint64_t cseq, long *skipped)
{
	long *delta = xcalloc(n ? n : 1, sizeof(*delta));
	unsigned char *changed = xmalloc(n ? n : 1);
	long count = 0;
	wake_set w = 0;
	struct hub_user *u;
	struct sub *sub;
	uint64_t seq;

	*skipped = 0;
	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		free(delta);
		free(changed);
		return -1;
	}
	/* one place in the order of publishes: the event comes after every
	 * message published before, and before every later one */
	seq = ++hub.seq;
	if (cseq > hub.last_cseq)
		hub.last_cseq = cseq;
	if (target == MSG_CLIENT) {
		if ((sub = client_find(key)) != NULL)
			subscribe_one(sub, topics, n, add, seq, delta, changed, &count, skipped, &w);
	} else if ((u = user_find(key)) != NULL) {
		LIST_FOREACH(sub, &u->subs, user_link)
			subscribe_one(sub, topics, n, add, seq, delta, changed, &count, skipped, &w);
	}
	pthread_mutex_unlock(&hub.lock);
	wake(w);
	count_topics(topics, delta, n);
	free(delta);
	free(changed);
	return count;
}

enum hub_status hub_subscribe(struct loop *l, enum msg_target target, const char *key, char *const *topics,
			      size_t n, int add, struct hub_wait *w)
{
	long count;

	w->skipped = 0;
	if (bus_enabled()) {
		/* every node changes its own streams when the message reaches
		 * it, in order with the publishes around it */
		struct buf list = { 0 };
		struct hub_pub p = { .target = target, .key = key };
		enum hub_status st;

		for (size_t i = 0; i < n; i++) {
			buf_puts(&list, topics[i]);
			buf_puts(&list, "\n");
		}
		p.body = list.data;
		p.body_len = list.len;
		st = send_to_cluster(l, &p, add ? OP_SUBSCRIBE : OP_UNSUBSCRIBE, w);
		free(list.data);
		return st;
	}
	count = subscribe_local(target, key, topics, n, add, 0, &w->skipped);
	if (count < 0)
		return w->status = HUB_STOPPING;
	w->count = count;
	return w->status = HUB_OK;
}

static int bus_subscription_kind(enum busmsg_kind k)
{
	return k == BUS_SUBSCRIBE_USER || k == BUS_SUBSCRIBE_CLIENT || k == BUS_UNSUBSCRIBE_USER ||
	       k == BUS_UNSUBSCRIBE_CLIENT;
}

/* A subscribe or unsubscribe of the cluster: the topic names one per line,
 * each checked as the API checks them (a node may not trust Redis more
 * than a peer); a list that is not one is dropped whole. */
static void bus_subscription(const struct busmsg *bm)
{
	int add = bm->kind == BUS_SUBSCRIBE_USER || bm->kind == BUS_SUBSCRIBE_CLIENT;
	enum msg_target target = bm->kind == BUS_SUBSCRIBE_CLIENT || bm->kind == BUS_UNSUBSCRIBE_CLIENT ? MSG_CLIENT
													  : MSG_USER;
	size_t max = (size_t)hub.cfg->max_topics_per_stream, n = 0;
	char key[BUSMSG_MAX_KEY + 1], **names = xcalloc(max ? max : 1, sizeof(*names));
	const char *p = bm->body, *end = bm->body + bm->body_len;
	long skipped = 0;
	int bad = 0;

	snprintf(key, sizeof(key), "%.*s", (int)bm->key_len, bm->key);
	while (p < end && !bad) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bad = n == max || !hub_topic_valid(p, len);
		for (size_t i = 0; i < n && !bad; i++)
			bad = strlen(names[i]) == len && memcmp(names[i], p, len) == 0;
		if (!bad)
			names[n++] = xstrndup(p, len);
		p += len + 1;
	}
	if (bad || !n)
		log_warn("event=bus_message_dropped seq=%" PRIu64 " reason=\"not a topic list\"", bm->seq);
	else if (subscribe_local(target, key, names, n, add, bm->seq, &skipped) >= 0 && skipped)
		log_warn("event=subscribe_skipped streams=%ld reason=\"over --max-topics-per-stream\"", skipped);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- from the backplane (loop 0's thread) ------------------------------------------ */

/* The message a bus message stands for (its bytes with the id line), or
 * NULL for a kind this node does not deliver. */
static struct msg *msg_from_bus(const struct busmsg *bm)
{
	static const enum msg_target targets[128] = { ['b'] = MSG_BROADCAST, ['u'] = MSG_USER, ['c'] = MSG_CLIENT,
						      ['t'] = MSG_TOPIC, ['U'] = MSG_USER, ['C'] = MSG_CLIENT };
	int finish = bm->kind == BUS_DISCONNECT_USER || bm->kind == BUS_DISCONNECT_CLIENT;
	char id[SSE_MAX_ID + 1], key[BUSMSG_MAX_KEY + 1];
	struct msg *m;

	if (bus_subscription_kind(bm->kind))
		return NULL;
	if (bm->id_len)
		snprintf(id, sizeof(id), "%.*s", (int)bm->id_len, bm->id);
	else
		snprintf(id, sizeof(id), "%.*s-%" PRIu64, (int)bm->epoch_len, bm->epoch, bm->seq);
	snprintf(key, sizeof(key), "%.*s", (int)bm->key_len, bm->key);
	m = build_msg(targets[bm->kind & 127], bm->key_len ? key : NULL, id, bm->body, bm->body_len, !finish);
	m->cseq = bm->seq;
	m->created = bm->created;
	if (m->owner && bm->owner_len <= MSG_MAX_OWNER)
		snprintf(m->owner, MSG_MAX_OWNER + 1, "%.*s", (int)bm->owner_len, bm->owner);
	return m;
}

static void bus_deliver(const struct busmsg *bm)
{
	int finish = bm->kind == BUS_DISCONNECT_USER || bm->kind == BUS_DISCONNECT_CLIENT;
	struct msg *m;

	if (bus_subscription_kind(bm->kind)) {
		bus_subscription(bm);
		return;
	}
	m = msg_from_bus(bm);
	if (m) {
		deliver(m, finish);
		msg_unref(m);
	}
}

static void bus_skip(uint64_t seq)
{
	pthread_mutex_lock(&hub.lock);
	if (seq > hub.last_cseq)
		hub.last_cseq = seq;
	pthread_mutex_unlock(&hub.lock);
}

/* The epoch changed: this node's history is of another numbering. */
static void bus_reset(const char *epoch)
{
	pthread_mutex_lock(&hub.lock);
	while (hub.hist_len)
		hist_drop_oldest();
	hub.last_cseq = 0;
	pthread_mutex_unlock(&hub.lock);
}

/* ---- history file ---------------------------------------------------------------- */

static const char *const target_names[] = { "broadcast", "user", "client", "topic" };

/* Opens path.tmp for writing: created here (O_EXCL, 0600), never through a
 * link planted there. A leftover from a crash is removed first. */
static FILE *open_tmp(const char *tmp)
{
	int fd = -1;

	for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST && attempt == 0 && unlink(tmp) < 0)
			break;
	}
	return fd >= 0 ? fdopen(fd, "w") : NULL;
}

static int refuse_symlink(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		log_error("event=history_file_refused path=%s reason=\"it is a symbolic link\"", path);
		return -1;
	}
	return 0;
}

int hub_history_save(const char *path)
{
	char tmp[4096];
	FILE *f;
	size_t i;

	if (refuse_symlink(path) < 0)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* 0600: the history holds private send-to-user payloads */
	if (!(f = open_tmp(tmp))) {
		log_error("event=history_save_failed path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&hub.lock);
	for (i = 0; i < hub.hist_len; i++) {
		struct msg *m = hist_at(i);
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "created", json_object_new_int64(m->created));
		json_object_object_add(o, "target", json_object_new_string(target_names[m->target]));
		if (m->key)
			json_object_object_add(o, "key", json_object_new_string(m->key));
		if (m->owner)
			json_object_object_add(o, "owner", json_object_new_string(m->owner));
		json_object_object_add(o, "id", json_object_new_string(m->id));
		json_object_object_add(o, "bytes", json_object_new_string_len(m->bytes, (int)m->len));
		fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	i = hub.hist_len;
	pthread_mutex_unlock(&hub.lock);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		log_error("event=history_save_failed path=%s error=\"%s\"", path, strerror(errno));
		fclose(f);
		unlink(tmp);
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		log_error("event=history_save_failed path=%s error=\"%s\"", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	log_info("event=history_saved path=%s messages=%zu", path, i);
	return 0;
}

/* One line of the history file as a message, or NULL when it is not one. */
static struct msg *history_line(const char *line, size_t len, int64_t now, int *expired)
{
	struct json_object *o = jsonx_json_c(line, len, 4), *v;
	const char *id, *key = NULL;
	int target = -1;
	int64_t created;
	struct msg *m = NULL;

	*expired = 0;
	if (!o || !json_object_is_type(o, json_type_object))
		goto done;
	if (!json_object_object_get_ex(o, "target", &v) || !json_object_is_type(v, json_type_string))
		goto done;
	for (int t = 0; t < (int)ARRAY_LEN(target_names); t++)
		if (strcmp(json_object_get_string(v), target_names[t]) == 0)
			target = t;
	if (target < 0)
		goto done;
	if (json_object_object_get_ex(o, "key", &v)) {
		if (!json_object_is_type(v, json_type_string))
			goto done;
		key = json_object_get_string(v);
	}
	if ((target != MSG_BROADCAST) != (key != NULL))
		goto done;
	if (!json_object_object_get_ex(o, "id", &v) || !json_object_is_type(v, json_type_string))
		goto done;
	id = json_object_get_string(v);
	if (!sse_valid_id(id, strlen(id)))
		goto done;
	if (!json_object_object_get_ex(o, "created", &v) || !json_object_is_type(v, json_type_int))
		goto done;
	created = json_object_get_int64(v);
	if (!json_object_object_get_ex(o, "bytes", &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		goto done;
	if (created < now - hub.cfg->history_ttl) {
		*expired = 1;
		goto done;
	}
	m = msg_new((enum msg_target)target, key, id, json_object_get_string(v), (size_t)json_object_get_string_len(v));
	m->created = created;
	if (m->owner && json_object_object_get_ex(o, "owner", &v) && json_object_is_type(v, json_type_string) &&
	    json_object_get_string_len(v) <= MSG_MAX_OWNER)
		msg_set_owner(m, json_object_get_string(v));
done:
	json_object_put(o);
	return m;
}

int hub_history_load(const char *path)
{
	char *line = NULL;
	size_t cap = 0, loaded = 0, bad = 0;
	ssize_t len;
	int64_t now = util_wall_s();
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

	if (!f) {
		if (fd >= 0)
			close(fd);
		if (errno == ENOENT)
			return 0;
		log_error("event=history_load_failed path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&hub.lock);
	while ((len = getline(&line, &cap, f)) > 0) {
		int expired;
		struct msg *m = history_line(line, (size_t)len, now, &expired);
		if (!m) {
			bad += !expired;
			continue;
		}
		m->seq = ++hub.seq;
		hist_append(m);
		msg_unref(m);
		loaded++;
	}
	pthread_mutex_unlock(&hub.lock);
	free(line);
	fclose(f);
	if (bad)
		log_warn("event=history_load_skipped path=%s lines=%zu", path, bad);
	log_info("event=history_loaded path=%s messages=%zu", path, loaded);
	return 0;
}
