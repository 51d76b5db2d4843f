/* fuzz_fastcgi_input: arbitrary bytes as everything a FastCGI peer sends on
 * one connection, followed by EOF, read by a loop (fcgi's parser, then api)
 * as after an accept. Must never crash, leak or hang; a request the parser
 * refuses is fine, so is a stream (the loop sees the peer gone and ends it).
 * When an answer comes back it must be a complete FastCGI response whose CGI
 * head carries a status the API documents.
 * The seeds (gen_seeds.py) carry admin and user tokens signed with the test
 * secret, so mutations start from requests that reach every route. */
#include <pthread.h>

#include "fuzz_common.h"

#define FUZZ_MAX_INPUT 100000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* SSEHUB_FUZZ_LEAK_EACH=1: a full leak check after every input, with the
 * exchange run on a thread of its own (so no stale pointer on our stack
 * hides a leak). libFuzzer only checks when an input's mallocs and frees
 * differ, so a leak can otherwise be blamed on a later input. Slow; for
 * pinning a leak down. */
static int leak_each;
int __lsan_do_recoverable_leak_check(void);

struct exchange_job {
	const uint8_t *data;
	size_t size;
	struct fcgi_reply *reply;
	int rc;
};

static void *exchange_thread(void *arg)
{
	struct exchange_job *j = arg;
	j->rc = fcgi_exchange(j->data, j->size, j->reply);
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *e = getenv("SSEHUB_FUZZ_LEAK_EACH");
	(void)argc;
	(void)argv;
	leak_each = e && *e == '1';
	fuzz_config(1);
	return 0;
}

/* libfcgi 2.4.2 aborts on a PARAMS pair whose lengths overflow an int and
 * leaks on management records; src/fcgi.c parses every request itself, and
 * the inputs that once hit them are replayed from the corpus (regress-*). */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int documented[] = { 200, 400, 401, 403, 404, 405, 413, 415, 429, 431, 503 };
	struct fcgi_reply reply = { 0 };
	const char *body;
	size_t blen;
	int rc, status, known = 0;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	if (leak_each) {
		struct exchange_job job = { data, size, &reply, 0 };
		pthread_t t;
		if (pthread_create(&t, NULL, exchange_thread, &job) != 0 || pthread_join(t, NULL) != 0)
			abort();
		rc = job.rc;
		if (__lsan_do_recoverable_leak_check())
			abort();
	} else {
		rc = fcgi_exchange(data, size, &reply);
	}
	if (rc != 0) {
		peer_reply_free(&reply);
		return 0;
	}
	FUZZ_CHECK(!reply.malformed, "a record that is not FastCGI version 1 came back");
	/* an answer is complete: it is written in one go, and the peer end
	 * stays readable until we read it */
	FUZZ_CHECK(reply.end_request && reply.stdout_closed, "incomplete FastCGI answer (end_request=%d stdout_closed=%d)",
		   reply.end_request, reply.stdout_closed);
	FUZZ_CHECK(cgi_split(&reply.out, &status, &body, &blen) == 0, "answer without a CGI head: %.*s",
		   (int)reply.out.len, reply.out.data);
	for (size_t i = 0; i < ARRAY_LEN(documented); i++)
		known |= status == documented[i];
	FUZZ_CHECK(known, "undocumented status %d", status);
	/* /metrics answers Prometheus text; every other answer is the JSON shape */
	if (memmem(reply.out.data, reply.out.len, "Content-Type: application/json", 30))
		json_object_put(check_api_answer(status, body, blen, "fastcgi"));
	peer_reply_free(&reply);
	return 0;
}
