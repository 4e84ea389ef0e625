"""Seeding a copy from a snapshot of its active (docs/replication.md, "Reseed"): a new copy whose
active has already truncated generation 1 asks for a snapshot by itself, gets it while LMTP
load goes on, catches up from the log and then equals the active (tdm_maildump); `tandemctl
copy reseed` refuses a copy that has files without --delete-existing (exit 8), and with it
rebuilds the copy the same way while the active keeps serving; the copy's server killed with
SIGKILL during a reseed comes back to a copy (never a half seed) that catches up."""
import secrets
import threading
import time

import pytest

from lab import WAIT, Server, free_port, wait_for
from test_replication import (DB, active_lsn, caught_up, copy_status, deliver, dump,  # noqa: F401
                              pair, wait_status)

BODY = "x" * 8000


def log_generations(s):
    return sorted(int(f.name[:-4], 16) for f in (s.datadir / "db" / DB / "log").iterdir()
                  if f.name.endswith(".log"))


def test_new_copy_seeds_from_a_snapshot_under_load_and_reseed(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # A serves no replication at first: with no copy to hold its floor, its checkpoints
    # truncate the early generations, as an active's would once its copies were released.
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("lmtp", "admin"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=())
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.write_conf(server="b", level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB, "--generation-size", "65536")
    assert r.returncode == 0, r.stderr
    for s in (a, b):
        p = s.start()
        s.started(p)
        s.stop(p)
    cas = tmp_path / "cas.pem"
    cas.write_text(a.ca.read_text() + b.ca.read_text())
    store = "\n[store]\ngeneration_size = 64K\ncheckpoint_bytes = 64K\ncheckpoint_interval = 1s\n"
    for s in (a, b):
        s.extra_conf = f"\n[tls]\nca = {cas}\n" + store
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
    try:
        for i in range(40):
            deliver(a, "alice@example.test", f"early {i} {BODY}")
        wait_for(lambda: log_generations(a)[0] > 1, "A's first generations truncated")
        a.stop(ap)
        a.ports["replication"] = free_port(a.addr)
        a.write_conf(server="a", level="info")
        ap = a.start()
        a.started(ap)
        wait_status(a)

        (b.datadir / "server.key").write_text(key + "\n")
        r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                      "--source", f"public={a.addr}:{a.ports['replication']}")
        assert r.returncode == 0, r.stderr

        # The copy starts while LMTP load goes on.
        stop = threading.Event()
        sent = []

        def load():
            i = 0
            while not stop.is_set():
                deliver(a, "bob@example.test", f"load {i} {BODY[:2000]}")
                sent.append(i)
                i += 1

        t = threading.Thread(target=load)
        t.start()
        try:
            wait_for(lambda: len(sent) >= 5, "deliveries under way")
            bp = b.start()
            b.started(bp)
            wait_status(b)
            b.wait_event(lambda e: e["name"] == "repl.copy_healthy", "B's copy Healthy")
            wait_for(lambda: len(sent) >= 40, "more deliveries after the seed")
        finally:
            stop.set()
            t.join(timeout=WAIT)
        wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
        assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
        assert len(dump(tandem_bin, b.datadir / "db" / DB)["bob"]["folders"]["INBOX"]
                   ["messages"]) == len(sent)
        # From a snapshot: its log never had generation 1.
        assert log_generations(b)[0] > 1
        msgs = [e["message"] for e in b.event_lines()
                if e["name"] == "repl.copy_seeding" and e["subject"] == DB]
        assert any("no longer has generation 1" in m for m in msgs), msgs
        assert "seeding b of mail: a snapshot of" in a.output()

        # A copy with files is not reseeded unless the operator says they may go.
        sock = ("--socket", b.admin_socket)
        r = tandemctl("copy", "reseed", DB, *sock)
        assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
        assert "--delete-existing" in r.stderr, r.stderr
        assert copy_status(tandemctl, b)["state"] == "Healthy"

        # With it, the copy is rebuilt from a new snapshot while A keeps taking mail.
        seeds = sum(e["name"] == "repl.copy_seeding" for e in b.event_lines())
        r = tandemctl("copy", "reseed", DB, "--delete-existing", *sock)
        assert r.returncode == 0, r.stderr
        assert "reseed requested" in r.stdout
        for i in range(10):
            deliver(a, "alice@example.test", f"during the reseed {i}")
        wait_for(lambda: sum(e["name"] == "repl.copy_seeding"
                             for e in b.event_lines()) > seeds, "B's copy Seeding again")
        wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after its reseed")
        assert a.output().count("seeding b of mail: a snapshot of") == 2
        assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
        assert copy_status(tandemctl, b)["copied_lsn"] == active_lsn(a)
        # Nothing of the seed is left beside the copy.
        assert sorted(p.name for p in (b.datadir / "db").iterdir()) == [DB]
        b.stop(bp)
        a.stop(ap)
    finally:
        b.kill_all()
        a.kill_all()


def test_reseed_of_an_unknown_copy(tandemctl, tandem_bin, tmp_path):
    """No copy of that name on the server: exit 7, as for the other copy verbs."""
    exe = tandem_bin("tandemd")
    s = Server(exe, tmp_path, "a", roles="mailbox, directory", listeners=("admin",))
    p = s.start()
    s.started(p)
    try:
        wait_status(s)
        r = tandemctl("copy", "reseed", "nothing", "--delete-existing",
                      "--socket", s.admin_socket)
        assert r.returncode == 7, (r.returncode, r.stdout, r.stderr)
        s.stop(p)
    finally:
        s.kill_all()



@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_kill_9_during_a_reseed_never_mounts_a_half_seed(pair, tandem_bin, tandemctl, delay):
    """The copy's server killed with SIGKILL at some point of a reseed (deleting the files,
    receiving the snapshot, swapping it in, shipping the log): after a restart the directory is
    still a copy, and the copy seeds or ships again until it equals the active."""
    a, ap, b, bp = pair
    for i in range(30):
        deliver(a, "alice@example.test", f"before {i} {BODY}")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up")
    r = tandemctl("copy", "reseed", DB, "--delete-existing", "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    time.sleep(delay)
    b.kill_all()
    assert (b.datadir / "db" / DB / "copy.conf").exists()
    deliver(a, "alice@example.test", "while B is down")
    bp = b.start()
    b.started(bp)
    wait_status(b)
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after its restart")
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    assert sorted(p.name for p in (b.datadir / "db").iterdir()) == [DB]
    b.stop(bp)
