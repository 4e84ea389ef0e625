"""Chaos under load (issue 6; docs/cluster.md, "Failover", "Rejoin"): the active node's whole
tandemd killed with SIGKILL again and again, alternating nodes, while LMTP deliveries and IMAP
sessions run on the CMS address. Each round: the other node serves IMAP LOGIN + SELECT on the
CMS address, the killed node restarts and rejoins as a Healthy passive copy (a diverged one is
reseeded, as an operator would: docs/decisions.md), so the next kill is a failover, not an
outage. Throughout, an observer polls both nodes every 50 ms and never sees two Active, and the
nodes' event logs never show two Active spells overlapping. At the end:

- sync mode ([cms] replication = sync): every delivery answered 250 is there exactly once,
  with no dumpster;
- block mode, LMTP straight to the CMS address: what a failover lost is only the tail of what
  the killed active answered (never a hole), within the mount dial, and reported; everything
  else is there exactly once;
- block and file modes through the transport (SMTP in, LMTP to the CMS, a dumpster): every
  delivery answered 250 is there exactly once, the agent's resubmission from the dumpster
  filling each lossy failover's gap.

TANDEM_CHAOS_KILLS kills per mode (default 2: a failover, and one back to the node that was
just reseeded or rejoined; the four cases took 1m44s under load 10-20, so make check stays
short). The issue's 50 on demand: results of full runs are in docs/benchmarks.md ("Chaos")."""
import os
import time

import pytest

from cluster_lab import (CMS, DB, ClusterLab, ImapLoad, Load, Observer, active_intervals,
                         events, overlaps)
from lab import WAIT, wait_for

KILLS = int(os.environ.get("TANDEM_CHAOS_KILLS", "2"))
GENERATION = 1 << 20  # the default generation size: the mount dial counts in these


def make_lab(tandem_bin, tandemctl, tmp_path, **kw):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, **kw)
    lab.setup()
    return lab


@pytest.fixture
def labs():
    made = []
    yield made
    for lab in made:
        lab.close()


def sync_state(lab, s):
    (db,) = [d for d in s.api("GET", "/v1/status").json()["databases"] if d["name"] == DB]
    return db.get("sync")


def rejoined(lab, s, mark, reseeds):
    """s (restarted) a Healthy passive copy as its agent sees it (5056 after mark). A copy
    that diverged (the killed active had records the new one never got) is Failed until a
    reseed: run it, as an operator would, and count it."""
    def check():
        c = lab.copy_status(s)
        if c and c["state"] == "Failed" and "diverged" in (c.get("message") or ""):
            r = lab.tandemctl("copy", "reseed", DB, "--delete-existing",
                              "--socket", s.admin_socket)
            assert r.returncode == 0, r.stderr
            reseeds.append(c["message"])
            return None
        return [e for e in events(s, 5056, mark) if e["subject"] == CMS]
    wait_for(check, f"{s.name} rejoined as a Healthy passive (5056)", 3 * WAIT)
    assert lab.state(s) == "Passive"


def ready_for_a_kill(lab, act, pas, sync):
    """The next kill is a failover: pas Healthy and its agent saw it so; in sync mode the
    active no longer degraded, and the copy holds everything answered while it was."""
    wait_for(lambda: lab.healthy(pas), f"{pas.name}'s copy Healthy")
    if sync:
        wait_for(lambda: sync_state(lab, act) == "sync", f"{act.name} back in sync mode")
        lsn = lab.active_lsn(act)
        wait_for(lambda: (lambda c: c and c["copied_lsn"] >= lsn)(lab.copy_status(pas)),
                 f"{pas.name}'s copy at LSN {lsn}")
    # The agent samples its copy once per round (test_cluster_failback.py).
    time.sleep(3 * lab.interval_ms / 1000)


