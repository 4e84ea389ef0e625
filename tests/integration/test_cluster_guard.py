"""On a cluster node, only the cluster agent mounts a CMS's database, in the epoch of the lease
it holds (docs/cluster.md): `tandemctl copy activate [--force]` on such a database goes to the
agent, which refuses it while the active is heard (exit 8, HTTP 409, event 4020 with its
reason), and `tandemctl db mount` is refused, so an operator cannot make a second active behind
the lease's back. The active keeps serving throughout. test_cluster_force_activate.py: the
forced activation that the agent takes, beyond the dial."""
import pytest

from cluster_lab import DB, ClusterLab, events


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path)
    lab.setup()
    yield lab
    lab.close()


def test_operator_cannot_mount_a_cms_database_around_the_lease(lab, tandemctl):
    for s in lab.nodes:
        lab.start(s)
    act, pas = lab.wait_one_active()
    lab.wait_caught_up(act, pas)
    epoch = lab.cms(act)["lease"]["epoch"]

    mark = len(pas.event_lines())
    for force in ([], ["--force"]):
        r = tandemctl("copy", "activate", DB, *force, "--socket", pas.admin_socket)
        assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
    # Through the cluster agent (docs/cluster.md "Failover"), which refuses with its reason:
    # the active is heard.
    refusals = [e for e in events(pas, 4020, mark)
                if "CMS mail1" in e["message"] and f"{act.name} is active" in e["message"]]
    assert len(refusals) == 2, events(pas, 4020, mark)

    r = tandemctl("db", "mount", DB, "--socket", pas.admin_socket)
    assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
    assert "belongs to a CMS" in r.stderr + r.stdout

    # Nothing moved: the same node active in the same epoch, the other still its copy.
    assert lab.state(pas) == "Passive" and lab.state(act) == "Active"
    assert lab.cms(act)["lease"]["epoch"] == epoch
    assert lab.copy_status(pas) is not None
    lab.deliver("after the refusals")
