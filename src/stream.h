/* stream: the stream loops. Each loop is a thread with an epoll set that owns
 * its streams: it writes their FastCGI records without blocking (writev of a
 * per-stream record header plus shared message bytes), sends pings, notices
 * clients that leave, and closes slow consumers. Other threads talk to a
 * loop only through its inbox (mutex + eventfd). */
#ifndef SSEHUB_STREAM_H
#define SSEHUB_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hub.h"
#include "msg.h"

struct loop;

struct stream {
	/* Set by the acceptor before hand-off, read-only afterwards. */
	int fd;
	uint16_t request_id;
	int admin;
	int64_t token_exp;               /* 0: none */
	char client_id[37];
	char *user;                      /* owned */

	/* Set by hub_attach under the hub lock, before the loop sees s. */
	struct loop *loop;
	uint64_t start_seq;
	int resumed;                     /* -1 no Last-Event-ID, 0 unknown id, 1 resumed */
	struct msg **replay;             /* owned until the loop queues them */
	size_t nreplay;

	struct hub_link hub;             /* guarded by the hub lock */

	/* Owned by the loop thread. */
	struct stream *next, *prev;      /* the loop's streams */
	struct stream *dirty_next;       /* streams with output to flush */
	struct msg **q;                  /* ring of queued messages */
	uint32_t qhead, qlen, qcap;
	size_t qoff;                     /* bytes of q[qhead] already written */
	size_t qbytes, qlimit;
	unsigned dirty : 1, want_out : 1, closing : 1, slow : 1, dead : 1;
	const char *close_reason;
};

/* Allocates a stream for fd with a fresh client id; user is copied. */
struct stream *stream_new(int fd, uint16_t request_id, const char *user, int admin, int64_t token_exp);
/* Frees a stream that was never handed to a loop (closes nothing). */
void stream_free(struct stream *s);

/* Starts cfg->loops loop threads. Returns 0 or -1. */
int loops_start(const struct config *cfg);
/* Ends every stream (each gets a random retry in [0, spread_ms] first, then
 * the end-of-request records) and joins the loops, waiting at most
 * deadline_ms for slow readers. */
void loops_stop(long spread_ms, long deadline_ms);

/* The loop a new stream should go to. */
struct loop *loops_pick(void);
int loops_count(void);
struct loop *loops_get(int i);

/* Inbox posts; each takes over one reference of m. Called under the hub
 * lock so every loop sees one order. The message posts do not wake the
 * loop: they return 1 when it must be woken, which the caller does with
 * loop_wake after releasing the hub lock. A stream post wakes it. */
void loop_post_stream(struct loop *l, struct stream *s);
/* m for the loop to deliver to its streams that m targets (broadcast) */
int loop_post_publish(struct loop *l, struct msg *m);
/* m for exactly stream s of loop l, resolved by the publisher */
int loop_post_deliver(struct loop *l, struct msg *m, struct stream *s);
int loop_post_disconnect(struct loop *l, struct msg *final);
/* deliver_here: drain the inbox in this thread when the loop is idle,
 * rather than waking the loop thread (for messages to a few streams). */
void loop_wake(struct loop *l, int deliver_here);
/* l's position in 0 .. loops_count() - 1 */
int loop_index(const struct loop *l);

/* FastCGI framing of a message of len bytes: its size on the wire. */
size_t stream_framed_len(const struct msg *m);

#endif
