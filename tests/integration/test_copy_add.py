"""`tandemctl copy add <database> -c <config>` (docs/replication.md, "Copies"): B's copy of A's
database made from the directory's objects alone. Each missing object or attribute on the way
is named and nothing is written; once the copy, database and cms objects are there, the
copy.conf it writes says what they say, and B, started with it, seeds its copy from A and ends
up equal to it."""
import secrets

from lab import Server, wait_for
from test_replication import caught_up, deliver, dump, wait_status

DB = "mail"


def test_copy_add_from_the_directory(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("imap", "lmtp", "admin", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=())
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.write_conf(server="b", level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    for s in (a, b):
        p = s.start()
        s.started(p)
        s.stop(p)
    both = tmp_path / "cas.pem"
    both.write_text(a.ca.read_text() + b.ca.read_text())
    for s in (a, b):
        s.extra_conf = f"\n[tls]\nca = {both}\n"
        s.write_conf(server=s.name, level="info")

    ap = a.start()
    a.started(ap)
    a.wait_api()
    try:
        key = secrets.token_urlsafe(32)
        ok = lambda r: r.status in (200, 201)
        assert ok(a.api("PUT", "/v1/objects/server/b", {"attrs": {"site": "dc1"}}))
        assert ok(a.api("PUT", "/v1/objects/server/b/password", {"password": key}))
        assert ok(a.api("POST", "/v1/objects/group/servers/members/add",
                        {"member": "server:b"}))
        assert ok(a.api("PUT", "/v1/objects/user/alice",
                        {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
        (b.datadir / "server.key").write_text(key + "\n")
        marker = b.datadir / "db" / DB / "copy.conf"

        def add(*extra):
            # B's config says where the copy goes and whose copy object to use; the
            # directory is A's (B has no directory role).
            return tandemctl("copy", "add", DB, "-c", b.conf, "--socket", a.admin_socket,
                             *extra)

        def refused(code, *words):
            r = add()
            assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
            for w in words:
                assert w in r.stderr, r.stderr
            assert not marker.exists()

        # Step by step, each missing piece named.
        refused(7, "no copy object", "database mail", "server b")
        assert ok(a.api("PUT", "/v1/objects/copy/mail-b",
                        {"attrs": {"database": DB, "server": "b"}}))
        refused(7, "copy object mail-b has no role")
        assert ok(a.api("PUT", "/v1/objects/copy/mail-b",
                        {"attrs": {"database": DB, "server": "b", "role": "passive",
                                   "replay_lag_minutes": 30}}))
        refused(2, "passive copy replays at once", "30")
        assert ok(a.api("PUT", "/v1/objects/copy/mail-b",
                        {"attrs": {"database": DB, "server": "b", "role": "passive",
                                   "truncation_lag_minutes": 90}}))
        refused(7, "copy object mail-b names database object mail")
        assert ok(a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {}}))
        refused(7, "database object mail has no cms")
        assert ok(a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"cms": "cms1"}}))
        refused(7, "database object mail names cms object cms1")
        assert ok(a.api("PUT", "/v1/objects/cms/cms1", {"attrs": {"network": "public"}}))
        refused(7, "cms object cms1 has no address")
        assert ok(a.api("PUT", "/v1/objects/cms/cms1",
                        {"attrs": {"network": "public", "address": a.addr,
                                   "replication_port": a.ports["replication"]}}))
        # A second copy object for the same server and database is ambiguous.
        assert ok(a.api("PUT", "/v1/objects/copy/mail-b2",
                        {"attrs": {"database": DB, "server": "b", "role": "standby"}}))
        refused(8, "2 copy objects")
        # ... and another server's copy object is found by --server-name.
        assert ok(a.api("PUT", "/v1/objects/copy/mail-b2",
                        {"attrs": {"database": DB, "server": "c", "role": "standby",
                                   "replay_lag_minutes": 10080}}))
        r = add("--server-name", "c")
        assert r.returncode == 0, r.stderr
        text = marker.read_text()
        assert "role = standby" in text and "replay_lag = 7d" in text, text
        marker.unlink()

        r = add()
        assert r.returncode == 0, r.stderr
        text = marker.read_text()
        assert "role = passive" in text and "truncation_lag = 90m" in text, text
        assert "[source public]" in text
        assert f"endpoint = {a.addr}:{a.ports['replication']}" in text, text

        # B runs the copy it was given: seeded from A, equal to it.
        for i in range(3):
            deliver(a, "alice@example.test", f"alice {i}")
        bp = b.start()
        b.started(bp)
        wait_status(b)
        c = wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up with A")
        assert c["role"] == "passive" and c["network"] == "public"
        assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
        # Status says the mode the active ships in, and that the list is whole.
        r = tandemctl("copy", "status", "--socket", b.admin_socket)
        assert r.returncode == 0 and "replication mode block; not compressed" in r.stdout, r.stdout
        assert r.stderr == "", r.stderr
        assert b.api("GET", "/v1/copies").json()["total"] == 1
        b.stop(bp)
    finally:
        b.kill_all()
        a.kill_all()
