/* fcgi_in: reads one FastCGI request (BEGIN_REQUEST, PARAMS, STDIN) from a
 * freshly accepted connection ourselves, bounded in bytes and in time, and
 * checks every record and every name-value length before libfcgi sees any of
 * it. libfcgi 2.4.2 aborts the whole process on a PARAMS pair whose two
 * lengths overflow an int, and leaks on each management record; it then
 * parses a clean copy of the head that we rebuild (fcgi_in_head_fd). */
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
	FCGI_IN_PARAMS_TOO_LARGE /* well-formed, but the headers are too large: answer 431 */
};

struct fcgi_in {
	uint16_t request_id;
	struct buf params;       /* validated PARAMS content */
	struct buf body;         /* STDIN, at most max_body + 1 bytes kept */
	int body_over;           /* STDIN was longer than max_body */
};

/* Reads a request from the blocking socket fd within timeout_ms, keeping at
 * most max_body bytes of STDIN. On FCGI_IN_OK and FCGI_IN_PARAMS_TOO_LARGE,
 * in->request_id is set. Release with fcgi_in_free in every case. */
enum fcgi_in_result fcgi_in_read(int fd, size_t max_body, long timeout_ms, struct fcgi_in *in);

/* Creates the file (a memfd) that fcgi_in_write_head fills; one per
 * acceptor, reused for every request. Returns the fd or -1. */
int fcgi_in_head_file(void);

/* Replaces the content of head_fd with a well-formed BEGIN_REQUEST
 * (responder, no keep-conn) and the validated PARAMS, and rewinds it, for
 * FCGX_Accept_r to parse. Returns 0 or -1. */
int fcgi_in_write_head(const struct fcgi_in *in, int head_fd);

/* Writes a complete response (headers and body in STDOUT records, then the
 * end-of-request records) to fd. Returns 0 or -1. */
int fcgi_in_answer(int fd, uint16_t request_id, const char *status, const char *json);

/* Builds an 8-byte FastCGI record header. */
void fcgi_header(unsigned char *h, int type, uint16_t request_id, size_t content_len);

void fcgi_in_free(struct fcgi_in *in);

#endif
