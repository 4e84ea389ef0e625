"""The transport dumpster (docs/smtp.md, "Transport dumpster") with two real servers: a
transport server and a mailbox server that also holds the directory (as in test_smtp.py).
Every message the transport delivers is kept per database with its recipients' delivery ids;
a resubmission delivers it again with the same ids, so the mailbox server drops what it
holds (each message stays there once, its UID unchanged) and delivers what a loss took:
here the database is put back to a copy taken before the last deliveries, with the server
stopped, and a resubmission brings exactly the missing ones back."""
import json
import secrets
import shutil
import smtplib
import subprocess
import time

import pytest

from lab import WAIT, Server, wait_for

SENDER = "someone@example.org"


def start_mailbox(m):
    p = m.start()
    m.started(p)
    m.wait_api()
    return p


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
    m.proc = start_mailbox(m)

    key = secrets.token_urlsafe(32)
    objects = [
        ("server/hub1", {"site": "dc1"}),
        ("cms/cms1", {"address": m.addr, "lmtp_port": m.ports["lmtp"]}),
        ("database/db1", {"cms": "cms1"}),
        ("user/alice", {"addresses": ["alice@example.test"], "database": "db1"}),
        ("user/bob", {"addresses": ["bob@example.test"], "database": "db1"}),
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
                    "\n[smtp]\ndomains = example.test\n")
    t.write_conf(server="hub1", level="info")
    t.datadir.mkdir(parents=True)
    (t.datadir / "server.key").write_text(key + "\n")
    t.proc = t.start()
    t.started(t.proc)
    m.db = db

    def answered():
        try:
            c = smtplib.SMTP(t.addr, t.ports["smtp"], timeout=WAIT)
            c.ehlo("client.test")
            c.mail(SENDER)
            code, _ = c.rcpt("alice@example.test")
            c.close()
            return code == 250
        except (OSError, smtplib.SMTPException):
            return False
    wait_for(answered, "the directory answering hub1")
    yield m, t
    t.kill_all()
    m.kill_all()


def send(t, rcpts, subject, pad=0):
    c = smtplib.SMTP(t.addr, t.ports["smtp"], timeout=WAIT)
    c.ehlo("client.test")
    msg = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\nHello.\r\n{'x' * pad}\r\n".encode()
    assert c.sendmail(SENDER, rcpts, msg) == {}
    c.quit()


