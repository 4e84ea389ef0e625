"""A failover back to the node that was active first (docs/cluster.md, "Failover", "Rejoin"):
a kill -9 of a (the first active), b takes over, a rejoins as a passive; then b killed, a takes
the CMS back, and b restarted must become a Healthy copy of it. a's database was kept
dismounted at its restart and demoted to a copy; its activation once left the replication
source with the dismounted entry (an add that failed: already exists), so the new active
refused every copy as not-active and b never rejoined (found by bench/failover)."""
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


def healthy(lab, s):
    c = lab.copy_status(s)
    return c if c and c["state"] == "Healthy" else None


def test_failback_to_the_first_active_serves_the_rejoined_copy(lab):
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    assert act is lab.a
    wait_for(lambda: healthy(lab, pas), "b's copy Healthy")
    assert lab.deliver("first")
    lab.wait_caught_up(act, pas)
    # b's agent learns its copy is Healthy by sampling it once per round; a kill before it
    # looked leaves b Waiting ("copy of mail is not healthy"), which is the agent's to fix
    # (a new copy has no 5056 to wait for). Three rounds let it look.
    time.sleep(3 * lab.interval_ms / 1000)

    lab.kill(lab.a)
    lab.wait_state(lab.b, "Active")
    # Active is the agent's word; the workers listen on the CMS address a moment later (the
    # supervisor binds it after the core's UP): the first client that works says so.
    wait_for(lab.try_select, "SELECT on the CMS address, on b")
    assert lab.deliver("on b")
    mark = len(lab.a.event_lines())
    lab.start(lab.a)
    # Rejoined as the agent sees it (5056), not only Healthy in copy status: a node whose
    # agent has not seen its copy Healthy yet does not take over (docs/events.md 5056).
    lab.a.wait_event(lambda e: e["id"] == 5056 and e["subject"] == CMS, "a rejoined (5056)")
    assert not events(lab.a, 5050, mark)
    lab.wait_state(lab.a, "Passive")
    lab.wait_caught_up(lab.b, lab.a)

    lab.kill(lab.b)
    lab.wait_state(lab.a, "Active")
    assert wait_for(lab.try_select, "SELECT on the CMS address, on a again") == \
        ({"first", "on b"},)
    assert lab.deliver("on a again")
    lab.start(lab.b)
    lab.wait_state(lab.b, "Passive")
    copy = lab.wait_caught_up(lab.a, lab.b)
    assert copy["state"] == "Healthy" and lab.cms_addr in copy["endpoint"]
    assert "not served to copies" not in lab.a.output()
