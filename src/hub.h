/* hub: the registry (client id -> stream, user -> streams, topic ->
 * streams), the only module that resolves a target (everyone, a user, a
 * client, a topic) to streams, for publishing, disconnecting and
 * subscribing alike; message order, ids and the history.
 *
 * One mutex, the hub lock, guards the registry, the sequence and the
 * history; every operation under it is O(1), O(streams of the target) or
 * O(history), never O(all streams) nor O(all users): a broadcast is one post
 * per loop, which walks its own streams without the lock, and the per-user
 * counts of the stats live in a table of their own with its own lock.
 *
 * Order: every publish and disconnect takes a sequence number and is posted
 * to the loops' inboxes under the lock, so each loop sees them in one global
 * order. A stream gets a message only when the message's seq is above the
 * stream's start_seq (the seq when it opened); older ones reach it, if at
 * all, through replay from the history. */
#ifndef SSEHUB_HUB_H
#define SSEHUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "msg.h"
#include "sse.h"
#include "util.h"

/* The longest topic name, in bytes. */
#define HUB_MAX_TOPIC 200

/* Who opens a stream (what the token said) and on which topics. */
struct hub_who {
	const char *user;                /* 1..128 bytes, checked */
	int admin;
	int64_t token_exp;               /* first second the token is refused; 0: never */
	uint64_t key_id;                 /* the key that verified the token */
	char *const *topics;             /* ntopics names, checked (hub_topic_valid, allowed by
					  * the token); duplicates are kept once. NULL when 0.
					  * Copied: the caller's until hub_open_stream returns */
	size_t ntopics;
};

/* 1 when s[0..len) is a topic name: 1..HUB_MAX_TOPIC bytes of A-Z a-z 0-9
 * and _ - . : / @ (no NUL, no space, nothing to escape in JSON or a log). */
int hub_topic_valid(const char *s, size_t len);

enum hub_status {
	HUB_OK = 0,
	HUB_PENDING,                     /* the answer comes later, through w->done */
	HUB_STOPPING,                    /* the hub is stopping: nothing was done */
	HUB_UNAVAILABLE,                 /* the Redis backplane cannot take it now */
	HUB_TOO_MANY_CLIENTS,            /* --max-clients */
	HUB_TOO_MANY_USER_CLIENTS,       /* --max-clients-per-user (cluster-wide with Redis) */
	HUB_KEY_REVOKED,                 /* the key that verified the token is gone (SIGHUP) */
};

/* An operation that may wait for the Redis backplane. The caller sets done
 * and keeps w alive until done(w) runs (once, in the caller's loop thread)
 * when the operation returned HUB_PENDING; otherwise the results are in w
 * at return and done is not called. */
struct hub_wait {
	void (*done)(struct hub_wait *w);
	int cancelled;                   /* set by the caller when its connection is gone:
					  * a pending stream open is then undone */
	enum hub_status status;
	char id[SSE_MAX_ID + 1];         /* publish: the message id */
	long count;                      /* publish: recipients; disconnect: streams closed;
					  * subscribe: streams changed */
	long skipped;                    /* subscribe: streams over --max-topics-per-stream */
	int duplicate;                   /* publish with Redis: this id was published before */
	struct buf json;                 /* stats: the data object (the caller frees it) */
	int topics;                      /* stats, set by the caller: add "topic_clients" */
};

/* What to publish, or (for hub_disconnect) the final event to send. */
struct hub_pub {
	enum msg_target target;          /* broadcast, user, client, topic */
	const char *key;                 /* user id, client id or topic; NULL for broadcast */
	const char *id;                  /* the publisher's own id, or NULL: the hub makes one */
	const char *body;                /* the encoded event without its id line */
	size_t body_len;
};

/* Sets up the hub for cfg (which must outlive it). Returns 0 or -1. */
int hub_init(const struct config *cfg);
/* Starts the backplane's connections when --redis is given (after the
 * loops exist, before they run). */
