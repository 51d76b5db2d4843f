/* bus: the scripts, the per-loop command connections, and loop 0's
 * subscriber with its sequence tracking (gaps repaired from the log,
 * backfill after a reconnect, epoch changes), probe and heartbeat. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"

#define HEARTBEAT_MS 2000
#define ALIVE_MS 7000            /* a node silent for this long is out of the totals */
#define NODE_TTL_MS 10000        /* its keys expire a little later */
#define PROBE_MS 1000
#define PROBE_TIMEOUT_MS 3000
#define CMD_TIMEOUT_MS 900       /* a publish is answered (503) within 1 s */
#define SLOW_TIMEOUT_MS 5000     /* stats, backfill: bigger answers */
#define MAX_QUEUED 100000        /* bus messages held while a gap is repaired */

/* ---- the scripts ---------------------------------------------------------------
 * Every key is under one hash tag, so they stay legal on a Redis Cluster.
 * Node keys: N = <prefix>:{h}:node:<id> (hash: '#total' and 'u:<user>',
 * 't:<topic>' counts) and N:c (hash: client id -> user), both expiring. */

/* KEYS meta log idx nodes; ARGV kind key id payload maxlen new-epoch channel
 * node-prefix alive-ms. Returns {seq, epoch, recipients} (-1 recipients:
 * the id was published before, nothing sent). */
static const char S_PUBLISH[] =
	"local e=redis.call('HGET',KEYS[1],'epoch')\n"
	"if not e then e=ARGV[6]; redis.call('HSET',KEYS[1],'epoch',e,'seq',0); redis.call('DEL',KEYS[2],KEYS[3]) end\n"
	"if ARGV[3]~='' then local o=redis.call('ZSCORE',KEYS[3],ARGV[3]); if o then return {tonumber(o),e,-1} end end\n"
	"local t=redis.call('TIME'); local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
	"redis.call('ZREMRANGEBYSCORE',KEYS[4],'-inf',now-tonumber(ARGV[9]))\n"
	"local k,key,n,owner=ARGV[1],ARGV[2],0,''\n"
	"local nodes=redis.call('ZRANGE',KEYS[4],0,-1)\n"
	"if k=='c' or k=='C' or k=='J' or k=='L' then\n"
	"  for _,nd in ipairs(nodes) do local u=redis.call('HGET',ARGV[8]..nd..':c',key); if u then n=1; owner=u; break end end\n"
	"else\n"
	"  local f='#total'; if k=='u' or k=='U' or k=='j' or k=='l' then f='u:'..key elseif k=='t' then f='t:'..key end\n"
	"  for _,nd in ipairs(nodes) do local c=tonumber(redis.call('HGET',ARGV[8]..nd,f) or '0'); if c>0 then n=n+c end end\n"
	"end\n"
	"local s=redis.call('HINCRBY',KEYS[1],'seq',1)\n"
	"local m=e..':'..s..':'..t[1]..'\\n'..owner..'\\n'..ARGV[4]\n"
	"redis.call('XADD',KEYS[2],'MAXLEN','~',ARGV[5],s..'-0','m',m)\n"
	"if ARGV[3]~='' then redis.call('ZADD',KEYS[3],s,ARGV[3]) end\n"
	"redis.call('PUBLISH',ARGV[7],m)\n"
	"return {s,e,n}\n";

/* KEYS nodes; ARGV node-prefix self user client limit alive-ms ttl-ms.
 * Returns 1 (counted) or 0 (the user is at the limit). */
static const char S_OPEN[] =
	"local t=redis.call('TIME'); local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
	"redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf',now-tonumber(ARGV[6]))\n"
	"local me=ARGV[1]..ARGV[2]\n"
	"if tonumber(ARGV[5])>0 then\n"
	"  local sum=tonumber(redis.call('HGET',me,'u:'..ARGV[3]) or '0')\n"
	"  for _,nd in ipairs(redis.call('ZRANGE',KEYS[1],0,-1)) do\n"
	"    if nd~=ARGV[2] then sum=sum+tonumber(redis.call('HGET',ARGV[1]..nd,'u:'..ARGV[3]) or '0') end end\n"
	"  if sum>=tonumber(ARGV[5]) then return 0 end\n"
	"end\n"
	"redis.call('HINCRBY',me,'u:'..ARGV[3],1); redis.call('HINCRBY',me,'#total',1)\n"
	"redis.call('HSET',me..':c',ARGV[4],ARGV[3])\n"
	"redis.call('PEXPIRE',me,ARGV[7]); redis.call('PEXPIRE',me..':c',ARGV[7])\n"
	"return 1\n";

/* ARGV node-prefix self user client. */
static const char S_CLOSE[] =
	"local me=ARGV[1]..ARGV[2]\n"
	"if redis.call('HINCRBY',me,'u:'..ARGV[3],-1)<=0 then redis.call('HDEL',me,'u:'..ARGV[3]) end\n"
	"if redis.call('HINCRBY',me,'#total',-1)<0 then redis.call('HSET',me,'#total',0) end\n"
	"redis.call('HDEL',me..':c',ARGV[4])\n"
	"return 1\n";

/* ARGV node-prefix self ttl-ms, then topic,delta pairs: streams of this
 * node joined or left topics. A count may pass below 0 for a moment (two
 * loops' changes arrive in either order); readers count only what is
 * above 0, and the heartbeat rewrites the truth. */
static const char S_TOPICS[] =
	"local me=ARGV[1]..ARGV[2]\n"
	"for i=4,#ARGV-1,2 do local f='t:'..ARGV[i]\n"
	"  if redis.call('HINCRBY',me,f,ARGV[i+1])==0 then redis.call('HDEL',me,f) end end\n"
	"redis.call('PEXPIRE',me,ARGV[3])\n"
	"return 1\n";

/* KEYS nodes log idx; ARGV node-prefix self ttl-ms total clients-too,
 * user,count pairs, '', topic,count pairs, and when clients-too is 1 a ''
 * and client,user pairs. Rewrites this node's counts from its own truth,
 * proves it is alive, and forgets custom ids that left the log. */
