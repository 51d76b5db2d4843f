/* stream: loop threads that own streams and write their FastCGI records.
 * Nothing here blocks: sockets are non-blocking, output waits in per-stream
 * rings of shared messages, and EPOLLOUT is armed only while output waits.
 * Streams are never freed inside their own event handling: a closed stream
 * is marked dead and reaped after the loop's pass. */
#include <errno.h>
#include <fastcgi.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "fcgi_in.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"

#define RECORD_MAX 65535                 /* content bytes per FastCGI record */
#define IOV_BATCH 128
#define EVENT_BATCH 256
#define TICK_MS 1000

enum item_type { ITEM_STREAM, ITEM_PUBLISH, ITEM_DELIVER, ITEM_DISCONNECT, ITEM_STOP };

struct item {
	enum item_type type;
	void *p;
	struct stream *s;        /* ITEM_DELIVER: the one stream p goes to */
};

struct loop {
	pthread_t thread;
	int index;
	int epfd, evfd;
	const struct config *cfg;

	/* run: held by whoever works on the loop's streams: the loop thread
	 * between two epoll_waits, or a publishing thread that delivers its
	 * own message at once instead of waking the loop (loop_wake). Every
	 * field below "loop state" is guarded by it. Streams are freed only
	 * by the loop thread, after the events it was handed. */
	pthread_mutex_t run;
	int ended;                       /* the loop thread has returned */
	pthread_mutex_t lock;            /* guards the inbox and stop_spread */
	struct item *inbox;
	size_t inbox_len, inbox_cap;
	long stop_spread;

	/* loop state (run) */
	struct item *work;
	size_t work_cap;
	struct stream *streams;
	long nstreams;
	struct stream *dirty;
	struct stream **dead;            /* closed, detached from the hub, not yet freed */
	size_t ndead, dead_cap;
	size_t nreapable;                /* dead[0..nreapable): closed before the last drain */
	int64_t next_ping_ms;
	int stopping;
	int64_t stop_deadline_ms;
	unsigned rand_state;
};

static struct loop *loops;
static int nloops;
static unsigned pick_counter;
static long stop_deadline_ms_cfg = 1500;

/* ---- streams ---------------------------------------------------------- */

struct stream *stream_new(int fd, uint16_t request_id, const char *user, int admin, int64_t token_exp)
{
	struct stream *s = xcalloc(1, sizeof(*s));
	uuid_t u;

	s->fd = fd;
	s->request_id = request_id;
	s->admin = admin;
	s->token_exp = token_exp;
	s->user = xstrdup(user);
	s->resumed = -1;
	uuid_generate_random(u);
	uuid_unparse_lower(u, s->client_id);
	return s;
}

void stream_free(struct stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nreplay; i++)
		msg_unref(s->replay[i]);
	free(s->replay);
	for (uint32_t i = 0; i < s->qlen; i++)
		msg_unref(s->q[(s->qhead + i) & (s->qcap - 1)]);
	free(s->q);
	free(s->user);
	free(s);
}

size_t stream_framed_len(const struct msg *m)
{
	size_t records;

	if (m->raw)
		return m->len;
	records = m->len ? (m->len + RECORD_MAX - 1) / RECORD_MAX : 1;
	return m->len + records * FCGI_HEADER_LEN;
}

/* The records that end a response: an empty STDOUT and END_REQUEST. */
static struct msg *end_records(uint16_t request_id)
{
	unsigned char rec[3 * FCGI_HEADER_LEN];
	struct msg *m;

	fcgi_header(rec, FCGI_STDOUT, request_id, 0);
	fcgi_header(rec + 8, FCGI_END_REQUEST, request_id, 8);
	memset(rec + 16, 0, 8);               /* appStatus 0 */
	rec[16 + 4] = FCGI_REQUEST_COMPLETE;
	m = msg_new(MSG_PRIVATE, NULL, NULL, (const char *)rec, sizeof(rec));
	m->raw = 1;
	return m;
}

static void mark_dirty(struct loop *l, struct stream *s)
{
	if (s->dirty)
		return;
	s->dirty = 1;
	s->dirty_next = l->dirty;
	l->dirty = s;
}

/* Queues m on s, taking a reference. Past the queue bound (unless force)
 * the stream is marked as a slow consumer and closed by the next flush. */
