/* config: option table, command line, config file. One table drives the
 * command line, the config file and --help, so they cannot drift apart. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

enum opt_kind { OPT_STR, OPT_STR_EMPTY_OK, OPT_LONG, OPT_BOOL, OPT_MODE, OPT_MULTI, OPT_LEVEL, OPT_LOGDEST, OPT_DEPRECATED };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off;      /* offset of the field in struct config */
	size_t count_off; /* OPT_MULTI: offset of the counter */
	long min, max;
	const char *arg, *help;
};

#define F(field) offsetof(struct config, field)
static const struct opt opts[] = {
	{ "listen", OPT_STR, F(listen), 0, 0, 0, "ADDR", "unix:PATH, HOST:PORT or [V6]:PORT (default: fd 0 is the socket)" },
	{ "socket-mode", OPT_MODE, F(socket_mode), 0, 0, 0777, "MODE", "mode of the unix socket created by --listen (0660)" },
	{ "acceptors", OPT_DEPRECATED, 0, 0, 1, 64, "N", "deprecated and ignored: every loop accepts" },
	{ "loops", OPT_LONG, F(loops), 0, 1, 64, "N", "loop threads, each accepting and serving (one per core)" },
	{ "jwt-secret-file", OPT_MULTI, F(secret_files), F(n_secret_files), 0, 0, "FILE", "HMAC secret (HS256/384/512); repeatable" },
	{ "jwt-public-key-file", OPT_MULTI, F(pubkey_files), F(n_pubkey_files), 0, 0, "FILE", "PEM public key (RS*/ES*); repeatable" },
	{ "jwt-alg", OPT_STR, F(jwt_alg), 0, 0, 0, "ALG", "the only accepted algorithm (HS256)" },
	{ "jwt-leeway", OPT_LONG, F(jwt_leeway), 0, 0, 3600, "SECONDS", "clock skew allowed on exp/nbf/iat (30)" },
	{ "jwt-require-exp", OPT_BOOL, F(jwt_require_exp), 0, 0, 0, "yes|no", "reject tokens without exp (yes)" },
	{ "jwt-issuer", OPT_STR, F(jwt_issuer), 0, 0, 0, "ISS", "required iss claim (not checked)" },
	{ "jwt-audience", OPT_STR, F(jwt_audience), 0, 0, 0, "AUD", "required aud value (not checked)" },
	{ "user-claim", OPT_STR, F(user_claim), 0, 0, 0, "NAME", "claim holding the user id, else sub (user_id)" },
	{ "admin-claim", OPT_STR, F(admin_claim), 0, 0, 0, "NAME", "claim that grants admin (role)" },
	{ "admin-value", OPT_STR, F(admin_value), 0, 0, 0, "VALUE", "value of --admin-claim for admins (admin)" },
	{ "topics-claim", OPT_STR, F(topics_claim), 0, 0, 0, "NAME", "claim holding the topic patterns a token may subscribe to (topics)" },
	{ "max-topics-per-stream", OPT_LONG, F(max_topics_per_stream), 0, 1, 1024, "N", "topics one stream may subscribe to (32)" },
	{ "token-cookie", OPT_STR_EMPTY_OK, F(token_cookie), 0, 0, 0, "NAME", "cookie holding the token, empty disables (token)" },
	{ "token-query", OPT_STR_EMPTY_OK, F(token_query), 0, 0, 0, "NAME", "query parameter holding the token, empty disables (token)" },
	{ "close-on-token-expiry", OPT_BOOL, F(close_on_token_expiry), 0, 0, 0, "yes|no", "end a stream when its token expires (yes)" },
	{ "ping-interval", OPT_LONG, F(ping_interval), 0, 1, 86400, "SECONDS", "keep-alive ping period (30)" },
	{ "liveness-interval", OPT_LONG, F(liveness_interval), 0, 0, 86400, "SECONDS", "a \":\" comment to a stream silent that long, so the front server notices a client that left; 0 = off (5)" },
	{ "retry", OPT_LONG, F(retry_ms), 0, 0, 86400000, "MS", "reconnection delay sent to clients (3000)" },
	{ "max-message-bytes", OPT_LONG, F(max_message_bytes), 0, 256, 16777216, "N", "largest request body and encoded event (65536)" },
	{ "max-queue-bytes", OPT_LONG, F(max_queue_bytes), 0, 4096, 1073741824, "N", "unsent bytes per stream before it is closed (1048576)" },
	{ "max-replay-bytes", OPT_LONG, F(max_replay_bytes), 0, 0, 1073741824, "N", "history one reconnect may replay; more is resumed:false (1048576)" },
	{ "history-size", OPT_LONG, F(history_size), 0, 0, 1000000, "N", "messages kept for Last-Event-ID replay (1000)" },
	{ "history-ttl", OPT_LONG, F(history_ttl), 0, 1, 31536000, "SECONDS", "age after which history is dropped (3600)" },
	{ "history-file", OPT_STR, F(history_file), 0, 0, 0, "PATH", "history saved on stop, loaded on start (none)" },
	{ "max-clients", OPT_LONG, F(max_clients), 0, 0, 10000000, "N", "open streams allowed, 0 = no limit (0)" },
	{ "max-clients-per-user", OPT_LONG, F(max_clients_per_user), 0, 0, 10000000, "N", "open streams per user, 0 = no limit (16)" },
	{ "metrics-public", OPT_BOOL, F(metrics_public), 0, 0, 0, "yes|no", "serve /metrics without a token (no)" },
	{ "log", OPT_LOGDEST, F(log_syslog), 0, 0, 0, "stderr|syslog", "where log lines go (stderr)" },
	{ "log-level", OPT_LEVEL, F(log_level), 0, 0, 0, "LEVEL", "error, warn, info or debug (info)" },
	{ "pid-file", OPT_STR, F(pid_file), 0, 0, 0, "PATH", "write the process id there (none)" },
	{ "shutdown-spread", OPT_LONG, F(shutdown_spread_ms), 0, 0, 600000, "MS", "spread of reconnect delays sent on stop (5000)" },
	{ "request-timeout", OPT_LONG, F(request_timeout), 0, 1, 3600, "SECONDS", "how long a FastCGI peer may take to send a request (10)" },
	{ "redis", OPT_STR, F(redis), 0, 0, 0, "URL", "Redis backplane: redis://[user@]host:port[/db] or unix:/path[?db=N] (none)" },
	{ "redis-password-file", OPT_STR, F(redis_password_file), 0, 0, 0, "FILE", "Redis password (never on the command line or in the URL)" },
	{ "redis-sentinel", OPT_STR, F(redis_sentinel), 0, 0, 0, "HOST:PORT,...", "find the Redis master through these Sentinels (none)" },
	{ "redis-master", OPT_STR, F(redis_master), 0, 0, 0, "NAME", "the master's name at the Sentinels" },
	{ "redis-prefix", OPT_STR, F(redis_prefix), 0, 0, 0, "PREFIX", "names every Redis key and channel, so hubs can share a Redis (ssehub)" },
	{ "node-id", OPT_STR, F(node_id), 0, 0, 0, "ID", "this node's name in logs and cluster stats (random)" },
	{ "keepalive-timeout", OPT_LONG, F(keepalive_timeout), 0, 1, 86400, "SECONDS", "how long a kept FastCGI connection may wait for its next request (120)" },
};
#undef F

