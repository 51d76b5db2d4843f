/* bus: the Redis backplane. Many ssehub processes act as one hub: every
 * publish and disconnect is numbered by one Lua script (epoch + sequence,
 * logged in a Redis stream, published on the bus channel); every node reads
 * the bus in sequence order, repairs gaps from the log, and delivers into
 * its own hub. Each node keeps its stream counts in keys that expire with
 * it, so cluster stats and the cluster-wide per-user limit are exact and a
 * dead node drops out on its own.
 *
 * Threads: each loop has a command connection of its own (a publish is
 * answered in the loop that read it); loop 0 also holds the subscriber,
 * the probe, the heartbeat and this node's counts, so that every count
 * change reaches Redis in the order the hub made it. */
#ifndef SSEHUB_BUS_H
#define SSEHUB_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "busmsg.h"
#include "config.h"
#include "loop.h"
#include "util.h"

/* What the hub gives the bus (calls up, as callbacks). */
struct bus_hooks {
	/* A message of the cluster, in sequence order, in loop 0's thread. */
	void (*deliver)(const struct busmsg *m);
	/* The epoch changed: ids of the old one are unknown from now on. */
	void (*reset)(const char *epoch);
	/* Sequences up to seq will not be delivered (they came before this
	 * node started, or were lost): a replay may take them from the log. */
	void (*skip)(uint64_t seq);
	/* emit(arg, user, n) for every user with streams on this node. */
	void (*each_user)(void (*emit)(void *arg, const char *user, long n), void *arg);
	/* emit(arg, client_id, user) for every stream of this node. */
	void (*each_client)(void (*emit)(void *arg, const char *client, const char *user), void *arg);
	/* Adds delta streams of user to this node's stats (loop 0's thread). */
	void (*count)(const char *user, long delta);
	/* Adds delta[i] streams on topic names[i] to this node's stats (loop
	 * 0's thread). */
	void (*topics)(char *const *names, const long *delta, size_t n);
	/* emit(arg, topic, n) for every topic with streams on this node. */
	void (*each_topic)(void (*emit)(void *arg, const char *topic, long n), void *arg);
};

/* Reads the Redis options of cfg (cfg->redis NULL: no backplane, every
 * other function is then a no-op or reports "not enabled"). Prints a clear
 * reason to stderr and returns -1 on a bad option or password file. */
int bus_configure(const struct config *cfg);
/* Opens the connections in every loop (after loops_create, before the
 * threads run). */
void bus_start(const struct bus_hooks *hooks);
/* In loop l's thread at the stop: closes its connections. */
void bus_stop_loop(struct loop *l);
void bus_free(void);

int bus_enabled(void);
/* The subscriber is live (its probe came back) and loop 0 can write. */
int bus_healthy(void);
const char *bus_node_id(void);
/* The epoch of the ids being handed out ("" before the first message). */
void bus_epoch(char *out, size_t outlen);

/* ---- asynchronous operations, in loop l's thread ---- */

struct bus_result {
	int ok;                          /* 0: Redis failed or timed out */
	uint64_t seq;
	char epoch[BUSMSG_MAX_EPOCH + 1];
	long count;                      /* recipients / streams closed, cluster-wide */
	int duplicate;                   /* the id was published before: nothing sent */
};
typedef void bus_done_fn(void *arg, const struct bus_result *r);

/* Publishes (or, for the disconnect kinds, ends streams) across the
 * cluster. Returns 0 when fn(arg, result) will run, -1 when the backplane
 * is unavailable now (fn is not called). */
int bus_publish(struct loop *l, enum busmsg_kind kind, const char *key, const char *id, const char *body,
		size_t body_len, bus_done_fn *fn, void *arg);

/* A stream of user (client id client) opens on this node: checks the
 * cluster-wide limit (0: none) and counts it. fn(arg, 1) when admitted and
 * counted, fn(arg, 0) when the user is at the limit. When Redis is down
 * the stream is admitted on this node's count alone (and Redis learns of it
 * at the next resync). */
void bus_open(struct loop *l, const char *user, const char *client, long limit, void (*fn)(void *arg, int ok),
	      void *arg);
/* The stream counted by bus_open ended (or was never started). */
void bus_close(const char *user, const char *client);

/* Streams of this node joined (delta[i] > 0) or left topic names[i]:
 * counted in loop 0, in order with bus_open and bus_close, in this node's
 * stats (hooks->topics) and in Redis (a topic publish counts its
 * recipients from there). */
void bus_topics(char *const *names, const long *delta, size_t n);

/* The cluster stats: fn(arg, json) with the members of the stats object
 * ("total_clients":N,"user_clients":{...},"nodes":[...], and with topics
 * "topic_clients":{...}) or json NULL when Redis cannot answer. Returns -1
 * when unavailable (fn is not called). */
int bus_stats(struct loop *l, int topics, void (*fn)(void *arg, const struct buf *json), void *arg);

/* Messages after a Last-Event-ID: seq (or the publisher's own id when
 * custom is not NULL) in the current epoch. fn(arg, status, after,
 * entries, lens, n): status 1 with the sequence the id stands for and the
 * raw bus messages from that one on (oldest first), 0 when the id is
 * unknown or older than the log, -1 when Redis failed. */
typedef void bus_since_fn(void *arg, int status, uint64_t after, const char *const *entries, const size_t *lens,
			  size_t n);
int bus_since(struct loop *l, uint64_t seq, const char *custom, bus_since_fn *fn, void *arg);

#endif
