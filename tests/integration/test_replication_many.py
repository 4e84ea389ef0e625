"""Many copies (issue 5: "at least four standby copies per database, and one server may hold
copies of many databases"): one active server A with two databases, four standby copies of
`mail` on four servers S1-S4, and S1 holding a passive copy of `mail2` as well. After mail
over LMTP and changes over IMAP every copy holds all of its active's log; the passive's
content equals its active's, and so does each standby's once its log is replayed (a standby
holds back its last 50 generations while it is a copy, so its content is compared as an
activation would see it: a snapshot of the stopped copy, recovered offline)."""
import json
import secrets
import shutil

import pytest

from lab import Server, wait_for
from test_replication import deliver, dump, imap_changes, wait_status

STANDBYS = 4


def copies(tandemctl, s):
    """{database: status} of the copies s holds."""
    r = tandemctl("copy", "status", "--json", "--socket", s.admin_socket)
    assert r.returncode == 0, r.stderr
    return {c["database"]: c for c in json.loads(r.stdout)["copies"]}


def durable_lsn(a, name):
    (db,) = [d for d in a.api("GET", "/v1/status").json()["databases"] if d["name"] == name]
    return db["durable_lsn"]


@pytest.fixture
def fleet(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("imap", "lmtp", "admin", "replication"))
    standbys = []
    for i in range(1, STANDBYS + 1):
        (tmp_path / f"s{i}").mkdir()
        s = Server(exe, tmp_path / f"s{i}", f"s{i}", roles="mailbox", listeners=())
        s.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
        standbys.append(s)
    servers = [a, *standbys]
    (a.datadir / "db").mkdir(parents=True)
    for name in ("mail", "mail2"):
        r = tandemctl("db", "create", a.datadir / "db" / name)
        assert r.returncode == 0, r.stderr
    # Each server makes its local CA at its first start (all at once); every one then trusts
    # all of them, as A checks each copy's certificate and each copy checks A's.
    procs = [s.start() for s in servers]
    for s, p in zip(servers, procs):
        s.started(p)
    for s, p in zip(servers, procs):
        s.stop(p)
    cas = tmp_path / "cas.pem"
    cas.write_text("".join(s.ca.read_text() for s in servers))
    for s in servers:
        s.extra_conf = f"\n[tls]\nca = {cas}\n"
        s.write_conf(server=s.name, level="info")

    ap = a.start()
    a.started(ap)
    a.wait_api()
    ok = lambda r: r.status in (200, 201)
    source = ("--source", f"public={a.addr}:{a.ports['replication']}")
    for s in standbys:
        key = secrets.token_urlsafe(32)
        assert ok(a.api("PUT", f"/v1/objects/server/{s.name}", {"attrs": {"site": "dc2"}}))
        assert ok(a.api("PUT", f"/v1/objects/server/{s.name}/password", {"password": key}))
        assert ok(a.api("POST", "/v1/objects/group/servers/members/add",
                        {"member": f"server:{s.name}"}))
        (s.datadir / "server.key").write_text(key + "\n")
        r = tandemctl("copy", "create", s.datadir / "db" / "mail", "--role", "standby",
                      "--replay-lag", "0s", *source)
        assert r.returncode == 0, r.stderr
    r = tandemctl("copy", "create", standbys[0].datadir / "db" / "mail2", "--role", "passive",
                  *source)
    assert r.returncode == 0, r.stderr
    for user, db in (("alice", "mail"), ("bob", "mail2")):
        assert ok(a.api("PUT", f"/v1/objects/user/{user}",
                        {"attrs": {"addresses": [f"{user}@example.test"], "database": db}}))
        assert ok(a.api("PUT", f"/v1/objects/user/{user}/password", {"password": "secret-pw"}))
    procs = [s.start() for s in standbys]
    for s, p in zip(standbys, procs):
        s.started(p)
        wait_status(s)
    yield a, standbys, procs
    for s in servers:
        s.kill_all()


def test_four_standby_copies_and_two_databases_on_one_server(fleet, tandemctl, tandem_bin,
                                                             tmp_path):
    a, standbys, procs = fleet
    for i in range(6):
        deliver(a, "alice@example.test", f"alice {i}")
    for i in range(3):
        deliver(a, "bob@example.test", f"bob {i}")
    imap_changes(a)  # folders, flags, keywords, a copy and an expunge, on mail

    lsn = {name: durable_lsn(a, name) for name in ("mail", "mail2")}

    def all_hold_the_log():
        every = [copies(tandemctl, s) for s in standbys]
        return every if all(
            c["mail"]["state"] == "Healthy" and c["mail"]["copied_lsn"] == lsn["mail"] and
            c["mail"]["copy_queue_generations"] == 0 for c in every) else None

    every = wait_for(all_hold_the_log, "four standbys holding all of mail's log")
    for s, c in zip(standbys, every):
        m = c["mail"]
        assert m["role"] == "standby" and m["inspection_failures"] == 0, m
        # Held back: the last 50 generations are not replayed, whatever the lag.
        assert m["replay_queue_records"] == m["copied_lsn"] - m["replayed_lsn"] > 0, m
    # S1 holds two copies, each of its own database, side by side.
    assert sorted(every[0]) == ["mail", "mail2"]
    assert [sorted(c) for c in every[1:]] == [["mail"]] * (STANDBYS - 1)

    def passive_caught_up():
        c = copies(tandemctl, standbys[0])["mail2"]
        return c if (c["state"] == "Healthy" and c["role"] == "passive" and
                     c["replayed_lsn"] == lsn["mail2"]) else None

    wait_for(passive_caught_up, "S1's passive copy of mail2 replayed")
    assert dump(tandem_bin, standbys[0].datadir / "db" / "mail2") == \
        dump(tandem_bin, a.datadir / "db" / "mail2")
    # The active served four distinct copies of mail, from their own addresses.
    connected = [e["message"] for e in a.event_lines()
                 if e["name"] == "repl.source_copy_connected" and e["subject"] == "mail"]
    assert all(any(f"({s.addr}:" in m for m in connected) for s in standbys), connected

    # Each standby's content as activating it would mount it: stop the server, take its copy
    # as it is, and let offline recovery replay what was held back.
    want = dump(tandem_bin, a.datadir / "db" / "mail")
    assert want["alice"]["folders"]["Projects"]["messages"]  # the IMAP changes are in it
    for s, p in zip(standbys, procs):
        s.stop(p)
        snap = tmp_path / f"{s.name}-mail"
        shutil.copytree(s.datadir / "db" / "mail", snap)
        (snap / "copy.conf").unlink()
        r = tandemctl("db", "recover", snap)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert dump(tandem_bin, snap) == want, s.name