void config_defaults(struct config *cfg)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->socket_mode = 0660;
	cfg->loops = cores > 0 ? (cores > 64 ? 64 : cores) : 1;
	cfg->jwt_alg = xstrdup("HS256");
	cfg->jwt_leeway = 30;
	cfg->jwt_require_exp = 1;
	cfg->user_claim = xstrdup("user_id");
	cfg->admin_claim = xstrdup("role");
	cfg->admin_value = xstrdup("admin");
	cfg->topics_claim = xstrdup("topics");
	cfg->max_topics_per_stream = 32;
	cfg->token_cookie = xstrdup("token");
	cfg->token_query = xstrdup("token");
	cfg->close_on_token_expiry = 1;
	cfg->ping_interval = 30;
	cfg->liveness_interval = 5;
	cfg->retry_ms = 3000;
	cfg->max_message_bytes = 65536;
	cfg->max_queue_bytes = 1048576;
	cfg->max_replay_bytes = 1048576;
	cfg->max_clients_per_user = 16;
	cfg->history_size = 1000;
	cfg->history_ttl = 3600;
	cfg->log_level = LOG_LVL_INFO;
	cfg->shutdown_spread_ms = 5000;
	cfg->request_timeout = 10;
	cfg->keepalive_timeout = 120;
	cfg->redis_prefix = xstrdup("ssehub");
}

/* The field of cfg at offset off (void *: the table's offsets come from
 * offsetof, so the field is suitably aligned for its type). */
static void *field_at(struct config *cfg, size_t off)
{
	return (char *)cfg + off;
}

