"""Continuous replication between two real servers (docs/replication.md): a mail database
active on A and a passive copy of it on B, made with nothing but `tandemctl copy create`. Mail
delivered over LMTP and changed over IMAP on A reaches B's copy, whose content (folders,
messages, flags, keywords, UIDs, MODSEQs, bodies) then equals A's as tdm_maildump reads them;
`tandemctl copy status` shows the copy Healthy with empty queues. B killed with SIGKILL while
mail is flowing resumes where its log ends (no second seed) and catches up again."""
import imaplib
import json
import secrets
import smtplib
import subprocess
import threading
import time

import pytest

from lab import WAIT, Server, wait_for

DB = "mail"


def dump(tandem_bin, db):
    out = subprocess.run([str(tandem_bin("tdm_maildump")), str(db)], capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["mailboxes"]


def deliver(s, rcpt, subject):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("sender@example.org")
        assert c.rcpt(rcpt)[0] == 250
        code, _ = c.data(f"Subject: {subject}\r\nTo: {rcpt}\r\n\r\nbody of {subject}\r\n".encode())
        assert code == 250
    finally:
        c.close()


def copy_status(tandemctl, b):
    r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    (c,) = json.loads(r.stdout)["copies"]
    return c


def wait_status(s):
    """Until the admin socket answers /v1/status (the worker reaches the core). A server
    without the directory role serves no directory objects, so Server.wait_api does not fit."""
    def up():
        try:
            return s.api("GET", "/v1/status").status == 200
        except OSError:
            return False
    wait_for(up, f"{s.name}'s admin socket")


def active_lsn(a):
    (db,) = [d for d in a.api("GET", "/v1/status").json()["databases"] if d["name"] == DB]
    return db["durable_lsn"]


def caught_up(tandemctl, a, b):
    """The copy's status once it is Healthy, holds and has replayed all A has durable."""
    c = copy_status(tandemctl, b)
    lsn = active_lsn(a)
    if (c["state"] == "Healthy" and c["copied_lsn"] == lsn and c["replayed_lsn"] == lsn and
            c["copy_queue_generations"] == 0 and c["copy_queue_bytes"] == 0 and
            c["replay_queue_records"] == 0 and c["replay_queue_generations"] == 0):
        return c
    return None


@pytest.fixture
def pair(request, tandem_bin, tandemctl, tmp_path):
    """A with the database and its directory, B with a passive copy of it. Parametrized
    (indirect) with {"a": ..., "b": ...}: extra config for each, e.g. a [store] section."""
    extra = getattr(request, "param", {})
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("imap", "lmtp", "admin", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=())
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.write_conf(server="b", level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB, *extra.get("create", ()))
    assert r.returncode == 0, r.stderr

    # Each server makes its own local CA at its first start; then each must trust the other's
    # (A checks B's client certificate, B checks A's).
    for s in (a, b):
        p = s.start()
        s.started(p)
        s.stop(p)
    both = tmp_path / "cas.pem"
    both.write_text(a.ca.read_text() + b.ca.read_text())
    for s in (a, b):
        s.extra_conf = f"\n[tls]\nca = {both}\n" + extra.get(s.name, "")
        s.write_conf(server=s.name, level="info")

    ap = a.start()
    a.started(ap)
    a.wait_api()
    key = secrets.token_urlsafe(32)
    ok = lambda r: r.status in (200, 201)
    assert ok(a.api("PUT", "/v1/objects/server/b", {"attrs": {"site": "dc1"}}))
    assert ok(a.api("PUT", "/v1/objects/server/b/password", {"password": key}))
    assert ok(a.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:b"}))
    for user in ("alice", "bob"):
        assert ok(a.api("PUT", f"/v1/objects/user/{user}",
                        {"attrs": {"addresses": [f"{user}@example.test"], "database": DB}}))
        assert ok(a.api("PUT", f"/v1/objects/user/{user}/password", {"password": "secret-pw"}))

    (b.datadir / "server.key").write_text(key + "\n")
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    yield a, ap, b, bp
    b.kill_all()
    a.kill_all()


def imap_changes(a):
    """Flags, keywords, a new folder, a copy and an expunge: every kind of record IMAP makes."""
    m = imaplib.IMAP4(a.addr, a.ports["imap"], timeout=WAIT)
    m.login("alice", "secret-pw")
    assert m.create("Projects")[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert m.store("1:2", "+FLAGS", r"(\Seen \Flagged)")[0] == "OK"
    assert m.store("3", "+FLAGS", "(project-x)")[0] == "OK"
    assert m.copy("1:3", "Projects")[0] == "OK"
    assert m.store("4", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    m.logout()


def test_passive_copy_equals_the_active(pair, tandem_bin, tandemctl):
    a, ap, b, bp = pair
    for i in range(6):
        deliver(a, "alice@example.test", f"alice {i}")
    deliver(a, "bob@example.test", "bob 0")
    imap_changes(a)

    c = wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up with A")
    assert c["role"] == "passive" and c["mode"] == "block"
    assert c["network"] == "public"
    assert c["endpoint"] == f"{a.addr}:{a.ports['replication']}"
    assert c["inspection_failures"] == 0 and c["bytes_received"] > 0
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    # The copy was seeded from nothing and said so; the text form shows the same state.
    names = [e["name"] for e in b.event_lines() if e["subject"] == DB]
    assert "repl.copy_seeding" in names and names[-1] == "repl.copy_healthy", names
    # B connects from its own address on the network, so A's event names it.
    assert any(e["name"] == "repl.source_copy_connected" and f"({b.addr}:" in e["message"]
               for e in a.event_lines()), a.event_lines()
    r = tandemctl("copy", "status", "--socket", b.admin_socket)
    assert r.returncode == 0 and "Healthy" in r.stdout and DB in r.stdout, r.stdout
    # The same figures for Prometheus.
    metrics = b.api("GET", "/metrics").body
    assert 'tandem_copy_state{database="mail",state="Healthy"} 1' in metrics
    assert 'tandem_copy_queue_generations{database="mail"} 0' in metrics
    assert f'tandem_copy_replayed_lsn{{database="mail"}} {c["replayed_lsn"]}' in metrics
    # B never mounted the copy as a database of its own.
    assert [d["name"] for d in b.api("GET", "/v1/status").json()["databases"]] == []
    b.stop(bp)


def test_copy_survives_kill_9_mid_stream(pair, tandem_bin, tandemctl):
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "first")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    seeded = sum(e["name"] == "repl.copy_seeding" for e in b.event_lines())
    assert seeded == 1

    # Mail keeps flowing on A while B dies and comes back.
    stop = threading.Event()
    sent = []

    def load():
        i = 0
        while not stop.is_set():
            deliver(a, "bob@example.test", f"load {i}")
            sent.append(i)
            i += 1

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_for(lambda: len(sent) >= 10, "some deliveries under way")
        before = copy_status(tandemctl, b)["copied_lsn"]
        wait_for(lambda: copy_status(tandemctl, b)["copied_lsn"] > before, "B receiving")
        b.kill_all()
        n_killed = len(sent)
        bp = b.start()
        b.started(bp)
        wait_status(b)
        wait_for(lambda: len(sent) >= n_killed + 10, "more deliveries after the restart")
    finally:
        stop.set()
        t.join(timeout=WAIT)
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after its restart")
    # It went on from its own log: no second seed.
    assert sum(e["name"] == "repl.copy_seeding" for e in b.event_lines()) == 1
    mine = dump(tandem_bin, b.datadir / "db" / DB)
    assert mine == dump(tandem_bin, a.datadir / "db" / DB)
    bob = mine["bob"]["folders"]["INBOX"]["messages"]
    assert len(bob) == len(sent)
    b.stop(bp)


def test_suspend_and_resume(pair, tandemctl):
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "before")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    sock = ("--socket", b.admin_socket)
    for comment in ("disk swap", "disk swap, take two"):  # idempotent: the comment is replaced
        r = tandemctl("copy", "suspend", DB, "--comment", comment, *sock)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: (lambda c: c["state"] == "Suspended" and c["message"] == comment)(
            copy_status(tandemctl, b)), f"Suspended: {comment}")
    # Nothing is copied while suspended: A moves on, and two seconds later (a working copy
    # gets a POSITION every second) B has not followed.
    lsn = copy_status(tandemctl, b)["copied_lsn"]
    deliver(a, "alice@example.test", "while suspended")
    assert active_lsn(a) > lsn
    time.sleep(2)
    assert copy_status(tandemctl, b)["copied_lsn"] == lsn
    events = [e for e in b.event_lines() if e["name"] == "repl.copy_suspended"]
    assert len(events) == 2 and "take two" in events[-1]["message"]
    # A restart keeps it suspended, comment and all (copy.conf says so).
    b.stop(bp)
    bp = b.start()
    b.started(bp)
    wait_status(b)
    c = wait_for(lambda: (lambda c: c if c["state"] == "Suspended" else None)(
        copy_status(tandemctl, b)), "Suspended after a restart")
    assert c["message"] == "disk swap, take two" and c["copied_lsn"] == lsn

    for _ in range(2):  # idempotent: a second resume leaves the Healthy copy alone
        r = tandemctl("copy", "resume", DB, *sock)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after resume")
    # Initializing: the first start, and the resume (the restart came up Suspended).
    assert sum(e["name"] == "repl.copy_initializing" for e in b.event_lines()) == 2

    r = tandemctl("copy", "suspend", "nosuch", *sock)
    assert r.returncode == 7, (r.returncode, r.stderr)
    r = tandemctl("copy", "status", "nosuch", *sock)
    assert r.returncode == 7, (r.returncode, r.stderr)
    b.stop(bp)


def test_standby_holds_back_replay(pair, tandem_bin, tandemctl):
    """A standby copy receives everything at once but replays nothing of the last 50
    generations, whatever its lag: with a young database all it holds waits in the replay
    queue, and its LMDB stays empty."""
    a, ap, b, bp = pair
    b.stop(bp)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "standby", "--replay-lag",
                  "0s", "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0 and "rewritten" in r.stdout, (r.stdout, r.stderr)
    bp = b.start()
    b.started(bp)
    wait_status(b)
    for i in range(3):
        deliver(a, "alice@example.test", f"standby {i}")

    def held():
        c = copy_status(tandemctl, b)
        lsn = active_lsn(a)
        return c if (c["state"] == "Healthy" and c["copied_lsn"] == lsn and
                     c["copy_queue_generations"] == 0) else None

    c = wait_for(held, "the standby holding all of A's log")
    assert c["role"] == "standby"
    assert c["replayed_lsn"] < c["copied_lsn"]
    assert c["replay_queue_records"] == c["copied_lsn"] - c["replayed_lsn"]
    assert c["replay_queue_generations"] >= 1
    mine = dump(tandem_bin, b.datadir / "db" / DB)
    assert "alice" not in mine, mine
    b.stop(bp)


@pytest.fixture
def trio(tandem_bin, tandemctl, tmp_path):
    """The directory on D; the active on A, a mailbox server without the directory role, which
    asks D whether B's key is right; the copy on B."""
    exe = tandem_bin("tandemd")
    for n in ("d", "a", "b"):
        (tmp_path / n).mkdir()
    d = Server(exe, tmp_path / "d", "d", roles="directory", listeners=("admin",))
    a = Server(exe, tmp_path / "a", "a", roles="mailbox", listeners=("lmtp", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=())
    for s in (a, b):
        s.directory_endpoint = f"{d.addr}:{d.ports['admin']}"
        s.write_conf(server=s.name, level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    for s in (d, a, b):
        p = s.start()
        s.started(p)
        s.stop(p)
    cas = tmp_path / "cas.pem"
    cas.write_text(d.ca.read_text() + a.ca.read_text() + b.ca.read_text())
    for s in (d, a, b):
        s.extra_conf = f"\n[tls]\nca = {cas}\n"
        s.write_conf(server=s.name, level="info")
    dp = d.start()
    d.started(dp)
    d.wait_api()
    ok = lambda r: r.status in (200, 201)
    keys = {}
    for name in ("a", "b"):
        keys[name] = secrets.token_urlsafe(32)
        assert ok(d.api("PUT", f"/v1/objects/server/{name}", {"attrs": {"site": "dc1"}}))
        assert ok(d.api("PUT", f"/v1/objects/server/{name}/password", {"password": keys[name]}))
        assert ok(d.api("POST", "/v1/objects/group/servers/members/add",
                        {"member": f"server:{name}"}))
    assert ok(d.api("PUT", "/v1/objects/user/alice",
                    {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
    (a.datadir / "server.key").write_text(keys["a"] + "\n")
    (b.datadir / "server.key").write_text(keys["b"] + "\n")
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0, r.stderr
    procs = []
    for s in (a, b):
        p = s.start()
        s.started(p)
        wait_status(s)
        procs.append(p)
    yield d, a, b, procs
    for s in (b, a, d):
        s.kill_all()


def test_active_without_the_directory_asks_it(trio, tandem_bin, tandemctl):
    d, a, b, (ap, bp) = trio
    wait_for(lambda: copy_status(tandemctl, b)["state"] in ("Seeding", "Healthy"),
             "B admitted by A, which asked D about B's key")
    # LMTP on A finds alice on D; her mail reaches B.
    wait_for(lambda: rcpt_ok(a, "alice@example.test"), "alice known on A")
    deliver(a, "alice@example.test", "via three servers")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)

    # Out of servers, B's key no longer opens A: the next connection is refused.
    r = d.api("POST", "/v1/objects/group/servers/members/remove", {"member": "server:b"})
    assert r.status == 200, r
    b.stop(bp)
    bp = b.start()
    b.started(bp)
    wait_status(b)
    c = wait_for(lambda: (lambda c: c if c["state"] == "Failed" else None)(
        copy_status(tandemctl, b)), "B refused by A")
    assert "credentials" in c["message"], c
    b.stop(bp)
    a.stop(ap)  # the core's own directory client goes cleanly too


def rcpt_ok(s, address):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("sender@example.org")
        return c.rcpt(address)[0] == 250
    finally:
        c.close()


def generations(s):
    """The generation numbers of the copy's log files on s."""
    return sorted(int(f.name[:-4], 16) for f in (s.datadir / "db" / DB / "log").iterdir()
                  if f.name.endswith(".log"))


SMALL = {"create": ("--generation-size", "65536"),
         "a": "\n[store]\ngeneration_size = 64K\ncheckpoint_bytes = 64K\n",
         "b": "\n[store]\ncheckpoint_bytes = 64K\ncheckpoint_interval = 1s\n"}


@pytest.mark.parametrize("pair", [SMALL], indirect=True)
def test_copy_truncates_its_log_after_the_truncation_lag(pair, tandem_bin, tandemctl):
    """Generations the copy has replayed and checkpointed are deleted (its disk does not grow
    without bound); with a truncation lag they stay until it has passed."""
    a, ap, b, bp = pair
    body = "x" * 8000
    for i in range(40):
        deliver(a, "alice@example.test", f"big {i} {body}")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    assert copy_status(tandemctl, b)["copied_generation"] >= 5
    wait_for(lambda: generations(b)[0] > 1, "B's first generations deleted")
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)

    # An hour's truncation lag: from now on nothing goes.
    b.stop(bp)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--truncation-lag", "1h",
                  "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    kept = generations(b)
    for i in range(40):
        deliver(a, "alice@example.test", f"more {i} {body}")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up again")
    time.sleep(2)  # two of B's checkpoints, after which a lag of 0 would have truncated
    now = generations(b)
    assert set(kept) <= set(now), (kept, now)
    assert now == list(range(kept[0], now[-1] + 1)) and now[-1] >= kept[-1] + 4, now
    b.stop(bp)


@pytest.mark.parametrize("pair", [SMALL], indirect=True)
def test_standby_replay_lag_and_hold_back(pair, tandemctl):
    """A standby replays only generations begun more than its replay lag ago, and never the
    last 50 it holds: with an hour's lag nothing is replayed; with none, all but the last 50."""
    a, ap, b, bp = pair
    source = ("--source", f"public={a.addr}:{a.ports['replication']}")
    b.stop(bp)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "standby",
                  "--replay-lag", "1h", *source)
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    body = "y" * 8000
    i = 0
    while copy_status(tandemctl, b)["copied_generation"] < 56:
        for _ in range(20):
            deliver(a, "alice@example.test", f"m {i} {body}")
            i += 1
    wait_for(lambda: caught_up_copy(tandemctl, a, b), "the standby holding all of A's log")
    c = copy_status(tandemctl, b)
    assert c["replayed_lsn"] == 0 and c["replay_queue_records"] == c["copied_lsn"], c

    b.stop(bp)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "standby",
                  "--replay-lag", "0s", *source)
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    c = wait_for(lambda: (lambda c: c if c["replayed_generation"] > 0 else None)(
        copy_status(tandemctl, b)), "the standby replaying past its hold-back")
    top = c["copied_generation"]
    assert top - 50 - 1 <= c["replayed_generation"] <= top - 50, c
    assert 0 < c["replayed_lsn"] < c["copied_lsn"]
    b.stop(bp)


def caught_up_copy(tandemctl, a, b):
    """The copy holds all A has durable (replay aside)."""
    c = copy_status(tandemctl, b)
    return c if c["copied_lsn"] == active_lsn(a) and c["copy_queue_bytes"] == 0 else None


def test_file_mode_from_the_directory(pair, tandemctl):
    """The database object's replication attribute picks the mode (read by the active at
    start): in file mode only closed generations ship, so a record in the open one waits."""
    a, ap, b, bp = pair
    r = a.api("PUT", f"/v1/objects/database/{DB}", {"attrs": {"replication": "file"}})
    assert r.status in (200, 201), r
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    a.wait_api()
    c = wait_for(lambda: (lambda c: c if c["state"] == "Healthy" and c["mode"] == "file" else None)(
        copy_status(tandemctl, b)), "B shipping in file mode")
    before = c["copied_lsn"]
    deliver(a, "alice@example.test", "in the open generation")
    assert active_lsn(a) > before
    time.sleep(2)  # two POSITION heartbeats: block mode would have shipped it by now
    c = copy_status(tandemctl, b)
    # Not shipped, and not queued either: the open generation is not part of the copy queue.
    assert c["copied_lsn"] == before and c["copy_queue_generations"] == 0, c
    b.stop(bp)


@pytest.mark.parametrize("pair", [{"a": "\n[replication]\nsilence_timeout = 6s\n"}],
                         indirect=True)
def test_idle_copy_stays_connected(pair, tandemctl):
    """An idle copy still ACKs (at least every 5 s), so the source, which closes a copy silent
    for its silence_timeout, keeps it: one session, no disconnection, no reconnection."""
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "then nothing")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    time.sleep(9)  # past A's 6 s silence limit, with nothing to ship
    names = [e["name"] for e in a.event_lines() if e["subject"] == DB]
    assert "repl.source_copy_disconnected" not in names, names
    assert names.count("repl.source_copy_connected") == 1, names
    assert caught_up(tandemctl, a, b)
    b.stop(bp)


@pytest.mark.parametrize("pair", [SMALL], indirect=True)
def test_active_restart_keeps_what_a_lagging_copy_needs(pair, tandem_bin, tandemctl):
    """The active stopping cleanly while its copy lags (here: suspended) keeps the generations
    the copy still needs: its last checkpoint once deleted them (the source lifted the floor as
    it stopped), and the copy came back to position-gone and needed a reseed."""
    a, ap, b, bp = pair
    sock = ("--socket", b.admin_socket)
    deliver(a, "alice@example.test", "before")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    r = tandemctl("copy", "suspend", DB, "--comment", "lagging on purpose", *sock)
    assert r.returncode == 0, r.stderr
    body = "z" * 8000
    for i in range(40):  # about five 64 KiB generations past the copy
        deliver(a, "alice@example.test", f"while lagging {i} {body}")
    a.stop(ap)
    ap = a.start()
    a.started(ap)
    wait_status(a)
    r = tandemctl("copy", "resume", DB, *sock)
    assert r.returncode == 0, r.stderr

    def done():
        c = copy_status(tandemctl, b)
        assert c["state"] != "Failed", c["message"]
        return caught_up(tandemctl, a, b)

    wait_for(done, "B's copy caught up after A's restart")
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    b.stop(bp)
    a.stop(ap)
