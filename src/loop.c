/* loop: epoll, a binary heap of timers, and a mutex-guarded inbox with one
 * eventfd (a pipe where eventfd is missing) per loop. One pass: wait, fd
 * events, due timers, inbox jobs, before-sleep hooks, then the releases that
 * became safe. Owners are never freed inside a pass of their own events. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#ifdef HAVE_EVENTFD
#include <sys/eventfd.h>
#endif

#include "log.h"
#include "loop.h"
#include "util.h"

#define EVENT_BATCH 128
#define MAX_HOOKS 4

struct job {
	loop_job_fn *fn;
	void *a, *b;
};

struct loop {
	pthread_t thread;
	int index;
	int epfd;
	int wake_rd, wake_wr;            /* the same eventfd twice, or a pipe */
	int quit;
	int64_t now;

	pthread_mutex_t lock;            /* the inbox */
	struct job *inbox;
	size_t inbox_len, inbox_cap;
	struct job *work;                /* the batch being run (swapped) */
	size_t work_cap;

	struct loop_timer **heap;
	size_t nheap, heap_cap;

	struct loop_later *later_new;    /* released after the next drain */
	struct loop_later *later_ready;  /* released after the drain running now */

	struct {
		void (*fn)(struct loop *, void *);
		void *arg;
	} hooks[MAX_HOOKS];
	int nhooks;
};

static struct loop *loops;
static int nloops;
static int nstarted;
static __thread struct loop *current;

/* ---- wake-up channel ------------------------------------------------------ */

static int wake_open(struct loop *l)
{
#ifdef HAVE_EVENTFD
	l->wake_rd = l->wake_wr = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return l->wake_rd < 0 ? -1 : 0;
#else
	int p[2];
	if (util_pipe_cloexec_nonblock(p) < 0)
		return -1;
	l->wake_rd = p[0];
	l->wake_wr = p[1];
	return 0;
#endif
}

static void wake_close(struct loop *l)
{
	if (l->wake_rd >= 0)
		close(l->wake_rd);
	if (l->wake_wr >= 0 && l->wake_wr != l->wake_rd)
		close(l->wake_wr);
	l->wake_rd = l->wake_wr = -1;
}

static void wake_consume(struct loop *l)
{
	char buf[64];

	/* eventfd: one read resets the counter; pipe: empty it */
	while (read(l->wake_rd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) && l->wake_rd != l->wake_wr)
		;
}

void loop_wake(struct loop *l)
{
	uint64_t one = 1;
	ssize_t rc;

	if (l == current)
		return;
	/* EAGAIN: the counter (or the pipe) already says "wake up" */
	rc = write(l->wake_wr, &one, l->wake_rd == l->wake_wr ? sizeof(one) : 1);
	(void)rc;
}

/* ---- the loop set ---------------------------------------------------------- */

int loops_create(int n)
{
	loops = xcalloc((size_t)n, sizeof(*loops));
	nloops = n;
	for (int i = 0; i < n; i++) {
		struct loop *l = &loops[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		l->index = i;
		l->epfd = -1;
		l->wake_rd = l->wake_wr = -1;
		pthread_mutex_init(&l->lock, NULL);
		l->now = util_mono_ms();
		l->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (l->epfd < 0 || wake_open(l) < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_rd, &ev) < 0) {
			log_error("event=loop_setup_failed error=\"%s\"", strerror(errno));
			return -1;
		}
	}
	return 0;
}

int loops_count(void)
{
	return nloops;
}

struct loop *loops_get(int i)
{
	return &loops[i];
}

struct loop *loop_current(void)
{
	return current;
}

int loop_index(const struct loop *l)
{
	return l->index;
}

int64_t loop_now(const struct loop *l)
{
	return l->now;
}

void loop_quit(struct loop *l)
{
	l->quit = 1;
}

void loop_before_sleep(struct loop *l, void (*fn)(struct loop *, void *), void *arg)
{
	if (l->nhooks == MAX_HOOKS)
		abort(); /* a programming error: raise MAX_HOOKS */
	l->hooks[l->nhooks].fn = fn;
	l->hooks[l->nhooks].arg = arg;
	l->nhooks++;
}

