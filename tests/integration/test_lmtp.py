"""LMTP delivery into the store (RFC 2033) with Python's smtplib.LMTP against a real tandemd
that has the mailbox and directory roles: recipients come from the directory, each accepted
recipient gets its own reply after the data, mailboxes are created on first delivery with the
special-use folders, and what was acknowledged is in the database (read back with
tdm_maildump), also after the LMTP worker is killed."""
import json
import os
import signal
import smtplib
import socket
import subprocess

import pytest

from lab import WAIT, Server, children, wait_for


@pytest.fixture
def lmtp(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("lmtp",))
    db = s.datadir / "db" / "db1"
    db.parent.mkdir(parents=True)
    r = tandemctl("db", "create", db)
    assert r.returncode == 0, r.stderr
    p = s.start()
    s.started(p)
    s.wait_api()
    users = {
        "alice": {"addresses": ["alice@example.test"], "aliases": ["ally"], "database": "db1"},
        "bob": {"addresses": ["bob@example.test"], "database": "db1"},
        "carol": {"addresses": ["carol@example.test"], "database": "db1", "disabled": True},
        "dave": {"addresses": ["dave@example.test"]},
        "erin": {"addresses": ["erin@example.test"], "database": "elsewhere"},
    }
    for name, attrs in users.items():
        reply = s.api("PUT", f"/v1/objects/user/{name}", {"attrs": attrs})
        assert reply.status in (200, 201), reply
    s.db = db
    s.proc = p
    yield s
    s.kill_all()


def dump(tandem_bin, db):
    out = subprocess.run([str(tandem_bin("tdm_maildump")), str(db)], capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["mailboxes"]


def connect(s):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    code, _ = c.ehlo("client.test")
    assert code == 250
    return c


MESSAGE = (b"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\n"
           b"Hello there.\r\n.leading dot\r\n")


def test_delivery_replies_per_recipient_and_creates_mailboxes(lmtp, tandem_bin):
    c = connect(lmtp)
    assert "pipelining" in c.esmtp_features and "enhancedstatuscodes" in c.esmtp_features
    assert c.mail("sender@example.org")[0] == 250
    assert c.rcpt("alice@example.test")[0] == 250
    assert c.rcpt("ally@example.test")[0] == 250  # an alias of alice's, by its local part
    assert c.rcpt("bob@mbx1.local")[0] == 250      # by user name: the local part
    code, msg = c.rcpt("nobody@example.test")
    assert (code, msg[:5]) == (550, b"5.1.1")
    code, msg = c.rcpt("carol@example.test")
    assert (code, msg[:5]) == (550, b"5.2.1")
    code, msg = c.rcpt("dave@example.test")
    assert (code, msg[:5]) == (550, b"5.1.1")
    assert c.rcpt("erin@example.test")[0] == 250   # resolves, but its database is not here
    # One reply per accepted recipient, in RCPT order, after the data.
    code, msg = c.data(MESSAGE)
    replies = [(code, msg)] + [c.getreply() for _ in range(3)]
    assert [r[0] for r in replies] == [250, 250, 250, 451], replies
    assert replies[3][1].startswith(b"4.3.0")
    c.quit()

    boxes = dump(tandem_bin, lmtp.db)
    assert set(boxes) == {"alice", "bob"}
    # alice was named twice and gets the message once.
    inbox = boxes["alice"]["folders"]["INBOX"]["messages"]
    assert len(inbox) == 1
    body = inbox[0]["body"]
    assert body.startswith("Return-Path: <sender@example.org>\r\nReceived: from client.test")
    assert body.endswith("Subject: hello\r\n\r\nHello there.\r\n.leading dot\r\n")
    assert len(boxes["bob"]["folders"]["INBOX"]["messages"]) == 1
    folders = boxes["bob"]["folders"]
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert folders["Sent"]["special_use"] != 0 and folders["Sent"]["subscribed"]
    # A clean stop: the LMTP worker frees everything (LeakSanitizer is watching).
    lmtp.stop(lmtp.proc)


def test_pipelined_transactions_in_one_write(lmtp, tandem_bin):
    sock = socket.create_connection((lmtp.addr, lmtp.ports["lmtp"]), timeout=WAIT)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    batch = (b"LHLO client.test\r\n"
             b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
             b"Subject: one\r\n\r\none\r\n.\r\n"
             b"MAIL FROM:<b@example.org>\r\nRCPT TO:<bob@example.test>\r\n"
             b"RCPT TO:<nobody@example.test>\r\nDATA\r\nSubject: two\r\n\r\ntwo\r\n.\r\n"
             b"QUIT\r\n")
    sock.sendall(batch)
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line.decode().rstrip("\r\n"))
    codes = [l[:4] for l in lines if not l.startswith("250-")]
    # LHLO, MAIL, RCPT, 354, delivered; MAIL, RCPT, RCPT refused, 354, delivered; QUIT.
    assert codes == ["250 ", "250 ", "250 ", "354 ", "250 ",
                     "250 ", "250 ", "550 ", "354 ", "250 ", "221 "], "\n".join(lines)
    sock.close()
    boxes = dump(tandem_bin, lmtp.db)
    assert "Subject: one" in boxes["alice"]["folders"]["INBOX"]["messages"][0]["body"]
    assert "Subject: two" in boxes["bob"]["folders"]["INBOX"]["messages"][0]["body"]


def test_killed_worker_loses_nothing_acknowledged(lmtp, tandem_bin):
    delivered = 0
    for i in range(5):
        c = connect(lmtp)
        code, _ = c.sendmail("s@example.org", ["alice@example.test"],
                             f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()) or (250, b"")
        delivered += 1
        c.quit()
    worker = children(lmtp.proc.pid)["worker-lmtp"]
    # Kill it in the middle of a session, after MAIL and RCPT.
    c = connect(lmtp)
    c.mail("s@example.org")
    c.rcpt("alice@example.test")
    os.kill(worker, signal.SIGKILL)
    with pytest.raises((smtplib.SMTPException, OSError)):
        c.data(b"Subject: lost\r\n\r\nnever acknowledged\r\n")
    # The supervisor restarts it, and it serves again.
    wait_for(lambda: children(lmtp.proc.pid).get("worker-lmtp") not in (None, worker),
             "a new LMTP worker")

    def served():
        try:
            c2 = connect(lmtp)
            c2.sendmail("s@example.org", ["alice@example.test"], b"Subject: after\r\n\r\nx\r\n")
            c2.quit()
            return True
        except (OSError, smtplib.SMTPException):
            return False
    wait_for(served, "a delivery through the restarted worker")
    subjects = [m["body"].split("Subject: ")[1].split("\r\n")[0]
                for m in dump(tandem_bin, lmtp.db)["alice"]["folders"]["INBOX"]["messages"]]
    assert subjects[:5] == [f"m{i}" for i in range(5)]
    assert subjects[-1] == "after"
    assert "lost" not in subjects
