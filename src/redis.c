/* redis: the hiredis adapter on our loop, the handshake (AUTH, SELECT,
 * ROLE), Sentinel discovery, deadlines, and reconnection. hiredis may run
 * the cleanup hook inside our read callback, so what the hooks touch (struct
 * link) is released with loop_free_later, never at once. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "util.h"

#define HANDSHAKE_TIMEOUT_MS 2000
#define SENTINEL_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* The adapter's state for one redisAsyncContext. */
struct link {
	struct loop_io io;
	struct loop *loop;
	redisAsyncContext *ac;
	unsigned want;
	void (*on_gone)(struct link *k, const char *why); /* after hiredis cleaned up */
	void *owner;
	struct loop_later later;
};

struct pend {
	struct pend *next;
	struct redis_conn *c;
	redis_reply_fn *fn;
	void *arg;
	int64_t deadline;
};

enum conn_state { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_READY };

struct redis_conn {
	struct loop *loop;
	const struct redis_target *t;
	char *name;
	redis_state_fn *on_state;
	void *arg;
	enum conn_state state;
	struct link *link;               /* the server connection, or NULL */
	struct link *probe;              /* a Sentinel being asked, or NULL */
	int sentinel_next;
	int attempts;                    /* failed attempts in a row */
	int handshake_left;
	struct pend *head, *tail;        /* commands waiting for replies, in order */
	struct loop_timer retry, deadline;
	redis_reply_fn *sub_fn;
	void *sub_arg;
	int freeing;
	unsigned rand_state;
};

/* ---- targets --------------------------------------------------------------- */

