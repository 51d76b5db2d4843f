/* auth: JWT checks around libjwt 1.10.2. libjwt verifies signatures only;
 * the algorithm pin, the size cap and every claim are checked here, on the
 * signed bytes read by our strict JSON parser. Time arithmetic saturates. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jwt.h>
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
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define MAX_KEYS 32
#define MAX_KEY_FILE (1 << 20)

struct key {
	unsigned char *bytes;
	size_t len;
	uint64_t id;             /* kept across reloads while the bytes stay */
};

struct keyset {
	struct key keys[MAX_KEYS];
	int n;
	uint64_t generation;     /* auth_keys_generation() when installed */
};

static const struct config *conf;
static jwt_alg_t pinned_alg;
static int pinned_hmac;
static struct keyset *active;
static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static uint64_t failures[AUTH__COUNT];
/* Both only grow, under keys_lock held for writing: a generation or a key
 * id is never given twice, so no comparison can be fooled by a reused
 * address (two reloads during one verification). */
static uint64_t keys_generation, last_key_id;

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_sub_overflow(a, b, &r))
		return b > 0 ? INT64_MIN : INT64_MAX;
	return r;
}

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
	struct auth_identity id; /* id.exp: first second refused, 0: never; id.key_id too */
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
			util_wipe(cache[i].token, cache[i].len);
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
		      uint64_t checked_generation)
{
	struct cached *c = &cache[h % CACHE_SLOTS];
	char *copy = xmalloc(len);

	memcpy(copy, token, len);
	pthread_mutex_lock(&cache_lock);
	/* keys reloaded while this one was being verified: do not keep it */
	pthread_rwlock_rdlock(&keys_lock);
	if (!active || active->generation != checked_generation) {
		pthread_rwlock_unlock(&keys_lock);
		pthread_mutex_unlock(&cache_lock);
		util_wipe(copy, len);
		free(copy);
		return;
	}
	pthread_rwlock_unlock(&keys_lock);
	if (c->token) {
		util_wipe(c->token, c->len);
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
		util_wipe(ks->keys[i].bytes, ks->keys[i].len);
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
	size_t len, read_len;
	char *data = util_read_file(path, MAX_KEY_FILE, &read_len);
	int rc;

	if (!data) {
		snprintf(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
		return -1;
	}
	len = read_len;
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
	util_wipe(data, read_len);
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
	util_wipe(data, len); /* public keys, but a mistaken private one too */
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

/* Gives each key of fresh the id of the key with the same bytes in old
 * (may be NULL), or a new id. Called with keys_lock held for writing. */
static void keyset_install_ids(struct keyset *fresh, const struct keyset *old)
{
	for (int i = 0; i < fresh->n; i++) {
		struct key *k = &fresh->keys[i];
		k->id = 0;
		for (int j = 0; old && j < old->n && !k->id; j++)
			if (old->keys[j].len == k->len && CRYPTO_memcmp(old->keys[j].bytes, k->bytes, k->len) == 0)
				k->id = old->keys[j].id;
		if (!k->id)
			k->id = ++last_key_id;
	}
	fresh->generation = keys_generation + 1;
	__atomic_store_n(&keys_generation, fresh->generation, __ATOMIC_RELEASE);
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
	pthread_rwlock_wrlock(&keys_lock);
	keyset_install_ids(active, NULL);
	pthread_rwlock_unlock(&keys_lock);
	return 0;
}

int auth_reload(void)
{
	char err[512], quoted[LOG_QUOTE_SIZE(sizeof(err))];
	struct keyset *fresh = load_keys(err, sizeof(err)), *old;

	if (!fresh) {
		/* the reason names paths from the configuration: quoted all the same */
		log_warn("event=keys_reload_failed reason=%s keeping=old_keys", log_quote(quoted, sizeof(quoted), err));
		return -1;
	}
	/* cache_lock first, as in cache_put: no token verified with the old
	 * keys is cached after this */
	pthread_mutex_lock(&cache_lock);
	pthread_rwlock_wrlock(&keys_lock);
	old = active;
	keyset_install_ids(fresh, old);
	active = fresh;
	pthread_rwlock_unlock(&keys_lock);
	cache_clear_locked();
	pthread_mutex_unlock(&cache_lock);
	keyset_free(old);
	log_info("event=keys_reloaded keys=%d generation=%" PRIu64, fresh->n, fresh->generation);
	return 0;
}

void auth_shutdown(void)
{
	cache_clear();
	pthread_rwlock_wrlock(&keys_lock);
	keyset_free(active);
	active = NULL;
	pthread_rwlock_unlock(&keys_lock);
}

uint64_t auth_keys_generation(void)
{
	return __atomic_load_n(&keys_generation, __ATOMIC_ACQUIRE);
}

int auth_key_active(uint64_t key_id)
{
	int found = 0;

	if (!key_id)
		return 0;
	pthread_rwlock_rdlock(&keys_lock);
	for (int i = 0; active && i < active->n && !found; i++)
		found = active->keys[i].id == key_id;
	pthread_rwlock_unlock(&keys_lock);
	return found;
}

int auth_user_id(const char *json, size_t len, char out[AUTH_MAX_USER + 1])
{
	int64_t n;
	size_t ulen;

	out[0] = '\0';
	switch (jsonx_type_of(json, len)) {
	case JSONX_NUMBER:
		/* only an integer in int64_t: 1.0, 1e3 and 2^64-1 are refused,
		 * never rounded or clamped into another user's id */
		if (jsonx_int64(json, len, &n) != JSONX_INT_OK)
			return -1;
		snprintf(out, AUTH_MAX_USER + 1, "%" PRId64, n);
		return 0;
	case JSONX_STRING:
		if (jsonx_unescape(json, len, out, AUTH_MAX_USER + 1, &ulen) < 0 || ulen == 0 ||
		    !util_text_valid(out, ulen)) {
			out[0] = '\0';
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

/* The "alg" of the token's header, read before any verification so that a
 * token naming another algorithm never reaches libjwt. */
static enum auth_result check_header(const char *token, size_t hlen, const char **why)
{
	char *json = NULL;
	size_t jlen;
	struct jsonx_doc hdr;
	const struct jsonx_member *alg;
	enum auth_result r = AUTH_INVALID_TOKEN;

	if (util_b64url_decode(token, hlen, &json, &jlen) < 0) {
		*why = "the token header is not base64url";
		return r;
	}
	if (jsonx_parse(&hdr, json, jlen, 8, NULL) < 0 || hdr.type != JSONX_OBJECT) {
		*why = "the token header is not a JSON object";
	} else if (!(alg = jsonx_get(&hdr, "alg")) || alg->type != JSONX_STRING) {
		*why = "the token header has no alg";
	} else if (!jsonx_string_eq(alg->value, alg->value_len, conf->jwt_alg, strlen(conf->jwt_alg))) {
		*why = "the token is signed with another algorithm than the one configured";
		r = AUTH_WRONG_ALGORITHM;
	} else {
		r = AUTH_OK;
	}
	jsonx_free(&hdr);
	free(json);
	return r;
}

/* A time claim (exp, nbf, iat) as whole seconds. Beyond int64_t, integers
 * and doubles saturate: 2^63-1 or 1e300 is a time that never comes, and
 * no arithmetic on it may overflow. Returns -1 when it is not a number. */
static int claim_time(const struct jsonx_doc *claims, const char *name, int64_t *out, int *present)
{
	const struct jsonx_member *m = jsonx_get(claims, name);
	double d;

	*present = m != NULL;
	if (!m)
		return 0;
	if (m->type != JSONX_NUMBER)
		return -1;
	switch (jsonx_int64(m->value, m->value_len, out)) {
	case JSONX_INT_OK:
		return 0;
	case JSONX_INT_OUT_OF_RANGE:
		*out = m->value[0] == '-' ? INT64_MIN : INT64_MAX;
		return 0;
	case JSONX_INT_NOT_INTEGER:
		break;
	}
	if (jsonx_double(m->value, m->value_len, &d) < 0 || d != d)
		return -1;
	if (d >= 9223372036854775807.0) /* 2^63 as a double */
		*out = INT64_MAX;
	else if (d <= -9223372036854775808.0)
		*out = INT64_MIN;
	else
		*out = (int64_t)d;
	return 0;
}

/* 1 when member m is the string want, or an array holding it. */
static int claim_matches(const struct jsonx_member *m, const char *want)
{
	size_t wlen = strlen(want), pos = 0, elen;
	const char *e;

	if (!m)
		return 0;
	if (m->type == JSONX_STRING)
		return jsonx_string_eq(m->value, m->value_len, want, wlen);
	if (m->type != JSONX_ARRAY)
		return 0;
	while (jsonx_array_next(m->value, m->value_len, &pos, &e, &elen))
		if (jsonx_type_of(e, elen) == JSONX_STRING && jsonx_string_eq(e, elen, want, wlen))
			return 1;
	return 0;
}

/* The topics claim into id->topics, compactly (see struct auth_identity):
 * an array of non-empty strings without NUL. Anything else (another type,
 * a non-string, more than fits) leaves no pattern and sets topics_bad. */
static void topics_claim(const struct jsonx_doc *claims, struct auth_identity *id)
{
	const struct jsonx_member *v = jsonx_get(claims, conf->topics_claim);
	size_t pos = 0, elen, len, used = 0;
	const char *e;

	id->topics[0] = '\0';
	id->topics_bad = 0;
	if (!v)
		return;
	if (v->type != JSONX_ARRAY)
		goto bad;
	while (jsonx_array_next(v->value, v->value_len, &pos, &e, &elen)) {
		/* each pattern with its NUL, and room left for the final empty one */
		if (jsonx_type_of(e, elen) != JSONX_STRING || used + 2 > sizeof(id->topics) ||
		    jsonx_unescape(e, elen, id->topics + used, sizeof(id->topics) - used - 1, &len) < 0 || len == 0)
			goto bad;
		used += len + 1;
	}
	id->topics[used] = '\0';
	return;
bad:
	id->topics[0] = '\0';
	id->topics_bad = 1;
}

static enum auth_result check_claims(const struct jsonx_doc *claims, struct auth_identity *id, int64_t *valid_from,
				     const char **why)
{
	int64_t now = util_wall_s(), exp = 0, nbf = 0, iat = 0, leeway = conf->jwt_leeway;
	int has_exp, has_nbf, has_iat;
	const struct jsonx_member *v;

	if (claim_time(claims, "exp", &exp, &has_exp) < 0 || claim_time(claims, "nbf", &nbf, &has_nbf) < 0 ||
	    claim_time(claims, "iat", &iat, &has_iat) < 0) {
		*why = "exp, nbf and iat must be numbers";
		return AUTH_INVALID_TOKEN;
	}
	if (!has_exp && conf->jwt_require_exp) {
		*why = "the token has no exp claim";
		return AUTH_INVALID_TOKEN;
	}
	if (has_exp && now >= sat_add(exp, leeway)) {
		*why = "the token has expired";
		return AUTH_TOKEN_EXPIRED;
	}
	if (has_nbf && now < sat_sub(nbf, leeway)) {
		*why = "the token is not valid yet (nbf)";
		return AUTH_NOT_YET_VALID;
	}
	if (has_iat && now < sat_sub(iat, leeway)) {
		*why = "the token was issued in the future (iat)";
		return AUTH_NOT_YET_VALID;
	}
	if (conf->jwt_issuer) {
		v = jsonx_get(claims, "iss");
		if (!v || v->type != JSONX_STRING ||
		    !jsonx_string_eq(v->value, v->value_len, conf->jwt_issuer, strlen(conf->jwt_issuer))) {
			*why = "the token's iss is not the configured issuer";
			return AUTH_WRONG_ISSUER;
		}
	}
	if (conf->jwt_audience && !claim_matches(jsonx_get(claims, "aud"), conf->jwt_audience)) {
		*why = "the token's aud does not name the configured audience";
		return AUTH_WRONG_AUDIENCE;
	}
	if (!(v = jsonx_get(claims, conf->user_claim)) && !(v = jsonx_get(claims, "sub"))) {
		*why = "the token names no user (user claim or sub)";
		return AUTH_MISSING_USER;
	}
	if (auth_user_id(v->value, v->value_len, id->user) < 0) {
		*why = "the user id must be a non-empty string of at most 128 bytes without control characters, "
		       "or an integer";
		return AUTH_MISSING_USER;
	}
	id->admin = claim_matches(jsonx_get(claims, conf->admin_claim), conf->admin_value);
	topics_claim(claims, id);
	/* the same instant the check above refuses the token from (INT64_MAX:
	 * never, for an exp that far out) */
	id->exp = has_exp ? sat_add(exp, leeway) : 0;
	/* and the first instant the nbf and iat checks let it through */
	*valid_from = INT64_MIN;
	if (has_nbf)
		*valid_from = sat_sub(nbf, leeway);
	if (has_iat && sat_sub(iat, leeway) > *valid_from)
		*valid_from = sat_sub(iat, leeway);
	return AUTH_OK;
}

static enum auth_result verify(const char *token, size_t len, struct auth_identity *id, const char **why)
{
	const char *dot1, *dot2;
	uint64_t checked_generation, h;
	int64_t valid_from;
	enum auth_result r;
	jwt_t *jwt = NULL;
	char *payload;
	size_t plen;
	struct jsonx_doc claims;
	int parsed = -1;

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
	/* no key set: auth_shutdown ran while this request was in flight */
	checked_generation = active ? active->generation : 0;
	for (int i = 0; active && i < active->n && !jwt; i++) {
		if (jwt_decode(&jwt, token, active->keys[i].bytes, (int)active->keys[i].len) != 0)
			jwt = NULL;
		else
			id->key_id = active->keys[i].id;
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
	 * a NUL would be signed but unseen, and a claim given twice would be
	 * read differently by different parsers. One parser, one reading. */
	if (util_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload, &plen) == 0) {
		parsed = jsonx_parse(&claims, payload, plen, 16, NULL);
		free(payload);
	}
	if (parsed < 0 || claims.type != JSONX_OBJECT) {
		if (parsed == 0)
			jsonx_free(&claims);
		*why = "the claims are not a JSON object (strict JSON, each claim once)";
		return AUTH_INVALID_TOKEN;
	}
	r = check_claims(&claims, id, &valid_from, why);
	jsonx_free(&claims);
	if (r == AUTH_OK)
		cache_put(token, len, h, valid_from, id, checked_generation);
	return r;
}

enum auth_result auth_verify(const char *token, size_t len, struct auth_identity *id, const char **why)
{
	const char *reason = NULL;
	enum auth_result r;

	memset(id, 0, sizeof(*id));
	r = verify(token, len, id, &reason);
	if (r != AUTH_OK)
		memset(id, 0, sizeof(*id)); /* no half-filled identity, no key id for a refused token */
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
