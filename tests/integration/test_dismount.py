"""tandemctl db dismount / mount on a running server (docs/replication.md "Dismount and
mount"): after a dismount, a delivery is answered 451 and a change in an open IMAP session NO,
the store is closed cleanly (db inspect: clean, not mounted), its copy reports ServiceDown;
mount serves it again with every message intact and the copy catches up. Nothing of a dismount
is remembered: a restart mounts the database again."""
import imaplib
import json
import smtplib

import pytest

from lab import WAIT, Server, wait_for
from test_copy_not_served import copy_holder  # noqa: F401 (a fixture)
from test_imap import deliver
from test_imap_store import raw
from test_replication import DB as CH_DB, caught_up, copy_status

DB = "db1"
EXIT_NOT_FOUND = 7


@pytest.fixture
def server(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("imap", "lmtp"))
    (s.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", s.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    p = s.start()
    s.started(p)
    s.wait_api()
    for path, body in [
        ("objects/user/alice", {"attrs": {"addresses": ["alice@example.test"], "database": DB}}),
        ("objects/user/alice/password", {"password": "alice-password"}),
    ]:
        assert s.api("PUT", f"/v1/{path}", body).status in (200, 201), path
    s.proc = p
    yield s
    s.kill_all()


def ctl(tandemctl, s, verb, db=DB):
    return tandemctl("db", verb, db, "--socket", s.admin_socket)


def login(s):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    return m


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
    # The open session's changes are refused; its reads still see what was there.
    lines = raw(m, "STORE 1 +FLAGS (\\Flagged)")
    assert lines[-1].split()[1] == "NO", lines
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
    m.logout()


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
