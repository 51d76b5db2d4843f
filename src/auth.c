/* auth: JWT checks around libjwt 1.10.2. libjwt verifies signatures only;
 * the algorithm pin, the size cap and every claim are checked here. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jwt.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/objects.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#include <openssl/ec.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define MAX_KEYS 32
#define MAX_KEY_FILE (1 << 20)

struct key {
	unsigned char *bytes;
	size_t len;
};

struct keyset {
	struct key keys[MAX_KEYS];
	int n;
};

static const struct config *conf;
static jwt_alg_t pinned_alg;
static int pinned_hmac;
static struct keyset *active;
static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static uint64_t failures[AUTH__COUNT];

/* Tokens that verified, so that the next request with the very same bytes
 * (a back end's admin token on every publish, a browser reconnecting) skips
 * the signature and the JSON. A hit needs a byte-identical token (compared
 * in constant time) checked under the current keys; the time checks (exp,
 * nbf, iat) are made again on every hit from the cached bounds. SIGHUP's
 * reload empties it: a removed key stops working at once. */
#define CACHE_SLOTS 64
struct cached {
	char *token;             /* NULL: empty slot */
	size_t len;
	uint64_t hash;
	int64_t valid_from;      /* first second nbf and iat allow (INT64_MIN: any) */
	struct auth_identity id; /* id.exp: first second refused, 0: never */
};
static struct cached cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t cache_seed, cache_hits;

static uint64_t token_hash(const char *t, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ cache_seed;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)t[i]) * 1099511628211ULL;
	return h ^ (h >> 29);
}

static void cache_clear_locked(void)
{
	for (int i = 0; i < CACHE_SLOTS; i++) {
		if (cache[i].token) {
			OPENSSL_cleanse(cache[i].token, cache[i].len);
			free(cache[i].token);
		}
		memset(&cache[i], 0, sizeof(cache[i]));
	}
}

static void cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	cache_clear_locked();
	pthread_mutex_unlock(&cache_lock);
}

/* 1 with *id filled when token is cached and still inside its time bounds. */
static int cache_get(const char *token, size_t len, uint64_t h, struct auth_identity *id)
{
	struct cached *c = &cache[h % CACHE_SLOTS];
	int64_t now = util_wall_s();
	int hit;

	pthread_mutex_lock(&cache_lock);
	hit = c->token && c->hash == h && c->len == len && CRYPTO_memcmp(c->token, token, len) == 0 &&
	      (c->id.exp == 0 || now < c->id.exp) && now >= c->valid_from;
	if (hit)
		*id = c->id;
	pthread_mutex_unlock(&cache_lock);
	if (hit) {
		__atomic_add_fetch(&cache_hits, 1, __ATOMIC_RELAXED);
		METRIC_ADD(auth_cache_hits_total, 1);
	}
	return hit;
}

static void cache_put(const char *token, size_t len, uint64_t h, int64_t valid_from, const struct auth_identity *id,
		      const struct keyset *checked_with)
{
	struct cached *c = &cache[h % CACHE_SLOTS];
	char *copy = xmalloc(len);

	memcpy(copy, token, len);
	pthread_mutex_lock(&cache_lock);
	/* keys reloaded while this one was being verified: do not keep it */
	pthread_rwlock_rdlock(&keys_lock);
	if (active != checked_with) {
		pthread_rwlock_unlock(&keys_lock);
		pthread_mutex_unlock(&cache_lock);
		OPENSSL_cleanse(copy, len);
		free(copy);
		return;
	}
	pthread_rwlock_unlock(&keys_lock);
	if (c->token) {
		OPENSSL_cleanse(c->token, c->len);
		free(c->token);
	}
	c->token = copy;
	c->len = len;
	c->hash = h;
	c->valid_from = valid_from;
	c->id = *id;
	pthread_mutex_unlock(&cache_lock);
}

uint64_t auth_cache_hits(void)
{
	return __atomic_load_n(&cache_hits, __ATOMIC_RELAXED);
}

static const char *const result_codes[AUTH__COUNT] = {
	"ok", "missing_token", "invalid_token", "token_expired", "token_not_yet_valid",
	"wrong_algorithm", "wrong_issuer", "wrong_audience", "missing_user",
};

