"""A copy moves between replication networks when one is cut (issue 5; docs/replication.md,
"Connecting"). A and B each run in their own network namespace, joined by two veth pairs: the
network `repl` (198.18.1.0/24) and the network `public` (198.18.2.0/24). B's copy.conf lists
`repl` first. Cutting `repl` (both ends of its veth pair down) moves shipping to `public`, and
mail delivered on A keeps reaching B; bringing `repl` up again moves it back. `tandemctl copy
status` names the network in use throughout.

Needs root and `ip netns` (iproute2); skipped otherwise. Addresses of 198.18.0.0/15 (RFC 2544,
benchmarking) exist only inside the test's namespaces, which are deleted on every exit path.
"""
import json
import os
import secrets
import shutil
import subprocess
import textwrap

import pytest

from lab import WAIT, Server, wait_for

DB = "mail"
PORT = 7433
# (network, address of A, address of B); `repl` is B's preferred network.
NETS = (("repl", "198.18.1.1", "198.18.1.2"), ("public", "198.18.2.1", "198.18.2.2"))


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=WAIT,
                          check=check)


def netns_unavailable():
    """Why this test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip for network namespaces"
    probe = f"tdmprobe{os.getpid()}"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def namespaces():
    """Two namespaces, {"a": name, "b": name}, joined by one veth pair per network; deleted
    (with their veths) whatever happens."""
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    ns = {"a": f"tdm{os.getpid()}a", "b": f"tdm{os.getpid()}b"}
    try:
        for n in ns.values():
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        for net, addr_a, addr_b in NETS:
            # Interface names live in their namespace, so short fixed names cannot clash.
            ip("link", "add", net, "netns", ns["a"], "type", "veth",
               "peer", "name", net, "netns", ns["b"])
            for side, addr in (("a", addr_a), ("b", addr_b)):
                ip("-n", ns[side], "addr", "add", f"{addr}/24", "dev", net)
                ip("-n", ns[side], "link", "set", net, "up")
        yield ns
    finally:
        for n in ns.values():
            ip("netns", "del", n, check=False)


def set_link(ns, net, state):
    for n in ns.values():
        ip("-n", n, "link", "set", net, state)


class NsServer(Server):
    """A Server started inside a network namespace, with an address on each network of NETS
    (its own column) and, when replicate is true, the replication listener on all of them."""

    def __init__(self, exe, tmp, name, netns, roles, listeners, replicate):
        # Set before Server.__init__, which writes the config once.
        self.netns = netns
        self.addrs = {row[0]: row[1 if name == "a" else 2] for row in NETS}
        self.replicate = replicate
        super().__init__(exe, tmp, name, roles=roles, listeners=listeners)
        self.addr = self.addrs["public"]  # Server picked a 127.77.x.y; the listeners use this
        self.write_conf(server=name, level="info")

    def write_conf(self, server, level):
        self.addr = self.addrs["public"]
        super().write_conf(server, level)
        text = self.conf.read_text()
        for net, addr in self.addrs.items():
            if net != "public":
                text += f"\n[network {net}]\naddress = {addr}\n"
        if self.replicate:
            # A copy may come over either network.
            text += f"\n[listen replication]\naddress = 0.0.0.0\nport = {PORT}\n"
        self.conf.write_text(text)

    def start(self):
        with open(self.log, "ab") as log:
            p = subprocess.Popen(["ip", "netns", "exec", self.netns, str(self.exe), "-c",
                                  str(self.conf), "--foreground"],
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p


def deliver(a, first, count):
    """count messages to alice over LMTP on A, from inside A's namespace (the test itself is
    outside every namespace); each must be answered 250."""
    script = textwrap.dedent(f"""
        import smtplib
        for i in range({first}, {first + count}):
            c = smtplib.LMTP({a.addr!r}, {a.ports['lmtp']}, timeout={WAIT})
            c.ehlo("client.test")
            c.mail("sender@example.org")
            assert c.rcpt("alice@example.test")[0] == 250
            s = f"netns {{i}}"
            assert c.data(f"Subject: {{s}}\\r\\nTo: alice@example.test\\r\\n\\r\\n{{s}}\\r\\n"
                          .encode())[0] == 250
            c.close()
    """)
    r = subprocess.run(["ip", "netns", "exec", a.netns, "/usr/bin/python3", "-c", script],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr


def copy_status(tandemctl, b):
    r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    (c,) = json.loads(r.stdout)["copies"]
    return c


def active_lsn(a):
    (db,) = [d for d in a.api("GET", "/v1/status").json()["databases"] if d["name"] == DB]
    return db["durable_lsn"]


def caught_up_on(tandemctl, a, b, net):
    """B's status once it is Healthy on network net and holds all A has durable."""
    c = copy_status(tandemctl, b)
    if (c["state"] == "Healthy" and c["network"] == net and c["copied_lsn"] == active_lsn(a)
            and c["copy_queue_bytes"] == 0):
        return c
    return None


