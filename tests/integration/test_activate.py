"""tandemctl copy activate (docs/replication.md, "Activation"): the directory on D, the active
on A, a passive copy on B that also serves IMAP and LMTP. Activation is refused while A serves
the database, with or without --force, naming A; after A is killed it is refused without
--force (nothing proves B has all of A's log) and done with it: B mounts the database in a new
epoch, reports what it lost against A's last report, and serves old and new mail over LMTP
and IMAP. With A still answering but no longer holding the database, activation needs no
--force and loses nothing."""
import imaplib
import json
import re
import shutil
import subprocess

import pytest

from lab import WAIT, Server, free_port, wait_for
from test_replication import (DB, active_lsn, caught_up, copy_status, deliver, dump,  # noqa: F401
                              pair, rcpt_ok, wait_status)


@pytest.fixture
def trio(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    for n in ("d", "a", "b"):
        (tmp_path / n).mkdir()
    d = Server(exe, tmp_path / "d", "d", roles="directory", listeners=("admin",))
    a = Server(exe, tmp_path / "a", "a", roles="mailbox", listeners=("lmtp", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=("imap", "lmtp"))
    for s in (a, b):
        s.directory_endpoint = f"{d.addr}:{d.ports['admin']}"
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    for s in (d, a, b):
        s.write_conf(server=s.name, level="info")
        p = s.start()
        s.started(p)
        s.stop(p)
    cas = tmp_path / "cas.pem"
    cas.write_text(d.ca.read_text() + a.ca.read_text() + b.ca.read_text())
    for s in (d, a, b):
        s.extra_conf = f"\n[tls]\nca = {cas}\n"
        s.write_conf(server=s.name, level="info")
    dp = d.start()
    d.started(dp)
    d.wait_api()
    ok = lambda r: r.status in (200, 201)
    for name in ("a", "b"):
        key = f"key-of-{name}-0123456789abcdef0123456789"
        assert ok(d.api("PUT", f"/v1/objects/server/{name}", {"attrs": {"site": "dc1"}}))
        assert ok(d.api("PUT", f"/v1/objects/server/{name}/password", {"password": key}))
        assert ok(d.api("POST", "/v1/objects/group/servers/members/add",
                        {"member": f"server:{name}"}))
        (tmp_path / name / "data" / "server.key").write_text(key + "\n")
    assert ok(d.api("PUT", "/v1/objects/user/alice",
                    {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
    assert ok(d.api("PUT", "/v1/objects/user/alice/password", {"password": "secret-pw"}))
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0, r.stderr
    procs = {}
    for s in (a, b):
        procs[s.name] = s.start()
        s.started(procs[s.name])
        wait_status(s)
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    for i in range(3):
        deliver(a, "alice@example.test", f"before {i}")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    yield d, a, b, procs
    for s in (b, a, d):
        s.kill_all()


def activate(tandemctl, b, *args):
    return tandemctl("copy", "activate", DB, *args, "--socket", b.admin_socket)


def epoch(tandemctl, s):
    r = tandemctl("db", "inspect", s.datadir / "db" / DB, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["epoch"]


def subjects(b):
    m = imaplib.IMAP4(b.addr, b.ports["imap"], timeout=WAIT)
    try:
        assert m.login("alice", "secret-pw")[0] == "OK"
        assert m.select("INBOX")[0] == "OK"
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return sorted(part[1].decode().strip().removeprefix("Subject: ")
                      for part in data if isinstance(part, tuple))
    finally:
        m.logout()


def serves_new_mail(tandemctl, b, old_epoch):
    """B takes mail for the database over LMTP now, in a newer epoch, and IMAP shows it
    beside the mail copied from A."""
    deliver(b, "alice@example.test", "after activation")
    assert epoch(tandemctl, b) == old_epoch + 1
    assert subjects(b) == ["after activation", "before 0", "before 1", "before 2"]


def test_activate_refused_while_the_source_is_active(trio, tandemctl):
    d, a, b, procs = trio
    endpoint = f"{a.addr}:{a.ports['replication']}"
    for args in ((), ("--force",)):
        r = activate(tandemctl, b, *args)
        assert r.returncode == 8, r  # conflict (HTTP 409)
        assert "still serves mail as active" in r.stderr and endpoint in r.stderr, r.stderr
    assert copy_status(tandemctl, b)["state"] == "Healthy"
    assert (b.datadir / "db" / DB / "copy.conf").exists()
    refused = [e for e in b.event_lines() if e["id"] == 4020]
    assert len(refused) == 2 and endpoint in refused[0]["message"], refused
    b.stop(procs["b"])


def test_activate_force_after_the_source_is_killed(trio, tandemctl):
    d, a, b, procs = trio
    old = epoch(tandemctl, b)
    a.kill_all()
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "Disconnected", "B loses A")
    r = activate(tandemctl, b)
    assert r.returncode == 8 and "--force" in r.stderr and "Disconnected" in r.stderr, r.stderr
    r = activate(tandemctl, b, "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("mail activated with --force: lost 0 generations (0 bytes, 0 records) "
                        "against the source's last report\n"), r.stdout
    assert not (b.datadir / "db" / DB / "copy.conf").exists()
    assert copy_status_empty(tandemctl, b)
    (ev,) = [e for e in b.event_lines() if e["id"] == 4021]
    assert f"epoch {old + 1}" in ev["message"], ev
    serves_new_mail(tandemctl, b, old)
    # A restart mounts it as the active again, in the new epoch.
    b.stop(procs["b"])
    p = b.start()
    b.started(p)
    wait_status(b)
    assert subjects(b) == ["after activation", "before 0", "before 1", "before 2"]
    b.stop(p)


def copy_status_empty(tandemctl, b):
    r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["copies"] == []


def test_activate_without_force_when_the_source_no_longer_holds_it(trio, tandemctl):
    d, a, b, procs = trio
    old = epoch(tandemctl, b)
    # A stops cleanly and comes back without the database (moved away by its operator): its
    # server answers, but not for the database.
    a.stop(procs["a"])
    shutil.move(a.datadir / "db" / DB, a.tmp / "moved-away")
    p = a.start()
    a.started(p)
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "ServiceDown", "A answers without it")
    r = activate(tandemctl, b)
    assert r.returncode == 0, r.stderr
    assert "lost 0 generations (0 bytes, 0 records)" in r.stdout, r.stdout
    serves_new_mail(tandemctl, b, old)
    b.stop(procs["b"])
    a.stop(p)


def test_copy_remove_deletes_the_copy_never_an_active(trio, tandemctl):
    d, a, b, procs = trio
    # A holds the database as its active: nothing there is a copy to remove.
    r = tandemctl("copy", "remove", DB, "--socket", a.admin_socket)
    assert r.returncode == 7, r
    assert (a.datadir / "db" / DB / "store").is_dir()
    r = tandemctl("copy", "remove", DB, "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "copy of mail removed\n"
    assert copy_status_empty(tandemctl, b)
    assert sorted(p.name for p in (b.datadir / "db").iterdir()) == []
    assert [e["id"] for e in b.event_lines() if e["id"] in (4023, 4024)] == [4023]
    # Gone for good: a restart starts no copy, and A carries on without it.
    b.stop(procs["b"])
    p = b.start()
    b.started(p)
    wait_status(b)
    assert copy_status_empty(tandemctl, b)
    deliver(a, "alice@example.test", "after the copy went")
    r = tandemctl("copy", "remove", DB, "--socket", b.admin_socket)
    assert r.returncode == 7, r
    b.stop(p)


def test_activate_force_reports_what_the_source_had_beyond_the_copy(pair, tandemctl):
    """In file mode a record in the active's open generation is not shipped, but the active's
    POSITION reports it: activation with --force after the active dies reports it lost."""
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "shipped in block mode")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    r = a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"replication": "file"}})
    assert r.status in (200, 201), r
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    a.wait_api()
    wait_for(lambda: copy_status(tandemctl, b)["mode"] == "file", "B shipping in file mode")
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    deliver(a, "alice@example.test", "never shipped")
    lsn = active_lsn(a)
    c = wait_for(lambda: (lambda c: c if c["source_lsn"] == lsn else None)(
        copy_status(tandemctl, b)), "A's POSITION with the new record")
    shipped = c["copied_lsn"]
    assert 0 < shipped < lsn, c
    a.kill_all()
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "Disconnected", "B loses A")
    r = tandemctl("copy", "activate", DB, "--force", "--json", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["forced"] is True and doc["lost"]["records"] == lsn - shipped, doc
    (ev,) = [e for e in b.event_lines() if e["id"] == 4021]
    assert f"{lsn - shipped} records" in ev["message"], ev
    b.stop(bp)


def test_activate_without_force_refused_when_records_are_missing(pair, tandemctl):
    """File mode: the record in the active's open generation never shipped. With the active
    back without the database (ServiceDown), the copy queue counts no generation or byte, but
    the active's last POSITION had the record: activation without --force is refused."""
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "shipped in block mode")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    r = a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"replication": "file"}})
    assert r.status in (200, 201), r
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    a.wait_api()
    wait_for(lambda: copy_status(tandemctl, b)["mode"] == "file", "B shipping in file mode")
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    deliver(a, "alice@example.test", "never shipped")
    lsn = active_lsn(a)
    wait_for(lambda: copy_status(tandemctl, b)["source_lsn"] == lsn, "A's POSITION with it")
    a.kill_all()
    # A's server comes back, but without the database (kept aside, as an operator would).
    shutil.move(a.datadir / "db" / DB, a.datadir / "aside")
    ap = a.start()
    a.started(ap)
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "ServiceDown", "A answers without it")
    r = activate(tandemctl, b)
    assert r.returncode == 8 and "records behind" in r.stderr, (r.returncode, r.stderr)
    assert (b.datadir / "db" / DB / "copy.conf").exists()
    b.stop(bp)
    a.stop(ap)


