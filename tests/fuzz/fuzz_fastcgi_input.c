/* fuzz_fastcgi_input: arbitrary bytes as everything a FastCGI peer sends on
 * one connection, followed by EOF, into FCGX_Accept_r + api_handle exactly as
 * an acceptor thread runs them. Must never crash, leak or hang; a request
 * libfcgi rejects is fine, so is a stream handed to a loop (the loop sees the
 * peer gone and ends it). When an answer comes back it must be a complete
 * FastCGI response whose CGI head carries a status the API documents.
 * The seeds (gen_seeds.py) carry admin and user tokens signed with the test
 * secret, so mutations start from requests that reach every route. */
#include <pthread.h>

#include "fuzz_common.h"

#define FUZZ_MAX_INPUT 100000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* With fcgi_in in front of libfcgi the daemon no longer exposes these
 * defects, so every input runs; the skip applies to the older path only. */
static int skip_known = 0;
/* SSEHUB_FUZZ_LEAK_EACH=1: a full leak check after every input, with the
 * exchange run on a thread of its own (so no stale pointer on our stack
 * hides a leak). libFuzzer only checks when an input's mallocs and frees
 * differ, and the loop thread frees messages in the background, so a leak
 * can otherwise be blamed on a later input. Slow; for pinning a leak down. */
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
	const char *e = getenv("SSEHUB_FUZZ_KNOWN");
	(void)argc;
	(void)argv;
	if (e && *e == '1')
		skip_known = 0;
	e = getenv("SSEHUB_FUZZ_LEAK_EACH");
	leak_each = e && *e == '1';
	fuzz_config(1);
	return 0;
}

/* Two defects of libfcgi 2.4.2 (Debian 2.4.2-2+deb12u1), both reported,
 * both reproduced against the running daemon by test_faults.py, with their
 * inputs kept in crashes/:
 *  1. ReadParams adds a pair's name and value lengths (31 bits each) in an
 *     int: nameLen + valueLen + 2 overflows, Malloc gets a huge size_t and
 *     its assert() aborts the process. One short request kills ssehub.
 *     (crashes/fuzz_fastcgi_input-crash-libfcgi-params-length-overflow)
 *  2. ProcessManagementRecord allocates a Params before looking at the type
 *     and frees it only for FCGI_GET_VALUES: every other management record
 *     (request id 0) leaks 48 bytes, without bound on one connection.
 *     (crashes/fuzz_fastcgi_input-leak-libfcgi-unknown-management-record)
 * When the tree has no fcgi_in (libfcgi reads the connection itself),
 * inputs that hit either are skipped so the search goes on past them; set
 * SSEHUB_FUZZ_KNOWN=1 to run them anyway. The walk below follows the record
 * framing as libfcgi reads it. */
#define PARAM_SANE (16u << 20)

/* Reads one name-value length (1 byte, or 4 with the top bit set). */
static int nv_len(const uint8_t *p, size_t left, size_t *used, uint32_t *len)
{
	if (left < 1)
		return -1;
	if (!(p[0] & 0x80)) {
		*len = p[0];
		*used = 1;
		return 0;
	}
	if (left < 4)
		return -1;
	*len = ((uint32_t)(p[0] & 0x7f) << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
	*used = 4;
	return 0;
}

/* 1 when a name-value pair in p[0..len) announces more than PARAM_SANE. */
static int oversized_pair(const uint8_t *p, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		uint32_t nlen, vlen;
		size_t u1, u2;
		if (nv_len(p + pos, len - pos, &u1, &nlen) < 0 || nv_len(p + pos + u1, len - pos - u1, &u2, &vlen) < 0)
			return 0;
		if ((uint64_t)nlen + vlen > PARAM_SANE)
			return 1;
		pos += u1 + u2 + (size_t)nlen + vlen;
	}
	return 0;
}

