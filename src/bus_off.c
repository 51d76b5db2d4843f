/* bus_off: the backplane of a build without hiredis (configure
 * --without-redis, or libhiredis-dev missing): one process alone, and a
 * clear refusal when the Redis options are given. */
#include <stdio.h>

#include "bus.h"

int bus_configure(const struct config *cfg)
{
	if (cfg->redis || cfg->redis_sentinel) {
		fprintf(stderr, "ssehub: this build has no Redis backplane (configured --without-redis, or hiredis was "
				"missing: install libhiredis-dev and build again)\n");
		return -1;
	}
	return 0;
}

void bus_start(const struct bus_hooks *hooks)
{
}

void bus_stop_loop(struct loop *l)
{
}

void bus_free(void)
{
}

int bus_enabled(void)
{
	return 0;
}

int bus_healthy(void)
{
	return 0;
}

const char *bus_node_id(void)
{
	return "";
}

void bus_epoch(char *out, size_t outlen)
{
	if (outlen)
		out[0] = '\0';
}

int bus_publish(struct loop *l, enum busmsg_kind kind, const char *key, const char *id, const char *body,
		size_t body_len, bus_done_fn *fn, void *arg)
{
	return -1;
}

void bus_open(struct loop *l, const char *user, const char *client, long limit, void (*fn)(void *arg, int ok),
	      void *arg)
{
	fn(arg, 1);
}

void bus_close(const char *user, const char *client)
{
}

void bus_topics(char *const *names, const long *delta, size_t n)
{
}

int bus_stats(struct loop *l, int topics, void (*fn)(void *arg, const struct buf *json), void *arg)
{
	return -1;
}

int bus_since(struct loop *l, uint64_t seq, const char *custom, bus_since_fn *fn, void *arg)
{
	return -1;
}
