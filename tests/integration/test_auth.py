"""Authentication (issue 3): algorithms and keys, claims, token sources,
key rotation on SIGHUP, streams ending at token expiry, failure counters,
and no token or key material in any log.

Everything goes through a real nginx (the stateless cases also through
lighttpd and Apache) except the 5 MB and 8 KB-boundary cases sent straight over the
FastCGI socket with fcgi_client. The module's hubs and fronts live in one
directory of their own (auth_support.Lab) so that the last test can read
every log they wrote; every token minted here is recorded in MINTED and
every secret / PEM line in KEY_MATERIAL for that check.

Keys are generated per session with python3-cryptography; HMAC tokens that
PyJWT refuses to make (a PEM as the HMAC secret, broken structure) are built
by hand."""

import json
import os
import random
import time
import uuid
from collections import Counter

import pytest

import auth_support as a
import fcgi_client as fcgi
import ssehub_harness as h
from auth_support import DROP, Minter, RecordingTokens

MINTED = []          # every token minted by this module
KEY_MATERIAL = []    # every secret and PEM body line

FRONTS = ["nginx", "lighttpd", "apache"]
ISSUER = "https://issuer.ssehub.test"
AUDIENCE = "ssehub-it"
HS_ALGS = ["HS256", "HS384", "HS512"]
RS_ALGS = ["RS256", "RS384", "RS512"]
ES_ALGS = ["ES256", "ES384", "ES512"]
ALGS = HS_ALGS + RS_ALGS + ES_ALGS
ALG_CONFIG = dict((alg, alg) for alg in ALGS)
ALG_CONFIG["HS256"] = "hs"
REASONS = ["missing_token", "invalid_token", "token_expired", "token_not_yet_valid", "wrong_algorithm",
           "wrong_issuer", "wrong_audience", "missing_user"]


def need(front):
    if not h.find_program(h.FRONT_PROGRAMS[front]):
        pytest.skip("%s is not installed" % h.FRONT_PROGRAMS[front])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keys():
    return a.KeyRing(KEY_MATERIAL)


@pytest.fixture(scope="module")
def minter():
    return Minter(MINTED)


@pytest.fixture(scope="module")
def lab(request, ssehub_bin, keys):
    need("nginx")
    lab = a.Lab(ssehub_bin, MINTED, KEY_MATERIAL)
    d = lab.workdir
    lab.keys = keys
    lab.secret = {}
    for alg in HS_ALGS:
        lab.secret[alg] = keys.new_secret()
        keys.write(d / ("%s.secret" % alg.lower()), lab.secret[alg] + b"\n")   # one newline: ignored
    pub = {n: a.public_pem(k) for n, k in keys.rsa.items()}
    keys.write(d / "rsa-ab.pem", pub["a"] + pub["b"])          # two keys in one file
    keys.write(d / "rsa-a.pem", pub["a"])
    for alg in ES_ALGS:
        for n in ("a", "b"):
            keys.write(d / ("%s-%s.pem" % (alg.lower(), n)), a.public_pem(keys.ec[alg][n]))

    def hs_tokens(**kw):
        return RecordingTokens(lab.secret["HS256"], "HS256", MINTED, **kw)

    hs = ["--jwt-secret-file", d / "hs256.secret"]
    lab.hs_args = hs
    lab.hs_tokens = hs_tokens
    lab.define("hs", hs, hs_tokens())
    for alg in HS_ALGS[1:]:
        lab.define(alg, ["--jwt-alg", alg, "--jwt-secret-file", d / ("%s.secret" % alg.lower())],
                   RecordingTokens(lab.secret[alg], alg, MINTED))
    lab.define("RS256", ["--jwt-alg", "RS256", "--jwt-public-key-file", d / "rsa-ab.pem"],
               RecordingTokens(keys.rsa["a"], "RS256", MINTED))
    for alg in RS_ALGS[1:]:
        lab.define(alg, ["--jwt-alg", alg, "--jwt-public-key-file", d / "rsa-a.pem"],
                   RecordingTokens(keys.rsa["a"], alg, MINTED))
    lab.define("ES256", ["--jwt-alg", "ES256", "--jwt-public-key-file", d / "es256-a.pem",
                         "--jwt-public-key-file", d / "es256-b.pem"],
               RecordingTokens(keys.ec["ES256"]["a"], "ES256", MINTED))
    for alg in ES_ALGS[1:]:
        lab.define(alg, ["--jwt-alg", alg, "--jwt-public-key-file", d / ("%s-a.pem" % alg.lower())],
                   RecordingTokens(keys.ec[alg]["a"], alg, MINTED))
    lab.define("noexp", hs + ["--jwt-require-exp", "no", "--metrics-public", "yes"], hs_tokens())
    lab.define("issaud", hs + ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE],
               hs_tokens(defaults={"iss": ISSUER, "aud": AUDIENCE}))
    lab.define("claims", hs + ["--user-claim", "uid", "--admin-claim", "groups", "--admin-value", "sse-admins"],
               hs_tokens(user_claim="uid", admin_claims={"groups": ["staff", "sse-admins"]}))
    lab.define("sources", hs + ["--token-query", "", "--token-cookie", "sse_jwt"], hs_tokens())
    lab.define("sources2", hs + ["--token-cookie", "", "--token-query", "access_token"], hs_tokens())
    lab.define("leeway0", hs + ["--jwt-leeway", "0"], hs_tokens())
    lab.define("keepopen", hs + ["--jwt-leeway", "0", "--close-on-token-expiry", "no"], hs_tokens())
    yield lab
    bad = lab.stop_all()
    failed = request.session.testsfailed or bad
    if not failed and not os.environ.get("SSEHUB_KEEP_TMP"):
        lab.remove()
    assert not bad, "hubs that did not exit 0 on SIGTERM (logs kept in %s): %r" % (lab.workdir, bad)


@pytest.fixture(autouse=True)
def _lab_test_scope(request):
    """Failure reports show the logs of the stacks this test used only."""
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").begin_test()


# ---------------------------------------------------------------- helpers


class Outcome:
    def __init__(self, status, headers, body, json_body, client_id=None):
        self.status = status
        self.headers = headers          # lower-case name -> value
        self.body = body
        self.json = json_body
        self.client_id = client_id

    def __repr__(self):
        if self.client_id:
            return "<%s event stream, connected as client %s>" % (self.status, self.client_id)
        return "<%s %r>" % (self.status, self.body[:300])