const char *auth_result_code(enum auth_result r)
{
	return (unsigned)r < AUTH__COUNT ? result_codes[r] : "invalid_token";
}

void auth_count_failure(enum auth_result r)
{
	if ((unsigned)r < AUTH__COUNT && r != AUTH_OK) {
		__atomic_add_fetch(&failures[r], 1, __ATOMIC_RELAXED);
		METRIC_ADD(auth_failures[r], 1);
	}
}

uint64_t auth_failures(enum auth_result r)
{
	return (unsigned)r < AUTH__COUNT ? __atomic_load_n(&failures[r], __ATOMIC_RELAXED) : 0;
}

static void keyset_free(struct keyset *ks)
{
	if (!ks)
		return;
	for (int i = 0; i < ks->n; i++) {
		/* wipe key material before it returns to the allocator */
		memset(ks->keys[i].bytes, 0, ks->keys[i].len);
		free(ks->keys[i].bytes);
	}
	free(ks);
}

static int keyset_add(struct keyset *ks, const char *bytes, size_t len, char *err, size_t errlen)
{
	if (ks->n >= MAX_KEYS) {
		snprintf(err, errlen, "more than %d keys", MAX_KEYS);
		return -1;
	}
	ks->keys[ks->n].bytes = (unsigned char *)xstrndup(bytes, len);
	ks->keys[ks->n].len = len;
	ks->n++;
	return 0;
}

/* A secret file: its bytes, less one trailing newline. */
static int load_secret(struct keyset *ks, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *data = util_read_file(path, MAX_KEY_FILE, &len);
	int rc;

	if (!data) {
		snprintf(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
		return -1;
	}
	if (len > 0 && data[len - 1] == '\n')
		len--;
	if (len > 0 && data[len - 1] == '\r')
		len--;
	if (len == 0) {
		snprintf(err, errlen, "secret file %s is empty", path);
		rc = -1;
	} else {
		rc = keyset_add(ks, data, len, err, errlen);
	}
	memset(data, 0, len);
	free(data);
	return rc;
}

/* The curve an ES* algorithm needs, by NID. */
static int es_curve(jwt_alg_t alg)
{
	switch (alg) {
	case JWT_ALG_ES256: return NID_X9_62_prime256v1;
	case JWT_ALG_ES384: return NID_secp384r1;
	case JWT_ALG_ES512: return NID_secp521r1;
	default: return NID_undef;
	}
}

/* 1 when pem[0..len) is a public key libjwt can use for the pinned
 * algorithm: parsed the way libjwt parses it, of the right type and curve.
 * A file that merely looks like PEM must never replace working keys. */
static int pem_key_usable(const char *pem, size_t len, char *err, size_t errlen)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	int ok = 0;

	BIO_free(bio);
	if (!key) {
		snprintf(err, errlen, "not a PEM public key (SubjectPublicKeyInfo, \"BEGIN PUBLIC KEY\")");
		return 0;
	}
	if (pinned_alg == JWT_ALG_RS256 || pinned_alg == JWT_ALG_RS384 || pinned_alg == JWT_ALG_RS512) {
		ok = EVP_PKEY_base_id(key) == EVP_PKEY_RSA;
		if (!ok)
			snprintf(err, errlen, "not an RSA key, but --jwt-alg is %s", conf->jwt_alg);
	} else if (EVP_PKEY_base_id(key) != EVP_PKEY_EC) {
		snprintf(err, errlen, "not an EC key, but --jwt-alg is %s", conf->jwt_alg);
	} else {
		int nid = NID_undef;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		char group[64];
		if (EVP_PKEY_get_group_name(key, group, sizeof(group), NULL))
			nid = OBJ_sn2nid(group);
#else
		const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
		if (ec)
			nid = EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
#endif
		ok = nid != NID_undef && nid == es_curve(pinned_alg);
		if (!ok)
			snprintf(err, errlen, "EC key on the wrong curve for --jwt-alg %s", conf->jwt_alg);
	}
	EVP_PKEY_free(key);
	return ok;
}