static int enqueue(struct loop *l, struct stream *s, struct msg *m, int force)
{
	size_t framed = stream_framed_len(m);

	if (!force && s->qbytes + framed > s->qlimit) {
		s->slow = 1;
		mark_dirty(l, s);
		return -1;
	}
	if (s->qlen == s->qcap) {
		uint32_t cap = s->qcap ? s->qcap * 2 : 4;
		struct msg **q = xmalloc(cap * sizeof(*q));
		for (uint32_t i = 0; i < s->qlen; i++)
			q[i] = s->q[(s->qhead + i) & (s->qcap - 1)];
		free(s->q);
		s->q = q;
		s->qcap = cap;
		s->qhead = 0;
	}
	msg_ref(m, 1);
	s->q[(s->qhead + s->qlen) & (s->qcap - 1)] = m;
	s->qlen++;
	s->qbytes += framed;
	mark_dirty(l, s);
	return 0;
}

static void enqueue_text(struct loop *l, struct stream *s, const struct buf *b)
{
	struct msg *m = msg_new(MSG_PRIVATE, NULL, NULL, b->data, b->len);
	enqueue(l, s, m, 1);
	msg_unref(m);
}

/* Queues the final event (may be NULL) and the end records; the stream
 * closes once they are written. */
static void finish(struct loop *l, struct stream *s, struct msg *final, const char *reason)
{
	struct msg *end;

	if (s->closing || s->dead)
		return;
	if (final)
		enqueue(l, s, final, 1);
	end = end_records(s->request_id);
	enqueue(l, s, end, 1);
	msg_unref(end);
	s->closing = 1;
	s->close_reason = reason;
}

static void stream_close(struct loop *l, struct stream *s, const char *reason)
{
	if (s->dead)
		return;
	s->dead = 1;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	hub_detach(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		l->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	l->nstreams--;
	if (l->ndead == l->dead_cap) {
		l->dead_cap = l->dead_cap ? l->dead_cap * 2 : 64;
		l->dead = xrealloc(l->dead, l->dead_cap * sizeof(*l->dead));
	}
	l->dead[l->ndead++] = s;
	log_info("event=disconnect client=%s user=\"%s\" reason=%s", s->client_id, s->user, reason);
}

static void set_want_out(struct loop *l, struct stream *s, int on)
{
	struct epoll_event ev;

	if (s->want_out == (unsigned)on)
		return;
	ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0);
	ev.data.ptr = s;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
		s->want_out = on ? 1 : 0;
}

/* Drops n written bytes from the head of the queue. */
static void advance(struct stream *s, size_t n)
{
	while (n > 0 && s->qlen) {
		struct msg *m = s->q[s->qhead & (s->qcap - 1)];
		size_t framed = stream_framed_len(m), left = framed - s->qoff;
		if (n < left) {
			s->qoff += n;
			return;
		}
		n -= left;
		s->qoff = 0;
		s->qbytes -= framed;
		s->qhead = (s->qhead + 1) & (s->qcap - 1);
		s->qlen--;
		msg_unref(m);
	}
}

/* Fills iov with the framed bytes of the queue from its head, at most
 * IOV_BATCH entries. hdr holds the record headers the entries point to. */
static int build_iov(struct stream *s, struct iovec *iov, unsigned char (*hdr)[FCGI_HEADER_LEN])
{
	int niov = 0;

	for (uint32_t k = 0; k < s->qlen && niov < IOV_BATCH - 1; k++) {
		struct msg *m = s->q[(s->qhead + k) & (s->qcap - 1)];
		size_t off = k == 0 ? s->qoff : 0, pos = 0;

		if (m->raw) {
			iov[niov].iov_base = m->bytes + off;
			iov[niov++].iov_len = m->len - off;
			continue;
		}
		for (size_t start = 0; start < m->len && niov < IOV_BATCH - 1; start += RECORD_MAX) {
			size_t clen = m->len - start < RECORD_MAX ? m->len - start : RECORD_MAX;
			if (off < pos + FCGI_HEADER_LEN) {
				size_t skip = off > pos ? off - pos : 0;
				fcgi_header(hdr[niov], FCGI_STDOUT, s->request_id, clen);
				iov[niov].iov_base = hdr[niov] + skip;
				iov[niov].iov_len = FCGI_HEADER_LEN - skip;
				niov++;
			}
			if (off < pos + FCGI_HEADER_LEN + clen) {
				size_t skip = off > pos + FCGI_HEADER_LEN ? off - pos - FCGI_HEADER_LEN : 0;
				iov[niov].iov_base = m->bytes + start + skip;
				iov[niov].iov_len = clen - skip;
				niov++;
			}
			pos += FCGI_HEADER_LEN + clen;
		}
	}
	return niov;
}

