/* hub: registry, order, history. See hub.h for the ordering contract. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"

struct hub_user {
	struct hub_user *next;           /* hash chain */
	uint32_t hash;
	long count;
	struct stream *streams;
	char name[];
};

static struct {
	pthread_mutex_t lock;
	const struct config *cfg;
	uint64_t seq;
	uint32_t seed;
	int stopping;
	struct stream **clients;         /* hash buckets */
	size_t client_mask, nclients;
	struct hub_user **users;
	size_t user_mask, nusers;
	struct msg **hist;               /* ring */
	size_t hist_cap, hist_head, hist_len;
	char boot[24];
	uint64_t next_id;
} hub = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u ^ hub.seed;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

int hub_init(const struct config *cfg)
{
	hub.cfg = cfg;
	hub.seq = 0;
	hub.stopping = 0;
	hub.seed = (uint32_t)util_wall_us() ^ (uint32_t)getpid();
	hub.client_mask = 1023;
	hub.clients = xcalloc(hub.client_mask + 1, sizeof(*hub.clients));
	hub.user_mask = 1023;
	hub.users = xcalloc(hub.user_mask + 1, sizeof(*hub.users));
	hub.nclients = hub.nusers = 0;
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
	for (size_t i = 0; i < hub.hist_len; i++)
		msg_unref(hub.hist[(hub.hist_head + i) % hub.hist_cap]);
	free(hub.hist);
	hub.hist = NULL;
	hub.hist_len = hub.hist_cap = 0;
	for (size_t i = 0; i <= hub.user_mask; i++) {
		struct hub_user *u = hub.users[i], *next;
		for (; u; u = next) {
			next = u->next;
			free(u);
		}
	}
	free(hub.users);
	free(hub.clients);
	hub.users = NULL;
	hub.clients = NULL;
}

void hub_lock(void)
{
	pthread_mutex_lock(&hub.lock);
}

void hub_unlock(void)
{
	pthread_mutex_unlock(&hub.lock);
}

void hub_set_stopping(void)
{
	hub_lock();
	hub.stopping = 1;
	hub_unlock();
}

void hub_new_id(char *out, size_t outlen)
{
	uint64_t n = __atomic_add_fetch(&hub.next_id, 1, __ATOMIC_RELAXED);
	snprintf(out, outlen, "%s-%" PRIu64, hub.boot, n);
}

/* ---- registry tables ---------------------------------------------------- */

static void clients_grow(void)
{
	size_t mask = hub.client_mask * 2 + 1;
	struct stream **b = xcalloc(mask + 1, sizeof(*b));

	for (size_t i = 0; i <= hub.client_mask; i++) {
		struct stream *s = hub.clients[i], *next;
		for (; s; s = next) {
			next = s->hub.client_next;
			s->hub.client_next = b[s->hub.client_hash & mask];
			b[s->hub.client_hash & mask] = s;
		}
	}
	free(hub.clients);
	hub.clients = b;
	hub.client_mask = mask;
}

static void users_grow(void)
{
	size_t mask = hub.user_mask * 2 + 1;
	struct hub_user **b = xcalloc(mask + 1, sizeof(*b));

	for (size_t i = 0; i <= hub.user_mask; i++) {
		struct hub_user *u = hub.users[i], *next;
		for (; u; u = next) {
			next = u->next;
			u->next = b[u->hash & mask];
			b[u->hash & mask] = u;
		}
	}
	free(hub.users);
	hub.users = b;
	hub.user_mask = mask;
}

static struct hub_user *user_find(const char *name, uint32_t h)
{
	struct hub_user *u = hub.users[h & hub.user_mask];
	for (; u; u = u->next)
		if (u->hash == h && strcmp(u->name, name) == 0)
			return u;
	return NULL;
}

struct stream *hub_user_streams_locked(const char *user)
{
	struct hub_user *u = user_find(user, hash_str(user));
	return u ? u->streams : NULL;
}

struct stream *hub_client_locked(const char *client_id)
{
	uint32_t h = hash_str(client_id);
	struct stream *s = hub.clients[h & hub.client_mask];
	for (; s; s = s->hub.client_next)
		if (s->hub.client_hash == h && strcmp(s->client_id, client_id) == 0)
			return s;
	return NULL;
}

/* ---- history -------------------------------------------------------------- */

static struct msg *hist_at(size_t i)
{
	return hub.hist[(hub.hist_head + i) % hub.hist_cap];
}

