"""SMTP of the transport role (RFC 5321) with Python's smtplib, against two real servers: a
transport server (roles = transport, SMTP only) and a mailbox server that also holds the
directory. The transport server asks the directory who each recipient is and where its
database's mail goes (the database's cms: address and lmtp_port), relays the message over
LMTP to that server, and answers 250 only once the mailbox server has the message durable.
What was acknowledged is read back from the mail database with tdm_maildump."""
import json
import os
import re
import secrets
import signal
import smtplib
import socket
import ssl
import subprocess
import threading

import pytest

from lab import WAIT, Server, children, free_port, wait_for

SENDER = "someone@example.org"


@pytest.fixture
def pair(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "mbx1").mkdir()
    (tmp_path / "hub1").mkdir()
    m = Server(exe, tmp_path / "mbx1", "mbx1", roles="mailbox, directory",
               listeners=("lmtp", "admin"))
    db = m.datadir / "db" / "db1"
    db.parent.mkdir(parents=True)
    r = tandemctl("db", "create", db)
    assert r.returncode == 0, r.stderr
    mp = m.start()
    m.started(mp)
    m.wait_api()

    key = secrets.token_urlsafe(32)
    dead_port = free_port(m.addr)  # a mailbox server that is down: nothing listens here
    objects = [
        ("server/hub1", {"site": "dc1"}),
        ("cms/cms1", {"address": m.addr, "lmtp_port": m.ports["lmtp"]}),
        ("cms/cms2", {"address": m.addr, "lmtp_port": dead_port}),
        ("database/db1", {"cms": "cms1"}),
        ("database/db2", {"cms": "cms2"}),
        ("user/alice", {"addresses": ["alice@example.test"], "aliases": ["sales@example.test"],
                        "database": "db1"}),
        ("user/bob", {"addresses": ["bob@example.test"], "database": "db1"}),
        ("user/carol", {"addresses": ["carol@example.test"], "database": "db1",
                        "disabled": True}),
        ("user/erin", {"addresses": ["erin@example.test"], "database": "db2"}),
    ]
    for path, attrs in objects:
        reply = m.api("PUT", f"/v1/objects/{path}", {"attrs": attrs})
        assert reply.status in (200, 201), reply
    assert m.api("PUT", "/v1/objects/server/hub1/password", {"password": key}).status == 200
    reply = m.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:hub1"})
    assert reply.status in (200, 201), reply

    t = Server(exe, tmp_path / "hub1", "hub1", roles="transport", listeners=("smtp",))
    t.directory_endpoint = f"{m.addr}:{m.ports['admin']}"
    t.extra_conf = (f"\n[tls]\nca = {m.ca}\n"
                    "\n[smtp]\ndomains = example.test\nmax_message_size = 64K\n"
                    "max_connections = 30\n")  # three per client address
    t.write_conf(server="hub1", level="info")
    t.datadir.mkdir(parents=True)
    (t.datadir / "server.key").write_text(key + "\n")
    tp = t.start()
    t.started(tp)
    t.proc = tp
    m.db = db
    # The transport server's directory client starts following the journal; until it does,
    # lookups may be deferred (451). Wait for a first answer.
    wait_for(lambda: rcpt(t, "alice@example.test")[0] == 250, "the directory answering hub1")
    yield m, t
    t.kill_all()
    m.kill_all()


def connect(t, name="client.test"):
    c = smtplib.SMTP(t.addr, t.ports["smtp"], timeout=WAIT)
    code, _ = c.ehlo(name)
    assert code == 250
    return c


def rcpt(t, address):
    """(code, enhanced code) of RCPT TO:<address> in a fresh session."""
    c = connect(t)
    try:
        c.mail(SENDER)
        code, msg = c.rcpt(address)
        return code, msg[:5].decode()
    finally:
        c.close()


