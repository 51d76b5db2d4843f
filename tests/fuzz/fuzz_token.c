/* fuzz_token: token verification and the claim checks.
 * Input: byte 0 picks a mode, the rest is the fuzzed part.
 *   0  the rest is the whole token (arbitrary bytes)
 *   1  the rest is the claims JSON: minted with libjwt (HS256, test secret),
 *      so a well-formed signature reaches every claim check
 *   2  the rest is the raw payload segment (any bytes, base64url-encoded),
 *      signed HS256 with the test secret (OpenSSL HMAC: libjwt cannot sign a
 *      payload that is not a JSON object)
 *   3  the rest is the raw header segment, with a valid payload, signed HS256
 *   4  the claims JSON minted with libjwt as HS512 (a key the hub holds, but
 *      not the pinned algorithm)
 *   5  the claims JSON minted with libjwt as alg "none"
 * Checks: a token is accepted only when its signature is HS256 with the test
 * secret, its header names HS256, its claims (as json-c reads the payload)
 * hold an exp that is not past (the leeway allowed), and it names a usable
 * user; modes 4 and 5 never pass. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz_common.h"

#define FUZZ_MAX_INPUT (AUTH_MAX_TOKEN + 64)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* SSEHUB_FUZZ_UNTERMINATED=1: hand auth_verify the fuzzer's own buffer,
 * token[0..len) with no NUL after it, as auth.h allows; reproduces
 * crashes/fuzz_token-crash-auth_verify-reads-past-len. */
static int unterminated;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *e = getenv("SSEHUB_FUZZ_UNTERMINATED");

	unterminated = e && *e == '1';
	(void)argc;
	(void)argv;
	fuzz_config(0);
	return 0;
}

static void b64url(struct buf *out, const void *data, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		char q[4] = { tab[p[i] >> 2], tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
			      tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], tab[p[i + 2] & 63] };
		buf_append(out, q, 4);
	}
	if (len - i == 1) {
		char q[2] = { tab[p[i] >> 2], tab[(p[i] & 3) << 4] };
		buf_append(out, q, 2);
	} else if (len - i == 2) {
		char q[3] = { tab[p[i] >> 2], tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)], tab[(p[i + 1] & 15) << 2] };
		buf_append(out, q, 3);
	}
}

/* header.payload.signature with HMAC-SHA256 over the first two segments. */
static char *sign_raw(const void *header, size_t hlen, const void *payload, size_t plen)
{
	struct buf t = { 0 };
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	b64url(&t, header, hlen);
	buf_puts(&t, ".");
	b64url(&t, payload, plen);
	if (!HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), (const unsigned char *)t.data, t.len, mac,
		  &maclen))
		abort();
	buf_puts(&t, ".");
	b64url(&t, mac, maclen);
	return t.data;
}

/* The claims as json-c reads them from the raw payload bytes (NULL when
 * they are not a JSON object). */
static struct json_object *claims_of(const char *payload, size_t len)
{
	struct json_object *o = jsonx_json_c(payload, len, 64);

	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static void check_identity(const struct auth_identity *id)
{
	size_t len = strnlen(id->user, sizeof(id->user));

	FUZZ_CHECK(len > 0 && len <= AUTH_MAX_USER, "accepted with a user id of %zu bytes", len);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)id->user[i] >= 0x20 && id->user[i] != 0x7f,
			   "accepted with a control byte in the user id");
	FUZZ_CHECK(id->admin == 0 || id->admin == 1, "admin flag %d", id->admin);
}

