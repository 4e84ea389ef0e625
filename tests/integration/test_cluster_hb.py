"""Cluster heartbeats between real servers (docs/cluster.md, "Votes and quorum"): two nodes
(a, which also holds the directory, and b) and a witness (w), each on its own loopback address,
heartbeating over TLS with each HELLO's server key checked against the directory. All three
votes are seen; a node stopped with SIGSTOP is down on the other after about misses x interval
while quorum holds (2 of 3), and up again after SIGCONT; the witness killed with SIGKILL leaves
the nodes seeing each other with quorum. A malformed frame on [listen cluster] is answered with
ERROR and the listener goes on serving."""
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import time

import pytest

from lab import WAIT, Server, free_port, wait_for

# Generous for a loaded machine running sanitizer builds: down after 2 s unheard.
INTERVAL_MS = 400
MISSES = 5


class Member(Server):
    """A Server whose [listen cluster] is the core's, so no worker serves it."""

    def roles_expected(self):
        return super().roles_expected() - {"worker-cluster"}


def cluster_conf(me, others, witness):
    """[cluster] and a [member] per other server, for a node."""
    members = "".join(
        f"\n[member {o.name}]\npublic = {o.addr}:{o.ports['cluster']}\n" +
        (f"coord = {o.addr}:{free_port(o.addr)}\n" if o is witness else "")
        for o in others)
    return (f"\n[cluster]\nname = ccr1\nwitness = {witness.name}\n"
            f"heartbeat_interval = {INTERVAL_MS}ms\nheartbeat_misses = {MISSES}\n"
            f"lease_ttl = 2s\n{members}")


