/* stream: one open event stream, on the FastCGI connection it arrived on and
 * in the loop that read its request. Output waits in a ring of shared
 * messages and leaves with sendmsg (a small per-stream record header, then
 * the shared bytes) without blocking; pings, token expiry, liveness comments,
 * revoked keys and slow consumers are handled here. struct stream is private
 * to stream.c: other modules hold pointers and call these functions. Other
 * threads reach a stream only through its loop's inbox. */
#ifndef SSEHUB_STREAM_H
#define SSEHUB_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "msg.h"

struct stream;

/* Called once, in the stream's loop, when it closes (after its fd is
 * closed); the stream is released after the next inbox drain. */
typedef void stream_close_fn(struct stream *s, void *owner);

struct stream_params {
	int fd;
	uint16_t request_id;
	const char *client_id;           /* a UUID (36 characters), copied */
	const char *user;                /* the owner's string, read until on_close returns */
	int64_t token_exp;               /* first second the token is refused; 0: never */
	uint64_t key_id;                 /* the key that verified the token */
	size_t owner_size;               /* bytes of the owner's, allocated with the stream */
};

/* Sets up the per-loop state (timers, flush hook) of every loop. cfg must
 * outlive the streams; closed(s, owner) runs when any stream closes. Call
 * after loops_create, before loops_run. */
void streams_init(const struct config *cfg, stream_close_fn *closed);
void streams_free(void);

/* A stream in l (the calling thread's loop) for p; nothing written yet. */
struct stream *stream_new(struct loop *l, const struct stream_params *p);
/* The p->owner_size bytes of the owner's (zeroed, aligned for pointers and
 * 64-bit integers) in the stream's own allocation: an idle stream is most
 * of what a hub holds, and one malloc chunk costs less than two. They are
 * handed to on_close and freed with the stream, once no job can name it. */
void *stream_owner(struct stream *s);
/* The stream whose owner's bytes these are. */
struct stream *stream_of_owner(void *owner);
/* The client id s was opened with (stream_params.client_id). */
const char *stream_client_id(const struct stream *s);

/* Starts s: queues the response head, "retry:", the connected event (with
 * connected_extra, a JSON fragment such as ",\"resumed\":true", or NULL),
 * then replay[0..nreplay) (their references are taken over, replay is
 * freed), and watches the fd. Messages published after start_seq are
 * delivered; older ones only come through replay. If the fd cannot be
 * watched the stream closes at once (on_close runs). */
void stream_start(struct stream *s, uint64_t start_seq, const char *connected_extra, struct msg **replay,
		  size_t nreplay);

struct loop *stream_loop(const struct stream *s);
/* The user name s was opened with: stream_params.user, the owner's string. */
const char *stream_user(const struct stream *s);

/* ---- posts (any thread; the caller serialises them, e.g. under the hub
 * lock, so that every loop sees one order). Each takes over one reference
 * of m and returns 1 when the loop must be woken (loop_wake, after the
 * caller's locks are released). ---- */

/* m for stream s (a message for a user, a client or a topic). */
int stream_post_deliver(struct stream *s, struct msg *m);
/* m for the streams of a batch, all of loop l (a topic's streams there):
 * one post instead of one per stream. The batch is the caller's until the
 * post, then the job's (it frees it). */
struct stream_batch {
	size_t n;
	struct stream *s[];
};
int stream_post_deliver_batch(struct loop *l, struct msg *m, struct stream_batch *b);
/* m for every stream of loop l (a broadcast). */
int stream_post_broadcast(struct loop *l, struct msg *m);
/* e, a private event with its seq set by the caller (a subscribed /
 * unsubscribed notice), for stream s: ordered with the messages around it,
 * bound by the queue limit, not counted as a message sent. */
int stream_post_event(struct stream *s, struct msg *e);
/* End s after the final event m (the disconnect API). */
int stream_post_finish(struct stream *s, struct msg *final);

/* From any thread, after a key reload: every stream whose token was verified
 * by a key for which still_valid(key_id) is 0 ends with a token_revoked
 * event. still_valid must be thread-safe. */
void streams_revoke(int (*still_valid)(uint64_t key_id));

/* ---- the stop, in l's thread ---- */

/* Ends every stream of l: a random "retry:" in [0, spread_ms], then the end
 * records; each closes once they are written. */
void streams_stop(struct loop *l, long spread_ms);
/* Streams of l still open. */
long streams_count(struct loop *l);
/* Closes every stream of l at once. */
void streams_close_all(struct loop *l);

#endif