static const char S_BEAT[] =
	"local t=redis.call('TIME'); local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
	"local me=ARGV[1]..ARGV[2]\n"
	"redis.call('DEL',me); redis.call('HSET',me,'#total',ARGV[4])\n"
	"local i=6\n"
	"while i<=#ARGV and ARGV[i]~='' do redis.call('HSET',me,'u:'..ARGV[i],ARGV[i+1]); i=i+2 end\n"
	"i=i+1\n"
	"while i<=#ARGV and ARGV[i]~='' do redis.call('HSET',me,'t:'..ARGV[i],ARGV[i+1]); i=i+2 end\n"
	"if ARGV[5]=='1' then redis.call('DEL',me..':c'); i=i+1\n"
	"  while i<=#ARGV do redis.call('HSET',me..':c',ARGV[i],ARGV[i+1]); i=i+2 end end\n"
	"redis.call('PEXPIRE',me,ARGV[3]); redis.call('PEXPIRE',me..':c',ARGV[3])\n"
	"redis.call('ZADD',KEYS[1],now,ARGV[2])\n"
	"local f=redis.call('XRANGE',KEYS[2],'-','+','COUNT',1)\n"
	"if f[1] then redis.call('ZREMRANGEBYSCORE',KEYS[3],'-inf','('..string.match(f[1][1],'^(%d+)')) end\n"
	"return 1\n";

/* KEYS nodes; ARGV node-prefix alive-ms topics-too. Returns {n, nu, nt,
 * then n times id, total, beat-ms, then nu times user, count, then nt
 * times topic, count} (nt 0 unless topics-too is 1). */
static const char S_STATS[] =
	"local t=redis.call('TIME'); local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
	"redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf',now-tonumber(ARGV[2]))\n"
	"local nodes=redis.call('ZRANGE',KEYS[1],0,-1,'WITHSCORES')\n"
	"local res,sums,order={},{u={},t={}},{u={},t={}}\n"
	"for i=1,#nodes,2 do\n"
	"  local h=redis.call('HGETALL',ARGV[1]..nodes[i]); local total=0\n"
	"  for j=1,#h,2 do local f,v=h[j],tonumber(h[j+1]); local p=string.sub(f,1,1)\n"
	"    if f=='#total' then total=v elseif string.sub(f,2,2)==':' and v>0 and (p=='u' or (p=='t' and ARGV[3]=='1')) then\n"
	"      local k=string.sub(f,3); local s=sums[p]; if not s[k] then s[k]=0; local o=order[p]; o[#o+1]=k end; s[k]=s[k]+v end end\n"
	"  res[#res+1]=nodes[i]; res[#res+1]=total; res[#res+1]=nodes[i+1]\n"
	"end\n"
	"local out={#nodes/2,#order.u,#order.t}\n"
	"for _,x in ipairs(res) do out[#out+1]=x end\n"
	"for _,p in ipairs({'u','t'}) do for _,k in ipairs(order[p]) do out[#out+1]=k; out[#out+1]=sums[p][k] end end\n"
	"return out\n";

/* KEYS meta log idx; ARGV epoch seq custom-id. Returns {0} (unknown or
 * too old) or {1, seq, message...}: the message seq itself (so that the
 * node can check that the stream could have received it), then every one
 * after it. */
static const char S_SINCE[] =
	"if redis.call('HGET',KEYS[1],'epoch')~=ARGV[1] then return {0} end\n"
	"local s=tonumber(ARGV[2])\n"
	"if ARGV[3]~='' then local v=redis.call('ZSCORE',KEYS[3],ARGV[3]); if not v then return {0} end; s=tonumber(v) end\n"
	"local top=tonumber(redis.call('HGET',KEYS[1],'seq') or '0')\n"
	"if s>top then return {0} end\n"
	"local f=redis.call('XRANGE',KEYS[2],'-','+','COUNT',1)\n"
	"if not f[1] or tonumber(string.match(f[1][1],'^(%d+)'))>s then return {0} end\n"
	"local out={1,s}\n"
	"for _,x in ipairs(redis.call('XRANGE',KEYS[2],s..'-0','+')) do out[#out+1]=x[2][2] end\n"
	"return out\n";

/* KEYS meta log idx; ARGV old-epoch new-epoch: after a failover lost
 * writes, a new epoch instead of reusing ids. Returns the epoch in force. */
static const char S_ROTATE[] =
	"if redis.call('HGET',KEYS[1],'epoch')==ARGV[1] then\n"
	"  redis.call('HSET',KEYS[1],'epoch',ARGV[2],'seq',0); redis.call('DEL',KEYS[2],KEYS[3]) end\n"
	"return redis.call('HGET',KEYS[1],'epoch')\n";

enum script { SC_PUBLISH, SC_OPEN, SC_CLOSE, SC_TOPICS, SC_BEAT, SC_STATS, SC_SINCE, SC_ROTATE, NSCRIPTS };
static const char *const scripts[NSCRIPTS] = { S_PUBLISH, S_OPEN,  S_CLOSE, S_TOPICS,
						S_BEAT,	   S_STATS, S_SINCE, S_ROTATE };

/* ---- state -------------------------------------------------------------------- */

struct bus_loop {
	struct loop *loop;
	struct redis_conn *cmd;
};

static struct {
	int enabled;
	const struct config *cfg;
	struct bus_hooks hooks;
	struct redis_target target;
	char node[64];
	char k_meta[256], k_log[256], k_idx[256], k_nodes[256], k_node_prefix[256];
	char ch_bus[256], ch_probe[256];
	char sha[NSCRIPTS][41];
	char maxlen[24];
	struct bus_loop *loops;
	int nloops;
	int stopped;

	/* loop 0 only */
	struct redis_conn *sub;
	int subscribed;
	int resync_clients;              /* the next heartbeat rewrites the client list */
	struct loop_timer probe_t, beat_t;
	int64_t last_echo, subscribed_at;
	uint64_t probe_n;
	char epoch[BUSMSG_MAX_EPOCH + 1];
	uint64_t last;                   /* last sequence delivered in epoch */
	int synced;                      /* the position was read once */
	int syncing;                     /* a backfill or repair is running: queue */
	char **queue;
	size_t *queue_len, nqueue, queue_cap;

	int healthy;                     /* atomic: read by every loop */
	pthread_mutex_t epoch_lock;      /* epoch, for readers in other loops */
} bus = { .epoch_lock = PTHREAD_MUTEX_INITIALIZER };

