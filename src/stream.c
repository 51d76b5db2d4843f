/* stream: per-loop lists of streams, their output rings and the timers that
 * feed them (pings, token expiry, liveness). Sockets are non-blocking and
 * write interest is on only while output waits. A closed stream is detached
 * at once (on_close) and released by the loop after the next inbox drain, so
 * neither an event of the same pass nor a job posted before the close can
 * touch freed memory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fcgi.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"
#include "stream.h"

#define IOV_BATCH 128
#define TICK_MS 1000

struct sloop;

/* Laid out small: an idle stream is most of what a hub holds. */
struct stream {
	struct loop_io io;
	LIST_ENTRY(stream) link;         /* the loop's open streams */
	struct stream *dirty_next;       /* streams with output to write */
	const char *user;                /* the owner's */
	uint64_t start_seq;
	int64_t token_exp;
	uint64_t key_id;
	struct msg **q;                  /* ring of queued messages; NULL while empty */
	uint32_t qhead, qlen, qcap;
	uint32_t qoff;                   /* bytes of q[qhead] already written */
	uint32_t qbytes, qlimit;         /* at most 2 GiB: --max-queue-bytes + --max-replay-bytes */
	uint32_t last_queued_s;          /* loop seconds, for liveness comments */
	uint16_t request_id;
	uint8_t close_reason;            /* enum close_reason */
	uint8_t li;                      /* its loop's index (SL(s): its struct sloop) */
	unsigned dirty : 1, want_out : 1, closing : 1, slow : 1, dead : 1;
	char client_id[37];              /* a UUID */
	struct loop_later later;
};

LIST_HEAD(stream_list, stream);

/* A loop's streams; only its thread touches this. */
struct sloop {
	struct loop *loop;
	struct stream_list streams;
	long nstreams;
	struct stream *dirty;
	struct loop_timer ping, tick;
	unsigned rand_state;
};

/* Why a stream closed, for its log line. */
enum close_reason { CR_CLIENT_GONE, CR_WRITE_ERROR, CR_SLOW, CR_SETUP, CR_DISCONNECT, CR_SHUTDOWN, CR_TOKEN_EXPIRED,
		    CR_TOKEN_REVOKED };
static const char *const close_reasons[] = { "client_gone", "write_error", "slow_consumer", "setup_error",
					     "disconnect", "shutdown", "token_expired", "token_revoked" };

static const struct config *cfg;
static stream_close_fn *on_close;       /* the owner's (the hub's) */
static struct sloop *sloops;
static int nsloops;
static struct msg *liveness_msg;        /* ":\n\n", shared */

/* 64 loops at most (config.c): the index fits the stream's byte */
#define SL(s) (&sloops[(s)->li])

static struct sloop *sloop_of(struct loop *l)
{
	return &sloops[loop_index(l)];
}

/* ---- queue ---------------------------------------------------------------- */

static size_t framed_len(const struct msg *m)
{
	return m->raw ? m->len : fcgi_stdout_len(m->len);
}

static void mark_dirty(struct stream *s)
{
	if (s->dirty)
		return;
	s->dirty = 1;
	s->dirty_next = SL(s)->dirty;
	SL(s)->dirty = s;
}

/* Queues m on s, taking a reference. Past the queue bound (unless force)
 * the stream is marked a slow consumer and closed by the next flush. An
 * empty message is never queued: it has no records to frame. */
