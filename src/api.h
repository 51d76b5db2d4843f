/* api: one FastCGI request, answered in the acceptor thread that read it:
 * routing, authentication, the admin API (stats, publish, disconnect,
 * metrics, health), and the hand-off of /sse/stream to a loop. */
#ifndef SSEHUB_API_H
#define SSEHUB_API_H

#include <fcgiapp.h>

#include "config.h"
#include "fcgi_in.h"

/* Sets the options the handlers read; cfg must outlive the module. */
void api_init(const struct config *cfg);

/* Handles the request that fcgi_in read from fd into in; envp is its
 * params as "NAME=VALUE" strings (fcgi_in_envp), looked up with libfcgi's
 * FCGX_GetParam. Returns 1 when the connection was handed to a stream loop
 * (the fd is no longer the caller's), 0 when the complete answer (up to
 * FCGI_END_REQUEST) was written, -1 when writing it failed. With
 * fd_pressure (the process is out of file descriptors) new streams are
 * refused with 503. */
int api_handle(int fd, const struct fcgi_in *in, char **envp, int fd_pressure);

#endif
