"""Server keys while the directory is away (docs/cluster.md "Server keys during a directory
outage"), on the lab of two nodes and a witness that is also the directory (cluster_lab.py):

- a passive restarted while the witness (so the directory) is down still accepts the active's
  heartbeats with the key the directory confirmed before its restart, kept in its datadir
  (event 3051), so the active keeps its confirmation and the CMS keeps serving: no fence;
- a server whose key the directory no longer has keeps its sessions while the directory is
  away (an outage alone ends nothing) and loses them once the directory answers (event 3050),
  and its next HELLO is refused (5026)."""
import os
import secrets
import time

import pytest

from cluster_lab import ClusterLab, events
from lab import WAIT, wait_for


def both_up(lab, x, y):
    """x up on y's and y up on x's heartbeat sessions: each has checked the other's key."""
    def up(s, o):
        c = lab.cluster(s)
        return c and all(m["state"] == "up" for m in c["members"] if m["name"] == o.name)
    wait_for(lambda: up(x, y) and up(y, x), f"{x.name} and {y.name} up on each other's sessions")


def group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def lab_long_ttl(tandem_bin, tandemctl, tmp_path):
    # T = 10 s, so F = 9.7 s: a restart of the passive (a few seconds) alone does not fence the
    # active; only a passive that refuses it for longer does.
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, ttl="10s")
    lab.setup()
    yield lab
    lab.close()


def test_passive_restarted_while_the_directory_is_down(lab_long_ttl):
    lab = lab_long_ttl
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    assert act is lab.a
    wait_for(lambda: (lambda c: c and c["state"] == "Healthy")(lab.copy_status(pas)),
             "b's copy Healthy")
    both_up(lab, act, pas)
    # b keeps what the directory confirmed: a's key, as a hash, with its time.
    kept = pas.datadir / "server-key-confirmations"
    wait_for(lambda: kept.exists() and any(line.split(" ")[0] == "a"
                                           for line in kept.read_text().splitlines()[1:]),
             "a's confirmation in b's datadir")
    assert kept.read_text().startswith("tandem server key confirmations 1\n")
    assert kept.stat().st_mode & 0o077 == 0
    assert lab.deliver("before")

    # The witness, the directory with it, killed; then b killed and started again.
    lab.kill(lab.w)
    marks = {s.name: len(s.event_lines()) for s in lab.nodes}
    pgid = lab.procs[pas.name].pid
    lab.kill(pas)
    wait_for(lambda: group_gone(pgid), "b's processes gone (its ports free)")
    lab.start(pas)
    # b accepts a's heartbeats with the kept confirmation (3051), never refuses them (5026).
    accepted = pas.wait_event(lambda e: e["id"] == 3051 and e["subject"] == "a",
                              "b admits a with the kept confirmation (3051)")
    assert "heartbeats" in accepted["message"]
    both_up(lab, act, pas)
    # Longer than the fence time F after b's restart: a kept the CMS all along.
    time.sleep(10.0)
    assert (lab.state(act), lab.state(pas)) == ("Active", "Passive")
    for s in lab.nodes:
        moved = [e for e in events(s, 0, marks[s.name]) if e["id"] in (5026, 5051, 5052, 5055)]
        assert not moved, f"{s.name} refused or moved: {moved}"
    # Mail still flows, and b's copy is Healthy again: a admits b's copy by its own
    # confirmation (in memory, confirmed within the replication bound).
    assert lab.deliver("after restart, directory away")
    wait_for(lambda: (lambda c: c and c["state"] == "Healthy")(lab.copy_status(pas)),
             "b's copy Healthy again")


@pytest.fixture
def lab_short_cache(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path)
    lab.setup()
    # [directory] cache_ttl 20 s: live sessions' keys are checked again every 10 s.
    for s in lab.nodes:
        s.directory_endpoint += "\ncache_ttl = 20s"
        s.write_conf(server=s.name, level="info")
    yield lab
    lab.close()


def test_refused_key_drops_sessions_once_the_directory_answers(lab_short_cache):
    lab = lab_short_cache
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    assert act is lab.a
    wait_for(lambda: (lambda c: c and c["state"] == "Healthy")(lab.copy_status(pas)),
             "b's copy Healthy")
    both_up(lab, act, pas)

    # b's key changed in the directory (b still runs with the old one), and the directory
    # taken away at once, before a checks b's sessions again.
    r = lab.w.api("PUT", "/v1/objects/server/b/password", {"password": secrets.token_urlsafe(32)})
    assert r.status in (200, 201, 204), r.status
    lab.kill(lab.w)
    mark = len(act.event_lines())
    # Two re-check periods without a directory: b's sessions stay, the CMS stays.
    time.sleep(25.0)
    assert not events(act, 3050, mark), "sessions ended with no directory to refuse the key"
    assert (lab.state(act), lab.state(pas)) == ("Active", "Passive")

    # The directory back: a's next check of b's key is refused, b's sessions end (3050), and
    # b's next HELLO is refused (5026).
    lab.start(lab.w)
    dropped = act.wait_event(lambda e: e["id"] == 3050 and e["subject"] == "b",
                             "a ends b's sessions (3050)")
    assert "refuses the key" in dropped["message"]
    n = int(dropped["message"].split(" ", 1)[0])
    assert n >= 1, dropped
    act.wait_event(lambda e: e["id"] == 5026 and e["subject"] == "b" and
                   e["ts"] >= dropped["ts"], "b's next HELLO refused on a (5026)")
    # a keeps the CMS on the witness's confirmation.
    assert lab.state(act) == "Active"


def test_refused_key_drops_sessions_with_the_directory_up(lab_short_cache):
    """Without any outage: b's key changed in the directory ends b's sessions on a (its
    heartbeats and its copy, checked with the directory every 10 s here) and on the witness,
    whose own directory refuses it at its next check (every minute): b's heartbeats and its
    coordination session there."""
    lab = lab_short_cache
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    assert act is lab.a
    wait_for(lambda: (lambda c: c and c["state"] == "Healthy")(lab.copy_status(pas)),
             "b's copy Healthy")
    both_up(lab, act, pas)
    wait_for(lambda: (lambda c: c and any(x["member"] == "b" for x in c.get("connected", [])))(
        lab.cluster(lab.w)), "b connected to the witness's coordination store")
    marks = {s.name: len(s.event_lines()) for s in (act, lab.w)}
    r = lab.w.api("PUT", "/v1/objects/server/b/password", {"password": secrets.token_urlsafe(32)})
    assert r.status in (200, 201, 204), r.status
    on_a = wait_for(lambda: events(act, 3050, marks["a"]), "a ends b's sessions (3050)")
    assert on_a[0]["subject"] == "b"
    # b's heartbeats and its copy (replication); both may not be up at the same instant.
    assert int(on_a[0]["message"].split(" ", 1)[0]) >= 1
    on_w = wait_for(lambda: events(lab.w, 3050, marks["w"]), "the witness ends b's sessions",
                    timeout=WAIT + 70)
    assert on_w[0]["subject"] == "b"
    # Its heartbeats and its coordination session.
    assert int(on_w[0]["message"].split(" ", 1)[0]) >= 2, on_w
    # a keeps the CMS (its confirmation comes from the witness); b is refused from now on.
    assert lab.state(act) == "Active"
    assert not events(act, 3050, marks["a"])[1:], "a ended sessions of b twice"