@pytest.fixture
def trio(tandem_bin, tmp_path):
    exe = tandem_bin("tandemd")
    for n in ("a", "b", "w"):
        (tmp_path / n).mkdir()
    a = Member(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("admin", "cluster"))
    b = Member(exe, tmp_path / "b", "b", roles="mailbox", listeners=("cluster",))
    w = Member(exe, tmp_path / "w", "w", roles="witness", listeners=("cluster",))
    servers = (a, b, w)
    for s in (b, w):
        s.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    # First start: each makes its local CA; then each trusts all three.
    for s in servers:
        s.write_conf(server=s.name, level="info")
        p = s.start()
        s.started(p)
        s.stop(p)
    cas = tmp_path / "cas.pem"
    cas.write_text("".join(s.ca.read_text() for s in servers))
    keys = {s.name: secrets.token_urlsafe(32) for s in servers}
    for s in servers:
        (s.datadir / "server.key").write_text(keys[s.name] + "\n")
    tls = f"\n[tls]\nca = {cas}\n"
    a.extra_conf = tls + cluster_conf(a, (b, w), w)
    b.extra_conf = tls + cluster_conf(b, (a, w), w)
    w.extra_conf = tls
    for s in servers:
        s.write_conf(server=s.name, level="info")

    ap = a.start()
    a.started(ap)
    a.wait_api()
    ok = lambda r: r.status in (200, 201)
    for s in servers:
        assert ok(a.api("PUT", f"/v1/objects/server/{s.name}", {"attrs": {"site": "dc1"}}))
        assert ok(a.api("PUT", f"/v1/objects/server/{s.name}/password",
                        {"password": keys[s.name]}))
        assert ok(a.api("POST", "/v1/objects/group/servers/members/add",
                        {"member": f"server:{s.name}"}))
    procs = {"a": ap}
    for s in (b, w):
        procs[s.name] = s.start()
        s.started(procs[s.name])
    yield a, b, w, procs
    for s in servers:
        for p in s.procs:
            try:
                os.killpg(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        s.kill_all()


def events(s, eid, subject=None, after=0):
    return [e for e in s.event_lines()[after:]
            if e["id"] == eid and (subject is None or e["subject"] == subject)]


def wait_event(s, eid, subject=None, after=0, what=""):
    return wait_for(lambda: events(s, eid, subject, after),
                    what or f"event {eid} {subject or ''} on {s.name}")[0]


def cluster(s):
    r = s.api("GET", "/v1/cluster")
    assert r.status == 200, r
    return r.json()


def member(doc, name):
    (m,) = [m for m in doc["members"] if m["name"] == name]
    return m


def votes(s, seen):
    """GET /v1/cluster once s sees that many votes."""
    return wait_for(lambda: (lambda d: d if d["votes_seen"] == seen else None)(cluster(s)),
                    f"{seen} votes seen on {s.name}")


def test_votes_stop_cont_and_witness_loss(trio, tandemctl):
    a, b, w, procs = trio
    # Every node sees every other member: 3 of 3 votes.
    for node, others in ((a, (b, w)), (b, (a, w))):
        for o in others:
            wait_event(node, 5023, o.name)
        q = wait_event(node, 5025, "ccr1")
        assert "of 3 votes seen (quorum 2)" in q["message"]
        assert not events(node, 5022), f"{node.name} saw a member go down"
    for node in (a, b):
        d = votes(node, 3)
        assert (d["cluster"], d["role"], d["votes"], d["quorum"], d["has_quorum"]) == \
            ("ccr1", "node", 3, 2, True)
        assert (d["heartbeat_interval_ms"], d["heartbeat_misses"], d["lease_ttl_ms"]) == \
            (INTERVAL_MS, MISSES, 2000)
        assert {m["name"]: (m["kind"], m["state"]) for m in d["members"]} == \
            {o.name: ("witness" if o is w else "node", "up") for o in (a, b, w) if o is not node}
        (net,) = member(d, "w")["networks"]
        assert net["network"] == "public" and net["state"] == "up" and net["connected"]
        assert 0 <= net["last_heard_ms_ago"] <= MISSES * INTERVAL_MS and net["rtt_ms"] >= 0
        assert d["confirmation_ms_ago"] is not None
    r = tandemctl("cluster", "status", "--json", "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["votes_seen"] == 3
    r = tandemctl("cluster", "status", "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    assert "3 seen of 3, quorum 2 (held)" in r.stdout, r.stdout
    assert f"every {INTERVAL_MS} ms, down after {MISSES} missed; lease_ttl 2000 ms" in r.stdout
    assert cluster(w)["role"] == "witness" and cluster(w)["members"] == []

    # A reload (SIGHUP) of a node leaves its heartbeats running on the configuration they
    # started with (their own copy: the reload frees the core's), and its status readable.
    # A changed [cluster] is reported as needing a restart, and the running one stays.
    mark = len(b.event_lines())
    b.extra_conf = b.extra_conf.replace("lease_ttl = 2s", "lease_ttl = 3s")
    b.write_conf(server=b.name, level="info")
    os.kill(procs["b"].pid, signal.SIGHUP)
    wait_event(b, 2005, after=mark, what="b reloaded")
    assert [e for e in events(b, 2007, after=mark) if "[cluster] or [member]" in e["message"]]
    time.sleep(3 * INTERVAL_MS / 1000)
    assert votes(b, 3)["lease_ttl_ms"] == 2000
    assert not events(b, 2002, after=mark), "b's core restarted after the reload"

    # b stopped: a sees it down on its network and overall, and keeps quorum (2 of 3).
    mark = len(a.event_lines())
    os.killpg(procs["b"].pid, signal.SIGSTOP)
    stopped = time.monotonic()
    down = wait_event(a, 5022, "b", mark)
    took = time.monotonic() - stopped
    assert "member b is down" in down["message"]
    assert events(a, 5020, "b", mark), "the network event comes with the member's"
    # Down only once the misses are used up (answers within interval x misses still count).
    assert took >= (MISSES - 1) * INTERVAL_MS / 1000
    assert not events(a, 5024, after=mark), "one node and the witness are a majority"
    assert not events(a, 5022, "w", mark), "the witness is still seen"
    d = cluster(a)
    assert (d["votes_seen"], d["has_quorum"]) == (2, True)
    assert member(d, "b")["state"] == "down" and member(d, "b")["networks"][0]["state"] == "down"
    assert member(d, "b")["networks"][0]["last_heard_ms_ago"] > MISSES * INTERVAL_MS

    # b continued: up again. (b's own view went stale while it was stopped: it hears the
    # others again too.)
    mark, mark_b = len(a.event_lines()), len(b.event_lines())
    os.killpg(procs["b"].pid, signal.SIGCONT)
    wait_event(a, 5023, "b", mark)
    wait_event(a, 5021, "b", mark)
    for o in (a, w):
        if [e for e in b.event_lines()[mark_b:] if e["id"] == 5022 and e["subject"] == o.name]:
            wait_event(b, 5023, o.name, mark_b)

    # The witness killed: the nodes still see each other, with quorum.
    marks = {n.name: len(n.event_lines()) for n in (a, b)}
    os.killpg(procs["w"].pid, signal.SIGKILL)
    procs["w"].wait(timeout=WAIT)
    for node in (a, b):
        wait_event(node, 5022, "w", marks[node.name])
    time.sleep(2 * MISSES * INTERVAL_MS / 1000)
    for node, other in ((a, b), (b, a)):
        assert not events(node, 5024, after=marks[node.name]), f"{node.name} lost quorum"
        assert not events(node, 5022, other.name, marks[node.name]), \
            f"{node.name} lost sight of {other.name}"
        d = cluster(node)
        assert (d["votes_seen"], d["has_quorum"]) == (2, True)
        assert member(d, "w")["state"] == "down"
        # The witness's core is gone: its session ended with EOF and reconnecting is refused.
        wait_for(lambda: member(cluster(node), "w")["gone"], f"w gone on {node.name}")

    # b killed: a sees it gone (EOF, then refused) at once, before the misses run out.
    os.killpg(procs["b"].pid, signal.SIGKILL)
    procs["b"].wait(timeout=WAIT)
    killed = time.monotonic()
    d = wait_for(lambda: (lambda d: d if member(d, "b")["gone"] else None)(cluster(a)),
                 "b gone on a")
    if time.monotonic() - killed < (MISSES - 1) * INTERVAL_MS / 1000:
        assert member(d, "b")["state"] == "up", "gone comes before the silence bound"
    d = wait_for(lambda: (lambda d: d if d["votes_seen"] == 1 else None)(cluster(a)),
                 "only a itself seen")
    assert not d["has_quorum"]
    wait_event(a, 5024, "ccr1", what="quorum lost on a")
    r = tandemctl("cluster", "status", "--socket", a.admin_socket)
    assert "quorum 2 (LOST)" in r.stdout and "down (not running)" in r.stdout, r.stdout


def frame(ftype, payload, request_id=0, crc=None):
    body = struct.pack("<IHHII", 16 + len(payload) + 4, 2, ftype, request_id, 0) + payload
    return body + struct.pack("<I", crc32c(body) if crc is None else crc)


def crc32c(data):
    """CRC32C (Castagnoli), which the standard library lacks; bitwise is fast enough here."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (length,) = struct.unpack("<I", head)
    rest = b""
    while len(rest) < length - 4:
        chunk = sock.recv(length - 4 - len(rest))
        if not chunk:
            return None
        rest += chunk
    data = head + rest
    assert crc32c(data[:-4]) == struct.unpack("<I", data[-4:])[0]
    return struct.unpack("<H", data[6:8])[0], data[16:-4]


def test_malformed_frame_gets_error(trio):
    a, b, w, procs = trio
    wait_event(a, 5023, "b")
    ctx = ssl.create_default_context(cafile=str(b.tmp.parent / "cas.pem"))
    ctx.check_hostname = False
    # The listener wants a client certificate from the servers' CAs: b's will do.
    ctx.load_cert_chain(str(b.datadir / "tls" / "server.pem"), str(b.datadir / "tls" / "server.key"))
    bad_frames = (
        frame(16, b"", crc=0xDEADBEEF),  # checksum mismatch
        struct.pack("<I", 7) + b"\0" * 16,  # length below the minimum
        frame(16, b"\x03\x01"),  # HEARTBEAT before HELLO, and cut short
    )
    for bad in bad_frames:
        with socket.create_connection((a.addr, a.ports["cluster"]), timeout=WAIT) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(bad)
                got = read_frame(s)
                assert got is not None, "the listener closed without an ERROR"
                ftype, payload = got
                assert ftype == 32, f"ERROR expected, got type {ftype}"
                code = struct.unpack("<H", payload[1:3])[0]
                assert code == 4, f"code protocol expected, got {code}"
                assert s.recv(1) == b"", "closed after the ERROR"
    # The listener still serves: b's heartbeats are answered (a seen from b), and a new
    # member session works after the bad ones.
    mark = len(b.event_lines())
    time.sleep(2 * MISSES * INTERVAL_MS / 1000)
    assert not events(b, 5022, "a", mark)