int bus_enabled(void)
{
	return bus.enabled;
}

int bus_healthy(void)
{
	return __atomic_load_n(&bus.healthy, __ATOMIC_ACQUIRE);
}

const char *bus_node_id(void)
{
	return bus.node;
}

void bus_epoch(char *out, size_t outlen)
{
	pthread_mutex_lock(&bus.epoch_lock);
	snprintf(out, outlen, "%s", bus.epoch);
	pthread_mutex_unlock(&bus.epoch_lock);
}

static void set_healthy(int on)
{
	if (__atomic_exchange_n(&bus.healthy, on, __ATOMIC_ACQ_REL) != on)
		log_info("event=backplane_%s node=%s", on ? "healthy" : "degraded", bus.node);
}

/* ---- configuration -------------------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
	unsigned char r[32];
	static const char hex[] = "0123456789abcdef";

	if (RAND_bytes(r, (int)bytes) != 1)
		for (size_t i = 0; i < bytes; i++)
			r[i] = (unsigned char)(util_wall_us() >> (i % 8));
	for (size_t i = 0; i < bytes; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[2 * bytes] = '\0';
}

static int valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return 0;
	return 1;
}

int bus_configure(const struct config *cfg)
{
	char err[300];
	const char *prefix = cfg->redis_prefix;

	bus.cfg = cfg;
	if (!cfg->redis && !cfg->redis_sentinel)
		return 0;
	if (cfg->redis && cfg->redis_sentinel) {
		fprintf(stderr, "ssehub: give --redis or --redis-sentinel, not both\n");
		return -1;
	}
	if (cfg->redis_sentinel && !cfg->redis_master) {
		fprintf(stderr, "ssehub: --redis-sentinel needs --redis-master NAME\n");
		return -1;
	}
	if ((cfg->redis && redis_parse_url(&bus.target, cfg->redis, err, sizeof(err)) < 0) ||
	    (cfg->redis_sentinel && redis_parse_sentinels(&bus.target, cfg->redis_sentinel, err, sizeof(err)) < 0)) {
		fprintf(stderr, "ssehub: %s\n", err);
		return -1;
	}
	if (cfg->redis_master)
		bus.target.master = xstrdup(cfg->redis_master);
	if (cfg->redis_password_file) {
		size_t len;
		char *pw = util_read_file(cfg->redis_password_file, 4096, &len);
		if (!pw) {
			fprintf(stderr, "ssehub: cannot read --redis-password-file %s: %s\n", cfg->redis_password_file,
				strerror(errno));
			return -1;
		}
		while (len > 0 && (pw[len - 1] == '\n' || pw[len - 1] == '\r'))
			pw[--len] = '\0';
		if (!len || memchr(pw, '\0', len)) {
			fprintf(stderr, "ssehub: --redis-password-file %s holds no usable password\n", cfg->redis_password_file);
			util_wipe(pw, len);
			free(pw);
			return -1;
		}
		bus.target.password = pw;
	}
	if (!valid_name(prefix, 64)) {
		fprintf(stderr, "ssehub: --redis-prefix: 1-64 characters of A-Z a-z 0-9 - _ .\n");
		return -1;
	}
	if (cfg->node_id) {
		if (!valid_name(cfg->node_id, 48)) {
			fprintf(stderr, "ssehub: --node-id: 1-48 characters of A-Z a-z 0-9 - _ .\n");
			return -1;
		}
		snprintf(bus.node, sizeof(bus.node), "%s", cfg->node_id);
	} else {
		random_hex(bus.node, 8);
	}
	snprintf(bus.k_meta, sizeof(bus.k_meta), "%s:{h}:meta", prefix);
	snprintf(bus.k_log, sizeof(bus.k_log), "%s:{h}:log", prefix);
	snprintf(bus.k_idx, sizeof(bus.k_idx), "%s:{h}:ids", prefix);
	snprintf(bus.k_nodes, sizeof(bus.k_nodes), "%s:{h}:nodes", prefix);
	snprintf(bus.k_node_prefix, sizeof(bus.k_node_prefix), "%s:{h}:node:", prefix);
	snprintf(bus.ch_bus, sizeof(bus.ch_bus), "%s:{h}:bus", prefix);
	snprintf(bus.ch_probe, sizeof(bus.ch_probe), "%s:{h}:probe:%s", prefix, bus.node);
	snprintf(bus.maxlen, sizeof(bus.maxlen), "%ld", cfg->history_size > 0 ? cfg->history_size : 1);
	for (int i = 0; i < NSCRIPTS; i++) {
		unsigned char md[SHA_DIGEST_LENGTH];
		SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), md);
		for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
			sprintf(bus.sha[i] + 2 * k, "%02x", md[k]);
	}
	bus.enabled = 1;
	return 0;
}

/* ---- scripts: EVALSHA, and EVAL when the server does not know it yet ----------- */

struct call {
	struct redis_conn *c;
	long timeout;
	redis_reply_fn *fn;
	void *arg;
	int argc;
	const char **argv;
	size_t *lens;
	struct buf store;                /* the argument bytes */
	int retried;
};

static void call_free(struct call *k)
{
	free(k->argv);
	free(k->lens);
	free(k->store.data);
	free(k);
}

static void call_reply(void *arg, redisReply *r)
{
	struct call *k = arg;

	if (r && r->type == REDIS_REPLY_ERROR && !k->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		/* first use on this server: the whole script, which it keeps */
		int script = atoi(k->argv[1]);
		k->retried = 1;
		k->argv[0] = "EVAL";
		k->lens[0] = 4;
		k->argv[1] = scripts[script];
		k->lens[1] = strlen(scripts[script]);
		if (redis_command(k->c, k->timeout, call_reply, k, k->argc, k->argv, k->lens) == 0)
			return;
		r = NULL;
	}
	if (r && r->type == REDIS_REPLY_ERROR)
		log_warn("event=redis_script_error error=\"%s\"", r->str);
	k->fn(k->arg, r && r->type != REDIS_REPLY_ERROR ? r : NULL);
	call_free(k);
}

/* Runs script with nkeys keys then the other arguments (NULL-terminated
 * list of strings). fn gets NULL on any failure. Returns -1 when c is not
 * ready (fn not called). */
