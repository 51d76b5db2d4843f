/* server: the FastCGI listening socket (fd 0 from spawn-fcgi or lighttpd, or
 * our own unix/TCP socket), the loop threads, and the connections they
 * accept and read; each complete request goes to api in the same thread. */
#ifndef SSEHUB_SERVER_H
#define SSEHUB_SERVER_H

#include "config.h"

/* Opens the socket named by cfg->listen, or checks that fd 0 is a listening
 * socket. Returns 0, or -1 after printing a clear reason to stderr. */
int server_listen(const struct config *cfg);

/* Creates cfg->loops loops, sets up every module's per-loop state and
 * starts the threads. Returns 0 or -1 (logged). */
int server_start(const struct config *cfg);

/* server_start without the threads, for tests and fuzzers that drive the
 * loops with loop_pass (without a listening socket when server_listen was
 * not called). Returns 0 or -1. */
int server_setup(const struct config *cfg);
/* Makes fd a connection of l, as if l had accepted it (tests, fuzzers);
 * from l's thread, or while no thread runs l. */
struct loop;
void server_adopt(struct loop *l, int fd);

/* Stops every loop: no new connection, idle ones closed, requests being
 * read still answered (the hub must already be stopping, so they get 503),
 * each stream ended with a random "retry:" in [0, spread_ms] and the end
 * records; after flush_ms whatever is left is closed. Returns once every
 * loop thread has ended and the loops are freed. */
void server_stop(long spread_ms, long flush_ms);

/* Closes the listening socket and removes the unix socket file we made. */
void server_close(void);

#endif
