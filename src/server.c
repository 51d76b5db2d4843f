/* server: the FastCGI listening socket and connections. Every loop accepts
 * from the shared socket (EPOLLEXCLUSIVE; where the kernel lacks it, one
 * loop at a time holds the accept turn and passes it on), reads each
 * request incrementally with fcgi's parser under a deadline, answers it
 * through api in the same pass, and keeps the connection when the peer asked
 * (FCGI_KEEP_CONN). A stream stays in the loop that accepted it. No thread
 * ever blocks on a peer. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api.h"
#include "fcgi.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "server.h"
#include "stream.h"
#include "util.h"

#define BACKLOG 4096
#define ACCEPT_BATCH 32
#define READ_CHUNK 16384
#define ACCEPT_PAUSE_MS 50

static int listen_fd = -1;
static char *unix_path;          /* set when we created the socket file */
static const struct config *conf;

static int listen_unix(const char *path, unsigned mode)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old_umask;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ssehub: unix socket path too long (max %zu bytes): %s\n", sizeof(sa.sun_path) - 1, path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		int probe;
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "ssehub: %s exists and is not a socket; refusing to replace it\n", path);
			return -1;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			fprintf(stderr, "ssehub: another process is listening on %s; stop it first\n", path);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(path) < 0) {
			fprintf(stderr, "ssehub: cannot remove stale socket %s: %s\n", path, strerror(errno));
			return -1;
		}
		log_info("event=stale_socket_removed path=%s", path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "ssehub: socket: %s\n", strerror(errno));
		return -1;
	}
	/* Never let the socket exist, even briefly, with a looser mode. */
	old_umask = umask((mode_t)(~mode & 0777));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		umask(old_umask);
		fprintf(stderr, "ssehub: cannot bind %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old_umask);
	unix_path = xstrdup(path);
	if (chmod(path, (mode_t)mode) < 0 || listen(fd, BACKLOG) < 0) {
		fprintf(stderr, "ssehub: cannot listen on %s: %s\n", path, strerror(errno));
		close(fd);
		unlink(path);
		free(unix_path);
		unix_path = NULL;
		return -1;
	}
	return fd;
}

static int listen_tcp(const char *spec)
{
	char host[256];
	const char *port, *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res, *ai;
	int fd = -1, rc, one = 1;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = '\0';
		port = end + 2;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			goto bad;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port))
		goto bad;
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "ssehub: --listen %s: %s\n", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BACKLOG) == 0)
			break;
		rc = errno;
		close(fd);
		fd = -1;
		errno = rc;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "ssehub: cannot listen on %s: %s\n", spec, strerror(errno));
	return fd;
bad:
	fprintf(stderr, "ssehub: --listen %s: expected unix:PATH, HOST:PORT or [IPV6]:PORT\n", spec);
	return -1;
}

int server_listen(const struct config *cfg)
{
	if (cfg->listen) {
		if (strncmp(cfg->listen, "unix:", 5) == 0)
			listen_fd = listen_unix(cfg->listen + 5, cfg->socket_mode);
		else
			listen_fd = listen_tcp(cfg->listen);
	} else {
		int accepting = 0;
		socklen_t len = sizeof(accepting);
		if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting) {
			fprintf(stderr, "ssehub: no socket to serve: fd 0 is not a listening socket.\n"
					"Give --listen unix:PATH (or HOST:PORT), or start ssehub under spawn-fcgi or lighttpd's bin-path.\n");
			return -1;
		}
		listen_fd = 0;
		/* spawn-fcgi listens with a backlog of 1024 by default; a full
		 * backlog makes nginx answer 502 during a reconnect storm. */
		listen(listen_fd, BACKLOG);
	}
	if (listen_fd < 0)
		return -1;
	/* Several loops may wake for one connection: the losers get EAGAIN. */
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

/* ---- descriptor reserve ------------------------------------------------------
 * Two descriptors kept open for the moment the process runs out: closing
 * them lets a loop take one connection and answer it (API requests are
 * served, new streams refused with 503) instead of leaving peers hanging in
 * the backlog. reserve_lock is held only around the release, the accept and
 * the refill, never across a request. */
static int reserve[2] = { -1, -1 };
static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;

static void reserve_fill_locked(void)
{
	for (int i = 0; i < 2; i++)
		if (reserve[i] < 0)
			__atomic_store_n(&reserve[i], open("/dev/null", O_RDONLY | O_CLOEXEC), __ATOMIC_RELAXED);
}

