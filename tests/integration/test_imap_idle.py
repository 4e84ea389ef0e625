"""IDLE (RFC 2177) against a real tandemd: deliveries pushed to an idling session as EXISTS
while it waits, another session's STORE and EXPUNGE pushed as FETCH and EXPUNGE, DONE and
anything else ending it, many sessions on one folder all told, and a session that keeps
idling through a kill -9 of the core still told of later deliveries. Also what holding many
idle clients needs: logins remembered so reconnecting skips argon2id, and the hard open file
limit taken at start.

The idling client is a raw socket read with select(), so a test fails when nothing is pushed
instead of hanging, and sees exactly what the server sent unprompted."""
import os
import resource
import select
import signal
import socket
import time

import pytest

from lab import WAIT, Server, children, wait_for
from test_imap import deliver, imap, login  # noqa: F401  (imap is a fixture)

PUSH_WAIT = 10.0  # seconds for a push to arrive: generous for sanitizer builds


class Raw:
    """One IMAP connection spoken line by line."""

    def __init__(self, server):
        self.sock = socket.create_connection((server.addr, server.ports["imap"]), timeout=WAIT)
        self.buf = b""
        self.n = 0
        self.read_line()  # the greeting

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def read_line(self, timeout=WAIT):
        """The next line without CRLF, or None when none came within timeout."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def wait_line(self, pred, what, timeout=PUSH_WAIT):
        """Reads lines until one satisfies pred; returns it and the lines before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"no {what} within {timeout}s; got {seen}")
            if pred(line):
                return line, seen
            seen.append(line)

    def command(self, text):
        """Sends a tagged command; returns (tagged reply, untagged lines before it)."""
        self.n += 1
        tag = f"t{self.n}"
        self.send(f"{tag} {text}")
        return self.wait_line(lambda l: l.startswith(tag + " "), f"reply to {text}", WAIT)

    def login_select(self, user="alice", folder="INBOX"):
        assert self.command(f"LOGIN {user} {user}-password")[0].split()[1] == "OK"
        reply, untagged = self.command(f"SELECT {folder}")
        assert reply.split()[1] == "OK", reply
        return next(int(l.split()[1]) for l in untagged if l.endswith(" EXISTS"))

    def idle(self):
        self.n += 1
        self.idle_tag = f"t{self.n}"
        self.send(f"{self.idle_tag} IDLE")
        line, _ = self.wait_line(lambda l: l.startswith("+"), "IDLE continuation", WAIT)
        return line

    def done(self):
        """Ends IDLE; returns (tagged reply, untagged lines before it)."""
        self.send("DONE")
        return self.wait_line(lambda l: l.startswith(self.idle_tag + " "), "reply to DONE", WAIT)

    def quiet(self, seconds=0.3):
        """Nothing unprompted arrives for a while."""
        line = self.read_line(seconds)
        assert line is None, line

    def close(self):
        self.sock.close()


def exists_line(n):
    return lambda l: l == f"* {n} EXISTS"


def test_idle_pushes_a_delivery(imap):
    c = Raw(imap)
    assert c.command("CAPABILITY")[1][0].split()[2:].count("IDLE") == 1
    n = c.login_select()
    assert c.idle() == "+ idling"
    c.quiet()
    t0 = time.monotonic()
    deliver(imap, "alice@example.test", "pushed")
    c.wait_line(exists_line(n + 1), "EXISTS for the delivery")
    assert time.monotonic() - t0 < PUSH_WAIT
    reply, untagged = c.done()
    assert reply.split()[1] == "OK" and untagged == []
    # The session goes on as usual.
    reply, untagged = c.command("FETCH 1 (FLAGS)")
    assert reply.split()[1] == "OK" and untagged[0].startswith("* 1 FETCH")
    c.close()


def test_idle_in_the_authenticated_state_and_other_lines(imap):
    c = Raw(imap)
    assert c.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    c.idle()
    deliver(imap, "alice@example.test", "nobody selected")
    c.quiet(0.5)
    assert c.done()[0].split()[1] == "OK"
    # Anything but DONE ends IDLE with BAD; the connection goes on.
    c.idle()
    c.send("t99 NOOP")
    line, _ = c.wait_line(lambda l: l.startswith(c.idle_tag + " "), "reply to a non-DONE line")
    assert line.split()[1] == "BAD"
    assert c.command("NOOP")[0].split()[1] == "OK"
    # DONE in any case; a line too long for the server ends IDLE too, with BAD.
    c.idle()
    c.send("done")
    assert c.wait_line(lambda l: l.startswith(c.idle_tag + " "), "reply to done")[0].split()[1] \
        == "OK"
    c.idle()
    c.send("x" * 100000)
    line, untagged = c.wait_line(lambda l: l.startswith(c.idle_tag + " "),
                                 "reply to an overlong line")
    assert line.split()[1] == "BAD" and any("too long" in l for l in untagged)
    assert c.command("NOOP")[0].split()[1] == "OK"
    # Outside IDLE, DONE is no command.
    assert c.command("DONE")[0].split()[1] == "BAD"
    c.close()