static int eval_list(struct redis_conn *c, enum script script, long timeout, redis_reply_fn *fn, void *arg, int nkeys,
		     const char *const *args, int nargs, const size_t *arg_lens)
{
	struct call *k;
	size_t *offs;
	char num[16];

	if (!c || !redis_ready(c))
		return -1;
	k = xcalloc(1, sizeof(*k));
	k->c = c;
	k->timeout = timeout;
	k->fn = fn;
	k->arg = arg;
	k->argc = 3 + nargs;
	k->argv = xcalloc((size_t)k->argc, sizeof(*k->argv));
	k->lens = xcalloc((size_t)k->argc, sizeof(*k->lens));
	offs = xcalloc((size_t)k->argc, sizeof(*offs));
	/* argv[1] holds the script's number until the call is sent (for the
	 * EVAL fallback), then its SHA */
	snprintf(num, sizeof(num), "%d", (int)script);
	for (int i = 0; i < k->argc; i++) {
		const char *s = i == 0 ? "EVALSHA" : i == 1 ? num : NULL;
		char nk[16];
		size_t len;
		if (i == 2) {
			snprintf(nk, sizeof(nk), "%d", nkeys);
			s = nk;
		}
		if (i >= 3) {
			s = args[i - 3];
			len = arg_lens ? arg_lens[i - 3] : strlen(s);
		} else {
			len = strlen(s);
		}
		offs[i] = k->store.len;
		buf_append(&k->store, s, len);
		buf_append(&k->store, "", 1);
		k->lens[i] = len;
	}
	for (int i = 0; i < k->argc; i++)
		k->argv[i] = k->store.data + offs[i];
	free(offs);
	{
		/* send the SHA, keep the number in a spare slot for the fallback */
		const char *numbered = k->argv[1];
		int rc;
		k->argv[1] = bus.sha[script];
		k->lens[1] = 40;
		rc = redis_command(c, timeout, call_reply, k, k->argc, k->argv, k->lens);
		k->argv[1] = numbered;
		k->lens[1] = strlen(numbered);
		if (rc < 0) {
			call_free(k);
			return -1;
		}
	}
	return 0;
}

/* ---- loop 0: delivery in sequence order ---------------------------------------- */

static struct redis_conn *cmd0(void)
{
	return bus.loops ? bus.loops[0].cmd : NULL;
}

static void set_epoch(const char *e, size_t len)
{
	pthread_mutex_lock(&bus.epoch_lock);
	snprintf(bus.epoch, sizeof(bus.epoch), "%.*s", (int)len, e);
	pthread_mutex_unlock(&bus.epoch_lock);
}

static void process(const char *raw, size_t len);
static void drain_queue(void);

static void queue_push(const char *raw, size_t len)
{
	if (bus.nqueue >= MAX_QUEUED) {
		/* a repair that never ends: start over from what Redis has */
		log_error("event=bus_queue_overflow dropped=%zu", bus.nqueue);
		for (size_t i = 0; i < bus.nqueue; i++)
			free(bus.queue[i]);
		bus.nqueue = 0;
		METRIC_ADD(bus_lost_total, 1);
	}
	if (bus.nqueue == bus.queue_cap) {
		bus.queue_cap = bus.queue_cap ? bus.queue_cap * 2 : 64;
		bus.queue = xrealloc(bus.queue, bus.queue_cap * sizeof(*bus.queue));
		bus.queue_len = xrealloc(bus.queue_len, bus.queue_cap * sizeof(*bus.queue_len));
	}
	bus.queue[bus.nqueue] = xstrndup(raw, len);
	bus.queue_len[bus.nqueue++] = len;
}

static void new_epoch(const char *e, size_t len, const char *why)
{
	int had = bus.epoch[0] != '\0';

	set_epoch(e, len);
	bus.last = 0;
	if (had) {
		log_warn("event=epoch_changed node=%s epoch=%s reason=\"%s\"", bus.node, bus.epoch, why);
		METRIC_ADD(bus_resets_total, 1);
		bus.hooks.reset(bus.epoch);
	}
}

/* The entries of an XRANGE-like answer (or of S_SINCE after its first
 * two elements), delivered in order. */
static void deliver_entries(redisReply *r, size_t from)
{
	for (size_t i = from; r && i < r->elements; i++) {
		redisReply *e = r->element[i];
		if (e->type == REDIS_REPLY_STRING)
			process(e->str, e->len);
		else if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[1]->type == REDIS_REPLY_ARRAY &&
			 e->element[1]->elements == 2 && e->element[1]->element[1]->type == REDIS_REPLY_STRING)
			process(e->element[1]->element[1]->str, e->element[1]->element[1]->len);
	}
}

/* A gap from bus.last + 1 to upto is being read from the log. */
static void repaired(void *arg, redisReply *r)
{
	uint64_t upto = (uint64_t)(uintptr_t)arg;

	bus.syncing = 0;
	if (!r)
		log_warn("event=gap_repair_failed node=%s", bus.node);
	deliver_entries(r, 0);
	if (bus.syncing)
		return; /* a hole inside the answer: a repair of its own runs first */
	if (bus.last < upto) {
		/* trimmed from the log, or Redis failed: lost for good */
		log_error("event=bus_messages_lost node=%s from=%" PRIu64 " to=%" PRIu64, bus.node, bus.last + 1, upto);
		METRIC_ADD(bus_lost_total, upto - bus.last);
		bus.last = upto;
		bus.hooks.skip(upto);
	}
	drain_queue();
}

/* Reads sequences from..to from the log before anything else is delivered. */
static void repair(uint64_t from, uint64_t to)
{
	char a[32], b[32];
	const char *argv[4] = { "XRANGE", bus.k_log, a, b };
	size_t lens[4];

	snprintf(a, sizeof(a), "%" PRIu64 "-0", from);
	snprintf(b, sizeof(b), "%" PRIu64 "-0", to);
	for (int i = 0; i < 4; i++)
		lens[i] = strlen(argv[i]);
	METRIC_ADD(bus_gap_repairs_total, 1);
	bus.syncing = 1;
	if (!cmd0() || redis_command(cmd0(), SLOW_TIMEOUT_MS, repaired, (void *)(uintptr_t)to, 4, argv, lens) < 0)
		repaired((void *)(uintptr_t)to, NULL);
}

