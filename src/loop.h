/* loop: the event loop, the one module that calls epoll. A loop is one
 * thread that watches file descriptors, runs timers and runs jobs that other
 * threads post to its inbox (woken by one eventfd). Modelled on Redis's ae:
 * everything else (FastCGI connections, streams, the Redis client) embeds a
 * watcher or a timer and registers a callback here. Nothing here knows what
 * a stream or a connection is. */
#ifndef SSEHUB_LOOP_H
#define SSEHUB_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;
struct loop_later;

/* Events and interests of an fd watcher. */
enum {
	LOOP_READ = 1,           /* readable (or the peer closed) */
	LOOP_WRITE = 2,          /* writable */
	LOOP_HUP = 4,            /* reported only: the peer hung up or an error is pending */
	LOOP_EXCLUSIVE = 8,      /* interest only: wake one of the loops sharing this fd
				  * (EPOLLEXCLUSIVE), for a listening socket */
};

typedef void loop_io_fn(struct loop *l, struct loop_io *io, unsigned events);
typedef void loop_timer_fn(struct loop *l, struct loop_timer *t);
typedef void loop_job_fn(struct loop *l, void *a, void *b);
typedef void loop_later_fn(struct loop_later *x);

/* An fd watcher, embedded in its owner (container_of from the callback).
 * Owned by one loop; only that loop's thread touches it. */
struct loop_io {
	int fd;
	unsigned mask : 8;       /* interests now registered */
	unsigned added : 1;      /* 1 while in the loop's epoll set */
	loop_io_fn *fn;
};

/* A one-shot timer, embedded in its owner. Disarmed before its callback runs;
 * the callback may arm it again. */
struct loop_timer {
	int64_t when;            /* monotonic ms */
	size_t slot;             /* heap position + 1; 0 when not armed */
	loop_timer_fn *fn;
};

/* Something to free once nothing can name it any more (loop_free_later). */
struct loop_later {
	struct loop_later *next;
	loop_later_fn *fn;
};

/* ---- the loop set ------------------------------------------------------- */

/* Creates n loops (not yet running). Returns 0, or -1 (logged) when the
 * kernel refuses an epoll set or an eventfd. */
int loops_create(int n);
int loops_count(void);
struct loop *loops_get(int i);
/* Starts one thread per loop. Returns 0 or -1 (the loops started so far are
 * asked to quit and joined). */
int loops_run(void);
/* How many loop threads loops_run started (0 when the caller drives the
 * loops with loop_pass). */
int loops_running(void);
/* Runs one pass of l in the calling thread, for tests and fuzzers that
 * drive a loop without its thread: waits up to timeout_ms (< 0: until the
 * first timer, at most 1 s). Returns 0 once l was asked to quit. */
int loop_pass(struct loop *l, int timeout_ms);
/* Waits for every loop thread to return (each calls loop_quit itself). */
void loops_join(void);
/* Runs the jobs still queued (after every thread has returned; jobs must
 * cope with their targets being closed) and frees every loop. */
void loops_free(void);

/* The loop whose thread is calling, or NULL for any other thread. */
struct loop *loop_current(void);
int loop_index(const struct loop *l);
/* Monotonic ms, read once per iteration (cheap, and one "now" per pass). */
int64_t loop_now(const struct loop *l);
/* Asks l's thread to return after this iteration. Call from l's thread. */
void loop_quit(struct loop *l);

/* ---- fd watchers (l's thread only) -------------------------------------- */

/* Starts watching fd for mask (LOOP_READ, LOOP_WRITE, LOOP_EXCLUSIVE); the
 * peer hanging up is always reported. Returns 0, or -1 with errno set (for
 * LOOP_EXCLUSIVE: EINVAL when the kernel predates EPOLLEXCLUSIVE). */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, unsigned mask, loop_io_fn *fn);
/* Changes the interests (no system call when they are unchanged). */
int loop_io_set(struct loop *l, struct loop_io *io, unsigned mask);
/* Stops watching; the fd stays open (the owner closes it). Events already
 * fetched for io in this iteration are still delivered to io, so its owner
 * must stay allocated until loop_free_later says otherwise. */
void loop_io_del(struct loop *l, struct loop_io *io);

/* ---- timers (l's thread only) ------------------------------------------- */

/* Arms (or re-arms) t to run fn at when_ms (monotonic). */
void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t when_ms, loop_timer_fn *fn);
void loop_timer_stop(struct loop *l, struct loop_timer *t);

/* ---- the inbox (any thread) --------------------------------------------- */

/* Queues fn(l, a, b) to run in l's thread, in the order of posting. Returns
 * 1 when the inbox was empty, that is, when l may be asleep and the caller
 * must call loop_wake(l) (after releasing its own locks). */
int loop_post(struct loop *l, loop_job_fn *fn, void *a, void *b);
/* Wakes l's thread; a no-op from l's own thread, which drains its inbox
 * before it sleeps. */
void loop_wake(struct loop *l);

/* ---- deferred release (l's thread only) --------------------------------- */

/* Calls fn(x) after the next complete inbox drain that starts after this
 * call, outside every callback: by then no event of this iteration and no
 * job posted before the call can name x's owner. */
void loop_free_later(struct loop *l, struct loop_later *x, loop_later_fn *fn);

/* ---- hooks (set up before loops_run) ------------------------------------ */

/* fn(l, arg) runs in every pass, after the events, timers and inbox jobs,
 * before the thread sleeps (for output gathered during the pass). */
void loop_before_sleep(struct loop *l, void (*fn)(struct loop *, void *), void *arg);

#endif
