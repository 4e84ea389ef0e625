"""A server that holds a database only as a copy does not serve it (docs/replication.md "Which
databases a server holds as copies"): A holds the active of database mail and the directory,
B a passive copy of it, caught up, so B could read every message. B's IMAP refers alice's
login to the cms of the active (A), where the same login works; B's LMTP answers her RCPT
451 4.3.0 instead of committing to a copy, and logs why; a COMMIT that reaches B's core for
the copy anyway is refused as for a database it does not hold, with a log line. Nothing is
written to B's copy but what replication brings."""
import imaplib
import secrets
import smtplib
import subprocess

import pytest

from lab import WAIT, Server, wait_for
from test_imap_ext import Raw
from test_imap_referral import URL
from test_replication import DB, caught_up, deliver, wait_status


@pytest.fixture
def copy_holder(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("imap", "lmtp", "admin", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=("imap", "lmtp"))
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    (a.datadir / "db").mkdir(parents=True)
    assert tandemctl("db", "create", a.datadir / "db" / DB).returncode == 0
    # Each server makes its own CA at its first start; then each trusts both.
    for s in (a, b):
        s.write_conf(server=s.name, level="info")
        p = s.start()
        s.started(p)
        s.stop(p)
    both = tmp_path / "cas.pem"
    both.write_text(a.ca.read_text() + b.ca.read_text())
    for s in (a, b):
        s.extra_conf = f"\n[tls]\nca = {both}\n"
        s.write_conf(server=s.name, level="info")
    ap = a.start()
    a.started(ap)
    a.wait_api()
    key = secrets.token_urlsafe(32)
    for path, body in [
        ("objects/server/b", {"attrs": {"site": "dc1"}}),
        ("objects/server/b/password", {"password": key}),
        ("objects/cms/cms1", {"attrs": {"address": a.addr, "imap_port": a.ports["imap"]}}),
        (f"objects/database/{DB}", {"attrs": {"cms": "cms1"}}),
        ("objects/user/alice", {"attrs": {"addresses": ["alice@example.test"], "database": DB}}),
        ("objects/user/alice/password", {"password": "alice-password"}),
    ]:
        assert a.api("PUT", f"/v1/{path}", body).status in (200, 201), path
    assert a.api("POST", "/v1/objects/group/servers/members/add",
                 {"member": "server:b"}).status in (200, 201)
    (b.datadir / "server.key").write_text(key + "\n")
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}")
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    deliver(a, "alice@example.test", "before")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up with A")
    yield a, b
    b.kill_all()
    a.kill_all()


def test_imap_login_at_a_copy_is_referred_to_the_active(copy_holder):
    a, b = copy_holder
    c = Raw(b, user=None)
    _, done = c.cmd('LOGIN alice "alice-password"')
    where = URL.match(done)
    assert where and where.groups() == ("alice", a.addr, str(a.ports["imap"])), done
    assert "referred to cms cms1" in b.output(), b.output()
    # The referral leads to a server where the login works and the mail is.
    m = imaplib.IMAP4(a.addr, a.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    assert m.select("INBOX") == ("OK", [b"1"])
    m.logout()


def test_lmtp_at_a_copy_answers_451(copy_holder):
    a, b = copy_holder
    c = smtplib.LMTP(b.addr, b.ports["lmtp"], timeout=WAIT)
    c.ehlo("client.test")
    c.mail("sender@example.org")
    code, text = c.rcpt("alice@example.test")
    assert code == 451 and text.startswith(b"4.3.0 ") and b"only a copy" in text, (code, text)
    c.quit()
    assert "its database mail is only a copy on this server" in b.output(), b.output()
    # Nothing reached the copy but what A holds: one message.
    m = imaplib.IMAP4(a.addr, a.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    assert m.select("INBOX") == ("OK", [b"1"])
    m.logout()


def test_core_refuses_a_commit_to_a_copy(copy_holder, tandem_bin):
    a, b = copy_holder
    r = subprocess.run([str(tandem_bin("tdm_ipc_client")), "commit",
                        str(b.datadir / "run" / "core.sock"), DB, "alice", "1",
                        "--seconds", "2"],
                       capture_output=True, text=True, timeout=WAIT)
    # Its first commit (the mailbox's creation) is refused; it gives up after its 2 s.
    assert "mailbox create: not found" in r.stderr, r.stderr  # TDM_ENOTFOUND
    assert "acked 0" in r.stdout, r.stdout
    assert f"commit to database {DB} refused: this server holds only a copy" in b.output()
