/* server: listening socket and acceptors. libfcgi's own accept and reads
 * are bypassed: we accept, fcgi_in reads the request within a deadline and
 * checks it, the handlers answer it in one write, and a connection whose
 * peer set FCGI_KEEP_CONN waits in the acceptors' epoll set for its next
 * request. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "fcgi_in.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "util.h"

#define BACKLOG 4096

static int listen_fd = -1;
static char *unix_path;          /* set when we created the socket file */
static int wake_pipe[2] = { -1, -1 };
static pthread_t *acceptors;
static int nacceptors;
static long running;             /* acceptors still inside their loop */
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
	server_init(cfg);
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
	/* Several acceptors wake for one connection; the losers must get EAGAIN,
	 * not block where the stop signal cannot reach them. */
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

/* Two descriptors kept open for the moment the process runs out: closing
 * them lets one acceptor take a connection and answer it (API requests are
 * served, new streams refused with 503) instead of leaving peers hanging in
 * the backlog. Changed under reserve_lock; read without it as a hint. */
static int reserve[2] = { -1, -1 };
static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;

static void reserve_fill(void)
{
	for (int i = 0; i < 2; i++)
		if (reserve[i] < 0)
			__atomic_store_n(&reserve[i], open("/dev/null", O_RDONLY | O_CLOEXEC), __ATOMIC_RELAXED);
}

static void reserve_release(void)
{
	for (int i = 0; i < 2; i++) {
		if (reserve[i] >= 0)
			close(reserve[i]);
		__atomic_store_n(&reserve[i], -1, __ATOMIC_RELAXED);
	}
}

static int reserve_full(void)
{
	return __atomic_load_n(&reserve[0], __ATOMIC_RELAXED) >= 0 && __atomic_load_n(&reserve[1], __ATOMIC_RELAXED) >= 0;
}

static void make_blocking(int fd)
{
	/* blocking from here: requests are read (with a deadline) and answered
	 * synchronously */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

enum { PRESSURE_NONE = 0, PRESSURE_LOCKED, PRESSURE_NO_LOCK };

/* ---- kept connections ------------------------------------------------------
 * A peer that sets FCGI_KEEP_CONN (nginx with fastcgi_keep_conn on and an
 * upstream keepalive pool) sends its next request on the same connection.
 * Between requests the connection is parked in the acceptors' epoll set with
 * EPOLLONESHOT, so exactly one acceptor serves its next request and none
 * blocks on an idle peer. The table, indexed by fd, says which connections
 * are parked; an epoll tag carries fd and a generation so that an event for a
 * connection closed meanwhile (its number maybe reused) is ignored. */

enum { CONN_FREE = 0, CONN_PARKED };

struct parked {
	uint32_t gen;
	uint32_t state;
	int64_t since;      /* ms, monotonic: parked at */
};

#define TAG_LISTEN UINT64_MAX
#define TAG_WAKE (UINT64_MAX - 1)

static int acc_epoll = -1;
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *park_tab;  /* indexed by fd */
static size_t park_cap;
static uint32_t park_gen;
static long parked_now;          /* connections parked at this moment */
static int64_t next_sweep;

long server_idle_connections(void)
{
	return __atomic_load_n(&parked_now, __ATOMIC_RELAXED);
}

/* Parks fd until its next request. Closes it when that fails. */
static void park(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT };
	struct parked *p;

	pthread_mutex_lock(&park_lock);
	if ((size_t)fd >= park_cap) {
		size_t cap = park_cap ? park_cap : 64;
		while (cap <= (size_t)fd)
			cap *= 2;
		park_tab = xrealloc(park_tab, cap * sizeof(*park_tab));
		memset(park_tab + park_cap, 0, (cap - park_cap) * sizeof(*park_tab));
		park_cap = cap;
	}
	p = &park_tab[fd];
	p->gen = ++park_gen;
	p->state = CONN_PARKED;
	p->since = util_mono_ms();
	ev.data.u64 = (uint64_t)p->gen << 32 | (uint32_t)fd;
	/* MOD when the fd was parked before (its entry is still in the set,
	 * disabled by EPOLLONESHOT), ADD the first time */
	if (epoll_ctl(acc_epoll, EPOLL_CTL_MOD, fd, &ev) < 0 &&
	    (errno != ENOENT || epoll_ctl(acc_epoll, EPOLL_CTL_ADD, fd, &ev) < 0)) {
		p->state = CONN_FREE;
		pthread_mutex_unlock(&park_lock);
		close(fd);
		return;
	}
	parked_now++;
	pthread_mutex_unlock(&park_lock);
}