static void flush(struct loop *l, struct stream *s)
{
	struct iovec iov[IOV_BATCH];
	unsigned char hdr[IOV_BATCH][FCGI_HEADER_LEN];

	if (s->dead)
		return;
	if (s->slow) {
		METRIC_ADD(slow_consumer_total, 1);
		log_warn("event=slow_consumer client=%s user=\"%s\" queued_bytes=%zu limit=%zu", s->client_id, s->user,
			 s->qbytes, s->qlimit);
		stream_close(l, s, "slow_consumer");
		return;
	}
	while (s->qlen) {
		struct msghdr mh = { 0 };
		ssize_t n;

		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)build_iov(s, iov, hdr);
		n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_want_out(l, s, 1);
				return;
			}
			stream_close(l, s, "write_error");
			return;
		}
		advance(s, (size_t)n);
	}
	set_want_out(l, s, 0);
	if (s->closing)
		stream_close(l, s, s->close_reason);
}

/* Frees the streams closed before the last inbox drain. A publisher may
 * have posted an ITEM_DELIVER naming a stream up to the moment it left the
 * hub; every such item was in the inbox when the next drain took it, so
 * after that drain nothing can name the stream any more. */
static void reap(struct loop *l)
{
	if (!l->nreapable)
		return;
	for (size_t i = 0; i < l->nreapable; i++)
		stream_free(l->dead[i]);
	memmove(l->dead, l->dead + l->nreapable, (l->ndead - l->nreapable) * sizeof(*l->dead));
	l->ndead -= l->nreapable;
	l->nreapable = 0;
}

/* ---- inbox -------------------------------------------------------------- */

/* Appends an item; returns 1 when the inbox was empty, that is, when the
 * loop may be asleep and must be woken (loop_wake). */
static int post_nowake(struct loop *l, enum item_type type, void *p, struct stream *s)
{
	int wake;

	pthread_mutex_lock(&l->lock);
	if (l->inbox_len == l->inbox_cap) {
		l->inbox_cap = l->inbox_cap ? l->inbox_cap * 2 : 64;
		l->inbox = xrealloc(l->inbox, l->inbox_cap * sizeof(*l->inbox));
	}
	l->inbox[l->inbox_len++] = (struct item){ type, p, s };
	wake = l->inbox_len == 1;
	pthread_mutex_unlock(&l->lock);
	return wake;
}

static void drain_inbox(struct loop *l);
static void flush_dirty(struct loop *l);

/* Wakes the loop thread. */
static void loop_signal(struct loop *l)
{
	uint64_t one = 1;
	ssize_t rc = write(l->evfd, &one, sizeof(one));
	(void)rc; /* an eventfd counter cannot overflow here */
}

/* The thread that made the inbox non-empty sees to it that it is drained.
 * With deliver_here, when the loop is idle (run is free) it delivers the
 * items itself, which saves waking the loop thread (an eventfd write, a
 * context switch, a read and an epoll_wait per message): for messages to
 * a few streams. A broadcast wakes every loop thread instead, so that the
 * loops write to their streams in parallel. */
void loop_wake(struct loop *l, int deliver_here)
{
	if (deliver_here && pthread_mutex_trylock(&l->run) == 0) {
		int ended = l->ended;
		if (!ended) {
			drain_inbox(l);
			flush_dirty(l);
		}
		pthread_mutex_unlock(&l->run);
		if (!ended)
			return;
	}
	loop_signal(l);
}

/* A new stream or the stop: for the loop thread itself (its timers, the
 * end of the stop), so the loop thread is always woken, even when the
 * inbox was not empty (whoever made it so may deliver it without waking). */
