"""Helpers for test_auth.py: key material, hand-built JWS tokens, a record of
everything minted (for the log-leak check), front servers that let 8 KB+
tokens through, and a lab that keeps the module's hubs and fronts in one
directory (so the last test can read every log they wrote).

Plain Python, no pytest."""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import ssehub_harness as h

HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_b64(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return b64url(raw)


# ---------------------------------------------------------------- key material


def public_pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(private_key):
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


class KeyRing:
    """Keys generated once per test session (module). Every secret and every
    PEM written is also recorded in `material` (for the log-leak check)."""

    def __init__(self, material):
        self.material = material
        self.rsa = {n: rsa.generate_private_key(public_exponent=65537, key_size=2048) for n in ("a", "b", "c")}
        self.ec = {alg: {n: ec.generate_private_key(curve()) for n in ("a", "b", "c")} for alg, curve in CURVES.items()}
        for k in list(self.rsa.values()) + [k for d in self.ec.values() for k in d.values()]:
            self.record_pem(private_pem(k))
            self.record_pem(public_pem(k))

    def new_secret(self):
        s = secrets.token_hex(32).encode()
        self.material.append(s.decode())
        return s

    def record_pem(self, pem):
        """Every base64 body line of a PEM (private or public) counts as key material."""
        for line in pem.decode().splitlines():
            if line and not line.startswith("-----"):
                self.material.append(line)

    @staticmethod
    def write(path, data, mode=0o600):
        path = Path(path)
        path.write_bytes(data)
        os.chmod(path, mode)
        return path


# ---------------------------------------------------------------- tokens


def sign_segments(signing_input, alg, key):
    """The raw signature of signing_input (bytes) for alg with key: bytes
    for HS* (used as is as the HMAC key, whatever it is), a private key
    object for RS*/ES*."""
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, HASHES[alg[2:]]).digest()
    return jwt.algorithms.get_default_algorithms()[alg].sign(signing_input, key)


class Minter:
    """Builds tokens and records every one in `minted`."""

    def __init__(self, minted):
        self.minted = minted

    def keep(self, token):
        self.minted.append(token)
        return token

    @staticmethod
    def claims(user_id=None, admin=False, exp_in=3600, **extra):
        now = int(time.time())
        c = {"iat": now}
        if exp_in is not None:
            c["exp"] = now + exp_in
        if user_id is not None:
            c["user_id"] = user_id
        if admin:
            c["role"] = "admin"
        c.update(extra)
        return {k: v for k, v in c.items() if v is not DROP}

    def pyjwt(self, claims, alg, key, headers=None):
        """A regular token from PyJWT."""
        t = jwt.encode(claims, key, algorithm=alg, headers=headers)
        return self.keep(t.decode() if isinstance(t, bytes) else t)

    def raw(self, header, payload, alg=None, key=None, signature=None):
        """A token built by hand. header/payload: dict (JSON-encoded) or bytes
        (base64url-encoded as they are) or str (used as the segment itself).
        The signature is over the two segments with alg/key, or the given
        bytes, or empty when neither is given."""
        def seg(x):
            return x if isinstance(x, str) else json_b64(x)
        signing_input = seg(header) + "." + seg(payload)
        if signature is None and alg is not None:
            signature = sign_segments(signing_input.encode(), alg, key)
        return self.keep(signing_input + "." + (b64url(signature) if signature else ""))


DROP = object()   # a claims() value that removes the claim (e.g. iat=DROP)