/* One bus message (from the channel, the log, or the queue). */
static void process(const char *raw, size_t len)
{
	struct busmsg m;
	const char *why;

	if (busmsg_decode(raw, len, (size_t)bus.cfg->max_message_bytes + 256, &m, &why) < 0) {
		log_warn("event=bad_bus_message node=%s reason=\"%s\" bytes=%zu", bus.node, why, len);
		METRIC_ADD(bus_bad_messages_total, 1);
		return;
	}
	if (bus.syncing) {
		queue_push(raw, len);
		return;
	}
	if (strlen(bus.epoch) != m.epoch_len || memcmp(bus.epoch, m.epoch, m.epoch_len) != 0)
		new_epoch(m.epoch, m.epoch_len, "a message of another epoch");
	if (m.seq <= bus.last)
		return; /* seen (a backfill overlaps the live channel) */
	if (m.seq > bus.last + 1) {
		queue_push(raw, len);
		repair(bus.last + 1, m.seq - 1);
		return;
	}
	bus.last = m.seq;
	METRIC_ADD(bus_received_total, 1);
	bus.hooks.deliver(&m);
}

static void drain_queue(void)
{
	char **q = bus.queue;
	size_t *ql = bus.queue_len, n = bus.nqueue, i;

	bus.queue = NULL;
	bus.queue_len = NULL;
	bus.nqueue = bus.queue_cap = 0;
	for (i = 0; i < n && !bus.syncing; i++) {
		process(q[i], ql[i]);
		free(q[i]);
	}
	/* a new repair started: the rest waits behind it, in order */
	for (; i < n; i++) {
		queue_push(q[i], ql[i]);
		free(q[i]);
	}
	free(q);
	free(ql);
}

static void on_rotated(void *arg, redisReply *r)
{
	bus.syncing = 0;
	if (r && r->type == REDIS_REPLY_STRING)
		new_epoch(r->str, r->len, "the sequence went back after a failover");
	drain_queue();
}

/* After (re)subscribing: where does the cluster stand? */
static void on_meta(void *arg, redisReply *r)
{
	redisReply *e, *s;
	long long seq = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		bus.syncing = 0;
		drain_queue();
		return;
	}
	e = r->element[0];
	s = r->element[1];
	if (s->type == REDIS_REPLY_STRING)
		seq = strtoll(s->str, NULL, 10);
	if (e->type != REDIS_REPLY_STRING || e->len > BUSMSG_MAX_EPOCH) {
		/* no epoch yet: the first publish makes one */
		bus.synced = 1;
		bus.syncing = 0;
		drain_queue();
		return;
	}
	if (!bus.epoch[0] && bus.synced) {
		/* there was no epoch when we looked first: all of it is new */
		new_epoch(e->str, e->len, "the first messages");
		repair(1, (uint64_t)seq);
	} else if (!bus.epoch[0]) {
		/* just started: live from here */
		bus.synced = 1;
		set_epoch(e->str, e->len);
		bus.last = (uint64_t)seq;
		bus.hooks.skip(bus.last);
		bus.syncing = 0;
		drain_queue();
	} else if (strcmp(bus.epoch, e->str) != 0) {
		new_epoch(e->str, e->len, "Redis lost its data");
		repair(1, (uint64_t)seq);
	} else if ((uint64_t)seq < bus.last) {
		/* a failover lost writes we saw: never hand out those ids again */
		char fresh[BUSMSG_MAX_EPOCH + 1];
		const char *args[5] = { bus.k_meta, bus.k_log, bus.k_idx, bus.epoch, fresh };
		random_hex(fresh, 8);
		if (eval_list(cmd0(), SC_ROTATE, SLOW_TIMEOUT_MS, on_rotated, NULL, 3, args, 5, NULL) < 0)
			on_rotated(NULL, NULL);
	} else if ((uint64_t)seq > bus.last) {
		repair(bus.last + 1, (uint64_t)seq);
	} else {
		bus.syncing = 0;
		drain_queue();
	}
}

static void sync_position(void)
{
	const char *argv[4] = { "HMGET", bus.k_meta, "epoch", "seq" };
	size_t lens[4] = { 5, strlen(bus.k_meta), 5, 3 };

	bus.syncing = 1;
	if (redis_command(cmd0(), SLOW_TIMEOUT_MS, on_meta, NULL, 4, argv, lens) < 0)
		on_meta(NULL, NULL);
}

/* ---- loop 0: the subscriber and the probe ------------------------------------------- */

static void on_bus_message(void *arg, redisReply *r)
{
	redisReply *ch, *payload;

	if (!r) {
		bus.subscribed = 0;
		set_healthy(0);
		return;
	}
	ch = r->element[1];
	payload = r->element[2];
	if (ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(ch->str, bus.ch_probe) == 0) {
		bus.last_echo = loop_now(bus.loops[0].loop);
		if (redis_ready(cmd0()) && !bus.syncing)
			set_healthy(1);
		return;
	}
	process(payload->str, payload->len);
}

static void subscribe_now(void)
{
	const char *ch[2] = { bus.ch_bus, bus.ch_probe };

	if (bus.subscribed || !bus.sub || !redis_ready(bus.sub) || !redis_ready(cmd0()))
		return;
	if (redis_subscribe(bus.sub, on_bus_message, NULL, 2, ch) < 0)
		return;
	bus.subscribed = 1;
	bus.subscribed_at = loop_now(bus.loops[0].loop);
	bus.last_echo = 0;
	/* what was published while we were away comes from the log */
	sync_position();
}

static void on_sub_state(void *arg, int up)
{
	if (up) {
		subscribe_now();
	} else {
		bus.subscribed = 0;
		set_healthy(0);
	}
}

static void on_probe_sent(void *arg, redisReply *r)
{
}

/* Every second: publish to our own channel; a subscriber that hears
 * nothing for a few seconds is reconnected (a subscription can stop
 * delivering without an error, the known Redis/Sentinel failure). */
