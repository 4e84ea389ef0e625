"""tandemctl db dismount / mount on a running server (docs/replication.md "Dismount and
mount"): after a dismount, a delivery is answered 451 (at RCPT), the database's IMAP sessions end
with BYE [UNAVAILABLE] and its logins are refused, the workers close its LMDB files, the store
is closed cleanly (db inspect: clean, not mounted), its copy reports ServiceDown;
mount serves it again with every message intact and the copy catches up. Nothing of a dismount
is remembered: a restart mounts the database again."""
import imaplib
import json
import os
import smtplib

import pytest

from lab import WAIT, Server, children, wait_for
from test_copy_not_served import copy_holder  # noqa: F401 (a fixture)
from test_imap import deliver
from test_replication import DB as CH_DB, caught_up, copy_status

DB = "db1"
OTHER_DB = "db2"
EXIT_NOT_FOUND = 7


@pytest.fixture
def server(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("imap", "lmtp"))
    (s.datadir / "db").mkdir(parents=True)
    for db in (DB, OTHER_DB):
        r = tandemctl("db", "create", s.datadir / "db" / db)
        assert r.returncode == 0, r.stderr
    p = s.start()
    s.started(p)
    s.wait_api()
    for path, body in [
        ("objects/user/alice", {"attrs": {"addresses": ["alice@example.test"], "database": DB}}),
        ("objects/user/alice/password", {"password": "alice-password"}),
        ("objects/user/bob", {"attrs": {"addresses": ["bob@example.test"], "database": OTHER_DB}}),
        ("objects/user/bob/password", {"password": "bob-password"}),
    ]:
        assert s.api("PUT", f"/v1/{path}", body).status in (200, 201), path
    s.proc = p
    yield s
    s.kill_all()


def ctl(tandemctl, s, verb, db=DB):
    return tandemctl("db", verb, db, "--socket", s.admin_socket)


def login(s, user="alice"):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login(user, f"{user}-password")
    return m


def until_closed(m):
    """Everything the server sends m until it closes the connection."""
    m.sock.settimeout(WAIT)
    data = b""
    while chunk := m.sock.recv(65536):
        data += chunk
    return data


def lmdb_fds(pid, db):
    """Descriptors of process pid open on the database's LMDB files."""
    store = f"/db/{db}/store/"
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if store in target:
            out.append(target)
    return out


def refused_451(s):
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused)) as e:
        deliver(s, "alice@example.test", "while dismounted")
    text = str(e.value)
    assert "451" in text, text