class RecordingTokens(h.Tokens):
    """h.Tokens (what Stack uses for its admin token) minting with a given
    algorithm and key, the hub's user claim and admin claims, default claims
    (iss, aud...), and recording each token."""

    def __init__(self, key, alg, minted, defaults=None, user_claim="user_id", admin_claims=None):
        super().__init__(key)
        self.alg = alg
        self.minted = minted
        self.defaults = dict(defaults or {})
        self.user_claim = user_claim
        self.admin_claims = dict(admin_claims or {"role": "admin"})

    def make(self, user_id=None, admin=False, exp_in=3600, key=None, alg=None, **claims):
        now = int(time.time())
        payload = {"iat": now}
        if exp_in is not None:
            payload["exp"] = now + exp_in
        payload.update(self.defaults)
        if user_id is not None:
            payload[self.user_claim] = user_id
        if admin:
            payload.update(self.admin_claims)
        payload.update(claims)
        t = jwt.encode(payload, self.key if key is None else key, algorithm=alg or self.alg)
        t = t.decode() if isinstance(t, bytes) else t
        self.minted.append(t)
        return t


def flip_signature(token):
    """The token with one signature byte changed (a base64url character in
    the middle of the signature, so the decoded bytes differ, not only
    padding bits)."""
    head, _, sig = token.rpartition(".")
    i = len(sig) // 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    repl = alphabet[(alphabet.index(sig[i]) + 17) % 64]
    out = head + "." + sig[:i] + repl + sig[i + 1:]
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) != \
        base64.urlsafe_b64decode(out.rpartition(".")[2] + "=" * (-len(sig) % 4))
    return out


# ---------------------------------------------------------------- fronts