/* A PEM file: one key per "-----BEGIN ... -----END ...-----" block. */
static int load_pem(struct keyset *ks, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *data = util_read_file(path, MAX_KEY_FILE, &len);
	const char *p;
	char why[160];
	int found = 0, rc = 0;

	if (!data) {
		snprintf(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
		return -1;
	}
	p = data;
	while ((p = strstr(p, "-----BEGIN ")) != NULL) {
		const char *end = strstr(p, "-----END ");
		const char *stop;
		if (!end || !(stop = strstr(end + 9, "-----"))) {
			snprintf(err, errlen, "key file %s: unterminated PEM block", path);
			rc = -1;
			break;
		}
		stop += 5;
		if (strstr(p, "PRIVATE KEY") && strstr(p, "PRIVATE KEY") < stop) {
			snprintf(err, errlen, "key file %s holds a private key: give the public key", path);
			rc = -1;
			break;
		}
		if (!pem_key_usable(p, (size_t)(stop - p), why, sizeof(why))) {
			snprintf(err, errlen, "key file %s: key %d: %s", path, found + 1, why);
			rc = -1;
			break;
		}
		if (keyset_add(ks, p, (size_t)(stop - p), err, errlen) < 0) {
			rc = -1;
			break;
		}
		found++;
		p = stop;
	}
	if (rc == 0 && !found) {
		snprintf(err, errlen, "key file %s holds no PEM key", path);
		rc = -1;
	}
	free(data);
	return rc;
}

static struct keyset *load_keys(char *err, size_t errlen)
{
	struct keyset *ks = xcalloc(1, sizeof(*ks));
	int i;

	if (pinned_hmac) {
		for (i = 0; i < conf->n_secret_files; i++)
			if (load_secret(ks, conf->secret_files[i], err, errlen) < 0)
				goto fail;
	} else {
		for (i = 0; i < conf->n_pubkey_files; i++)
			if (load_pem(ks, conf->pubkey_files[i], err, errlen) < 0)
				goto fail;
	}
	if (ks->n == 0) {
		snprintf(err, errlen, pinned_hmac ? "--jwt-alg %s needs --jwt-secret-file"
						  : "--jwt-alg %s needs --jwt-public-key-file",
			 conf->jwt_alg);
		goto fail;
	}
	return ks;
fail:
	keyset_free(ks);
	return NULL;
}

int auth_init(const struct config *cfg)
{
	char err[512];

	conf = cfg;
	cache_clear(); /* tokens verified under another configuration */
	if (RAND_bytes((unsigned char *)&cache_seed, sizeof(cache_seed)) != 1)
		cache_seed = (uint64_t)util_wall_us();
	pinned_alg = jwt_str_alg(cfg->jwt_alg);
	if (pinned_alg == JWT_ALG_INVAL || pinned_alg == JWT_ALG_NONE) {
		fprintf(stderr, "ssehub: --jwt-alg %s is not one of HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512\n",
			cfg->jwt_alg);
		return -1;
	}
	pinned_hmac = pinned_alg == JWT_ALG_HS256 || pinned_alg == JWT_ALG_HS384 || pinned_alg == JWT_ALG_HS512;
	if (pinned_hmac && cfg->n_pubkey_files) {
		fprintf(stderr, "ssehub: --jwt-public-key-file is for RS*/ES* algorithms, but --jwt-alg is %s\n", cfg->jwt_alg);
		return -1;
	}
	if (!pinned_hmac && cfg->n_secret_files) {
		fprintf(stderr, "ssehub: --jwt-secret-file is for HS* algorithms, but --jwt-alg is %s\n", cfg->jwt_alg);
		return -1;
	}
	active = load_keys(err, sizeof(err));
	if (!active) {
		fprintf(stderr, "ssehub: %s\n", err);
		return -1;
	}
	return 0;
}

int auth_reload(void)
{
	char err[512];
	struct keyset *fresh = load_keys(err, sizeof(err)), *old;

	if (!fresh) {
		log_warn("event=keys_reload_failed reason=\"%s\" keeping=old_keys", err);
		return -1;
	}
	/* cache_lock first, as in cache_put: no token verified with the old
	 * keys is cached after this */
	pthread_mutex_lock(&cache_lock);
	pthread_rwlock_wrlock(&keys_lock);
	old = active;
	active = fresh;
	pthread_rwlock_unlock(&keys_lock);
	cache_clear_locked();
	pthread_mutex_unlock(&cache_lock);
	keyset_free(old);
	log_info("event=keys_reloaded keys=%d", fresh->n);
	return 0;
}

void auth_shutdown(void)
{
	cache_clear();
	keyset_free(active);
	active = NULL;
}

/* The "alg" of the token's header, read before any verification so that a
 * token naming another algorithm never reaches libjwt. */
static enum auth_result check_header(const char *token, size_t hlen, const char **why)
{
	char *json = NULL;
	size_t jlen;
	struct json_object *hdr, *alg;
	enum auth_result r = AUTH_INVALID_TOKEN;

	if (util_b64url_decode(token, hlen, &json, &jlen) < 0) {
		*why = "the token header is not base64url";
		return r;
	}
	hdr = util_json_parse(json, jlen, 8);
	if (!hdr || !json_object_is_type(hdr, json_type_object)) {
		*why = "the token header is not a JSON object";
	} else if (!json_object_object_get_ex(hdr, "alg", &alg) || !json_object_is_type(alg, json_type_string)) {
		*why = "the token header has no alg";
	} else if (strcmp(json_object_get_string(alg), conf->jwt_alg) != 0) {
		*why = "the token is signed with another algorithm than the one configured";
		r = AUTH_WRONG_ALGORITHM;
	} else {
		r = AUTH_OK;
	}
	json_object_put(hdr);
	free(json);
	return r;
}

static int claim_number(struct json_object *claims, const char *name, int64_t *out, int *present)
{
	struct json_object *v;

	*present = 0;
	if (!json_object_object_get_ex(claims, name, &v))
		return 0;
	*present = 1;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (d != d || d > 9e15 || d < -9e15)
			return -1;
		*out = (int64_t)d;
		return 0;
	}
	return -1;
}

