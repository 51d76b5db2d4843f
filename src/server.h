/* server: the FastCGI listening socket (fd 0 from spawn-fcgi or lighttpd, or
 * our own unix/TCP socket) and the acceptor threads that read each request
 * with libfcgi and route it. */
#ifndef SSEHUB_SERVER_H
#define SSEHUB_SERVER_H

#include "config.h"

/* Opens the socket named by cfg->listen, or checks that fd 0 is a listening
 * socket. Returns 0, or -1 after printing a clear reason to stderr. */
int server_listen(const struct config *cfg);

/* Sets the options the server reads (server_listen does it too). */
void server_init(const struct config *cfg);

/* Serves one accepted, blocking connection and takes fd over: reads the
 * request strictly (fcgi_in), lets libfcgi parse a clean copy of its head,
 * answers it or hands the fd to a stream loop (never when refuse_streams:
 * those get 503). Returns 1 when it became a stream, 0 when it was
 * answered and closed, 2 when it was answered and the peer asked to keep
 * the connection (FCGI_KEEP_CONN: the fd stays open and is the caller's),
 * -1 when it was dropped without an answer. */
int server_serve(int fd, int refuse_streams);

/* Kept FastCGI connections waiting for their next request. */
long server_idle_connections(void);

/* Starts cfg->acceptors threads. Returns 0 or -1. */
int server_start(const struct config *cfg);

/* Tells the acceptors to stop taking connections; returns at once. */
void server_stop_accepting(void);

/* Stops accepting, waits up to wait_ms for acceptors busy with a request,
 * closes the socket and removes the unix socket file we created. */
void server_stop(long wait_ms);

#endif
