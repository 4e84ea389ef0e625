"""Switchover (docs/cluster.md, "Switchover"): `tandemctl cms move <cms> --to <node>` on the
active node. Writes wait while the target catches up, the lease passes to it in epoch + 1, the
old active demotes to a copy of the CMS address and the target binds it. Always lossless: under
continuous LMTP load to the CMS address, every message answered 250 is there exactly once after
any number of moves back and forth, and the old active rejoins Healthy each time (never
diverged). TANDEM_SWITCHOVER_CYCLES moves (default 6; the issue's 20 on demand); the same in
file mode, TANDEM_SWITCHOVER_FILE_CYCLES moves (default 3)."""
import os

import pytest

from cluster_lab import CMS, ClusterLab, Load, events
from lab import WAIT, wait_for


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path)
    lab.setup()
    yield lab
    lab.close()


def healthy(lab, s):
    return lab.healthy(s)


def move(lab, on, to, comment="test"):
    return lab.tandemctl("cms", "move", CMS, "--to", to, "--comment", comment,
                         "--socket", on.admin_socket)


def move_when_ready(lab, on, to, comment):
    """move, again while the active has not yet heard (heartbeat summary) that the target's
    copy is Healthy: the copy's own status says so up to an interval earlier."""
    def attempt():
        r = move(lab, on, to, comment)
        return None if r.returncode == 8 and "not all Healthy" in r.stderr else r
    return wait_for(attempt, f"the move to {to} accepted")


def epoch(lab, s):
    return lab.cms(s)["lease"]["epoch"]


def started(lab):
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    wait_for(lambda: healthy(lab, pas), f"{pas.name}'s copy Healthy")
    return act, pas


def test_move_and_refusals(lab):
    act, pas = started(lab)
    assert lab.deliver("before")
    lab.wait_caught_up(act, pas)

    r = move(lab, act, "nosuch")
    assert r.returncode == 7 and "nosuch is not a node of this cluster" in r.stderr, r.stderr
    r = move(lab, pas, act.name)
    assert r.returncode == 8 and f"ask {act.name}" in r.stderr, r.stderr
    r = move(lab, act, act.name)
    assert r.returncode == 8 and "already" in r.stderr, r.stderr
    assert lab.state(act) == "Active" and lab.deliver("still here")

    e0 = epoch(lab, act)
    n58, n59 = len(events(act, 5058)), len(events(act, 5059))
    # A second request while the first runs is refused (the first is recorded at once and
    # needs at least a heartbeat round to finish).
    path = f"/v1/cms/{CMS}/move?to={pas.name}&comment=planned"

    def accepted():
        # b's copy is Healthy (caught up above), but the active learns it from b's next
        # heartbeat: under load "its copies are not all Healthy" for a moment.
        r = act.api("POST", path)
        return None if r.status == 409 and "not all Healthy" in str(r.body) else r
    assert wait_for(accepted, "the move accepted").status == 202
    second = act.api("POST", path)
    assert second.status == 409, second.json()
    assert "already running" in second.json()["error"]["message"], second.json()
    lab.wait_state(pas, "Active")
    lab.wait_state(act, "Passive")
    assert epoch(lab, pas) == e0 + 1
    (started_ev,) = events(act, 5058)[n58:]
    (done_ev,) = events(act, 5059)[n59:]
    assert "planned" in started_ev["message"] and "planned" in done_ev["message"]
    move_rec = lab.cms(act)["move"]
    assert move_rec["state"] == "completed" and move_rec["epoch_after"] == e0 + 1
    r = lab.tandemctl("cms", "status", CMS, "--socket", act.admin_socket)
    assert r.returncode == 0 and f"move to {pas.name} completed in" in r.stdout, r.stdout
    assert f"-> {e0 + 1} (planned)" in r.stdout, r.stdout

    # And back, through tandemctl, which waits and says how long it took.
    wait_for(lambda: healthy(lab, act), f"{act.name}'s copy Healthy again")
    r = move_when_ready(lab, pas, act.name, "back home")
    assert r.returncode == 0, r.stderr
    assert f"moved to {act.name} in" in r.stdout and f"-> {e0 + 2})" in r.stdout, r.stdout
    lab.wait_state(act, "Active")
    assert epoch(lab, act) == e0 + 2
    assert wait_for(lab.try_select, "SELECT on the CMS address") == \
        ({"before", "still here"},)


def test_switchovers_under_load_are_lossless(lab):
    switchovers_under_load(lab, int(os.environ.get("TANDEM_SWITCHOVER_CYCLES", "6")))


def test_switchovers_in_file_mode_are_lossless(tandem_bin, tandemctl, tmp_path):
    """[cms] replication = file: the copies receive closed generations only, so each move
    completes only because the active, once its writes are paused and durable, closes its
    generation early and the target receives it (before, every move timed out: 5060)."""
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, replication="file")
    lab.setup()
    try:
        switchovers_under_load(lab, int(os.environ.get("TANDEM_SWITCHOVER_FILE_CYCLES", "3")))
        assert not any(events(s, 5060) for s in lab.nodes), "a move failed"
    finally:
        lab.close()


def switchovers_under_load(lab, cycles):
    act, pas = started(lab)
    load = Load(lab)
    load.t.start()
    took = []
    try:
        for i in range(cycles):
            wait_for(lambda: healthy(lab, pas), f"{pas.name}'s copy Healthy before move {i}")
            e0 = epoch(lab, act)
            n_ok = len(load.ok)
            r = move_when_ready(lab, act, pas.name, f"cycle {i}")
            assert r.returncode == 0, (i, r.stdout, r.stderr)
            took.append(int(r.stdout.split(" in ")[1].split(" ms")[0]))
            lab.wait_state(pas, "Active")
            assert epoch(lab, pas) == e0 + 1, i
            assert wait_for(lab.try_select, f"SELECT on the CMS address after move {i}")
            wait_for(lambda: len(load.ok) > n_ok, f"a delivery answered after move {i}")
            act, pas = pas, act
            # The old active rejoins as a Healthy copy: it never diverged.
            wait_for(lambda: healthy(lab, pas), f"{pas.name} Healthy after move {i}")
            assert not events(pas, 4005), "a switchover made a copy diverge"
    finally:
        load.stop.set()
        load.t.join(timeout=WAIT)
    got = lab.all_subjects()
    missing = [s for s in load.ok if s not in got]
    twice = sorted({s for s in got if got.count(s) > 1})
    print(f"{cycles} switchovers: {len(load.ok)} answered 250, {load.failed} refused or cut; "
          f"took ms {took}")
    assert not missing, f"answered 250 but missing: {missing}"
    assert not twice, f"there more than once: {twice}"
    assert len(load.ok) > cycles