def test_old_active_rejoining_after_a_lossy_activation_is_failed_diverged(pair, tandemctl,
                                                                          tmp_path):
    """A lossy failover (docs/replication.md, "Divergence"): A's last record never reached B
    (file mode), A is killed and B activated with --force in a new epoch, in which it writes a
    record of that LSN. A, back as a copy of B (its copy.conf written as the cluster agent
    does at a rejoin), holds a record B never had: B's source answers diverged and A's copy
    is Failed, naming A's last LSN and epoch and the need for a reseed, and is not retried; B
    goes on serving."""
    a, ap, b, bp = pair
    key = "key-of-a-0123456789abcdef0123456789"
    ok = lambda r: r.status in (200, 201)
    assert ok(a.api("PUT", "/v1/objects/server/a", {"attrs": {"site": "dc1"}}))
    assert ok(a.api("PUT", "/v1/objects/server/a/password", {"password": key}))
    assert ok(a.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:a"}))
    (a.datadir / "server.key").write_text(key + "\n")
    deliver(a, "alice@example.test", "shipped in block mode")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    assert ok(a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"replication": "file"}}))
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    a.wait_api()
    wait_for(lambda: copy_status(tandemctl, b)["mode"] == "file", "B shipping in file mode")
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    deliver(a, "alice@example.test", "never shipped")
    lsn = active_lsn(a)
    wait_for(lambda: copy_status(tandemctl, b)["source_lsn"] == lsn, "A's POSITION with it")
    a.kill_all()
    old_epoch = epoch(tandemctl, a)
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "Disconnected", "B loses A")
    r = activate(tandemctl, b, "--force")
    assert r.returncode == 0, r.stderr
    assert epoch(tandemctl, b) == old_epoch + 1

    # A comes back as a copy of B (B's directory is on A), pointed at B's replication port
    # before B listens there: B first takes mail in its epoch, then serves replication.
    b.stop(bp)
    replication = free_port(b.addr)
    b.ports["lmtp"] = free_port(b.addr)
    b.write_conf(server="b", level="info")
    bp = b.start()
    b.started(bp)
    wait_status(b)
    conf = tmp_path / "conf"
    r = tandemctl("copy", "create", conf, "--role", "passive",
                  "--source", f"public={b.addr}:{replication}")
    assert r.returncode == 0, r.stderr
    shutil.copy(conf / "copy.conf", a.datadir / "db" / DB / "copy.conf")
    ap = a.start()
    a.started(ap)
    wait_status(a)
    wait_for(lambda: rcpt_ok(b, "alice@example.test"), "alice known on B")
    deliver(b, "alice@example.test", "after activation")  # B's record at A's lost LSN
    assert copy_status(tandemctl, a)["state"] != "Failed"
    b.stop(bp)
    b.ports["replication"] = replication
    b.write_conf(server="b", level="info")
    bp = b.start()
    b.started(bp)
    wait_status(b)
    c = wait_for(lambda: (lambda c: c if c["state"] == "Failed" else None)(
        copy_status(tandemctl, a)), "A's copy Failed")
    assert c["message"].startswith(
        f"diverged from the active at LSN {lsn} (epoch {old_epoch}): needs a reseed ("), c
    (ev,) = [e for e in a.event_lines() if e["id"] == 4005]
    assert ev["message"].endswith(c["message"]), ev
    # B's LSN there is of its own epoch: the histories differ from that record on.
    assert f"LSN {lsn}, is of epoch {old_epoch}, the active's record at that LSN of epoch " \
        f"{old_epoch + 1}" in c["message"], c
    refused = b.wait_event(lambda e: e["id"] == 4051, "B refused A's copy (4051)")
    assert "diverged" in refused["message"], refused
    # Failed for good: A does not ask again, and B still takes mail.
    deliver(b, "alice@example.test", "after the rejoin")
    assert copy_status(tandemctl, a)["state"] == "Failed"
    assert len([e for e in b.event_lines() if e["id"] == 4051]) == 1
    b.stop(bp)
    a.stop(ap)