def dump(tandem_bin, db):
    out = subprocess.run([str(tandem_bin("tdm_maildump")), str(db)], capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["mailboxes"]


def subjects(tandem_bin, db, user):
    boxes = dump(tandem_bin, db)
    if user not in boxes:
        return []
    return [m["body"].split("Subject: ")[1].split("\r\n")[0]
            for m in boxes[user]["folders"]["INBOX"]["messages"]]


def message(subject):
    return f"From: {SENDER}\r\nSubject: {subject}\r\n\r\nHello.\r\n.a leading dot\r\n".encode()


def test_mail_to_addresses_aliases_and_two_users(pair, tandem_bin):
    m, t = pair
    c = connect(t)
    features = c.esmtp_features
    for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "starttls"):
        assert ext in features, features
    assert "auth" not in features  # port 25: no logins
    assert features["size"] == str(64 * 1024)
    assert c.sendmail(SENDER, ["alice@example.test"], message("to an address")) == {}
    assert c.sendmail(SENDER, ["sales@example.test"], message("to an alias")) == {}
    assert c.sendmail(SENDER, ["alice@example.test", "bob@example.test"],
                      message("to two users")) == {}
    c.quit()

    assert subjects(tandem_bin, m.db, "alice") == ["to an address", "to an alias",
                                                   "to two users"]
    assert subjects(tandem_bin, m.db, "bob") == ["to two users"]
    body = dump(tandem_bin, m.db)["alice"]["folders"]["INBOX"]["messages"][0]["body"]
    # The mailbox server adds Return-Path: and its own Received:, after the transport's.
    assert body.startswith("Return-Path: <someone@example.org>\r\nReceived: from hub1 ")
    assert "Received: from client.test" in body and "by hub1 (tandem) with ESMTP" in body
    assert body.endswith("Subject: to an address\r\n\r\nHello.\r\n.a leading dot\r\n")
    # A clean stop of the transport server: no leak in its SMTP worker.
    t.stop(t.proc)


def test_unknown_users_and_relaying_are_refused(pair):
    m, t = pair
    assert rcpt(t, "nobody@example.test") == (550, "5.1.1")
    assert rcpt(t, "carol@example.test") == (550, "5.2.1")
    assert rcpt(t, "alice@elsewhere.org") == (550, "5.7.1")   # alice's name, not our domain
    assert rcpt(t, "alice@[127.0.0.1]") == (550, "5.7.1")
    assert rcpt(t, "ALICE@Example.TEST") == (250, "2.1.5")
    c = connect(t)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        c.sendmail(SENDER, ["someone@elsewhere.org"], message("relay"))
    # A bad command gets its answer and the session goes on.
    assert c.docmd("BOGUS")[0] == 500
    assert c.docmd("MAIL FROM:<broken")[0] == 501
    assert c.noop()[0] == 250
    c.quit()


def test_limits_on_recipients_lines_and_connections(pair):
    m, t = pair
    c = connect(t)
    c.mail(SENDER)
    for _ in range(100):
        assert c.rcpt("alice@example.test")[0] == 250
    code, msg = c.rcpt("bob@example.test")
    assert (code, msg[:5]) == (452, b"4.5.3")
    c.rset()
    code, msg = c.docmd("NOOP " + "x" * 2000)
    assert (code, msg[:5]) == (500, b"5.5.2")
    assert c.noop()[0] == 250
    # Three connections from one address at most: the fourth is told so and closed.
    others = [connect(t) for _ in range(2)]
    extra = socket.create_connection((t.addr, t.ports["smtp"]), timeout=WAIT)
    assert extra.makefile("rb").readline().startswith(b"421 4.7.0")
    extra.close()
    for o in others:
        o.quit()
    c.quit()


def test_size_refused_at_mail_and_after_the_data(pair, tandem_bin):
    m, t = pair
    c = connect(t)
    code, msg = c.mail(SENDER, ["SIZE=100000"])
    assert (code, msg[:5]) == (552, b"5.3.4")
    c.rset()
    assert c.mail(SENDER, ["SIZE=1000"])[0] == 250
    assert c.rcpt("bob@example.test")[0] == 250
    big = b"Subject: too big\r\n\r\n" + b"x" * 100 + b"\r\n" * 1000 + b"y" * 70000 + b"\r\n"
    code, msg = c.data(big)
    assert (code, msg[:5]) == (552, b"5.3.4")
    assert c.sendmail(SENDER, ["bob@example.test"], message("small enough")) == {}
    c.quit()
    assert subjects(tandem_bin, m.db, "bob") == ["small enough"]


def test_starttls_then_mail(pair, tandem_bin):
    m, t = pair
    c = connect(t)
    ctx = ssl.create_default_context(cafile=str(t.ca))
    code, _ = c.starttls(context=ctx)
    assert code == 220
    c.ehlo("client.test")
    assert "starttls" not in c.esmtp_features
    assert c.sendmail(SENDER, ["bob@example.test"], message("over tls")) == {}
    c.quit()
    body = dump(tandem_bin, m.db)["bob"]["folders"]["INBOX"]["messages"][0]["body"]
    assert "with ESMTPS" in body