static void post(struct loop *l, enum item_type type, void *p)
{
	post_nowake(l, type, p, NULL);
	loop_signal(l);
}

int loop_index(const struct loop *l)
{
	return l->index;
}

void loop_post_stream(struct loop *l, struct stream *s)
{
	post(l, ITEM_STREAM, s);
}

int loop_post_deliver(struct loop *l, struct msg *m, struct stream *s)
{
	return post_nowake(l, ITEM_DELIVER, m, s);
}

int loop_post_publish(struct loop *l, struct msg *m)
{
	return post_nowake(l, ITEM_PUBLISH, m, NULL);
}

int loop_post_disconnect(struct loop *l, struct msg *final)
{
	return post_nowake(l, ITEM_DISCONNECT, final, NULL);
}

/* ---- item handlers ------------------------------------------------------ */

static void add_stream(struct loop *l, struct stream *s)
{
	struct epoll_event ev;
	struct buf b = { 0 };
	int flags = fcntl(s->fd, F_GETFL);
	size_t replay_bytes = 0;

	s->next = l->streams;
	s->prev = NULL;
	if (l->streams)
		l->streams->prev = s;
	l->streams = s;
	l->nstreams++;
	METRIC_ADD(connections_total, 1);

	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = s;
	if (flags < 0 || fcntl(s->fd, F_SETFL, flags | O_NONBLOCK) < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		log_error("event=stream_setup_failed client=%s error=\"%s\"", s->client_id, strerror(errno));
		stream_close(l, s, "setup_error");
		return;
	}

	buf_puts(&b, "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
		     "X-Accel-Buffering: no\r\n\r\n");
	{
		struct buf data = { 0 };
		buf_printf(&data, "{\"client_id\":\"%s\",\"timestamp\":%" PRId64, s->client_id, util_wall_s());
		if (s->resumed >= 0)
			buf_puts(&data, s->resumed ? ",\"resumed\":true" : ",\"resumed\":false");
		buf_puts(&data, "}");
		/* the stream opens with the reconnection delay, in a block of its own */
		buf_printf(&b, "retry: %ld\n\n", l->cfg->retry_ms);
		sse_encode(&b, NULL, "connected", -1, data.data);
		free(data.data);
	}
	enqueue_text(l, s, &b);
	free(b.data);

	for (size_t i = 0; i < s->nreplay; i++) {
		replay_bytes += stream_framed_len(s->replay[i]);
		enqueue(l, s, s->replay[i], 1);
		msg_unref(s->replay[i]);
	}
	if (s->nreplay)
		METRIC_ADD(replayed_total, s->nreplay);
	free(s->replay);
	s->replay = NULL;
	s->nreplay = 0;
	/* Replayed messages are shared with the history, so they cost no new
	 * memory: they raise this stream's bound instead of counting against it. */
	s->qlimit = (size_t)l->cfg->max_queue_bytes + replay_bytes;
	log_info("event=connect client=%s user=\"%s\" admin=%d loop=%d resumed=%d", s->client_id, s->user, s->admin,
		 l->index, s->resumed);
}

static int deliverable(const struct stream *s, const struct msg *m)
{
	return !s->dead && !s->closing && m->seq > s->start_seq;
}

/* Applies fn to the streams of this loop that m targets. */
static long for_targets(struct loop *l, struct msg *m, void (*fn)(struct loop *, struct stream *, struct msg *))
{
	long n = 0;
	struct stream *s, *next;

	switch (m->target) {
	case MSG_BROADCAST:
		for (s = l->streams; s; s = next) {
			next = s->next;
			if (deliverable(s, m)) {
				fn(l, s, m);
				n++;
			}
		}
		break;
	case MSG_USER:
		hub_lock();
		for (s = hub_user_streams_locked(m->key); s; s = s->hub.user_next) {
			if (s->loop == l && deliverable(s, m)) {
				fn(l, s, m);
				n++;
			}
		}
		hub_unlock();
		break;
	case MSG_CLIENT:
		hub_lock();
		s = hub_client_locked(m->key);
		if (s && s->loop == l && deliverable(s, m)) {
			fn(l, s, m);
			n++;
		}
		hub_unlock();
		break;
	default:
		break;
	}
	return n;
}