static void hist_expire(int64_t now)
{
	while (hub.hist_len > 0 && hist_at(0)->created + hub.cfg->history_ttl < now) {
		msg_unref(hist_at(0));
		hub.hist_head = (hub.hist_head + 1) % hub.hist_cap;
		hub.hist_len--;
	}
}

static void hist_append(struct msg *m)
{
	if (!hub.hist_cap)
		return;
	if (hub.hist_len == hub.hist_cap) {
		msg_unref(hist_at(0));
		hub.hist_head = (hub.hist_head + 1) % hub.hist_cap;
		hub.hist_len--;
	}
	msg_ref(m, 1);
	hub.hist[(hub.hist_head + hub.hist_len) % hub.hist_cap] = m;
	hub.hist_len++;
}

static int replay_visible(const struct msg *m, const struct stream *s)
{
	return m->target == MSG_BROADCAST || (m->target == MSG_USER && strcmp(m->key, s->user) == 0);
}

/* Finds last_event_id in the history (newest first) and attaches to s every
 * later message it may see. Sets s->resumed. */
static void collect_replay(struct stream *s, const char *last_event_id)
{
	size_t i, found, n = 0;

	s->resumed = 0;
	if (!hub.hist_cap)
		return;
	hist_expire(util_wall_s());
	for (i = hub.hist_len; i > 0; i--)
		if (strcmp(hist_at(i - 1)->id, last_event_id) == 0)
			break;
	if (i == 0)
		return;
	found = i; /* replay starts at index found */
	s->resumed = 1;
	for (i = found; i < hub.hist_len; i++)
		if (replay_visible(hist_at(i), s))
			n++;
	if (!n)
		return;
	s->replay = xmalloc(n * sizeof(*s->replay));
	for (i = found; i < hub.hist_len; i++) {
		struct msg *m = hist_at(i);
		if (replay_visible(m, s)) {
			msg_ref(m, 1);
			s->replay[s->nreplay++] = m;
		}
	}
}

/* ---- attach / detach ---------------------------------------------------- */

enum hub_attach_result hub_attach(struct stream *s, const char *last_event_id)
{
	uint32_t uh = hash_str(s->user);
	struct hub_user *u;
	struct loop *l;

	hub_lock();
	if (hub.stopping) {
		hub_unlock();
		return HUB_STOPPING;
	}
	if (hub.cfg->max_clients && (long)hub.nclients >= hub.cfg->max_clients) {
		hub_unlock();
		return HUB_TOO_MANY_CLIENTS;
	}
	u = user_find(s->user, uh);
	if (hub.cfg->max_clients_per_user && u && u->count >= hub.cfg->max_clients_per_user) {
		hub_unlock();
		return HUB_TOO_MANY_USER_CLIENTS;
	}
	if (!u) {
		size_t len = strlen(s->user);
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->name, s->user, len + 1);
		u->hash = uh;
		u->next = hub.users[uh & hub.user_mask];
		hub.users[uh & hub.user_mask] = u;
		if (++hub.nusers > 2 * (hub.user_mask + 1))
			users_grow();
	}
	u->count++;
	s->hub.user = u;
	s->hub.user_prev = NULL;
	s->hub.user_next = u->streams;
	if (u->streams)
		u->streams->hub.user_prev = s;
	u->streams = s;

	s->hub.client_hash = hash_str(s->client_id);
	s->hub.client_next = hub.clients[s->hub.client_hash & hub.client_mask];
	hub.clients[s->hub.client_hash & hub.client_mask] = s;
	if (++hub.nclients > 2 * (hub.client_mask + 1))
		clients_grow();

	s->start_seq = hub.seq;
	s->resumed = -1;
	if (last_event_id)
		collect_replay(s, last_event_id);
	l = loops_pick();
	s->loop = l;
	loop_post_stream(l, s);
	hub_unlock();
	return HUB_ATTACHED;
}

