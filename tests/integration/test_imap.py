"""IMAP with Python's imaplib against a real tandemd (mailbox and directory roles): logins
against the directory (LOGIN, AUTHENTICATE PLAIN and LOGIN, over STARTTLS), a mailbox made at the first
login, LIST with special-use folders, SELECT / EXAMINE with \\Recent given to exactly one
session, FETCH of flags, sizes, dates and whole messages delivered over LMTP, new mail seen by
a selected session, refusals for what is not served yet, and a killed worker."""
import base64
import imaplib
import os
import re
import signal
import smtplib
import ssl

import pytest

from lab import WAIT, Server, children, wait_for


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


def deliver(s, rcpt, subject, body="hello"):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    c.sendmail("sender@example.org", [rcpt],
               f"From: sender@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode())
    c.quit()


def connect(s):
    return imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)


def login(s, user="alice"):
    m = connect(s)
    m.login(user, f"{user}-password")
    return m


def test_capabilities_and_logins(imap):
    m = connect(imap)
    caps = m.capabilities
    assert "IMAP4REV1" in caps and "STARTTLS" in caps and "AUTH=PLAIN" in caps
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("alice", "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("nobody", "whatever")
    typ, data = m.login("alice", "alice-password")
    assert typ == "OK"
    m.logout()
    # AUTHENTICATE PLAIN with a continuation (imaplib does not use SASL-IR).
    m = connect(imap)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0bob\0bob-password")
    assert typ == "OK"
    m.logout()
    # STARTTLS, checked against the server's CA.
    m = connect(imap)
    m.starttls(ssl.create_default_context(cafile=str(imap.ca)))
    assert "STARTTLS" not in m.capabilities or m.capability()[0] == "OK"
    assert m.login("alice", "alice-password")[0] == "OK"
    m.logout()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_authenticate_login(imap):
    """SASL LOGIN (draft-murchison-sasl-login): "Username:" and "Password:" asked in base64."""
    from test_imap_ext import Raw  # here: test_imap_ext imports this module
    m = connect(imap)
    assert "AUTH=LOGIN" in m.capabilities
    asked = []
    answers = {b"Username:": b"alice", b"Password:": b"alice-password"}
    typ, _ = m.authenticate("LOGIN", lambda challenge: asked.append(challenge) or
                            answers[challenge])
    assert typ == "OK" and asked == [b"Username:", b"Password:"]
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    c = Raw(imap, user=None)
    # A wrong password fails as with LOGIN.
    c.sock.sendall(b"a1 AUTHENTICATE LOGIN\r\n")
    assert c.line() == "+ VXNlcm5hbWU6"
    c.sock.sendall(f"{b64('alice')}\r\n".encode())
    assert c.line() == "+ UGFzc3dvcmQ6"
    c.sock.sendall(f"{b64('wrong')}\r\n".encode())
    assert c.line() == "a1 NO [AUTHENTICATIONFAILED] Authentication failed"
    # "*" cancels at either step (RFC 9051 6.2.2: a tagged BAD).
    c.sock.sendall(b"a2 AUTHENTICATE LOGIN\r\n*\r\n")
    assert c.line() == "+ VXNlcm5hbWU6"
    assert c.line() == "a2 BAD Authentication cancelled"
    c.sock.sendall(f"a3 AUTHENTICATE login {b64('alice')}\r\n*\r\n".encode())
    assert c.line() == "+ UGFzc3dvcmQ6"
    assert c.line() == "a3 BAD Authentication cancelled"
    c.sock.sendall(b"a4 AUTHENTICATE LOGIN\r\nnot base64!\r\n")
    assert c.line() == "+ VXNlcm5hbWU6"
    assert c.line() == "a4 BAD Invalid base64 in the LOGIN response"
    # SASL-IR: the initial response is the user name; the password is asked for.
    c.sock.sendall(f"a5 AUTHENTICATE LOGIN {b64('bob')}\r\n".encode())
    assert c.line() == "+ UGFzc3dvcmQ6"
    c.sock.sendall(f"{b64('bob-password')}\r\n".encode())
    assert c.line().startswith("a5 OK ")
    c.ok("SELECT INBOX")
    c.close()
    # Another mechanism is refused, naming the two.
    c = Raw(imap, user=None)
    _, done = c.cmd("AUTHENTICATE CRAM-MD5")
    assert done == "NO [CANNOT] Only AUTHENTICATE PLAIN and LOGIN are offered", done
    c.close()


def test_first_login_makes_the_mailbox(imap):
    m = login(imap, "bob")
    typ, lines = m.list()
    assert typ == "OK"
    names = {l.decode().rsplit(" ", 1)[1].strip('"'): l.decode() for l in lines}
    assert set(names) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert "\\Sent" in names["Sent"] and "\\Junk" in names["Junk"]
    assert m.lsub()[0] == "OK" and len(m.lsub()[1]) == 6
    assert m.list('""', "S%")[1] == [b'(\\HasNoChildren \\Sent) "/" Sent']
    m.logout()
    # A session left open at shutdown is told and freed (LeakSanitizer is watching).
    left = login(imap, "bob")
    imap.stop(imap.proc)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        left.noop()


def test_select_fetch_and_recent(imap):
    for i in range(3):
        deliver(imap, "alice@example.test", f"message {i}", body=f"body {i}")
    a = login(imap)
    typ, data = a.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    assert a.response("RECENT")[1] == [b"3"]
    # A second session at once: the three are not recent to it (RFC 3501 2.3.2).
    b = login(imap)
    b.select("inbox")
    assert b.response("RECENT")[1] == [b"0"]
    typ, data = a.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    assert typ == "OK" and len(data) == 3
    first = data[0].decode()
    assert re.search(r"UID 1\b", first) and "\\Recent" in first and "INTERNALDATE" in first
    typ, data = a.uid("FETCH", "2", "(BODY.PEEK[])")
    assert typ == "OK"
    body = data[0][1]
    assert body.startswith(b"Return-Path: <sender@example.org>") and b"body 1" in body
    size = int(re.search(rb"RFC822.SIZE (\d+)", b"".join(
        x if isinstance(x, bytes) else x[0] for x in a.fetch("2", "RFC822.SIZE")[1])).group(1))
    assert size == len(body)
    # New mail reaches a selected session at its next NOOP.
    deliver(imap, "alice@example.test", "late")
    a.noop()
    assert a.response("EXISTS")[1][-1] == b"4"
    # EXAMINE is read-only; BODY[] there sets no flag and is served.
    assert b.select("INBOX", readonly=True)[0] == "OK"  # EXAMINE
    typ, data = b.fetch("1", "(BODY[])")
    assert typ == "OK" and b"body 0" in data[0][1]
    # Out of range and refused: answered, and the session goes on (FETCH in full is tested in
    # test_imap_fetch.py, folder commands in test_imap_folders.py).
    with pytest.raises(imaplib.IMAP4.error, match="out of range"):
        a.fetch("99", "FLAGS")
    typ, data = a.create("INBOX")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    assert a.noop()[0] == "OK"
    a.logout()
    b.logout()


def test_killed_worker_keeps_serving(imap):
    deliver(imap, "alice@example.test", "kept")
    a = login(imap)
    a.select("INBOX")
    worker = children(imap.proc.pid)["worker-imap"]
    os.kill(worker, signal.SIGKILL)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        a.noop()
    wait_for(lambda: children(imap.proc.pid).get("worker-imap") not in (None, worker),
             "a new IMAP worker")

    def served():
        try:
            m = login(imap)
            m.select("INBOX")
            ok = b"kept" in m.fetch("1", "(BODY.PEEK[])")[1][0][1]
            m.logout()
            return ok
        except (imaplib.IMAP4.error, OSError):
            return False
    wait_for(served, "a session on the restarted worker")
