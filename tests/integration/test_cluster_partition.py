"""Network partitions of a cluster (docs/cluster.md, "Timing", "Failsafe", "Partitions and
flapping links"): the witness w and the nodes a and b each run in their own network namespace,
joined pairwise by one veth pair per link (a-b, a-w, b-w), so each link can be cut alone. A
cut is both ends of the link's veth pair set down (as test_replication_netns.py does): the
packets on it vanish, sessions across it hear nothing more.

- The active cut from the passive and the witness fences itself (writes refused, dismounted,
  address down) before the passive mounts; the passive takes over in the next epoch; healed,
  the old active rejoins as a passive.
- The witness cut alone, or the passive cut alone, moves nothing; mail delivered to the
  active is acknowledged throughout; healed, everything is as before.
- One link flapping (a-b, then a-w, then b-w) moves nothing; the active's two links flapping together
  with cuts around the detection time fence it at most once per cut, and each activation
  follows a fence: no storm, and once the links are stable the cluster is.
An observer in the root namespace polls both nodes' admin API (its unix socket) every 50 ms
and never sees two nodes Active, nor the CMS address on both nodes' interfaces.

Addressing: each server has one home address, a /32 on its own loopback (198.18.20.x), and
static routes to the others' home addresses over the link to each, so the home address stays
reachable from inside its own namespace whatever is cut (the test delivers mail to the
active's home address from there). The CMS address (198.18.10.100) is on the a-b link's
network, `[cms] interface` = each node's end of it: the supervisor of the active node adds it
there and announces it, and deletes it when the CMS leaves (docs/cluster.md, "CMS address").
The passive's copy pulls from it across a-b, as in a real site.

Timers: the defaults (heartbeat_interval 1 s, misses 5, lease_ttl 4 s) halved, with their
ratios kept: I = 500 ms, misses 5 (down after 2.5 s), T = 2 s, so the fence time F = T - I =
1.5 s, the passive's silence F + I/2 = 1.75 s.

Needs root and `ip netns` (iproute2); skipped otherwise. Addresses of 198.18.0.0/15 exist only
inside the test's namespaces, which are deleted on every exit path.
"""
import datetime
import json
import os
import subprocess
import textwrap
import threading
import time

import pytest

from cluster_lab import CMS, DB, ClusterLab, Member
from lab import WAIT, wait_for
from test_replication_netns import ip, netns_unavailable

INTERVAL_MS, MISSES, TTL_S = 500, 5, 2.0
F_S = TTL_S - INTERVAL_MS / 1000  # the fence time
HOME = {"a": "198.18.20.1", "b": "198.18.20.2", "w": "198.18.20.9"}
CMS_ADDR = "198.18.10.100"  # on the a-b link's network
# link: (end, address, end, address); interfaces are named after the peer ("to_b").
LINKS = {"ab": ("a", "198.18.10.1", "b", "198.18.10.2"),
         "aw": ("a", "198.18.11.1", "w", "198.18.11.9"),
         "bw": ("b", "198.18.12.2", "w", "198.18.12.9")}
PORTS = {"imap": 1143, "lmtp": 2424, "replication": 7433, "cluster": 7434, "coord": 7435,
         "admin": 8443}
# Events of a move: lease won, fenced, failover done, demoted. A takeover attempt (5052,
# failover started) is not one: a passive that has not heard the active for F + I/2 asks the
# witness for the lease, which refuses it while the active renews (docs/cluster.md, "Partitions
# and flapping links").
MOVES = (5050, 5051, 5053, 5055)


def routes():
    """{link: [(namespace end, destination, via)]}: the home addresses reached over each link."""
    return {link: [(x, HOME[y], ay), (y, HOME[x], ax)]
            for link, (x, ax, y, ay) in LINKS.items()}