static int enqueue(struct stream *s, struct msg *m, int force)
{
	size_t framed = framed_len(m);

	if (m->len == 0)
		return 0;
	if (!force && s->qbytes + framed > s->qlimit) {
		s->slow = 1;
		mark_dirty(s);
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
	s->qbytes += (uint32_t)framed;
	s->last_queued_s = (uint32_t)(loop_now(SL(s)->loop) / 1000);
	mark_dirty(s);
	return 0;
}

static struct msg *private_msg(const struct buf *b)
{
	return msg_new(MSG_PRIVATE, NULL, NULL, b->data, b->len);
}

/* The records that end a response. */
static struct msg *end_records(uint16_t request_id)
{
	struct buf b = { 0 };
	struct msg *m;

	fcgi_put_end(&b, request_id);
	m = private_msg(&b);
	m->raw = 1;
	free(b.data);
	return m;
}

/* Queues the final event (may be NULL) and the end records; the stream
 * closes once they are written. */
static void finish(struct stream *s, struct msg *final, enum close_reason reason)
{
	struct msg *end;

	if (s->closing || s->dead)
		return;
	if (final)
		enqueue(s, final, 1);
	end = end_records(s->request_id);
	enqueue(s, end, 1);
	msg_unref(end);
	s->closing = 1;
	s->close_reason = (uint8_t)reason;
}

static void release(struct loop_later *x)
{
	struct stream *s = container_of(x, struct stream, later);

	for (uint32_t i = 0; i < s->qlen; i++)
		msg_unref(s->q[(s->qhead + i) & (s->qcap - 1)]);
	free(s->q);
	free(s);
}

static void stream_close(struct stream *s, enum close_reason reason)
{
	struct sloop *sl = SL(s);
	char user[160];

	if (s->dead)
		return;
	s->dead = 1;
	loop_io_del(sl->loop, &s->io);
	close(s->io.fd);
	s->io.fd = -1;
	LIST_REMOVE(s, link);
	sl->nstreams--;
	log_info("event=disconnect client=%s user=%s reason=%s", s->client_id, log_quote(user, sizeof(user), s->user),
		 close_reasons[reason]);
	on_close(s, stream_owner(s));
	loop_free_later(sl->loop, &s->later, release);
}

/* Drops n written bytes from the head of the queue. */
static void advance(struct stream *s, size_t n)
{
	while (n > 0 && s->qlen) {
		struct msg *m = s->q[s->qhead & (s->qcap - 1)];
		size_t framed = framed_len(m), left = framed - s->qoff;
		if (n < left) {
			s->qoff += (uint32_t)n;
			return;
		}
		n -= left;
		s->qoff = 0;
		s->qbytes -= (uint32_t)framed;
		s->qhead = (s->qhead + 1) & (s->qcap - 1);
		s->qlen--;
		msg_unref(m);
	}
	if (!s->qlen && s->q) {
		/* an idle stream keeps no ring: the next message allocates one */
		free(s->q);
		s->q = NULL;
		s->qcap = s->qhead = 0;
	}
}

/* Fills iov with the framed bytes of the queue from its head, at most
 * IOV_BATCH entries; hdr holds the record headers they point to. */
static int build_iov(struct stream *s, struct iovec *iov, FCGI_Header *hdr)
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
		for (size_t start = 0; start < m->len && niov < IOV_BATCH - 1; start += FCGI_MAX_CONTENT) {
			size_t clen = m->len - start < FCGI_MAX_CONTENT ? m->len - start : FCGI_MAX_CONTENT;
			if (off < pos + sizeof(FCGI_Header)) {
				size_t skip = off > pos ? off - pos : 0;
				fcgi_header(&hdr[niov], FCGI_STDOUT, s->request_id, clen);
				iov[niov].iov_base = (char *)&hdr[niov] + skip;
				iov[niov].iov_len = sizeof(FCGI_Header) - skip;
				niov++;
			}
			if (off < pos + sizeof(FCGI_Header) + clen) {
				size_t skip = off > pos + sizeof(FCGI_Header) ? off - pos - sizeof(FCGI_Header) : 0;
				iov[niov].iov_base = m->bytes + start + skip;
				iov[niov].iov_len = clen - skip;
				niov++;
			}
			pos += sizeof(FCGI_Header) + clen;
		}
	}
	return niov;
}

static void set_want_out(struct stream *s, int on)
{
	if (s->want_out == (unsigned)on)
		return;
	if (loop_io_set(SL(s)->loop, &s->io, LOOP_READ | (on ? LOOP_WRITE : 0)) == 0)
		s->want_out = on ? 1 : 0;
}

static void flush(struct stream *s)
{
	struct iovec iov[IOV_BATCH];
	FCGI_Header hdr[IOV_BATCH];
	char user[160];

	if (s->dead)
		return;
	if (s->slow) {
		METRIC_ADD(slow_consumer_total, 1);
		log_warn("event=slow_consumer client=%s user=%s queued_bytes=%" PRIu32 " limit=%" PRIu32, s->client_id,
			 log_quote(user, sizeof(user), s->user), s->qbytes, s->qlimit);
		stream_close(s, CR_SLOW);
		return;
	}
	while (s->qlen) {
		struct msghdr mh = { 0 };
		ssize_t n;

		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)build_iov(s, iov, hdr);
		n = sendmsg(s->io.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_want_out(s, 1);
				return;
			}
			stream_close(s, CR_WRITE_ERROR);
			return;
		}
		advance(s, (size_t)n);
	}
	set_want_out(s, 0);
	if (s->closing)
		stream_close(s, (enum close_reason)s->close_reason);
}

