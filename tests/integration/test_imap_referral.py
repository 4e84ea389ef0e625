"""IMAP login referrals (RFC 2221) between two real servers: mbx1 holds the directory and
database db1, mbx2 (no directory role: it asks mbx1's) holds db2. A user whose password is
right at the server that does not hold their database is answered
NO [REFERRAL imap://user;AUTH=*@address:imap_port/], naming the address and imap_port of the
cms that owns the database (over implicit TLS too); the URL leads to a server where the same
login works. A wrong password is a plain failure with no referral, and a database that no cms
serves (or whose cms is the very server asked) is NO [UNAVAILABLE]. Referrals are not failed
logins. AUTHENTICATE PLAIN and LOGIN are referred as LOGIN is."""
import base64
import imaplib
import re
import secrets
import ssl

import pytest

from lab import WAIT, Server, wait_for
from test_imap_ext import Raw

URL = re.compile(r"^NO \[REFERRAL imap://([^;]+);AUTH=\*@([0-9.]+):(\d+)/\] ")


@pytest.fixture
def pair(tandem_bin, tandemctl, tmp_path):
    exe = tandem_bin("tandemd")
    (tmp_path / "mbx1").mkdir()
    (tmp_path / "mbx2").mkdir()
    a = Server(exe, tmp_path / "mbx1", "mbx1", roles="mailbox, directory",
               listeners=("imap", "imaps", "admin"))
    a.extra_conf = "\n[imap]\nmax_login_failures = 2\n"
    a.write_conf(server="mbx1", level="info")
    (a.datadir / "db").mkdir(parents=True)
    assert tandemctl("db", "create", a.datadir / "db" / "db1").returncode == 0
    ap = a.start()
    a.started(ap)
    a.wait_api()

    b = Server(exe, tmp_path / "mbx2", "mbx2", roles="mailbox", listeners=("imap",))
    key = secrets.token_urlsafe(32)
    users = {"alice": "db2", "bob": "db1", "carol": "db3", "dave": "db4", "erin": "db5",
             "frank": "db2", "gina": "db1"}
    objects = [
        ("server/mbx2", {"site": "dc1"}),
        ("cms/cms1", {"address": a.addr, "imap_port": a.ports["imap"]}),
        ("cms/cms2", {"address": b.addr, "imap_port": b.ports["imap"]}),
        ("database/db1", {"cms": "cms1"}),
        ("database/db2", {"cms": "cms2"}),
        ("database/db3", {}),               # no cms
        ("database/db4", {"cms": "cms1"}),  # its cms is mbx1, which does not hold it
        # db5 has no directory object at all
    ] + [(f"user/{u}", {"database": db}) for u, db in users.items() if u != "gina"]
    # gina's alias is spelled like frank's name.
    objects.append(("user/gina", {"database": "db1", "aliases": ["frank"]}))
    for path, attrs in objects:
        reply = a.api("PUT", f"/v1/objects/{path}", {"attrs": attrs})
        assert reply.status in (200, 201), reply
    for u in users:
        assert a.api("PUT", f"/v1/objects/user/{u}/password",
                     {"password": f"{u}-password"}).status == 200
    assert a.api("PUT", "/v1/objects/server/mbx2/password", {"password": key}).status == 200
    reply = a.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:mbx2"})
    assert reply.status in (200, 201), reply

    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.extra_conf = f"\n[tls]\nca = {a.ca}\n"
    b.write_conf(server="mbx2", level="info")
    (b.datadir / "db").mkdir(parents=True)
    (b.datadir / "server.key").write_text(key + "\n")
    assert tandemctl("db", "create", b.datadir / "db" / "db2").returncode == 0
    bp = b.start()
    b.started(bp)
    yield a, b
    b.kill_all()
    a.kill_all()