def inspect(tandemctl, s):
    r = tandemctl("db", "inspect", s.datadir / "db" / DB, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_dismount_refuses_then_mount_serves_again(server, tandemctl):
    s = server
    deliver(s, "alice@example.test", "one")
    deliver(s, "alice@example.test", "two")
    m = login(s)
    assert m.select("INBOX") == ("OK", [b"2"])

    r = ctl(tandemctl, s, "dismount")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{DB} dismounted"
    s.wait_event(lambda e: e.get("name") == "store.dismounted", "store.dismounted")
    refused_451(s)
    # The open session was ended (test_dismount_ends_sessions_and_refuses_logins has more).
    assert b"* BYE [UNAVAILABLE] " in until_closed(m)
    info = inspect(tandemctl, s)
    assert info["state"] == "clean" and not info["mounted"], info
    # Again: nothing to do, still fine.
    assert ctl(tandemctl, s, "dismount").returncode == 0

    r = ctl(tandemctl, s, "mount")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{DB} mounted"
    deliver(s, "alice@example.test", "three")
    m2 = login(s)
    assert m2.select("INBOX") == ("OK", [b"3"])
    typ, data = m2.fetch("1:3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1].decode().strip() for d in data if isinstance(d, tuple)]
    assert subjects == ["Subject: one", "Subject: two", "Subject: three"], subjects
    m2.logout()


def test_unknown_database_and_api(server, tandemctl):
    s = server
    r = ctl(tandemctl, s, "dismount", "nosuch")
    assert r.returncode == EXIT_NOT_FOUND, (r.returncode, r.stderr)
    assert s.api("GET", f"/v1/databases/{DB}/dismount").status == 405
    assert s.api("POST", f"/v1/databases/{DB}/unmount").status == 404
    reply = s.api("POST", f"/v1/databases/{DB}/dismount")
    assert reply.status == 200 and reply.json() == {"database": DB, "mounted": False}, reply


def test_restart_mounts_again(server, tandemctl):
    s = server
    deliver(s, "alice@example.test", "before")
    assert ctl(tandemctl, s, "dismount").returncode == 0
    refused_451(s)
    s.stop(s.proc)
    p = s.start()
    s.started(p)
    s.proc = p
    deliver(s, "alice@example.test", "after")
    m = login(s)
    assert m.select("INBOX") == ("OK", [b"2"])
    m.logout()


def test_copy_sees_service_down_and_catches_up_after_mount(copy_holder, tandemctl):
    """A's database has a passive copy on B: dismounting A's ends the copy's session and B
    reports ServiceDown (its source answers but no longer serves it); after mount the copy is
    Healthy again and gets what A took since."""
    a, b = copy_holder
    r = tandemctl("db", "dismount", CH_DB, "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "ServiceDown", "B's copy ServiceDown")
    r = tandemctl("db", "mount", CH_DB, "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    deliver(a, "alice@example.test", "after mount")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up with A again")


def test_dismount_ends_sessions_and_refuses_logins(server, tandemctl):
    """Sessions in the database end with BYE [UNAVAILABLE] and their connections close (one
    SELECTed, one in IDLE, one only logged in); the worker lets go of the database's LMDB files;
    a login is refused with UNAVAILABLE and LMTP refuses the recipient at RCPT; a session in
    another database goes on; after mount, logins work again."""
    s = server
    deliver(s, "alice@example.test", "one")
    deliver(s, "bob@example.test", "for bob")
    selected = login(s)
    assert selected.select("INBOX") == ("OK", [b"1"])
    idling = login(s)
    assert idling.select("INBOX") == ("OK", [b"1"])
    idling.send(b"i1 IDLE\r\n")
    assert idling.readline().startswith(b"+ "), "IDLE not started"
    authenticated = login(s)
    other = login(s, "bob")
    assert other.select("INBOX") == ("OK", [b"1"])
    imap_worker = children(s.proc.pid)["worker-imap"]
    assert lmdb_fds(imap_worker, DB), "the IMAP worker never opened db1"
    assert lmdb_fds(children(s.proc.pid)["worker-lmtp"], DB), "the LMTP worker never opened db1"

    assert ctl(tandemctl, s, "dismount").returncode == 0
    for name, m in [("selected", selected), ("idling", idling), ("authenticated", authenticated)]:
        data = until_closed(m)
        assert b"* BYE [UNAVAILABLE] " in data, (name, data)
    # Files closed once no session uses them: nothing of db1 open in the IMAP worker.
    wait_for(lambda: not lmdb_fds(imap_worker, DB), "the IMAP worker closing db1's LMDB")
    lmtp_worker = children(s.proc.pid)["worker-lmtp"]
    wait_for(lambda: not lmdb_fds(lmtp_worker, DB), "the LMTP worker closing db1's LMDB")
    assert lmdb_fds(imap_worker, OTHER_DB), "db2's environment closed too"

    with pytest.raises(imaplib.IMAP4.error, match=r"UNAVAILABLE"):
        login(s)
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    c.ehlo_or_helo_if_needed()
    assert c.mail("sender@example.org")[0] == 250
    code, text = c.rcpt("alice@example.test")
    assert code == 451 and b"dismounted" in text, (code, text)
    c.quit()

    # Untouched: bob's database is mounted.
    assert other.noop()[0] == "OK"
    deliver(s, "bob@example.test", "still served")
    assert other.select("INBOX") == ("OK", [b"2"])

    assert ctl(tandemctl, s, "mount").returncode == 0
    again = login(s)
    assert again.select("INBOX") == ("OK", [b"1"])
    deliver(s, "alice@example.test", "after mount")
    assert again.noop()[0] == "OK"
    again.logout()
    other.logout()


def test_worker_started_during_dismount_knows(server, tandemctl):
    """A worker that starts while a database is dismounted learns it from the core at
    connect: the IMAP worker killed and restarted by the supervisor still refuses the login."""
    s = server
    assert ctl(tandemctl, s, "dismount").returncode == 0
    old = children(s.proc.pid)["worker-imap"]
    os.kill(old, 9)
    wait_for(lambda: children(s.proc.pid).get("worker-imap") not in (None, old),
             "a new IMAP worker")

    def refused():
        try:
            login(s).logout()
        except imaplib.IMAP4.error as e:
            return "UNAVAILABLE" in str(e)
        except OSError:
            return False  # not listening yet
        raise AssertionError("a login to a dismounted database succeeded")
    wait_for(refused, "the new worker refusing the login with UNAVAILABLE")
    assert ctl(tandemctl, s, "mount").returncode == 0
    wait_for(lambda: login(s).logout()[0] == "BYE", "a login after mount")


def test_dismount_cuts_a_fetch_short(server, tandemctl):
    """A FETCH still being sent when the database is dismounted ends with its tagged NO, then
    the BYE, and the connection closes."""
    s = server
    body = "x" * 500_000
    for i in range(12):
        deliver(s, "alice@example.test", f"big {i}", body)
    m = login(s)
    assert m.select("INBOX") == ("OK", [b"12"])
    m.send(b"f1 FETCH 1:* BODY.PEEK[]\r\n")
    m.sock.settimeout(WAIT)
    first = m.sock.recv(65536)  # the FETCH has begun; the rest waits in the worker
    assert first.startswith(b"* 1 FETCH"), first[:80]
    assert ctl(tandemctl, s, "dismount").returncode == 0
    data = first + until_closed(m)
    bye = data.rfind(b"* BYE [UNAVAILABLE] ")
    assert bye > 0, data[-300:]
    tagged = data.rfind(b"\r\nf1 ")
    assert 0 < tagged < bye, data[-300:]
    assert data[tagged + 2:].startswith(b"f1 NO"), data[tagged:tagged + 80]