/* Claims the parked connection an event names. Returns its fd, or -1 when
 * that connection was closed meanwhile. */
static int unpark(uint64_t tag)
{
	int fd = (int)(uint32_t)tag;
	int ok;

	pthread_mutex_lock(&park_lock);
	ok = (size_t)fd < park_cap && park_tab[fd].state == CONN_PARKED && park_tab[fd].gen == (uint32_t)(tag >> 32);
	if (ok) {
		park_tab[fd].state = CONN_FREE;
		parked_now--;
	}
	pthread_mutex_unlock(&park_lock);
	return ok ? fd : -1;
}

/* Closes parked connections idle for idle_ms or more (all with 0). The peer
 * sees a connection it had kept closed; nginx then opens a new one. */
static int close_idle(int64_t idle_ms)
{
	int64_t now = util_mono_ms();
	int n = 0;

	pthread_mutex_lock(&park_lock);
	for (size_t fd = 0; fd < park_cap; fd++) {
		if (park_tab[fd].state == CONN_PARKED && now - park_tab[fd].since >= idle_ms) {
			park_tab[fd].state = CONN_FREE;
			parked_now--;
			close((int)fd);
			n++;
		}
	}
	__atomic_store_n(&next_sweep, now + 1000, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&park_lock);
	return n;
}

static void maybe_sweep(void)
{
	if (util_mono_ms() >= __atomic_load_n(&next_sweep, __ATOMIC_RELAXED))
		close_idle(conf->keepalive_timeout * 1000);
}

/* Waits for a new connection, a parked connection's next request, or the
 * wake pipe. Returns the fd (*fresh says which kind), or -1 when the server
 * is stopping. *pressure says the process is out of descriptors (new
 * streams must be refused): PRESSURE_LOCKED when the fd came from the
 * reserve, and the caller then holds reserve_lock until it has answered. */
static int accept_one(int *pressure, int *fresh)
{
	for (;;) {
		struct epoll_event ev;
		int fd, n = epoll_wait(acc_epoll, &ev, 1, 1000);

		if (n < 0 && errno != EINTR)
			return -1;
		maybe_sweep();
		if (n <= 0)
			continue;
		if (ev.data.u64 == TAG_WAKE)
			return -1;
		*pressure = PRESSURE_NONE;
		if (ev.data.u64 != TAG_LISTEN) {
			fd = unpark(ev.data.u64);
			if (fd < 0)
				continue;
			*fresh = 0;
			if (!reserve_full())
				*pressure = PRESSURE_NO_LOCK;
			return fd;
		}
		*fresh = 1;
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE) && close_idle(0) > 0)
			fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			make_blocking(fd);
			if (!reserve_full()) {
				/* A refill failed at the limit: try again now. While it
				 * still fails, no new stream may take a descriptor for
				 * good, or the reserve would never come back. */
				pthread_mutex_lock(&reserve_lock);
				reserve_fill();
				if (!reserve_full())
					*pressure = PRESSURE_NO_LOCK;
				pthread_mutex_unlock(&reserve_lock);
			}
			return fd;
		}
		if (errno == EMFILE || errno == ENFILE) {
			pthread_mutex_lock(&reserve_lock);
			reserve_release();
			fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0) {
				make_blocking(fd);
				*pressure = PRESSURE_LOCKED;
				return fd;
			}
			reserve_fill();
			pthread_mutex_unlock(&reserve_lock);
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* still nothing: let the backlog hold the peer, try again soon */
			static int64_t last_log;
			int64_t now = util_mono_ms();
			struct timespec pause = { 0, 50 * 1000000 };
			if (now - last_log > 5000) {
				last_log = now;
				log_error("event=accept_failed error=\"%s\" action=retrying", strerror(errno));
			}
			nanosleep(&pause, NULL);
		}
		/* EAGAIN: another acceptor took it; anything else: try again */
	}
}

void server_init(const struct config *cfg)
{
	conf = cfg;
}

/* Our strict reader takes the request, the handlers answer it (or hand the
 * fd to a stream loop), and the fd is closed, kept for the next request, or
 * left to the loop. */
