"""A cluster lab on loopback for the cluster tests (docs/cluster.md): a witness that also holds the
directory (w) and two nodes (a, b), each tandemd on its own 127.x address, TLS from each
server's local CA with every CA trusted by all, server keys checked by the directory (as
test_cluster_hb.py sets up), and one CMS with one database. The nodes listen for IMAP, LMTP and
replication on the same ports, so the CMS address serves the same ports wherever it is active.
Node a gets the database at creation; b has none and makes it a new copy itself.

Optionally (transport=True) a transport server t (SMTP in, LMTP to the CMS address, with a
dumpster), routed by the directory's cms and database objects; and the CMS's replication mode
(replication="sync", "block", "file": the [cms] key, since the nodes have no directory of their
own to read the database object's mode from).

Shared by the cluster tests: an Observer of both nodes' states, LMTP/SMTP and IMAP load
generators on the CMS address, every subject with repeats, and the nodes' Active intervals from
their event logs."""
import datetime
import imaplib
import json
import os
import random
import secrets
import signal
import smtplib
import threading
import time

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
                 mount_dial="good", replication=None, transport=False):
        self.tandemctl = tandemctl
        self.interval_ms, self.misses, self.ttl = interval_ms, misses, ttl
        self.cms_addr = f"127.79.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.mount_dial = mount_dial
        self.replication = replication
        exe = tandem_bin("tandemd")
        for n in ("a", "b", "w") + (("t",) if transport else ()):
            (tmp_path / n).mkdir()
        self.w = Member(exe, tmp_path / "w", "w", roles="witness, directory",
                        listeners=("admin", "cluster", "coord"))
        node_listeners = ("imap", "lmtp", "replication", "cluster")
        self.a = Member(exe, tmp_path / "a", "a", roles="mailbox", listeners=node_listeners)
        self.b = Member(exe, tmp_path / "b", "b", roles="mailbox", listeners=node_listeners)
        # The same client and replication ports on both nodes (each on its own address).
        for p in ("imap", "lmtp", "replication"):
            self.b.ports[p] = self.a.ports[p]
        self.members = (self.a, self.b, self.w)
        self.t = None
        if transport:
            # [listen admin]: the nodes' agents ask it to resubmit ([cluster] transports).
            self.t = Server(exe, tmp_path / "t", "t", roles="transport",
                            listeners=("smtp", "admin"))
            self.t.extra_conf = "\n[smtp]\ndomains = example.test\n"
        self.servers = self.members + ((self.t,) if self.t else ())
        self.procs = {}
        for s in self.servers:
            if s is not self.w:
                s.directory_endpoint = f"{self.w.addr}:{self.w.ports['admin']}"
        self.tmp = tmp_path

    @property
    def nodes(self):
        return (self.a, self.b)

    def node_conf(self, me):
        others = [s for s in self.members if s is not me]
        members = "".join(
            f"\n[member {o.name}]\npublic = {o.addr}:{o.ports['cluster']}\n" +
            (f"coord = {o.addr}:{o.ports['coord']}\n" if o is self.w else "")
            for o in others)
        return (f"\n[cluster]\nname = {CLUSTER}\nwitness = {self.w.name}\n"
                f"heartbeat_interval = {self.interval_ms}ms\n"
                f"heartbeat_misses = {self.misses}\nlease_ttl = {self.ttl}\n" +
                (f"transports = {self.t.addr}:{self.t.ports['admin']}\n" if self.t else "") +
                f"{members}"
                f"\n[cms {CMS}]\naddress = {self.cms_addr}\ndatabases = {DB}\n"
                f"mount_dial = {self.mount_dial}\n" +
                (f"replication = {self.replication}\n" if self.replication else ""))

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
        if self.t:
            self.t.extra_conf = tls + "\n[smtp]\ndomains = example.test\n"
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
        if self.t:
            # The transport's route: the database's CMS and where its LMTP listens.
            assert ok(self.w.api("PUT", f"/v1/objects/cms/{CMS}",
                                 {"attrs": {"address": self.cms_addr,
                                            "lmtp_port": self.a.ports["lmtp"],
                                            "imap_port": self.a.ports["imap"]}}))
            assert ok(self.w.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"cms": CMS}}))
            self.start(self.t)

    def start(self, s):
        p = s.start()
        # Three servers on 2 CPUs, beside the other integration group in make check: a
        # restarted node's children have been seen to take over 20 s to come up.
        s.started(p, timeout=3 * WAIT)
        self.procs[s.name] = p
        return p

    def kill(self, s):
        """SIGKILL to the whole tandemd (supervisor, core, workers)."""
        p = self.procs.pop(s.name)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=WAIT)

        def group_gone():
            # The children die with the supervisor but may linger a moment holding the datadir
            # and ports: a restart right away must not meet them.
            try:
                os.killpg(p.pid, 0)
                return False
            except ProcessLookupError:
                return True
        wait_for(group_gone, f"{s.name}'s killed processes gone")

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
        return self.deliver_to(subject) is not None

    def deliver_to(self, subject):
        """LMTP to the CMS address: the name of the node that answered 250 (its LHLO reply
        starts with it), None for any other answer."""
        c = smtplib.LMTP(self.cms_addr, self.a.ports["lmtp"], timeout=WAIT)
        try:
            c.ehlo("client.test")
            node = c.ehlo_resp.split(None, 1)[0].decode()
            c.mail("sender@example.org")
            if c.rcpt(ADDRESS)[0] != 250:
                return None
            code, _ = c.data(f"Subject: {subject}\r\nTo: {ADDRESS}\r\n\r\nbody\r\n".encode())
            return node if code == 250 else None
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

    def deliver_smtp(self, subject):
        """SMTP to the transport, which relays by LMTP to the CMS address and keeps a copy in
        its dumpster: True when answered 250 (the mailbox server answered 250 first)."""
        c = smtplib.SMTP(self.t.addr, self.t.ports["smtp"], timeout=WAIT)
        try:
            c.ehlo("client.test")
            msg = f"From: sender@example.org\r\nSubject: {subject}\r\nTo: {ADDRESS}\r\n\r\n" \
                  "body\r\n"
            return c.sendmail("sender@example.org", [ADDRESS], msg.encode()) == {}
        finally:
            try:
                c.quit()
            except (OSError, smtplib.SMTPException):
                c.close()

    def all_subjects(self):
        """Every message's subject in INBOX on the CMS address, with repeats (a duplicate must
        show)."""
        m = imaplib.IMAP4(self.cms_addr, self.a.ports["imap"], timeout=WAIT)
        try:
            m.login(USER, PASSWORD)
            typ, data = m.select("INBOX")
            assert typ == "OK", data
            out = []
            if int(data[0]):
                typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                for item in data:
                    if isinstance(item, tuple):
                        out.append(item[1].decode().strip().split(":", 1)[1].strip())
            return out
        finally:
            m.logout()

    def healthy(self, s):
        c = self.copy_status(s)
        return c if c and c["state"] == "Healthy" else None

    def try_select(self):
        """(subjects,) once LOGIN and SELECT work on the CMS address, else None."""
        try:
            return (self.select(),)
        except (OSError, imaplib.IMAP4.error, AssertionError, EOFError):
            return None


