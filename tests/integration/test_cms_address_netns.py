"""A CMS address on a real interface (docs/cluster.md, "CMS address"; [cms] interface = lan0):
every server and a client each in their own network namespace, joined by one bridge
(198.18.1.0/24, a segment like a site's LAN). On the active node the supervisor adds the CMS
address to lan0, serves every protocol there and announces it by gratuitous ARP; the client
reaches it through its neighbour cache, which the announcement of a new active node moves to
that node's MAC address without the client flushing anything. The address leaves the
interface when the CMS stops being active there (a switchover's demotion, a self-fence, a clean
stop), and one left behind by a node killed while active is removed when that node starts
again.

Needs root and `ip netns` (iproute2); skipped otherwise. Addresses of 198.18.0.0/15 exist only
inside the test's namespaces, which are deleted on every exit path.
"""
import os
import pathlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from cluster_lab import CMS, PASSWORD, USER, ClusterLab, events
from lab import WAIT, Server, wait_for
from test_replication_netns import ip, netns_unavailable

CMS_IP = "198.18.1.100"
ADDRS = {"a": "198.18.1.1", "b": "198.18.1.2", "w": "198.18.1.9", "c": "198.18.1.50"}
IFACE = "lan0"


@pytest.fixture
def lan():
    """Namespaces a, b, w (servers) and c (client), each with lan0 on one bridge."""
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    tag = f"tdc{os.getpid()}"
    ns = {n: f"{tag}{n}" for n in (*ADDRS, "br")}
    try:
        for n in ns.values():
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        ip("-n", ns["br"], "link", "add", "br0", "type", "bridge")
        ip("-n", ns["br"], "link", "set", "br0", "up")
        for n, addr in ADDRS.items():
            ip("link", "add", IFACE, "netns", ns[n], "type", "veth",
               "peer", "name", f"p{n}", "netns", ns["br"])
            ip("-n", ns["br"], "link", "set", f"p{n}", "master", "br0", "up")
            ip("-n", ns[n], "addr", "add", f"{addr}/24", "dev", IFACE)
            ip("-n", ns[n], "link", "set", IFACE, "up")
        yield ns
    finally:
        for n in ns.values():
            ip("netns", "del", n, check=False)


