/* main: start-up, signals and the orderly stop. Signals are blocked in every
 * thread and taken synchronously here with sigwait, so no handler runs
 * concurrently with the rest of the program. The only threads are the
 * loops and this one. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "bus.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "stream.h"

#define STOP_FLUSH_MS 1500       /* time streams and busy requests get to finish */

static int write_pid_file(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
		fprintf(stderr, "ssehub: cannot write pid file %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* SIGHUP: new keys, and streams whose key is gone end at once. */
static void reload(void)
{
	if (auth_reload() == 0)
		streams_revoke(auth_key_active);
}

int main(int argc, char **argv)
{
	struct config cfg;
	sigset_t sigs;
	int rc, sig;

	config_defaults(&cfg);
	rc = config_parse_args(&cfg, argc, argv);
	if (rc != 0) {
		config_free(&cfg);
		return rc > 0 ? 0 : 2;
	}
	log_setup((enum log_level)cfg.log_level, cfg.log_syslog);
	if (bus_configure(&cfg) < 0) {
		config_free(&cfg);
		return 2;
	}
	if (auth_init(&cfg) < 0 || server_listen(&cfg) < 0) {
		bus_free();
		config_free(&cfg);
		return 1;
	}

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	metrics_start_clock();
	hub_init(&cfg);
	api_init(&cfg);
	if (cfg.history_file)
		hub_history_load(cfg.history_file);
	if (server_start(&cfg) < 0) {
		fprintf(stderr, "ssehub: cannot start the loop threads\n");
		hub_set_stopping();
		server_stop(0, 0);
		server_close();
		return 1;
	}
	if (cfg.pid_file && write_pid_file(cfg.pid_file) < 0) {
		hub_set_stopping();
		server_stop(0, 0);
		server_close();
		return 1;
	}
	log_info("event=start version=%s pid=%ld listen=%s loops=%ld alg=%s redis=%s", PACKAGE_VERSION, (long)getpid(),
		 cfg.listen ? cfg.listen : "fd:0", cfg.loops, cfg.jwt_alg, bus_enabled() ? "yes" : "no");

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload();
			continue;
		}
		break;
	}
	log_info("event=stopping signal=%s clients=%ld", sig == SIGINT ? "INT" : "TERM", hub_total_clients());
	/* nothing is posted to a loop from here on, so the loops can end and
	 * be freed; only then are the hub, keys and config released */
	hub_set_stopping();
	server_stop(cfg.shutdown_spread_ms, STOP_FLUSH_MS);
	server_close();
	if (cfg.history_file)
		hub_history_save(cfg.history_file);
	hub_free();
	auth_shutdown();
	if (cfg.pid_file)
		unlink(cfg.pid_file);
	log_info("event=stop");
	config_free(&cfg);
	return 0;
}
