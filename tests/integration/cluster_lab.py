"""A cluster lab on loopback for the cluster tests (docs/cluster.md): a witness that also holds the
directory (w) and two nodes (a, b), each tandemd on its own 127.x address, TLS from each
server's local CA with every CA trusted by all, server keys checked by the directory (as
test_cluster_hb.py sets up), and one CMS with one database. The nodes listen for IMAP, LMTP and
replication on the same ports, so the CMS address serves the same ports wherever it is active.
Node a gets the database at creation; b has none and makes it a new copy itself."""
import imaplib
import json
import os
import random
import secrets
import signal
import smtplib

from lab import WAIT, Server, free_port, wait_for

CMS = "mail1"
DB = "mail"
CLUSTER = "ccr1"
USER, PASSWORD, ADDRESS = "alice", "secret-pw", "alice@example.test"


class Member(Server):
    """A Server whose [listen cluster] and [listen coord] are the core's own: no worker."""

    def roles_expected(self):
        return super().roles_expected() - {"worker-cluster", "worker-coord"}


class ClusterLab:
    def __init__(self, tandem_bin, tandemctl, tmp_path, interval_ms=300, misses=5, ttl="2s",
                 mount_dial="good"):
        self.tandemctl = tandemctl
        self.interval_ms, self.misses, self.ttl = interval_ms, misses, ttl
        self.cms_addr = f"127.79.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.mount_dial = mount_dial
        exe = tandem_bin("tandemd")
        for n in ("a", "b", "w"):
            (tmp_path / n).mkdir()
        self.w = Member(exe, tmp_path / "w", "w", roles="witness, directory",
                        listeners=("admin", "cluster", "coord"))
        node_listeners = ("imap", "lmtp", "replication", "cluster")
        self.a = Member(exe, tmp_path / "a", "a", roles="mailbox", listeners=node_listeners)
        self.b = Member(exe, tmp_path / "b", "b", roles="mailbox", listeners=node_listeners)
        # The same client and replication ports on both nodes (each on its own address).
        for p in ("imap", "lmtp", "replication"):
            self.b.ports[p] = self.a.ports[p]
        self.servers = (self.a, self.b, self.w)
        self.procs = {}
        for s in (self.a, self.b):
            s.directory_endpoint = f"{self.w.addr}:{self.w.ports['admin']}"
        self.tmp = tmp_path

    @property
    def nodes(self):
        return (self.a, self.b)

    def node_conf(self, me):
        others = [s for s in self.servers if s is not me]
        members = "".join(
            f"\n[member {o.name}]\npublic = {o.addr}:{o.ports['cluster']}\n" +
            (f"coord = {o.addr}:{o.ports['coord']}\n" if o is self.w else "")
            for o in others)
        return (f"\n[cluster]\nname = {CLUSTER}\nwitness = {self.w.name}\n"
                f"heartbeat_interval = {self.interval_ms}ms\n"
                f"heartbeat_misses = {self.misses}\nlease_ttl = {self.ttl}\n{members}"
                f"\n[cms {CMS}]\naddress = {self.cms_addr}\ndatabases = {DB}\n"
                f"mount_dial = {self.mount_dial}\n")

    def setup(self):
        """First starts (local CAs), trust, keys, the directory's objects, the database on a."""
        for s in self.servers:
            s.write_conf(server=s.name, level="info")
            p = s.start()
            s.started(p)
            s.stop(p)
        cas = self.tmp / "cas.pem"
        cas.write_text("".join(s.ca.read_text() for s in self.servers))
        keys = {s.name: secrets.token_urlsafe(32) for s in self.servers}
        for s in self.servers:
            (s.datadir / "server.key").write_text(keys[s.name] + "\n")
        tls = f"\n[tls]\nca = {cas}\n"
        for s in self.nodes:
            s.extra_conf = tls + self.node_conf(s)
        self.w.extra_conf = tls
        for s in self.servers:
            s.write_conf(server=s.name, level="info")
        (self.a.datadir / "db").mkdir(parents=True, exist_ok=True)
        r = self.tandemctl("db", "create", self.a.datadir / "db" / DB)
        assert r.returncode == 0, r.stderr
        self.start(self.w)
        self.w.wait_api()
        ok = lambda r: r.status in (200, 201)
        for s in self.servers:
            assert ok(self.w.api("PUT", f"/v1/objects/server/{s.name}", {"attrs": {"site": "dc1"}}))
            assert ok(self.w.api("PUT", f"/v1/objects/server/{s.name}/password",
                                 {"password": keys[s.name]}))
            assert ok(self.w.api("POST", "/v1/objects/group/servers/members/add",
                                 {"member": f"server:{s.name}"}))
        assert ok(self.w.api("PUT", f"/v1/objects/user/{USER}",
                             {"attrs": {"addresses": [ADDRESS], "database": DB}}))
        assert ok(self.w.api("PUT", f"/v1/objects/user/{USER}/password",
                             {"password": PASSWORD}))

    def start(self, s):
        p = s.start()
        s.started(p)
        self.procs[s.name] = p
        return p

    def kill(self, s):
        """SIGKILL to the whole tandemd (supervisor, core, workers)."""
        p = self.procs.pop(s.name)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=WAIT)

    def close(self):
        for s in self.servers:
            for p in s.procs:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            s.kill_all()

    # ---- status ----

    def cluster(self, s):
        """GET /v1/cluster of s, or None while its admin socket does not answer."""
        try:
            r = s.api("GET", "/v1/cluster")
        except OSError:
            return None
        return r.json() if r.status == 200 else None

    def cms(self, s):
        d = self.cluster(s)
        if not d or "cms" not in d:
            return None
        (c,) = [c for c in d["cms"] if c["name"] == CMS]
        return c

    def state(self, s):
        c = self.cms(s)
        return c["state"] if c else None

    def wait_state(self, s, state, timeout=WAIT):
        return wait_for(lambda: (lambda c: c if c and c["state"] == state else None)(self.cms(s)),
                        f"CMS {CMS} {state} on {s.name}", timeout)

    def wait_one_active(self, timeout=WAIT):
        """(active, passive) once one node says Active and the other Passive."""
        def one():
            st = {s.name: self.state(s) for s in self.nodes}
            if sorted(map(str, st.values())) == ["Active", "Passive"]:
                return [s for s in self.nodes if st[s.name] == "Active"][0]
            return None
        act = wait_for(one, "one node Active and the other Passive", timeout)
        return act, (self.b if act is self.a else self.a)

    def copy_status(self, s):
        r = self.tandemctl("copy", "status", "--json", "--socket", s.admin_socket)
        if r.returncode != 0:
            return None
        copies = [c for c in json.loads(r.stdout)["copies"] if c["database"] == DB] \
            if "copies" in json.loads(r.stdout) else []
        return copies[0] if copies else None

    def active_lsn(self, s):
        (db,) = [d for d in s.api("GET", "/v1/status").json()["databases"] if d["name"] == DB]
        return db.get("durable_lsn")

    def wait_caught_up(self, active, passive, timeout=WAIT):
        def up():
            c = self.copy_status(passive)
            lsn = self.active_lsn(active)
            return c if c and c["state"] == "Healthy" and c["copied_lsn"] == lsn else None
        return wait_for(up, f"{passive.name}'s copy Healthy and caught up with {active.name}",
                        timeout)

    # ---- clients on the CMS address ----

    def deliver(self, subject):
        """LMTP to the CMS address: True when answered 250."""
        c = smtplib.LMTP(self.cms_addr, self.a.ports["lmtp"], timeout=WAIT)
        try:
            c.ehlo("client.test")
            c.mail("sender@example.org")
            if c.rcpt(ADDRESS)[0] != 250:
                return False
            code, _ = c.data(f"Subject: {subject}\r\nTo: {ADDRESS}\r\n\r\nbody\r\n".encode())
            return code == 250
        finally:
            c.close()

    def select(self):
        """IMAP LOGIN and SELECT INBOX on the CMS address: the subjects there."""
        m = imaplib.IMAP4(self.cms_addr, self.a.ports["imap"], timeout=WAIT)
        try:
            m.login(USER, PASSWORD)
            typ, data = m.select("INBOX")
            assert typ == "OK", data
            subjects = set()
            if int(data[0]):
                typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                for item in data:
                    if isinstance(item, tuple):
                        subjects.add(item[1].decode().strip().split(":", 1)[1].strip())
            return subjects
        finally:
            try:
                m.logout()
            except (OSError, imaplib.IMAP4.error):
                pass

    def try_select(self):
        """(subjects,) once LOGIN and SELECT work on the CMS address, else None."""
        try:
            return (self.select(),)
        except (OSError, imaplib.IMAP4.error, AssertionError, EOFError):
            return None


def events(s, eid, after=0):
    return [e for e in s.event_lines()[after:] if e["id"] == eid]


__all__ = ["ClusterLab", "Member", "events", "CMS", "DB", "free_port"]
