/* metrics: counters and their Prometheus text rendering. */
#include <inttypes.h>
#include <stdio.h>

#include "auth.h"
#include "hub.h"
#include "metrics.h"
#include "server.h"

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

void metrics_render(struct buf *out)
{
	static const char *const targets[] = { "broadcast", "user", "client" };

	gauge(out, "sse_active_connections", "Open event streams.", hub_total_clients());
	counter(out, "sse_connections_total", "Event streams accepted since start.", METRIC_GET(connections_total));
	counter(out, "sse_messages_sent_total", "Messages queued to streams (one per stream per message).",
		METRIC_GET(delivered_total));
	buf_puts(out, "# HELP sse_messages_published_total Messages published, by target kind.\n"
		      "# TYPE sse_messages_published_total counter\n");
	for (int i = 0; i < 3; i++)
		buf_printf(out, "sse_messages_published_total{target=\"%s\"} %" PRIu64 "\n", targets[i],
			   METRIC_GET(published[i]));
	counter(out, "sse_messages_replayed_total", "Messages sent again from history after a Last-Event-ID.",
		METRIC_GET(replayed_total));
	counter(out, "sse_slow_consumer_closes_total", "Streams closed because their queue passed --max-queue-bytes.",
		METRIC_GET(slow_consumer_total));
	counter(out, "sse_disconnects_total", "Streams ended by the disconnect API.", METRIC_GET(disconnects_total));
	counter(out, "sse_rejected_total", "Streams refused by --max-clients or --max-clients-per-user.",
		METRIC_GET(rejected_limit_total));
	counter(out, "sse_requests_total", "FastCGI requests handled.", METRIC_GET(requests_total));
	counter(out, "sse_fastcgi_connections_total", "FastCGI connections accepted.", METRIC_GET(fcgi_connections_total));
	gauge(out, "sse_fastcgi_idle_connections", "Kept FastCGI connections waiting for their next request.",
	      server_idle_connections());
	buf_puts(out, "# HELP sse_auth_failures_total Rejected tokens, by reason.\n"
		      "# TYPE sse_auth_failures_total counter\n");
	for (int r = AUTH_MISSING_TOKEN; r < AUTH__COUNT; r++)
		buf_printf(out, "sse_auth_failures_total{reason=\"%s\"} %" PRIu64 "\n", auth_result_code((enum auth_result)r),
			   auth_failures((enum auth_result)r));
	counter(out, "sse_auth_cache_hits_total", "Tokens accepted from the cache of tokens that verified before.",
		auth_cache_hits());
	gauge(out, "sse_history_messages", "Messages held for replay.", hub_history_len());
	gauge(out, "sse_uptime_seconds", "Seconds since the process started.", (util_mono_ms() - started_at) / 1000);
}