/* Follows the records as libfcgi 2.4.2 reads them (worked out from what it
 * does with the inputs in crashes/ under gdb):
 *  - ProcessHeader: version != 1 is an error; BEGIN_REQUEST goes to
 *    ProcessBeginRecord (error unless 8 bytes and a request id); request id
 *    0 to ProcessManagementRecord, one record at a time; another request id
 *    is skipped with its padding; the request's id with the wrong type is an
 *    error.
 *  - The first BEGIN_REQUEST's padding is dropped, not skipped (Accept_r's
 *    SetReaderType zeroes paddingLen), as is the empty PARAMS record's.
 *  - An error while reading PARAMS at a pair boundary ends the parameters
 *    as if they were complete (ReadParams stops at EOF and returns 0), and
 *    STDIN is then read from the 8 bytes after the bad header.
 *  - STDIN reading stops at its empty record or at an error. */
static int hits_known_libfcgi_defect(const uint8_t *d, size_t size)
{
	struct buf params = { 0 };
	size_t off = 0;
	int hit = 0, phase = 0; /* 0: before BEGIN, 1: parameters, 2: stdin */
	unsigned rid = 0;

	while (!hit && off <= size && size - off >= FCGI_HEADER_LEN) {
		const uint8_t *h = d + off, *content = h + FCGI_HEADER_LEN;
		size_t clen = ((size_t)h[4] << 8) | h[5], have = size - off - FCGI_HEADER_LEN;
		unsigned id = (unsigned)h[2] << 8 | h[3];
		int error = 0;

		if (have > clen)
			have = clen;
		if (h[0] != FCGI_VERSION_1) {
			error = 1;
		} else if (h[1] == FCGI_BEGIN_REQUEST) {
			if (clen != 8 || id == 0) {
				error = 1;
			} else if (phase == 0) {
				phase = 1;
				rid = id;
				off += FCGI_HEADER_LEN + clen;
				continue;
			}
			/* a second one is answered FCGI_CANT_MPX_CONN and skipped */
		} else if (id == 0) {
			hit = h[1] != FCGI_GET_VALUES || oversized_pair(content, have);
		} else if (phase > 0 && id == rid) {
			if (h[1] != (phase == 1 ? FCGI_PARAMS : FCGI_STDIN))
				error = 1;
			else if (clen == 0 && phase == 2)
				break;
			else if (clen == 0) {
				phase = 2;
				hit = oversized_pair((const uint8_t *)params.data, params.len);
				off += FCGI_HEADER_LEN;
				continue;
			} else if (phase == 1) {
				buf_append(&params, content, have);
			}
		}
		if (error) {
			if (phase != 1)
				break;
			phase = 2;
			hit = oversized_pair((const uint8_t *)params.data, params.len);
			off += FCGI_HEADER_LEN;
			continue;
		}
		off += FCGI_HEADER_LEN + clen + h[6];
	}
	if (!hit && phase == 1)
		hit = oversized_pair((const uint8_t *)params.data, params.len);
	free(params.data);
	return hit;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int documented[] = { 200, 400, 401, 403, 404, 405, 413, 429, 431, 503 };
	struct fcgi_reply reply = { 0 };
	const char *body;
	size_t blen;
	int rc, status, known = 0;

	if (size > FUZZ_MAX_INPUT || (skip_known && hits_known_libfcgi_defect(data, size)))
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
	if (rc != 0)
		return 0;
	FUZZ_CHECK(!reply.malformed, "a record that is not FastCGI version 1 came back");
	/* an answer is complete, unless the peer's own bytes made libfcgi stop
	 * writing (it cannot: the peer end stays readable until we read it) */
	FUZZ_CHECK(reply.end_request && reply.stdout_closed, "incomplete FastCGI answer (end_request=%d stdout_closed=%d)",
		   reply.end_request, reply.stdout_closed);
	FUZZ_CHECK(cgi_split(&reply.stdout_bytes, &status, &body, &blen) == 0, "answer without a CGI head: %.*s",
		   (int)reply.stdout_bytes.len, reply.stdout_bytes.data);
	for (size_t i = 0; i < ARRAY_LEN(documented); i++)
		known |= status == documented[i];
	FUZZ_CHECK(known, "undocumented status %d", status);
	/* /metrics answers Prometheus text; every other answer is the JSON shape */
	if (memmem(reply.stdout_bytes.data, reply.stdout_bytes.len, "Content-Type: application/json", 30))
		json_object_put(check_api_answer(status, body, blen, "fastcgi"));
	free(reply.stdout_bytes.data);
	return 0;
}