def events(s, eid, after=0):
    return [e for e in s.event_lines()[after:] if e["id"] == eid]


class Observer(threading.Thread):
    """Polls both nodes' GET /v1/cluster every 50 ms; records any instant where both say
    Active."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab, self.stop, self.both, self.polls = lab, threading.Event(), [], 0

    def run(self):
        while not self.stop.is_set():
            st = [self.lab.state(s) for s in self.lab.nodes]
            self.polls += 1
            if st.count("Active") == 2:
                self.both.append(time.monotonic())
            time.sleep(0.05)


class Load:
    """Deliveries to the CMS address one after another until stopped, each with its own
    subject (prefix + number; never retried under the same subject, so a message whose answer
    was lost can be there at most once): which were answered 250, and how many were refused
    or cut (expected while the address moves). send: lab.deliver (LMTP), lab.deliver_to (LMTP,
    and by[subject] = the node that answered) or lab.deliver_smtp (through the transport)."""

    def __init__(self, lab, send=None, prefix="m"):
        self.lab, self.send, self.prefix = lab, send or lab.deliver, prefix
        self.ok, self.tried, self.failed, self.by = [], [], 0, {}
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            subject = f"{self.prefix}{n}"
            self.tried.append(subject)
            try:
                who = self.send(subject)
                if who:
                    if isinstance(who, str):
                        self.by[subject] = who
                    self.ok.append(subject)
                else:
                    self.failed += 1
            except Exception:  # noqa: B902 - any client error is a retry with a new subject
                self.failed += 1
                time.sleep(0.02)


class ImapLoad:
    """IMAP sessions on the CMS address until stopped: LOGIN, SELECT INBOX, FETCH of every
    subject, LOGOUT, again; a session that fails (the address moving) is counted and the next
    one reconnects."""

    def __init__(self, lab):
        self.lab, self.sessions, self.failed = lab, 0, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            if self.lab.try_select() is None:
                self.failed += 1
                time.sleep(0.05)
            else:
                self.sessions += 1


def _ts(e):
    return datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def active_intervals(s, killed_at):
    """[(start, end)] of s's CMS active spells from its event log (wall-clock seconds): from
    lease won (5050) to the first after it of its fence (5051), demotion (5055), switchover done
    (5059) or a time in killed_at (taken just before each SIGKILL of s); end None while it is
    still active."""
    evs = [e for e in s.event_lines()
           if e["id"] in (5050, 5051, 5055, 5059) and e.get("subject") == CMS]
    out = []
    for i, e in enumerate(evs):
        if e["id"] != 5050:
            continue
        start = _ts(e)
        ends = [_ts(x) for x in evs[i + 1:] if x["id"] != 5050][:1] + \
            [k for k in killed_at if k >= start]
        out.append((start, min(ends) if ends else None))
    return out


def overlaps(a, b):
    """Pairs of intervals of a and b (active_intervals) that overlap in time."""
    inf = float("inf")
    return [(x, y) for x in a for y in b
            if x[0] < (y[1] if y[1] is not None else inf) and
            y[0] < (x[1] if x[1] is not None else inf)]


__all__ = ["ClusterLab", "Member", "events", "CMS", "DB", "free_port", "Observer", "Load",
           "ImapLoad", "active_intervals", "overlaps"]