/* 1 when v is the string want, or an array holding it. */
static int claim_matches(struct json_object *v, const char *want)
{
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_string))
		return strcmp(json_object_get_string(v), want) == 0;
	if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			if (json_object_is_type(e, json_type_string) && strcmp(json_object_get_string(e), want) == 0)
				return 1;
		}
	}
	return 0;
}

static int user_from_claim(struct json_object *v, char *out)
{
	if (json_object_is_type(v, json_type_int)) {
		snprintf(out, AUTH_MAX_USER + 1, "%" PRId64, json_object_get_int64(v));
		return 0;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		size_t len = (size_t)json_object_get_string_len(v);
		if (len == 0 || len > AUTH_MAX_USER || strlen(s) != len)
			return -1;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return -1;
		memcpy(out, s, len + 1);
		return 0;
	}
	return -1;
}

/* The topics claim into id->topics, compactly (see struct auth_identity):
 * an array of non-empty strings without NUL. Anything else (another type,
 * a non-string, more than fits) leaves no pattern and sets topics_bad. */
static void topics_claim(struct json_object *claims, struct auth_identity *id)
{
	struct json_object *v, *e;
	size_t n, used = 0;

	id->topics[0] = '\0';
	id->topics_bad = 0;
	if (!json_object_object_get_ex(claims, conf->topics_claim, &v))
		return;
	if (!json_object_is_type(v, json_type_array)) {
		id->topics_bad = 1;
		return;
	}
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		e = json_object_array_get_idx(v, i);
		len = json_object_is_type(e, json_type_string) ? (size_t)json_object_get_string_len(e) : 0;
		/* room for this one's NUL and the final empty pattern */
		if (len == 0 || strlen(json_object_get_string(e)) != len || used + len + 2 > sizeof(id->topics)) {
			id->topics[0] = '\0';
			id->topics_bad = 1;
			return;
		}
		memcpy(id->topics + used, json_object_get_string(e), len + 1);
		used += len + 1;
	}
	id->topics[used] = '\0';
}

