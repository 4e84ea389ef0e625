"""scripts/demo (what `make demo` runs) against this build: it brings up the active server and
two servers holding a passive and a standby copy of db1, waits until both copies are Healthy,
prints `tandemctl copy status` for each and how to reach everything, and leaves the servers
running; and a two-node cluster (mb-a, mb-b) with a witness (wit1) whose CMS cms1 owns db2.
The test runs it in a temporary directory on addresses of its own, checks what it printed and
what it left running (the cluster: mb-a active and the CMS address serving IMAP, mb-b passive
with a Healthy copy), and stops the servers as the script says to."""
import imaplib
import json
import os
import random
import signal
import subprocess
import time

from lab import WAIT, wait_for
from test_replication import dump

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_demo_runs_an_active_with_a_passive_and_a_standby_copy(build_dir, tandem_bin,
                                                               tandemctl, tmp_path):
    demo = tmp_path / "demo"
    net = f"127.79.{random.randint(1, 254)}"
    env = dict(os.environ, TANDEM_DEMO_DIR=str(demo), TANDEM_DEMO_ADDR=f"{net}.1",
               TANDEM_DEMO_PASSIVE_ADDR=f"{net}.2", TANDEM_DEMO_STANDBY_ADDR=f"{net}.3")
    cnet = f"127.78.{random.randint(1, 254)}"
    env["TANDEM_DEMO_CLUSTER_NET"] = cnet
    # Stopped in this order's reverse: the nodes first, then the witness, then the rest.
    servers = ("mbx1", "mbx2", "mbx3", "wit1", "mb-b", "mb-a")
    try:
        r = subprocess.run([os.path.join(REPO, "scripts", "demo"), str(build_dir)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        for s, role in (("mbx2", "passive"), ("mbx3", "standby")):
            section = out.split(f"copy status --socket {demo}/{s}/run/admin.sock")[1]
            table = section.split("==>")[0]
            assert f"db1       Healthy  {role}" in table, table
        assert f"Replication: mbx1 serves db1's log on {net}.1:7433" in out
        assert f"on {net}.3: a standby copy of db1, replay lag 10m" in out
        assert "kill $(cat " in out  # how to stop it

        # Left running: every copy still Healthy, the passive equal to the active, the standby
        # holding the log but replaying nothing within its 10 minutes.
        def status(s):
            r = tandemctl("copy", "status", "--json", "--socket", demo / s / "run" / "admin.sock")
            assert r.returncode == 0, r.stderr
            (c,) = json.loads(r.stdout)["copies"]
            return c

        passive = wait_for(lambda: (lambda c: c if c["replay_queue_records"] == 0 else None)(
            status("mbx2")), "the passive copy replayed")
        assert passive["state"] == "Healthy" and passive["replayed_lsn"] > 0
        standby = status("mbx3")
        assert standby["state"] == "Healthy" and standby["replayed_lsn"] == 0
        assert standby["copied_lsn"] == passive["copied_lsn"]
        assert dump(tandem_bin, demo / "mbx2" / "db" / "db1") == \
            dump(tandem_bin, demo / "mbx1" / "db" / "db1")

        # The cluster: what the script printed of each node, then what is running now.
        for node, want in (("mb-a", "Active here"), ("mb-b", "Passive")):
            section = out.split(f"cluster status --socket {demo}/{node}/run/admin.sock")[1]
            assert want in section.split("==>")[0], section
        assert f"kill -9 -- -$(cat {demo}/mb-a/tandemd.lock)" in out
        assert f"IMAP {cnet}.100:1143" in out

        def cms(node):
            r = tandemctl("cluster", "status", "--json", "--socket",
                          demo / node / "run" / "admin.sock")
            assert r.returncode == 0, r.stderr
            (c,) = [c for c in json.loads(r.stdout)["cms"] if c["name"] == "cms1"]
            return c

        a, b = cms("mb-a"), cms("mb-b")
        assert (a["state"], b["state"]) == ("Active", "Passive")
        assert a["lease"]["holder"] == "mb-a" and b["lease"]["holder"] == "mb-a"
        m = imaplib.IMAP4(f"{cnet}.100", 1143, timeout=WAIT)
        try:
            m.login("dave", "demo-dave-pw")
            typ, data = m.select("INBOX")
            assert typ == "OK" and int(data[0]) == 10, data
        finally:
            m.logout()
        r = tandemctl("copy", "status", "db2", "--json", "--socket",
                      demo / "mb-b" / "run" / "admin.sock")
        assert r.returncode == 0, r.stderr
        (copy,) = json.loads(r.stdout)["copies"]
        assert copy["state"] == "Healthy" and f"{cnet}.100" in copy["endpoint"], copy
    finally:
        # Stop what the script started (the detached daemons' pids are in their lock files).
        pids = []
        for s in reversed(servers):
            lock = demo / s / "tandemd.lock"
            if lock.exists() and lock.read_text().strip():
                pid = int(lock.read_text().strip())
                if pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
                    pids.append(pid)
        deadline = time.monotonic() + WAIT
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
    assert not any(pid_alive(p) for p in pids), "a demo server did not stop on SIGTERM"