int server_serve(int fd, int pressure)
{
	int handed;
	char **envp;
	struct fcgi_in in;
	enum fcgi_in_result res = fcgi_in_read(fd, (size_t)conf->max_message_bytes, conf->request_timeout * 1000, &in);

	if (res == FCGI_IN_PARAMS_TOO_LARGE)
		fcgi_in_answer(fd, in.request_id, "431 Request Header Fields Too Large",
			       "{\"success\":false,\"error\":{\"code\":\"headers_too_large\","
			       "\"message\":\"the request headers are larger than 64 KiB\"}}");
	if (res != FCGI_IN_OK) {
		if (res == FCGI_IN_DROP)
			log_debug("event=bad_fastcgi_request");
		close(fd);
		fcgi_in_free(&in);
		return res == FCGI_IN_PARAMS_TOO_LARGE ? 0 : -1;
	}
	envp = fcgi_in_envp(&in);
	handed = api_handle(fd, &in, envp, pressure);
	free(envp);
	if (handed == 0 && in.keep_conn) {
		handed = 2; /* answered; the peer sends its next request here */
	} else if (handed <= 0) {
		close(fd);
		handed = 0;
	}
	fcgi_in_free(&in);
	return handed;
}

static void *acceptor_main(void *arg)
{
	struct timeval tv = { .tv_sec = conf->request_timeout, .tv_usec = 0 };

	(void)arg;
	for (;;) {
		int pressure, fresh;
		int fd = accept_one(&pressure, &fresh);
		if (fd < 0)
			break;
		/* bounds our blocking writes of answers to a peer that stops reading */
		if (fresh) {
			METRIC_ADD(fcgi_connections_total, 1);
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		}
		if (server_serve(fd, pressure != PRESSURE_NONE) == 2)
			park(fd);
		if (pressure == PRESSURE_LOCKED) {
			static int64_t last_log;
			int64_t now = util_mono_ms();
			reserve_fill();
			pthread_mutex_unlock(&reserve_lock);
			if (now - last_log > 5000) {
				last_log = now;
				log_error("event=out_of_file_descriptors action=refusing_new_streams");
			}
		}
	}
	__atomic_sub_fetch(&running, 1, __ATOMIC_RELEASE);
	return NULL;
}

int server_start(const struct config *cfg)
{
	struct epoll_event lev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	struct epoll_event wev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };

	reserve_fill();
	acc_epoll = epoll_create1(EPOLL_CLOEXEC);
	if (acc_epoll < 0 || pipe2(wake_pipe, O_CLOEXEC) < 0 ||
	    epoll_ctl(acc_epoll, EPOLL_CTL_ADD, listen_fd, &lev) < 0 ||
	    epoll_ctl(acc_epoll, EPOLL_CTL_ADD, wake_pipe[0], &wev) < 0) {
		log_error("event=server_start_failed error=\"%s\"", strerror(errno));
		return -1;
	}
	nacceptors = (int)cfg->acceptors;
	acceptors = xcalloc((size_t)nacceptors, sizeof(*acceptors));
	for (int i = 0; i < nacceptors; i++) {
		__atomic_add_fetch(&running, 1, __ATOMIC_RELEASE);
		if (pthread_create(&acceptors[i], NULL, acceptor_main, NULL) != 0) {
			__atomic_sub_fetch(&running, 1, __ATOMIC_RELEASE);
			log_error("event=server_start_failed error=\"cannot start acceptor threads\"");
			return -1;
		}
	}
	return 0;
}

void server_stop_accepting(void)
{
	/* never read: every acceptor's poll sees it readable from now on */
	if (wake_pipe[1] >= 0) {
		ssize_t rc = write(wake_pipe[1], "x", 1);
		(void)rc;
	}
}

void server_stop(long wait_ms)
{
	int64_t deadline = util_mono_ms() + wait_ms;
	struct timespec pause = { 0, 10 * 1000000 };

	server_stop_accepting();
	while (__atomic_load_n(&running, __ATOMIC_ACQUIRE) > 0 && util_mono_ms() < deadline)
		nanosleep(&pause, NULL);
	if (__atomic_load_n(&running, __ATOMIC_ACQUIRE) == 0) {
		for (int i = 0; i < nacceptors; i++)
			pthread_join(acceptors[i], NULL);
	} else {
		log_warn("event=acceptors_busy_at_exit count=%ld", __atomic_load_n(&running, __ATOMIC_ACQUIRE));
	}
	free(acceptors);
	acceptors = NULL;
	if (__atomic_load_n(&running, __ATOMIC_ACQUIRE) == 0) {
		/* no acceptor left to use them */
		close_idle(0);
		free(park_tab);
		park_tab = NULL;
		park_cap = 0;
		close(acc_epoll);
		acc_epoll = -1;
		for (int i = 0; i < 2; i++) {
			close(wake_pipe[i]);
			wake_pipe[i] = -1;
		}
	}
	if (listen_fd > 0)
		close(listen_fd);
	listen_fd = -1;
	if (unix_path) {
		unlink(unix_path);
		free(unix_path);
		unix_path = NULL;
	}
}