static void on_probe(struct loop *l, struct loop_timer *t)
{
	int64_t now = loop_now(l);

	if (bus.subscribed && redis_ready(cmd0())) {
		char body[32];
		const char *argv[3] = { "PUBLISH", bus.ch_probe, body };
		size_t lens[3];
		snprintf(body, sizeof(body), "%" PRIu64, ++bus.probe_n);
		lens[0] = 7;
		lens[1] = strlen(bus.ch_probe);
		lens[2] = strlen(body);
		redis_command(cmd0(), CMD_TIMEOUT_MS, on_probe_sent, NULL, 3, argv, lens);
		if (now - (bus.last_echo ? bus.last_echo : bus.subscribed_at) > PROBE_TIMEOUT_MS) {
			log_warn("event=bus_probe_lost node=%s", bus.node);
			set_healthy(0);
			bus.subscribed = 0;
			redis_conn_reset(bus.sub, "the probe did not come back");
		}
	} else {
		set_healthy(0);
		subscribe_now();
	}
	loop_timer_set(l, t, now + PROBE_MS, on_probe);
}

/* ---- loop 0: this node's counts --------------------------------------------------------- */

struct beat {
	struct buf store;
	size_t *offs, *lens;
	size_t n, cap;
	long total;
};

static void beat_add(struct beat *b, const char *s)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->offs = xrealloc(b->offs, b->cap * sizeof(*b->offs));
		b->lens = xrealloc(b->lens, b->cap * sizeof(*b->lens));
	}
	b->offs[b->n] = b->store.len;
	b->lens[b->n++] = strlen(s);
	buf_append(&b->store, s, strlen(s) + 1);
}

static void beat_user(void *arg, const char *user, long n)
{
	struct beat *b = arg;
	char num[24];

	snprintf(num, sizeof(num), "%ld", n);
	beat_add(b, user);
	beat_add(b, num);
	b->total += n;
}

static void beat_topic(void *arg, const char *topic, long n)
{
	char num[24];

	snprintf(num, sizeof(num), "%ld", n);
	beat_add(arg, topic);
	beat_add(arg, num);
}

static void beat_client(void *arg, const char *client, const char *user)
{
	beat_add(arg, client);
	beat_add(arg, user);
}

static void on_beat_done(void *arg, redisReply *r)
{
}

static void heartbeat(void)
{
	struct beat b = { 0 };
	char ttl[24], total[24];
	const char **argv;
	int clients = bus.resync_clients;

	if (!redis_ready(cmd0()))
		return;
	snprintf(ttl, sizeof(ttl), "%d", NODE_TTL_MS);
	beat_add(&b, bus.k_nodes);
	beat_add(&b, bus.k_log);
	beat_add(&b, bus.k_idx);
	beat_add(&b, bus.k_node_prefix);
	beat_add(&b, bus.node);
	beat_add(&b, ttl);
	beat_add(&b, "0");  /* total, filled below */
	beat_add(&b, clients ? "1" : "0");
	bus.hooks.each_user(beat_user, &b);
	beat_add(&b, "");
	bus.hooks.each_topic(beat_topic, &b);
	if (clients) {
		beat_add(&b, "");
		bus.hooks.each_client(beat_client, &b);
	}
	snprintf(total, sizeof(total), "%ld", b.total);
	argv = xcalloc(b.n, sizeof(*argv));
	for (size_t i = 0; i < b.n; i++)
		argv[i] = i == 6 ? total : b.store.data + b.offs[i];
	b.lens[6] = strlen(total);
	if (eval_list(cmd0(), SC_BEAT, SLOW_TIMEOUT_MS, on_beat_done, NULL, 3, argv, (int)b.n, b.lens) == 0)
		bus.resync_clients = 0;
	free(argv);
	free(b.store.data);
	free(b.offs);
	free(b.lens);
}

static void on_beat(struct loop *l, struct loop_timer *t)
{
	heartbeat();
	loop_timer_set(l, t, loop_now(l) + HEARTBEAT_MS, on_beat);
}

static void on_cmd_state(void *arg, int up)
{
	struct bus_loop *bl = arg;

	if (bl != &bus.loops[0])
		return;
	if (up) {
		/* Redis may have lost us (or everything): rewrite our counts and
		 * clients, then subscribe if the subscriber is back too */
		bus.resync_clients = 1;
		heartbeat();
		subscribe_now();
	} else {
		set_healthy(0);
	}
}

/* ---- opening and closing streams (counted in loop 0) -------------------------------- */

struct open_req {
	struct loop *from;
	char *user, *client;
	long limit;
	void (*fn)(void *arg, int ok);
	void *arg;
	int ok;
};

static void open_answer_job(struct loop *l, void *a, void *b)
{
	struct open_req *o = a;

	o->fn(o->arg, o->ok);
	free(o->user);
	free(o->client);
	free(o);
}

static void open_answer(struct open_req *o, int ok)
{
	o->ok = ok;
	if (ok)
		bus.hooks.count(o->user, 1);
	if (loop_post(o->from, open_answer_job, o, NULL))
		loop_wake(o->from);
}

static void on_open_reply(void *arg, redisReply *r)
{
	struct open_req *o = arg;

	/* Redis failed meanwhile: admitted on this node's count alone */
	open_answer(o, !r || r->type != REDIS_REPLY_INTEGER || r->integer == 1);
}

static void open_job(struct loop *l, void *a, void *b)
{
	struct open_req *o = a;
	char limit[24], alive[24], ttl[24];
	const char *args[8] = { bus.k_nodes, bus.k_node_prefix, bus.node, o->user, o->client, limit, alive, ttl };

	snprintf(limit, sizeof(limit), "%ld", o->limit);
	snprintf(alive, sizeof(alive), "%d", ALIVE_MS);
	snprintf(ttl, sizeof(ttl), "%d", NODE_TTL_MS);
	if (bus.stopped || eval_list(cmd0(), SC_OPEN, CMD_TIMEOUT_MS, on_open_reply, o, 1, args, 8, NULL) < 0)
		open_answer(o, 1);
}

void bus_open(struct loop *l, const char *user, const char *client, long limit, void (*fn)(void *arg, int ok),
	      void *arg)
{
	struct open_req *o = xcalloc(1, sizeof(*o));
	struct loop *l0 = bus.loops[0].loop;

	o->from = l;
	o->user = xstrdup(user);
	o->client = xstrdup(client);
	o->limit = limit;
	o->fn = fn;
	o->arg = arg;
	if (loop_post(l0, open_job, o, NULL))
		loop_wake(l0);
}

static void on_close_reply(void *arg, redisReply *r)
{
}

