"""Heartbeats on two networks, one of them cut (docs/cluster.md, "Votes and quorum"): nodes a
and b each run in their own network namespace, joined by two veth pairs, `heartbeat`
(198.18.3.0/24) and `public` (198.18.4.0/24). Cutting `heartbeat` makes b down on that network
on a, while b stays seen over `public` (no member-down event, the votes unchanged); bringing it
back makes it up again. The witness is configured but not running (its vote is simply not
seen), which leaves a and b each with quorum.

Needs root and `ip netns` (iproute2); skipped otherwise. Addresses of 198.18.0.0/15 exist only
inside the test's namespaces, which are deleted on every exit path.
"""
import os
import secrets
import subprocess

import pytest

from lab import WAIT, Server, wait_for
from test_replication_netns import ip, netns_unavailable

PORT = 7434
INTERVAL_MS = 400
MISSES = 5
# (network, address of a, address of b)
NETS = (("heartbeat", "198.18.3.1", "198.18.3.2"), ("public", "198.18.4.1", "198.18.4.2"))
WITNESS = "198.18.3.9"  # on no interface: the witness is never heard


@pytest.fixture
def namespaces():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    ns = {"a": f"tdh{os.getpid()}a", "b": f"tdh{os.getpid()}b"}
    try:
        for n in ns.values():
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        for net, addr_a, addr_b in NETS:
            ip("link", "add", net, "netns", ns["a"], "type", "veth",
               "peer", "name", net, "netns", ns["b"])
            for side, addr in (("a", addr_a), ("b", addr_b)):
                ip("-n", ns[side], "addr", "add", f"{addr}/24", "dev", net)
                ip("-n", ns[side], "link", "set", net, "up")
        yield ns
    finally:
        for n in ns.values():
            ip("netns", "del", n, check=False)


class NsNode(Server):
    """A cluster node in a namespace: an address on each network, [listen cluster] on all."""

    def __init__(self, exe, tmp, name, netns, roles, listeners):
        self.netns = netns
        self.addrs = {row[0]: row[1 if name == "a" else 2] for row in NETS}
        super().__init__(exe, tmp, name, roles=roles, listeners=listeners)
        self.write_conf(server=name, level="info")

    def write_conf(self, server, level):
        self.addr = self.addrs["public"]
        super().write_conf(server, level)
        text = self.conf.read_text()
        text += f"\n[network heartbeat]\naddress = {self.addrs['heartbeat']}\n"
        text += f"\n[listen cluster]\naddress = 0.0.0.0\nport = {PORT}\n"
        self.conf.write_text(text)

    def start(self):
        with open(self.log, "ab") as log:
            p = subprocess.Popen(["ip", "netns", "exec", self.netns, str(self.exe), "-c",
                                  str(self.conf), "--foreground"],
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p


def cluster_conf(other):
    nets = "".join(f"{net} = {other.addrs[net]}:{PORT}\n" for net, _, _ in NETS)
    return (f"\n[cluster]\nname = ccr1\nwitness = w\nheartbeat_interval = {INTERVAL_MS}ms\n"
            f"heartbeat_misses = {MISSES}\nlease_ttl = 2s\n"
            f"\n[member {other.name}]\n{nets}"
            f"\n[member w]\nheartbeat = {WITNESS}:{PORT}\ncoord = {WITNESS}:7435\n")


def b_on_a(a):
    r = a.api("GET", "/v1/cluster")
    assert r.status == 200, r
    d = r.json()
    (m,) = [m for m in d["members"] if m["name"] == "b"]
    return d, m, {n["network"]: n["state"] for n in m["networks"]}


def test_one_network_cut(namespaces, tandem_bin, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = b = None
    try:
        a = NsNode(exe, tmp_path / "a", "a", namespaces["a"], "mailbox, directory", ("admin",))
        b = NsNode(exe, tmp_path / "b", "b", namespaces["b"], "mailbox", ())
        b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
        for s in (a, b):
            s.write_conf(server=s.name, level="info")
            p = s.start()
            s.started(p)
            s.stop(p)
        cas = tmp_path / "cas.pem"
        cas.write_text(a.ca.read_text() + b.ca.read_text())
        keys = {s.name: secrets.token_urlsafe(32) for s in (a, b)}
        for s, other in ((a, b), (b, a)):
            (s.datadir / "server.key").write_text(keys[s.name] + "\n")
            s.extra_conf = f"\n[tls]\nca = {cas}\n" + cluster_conf(other)
            s.write_conf(server=s.name, level="info")
        ap = a.start()
        a.started(ap)
        a.wait_api()
        ok = lambda r: r.status in (200, 201)
        for s in (a, b):
            assert ok(a.api("PUT", f"/v1/objects/server/{s.name}", {"attrs": {"site": "dc1"}}))
            assert ok(a.api("PUT", f"/v1/objects/server/{s.name}/password",
                            {"password": keys[s.name]}))
            assert ok(a.api("POST", "/v1/objects/group/servers/members/add",
                            {"member": f"server:{s.name}"}))
        bp = b.start()
        b.started(bp)

        both_up = {"heartbeat": "up", "public": "up"}
        d, m, nets = wait_for(lambda: (lambda r: r if r[2] == both_up else None)(b_on_a(a)),
                              "b up on both networks")
        assert (d["votes_seen"], d["votes"], d["has_quorum"]) == (2, 3, True)

        # Cut heartbeat: b is down there, still seen over public.
        mark = len(a.event_lines())
        ip("-n", namespaces["a"], "link", "set", "heartbeat", "down")
        ip("-n", namespaces["b"], "link", "set", "heartbeat", "down")
        d, m, nets = wait_for(
            lambda: (lambda r: r if r[2]["heartbeat"] == "down" else None)(b_on_a(a)),
            "b down on heartbeat")
        assert nets["public"] == "up" and m["state"] == "up" and not m["gone"]
        assert (d["votes_seen"], d["has_quorum"]) == (2, True)
        a.wait_event(lambda e: e["id"] == 5020 and e["subject"] == "b" and
                     "network heartbeat" in e["message"], "5020 for heartbeat")
        assert not [e for e in a.event_lines()[mark:] if e["id"] in (5022, 5024)]

        # Back: up on both again.
        ip("-n", namespaces["a"], "link", "set", "heartbeat", "up")
        ip("-n", namespaces["b"], "link", "set", "heartbeat", "up")
        wait_for(lambda: (lambda r: r if r[2] == both_up else None)(b_on_a(a)),
                 "b up on both networks again", timeout=WAIT + 10)
    finally:
        for s in (a, b):
            if s:
                s.kill_all()