void hub_start(void);
/* In l's thread at the stop: the backplane's connections of l close (their
 * pending operations end with HUB_UNAVAILABLE). */
void hub_stop_loop(struct loop *l);
/* Drops the history and the tables. Every stream must be closed. */
void hub_free(void);

/* Opens a stream for who on fd (FastCGI request request_id) in l, the
 * calling thread's loop: admits it (the per-user limit, cluster-wide with
 * Redis), registers it, queues the replay of the history after
 * last_event_id (NULL: none; an id this stream could not have received, or
 * a replay over --max-replay-bytes, is "unknown": resumed:false) and starts
 * it. HUB_OK: the fd belongs to the stream. Any other final status: the
 * caller still owns the fd and nothing changed. With HUB_PENDING the caller
 * must not touch the fd until w->done runs (or cancel w, which the hub then
 * honours by closing nothing and undoing the admission). */
enum hub_status hub_open_stream(struct loop *l, int fd, uint16_t request_id, const struct hub_who *who,
				const char *last_event_id, struct hub_wait *w);

/* For streams_init: a stream opened by hub_open_stream closed (owner is
 * the hub's record of it); it leaves the registry and the counts. */
struct stream;
void hub_stream_closed(struct stream *s, void *owner);

/* Publishes p to the streams it targets (on every node with Redis; a
 * MSG_TOPIC: the streams on topic p->key, O(their number)); w->id and
 * w->count (recipients) are set. */
enum hub_status hub_publish(struct loop *l, const struct hub_pub *p, struct hub_wait *w);

/* Ends every stream of a user (p->target MSG_USER) or one client
 * (MSG_CLIENT), each after the final event p->body; w->count says how many. */
enum hub_status hub_disconnect(struct loop *l, const struct hub_pub *p, struct hub_wait *w);

/* Adds (add 1) or removes (add 0) the topics[0..n) (valid, distinct) on
 * every open stream of a user (target MSG_USER, key the user id) or of one
 * client (MSG_CLIENT, key the client id). Each stream that changes gets a
 * "subscribed" / "unsubscribed" event {"topics":[...]} naming what changed
 * for it, in order with the publishes around it. A stream that would pass
 * --max-topics-per-stream is left as it is. Streams opened later are not
 * concerned. Alone: w->count is the number of streams changed (0 for an
 * unknown user or client) and w->skipped those left as they were.
 * With Redis every node changes its own streams when the bus brings the
 * change (HUB_PENDING until Redis numbered it); w->count is then the
 * number of streams the change reached cluster-wide (a node cannot know
 * whether the others' streams had the topics already), w->skipped 0 (each
 * node logs its own). */
enum hub_status hub_subscribe(struct loop *l, enum msg_target target, const char *key, char *const *topics,
			      size_t n, int add, struct hub_wait *w);

/* The stats data object into w->json: the seed's {"total_clients",
 * "user_clients"} for this node, or with Redis for the cluster, plus
 * "nodes" and this "node" (and "partial":true when Redis cannot answer).
 * w->topics adds "topic_clients" (streams per topic: this node's, in the
 * "node" object with Redis). The counts are read under a lock of their
 * own, never the hub lock: stats do not delay publishes. */
enum hub_status hub_stats(struct loop *l, struct hub_wait *w);
/* Topics with at least one stream on this node (O(1)). */
long hub_topics_count(void);

long hub_total_clients(void);
long hub_history_len(void);
/* -1 without a backplane, 1 while it is healthy, 0 while degraded. */
int hub_backplane(void);

/* From now on streams are refused and nothing is published or
 * disconnected (each answers HUB_STOPPING): nothing is posted to a loop any
 * more, so the loops may be stopped and freed. */
void hub_set_stopping(void);

/* Writes the history to path / reads it back (--history-file). Return 0 or
 * -1 (logged). A missing file on load is not an error. The file is written
 * 0600 through a temporary created exclusively; a symlink at path is
 * refused. */
int hub_history_save(const char *path);
int hub_history_load(const char *path);

#endif