static void deliver_one(struct loop *l, struct stream *s, struct msg *m)
{
	enqueue(l, s, m, 0);
}

static void disconnect_one(struct loop *l, struct stream *s, struct msg *final)
{
	finish(l, s, final, "disconnect");
}

static void broadcast_private(struct loop *l, const struct buf *b)
{
	struct msg *m = msg_new(MSG_PRIVATE, NULL, NULL, b->data, b->len);

	for (struct stream *s = l->streams; s; s = s->next)
		if (!s->closing && !s->dead)
			enqueue(l, s, m, 0);
	msg_unref(m);
}

static void begin_stop(struct loop *l, long spread)
{
	l->stopping = 1;
	l->stop_deadline_ms = util_mono_ms() + stop_deadline_ms_cfg;
	for (struct stream *s = l->streams; s; s = s->next) {
		struct buf b = { 0 };
		long r = spread > 0 ? (long)(rand_r(&l->rand_state) % (unsigned long)(spread + 1)) : 0;
		buf_printf(&b, "retry: %ld\n\n", r);
		if (!s->closing && !s->dead) {
			struct msg *m = msg_new(MSG_PRIVATE, NULL, NULL, b.data, b.len);
			finish(l, s, m, "shutdown");
			msg_unref(m);
		}
		free(b.data);
	}
}

static void drain_inbox(struct loop *l)
{
	size_t n;
	long spread = -1;

	l->nreapable = l->ndead; /* see reap() */
	pthread_mutex_lock(&l->lock);
	n = l->inbox_len;
	if (n) {
		/* swap buffers so posters are never held up by our work */
		struct item *tmp = l->inbox;
		size_t cap = l->inbox_cap;
		l->inbox = l->work;
		l->inbox_cap = l->work_cap;
		l->work = tmp;
		l->work_cap = cap;
		l->inbox_len = 0;
	}
	pthread_mutex_unlock(&l->lock);

	for (size_t i = 0; i < n; i++) {
		struct item *it = &l->work[i];
		struct msg *m = it->p;
		switch (it->type) {
		case ITEM_STREAM:
			add_stream(l, it->p);
			break;
		case ITEM_PUBLISH:
			METRIC_ADD(delivered_total, (uint64_t)for_targets(l, m, deliver_one));
			msg_unref(m);
			break;
		case ITEM_DELIVER:
			if (deliverable(it->s, m)) {
				enqueue(l, it->s, m, 0);
				METRIC_ADD(delivered_total, 1);
			}
			msg_unref(m);
			break;
		case ITEM_DISCONNECT:
			METRIC_ADD(disconnects_total, (uint64_t)for_targets(l, m, disconnect_one));
			msg_unref(m);
			break;
		case ITEM_STOP:
			spread = (long)(intptr_t)it->p;
			break;
		}
	}
	if (spread >= 0 && !l->stopping)
		begin_stop(l, spread);
}

static void tick(struct loop *l, int64_t now_ms)
{
	int64_t wall = util_wall_s();

	if (now_ms >= l->next_ping_ms) {
		struct buf b = { 0 }, data = { 0 };
		buf_printf(&data, "{\"timestamp\":%" PRId64 "}", wall);
		sse_encode(&b, NULL, "ping", -1, data.data);
		broadcast_private(l, &b);
		free(b.data);
		free(data.data);
		l->next_ping_ms = now_ms + l->cfg->ping_interval * 1000;
	}
	if (l->cfg->close_on_token_expiry) {
		struct msg *final = NULL;
		for (struct stream *s = l->streams; s; s = s->next) {
			if (!s->token_exp || wall < s->token_exp || s->closing || s->dead)
				continue;
			if (!final) {
				struct buf b = { 0 };
				sse_encode(&b, NULL, "token_expired", -1, "{}");
				final = msg_new(MSG_PRIVATE, NULL, NULL, b.data, b.len);
				free(b.data);
			}
			finish(l, s, final, "token_expired");
		}
		msg_unref(final);
	}
}

static void on_stream_event(struct loop *l, struct stream *s, uint32_t events)
{
	if (s->dead)
		return; /* closed earlier in this batch; reaped after it */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		char buf[64];
		ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
		/* The front server sends nothing after the request: any input, EOF
		 * or error means the client is gone. */
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
		    (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
			stream_close(l, s, "client_gone");
			return;
		}
	}
	if (events & EPOLLOUT)
		mark_dirty(l, s);
}