/* What an accepted token's claims must satisfy. */
static void check_claims(struct json_object *claims, const struct auth_identity *id)
{
	struct json_object *v;
	int64_t now = util_wall_s();

	FUZZ_CHECK(claims, "accepted a token whose payload is not a JSON object");
	FUZZ_CHECK(json_object_object_get_ex(claims, "exp", &v), "accepted a token without exp");
	if (json_object_is_type(v, json_type_int))
		FUZZ_CHECK(json_object_get_int64(v) >= now - fuzz_cfg.jwt_leeway, "accepted an expired token (exp %lld)",
			   (long long)json_object_get_int64(v));
	else
		FUZZ_CHECK(json_object_is_type(v, json_type_double) &&
				   json_object_get_double(v) + (double)fuzz_cfg.jwt_leeway >= (double)now - 1,
			   "accepted a token with exp %s", json_object_to_json_string(v));
	/* id->exp saturates (INT64_MAX: never): compare without adding to it */
	FUZZ_CHECK(id->exp == 0 || id->exp >= now - fuzz_cfg.jwt_leeway, "identity carries a past exp");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_identity id;
	const char *why = NULL, *rest;
	size_t rlen;
	char *tok = NULL, *json;
	enum auth_result r;
	int mode;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	mode = data[0] % 6;
	rest = (const char *)data + 1;
	rlen = size - 1;

	switch (mode) {
	case 0:
		/* auth_verify calls strlen(token): it needs a terminated string
		 * although auth.h speaks of token[0..len) (see crashes/README) */
		tok = xmalloc(rlen + 1);
		memcpy(tok, rest, rlen);
		tok[rlen] = '\0';
		r = auth_verify(unterminated ? rest : tok, rlen, &id, &why);
		FUZZ_CHECK(why != NULL, "no reason given");
		if (r == AUTH_OK) {
			check_identity(&id);
			FUZZ_CHECK(!memchr(tok, '\0', rlen), "accepted a token with a NUL inside");
		}
		break;
	case 1:
	case 4:
	case 5: {
		static const jwt_alg_t algs[] = { [1] = JWT_ALG_HS256, [4] = JWT_ALG_HS512, [5] = JWT_ALG_NONE };
		const char *dot1, *dot2;
		char *payload = NULL;
		size_t plen = 0;
		struct json_object *claims;

		json = xstrndup(rest, rlen);
		tok = mode == 5 ? NULL : fuzz_mint(json, algs[mode]);
		if (mode == 5) {
			jwt_t *jwt = NULL;
			if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, json) == 0)
				tok = jwt_encode_str(jwt);
			jwt_free(jwt);
		}
		free(json);
		if (!tok)
			return 0; /* libjwt takes JSON objects only: modes 2 and 3 cover the rest */
		r = auth_verify(tok, strlen(tok), &id, &why);
		if (mode != 1) {
			FUZZ_CHECK(r != AUTH_OK, "accepted a token signed with %s", mode == 4 ? "HS512" : "alg none");
			FUZZ_CHECK(r == AUTH_WRONG_ALGORITHM || (mode == 5 && r == AUTH_INVALID_TOKEN),
				   "mode %d: reason %s, expected wrong_algorithm", mode, auth_result_code(r));
			break;
		}
		if (r != AUTH_OK)
			break;
		check_identity(&id);
		dot1 = strchr(tok, '.');
		dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
		FUZZ_CHECK(dot2 && util_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload, &plen) == 0,
			   "libjwt minted a token without a payload segment");
		claims = claims_of(payload, plen);
		check_claims(claims, &id);
		json_object_put(claims);
		free(payload);
		break;
	}
	case 2: {
		static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
		struct json_object *claims;

		tok = sign_raw(hdr, sizeof(hdr) - 1, rest, rlen);
		r = auth_verify(tok, strlen(tok), &id, &why);
		if (r == AUTH_OK) {
			check_identity(&id);
			/* claims come from the signed bytes read strictly, so a
			 * payload with bytes after a NUL is never accepted
			 * (once it was: libjwt reads the payload as a C string) */
			claims = claims_of(rest, rlen);
			check_claims(claims, &id);
			json_object_put(claims);
		}
		break;
	}
	case 3: {
		char payload[160];
		struct json_object *h, *alg;

		snprintf(payload, sizeof(payload), "{\"user_id\":\"u\",\"exp\":%lld}", FUZZ_EXP);
		tok = sign_raw(rest, rlen, payload, strlen(payload));
		r = auth_verify(tok, strlen(tok), &id, &why);
		if (r == AUTH_OK) {
			check_identity(&id);
			h = jsonx_json_c(rest, rlen, 64);
			FUZZ_CHECK(h && json_object_is_type(h, json_type_object) && json_object_object_get_ex(h, "alg", &alg) &&
					   json_object_is_type(alg, json_type_string) &&
					   strcmp(json_object_get_string(alg), "HS256") == 0,
				   "accepted a token whose header (as json-c reads it) does not name HS256: %.*s", (int)rlen,
				   rest);
			json_object_put(h);
		}
		break;
	}
	}
	free(tok);
	return 0;
}
