/* server: listening socket and acceptors. libfcgi's own accept and reads
 * are bypassed: we accept, fcgi_in reads the request within a deadline and
 * checks it, and libfcgi parses a clean copy of its head from a memfd
 * (FCGX_Accept_r reads an already-set ipcFd; its listen socket is -1 so that
 * on an error it returns instead of accepting on its own), then writes the
 * answer on the real connection. */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "fcgi_in.h"
#include "log.h"
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
	/* blocking from here: libfcgi reads and writes synchronously */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

enum { PRESSURE_NONE = 0, PRESSURE_LOCKED, PRESSURE_NO_LOCK };

/* Waits for a connection or the wake pipe. Returns the new fd, or -1 when
 * the server is stopping. *pressure says the process is out of descriptors
 * (new streams must be refused): PRESSURE_LOCKED when the fd came from the
 * reserve, and the caller then holds reserve_lock until it has answered. */
static int accept_one(int *pressure)
{
	struct pollfd pfd[2] = { { .fd = listen_fd, .events = POLLIN }, { .fd = wake_pipe[0], .events = POLLIN } };

	for (;;) {
		int fd;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (pfd[1].revents)
			return -1;
		*pressure = PRESSURE_NONE;
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

/* Each acceptor's file for the clean request head that libfcgi parses;
 * made when the thread starts, so a request needs no descriptor but its own. */
static __thread int head_file = -1;

void server_init(const struct config *cfg)
{
	conf = cfg;
}

/* Our strict reader takes the request, a clean copy of its head goes through
 * libfcgi (which then writes the answer on the real fd), and the fd is either
 * handed to a stream loop or closed. */
int server_serve(int fd, int pressure)
{
	int handed;

	struct fcgi_in in;
	FCGX_Request req;
	enum fcgi_in_result res = fcgi_in_read(fd, (size_t)conf->max_message_bytes, conf->request_timeout * 1000, &in);

	if (res == FCGI_IN_PARAMS_TOO_LARGE)
		fcgi_in_answer(fd, in.request_id, "431 Request Header Fields Too Large",
			       "{\"success\":false,\"error\":{\"code\":\"headers_too_large\","
			       "\"message\":\"the request headers are larger than 64 KiB\"}}");
	if (res != FCGI_IN_OK) {
		if (res == FCGI_IN_DROP)
			log_debug("event=bad_fastcgi_request");
		handed = res == FCGI_IN_DROP ? -1 : 0;
		goto drop;
	}
	if (head_file < 0)
		head_file = fcgi_in_head_file();
	if (head_file < 0 || fcgi_in_write_head(&in, head_file) < 0) {
		log_error("event=request_head_failed error=\"%s\"", strerror(errno));
		fcgi_in_answer(fd, in.request_id, "503 Service Unavailable",
			       "{\"success\":false,\"error\":{\"code\":\"too_many_open_files\","
			       "\"message\":\"the hub is out of file descriptors\"}}");
		handed = 0;
		goto drop;
	}
	FCGX_InitRequest(&req, -1, 0);
	req.ipcFd = head_file;
	req.keepConnection = 1; /* so Accept_r reads this fd instead of accepting */
	if (FCGX_Accept_r(&req) < 0) {
		/* cannot happen with a head we built; libfcgi closed the file */
		log_error("event=request_head_rejected");
		head_file = -1;
		FCGX_Free(&req, 1);
		handed = -1;
		goto drop;
	}
	/* libfcgi reads and writes through req.ipcFd: from now on, the peer */
	req.ipcFd = fd;
	handed = api_handle(&req, &in, pressure);
	if (handed) {
		FCGX_Free(&req, 0); /* the fd now belongs to a stream loop */
	} else {
		/* The whole request is read, so close at once: libfcgi's lingering
		 * close (shutdown, then wait up to 2 s for the peer) is for unread
		 * input, and would hold this acceptor meanwhile. */
		req.keepConnection = 0;
		req.detached = 1;
		FCGX_Finish_r(&req);
	}
	fcgi_in_free(&in);
	return handed;
drop:
	close(fd);
	fcgi_in_free(&in);
	return handed;
}

static void *acceptor_main(void *arg)
{
	struct timeval tv = { .tv_sec = conf->request_timeout, .tv_usec = 0 };

	(void)arg;
	head_file = fcgi_in_head_file();
	for (;;) {
		int pressure;
		int fd = accept_one(&pressure);
		if (fd < 0)
			break;
		/* bounds our blocking writes of answers to a peer that stops reading */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		server_serve(fd, pressure != PRESSURE_NONE);
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
	if (head_file >= 0)
		close(head_file);
	__atomic_sub_fetch(&running, 1, __ATOMIC_RELEASE);
	return NULL;
}

int server_start(const struct config *cfg)
{
	reserve_fill();
	if (pipe2(wake_pipe, O_CLOEXEC) < 0) {
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
	if (listen_fd > 0)
		close(listen_fd);
	listen_fd = -1;
	if (unix_path) {
		unlink(unix_path);
		free(unix_path);
		unix_path = NULL;
	}
}
