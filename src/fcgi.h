/* fcgi: the FastCGI 1.0 wire format and nothing else, on fastcgi.h's
 * structs: an incremental parser for one responder request (it says "need
 * more" on partial input, like picohttpparser) and the record writers. No
 * I/O and no clock: the caller reads, writes and keeps the deadlines.
 * nginx and lighttpd send BEGIN_REQUEST, PARAMS..., an empty PARAMS, STDIN...,
 * an empty STDIN on one request id and never multiplex; anything else on the
 * request's id is refused. Management records (request id 0) are answered as
 * the specification says. */
#ifndef SSEHUB_FCGI_H
#define SSEHUB_FCGI_H

#include <fastcgi.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FCGI_MAX_CONTENT 65535           /* content bytes of one record */
#define FCGI_MAX_PARAMS (64 * 1024)      /* all PARAMS content of a request */
#define FCGI_MAX_DRAIN (16 << 20)        /* bytes read past a limit, to answer 413/431 */
#define FCGI_MAX_MGMT 16                 /* management records per connection */

enum fcgi_status {
	FCGI_MORE = 0,           /* every byte given was consumed; send more */
	FCGI_DONE,               /* the request is complete */
	FCGI_BAD,                /* malformed or refused: close without an answer */
};

enum fcgi_phase { FCGI_PH_BEGIN = 0, FCGI_PH_PARAMS, FCGI_PH_STDIN, FCGI_PH_DONE };

/* One request being read. Fields above "the request" are the parser's. */
struct fcgi_req {
	FCGI_Header hdr;                 /* the record header being read */
	unsigned hlen;                   /* its bytes so far */
	size_t content_left, pad_left;   /* of the current record */
	enum fcgi_phase phase;
	unsigned char begin[sizeof(FCGI_BeginRequestBody)];
	unsigned begin_len;
	struct buf mgmt;                 /* a management record's content */
	unsigned nmgmt;
	size_t params_seen, body_seen, consumed;
	size_t max_body;
	long max_conns;                  /* FCGI_MAX_CONNS / FCGI_MAX_REQS answered */

	/* the request, complete once fcgi_req_feed said FCGI_DONE */
	uint16_t id;
	unsigned keep_conn : 1;          /* FCGI_KEEP_CONN was set */
	unsigned params_over : 1;        /* PARAMS passed FCGI_MAX_PARAMS: answer 431 */
	unsigned body_over : 1;          /* STDIN passed max_body: answer 413 */
	struct buf params;               /* "NAME\0VALUE\0" pairs once done */
	size_t nparams;
	struct buf body;                 /* STDIN, at most max_body + 1 bytes kept,
					  * NUL-terminated once done */
};

/* Prepares r for a request whose STDIN may hold max_body bytes; max_conns
 * is what a FCGI_GET_VALUES query is told. */
void fcgi_req_init(struct fcgi_req *r, size_t max_body, long max_conns);

/* Consumes data[0..len). On FCGI_DONE, *used says how many bytes the
 * request took (bytes after them belong to whatever comes next); on
 * FCGI_MORE it is len. Answers to management records are appended to
 * reply (the caller writes them). Once FCGI_DONE or FCGI_BAD was returned,
 * call fcgi_req_reset before feeding again. */
enum fcgi_status fcgi_req_feed(struct fcgi_req *r, const void *data, size_t len, size_t *used, struct buf *reply);

/* 1 once any byte of a request or management record arrived. */
int fcgi_req_started(const struct fcgi_req *r);

/* The value of param name (NUL-terminated, in r), or NULL. Valid after
 * FCGI_DONE until the next reset. */
const char *fcgi_req_param(const struct fcgi_req *r, const char *name);

/* Wipes the params (they hold tokens and cookies), keeps the buffers' memory
 * for the next request on the connection and starts over. */
void fcgi_req_reset(struct fcgi_req *r);
/* Wipes and releases everything r holds. */
void fcgi_req_free(struct fcgi_req *r);

/* ---- writers: each appends complete records to out ------------------------ */

/* A record header for content_len (<= FCGI_MAX_CONTENT) bytes, no padding. */
void fcgi_header(FCGI_Header *h, int type, uint16_t id, size_t content_len);
/* data as FCGI_STDOUT records of at most FCGI_MAX_CONTENT bytes each;
 * nothing for n == 0 (an empty STDOUT would end the stream). */
void fcgi_put_stdout(struct buf *out, uint16_t id, const void *data, size_t n);
/* The end of a response: an empty FCGI_STDOUT, then FCGI_END_REQUEST with
 * application status 0 and FCGI_REQUEST_COMPLETE. */
void fcgi_put_end(struct buf *out, uint16_t id);
/* A whole response: head and body as STDOUT, then the end records. */
void fcgi_put_response(struct buf *out, uint16_t id, const char *head, size_t head_len, const char *body,
		       size_t body_len);
/* FCGI_UNKNOWN_TYPE for a management record of type type. */
void fcgi_put_unknown_type(struct buf *out, int type);

/* Size on the wire of n bytes sent as STDOUT records (n > 0). */
size_t fcgi_stdout_len(size_t n);

#endif