static enum auth_result check_claims(struct json_object *claims, struct auth_identity *id, int64_t *valid_from,
				     const char **why)
{
	int64_t now = util_wall_s(), exp = 0, nbf = 0, iat = 0;
	int has_exp, has_nbf, has_iat;
	struct json_object *v = NULL;

	if (claim_number(claims, "exp", &exp, &has_exp) < 0 || claim_number(claims, "nbf", &nbf, &has_nbf) < 0 ||
	    claim_number(claims, "iat", &iat, &has_iat) < 0) {
		*why = "exp, nbf and iat must be numbers";
		return AUTH_INVALID_TOKEN;
	}
	if (!has_exp && conf->jwt_require_exp) {
		*why = "the token has no exp claim";
		return AUTH_INVALID_TOKEN;
	}
	if (has_exp && now >= exp + conf->jwt_leeway) {
		*why = "the token has expired";
		return AUTH_TOKEN_EXPIRED;
	}
	if (has_nbf && now + conf->jwt_leeway < nbf) {
		*why = "the token is not valid yet (nbf)";
		return AUTH_NOT_YET_VALID;
	}
	if (has_iat && now + conf->jwt_leeway < iat) {
		*why = "the token was issued in the future (iat)";
		return AUTH_NOT_YET_VALID;
	}
	if (conf->jwt_issuer) {
		if (!json_object_object_get_ex(claims, "iss", &v) || !json_object_is_type(v, json_type_string) ||
		    strcmp(json_object_get_string(v), conf->jwt_issuer) != 0) {
			*why = "the token's iss is not the configured issuer";
			return AUTH_WRONG_ISSUER;
		}
	}
	if (conf->jwt_audience) {
		v = NULL;
		json_object_object_get_ex(claims, "aud", &v);
		if (!claim_matches(v, conf->jwt_audience)) {
			*why = "the token's aud does not name the configured audience";
			return AUTH_WRONG_AUDIENCE;
		}
	}
	if (!json_object_object_get_ex(claims, conf->user_claim, &v) && !json_object_object_get_ex(claims, "sub", &v)) {
		*why = "the token names no user (user claim or sub)";
		return AUTH_MISSING_USER;
	}
	if (user_from_claim(v, id->user) < 0) {
		*why = "the user id must be a non-empty string of at most 128 printable bytes, or an integer";
		return AUTH_MISSING_USER;
	}
	v = NULL;
	json_object_object_get_ex(claims, conf->admin_claim, &v);
	id->admin = claim_matches(v, conf->admin_value);
	topics_claim(claims, id);
	/* the same instant the check above refuses the token from */
	id->exp = has_exp ? exp + conf->jwt_leeway : 0;
	/* and the first instant the nbf and iat checks let it through */
	*valid_from = INT64_MIN;
	if (has_nbf)
		*valid_from = nbf - conf->jwt_leeway;
	if (has_iat && iat - conf->jwt_leeway > *valid_from)
		*valid_from = iat - conf->jwt_leeway;
	return AUTH_OK;
}

static enum auth_result verify(const char *token, size_t len, struct auth_identity *id, const char **why)
{
	const char *dot1, *dot2;
	const struct keyset *checked_with;
	int64_t valid_from;
	uint64_t h;
	enum auth_result r;
	jwt_t *jwt = NULL;
	char *payload;
	size_t plen;
	struct json_object *claims;

	*why = "the token is malformed";
	if (len == 0)
		return AUTH_MISSING_TOKEN;
	if (len > AUTH_MAX_TOKEN) {
		*why = "the token is longer than 8192 bytes";
		return AUTH_INVALID_TOKEN;
	}
	if (strlen(token) != len)
		return AUTH_INVALID_TOKEN;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return AUTH_INVALID_TOKEN;
	r = check_header(token, (size_t)(dot1 - token), why);
	if (r != AUTH_OK)
		return r;
	if (dot2 + 1 == token + len) {
		*why = "the token has no signature";
		return AUTH_INVALID_TOKEN;
	}
	h = token_hash(token, len);
	if (cache_get(token, len, h, id))
		return AUTH_OK;