static const struct opt *opt_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(opts); i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	const struct opt *o = opt_find(name);
	long v;

	if (!o) {
		snprintf(err, errlen, "unknown option '%s'", name);
		return -1;
	}
	switch (o->kind) {
	case OPT_STR:
		if (*value == '\0') {
			snprintf(err, errlen, "--%s needs a value", name);
			return -1;
		}
		/* fall through */
	case OPT_STR_EMPTY_OK: {
		char **field = (char **)field_at(cfg, o->off);
		free(*field);
		*field = xstrdup(value);
		return 0;
	}
	case OPT_LONG:
		if (util_parse_long(value, o->min, o->max, &v) < 0) {
			snprintf(err, errlen, "--%s: '%s' is not a number in %ld..%ld", name, value, o->min, o->max);
			return -1;
		}
		*(long *)field_at(cfg, o->off) = v;
		return 0;
	case OPT_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
			*(int *)field_at(cfg, o->off) = 1;
		else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
			*(int *)field_at(cfg, o->off) = 0;
		else {
			snprintf(err, errlen, "--%s: '%s' is not yes or no", name, value);
			return -1;
		}
		return 0;
	case OPT_MODE: {
		char *end;
		unsigned long m;
		errno = 0;
		m = strtoul(value, &end, 8);
		if (errno || *value == '\0' || *end != '\0' || m > 0777) {
			snprintf(err, errlen, "--%s: '%s' is not an octal mode like 0660", name, value);
			return -1;
		}
		*(unsigned *)field_at(cfg, o->off) = (unsigned)m;
		return 0;
	}
	case OPT_MULTI: {
		char **arr = (char **)field_at(cfg, o->off);
		int *count = (int *)field_at(cfg, o->count_off);
		if (*value == '\0') {
			snprintf(err, errlen, "--%s needs a file name", name);
			return -1;
		}
		if (*count >= CONFIG_MAX_KEY_FILES) {
			snprintf(err, errlen, "--%s given more than %d times", name, CONFIG_MAX_KEY_FILES);
			return -1;
		}
		arr[(*count)++] = xstrdup(value);
		return 0;
	}
	case OPT_LEVEL: {
		int lvl = log_parse_level(value);
		if (lvl < 0) {
			snprintf(err, errlen, "--%s: '%s' is not error, warn, info or debug", name, value);
			return -1;
		}
		*(int *)field_at(cfg, o->off) = lvl;
		return 0;
	}
	case OPT_DEPRECATED:
		/* accepted for a release so that old command lines still start */
		if (util_parse_long(value, o->min, o->max, &v) < 0) {
			snprintf(err, errlen, "--%s: '%s' is not a number in %ld..%ld", name, value, o->min, o->max);
			return -1;
		}
		fprintf(stderr, "ssehub: warning: --%s is deprecated and ignored (%s)\n", name, o->help);
		return 0;
	case OPT_LOGDEST:
		if (strcmp(value, "stderr") == 0)
			*(int *)field_at(cfg, o->off) = 0;
		else if (strcmp(value, "syslog") == 0)
			*(int *)field_at(cfg, o->off) = 1;
		else {
			snprintf(err, errlen, "--%s: '%s' is not stderr or syslog", name, value);
			return -1;
		}
		return 0;
	}
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

int config_load_file(struct config *cfg, const char *path)
{
	char line[4096], err[256];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "ssehub: cannot open config file %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *key, *value, *sep;
		lineno++;
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		sep = strpbrk(key, "= \t");
		if (sep) {
			value = sep + 1;
			if (*sep != '=') {
				/* "key value" or "key = value" */
				value = trim(value);
				if (*value == '=')
					value++;
			}
			*sep = '\0';
			value = trim(value);
		} else {
			value = (char *)"yes"; /* a bare flag name */
		}
		key = trim(key);
		if (config_set(cfg, key, value, err, sizeof(err)) < 0) {
			fprintf(stderr, "ssehub: %s:%d: %s\n", path, lineno, err);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: ssehub [-c FILE] [OPTION]...\n"
		"Server-Sent Events hub, a FastCGI responder for nginx and lighttpd.\n\n"
		"  -c, --config FILE         read options from FILE (keys are the long option names)\n");
	for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s %s", opts[i].name, opts[i].arg);
		fprintf(out, "      %-30s %s\n", left, opts[i].help);
	}
	fprintf(out,
		"  -h, --help                this text\n"
		"  -V, --version             the version\n\n"
		"Signals: TERM/INT stop cleanly, HUP re-reads the key files.\n");
}

int config_parse_args(struct config *cfg, int argc, char **argv)
{
	struct option longopts[ARRAY_LEN(opts) + 4];
	char err[256];
	size_t n = 0;
	int c, idx;

	for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
		longopts[n].name = opts[i].name;
		longopts[n].has_arg = required_argument;
		longopts[n].flag = NULL;
		longopts[n].val = 1000 + (int)i;
		n++;
	}
	longopts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n++] = (struct option){ "version", no_argument, NULL, 'V' };
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	/* First pass: -c, --help and --version, so the file loads before the
	 * command line overrides it. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:hV", longopts, &idx)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == 'V') {
			printf("ssehub %s\n", PACKAGE_VERSION);
			return 1;
		}
		if (c == 'c' && config_load_file(cfg, optarg) < 0)
			return -1;
	}
	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:hV", longopts, &idx)) != -1) {
		if (c == 'c')
			continue;
		if (c >= 1000) {
			if (config_set(cfg, opts[c - 1000].name, optarg, err, sizeof(err)) < 0) {
				fprintf(stderr, "ssehub: %s\n", err);
				return -1;
			}
			continue;
		}
		fprintf(stderr, "Try 'ssehub --help' for the options.\n");
		return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "ssehub: unexpected argument '%s'\nTry 'ssehub --help' for the options.\n", argv[optind]);
		return -1;
	}
	return 0;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
		if (opts[i].kind == OPT_STR || opts[i].kind == OPT_STR_EMPTY_OK) {
			free(*(char **)field_at(cfg, opts[i].off));
		} else if (opts[i].kind == OPT_MULTI) {
			char **arr = (char **)field_at(cfg, opts[i].off);
			int count = *(int *)field_at(cfg, opts[i].count_off);
			for (int k = 0; k < count; k++)
				free(arr[k]);
		}
	}
	memset(cfg, 0, sizeof(*cfg));
}