def test_changes_seen_when_idle_starts(imap):
    c = Raw(imap)
    n = c.login_select()
    deliver(imap, "alice@example.test", "before IDLE")
    c.idle()
    c.wait_line(exists_line(n + 1), "EXISTS for what came before IDLE")
    c.done()
    c.close()


def store_served(imap):
    m = login(imap)
    m.select("INBOX")
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    m.logout()
    return not (typ == "NO" and b"CANNOT" in data[0])


def test_idle_pushes_flags_and_expunges_of_another_session(imap):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    if not store_served(imap):
        pytest.skip("STORE is not served yet")
    c = Raw(imap)
    n = c.login_select()
    assert n == 2
    c.idle()
    c.quiet()
    other = login(imap)
    other.select("INBOX")
    assert other.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    line, _ = c.wait_line(lambda l: l.startswith("* 2 FETCH"), "FETCH FLAGS for the STORE")
    assert "\\Flagged" in line
    assert other.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert other.expunge()[0] == "OK"
    c.wait_line(lambda l: l == "* 1 EXPUNGE", "EXPUNGE for the other session's EXPUNGE")
    other.logout()
    assert c.done()[0].split()[1] == "OK"
    reply, untagged = c.command("FETCH 1:* (UID)")
    assert reply.split()[1] == "OK" and len(untagged) == 1
    c.close()


def test_many_sessions_on_one_folder_all_told(imap):
    sessions = [Raw(imap) for _ in range(20)]
    counts = {s.login_select() for s in sessions}
    assert len(counts) == 1
    n = counts.pop()
    for s in sessions[:15]:
        s.idle()
    # A burst: each idling session hears of every message, in as few lines as it likes,
    # and ends at the last count.
    for i in range(5):
        deliver(imap, "alice@example.test", f"burst {i}")
    for s in sessions[:15]:
        s.wait_line(exists_line(n + 5), "EXISTS for the whole burst")
        reply, _ = s.done()
        assert reply.split()[1] == "OK"
    # Those not idling were told nothing unprompted, and hear of it at their next command.
    for s in sessions[15:]:
        s.quiet(0.1)
        _, untagged = s.command("NOOP")
        assert f"* {n + 5} EXISTS" in untagged
    for s in sessions:
        s.close()


def test_unselect_stops_the_pushes_and_a_new_select_starts_them(imap):
    c = Raw(imap)
    n = c.login_select()
    assert c.command("UNSELECT")[0].split()[1] == "OK"
    c.idle()
    deliver(imap, "alice@example.test", "while unselected")
    c.quiet(0.5)
    c.done()
    reply, untagged = c.command("SELECT INBOX")
    assert f"* {n + 1} EXISTS" in untagged
    c.idle()
    deliver(imap, "alice@example.test", "selected again")
    c.wait_line(exists_line(n + 2), "EXISTS after selecting again")
    c.done()
    c.close()


def test_idle_survives_a_core_kill(imap):
    c = Raw(imap)
    n = c.login_select()
    c.idle()
    core = children(imap.proc.pid)["core"]
    worker = children(imap.proc.pid)["worker-imap"]
    os.kill(core, signal.SIGKILL)
    wait_for(lambda: children(imap.proc.pid).get("core") not in (None, core), "a new core")

    def delivered():
        try:
            deliver(imap, "alice@example.test", "after the core came back")
            return True
        except (OSError, Exception):  # smtplib's errors while the core restarts
            return False
    wait_for(delivered, "a delivery to the restarted core")
    c.wait_line(exists_line(n + 1), "EXISTS after the core restarted", timeout=WAIT)
    assert children(imap.proc.pid)["worker-imap"] == worker  # the same session throughout
    assert c.done()[0].split()[1] == "OK"
    c.close()


