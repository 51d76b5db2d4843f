/* fcgi_in: reads one FastCGI request (BEGIN_REQUEST, PARAMS, STDIN) from a
 * connection ourselves, bounded in bytes and in time, checks every record
 * and every name-value length, and writes the answers. libfcgi's own reader
 * is kept away from peer bytes: 2.4.2 aborts the whole process on a PARAMS
 * pair whose two lengths overflow an int, and leaks on each management
 * record. The validated params reach the handlers as an envp array for
 * libfcgi's FCGX_GetParam. */
#ifndef SSEHUB_FCGI_IN_H
#define SSEHUB_FCGI_IN_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FCGI_IN_MAX_PARAMS (64 * 1024)   /* all PARAMS content of a request */
#define FCGI_IN_MAX_DRAIN (16 << 20)     /* body bytes read past the limit, to answer 413 */

enum fcgi_in_result {
	FCGI_IN_OK = 0,
	FCGI_IN_DROP,            /* malformed, timed out or gone: close without an answer */
	FCGI_IN_CLOSED,          /* the peer closed before sending a byte (an idle kept connection) */
	FCGI_IN_PARAMS_TOO_LARGE /* well-formed, but the headers are too large: answer 431 */
};

struct fcgi_in {
	uint16_t request_id;
	struct buf params;       /* validated PARAMS content */
	long nparams;            /* name-value pairs in it */
	struct buf body;         /* STDIN, at most max_body + 1 bytes kept */
	int body_over;           /* STDIN was longer than max_body */
	int keep_conn;           /* FCGI_KEEP_CONN was set and nothing followed the
				  * request: the connection may carry the next one */
};

/* Reads a request from the blocking socket fd within timeout_ms, keeping at
 * most max_body bytes of STDIN. On FCGI_IN_OK and FCGI_IN_PARAMS_TOO_LARGE,
 * in->request_id is set. Release with fcgi_in_free in every case. */
enum fcgi_in_result fcgi_in_read(int fd, size_t max_body, long timeout_ms, struct fcgi_in *in);

/* The validated params as a NULL-terminated array of "NAME=VALUE" strings,
 * the shape libfcgi's FCGX_GetParam reads; one allocation, free() it. */
char **fcgi_in_envp(const struct fcgi_in *in);

/* Writes a complete answer to fd: head then body as FCGI_STDOUT records
 * (split at 65535 bytes), the empty FCGI_STDOUT and FCGI_END_REQUEST, in one
 * write when the socket takes it. Returns 0 or -1. */
int fcgi_in_reply(int fd, uint16_t request_id, const char *head, size_t head_len, const char *body, size_t body_len);

/* fcgi_in_reply of a JSON answer with the given status line ("431 ..."). */
int fcgi_in_answer(int fd, uint16_t request_id, const char *status, const char *json);

/* Builds an 8-byte FastCGI record header. */
void fcgi_header(unsigned char *h, int type, uint16_t request_id, size_t content_len);

void fcgi_in_free(struct fcgi_in *in);

#endif
