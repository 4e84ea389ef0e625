"""APPEND against a real tandemd: flags, keywords and internal dates kept, APPENDUID values
that a later UID FETCH finds, a message of several megabytes streamed, refusals before the
client sends the bytes (APPENDLIMIT, TRYCREATE, OVERQUOTA), MULTIAPPEND all or nothing,
literal8 (BINARY), LITERAL+, the appending session and another one told of the new message,
and a worker killed in the middle of an APPEND losing nothing that was acknowledged."""
import imaplib
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from lab import WAIT, Server, children, wait_for

APPENDLIMIT = 48 << 20


@pytest.fixture
def imap(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("imap", "lmtp"))
    (s.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", s.datadir / "db" / "db1")
    assert r.returncode == 0, r.stderr
    p = s.start()
    s.started(p)
    s.wait_api()
    for name in ("alice", "bob"):
        reply = s.api("PUT", f"/v1/objects/user/{name}",
                      {"attrs": {"addresses": [f"{name}@example.test"], "database": "db1"}})
        assert reply.status in (200, 201), reply
        reply = s.api("PUT", f"/v1/objects/user/{name}/password", {"password": f"{name}-password"})
        assert reply.status == 200, reply
    s.proc = p
    yield s
    s.kill_all()


def login(s, user="alice"):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login(user, f"{user}-password")
    return m


def message(subject, body="hello", size=None):
    head = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\n".encode()
    text = body.encode() + b"\r\n"
    if size is not None:
        line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"
        text = (line * (size // len(line) + 1))[:size - len(head)]
    return head + text


def appenduid(data):
    """(uidvalidity, [uids]) from the text of OK [APPENDUID v set]."""
    m = re.search(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", data[0])
    assert m, data
    uids = []
    for part in m.group(2).split(b","):
        lo, _, hi = part.partition(b":")
        uids.extend(range(int(lo), int(hi or lo) + 1))
    return int(m.group(1)), uids


class Raw:
    """A plain IMAP connection for what imaplib cannot send: MULTIAPPEND, LITERAL+, literal8,
    and watching that nothing (no "+") comes before a refusal."""

    def __init__(self, s, user="alice"):
        self.sock = socket.create_connection((s.addr, s.ports["imap"]), timeout=WAIT)
        self.buf = b""
        assert self.line().startswith(b"* OK")
        self.send(f"l LOGIN {user} {user}-password\r\n".encode())
        assert self.tagged(b"l").startswith(b"l OK")

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def tagged(self, tag, untagged=None):
        """Lines until the one tagged tag; the untagged ones go to the list given."""
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line
            if untagged is not None:
                untagged.append(line)

    def close(self):
        self.sock.close()


def test_flags_keywords_date_and_appenduid(imap):
    m = login(imap)
    assert f"APPENDLIMIT={APPENDLIMIT}" in m.capabilities and "MULTIAPPEND" in m.capabilities
    # STATUS says the same limit (RFC 7889 4).
    assert m.status("INBOX", "(APPENDLIMIT)")[1] == [f"INBOX (APPENDLIMIT {APPENDLIMIT})".encode()]
    date = imaplib.Time2Internaldate(time.mktime((2024, 2, 1, 10, 0, 0, 0, 0, -1)))
    typ, data = m.append("INBOX", r"(\Seen \Flagged $Label1 Work \Recent)", date,
                         message("first"))
    assert typ == "OK"
    validity, uids = appenduid(data)
    typ, data = m.append("INBOX", None, None, message("second"))
    assert typ == "OK"
    validity2, uids2 = appenduid(data)
    assert validity2 == validity and uids2 == [uids[0] + 1]
    before = time.time()

    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    assert m.response("UIDVALIDITY")[1] == [str(validity).encode()]
    typ, data = m.uid("FETCH", str(uids[0]), "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    meta = data[0][0].decode()
    flags = set(re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split())
    assert {"\\Seen", "\\Flagged", "$Label1", "Work"} <= flags
    assert data[0][1] == message("first")
    got = time.mktime(imaplib.Internaldate2tuple(data[0][0]))
    assert got == time.mktime(imaplib.Internaldate2tuple(f'INTERNALDATE "{date[1:-1]}"'.encode()))
    # No date given: the server's clock.
    typ, data = m.uid("FETCH", str(uids2[0]), "(FLAGS INTERNALDATE)")
    assert abs(time.mktime(imaplib.Internaldate2tuple(data[0])) - before) < 120
    assert b"\\Seen" not in data[0]
    m.logout()


def test_the_selected_folder_sees_the_new_message(imap):
    a, b = login(imap), login(imap)
    assert a.select("INBOX")[1] == [b"0"]
    assert b.select("INBOX")[1] == [b"0"]
    # The appending session is told in the APPEND's own response.
    typ, data = a.append("INBOX", None, None, message("seen at once"))
    assert typ == "OK"
    assert a.response("EXISTS")[1][-1] == b"1"
    _, uids = appenduid(data)
    typ, data = a.fetch("1", "(UID)")
    assert re.search(rb"UID (\d+)", data[0]).group(1) == str(uids[0]).encode()
    # Another session with the folder selected, at its next command.
    b.noop()
    assert b.response("EXISTS")[1][-1] == b"1"
    # APPEND to another folder while selected: the selection stays as it is.
    assert a.append("Drafts", r"(\Draft)", None, message("draft"))[0] == "OK"
    assert a.noop()[0] == "OK"
    assert a.select("Drafts")[1] == [b"1"]
    a.logout()
    b.logout()


def test_large_message_is_streamed(imap):
    m = login(imap)
    big = message("big", size=6 * 1024 * 1024 + 7)
    typ, data = m.append("INBOX", None, None, big)
    assert typ == "OK"
    _, uids = appenduid(data)
    m.select("INBOX")
    typ, data = m.uid("FETCH", str(uids[0]), "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert f"RFC822.SIZE {len(big)}".encode() in data[0][0]
    assert data[0][1] == big
    m.logout()


def test_refusals_come_before_the_bytes(imap, tandem_bin):
    r = Raw(imap)
    # Over APPENDLIMIT: NO [TOOBIG] instead of "+".
    r.send(f"a1 APPEND INBOX {{{APPENDLIMIT + 1}}}\r\n".encode())
    assert r.line().startswith(b"a1 NO [TOOBIG]")
    # A folder that does not exist: TRYCREATE, before "+".
    r.send(b"a2 APPEND Nowhere {5}\r\n")
    assert r.line().startswith(b"a2 NO [TRYCREATE]")
    # An empty message.
    r.send(b"a3 APPEND INBOX {0}\r\n")
    assert r.line().startswith(b"a3 NO [CANNOT]")
    # With LITERAL+ the bytes come unasked; the refusal waits for the end of the command.
    r.send(b"a4 APPEND Nowhere {5+}\r\nhello\r\n")
    assert r.line().startswith(b"a4 NO [TRYCREATE]")
    # A system flag the server does not know (BAD, as STORE), and a bad date (the parser's).
    r.send(b"a5 APPEND INBOX (\\Whatever) {5+}\r\nhello\r\n")
    assert r.line().startswith(b"a5 BAD Unknown system flag")
    r.send(b'a6 APPEND INBOX "32-Feb-2024 10:00:00 +0000" {5}\r\n')
    assert r.line().startswith(b"a6 BAD")
    # The session goes on, and none of these left a message.
    r.send(b"a7 STATUS INBOX (MESSAGES)\r\n")
    untagged = []
    assert r.tagged(b"a7", untagged).startswith(b"a7 OK")
    assert untagged == [b"* STATUS INBOX (MESSAGES 0)"]
    r.close()


def test_append_before_login(imap):
    sock = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    # Refused before "+", and with LITERAL+ after the bytes, which are not kept.
    sock.sendall(b"p1 APPEND INBOX {5}\r\n")
    assert f.readline().startswith(b"p1 BAD")
    for tag in (b"p2", b"p3"):
        sock.sendall(tag + b" APPEND INBOX {5+}\r\nhello\r\n")
        assert f.readline().startswith(tag + b" BAD")
    sock.sendall(b"p4 LOGIN alice alice-password\r\n")
    assert f.readline().startswith(b"p4 OK")
    sock.sendall(b"p5 APPEND INBOX {5+}\r\nafter\r\n")
    assert f.readline().startswith(b"p5 OK [APPENDUID")
    sock.sendall(b"p6 STATUS INBOX (MESSAGES)\r\n")
    assert f.readline() == b"* STATUS INBOX (MESSAGES 1)\r\n"
    sock.close()


def set_quota(imap, tandem_bin, user, size, messages):
    """The mailbox's quota, as an operator tool would set it (0 = unlimited)."""
    res = subprocess.run([str(tandem_bin("tdm_ipc_client")), "quota",
                          str(imap.datadir / "run" / "core.sock"), "db1", user, str(size),
                          str(messages)], capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stderr


def test_over_quota(imap, tandem_bin):
    m = login(imap)  # the mailbox is made at the first login
    set_quota(imap, tandem_bin, "alice", 10 * 1024, 0)
    r = Raw(imap)
    # Bigger than what is left: refused before "+".
    r.send(b"q1 APPEND INBOX {20000}\r\n")
    assert r.line().startswith(b"q1 NO [OVERQUOTA]")
    r.send(b"q2 APPEND INBOX {9000}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"x" * 9000 + b"\r\n")
    assert r.tagged(b"q2").startswith(b"q2 OK [APPENDUID")
    # Unannounced bytes (LITERAL+): checked when the command completes.
    r.send(b"q3 APPEND INBOX {2000+}\r\n" + b"y" * 2000 + b"\r\n")
    assert r.tagged(b"q3").startswith(b"q3 NO [OVERQUOTA]")
    r.close()
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[1] == [b'"" (STORAGE 9 10)']
    # A message count quota.
    set_quota(imap, tandem_bin, "alice", 0, 2)
    assert m.append("INBOX", None, None, message("second"))[0] == "OK"
    typ, data = m.append("INBOX", None, None, message("third"))
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    assert m.getquota('""')[1] == [b'"" (MESSAGE 2 2)']
    m.logout()


def test_multiappend_all_or_nothing(imap, tandem_bin):
    r = Raw(imap)
    r.send(b"m1 APPEND INBOX (\\Seen) {5}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"hello (\\Flagged kw1) \"01-Jan-2020 00:00:00 +0000\" {5}\r\n")
    assert r.line().startswith(b"+")
    # The third one unannounced (LITERAL+), in the same command.
    r.send(b"world {5+}\r\nthird\r\n")
    line = r.tagged(b"m1")
    assert line.startswith(b"m1 OK [APPENDUID")
    validity, uids = appenduid([line])
    assert len(uids) == 3 and uids == sorted(uids)
    m = login(imap)
    m.select("INBOX")
    typ, data = m.uid("FETCH", ",".join(map(str, uids)), "(FLAGS BODY.PEEK[])")
    parts = [d for d in data if isinstance(d, tuple)]
    assert [body for _, body in parts] == [b"hello", b"world", b"third"]
    assert b"\\Seen" in parts[0][0] and b"kw1" in parts[1][0] and b"\\Flagged" in parts[1][0]

    # Room for one message more, and three sent: none is kept.
    set_quota(imap, tandem_bin, "alice", 0, 4)
    r.send(b"m2 APPEND INBOX {3}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"one {3}\r\n")
    assert r.line().startswith(b"m2 NO [OVERQUOTA]")  # instead of the second "+"
    r.send(b"m3 APPEND INBOX {3+}\r\none {3+}\r\ntwo\r\n")
    assert r.tagged(b"m3").startswith(b"m3 NO [OVERQUOTA]")
    m.noop()
    assert m.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 3)"]
    # A bad message later in the command voids what was sent before it.
    set_quota(imap, tandem_bin, "alice", 0, 0)
    r.send(b"m4 APPEND INBOX {3+}\r\none (\\Bogus) {3+}\r\ntwo\r\n")
    assert r.tagged(b"m4").startswith(b"m4 BAD")
    assert m.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 3)"]
    r.close()
    m.logout()


def test_binary_append(imap):
    r = Raw(imap)
    body = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff binary\r\n"
    r.send(b"b1 APPEND INBOX ~{%d}\r\n" % len(body))
    assert r.line().startswith(b"+")
    r.send(body + b"\r\n")
    line = r.tagged(b"b1")
    assert line.startswith(b"b1 OK [APPENDUID")
    _, uids = appenduid([line])
    r.close()
    m = login(imap)
    m.select("INBOX")
    typ, data = m.uid("FETCH", str(uids[0]), "(RFC822.SIZE)")
    assert f"RFC822.SIZE {len(body)}".encode() in data[0]
    m.logout()


def test_mutf7_folder_name(imap):
    m = login(imap)
    assert m.create("Entw&APw-rfe")[0] == "OK"
    typ, data = m.append("Entw&APw-rfe", None, None, message("Entwurf"))
    assert typ == "OK"
    assert m.status("Entw&APw-rfe", "(MESSAGES)")[1] == [b"Entw&APw-rfe (MESSAGES 1)"]
    m.logout()


def test_killed_worker_loses_nothing_acknowledged(imap):
    r = Raw(imap)
    acked = []
    for i in range(20):
        r.send(b"k%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(message(f"m{i}")), message(f"m{i}")))
        line = r.tagged(b"k%d" % i)
        assert line.startswith(b"k%d OK" % i)
        acked.append(appenduid([line])[1][0])
    # A large APPEND cut short by the worker's death.
    big = message("cut", size=4 * 1024 * 1024)
    r.send(b"kx APPEND INBOX {%d}\r\n" % len(big))
    assert r.line().startswith(b"+")
    r.send(big[:len(big) // 2])
    worker = children(imap.proc.pid)["worker-imap"]
    os.kill(worker, signal.SIGKILL)
    with pytest.raises((EOFError, OSError)):
        r.send(big[len(big) // 2:] + b"\r\n")
        r.line()
    r.close()
    wait_for(lambda: children(imap.proc.pid).get("worker-imap") not in (None, worker),
             "a new IMAP worker")

    def uids():
        try:
            m = login(imap)
        except (imaplib.IMAP4.error, OSError):
            return None
        m.select("INBOX")
        typ, data = m.uid("FETCH", "1:*", "(UID)")
        m.logout()
        return [int(re.search(rb"UID (\d+)", d).group(1)) for d in data] if typ == "OK" else None
    got = wait_for(uids, "a session on the restarted worker")
    assert got == acked


def multiappend(tag, bodies):
    """One APPEND command of all bodies to INBOX, as LITERAL+ literals."""
    parts = [tag + b" APPEND INBOX"]
    for b in bodies:
        parts.append(b" {%d+}\r\n" % len(b) + b)
    return b"".join(parts) + b"\r\n"


def test_many_messages_in_one_multiappend(imap):
    r = Raw(imap)
    bodies = [message(f"many {i}") for i in range(600)]
    r.send(multiappend(b"w1", bodies))
    line = r.tagged(b"w1")
    assert line.startswith(b"w1 OK [APPENDUID")
    _, uids = appenduid([line])
    assert uids == list(range(uids[0], uids[0] + 600))
    r.send(b"w2 STATUS INBOX (MESSAGES)\r\n")
    untagged = []
    assert r.tagged(b"w2", untagged).startswith(b"w2 OK")
    assert untagged == [b"* STATUS INBOX (MESSAGES 600)"]
    r.close()


def test_multiappend_undone_when_a_record_is_refused(imap, tandem_bin):
    """The quota drops while a MULTIAPPEND's records are being committed: the ones already
    appended are expunged again and the command is answered NO."""
    login(imap).logout()  # the mailbox is made at the first login
    r, watcher = Raw(imap), Raw(imap)
    n = 3000
    r.send(multiappend(b"u1", [message(f"undo {i}") for i in range(n)]))
    # Once some are in, lower the message quota below what the command needs.
    while True:
        watcher.send(b"s STATUS INBOX (MESSAGES)\r\n")
        untagged = []
        watcher.tagged(b"s", untagged)
        count = int(re.search(rb"MESSAGES (\d+)", untagged[0]).group(1))
        if count:
            break
    quota = subprocess.Popen([str(tandem_bin("tdm_ipc_client")), "quota",
                              str(imap.datadir / "run" / "core.sock"), "db1", "alice", "0",
                              str(count + 10)])
    line = r.tagged(b"u1")
    assert quota.wait(timeout=WAIT) == 0
    if line.startswith(b"u1 OK"):
        pytest.skip("the quota came after the last record; nothing to undo")
    assert line.startswith(b"u1 NO [OVERQUOTA]"), line
    watcher.send(b"s2 STATUS INBOX (MESSAGES)\r\n")
    untagged = []
    assert watcher.tagged(b"s2", untagged).startswith(b"s2 OK")
    assert untagged == [b"* STATUS INBOX (MESSAGES 0)"]
    r.close()
    watcher.close()