void hub_detach(struct stream *s)
{
	struct hub_user *u = s->hub.user;
	struct stream **pp;

	hub_lock();
	if (!u) {
		hub_unlock();
		return;
	}
	for (pp = &hub.clients[s->hub.client_hash & hub.client_mask]; *pp; pp = &(*pp)->hub.client_next) {
		if (*pp == s) {
			*pp = s->hub.client_next;
			break;
		}
	}
	hub.nclients--;
	if (s->hub.user_prev)
		s->hub.user_prev->hub.user_next = s->hub.user_next;
	else
		u->streams = s->hub.user_next;
	if (s->hub.user_next)
		s->hub.user_next->hub.user_prev = s->hub.user_prev;
	s->hub.user = NULL;
	if (--u->count == 0) {
		struct hub_user **up;
		for (up = &hub.users[u->hash & hub.user_mask]; *up; up = &(*up)->next) {
			if (*up == u) {
				*up = u->next;
				break;
			}
		}
		hub.nusers--;
		free(u);
	}
	hub_unlock();
}

/* ---- publish -------------------------------------------------------------- */

static long count_target_locked(enum msg_target target, const char *key)
{
	struct hub_user *u;

	switch (target) {
	case MSG_BROADCAST:
		return (long)hub.nclients;
	case MSG_USER:
		u = user_find(key, hash_str(key));
		return u ? u->count : 0;
	case MSG_CLIENT:
		return hub_client_locked(key) ? 1 : 0;
	default:
		return 0;
	}
}

/* Posts m to every loop with post (each takes a reference). Lock held.
 * Returns the loops to wake (bit i: loop i). */
static uint64_t post_all_loops(struct msg *m, int (*post)(struct loop *, struct msg *))
{
	uint64_t wake = 0;

	for (int i = 0; i < loops_count(); i++) {
		msg_ref(m, 1);
		if (post(loops_get(i), m))
			wake |= 1ULL << i;
	}
	return wake;
}

/* Posts m to the loops that hold its targets: a broadcast to every loop, a
 * message for a user or a client once per target stream, resolved here so
 * that the loops need not take the hub lock. Lock held. Returns the loops
 * to wake (bit i: loop i), woken by wake_loops once the lock is released,
 * so that no one waits on the hub lock behind a system call. */
static uint64_t post_locked(struct msg *m)
{
	uint64_t wake = 0;
	struct stream *s;

	switch (m->target) {
	case MSG_USER:
		for (s = hub_user_streams_locked(m->key); s; s = s->hub.user_next) {
			msg_ref(m, 1);
			if (loop_post_deliver(s->loop, m, s))
				wake |= 1ULL << loop_index(s->loop);
		}
		break;
	case MSG_CLIENT:
		s = hub_client_locked(m->key);
		if (s) {
			msg_ref(m, 1);
			if (loop_post_deliver(s->loop, m, s))
				wake |= 1ULL << loop_index(s->loop);
		}
		break;
	default:
		wake = post_all_loops(m, loop_post_publish);
		break;
	}
	return wake;
}

/* Publishers between their post and the end of their wake_loops: the
 * loops must not go away under them (hub_wait_wakers). */
static long wakers;

static void wake_loops(uint64_t wake, int deliver_here)
{
	for (int i = 0; wake; i++, wake >>= 1)
		if (wake & 1)
			loop_wake(loops_get(i), deliver_here);
	__atomic_sub_fetch(&wakers, 1, __ATOMIC_RELEASE);
}

void hub_wait_wakers(void)
{
	struct timespec pause = { 0, 1000000 };

	while (__atomic_load_n(&wakers, __ATOMIC_ACQUIRE) > 0)
		nanosleep(&pause, NULL);
}

int hub_publish(struct msg *m, long *recipients)
{
	uint64_t wake;

	hub_lock();
	if (hub.stopping) {
		hub_unlock();
		return -1;
	}
	m->seq = ++hub.seq;
	*recipients = count_target_locked(m->target, m->key);
	if (hub.hist_cap) {
		hist_expire(m->created);
		hist_append(m);
	}
	wake = post_locked(m);
	__atomic_add_fetch(&wakers, 1, __ATOMIC_RELAXED);
	hub_unlock();
	wake_loops(wake, m->target != MSG_BROADCAST);
	METRIC_ADD(published[m->target], 1);
	return 0;
}

long hub_disconnect(struct msg *final)
{
	long n;

	uint64_t wake = 0;

	hub_lock();
	final->seq = ++hub.seq;
	n = count_target_locked(final->target, final->key);
	/* every loop, which finds its targets itself (rare: no need to
	 * resolve them here) */
	if (n > 0)
		wake = post_all_loops(final, loop_post_disconnect);
	__atomic_add_fetch(&wakers, 1, __ATOMIC_RELAXED);
	hub_unlock();
	wake_loops(wake, 0);
	return n;
}

/* ---- stats ---------------------------------------------------------------- */