static void flush_dirty(struct loop *l)
{
	while (l->dirty) {
		struct stream *s = l->dirty;
		l->dirty = s->dirty_next;
		s->dirty = 0;
		flush(l, s);
	}
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct epoll_event evs[EVENT_BATCH];
	int64_t next_tick = util_mono_ms() + TICK_MS;
	int timeout = TICK_MS;

	l->next_ping_ms = util_mono_ms() + l->cfg->ping_interval * 1000;
	for (;;) {
		int64_t now;
		int n = epoll_wait(l->epfd, evs, EVENT_BATCH, timeout);

		pthread_mutex_lock(&l->run);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t v;
				ssize_t rc = read(l->evfd, &v, sizeof(v));
				(void)rc;
			} else {
				on_stream_event(l, evs[i].data.ptr, evs[i].events);
			}
		}
		drain_inbox(l);
		now = util_mono_ms();
		if (now >= next_tick) {
			tick(l, now);
			next_tick = now + TICK_MS;
		}
		flush_dirty(l);
		reap(l);
		if (l->stopping && (l->nstreams == 0 || now >= l->stop_deadline_ms)) {
			while (l->streams)
				stream_close(l, l->streams, "shutdown");
			/* no drain follows: items left in the inbox are only
			 * unreferenced by loops_stop, never followed to a stream */
			l->nreapable = l->ndead;
			reap(l);
			/* streams handed over after the stop: end them too */
			l->ended = 1;
			pthread_mutex_unlock(&l->run);
			break;
		}
		timeout = l->stopping ? 20 : (int)(next_tick > now ? next_tick - now : 0);
		pthread_mutex_unlock(&l->run);
	}
	return NULL;
}

/* ---- loop set ----------------------------------------------------------- */

int loops_start(const struct config *cfg)
{
	nloops = (int)cfg->loops;
	loops = xcalloc((size_t)nloops, sizeof(*loops));
	for (int i = 0; i < nloops; i++) {
		struct loop *l = &loops[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
		l->index = i;
		l->cfg = cfg;
		l->rand_state = (unsigned)util_wall_us() ^ (unsigned)(i * 7919);
		pthread_mutex_init(&l->lock, NULL);
		pthread_mutex_init(&l->run, NULL);
		l->epfd = epoll_create1(EPOLL_CLOEXEC);
		l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
			log_error("event=loop_setup_failed error=\"%s\"", strerror(errno));
			return -1;
		}
	}
	for (int i = 0; i < nloops; i++) {
		if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]) != 0) {
			log_error("event=loop_start_failed");
			return -1;
		}
	}
	return 0;
}

void loops_stop(long spread_ms, long deadline_ms)
{
	stop_deadline_ms_cfg = deadline_ms;
	for (int i = 0; i < nloops; i++)
		post(&loops[i], ITEM_STOP, (void *)(intptr_t)spread_ms);
	for (int i = 0; i < nloops; i++) {
		struct loop *l = &loops[i];
		pthread_join(l->thread, NULL);
		/* Items posted after the loop ended: streams that raced the stop. */
		for (size_t k = 0; k < l->inbox_len; k++) {
			if (l->inbox[k].type == ITEM_STREAM) {
				struct stream *s = l->inbox[k].p;
				close(s->fd);
				hub_detach(s);
				stream_free(s);
			} else if (l->inbox[k].type != ITEM_STOP) {
				msg_unref(l->inbox[k].p);
			}
		}
		free(l->inbox);
		free(l->work);
		free(l->dead);
		close(l->epfd);
		close(l->evfd);
		pthread_mutex_destroy(&l->lock);
		pthread_mutex_destroy(&l->run);
	}
	free(loops);
	loops = NULL;
	nloops = 0;
}

struct loop *loops_pick(void)
{
	unsigned i = __atomic_fetch_add(&pick_counter, 1, __ATOMIC_RELAXED);
	return &loops[i % (unsigned)nloops];
}

int loops_count(void)
{
	return nloops;
}

struct loop *loops_get(int i)
{
	return &loops[i];
}