def chaos(lab, kills, send=None, sync=False, per_round=None, load_holder=None):
    """Starts the lab, runs kills rounds under load; returns a dict of what happened.
    per_round(i, killed, new active, len(load.ok) at the kill) runs after each failover, with
    the load in load_holder["load"]."""
    for s in lab.nodes:
        lab.start(s)
    # Generous: on a loaded machine the directory (on the witness) answers the nodes' first key
    # checks slowly, and heartbeats are refused until it does (5026).
    act, pas = lab.wait_one_active(timeout=3 * WAIT)
    obs = Observer(lab)
    obs.start()
    load = Load(lab, send=send, prefix="chaos-")
    if load_holder is not None:
        load_holder["load"] = load
    imap = ImapLoad(lab)
    load.t.start()
    imap.t.start()
    killed_at = {s.name: [] for s in lab.nodes}
    reseeds, failovers, took = [], [], []
    t0 = time.monotonic()
    try:
        wait_for(lambda: lab.healthy(pas), f"{pas.name}'s copy Healthy")
        for i in range(kills):
            ready_for_a_kill(lab, act, pas, sync)
            n_ok = len(load.ok)
            wait_for(lambda: len(load.ok) > n_ok, f"a delivery answered before kill {i}")
            killed_at[act.name].append(time.time())
            n_before = len(load.ok)
            lab.kill(act)
            k = time.monotonic()
            # A late grant of the witness (a loaded machine) may fence the new active at once
            # after it mounts: it takes the CMS back (test_cluster_late_grant.py).
            wait_for(lab.try_select, f"IMAP SELECT on the CMS address after kill {i}")
            took.append(time.monotonic() - k)
            c = lab.wait_state(pas, "Active")
            assert c["lease"]["holder"] == pas.name
            failovers.append(wait_for(
                lambda: (lambda f: f if f and f["epoch"] == c["lease"]["epoch"] else None)(
                    (lab.cms(pas) or {}).get("last_failover")),
                f"{pas.name}'s failover record"))
            if per_round:
                per_round(i, act, pas, n_before)
            mark = len(act.event_lines())
            lab.start(act)
            rejoined(lab, act, mark, reseeds)
            act, pas = pas, act
            n_ok = len(load.ok)
            wait_for(lambda: len(load.ok) > n_ok, f"a delivery answered after kill {i}")
    finally:
        load.stop.set()
        imap.stop.set()
        load.t.join(timeout=WAIT)
        imap.t.join(timeout=WAIT)
        obs.stop.set()
        obs.join()
    elapsed = time.monotonic() - t0
    assert obs.polls > 10 and not obs.both, f"both nodes Active at {obs.both}"
    both = overlaps(*(active_intervals(s, killed_at[s.name]) for s in lab.nodes))
    assert not both, f"Active spells overlapping in the event logs: {both}"
    assert imap.sessions > kills, imap.sessions
    return {"load": load, "imap": imap, "reseeds": reseeds, "failovers": failovers,
            "took": took, "elapsed": elapsed, "active": act}


def report(mode, kills, r, missing, twice, extra=""):
    took = sorted(r["took"])
    print(f"\nchaos {mode}: {kills} kills in {r['elapsed']:.0f} s; {len(r['load'].ok)} "
          f"deliveries answered 250 of {len(r['load'].tried)}; missing {len(missing)}, more "
          f"than once {len(twice)}; {r['imap'].sessions} IMAP sessions ({r['imap'].failed} "
          f"failed while the address moved); {len(r['reseeds'])} reseed(s) of a diverged "
          f"copy; kill to SELECT median {took[len(took) // 2]:.2f} s, max {took[-1]:.2f} s"
          f"{extra}")


def test_chaos_sync_mode_loses_nothing(tandem_bin, tandemctl, tmp_path, labs):
    lab = make_lab(tandem_bin, tandemctl, tmp_path, replication="sync")
    labs.append(lab)
    r = chaos(lab, KILLS, sync=True)
    got = lab.all_subjects()
    missing = [s for s in r["load"].ok if s not in got]
    twice = sorted({s for s in got if got.count(s) > 1})
    # The agent's lost_records counts records the killed active had durable and its copy had
    # not: in sync mode only commits never answered.
    report("sync", KILLS, r, missing, twice,
           f"; the agent's records {[f['lost_records'] for f in r['failovers']]}")
    # Sync mode was in force: the copies showed it (the mode the active ships in).
    assert wait_for(lambda: lab.copy_status(lab.b if r["active"] is lab.a else lab.a),
                    "copy status")["mode"] == "sync"
    assert not missing, f"answered 250 but missing: {missing}"
    assert not twice, f"there more than once: {twice}"


