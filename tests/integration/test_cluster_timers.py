"""Nodes whose timers differ refuse each other's heartbeats (docs/cluster.md, "Timing": the fence
at s + F and the takeover's wait of F + I/2 bound each other only with one I and one T on every
node). On the lab of cluster_lab.py (a active, b passive, lease_ttl 2 s): b restarted with
lease_ttl 3 s is refused both ways with event 5028, neither hears the other, the status of each
says why with both sides' values, nothing moves (a stays Active in its epoch and keeps taking
mail, b never takes the lease nor the CMS address, an observer never sees two actives); b put
back to 2 s is heard again."""
import time

import pytest

from cluster_lab import ClusterLab, Observer, events
from lab import wait_for


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, ttl="2s")
    lab.setup()
    yield lab
    lab.close()


def member(doc, name):
    (m,) = [m for m in doc["members"] if m["name"] == name]
    return m


def restart_with_ttl(lab, s, ttl):
    lab.kill(s)
    assert "lease_ttl = " in s.extra_conf
    s.extra_conf = "\n".join(f"lease_ttl = {ttl}" if line.startswith("lease_ttl = ") else line
                             for line in s.extra_conf.split("\n"))
    s.write_conf(server=s.name, level="info")
    lab.start(s)


def test_a_node_with_another_lease_ttl_is_refused_and_nothing_moves(lab, tandemctl):
    a, b = lab.a, lab.b
    for s in lab.nodes:
        lab.start(s)
    act, _ = lab.wait_one_active()
    assert act is a
    epoch = lab.cms(a)["lease"]["epoch"]
    wait_for(lambda: lab.healthy(b), "b's copy Healthy")
    obs = Observer(lab)
    obs.start()

    mark_a, mark_b = len(a.event_lines()), len(b.event_lines())
    restart_with_ttl(lab, b, "3s")

    # Refused both ways, with the event that says why (not the generic refusal 5026).
    ev_a = wait_for(lambda: events(a, 5028, mark_a), "5028 on a")[0]
    ev_b = wait_for(lambda: events(b, 5028, mark_b), "5028 on b")[0]
    for ev in (ev_a, ev_b):
        assert "timers differ" in ev["message"], ev
        assert "lease_ttl 2000 ms" in ev["message"] or "lease_ttl 3000 ms" in ev["message"], ev
        assert "2000 ms" in ev["message"] and "3000 ms" in ev["message"], ev
    assert not [e for e in events(a, 5026, mark_a) if e["subject"] == "b"]

    # The status of each says why; neither hears the other.
    da = wait_for(lambda: (lambda d: d if d and member(d, "b")["timers_differ"] else None)(
        lab.cluster(a)), "a's status: b's timers differ")
    mb = member(da, "b")
    assert "2000 ms" in mb["timers_differ"] and "3000 ms" in mb["timers_differ"], mb
    db = wait_for(lambda: (lambda d: d if d and member(d, "a")["timers_differ"] else None)(
        lab.cluster(b)), "b's status: a's timers differ")
    assert db["lease_ttl_ms"] == 3000 and da["lease_ttl_ms"] == 2000
    r = tandemctl("cluster", "status", "--socket", a.admin_socket)
    assert r.returncode == 0, r.stderr
    assert "refused: timers differ" in r.stdout and "b: timers differ" in r.stdout, r.stdout

    # The old b's last answers age out on a (seen for interval x misses after the last one).
    wait_for(lambda: (lambda d: d and member(d, "b")["state"] == "down")(lab.cluster(a)),
             "b down on a")
    wait_for(lambda: (lambda d: d and member(d, "a")["state"] == "down")(lab.cluster(b)),
             "a down on b")

    # Nothing moves, for longer than b's own silence wait (F + I/2 = 2.85 s) and than a's
    # lease time to live: a keeps the CMS in its epoch on the witness's vote and takes mail,
    # b never takes the lease nor binds the address.
    until = time.monotonic() + 8
    n = 0
    while time.monotonic() < until:
        assert lab.deliver(f"while refused {n}")
        n += 1
        da, db = lab.cluster(a), lab.cluster(b)
        assert member(da, "b")["state"] == "down" and member(db, "a")["state"] == "down"
        assert member(db, "a")["last_heard_ms_ago"] is None  # never, since b started
        assert lab.state(a) == "Active" and lab.cms(a)["lease"]["epoch"] == epoch
        assert lab.state(b) != "Active"
        time.sleep(0.3)
    assert not events(b, 5050, mark_b) and not events(b, 5040, mark_b)
    assert not events(a, 5051, mark_a)  # a never fenced
    assert lab.cms(a)["lease"]["holder"] == "a"

    # b with the cluster's timers again: heard, and the refusal is gone from the status.
    mark_a = len(a.event_lines())
    restart_with_ttl(lab, b, "2s")
    wait_for(lambda: events(a, 5023, mark_a) and [e for e in events(a, 5023, mark_a)
                                                   if e["subject"] == "b"], "b seen again by a")
    wait_for(lambda: (lambda d: d if d and member(d, "b")["timers_differ"] is None else None)(
        lab.cluster(a)), "a's status: b's timers agree")
    assert lab.state(a) == "Active" and lab.cms(a)["lease"]["epoch"] == epoch
    obs.stop.set()
    obs.join()
    assert not obs.both, f"two actives at {obs.both}"