static int reserve_full(void)
{
	return __atomic_load_n(&reserve[0], __ATOMIC_RELAXED) >= 0 && __atomic_load_n(&reserve[1], __ATOMIC_RELAXED) >= 0;
}

/* At most one such line per 5 s, whichever loop hits it. */
static void log_rate_limited(int64_t *last, const char *event, int err)
{
	int64_t now = util_mono_ms(), prev = __atomic_load_n(last, __ATOMIC_RELAXED);

	if (now - prev > 5000 && __atomic_compare_exchange_n(last, &prev, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		log_error("event=%s error=\"%s\"", event, strerror(err));
}

static int accept_one(void)
{
#ifdef HAVE_ACCEPT4
	return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
	int fd = accept(listen_fd, NULL, NULL);
	if (fd >= 0 && (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)) {
		close(fd);
		errno = EBADF;
		return -1;
	}
	return fd;
#endif
}

/* ---- per-loop state and connections -------------------------------------------- */

struct sserv;

enum conn_state { C_READING, C_ANSWERING, C_IDLE };

struct conn {
	struct loop_io io;
	struct loop_timer timer;
	struct sserv *sv;
	LIST_ENTRY(conn) link;
	struct fcgi_req req;
	struct api_request api;          /* the request being answered */
	struct buf out;                  /* answer bytes not yet written */
	size_t out_off;
	enum conn_state state;
	unsigned pressure : 1, dead : 1, waiting : 1;
	struct loop_later later;
};

/* A loop's connections; only its thread touches this. */
struct sserv {
	struct loop *loop;
	struct loop_io listen;
	struct loop_timer accept_pause, stop_timer;
	LIST_HEAD(, conn) conns;
	long nconns;
	int stopping;
};

static struct sserv *servs;
static int nservs;
static int exclusive;            /* every loop watches the socket with EPOLLEXCLUSIVE */
static long max_conns;           /* told to FCGI_GET_VALUES */
static int64_t last_accept_log, last_fd_log;

static void listen_on(struct sserv *sv);
static void stop_done(struct sserv *sv);
static void stop_now(struct loop *l, struct loop_timer *t);

static void release(struct loop_later *x)
{
	struct conn *c = container_of(x, struct conn, later);

	fcgi_req_free(&c->req);
	free(c->out.data);
	free(c);
}

static void set_idle(struct conn *c, int idle)
{
	if ((c->state == C_IDLE) != idle)
		METRIC_ADD(fcgi_idle_connections, idle ? 1 : -1);
}

/* Closes the connection; keep_fd when a stream took it over. */
static void conn_close(struct conn *c, int keep_fd)
{
	struct sserv *sv = c->sv;

	if (c->dead)
		return;
	c->dead = 1;
	if (c->waiting)
		api_cancel(&c->api);
	set_idle(c, 0);
	loop_io_del(sv->loop, &c->io);
	loop_timer_stop(sv->loop, &c->timer);
	if (!keep_fd)
		close(c->io.fd);
	LIST_REMOVE(c, link);
	sv->nconns--;
	loop_free_later(sv->loop, &c->later, release);
	if (sv->stopping)
		stop_done(sv);
}

static void on_timeout(struct loop *l, struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, timer);

	log_debug("event=fastcgi_timeout state=%s", c->state == C_IDLE ? "idle" : "busy");
	conn_close(c, 0);
}

static void arm(struct conn *c, long seconds)
{
	struct loop *l = c->sv->loop;
	loop_timer_set(l, &c->timer, loop_now(l) + seconds * 1000, on_timeout);
}

/* The watcher's interests for the connection's state. */
static void watch(struct conn *c)
{
	unsigned mask = (c->state != C_ANSWERING ? LOOP_READ : 0) | (c->out.len > c->out_off ? LOOP_WRITE : 0);

	if (!c->io.added) {
		if (loop_io_add(c->sv->loop, &c->io, c->io.fd, mask, c->io.fn) < 0)
			conn_close(c, 0);
	} else if (loop_io_set(c->sv->loop, &c->io, mask) < 0) {
		conn_close(c, 0);
	}
}

/* The answer is out: wait for the next request, or close. */
static void answered(struct conn *c)
{
	/* a connection taken on the reserve gives its descriptor back */
	if (!c->req.keep_conn || c->sv->stopping || c->pressure) {
		conn_close(c, 0);
		return;
	}
	fcgi_req_reset(&c->req);
	set_idle(c, 1);
	c->state = C_IDLE;
	/* an answer far larger than usual leaves no big buffer behind */
	if (c->out.cap > 65536) {
		free(c->out.data);
		c->out = (struct buf){ 0 };
	}
	arm(c, conf->keepalive_timeout);
	watch(c);
}

/* Writes what waits in out. */
static void conn_write(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			arm(c, conf->request_timeout);
			watch(c);
			return;
		}
		if (n < 0) {
			conn_close(c, 0);
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out.len = c->out_off = 0;
	if (c->state == C_ANSWERING)
		answered(c);
	else
		watch(c);
}

/* A request that waited (the Redis backplane) is settled. */
static void resume(struct api_request *r, int result)
{
	struct conn *c = container_of(r, struct conn, api);

	c->waiting = 0;
	if (result == API_STREAM)
		conn_close(c, 1);
	else
		conn_write(c);
}

static void dispatch(struct conn *c)
{
	c->state = C_ANSWERING;
	loop_timer_stop(c->sv->loop, &c->timer);
	c->api = (struct api_request){ .loop = c->sv->loop, .fd = c->io.fd, .io = &c->io, .req = &c->req,
				       .fd_pressure = c->pressure, .out = &c->out, .resume = resume };
	if (c->req.params_over) {
		api_error_answer(&c->out, c->req.id, 431, "headers_too_large",
				 "the request headers are larger than 64 KiB");
	} else {
		switch (api_handle(&c->api)) {
		case API_STREAM:
			conn_close(c, 1);
			return;
		case API_PENDING:
			/* no timer: the hub's own deadlines settle it */
			c->waiting = 1;
			return;
		default:
			break;
		}
	}
	conn_write(c);
}

/* Reads what the peer sent; a complete request is answered at once. */
static void conn_read(struct conn *c)
{
	char buf[READ_CHUNK];

	for (;;) {
		ssize_t n = recv(c->io.fd, buf, sizeof(buf), MSG_DONTWAIT);
		size_t used;
		enum fcgi_status st;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* the peer closed: an idle kept connection ends, or a request
			 * was abandoned */
			conn_close(c, 0);
			return;
		}
		if (c->state == C_IDLE) {
			set_idle(c, 0);
			c->state = C_READING;
			arm(c, conf->request_timeout);
		}
		st = fcgi_req_feed(&c->req, buf, (size_t)n, &used, &c->out);
		if (st == FCGI_BAD) {
			log_debug("event=bad_fastcgi_request");
			conn_close(c, 0);
			return;
		}
		if (st == FCGI_DONE) {
			/* nginx sends the next request only after our answer; bytes
			 * already here are a pipelining peer: answer this one and
			 * close rather than lose or misread them */
			if (used < (size_t)n)
				c->req.keep_conn = 0;
			dispatch(c);
			return;
		}
	}
	if (c->out.len > c->out_off)
		conn_write(c); /* answers to management records */
}