def attempt_stream(stack, token=None, cookie=None, query=None, qname="token", headers=None):
    """GET /sse/stream; on 200 reads up to the connected event, then closes."""
    path = "/sse/stream"
    if query is not None:
        path += "?x=1&%s=%s&y=2" % (qname, query)
    s = h.SSEStream(stack.host, stack.port, path=path, token=token, cookie=cookie, headers=headers)
    try:
        cid = None
        if s.is_event_stream():
            cid = s.wait_event("connected", 3).json()["client_id"]
        return Outcome(s.status, dict(s.headers), s.body, s.json, cid)
    finally:
        s.close()


def attempt_admin(stack, token=None, cookie=None, query=None, qname="token", headers=None,
                  method="GET", path="/api/sse/stats", body=None):
    """An admin route (stats by default) with the given token sources."""
    if query is not None:
        path += "?%s=%s" % (qname, query)
    hdrs = dict(headers or {})
    if cookie is not None:
        hdrs["Cookie"] = cookie
    r = h.http_call(stack.front, method, path, body=body, token=token, headers=hdrs)
    return Outcome(r.status, {k.lower(): v for k, v in r.headers.items()}, r.body, r.json)


def assert_rejected(o, code, what=""):
    assert o.status == 401, "%s: expected 401 %s, got %r" % (what, code, o)
    assert isinstance(o.json, dict) and o.json.get("success") is False, "%s: %r" % (what, o)
    err = o.json.get("error")
    assert isinstance(err, dict) and err.get("code") == code, "%s: expected code %s, got %r" % (what, code, o.json)
    assert isinstance(err.get("message"), str) and err["message"], o.json
    want = "Bearer" if code == "missing_token" else 'Bearer error="invalid_token"'
    assert o.headers.get("www-authenticate") == want, "%s: WWW-Authenticate %r, expected %r" % (
        what, o.headers.get("www-authenticate"), want)


def assert_forbidden(o, what=""):
    assert o.status == 403, "%s: expected 403 forbidden, got %r" % (what, o)
    assert (o.json or {}).get("error", {}).get("code") == "forbidden", "%s: %r" % (what, o)


def assert_stream_ok(o, what=""):
    assert o.status == 200 and h.is_uuid(o.client_id or ""), "%s: expected an event stream, got %r" % (what, o)


def assert_admin_ok(o, what=""):
    assert o.status == 200 and (o.json or {}).get("success") is True, "%s: expected 200, got %r" % (what, o)


def assert_user_and_admin(st, user, admin, code, what):
    """A stream with the user token and an admin call with the admin token:
    both accepted (code None) or both refused with 401 code."""
    if code is None:
        assert_stream_ok(attempt_stream(st, token=user), what)
        assert_admin_ok(attempt_admin(st, token=admin), what)
    else:
        assert_rejected(attempt_stream(st, token=user), code, what)
        assert_rejected(attempt_admin(st, token=admin), code, what)


def hs_token(minter, lab, claims, alg="HS256"):
    return minter.raw({"alg": alg, "typ": "JWT"}, claims, alg, lab.secret[alg])


