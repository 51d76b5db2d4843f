/* hub: registry, target resolution, ids, history. Streams live in the
 * loops; the hub holds a subscription (struct sub) per stream and posts to
 * the stream's loop. A topic is a list of (stream, topic) members, each also
 * in its stream's list: a stream without topics costs one list head. */
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

#include "htab.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"

struct hub_user;
struct member;

/* The hub's record of one open stream. */
struct sub {
	struct htab_entry by_client;     /* hub.clients */
	LIST_ENTRY(sub) user_link;       /* user->subs */
	struct hub_user *user;
	struct stream *stream;
	LIST_HEAD(, member) topics;      /* its memberships, newest first */
	char client_id[37];
	uint16_t ntopics;                /* fits in the padding after client_id */
};

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
	uint64_t seq;
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

static const char *sub_key(const struct htab_entry *e)
{
	return container_of(e, struct sub, by_client)->client_id;
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

int hub_init(const struct config *cfg)
{
	hub.cfg = cfg;
	hub.seq = 0;
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

void hub_free(void)
{
	size_t i;
	struct htab_entry *e, *next;

	for (i = 0; i < hub.hist_len; i++)
		msg_unref(hub.hist[(hub.hist_head + i) % hub.hist_cap]);
	free(hub.hist);
	hub.hist = NULL;
	hub.hist_len = hub.hist_cap = 0;
	/* streams are closed, so the tables are empty; stats entries too, but
	 * for counts that met at zero in another order (never with streams
	 * closed in their loops) */
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

void hub_new_id(char *out, size_t outlen)
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
	sub->ntopics++;
}

/* Takes mb off both lists; a topic left without members goes. */
static void member_remove(struct member *mb)
{
	struct topic *t = mb->topic;

	LIST_REMOVE(mb, topic_link);
	LIST_REMOVE(mb, sub_link);
	mb->sub->ntopics--;
	free(mb);
	if (LIST_EMPTY(&t->members)) {
		htab_remove(&hub.topics, &t->by_name);
		free(t);
	}
}

/* ---- stats counts (stats_lock, never under the hub lock) ---------------------- */

/* Adds delta to name's count in t (stats_lock held). Topic counts are
 * applied after the hub lock is released, by whichever thread changed the
 * membership, so a -1 may arrive before its +1: an entry goes only at
 * exactly zero, and only positive counts are shown. */
static void stat_add(struct htab *t, const char *name, long delta)
{
	uint32_t h = htab_hash(t, name);
	struct htab_entry *e = htab_find(t, name, h);
	struct stat_user *u;

	if (e) {
		u = container_of(e, struct stat_user, by_name);
	} else {
		size_t len = strlen(name);
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->name, name, len + 1);
		htab_insert(t, &u->by_name, h);
	}
	u->count += delta;
	if (u->count == 0) {
		htab_remove(t, &u->by_name);
		free(u);
	}
}

static void stats_count(const char *user, long delta)
{
	pthread_mutex_lock(&hub.stats_lock);
	stat_add(&hub.stat_users, user, delta);
	hub.total += delta;
	pthread_mutex_unlock(&hub.stats_lock);
}

/* Applies delta[i] to topic names[i] for i < n (a zero delta is skipped). */
static void stats_topics(char *const *names, const long *delta, size_t n)
{
	pthread_mutex_lock(&hub.stats_lock);
	for (size_t i = 0; i < n; i++)
		if (delta[i])
			stat_add(&hub.stat_topics, names[i], delta[i]);
	pthread_mutex_unlock(&hub.stats_lock);
}

static void stats_object(struct buf *out, const struct htab *t)
{
	struct htab_entry *e;
	size_t i;
	int first = 1;

	buf_puts(out, "{");
	for (e = htab_first(t, &i); e; e = htab_next(t, e, &i)) {
		struct stat_user *u = container_of(e, struct stat_user, by_name);
		if (u->count <= 0)
			continue;
		if (!first)
			buf_puts(out, ",");
		first = 0;
		buf_json_str(out, u->name);
		buf_printf(out, ":%ld", u->count);
	}
	buf_puts(out, "}");
}

void hub_stats_json(struct buf *out, int with_topics)
{
	pthread_mutex_lock(&hub.stats_lock);
	buf_printf(out, "{\"total_clients\":%ld,\"user_clients\":", hub.total);
	stats_object(out, &hub.stat_users);
	if (with_topics) {
		buf_puts(out, ",\"topic_clients\":");
		stats_object(out, &hub.stat_topics);
	}
	buf_puts(out, "}");
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

long hub_total_clients(void)
{
	long n;

	pthread_mutex_lock(&hub.stats_lock);
	n = hub.total;
	pthread_mutex_unlock(&hub.stats_lock);
	return n;
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

/* What the new stream sub may be sent again from the history: broadcasts,
 * its user's messages and those of the topics it subscribed to at connect
 * (a client message was for one stream, now gone). */
static int replay_visible(const struct msg *m, const struct sub *sub)
{
	switch (m->target) {
	case MSG_BROADCAST: return 1;
	case MSG_USER: return strcmp(m->key, sub->user->name) == 0;
	case MSG_TOPIC: return member_find(sub, m->key) != NULL;
	default: return 0;
	}
}

/* What a stream of sub's user could have received before it reconnected:
 * also the client messages sent to one of its user's streams. A message of
 * a topic the new stream does not subscribe to is not among them: its id
 * would tell the stream which ids exist on that topic. */
static int could_have_received(const struct msg *m, const struct sub *sub)
{
	return replay_visible(m, sub) || (m->target == MSG_CLIENT && strcmp(m->owner, sub->user->name) == 0);
}

/* Finds last_event_id among the messages sub could have received (newest
 * first) and collects every later one it may see, within
 * --max-replay-bytes. Returns 1 (resumed) with the messages in *out, or 0
 * (unknown id, or too much to replay). */
static int collect_replay(const struct sub *sub, const char *last_event_id, struct msg ***out, size_t *nout)
{
	size_t i, found, n = 0, bytes = 0;

	*out = NULL;
	*nout = 0;
	if (!hub.hist_cap)
		return 0;
	hist_expire(util_wall_s());
	/* An id of a message this user could not have received is unknown:
	 * resuming from it would tell one user which ids exist for another. */
	for (i = hub.hist_len; i > 0; i--)
		if (could_have_received(hist_at(i - 1), sub) && strcmp(hist_at(i - 1)->id, last_event_id) == 0)
			break;
	if (i == 0)
		return 0;
	found = i;
	for (i = found; i < hub.hist_len; i++) {
		if (replay_visible(hist_at(i), sub)) {
			n++;
			bytes += hist_at(i)->len;
		}
	}
	if (bytes > (size_t)hub.cfg->max_replay_bytes) {
		METRIC_ADD(replay_refused_total, 1);
		return 0;
	}
	if (!n)
		return 1;
	*out = xmalloc(n * sizeof(**out));
	for (i = found; i < hub.hist_len; i++) {
		struct msg *m = hist_at(i);
		if (replay_visible(m, sub)) {
			msg_ref(m, 1);
			(*out)[(*nout)++] = m;
		}
	}
	return 1;
}

/* ---- open / close ------------------------------------------------------------- */

static void detach(struct stream *s, void *owner)
{
	struct sub *sub = owner;
	struct hub_user *u = sub->user;
	char **names = NULL;
	long *minus = NULL;
	size_t n = 0;
	struct member *mb;

	stats_count(u->name, -1);
	pthread_mutex_lock(&hub.lock);
	htab_remove(&hub.clients, &sub->by_client);
	LIST_REMOVE(sub, user_link);
	if (sub->ntopics) {
		/* the names outlive their topics, for the stats after the lock */
		names = xmalloc(sub->ntopics * sizeof(*names));
		minus = xmalloc(sub->ntopics * sizeof(*minus));
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
		stats_topics(names, minus, n);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
	}
	free(names);
	free(minus);
	free(sub);
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

enum hub_open_result hub_open_stream(struct loop *l, int fd, uint16_t request_id, const struct hub_who *who,
				     const char *last_event_id)
{
	struct stream_params p = { .fd = fd, .request_id = request_id, .token_exp = who->token_exp,
				   .key_id = who->key_id, .on_close = detach };
	struct hub_user *u;
	struct sub *sub;
	struct stream *s;
	struct msg **replay = NULL;
	struct buf extra = { 0 };
	long *plus = NULL;
	size_t nreplay = 0;
	uint64_t start_seq;
	int resumed = -1;
	uuid_t id;

	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_STOPPING;
	}
	if (hub.cfg->max_clients && (long)hub.clients.count >= hub.cfg->max_clients) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_TOO_MANY_CLIENTS;
	}
	u = user_find(who->user);
	if (hub.cfg->max_clients_per_user && u && u->count >= hub.cfg->max_clients_per_user) {
		pthread_mutex_unlock(&hub.lock);
		return HUB_TOO_MANY_USER_CLIENTS;
	}
	if (!u) {
		size_t len = strlen(who->user);
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->name, who->user, len + 1);
		LIST_INIT(&u->subs);
		htab_insert(&hub.users, &u->by_name, htab_hash(&hub.users, u->name));
	}
	u->count++;
	sub = xcalloc(1, sizeof(*sub));
	sub->user = u;
	LIST_INIT(&sub->topics);
	uuid_generate_random(id);
	uuid_unparse_lower(id, sub->client_id);
	LIST_INSERT_HEAD(&u->subs, sub, user_link);
	htab_insert(&hub.clients, &sub->by_client, htab_hash(&hub.clients, sub->client_id));
	if (who->ntopics) {
		plus = xcalloc(who->ntopics, sizeof(*plus));
		for (size_t i = 0; i < who->ntopics; i++) {
			if (member_find(sub, who->topics[i]))
				continue;
			member_add(sub, who->topics[i]);
			plus[i] = 1;
		}
	}
	p.client_id = sub->client_id;
	p.user = u->name;
	p.owner = sub;
	s = sub->stream = stream_new(l, &p);
	start_seq = hub.seq;
	if (last_event_id)
		resumed = collect_replay(sub, last_event_id, &replay, &nreplay);
	pthread_mutex_unlock(&hub.lock);

	stats_count(u->name, 1);
	if (plus) {
		stats_topics(who->topics, plus, who->ntopics);
		topics_fragment(&extra, who->topics, plus, who->ntopics);
	}
	free(plus);
	if (resumed >= 0)
		buf_puts(&extra, resumed ? ",\"resumed\":true" : ",\"resumed\":false");
	stream_start(s, start_seq, extra.data, replay, nreplay);
	free(extra.data);
	return HUB_OPENED;
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

/* Posts m to every stream target names, with post; returns how many, and
 * the loops to wake in *w. */
static long resolve(enum msg_target target, const char *key, struct msg *m,
		    int (*post)(struct stream *, struct msg *), wake_set *w)
{
	struct hub_user *u;
	struct sub *sub;
	long n = 0;

	switch (target) {
	case MSG_USER:
		if ((u = user_find(key)) != NULL) {
			LIST_FOREACH(sub, &u->subs, user_link) {
				*w |= post_to(sub->stream, m, post);
				n++;
			}
		}
		break;
	case MSG_CLIENT:
		if ((sub = client_find(key)) != NULL) {
			msg_set_owner(m, sub->user->name);
			*w |= post_to(sub->stream, m, post);
			n++;
		}
		break;
	default:
		break;
	}
	return n;
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
		count[loop_index(stream_loop(mb->sub->stream))]++;
	for (int i = 0; i < nloops; i++) {
		if (count[i]) {
			batch[i] = xmalloc(sizeof(*batch[i]) + count[i] * sizeof(batch[i]->s[0]));
			batch[i]->n = 0;
		}
	}
	LIST_FOREACH(mb, &t->members, topic_link) {
		struct stream_batch *b = batch[loop_index(stream_loop(mb->sub->stream))];
		b->s[b->n++] = mb->sub->stream;
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

int hub_publish(struct msg *m, long *recipients)
{
	wake_set w = 0;

	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return -1;
	}
	m->seq = ++hub.seq;
	if (m->target == MSG_BROADCAST) {
		/* one post per loop; each walks its own streams */
		for (int i = 0; i < loops_count(); i++) {
			msg_ref(m, 1);
			if (stream_post_broadcast(loops_get(i), m))
				w |= 1ULL << i;
		}
		*recipients = (long)hub.clients.count;
	} else if (m->target == MSG_TOPIC) {
		*recipients = publish_topic(m->key, m, &w);
	} else {
		*recipients = resolve(m->target, m->key, m, stream_post_deliver, &w);
	}
	if (hub.hist_cap) {
		hist_expire(m->created);
		hist_append(m);
	}
	pthread_mutex_unlock(&hub.lock);
	wake(w);
	METRIC_ADD(published[m->target], 1);
	return 0;
}

long hub_disconnect(struct msg *final)
{
	wake_set w = 0;
	long n;

	pthread_mutex_lock(&hub.lock);
	if (hub.stopping) {
		pthread_mutex_unlock(&hub.lock);
		return -1;
	}
	final->seq = ++hub.seq;
	n = resolve(final->target, final->key, final, stream_post_finish, &w);
	pthread_mutex_unlock(&hub.lock);
	wake(w);
	return n;
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
	if (add && sub->ntopics + count > hub.cfg->max_topics_per_stream)
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
	if (stream_post_event(sub->stream, m))
		*w |= 1ULL << loop_index(stream_loop(sub->stream));
	(*changed_streams)++;
}

long hub_subscribe(enum msg_target target, const char *key, char *const *topics, size_t n, int add, long *skipped)
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
	if (target == MSG_CLIENT) {
		if ((sub = client_find(key)) != NULL)
			subscribe_one(sub, topics, n, add, seq, delta, changed, &count, skipped, &w);
	} else if ((u = user_find(key)) != NULL) {
		LIST_FOREACH(sub, &u->subs, user_link)
			subscribe_one(sub, topics, n, add, seq, delta, changed, &count, skipped, &w);
	}
	pthread_mutex_unlock(&hub.lock);
	wake(w);
	stats_topics(topics, delta, n);
	free(delta);
	free(changed);
	return count;
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
	struct json_object *o = util_json_parse(line, len, 4), *v;
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