def follow(done, user):
    """Logs in where the referral in done points, as user, and selects INBOX."""
    m = URL.match(done)
    assert m, done
    assert m.group(1) == user
    c = imaplib.IMAP4(m.group(2), int(m.group(3)), timeout=WAIT)
    assert c.login(user, f"{user}-password")[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_logins_are_referred_to_the_cms_holding_the_database(pair):
    a, b = pair
    c = Raw(a, user=None)
    untagged, done = c.cmd("CAPABILITY")
    assert "LOGIN-REFERRALS" in untagged[0].split()
    # alice's db2 is on mbx2: LOGIN and AUTHENTICATE PLAIN (SASL-IR) are both referred there.
    _, done = c.cmd('LOGIN alice "alice-password"')
    assert done.startswith(f"NO [REFERRAL imap://alice;AUTH=*@{b.addr}:{b.ports['imap']}/] "), done
    assert b.addr in done.split("]", 1)[1]  # the text names the place for people too
    _, again = c.cmd(f"AUTHENTICATE PLAIN {plain('alice', 'alice-password')}")
    assert again == done
    # AUTHENTICATE LOGIN too, with its user name as the initial response.
    c.sock.sendall(f"x AUTHENTICATE LOGIN {base64.b64encode(b'alice').decode()}\r\n".encode())
    assert c.line() == "+ UGFzc3dvcmQ6"
    c.sock.sendall(base64.b64encode(b"alice-password") + b"\r\n")
    assert c.line() == f"x {done}"
    # Still not logged in here.
    _, done2 = c.cmd("SELECT INBOX")
    assert done2.startswith("BAD")
    c.close()
    # Over implicit TLS the URL is the same imap:// to the STARTTLS port (docs/decisions.md).
    t = imaplib.IMAP4_SSL(a.addr, a.ports["imaps"], timeout=WAIT,
                          ssl_context=ssl.create_default_context(cafile=str(a.ca)))
    with pytest.raises(imaplib.IMAP4.error) as e:
        t.login("alice", "alice-password")
    assert f"[REFERRAL imap://alice;AUTH=*@{b.addr}:{b.ports['imap']}/]" in str(e.value)
    t.logout()
    # The referred URL works: mbx2 checks the password with the remote directory.
    wait_for(lambda: login_ok(b, "alice"), "mbx2 accepting alice through mbx1's directory")
    follow(done, "alice")
    # bob's db1 is on mbx1: mbx2 learns the route from the remote directory and refers back.
    c = Raw(b, user=None)
    _, done = c.cmd('LOGIN bob "bob-password"')
    assert done.startswith(f"NO [REFERRAL imap://bob;AUTH=*@{a.addr}:{a.ports['imap']}/] "), done
    c.close()
    follow(done, "bob")
    assert f"alice referred to cms cms2 at {b.addr} port {b.ports['imap']}" in a.output()
    # Clean stops: nothing a referral made is left behind (LeakSanitizer).
    b.stop(b.procs[-1])
    a.stop(a.procs[-1])


def login_ok(server, user):
    c = imaplib.IMAP4(server.addr, server.ports["imap"], timeout=WAIT)
    try:
        return c.login(user, f"{user}-password")[0] == "OK"
    except imaplib.IMAP4.error:
        return False
    finally:
        c.shutdown()


def test_a_wrong_password_reveals_nothing(pair):
    a, _ = pair
    c = Raw(a, user=None)
    _, done = c.cmd('LOGIN alice "wrong"')
    assert done == "NO [AUTHENTICATIONFAILED] Authentication failed", done
    _, done = c.cmd(f"AUTHENTICATE PLAIN {plain('alice', 'wrong')}")
    assert done == "NO [AUTHENTICATIONFAILED] Authentication failed", done
    # That was max_login_failures (2): the connection ends.
    assert c.line() == "* BYE Too many failed logins"
    c.close()


def test_referrals_are_not_failed_logins(pair):
    a, _ = pair
    c = Raw(a, user=None)
    # More referrals than max_login_failures (2) allows failures: the connection stays.
    for _ in range(4):
        _, done = c.cmd('LOGIN alice "alice-password"')
        assert done.startswith("NO [REFERRAL "), done
    c.ok("NOOP")
    # One failure, then a referral: still one failure short of the end.
    _, done = c.cmd('LOGIN alice "wrong"')
    assert done.startswith("NO [AUTHENTICATIONFAILED]"), done
    _, done = c.cmd('LOGIN alice "alice-password"')
    assert done.startswith("NO [REFERRAL "), done
    c.ok("NOOP")
    c.close()


@pytest.mark.parametrize("user,why", [
    ("carol", "no route to it (no-cms)"),
    ("erin", "no route to it (no-database)"),
    ("dave", "its cms cms1 is at {addr}, an address of this server"),
])
def test_no_route_is_unavailable(pair, user, why):
    a, _ = pair
    c = Raw(a, user=None)
    _, done = c.cmd(f'LOGIN {user} "{user}-password"')
    assert done == ("NO [UNAVAILABLE] Your mailbox is not available on this server now: "
                    "try again later"), done
    c.close()
    assert why.format(addr=a.addr) in a.output()


def test_a_name_shadowed_by_an_alias_is_not_referred(pair):
    """mbx2 asks the directory where a user's mailbox is by address, and gina's alias "frank"
    answers for frank: frank must not be sent to gina's database (db1 on mbx1, which would
    refer him back to db2 here)."""
    a, b = pair
    wait_for(lambda: login_ok(b, "alice"), "mbx2 accepting logins through mbx1's directory")
    c = Raw(b, user=None)
    _, done = c.cmd('LOGIN frank "frank-password"')
    assert done.startswith("NO [UNAVAILABLE]"), done
    c.close()
    assert "frank logged in, but the directory answers that name with user gina" in b.output()
    # At mbx1, which reads the directory itself, frank is simply referred to db2's cms.
    c = Raw(a, user=None)
    _, done = c.cmd('LOGIN frank "frank-password"')
    assert done.startswith(f"NO [REFERRAL imap://frank;AUTH=*@{b.addr}:{b.ports['imap']}/] ")
    c.close()
