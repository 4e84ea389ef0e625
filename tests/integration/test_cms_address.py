"""The CMS address (docs/cluster.md, "CMS address"): a server with a standalone [cms] (no
[cluster]) listens with every client protocol and replication on the CMS's own address as well
as on its node address. IMAP and LMTP work through both; a copy whose copy.conf names the CMS
address replicates through it; a second server configured with the same CMS cannot bind the
address while the first holds it (it retries, with an event) and gets it once the first stops;
a reload that removes the [cms] brings the address down, ending the IMAP session on it with
BYE while a session on the node address goes on."""
import imaplib
import json
import os
import pathlib
import pwd
import random
import secrets
import shutil
import signal
import smtplib
import tempfile

import pytest

from lab import WAIT, Server, children, wait_for

DB = "mail"
CMS = "mail1"


def cms_section(addr):
    return f"\n[cms {CMS}]\naddress = {addr}\ndatabases = {DB}\n"


def cms_status(s):
    (c,) = [c for c in s.api("GET", "/v1/status").json()["cms"] if c["name"] == CMS]
    return c


def wait_api(s):
    def up():
        try:
            return s.api("GET", "/v1/status").status == 200
        except OSError:
            return False
    wait_for(up, f"{s.name}'s admin socket")


def deliver(addr, port, rcpt, subject):
    c = smtplib.LMTP(addr, port, timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("sender@example.org")
        assert c.rcpt(rcpt)[0] == 250
        code, _ = c.data(f"Subject: {subject}\r\nTo: {rcpt}\r\n\r\nbody\r\n".encode())
        assert code == 250
    finally:
        c.close()


def imap_session(addr, port):
    m = imaplib.IMAP4(addr, port, timeout=WAIT)
    m.login("alice", "secret-pw")
    typ, data = m.select("INBOX")
    assert typ == "OK"
    return m, int(data[0])


def events(s, eid):
    return [e for e in s.event_lines() if e["id"] == eid]


def new_server(tandem_bin, tmp_path, name, cms_addr, **kw):
    (tmp_path / name).mkdir()
    s = Server(tandem_bin("tandemd"), tmp_path / name, name, **kw)
    s.extra_conf = cms_section(cms_addr) if cms_addr else ""
    s.write_conf(server=name, level="info")
    return s


@pytest.fixture
def cms_addr():
    return f"127.78.{random.randint(1, 254)}.{random.randint(1, 254)}"


@pytest.fixture
def server_a(tandem_bin, tandemctl, tmp_path, cms_addr):
    """A: the directory, the database and a standalone CMS holding it."""
    a = new_server(tandem_bin, tmp_path, "a", cms_addr, roles="mailbox, directory",
                   listeners=("imap", "lmtp", "admin", "replication"))
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    p = a.start()
    a.started(p)
    a.wait_api()
    ok = lambda r: r.status in (200, 201)
    assert ok(a.api("PUT", "/v1/objects/user/alice",
                    {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
    assert ok(a.api("PUT", "/v1/objects/user/alice/password", {"password": "secret-pw"}))
    a.wait_event(lambda e: e["id"] == 5040, "CMS address up (5040)")
    yield a, p
    a.kill_all()


def test_clients_through_cms_and_node_address(server_a, cms_addr, tandemctl):
    a, _ = server_a
    up = events(a, 5040)[0]
    assert up["subject"] == CMS and cms_addr in up["message"]
    assert "imap:" in up["message"] and "lmtp:" in up["message"]
    assert "replication:" in up["message"] and "admin" not in up["message"]
    c = cms_status(a)
    assert c["address"] == cms_addr and c["state"] == "up" and c["up"] is True
    assert c["databases"] == [DB] and c["mount_dial"] == "good"
    r = tandemctl("status", "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    assert CMS in r.stdout and cms_addr in r.stdout

    deliver(cms_addr, a.ports["lmtp"], "alice@example.test", "via the CMS")
    deliver(a.addr, a.ports["lmtp"], "alice@example.test", "via the node")
    for addr in (cms_addr, a.addr):
        m, exists = imap_session(addr, a.ports["imap"])
        assert exists == 2
        m.logout()
    # The admin API is the node's own: not on the CMS address.
    with pytest.raises(OSError):
        smtplib.SMTP(cms_addr, a.ports["admin"], timeout=WAIT)


def test_reload_without_cms_ends_only_its_sessions(server_a, cms_addr):
    a, p = server_a
    on_cms, _ = imap_session(cms_addr, a.ports["imap"])
    on_node, _ = imap_session(a.addr, a.ports["imap"])
    a.extra_conf = ""
    a.write_conf(server="a", level="info")
    p.send_signal(signal.SIGHUP)
    a.wait_event(lambda e: e["id"] == 5041, "CMS address down (5041)")
    # The session on the CMS address is told goodbye and closed, as at shutdown.
    assert on_cms.readline().startswith(b"* BYE ")
    assert on_cms.readline() == b""
    # The one on the node address goes on.
    assert on_node.noop()[0] == "OK"
    assert on_node.select("INBOX")[0] == "OK"
    on_node.logout()
    # Nothing listens on the CMS address any more; the status says so.
    with pytest.raises(OSError):
        imaplib.IMAP4(cms_addr, a.ports["imap"], timeout=WAIT)
    assert [c for c in a.api("GET", "/v1/status").json()["cms"]] == []


def test_restarted_worker_and_core(server_a, cms_addr):
    """A worker the supervisor restarts serves the CMS address again; when the core ends, the
    address goes down with it (its decision is gone) and comes back with the new core."""
    a, p = server_a
    kids = children(p.pid)
    os.kill(kids["worker-imap"], signal.SIGKILL)
    wait_for(lambda: (lambda k: k.get("worker-imap") not in (None, kids["worker-imap"]))(
        children(p.pid)), "worker-imap restarted")

    def imap_ok():
        try:
            m, exists = imap_session(cms_addr, a.ports["imap"])
            m.logout()
            return True
        except (OSError, imaplib.IMAP4.error):
            return False
    wait_for(imap_ok, "IMAP on the CMS address from the restarted worker")
    assert len(events(a, 5040)) == 1  # the address never went down for it

    os.kill(kids["core"], signal.SIGKILL)
    a.wait_event(lambda e: e["id"] == 5041, "CMS address down with the core (5041)")
    wait_for(lambda: len(events(a, 5040)) == 2, "CMS address up again with the new core")
    wait_for(imap_ok, "IMAP on the CMS address after the core's restart")

    def status_up():
        r = a.api("GET", "/v1/status")
        return r.status == 200 and [c["state"] for c in r.json()["cms"]] == ["up"]
    wait_for(status_up, "the status shows the CMS up")  # the admin worker reconnects to the core


def test_second_server_waits_for_the_address(server_a, tandem_bin, tmp_path, cms_addr):
    a, ap = server_a
    # B: same CMS (same address, same ports) on another node address. Its ports must match
    # A's so the binds collide: the CMS's ports are the listeners' ports.
    (tmp_path / "b").mkdir()
    b = Server(tandem_bin("tandemd"), tmp_path / "b", "b", roles="mailbox", listeners=())
    b.ports = {"imap": a.ports["imap"], "lmtp": a.ports["lmtp"]}
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.extra_conf = cms_section(cms_addr)
    b.write_conf(server="b", level="info")
    (b.datadir / "db").mkdir(parents=True)
    bp = b.start()
    try:
        b.started(bp)
        b.wait_event(lambda e: e["id"] == 5042, "bind retrying (5042)")
        assert not events(b, 5040)
        wait_api(b)
        assert cms_status(b)["state"] == "binding"
        a.stop(ap)
        b.wait_event(lambda e: e["id"] == 5040, "CMS address up on B (5040)")
        assert cms_status(b)["state"] == "up"
        # B's LMTP answers on the CMS address now (A, the directory, is gone: the recipient
        # is deferred, which is B speaking).
        c = smtplib.LMTP(cms_addr, a.ports["lmtp"], timeout=WAIT)
        assert c.ehlo("client.test")[0] == 250
        c.close()
        b.stop(bp)
    finally:
        b.kill_all()


def test_copy_pulls_from_the_cms_address(tandem_bin, tandemctl, tmp_path, cms_addr):
    """A copy on B whose copy.conf names only the CMS address replicates through it."""
    a = new_server(tandem_bin, tmp_path, "a", cms_addr, roles="mailbox, directory",
                   listeners=("imap", "lmtp", "admin", "replication"))
    b = new_server(tandem_bin, tmp_path, "b", None, roles="mailbox", listeners=())
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.write_conf(server="b", level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    try:
        # Each makes its local CA at its first start; then each trusts the other's. A's
        # certificate names the CMS address, which is the one B checks it against.
        for s in (a, b):
            p = s.start()
            s.started(p)
            s.stop(p)
        both = tmp_path / "cas.pem"
        both.write_text(a.ca.read_text() + b.ca.read_text())
        a.extra_conf = cms_section(cms_addr) + f"\n[tls]\nca = {both}\n"
        b.extra_conf = f"\n[tls]\nca = {both}\n"
        for s in (a, b):
            s.write_conf(server=s.name, level="info")
        ap = a.start()
        a.started(ap)
        a.wait_api()
        key = secrets.token_urlsafe(32)
        ok = lambda r: r.status in (200, 201)
        assert ok(a.api("PUT", "/v1/objects/server/b", {"attrs": {"site": "dc1"}}))
        assert ok(a.api("PUT", "/v1/objects/server/b/password", {"password": key}))
        assert ok(a.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:b"}))
        assert ok(a.api("PUT", "/v1/objects/user/alice",
                        {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
        (b.datadir / "server.key").write_text(key + "\n")
        r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                      "--source", f"public={cms_addr}:{a.ports['replication']}")
        assert r.returncode == 0, r.stderr
        bp = b.start()
        b.started(bp)
        wait_api(b)
        deliver(cms_addr, a.ports["lmtp"], "alice@example.test", "replicated")

        def caught_up():
            r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
            if r.returncode != 0:
                return None
            (c,) = json.loads(r.stdout)["copies"]
            (d,) = [d for d in a.api("GET", "/v1/status").json()["databases"]
                    if d["name"] == DB]
            ok = c["state"] == "Healthy" and d["durable_lsn"] > 0
            return c if ok and c["replayed_lsn"] == d["durable_lsn"] else None
        c = wait_for(caught_up, "the copy caught up through the CMS address")
        assert c["endpoint"] == f"{cms_addr}:{a.ports['replication']}"
        b.stop(bp)
        a.stop(ap)
    finally:
        b.kill_all()
        a.kill_all()


def cap_eff(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to start as root to drop to a user")
def test_low_port_after_the_privilege_drop(tandem_bin, cms_addr):
    """Started as root with user = nobody and an IMAP port below 1024: the supervisor, now
    nobody, keeps CAP_NET_BIND_SERVICE alone and binds the CMS address later; its children
    have no capability at all."""
    nobody = pwd.getpwnam("nobody")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tandemd-cms-"))
    os.chmod(tmp, 0o755)
    s = Server(tandem_bin("tandemd"), tmp, "mbx1", listeners=())
    port = next(p for p in random.sample(range(600, 1000), 400)
                if all(port_free(a, p) for a in (s.addr, cms_addr)))
    s.ports = {"imap": port}
    try:
        s.datadir.mkdir(mode=0o750)
        (s.datadir / "db").mkdir(mode=0o750)
        for path in (s.datadir, s.datadir / "db"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        s.events.touch()
        os.chown(s.events, nobody.pw_uid, nobody.pw_gid)
        s.user = "nobody"
        s.extra_conf = cms_section(cms_addr)
        s.write_conf(server="mbx1", level="info")
        p = s.start()
        kids = s.started(p)
        up = s.wait_event(lambda e: e["id"] in (5040, 5043), "CMS up (5040) or failed (5043)")
        assert up["id"] == 5040, up
        assert f"imap:{port}" in up["message"]
        CAP_NET_BIND_SERVICE = 1 << 10
        assert cap_eff(p.pid) == CAP_NET_BIND_SERVICE
        assert all(cap_eff(pid) == 0 for pid in kids.values())
        imaplib.IMAP4(cms_addr, port, timeout=WAIT).shutdown()
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, s.output()
    finally:
        s.kill_all()
        shutil.rmtree(tmp)


def port_free(addr, port):
    import socket
    with socket.socket() as so:
        try:
            so.bind((addr, port))
            return True
        except OSError:
            return False


def test_a_port_in_use_serves_no_protocol(tandem_bin, tandemctl, tmp_path, cms_addr):
    """One protocol's port on the CMS address is held by another program while the others
    bind: none is served (a connection to a bound one is refused, not left waiting for a
    greeting), the event names the protocol in use and what is held, the status says
    binding; once the port is free every protocol comes up together."""
    import socket
    s = new_server(tandem_bin, tmp_path, "a", cms_addr, roles="mailbox, directory",
                   listeners=("imap", "lmtp", "admin"))
    (s.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", s.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind((cms_addr, s.ports["lmtp"]))
    holder.listen()
    p = s.start()
    try:
        s.started(p)
        ev = s.wait_event(lambda e: e["id"] == 5042, "bind retrying (5042)")
        assert f"port {s.ports['lmtp']} for lmtp is in use" in ev["message"], ev
        assert f"imap:{s.ports['imap']}" in ev["message"], ev
        wait_api(s)
        assert cms_status(s)["state"] == "binding"
        # IMAP's port is bound on the CMS address but must not accept: refused at once.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((cms_addr, s.ports["imap"]), timeout=WAIT).close()
        assert not events(s, 5040)
        # The node's own address is served meanwhile.
        m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
        m.logout()
        holder.close()
        s.wait_event(lambda e: e["id"] == 5040, "CMS address up (5040)")
        assert cms_status(s)["state"] == "up"
        m = imaplib.IMAP4(cms_addr, s.ports["imap"], timeout=WAIT)
        m.logout()
        c = smtplib.LMTP(cms_addr, s.ports["lmtp"], timeout=WAIT)
        assert c.ehlo("client.test")[0] == 250
        c.close()
        assert len(events(s, 5042)) == 1  # once per cause, not once per retry
        s.stop(p)
    finally:
        holder.close()
        s.kill_all()
