"""Fixtures for the ssehub integration tests (real nginx, lighttpd, Apache httpd,
spawn-fcgi).

Run from the repository root:
    /usr/bin/python3 -m pytest -q tests/integration
SSEHUB_BIN overrides the binary (default src/ssehub, relative to the repo
root); SSEHUB_KEEP_TMP=1 keeps every per-test directory (failed tests always
keep theirs; the path is printed in the report with the log tails).
"""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import ssehub_harness as h

FRONTS = ["nginx", "lighttpd", "apache"]
TEST_TIMEOUT = int(os.environ.get("SSEHUB_TEST_TIMEOUT", "60"))


def pytest_configure(config):
    config.addinivalue_line("markers", "ssehub_args(*args): extra ssehub options for the stack fixture")


# ---- per-test hard timeout and log tails in failure reports


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded %ss" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        seen = set()
        for value in list(item.funcargs.values()):
            getter = getattr(value, "log_files", None)
            if not callable(getter):
                continue
            for path in getter():
                if path in seen or not Path(path).exists():
                    continue
                seen.add(path)
                rep.sections.append(("log %s" % path, h.tail(path, 4000)))


# ---- programs


@pytest.fixture(scope="session")
def ssehub_bin():
    path = h.ssehub_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip("ssehub binary not found at %s (build it, or set SSEHUB_BIN)" % path)
    return path


def require_program(name):
    path = h.find_program(name)
    if not path:
        pytest.skip("%s is not installed" % name)
    return path


# ---- per-test directory, secret, tokens


def _make_workdir():
    # Short, because unix socket paths are limited to 107 bytes.
    return Path(tempfile.mkdtemp(prefix="ssehub-it-", dir="/tmp"))


def _remove_workdir(path, failed):
    if failed or os.environ.get("SSEHUB_KEEP_TMP"):
        return
    shutil.rmtree(path, ignore_errors=True)


def _failed(request):
    node = request.node
    return any(getattr(getattr(node, "rep_" + w, None), "failed", False) for w in ("setup", "call"))


@pytest.fixture
def workdir(request):
    path = _make_workdir()
    yield path
    _remove_workdir(path, _failed(request))


class Secret:
    def __init__(self, workdir):
        self.path = Path(workdir) / "jwt.secret"
        self.key = h.write_secret(self.path)


@pytest.fixture
def secret(workdir):
    return Secret(workdir)


@pytest.fixture
def tokens(secret):
    return h.Tokens(secret.key)


@pytest.fixture
def procs(workdir, ssehub_bin, secret):
    p = h.Procs(workdir, ssehub_bin, secret.path)
    yield p
    p.cleanup()


# ---- the stack: ssehub behind a real front server


@pytest.fixture(params=FRONTS)
def front_kind(request):
    require_program(h.FRONT_PROGRAMS[request.param])
    return request.param


class StackFixture(h.Stack):
    def __init__(self, procs, front_kind, tokens, hub_args):
        hub = procs.hub(extra_args=hub_args)
        front = procs.front(front_kind, hub=hub)
        super().__init__(front, tokens, hub=hub)
        self.procs = procs

    def log_files(self):
        return self.procs.log_files()

    def shutdown(self, check=True):
        """Closes clients, stops the hub with SIGTERM; asserts a clean exit 0
        (unless check is False: the test failed already, and may have left
        the hub half-way through its own shutdown)."""
        self.close_streams()
        if self.hub.process.returncode is not None:
            return
        rc = self.hub.stop(timeout=5)
        assert rc == 0 or not check, "ssehub exit status after SIGTERM: %r (None = had to be killed)\n%s" % (
            rc, h.tail(self.hub.log_path))


def _marker_args(request):
    marker = request.node.get_closest_marker("ssehub_args")
    return [str(a) for a in marker.args] if marker else []


@pytest.fixture
def stack(request, front_kind, procs, tokens):
    """ssehub (defaults + @pytest.mark.ssehub_args) behind nginx, lighttpd or Apache.
    At teardown the hub must stop with exit 0 on SIGTERM."""
    s = StackFixture(procs, front_kind, tokens, _marker_args(request))
    yield s
    s.shutdown(check=not _failed(request))


@pytest.fixture(scope="module", params=FRONTS)
def module_stack(request, ssehub_bin):
    """One stack shared by a module's tests (stateless cases such as errors).
    Its hub gets the module-level SSEHUB_MODULE_ARGS list."""
    require_program(h.FRONT_PROGRAMS[request.param])
    workdir = _make_workdir()
    secret = Secret(workdir)
    procs = h.Procs(workdir, ssehub_bin, secret.path)
    failed = True
    try:
        s = StackFixture(procs, request.param, h.Tokens(secret.key),
                         list(getattr(request.module, "SSEHUB_MODULE_ARGS", [])))
        yield s
        s.shutdown()
        failed = False
    finally:
        procs.cleanup()
        _remove_workdir(workdir, failed or request.session.testsfailed)
