"""tandemd's process structure against real processes: supervisor, core, workers.

Each test runs its own server through lab.Server: a config with loopback addresses of its own
(127.77.x.y) and free ports, `tandemd --foreground` in a new session, and that whole session
killed in teardown, so no process outlives the test. Waits poll with deadlines.
"""
import ctypes
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

# Re-exported: other test files import these from here.
from lab import WAIT, Server, alive, children, free_port, wait_for  # noqa: F401

@pytest.fixture
def server(tandem_bin, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1")
    yield s
    s.kill_all()


def test_check_config_good(server):
    p = subprocess.run([str(server.exe), "--check-config", "-c", str(server.conf)],
                       capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 0, p.stderr
    assert "server = mbx1" in p.stdout
    assert f"port = {server.ports['imap']}" in p.stdout


def test_check_config_bad(server):
    text = server.conf.read_text().replace("[listen lmtp]\n", "[listen lmtp]\nprot = 24\n")
    server.conf.write_text(text)
    line = text.splitlines().index("prot = 24") + 1
    p = subprocess.run([str(server.exe), "--check-config", "-c", str(server.conf)],
                       capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 2
    assert f'{server.conf}:{line}: key "prot"' in p.stderr
    assert p.stdout == ""


def test_usage_errors(server):
    for args in ([], ["-c"], ["-c", str(server.conf), "extra"], ["--bogus"]):
        p = subprocess.run([str(server.exe), *args], capture_output=True, text=True,
                           timeout=WAIT)
        assert p.returncode == 2, args
    p = subprocess.run([str(server.exe), "--help"], capture_output=True, text=True,
                       timeout=WAIT)
    assert p.returncode == 0 and "Exit status" in p.stdout


def test_process_tree_and_listeners(server):
    p = server.start()
    kids = server.started(p)
    assert set(kids) == server.roles_expected()
    for proto, port in server.ports.items():
        with socket.create_connection((server.addr, port), timeout=WAIT) as c:
            c.settimeout(WAIT)
            # Both greet (test_lmtp.py and test_imap.py cover the protocols).
            assert c.recv(4) == {"lmtp": b"220 ", "imap": b"* OK"}[proto], proto
    # The children stay: serving a connection is not a reason to exit.
    assert children(p.pid) == kids


def test_killed_worker_and_core_are_restarted(server):
    p = server.start()
    kids = server.started(p)
    for role in ("worker-imap", "core"):
        old = kids[role]
        os.kill(old, signal.SIGKILL)
        kids = wait_for(lambda: (lambda c: c if c.get(role, old) != old and len(c) == len(server.roles_expected())
                                 else None)(children(p.pid)), f"a new {role}")
        ev = server.wait_event(lambda e: e["id"] == 2002 and e["subject"] == role,
                               f"process.child_restart for {role}")
        assert f"pid {old}" in ev["message"] and "signal 9" in ev["message"]
    # Connections are served by the new worker on the inherited socket.
    with socket.create_connection((server.addr, server.ports["imap"]), timeout=WAIT) as c:
        c.settimeout(WAIT)
        assert c.recv(4) == b"* OK"
    assert p.poll() is None


def test_malformed_ipc_ends_the_worker(server):
    """Writes garbage into the worker's end of its IPC socket (a copy of the descriptor taken
    with pidfd_getfd), so the supervisor receives a malformed frame from that worker."""
    libc = ctypes.CDLL(None, use_errno=True)
    p = server.start()
    kids = server.started(p)
    old = kids["worker-lmtp"]
    with open(f"/proc/{old}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    ipc_fd = int(argv[argv.index(b"--ipc-fd") + 1])
    pidfd = libc.syscall(434, old, 0)  # pidfd_open
    if pidfd < 0:
        pytest.skip("pidfd_open is not available")
    fd = libc.syscall(438, pidfd, ipc_fd, 0)  # pidfd_getfd
    os.close(pidfd)
    if fd < 0:
        pytest.skip("pidfd_getfd is not permitted here")
    try:
        os.write(fd, b"\x14\x00\x00\x00" + b"\xff" * 16)  # a 20-byte frame with a bad CRC
    finally:
        os.close(fd)
    ev = server.wait_event(lambda e: e["id"] == 2003 and e["subject"] == "worker-lmtp",
                           "process.ipc_error for worker-lmtp")
    assert f"pid {old}" in ev["message"]
    wait_for(lambda: children(p.pid).get("worker-lmtp", old) != old, "a new worker-lmtp")
    server.wait_event(lambda e: e["id"] == 2002 and f"pid {old}" in e["message"],
                      "process.child_restart for the killed worker")


def test_sighup_reloads_and_names_what_needs_a_restart(server):
    p = server.start()
    kids = server.started(p)
    server.write_conf(server="mbx1", level="debug")
    os.kill(p.pid, signal.SIGHUP)
    ev = server.wait_event(lambda e: e["id"] == 2005, "process.reloaded")
    assert "0 changed setting(s) need a restart" in ev["message"]
    # Debug lines now appear: the children applied the new level too.
    wait_for(lambda: "core[" in server.output() and "configuration reloaded" in server.output(),
             "the core's reload log line")
    assert not [e for e in server.event_lines() if e["id"] == 2007]

    server.write_conf(server="mbx2", level="debug")
    os.kill(p.pid, signal.SIGHUP)
    ev = server.wait_event(lambda e: e["id"] == 2007, "process.reload_needs_restart")
    assert "server changed" in ev["message"] and ev["subject"] == "mbx1"
    server.wait_event(lambda e: e["id"] == 2005 and "generation 2" in e["message"],
                      "the second process.reloaded")

    server.conf.write_text("server = \n")  # invalid: the old config stays
    os.kill(p.pid, signal.SIGHUP)
    ev = server.wait_event(lambda e: e["id"] == 2006, "process.reload_failed")
    assert str(server.conf) in ev["message"]
    assert p.poll() is None
    assert children(p.pid) == kids


def test_second_instance_is_refused(server):
    p = server.start()
    server.started(p)
    q = subprocess.run([str(server.exe), "-c", str(server.conf), "--foreground"],
                       capture_output=True, text=True, timeout=WAIT)
    assert q.returncode == 1
    assert "tandemd.lock" in q.stderr and f"pid {p.pid}" in q.stderr
    assert p.poll() is None


def test_sigterm_stops_everything_and_leaves_databases_clean(server, tandemctl):
    db = server.datadir / "db" / "test"
    db.parent.mkdir(parents=True)
    r = tandemctl("db", "create", db)
    assert r.returncode == 0, r.stderr
    p = server.start()
    kids = server.started(p)
    server.wait_event(lambda e: e["id"] == 1000 and e["subject"] == "test", "store.mounted")
    r = tandemctl("db", "inspect", db, "--json")
    assert json.loads(r.stdout)["clean"] is False  # mounted: the core holds it
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0, server.output()
    for role, pid in kids.items():
        assert not alive(pid), role
    server.wait_event(lambda e: e["id"] == 1001 and e["subject"] == "test", "store.dismounted")
    r = tandemctl("db", "inspect", db, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["clean"] is True
    assert "ERROR: LeakSanitizer" not in server.output()


def test_core_mounts_each_database_with_its_kinds_handler(server, tandemctl):
    dbs = server.datadir / "db"
    dbs.mkdir(parents=True)
    assert tandemctl("db", "create", dbs / "mail1").returncode == 0
    r = tandemctl("db", "create", dbs / "dir1", "--kind", "directory")
    assert r.returncode == 0, r.stderr
    p = server.start()
    server.started(p)
    for name in ("mail1", "dir1"):
        server.wait_event(lambda e, n=name: e["id"] == 1000 and e["subject"] == n,
                          f"store.mounted {name}")
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0, server.output()
    for name in ("mail1", "dir1"):
        j = json.loads(tandemctl("db", "inspect", dbs / name, "--json").stdout)
        assert j["clean"] is True, name
    assert "not mounted" not in server.output()


def test_detaches_without_foreground(server):
    p = subprocess.run([str(server.exe), "-c", str(server.conf)], capture_output=True,
                       text=True, timeout=WAIT)
    assert p.returncode == 0, p.stderr
    lock = server.datadir / "tandemd.lock"
    pid = int(lock.read_text())
    try:
        wait_for(lambda: len(children(pid)) == len(server.roles_expected()), "the detached server's children")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), "the detached server to stop")
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_restart_backs_off(server):
    """Consecutive crashes double the delay: 100, 200, 400 ms."""
    p = server.start()
    kids = server.started(p)
    for delay in (100, 200, 400):
        old = kids["worker-imap"]
        os.kill(old, signal.SIGKILL)
        ev = server.wait_event(lambda e: e["id"] == 2002 and f"pid {old}" in e["message"],
                               f"process.child_restart for pid {old}")
        assert f"restarting it in {delay} ms" in ev["message"]
        kids = wait_for(lambda: (lambda c: c if c.get("worker-imap", old) != old and len(c) == len(server.roles_expected())
                                 else None)(children(p.pid)), "a new worker-imap")


def test_child_that_ignores_shutdown_is_killed_at_the_deadline(server):
    p = server.start()
    kids = server.started(p)
    os.kill(kids["worker-lmtp"], signal.SIGSTOP)  # cannot read SHUTDOWN
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0  # the deadline is 10 s
    ev = server.wait_event(lambda e: e["id"] == 2004, "process.killed_at_shutdown")
    assert ev["subject"] == "worker-lmtp"
    assert not alive(kids["worker-lmtp"])
    assert [e["id"] for e in server.event_lines()][-1] == 2001


def test_stop_says_goodbye_to_clients(server):
    """Stopping tandemd tells every client before its connection closes: IMAP "* BYE", LMTP
    421. A client that left just before the stop leaves nothing behind: every process exits 0
    with no LeakSanitizer report (server.stop)."""
    p = server.start()
    server.started(p)
    imap = socket.create_connection((server.addr, server.ports["imap"]), timeout=WAIT)
    lmtp = socket.create_connection((server.addr, server.ports["lmtp"]), timeout=WAIT)
    imap_in, lmtp_in = imap.makefile("rb"), lmtp.makefile("rb")
    assert imap_in.readline().startswith(b"* OK")
    assert lmtp_in.readline().startswith(b"220 ")
    lmtp.sendall(b"LHLO client.test\r\n")
    while not lmtp_in.readline().startswith(b"250 "):
        pass
    for port in (server.ports["imap"], server.ports["lmtp"]):
        with socket.create_connection((server.addr, port), timeout=WAIT) as gone:
            gone.recv(100)
    server.stop(p)
    assert imap_in.readline() == b"* BYE Server shutting down\r\n"
    assert imap_in.readline() == b""
    assert lmtp_in.readline() == b"421 4.3.2 Server shutting down, closing\r\n"
    assert lmtp_in.readline() == b""
    imap.close()
    lmtp.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to test the privilege drop")
def test_root_drops_to_user(tandem_bin):
    """Started as root with user = nobody: every process runs as nobody after binding."""
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp_path is private to root; nobody needs its own reachable directory.
    tmp = tempfile.mkdtemp(prefix="tandemd-user-")
    tmp = pathlib.Path(tmp)
    os.chmod(tmp, 0o755)
    s = Server(tandem_bin("tandemd"), tmp, "mbx1")
    try:
        s.datadir.mkdir(mode=0o750)
        os.chown(s.datadir, nobody.pw_uid, nobody.pw_gid)
        s.events.touch()
        os.chown(s.events, nobody.pw_uid, nobody.pw_gid)
        s.user = "nobody"
        s.write_conf(server="mbx1", level="info")
        p = s.start()
        kids = s.started(p)
        for pid in [p.pid, *kids.values()]:
            with open(f"/proc/{pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert uids == [str(nobody.pw_uid)] * 4, (pid, uids)
        with socket.create_connection((s.addr, s.ports["imap"]), timeout=WAIT) as c:
            c.settimeout(WAIT)
            assert c.recv(4) == b"* OK"
        assert not [e for e in s.event_lines() if e["id"] == 2008]
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, s.output()
    finally:
        s.kill_all()
        shutil.rmtree(tmp)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_without_user_warns(server):
    p = server.start()
    server.started(p)
    server.wait_event(lambda e: e["id"] == 2008, "process.running_as_root")


def test_children_stop_when_the_supervisor_dies(server, tandemctl):
    """kill -9 of the supervisor closes the IPC sockets: every child shuts down cleanly."""
    db = server.datadir / "db" / "test"
    db.parent.mkdir(parents=True)
    assert tandemctl("db", "create", db).returncode == 0
    p = server.start()
    kids = server.started(p)
    server.wait_event(lambda e: e["id"] == 1000 and e["subject"] == "test", "store.mounted")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=WAIT)
    for role, pid in kids.items():
        wait_for(lambda: not alive(pid), f"{role} (pid {pid}) to exit")
    r = tandemctl("db", "inspect", db, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["clean"] is True
