"""The core socket (<datadir>/run/core.sock) against real processes: tandemd with the mailbox
role, and tdm_ipc_client (tests/integration/ipc_client.c) standing in for a worker through
lib/core_link. What a user would check: every commit the core acknowledged is in the
database, exactly once, even when the core is killed mid-stream; one bad worker never
disturbs another.
"""
import collections
import os
import signal
import socket
import stat
import struct
import subprocess
import time

import pytest

from test_tandemd import WAIT, Server, alive, children, wait_for


@pytest.fixture
def server(tandem_bin, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1")
    yield s
    s.kill_all()


@pytest.fixture
def client(tandem_bin):
    exe = tandem_bin("tdm_ipc_client")

    def run(*args, timeout=120):
        return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                              timeout=timeout)
    run.exe = exe
    return run


def start_with_db(server, tandemctl, name="mail1"):
    dbs = server.datadir / "db"
    dbs.mkdir(parents=True, exist_ok=True)
    r = tandemctl("db", "create", dbs / name)
    assert r.returncode == 0, r.stderr
    p = server.start()
    # Only the core matters here: which workers run is test_tandemd.py's business.
    kids = wait_for(lambda: (lambda c: c if "core" in c else None)(children(p.pid)), "a core")
    sock = server.datadir / "run" / "core.sock"
    wait_for(sock.exists, "core.sock")
    return p, kids, sock


def listed(client, server, name="mail1", mailbox="alice"):
    r = client("list", server.datadir / "db" / name, mailbox)
    assert r.returncode == 0, r.stderr
    return collections.Counter(int(line.split()[1]) for line in r.stdout.splitlines())


def stop(server, p):
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=WAIT) == 0, server.output()
    assert "ERROR: LeakSanitizer" not in server.output()
    assert "runtime error" not in server.output()


