/* auth: JWT verification with the configured algorithm pinned, every claim
 * checked by us (libjwt 1.10 checks none), keys re-readable on SIGHUP, and
 * token extraction from header, cookie and query. Thread-safe.
 * Never logs a token, a secret or a key. */
#ifndef SSEHUB_AUTH_H
#define SSEHUB_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define AUTH_MAX_TOKEN 8192
#define AUTH_MAX_USER 128
/* Room for the topics claim's patterns, kept inside the identity so that a
 * cached token carries them: each pattern NUL-terminated, then an empty one. */
#define AUTH_MAX_TOPICS_CLAIM 2048

enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING_TOKEN,
	AUTH_INVALID_TOKEN,
	AUTH_TOKEN_EXPIRED,
	AUTH_NOT_YET_VALID,
	AUTH_WRONG_ALGORITHM,
	AUTH_WRONG_ISSUER,
	AUTH_WRONG_AUDIENCE,
	AUTH_MISSING_USER,
	AUTH__COUNT
};

struct auth_identity {
	char user[AUTH_MAX_USER + 1];
	int admin;
	int64_t exp;             /* first second the token is refused (exp + leeway, saturated:
				  * INT64_MAX for a token that never expires); 0: no exp */
	uint64_t key_id;         /* the configured key that verified the token (cache hits
				  * too): see auth_key_active. Never 0 for a verified token. */
	char topics[AUTH_MAX_TOPICS_CLAIM]; /* the --topics-claim patterns ("a\0b*\0\0"); "" allows none */
	int topics_bad;          /* the claim is there but not an array of non-empty strings
				  * that fits: it allows no topic */
};

/* Loads the keys named by cfg, which must outlive the module. Returns 0, or
 * -1 after printing why to stderr. */
int auth_init(const struct config *cfg);
/* Re-reads the key files. On any error the old keys stay and -1 is
 * returned (the reason is logged, without key material). On success the
 * generation grows by one, a key whose bytes did not change keeps its key
 * id, every other key gets a new one, and the token cache is emptied. */
int auth_reload(void);
void auth_shutdown(void);

/* How many key sets were installed (auth_init: 1, then one more per
 * successful auth_reload). Only grows, never repeats: a caller that saw
 * another value before knows a reload happened in between. Lock-free. */
uint64_t auth_keys_generation(void);
/* 1 when key_id (from an auth_identity) names a key configured now, 0 when
 * a reload removed or changed that key (and for 0). A stream opened with a
 * token must end when its key is no longer active: check after a reload,
 * and again when registering a stream whose token was verified before the
 * reload finished (verify, reload, sweep, register would otherwise miss
 * it: register and sweep under the same lock, check in both). Takes a read
 * lock and scans at most 32 keys. */
int auth_key_active(uint64_t key_id);

/* The one rule for user ids, for the API's user_id fields and the token's
 * user claim alike. json[0..len) is the minified JSON text of the value (a
 * jsonx member's value): a string of 1..128 bytes once unescaped, of
 * util_text_valid text (valid UTF-8 without C0/C1 controls, DEL, U+2028
 * or U+2029) and without \u0000; or an integer in int64_t, written without
 * '.' or exponent, turned into its decimal text ("-0" is "0"). Anything
 * else (out-of-range integers included: never clamped) is refused.
 * Returns 0 with the id in out, or -1 with out empty. */
int auth_user_id(const char *json, size_t len, char out[AUTH_MAX_USER + 1]);

/* Verifies token, a NUL-terminated string of len bytes (libjwt reads C
 * strings; a NUL inside refuses the token), and fills id. Counts failures
 * per reason.
 * A human-readable reason for the developer goes to why (may be NULL). */
enum auth_result auth_verify(const char *token, size_t len, struct auth_identity *id, const char **why);

/* Finds the token from, in order, an "Authorization: Bearer" value, the
 * configured cookie in a Cookie header, the configured query parameter.
 * Any argument may be NULL. Returns a new string the caller frees, or NULL
 * when no source holds one. *bad is set when a source held one that cannot
 * be used (over 8 KB, or badly %-encoded): the caller refuses the request. */
char *auth_find_token(const char *authorization, const char *cookie, const char *query, int *bad);

/* 1 when the token's topics claim allows topic: a pattern equal to it, or
 * a pattern "prefix*" whose prefix starts it ("*" alone allows any). */
int auth_topic_allowed(const struct auth_identity *id, const char *topic);

/* The error code string ("missing_token", ...) of a result. */
const char *auth_result_code(enum auth_result r);
/* Counts a failure found before verification (no token, token too long). */
void auth_count_failure(enum auth_result r);
/* Failures counted so far for a reason. */
uint64_t auth_failures(enum auth_result r);
/* Verifications answered from the cache of tokens that verified before. */
uint64_t auth_cache_hits(void);

#endif
