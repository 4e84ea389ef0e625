"""A switchover whose target dies right after the witness handed it the lease (docs/cluster.md,
"Switchover"): the old active leaves (writes paused, databases dismounted, not demoted), the
target never mounts, and the failover rules bring the CMS back to the old active in a newer
epoch: served by exactly one node, nothing lost. Before, the old active demoted at once and
its new copy, never Healthy, was no candidate: nobody could take the CMS over.

The moment is made exact with signals: the target is stopped (SIGSTOP) while its last summary
still shows it caught up, the move is asked, the witness transfers the lease to the stopped
target, then the target is killed (SIGKILL): its connections end with EOF, so the witness
frees its lease and its peer sees its core gone."""
import os
import signal
import time

import pytest

from cluster_lab import CMS, ClusterLab, events
from lab import wait_for


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path)
    lab.setup()
    yield lab
    lab.close()


def test_target_killed_right_after_the_transfer(lab):
    for s in lab.nodes:
        lab.start(s)
    act, tgt = lab.wait_one_active()
    assert lab.deliver("before the move")
    lab.wait_caught_up(act, tgt)
    wait_for(lambda: lab.healthy(tgt), f"{tgt.name}'s copy Healthy")
    # The active must have heard the target's summary with the copy Healthy and caught up.
    lsn = lab.active_lsn(act)
    e0 = lab.cms(act)["lease"]["epoch"]
    n59, n60 = len(events(act, 5059)), len(events(act, 5060))

    def stopped_and_moved():
        os.killpg(lab.procs[tgt.name].pid, signal.SIGSTOP)
        r = lab.tandemctl("cms", "move", CMS, "--to", tgt.name, "--comment", "target dies",
                          "--socket", act.admin_socket)
        if r.returncode == 8 and "not all Healthy" in r.stderr:
            # The active has not heard the target's Healthy summary yet: again, later.
            os.killpg(lab.procs[tgt.name].pid, signal.SIGCONT)
            time.sleep(lab.interval_ms / 1000)
            return None
        return r
    r = wait_for(stopped_and_moved, "the move to the stopped target accepted")
    # The witness handed the lease over: the move is done as far as the old active knows.
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert len(events(act, 5059)) == n59 + 1 and len(events(act, 5060)) == n60
    lab.kill(tgt)

    # Back on the old active, by the failover rules, in a newer epoch than the target's.
    c = lab.wait_state(act, "Active")
    assert c["lease"]["holder"] == act.name and c["lease"]["epoch"] >= e0 + 2, c
    # Active is the agent's word; the CMS address comes up a moment later (the supervisor
    # binds it after the core's UP): the first client that works says so.
    wait_for(lab.try_select, "SELECT on the CMS address, on the old active")
    assert lab.deliver_to("after the recovery") == act.name
    assert lab.active_lsn(act) > lsn
    # Its databases stayed its own store until then: never demoted to a copy.
    assert not [e for e in events(act, 5055)
                if "demoted" in e["message"] and e["ts"] > events(act, 5059)[-1]["ts"]]

    # The target comes back as a passive of it: exactly one node serves the CMS.
    lab.start(tgt)
    a2, p2 = lab.wait_one_active()
    assert a2 is act and p2 is tgt
    lab.wait_caught_up(act, tgt)
    assert lab.deliver_to("with both up") == act.name
