/* metrics: process-wide counters, updated with relaxed atomics from any
 * thread, rendered in the Prometheus text format. */
#ifndef SSEHUB_METRICS_H
#define SSEHUB_METRICS_H

#include <stdint.h>

#include "util.h"

struct metrics {
	uint64_t connections_total;      /* streams accepted */
	uint64_t published[3];           /* by msg_target: broadcast, user, client */
	uint64_t delivered_total;        /* messages queued to streams (sse_messages_sent_total) */
	uint64_t replayed_total;         /* messages queued by Last-Event-ID replay */
	uint64_t slow_consumer_total;    /* streams closed at the queue bound */
	uint64_t disconnects_total;      /* streams ended by the disconnect API */
	uint64_t rejected_limit_total;   /* streams refused by --max-clients* */
	uint64_t requests_total;         /* FastCGI requests handled */
	uint64_t fcgi_connections_total; /* FastCGI connections accepted */
};

extern struct metrics metrics;

#define METRIC_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)
#define METRIC_GET(field) __atomic_load_n(&metrics.field, __ATOMIC_RELAXED)

/* Marks the process start for sse_uptime_seconds. */
void metrics_start_clock(void);

/* Appends every metric, with HELP and TYPE lines, to out. */
void metrics_render(struct buf *out);

#endif
