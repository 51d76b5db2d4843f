/* oldkernel: an LD_PRELOAD shim for the legacy-host tests. Inside a process
 * whose executable is named "ssehub" (and nowhere else: nginx, lighttpd and
 * python run with it loaded too), epoll_ctl treats EPOLLEXCLUSIVE as asked:
 *   SSEHUB_OLDKERNEL=ignore  drop the flag, as Linux before 4.5 does (it
 *                            never checked unknown event bits): every waiter
 *                            wakes for each connection
 *   SSEHUB_OLDKERNEL=trap    abort(): a build with the fallbacks forced must
 *                            never ask for it
 * Each use is appended to SSEHUB_OLDKERNEL_LOG (one line, "pid mode").
 *
 *   cc -shared -fPIC -o oldkernel.so oldkernel.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)
#endif

enum mode { MODE_OFF, MODE_IGNORE, MODE_TRAP };

static enum mode mode;
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);

__attribute__((constructor)) static void oldkernel_init(void)
{
	char exe[4096];
	const char *m = getenv("SSEHUB_OLDKERNEL"), *base;
	ssize_t n;

	real_epoll_ctl = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	if (!m)
		return;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	if (strcmp(base, "ssehub") != 0)
		return;
	if (strcmp(m, "ignore") == 0)
		mode = MODE_IGNORE;
	else if (strcmp(m, "trap") == 0)
		mode = MODE_TRAP;
}

/* One line per use; async-signal-safe calls only, no stdio. */
static void oldkernel_note(const char *what)
{
	const char *path = getenv("SSEHUB_OLDKERNEL_LOG");
	char line[64];
	int fd, len;

	if (!path)
		return;
	len = snprintf(line, sizeof(line), "%ld %s\n", (long)getpid(), what);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)len) < 0) {
		/* nothing to do: the log is only a witness */
	}
	close(fd);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	if (!real_epoll_ctl) /* called from another library's constructor */
		real_epoll_ctl = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	if (mode != MODE_OFF && ev && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && (ev->events & EPOLLEXCLUSIVE)) {
		struct epoll_event copy = *ev;

		if (mode == MODE_TRAP) {
			static const char msg[] = "oldkernel: EPOLLEXCLUSIVE used by a build with the fallbacks forced\n";
			oldkernel_note("trap");
			if (write(2, msg, sizeof(msg) - 1) < 0) {
				/* aborting anyway */
			}
			abort();
		}
		oldkernel_note("ignore");
		copy.events &= ~(unsigned)EPOLLEXCLUSIVE;
		return real_epoll_ctl(epfd, op, fd, &copy);
	}
	return real_epoll_ctl(epfd, op, fd, ev);
}
