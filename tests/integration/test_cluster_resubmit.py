"""Resubmission from the transport's dumpster after a lossy failover (docs/cluster.md,
"Resubmission after a failover") and the last-failover record kept across a restart, on the
cluster lab with a transport (cluster_lab.py, transport=True) whose admin API the nodes name in
[cluster] transports.

File mode: only closed generations ship, so mail delivered through the transport into the
active's open generation is not on the passive. The active is killed with SIGKILL while the
transport is stopped too; the passive takes over within the mount dial (best), lossy; its
agent asks the transport to resubmit, and keeps asking while the transport is down (5072);
once the transport is back it resubmits, and every message it acknowledged is on the new
active exactly once (the one b had already is dropped as a duplicate). The window starts at the
creation of the newest generation b holds, less 5 minutes. The record says lossy, resubmitted,
and still does after a restart."""
import json
import smtplib
import time

import pytest

from cluster_lab import CMS, ClusterLab, events
from lab import WAIT, wait_for

N = 8
# Slower heartbeats than the lab's default (300 ms x 5), so the nodes wait 5 s rather than 3 s
# for the witness's answer to their first request: on a loaded host the witness's check of a
# node's key (argon2id) took longer than that, and the nodes gave up and asked again forever.
SLACK = {"interval_ms": 500, "misses": 10, "ttl": "3s"}


@pytest.fixture
def lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, replication="file", mount_dial="best",
                     transport=True, **SLACK)
    lab.setup()
    yield lab
    lab.close()


def subjects(lab):
    """(every subject in INBOX on the CMS address, with repeats,) or None while it fails."""
    try:
        return (lab.all_subjects(),)
    except (OSError, EOFError, AssertionError, Exception):  # noqa: B902 - the address moving
        return None