def in_netns(exe, netns, tmp):
    """A wrapper that runs exe in netns: `ip netns exec` execs it, so the pid stays the
    server's and the lab's process checks work unchanged."""
    w = tmp / f"tandemd-in-{netns}"
    w.write_text(f"#!/bin/sh\nexec ip netns exec {netns} {exe} \"$@\"\n")
    w.chmod(w.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return w


def cms_on(netns):
    """The CMS address with its prefix length as lan0 in netns has it, or None."""
    out = ip("-n", netns, "-4", "-o", "addr", "show", "dev", IFACE).stdout
    m = re.search(rf"inet ({re.escape(CMS_IP)}/\d+)", out)
    return m.group(1) if m else None


def mac(netns):
    out = ip("-n", netns, "-o", "link", "show", IFACE).stdout
    return re.search(r"link/ether ([0-9a-f:]{17})", out).group(1)


def client_neighbour(ns):
    """The MAC the client's neighbour cache has for the CMS address, or None."""
    out = ip("-n", ns["c"], "neigh", "show", CMS_IP, "dev", IFACE).stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


CLIENT = """
import imaplib, ssl, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=5)
if len(sys.argv) > 3:
    m.starttls(ssl.create_default_context(cafile=sys.argv[5]))
    m.login(sys.argv[3], sys.argv[4])
    typ, data = m.select("INBOX")
    assert typ == "OK", data
print(m.welcome.decode())
m.logout()
"""


def client_imap(ns, port, login=None):
    """An IMAP session from the client's namespace to the CMS address: True when it works
    (greeting, and STARTTLS + LOGIN + SELECT when login is given: (user, password, CA file);
    a login off loopback needs TLS, and the certificate must name the CMS address)."""
    args = ["ip", "netns", "exec", ns["c"], "/usr/bin/python3", "-c", CLIENT, CMS_IP, str(port)]
    r = subprocess.run(args + list(login or ()), capture_output=True, text=True, timeout=WAIT)
    if r.returncode != 0:
        print("client:", r.stderr.strip().splitlines()[-1:])
    return r.returncode == 0


def test_standalone_on_an_interface_after_the_privilege_drop(lan, tandem_bin):
    """A standalone CMS on lan0, tandemd started as root with user = nobody: the supervisor
    keeps CAP_NET_ADMIN and CAP_NET_RAW alone (its children none), removes the address a
    crashed run left on lan0 before anything else (5045), adds it again as the CMS comes up
    (5040 names the interface), the client reaches IMAP there with its neighbour cache
    pointing at this server's MAC, and a clean stop deletes the address."""
    nobody = pwd.getpwnam("nobody")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tandemd-cmsif-"))
    os.chmod(tmp, 0o755)
    s = Server(in_netns(tandem_bin("tandemd"), lan["a"], tmp), tmp, "mbx1", listeners=("imap",))
    try:
        s.addr = ADDRS["a"]
        s.datadir.mkdir(mode=0o750)
        (s.datadir / "db").mkdir(mode=0o750)
        for path in (s.datadir, s.datadir / "db"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        s.events.touch()
        os.chown(s.events, nobody.pw_uid, nobody.pw_gid)
        s.user = "nobody"
        s.extra_conf = (f"\n[cms {CMS}]\naddress = {CMS_IP}/24\ninterface = {IFACE}\n"
                        f"databases = mail\n")
        s.write_conf(server="mbx1", level="info")
        # What a run killed while active leaves behind (here with another prefix length).
        ip("-n", lan["a"], "addr", "add", f"{CMS_IP}/32", "dev", IFACE)
        p = s.start()
        kids = s.started(p)
        up = s.wait_event(lambda e: e["id"] in (5040, 5043, 5044), "CMS up (5040) or failed")
        assert up["id"] == 5040, up
        assert f"on interface {IFACE}" in up["message"], up
        (stale,) = events(s, 5045)
        assert f"{CMS_IP} was on interface {IFACE} at start" in stale["message"]
        lines = s.event_lines()
        assert lines.index(stale) < lines.index(up)
        assert cms_on(lan["a"]) == f"{CMS_IP}/24"
        st = wait_for(lambda: (lambda r: r.json() if r.status == 200 else None)(
            s.api("GET", "/v1/status")), "GET /v1/status")
        (c,) = st["cms"]
        assert (c["address"], c["interface"], c["state"]) == (CMS_IP, IFACE, "up"), c
        CAP_NET_ADMIN, CAP_NET_RAW = 1 << 12, 1 << 13
        assert cap_eff(p.pid) == CAP_NET_ADMIN | CAP_NET_RAW
        assert all(cap_eff(pid) == 0 for pid in kids.values())
        assert not events(s, 5046)  # announced (the supervisor as nobody, with CAP_NET_RAW)
        assert wait_for(lambda: client_imap(lan, s.ports["imap"]), "IMAP from the client")
        assert client_neighbour(lan) == mac(lan["a"])
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, s.output()
        assert cms_on(lan["a"]) is None
    finally:
        s.kill_all()
        print(s.output())
        shutil.rmtree(tmp)


def test_interface_missing_then_added(lan, tandem_bin, tmp_path):
    """The interface of a [cms] does not exist yet: the address cannot be added (5044, once,
    naming the interface and why), nothing is served on it and the status says binding; once
    the interface appears the retry adds it and every protocol comes up there."""
    s = Server(in_netns(tandem_bin("tandemd"), lan["a"], tmp_path), tmp_path, "mbx1",
               listeners=("imap",))
    try:
        s.addr = ADDRS["a"]
        s.extra_conf = (f"\n[cms {CMS}]\naddress = {CMS_IP}\ninterface = cms0\n"
                        f"databases = mail\n")
        s.write_conf(server="mbx1", level="info")
        (s.datadir / "db").mkdir(parents=True)
        p = s.start()
        s.started(p)
        failed = s.wait_event(lambda e: e["id"] == 5044, "cannot add the address (5044)")
        assert f"cannot add {CMS_IP}/32 to interface cms0: No such device" in failed["message"]
        st = wait_for(lambda: (lambda r: r.json() if r.status == 200 else None)(
            s.api("GET", "/v1/status")), "GET /v1/status")
        assert st["cms"][0]["state"] == "binding"
        assert not events(s, 5040)
        ip("-n", lan["a"], "link", "add", "cms0", "type", "veth", "peer", "name", "cms0p")
        ip("-n", lan["a"], "link", "set", "cms0", "up")
        up = s.wait_event(lambda e: e["id"] == 5040, "CMS address up (5040)")
        assert "on interface cms0" in up["message"]
        out = ip("-n", lan["a"], "-4", "-o", "addr", "show", "dev", "cms0").stdout
        assert f"inet {CMS_IP}/32" in out, out
        assert len(events(s, 5044)) == 1  # once per cause, not once per retry
        s.stop(p)
        assert CMS_IP not in ip("-n", lan["a"], "-4", "-o", "addr", "show", "dev", "cms0").stdout
    finally:
        s.kill_all()


def cap_eff(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


class NetnsLab(ClusterLab):
    """cluster_lab.py's lab with w, a and b each in its namespace on the bridge, and the CMS
    address on lan0."""

    def __init__(self, tandem_bin, tandemctl, tmp_path, ns):
        super().__init__(tandem_bin, tandemctl, tmp_path)
        self.cms_addr = CMS_IP
        for s in (self.a, self.b, self.w):
            s.addr = ADDRS[s.name]
            s.exe = in_netns(s.exe, ns[s.name], tmp_path)
        for s in (self.a, self.b):
            s.directory_endpoint = f"{self.w.addr}:{self.w.ports['admin']}"

    def node_conf(self, me):
        conf = super().node_conf(me)
        old = f"address = {CMS_IP}\n"
        assert old in conf
        return conf.replace(old, f"address = {CMS_IP}/24\ninterface = {IFACE}\n")


def test_failover_and_switchover_move_the_address(lan, tandem_bin, tandemctl, tmp_path):
    lab = NetnsLab(tandem_bin, tandemctl, tmp_path, lan)
    try:
        lab.setup()
        imap = lab.a.ports["imap"]
        login = (USER, PASSWORD, str(tmp_path / "cas.pem"))
        for s in lab.nodes:
            lab.start(s)
        act, pas = lab.wait_one_active()
        assert act is lab.a
        act.wait_event(lambda e: e["id"] == 5040, "CMS address up (5040) on a")
        assert cms_on(lan["a"]) == f"{CMS_IP}/24" and cms_on(lan["b"]) is None
        assert wait_for(lambda: client_imap(lan, imap, login), "IMAP SELECT from the client")
        assert client_neighbour(lan) == mac(lan["a"])
        wait_for(lambda: (lambda c: c if c and c["state"] == "Healthy" else None)(
            lab.copy_status(pas)), "b's copy Healthy")
        time.sleep(3 * lab.interval_ms / 1000)  # b's agent has seen it Healthy

        # a killed with SIGKILL, whole: b takes over, adds the address, announces it; the
        # client's cache moves to b's MAC by the announcement alone (a's kernel would still
        # answer for the address if asked: nothing removed it), and IMAP works at once.
        mark_b = len(lab.b.event_lines())
        lab.kill(lab.a)
        lab.wait_state(lab.b, "Active")
        up = lab.b.wait_event(lambda e: e["id"] == 5040 and
                              e in lab.b.event_lines()[mark_b:], "CMS address up (5040) on b")
        assert f"on interface {IFACE}" in up["message"]
        assert cms_on(lan["b"]) == f"{CMS_IP}/24"
        assert cms_on(lan["a"]) == f"{CMS_IP}/24"  # left by the killed node
        wait_for(lambda: client_neighbour(lan) == mac(lan["b"]),
                 "the client's neighbour entry for the CMS address at b's MAC")
        assert client_imap(lan, imap, login), "IMAP on the CMS address at b"
        assert not events(lab.b, 5046)

        # a restarted: the address it left is removed before it could win anything, and it
        # rejoins as a passive without it.
        mark_a = len(lab.a.event_lines())
        lab.start(lab.a)
        stale = lab.a.wait_event(lambda e: e["id"] == 5045, "stale address removed (5045) on a")
        assert stale in lab.a.event_lines()[mark_a:]
        assert cms_on(lan["a"]) is None
        lab.wait_state(lab.a, "Passive")
        assert not events(lab.a, 5050, mark_a)
        wait_for(lambda: (lambda c: c if c and c["state"] == "Healthy" else None)(
            lab.copy_status(lab.a)), "a's copy Healthy")
        time.sleep(3 * lab.interval_ms / 1000)

        # Switchover back to a: b's demotion deletes the address from its lan0, a adds and
        # announces it, the client follows.
        mark_a, mark_b = len(lab.a.event_lines()), len(lab.b.event_lines())
        r = tandemctl("cms", "move", CMS, "--to", "a", "--comment", "netns test",
                      "--socket", lab.b.admin_socket)
        assert r.returncode == 0, r.stdout + r.stderr
        lab.wait_state(lab.a, "Active")
        lab.a.wait_event(lambda e: e["id"] == 5040 and e in lab.a.event_lines()[mark_a:],
                         "CMS address up (5040) on a again")
        down = lab.b.wait_event(lambda e: e["id"] == 5041 and
                                e in lab.b.event_lines()[mark_b:], "address down (5041) on b")
        assert f"removed from interface {IFACE}" in down["message"], down
        assert cms_on(lan["b"]) is None and cms_on(lan["a"]) == f"{CMS_IP}/24"
        wait_for(lambda: client_neighbour(lan) == mac(lan["a"]),
                 "the client's neighbour entry back at a's MAC")
        assert client_imap(lan, imap, login), "IMAP on the CMS address at a again"

        # a cut off the segment (its lan0 down): it loses the witness's and b's votes and
        # fences; the address leaves its interface with the fence, and b takes over.
        wait_for(lambda: (lambda c: c if c and c["state"] == "Healthy" else None)(
            lab.copy_status(lab.b)), "b's copy Healthy")
        time.sleep(3 * lab.interval_ms / 1000)
        mark_a = len(lab.a.event_lines())
        ip("-n", lan["a"], "link", "set", IFACE, "down")
        fenced = lab.a.wait_event(lambda e: e["id"] == 5051 and
                                  e in lab.a.event_lines()[mark_a:], "fenced (5051) on a")
        down = lab.a.wait_event(lambda e: e["id"] == 5041 and
                                e in lab.a.event_lines()[mark_a:], "address down (5041) on a")
        assert f"removed from interface {IFACE}" in down["message"], down
        assert cms_on(lan["a"]) is None, fenced
        lab.wait_state(lab.b, "Active")
        wait_for(lambda: client_neighbour(lan) == mac(lan["b"]),
                 "the client's neighbour entry at b's MAC after a's fence")
        assert client_imap(lan, imap, login), "IMAP on the CMS address at b after a's fence"
    finally:
        lab.close()