class BigHeaderNginx(h.NginxFront):
    """The harness's nginx with header buffers large enough for a 9 KB
    token (nginx's default 8k would answer 400 itself)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, http_extra=["large_client_header_buffers 4 64k"], **kw)


class BigHeaderLighttpd(h.LighttpdFront):
    # ":=" overrides the value examples/lighttpd/ssehub.conf sets (lighttpd
    # refuses a variable set twice with "=")
    def __init__(self, *a, **kw):
        super().__init__(*a, extra=["server.max-request-field-size := 65535"], **kw)


class BigHeaderApache(h.ApacheFront):
    """Apache's default LimitRequestLine and LimitRequestFieldSize (8190)
    would answer a 9 KB token with a 400 of its own."""

    def __init__(self, *a, **kw):
        super().__init__(*a, extra=["LimitRequestLine 65536", "LimitRequestFieldSize 65536"], **kw)


# ---------------------------------------------------------------- the lab


class Lab:
    """All hubs and fronts of a module, in one directory that outlives the
    tests (the leak check reads every log at the end). Stacks are cached by
    (config name, front kind); fresh() starts one that is never shared."""

    def __init__(self, binary, minted, material):
        self.workdir = Path(tempfile.mkdtemp(prefix="ssehub-auth-", dir="/tmp"))
        self.procs = h.Procs(self.workdir, binary, None)
        self.minted = minted
        self.material = material
        self.hubs = {}          # name -> Hub
        self.stacks = {}        # (name, kind) -> Stack
        self.configs = {}       # name -> (args, tokens)
        self.touched = []       # stacks used by the current test (for failure reports)

    def define(self, name, args, tokens):
        self.configs[name] = ([str(a) for a in args], tokens)

    def hub(self, name):
        if name not in self.hubs:
            args, _ = self.configs[name]
            self.hubs[name] = self.procs.hub(name="hub-" + name, secret_file=None, extra_args=args)
        return self.hubs[name]

    def front(self, kind, hub):
        n = len(self.procs.fronts)
        args = hub.argv
        cookie = (args[args.index("--token-cookie") + 1] if "--token-cookie" in args else "") or "token"
        if kind == "nginx":
            f = BigHeaderNginx(self.workdir, hub.upstream, name="nginx%d" % n, token_cookie=cookie)
        elif kind == "lighttpd":
            f = BigHeaderLighttpd(self.workdir, socket_path=str(hub.socket_path), name="lighttpd%d" % n)
        elif kind == "apache":
            f = BigHeaderApache(self.workdir, str(hub.socket_path), name="apache%d" % n, token_cookie=cookie)
        else:
            raise ValueError(kind)
        f.watch.append(hub.process)
        self.procs.fronts.append(f)
        f.start()
        f.wait_ready()
        return f

    def stack(self, name, kind="nginx"):
        key = (name, kind)
        if key not in self.touched:
            self.touched.append(key)
        if key not in self.stacks:
            if kind != "nginx" and not h.find_program(h.FRONT_PROGRAMS[kind]):
                raise LookupError("%s is not installed" % h.FRONT_PROGRAMS[kind])
            hub = self.hub(name)
            self.stacks[key] = h.Stack(self.front(kind, hub), self.configs[name][1], hub=hub)
        return self.stacks[key]

    def fresh(self, name, args, tokens, kind="nginx"):
        """A hub + front of its own (state such as counters or key files)."""
        name = "%s-%d" % (name, len(self.procs.hubs))
        self.define(name, args, tokens)
        return self.stack(name, kind)

    def begin_test(self):
        self.touched = []

    def log_files(self):
        """The logs of the hubs and fronts the current test used (conftest
        puts their tails into a failure report)."""
        out = []
        for key in self.touched:
            st = self.stacks.get(key)
            if st is not None:
                for p in [st.hub.log_path] + list(st.front.logs):
                    if p not in out:
                        out.append(p)
        return out

    def all_log_files(self):
        return [Path(p) for p in self.procs.log_files()]

    def stop_all(self):
        """Stops every hub (asserting exit 0 after SIGTERM) and front."""
        for s in self.stacks.values():
            s.close_streams()
        bad = []
        for hub in self.procs.hubs:
            if hub.process.returncode is None and hub.process.alive():
                rc = hub.stop(timeout=5)
            else:
                rc = hub.process.proc.returncode
            if rc != 0:
                bad.append((hub.name, rc, h.tail(hub.log_path, 1500)))
        for f in self.procs.fronts:
            f.stop()
        return bad

    def remove(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------- log scanning


def leak_needles(minted, material):
    """(what, needle) pairs to look for in logs: every minted token whole
    (when not huge), its payload and signature segments (when long enough to
    be unique), and every piece of key material."""
    needles = {}
    for t in minted:
        if 16 <= len(t) <= 20000:
            needles.setdefault(t, "token")
        parts = t.split(".")
        for i, p in enumerate(parts[1:], 1):
            if len(p) >= 16:
                needles.setdefault(p if len(p) <= 512 else p[:256], "token segment %d" % i)
    for m in material:
        if len(m) >= 16:
            needles.setdefault(m, "key material")
    return needles


NGINX_REQUEST_FIELD = re.compile(r', request: "[^"\n]*"')


def strip_nginx_request_lines(text):
    """nginx's own messages end with a context that quotes the client's
    request line (`, request: "GET /sse/stream?token=... HTTP/1.1"`); a
    query-string token shows up there whatever ssehub does. Only that quote
    is blanked: anything else in the line (e.g. `FastCGI sent in stderr:
    "..."`, which is ssehub's own output) is still scanned. Returns
    (text, number of blanked request lines that held a '?')."""
    n = len([m for m in NGINX_REQUEST_FIELD.finditer(text) if "?" in m.group(0)])
    return NGINX_REQUEST_FIELD.sub(', request: "<request line>"', text), n


def find_leaks(texts, needles):
    """texts: {name: str}. Returns [(file, kind, needle prefix)]."""
    hits = []
    for name, text in texts.items():
        for needle, kind in needles.items():
            if needle in text:
                hits.append((name, kind, needle[:40] + "..."))
    return hits


METRIC_RE = re.compile(r'^sse_auth_failures_total\{reason="([a-z_]+)"\}\s+(\d+)\s*$', re.M)


def auth_failure_counters(text):
    return {m.group(1): int(m.group(2)) for m in METRIC_RE.finditer(text)}


def send_sighup(hub):
    hub.process.proc.send_signal(signal.SIGHUP)
