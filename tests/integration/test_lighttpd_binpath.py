"""lighttpd spawning ssehub itself (bin-path: the socket is fd 0)."""

import ssehub_harness as h
from conftest import require_program


def test_lighttpd_bin_path(procs, secret, tokens):
    require_program("lighttpd")
    front = procs.lighttpd_binpath(["--jwt-secret-file", secret.path, "--log-level", "debug",
                                    "--shutdown-spread", "0"])
    st = h.Stack(front, tokens)
    a = st.open_stream(user_id=1)
    b = st.open_stream(user_id=2)
    assert st.stats() == {"total_clients": 2, "user_clients": {"1": 1, "2": 1}}
    d = st.publish("send-to-user", user_id=1, event="e", data={"n": 1})
    assert d["recipients"] == 1
    ev = a.next_event(3)
    assert ev is not None and (ev.type, ev.json(), ev.id) == ("e", {"n": 1}, d["id"]), ev
    st.check_marker([a, b])
    st.close_streams()

    h.wait_until(lambda: front.hub_pid_file.exists() and front.hub_pid_file.read_text().strip(), 3,
                 message="pid file")
    pid = int(front.hub_pid_file.read_text().strip())
    assert h.process_exists(pid)
    front.stop()
    # lighttpd stops its backend; ssehub must go away with it
    h.wait_until(lambda: not h.process_exists(pid), 5, message="ssehub (pid %d) to exit with lighttpd" % pid)
