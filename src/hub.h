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
					  * the token); duplicates are kept once. NULL when 0 */
	size_t ntopics;
};

/* 1 when s[0..len) is a topic name: 1..HUB_MAX_TOPIC bytes of A-Z a-z 0-9
 * and _ - . : / @ (no NUL, no space, nothing to escape in JSON or a log). */
int hub_topic_valid(const char *s, size_t len);

enum hub_open_result {
	HUB_OPENED = 0,
	HUB_TOO_MANY_CLIENTS,            /* --max-clients */
	HUB_TOO_MANY_USER_CLIENTS,       /* --max-clients-per-user */
	HUB_STOPPING,
};

/* Sets up the hub for cfg (which must outlive it). Returns 0 or -1. */
int hub_init(const struct config *cfg);
/* Drops the history and the tables. Every stream must be closed. */
void hub_free(void);

/* Opens a stream for who on fd (FastCGI request request_id) in l, the
 * calling thread's loop: registers it, queues the replay of the history
 * after last_event_id (NULL: none; an id this stream could not have
 * received, or a replay over --max-replay-bytes, is "unknown":
 * resumed:false) and starts it. On HUB_OPENED the fd belongs to the stream;
 * otherwise the caller still owns it and nothing changed. */
enum hub_open_result hub_open_stream(struct loop *l, int fd, uint16_t request_id, const struct hub_who *who,
				     const char *last_event_id);

/* Publishes m (target, key and id set; seq is assigned here) to the streams
 * it targets (a MSG_TOPIC: those on topic key, O(their number)). The hub takes its own references; the caller keeps its one.
 * Stores the number of streams it went to in *recipients. Returns 0, or -1
 * when the hub is stopping (nothing published). */
int hub_publish(struct msg *m, long *recipients);

/* Adds (add 1) or removes (add 0) the topics[0..n) (valid, distinct) on
 * every open stream of a user (target MSG_USER, key the user id) or of one
 * client (MSG_CLIENT, key the client id). Each stream that changes gets a
 * "subscribed" / "unsubscribed" event {"topics":[...]} naming what changed
 * for it, in order with the publishes around it. A stream that would pass
 * --max-topics-per-stream is left as it is and counted in *skipped. Returns
 * the number of streams changed (0 for an unknown user or client), or -1
 * when the hub is stopping (nothing changed). Streams opened later are not
 * concerned. */
long hub_subscribe(enum msg_target target, const char *key, char *const *topics, size_t n, int add, long *skipped);

/* Ends every stream of a user (final->target MSG_USER) or one client
 * (MSG_CLIENT), each after the final event final (its key names the
 * target). Returns the number of streams it ends, or -1 when stopping. */
long hub_disconnect(struct msg *final);

/* Appends the stats object {"total_clients":N,"user_clients":{...}}, with
 * "topic_clients":{...} (streams per topic) when with_topics. Holds the
 * stats lock, never the hub lock: it does not delay publishes. */
void hub_stats_json(struct buf *out, int with_topics);
/* Topics with at least one stream (O(1)). */
long hub_topics_count(void);
long hub_total_clients(void);
long hub_history_len(void);

/* Makes a fresh message id, unique across restarts. */
void hub_new_id(char *out, size_t outlen);

/* From now on streams are refused and nothing is published or
 * disconnected (each answers HUB_STOPPING / -1): nothing is posted to a
 * loop any more, so the loops may be stopped and freed. */
void hub_set_stopping(void);

/* Writes the history to path / reads it back (--history-file). Return 0 or
 * -1 (logged). A missing file on load is not an error. The file is written
 * 0600 through a temporary created exclusively; a symlink at path is
 * refused. */
int hub_history_save(const char *path);
int hub_history_load(const char *path);

#endif