def test_copy_moves_to_the_next_network_and_back(namespaces, tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = b = None
    try:
        a = NsServer(exe, tmp_path / "a", "a", namespaces["a"], "mailbox, directory",
                     ("lmtp", "admin"), replicate=True)
        b = NsServer(exe, tmp_path / "b", "b", namespaces["b"], "mailbox", (), replicate=False)
        b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
        (a.datadir / "db").mkdir(parents=True)
        r = tandemctl("db", "create", a.datadir / "db" / DB)
        assert r.returncode == 0, r.stderr
        # Each makes its local CA (with its namespace addresses) at its first start; then each
        # trusts both.
        b.write_conf(server="b", level="info")
        for s in (a, b):
            p = s.start()
            s.started(p)
            s.stop(p)
        cas = tmp_path / "cas.pem"
        cas.write_text(a.ca.read_text() + b.ca.read_text())
        for s in (a, b):
            s.extra_conf = f"\n[tls]\nca = {cas}\n"
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
                      *(a for net, addr, _ in NETS for a in ("--source", f"{net}={addr}:{PORT}")))
        assert r.returncode == 0, r.stderr
        bp = b.start()
        b.started(bp)

        deliver(a, 0, 3)
        c = wait_for(lambda: caught_up_on(tandemctl, a, b, "repl"), "B shipping over repl")
        assert c["endpoint"] == f"{NETS[0][1]}:{PORT}"

        # Cut repl. The session on it hears nothing more and ends after the copy's 10 s of
        # silence; the next attempt finds repl unreachable and takes public.
        set_link(namespaces, "repl", "down")
        deliver(a, 3, 3)
        c = wait_for(lambda: caught_up_on(tandemctl, a, b, "public"),
                     "B shipping over public with repl cut", timeout=WAIT + 10)
        assert c["endpoint"] == f"{NETS[1][1]}:{PORT}"
        deliver(a, 6, 3)  # mail goes on flowing over public
        wait_for(lambda: caught_up_on(tandemctl, a, b, "public"), "B caught up over public")

        # repl back: the copy's probe (every 5 s) finds it and moves back.
        set_link(namespaces, "repl", "up")
        wait_for(lambda: caught_up_on(tandemctl, a, b, "repl"), "B back on repl")
        deliver(a, 9, 3)
        wait_for(lambda: caught_up_on(tandemctl, a, b, "repl"), "B caught up over repl")

        dump = lambda s: json.loads(subprocess.run(
            [str(tandem_bin("tdm_maildump")), str(s.datadir / "db" / DB)], capture_output=True,
            text=True, timeout=WAIT, check=True).stdout)["mailboxes"]
        mine = dump(b)
        assert mine == dump(a)
        assert len(mine["alice"]["folders"]["INBOX"]["messages"]) == 12
        # One event per change of network: to public, and back to repl.
        changes = [e["message"] for e in b.event_lines()
                   if e["name"] == "repl.copy_network_changed"]
        assert len(changes) == 2, changes
        assert "network public" in changes[0] and "not repl" in changes[0], changes
        assert "network repl" in changes[1] and "not public" in changes[1], changes
        b.stop(bp)
        a.stop(ap)
    finally:
        for s in (b, a):
            if s is not None:
                s.kill_all()