static int resolve(const char *host, char **out, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	char addr[NI_MAXHOST];
	int rc = getaddrinfo(host, NULL, &hints, &res);

	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	rc = getnameinfo(res->ai_addr, res->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
	freeaddrinfo(res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s", host);
		return -1;
	}
	*out = xstrdup(addr);
	return 0;
}

/* "host:port" or "[v6]:port" into a resolved host and a port. */
static int host_port(const char *s, size_t len, char **host, int *port, char *err, size_t errlen)
{
	char buf[300], *name = buf, *colon;
	long p;

	if (len == 0 || len >= sizeof(buf)) {
		snprintf(err, errlen, "expected host:port");
		return -1;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (buf[0] == '[') {
		char *end = strchr(buf, ']');
		if (!end || end[1] != ':') {
			snprintf(err, errlen, "expected [address]:port in '%s'", buf);
			return -1;
		}
		*end = '\0';
		name = buf + 1;
		colon = end + 1;
	} else if (!(colon = strrchr(buf, ':'))) {
		snprintf(err, errlen, "expected host:port in '%s'", buf);
		return -1;
	}
	*colon = '\0';
	if (util_parse_long(colon + 1, 1, 65535, &p) < 0 || !*name) {
		snprintf(err, errlen, "bad host or port in '%.*s'", (int)len, s);
		return -1;
	}
	*port = (int)p;
	return resolve(name, host, err, errlen);
}

int redis_parse_url(struct redis_target *t, const char *url, char *err, size_t errlen)
{
	long db = 0;

	if (strncmp(url, "unix:", 5) == 0) {
		const char *q = strchr(url + 5, '?');
		size_t plen = q ? (size_t)(q - url - 5) : strlen(url + 5);
		if (plen == 0) {
			snprintf(err, errlen, "--redis unix: needs a socket path");
			return -1;
		}
		if (q && (strncmp(q, "?db=", 4) != 0 || util_parse_long(q + 4, 0, 1000000, &db) < 0)) {
			snprintf(err, errlen, "--redis: the only parameter of a unix: URL is ?db=N");
			return -1;
		}
		t->unix_path = xstrndup(url + 5, plen);
	} else if (strncmp(url, "redis://", 8) == 0) {
		const char *p = url + 8, *at = strchr(p, '@'), *slash;
		if (at) {
			if (memchr(p, ':', (size_t)(at - p))) {
				snprintf(err, errlen, "--redis: a password in the URL is refused (it shows in ps and logs); "
						      "use --redis-password-file");
				return -1;
			}
			if (at > p)
				t->user = xstrndup(p, (size_t)(at - p));
			p = at + 1;
		}
		slash = strchr(p, '/');
		if (host_port(p, slash ? (size_t)(slash - p) : strlen(p), &t->host, &t->port, err, errlen) < 0)
			return -1;
		if (slash && slash[1] && util_parse_long(slash + 1, 0, 1000000, &db) < 0) {
			snprintf(err, errlen, "--redis: bad database number '%s'", slash + 1);
			return -1;
		}
	} else {
		snprintf(err, errlen, "--redis: expected redis://[user@]host:port[/db] or unix:/path[?db=N]");
		return -1;
	}
	t->db = (int)db;
	return 0;
}

int redis_parse_sentinels(struct redis_target *t, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char *host;
		int port;
		if (host_port(p, len, &host, &port, err, errlen) < 0)
			return -1;
		t->sentinels = xrealloc(t->sentinels, (size_t)(t->n_sentinels + 1) * sizeof(*t->sentinels));
		t->sentinels[t->n_sentinels] = xmalloc(strlen(host) + 16);
		sprintf(t->sentinels[t->n_sentinels], "%s:%d", host, port);
		t->n_sentinels++;
		free(host);
		if (!end)
			break;
		p = end + 1;
	}
	if (!t->n_sentinels) {
		snprintf(err, errlen, "--redis-sentinel: expected host:port[,host:port...]");
		return -1;
	}
	return 0;
}

void redis_target_free(struct redis_target *t)
{
	free(t->host);
	free(t->unix_path);
	free(t->user);
	if (t->password)
		util_wipe(t->password, strlen(t->password));
	free(t->password);
	for (int i = 0; i < t->n_sentinels; i++)
		free(t->sentinels[i]);
	free(t->sentinels);
	free(t->master);
	memset(t, 0, sizeof(*t));
}

/* ---- the adapter ------------------------------------------------------------ */

static void link_watch(struct link *k)
{
	if (!k->ac)
		return;
	if (!k->io.added) {
		if (k->want && loop_io_add(k->loop, &k->io, k->ac->c.fd, k->want, k->io.fn) < 0)
			log_error("event=redis_watch_failed error=\"%s\"", strerror(errno));
	} else if (k->want) {
		loop_io_set(k->loop, &k->io, k->want);
	} else {
		loop_io_del(k->loop, &k->io);
	}
}

static void ev_add_read(void *p)
{
	struct link *k = p;
	k->want |= LOOP_READ;
	link_watch(k);
}

static void ev_del_read(void *p)
{
	struct link *k = p;
	k->want &= ~(unsigned)LOOP_READ;
	link_watch(k);
}

static void ev_add_write(void *p)
{
	struct link *k = p;
	k->want |= LOOP_WRITE;
	link_watch(k);
}

static void ev_del_write(void *p)
{
	struct link *k = p;
	k->want &= ~(unsigned)LOOP_WRITE;
	link_watch(k);
}

static void link_release(struct loop_later *x)
{
	free(container_of(x, struct link, later));
}

/* hiredis is done with the context (it closes the fd after this). */
static void ev_cleanup(void *p)
{
	struct link *k = p;
	char why[128];

	snprintf(why, sizeof(why), "%s", k->ac && k->ac->err && k->ac->errstr ? k->ac->errstr : "connection closed");
	loop_io_del(k->loop, &k->io);
	k->want = 0;
	k->ac = NULL;
	if (k->on_gone)
		k->on_gone(k, why);
	loop_free_later(k->loop, &k->later, link_release);
}

static void on_link_io(struct loop *l, struct loop_io *io, unsigned events)
{
	struct link *k = container_of(io, struct link, io);

	/* each call may end the context (ev_cleanup sets k->ac to NULL) */
	if (k->ac && (events & (LOOP_READ | LOOP_HUP)))
		redisAsyncHandleRead(k->ac);
	if (k->ac && (events & LOOP_WRITE))
		redisAsyncHandleWrite(k->ac);
}

/* A context to host:port or a unix path, driven by l. NULL on an
 * immediate failure (logged). */
static struct link *link_open(struct loop *l, const char *host, int port, const char *unix_path,
			      void (*on_gone)(struct link *, const char *), void *owner)
{
	redisAsyncContext *ac = unix_path ? redisAsyncConnectUnix(unix_path) : redisAsyncConnect(host, port);
	struct link *k;

	if (!ac)
		return NULL;
	if (ac->err) {
		log_debug("event=redis_connect_failed address=%s error=\"%s\"", unix_path ? unix_path : host, ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	k = xcalloc(1, sizeof(*k));
	k->loop = l;
	k->ac = ac;
	k->io.fn = on_link_io;
	k->on_gone = on_gone;
	k->owner = owner;
	ac->ev.data = k;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	return k;
}

/* ---- reconnection ------------------------------------------------------------- */

static void start(struct redis_conn *c);

static void on_retry(struct loop *l, struct loop_timer *t)
{
	start(container_of(t, struct redis_conn, retry));
}

/* A failed attempt or a lost connection: try again after a delay that
 * doubles up to 5 s, with jitter so that many nodes do not come back at
 * the same instant. */
static void schedule_retry(struct redis_conn *c)
{
	int64_t base = BACKOFF_MIN_MS;

	if (c->freeing)
		return;
	for (int i = 0; i < c->attempts && base < BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > BACKOFF_MAX_MS)
		base = BACKOFF_MAX_MS;
	c->attempts++;
	c->state = ST_IDLE;
	loop_timer_set(c->loop, &c->retry,
		       loop_now(c->loop) + base / 2 + (int64_t)(rand_r(&c->rand_state) % (unsigned)(base / 2 + 1)),
		       on_retry);
}

static void lost(struct redis_conn *c, const char *why)
{
	int was_ready = c->state == ST_READY;

	if (c->state == ST_IDLE)
		return;
	c->state = ST_IDLE;
	if (was_ready) {
		log_warn("event=redis_lost name=%s reason=\"%s\"", c->name, why);
		METRIC_ADD(redis_reconnects_total, 1);
	}
	schedule_retry(c);
	if (was_ready && c->on_state)
		c->on_state(c->arg, 0);
}

/* The server link went away (hiredis cleaned it up). */
static void conn_gone(struct link *k, const char *why)
{
	struct redis_conn *c = k->owner;

	if (c->link == k)
		c->link = NULL;
	loop_timer_stop(c->loop, &c->deadline);
	lost(c, why);
}

/* ---- commands and deadlines ----------------------------------------------------- */

static void arm_deadline(struct redis_conn *c)
{
	if (c->head)
		loop_timer_set(c->loop, &c->deadline, c->head->deadline, c->deadline.fn);
	else
		loop_timer_stop(c->loop, &c->deadline);
}

static void on_deadline(struct loop *l, struct loop_timer *t)
{
	struct redis_conn *c = container_of(t, struct redis_conn, deadline);

	if (c->head && c->head->deadline <= loop_now(l))
		redis_conn_reset(c, "a command passed its deadline");
	else
		arm_deadline(c);
}

static void unlink_pend(struct redis_conn *c, struct pend *p)
{
	struct pend **pp = &c->head, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			if (c->tail == p)
				c->tail = prev;
			return;
		}
	}
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct pend *p = privdata;
	struct redis_conn *c = p->c;

	unlink_pend(c, p);
	arm_deadline(c);
	p->fn(p->arg, reply);
	free(p);
}

static int send_argv(struct redis_conn *c, long timeout_ms, redis_reply_fn *fn, void *arg, int argc, const char **argv,
		     const size_t *argvlen)
{
	struct pend *p;

	if (!c->link || !c->link->ac)
		return -1;
	p = xcalloc(1, sizeof(*p));
	p->c = c;
	p->fn = fn;
	p->arg = arg;
	p->deadline = loop_now(c->loop) + timeout_ms;
	if (redisAsyncCommandArgv(c->link->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
		free(p);
		return -1;
	}
	if (c->tail)
		c->tail->next = p;
	else
		c->head = p;
	c->tail = p;
	if (c->head == p)
		arm_deadline(c);
	return 0;
}

int redis_command(struct redis_conn *c, long timeout_ms, redis_reply_fn *fn, void *arg, int argc, const char **argv,
		  const size_t *argvlen)
{
	if (c->state != ST_READY)
		return -1;
	return send_argv(c, timeout_ms, fn, arg, argc, argv, argvlen);
}

static int send_str(struct redis_conn *c, long timeout_ms, redis_reply_fn *fn, int argc, const char **argv)
{
	size_t lens[8];

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return send_argv(c, timeout_ms, fn, c, argc, argv, lens);
}

/* ---- handshake ------------------------------------------------------------------ */

static int reply_ok(const redisReply *r)
{
	return r && r->type != REDIS_REPLY_ERROR;
}

static void handshake_step(void *arg, redisReply *r)
{
	struct redis_conn *c = arg;

	if (c->state != ST_CONNECTING)
		return;
	if (!reply_ok(r)) {
		/* never the password in the log: only what the server said */
		log_warn("event=redis_handshake_failed name=%s error=\"%s\"", c->name,
			 r ? r->str : "no answer");
		redis_conn_reset(c, "handshake failed");
		return;
	}
	if (--c->handshake_left > 0)
		return;
	c->state = ST_READY;
	c->attempts = 0;
	log_info("event=redis_ready name=%s", c->name);
	if (c->on_state)
		c->on_state(c->arg, 1);
}

/* ROLE: with Sentinel, the server must be the master (a replica that was
 * named before a failover would refuse writes). */
static void role_step(void *arg, redisReply *r)
{
	struct redis_conn *c = arg;

	if (c->state == ST_CONNECTING && reply_ok(r) && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
	    r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") != 0) {
		log_warn("event=redis_not_master name=%s role=%s", c->name, r->element[0]->str);
		redis_conn_reset(c, "not the master");
		return;
	}
	handshake_step(arg, r);
}

static void connect_server(struct redis_conn *c, const char *host, int port)
{
	const struct redis_target *t = c->t;
	char db[24];

	c->link = link_open(c->loop, host, port, host ? NULL : t->unix_path, conn_gone, c);
	if (!c->link) {
		schedule_retry(c);
		return;
	}
	c->state = ST_CONNECTING;
	c->handshake_left = 0;
	/* AUTH is just the first command; all of them go in one write */
	if (t->password) {
		const char *argv[3] = { "AUTH", t->user ? t->user : t->password, t->password };
		c->handshake_left++;
		send_str(c, HANDSHAKE_TIMEOUT_MS, handshake_step, t->user ? 3 : 2, argv);
	}
	if (t->db) {
		const char *argv[2] = { "SELECT", db };
		snprintf(db, sizeof(db), "%d", t->db);
		c->handshake_left++;
		send_str(c, HANDSHAKE_TIMEOUT_MS, handshake_step, 2, argv);
	}
	{
		const char *argv[1] = { t->n_sentinels ? "ROLE" : "PING" };
		c->handshake_left++;
		send_str(c, HANDSHAKE_TIMEOUT_MS, role_step, 1, argv);
	}
}

/* ---- Sentinel ------------------------------------------------------------------- */

static void ask_sentinel(struct redis_conn *c);

static void probe_gone(struct link *k, const char *why)
{
	struct redis_conn *c = k->owner;

	if (c->probe == k)
		c->probe = NULL;
}

static void sentinel_answer(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_conn *c = privdata;
	redisReply *r = reply;
	struct link *k = c->probe;
	char *host = NULL;
	long port = 0;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[1]->type == REDIS_REPLY_STRING && util_parse_long(r->element[1]->str, 1, 65535, &port) == 0)
		host = xstrdup(r->element[0]->str);
	if (k && k->ac)
		redisAsyncDisconnect(k->ac); /* after this reply: a clean close */
	if (c->state != ST_RESOLVING || c->freeing) {
		free(host);
		return;
	}
	if (!host) {
		ask_sentinel(c);
		return;
	}
	log_debug("event=redis_master name=%s master=%s:%ld", c->name, host, port);
	connect_server(c, host, (int)port);
	free(host);
}

/* Asks the next Sentinel for the master's address; after the last one, a
 * retry later. */
static void ask_sentinel(struct redis_conn *c)
{
	const struct redis_target *t = c->t;

	while (c->sentinel_next < t->n_sentinels) {
		const char *s = t->sentinels[c->sentinel_next++];
		const char *colon = strrchr(s, ':');
		char host[256];
		struct link *k;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
		k = link_open(c->loop, host, atoi(colon + 1), NULL, probe_gone, c);
		if (!k)
			continue;
		if (redisAsyncCommand(k->ac, sentinel_answer, c, "SENTINEL get-master-addr-by-name %s", t->master) != REDIS_OK) {
			redisAsyncFree(k->ac);
			continue;
		}
		c->probe = k;
		return;
	}
	schedule_retry(c);
}

static void start(struct redis_conn *c)
{
	if (c->freeing)
		return;
	if (c->t->n_sentinels) {
		c->state = ST_RESOLVING;
		c->sentinel_next = 0;
		ask_sentinel(c);
		return;
	}
	connect_server(c, c->t->host, c->t->port);
}

/* ---- the connection ------------------------------------------------------------------- */

struct redis_conn *redis_conn_new(struct loop *l, const struct redis_target *t, const char *name,
				  redis_state_fn *on_state, void *arg)
{
	struct redis_conn *c = xcalloc(1, sizeof(*c));

	c->loop = l;
	c->t = t;
	c->name = xstrdup(name);
	c->on_state = on_state;
	c->arg = arg;
	c->deadline.fn = on_deadline;
	c->rand_state = (unsigned)util_wall_us() ^ (unsigned)(uintptr_t)c;
	start(c);
	return c;
}

int redis_ready(const struct redis_conn *c)
{
	return c->state == ST_READY;
}

void redis_conn_reset(struct redis_conn *c, const char *why)
{
	struct link *k = c->link;

	if (k && k->ac) {
		log_warn("event=redis_reset name=%s reason=\"%s\"", c->name, why);
		/* the pending callbacks run with NULL, then ev_cleanup -> conn_gone */
		redisAsyncFree(k->ac);
	} else {
		lost(c, why);
	}
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_conn *c = privdata;
	redisReply *r = reply;

	if (!c->sub_fn)
		return;
	if (!r) {
		c->sub_fn(c->sub_arg, NULL);
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "message") == 0)
		c->sub_fn(c->sub_arg, r);
}

int redis_subscribe(struct redis_conn *c, redis_reply_fn *fn, void *arg, int nchannels, const char **channels)
{
	const char *argv[8];
	size_t lens[8];

	if (c->state != ST_READY || nchannels > 7)
		return -1;
	c->sub_fn = fn;
	c->sub_arg = arg;
	argv[0] = "SUBSCRIBE";
	lens[0] = 9;
	for (int i = 0; i < nchannels; i++) {
		argv[i + 1] = channels[i];
		lens[i + 1] = strlen(channels[i]);
	}
	return redisAsyncCommandArgv(c->link->ac, on_message, c, nchannels + 1, argv, lens) == REDIS_OK ? 0 : -1;
}

/* Not from a reply callback of c: hiredis would defer the free. */
void redis_conn_free(struct redis_conn *c)
{
	if (!c)
		return;
	c->freeing = 1;
	c->on_state = NULL;
	loop_timer_stop(c->loop, &c->retry);
	loop_timer_stop(c->loop, &c->deadline);
	if (c->probe && c->probe->ac)
		redisAsyncFree(c->probe->ac);
	if (c->link && c->link->ac)
		redisAsyncFree(c->link->ac);
	c->sub_fn = NULL;
	free(c->name);
	free(c);
}