static void on_conn(struct loop *l, struct loop_io *io, unsigned events)
{
	struct conn *c = container_of(io, struct conn, io);

	if (c->dead)
		return;
	if ((events & LOOP_WRITE) && c->out.len > c->out_off) {
		conn_write(c);
		if (c->dead)
			return;
	}
	if ((events & (LOOP_READ | LOOP_HUP)) && c->state != C_ANSWERING)
		conn_read(c);
	else if ((events & LOOP_HUP) && c->state == C_ANSWERING && c->out.len > c->out_off)
		conn_write(c); /* the write fails and closes, or finishes */
}

static void conn_new(struct sserv *sv, int fd, int pressure)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->sv = sv;
	c->pressure = pressure ? 1 : 0;
	c->state = C_READING;
	fcgi_req_init(&c->req, (size_t)conf->max_message_bytes, max_conns);
	LIST_INSERT_HEAD(&sv->conns, c, link);
	sv->nconns++;
	METRIC_ADD(fcgi_connections_total, 1);
	if (loop_io_add(sv->loop, &c->io, fd, LOOP_READ, on_conn) < 0) {
		c->io.fd = fd;
		conn_close(c, 0);
		return;
	}
	arm(c, conf->request_timeout);
	/* the request usually came with the connection */
	conn_read(c);
}

/* Closes this loop's idle kept connections (all of them: the peer opens
 * new ones when it needs them). Returns how many. */