def test_pipelined_transactions(pair, tandem_bin):
    m, t = pair
    sock = socket.create_connection((t.addr, t.ports["smtp"]), timeout=WAIT)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO client.test\r\n"
                 b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
                 b"RCPT TO:<nobody@example.test>\r\nDATA\r\n"
                 b"Subject: one\r\n\r\none\r\n.\r\n"
                 b"MAIL FROM:<b@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                 b"Subject: two\r\n\r\ntwo\r\n.\r\n"
                 b"QUIT\r\n")
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line.decode().rstrip("\r\n"))
    codes = [line[:4] for line in lines if not line.startswith("250-")]
    assert codes == ["250 ", "250 ", "250 ", "550 ", "354 ", "250 ",
                     "250 ", "250 ", "354 ", "250 ", "221 "], "\n".join(lines)
    sock.close()
    assert subjects(tandem_bin, m.db, "alice") == ["one"]
    assert subjects(tandem_bin, m.db, "bob") == ["two"]


def test_mailbox_server_down_defers_and_claims_nothing(pair, tandem_bin):
    m, t = pair
    # erin's database is on cms2, where nothing listens.
    c = connect(t)
    with pytest.raises(smtplib.SMTPDataError) as e:
        c.sendmail(SENDER, ["erin@example.test"], message("nowhere"))
    assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.4.1")
    # One transaction goes to one mailbox server: erin is deferred for another transaction.
    c.rset()
    c.mail(SENDER)
    assert c.rcpt("alice@example.test")[0] == 250
    code, msg = c.rcpt("erin@example.test")
    assert (code, msg[:5]) == (452, b"4.5.3")
    code, _ = c.data(message("alice only"))
    assert code == 250
    c.quit()
    assert subjects(tandem_bin, m.db, "alice") == ["alice only"]

    # cms2 moves to where an LMTP listens: the directory's journal tells the transport server,
    # whose next relay reaches it. That server does not have db2 mounted, so it defers too,
    # with its own reason (4.3.0), never a 250.
    reply = m.api("PUT", "/v1/objects/cms/cms2",
                  {"attrs": {"address": m.addr, "lmtp_port": m.ports["lmtp"]}})
    assert reply.status == 200, reply

    def deferred_by_the_mailbox_server():
        c = connect(t)
        try:
            c.sendmail(SENDER, ["erin@example.test"], message("db2 not here"))
        except smtplib.SMTPDataError as err:
            return err.smtp_code == 451 and err.smtp_error.startswith(b"4.3.0")
        finally:
            c.close()
        pytest.fail("a message for an unmounted database was acknowledged")
    wait_for(deferred_by_the_mailbox_server, "the new route of cms2")

    # The mailbox server's LMTP worker is killed: the supervisor restarts it, and a message
    # relayed meanwhile is either refused (4xx) or delivered, never acknowledged and lost.
    lmtp = children(m.procs[0].pid)["worker-lmtp"]
    os.kill(lmtp, signal.SIGKILL)
    acknowledged = []
    for i in range(3):
        c = connect(t)
        try:
            c.sendmail(SENDER, ["alice@example.test"], message(f"during restart {i}"))
            acknowledged.append(f"during restart {i}")
        except smtplib.SMTPDataError as err:
            assert 400 <= err.smtp_code < 500, err
        c.quit()
    got = subjects(tandem_bin, m.db, "alice")
    assert all(s in got for s in acknowledged), (acknowledged, got)


def test_killed_worker_loses_nothing_acknowledged(pair, tandem_bin):
    m, t = pair
    for i in range(3):
        c = connect(t)
        assert c.sendmail(SENDER, ["alice@example.test"], message(f"m{i}")) == {}
        c.quit()
    worker = children(t.proc.pid)["worker-smtp"]
    # Kill it in the middle of the data: nothing was acknowledged, so nothing is owed.
    c = connect(t)
    c.mail(SENDER)
    c.rcpt("alice@example.test")
    assert c.docmd("DATA")[0] == 354
    c.send(b"Subject: lost\r\n\r\nnever acknowledged\r\n")
    os.kill(worker, signal.SIGKILL)
    with pytest.raises((smtplib.SMTPException, OSError)):
        c.send(b".\r\n")
        c.getreply()
    wait_for(lambda: children(t.proc.pid).get("worker-smtp") not in (None, worker),
             "a new SMTP worker")

    def served():
        try:
            c2 = connect(t)
            c2.sendmail(SENDER, ["alice@example.test"], message("after"))
            c2.quit()
            return True
        except (OSError, smtplib.SMTPException):
            return False
    wait_for(served, "a message through the restarted worker")
    got = subjects(tandem_bin, m.db, "alice")
    assert got[:3] == ["m0", "m1", "m2"]
    assert got[-1] == "after" and "lost" not in got