class Net:
    """The three namespaces and their links. cut()/heal() set both ends of a link down/up;
    heal puts back the routes that the kernel dropped with the link."""

    def __init__(self):
        tag = f"tdp{os.getpid()}"
        self.ns = {n: f"{tag}{n}" for n in HOME}
        self.routes = routes()
        self.made = []

    def make(self):
        for n, name in self.ns.items():
            ip("netns", "add", name)
            self.made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "addr", "add", f"{HOME[n]}/32", "dev", "lo")
        for link, (x, ax, y, ay) in LINKS.items():
            ip("link", "add", f"to_{y}", "netns", self.ns[x], "type", "veth",
               "peer", "name", f"to_{x}", "netns", self.ns[y])
            for end, addr, peer in ((x, ax, y), (y, ay, x)):
                ip("-n", self.ns[end], "addr", "add", f"{addr}/24", "dev", f"to_{peer}")
            self.heal(link)

    def ends(self, link):
        x, _, y, _ = LINKS[link]
        return ((x, f"to_{y}"), (y, f"to_{x}"))

    def cut(self, *links):
        for link in links:
            for end, dev in self.ends(link):
                ip("-n", self.ns[end], "link", "set", dev, "down")

    def heal(self, *links):
        for link in links:
            for end, dev in self.ends(link):
                ip("-n", self.ns[end], "link", "set", dev, "up")
            for end, dst, via in self.routes[link]:
                ip("-n", self.ns[end], "route", "replace", f"{dst}/32", "via", via)

    def has_cms_address(self, node):
        return CMS_ADDR in ip("-n", self.ns[node], "-4", "addr", "show").stdout

    def destroy(self):
        for name in self.made:
            ip("netns", "del", name, check=False)


