"""`tandemctl copy activate --force` of a CMS's database on a cluster node (docs/cluster.md,
"Failover"): beyond the mount dial the passive waits for the old active and says so in status
and event 5054; the operator's activation goes through the cluster agent, which still needs
the old active silent and the witness's grant, takes the lease in a new epoch and mounts what
is there, reporting what was lost. Without --force it is refused with the reason.

The loss is that of file mode: only closed generations ship, so the passive's copy lacks the
records of the active's open generation, which the active's summaries report: beyond the
lossless dial once the active is killed."""
import time

import pytest

from cluster_lab import DB, ClusterLab, events
from lab import wait_for


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, mount_dial="lossless",
                     replication="file")
    lab.setup()
    yield lab
    lab.close()


def test_forced_activation_beyond_the_dial(lab, tandemctl):
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    wait_for(lambda: lab.healthy(pas), f"{pas.name}'s copy Healthy")
    e0 = lab.cms(act)["lease"]["epoch"]
    for i in range(3):
        assert lab.deliver(f"only on {act.name} {i}")
    lost_lsn = lab.active_lsn(act)
    time.sleep(lab.interval_ms / 1000 * 3)  # its summaries report them
    lab.kill(act)

    # Beyond the dial: waiting, said in status and event 5054.
    c = wait_for(lambda: (lambda c: c if c and c["state"] == "Waiting" and
                          c["reason"].startswith("beyond mount dial") else None)(lab.cms(pas)),
                 "the passive waiting beyond the dial")
    assert "dial lossless allows 0" in c["reason"], c
    wait_for(lambda: events(pas, 5054), "event 5054")
    assert "tandemctl copy activate" in events(pas, 5054)[-1]["message"]

    # Without --force: refused, with the reason.
    mark = len(pas.event_lines())
    r = tandemctl("copy", "activate", DB, "--socket", pas.admin_socket)
    assert r.returncode != 0, (r.stdout, r.stderr)
    (ev,) = events(pas, 4020, mark)
    assert "beyond mount dial" in ev["message"] and "--force" in ev["message"], ev
    assert lab.state(pas) == "Waiting"

    # With --force: the agent takes the lease (epoch + 1) and mounts what is there.
    r = tandemctl("copy", "activate", DB, "--force", "--socket", pas.admin_socket)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "activated with --force" in r.stdout, r.stdout
    c = lab.cms(pas)
    assert c["state"] == "Active" and c["lease"]["holder"] == pas.name, c
    assert c["lease"]["epoch"] == e0 + 1, c
    activated = [e for e in events(pas, 4021, mark) if "by the cluster agent" in e["message"]]
    assert activated, events(pas, 4021, mark)
    assert "lost" in r.stdout and lost_lsn > 0
    assert lab.deliver_to("after the forced activation") == pas.name