	pthread_rwlock_rdlock(&keys_lock);
	checked_with = active;
	for (int i = 0; i < active->n && !jwt; i++) {
		if (jwt_decode(&jwt, token, active->keys[i].bytes, (int)active->keys[i].len) != 0)
			jwt = NULL;
	}
	pthread_rwlock_unlock(&keys_lock);
	if (!jwt) {
		*why = "the signature does not verify with any configured key";
		return AUTH_INVALID_TOKEN;
	}
	if (jwt_get_alg(jwt) != pinned_alg) {
		jwt_free(jwt);
		*why = "the token is signed with another algorithm than the one configured";
		return AUTH_WRONG_ALGORITHM;
	}
	jwt_free(jwt);
	/* The claims are read from the signed bytes themselves, strictly: libjwt
	 * hands the payload to its JSON parser as a C string, so anything after
	 * a NUL would be signed but unseen. One parser, one reading. */
	claims = NULL;
	if (util_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload, &plen) == 0) {
		claims = util_json_parse(payload, plen, 16);
		free(payload);
	}
	if (!claims || !json_object_is_type(claims, json_type_object)) {
		json_object_put(claims);
		*why = "the claims are not a JSON object";
		return AUTH_INVALID_TOKEN;
	}
	r = check_claims(claims, id, &valid_from, why);
	json_object_put(claims);
	if (r == AUTH_OK)
		cache_put(token, len, h, valid_from, id, checked_with);
	return r;
}

enum auth_result auth_verify(const char *token, size_t len, struct auth_identity *id, const char **why)
{
	const char *reason = NULL;
	enum auth_result r;

	memset(id, 0, sizeof(*id));
	r = verify(token, len, id, &reason);
	auth_count_failure(r);
	if (why)
		*why = r == AUTH_OK ? "" : reason;
	return r;
}

/* The value of cookie name in a Cookie header ("a=1; b=2"), or NULL. */
static char *cookie_value(const char *header, const char *name, int *bad)
{
	size_t nlen = strlen(name);
	const char *p = header;

	while (*p) {
		const char *end;
		size_t seglen;
		while (*p == ' ' || *p == ';')
			p++;
		end = strchr(p, ';');
		seglen = end ? (size_t)(end - p) : strlen(p);
		if (seglen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			size_t vlen = seglen - nlen - 1;
			while (vlen > 0 && v[vlen - 1] == ' ')
				vlen--;
			if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
				v++;
				vlen -= 2;
			}
			if (vlen > AUTH_MAX_TOKEN) {
				*bad = 1;
				return NULL;
			}
			return xstrndup(v, vlen);
		}
		if (!end)
			break;
		p = end + 1;
	}
	return NULL;
}

char *auth_find_token(const char *authorization, const char *cookie, const char *query, int *bad)
{
	char *t;

	*bad = 0;
	if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
		const char *v = authorization + 7;
		size_t vlen;
		while (*v == ' ')
			v++;
		vlen = strlen(v);
		while (vlen > 0 && v[vlen - 1] == ' ')
			vlen--;
		if (vlen > AUTH_MAX_TOKEN) {
			*bad = 1;
			return NULL;
		}
		if (vlen > 0)
			return xstrndup(v, vlen);
	}
	if (cookie && conf->token_cookie[0]) {
		t = cookie_value(cookie, conf->token_cookie, bad);
		if (t && *t)
			return t;
		free(t);
		if (*bad)
			return NULL;
	}
	if (query && conf->token_query[0]) {
		t = util_query_param(query, conf->token_query, AUTH_MAX_TOKEN * 3, bad);
		if (t && *t) {
			if (strlen(t) > AUTH_MAX_TOKEN) {
				free(t);
				*bad = 1;
				return NULL;
			}
			return t;
		}
		free(t);
	}
	return NULL;
}

int auth_topic_allowed(const struct auth_identity *id, const char *topic)
{
	for (const char *p = id->topics; *p; p += strlen(p) + 1) {
		size_t len = strlen(p);
		if (p[len - 1] == '*' ? strncmp(p, topic, len - 1) == 0 : strcmp(p, topic) == 0)
			return 1;
	}
	return 0;
}

int auth_key_active(uint64_t key_id)
{
	(void)key_id;
	return 1; /* TEMP: replaced by the hardening branch's key ids */
}