/* Before the loop sleeps: write what this pass queued. */
static void flush_dirty(struct loop *l, void *arg)
{
	struct sloop *sl = arg;

	while (sl->dirty) {
		struct stream *s = sl->dirty;
		sl->dirty = s->dirty_next;
		s->dirty = 0;
		flush(s);
	}
}

/* ---- events ---------------------------------------------------------------- */

static void on_io(struct loop *l, struct loop_io *io, unsigned events)
{
	struct stream *s = container_of(io, struct stream, io);

	if (s->dead)
		return;
	if (events & (LOOP_READ | LOOP_HUP)) {
		char buf[64];
		ssize_t n = recv(s->io.fd, buf, sizeof(buf), MSG_DONTWAIT);
		/* The front server sends nothing after the request: any input, EOF
		 * or error means the client is gone. */
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || (events & LOOP_HUP)) {
			stream_close(s, CR_CLIENT_GONE);
			return;
		}
	}
	if (events & LOOP_WRITE)
		mark_dirty(s);
}

/* ---- creation ------------------------------------------------------------- */

/* Where the owner's bytes start: after the stream, 8-byte aligned. */
#define OWNER_AT ((sizeof(struct stream) + 7) & ~(size_t)7)

struct stream *stream_new(struct loop *l, const struct stream_params *p)
{
	struct stream *s = xcalloc(1, OWNER_AT + p->owner_size);

	s->li = (uint8_t)loop_index(l);
	s->io.fd = p->fd;
	s->request_id = p->request_id;
	snprintf(s->client_id, sizeof(s->client_id), "%s", p->client_id);
	s->user = p->user;
	s->token_exp = p->token_exp;
	s->key_id = p->key_id;
	return s;
}

const char *stream_client_id(const struct stream *s)
{
	return s->client_id;
}

void *stream_owner(struct stream *s)
{
	return (char *)s + OWNER_AT;
}

struct stream *stream_of_owner(void *owner)
{
	return (struct stream *)(void *)((char *)owner - OWNER_AT);
}

struct loop *stream_loop(const struct stream *s)
{
	return SL(s)->loop;
}

const char *stream_user(const struct stream *s)
{
	return s->user;
}