def test_chaos_block_mode_loses_only_tails(tandem_bin, tandemctl, tmp_path, labs):
    """Block mode with LMTP straight to the CMS address (no dumpster): a failover may lose what
    the killed active answered last and its copy had not received. Each failover's loss is a
    tail of what that active answered (the copy holds a prefix of its log: never a hole) and
    within the mount dial (good: 3 generations); it is reported. Nothing is there twice, and
    nothing answered by an active that was not killed right after is missing."""
    lab = make_lab(tandem_bin, tandemctl, tmp_path, replication="block")
    labs.append(lab)
    judged, lost, per_failover, held = set(), [], [], {}

    def after_failover(i, killed, new, n_before):
        load = held["load"]
        # Every delivery the killed node answered is in load.ok by now: its last reply was
        # read before the new active came up, which took longer than any reply in flight.
        got = set(lab.select())
        window = [s for s in load.ok if load.by.get(s) == killed.name and s not in judged]
        missing = [s for s in window if s not in got]
        assert missing == window[len(window) - len(missing):], \
            f"failover {i}: a hole, not a tail, in what {killed.name} answered: {missing}"
        # Each message is one record of more than 100 bytes: the dial's 3 generations bound
        # how many can be missing.
        assert len(missing) * 100 <= 3 * GENERATION, len(missing)
        judged.update(window)
        lost.extend(missing)
        per_failover.append(len(missing))

    r = chaos(lab, KILLS, send=lab.deliver_to, per_round=after_failover, load_holder=held)
    load = r["load"]
    got = lab.all_subjects()
    missing = [s for s in load.ok if s not in got]
    twice = sorted({s for s in got if got.count(s) > 1})
    report("block (LMTP, no dumpster)", KILLS, r, missing, twice,
           f"; lost per failover {per_failover}, the agent's records "
           f"{[f['lost_records'] for f in r['failovers']]}")
    assert not twice, f"there more than once: {twice}"
    assert sorted(missing) == sorted(lost), set(missing) ^ set(lost)


@pytest.mark.parametrize("mode", ["block", "file"])
def test_chaos_lossy_modes_dumpster_fills_the_gap(tandem_bin, tandemctl, tmp_path, labs, mode):
    """Block and file modes with every delivery through the transport (SMTP in, LMTP to the CMS
    address, a copy in its dumpster): after each lossy failover the new active's agent asks the
    transport to resubmit, the store drops what it already has by delivery id, and at the end
    every delivery answered 250 is there exactly once."""
    lab = make_lab(tandem_bin, tandemctl, tmp_path, replication=mode, transport=True)
    labs.append(lab)
    r = chaos(lab, KILLS, send=lab.deliver_smtp)
    if not any("resubmission" in f for f in r["failovers"]):
        pytest.skip("the cluster agent does not ask the transports to resubmit after a "
                    "failover in this build (no 'resubmission' in its failover record: "
                    "docs/cluster.md, cluster agent, Missing), so a lossy failover's gap "
                    "stays open")
    lossy = [f for f in r["failovers"] if f.get("lossy")]
    asked = [e for s in lab.nodes for e in events(s, 5071)]
    ok = r["load"].ok

    def settled():
        got = lab.all_subjects()
        return got if all(s in got for s in ok) else None
    try:
        got = wait_for(settled, "every delivery answered 250 on the CMS address", 3 * WAIT)
    except pytest.fail.Exception:
        got = lab.all_subjects()
        missing = [s for s in ok if s not in got]
        pytest.fail(f"answered 250 but missing after the resubmissions: {len(missing)} "
                    f"{missing[:20]}; the agent's failover records: {r['failovers']}")
    twice = sorted({s for s in got if got.count(s) > 1})
    report(f"{mode} (through the transport)", KILLS, r, [], twice,
           f"; {len(lossy)} lossy failover(s), the agent's records "
           f"{[f['lost_records'] for f in r['failovers']]}; {len(asked)} resubmission(s) "
           "acknowledged (5071)")
    assert not twice, f"there more than once: {twice}"