/* ---- fd watchers ------------------------------------------------------------ */

static uint32_t epoll_mask(unsigned mask)
{
	uint32_t ev = EPOLLRDHUP;

	if (mask & LOOP_READ)
		ev |= EPOLLIN;
	if (mask & LOOP_WRITE)
		ev |= EPOLLOUT;
#if HAVE_DECL_EPOLLEXCLUSIVE
	if (mask & LOOP_EXCLUSIVE)
		ev = (ev & ~(uint32_t)EPOLLRDHUP) | EPOLLEXCLUSIVE;
#endif
	return ev;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, unsigned mask, loop_io_fn *fn)
{
	struct epoll_event ev = { .events = epoll_mask(mask), .data.ptr = io };

#if !HAVE_DECL_EPOLLEXCLUSIVE
	if (mask & LOOP_EXCLUSIVE) {
		errno = EINVAL;
		return -1;
	}
#endif
	io->fd = fd;
	io->fn = fn;
	io->added = 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	io->mask = mask;
	io->added = 1;
	return 0;
}

int loop_io_set(struct loop *l, struct loop_io *io, unsigned mask)
{
	struct epoll_event ev = { .events = epoll_mask(mask), .data.ptr = io };

	if (io->mask == mask)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -1;
	io->mask = mask;
	return 0;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
	if (!io->added)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->added = 0;
	io->mask = 0;
}

/* ---- timers: a binary min-heap of pointers, each knowing its slot ------------- */

static void heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (l->heap[parent]->when <= t->when)
			break;
		heap_place(l, i, l->heap[parent]);
		i = parent;
	}
	heap_place(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && l->heap[c + 1]->when < l->heap[c]->when)
			c++;
		if (t->when <= l->heap[c]->when)
			break;
		heap_place(l, i, l->heap[c]);
		i = c;
	}
	heap_place(l, i, t);
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	size_t i;

	if (!t->slot)
		return;
	i = t->slot - 1;
	t->slot = 0;
	l->nheap--;
	if (i == l->nheap)
		return;
	heap_place(l, i, l->heap[l->nheap]);
	heap_up(l, i);
	heap_down(l, l->heap[i] == t ? i : l->heap[i]->slot - 1);
}

void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t when_ms, loop_timer_fn *fn)
{
	loop_timer_stop(l, t);
	t->when = when_ms;
	t->fn = fn;
	if (l->nheap == l->heap_cap) {
		l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
		l->heap = xrealloc(l->heap, l->heap_cap * sizeof(*l->heap));
	}
	heap_place(l, l->nheap++, t);
	heap_up(l, l->nheap - 1);
}

static void run_timers(struct loop *l)
{
	while (l->nheap && l->heap[0]->when <= l->now) {
		struct loop_timer *t = l->heap[0];
		loop_timer_stop(l, t);
		t->fn(l, t);
	}
}

/* ms until the first timer, capped; 0 when one is due */
static int next_timeout(struct loop *l)
{
	int64_t d;

	if (!l->nheap)
		return 1000;
	d = l->heap[0]->when - util_mono_ms();
	return d <= 0 ? 0 : d > 1000 ? 1000 : (int)d;
}

/* ---- inbox and deferred release ------------------------------------------------- */

int loop_post(struct loop *l, loop_job_fn *fn, void *a, void *b)
{
	int was_empty;

	pthread_mutex_lock(&l->lock);
	if (l->inbox_len == l->inbox_cap) {
		l->inbox_cap = l->inbox_cap ? l->inbox_cap * 2 : 64;
		l->inbox = xrealloc(l->inbox, l->inbox_cap * sizeof(*l->inbox));
	}
	l->inbox[l->inbox_len++] = (struct job){ fn, a, b };
	was_empty = l->inbox_len == 1;
	pthread_mutex_unlock(&l->lock);
	return was_empty;
}

void loop_free_later(struct loop *l, struct loop_later *x, loop_later_fn *fn)
{
	x->fn = fn;
	x->next = l->later_new;
	l->later_new = x;
}