static void close_job(struct loop *l, void *a, void *b)
{
	char *user = a, *client = b;
	const char *args[4] = { bus.k_node_prefix, bus.node, user, client };

	bus.hooks.count(user, -1);
	if (!bus.stopped)
		eval_list(cmd0(), SC_CLOSE, CMD_TIMEOUT_MS, on_close_reply, NULL, 0, args, 4, NULL);
	free(user);
	free(client);
}

void bus_close(const char *user, const char *client)
{
	struct loop *l0 = bus.loops[0].loop;

	if (loop_post(l0, close_job, xstrdup(user), xstrdup(client)))
		loop_wake(l0);
}

struct topics_req {
	size_t n;
	long *delta;
	char **names;
};

static void topics_job(struct loop *l, void *a, void *b)
{
	struct topics_req *t = a;
	char ttl[24];
	const char **args = xcalloc(3 + 2 * t->n, sizeof(*args));
	char *nums = xcalloc(t->n ? t->n : 1, 24);
	int argc = 3;

	bus.hooks.topics(t->names, t->delta, t->n);
	snprintf(ttl, sizeof(ttl), "%d", NODE_TTL_MS);
	args[0] = bus.k_node_prefix;
	args[1] = bus.node;
	args[2] = ttl;
	for (size_t i = 0; i < t->n; i++) {
		if (!t->delta[i])
			continue;
		snprintf(nums + 24 * i, 24, "%ld", t->delta[i]);
		args[argc++] = t->names[i];
		args[argc++] = nums + 24 * i;
	}
	/* a change lost with Redis is rewritten by the heartbeat that follows
	 * the reconnect */
	if (!bus.stopped && argc > 3)
		eval_list(cmd0(), SC_TOPICS, CMD_TIMEOUT_MS, on_close_reply, NULL, 0, args, argc, NULL);
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	free(t->delta);
	free(t);
	free(args);
	free(nums);
}

void bus_topics(char *const *names, const long *delta, size_t n)
{
	struct loop *l0 = bus.loops[0].loop;
	struct topics_req *t = xcalloc(1, sizeof(*t));

	t->n = n;
	t->names = xcalloc(n ? n : 1, sizeof(*t->names));
	t->delta = xcalloc(n ? n : 1, sizeof(*t->delta));
	for (size_t i = 0; i < n; i++) {
		t->names[i] = xstrdup(names[i]);
		t->delta[i] = delta[i];
	}
	if (loop_post(l0, topics_job, t, NULL))
		loop_wake(l0);
}

/* ---- publish, stats, since (in the caller's loop) ------------------------------------- */

struct pub_req {
	bus_done_fn *fn;
	void *arg;
};

static void on_publish_reply(void *arg, redisReply *r)
{
	struct pub_req *p = arg;
	struct bus_result res = { 0 };

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len <= BUSMSG_MAX_EPOCH &&
	    r->element[2]->type == REDIS_REPLY_INTEGER) {
		res.ok = 1;
		res.seq = (uint64_t)r->element[0]->integer;
		snprintf(res.epoch, sizeof(res.epoch), "%s", r->element[1]->str);
		res.count = (long)r->element[2]->integer;
		if (res.count < 0) {
			res.duplicate = 1;
			res.count = 0;
		}
		METRIC_ADD(bus_published_total, 1);
	}
	p->fn(p->arg, &res);
	free(p);
}

int bus_publish(struct loop *l, enum busmsg_kind kind, const char *key, const char *id, const char *body,
		size_t body_len, bus_done_fn *fn, void *arg)
{
	struct bus_loop *bl = &bus.loops[loop_index(l)];
	struct buf payload = { 0 };
	char fresh[BUSMSG_MAX_EPOCH + 1], alive[24];
	struct pub_req *p;
	const char *args[13];
	size_t lens[13];
	int rc;

	if (!bus_healthy() || !redis_ready(bl->cmd))
		return -1;
	busmsg_payload(&payload, kind, key, id, body, body_len);
	random_hex(fresh, 8);
	snprintf(alive, sizeof(alive), "%d", ALIVE_MS);
	args[0] = bus.k_meta;
	args[1] = bus.k_log;
	args[2] = bus.k_idx;
	args[3] = bus.k_nodes;
	args[4] = (const char[2]){ (char)kind, 0 };
	args[5] = key ? key : "";
	args[6] = id ? id : "";
	args[7] = payload.data;
	args[8] = bus.maxlen;
	args[9] = fresh;
	args[10] = bus.ch_bus;
	args[11] = bus.k_node_prefix;
	args[12] = alive;
	for (int i = 0; i < 13; i++)
		lens[i] = i == 7 ? payload.len : strlen(args[i]);
	p = xcalloc(1, sizeof(*p));
	p->fn = fn;
	p->arg = arg;
	rc = eval_list(bl->cmd, SC_PUBLISH, CMD_TIMEOUT_MS, on_publish_reply, p, 4, args, 13, lens);
	free(payload.data);
	if (rc < 0)
		free(p);
	return rc;
}

struct stats_req {
	void (*fn)(void *arg, const struct buf *json);
	void *arg;
	int topics;
};

/* "name":count members from r->element[from..from+2n). */
static void count_members(struct buf *out, const redisReply *r, size_t from, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const redisReply *k = r->element[from + 2 * i], *v = r->element[from + 2 * i + 1];
		if (i)
			buf_puts(out, ",");
		buf_json_str(out, k->type == REDIS_REPLY_STRING ? k->str : "");
		buf_printf(out, ":%lld", v->type == REDIS_REPLY_INTEGER ? v->integer : 0LL);
	}
}