static int close_idle(struct sserv *sv)
{
	struct conn *c, *next;
	int n = 0;

	for (c = LIST_FIRST(&sv->conns); c; c = next) {
		next = LIST_NEXT(c, link);
		if (c->state == C_IDLE) {
			conn_close(c, 0);
			n++;
		}
	}
	return n;
}

/* ---- accepting ---------------------------------------------------------------- */

static void on_accept_pause(struct loop *l, struct loop_timer *t)
{
	struct sserv *sv = container_of(t, struct sserv, accept_pause);

	if (!sv->stopping)
		listen_on(sv);
}

static void close_idle_job(struct loop *l, void *a, void *b)
{
	close_idle(&servs[loop_index(l)]);
}

/* Out of descriptors: free this loop's idle connections, then the reserve,
 * to take one connection and answer it. Returns the fd or -1 (then the
 * socket is left alone for a moment, so that a full process does not spin
 * on a readable listening socket, and the other loops are asked to close
 * their idle connections: with accept turns they never reach this point
 * themselves, and the descriptors they keep may be the last ones). */
static int accept_at_limit(struct sserv *sv, int *pressure)
{
	int fd, err;

	if (close_idle(sv) > 0) {
		fd = accept_one();
		if (fd >= 0 || (errno != EMFILE && errno != ENFILE))
			return fd;
	}
	pthread_mutex_lock(&reserve_lock);
	for (int i = 0; i < 2; i++) {
		if (reserve[i] >= 0)
			close(reserve[i]);
		__atomic_store_n(&reserve[i], -1, __ATOMIC_RELAXED);
	}
	fd = accept_one();
	err = errno;
	reserve_fill_locked();
	pthread_mutex_unlock(&reserve_lock);
	if (fd >= 0) {
		*pressure = 1;
		log_rate_limited(&last_fd_log, "out_of_file_descriptors action=refusing_new_streams", EMFILE);
		return fd;
	}
	if (err != EMFILE && err != ENFILE)
		return -1; /* EAGAIN: the peer gave up, or another loop took it */
	log_rate_limited(&last_accept_log, "accept_failed action=retrying", err);
	for (int i = 0; i < nservs; i++) {
		if (&servs[i] != sv && loop_post(servs[i].loop, close_idle_job, NULL, NULL))
			loop_wake(servs[i].loop);
	}
	loop_io_del(sv->loop, &sv->listen);
	loop_timer_set(sv->loop, &sv->accept_pause, loop_now(sv->loop) + ACCEPT_PAUSE_MS, on_accept_pause);
	return -1;
}

static void pass_turn(struct loop *l, void *a, void *b);

static void on_listen(struct loop *l, struct loop_io *io, unsigned events)
{
	struct sserv *sv = container_of(io, struct sserv, listen);
	int accepted = 0;

	for (int i = 0; i < ACCEPT_BATCH && sv->listen.added; i++) {
		int pressure = 0, fd = accept_one();

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				fd = accept_at_limit(sv, &pressure);
			if (fd < 0)
				break; /* EAGAIN: another loop took it */
		} else if (!reserve_full()) {
			/* a refill failed at the limit: try again; while it still
			 * fails no new stream may keep a descriptor for good */
			pthread_mutex_lock(&reserve_lock);
			reserve_fill_locked();
			pressure = !reserve_full();
			pthread_mutex_unlock(&reserve_lock);
		}
		conn_new(sv, fd, pressure);
		accepted++;
	}
	/* without EPOLLEXCLUSIVE one loop at a time watches the socket, and
	 * hands the turn on after each batch: accepts are spread, no herd */
	if (!exclusive && accepted && nservs > 1 && sv->listen.added) {
		struct loop *next = servs[(loop_index(l) + 1) % nservs].loop;
		loop_io_del(l, &sv->listen);
		if (loop_post(next, pass_turn, NULL, NULL))
			loop_wake(next);
	}
}

static void pass_turn(struct loop *l, void *a, void *b)
{
	struct sserv *sv = &servs[loop_index(l)];

	if (!sv->stopping)
		listen_on(sv);
}

static void listen_on(struct sserv *sv)
{
	if (sv->listen.added)
		return;
	if (loop_io_add(sv->loop, &sv->listen, listen_fd, LOOP_READ | (exclusive ? LOOP_EXCLUSIVE : 0), on_listen) < 0)
		log_error("event=listen_watch_failed error=\"%s\"", strerror(errno));
}

/* ---- start and stop ------------------------------------------------------------------- */

/* Asked to stop: no new connection; idle ones close; busy ones finish
 * (the hub answers 503 from now); streams get their last records. */
