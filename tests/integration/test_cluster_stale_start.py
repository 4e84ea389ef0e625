"""A node that starts while the newer active is down must not mount its own older history
(docs/cluster.md "The recorded log end"; found in review).

a is active (epoch e) and is killed; b takes over (a newer epoch) and acknowledges mail; b is
killed; a is started alone. a's store is an old active store of epoch e; a sees a quorum (itself
and the witness) and nothing of b since its start. Before the record, a won the lease and
mounted its stale data: b's acknowledged mail was gone (and b, back later, rejoined diverged and
a reseed wiped it). Now the active records its durable log end at the witness before it
acknowledges anything in its epoch, and a measures the mount dial against that record: with the
dial at lossless it waits for b, which comes back and takes the CMS over with every message."""
import time

import pytest

from cluster_lab import ClusterLab
from lab import WAIT, wait_for


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, mount_dial="lossless")
    lab.setup()
    yield lab
    lab.close()


def test_old_active_started_alone_waits_for_the_newer_history(lab):
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    assert act is lab.a
    e1 = lab.cms(act)["lease"]["epoch"]
    on_a = [f"on a {i}" for i in range(3)]
    for s in on_a:
        assert lab.deliver(s), s
    lab.wait_caught_up(act, pas)
    lab.kill(lab.a)
    wait_for(lab.try_select, "b serves")
    c = lab.wait_state(lab.b, "Active")
    assert c["lease"]["epoch"] > e1
    acked_on_b = [f"acked on b {i}" for i in range(5)]
    for s in acked_on_b:
        assert lab.deliver(s), s
    assert set(on_a + acked_on_b) <= lab.select()
    # b's record at the witness carries its epoch from before its first acknowledgement; its
    # later updates ride on the heartbeat interval: let one go out.
    time.sleep(3 * lab.interval_ms / 1000)
    lab.kill(lab.b)

    lab.start(lab.a)
    # Its takeover would come F + I/2 after its start (b's silence counts from there), and
    # then at once: watch well past that. It never goes Active, and says why.
    deadline = time.monotonic() + 8
    reason = None
    while time.monotonic() < deadline:
        c = lab.cms(lab.a)
        if c:
            assert c["state"] != "Active", c
            assert not c["writes_allowed"], c
            reason = c["reason"]
        time.sleep(0.1)
    assert reason and "beyond mount dial" in reason, reason
    assert "the witness's record" in reason or "wrote in epoch" in reason, reason
    assert lab.try_select() is None  # nothing serves the CMS address

    # b comes back with the newer history: it takes the CMS over, a rejoins as its copy.
    lab.start(lab.b)
    act, pas = lab.wait_one_active()
    assert act is lab.b
    got = wait_for(lab.try_select, "b serves again")[0]
    assert set(on_a + acked_on_b) <= got, sorted(set(on_a + acked_on_b) - got)
    wait_for(lambda: lab.healthy(lab.a), "a's copy Healthy", WAIT)