class NsMember(Member):
    """A lab member inside its namespace, on its home address, with the lab's fixed ports (each
    namespace has its own, so every node serves the CMS's ports)."""

    def __init__(self, exe, tmp, name, roles, listeners, netns):
        self.netns = netns
        super().__init__(exe, tmp, name, roles=roles, listeners=listeners)
        self.addr = HOME[name]
        self.ports = {p: PORTS[p] for p in listeners}
        self.write_conf(server=name, level="info")

    def start(self):
        with open(self.log, "ab") as log:
            p = subprocess.Popen(["ip", "netns", "exec", self.netns, str(self.exe), "-c",
                                  str(self.conf), "--foreground"],
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p


class PartitionLab(ClusterLab):
    """cluster_lab.ClusterLab's witness (with the directory), nodes and CMS, in Net's
    namespaces."""

    def __init__(self, tandem_bin, tandemctl, tmp_path, net):
        self.tandemctl = tandemctl
        self.interval_ms, self.misses, self.ttl = INTERVAL_MS, MISSES, f"{int(TTL_S * 1000)}ms"
        self.cms_addr, self.mount_dial = CMS_ADDR, "good"
        self.net = net
        exe = tandem_bin("tandemd")
        for n in ("a", "b", "w"):
            (tmp_path / n).mkdir()
        self.w = NsMember(exe, tmp_path / "w", "w", "witness, directory",
                          ("admin", "cluster", "coord"), net.ns["w"])
        nl = ("imap", "lmtp", "replication", "cluster")
        self.a = NsMember(exe, tmp_path / "a", "a", "mailbox", nl, net.ns["a"])
        self.b = NsMember(exe, tmp_path / "b", "b", "mailbox", nl, net.ns["b"])
        self.servers = self.members = (self.a, self.b, self.w)
        self.t, self.replication = None, None  # no transport; the default replication mode
        self.procs = {}
        for s in (self.a, self.b):
            s.directory_endpoint = f"{self.w.addr}:{self.w.ports['admin']}"
        self.tmp = tmp_path

    def node_conf(self, me):
        # [cms] is the last section: its interface is this node's end of the a-b link.
        return super().node_conf(me) + f"interface = to_{'b' if me is self.a else 'a'}\n"

    def member(self, s, name):
        d = self.cluster(s)
        if not d:
            return None
        return next((m for m in d["members"] if m["name"] == name), None)

    def sees(self, s, name):
        m = self.member(s, name)
        return bool(m and m["state"] == "up")


class Observer(threading.Thread):
    """Every 50 ms: both nodes' states (kept as a history of changes) and any instant where
    both say Active; every 100 ms, any where both hold the CMS address."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab, self.stop, self.both, self.polls = lab, threading.Event(), [], 0
        self.history = []  # (time.time(), {node: state}) at each change

    def run(self):
        last = None
        while not self.stop.is_set():
            st = {s.name: self.lab.state(s) for s in self.lab.nodes}
            self.polls += 1
            if st != last:
                self.history.append((time.time(), st))
                last = st
            if list(st.values()).count("Active") == 2:
                self.both.append((time.time(), "Active"))
            if self.polls % 2 == 0 and all(self.lab.net.has_cms_address(s.name)
                                           for s in self.lab.nodes):
                self.both.append((time.time(), "address"))
            time.sleep(0.05)

    def states_since(self, t):
        """Every state each node was seen in from time t on (the one current at t included)."""
        seen = {s.name: set() for s in self.lab.nodes}
        current = None
        for at, st in self.history:
            if at <= t:
                current = st
                continue
            for n, v in st.items():
                seen[n].add(v)
        for n, v in (current or {}).items():
            seen[n].add(v)
        return seen

    def finish(self):
        self.stop.set()
        self.join()
        assert self.polls > 10 and not self.both, f"both nodes Active or with the address: " \
            f"{self.both}"


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    net = Net()
    lab = None
    obs = None
    try:
        net.make()
        lab = PartitionLab(tandem_bin, tandemctl, tmp_path, net)
        lab.setup()
        for s in lab.nodes:
            lab.start(s)
        obs = Observer(lab)
        obs.start()
        lab.obs = obs
        # Startup under a loaded machine (ASan, shared cores) may take a while.
        act, pas = lab.wait_one_active(timeout=3 * WAIT)
        assert act is lab.a
        # One delivery first: the workers' directory cache then knows the recipient, as a
        # running server's does, so the witness (which holds the lab's directory) may be cut.
        assert wait_for(lambda: deliver(lab, act, ["first"]) == [250], "a first delivery")
        lab.wait_caught_up(act, pas)
        wait_for(lambda: lab.sees(lab.a, "b") and lab.sees(lab.b, "a") and
                 lab.sees(lab.a, "w") and lab.sees(lab.b, "w"), "every member up")
        yield lab
    finally:
        if obs:
            obs.stop.set()
            obs.join()
        if lab:
            lab.close()
        net.destroy()


def deliver(lab, node, subjects):
    """LMTP to node's home address from inside its namespace: [code] per subject (the RCPT's
    code when not 250, else the DATA's; 0 when the connection failed)."""
    script = textwrap.dedent(f"""
        import json, smtplib
        out = []
        for s in {list(subjects)!r}:
            try:
                c = smtplib.LMTP({node.addr!r}, {node.ports['lmtp']}, timeout=10)
                c.ehlo("client.test")
                c.mail("sender@example.org")
                code = c.rcpt("alice@example.test")[0]
                if code == 250:
                    code = c.data(("Subject: " + s + "\\r\\nTo: alice@example.test\\r\\n\\r\\n"
                                   + s + "\\r\\n").encode())[0]
                c.close()
            except (OSError, smtplib.SMTPException):
                code = 0
            out.append(code)
        print(json.dumps(out))
    """)
    r = subprocess.run(["ip", "netns", "exec", node.netns, "/usr/bin/python3", "-c", script],
                       capture_output=True, text=True, timeout=WAIT + 10 * len(subjects))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ts(e):
    """An event's time (UTC, ms: docs/events.md) as seconds since the epoch; the servers share
    this host's wall clock, so times of different servers compare."""
    return datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def events_since(s, mark, ids, subject=None):
    return [e for e in s.event_lines()[mark:]
            if e["id"] in ids and (subject is None or e["subject"] == subject)]


# A passive's states while it does not take over: passive, waiting (no quorum, the active
# silent) or asking the witness for the lease (FailingOver) — never Active, Moving or Fenced.
PASSIVE_STATES = {"Passive", "Waiting", "FailingOver"}


def marks(lab):
    return {s.name: len(s.event_lines()) for s in lab.nodes}


def moved(lab, mark):
    return {s.name: [(e["id"], e["message"]) for e in events_since(s, mark[s.name], MOVES)]
            for s in lab.nodes}


def test_active_cut_fences_before_the_passive_mounts(lab):
    a, b = lab.a, lab.b
    epoch1 = lab.cms(a)["lease"]["epoch"]
    assert deliver(lab, a, [f"before {i}" for i in range(5)]) == [250] * 5
    lab.wait_caught_up(a, b)
    mark = marks(lab)

    lab.net.cut("ab", "aw")
    cut_at = time.time()
    c = lab.wait_state(b, "Active")
    assert c["lease"]["holder"] == "b" and c["lease"]["epoch"] == epoch1 + 1
    wait_for(lambda: lab.net.has_cms_address("b"), "the CMS address on b's interface")
    fence = a.wait_event(lambda e: e["id"] == 5051 and ts(e) >= cut_at - 1, "a fenced (5051)")
    assert "no confirmation" in fence["message"], fence
    wait_for(lambda: events_since(a, mark["a"], (5041,), CMS) and
             events_since(a, mark["a"], (1001,), DB), "a's address down and database dismounted")
    assert not lab.net.has_cms_address("a")
    # Writes refused on the fenced node (as for a database not here), still cut off.
    assert deliver(lab, a, ["to the fenced node"]) == [451], "a took a write"
    assert lab.state(a) != "Active"

    # The order, from the events' times (one wall clock on this host): a stopped acknowledging
    # (5051), dismounted (1001) and took its address down (5041) before b mounted (1000; its
    # lease won, 5050, is said once the databases are mounted).
    def first(s, eid, subject=None):
        found = events_since(s, mark[s.name], (eid,), subject)
        assert found, f"no event {eid} on {s.name}"
        return ts(found[0])
    a_fenced, a_dismounted, a_down = first(a, 5051), first(a, 1001, DB), first(a, 5041, CMS)
    b_asked, b_mounted, b_won = first(b, 5052), first(b, 1000, DB), first(b, 5050)
    print(f"\nactive cut: a fenced {a_fenced - cut_at:.3f} s after the cut, dismounted "
          f"{a_dismounted - cut_at:.3f}, address down {a_down - cut_at:.3f}; b asked for the "
          f"lease {b_asked - cut_at:.3f}, mounted {b_mounted - cut_at:.3f}")
    assert a_fenced < b_mounted and a_dismounted < b_mounted and a_down < b_mounted
    assert b_asked <= b_mounted <= b_won
    # The fence came no earlier than F after the cut minus the age of the last confirmation
    # (at most about one interval): no sooner than the contract lets it.
    assert a_fenced - cut_at > F_S - 2 * INTERVAL_MS / 1000
    started = events_since(b, mark["b"], (5052,))
    assert started and "from a" in started[0]["message"]

    # b serves; healed, a rejoins as a passive of b and catches up; nothing else moves.
    assert deliver(lab, b, ["after failover"]) == [250]
    lab.net.heal("ab", "aw")
    a.wait_event(lambda e: e["id"] == 5056 and ts(e) > cut_at, "a rejoined (5056)")
    lab.wait_state(a, "Passive")
    assert lab.state(b) == "Active"
    assert deliver(lab, b, ["after heal"]) == [250]
    copy = lab.wait_caught_up(b, a)
    assert copy["state"] == "Healthy"
    got = moved(lab, mark)
    assert [i for i, _ in got["a"] if i in (5050, 5052)] == [], got
    assert [i for i, _ in got["b"] if i in (5051, 5055)] == [], got
    lab.obs.finish()


def assert_stayed(lab, t0, mark):
    """a was Active and b a passive throughout since t0, and neither moved."""
    seen = lab.obs.states_since(t0)
    assert seen["a"] == {"Active"} and seen["b"] <= PASSIVE_STATES, seen
    assert moved(lab, mark) == {"a": [], "b": []}


def attempts(lab, mark):
    return len(events_since(lab.b, mark["b"], (5052,)))


def quiet(lab, seconds, mark, deliver_to=None):
    """Sleeps seconds, delivering to deliver_to every second (each must be acknowledged);
    asserts nothing moved meanwhile. Returns the subjects delivered."""
    sent = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        if deliver_to is not None:
            s = f"quiet {time.time():.3f} {i}"
            i += 1
            assert deliver(lab, deliver_to, [s]) == [250], s
            sent.append(s)
        time.sleep(1.0)
    assert moved(lab, mark) == {"a": [], "b": []}
    return sent


def test_witness_cut_alone_moves_nothing(lab):
    a, b = lab.a, lab.b
    mark = marks(lab)
    t0 = time.time()
    lab.net.cut("aw", "bw")
    wait_for(lambda: not lab.sees(a, "w") and not lab.sees(b, "w"),
             "the witness down on both nodes", timeout=WAIT)
    # Several lease periods with the witness cut: the active keeps the CMS (b confirms it),
    # b does not move (it hears a), mail is acknowledged.
    quiet(lab, 4 * TTL_S, mark, deliver_to=a)
    assert lab.sees(a, "b") and lab.sees(b, "a")
    lab.net.heal("aw", "bw")
    wait_for(lambda: lab.sees(a, "w") and lab.sees(b, "w"), "the witness up again")
    quiet(lab, TTL_S, mark, deliver_to=a)
    lab.wait_caught_up(a, b)
    assert_stayed(lab, t0, mark)
    # b heard a throughout: it never even asked for the lease.
    assert lab.obs.states_since(t0)["b"] == {"Passive"} and attempts(lab, mark) == 0
    assert lab.cms(a)["lease"]["holder"] == "a"
    lab.obs.finish()


def test_passive_cut_alone_moves_nothing(lab):
    a, b = lab.a, lab.b
    mark = marks(lab)
    t0 = time.time()
    lab.net.cut("ab", "bw")
    wait_for(lambda: not lab.sees(a, "b") and (lambda d: d and not d["has_quorum"])(
        lab.cluster(b)), "b down on a, b without quorum")
    sent = quiet(lab, 4 * TTL_S, mark, deliver_to=a)
    assert lab.state(b) in PASSIVE_STATES and lab.cluster(a)["has_quorum"]
    lab.net.heal("ab", "bw")
    wait_for(lambda: lab.sees(a, "b") and lab.sees(b, "a") and lab.sees(b, "w"),
             "b up again")
    copy = lab.wait_caught_up(a, b)
    assert copy["state"] == "Healthy" and len(sent) >= 4
    lab.wait_state(b, "Passive")
    assert_stayed(lab, t0, mark)
    print(f"\npassive cut: {attempts(lab, mark)} takeover attempt(s) by b, refused")
    lab.obs.finish()


# Cut and up times (s) around the detection time (fence F = 1.5 s, passive's silence 1.75 s,
# member down 2.5 s, lease 2 s), below and above each.
FLAPS = ((1.0, 0.5), (1.6, 0.3), (2.0, 0.8), (2.6, 0.4), (1.3, 1.0), (3.0, 0.5))


def flap(lab, links):
    for down, up in FLAPS:
        lab.net.cut(*links)
        time.sleep(down)
        lab.net.heal(*links)
        time.sleep(up)


def test_one_link_flapping_moves_nothing(lab):
    """a-b flapping: a keeps the witness's confirmation, b never has the lease's grant. a-w
    flapping: b confirms a (every node), b hears a. b-w flapping: a keeps both, b hears a.
    None fences nor moves anything."""
    a, b = lab.a, lab.b
    mark = marks(lab)
    t0 = time.time()
    for link in ("ab", "aw", "bw"):
        flap(lab, (link,))
        wait_for(lambda: lab.sees(a, "b") and lab.sees(a, "w") and lab.sees(b, "a") and
                 lab.sees(b, "w"), "every member up after the flapping", timeout=WAIT + 10)
        assert moved(lab, mark) == {"a": [], "b": []}, link
        print(f"\n{link} flapping: {attempts(lab, mark)} takeover attempt(s) by b so far")
    assert deliver(lab, a, ["after flapping"]) == [250]
    lab.wait_caught_up(a, b)
    lab.wait_state(b, "Passive")
    assert_stayed(lab, t0, mark)
    lab.obs.finish()


def test_active_isolation_flapping_no_storm(lab):
    """The active's two links cut and healed together, with cuts around the detection time.
    The contract (docs/cluster.md, "Partitions and flapping links"): never two actives; every
    fence follows a cut; every activation follows the fence of the node that was active
    (at most one activation per fence); once the links stay up, one node is Active, the
    other a Healthy passive, and nothing moves any more."""
    a = lab.a
    epoch1 = lab.cms(a)["lease"]["epoch"]
    mark = marks(lab)
    flap(lab, ("ab", "aw"))
    healed = time.time()
    act, pas = lab.wait_one_active(timeout=3 * WAIT)
    wait_for(lambda: lab.sees(act, pas.name) and lab.sees(pas, act.name), "a and b up")
    lab.wait_caught_up(act, pas)
    settled = marks(lab)
    time.sleep(3 * TTL_S)
    assert moved(lab, settled) == {"a": [], "b": []}
    assert (lab.state(act), lab.state(pas)) == ("Active", "Passive")

    ev = sorted((ts(e), s.name, e["id"]) for s in lab.nodes
                for e in events_since(s, mark[s.name], (5050, 5051)))
    fences = [x for x in ev if x[2] == 5051]
    wins = [x for x in ev if x[2] == 5050]
    print(f"\nflapping isolation of the active: {len(FLAPS)} cuts, {len(fences)} fence(s), "
          f"{len(wins)} activation(s): {[(round(t - healed, 3), n, i) for t, n, i in ev]}")
    assert len(fences) <= len(FLAPS)
    assert len(wins) <= len(fences)
    # Fences and activations alternate: an activation only after a fence since the last one.
    pending = 0
    for _, node, eid in ev:
        if eid == 5051:
            pending += 1
        else:
            assert pending == 1, ev
            pending = 0
    # Each activation in a newer epoch, the active in the last one won. (Epochs may be
    # skipped: a renewal the fenced node had sent before a cut may reach the witness after
    # its lease expired, which grants it anew in the next epoch, unused.)
    won_epochs = [ep for _, ep in sorted(
        (ts(e), int(e["message"].split("epoch ")[1].split(";")[0])) for s in lab.nodes
        for e in events_since(s, mark[s.name], (5050,)))]
    assert won_epochs == sorted(set(won_epochs)) and all(x > epoch1 for x in won_epochs)
    assert lab.cms(act)["lease"]["epoch"] == (max(won_epochs) if won_epochs else epoch1)
    lab.obs.finish()
