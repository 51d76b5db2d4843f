/* metrics: process-wide counters, pushed with relaxed atomics by the
 * modules that count (never pulled from them), rendered in the Prometheus
 * text format. A leaf: the gauges that are states of other modules are
 * handed to metrics_render by its caller. */
#ifndef SSEHUB_METRICS_H
#define SSEHUB_METRICS_H

#include <stdint.h>

#include "util.h"

#define METRICS_MAX_REASONS 16

struct metrics {
	uint64_t connections_total;      /* streams accepted */
	uint64_t published[4];           /* by msg_target: broadcast, user, client, topic */
	uint64_t delivered_total;        /* messages queued to streams (sse_messages_sent_total) */
	uint64_t replayed_total;         /* messages queued by Last-Event-ID replay */
	uint64_t replay_refused_total;   /* replays over --max-replay-bytes (resumed:false) */
	uint64_t slow_consumer_total;    /* streams closed at the queue bound */
	uint64_t disconnects_total;      /* streams ended by the disconnect API */
	uint64_t rejected_limit_total;   /* streams refused by --max-clients* */
	uint64_t requests_total;         /* FastCGI requests handled */
	uint64_t fcgi_connections_total; /* FastCGI connections accepted */
	int64_t fcgi_idle_connections;   /* gauge: kept connections between requests */
	uint64_t auth_failures[METRICS_MAX_REASONS]; /* by auth_result */
	uint64_t auth_cache_hits_total;
	/* the Redis backplane */
	uint64_t bus_published_total;    /* publishes numbered by the cluster script */
	uint64_t bus_received_total;     /* bus messages delivered into this node, in order */
	uint64_t bus_gap_repairs_total;  /* reads of the log to fill a gap */
	uint64_t bus_lost_total;         /* sequences that could not be recovered */
	uint64_t bus_resets_total;       /* epoch changes */
	uint64_t bus_bad_messages_total; /* malformed bus messages skipped */
	uint64_t redis_reconnects_total;
};

extern struct metrics metrics;

#define METRIC_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)
#define METRIC_GET(field) __atomic_load_n(&metrics.field, __ATOMIC_RELAXED)

/* What the caller knows and metrics does not. */
struct metrics_gauges {
	int64_t active_streams;
	int64_t history_messages;
	int64_t topics;                  /* topics with at least one stream */
	const char *const *auth_reasons; /* names of auth_failures[1 .. nauth_reasons) */
	int nauth_reasons;
	int backplane;                   /* -1: none, 0: degraded, 1: healthy */
};

/* Marks the process start for sse_uptime_seconds. */
void metrics_start_clock(void);

/* Appends every metric, with HELP and TYPE lines, to out. */
void metrics_render(struct buf *out, const struct metrics_gauges *g);

#endif