static void release(struct loop_later *x)
{
	while (x) {
		struct loop_later *next = x->next;
		x->fn(x);
		x = next;
	}
}

/* Runs the jobs posted so far, and marks for release what was given up
 * before this drain began: every job that could name it is in this batch. */
static void drain(struct loop *l)
{
	size_t n;

	l->later_ready = l->later_new;
	l->later_new = NULL;
	pthread_mutex_lock(&l->lock);
	n = l->inbox_len;
	if (n) {
		/* swap buffers: posters never wait for our jobs */
		struct job *tmp = l->inbox;
		size_t cap = l->inbox_cap;
		l->inbox = l->work;
		l->inbox_cap = l->work_cap;
		l->work = tmp;
		l->work_cap = cap;
		l->inbox_len = 0;
	}
	pthread_mutex_unlock(&l->lock);
	for (size_t i = 0; i < n; i++)
		l->work[i].fn(l, l->work[i].a, l->work[i].b);
}

/* ---- the pass ---------------------------------------------------------------- */

/* One pass; timeout_ms < 0: until the first timer (at most 1 s). */
static void pass(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[EVENT_BATCH];
	int n = epoll_wait(l->epfd, evs, EVENT_BATCH, timeout_ms < 0 ? next_timeout(l) : timeout_ms);

	l->now = util_mono_ms();
	for (int i = 0; i < n; i++) {
		struct loop_io *io = evs[i].data.ptr;
		unsigned ev = 0;

		if (!io) {
			wake_consume(l);
			continue;
		}
		if (!io->added)
			continue; /* removed earlier in this batch */
		if (evs[i].events & EPOLLIN)
			ev |= LOOP_READ;
		if (evs[i].events & EPOLLOUT)
			ev |= LOOP_WRITE;
		if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			ev |= LOOP_HUP;
		io->fn(l, io, ev);
	}
	run_timers(l);
	drain(l);
	for (int i = 0; i < l->nhooks; i++)
		l->hooks[i].fn(l, l->hooks[i].arg);
	/* last: the hooks may still walk lists that name these owners */
	release(l->later_ready);
	l->later_ready = NULL;
}

int loop_pass(struct loop *l, int timeout_ms)
{
	struct loop *was = current;

	current = l;
	if (!l->quit)
		pass(l, timeout_ms);
	current = was;
	return !l->quit;
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;

	current = l;
	while (!l->quit)
		pass(l, -1);
	return NULL;
}

static void quit_job(struct loop *l, void *a, void *b)
{
	loop_quit(l);
}

int loops_running(void)
{
	return nstarted;
}

int loops_run(void)
{
	for (int i = 0; i < nloops; i++) {
		if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]) != 0) {
			log_error("event=loop_start_failed");
			for (int k = 0; k < i; k++) {
				loop_post(&loops[k], quit_job, NULL, NULL);
				loop_wake(&loops[k]);
			}
			nstarted = i;
			return -1;
		}
		nstarted = i + 1;
	}
	return 0;
}

void loops_join(void)
{
	for (int i = 0; i < nstarted; i++)
		pthread_join(loops[i].thread, NULL);
	nstarted = 0;
}

void loops_free(void)
{
	int busy = 1;

	/* jobs posted after the threads returned, and what waits on them; a
	 * job may post to another loop, so all of them drain until none has
	 * work left, before any is freed */
	while (busy) {
		busy = 0;
		for (int i = 0; i < nloops; i++) {
			struct loop *l = &loops[i];
			current = l;
			if (l->inbox_len || l->later_new) {
				busy = 1;
				drain(l);
				release(l->later_ready);
				l->later_ready = NULL;
			}
			current = NULL;
		}
	}
	for (int i = 0; i < nloops; i++) {
		struct loop *l = &loops[i];

		free(l->inbox);
		free(l->work);
		free(l->heap);
		wake_close(l);
		if (l->epfd >= 0)
			close(l->epfd);
		pthread_mutex_destroy(&l->lock);
	}
	free(loops);
	loops = NULL;
	nloops = 0;
}
