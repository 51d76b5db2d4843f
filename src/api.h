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

/* Handles the accepted request req, whose body fcgi_in already read into
 * in. Returns 1 when the connection was handed to a stream loop (the caller
 * must then FCGX_Free(req, 0) without closing the fd), 0 when the answer is
 * written and the caller should finish it. With fd_pressure (the process is
 * out of file descriptors) new streams are refused with 503. */
int api_handle(FCGX_Request *req, const struct fcgi_in *in, int fd_pressure);

#endif