static void on_stats_reply(void *arg, redisReply *r)
{
	struct stats_req *s = arg;
	struct buf out = { 0 };
	size_t i, n = 0, nu = 0, nt = 0, users;
	long total = 0;
	int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3;

	for (i = 0; ok && i < 3; i++)
		ok = r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer >= 0 &&
		     r->element[i]->integer <= (long long)r->elements;
	if (ok) {
		n = (size_t)r->element[0]->integer;
		nu = (size_t)r->element[1]->integer;
		nt = (size_t)r->element[2]->integer;
		ok = 3 + 3 * n + 2 * nu + 2 * nt == r->elements;
	}
	if (!ok) {
		s->fn(s->arg, NULL);
		free(s);
		return;
	}
	for (i = 0; i < n; i++)
		if (r->element[3 + 3 * i + 1]->type == REDIS_REPLY_INTEGER)
			total += (long)r->element[3 + 3 * i + 1]->integer;
	users = 3 + 3 * n;
	buf_printf(&out, "\"total_clients\":%ld,\"user_clients\":{", total);
	count_members(&out, r, users, nu);
	buf_puts(&out, "},\"nodes\":[");
	for (i = 0; i < n; i++) {
		redisReply *id = r->element[3 + 3 * i], *cnt = r->element[4 + 3 * i], *beat = r->element[5 + 3 * i];
		buf_printf(&out, "%s{\"id\":", i ? "," : "");
		buf_json_str(&out, id->type == REDIS_REPLY_STRING ? id->str : "");
		buf_printf(&out, ",\"clients\":%lld,\"last_heartbeat\":%s}",
			   cnt->type == REDIS_REPLY_INTEGER ? cnt->integer : 0LL,
			   beat->type == REDIS_REPLY_STRING && beat->len && beat->len < 20 &&
					   strspn(beat->str, "0123456789") == beat->len
				   ? beat->str
				   : "0");
	}
	buf_puts(&out, "]");
	if (s->topics) {
		buf_puts(&out, ",\"topic_clients\":{");
		count_members(&out, r, users + 2 * nu, nt);
		buf_puts(&out, "}");
	}
	s->fn(s->arg, &out);
	free(out.data);
	free(s);
}

int bus_stats(struct loop *l, int topics, void (*fn)(void *arg, const struct buf *json), void *arg)
{
	struct bus_loop *bl = &bus.loops[loop_index(l)];
	struct stats_req *s;
	char alive[24];
	const char *args[4] = { bus.k_nodes, bus.k_node_prefix, alive, topics ? "1" : "0" };

	if (!bus_healthy())
		return -1;
	snprintf(alive, sizeof(alive), "%d", ALIVE_MS);
	s = xcalloc(1, sizeof(*s));
	s->fn = fn;
	s->arg = arg;
	s->topics = topics;
	if (eval_list(bl->cmd, SC_STATS, SLOW_TIMEOUT_MS, on_stats_reply, s, 1, args, 4, NULL) < 0) {
		free(s);
		return -1;
	}
	return 0;
}

struct since_req {
	bus_since_fn *fn;
	void *arg;
};

static void on_since_reply(void *arg, redisReply *r)
{
	struct since_req *q = arg;
	const char **entries = NULL;
	size_t *lens = NULL, n = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
		q->fn(q->arg, -1, 0, NULL, NULL, 0);
	} else if (r->element[0]->integer != 1 || r->elements < 2 || r->element[1]->type != REDIS_REPLY_INTEGER ||
		   r->element[1]->integer < 0) {
		q->fn(q->arg, 0, 0, NULL, NULL, 0);
	} else {
		entries = xcalloc(r->elements, sizeof(*entries));
		lens = xcalloc(r->elements, sizeof(*lens));
		for (size_t i = 2; i < r->elements; i++) {
			if (r->element[i]->type != REDIS_REPLY_STRING)
				continue;
			entries[n] = r->element[i]->str;
			lens[n++] = r->element[i]->len;
		}
		q->fn(q->arg, 1, (uint64_t)r->element[1]->integer, entries, lens, n);
	}
	free(entries);
	free(lens);
	free(q);
}

int bus_since(struct loop *l, uint64_t seq, const char *custom, bus_since_fn *fn, void *arg)
{
	struct bus_loop *bl = &bus.loops[loop_index(l)];
	struct since_req *q;
	char epoch[BUSMSG_MAX_EPOCH + 1], num[24];
	const char *args[6] = { bus.k_meta, bus.k_log, bus.k_idx, epoch, num, custom ? custom : "" };

	if (!bus_healthy())
		return -1;
	bus_epoch(epoch, sizeof(epoch));
	snprintf(num, sizeof(num), "%" PRIu64, seq);
	q = xcalloc(1, sizeof(*q));
	q->fn = fn;
	q->arg = arg;
	if (eval_list(bl->cmd, SC_SINCE, SLOW_TIMEOUT_MS, on_since_reply, q, 3, args, 6, NULL) < 0) {
		free(q);
		return -1;
	}
	return 0;
}

/* ---- start and stop ------------------------------------------------------------------- */

void bus_start(const struct bus_hooks *hooks)
{
	char name[32];

	if (!bus.enabled)
		return;
	bus.hooks = *hooks;
	bus.nloops = loops_count();
	bus.loops = xcalloc((size_t)bus.nloops, sizeof(*bus.loops));
	for (int i = 0; i < bus.nloops; i++) {
		struct bus_loop *bl = &bus.loops[i];
		bl->loop = loops_get(i);
		snprintf(name, sizeof(name), "cmd%d", i);
		bl->cmd = redis_conn_new(bl->loop, &bus.target, name, on_cmd_state, bl);
	}
	bus.sub = redis_conn_new(bus.loops[0].loop, &bus.target, "bus", on_sub_state, NULL);
	loop_timer_set(bus.loops[0].loop, &bus.probe_t, util_mono_ms() + PROBE_MS, on_probe);
	loop_timer_set(bus.loops[0].loop, &bus.beat_t, util_mono_ms() + HEARTBEAT_MS, on_beat);
	log_info("event=backplane node=%s prefix=%s", bus.node, bus.cfg->redis_prefix);
}

void bus_stop_loop(struct loop *l)
{
	struct bus_loop *bl;

	if (!bus.enabled)
		return;
	bl = &bus.loops[loop_index(l)];
	if (loop_index(l) == 0) {
		bus.stopped = 1;
		set_healthy(0);
		loop_timer_stop(l, &bus.probe_t);
		loop_timer_stop(l, &bus.beat_t);
		redis_conn_free(bus.sub);
		bus.sub = NULL;
	}
	redis_conn_free(bl->cmd);
	bl->cmd = NULL;
}

void bus_free(void)
{
	if (!bus.enabled)
		return;
	for (size_t i = 0; i < bus.nqueue; i++)
		free(bus.queue[i]);
	free(bus.queue);
	free(bus.queue_len);
	free(bus.loops);
	bus.loops = NULL;
	redis_target_free(&bus.target);
}