long hub_total_clients(void)
{
	long n;
	hub_lock();
	n = (long)hub.nclients;
	hub_unlock();
	return n;
}

long hub_history_len(void)
{
	long n;
	hub_lock();
	n = (long)hub.hist_len;
	hub_unlock();
	return n;
}

void hub_stats_json(struct buf *out)
{
	int first = 1;

	hub_lock();
	buf_printf(out, "{\"total_clients\":%zu,\"user_clients\":{", hub.nclients);
	for (size_t i = 0; i <= hub.user_mask; i++) {
		for (struct hub_user *u = hub.users[i]; u; u = u->next) {
			if (!first)
				buf_puts(out, ",");
			first = 0;
			buf_json_str(out, u->name);
			buf_printf(out, ":%ld", u->count);
		}
	}
	buf_puts(out, "}}");
	hub_unlock();
}

/* ---- history file --------------------------------------------------------- */

static const char *const target_names[] = { "broadcast", "user", "client" };

int hub_history_save(const char *path)
{
	char tmp[4096];
	FILE *f;
	size_t i;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* 0600: the history holds private send-to-user payloads */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		log_error("event=history_save_failed path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	hub_lock();
	for (i = 0; i < hub.hist_len; i++) {
		struct msg *m = hist_at(i);
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "created", json_object_new_int64(m->created));
		json_object_object_add(o, "target", json_object_new_string(target_names[m->target]));
		if (m->key)
			json_object_object_add(o, "key", json_object_new_string(m->key));
		json_object_object_add(o, "id", json_object_new_string(m->id));
		json_object_object_add(o, "bytes", json_object_new_string_len(m->bytes, (int)m->len));
		fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	i = hub.hist_len;
	hub_unlock();
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		log_error("event=history_save_failed path=%s error=\"%s\"", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	log_info("event=history_saved path=%s messages=%zu", path, i);
	return 0;
}

int hub_history_load(const char *path)
{
	char *line = NULL;
	size_t cap = 0, loaded = 0, bad = 0;
	ssize_t len;
	int64_t now = util_wall_s();
	FILE *f = fopen(path, "r");

	if (!f) {
		if (errno == ENOENT)
			return 0;
		log_error("event=history_load_failed path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	hub_lock();
	while ((len = getline(&line, &cap, f)) > 0) {
		struct json_object *o = util_json_parse(line, (size_t)len, 4), *v;
		const char *id, *key = NULL, *bytes;
		int target = -1;
		int64_t created;
		struct msg *m;

		if (!o || !json_object_is_type(o, json_type_object))
			goto skip;
		if (!json_object_object_get_ex(o, "target", &v) || !json_object_is_type(v, json_type_string))
			goto skip;
		for (int t = 0; t < 3; t++)
			if (strcmp(json_object_get_string(v), target_names[t]) == 0)
				target = t;
		if (target < 0)
			goto skip;
		if (json_object_object_get_ex(o, "key", &v)) {
			if (!json_object_is_type(v, json_type_string))
				goto skip;
			key = json_object_get_string(v);
		}
		if ((target != MSG_BROADCAST) != (key != NULL))
			goto skip;
		if (!json_object_object_get_ex(o, "id", &v) || !json_object_is_type(v, json_type_string))
			goto skip;
		id = json_object_get_string(v);
		if (!sse_valid_id(id, strlen(id)))
			goto skip;
		if (!json_object_object_get_ex(o, "created", &v) || !json_object_is_type(v, json_type_int))
			goto skip;
		created = json_object_get_int64(v);
		if (!json_object_object_get_ex(o, "bytes", &v) || !json_object_is_type(v, json_type_string) ||
		    json_object_get_string_len(v) == 0)
			goto skip;
		bytes = json_object_get_string(v);
		if (created + hub.cfg->history_ttl < now)
			goto drop;
		m = msg_new((enum msg_target)target, key, id, bytes, (size_t)json_object_get_string_len(v));
		m->created = created;
		m->seq = ++hub.seq;
		hist_append(m);
		msg_unref(m);
		loaded++;
		goto drop;
	skip:
		bad++;
	drop:
		json_object_put(o);
	}
	hub_unlock();
	free(line);
	fclose(f);
	if (bad)
		log_warn("event=history_load_skipped path=%s lines=%zu", path, bad);
	log_info("event=history_loaded path=%s messages=%zu", path, loaded);
	return 0;
}