static void stop_job(struct loop *l, void *a, void *b)
{
	struct sserv *sv = &servs[loop_index(l)];
	long flush_ms = (long)(intptr_t)a, spread_ms = (long)(intptr_t)b;

	sv->stopping = 1;
	loop_io_del(l, &sv->listen);
	loop_timer_stop(l, &sv->accept_pause);
	close_idle(sv);
	streams_stop(l, spread_ms);
	loop_timer_set(l, &sv->stop_timer, loop_now(l) + flush_ms, stop_now);
	stop_done(sv);
}

static void stop_now(struct loop *l, struct loop_timer *t)
{
	struct sserv *sv = container_of(t, struct sserv, stop_timer);

	while (!LIST_EMPTY(&sv->conns))
		conn_close(LIST_FIRST(&sv->conns), 0);
	streams_close_all(l);
	hub_stop_loop(l);
	loop_quit(l);
}

/* Called as streams and connections go: the loop ends once both are gone,
 * or when stop_timer fires. */
static void stop_done(struct sserv *sv)
{
	if (sv->nconns == 0 && streams_count(sv->loop) == 0) {
		loop_timer_stop(sv->loop, &sv->stop_timer);
		stop_now(sv->loop, &sv->stop_timer);
	}
}

/* While stopping, streams close in flush: check after every pass. */
static void stop_check(struct loop *l, void *arg)
{
	struct sserv *sv = arg;

	if (sv->stopping)
		stop_done(sv);
}

int server_setup(const struct config *cfg)
{
	struct rlimit rl;

	conf = cfg;
	max_conns = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 32
			    ? (long)rl.rlim_cur - 16
			    : 1000;
	pthread_mutex_lock(&reserve_lock);
	reserve_fill_locked();
	pthread_mutex_unlock(&reserve_lock);
	if (loops_create((int)cfg->loops) < 0)
		return -1;
	streams_init(cfg, hub_stream_closed);
	hub_start();
	nservs = loops_count();
	servs = xcalloc((size_t)nservs, sizeof(*servs));
	for (int i = 0; i < nservs; i++) {
		struct sserv *sv = &servs[i];
		sv->loop = loops_get(i);
		LIST_INIT(&sv->conns);
		loop_before_sleep(sv->loop, stop_check, sv);
	}
	if (listen_fd < 0)
		return 0;
	/* EPOLLEXCLUSIVE where the kernel has it; else the turn starts at loop 0 */
	exclusive = loop_exclusive_works();
	for (int i = 0; i < nservs && exclusive; i++) {
		if (loop_io_add(servs[i].loop, &servs[i].listen, listen_fd, LOOP_READ | LOOP_EXCLUSIVE, on_listen) < 0) {
			for (int k = 0; k < i; k++)
				loop_io_del(servs[k].loop, &servs[k].listen);
			exclusive = 0;
		}
	}
	if (!exclusive) {
		log_info("event=accept_mode mode=turns reason=\"the kernel or the build has no EPOLLEXCLUSIVE\"");
		listen_on(&servs[0]);
	}
	return 0;
}

int server_start(const struct config *cfg)
{
	if (server_setup(cfg) < 0)
		return -1;
	return loops_run();
}

void server_adopt(struct loop *l, int fd)
{
	conn_new(&servs[loop_index(l)], fd, 0);
}

void server_stop(long spread_ms, long flush_ms)
{
	for (int i = 0; i < nservs; i++) {
		if (loop_post(servs[i].loop, stop_job, (void *)(intptr_t)flush_ms, (void *)(intptr_t)spread_ms))
			loop_wake(servs[i].loop);
	}
	if (loops_running()) {
		loops_join();
	} else {
		/* driven by the caller (tests): run the loops here to their end */
		for (int i = 0; i < nservs; i++)
			while (loop_pass(servs[i].loop, 10))
				;
	}
	loops_free();
	streams_free();
	free(servs);
	servs = NULL;
	nservs = 0;
}

void server_close(void)
{
	pthread_mutex_lock(&reserve_lock);
	for (int i = 0; i < 2; i++) {
		if (reserve[i] >= 0)
			close(reserve[i]);
		reserve[i] = -1;
	}
	pthread_mutex_unlock(&reserve_lock);
	if (listen_fd > 0)
		close(listen_fd);
	listen_fd = -1;
	if (unix_path) {
		unlink(unix_path);
		free(unix_path);
		unix_path = NULL;
	}
}
