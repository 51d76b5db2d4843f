/* metrics: counters and their Prometheus text rendering. */
#include <inttypes.h>
#include <stdio.h>

#include "metrics.h"

struct metrics metrics;
static int64_t started_at;

static void counter(struct buf *out, const char *name, const char *help, uint64_t v)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void gauge(struct buf *out, const char *name, const char *help, int64_t v)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRId64 "\n", name, help, name, name, v);
}

void metrics_start_clock(void)
{
	started_at = util_mono_ms();
}

void metrics_render(struct buf *out, const struct metrics_gauges *g)
{
	static const char *const targets[] = { "broadcast", "user", "client", "topic" };

	gauge(out, "sse_active_connections", "Open event streams.", g->active_streams);
	counter(out, "sse_connections_total", "Event streams accepted since start.", METRIC_GET(connections_total));
	counter(out, "sse_messages_sent_total", "Messages queued to streams (one per stream per message).",
		METRIC_GET(delivered_total));
	buf_puts(out, "# HELP sse_messages_published_total Messages published, by target kind.\n"
		      "# TYPE sse_messages_published_total counter\n");
	for (int i = 0; i < 4; i++)
		buf_printf(out, "sse_messages_published_total{target=\"%s\"} %" PRIu64 "\n", targets[i],
			   METRIC_GET(published[i]));
	counter(out, "sse_messages_replayed_total", "Messages sent again from history after a Last-Event-ID.",
		METRIC_GET(replayed_total));
	counter(out, "sse_replays_refused_total",
		"Reconnects whose replay would pass --max-replay-bytes (told resumed:false instead).",
		METRIC_GET(replay_refused_total));
	counter(out, "sse_slow_consumer_closes_total", "Streams closed because their queue passed --max-queue-bytes.",
		METRIC_GET(slow_consumer_total));
	counter(out, "sse_disconnects_total", "Streams ended by the disconnect API.", METRIC_GET(disconnects_total));
	counter(out, "sse_rejected_total", "Streams refused by --max-clients or --max-clients-per-user.",
		METRIC_GET(rejected_limit_total));
	counter(out, "sse_requests_total", "FastCGI requests handled.", METRIC_GET(requests_total));
	counter(out, "sse_fastcgi_connections_total", "FastCGI connections accepted.", METRIC_GET(fcgi_connections_total));
	gauge(out, "sse_fastcgi_idle_connections", "Kept FastCGI connections waiting for their next request.",
	      METRIC_GET(fcgi_idle_connections));
	buf_puts(out, "# HELP sse_auth_failures_total Rejected tokens, by reason.\n"
		      "# TYPE sse_auth_failures_total counter\n");
	for (int r = 1; r < g->nauth_reasons && r < METRICS_MAX_REASONS; r++)
		buf_printf(out, "sse_auth_failures_total{reason=\"%s\"} %" PRIu64 "\n", g->auth_reasons[r],
			   METRIC_GET(auth_failures[r]));
	counter(out, "sse_auth_cache_hits_total", "Tokens accepted from the cache of tokens that verified before.",
		METRIC_GET(auth_cache_hits_total));
	gauge(out, "sse_history_messages", "Messages held for replay.", g->history_messages);
	gauge(out, "sse_topics", "Topics with at least one stream.", g->topics);
	if (g->backplane >= 0) {
		gauge(out, "sse_backplane_healthy", "1 while the Redis backplane delivers (its probe comes back).",
		      g->backplane);
		counter(out, "sse_backplane_published_total", "Publishes numbered by the cluster script from this node.",
			METRIC_GET(bus_published_total));
		counter(out, "sse_backplane_received_total", "Cluster messages delivered into this node, in sequence.",
			METRIC_GET(bus_received_total));
		counter(out, "sse_backplane_gap_repairs_total", "Gaps in the sequence filled from the Redis log.",
			METRIC_GET(bus_gap_repairs_total));
		counter(out, "sse_backplane_lost_total", "Sequence numbers that could not be recovered (trimmed from the log).",
			METRIC_GET(bus_lost_total));
		counter(out, "sse_backplane_resets_total", "Epoch changes (Redis lost its data, or a failover lost writes).",
			METRIC_GET(bus_resets_total));
		counter(out, "sse_backplane_bad_messages_total", "Malformed messages from Redis, logged and skipped.",
			METRIC_GET(bus_bad_messages_total));
		counter(out, "sse_redis_reconnects_total", "Redis connections lost and made again.",
			METRIC_GET(redis_reconnects_total));
	}
	gauge(out, "sse_uptime_seconds", "Seconds since the process started.", (util_mono_ms() - started_at) / 1000);
}
