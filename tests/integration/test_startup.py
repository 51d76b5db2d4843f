"""Start-up: listen errors, stale sockets, TCP, spawn-fcgi, config file,
command-line errors."""

import os
import re
import signal
import socket
import stat
import uuid

import pytest

import fcgi_client as fcgi
import ssehub_harness as h
from conftest import require_program


def _common(secret):
    return ["--jwt-secret-file", secret.path, "--log-level", "debug", "--shutdown-spread", "0"]


def _smoke(front, tokens):
    """A stream through front gets a message sent to its (fresh) user and a
    broadcast; returns the Stack."""
    st = h.Stack(front, tokens)
    user = "smoke-%s" % uuid.uuid4().hex[:8]
    s = st.open_stream(user_id=user)
    d = st.publish("send-to-user", user_id=user, event="hello", data={"ok": True})
    assert d["recipients"] == 1, d
    ev = s.next_event(3)
    assert ev is not None and (ev.type, ev.json(), ev.id) == ("hello", {"ok": True}, d["id"]), ev
    d = st.broadcast("hello-all", [1])
    assert d["recipients"] >= 1, d
    ev = s.next_event(3)
    assert ev is not None and (ev.type, ev.json(), ev.id) == ("hello-all", [1], d["id"]), ev
    st.close_streams()
    return st


def _stop_clean(hub, timeout=3):
    rc = hub.stop(timeout=timeout)
    assert rc == 0, "exit status %r after SIGTERM\n%s" % (rc, h.tail(hub.log_path))


def _clear_message(text):
    return len(text.strip()) >= 10


def test_no_listen_and_fd0_not_a_socket(procs, secret):
    r = procs.run_hub(_common(secret))
    assert r.returncode != 0, (r.returncode, r.stderr)
    assert _clear_message(r.stderr), "no message on stderr: %r" % r.stderr
    assert re.search(r"listen|socket|fd 0|stdin", r.stderr, re.I), r.stderr


def test_refuses_unix_path_of_a_live_hub(procs, secret, workdir):
    first = procs.hub(name="first")
    r = procs.run_hub(["--listen", first.listen, "--socket-mode", "0666"] + _common(secret))
    assert r.returncode != 0, "second ssehub on a live socket exited %r" % r.returncode
    assert _clear_message(r.stderr), r.stderr
    assert str(first.socket_path) in r.stderr or re.search(r"in use|already|listening", r.stderr, re.I), r.stderr
    # the first one is untouched
    assert first.process.alive()
    assert first.socket_path.exists(), "the refused process removed the live socket"
    assert fcgi.health(first.listen)
    _stop_clean(first)


def test_stale_socket_file_is_replaced(procs, secret, tokens, workdir):
    path = workdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    assert path.exists() and not h.can_connect("unix:%s" % path)
    hub = procs.hub(name="stale", listen="unix:%s" % path)
    assert fcgi.health(hub.listen)
    front = procs.front("nginx", hub=hub)
    _smoke(front, tokens)
    _stop_clean(hub)
    assert not path.exists()


@pytest.mark.parametrize("mode", ["0666", "0600"])
def test_socket_mode(procs, secret, workdir, mode):
    path = workdir / "mode.sock"
    hub = procs.hub(name="mode", listen="unix:%s" % path, defaults=False,
                    extra_args=["--listen", "unix:%s" % path, "--socket-mode", mode] + _common(secret))
    assert stat.S_IMODE(os.stat(path).st_mode) == int(mode, 8), oct(os.stat(path).st_mode)
    _stop_clean(hub)


def test_unix_path_in_missing_directory(procs, secret, workdir):
    bad = workdir / "no-such-dir" / "x.sock"
    r = procs.run_hub(["--listen", "unix:%s" % bad] + _common(secret))
    assert r.returncode != 0
    assert str(bad) in r.stderr or "no-such-dir" in r.stderr, r.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_tcp_listen_behind_nginx(procs, secret, tokens, host):
    require_program("nginx")
    if host == "::1" and not h.ipv6_loopback_available():
        pytest.skip("no IPv6 loopback")
    port = h.free_port(host)
    listen = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    hub = procs.hub(name="tcp", listen=listen)
    front = procs.front("nginx", hub=hub)
    _smoke(front, tokens)
    _stop_clean(hub)


def test_unknown_option(procs):
    r = procs.run_hub(["--no-such-option"])
    assert r.returncode != 0
    assert "no-such-option" in r.stderr, "message should name the option: %r" % r.stderr


def test_help_and_version(procs):
    r = procs.run_hub(["--help"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "--listen" in r.stdout, r.stdout
    r = procs.run_hub(["--version"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert re.search(r"\d+\.\d+", r.stdout), r.stdout


# ---- spawn-fcgi


def test_spawn_fcgi_no_fork(procs, secret, tokens, workdir, ssehub_bin):
    spawn = require_program("spawn-fcgi")
    sock = workdir / "spawn.sock"
    p = procs.other([spawn, "-n", "-s", sock, "-M", "0666", "--", ssehub_bin] + _common(secret), "spawn-fcgi")
    h.wait_until(lambda: p.alive() and h.can_connect("unix:%s" % sock) or not p.alive(), 5,
                 message="spawn-fcgi socket")
    assert p.alive(), p.log()
    front = procs.front("nginx", upstream="unix:%s" % sock)
    front.watch.append(p)
    _smoke(front, tokens)
    rc = p.stop(signal.SIGTERM, timeout=3)
    assert rc == 0, "ssehub under spawn-fcgi -n: exit %r after SIGTERM\n%s" % (rc, p.log())


def test_spawn_fcgi_fork(procs, secret, tokens, workdir, ssehub_bin):
    spawn = require_program("spawn-fcgi")
    sock = workdir / "spawnf.sock"
    pid_file = workdir / "spawnf.pid"
    p = procs.other([spawn, "-s", sock, "-M", "0666", "-P", pid_file, "--", ssehub_bin] + _common(secret),
                    "spawn-fcgi-fork")
    assert p.wait(5) == 0, p.log()
    pid = int(pid_file.read_text().strip())
    try:
        h.wait_until(lambda: h.can_connect("unix:%s" % sock), 5, message="spawned socket")
        front = procs.front("nginx", upstream="unix:%s" % sock)
        _smoke(front, tokens)
        os.kill(pid, signal.SIGTERM)
        h.wait_until(lambda: not h.process_exists(pid), 3, message="ssehub (pid %d) to exit" % pid)
    finally:
        if h.process_exists(pid):
            os.kill(pid, signal.SIGKILL)


# ---- config file


def test_config_file(procs, secret, tokens, workdir):
    sock = workdir / "conf.sock"
    conf = workdir / "ssehub.conf"
    conf.write_text("""# ssehub integration test configuration
listen = unix:%s
socket-mode = 0666

# keys are the long option names
jwt-secret-file = %s
log-level = debug
retry = 4321
shutdown-spread = 0
""" % (sock, secret.path))
    hub = procs.hub(name="conf", listen="unix:%s" % sock, defaults=False, extra_args=["-c", conf])
    front = procs.front("nginx", hub=hub)
    st = h.Stack(front, tokens)
    s = st.open_stream(user_id=1, wait_connected=False)
    assert s.first_retry() == 4321, "retry = 4321 from the config file not applied"
    st.close_streams()
    _smoke(front, tokens)
    _stop_clean(hub)
