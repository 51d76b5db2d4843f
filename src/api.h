/* api: one FastCGI request, answered in the loop thread that read it:
 * routing, authentication, the admin API (stats, publish, disconnect,
 * metrics, health), and the opening of /sse/stream through the hub. */
#ifndef SSEHUB_API_H
#define SSEHUB_API_H

#include "config.h"
#include "fcgi.h"
#include "loop.h"

struct api_pending;

struct api_request {
	struct loop *loop;               /* the calling thread's loop */
	int fd;                          /* the connection (a stream takes it) */
	struct loop_io *io;              /* its watcher: removed when a stream takes the fd,
					  * so check io->added after API_ANSWERED */
	const struct fcgi_req *req;      /* params and body, complete */
	int fd_pressure;                 /* out of descriptors: refuse new streams */
	struct buf *out;                 /* the answer's FastCGI records go here */
	/* set by the caller: called when an API_PENDING request settles, with
	 * API_ANSWERED (the answer is in out) or API_STREAM */
	void (*resume)(struct api_request *r, int result);
	struct api_pending *pending;     /* api's, while API_PENDING */
};

enum api_result {
	API_ANSWERED = 0,                /* the whole answer, end records included, is in out */
	API_STREAM,                      /* the fd became a stream: it is not the caller's any more */
	API_PENDING,                     /* the answer waits (the Redis backplane): r->resume comes
					  * later; r, its request and its fd must stay as they are */
};

/* Sets the options the handlers read; cfg must outlive the module. */
void api_init(const struct config *cfg);

enum api_result api_handle(struct api_request *r);

/* The connection of a pending request is gone: its answer is dropped (a
 * stream being opened is not started). r may be reused after this. */
void api_cancel(struct api_request *r);

enum api_topics_result {
	API_TOPICS_OK = 0,
	API_TOPICS_INVALID,              /* a value is not a topic name once URL-decoded */
	API_TOPICS_TOO_MANY,             /* more than max "topic" parameters */
};

/* Collects the value of every "topic" parameter of query ("topic=a&x=1&
 * topic=b"; NULL: none), URL-decoded and checked with hub_topic_valid, in
 * order, each once. More than max parameters (duplicates count) is
 * API_TOPICS_TOO_MANY, checked before any decoding. On API_TOPICS_OK,
 * *out holds *n new strings in a new array (NULL when *n is 0): free it with
 * api_topics_free. Otherwise nothing is returned and *bad_at is the
 * 1-based position of the offending parameter among the "topic" ones. */
enum api_topics_result api_query_topics(const char *query, size_t max, char ***out, size_t *n, size_t *bad_at);
void api_topics_free(char **topics, size_t n);

/* Appends a JSON error answer (status line such as "431 Request Header
 * Fields Too Large") for request id to out, for answers given before the
 * request reaches the routes. */
void api_error_answer(struct buf *out, uint16_t id, int status, const char *code, const char *message);

#endif