def uid(prefix="u"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# ---------------------------------------------------------------- algorithms and keys


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("alg", ALGS)
def test_valid_token_for_every_algorithm(lab, alg, front):
    need(front)
    st = lab.stack(ALG_CONFIG[alg], front)
    user = st.tokens.user(uid(alg))
    assert_stream_ok(attempt_stream(st, token=user), alg)
    assert_admin_ok(attempt_admin(st, token=st.tokens.admin()), alg)
    assert_forbidden(attempt_admin(st, token=user), "%s user token on an admin route" % alg)


@pytest.mark.parametrize("alg", ALGS)
def test_token_from_another_key_is_rejected(lab, minter, alg):
    st = lab.stack(ALG_CONFIG[alg])
    if alg in HS_ALGS:
        other = lab.keys.new_secret()
    elif alg in RS_ALGS:
        other = lab.keys.rsa["c"]
    else:
        other = lab.keys.ec[alg]["c"]
    t = minter.pyjwt(Minter.claims(user_id=uid(), admin=True), alg, other)
    assert_rejected(attempt_stream(st, token=t), "invalid_token", alg)
    assert_rejected(attempt_admin(st, token=t), "invalid_token", alg)


@pytest.mark.parametrize("alg", ALGS)
def test_flipped_signature_byte_is_rejected(lab, minter, alg):
    st = lab.stack(ALG_CONFIG[alg])
    good = st.tokens.admin()
    assert_admin_ok(attempt_admin(st, token=good), alg)
    bad = minter.keep(a.flip_signature(good))
    assert_rejected(attempt_admin(st, token=bad), "invalid_token", alg)
    assert_rejected(attempt_stream(st, token=bad), "invalid_token", alg)


@pytest.mark.parametrize("config,alg,key", [("RS256", "RS256", "b"), ("ES256", "ES256", "b")])
def test_every_configured_public_key_verifies(lab, minter, config, alg, key):
    """RS256: two keys in one PEM file; ES256: two --jwt-public-key-file."""
    st = lab.stack(config)
    k = lab.keys.rsa[key] if alg.startswith("RS") else lab.keys.ec[alg][key]
    t = minter.pyjwt(Minter.claims(user_id=uid(), admin=True), alg, k)
    assert_admin_ok(attempt_admin(st, token=t), "%s key %s" % (alg, key))
    assert_stream_ok(attempt_stream(st, token=t))


ALG_NONE = {
    "none-unsigned": ("none", "unsigned"),
    "none-with-hmac-signature": ("none", "hmac"),
    "none-with-junk-signature": ("none", "junk"),
    "None-unsigned": ("None", "unsigned"),
    "NONE-unsigned": ("NONE", "unsigned"),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(ALG_NONE))
def test_alg_none_is_rejected(lab, minter, case, front):
    need(front)
    st = lab.stack("hs", front)
    alg, sig = ALG_NONE[case]
    header, claims = {"alg": alg, "typ": "JWT"}, Minter.claims(user_id=uid(), admin=True)
    if sig == "unsigned":
        t = minter.raw(header, claims)
    elif sig == "hmac":
        signing_input = (a.json_b64(header) + "." + a.json_b64(claims)).encode()
        t = minter.raw(header, claims, signature=a.sign_segments(signing_input, "HS256", lab.secret["HS256"]))
    else:
        t = minter.raw(header, claims, signature=os.urandom(32))
    assert_rejected(attempt_admin(st, token=t), "wrong_algorithm", case)
    assert_rejected(attempt_stream(st, token=t), "wrong_algorithm", case)


def test_alg_none_on_a_public_key_hub(lab, minter):
    st = lab.stack("RS256")
    t = minter.raw({"alg": "none", "typ": "JWT"}, Minter.claims(user_id=uid(), admin=True))
    assert_rejected(attempt_admin(st, token=t), "wrong_algorithm")


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("pem_form", ["file-bytes", "pem-block"])
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_hs256_signed_with_the_public_key_is_rejected(lab, minter, alg, pem_form, front):
    """Algorithm confusion: the configured public key PEM used as an HMAC
    secret. 'file-bytes' is the key file as written (trailing newline),
    'pem-block' the BEGIN..END block without it (what ssehub holds)."""
    need(front)
    st = lab.stack(alg, front)
    pub = a.public_pem(lab.keys.rsa["a"] if alg == "RS256" else lab.keys.ec[alg]["a"])
    secret = pub if pem_form == "file-bytes" else pub.rstrip(b"\n")
    t = minter.raw({"alg": "HS256", "typ": "JWT"}, Minter.claims(user_id=uid(), admin=True), "HS256", secret)
    assert_rejected(attempt_admin(st, token=t), "wrong_algorithm", "%s %s" % (alg, pem_form))
    assert_rejected(attempt_stream(st, token=t), "wrong_algorithm", "%s %s" % (alg, pem_form))


@pytest.mark.parametrize("config,alg,key", [
    ("hs", "HS512", "HS256-secret"),       # right secret, another HMAC size
    ("RS256", "RS512", "rsa-a"),           # right key, another hash
    ("RS256", "PS256", "rsa-a"),           # right key, another padding
    ("ES256", "ES384", "ec384"),
    ("HS384", "HS256", "HS384-secret"),
])
def test_other_algorithm_of_the_same_family_is_rejected(lab, minter, config, alg, key):
    st = lab.stack(config)
    k = {"HS256-secret": lab.secret["HS256"], "HS384-secret": lab.secret["HS384"],
         "rsa-a": lab.keys.rsa["a"], "ec384": lab.keys.ec["ES384"]["a"]}[key]
    t = minter.pyjwt(Minter.claims(user_id=uid(), admin=True), alg, k)
    assert_rejected(attempt_admin(st, token=t), "wrong_algorithm", "%s token on %s" % (alg, config))


# ---------------------------------------------------------------- time claims


TIME_CASES = {
    # name: (claims relative to now; None drops the claim), expected code or None for accepted
    "expired-1h": ({"exp": -3600}, "token_expired"),
    "expired-beyond-leeway": ({"exp": -45}, "token_expired"),
    "expired-within-leeway": ({"exp": -10}, None),
    "nbf-future-1h": ({"nbf": 3600}, "token_not_yet_valid"),
    "nbf-future-beyond-leeway": ({"nbf": 45}, "token_not_yet_valid"),
    "nbf-within-leeway": ({"nbf": 10}, None),
    "nbf-past": ({"nbf": -60}, None),
    "iat-future-1h": ({"iat": 3600}, "token_not_yet_valid"),
    "iat-within-leeway": ({"iat": 10}, None),
    "no-exp": ({"exp": None}, "invalid_token"),
    "no-iat": ({"iat": None}, None),
    "exp-not-a-number": ({"exp": "tomorrow"}, "invalid_token"),
}


def time_claims(spec, **extra):
    now = int(time.time())
    c = {"iat": now, "exp": now + 3600}
    for k, v in spec.items():
        if v is None:
            c.pop(k, None)
        elif isinstance(v, int):
            c[k] = now + v
        else:
            c[k] = v
    c.update(extra)
    return c


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(TIME_CASES))
def test_time_claims(lab, minter, case, front):
    """Default leeway 30 s, exp required."""
    need(front)
    st = lab.stack("hs", front)
    spec, code = TIME_CASES[case]
    user = hs_token(minter, lab, time_claims(spec, user_id=uid(case)))
    admin = hs_token(minter, lab, time_claims(spec, user_id="adm", role="admin"))
    assert_user_and_admin(st, user, admin, code, case)


def test_no_exp_accepted_with_require_exp_no(lab, minter):
    st = lab.stack("noexp")
    user = hs_token(minter, lab, time_claims({"exp": None}, user_id=uid("noexp")))
    admin = hs_token(minter, lab, time_claims({"exp": None}, user_id="adm", role="admin"))
    assert_stream_ok(attempt_stream(st, token=user))
    assert_admin_ok(attempt_admin(st, token=admin))
    # exp is still checked when present
    expired = hs_token(minter, lab, time_claims({"exp": -3600}, user_id=uid("noexp")))
    assert_rejected(attempt_stream(st, token=expired), "token_expired")
    # --metrics-public: /metrics without any token
    r = h.http_call(st.front, "GET", "/metrics")
    assert r.status == 200 and b"sse_auth_failures_total" in r.body, r


# ---------------------------------------------------------------- issuer and audience


ISS_AUD_CASES = {
    "right-iss-and-aud": ({"iss": ISSUER, "aud": AUDIENCE}, None),
    "aud-array-containing": ({"iss": ISSUER, "aud": ["other", AUDIENCE]}, None),
    "wrong-iss": ({"iss": "https://evil.test", "aud": AUDIENCE}, "wrong_issuer"),
    "iss-prefix": ({"iss": ISSUER + "/x", "aud": AUDIENCE}, "wrong_issuer"),
    "missing-iss": ({"aud": AUDIENCE}, "wrong_issuer"),
    "iss-in-array": ({"iss": [ISSUER], "aud": AUDIENCE}, "wrong_issuer"),
    "wrong-aud": ({"iss": ISSUER, "aud": "other"}, "wrong_audience"),
    "aud-array-not-containing": ({"iss": ISSUER, "aud": ["other", AUDIENCE + "x"]}, "wrong_audience"),
    "empty-aud-array": ({"iss": ISSUER, "aud": []}, "wrong_audience"),
    "missing-aud": ({"iss": ISSUER}, "wrong_audience"),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(ISS_AUD_CASES))
def test_issuer_and_audience(lab, minter, case, front):
    need(front)
    st = lab.stack("issaud", front)
    claims, code = ISS_AUD_CASES[case]
    user = hs_token(minter, lab, Minter.claims(user_id=uid(case), **claims))
    admin = hs_token(minter, lab, Minter.claims(user_id="adm", admin=True, **claims))
    assert_user_and_admin(st, user, admin, code, case)


# ---------------------------------------------------------------- user and admin claims