def inbox(tandem_bin, db, user):
    """[(uid, subject)] of user's INBOX, read from the database files."""
    out = subprocess.run([str(tandem_bin("tdm_maildump")), str(db)], capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    boxes = json.loads(out.stdout)["mailboxes"]
    if user not in boxes:
        return []
    return [(msg["uid"], msg["body"].split("Subject: ")[1].split("\r\n")[0])
            for msg in boxes[user]["folders"]["INBOX"]["messages"]]


def resubmit(t, since="all"):
    reply = t.api("POST", f"/v1/dumpster/resubmit?database=db1&since={since}")
    assert reply.status == 200, reply
    return reply.json()


def dumpster_status(tandemctl, t):
    r = tandemctl("dumpster", "status", "--json", "--socket", t.admin_socket)
    assert r.returncode == 0, r.stderr
    return {d["database"]: d for d in json.loads(r.stdout)["databases"]}


def test_resubmit_drops_duplicates_and_restores_a_loss(pair, tandem_bin, tandemctl):
    m, t = pair
    N, K = 6, 2
    for i in range(N - K):
        send(t, ["alice@example.test"], f"m{i}")
    send(t, ["alice@example.test", "bob@example.test"], "both")  # one entry, two recipients

    st = dumpster_status(tandemctl, t)
    assert st["db1"]["count"] == N - K + 1 and st["db1"]["bytes"] > 0, st
    before = inbox(tandem_bin, m.db, "alice")
    assert [s for _, s in before] == [f"m{i}" for i in range(N - K)] + ["both"]

    # Everything is there already: all dropped as duplicates, nothing moves.
    r = resubmit(t)
    assert r == {"ok": True, "messages": N - K + 1, "resubmitted": N - K + 2, "deferred": 0,
                 "refused": 0}, r
    assert inbox(tandem_bin, m.db, "alice") == before
    assert len(inbox(tandem_bin, m.db, "bob")) == 1
    assert "duplicate dropped" in m.output()
    done = t.wait_event(lambda e: e["id"] == 5100, "event 5100 dumpster.resubmitted")
    assert done["subject"] == "db1" and "0 refused" in done["message"], done

    # A loss: the database goes back to a copy taken before the last K deliveries.
    m.stop(m.proc)
    saved = m.db.parent / "db1.saved"
    shutil.copytree(m.db, saved)
    m.proc = start_mailbox(m)
    for i in range(N - K, N):
        send(t, ["alice@example.test"], f"m{i}")
    full = inbox(tandem_bin, m.db, "alice")
    assert len(full) == N + 1
    m.stop(m.proc)
    shutil.rmtree(m.db)
    saved.rename(m.db)
    m.proc = start_mailbox(m)
    assert inbox(tandem_bin, m.db, "alice") == before

    # Only what was delivered since a time: the two lost ones, nothing twice.
    r = resubmit(t, since=int(time.time()) - 3600)
    assert r["refused"] == 0 and r["messages"] == N + 1, r
    after = inbox(tandem_bin, m.db, "alice")
    assert after[:len(before)] == before  # UIDs unchanged
    assert sorted(s for _, s in after) == sorted([f"m{i}" for i in range(N)] + ["both"])
    assert len(inbox(tandem_bin, m.db, "bob")) == 1
    # And again: nothing changes any more.
    assert resubmit(t)["refused"] == 0
    assert inbox(tandem_bin, m.db, "alice") == after

    r = tandemctl("dumpster", "resubmit", "db1", "--since", "1h", "--socket", t.admin_socket)
    assert r.returncode == 0, r.stderr
    assert "0 refused" in r.stdout, r.stdout
    assert inbox(tandem_bin, m.db, "alice") == after


def test_a_client_retry_of_the_same_message_is_delivered_once(pair, tandem_bin):
    """Delivery ids are a hash of the envelope and the bytes (docs/smtp.md): a client that
    sends the same message again (after a 451 it could not trust, a connection lost at the
    end of the data) gets the same ids, and the mailbox server drops the second delivery.
    A message that differs in one byte, or goes to another recipient, is another delivery."""
    m, t = pair
    send(t, ["alice@example.test", "bob@example.test"], "again")
    send(t, ["alice@example.test", "bob@example.test"], "again")  # the same bytes
    assert [s for _, s in inbox(tandem_bin, m.db, "alice")] == ["again"]
    assert [s for _, s in inbox(tandem_bin, m.db, "bob")] == ["again"]
    assert m.output().count("duplicate dropped") >= 2
    send(t, ["alice@example.test"], "again", pad=1)  # one byte more: another message
    send(t, ["bob@example.test"], "again")  # the same bytes to bob alone: a new envelope,
    # but bob's delivery of these bytes from this sender is the one he has: dropped
    assert [s for _, s in inbox(tandem_bin, m.db, "alice")] == ["again", "again"]
    assert [s for _, s in inbox(tandem_bin, m.db, "bob")] == ["again"]


def test_bad_requests(pair):
    m, t = pair
    assert t.api("POST", "/v1/dumpster/resubmit?database=db1").status == 400
    assert t.api("POST", "/v1/dumpster/resubmit?database=db1&since=soon").status == 400
    assert t.api("POST", "/v1/dumpster/resubmit?database=.x&since=all").status == 400
    assert t.api("GET", "/v1/dumpster/resubmit").status == 405
    # A database with no dumpster: nothing to do.
    reply = t.api("POST", "/v1/dumpster/resubmit?database=db9&since=all")
    assert reply.status == 200 and reply.json()["messages"] == 0, reply
    # A server without the transport role has no dumpster.
    assert m.api("GET", "/v1/dumpster").status == 404


def test_mailbox_server_down_is_deferred_and_said(pair):
    """Unreachable is for now, not for good: the recipients count as deferred (the cluster
    agent asks again until they are taken), not refused."""
    m, t = pair
    send(t, ["alice@example.test", "bob@example.test"], "kept")
    m.stop(m.proc)
    r = resubmit(t)
    assert r == {"ok": True, "messages": 1, "resubmitted": 0, "deferred": 2, "refused": 0}, r
    ev = t.wait_event(lambda e: e["id"] == 5102, "event 5102 dumpster.resubmit_refused")
    assert ev["subject"] == "db1" and ev["severity"] == "warning", ev


def test_retention(tandem_bin, tandemctl, tmp_path, pair):
    m, t = pair
    # Small limits: a second's age, and a size that holds about two entries (of 5 KiB: the
    # smallest max_size is 4K).
    for i in range(3):
        send(t, ["alice@example.test"], f"r{i}", pad=5000)
    st = dumpster_status(tandemctl, t)["db1"]
    assert st["count"] == 3
    one = st["bytes"] // 3
    t.stop(t.proc)
    t.extra_conf += f"\n[dumpster]\nmax_age = 1h\nmax_size = {2 * one + one // 2}\n"
    t.write_conf(server="hub1", level="info")
    t.proc = t.start()
    t.started(t.proc)
    wait_for(lambda: _try_send(t, "r3"), "hub1 taking mail again")
    st = dumpster_status(tandemctl, t)["db1"]
    assert st["count"] == 2, st  # the oldest went for the size
    t.stop(t.proc)
    t.extra_conf = t.extra_conf.replace("max_age = 1h", "max_age = 1s")
    t.write_conf(server="hub1", level="info")
    time.sleep(2)  # the age limit is whole seconds of delivery time
    t.proc = t.start()
    t.started(t.proc)
    wait_for(lambda: _try_send(t, "r4"), "hub1 taking mail again")
    st = dumpster_status(tandemctl, t)["db1"]
    assert st["count"] == 1, st  # only the newest is younger than a second


def _try_send(t, subject):
    try:
        send(t, ["alice@example.test"], subject, pad=5000)
        return True
    except (OSError, smtplib.SMTPException):
        return False


def dumpster_files(t):
    d = t.datadir / "dumpster" / "db1"
    return list(d.glob("*.msg")) if d.exists() else []


def kept(t, subject):
    return any(f"Subject: {subject}\r\n".encode() in f.read_bytes() for f in dumpster_files(t))


def test_acknowledged_is_kept_through_kill_9(pair, tandemctl):
    """The dumpster is written off the SMTP worker's loop, and the client's 250 still comes
    only once the entry is on disk (docs/smtp.md, "Transport dumpster"): right after each 250
    the message's entry is there under its final name, and a kill -9 of the whole transport
    server right after a 250 loses nothing; after the restart every entry reads back whole
    (a resubmission takes each one, as a duplicate)."""
    m, t = pair
    for i in range(5):
        send(t, ["alice@example.test"], f"k{i}")
        assert kept(t, f"k{i}"), f"k{i} acknowledged but not in the dumpster"
        assert len(dumpster_files(t)) == i + 1
    send(t, ["alice@example.test", "bob@example.test"], "last")
    t.kill_all()  # SIGKILL to the supervisor and every child at once
    assert kept(t, "last")
    t.proc = t.start()
    t.started(t.proc)

    def admin_up():
        try:
            return t.api("GET", "/v1/dumpster").status == 200
        except OSError:
            return False
    wait_for(admin_up, "hub1's admin API")
    assert dumpster_status(tandemctl, t)["db1"]["count"] == 6
    r = resubmit(t)
    assert r == {"ok": True, "messages": 6, "resubmitted": 7, "deferred": 0, "refused": 0}, r


def test_a_message_the_dumpster_cannot_keep_is_not_acknowledged(pair, tandem_bin):
    """The mailbox server took the message but the dumpster could not keep it: the client
    hears 451, not 250, since a lossy failover could lose it with nothing to resubmit. Its
    retry carries the same delivery ids, so the mailbox holds it once, and the dumpster keeps
    it this time."""
    m, t = pair
    send(t, ["alice@example.test"], "before")  # makes dumpster/db1
    d = t.datadir / "dumpster" / "db1"
    moved = d.parent / "db1.away"
    d.rename(moved)
    d.write_text("not a directory\n")  # every entry for db1 fails now
    c = smtplib.SMTP(t.addr, t.ports["smtp"], timeout=WAIT)
    c.ehlo("client.test")
    msg = f"From: {SENDER}\r\nSubject: unkept\r\n\r\nHello.\r\n".encode()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        c.sendmail(SENDER, ["alice@example.test"], msg)
    assert refused.value.smtp_code == 451, refused.value
    c.quit()
    t.wait_event(lambda e: e["id"] == 5101, "event 5101 dumpster write failed")
    d.unlink()
    moved.rename(d)
    c = smtplib.SMTP(t.addr, t.ports["smtp"], timeout=WAIT)
    c.ehlo("client.test")
    assert c.sendmail(SENDER, ["alice@example.test"], msg) == {}  # the client's retry
    c.quit()
    assert [s for _, s in inbox(tandem_bin, m.db, "alice")] == ["before", "unkept"]
    assert kept(t, "unkept")