void stream_start(struct stream *s, uint64_t start_seq, const char *connected_extra, struct msg **replay,
		  size_t nreplay)
{
	struct sloop *sl = SL(s);
	struct buf b = { 0 }, data = { 0 };
	size_t replay_bytes = 0;
	struct msg *m;
	int flags = fcntl(s->io.fd, F_GETFL);

	s->start_seq = start_seq;
	s->qlimit = (uint32_t)cfg->max_queue_bytes;
	LIST_INSERT_HEAD(&sl->streams, s, link);
	sl->nstreams++;
	METRIC_ADD(connections_total, 1);

	buf_puts(&b, "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
		     "X-Accel-Buffering: no\r\n\r\n");
	/* the stream opens with the reconnection delay, in a block of its own */
	buf_printf(&b, "retry: %ld\n\n", cfg->retry_ms);
	buf_printf(&data, "{\"client_id\":\"%s\",\"timestamp\":%" PRId64 "%s}", s->client_id, util_wall_s(),
		   connected_extra ? connected_extra : "");
	sse_encode(&b, NULL, "connected", -1, data.data);
	m = private_msg(&b);
	enqueue(s, m, 1);
	msg_unref(m);
	free(b.data);
	free(data.data);

	for (size_t i = 0; i < nreplay; i++) {
		replay_bytes += framed_len(replay[i]);
		enqueue(s, replay[i], 1);
		msg_unref(replay[i]);
	}
	free(replay);
	if (nreplay)
		METRIC_ADD(replayed_total, nreplay);
	/* Replayed messages are shared with the history, so they cost no new
	 * memory: they raise this stream's bound instead of counting against it. */
	s->qlimit = replay_bytes > UINT32_MAX - s->qlimit ? UINT32_MAX : s->qlimit + (uint32_t)replay_bytes;

	if (flags < 0 || fcntl(s->io.fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    loop_io_add(sl->loop, &s->io, s->io.fd, LOOP_READ, on_io) < 0) {
		log_error("event=stream_setup_failed client=%s error=\"%s\"", s->client_id, strerror(errno));
		stream_close(s, CR_SETUP);
	}
}

/* ---- jobs posted to the loop ------------------------------------------------ */

static int deliverable(const struct stream *s, const struct msg *m)
{
	return !s->dead && !s->closing && m->seq > s->start_seq;
}

static void deliver_job(struct loop *l, void *a, void *b)
{
	struct msg *m = a;
	struct stream *s = b;

	if (deliverable(s, m)) {
		enqueue(s, m, 0);
		METRIC_ADD(delivered_total, 1);
	}
	msg_unref(m);
}

static void batch_job(struct loop *l, void *a, void *b)
{
	struct msg *m = a;
	struct stream_batch *batch = b;
	uint64_t n = 0;

	for (size_t i = 0; i < batch->n; i++) {
		if (deliverable(batch->s[i], m)) {
			enqueue(batch->s[i], m, 0);
			n++;
		}
	}
	METRIC_ADD(delivered_total, n);
	free(batch);
	msg_unref(m);
}

static void broadcast_job(struct loop *l, void *a, void *b)
{
	struct sloop *sl = sloop_of(l);
	struct msg *m = a;
	struct stream *s;
	uint64_t n = 0;

	LIST_FOREACH(s, &sl->streams, link) {
		if (deliverable(s, m)) {
			enqueue(s, m, 0);
			n++;
		}
	}
	METRIC_ADD(delivered_total, n);
	msg_unref(m);
}

static void event_job(struct loop *l, void *a, void *b)
{
	struct msg *e = a;
	struct stream *s = b;

	if (deliverable(s, e))
		enqueue(s, e, 0);
	msg_unref(e);
}

static void finish_job(struct loop *l, void *a, void *b)
{
	struct msg *final = a;
	struct stream *s = b;

	if (!s->dead && !s->closing) {
		finish(s, final, CR_DISCONNECT);
		METRIC_ADD(disconnects_total, 1);
	}
	msg_unref(final);
}

int stream_post_deliver(struct stream *s, struct msg *m)
{
	return loop_post(SL(s)->loop, deliver_job, m, s);
}

int stream_post_deliver_batch(struct loop *l, struct msg *m, struct stream_batch *b)
{
	return loop_post(l, batch_job, m, b);
}

int stream_post_broadcast(struct loop *l, struct msg *m)
{
	return loop_post(l, broadcast_job, m, NULL);
}

int stream_post_event(struct stream *s, struct msg *e)
{
	return loop_post(SL(s)->loop, event_job, e, s);
}

int stream_post_finish(struct stream *s, struct msg *final)
{
	return loop_post(SL(s)->loop, finish_job, final, s);
}

/* Ends the streams of l for which pred(s, arg) holds, after the final event
 * named event (with an empty JSON object as data). */
static long finish_where(struct sloop *sl, int (*pred)(const struct stream *, void *), void *arg, const char *event,
			 enum close_reason reason)
{
	struct msg *final = NULL;
	struct stream *s;
	long n = 0;

	LIST_FOREACH(s, &sl->streams, link) {
		if (s->closing || !pred(s, arg))
			continue;
		if (!final) {
			struct buf b = { 0 };
			sse_encode(&b, NULL, event, -1, "{}");
			final = private_msg(&b);
			free(b.data);
		}
		finish(s, final, reason);
		n++;
	}
	msg_unref(final);
	return n;
}

/* Set by streams_revoke before it posts; read by the jobs after the
 * inbox's lock, so they see it. */
static int (*revoke_still_valid)(uint64_t key_id);

static int key_revoked(const struct stream *s, void *arg)
{
	return s->key_id && !revoke_still_valid(s->key_id);
}

static void revoke_job(struct loop *l, void *a, void *b)
{
	long n = finish_where(sloop_of(l), key_revoked, NULL, "token_revoked", CR_TOKEN_REVOKED);

	if (n)
		log_info("event=tokens_revoked loop=%d streams=%ld", loop_index(l), n);
}

void streams_revoke(int (*still_valid)(uint64_t key_id))
{
	revoke_still_valid = still_valid;
	for (int i = 0; i < nsloops; i++) {
		loop_post(sloops[i].loop, revoke_job, NULL, NULL);
		loop_wake(sloops[i].loop);
	}
}

/* ---- timers ----------------------------------------------------------------- */

static void on_ping(struct loop *l, struct loop_timer *t)
{
	struct sloop *sl = container_of(t, struct sloop, ping);
	struct buf b = { 0 }, data = { 0 };
	struct msg *m;
	struct stream *s;

	buf_printf(&data, "{\"timestamp\":%" PRId64 "}", util_wall_s());
	sse_encode(&b, NULL, "ping", -1, data.data);
	m = private_msg(&b);
	LIST_FOREACH(s, &sl->streams, link)
		if (!s->closing)
			enqueue(s, m, 0);
	msg_unref(m);
	free(b.data);
	free(data.data);
	loop_timer_set(l, t, loop_now(l) + cfg->ping_interval * 1000, on_ping);
}

static int token_expired(const struct stream *s, void *arg)
{
	return s->token_exp && *(int64_t *)arg >= s->token_exp;
}

/* Every second: tokens that expired, and liveness comments for streams that
 * had nothing to send for --liveness-interval (a front server that writes
 * nothing never learns that its client left). */
static void on_tick(struct loop *l, struct loop_timer *t)
{
	struct sloop *sl = container_of(t, struct sloop, tick);
	int64_t wall = util_wall_s(), now = loop_now(l);
	uint32_t now_s = (uint32_t)(now / 1000);
	struct stream *s;

	if (cfg->close_on_token_expiry)
		finish_where(sl, token_expired, &wall, "token_expired", CR_TOKEN_EXPIRED);
	if (cfg->liveness_interval > 0) {
		uint32_t idle = (uint32_t)cfg->liveness_interval;
		LIST_FOREACH(s, &sl->streams, link)
			if (!s->closing && s->qlen == 0 && now_s - s->last_queued_s >= idle)
				enqueue(s, liveness_msg, 0);
	}
	loop_timer_set(l, t, now + TICK_MS, on_tick);
}

/* ---- set-up and stop ----------------------------------------------------------- */

void streams_init(const struct config *c, stream_close_fn *closed)
{
	cfg = c;
	on_close = closed;
	nsloops = loops_count();
	sloops = xcalloc((size_t)nsloops, sizeof(*sloops));
	liveness_msg = msg_new(MSG_PRIVATE, NULL, NULL, ":\n\n", 3);
	for (int i = 0; i < nsloops; i++) {
		struct sloop *sl = &sloops[i];
		struct loop *l = loops_get(i);
		sl->loop = l;
		LIST_INIT(&sl->streams);
		sl->rand_state = (unsigned)util_wall_us() ^ (unsigned)(i * 7919);
		loop_timer_set(l, &sl->ping, util_mono_ms() + cfg->ping_interval * 1000, on_ping);
		loop_timer_set(l, &sl->tick, util_mono_ms() + TICK_MS, on_tick);
		loop_before_sleep(l, flush_dirty, sl);
	}
}

void streams_free(void)
{
	msg_unref(liveness_msg);
	liveness_msg = NULL;
	free(sloops);
	sloops = NULL;
	nsloops = 0;
}

void streams_stop(struct loop *l, long spread_ms)
{
	struct sloop *sl = sloop_of(l);
	struct stream *s;

	loop_timer_stop(l, &sl->ping);
	loop_timer_stop(l, &sl->tick);
	LIST_FOREACH(s, &sl->streams, link) {
		struct buf b = { 0 };
		long r = spread_ms > 0 ? (long)(rand_r(&sl->rand_state) % (unsigned long)(spread_ms + 1)) : 0;
		struct msg *m;

		if (s->closing)
			continue;
		buf_printf(&b, "retry: %ld\n\n", r);
		m = private_msg(&b);
		finish(s, m, CR_SHUTDOWN);
		msg_unref(m);
		free(b.data);
	}
}

long streams_count(struct loop *l)
{
	return sloop_of(l)->nstreams;
}

void streams_close_all(struct loop *l)
{
	struct sloop *sl = sloop_of(l);

	while (!LIST_EMPTY(&sl->streams))
		stream_close(LIST_FIRST(&sl->streams), CR_SHUTDOWN);
	sl->dirty = NULL;
}
