/* redis: one hiredis 0.14 async connection driven by a loop (its adapter
 * hooks watch the fd, level-triggered), that finds its server (an address,
 * a unix socket, or the master that Redis Sentinel names), logs in, keeps
 * every command under a deadline of our own (hiredis has none), and comes
 * back after a loss with backoff and jitter. It knows nothing of ssehub's
 * keys: bus.c is its user. Every function runs in the connection's loop. */
#ifndef SSEHUB_REDIS_H
#define SSEHUB_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct redisReply;
struct redis_conn;

/* Where the server is, parsed from --redis / --redis-sentinel. */
struct redis_target {
	char *host;                      /* numeric address, or NULL for a unix socket */
	int port;
	char *unix_path;
	int db;
	char *user;                      /* ACL user, or NULL */
	char *password;                  /* from --redis-password-file, or NULL */
	char **sentinels;                /* "host:port", n_sentinels of them; NULL: no Sentinel */
	int n_sentinels;
	char *master;                    /* the Sentinel master name */
};

/* Parses a --redis URL ("redis://[user@]host:port[/db]" or
 * "unix:/path/redis.sock[?db=N]") into t. A password in the URL is refused
 * (it would be visible in ps and logs). Host names are resolved here, once.
 * Returns 0, or -1 with a reason in err. */
int redis_parse_url(struct redis_target *t, const char *url, char *err, size_t errlen);
/* Parses --redis-sentinel "host:port[,host:port...]" into t. */
int redis_parse_sentinels(struct redis_target *t, const char *list, char *err, size_t errlen);
void redis_target_free(struct redis_target *t);

/* A reply (NULL: the connection failed, was closed, or the command's
 * deadline passed) to a command. The reply is hiredis's and lives only
 * during the call. */
typedef void redis_reply_fn(void *arg, struct redisReply *reply);
/* The connection became ready (logged in, database selected, the master
 * when Sentinel is used: up = 1) or was lost (up = 0). */
typedef void redis_state_fn(void *arg, int up);

/* A connection in l to t (which must outlive it). name is for logs. It
 * starts connecting at once and keeps trying until redis_conn_free. */
struct redis_conn *redis_conn_new(struct loop *l, const struct redis_target *t, const char *name,
				  redis_state_fn *on_state, void *arg);
/* Closes it; every pending reply callback runs with NULL first. */
void redis_conn_free(struct redis_conn *c);

int redis_ready(const struct redis_conn *c);

/* Sends argv (argc strings with their lengths) with a deadline of
 * timeout_ms; fn(arg, reply) runs exactly once. Returns 0, or -1 when the
 * connection is not ready (fn is not called). */
int redis_command(struct redis_conn *c, long timeout_ms, redis_reply_fn *fn, void *arg, int argc, const char **argv,
		  const size_t *argvlen);

/* Subscribes to the channels (the connection is then in subscribe mode and
 * takes no other command); fn(arg, message) runs for every message with
 * the reply array ["message", channel, payload], and with NULL when the
 * connection is lost (subscribe again once it is back). */
int redis_subscribe(struct redis_conn *c, redis_reply_fn *fn, void *arg, int nchannels, const char **channels);

/* Drops the connection now (as if it had failed) and reconnects later:
 * for a connection that answers no more (a frozen server). */
void redis_conn_reset(struct redis_conn *c, const char *why);

#endif
