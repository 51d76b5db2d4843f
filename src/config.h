/* config: every option of the daemon, from the command line and from a
 * config file whose keys are the long option names. Parsed once at start-up;
 * the struct is read-only afterwards (key files are re-read by auth). */
#ifndef SSEHUB_CONFIG_H
#define SSEHUB_CONFIG_H

#include <stddef.h>

#define CONFIG_MAX_KEY_FILES 8

struct config {
	char *listen;            /* NULL: fd 0 must be a listening socket */
	unsigned socket_mode;
	long loops;
	char *secret_files[CONFIG_MAX_KEY_FILES];
	int n_secret_files;
	char *pubkey_files[CONFIG_MAX_KEY_FILES];
	int n_pubkey_files;
	char *jwt_alg;
	long jwt_leeway;
	int jwt_require_exp;
	char *jwt_issuer;        /* NULL: not checked */
	char *jwt_audience;      /* NULL: not checked */
	char *user_claim;
	char *admin_claim;
	char *admin_value;
	char *topics_claim;      /* claim listing the topic patterns a token allows */
	long max_topics_per_stream;
	char *token_cookie;      /* "" disables */
	char *token_query;       /* "" disables */
	int close_on_token_expiry;
	long ping_interval;      /* seconds */
	long liveness_interval;  /* seconds of silence before a ":" comment; 0: off */
	long retry_ms;
	long max_message_bytes;
	long max_queue_bytes;
	long max_replay_bytes;   /* one reconnect's replay; past it resumed:false */
	long history_size;
	long history_ttl;        /* seconds */
	char *history_file;
	long max_clients;        /* 0: no limit */
	long max_clients_per_user;
	int metrics_public;
	int log_syslog;
	int log_level;
	char *pid_file;
	long shutdown_spread_ms;
	long request_timeout;    /* seconds a FastCGI peer may take to send a request */
	long keepalive_timeout;  /* seconds a kept FastCGI connection may sit idle */
	/* the Redis backplane (all NULL: one process alone) */
	char *redis;             /* redis://[user@]host:port[/db] or unix:/path[?db=N] */
	char *redis_password_file;
	char *redis_sentinel;    /* host:port[,host:port...] */
	char *redis_master;      /* the Sentinel master name */
	char *redis_prefix;      /* names every key and channel */
	char *node_id;           /* NULL: random */
};

/* Fills cfg with the defaults. */
void config_defaults(struct config *cfg);

/* Parses argv (after loading the -c file, if any, so the command line wins).
 * Returns 0 to run, 1 when --help/--version was answered (exit 0), -1 on an
 * error already printed to stderr (exit 2). */
int config_parse_args(struct config *cfg, int argc, char **argv);

/* Sets one option by its long name, from the command line or a file.
 * Returns 0, or -1 with a message in err (size errlen). */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Loads "key = value" lines. Returns 0 or -1 after printing the file, line
 * and reason to stderr. */
int config_load_file(struct config *cfg, const char *path);

/* Releases the strings held by cfg. */
void config_free(struct config *cfg);

#endif