USER_CASES = {
    "no-user-claim-no-sub": ({}, "missing_user"),
    "sub-fallback": ({"sub": "subject-1"}, None),
    "empty-user-id": ({"user_id": ""}, "missing_user"),
    "200-byte-user-id": ({"user_id": "u" * 200}, "missing_user"),
    "129-byte-user-id": ({"user_id": "u" * 129}, "missing_user"),
    "128-byte-user-id": ({"user_id": "u" * 128}, None),
    "numeric-user-id": ({"user_id": 4242}, None),
    "null-user-id": ({"user_id": None}, "missing_user"),
    "object-user-id": ({"user_id": {"id": 1}}, "missing_user"),
    "empty-sub-only": ({"sub": ""}, "missing_user"),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(USER_CASES))
def test_user_claim(lab, minter, case, front):
    need(front)
    st = lab.stack("hs", front)
    claims, code = USER_CASES[case]
    t = hs_token(minter, lab, Minter.claims(**claims))
    o = attempt_stream(st, token=t)
    if code is None:
        assert_stream_ok(o, case)
    else:
        assert_rejected(o, code, case)


def test_user_ids_in_stats(lab, minter):
    """A numeric user id is a string key in stats (and addressable as a
    string); sub is the fallback; user_id wins over sub; 128 bytes is fine."""
    st = lab.stack("hs")
    num = random.randint(10 ** 8, 10 ** 9 - 1)
    sub = uid("sub")
    both = uid("both")
    long_id = ("L%s" % uuid.uuid4().hex) * 4
    long_id = long_id[:128]
    tokens = [hs_token(minter, lab, Minter.claims(user_id=num)),
              hs_token(minter, lab, Minter.claims(sub=sub)),
              hs_token(minter, lab, Minter.claims(user_id=both, sub="not-" + both)),
              hs_token(minter, lab, Minter.claims(user_id=long_id))]
    streams = [st.open_stream(token=t) for t in tokens]
    try:
        users = st.stats()["user_clients"]
        assert users.get(str(num)) == 1, users
        assert users.get(sub) == 1, users
        assert users.get(both) == 1 and "not-" + both not in users, users
        assert users.get(long_id) == 1, users
        d = st.publish("send-to-user", user_id=str(num), event="hi", data={"n": num})
        assert d["recipients"] == 1, d
        ev = streams[0].next_event(3)
        assert ev is not None and ev.type == "hi" and ev.json() == {"n": num}, ev
    finally:
        st.close_streams()


ROLE_CASES = {
    "role-admin": ({"role": "admin"}, True),
    "role-array-with-admin": ({"role": ["editor", "admin"]}, True),
    "role-array-without-admin": ({"role": ["editor", "viewer"]}, False),
    "role-Admin-case": ({"role": "Admin"}, False),
    "role-admins": ({"role": "admins"}, False),
    "no-role": ({}, False),
    "role-nested-array": ({"role": [["admin"]]}, False),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(ROLE_CASES))
def test_admin_role(lab, minter, case, front):
    need(front)
    st = lab.stack("hs", front)
    claims, is_admin = ROLE_CASES[case]
    t = hs_token(minter, lab, Minter.claims(user_id=uid(case), **claims))
    o = attempt_admin(st, token=t)
    if is_admin:
        assert_admin_ok(o, case)
    else:
        assert_forbidden(o, case)