def test_stop_says_421(pair):
    m, t = pair
    c = connect(t)
    c.mail(SENDER)
    os.kill(t.proc.pid, signal.SIGTERM)
    assert c.getreply() == (421, b"4.3.2 Server shutting down, closing")
    assert t.proc.wait(timeout=WAIT) == 0
    assert "ERROR: LeakSanitizer" not in t.output()
    c.close()


class FakeLMTP:
    """A mailbox server's LMTP that answers each recipient after the data as told, and keeps
    what it was sent: for the outcomes a real server gives only under duress (a full mailbox
    next to a delivered one)."""

    def __init__(self, addr, after_data):
        self.after_data = after_data  # one reply line per recipient
        self.sock = socket.create_server((addr, 0))
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 fake LMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                self.received.append(line)
                verb = line[:4].upper()
                if verb == b"LHLO":
                    conn.sendall(b"250-fake\r\n250 8BITMIME\r\n")
                elif verb in (b"MAIL", b"RCPT"):
                    conn.sendall(b"250 2.1.0 OK\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while not self.received[-1] == b".\r\n":
                        self.received.append(f.readline())
                    conn.sendall(b"".join(r.encode() + b"\r\n" for r in self.after_data))
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return


def route_to(m, database, cms, port, users):
    for path, attrs in [(f"cms/{cms}", {"address": m.addr, "lmtp_port": port}),
                        (f"database/{database}", {"cms": cms})] + [
                            (f"user/{u}", {"addresses": [f"{u}@example.test"],
                                           "database": database}) for u in users]:
        reply = m.api("PUT", f"/v1/objects/{path}", {"attrs": attrs})
        assert reply.status in (200, 201), reply


def test_partial_and_permanent_outcomes_of_the_mailbox_server(pair):
    m, t = pair
    # Delivered to one recipient, not the other: one reply per message, so the sender must
    # try again (the delivered one may get it twice; never lost).
    fake = FakeLMTP(m.addr, ["250 2.0.0 Delivered", "452 4.2.2 Mailbox is full"])
    route_to(m, "db3", "cms3", fake.port, ["frank", "gina"])
    c = connect(t)
    with pytest.raises(smtplib.SMTPDataError) as e:
        c.sendmail(SENDER, ["frank@example.test", "gina@example.test"], message("partial"))
    assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.3.0 Delivered to 1 of 2")
    c.quit()
    sent = b"".join(fake.received)
    assert b"LHLO hub1\r\nMAIL FROM:<someone@example.org>\r\n" in sent  # no SIZE passed on
    # Each recipient carries its own delivery id (docs/smtp.md, "Transport dumpster").
    assert re.search(rb"RCPT TO:<frank@example\.test> XDELIVERYID=([0-9a-f]{32})\r\n"
                     rb"RCPT TO:<gina@example\.test> XDELIVERYID=([0-9a-f]{32})\r\nDATA\r\n",
                     sent), sent
    assert b"Received: from client.test" in sent
    assert b"\r\n..a leading dot\r\n.\r\n" in sent  # dot-stuffed on the way

    # Refused for good by the mailbox server: its own 5xx is passed on, so the sender bounces.
    fake = FakeLMTP(m.addr, ["552 5.2.2 Mailbox is full"])
    route_to(m, "db4", "cms4", fake.port, ["hank"])
    c = connect(t)
    with pytest.raises(smtplib.SMTPDataError) as e:
        c.sendmail(SENDER, ["hank@example.test"], message("full"))
    assert e.value.smtp_code == 552 and e.value.smtp_error.startswith(b"5.2.2")
    c.quit()


def test_reload_says_smtp_settings_need_a_restart(pair):
    m, t = pair
    t.extra_conf = t.extra_conf.replace("domains = example.test", "domains = example.test, b.test")
    t.write_conf(server="hub1", level="info")
    os.kill(t.proc.pid, signal.SIGHUP)
    ev = t.wait_event(lambda e: e["id"] == 2007, "process.reload_needs_restart")
    assert "[smtp] domains changed" in ev["message"]
    # The running value stays in force.
    assert rcpt(t, "alice@b.test") == (550, "5.7.1")
