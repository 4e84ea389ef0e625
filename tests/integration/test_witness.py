"""The witness role's coordination store (docs/cluster.md, "Leases and epochs";
docs/formats/coord.md) on a real tandemd, driven by tdm_coord_cli (coord_cli.c), which is
src/coord/coord_client.h as the cluster agent uses it: TLS with a client certificate, HELLO
with a server key the witness checks against its directory. A lease is granted with epoch 1, a
second node is denied, the holder's disconnect frees it at once for epoch 2, min_epoch is
honoured; after kill -9 and a restart of the witness the lease is still held with its epoch and
a full time to live, and the next grant's epoch is higher; CAS conflicts; a malformed frame is
answered with ERROR while the nodes' sessions go on."""
import json
import secrets
import select
import socket
import ssl
import struct
import subprocess
import time

import pytest

from lab import WAIT, Server, wait_for

KEY = "cms/mail1"


class Witness(Server):
    def roles_expected(self):
        # [listen coord] is the core's: no worker for it.
        return {"core", "worker-admin-socket",
                *(f"worker-{p}" for p in self.ports if p not in ("replication", "coord"))}


class Node:
    """One tdm_coord_cli: a node's session with the witness."""

    def __init__(self, exe, w, member, secret_file):
        tls = w.datadir / "tls"
        self.p = subprocess.Popen(
            [str(exe), "--ca", str(w.ca), "--cert", str(tls / "server.pem"),
             "--key", str(tls / "server.key"), "--member", member,
             "--secret-file", str(secret_file), f"{w.addr}:{w.ports['coord']}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        assert self.next_line()["event"] == "up"

    def next_line(self):
        r, _, _ = select.select([self.p.stdout], [], [], WAIT)
        assert r, "tdm_coord_cli said nothing"
        line = self.p.stdout.readline()
        assert line, "tdm_coord_cli ended"
        return json.loads(line)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        while True:
            m = self.next_line()
            if "op" in m:
                return m
            self.lines.append(m)

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=WAIT)


@pytest.fixture
def witness(tandem_bin, tmp_path):
    w = Witness(tandem_bin("tandemd"), tmp_path, "wit1", roles="witness, directory",
                listeners=("admin", "coord"))
    p = w.start()
    w.started(p)
    w.wait_api()
    ok = lambda r: r.status in (200, 201)
    secrets_dir = tmp_path / "keys"
    secrets_dir.mkdir()
    for member in ("mb1", "mb2", "mb3"):
        key = secrets.token_urlsafe(24)
        assert ok(w.api("PUT", f"/v1/objects/server/{member}", {"attrs": {"site": "dc1"}}))
        assert ok(w.api("PUT", f"/v1/objects/server/{member}/password", {"password": key}))
        if member != "mb3":  # mb3 has a key but is no member of servers
            assert ok(w.api("POST", "/v1/objects/group/servers/members/add",
                            {"member": f"server:{member}"}))
        (secrets_dir / member).write_text(key + "\n")
    nodes = []

    def node(member):
        n = Node(tandem_bin("tests/integration/tdm_coord_cli"), w, member, secrets_dir / member)
        nodes.append(n)
        return n
    yield w, p, node, secrets_dir
    for n in nodes:
        n.close()
    w.kill_all()


def acquire_until_granted(n, ttl, min_epoch=0):
    def granted():
        r = n.ask(f"acquire {KEY} {ttl} {min_epoch}")
        assert r["status"] == 0, r
        return r if r["lease"] == "granted" else None
    return wait_for(granted, "the lease granted")


def test_leases_epochs_and_restart(witness, tandem_bin):
    w, p, node, secrets_dir = witness
    n1 = node("mb1")
    r = n1.ask(f"acquire {KEY} 60000 0")
    assert (r["status"], r["lease"], r["epoch"], r["ttl_ms"]) == (0, "granted", 1, 60000)
    n2 = node("mb2")
    r = n2.ask(f"acquire {KEY} 60000 0")
    assert (r["lease"], r["holder"], r["epoch"]) == ("denied", "mb1", 1)
    assert 50000 < r["remaining_ms"] <= 60000
    # The holder's connection ends: the lease is free at once (not after 60 s) for epoch 2.
    n1.close()
    r = acquire_until_granted(n2, 60000)
    assert r["epoch"] == 2
    ev = w.wait_event(lambda e: e["id"] == 5003, "lease freed event")
    assert "mb1" in ev["message"] and ev["subject"] == KEY
    assert any(e["id"] == 5001 and "epoch 2" in e["message"] for e in w.event_lines())
    # Released, then taken by a node that knows a higher epoch: min_epoch wins.
    r = n2.ask(f"release {KEY} 2")
    assert r["lease"] == "released"
    n1 = node("mb1")
    r = n1.ask(f"acquire {KEY} 10000 10")
    assert (r["lease"], r["epoch"]) == ("granted", 10)

    # kill -9 the witness 6 s into that 10 s lease and start it again: the lease is still mb1's,
    # epoch 10, with a full ttl counted from the restart (not the 4 s it had left).
    time.sleep(6)
    w.kill_all()
    p = w.start()
    w.started(p)
    w.wait_event(lambda e: e["id"] == 5000 and "1 held lease" in e["message"]
                 and e["ts"] > ev["ts"], "store reopened")
    n2 = node("mb2")
    r = n2.ask(f"acquire {KEY} 60000 0")
    assert (r["lease"], r["holder"], r["epoch"]) == ("denied", "mb1", 10)
    assert r["remaining_ms"] > 5000, r
    # mb1 comes back and renews: same epoch.
    n1 = node("mb1")
    r = n1.ask(f"acquire {KEY} 60000 0")
    assert (r["lease"], r["epoch"]) == ("granted", 10)
    n1.close()
    assert acquire_until_granted(n2, 60000)["epoch"] == 11
    w.stop(p)


def test_cas_auth_and_malformed_frame(witness, tandem_bin):
    w, p, node, secrets_dir = witness
    n1 = node("mb1")
    n2 = node("mb2")
    r = n1.ask("cas cluster/ccr1/last-failover 0 first")
    assert (r["status"], r["version"], r["value"]) == (0, 1, "first")
    r = n2.ask("cas cluster/ccr1/last-failover 0 second")
    assert r["status"] != 0 and r["version"] == 1 and r["value"] == "first"
    r = n2.ask("get cluster/ccr1/last-failover")
    assert (r["status"], r["version"], r["value"]) == (0, 1, "first")

    # A server that is not in `servers` is refused at HELLO.
    exe = tandem_bin("tests/integration/tdm_coord_cli")
    tls = w.datadir / "tls"
    refused = subprocess.Popen(
        [str(exe), "--ca", str(w.ca), "--cert", str(tls / "server.pem"), "--key",
         str(tls / "server.key"), "--member", "mb3", "--secret-file", str(secrets_dir / "mb3"),
         f"{w.addr}:{w.ports['coord']}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out = refused.stdout.readline()
    assert refused.wait(timeout=WAIT) == 3
    lost = json.loads(out)
    assert lost["event"] == "lost" and "auth" in lost["why"], lost
    refused.stdin.close()
    refused.stdout.close()
    assert w.wait_event(lambda e: e["id"] == 5007 and e["subject"] == "mb3", "node refused")

    # A malformed frame over TLS gets ERROR `protocol` and the connection closes; the nodes'
    # sessions go on.
    ctx = ssl.create_default_context(cafile=str(w.ca))
    ctx.load_cert_chain(str(tls / "server.pem"), str(tls / "server.key"))
    raw = socket.create_connection((w.addr, w.ports["coord"]), timeout=WAIT)
    s = ctx.wrap_socket(raw, server_hostname=w.addr)
    s.sendall(struct.pack("<IHHII", 29, 1, 28, 5, 0) + b"\x03" + b"\x00" * 8 + b"\xde\xad\xbe\xef")
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.close()
    length, version, mtype = struct.unpack("<IHH", got[:8])
    assert mtype == 32 and length == len(got)  # ERROR, and nothing after it
    assert b"checksum" in got
    r = n1.ask(f"acquire {KEY} 60000 0")
    assert (r["status"], r["lease"]) == (0, "granted")
    r = n2.ask(f"acquire {KEY} 60000 0")
    assert (r["lease"], r["holder"]) == ("denied", "mb1")
    w.stop(p)


# A CMS's recorded log end (docs/cluster.md "The recorded log end", cluster/cluster_end.h) as
# the active writes it into the value of its lease's key, percent-encoded for tdm_coord_cli.
LOG_END = "tandem-cms-end 1\nholder mb1\nepoch 1\ndb db1 1 105 5 3000\n"


def pct(s):
    return s.replace("%", "%25").replace(" ", "%20").replace("\n", "%0A")


def test_witness_status(witness, tandemctl, tmp_path):
    """GET /v1/witness and tandemctl witness status: after a node takes a lease and records its
    log end, both show the lease (holder, epoch, time left, connected), the record decoded and
    the nodes connected; a plain value shows as text."""
    w, p, node, secrets_dir = witness
    n1 = node("mb1")
    r = n1.ask(f"acquire {KEY} 60000 0")
    assert (r["lease"], r["epoch"]) == ("granted", 1)
    r = n1.ask(f"cas {KEY} 0 {pct(LOG_END)}")
    assert (r["status"], r["version"], r["value"]) == (0, 1, LOG_END)
    n2 = node("mb2")
    assert n2.ask("cas cluster/ccr1/note 0 hello")["status"] == 0

    r = w.api("GET", "/v1/witness")
    assert r.status == 200, r
    doc = r.json()
    assert doc["server"] == "wit1"
    (lease,) = doc["leases"]
    assert (lease["key"], lease["holder"], lease["epoch"], lease["ttl_ms"],
            lease["holder_connected"]) == (KEY, "mb1", 1, 60000, True)
    assert 0 < lease["remaining_ms"] <= 60000
    # mb1's one ACQUIRE granted it: a grant, as long ago as the ttl has run down.
    assert lease["renewed_by"] == "grant"
    assert lease["renewed_ms_ago"] + lease["remaining_ms"] == 60000
    values = {v["key"]: v for v in doc["values"]}
    assert values[KEY]["version"] == 1 and values[KEY]["length"] == len(LOG_END)
    assert values[KEY]["log_end"] == {
        "holder": "mb1", "epoch": 1,
        "dbs": [{"name": "db1", "epoch": 1, "lsn": 105, "generation": 5, "offset": 3000}]}
    assert values["cluster/ccr1/note"]["text"] == "hello"
    assert "log_end" not in values["cluster/ccr1/note"]
    connected = {s["member"]: s for s in doc["connected"]}
    assert set(connected) == {"mb1", "mb2"}
    assert connected["mb1"]["leases"] == 1 and connected["mb2"]["leases"] == 0
    assert connected["mb1"]["peer"].startswith("127.")
    for m in connected.values():
        assert 0 <= m["last_request_ms_ago"] <= m["connected_ms_ago"]
    assert doc["counters"] == {
        "sessions_accepted": 2, "sessions_refused": 0, "requests": doc["counters"]["requests"],
        "granted": 1, "renewed": 0, "denied": 0, "cas_written": 2, "cas_conflicts": 0,
        "expired": 0, "freed": 0}
    assert doc["counters"]["requests"] >= 2 + 3  # 2 HELLOs, acquire and 2 CAS, any PINGs
    # The same object is GET /v1/cluster's `witness` member (one core request serves both).
    assert w.api("GET", "/v1/cluster").json()["witness"]["leases"][0]["key"] == KEY

    r = tandemctl("witness", "status", "--json", "--socket", w.admin_socket)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["values"][0]["log_end"]["dbs"][0]["lsn"] == 105
    r = tandemctl("witness", "status", "--socket", w.admin_socket)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Witness wit1: 1 lease(s), 1 held; 2 value(s); 2 node(s) connected" in out
    assert ("session(s) accepted, 0 refused" in out and "leases 1 granted, 0 renewed, 0 denied, "
            "0 expired, 0 freed at a session's end; values 2 written, 0 conflict(s)" in out), out
    # Three tables after the summary line, each a header and its rows.
    tables = {t.splitlines()[0].split()[0]: [ln.split() for ln in t.splitlines()[1:]]
              for t in out.split("\n\n")[1:]}
    row = tables["LEASE"][0]
    assert row[:3] + row[4:8] + row[9:] == [KEY, "mb1", "1", "ms", "60000", "ms", "grant", "ms",
                                            "ago", "yes"], out
    assert 0 < int(row[3]) <= 60000 and 0 <= int(row[8]) <= 60000
    assert (" ".join(tables["VALUE"][0]) == f"{KEY} 1 mb1 in epoch 1: db1 at lsn 105 (epoch 1, "
            "generation 5, offset 3000)"), out
    assert tables["VALUE"][1] == ["cluster/ccr1/note", "1", '"hello"'], out
    assert sorted((r[0], r[1], r[3]) for r in tables["NODE"]) == [("mb1", "ccr1", "1"),
                                                                   ("mb2", "ccr1", "0")], out
    assert all(r[5:7] == ["ms", "ago"] and r[8:] == ["ms", "ago"] for r in tables["NODE"]), out

    # mb1 renews: the lease says so; mb2 is denied; both are counted.
    assert n1.ask(f"acquire {KEY} 60000 0")["lease"] == "granted"
    assert n2.ask(f"acquire {KEY} 60000 0")["lease"] == "denied"
    doc = w.api("GET", "/v1/witness").json()
    assert doc["leases"][0]["renewed_by"] == "renewal"
    assert (doc["counters"]["renewed"], doc["counters"]["denied"]) == (1, 1)

    # The holder goes: the lease is free (epoch kept), its record stays, mb1 is not connected.
    n1.close()
    def freed():
        d = w.api("GET", "/v1/witness").json()
        return d if d["leases"][0]["holder"] is None else None
    doc = wait_for(freed, "the lease freed")
    assert doc["leases"][0]["epoch"] == 1
    assert doc["counters"]["freed"] == 1
    assert [s["member"] for s in doc["connected"]] == ["mb2"]
    assert {v["key"] for v in doc["values"]} == {KEY, "cluster/ccr1/note"}
    r = tandemctl("witness", "status", "--socket", w.admin_socket)
    assert "1 lease(s), 0 held" in r.stdout and "(free)" in r.stdout, r.stdout
    w.stop(p)


def test_witness_status_on_a_server_without_the_role(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "dir1", roles="directory", listeners=("admin",))
    p = s.start()
    s.started(p)
    s.wait_api()
    try:
        r = s.api("GET", "/v1/witness")
        assert r.status == 404, r
        assert r.json()["error"]["message"] == "this server has no witness role"
        r = tandemctl("witness", "status", "--socket", s.admin_socket)
        assert r.returncode == 7, (r.stdout, r.stderr)
        assert "this server has no witness role" in r.stderr and r.stdout == ""
        r = tandemctl("witness", "status", "--json", "--socket", s.admin_socket)
        assert r.returncode == 7
        # GET /v1/cluster carries no witness member there.
        assert "witness" not in s.api("GET", "/v1/cluster").json()
    finally:
        s.kill_all()


def test_witness_status_with_the_role_but_no_store(tandem_bin, tandemctl, tmp_path):
    """The witness role without [listen coord] serves no coordination store: 503, exit 10."""
    s = Witness(tandem_bin("tandemd"), tmp_path, "wit2", roles="witness, directory",
                listeners=("admin",))
    p = s.start()
    s.started(p)
    s.wait_api()
    try:
        r = s.api("GET", "/v1/witness")
        assert r.status == 503, r
        assert "serves no coordination store" in r.json()["error"]["message"]
        r = tandemctl("witness", "status", "--socket", s.admin_socket)
        assert r.returncode == 10, (r.stdout, r.stderr)
        assert "has the witness role but serves no coordination store" in r.stderr
    finally:
        s.kill_all()
