"""Error answers: status, JSON error code, headers, and nothing delivered.

Every case runs while a watcher stream is open (its user id is unique to the
test and is the target of the send-to-user cases); afterwards a marker
broadcast must be the next event that stream sees (no stray or half
delivery)."""

import json
import time
import uuid

import pytest

# the 413 case needs a small body limit; every other body here is far smaller
SSEHUB_MODULE_ARGS = ["--max-message-bytes", "1024"]


@pytest.fixture
def es(module_stack):
    """The module's shared stack, with a watcher stream per test. The
    watcher's user id is unique: streams of earlier tests may linger for a
    while (lighttpd and Apache only notice a client that left when they next
    write to it)."""
    module_stack.watcher_user = "w-%s" % uuid.uuid4().hex[:12]
    module_stack.watcher = module_stack.open_stream(user_id=module_stack.watcher_user)
    yield module_stack
    module_stack.close_streams()


def assert_error(r, status, code):
    assert r.status == status, "expected %d %s, got %r" % (status, code, r)
    body = r.json if r.json is not None else getattr(r, "body", None)
    assert isinstance(r.json, dict), "error body is not JSON: %r" % (body,)
    assert r.json.get("success") is False, r.json
    err = r.json.get("error")
    assert isinstance(err, dict) and err.get("code") == code, r.json
    assert isinstance(err.get("message"), str) and err["message"], r.json


def raw(obj):
    return json.dumps(obj)


# (route, body, code) sent with an admin token; all are 400. WATCHER in a
# body is replaced by the watcher's user id.
BAD_BODIES = {
    "malformed": ("broadcast", '{"event": "x", "data": }', "invalid_json"),
    "truncated": ("broadcast", '{"event":"x","data":{"a":1', "invalid_json"),
    "trailing-garbage": ("broadcast", '{"event":"x","data":1} xyz', "invalid_json"),
    "two-objects": ("broadcast", '{"event":"x","data":1}{"event":"y","data":2}', "invalid_json"),
    "not-an-object": ("broadcast", '[{"event":"x","data":1}]', "invalid_json"),
    "empty-body": ("broadcast", "", "invalid_json"),
    "missing-event": ("broadcast", raw({"data": 1}), "invalid_field"),
    "missing-data": ("broadcast", raw({"event": "x"}), "invalid_field"),
    "event-not-string": ("broadcast", raw({"event": 12, "data": 1}), "invalid_field"),
    "event-crlf": ("broadcast", raw({"event": "a\r\nb", "data": 1}), "invalid_field"),
    "event-lf": ("broadcast", raw({"event": "a\nid: 1", "data": 1}), "invalid_field"),
    "event-cr": ("broadcast", raw({"event": "a\rb", "data": 1}), "invalid_field"),
    "event-nul": ("broadcast", raw({"event": "a\u0000b", "data": 1}), "invalid_field"),
    "event-65-bytes": ("broadcast", raw({"event": "e" * 65, "data": 1}), "invalid_field"),
    "id-crlf": ("broadcast", raw({"event": "x", "data": 1, "id": "1\r\ndata: x"}), "invalid_field"),
    "id-129-bytes": ("broadcast", raw({"event": "x", "data": 1, "id": "i" * 129}), "invalid_field"),
    "user-id-object": ("send-to-user", raw({"user_id": {"id": 1}, "event": "x", "data": 1}), "invalid_field"),
    "user-id-array": ("send-to-user", raw({"user_id": [1], "event": "x", "data": 1}), "invalid_field"),
    "user-id-missing": ("send-to-user", raw({"event": "x", "data": 1}), "invalid_field"),
    "user-event-crlf": ("send-to-user", raw({"user_id": "WATCHER", "event": "a\r\n", "data": 1}), "invalid_field"),
    "user-data-missing": ("send-to-user", raw({"user_id": "WATCHER", "event": "x"}), "invalid_field"),
    "client-id-missing": ("send-to-client", raw({"event": "x", "data": 1}), "invalid_field"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_body_is_400(es, case):
    route, body, code = BAD_BODIES[case]
    r = es.post("/api/sse/" + route, body.replace("WATCHER", es.watcher_user))
    assert_error(r, 400, code)
    es.check_marker([es.watcher])


def test_bad_body_for_a_real_client_is_400(es):
    # send-to-client aimed at the watcher itself, made invalid only by its event name
    r = es.post("/api/sse/send-to-client", {"client_id": es.watcher.client_id, "event": "a\nb", "data": 1})
    assert_error(r, 400, "invalid_field")
    es.check_marker([es.watcher])


def test_limits_are_inclusive(es):
    d = es.publish("send-to-user", user_id=es.watcher_user, event="e" * 64, data=1, id="i" * 128)
    assert d == {"id": "i" * 128, "recipients": 1}, d
    ev = es.watcher.next_event(3)
    assert ev is not None and (ev.type, ev.id) == ("e" * 64, "i" * 128), ev
    es.check_marker([es.watcher])


def test_body_over_max_message_bytes_is_413(es):
    body = raw({"event": "big", "data": "x" * 5000})
    assert len(body) > 5000
    r = es.post("/api/sse/broadcast", body)
    assert_error(r, 413, "payload_too_large")
    es.check_marker([es.watcher])


# ---- authentication and authorisation


@pytest.mark.parametrize("path", ["/api/sse/broadcast", "/sse/stream"])
def test_missing_token_is_401(es, path):
    method = "POST" if "broadcast" in path else "GET"
    r = es.request(method, path, body={"event": "x", "data": 1} if method == "POST" else None, token=None)
    assert_error(r, 401, "missing_token")
    www = r.header("WWW-Authenticate")
    assert www is not None and www.startswith("Bearer"), r.headers.items()
    es.check_marker([es.watcher])


@pytest.mark.parametrize("path", ["/api/sse/broadcast", "/sse/stream"])
def test_bad_signature_is_401(es, path):
    bad = es.tokens.admin(key=b"some-other-secret-entirely-xxxxxxxx")
    method = "POST" if "broadcast" in path else "GET"
    r = es.request(method, path, body={"event": "x", "data": 1} if method == "POST" else None, token=bad)
    assert_error(r, 401, "invalid_token")
    www = r.header("WWW-Authenticate") or ""
    assert www.startswith("Bearer") and 'error="invalid_token"' in www, r.headers.items()
    es.check_marker([es.watcher])


def test_expired_token_is_401(es):
    r = es.request("GET", "/sse/stream", token=es.tokens.user(1, exp_in=-3600))
    assert_error(r, 401, "token_expired")
    assert (r.header("WWW-Authenticate") or "").startswith("Bearer")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/sse/stats", None),
    ("POST", "/api/sse/broadcast", {"event": "x", "data": 1}),
    ("POST", "/api/sse/send-to-user", {"user_id": "WATCHER", "event": "x", "data": 1}),
], ids=["stats", "broadcast", "send-to-user"])
def test_non_admin_is_403(es, method, path, body):
    if body and body.get("user_id") == "WATCHER":
        body = dict(body, user_id=es.watcher_user)
    r = es.request(method, path, body=body, token=es.tokens.user(es.watcher_user))
    assert_error(r, 403, "forbidden")
    es.check_marker([es.watcher])