CUSTOM_CLAIM_CASES = {
    # claims, stream expectation (None ok / code), admin?
    "uid-user": ({"uid": "cu"}, None, False),
    "user_id-ignored-no-sub": ({"user_id": "cu"}, "missing_user", False),
    "sub-fallback": ({"sub": "cu-sub"}, None, False),
    "groups-array-admin": ({"uid": "cu", "groups": ["staff", "sse-admins"]}, None, True),
    "groups-string-admin": ({"uid": "cu", "groups": "sse-admins"}, None, True),
    "role-admin-not-admin": ({"uid": "cu", "role": "admin"}, None, False),
    "groups-admin-not-admin": ({"uid": "cu", "groups": ["admin"]}, None, False),
    "groups-case": ({"uid": "cu", "groups": "SSE-ADMINS"}, None, False),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", sorted(CUSTOM_CLAIM_CASES))
def test_custom_user_and_admin_claims(lab, minter, case, front):
    """--user-claim uid --admin-claim groups --admin-value sse-admins"""
    need(front)
    st = lab.stack("claims", front)
    claims, code, is_admin = CUSTOM_CLAIM_CASES[case]
    t = hs_token(minter, lab, Minter.claims(**claims))
    o = attempt_stream(st, token=t)
    if code is not None:
        assert_rejected(o, code, case)
        assert_rejected(attempt_admin(st, token=t), code, case)
        return
    assert_stream_ok(o, case)
    if is_admin:
        assert_admin_ok(attempt_admin(st, token=t), case)
    else:
        assert_forbidden(attempt_admin(st, token=t), case)


def test_custom_user_claim_names_the_user(lab, minter):
    st = lab.stack("claims")
    user = uid("custom")
    st.open_stream(token=hs_token(minter, lab, Minter.claims(uid=user, user_id="not-" + user)))
    try:
        users = st.stats()["user_clients"]
        assert users.get(user) == 1 and "not-" + user not in users, users
    finally:
        st.close_streams()


# ---------------------------------------------------------------- malformed and oversized


def _malformed(minter, lab):
    sec = lab.secret["HS256"]
    hdr = {"alg": "HS256", "typ": "JWT"}
    claims = Minter.claims(user_id=uid("mal"), admin=True)
    good = hs_token(minter, lab, claims)
    h64, p64, s64 = good.split(".")
    return {
        "one-segment": h64,
        "two-segments": h64 + "." + p64,
        "four-segments": good + "." + s64,
        "five-segments": good + ".a.b",
        "empty-segments": "..",
        "garbage": "not-a-token",
        "bad-base64-header": "!!!$$." + p64 + "." + s64,
        "bad-base64-payload": minter.raw(h64, "%%%**", "HS256", sec),
        "header-json-array": minter.raw(json.dumps(["HS256"]).encode(), claims, "HS256", sec),
        "header-json-string": minter.raw(b'"HS256"', claims, "HS256", sec),
        "header-not-json": minter.raw(b"alg=HS256", claims, "HS256", sec),
        "header-without-alg": minter.raw({"typ": "JWT"}, claims, "HS256", sec),
        "header-alg-number": minter.raw({"alg": 256, "typ": "JWT"}, claims, "HS256", sec),
        "payload-json-array": minter.raw(hdr, json.dumps([claims]).encode(), "HS256", sec),
        "payload-json-number": minter.raw(hdr, b"12", "HS256", sec),
        "payload-not-json": minter.raw(hdr, b"user_id=1", "HS256", sec),
        "empty-signature": h64 + "." + p64 + ".",
        "signature-not-base64": h64 + "." + p64 + ".***" + s64[3:],
    }


MALFORMED = ["one-segment", "two-segments", "four-segments", "five-segments", "empty-segments", "garbage",
             "bad-base64-header", "bad-base64-payload", "header-json-array", "header-json-string",
             "header-not-json", "header-without-alg", "header-alg-number", "payload-json-array",
             "payload-json-number", "payload-not-json", "empty-signature", "signature-not-base64"]


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_token(lab, minter, case, front):
    need(front)
    st = lab.stack("hs", front)
    t = minter.keep(_malformed(minter, lab)[case])
    assert_rejected(attempt_admin(st, token=t), "invalid_token", case)
    assert_rejected(attempt_stream(st, token=t), "invalid_token", case)


def token_of_length(minter, lab, length, header=None, **claims):
    """A correctly signed HS256 admin token of exactly `length` characters."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    sec = lab.secret["HS256"]
    base = Minter.claims(user_id="big", admin=True, **claims)
    for pad in range(max(0, (length * 3) // 4 - 400), length):
        for extra in range(0, 4):
            c = dict(base, pad="p" * pad, x="y" * extra)
            signing_input = a.json_b64(header) + "." + a.json_b64(c)
            n = len(signing_input) + 1 + len(a.b64url(a.sign_segments(b"x", header["alg"], sec)))
            if n == length:
                return minter.raw(header, c, header["alg"], sec)
            if extra == 0 and n > length:
                raise AssertionError("cannot build a token of %d characters" % length)
    raise AssertionError("cannot build a token of %d characters" % length)


def _with_source(source, token):
    if source == "header":
        return {"token": token}
    if source == "cookie":
        return {"cookie": "a=b; token=%s; c=d" % token}
    return {"query": token}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("source", ["header", "cookie", "query"])
def test_token_size_limit(lab, minter, source, front):
    """8192 bytes is the largest token; 8193 is invalid_token even though it
    is correctly signed, and a longer token naming another algorithm is
    still invalid_token (rejected before its header is decoded). The fronts
    here allow 64 KB headers, so these reach ssehub."""
    need(front)
    st = lab.stack("hs", front)
    exact = token_of_length(minter, lab, 8192)
    over = token_of_length(minter, lab, 8193)
    over_other_alg = token_of_length(minter, lab, 9000, header={"alg": "HS512", "typ": "JWT"})
    assert (len(exact), len(over), len(over_other_alg)) == (8192, 8193, 9000)
    assert_admin_ok(attempt_admin(st, **_with_source(source, exact)), "8192 via %s" % source)
    assert_rejected(attempt_admin(st, **_with_source(source, over)), "invalid_token", "8193 via %s" % source)
    assert_rejected(attempt_admin(st, **_with_source(source, over_other_alg)), "invalid_token",
                    "9000, HS512 header, via %s" % source)
    assert_rejected(attempt_stream(st, **_with_source(source, over)), "invalid_token", "stream 8193 via %s" % source)


_HUGE = {}


def _huge_token(minter, lab):
    if "t" not in _HUGE:
        claims = Minter.claims(user_id="huge", admin=True, blob="x" * (5 * 1024 * 1024))
        _HUGE["t"] = hs_token(minter, lab, claims)
    return _HUGE["t"]


@pytest.mark.parametrize("source", ["header", "cookie", "query"])
def test_5mb_claim_set_over_fastcgi(lab, minter, source):
    """A correctly signed token with a 5 MB claim set, straight on ssehub's
    unix socket (no front would forward it): refused promptly before any
    decoding -- the request head is over ssehub's 64 KiB PARAMS cap, so the
    answer is 431 headers_too_large -- and the daemon keeps serving."""
    st = lab.stack("hs")
    hub = st.hub
    t = _huge_token(minter, lab)
    assert len(t) > 5 * 1024 * 1024
    uri, headers = "/api/sse/stats", {}
    if source == "header":
        headers["Authorization"] = "Bearer " + t
    elif source == "cookie":
        headers["Cookie"] = "a=b; token=" + t
    else:
        uri += "?token=" + t
    t0 = time.monotonic()
    with fcgi.FcgiConnection(hub.listen, timeout=10) as c:
        c.send_request(fcgi.cgi_params("GET", uri, headers), timeout=10)
        resp = c.read_response(1, timeout=5)
    elapsed = time.monotonic() - t0
    assert resp.end is not None, "no END_REQUEST (send error %r): %r" % (c.send_error, resp)
    assert resp.end == (0, fcgi.REQUEST_COMPLETE), resp.end
    status, hdrs, body = resp.http()
    o = Outcome(status, hdrs, body, json.loads(body.decode()))
    assert o.status == 431 and o.json["error"]["code"] == "headers_too_large", "5 MB token via %s: %r" % (source, o)
    assert elapsed < 3.0, "answer took %.2fs" % elapsed
    assert hub.process.alive(), "ssehub died:\n%s" % h.tail(hub.log_path)
    assert fcgi.request(hub.listen).http()[0] == 200
    assert_stream_ok(attempt_stream(st, token=st.tokens.user(uid("after-huge"))), "after the 5 MB token")


def test_8kb_boundary_over_fastcgi(lab, minter):
    """The same limit without a front server (no header size limits)."""
    st = lab.stack("hs")
    for n, ok in ((8192, True), (8193, False), (65000, False)):
        t = token_of_length(minter, lab, n)
        resp = fcgi.request(st.hub.listen, "GET", "/api/sse/stats", headers={"Authorization": "Bearer " + t})
        status, hdrs, body = resp.http()
        o = Outcome(status, hdrs, body, json.loads(body.decode()))
        if ok:
            assert_admin_ok(o, "%d bytes" % n)
        else:
            assert_rejected(o, "invalid_token", "%d bytes" % n)


# ---------------------------------------------------------------- token sources


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("source", ["header", "cookie", "query"])
def test_every_token_source_opens_a_stream(lab, source, front):
    need(front)
    st = lab.stack("hs", front)
    t = st.tokens.user(uid(source))
    assert_stream_ok(attempt_stream(st, **_with_source(source, t)), source)
    assert_admin_ok(attempt_admin(st, **_with_source(source, st.tokens.admin())), source)


@pytest.mark.parametrize("front", FRONTS)
def test_token_source_precedence(lab, minter, front):
    need(front)
    st = lab.stack("hs", front)
    admin, user = st.tokens.admin(), st.tokens.user(uid("prec"))
    bad = minter.keep(a.flip_signature(st.tokens.admin()))
    expired = st.tokens.admin(exp_in=-3600)

    def check(expect, what, **kw):
        o = attempt_admin(st, **kw)
        if expect == 200:
            assert_admin_ok(o, what)
        elif expect == 403:
            assert_forbidden(o, what)
        else:
            assert_rejected(o, expect, what)

    check("invalid_token", "bad header + good cookie", token=bad, cookie="token=" + admin)
    check("invalid_token", "bad header + good query", token=bad, query=admin)
    check("token_expired", "expired header + good cookie", token=expired, cookie="token=" + admin)
    check("invalid_token", "bad cookie + good query", cookie="token=" + bad, query=admin)
    check(403, "user header + admin cookie", token=user, cookie="token=" + admin)
    check(403, "user header + admin query", token=user, query=admin)
    check(403, "user cookie + admin query", cookie="token=" + user, query=admin)
    check(200, "admin header + bad cookie + bad query", token=admin, cookie="token=" + bad, query=bad)
    check(200, "admin cookie + bad query", cookie="token=" + admin, query=bad)
    check(200, "Basic authorization is no token; cookie used", cookie="token=" + admin,
          headers={"Authorization": "Basic dXNlcjpwYXNz"})
    check(200, "bearer scheme is case-insensitive", headers={"Authorization": "bearer " + admin})
    check(200, "cookie among others", cookie="theme=dark; token=%s; lang=en" % admin)
    check("missing_token", "cookie name must match exactly", cookie="xtoken=%s; tokens=%s" % (admin, admin))
    check("missing_token", "query name must match exactly", query=admin, qname="xtoken")
    check("missing_token", "no token anywhere", cookie="theme=dark")
    # a stream picks the header over a bad cookie
    assert_stream_ok(attempt_stream(st, token=user, cookie="token=" + bad), "user header + bad cookie")
    assert_rejected(attempt_stream(st, token=bad, cookie="token=" + user), "invalid_token", "bad header + cookie")


@pytest.mark.parametrize("front", FRONTS)
def test_empty_query_name_and_custom_cookie(lab, front):
    """--token-query '' --token-cookie sse_jwt"""
    need(front)
    st = lab.stack("sources", front)
    admin = st.tokens.admin()
    assert_rejected(attempt_admin(st, query=admin), "missing_token", "query source disabled")
    assert_rejected(attempt_stream(st, query=st.tokens.user(uid())), "missing_token", "query source disabled")
    assert_rejected(attempt_admin(st, cookie="token=" + admin), "missing_token", "default cookie name unused")
    assert_admin_ok(attempt_admin(st, cookie="a=1; sse_jwt=" + admin), "custom cookie")
    assert_admin_ok(attempt_admin(st, token=admin), "header")
    assert_admin_ok(attempt_admin(st, cookie="sse_jwt=" + admin, query="garbage"), "query ignored entirely")
    assert_stream_ok(attempt_stream(st, cookie="sse_jwt=" + st.tokens.user(uid())), "stream via custom cookie")


@pytest.mark.parametrize("front", FRONTS)
def test_empty_cookie_name_and_custom_query(lab, front):
    """--token-cookie '' --token-query access_token"""
    need(front)
    st = lab.stack("sources2", front)
    admin = st.tokens.admin()
    assert_rejected(attempt_admin(st, cookie="token=" + admin), "missing_token", "cookie source disabled")
    assert_rejected(attempt_admin(st, cookie="access_token=" + admin), "missing_token", "cookie source disabled")
    assert_rejected(attempt_admin(st, query=admin), "missing_token", "default query name unused")
    assert_admin_ok(attempt_admin(st, query=admin, qname="access_token"), "custom query name")
    assert_stream_ok(attempt_stream(st, query=st.tokens.user(uid()), qname="access_token"), "stream via access_token")


# ---------------------------------------------------------------- admin routes


ADMIN_ROUTES = [
    ("GET", "/api/sse/stats", None),
    ("GET", "/metrics", None),
    ("POST", "/api/sse/broadcast", {"event": "x", "data": 1}),
    ("POST", "/api/sse/send-to-user", {"user_id": "nobody", "event": "x", "data": 1}),
    ("POST", "/api/sse/send-to-client", {"client_id": str(uuid.uuid4()), "event": "x", "data": 1}),
    ("POST", "/api/sse/disconnect", {"user_id": "nobody"}),
]


@pytest.mark.parametrize("front", FRONTS)
def test_admin_routes_need_an_admin_token(lab, front):
    need(front)
    st = lab.stack("hs", front)
    user, admin = st.tokens.user(uid("plain")), st.tokens.admin()
    for method, path, body in ADMIN_ROUTES:
        what = "%s %s" % (method, path)
        assert_forbidden(attempt_admin(st, token=user, method=method, path=path, body=body), what)
        assert_rejected(attempt_admin(st, method=method, path=path, body=body), "missing_token", what)
        o = attempt_admin(st, token=admin, method=method, path=path, body=body)
        assert o.status == 200, "%s with an admin token: %r" % (what, o)
    r = h.http_call(st.front, "GET", "/api/sse/health")
    assert r.status == 200 and r.json == {"success": True, "data": {"status": "ok"}}, r


# ---------------------------------------------------------------- key rotation (SIGHUP)


def _log_mark(hub):
    return len(hub.log_path.read_bytes())


def _log_since(hub, mark):
    return hub.log_path.read_bytes()[mark:].decode("utf-8", "replace")


def test_rotation_with_two_secret_files(lab, minter):
    d = lab.workdir / ("rot-%s" % uuid.uuid4().hex[:6])
    d.mkdir()
    k1, k2 = lab.keys.new_secret(), lab.keys.new_secret()
    f1, f2 = lab.keys.write(d / "one.secret", k1 + b"\n"), lab.keys.write(d / "two.secret", k2)
    tok = RecordingTokens(k1, "HS256", MINTED)
    st = lab.fresh("rotation", ["--jwt-secret-file", f1, "--jwt-secret-file", f2], tok)
    t1, t2 = tok.admin(), tok.admin(key=k2)
    t_other = tok.admin(key=lab.keys.new_secret())
    assert_admin_ok(attempt_admin(st, token=t1), "first secret file")
    assert_admin_ok(attempt_admin(st, token=t2), "second secret file")
    assert_stream_ok(attempt_stream(st, token=tok.user(uid("rot"), key=k2)), "stream, second secret")
    assert_rejected(attempt_admin(st, token=t_other), "invalid_token", "unconfigured secret")

    k2new = lab.keys.new_secret()
    f2.write_bytes(k2new + b"\n")
    t2new = tok.admin(key=k2new)
    assert_rejected(attempt_admin(st, token=t2new), "invalid_token", "new secret before SIGHUP")
    mark = _log_mark(st.hub)
    a.send_sighup(st.hub)
    h.wait_until(lambda: attempt_admin(st, token=t2new).status == 200, 3, interval=0.05,
                 message="the new secret to be accepted after SIGHUP")
    assert_rejected(attempt_admin(st, token=t2), "invalid_token", "replaced secret after SIGHUP")
    assert_admin_ok(attempt_admin(st, token=t1), "untouched secret after SIGHUP")
    assert_stream_ok(attempt_stream(st, token=tok.user(uid("rot"), key=k2new)), "stream, new secret")
    assert "level=warn" not in _log_since(st.hub, mark), _log_since(st.hub, mark)
    assert st.hub.process.alive()


def test_secret_file_loses_exactly_one_trailing_newline(lab, minter):
    d = lab.workdir / ("nl-%s" % uuid.uuid4().hex[:6])
    d.mkdir()
    ka, kb, kc = lab.keys.new_secret(), lab.keys.new_secret(), lab.keys.new_secret()
    files = [lab.keys.write(d / "a.secret", ka + b"\n"), lab.keys.write(d / "b.secret", kb),
             lab.keys.write(d / "c.secret", kc + b"\n\n")]
    tok = RecordingTokens(ka, "HS256", MINTED)
    st = lab.fresh("newline", [x for f in files for x in ("--jwt-secret-file", f)], tok)
    assert_admin_ok(attempt_admin(st, token=tok.admin()), "file 'A\\n', key A")
    assert_admin_ok(attempt_admin(st, token=tok.admin(key=kb)), "file 'B', key B")
    assert_admin_ok(attempt_admin(st, token=tok.admin(key=kc + b"\n")), "file 'C\\n\\n', key 'C\\n'")
    assert_rejected(attempt_admin(st, token=tok.admin(key=kc)), "invalid_token", "file 'C\\n\\n', key C")
    assert_rejected(attempt_admin(st, token=tok.admin(key=ka + b"\n")), "invalid_token", "file 'A\\n', key 'A\\n'")


RELOAD_BAD = ["secret-emptied", "secret-removed", "pem-emptied", "pem-garbage"]


@pytest.mark.parametrize("case", RELOAD_BAD)
def test_bad_key_file_on_sighup_keeps_old_keys(lab, minter, case):
    d = lab.workdir / ("reload-%s" % uuid.uuid4().hex[:6])
    d.mkdir()
    if case.startswith("secret"):
        k1, k2 = lab.keys.new_secret(), lab.keys.new_secret()
        f1, bad_file = lab.keys.write(d / "one.secret", k1), lab.keys.write(d / "two.secret", k2 + b"\n")
        tok = RecordingTokens(k1, "HS256", MINTED)
        st = lab.fresh("reload", ["--jwt-secret-file", f1, "--jwt-secret-file", bad_file], tok)
        old = [tok.admin(), tok.admin(key=k2)]
        stranger = tok.admin(key=lab.keys.new_secret())
        fresh_key = lab.keys.new_secret()
        fresh_bytes, fresh_token = fresh_key + b"\n", tok.admin(key=fresh_key)
    else:
        k = lab.keys.rsa["b"]
        bad_file = lab.keys.write(d / "key.pem", a.public_pem(k))
        tok = RecordingTokens(k, "RS256", MINTED)
        st = lab.fresh("reload", ["--jwt-alg", "RS256", "--jwt-public-key-file", bad_file], tok)
        old = [tok.admin()]
        stranger = tok.admin(key=lab.keys.rsa["c"])
        fresh_bytes, fresh_token = a.public_pem(lab.keys.rsa["a"]), tok.admin(key=lab.keys.rsa["a"])
    for t in old:
        assert_admin_ok(attempt_admin(st, token=t), "before SIGHUP")

    if case.endswith("emptied"):
        bad_file.write_bytes(b"")
    elif case.endswith("removed"):
        bad_file.unlink()
    else:
        bad_file.write_bytes(b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
    mark = _log_mark(st.hub)
    a.send_sighup(st.hub)
    # the hub logs one line when it is done with the reload (warn or info)
    h.wait_until(lambda: "level=" in _log_since(st.hub, mark), 3, interval=0.05,
                 message="a log line after SIGHUP (%s)" % case)
    time.sleep(0.05)
    assert st.hub.process.alive(), h.tail(st.hub.log_path)
    for t in old:
        assert_admin_ok(attempt_admin(st, token=t), "old key after SIGHUP with a bad key file (%s; log: %r)" % (
            case, _log_since(st.hub, mark)))
    assert_stream_ok(attempt_stream(st, token=old[0]), "stream after a failed reload")
    assert_rejected(attempt_admin(st, token=stranger), "invalid_token", "unknown key after a failed reload")
    assert "level=warn" in _log_since(st.hub, mark), "no warning logged for the bad key file: %r" % (
        _log_since(st.hub, mark))

    # a good file again: the next SIGHUP loads it
    lab.keys.write(bad_file, fresh_bytes)
    a.send_sighup(st.hub)
    h.wait_until(lambda: attempt_admin(st, token=fresh_token).status == 200, 3, interval=0.05,
                 message="the repaired key file to be loaded")


# ---------------------------------------------------------------- token expiry on open streams


def test_stream_ends_at_token_expiry(lab, minter):
    """--jwt-leeway 0: exp = now + 2 -> a final `token_expired` event, then
    the response ends cleanly (behind every front server at the same time)."""
    fronts = [f for f in FRONTS if h.find_program(h.FRONT_PROGRAMS[f])]
    stacks = [lab.stack("leeway0", f) for f in fronts]
    now = int(time.time())
    exp = now + 2
    token = hs_token(minter, lab, {"user_id": uid("exp"), "iat": now, "exp": exp})
    streams = [st.open_stream(token=token) for st in stacks]
    try:
        first_at = None
        for f, s in zip(fronts, streams):
            ev = s.wait_event("token_expired", timeout=max(0.5, exp + 3.0 - time.time()))
            at = time.time()
            first_at = first_at or at
            assert at >= exp - 0.05, "%s: token_expired %.2fs before exp" % (f, exp - at)
            assert ev.json() == {}, ev
            rest = s.read_to_end(timeout=2)
            assert not [b for b in rest if b.dispatched], "%s: events after token_expired: %r" % (f, rest)
            assert s.clean_end and not s.reset, "%s: response did not end cleanly (framing %s eof %s reset %s)" % (
                f, s.framing, s.eof, s.reset)
        assert first_at <= exp + 2.0, "token_expired %.2fs after exp" % (first_at - exp)
        for st in stacks:
            assert_rejected(attempt_stream(st, token=token), "token_expired", "reconnect with the expired token")
    finally:
        for st in stacks:
            st.close_streams()


def test_token_is_expired_at_its_exp_second(lab, minter):
    """RFC 7519 4.1.4: the current time must be *before* exp. With
    --jwt-leeway 0 a token whose exp is the current second is expired, the
    same second at which an open stream with it gets token_expired."""
    st = lab.stack("leeway0")
    frac = time.time() % 1                     # mint + request well inside one second
    if frac > 0.6 or frac < 0.05:              # (and clear of coarse-clock lag at its start)
        time.sleep((1.05 - frac) % 1)
    now = int(time.time())
    t = hs_token(minter, lab, {"user_id": uid("exp-now"), "iat": now - 5, "exp": now})
    assert_rejected(attempt_admin(st, token=t), "token_expired", "exp == now (leeway 0)")
    t = hs_token(minter, lab, {"user_id": uid("exp-now"), "iat": now - 5, "exp": now + 5})
    assert_forbidden(attempt_admin(st, token=t), "exp == now + 5 (leeway 0)")


def test_stream_stays_open_past_expiry_when_disabled(lab, minter):
    st = lab.stack("keepopen")
    now = int(time.time())
    exp = now + 2
    token = hs_token(minter, lab, {"user_id": uid("keep"), "iat": now, "exp": exp})
    s = st.open_stream(token=token)
    try:
        got = s.events_during(exp + 1.6 - time.time())
        assert time.time() > exp + 1.5
        assert not [b for b in got if b.type == "token_expired"], got
        assert not s._finished(), "stream ended although --close-on-token-expiry no (eof %s)" % s.eof
        st.check_marker([s])
        assert_rejected(attempt_stream(st, token=token), "token_expired", "a new stream with the expired token")
    finally:
        st.close_streams()


# ---------------------------------------------------------------- metrics


def _counters(st):
    r = h.http_call(st.front, "GET", "/metrics", token=st.admin_token)
    assert r.status == 200, r
    return a.auth_failure_counters(r.body.decode())


def test_failure_counters_per_reason(lab, minter):
    tok = lab.hs_tokens(defaults={"iss": ISSUER, "aud": AUDIENCE})
    st = lab.fresh("metrics", lab.hs_args + ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE], tok)
    assert _counters(st) == dict((r, 0) for r in REASONS), "a fresh hub must count nothing"

    def c(**extra):
        base = {"iss": ISSUER, "aud": AUDIENCE}
        base.update(extra)
        return hs_token(minter, lab, Minter.claims(**base))

    produced = Counter()

    def fail(code, **kw):
        assert_rejected(attempt_stream(st, **kw), code)
        produced[code] += 1

    fail("missing_token")
    fail("missing_token", cookie="other=1")
    assert_rejected(attempt_admin(st, path="/metrics"), "missing_token")
    produced["missing_token"] += 1
    fail("invalid_token", token=minter.keep(a.flip_signature(c(user_id="m"))))
    fail("invalid_token", token="a.b.c.d")
    fail("invalid_token", token=token_of_length(minter, lab, 8300, iss=ISSUER, aud=AUDIENCE))
    fail("token_expired", token=c(user_id="m", exp=int(time.time()) - 3600))
    fail("token_not_yet_valid", token=c(user_id="m", nbf=int(time.time()) + 3600))
    fail("token_not_yet_valid", token=c(user_id="m", iat=int(time.time()) + 3600))
    fail("wrong_algorithm", token=minter.raw({"alg": "none"}, Minter.claims(user_id="m")))
    fail("wrong_issuer", token=c(user_id="m", iss="https://evil.test"))
    fail("wrong_audience", token=c(user_id="m", aud="other"))
    fail("wrong_audience", token=c(user_id="m", aud=DROP))
    fail("missing_user", token=c(sub=""))
    # successes and 403s count nothing
    assert_stream_ok(attempt_stream(st, token=c(user_id="ok")))
    assert_forbidden(attempt_admin(st, token=c(user_id="plain")))
    assert_forbidden(attempt_admin(st, token=c(user_id="plain"), path="/metrics"))

    expected = dict((r, produced.get(r, 0)) for r in REASONS)
    assert all(expected.values()), expected
    assert _counters(st) == expected


# ---------------------------------------------------------------- nothing secret in the logs (keep last)


def test_no_token_or_key_material_in_logs(lab):
    """Every ssehub log (--log-level debug) and front error log written by
    this module's processes: none holds a token minted here (whole, or its
    payload or signature segment) or any secret / PEM line.

    Not ssehub's doing, so not checked: nginx's access logs (request lines
    by design) and the request line nginx quotes in the context of its own
    error-log messages (at `info`, e.g. "client prematurely closed
    connection ... request: "GET /sse/stream?token=..."): a query-string
    token is there whatever the hub does. See
    auth_support.strip_nginx_request_lines."""
    if not lab.procs.hubs:
        pytest.skip("no hub ran in this session (run the whole module)")
    bad_exits = lab.stop_all()
    files = lab.all_log_files()
    texts = {str(p): p.read_text(errors="replace") for p in files if p.exists()}
    blanked = 0
    for p in list(texts):
        if "/nginx" in p and p.endswith("error.log"):
            texts[p], n = a.strip_nginx_request_lines(texts[p])
            blanked += n
    hub_logs = [str(hub.log_path) for hub in lab.procs.hubs]
    assert all(p in texts for p in hub_logs), "missing hub logs"
    joined = "".join(texts[p] for p in hub_logs)
    assert "event=auth_failed" in joined and "level=debug" in joined, "the hub logs are not the debug logs expected"
    assert any("error.log" in p for p in texts), "no front error log found"
    needles = a.leak_needles(MINTED, KEY_MATERIAL)
    assert len(MINTED) > 100 and len(needles) > 100, (len(MINTED), len(needles))
    # the scanner itself finds a planted token
    planted = {"planted": "x event=auth %s y" % MINTED[0]}
    assert a.find_leaks(planted, needles), "leak scanner self-check failed"
    hits = a.find_leaks(texts, needles)
    assert not hits, "token or key material in logs (kept in %s):\n%s" % (
        lab.workdir, "\n".join("%s: %s %s" % x for x in hits[:30]))
    assert not bad_exits, "hubs that did not exit 0 on SIGTERM: %r" % (bad_exits,)