def test_reconnecting_clients_skip_argon2id_but_never_a_changed_password(imap):
    """Many idle clients come back together after a restart: a login that succeeded lately
    is remembered, so only the first costs argon2id (about 100 ms of CPU each)."""
    c = Raw(imap)
    assert c.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    c.close()
    t0 = time.monotonic()
    for _ in range(20):
        c = Raw(imap)
        assert c.command("LOGIN alice alice-password")[0].split()[1] == "OK"
        c.close()
    assert time.monotonic() - t0 < 1.5  # 20 argon2id checks would take 2 s or more
    c = Raw(imap)
    assert c.command("LOGIN alice wrong-password")[0].split()[1] == "NO"
    # A new password: the remembered login no longer counts, the new one does.
    reply = imap.api("PUT", "/v1/objects/user/alice/password", {"password": "changed-password"})
    assert reply.status == 200, reply
    assert c.command("LOGIN alice alice-password")[0].split()[1] == "NO"
    assert c.command("LOGIN alice changed-password")[0].split()[1] == "OK"
    c.close()


def open_file_limits(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open file limit")


def test_workers_take_the_hard_open_file_limit(tandem_bin, tmp_path):
    """Each idle connection holds a file descriptor: tandemd started with the soft limit
    services usually get (1024) raises it to the hard limit, for every child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip(f"the hard open file limit here is {hard}: nothing to raise")
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("imap",))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        p = s.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        kids = s.started(p)
        assert open_file_limits(p.pid) == (hard, hard)
        assert open_file_limits(kids["worker-imap"]) == (hard, hard)
    finally:
        s.kill_all()


def test_idle_pushes_vanished_once_qresync_is_enabled(imap):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    if not store_served(imap):
        pytest.skip("STORE is not served yet")
    c = Raw(imap)
    assert c.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    reply, _ = c.command("ENABLE QRESYNC")
    if reply.split()[1] != "OK":
        pytest.skip("QRESYNC is not served yet")
    assert c.command("SELECT INBOX")[0].split()[1] == "OK"
    c.idle()
    other = login(imap)
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Deleted)")
    line, _ = c.wait_line(lambda l: l.startswith("* 1 FETCH"), "FETCH with MODSEQ")
    assert "MODSEQ" in line
    assert other.expunge()[0] == "OK"
    line, seen = c.wait_line(lambda l: l.startswith("* VANISHED"), "VANISHED for the expunge")
    assert line == "* VANISHED 1" and not any(l.endswith(" EXPUNGE") for l in seen)
    other.logout()
    assert c.done()[0].split()[1] == "OK"
    c.close()


def test_clean_stop_with_idling_sessions(imap):
    """SIGTERM while sessions idle: the worker lets go of every watch and subscription, and
    everything exits 0 with no leak report; the clients see their connections end."""
    sessions = [Raw(imap) for _ in range(3)]
    for s in sessions:
        s.login_select()
        s.idle()
    imap.stop(imap.proc)  # asserts the exit status and the absence of a leak report
    out = imap.output()
    assert "panic" not in out and "AddressSanitizer" not in out, out
    for s in sessions:
        with pytest.raises(ConnectionError):  # a BYE first is best effort (lib/conn.h)
            s.wait_line(lambda l: False, "the end of the connection", WAIT)
        s.close()


def changed_sent(server):
    body = server.api("GET", "/metrics").body
    line = next(l for l in body.splitlines() if l.startswith("tandem_core_ipc_changed_sent_total"))
    return int(line.split()[-1])


def test_sessions_on_one_folder_share_one_subscription(imap):
    """The worker holds one subscription per folder however many sessions selected it, taken
    with the first and dropped with the last: the core sends one CHANGED per commit, then
    none."""
    a, b = Raw(imap), Raw(imap)
    a.login_select()
    b.login_select()
    before = changed_sent(imap)
    deliver(imap, "alice@example.test", "both selected")
    wait_for(lambda: changed_sent(imap) == before + 1, "one CHANGED for two sessions")
    assert a.command("UNSELECT")[0].split()[1] == "OK"
    deliver(imap, "alice@example.test", "one selected")
    wait_for(lambda: changed_sent(imap) == before + 2, "one CHANGED for the one left")
    assert b.command("UNSELECT")[0].split()[1] == "OK"
    time.sleep(0.2)  # UNSUBSCRIBE travels to the core on the worker's link
    deliver(imap, "alice@example.test", "none selected")
    time.sleep(0.3)
    assert changed_sent(imap) == before + 2
    a.close()
    b.close()