def log_files(s):
    return sorted(f.name for f in (s.datadir / "db" / DB / "log").iterdir()
                  if f.name.endswith(".log"))


def dumped_subjects(tandem_bin, s):
    inbox = dump(tandem_bin, s.datadir / "db" / DB)["alice"]["folders"]["INBOX"]
    return sorted(re.search(r"^Subject: ([^\r\n]*)", m["body"], re.M).group(1)
                  for m in inbox["messages"])


def test_activate_force_of_a_copy_reseeded_in_file_mode(pair, tandem_bin, tandemctl):
    """A copy reseeded from a snapshot in file mode holds no log generation until A closes the
    one it writes, yet it is Healthy (its copy queue is empty, as a file-mode copy's is while
    A's open generation grows). A killed then: activation with --force mounts it (its log
    begins after the snapshot, in the new epoch), reports what A had beyond it, and holds
    every message the snapshot held; it mounts again after a restart and its log verifies.
    Failed before: 'holds no log generations' (docs/decisions.md, "A copy without a
    generation mounts")."""
    a, ap, b, bp = pair
    for i in range(3):
        deliver(a, "alice@example.test", f"before {i}")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    ok = lambda r: r.status in (200, 201)
    assert ok(a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"replication": "file"}}))
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    a.wait_api()
    wait_for(lambda: copy_status(tandemctl, b)["mode"] == "file", "B shipping in file mode")
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    for i in range(3):
        deliver(a, "alice@example.test", f"open generation {i}")
    seeds = sum(e["name"] == "repl.copy_seeding" for e in b.event_lines())
    healthy = sum(e["name"] == "repl.copy_healthy" for e in b.event_lines())
    r = tandemctl("copy", "reseed", DB, "--delete-existing", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: sum(e["name"] == "repl.copy_seeding" for e in b.event_lines()) > seeds,
             "B's copy Seeding")
    wait_for(lambda: sum(e["name"] == "repl.copy_healthy" for e in b.event_lines()) > healthy,
             "B's copy Healthy after the seed")
    c = copy_status(tandemctl, b)
    assert c["state"] == "Healthy", c
    seeded = c["copied_lsn"]
    assert seeded == active_lsn(a), (c, active_lsn(a))
    assert log_files(b) == [], log_files(b)  # A's generation is still open: nothing shipped
    deliver(a, "alice@example.test", "never shipped")
    lsn = active_lsn(a)
    wait_for(lambda: copy_status(tandemctl, b)["source_lsn"] == lsn, "A's POSITION with it")
    old = epoch(tandemctl, a)
    a.kill_all()
    wait_for(lambda: copy_status(tandemctl, b)["state"] == "Disconnected", "B loses A")

    r = tandemctl("copy", "activate", DB, "--force", "--json", "--socket", b.admin_socket)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    # File mode: A's open generation is not counted (as the copy queue never counts it); the
    # record it had past the snapshot is.
    assert doc["forced"] is True and doc["lost"]["records"] == lsn - seeded == 1, doc
    assert doc["lost"]["generations"] == 0, doc
    (ev,) = [e for e in b.event_lines() if e["id"] == 4021]
    assert f"epoch {old + 1}" in ev["message"] and "1 records" in ev["message"], ev
    assert not [e for e in b.event_lines() if e["id"] == 4022]
    assert len(log_files(b)) >= 1
    # A restart mounts it again: its log holds the generation it began.
    b.stop(bp)
    bp = b.start()
    b.started(bp)
    wait_status(b)
    b.stop(bp)
    assert epoch(tandemctl, b) == old + 1
    assert dumped_subjects(tandem_bin, b) == [
        "before 0", "before 1", "before 2",
        "open generation 0", "open generation 1", "open generation 2"]
    r = tandemctl("db", "verify", b.datadir / "db" / DB)
    assert r.returncode == 0, (r.stdout, r.stderr)
