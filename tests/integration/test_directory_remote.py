"""A mailbox server without the directory role reaches the directory over the network: it
authenticates as itself (server/<name> and its key, a member of `servers`), looks LMTP
recipients up and checks people's logins over HTTPS, caches the answers, follows the
directory's change journal so a change reaches it within moments, and keeps delivering to
known recipients and accepting known logins while the directory is briefly unreachable."""
import secrets
import smtplib
import time

import pytest

from lab import WAIT, Server, wait_for


@pytest.fixture
def pair(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "dir1").mkdir()
    (tmp_path / "mbx2").mkdir()
    d = Server(exe, tmp_path / "dir1", "dir1", roles="directory", listeners=("admin",))
    dp = d.start()
    d.started(dp)
    d.wait_api()

    key = secrets.token_urlsafe(32)
    ok = lambda r: r.status in (200, 201)
    assert ok(d.api("PUT", "/v1/objects/server/mbx2", {"attrs": {"site": "dc1"}}))
    assert ok(d.api("PUT", "/v1/objects/server/mbx2/password", {"password": key}))
    assert ok(d.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:mbx2"}))
    assert ok(d.api("PUT", "/v1/objects/user/alice",
                    {"attrs": {"addresses": ["alice@example.test"], "database": "db1"}}))
    assert ok(d.api("PUT", "/v1/objects/user/alice/password", {"password": "alice-secret"}))
    assert ok(d.api("PUT", "/v1/objects/user/bob", {"attrs": {"database": "db1"}}))
    assert ok(d.api("PUT", "/v1/objects/user/bob/password", {"password": "bob-secret"}))

    m = Server(exe, tmp_path / "mbx2", "mbx2", roles="mailbox", listeners=("lmtp", "admin"))
    m.directory_endpoint = f"{d.addr}:{d.ports['admin']}"
    # Each server has its own local CA: this one must trust the directory's.
    m.extra_conf = f"\n[tls]\nca = {d.ca}\n"
    m.write_conf(server="mbx2", level="info")
    (m.datadir / "db").mkdir(parents=True)
    (m.datadir / "server.key").write_text(key + "\n")
    r = tandemctl("db", "create", m.datadir / "db" / "db1")
    assert r.returncode == 0, r.stderr
    mp = m.start()
    m.started(mp)
    yield d, dp, m, mp
    m.kill_all()
    d.kill_all()


def rcpt(m, address):
    """(code, enhanced code) of RCPT TO:<address> in a fresh LMTP session."""
    c = smtplib.LMTP(m.addr, m.ports["lmtp"], timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("s@example.org")
        code, msg = c.rcpt(address)
        return code, msg[:5].decode()
    finally:
        c.close()


def deliver(m, address, subject):
    c = smtplib.LMTP(m.addr, m.ports["lmtp"], timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("s@example.org")
        code, _ = c.rcpt(address)
        if code != 250:
            return code
        return c.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())[0]
    finally:
        c.close()


def test_lmtp_recipients_from_a_remote_directory(pair):
    d, dp, m, mp = pair
    # The first lookups may come before the worker's client is up: it answers 451, then 250.
    wait_for(lambda: rcpt(m, "alice@example.test") == (250, "2.1.5"), "alice found remotely")
    assert rcpt(m, "nobody@example.test") == (550, "5.1.1")
    assert deliver(m, "alice@example.test", "one") == 250

    # A change on the directory reaches the mailbox server through the journal.
    r = d.api("PUT", "/v1/objects/user/alice",
              {"attrs": {"addresses": ["alice@example.test"], "database": "db1",
                         "disabled": True}})
    assert r.status == 200, r
    wait_for(lambda: rcpt(m, "alice@example.test") == (550, "5.2.1"), "alice seen disabled")
    r = d.api("PUT", "/v1/objects/user/alice",
              {"attrs": {"addresses": ["alice@example.test"], "database": "db1"}})
    assert r.status == 200, r
    wait_for(lambda: rcpt(m, "alice@example.test") == (250, "2.1.5"), "alice enabled again")

    # The directory goes away: what the cache confirmed is still delivered; an address it
    # never saw is deferred (451), not refused.
    d.stop(dp)
    assert deliver(m, "alice@example.test", "during the outage") == 250
    assert rcpt(m, "newcomer@example.test") == (451, "4.3.0")


def test_wrong_key_is_refused_and_deferred(pair, tmp_path):
    d, dp, m, mp = pair
    wait_for(lambda: rcpt(m, "alice@example.test") == (250, "2.1.5"), "alice found remotely")
    # Another key on the directory: the mailbox server's key no longer opens it.
    r = d.api("PUT", "/v1/objects/server/mbx2/password", {"password": "not-the-file-one"})
    assert r.status == 200, r
    # Cached answers stay valid while the journal cannot be read for cache_ttl (10 min), but
    # an address not asked before is deferred with the reason.
    code, enh = rcpt(m, "someone-new@example.test")
    assert (code, enh) == (451, "4.3.0")


def whoami(m, user, password):
    return m.api("GET", "/v1/whoami", auth=(user, password), tls=True)


def test_logins_checked_by_the_directory_and_cached(pair):
    d, dp, m, mp = pair
    wait_for(lambda: whoami(m, "alice", "alice-secret").status == 200, "alice's login")
    r = whoami(m, "alice", "alice-secret")
    assert r.json() == {"principal": "user:alice", "admin": None}
    assert whoami(m, "alice", "wrong").status == 401
    # A password changed on the directory is honoured here at once (the journal).
    assert d.api("PUT", "/v1/objects/user/alice/password", {"password": "new-secret"}).status == 200
    wait_for(lambda: whoami(m, "alice", "alice-secret").status == 401, "the old password refused")
    assert whoami(m, "alice", "new-secret").status == 200
    # The directory goes away: alice, whose login the cache holds, still gets in; bob, never
    # seen here, cannot be checked (503, not 401: nothing says his password is wrong).
    d.stop(dp)
    assert whoami(m, "alice", "new-secret").status == 200
    r = whoami(m, "bob", "bob-secret")
    assert r.status == 503, r
    assert whoami(m, "alice", "wrong").status in (401, 503)


def test_tandemctl_trusts_the_servers_own_ca_not_the_peers(pair, tandemctl, tmp_path):
    """mbx2's [tls] ca names the directory's CA (for its peers); its own certificate comes
    from its local CA, which is what tandemctl -c must trust when it talks to mbx2."""
    d, dp, m, mp = pair
    pw = tmp_path / "alice.pw"
    pw.write_text("alice-secret\n")
    def whoami():
        return tandemctl("whoami", "-c", m.conf, "--server", f"{m.addr}:{m.ports['admin']}",
                         "--user", "alice", "--password-file", pw)
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(whoami()),
                 "tandemctl whoami over TLS to the mailbox server")
    assert "user:alice" in r.stdout