def send_large(lab, subject, size=600 * 1024):
    """A message of about size bytes through the transport."""
    line = "x" * 76 + "\r\n"
    body = line * (size // len(line))
    msg = f"From: sender@example.org\r\nSubject: {subject}\r\nTo: alice@example.test\r\n\r\n"
    c = smtplib.SMTP(lab.t.addr, lab.t.ports["smtp"], timeout=WAIT)
    try:
        assert c.sendmail("sender@example.org", ["alice@example.test"],
                          (msg + body).encode()) == {}
    finally:
        c.quit()


def failover_record(lab, s):
    c = lab.cms(s)
    return c["last_failover"] if c else None


def test_lossy_failover_resubmits_from_the_dumpster(lab, tandemctl):
    for s in lab.nodes:
        lab.start(s)
    # Longer waits than the lab's: on a loaded host the directory's key checks are slow.
    act, pas = lab.wait_one_active(timeout=3 * WAIT)
    assert act is lab.a
    wait_for(lambda: lab.healthy(pas), "b's copy Healthy", timeout=3 * WAIT)
    assert lab.copy_status(pas)["mode"] == "file"

    # Two large messages: the second does not fit in generation 1, which closes and ships, so
    # b holds records in a generation whose creation time bounds the resubmission's window.
    started = time.time()
    big = ["big 0", "big 1"]
    for s in big:
        send_large(lab, s)
    wait_for(lambda: (lab.copy_status(pas) or {}).get("copied_lsn", 0) > 0,
             "b's copy has generation 1")
    # Mail through the transport into a's open generation: acknowledged (a answered 250), in
    # the dumpster, and not on b (file mode ships closed generations only).
    sent = [f"dumpster {i}" for i in range(N)]
    for s in sent:
        assert lab.deliver_smtp(s)
    sent += big
    lsn = lab.active_lsn(act)
    # b hears a's log end in its heartbeats (the loss is measured against it).
    wait_for(lambda: any(m.get("name") == "a" for m in lab.cluster(pas)["members"]),
             "b sees a")
    time.sleep(4 * lab.interval_ms / 1000)
    assert lab.copy_status(pas)["copied_lsn"] < lsn, "the copy has the open generation"

    # The transport down too: the new active must keep asking until it answers.
    lab.t.stop(lab.procs.pop("t"))
    mark = len(pas.event_lines())
    lab.kill(act)
    c = lab.wait_state(pas, "Active", timeout=3 * WAIT)
    assert c["lease"]["holder"] == "b"
    f = c["last_failover"]
    assert (f["from"], f["to"], f["cause"]) == ("a", "b", "node lost"), f
    assert f["lossy"] is True and f["lost_records"] >= N and f["lost_generations"] >= 1, f
    req = pas.wait_event(lambda e: e["id"] == 5070, "resubmission requested (5070) on b")
    assert "(lossy)" in req["message"] and "1 transport(s)" in req["message"], req
    fail = pas.wait_event(lambda e: e["id"] == 5072, "resubmission failed (5072) on b")
    assert lab.t.addr in fail["message"], fail
    r = failover_record(lab, pas)["resubmission"]
    assert r["state"] == "pending" and r["requests"][0]["error"], r
    # Nothing of the lost tail is on b yet.
    got = wait_for(lambda: subjects(lab), "IMAP on the CMS address")[0]
    assert got == ["big 0"], got  # what b had: generation 1

    # The transport back: the request goes through and the lost mail comes back, once each.
    lab.start(lab.t)
    ack = pas.wait_event(lambda e: e["id"] == 5071, "resubmission acknowledged (5071) on b")
    assert "database mail" in ack["message"], ack
    r = wait_for(lambda: (lambda r: r if r["state"] == "done" else None)(
        failover_record(lab, pas)["resubmission"]), "resubmission done", timeout=3 * WAIT)
    # The window: from generation 1's creation on a's clock, less the margin (300 s).
    assert isinstance(r["since"], int) and started - 310 <= r["since"] <= time.time() - 290, r
    (q,) = r["requests"]
    assert q["state"] == "acknowledged" and q["refused"] == 0 and q["attempts"] >= 2, q
    assert q["messages"] == N + 2 and q["database"] == "mail", q  # big 0 dropped: a duplicate
    got = lab.all_subjects()
    assert sorted(s for s in got if s in sent) == sorted(sent), got
    assert len(got) == len(set(got)), f"a duplicate: {got}"
    assert not events(pas, 5050, 0)[1:], "activated twice"
    assert events(pas, 5070, mark) and len(events(pas, 5070, mark)) == 1

    # The record in the tools.
    out = tandemctl("cluster", "status", "--socket", pas.admin_socket)
    assert out.returncode == 0, out.stderr
    assert "a -> b" in out.stdout and "(node lost) lossy:" in out.stdout, out.stdout
    assert "resubmission done (1 of 1 request(s) acknowledged)" in out.stdout, out.stdout
    out = tandemctl("cms", "status", CMS, "--json", "--socket", pas.admin_socket)
    assert json.loads(out.stdout)["last_failover"]["resubmission"]["state"] == "done"
    out = tandemctl("cms", "status", CMS, "--socket", pas.admin_socket)
    assert "resubmission done" in out.stdout, out.stdout

    # Kept across a restart of b: the same record (b becomes active again on its own: no new
    # failover, since no other node was active).
    before = failover_record(lab, pas)
    pas.stop(lab.procs.pop("b"))
    assert (pas.datadir / "cluster" / f"last-failover.{CMS}.json").exists()
    lab.start(pas)
    c = lab.wait_state(pas, "Active", timeout=3 * WAIT)
    assert c["last_failover"] == before, (c["last_failover"], before)
    out = tandemctl("cluster", "status", "--socket", pas.admin_socket)
    assert "resubmission done" in out.stdout and "lossy:" in out.stdout, out.stdout
    got = lab.all_subjects()
    assert sorted(s for s in got if s in sent) == sorted(sent) and len(got) == len(set(got))


@pytest.fixture
def block_lab(tandem_bin, tandemctl, tmp_path):
    lab = ClusterLab(tandem_bin, tandemctl, tmp_path, replication="block", transport=True,
                     **SLACK)
    lab.setup()
    yield lab
    lab.close()


def test_switchover_is_recorded_without_resubmission(block_lab):
    """A switchover (cms move) is lossless: the target records it as one, with nothing to
    resubmit, and asks no transport. (Block mode: in file mode the target cannot catch up
    with the active's open generation, which only ships once closed.)"""
    lab = block_lab
    for s in lab.nodes:
        lab.start(s)
    # Longer waits than the lab's: on a loaded host the directory's key checks are slow.
    act, pas = lab.wait_one_active(timeout=3 * WAIT)
    wait_for(lambda: lab.healthy(pas), "b's copy Healthy", timeout=3 * WAIT)
    assert lab.deliver_smtp("before the move")
    assert lab.cms(pas)["last_failover"] is None

    def moved():
        r = lab.tandemctl("cms", "move", CMS, "--to", pas.name, "--comment", "planned",
                          "--socket", act.admin_socket)
        return None if r.returncode == 8 and "not all Healthy" in r.stderr else r
    r = wait_for(moved, "the move accepted")
    assert r.returncode == 0, r.stderr
    c = lab.wait_state(pas, "Active")
    f = c["last_failover"]
    assert (f["from"], f["to"], f["cause"], f["lossy"]) == ("a", "b", "switchover", False), f
    assert f["resubmission"]["state"] == "not needed" and f["resubmission"]["requests"] == []
    assert f["epoch"] == c["lease"]["epoch"]

    def delivered():
        try:
            return lab.deliver_smtp("after the move")
        except (OSError, smtplib.SMTPException):
            return False  # the CMS address still coming up on b
    wait_for(delivered, "a delivery through the transport to b")
    assert sorted(lab.all_subjects()) == ["after the move", "before the move"]
    assert not events(pas, 5070) and not events(pas, 5072)

    # Who may use a transport's dumpster over the network (it has no directory of its own):
    # a server the directory vouches for, not a wrong key, not an unknown server.
    t = lab.t
    key = (lab.a.datadir / "server.key").read_text().strip()
    r = t.api("GET", "/v1/dumpster", auth=("server/a", key), tls=True)
    assert r.status == 200 and "mail" in [d["database"] for d in r.json()["databases"]], r
    assert t.api("GET", "/v1/dumpster", auth=("server/a", key + "x"), tls=True).status == 401
    assert t.api("GET", "/v1/dumpster", auth=("server/nosuch", key), tls=True).status == 401
    r = t.api("POST", "/v1/dumpster/resubmit?database=mail&since=all", auth=("server/a", key),
              tls=True)
    assert r.status == 200 and r.json()["refused"] == 0, r
    assert sorted(lab.all_subjects()) == ["after the move", "before the move"]  # dropped