# ---- methods and routes


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/api/sse/broadcast", "POST"),
    ("GET", "/api/sse/send-to-user", "POST"),
    ("POST", "/api/sse/stats", "GET"),
], ids=["GET-broadcast", "GET-send-to-user", "POST-stats"])
def test_wrong_method_is_405(es, method, path, allow):
    r = es.request(method, path, body={"event": "x", "data": 1} if method == "POST" else None)
    assert_error(r, 405, "method_not_allowed")
    assert r.header("Allow") == allow, r.headers.items()
    es.check_marker([es.watcher])


def test_unknown_path_is_404(es):
    r = es.request("GET", "/api/sse/nope")
    assert_error(r, 404, "not_found")
    r = es.post("/api/sse/nope", {"event": "x", "data": 1})
    assert_error(r, 404, "not_found")
    es.check_marker([es.watcher])


# ---- token validation beyond the signature (contract: "Tokens", 401 codes)


def _b64(obj):
    import base64
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_token_is_rejected(es):
    now = int(time.time())
    token = "%s.%s." % (_b64({"alg": "none", "typ": "JWT"}),
                        _b64({"user_id": 1, "role": "admin", "exp": now + 3600}))
    r = es.request("GET", "/api/sse/stats", token=token)
    assert r.status == 401 and r.error_code in ("invalid_token", "wrong_algorithm"), r
    r = es.request("POST", "/api/sse/broadcast", body={"event": "x", "data": 1}, token=token)
    assert r.status == 401 and r.error_code in ("invalid_token", "wrong_algorithm"), r
    es.check_marker([es.watcher])


def test_other_hmac_algorithm_is_rejected(es):
    # right secret, but the pinned algorithm is HS256
    r = es.request("GET", "/api/sse/stats", token=es.tokens.admin(alg="HS512"))
    assert_error(r, 401, "wrong_algorithm")


def test_not_yet_valid_token_is_401(es):
    r = es.request("GET", "/sse/stream", token=es.tokens.user(1, nbf=int(time.time()) + 3600))
    assert_error(r, 401, "token_not_yet_valid")


def test_token_without_user_is_401(es):
    r = es.request("GET", "/sse/stream", token=es.tokens.make(None))
    assert_error(r, 401, "missing_user")


def test_sub_claim_is_the_fallback_user(es):
    user = "sub-%s" % uuid.uuid4().hex[:8]
    s = es.open_stream(token=es.tokens.make(None, sub=user))
    d = es.publish("send-to-user", user_id=user, event="via-sub", data=1)
    assert d["recipients"] == 1, d
    ev = s.next_event(3)
    assert ev is not None and ev.type == "via-sub", ev
