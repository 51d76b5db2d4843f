/* hub: the registry (client id -> stream, user -> streams), message order,
 * history and publishing. One mutex guards it; every operation under it is
 * O(1) or O(streams of one user) or O(history), never O(all streams): the
 * per-stream fan-out of a broadcast happens in the loops, without the lock.
 *
 * Order: every publish, stream hand-off and disconnect takes a sequence
 * number and is posted to the loops' inboxes under the lock, so each loop
 * sees them in one global order. A stream delivers a message only when the
 * message's seq is above the stream's start_seq (the seq when it attached);
 * older ones reach it, if at all, through replay from the history. */
#ifndef SSEHUB_HUB_H
#define SSEHUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"
#include "util.h"

struct stream;
struct hub_user;

/* The hub's part of a stream, guarded by the hub lock. */
struct hub_link {
	struct stream *client_next;      /* client-id hash chain */
	uint32_t client_hash;
	struct hub_user *user;
	struct stream *user_next, *user_prev;
};

enum hub_attach_result {
	HUB_ATTACHED = 0,
	HUB_TOO_MANY_CLIENTS,            /* --max-clients */
	HUB_TOO_MANY_USER_CLIENTS,       /* --max-clients-per-user */
	HUB_STOPPING,
};

/* Sets up the hub for cfg (which must outlive it). Returns 0 or -1. */
int hub_init(const struct config *cfg);
/* Drops history and the registry tables. Streams must be gone. */
void hub_free(void);

/* Registers s (its client_id, user and admin fields set) and hands it to a
 * loop. last_event_id may be NULL. Replay of history after it is attached
 * to s. On HUB_ATTACHED the loop owns s; on any other result the caller
 * still owns it and nothing was changed. */
enum hub_attach_result hub_attach(struct stream *s, const char *last_event_id);

/* Removes s from the registry. Called by its loop when it closes. */
void hub_detach(struct stream *s);

/* Publishes m (target, key, id set; seq is assigned here). The hub takes its
 * own references; the caller keeps its one. Stores the recipient count at
 * the time of publishing in *recipients. Returns 0, or -1 when stopping. */
int hub_publish(struct msg *m, long *recipients);

/* Ends every stream of a user (target MSG_USER) or one client (MSG_CLIENT)
 * after the final event held in final (its key names the target). Returns
 * the number of streams it ends. */
long hub_disconnect(struct msg *final);

/* The registry lock, for loops walking one user's streams. */
void hub_lock(void);
void hub_unlock(void);
/* With the lock held: the first stream of a user / the stream of a client id,
 * or NULL. Walk a user's streams with s->hub.user_next. */
struct stream *hub_user_streams_locked(const char *user);
struct stream *hub_client_locked(const char *client_id);

/* Appends the stats object {"total_clients":N,"user_clients":{...}}. */
void hub_stats_json(struct buf *out);
long hub_total_clients(void);
long hub_history_len(void);

/* Makes a fresh message id, unique across restarts. */
void hub_new_id(char *out, size_t outlen);

/* Marks the hub as stopping: attaches and publishes are refused from now. */
void hub_set_stopping(void);
/* Waits until no publisher is still waking loops; after hub_set_stopping
 * none starts, and the loops may then be stopped. */
void hub_wait_wakers(void);

/* Writes the history to path / reads it back (--history-file). Return 0 or
 * -1 (logged). A missing file on load is not an error. */
int hub_history_save(const char *path);
int hub_history_load(const char *path);

#endif