def test_socket_is_private_and_commits_are_stored(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    run = server.datadir / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    r = client("commit", sock, "mail1", "alice", 50, "--window", 8)
    assert r.returncode == 0, r.stderr
    acks = [line.split() for line in r.stdout.splitlines() if line.startswith("ack ")]
    assert len(acks) == 50, r.stdout
    lsns = sorted(int(a[2]) for a in acks)
    assert len(set(lsns)) == 50  # one log record each
    assert r.stdout.splitlines()[-1] == "done acked 50 lost 0"

    r = client("status", sock)
    assert r.returncode == 0, r.stderr
    counters = dict(line.split()[1:] for line in r.stdout.splitlines()
                    if line.startswith("counter "))
    assert int(counters["tandem_core_ipc_commits_total"]) == 51  # the mailbox, 50 appends
    assert int(counters["tandem_core_databases_mounted"]) == 1
    dbs = [line.split() for line in r.stdout.splitlines() if line.startswith("db ")]
    assert len(dbs) == 1
    _, name, kind, state, applied, commits = dbs[0]
    assert (name, kind, state) == ("mail1", "mail", "mounted")
    assert int(applied) == max(lsns)
    assert int(commits) == 51

    # Read while mounted (store_reader, as a worker would), and after a clean stop.
    assert listed(client, server) == collections.Counter(range(1, 51))
    stop(server, p)
    assert listed(client, server) == collections.Counter(range(1, 51))
    r = tandemctl("db", "verify", server.datadir / "db" / "mail1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_refusals_come_back_as_status(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    r = client("errors", sock, "mail1")
    assert r.returncode == 0, r.stderr
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {"unknown_database": "-10005",  # TDM_ENOTFOUND
                   "bad_payload": "-10009",       # TDM_EINVAL
                   "unknown_type": "-10009"}
    # Nothing reached the log.
    r = client("status", sock)
    db = next(line.split() for line in r.stdout.splitlines() if line.startswith("db "))
    assert db[5] == "0"
    stop(server, p)


def frame(msg_type, request_id, payload=b"", version=1):
    body = struct.pack("<IHHII", 20 + len(payload), version, msg_type, request_id, 0) + payload
    crc = crc32c(body)
    return body + struct.pack("<I", crc)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_malformed_frame_ends_only_that_connection(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    good = subprocess.Popen([str(client.exe), "commit", str(sock), "mail1", "alice", "300",
                             "--window", "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert good.stdout.readline().startswith("ack ")
        bad = socket.socket(socket.AF_UNIX)
        bad.connect(str(sock))
        hello = (struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, os.getpid())
                 + struct.pack("<BH", 1, 1) + struct.pack("<BH", 1, 1))
        bad.sendall(frame(1, 1, hello))
        reply = bad.recv(4096)
        assert len(reply) >= 20 and struct.unpack("<H", reply[6:8])[0] == 2  # HELLO_REPLY
        bad.sendall(b"\x30\x00\x00\x00" + b"\x00" * 44)  # a frame with a wrong checksum
        bad.settimeout(WAIT)
        assert bad.recv(4096) == b""  # closed by the core
        bad.close()
        ev = server.wait_event(lambda e: e["id"] == 2003 and "core socket" in e["message"],
                               "process.ipc_error from the core")
        assert "checksum" in ev["message"]
        out, _ = good.communicate(timeout=120)
    finally:
        if good.poll() is None:
            good.kill()
    assert good.returncode == 0
    assert out.splitlines()[-1] == "done acked 300 lost 0"
    assert children(p.pid)["core"] == kids["core"]  # the core itself was never disturbed
    stop(server, p)


def test_every_acknowledged_commit_survives_kill_9_of_the_core(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    # --seconds only bounds the client's life: the test ends it once the restarted core has
    # answered, which on a loaded machine (sanitizers, parallel tests) can take a while.
    c = subprocess.Popen([str(client.exe), "commit", str(sock), "mail1", "alice", "100000",
                          "--window", "8", "--seconds", "120"], stdout=subprocess.PIPE,
                         text=True)
    lines = []
    try:
        while sum(1 for line in lines if line.startswith("ack ")) < 200:
            line = c.stdout.readline()
            assert line, "the client ended early"
            lines.append(line)
        os.kill(kids["core"], signal.SIGKILL)
        wait_for(lambda: children(p.pid).get("core", kids["core"]) != kids["core"],
                 "a new core")
        before = len(lines)
        # Keep reading until the client has been acknowledged again by the new core.
        while True:
            line = c.stdout.readline()
            assert line, "the client ended before the restarted core answered"
            lines.append(line)
            if line.startswith("ack ") and len(lines) > before + 50:
                break
        c.send_signal(signal.SIGKILL)
        c.wait(timeout=WAIT)
    finally:
        if c.poll() is None:
            c.kill()
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    lost = [int(line.split()[1]) for line in lines if line.startswith("lost ")]
    assert lost, "the kill hit no commit in flight"
    assert acked[-1] > max(lost)  # the link reconnected and commits went on
    stop(server, p)
    have = listed(client, server)
    for i in acked:
        assert have[i] == 1, f"acknowledged message {i} is there {have[i]} times"
    for i, n in have.items():
        assert n == 1, f"message {i} is there {n} times"
    r = tandemctl("db", "verify", server.datadir / "db" / "mail1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_subscribers_get_changed(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    r = client("watch", sock, "mail1", "bob", 5)
    assert r.returncode == 0, r.stderr + r.stdout
    changed = [line.split() for line in r.stdout.splitlines() if line.startswith("changed ")]
    assert [c[1] for c in changed] == ["INBOX"] * 6
    # One per append: the folder's message count and UIDNEXT as they grow.
    assert [(int(c[2]), int(c[3])) for c in changed[:5]] == [(i, i + 1) for i in range(1, 6)]
    # Then the flag change: no new message, a higher HIGHESTMODSEQ.
    assert (int(changed[5][2]), int(changed[5][3])) == (5, 6)
    assert int(changed[5][4]) > int(changed[4][4])
    stop(server, p)


def test_directory_role_creates_and_mounts_its_database_once(server, tandemctl, client):
    server.conf.write_text(server.conf.read_text().replace("roles = mailbox",
                                                           "roles = directory"))
    p = server.start()
    server.wait_event(lambda e: e["id"] == 3000 and e["subject"] == "directory",
                      "directory.created")
    server.wait_event(lambda e: e["id"] == 1000 and e["subject"] == "directory",
                      "store.mounted directory")
    sock = server.datadir / "run" / "core.sock"
    wait_for(sock.exists, "core.sock")
    r = client("status", sock)
    assert r.returncode == 0, r.stderr
    dbs = [line.split() for line in r.stdout.splitlines() if line.startswith("db ")]
    assert [d[1:4] for d in dbs] == [["directory", "directory", "mounted"]]
    assert int(dbs[0][4]) >= 1  # the built-in groups were committed
    stop(server, p)
    j = tandemctl("db", "inspect", server.datadir / "db" / "directory", "--json")
    assert j.returncode == 0, j.stderr
    # A second start mounts it again and creates nothing. (Creating it also mounted it once,
    # to commit the built-in groups: count mounts from here.)
    def mounts():
        return sum(1 for e in server.event_lines()
                   if e["id"] == 1000 and e["subject"] == "directory")
    before = mounts()
    p = server.start()
    wait_for(lambda: mounts() == before + 1, "the second mount")
    wait_for(sock.exists, "core.sock")
    assert sum(1 for e in server.event_lines() if e["id"] == 3000) == 1
    stop(server, p)


def test_a_worker_that_stops_reading_is_dropped(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    hello = (struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, os.getpid())
             + struct.pack("<BH", 1, 1) + struct.pack("<BH", 1, 1))
    s.sendall(frame(1, 1, hello))
    # Ask for far more than 8 MiB of STATUS_REPLY and never read any of it.
    burst = b"".join(frame(64, i) for i in range(2, 40002))
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + WAIT
    while sent < len(burst) and time.monotonic() < deadline:
        try:
            sent += s.send(burst[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break

    def dropped():
        r = client("status", sock)
        counters = dict(line.split()[1:] for line in r.stdout.splitlines()
                        if line.startswith("counter "))
        return int(counters.get("tandem_core_ipc_slow_workers_dropped_total", 0)) == 1
    wait_for(dropped, "the slow worker to be dropped")
    s.close()
    assert children(p.pid)["core"] == kids["core"]
    stop(server, p)


def read_frames(s, n):
    """n frames from s: [(type, request_id, payload)]."""
    buf = b""
    out = []
    s.settimeout(WAIT)
    while len(out) < n:
        while len(buf) >= 4 and len(buf) >= struct.unpack("<I", buf[:4])[0]:
            length = struct.unpack("<I", buf[:4])[0]
            _, msg_type, rid, _ = struct.unpack("<HHII", buf[4:16])
            out.append((msg_type, rid, buf[16:length - 4]))
            buf = buf[length:]
        if len(out) >= n:
            break
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(out)} of {n} frames"
        buf += chunk
    return out


def test_pipelined_commits_beyond_the_in_flight_bound_are_all_answered(server, tandemctl):
    p, kids, sock = start_with_db(server, tandemctl)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    hello = (struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, os.getpid())
             + struct.pack("<BH", 1, 1) + struct.pack("<BH", 1, 1))
    s.sendall(frame(1, 1, hello))
    assert read_frames(s, 1)[0][0] == 2
    # 600 NOOP records in one write: more than the 256 the core takes in flight per
    # connection, so it must stop reading and pick the rest up as replies go out.
    n = 600
    db = b"mail1"
    commits = b"".join(
        frame(16, i, struct.pack("<BI", 5, len(db)) + db + struct.pack("<BH", 1, 2)
              + struct.pack("<BI", 6, 4) + struct.pack("<I", i))
        for i in range(2, n + 2))
    s.sendall(commits)
    replies = read_frames(s, n)
    assert {r[0] for r in replies} == {17}
    assert sorted(r[1] for r in replies) == list(range(2, n + 2))
    # status: I32 field (tag 4) first; then lsn: U64 (tag 3).
    assert {struct.unpack("<Bi", r[2][:5]) for r in replies} == {(4, 0)}
    lsns = [struct.unpack("<BQ", r[2][5:14])[1] for r in replies]
    assert len(set(lsns)) == n
    s.close()
    stop(server, p)


def test_out_of_place_messages_end_the_connection(server, tandemctl):
    p, kids, sock = start_with_db(server, tandemctl)

    def hello(pid):
        return frame(1, 1, struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, pid)
                     + struct.pack("<BH", 1, 1) + struct.pack("<BH", 1, 1))
    cases = [
        ("sent before HELLO", [frame(64, 2)]),
        ("its pid is not the sender's", [hello(1)]),
        ("not a message a worker sends", [hello(os.getpid()), hello(os.getpid())]),
        ("not a message a worker sends", [hello(os.getpid()), frame(49, 0, b"\x03" + b"\0" * 8)]),
    ]
    for why, frames in cases:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        s.sendall(b"".join(frames))
        s.settimeout(WAIT)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        server.wait_event(lambda e, w=why: e["id"] == 2003 and w in e["message"], why)
    # A version range this build does not speak is refused with a reason, not as a bug.
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(frame(1, 1, struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, os.getpid())
                    + struct.pack("<BH", 1, 9) + struct.pack("<BH", 1, 12)))
    (msg_type, rid, payload), = read_frames(s, 1)
    assert (msg_type, rid) == (2, 1)
    assert struct.unpack("<BH", payload[:3]) == (1, 0)
    assert b"newer" in payload
    s.settimeout(WAIT)
    assert s.recv(4096) == b""
    s.close()
    assert children(p.pid)["core"] == kids["core"]
    stop(server, p)


def test_db_status_lists_refused_databases_in_name_order(server, tandemctl, client):
    dbs = server.datadir / "db"
    dbs.mkdir(parents=True)
    (dbs / "broken").mkdir()  # not a database: refused at mount
    assert tandemctl("db", "create", dbs / "zeta").returncode == 0
    p, kids, sock = start_with_db(server, tandemctl, "alpha")
    r = client("status", sock)
    assert r.returncode == 0, r.stderr
    rows = [line.split(" ") for line in r.stdout.splitlines() if line.startswith("db ")]
    assert [(row[1], row[2], row[3]) for row in rows] == [
        ("alpha", "mail", "mounted"), ("broken", "", "failed"), ("zeta", "mail", "mounted")]
    counters = dict(line.split()[1:] for line in r.stdout.splitlines()
                    if line.startswith("counter "))
    assert counters["tandem_core_databases_mounted"] == "2"
    assert counters["tandem_core_databases_refused"] == "1"
    # A database that did not mount takes no commits: TDM_ENOTFOUND, before any validation.
    r = client("errors", sock, "broken")
    assert "bad_payload -10005" in r.stdout.splitlines()
    stop(server, p)


def test_one_delivery_to_many_folders_tells_each_folder(server, tandemctl, client):
    p, kids, sock = start_with_db(server, tandemctl)
    r = client("fanout", sock, "mail1", "carol", 9)
    assert r.returncode == 0, r.stderr + r.stdout
    changed = collections.Counter(line.split()[1] for line in r.stdout.splitlines())
    assert changed == collections.Counter(["INBOX"] + [f"f{i}" for i in range(1, 10)])
    stop(server, p)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_socket_belongs_to_the_service_user(tandem_bin, client):
    """Started as root with user = nobody: <datadir>/run is nobody's, and the core (running as
    nobody) binds its socket there."""
    import pathlib
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tandemd-user-"))
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
        sock = s.datadir / "run" / "core.sock"
        wait_for(sock.exists, "core.sock")
        run = s.datadir / "run"
        assert (run.stat().st_uid, stat.S_IMODE(run.stat().st_mode)) == (nobody.pw_uid, 0o700)
        assert sock.stat().st_uid == nobody.pw_uid
        r = client("status", sock)
        assert r.returncode == 0, r.stderr
        counters = dict(line.split()[1:] for line in r.stdout.splitlines()
                        if line.startswith("counter "))
        assert int(counters["tandem_core_ipc_connections"]) >= 1  # this client, and workers
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, s.output()
    finally:
        s.kill_all()
        shutil.rmtree(tmp)


def test_many_subscriptions_each_get_exactly_their_changed(server, tandemctl, client):
    """10,000 subscriptions on one connection: a commit reaches the subscribers of its folder
    once (a connection holding the folder and its mailbox's every-folder subscription hears
    it once), nothing reaches anyone for a folder nobody holds, and UNSUBSCRIBE ends it."""
    p, kids, sock = start_with_db(server, tandemctl)
    r = client("subs", sock, "mail1", 10000)
    assert r.returncode == 0, r.stderr + r.stdout
    changed = [line.split()[1:] for line in r.stdout.splitlines() if line.startswith("changed ")]
    # First, once each subscription is in place, the state of each folder that exists (the
    # four mailboxes created; the other 9,996 INBOXes are not there yet; every-folder
    # subscriptions get none), in subscription order; then one per commit.
    assert changed == [["m0", "INBOX", "0"], ["m1", "INBOX", "0"], ["m2", "INBOX", "0"],
                       ["m9999", "INBOX", "0"],
                       ["m0", "INBOX", "1"], ["m1", "INBOX", "1"], ["m9999", "INBOX", "1"],
                       ["m1", "INBOX", "2"]]
    # The connection closed with its 10,000 subscriptions: a commit now tells nobody.
    r = client("status", sock)
    sent = [line.split()[2] for line in r.stdout.splitlines()
            if line.startswith("counter tandem_core_ipc_changed_sent_total ")]
    assert sent == ["8"], r.stdout
    r = client("commit", sock, "mail1", "m0", 1)
    assert r.returncode == 0, r.stderr
    r = client("status", sock)
    assert "counter tandem_core_ipc_changed_sent_total 8" in r.stdout.splitlines(), r.stdout
    stop(server, p)


_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _CRC_TABLE.append(_c)


def fast_frame(msg_type, request_id, payload=b""):
    body = struct.pack("<IHHII", 24 + len(payload) - 4, 1, msg_type, request_id, 0) + payload
    crc = 0xFFFFFFFF
    for b in body:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return body + struct.pack("<I", crc ^ 0xFFFFFFFF)


def subscribe_payload(mailbox, folder):
    out = b""
    for s in (b"mail1", mailbox, folder):
        out += struct.pack("<BI", 5, len(s)) + s
    return out


def test_subscription_limit_per_connection(server, tandemctl):
    """65,536 subscriptions on one connection are fine (a repeated one is not counted
    twice); the 65,537th is a bug that ends that connection, and only it."""
    p, kids, sock = start_with_db(server, tandemctl)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    hello = (struct.pack("<BH", 1, 5) + struct.pack("<BI", 2, os.getpid())
             + struct.pack("<BH", 1, 1) + struct.pack("<BH", 1, 1))
    s.sendall(fast_frame(1, 1, hello))
    assert read_frames(s, 1)[0][0] == 2
    subs = b"".join(fast_frame(32, 0, subscribe_payload(b"u%d" % (i // 16), b"f%d" % (i % 16)))
                    for i in range(65536))
    s.sendall(subs + fast_frame(32, 0, subscribe_payload(b"u0", b"f0")) + fast_frame(64, 2))
    assert read_frames(s, 1)[0][:2] == (65, 2)  # STATUS_REPLY: still connected
    s.sendall(fast_frame(32, 0, subscribe_payload(b"one", b"more")))
    s.settimeout(WAIT)
    assert s.recv(65536) == b""  # closed by the core
    s.close()
    server.wait_event(lambda e: e["id"] == 2003 and "TDM_IPC_MAX_SUBSCRIPTIONS" in e["message"],
                      "the core's event for the 65,537th subscription")
    assert children(p.pid)["core"] == kids["core"]
    stop(server, p)
