"""tandemctl against the admin API of real tandemd processes (docs/tandemctl.md,
docs/formats/admin-api.md): a topology provisioned with tandemctl alone, over the admin socket
and over TLS; refusals by the ACL naming object, principal and missing right; the documented
exit codes; --json output; events --since. And, without any server, the argument and
connection errors.

Servers come from lab.py: each on its own 127.77.x.y address with a temporary datadir, killed
with its whole session in teardown.
"""
import base64
import json
import os
import pty
import signal
import socket
import subprocess
import termios
import threading
import time

import pytest

from lab import Server, free_port, wait_for

EXIT_USAGE, EXIT_ERROR = 2, 5
EXIT_FORBIDDEN, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNREACHABLE = 6, 7, 8, 9


@pytest.fixture
def ctl(tandem_bin, tmp_path):
    """ctl(*args, env={...}, stdin=None) -> CompletedProcess. The TANDEM_* variables of the
    caller's environment never leak in: each test says where the server is."""
    exe = tandem_bin("tandemctl")

    def run(*args, env=None, stdin=None, timeout=60):
        e = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
        e.update(env or {})
        return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                              env=e, input=stdin, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    return run


@pytest.fixture
def directory(tandem_bin, tmp_path):
    """A running directory server with [listen admin] (TLS) and the admin socket."""
    s = Server(tandem_bin("tandemd"), tmp_path, "dir1", roles="directory",
               listeners=("admin",))
    s.start()
    s.wait_api()
    # Reads need only the directory's LMDB; writes and status also need the worker's link to
    # the core, which comes up on its own time.
    wait_for(lambda: s.api("GET", "/v1/status").status == 200, "the core behind the socket")
    yield s
    s.kill_all()


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def fails(p, code, *parts):
    """p ended with code, and its one-line error says each of parts."""
    assert p.returncode == code, f"exit {p.returncode}, want {code}\n{p.stdout}\n{p.stderr}"
    assert p.stderr.startswith("tandemctl: "), p.stderr
    for part in parts:
        assert part in p.stderr, f"{part!r} not in {p.stderr!r}"
    return p


# ---- without a server ------------------------------------------------------------------------

def test_help_lists_nouns_and_exit_codes(ctl):
    p = ok(ctl("--help"))
    for noun in ("user", "group", "acl", "site", "network", "server", "cluster", "cms",
                 "database", "address-list", "status", "events", "whoami"):
        assert f"\n  {noun} " in p.stdout, noun
    for code in range(0, 11):
        assert f"{code:>3}  " in p.stdout, code
    p = ok(ctl("user", "add", "--help"))
    assert "--display-name" in p.stdout and "--socket PATH" in p.stdout
    assert "--attr KEY:=JSON" in p.stdout
    p = ok(ctl("cluster", "add", "--help"))
    assert "--node" in p.stdout
    p = ok(ctl("events", "--help"))
    assert "--since" in p.stdout and "--follow" in p.stdout


@pytest.mark.parametrize("args, message", [
    (["user"], "no verb given"),
    (["user", "frobnicate"], 'unknown verb "user frobnicate"'),
    (["user", "add", "--socket", "/x"], "no user name given"),
    (["user", "add", "alice", "bob", "--socket", "/x"], 'unexpected argument "bob"'),
    (["user", "add", "alice", "--bogus", "--socket", "/x"], 'unknown option "--bogus"'),
    (["user", "add", "alice", "--socket"], "--socket needs a value"),
    (["user", "add", "alice", "--attr", "novalue", "--socket", "/x"], "is not KEY=VALUE"),
    (["user", "add", "alice", "--attr", "n:={", "--socket", "/x"], "is not JSON"),
    (["user", "add", "alice", "--attrs", "[1]", "--socket", "/x"], "must be a JSON object"),
    (["database", "add", "db1", "--quota", "lots", "--socket", "/x"], "is not a size"),
    (["cms", "add", "cms1", "--imap-port", "0", "--socket", "/x"], "is not a port"),
    (["cms", "add", "cms1", "--lmtp-port", "24x", "--socket", "/x"], "is not a port"),
    (["user", "set", "alice", "--socket", "/x"], "nothing to change"),
    (["acl", "grant", "user/alice", "bob", "--socket", "/x"], "too few arguments"),
    (["acl", "grant", "user/alice", "bob", "admin", "--socket", "/x"], '"admin" is not a right'),
    (["acl", "show", "mailbox/alice", "--socket", "/x"], "is not <kind>/<name>"),
    (["acl", "show", "alice", "--socket", "/x"], "is not <kind>/<name>"),
    (["events", "--since", "yesterday", "--socket", "/x"], "is not a duration"),
    (["status", "extra", "--socket", "/x"], 'unexpected argument "extra"'),
    (["whoami"], "which server?"),
    (["whoami", "--socket", "/x", "--server", "127.0.0.1:1"], "not both"),
    (["whoami", "--server", "127.0.0.1", "--ca", "/x", "--user", "u"], "is not HOST:PORT"),
    (["whoami", "--server", "127.0.0.1:99999", "--ca", "/x", "--user", "u"], "is not HOST:PORT"),
    (["whoami", "--server", "127.0.0.1:1", "--ca", "/x"], "--server needs --user"),
    (["whoami", "--server", "127.0.0.1:1", "--user", "u"], "needs the CA"),
    (["whoami", "--socket", "/x", "--password-file", "/x"], "--password-file needs --user"),
])
def test_usage_errors(ctl, args, message):
    fails(ctl(*args), EXIT_USAGE, message)


def test_no_password_without_a_terminal(ctl):
    # stdin is not a terminal: tandemctl must not hang waiting for a prompt's answer.
    fails(ctl("whoami", "--socket", "/x", "--user", "alice"), EXIT_USAGE,
          "no password for user alice", "TANDEM_PASSWORD")


def test_environment_says_where(ctl, tmp_path):
    both = {"TANDEM_SOCKET": "/x", "TANDEM_SERVER": "127.0.0.1:1"}
    fails(ctl("whoami", env=both), EXIT_USAGE, "both TANDEM_SOCKET and TANDEM_SERVER")
    fails(ctl("whoami", env={"TANDEM_SERVER": "nope"}), EXIT_USAGE,
          'TANDEM_SERVER "nope" is not HOST:PORT')
    # A flag wins over the environment.
    fails(ctl("whoami", "--socket", tmp_path / "flag.sock",
              env={"TANDEM_SOCKET": str(tmp_path / "env.sock")}),
          EXIT_UNREACHABLE, f"cannot connect to {tmp_path / 'flag.sock'}")


def test_connection_errors(ctl, tmp_path):
    conf = tmp_path / "t.conf"
    datadir = tmp_path / "nodata"
    conf.write_text(f"server = s\nsite = dc1\ndatadir = {datadir}\nroles = directory\n"
                    "[network public]\naddress = 127.77.200.1\n")
    fails(ctl("status", "-c", conf), EXIT_UNREACHABLE,
          f"cannot connect to {datadir}/run/admin.sock: no such file; is tandemd running "
          f"with datadir {datadir}?")
    fails(ctl("status", env={"TANDEM_SOCKET": str(tmp_path / "x.sock")}), EXIT_UNREACHABLE,
          "no such file")
    # A file that is not a socket.
    (tmp_path / "plain").write_text("")
    fails(ctl("status", "--socket", tmp_path / "plain"), EXIT_UNREACHABLE, "cannot connect")
    # A bad config file: the config loader's message, with file and line.
    bad = tmp_path / "bad.conf"
    bad.write_text("server = s\nbogus = 1\n")
    fails(ctl("status", "-c", bad), EXIT_USAGE, f"{bad}:2")
    fails(ctl("status", "-c", tmp_path / "missing.conf"), EXIT_ERROR, "missing.conf")
    # TLS: nothing listening.
    addr = "127.77.201.9"
    port = free_port(addr)
    fails(ctl("whoami", "--server", f"{addr}:{port}", "--ca", "/dev/null", "--user", "u",
              env={"TANDEM_PASSWORD": "p"}),
          EXIT_UNREACHABLE, f"cannot connect to {addr}:{port}: connection refused")


# ---- against a server ------------------------------------------------------------------------

def provision(ctl, where):
    """The seed's kind of topology, with tandemctl alone. where: the options saying where the
    server is (and who asks). Returns nothing; every step must succeed."""
    steps = [
        ["site", "add", "dc1", "--description", "first datacenter"],
        ["site", "add", "dc2"],
        ["network", "add", "public", "--role", "client", "--subnet", "127.77.0.0/16"],
        ["network", "add", "replication", "--role", "replication", "--subnet", "10.1.0.0/24",
         "--subnet", "10.2.0.0/24"],
        ["server", "add", "mbx1", "--site", "dc1", "--address", "127.77.1.1", "--role",
         "mailbox"],
        ["server", "add", "mbx2", "--site", "dc1", "--address", "127.77.1.2", "--role",
         "mailbox", "--fqdn", "mbx2.example.com"],
        ["server", "add", "mbx3", "--site", "dc2", "--attrs",
         '{"addresses":["127.77.2.1"],"roles":["mailbox"]}'],
        ["cluster", "add", "ccr1", "--node", "mbx1", "--node", "mbx2", "--witness", "dir1"],
        ["cms", "add", "cms1", "--cluster", "ccr1", "--address", "127.77.1.10",
         "--network", "public", "--lmtp-port", "2424", "--imap-port", "1143"],
        ["database", "add", "db1", "--cms", "cms1", "--replication", "block", "--quota", "2G"],
        ["user", "add", "alice", "--display-name", "Alice Smith", "--address",
         "alice@example.com", "--address", "a.smith@example.com", "--database", "db1",
         "--attr", "title=Engineer", "--attr", "disabled:=false"],
        ["user", "add", "bob", "--display-name", "Bob Jones", "--address", "bob@example.com",
         "--database", "db1"],
        ["group", "add", "staff", "--email", "staff@example.com"],
        ["group", "add-member", "staff", "alice", "user:bob"],
        ["acl", "grant", "user/alice", "user:bob", "read"],
        ["acl", "grant", "database/db1", "group:staff", "read"],
        ["address-list", "add", "everyone", "--filter", "*", "--description", "all users"],
    ]
    for s in steps:
        ok(ctl(*s, *where))


def check_topology(ctl, where):
    """What provision() made, read back through tandemctl's tables and --json."""
    users = json.loads(ok(ctl("user", "list", "--json", *where)).stdout)
    by_name = {o["name"]: o for o in users["objects"]}
    assert {"alice", "bob"} <= set(by_name)
    assert by_name["alice"]["attrs"]["addresses"] == ["alice@example.com",
                                                      "a.smith@example.com"]
    assert by_name["alice"]["attrs"]["title"] == "Engineer"
    assert by_name["alice"]["attrs"]["disabled"] is False
    db = json.loads(ok(ctl("database", "show", "db1", "--json", *where)).stdout)
    assert db["attrs"] == {"cms": "cms1", "replication": "block", "quota_bytes": 2 << 30}
    cms = json.loads(ok(ctl("cms", "show", "cms1", "--json", *where)).stdout)
    assert cms["attrs"]["lmtp_port"] == 2424 and cms["attrs"]["imap_port"] == 1143
    al = ok(ctl("address-list", "list", *where)).stdout.splitlines()
    assert al[0].split() == ["NAME", "FILTER", "HIDDEN", "DESCRIPTION"]
    assert al[1].split() == ["everyone", "*", "-", "all", "users"]
    cl = json.loads(ok(ctl("cluster", "show", "ccr1", "--json", *where)).stdout)
    assert cl["attrs"]["servers"] == ["mbx1", "mbx2"]
    # The table: a header, then one aligned row per object.
    lines = ok(ctl("server", "list", *where)).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SITE", "ADDRESSES", "ROLES"]
    rows = {l.split()[0]: l for l in lines[1:]}
    assert set(rows) == {"mbx1", "mbx2", "mbx3"}
    col = lines[0].index("ADDRESSES")
    assert all(r[col:].startswith("127.77.") for r in rows.values())
    assert rows["mbx3"].split()[1] == "dc2"
    members = ok(ctl("group", "members", "staff", *where)).stdout.split()
    assert members == ["user:alice", "user:bob"]
    acl = ok(ctl("acl", "show", "database/db1", *where)).stdout.splitlines()
    assert acl[0].split() == ["PRINCIPAL", "RIGHT"]
    assert acl[1].split() == ["group:staff", "read"]
    show = ok(ctl("user", "show", "alice", *where)).stdout
    assert "display_name:" in show and "Alice Smith" in show
    assert "acl:" in show and "user:bob read" in show


def test_provision_over_the_socket(ctl, directory):
    where = ["--socket", directory.admin_socket]
    who = json.loads(ok(ctl("whoami", "--json", *where)).stdout)
    assert who["principal"] == "local"
    provision(ctl, where)
    check_topology(ctl, where)
    # -c finds the same socket through the config's datadir.
    assert "alice" in ok(ctl("user", "list", "-c", directory.conf)).stdout
    # set changes only what it is told, and the version moves.
    before = json.loads(ok(ctl("user", "show", "bob", "--json", *where)).stdout)
    ok(ctl("user", "set", "bob", "--phone", "+1 555 0100", "--unset", "database", *where))
    after = json.loads(ok(ctl("user", "show", "bob", "--json", *where)).stdout)
    assert after["version"] == before["version"] + 1
    assert after["attrs"]["phone"] == "+1 555 0100"
    assert "database" not in after["attrs"]
    assert after["attrs"]["display_name"] == "Bob Jones"
    # remove, then it is gone (exit 7), and adding twice is a conflict (exit 8).
    ok(ctl("site", "remove", "dc2", *where))
    fails(ctl("site", "show", "dc2", *where), EXIT_NOT_FOUND, "site/dc2",
          "`tandemctl site list` shows what exists")
    fails(ctl("site", "remove", "dc2", *where), EXIT_NOT_FOUND, "site/dc2")
    p = fails(ctl("user", "add", "alice", *where), EXIT_CONFLICT, "user/alice",
              "to change it: tandemctl user set alice")
    assert p.stderr.count("\n") == 1  # one line, hint included
    fails(ctl("group", "add-member", "staff", "nobody", *where), EXIT_CONFLICT, "user:nobody")
    ok(ctl("user", "add", "carol", *where))
    p = fails(ctl("group", "add-member", "staff", "carol", "nobody", *where), EXIT_CONFLICT,
              "user:nobody", "the members before nobody were added")
    assert p.stderr.count("\n") == 1
    assert "user:carol" in ok(ctl("group", "members", "staff", *where)).stdout
    # The server checks the schema; tandemctl passes its message on, exit 2.
    fails(ctl("user", "set", "bob", "--attr", "shoe_size=9", *where), EXIT_USAGE, "shoe_size")
    # status: this server and its directory database.
    st = json.loads(ok(ctl("status", "--json", *where)).stdout)
    assert st["server"] == "dir1" and "directory" in st["roles"]
    assert [d["name"] for d in st["databases"]] == ["directory"]
    human = ok(ctl("status", *where)).stdout
    assert "Server:" in human and "dir1" in human and "directory" in human


def test_provision_over_tls(ctl, directory, tmp_path):
    sock = ["--socket", directory.admin_socket]
    # An administrator, made locally: a user in admins with a password.
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    ok(ctl("user", "add", "root", "--new-password-file", pw, *sock))
    ok(ctl("group", "add-member", "admins", "root", *sock))
    tls = ["--server", f"{directory.addr}:{directory.ports['admin']}", "--ca", directory.ca,
           "--user", "root", "--password-file", pw]
    who = json.loads(ok(ctl("whoami", "--json", *tls)).stdout)
    assert who == {"principal": "user:root", "admin": True}
    # The TLS worker has its own link to the core.
    wait_for(lambda: ctl("status", *tls).returncode == 0, "the core behind TLS")
    provision(ctl, tls)
    check_topology(ctl, tls)
    # The environment can say all of it.
    env = {"TANDEM_SERVER": f"{directory.addr}:{directory.ports['admin']}",
           "TANDEM_CA": str(directory.ca), "TANDEM_PASSWORD": "correct horse battery"}
    assert ok(ctl("whoami", "--user", "root", env=env)).stdout.startswith("user:root")
    # -c gives the CA for --server, and beats a TANDEM_CA left in the environment.
    ok(ctl("whoami", "--server", f"{directory.addr}:{directory.ports['admin']}", "-c",
           directory.conf, "--user", "root",
           env={"TANDEM_PASSWORD": "correct horse battery", "TANDEM_CA": "/dev/null"}))
    # A wrong password is exit 9 and says whose credentials were refused.
    fails(ctl("whoami", "--user", "root", env={**env, "TANDEM_PASSWORD": "wrong one"}),
          EXIT_UNREACHABLE, "refused the credentials of user root")
    # A CA that did not sign the server's certificate: the handshake fails, exit 9.
    other = tmp_path / "other-ca.pem"
    other.write_text(open("/etc/ssl/certs/ca-certificates.crt").read())
    fails(ctl("whoami", "--user", "root", env={**env, "TANDEM_CA": str(other)}),
          EXIT_UNREACHABLE, "TLS handshake", "certificate verify failed")
    # The certificate is for the server's address, not for any name that reaches it.
    fails(ctl("whoami", "--user", "root",
              env={**env, "TANDEM_SERVER": f"localhost:{directory.ports['admin']}"}),
          EXIT_UNREACHABLE)


def test_refused_by_the_acl(ctl, directory, tmp_path):
    sock = ["--socket", directory.admin_socket]
    pw = tmp_path / "pw"
    pw.write_text("bobs password\n")
    ok(ctl("user", "add", "alice", "--display-name", "Alice", *sock))
    ok(ctl("user", "add", "bob", "--new-password-file", pw, *sock))
    ok(ctl("acl", "grant", "user/alice", "bob", "read", *sock))
    env = {"TANDEM_PASSWORD": "bobs password"}
    for where in (sock + ["--user", "bob"],
                  ["--server", f"{directory.addr}:{directory.ports['admin']}", "--ca",
                   directory.ca, "--user", "bob"]):
        # Reading is allowed; the ACL itself is not shown without full-control.
        shown = json.loads(ok(ctl("user", "show", "alice", "--json", *where, env=env)).stdout)
        assert "acl" not in shown
        p = fails(ctl("user", "set", "alice", "--phone", "1", *where, env=env),
                  EXIT_FORBIDDEN, "user:bob", "write", "user/alice",
                  "tandemctl acl grant user/alice user:bob write")
        assert p.stdout == ""
        # --json also prints the server's error document, for scripts.
        p = fails(ctl("user", "remove", "alice", "--json", *where, env=env), EXIT_FORBIDDEN,
                  "user:bob", "full-control", "user/alice")
        err = json.loads(p.stdout)["error"]
        assert (err["status"], err["object"], err["principal"], err["right"]) == \
            (403, "user/alice", "user:bob", "full-control")
        fails(ctl("site", "add", "dc9", *where, env=env), EXIT_FORBIDDEN, "user:bob",
              "tandemctl group add-member admins user:bob")
        # Objects bob may not read are left out of a list.
        names = [o["name"] for o in
                 json.loads(ok(ctl("user", "list", "--json", *where, env=env)).stdout)["objects"]]
        assert "alice" in names
    # Nothing bob tried changed anything.
    alice = json.loads(ok(ctl("user", "show", "alice", "--json", *sock)).stdout)
    assert alice["version"] == 2 and "phone" not in alice["attrs"]  # 1: created; 2: the ACL
    fails(ctl("site", "show", "dc9", *sock), EXIT_NOT_FOUND)


def test_password_verb(ctl, directory, tmp_path):
    sock = ["--socket", directory.admin_socket]
    ok(ctl("user", "add", "carol", *sock))
    # Not a terminal: the new password is one line of standard input.
    ok(ctl("user", "password", "carol", *sock, stdin="first password\n"))
    ok(ctl("whoami", *sock, "--user", "carol", env={"TANDEM_PASSWORD": "first password"}))
    fails(ctl("user", "password", "carol", *sock, stdin="short\n"), EXIT_USAGE,
          "8 to 1024 bytes")
    # A user may change its own password.
    ok(ctl("user", "password", "carol", *sock, "--user", "carol",
           env={"TANDEM_PASSWORD": "first password"}, stdin="second password\n"))
    fails(ctl("whoami", *sock, "--user", "carol", env={"TANDEM_PASSWORD": "first password"}),
          EXIT_UNREACHABLE)
    ok(ctl("whoami", *sock, "--user", "carol", env={"TANDEM_PASSWORD": "second password"}))
    fails(ctl("user", "password", "nobody", *sock, stdin="some password\n"), EXIT_NOT_FOUND)


def test_events_since(ctl, directory):
    sock = ["--socket", directory.admin_socket]
    # The directory database's creation and mount are events of this server.
    lines = ok(ctl("events", "--since", "1h", "--json", *sock)).stdout.splitlines()
    events = [json.loads(l) for l in lines]
    assert any(e["name"] == "store.mounted" and e["subject"] == "directory" for e in events)
    assert all(isinstance(e["id"], int) for e in events)
    # Human lines: time, severity, name(id), subject, message.
    human = ok(ctl("events", "--since", "1h", *sock)).stdout
    assert "store.mounted(1000) directory: " in human
    # Since a time after all of them: nothing. Unix seconds and UTC times both work.
    later = int(time.time()) + 3600
    assert ok(ctl("events", "--since", later, "--json", *sock)).stdout == ""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later))
    assert ok(ctl("events", "--since", stamp, *sock)).stdout == ""
    assert len(ok(ctl("events", "--since", "2000-01-01", "--json", *sock)).stdout
               .splitlines()) == len(events)


def test_events_follow(ctl, tandem_bin, directory):
    """--follow prints what exists, then keeps the stream open for new events."""
    exe = tandem_bin("tandemctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    p = subprocess.Popen([str(exe), "events", "--follow", "--json", "--socket",
                          str(directory.admin_socket)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(p.stdout.readline())
        assert "id" in first
        time.sleep(1)
        assert p.poll() is None, p.stderr.read()  # still following
    finally:
        p.terminate()
        p.wait(timeout=20)


def test_events_follow_sees_new_events(ctl, tandem_bin, directory):
    """An event written while tandemctl follows is printed as it happens: SIGHUP makes the
    server write process.reloaded (2005)."""
    exe = tandem_bin("tandemctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    since = str(int(time.time()))
    p = subprocess.Popen([str(exe), "events", "--follow", "--since", since, "--socket",
                          str(directory.admin_socket)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1)  # the stream is open and has sent what there was
        os.kill(directory.procs[0].pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        line = ""
        while "process.reloaded(2005)" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
            assert line, p.stderr.read()
        assert "process.reloaded(2005)" in line
        assert line.split()[1] == "info"
    finally:
        p.terminate()
        p.wait(timeout=20)


def test_password_prompt_on_a_terminal(tandem_bin, directory):
    """On a terminal the password is asked for, without echo."""
    sock = str(directory.admin_socket)
    exe = str(tandem_bin("tandemctl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    subprocess.run([exe, "user", "add", "dave", "--socket", sock], check=True,
                   capture_output=True, env=env)
    subprocess.run([exe, "user", "password", "dave", "--socket", sock], check=True,
                   capture_output=True, env=env, input="daves password\n", text=True)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(exe, [exe, "whoami", "--socket", sock, "--user", "dave"], env)
    out = b""
    try:
        while b"Password for dave: " not in out:
            out += os.read(fd, 1024)
        os.write(fd, b"daves password\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert b"user:dave" in out
    assert b"daves password" not in out  # never echoed


def test_server_key(ctl, directory):
    """A server object's key is set like a password and authenticates server/<name>."""
    sock = ["--socket", directory.admin_socket]
    ok(ctl("server", "add", "mbx1", "--site", "dc1", *sock))
    ok(ctl("server", "password", "mbx1", *sock, stdin="a long server key\n"))
    shown = json.loads(ok(ctl("server", "show", "mbx1", "--json", *sock)).stdout)
    assert shown["has_password"] is True
    p = ok(ctl("whoami", "--json", *sock, "--user", "server/mbx1",
               env={"TANDEM_PASSWORD": "a long server key"}))
    assert json.loads(p.stdout)["principal"] == "server:mbx1"
    fails(ctl("site", "password", "dc1", *sock), EXIT_USAGE, 'unknown verb "site password"')


def test_interrupted_prompt_gives_echo_back(tandem_bin, directory):
    """^C at the password prompt must not leave the terminal without echo."""
    exe = str(tandem_bin("tandemctl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(exe, [exe, "whoami", "--socket", str(directory.admin_socket), "--user",
                        "dave"], env)
    out = b""
    try:
        while b"Password for dave: " not in out:
            out += os.read(fd, 1024)
        assert not termios.tcgetattr(fd)[3] & termios.ECHO  # off while asking
        os.write(fd, b"\x03")  # ^C: SIGINT to the terminal's foreground process
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGINT
    assert termios.tcgetattr(fd)[3] & termios.ECHO
    os.close(fd)


# ---- against a fake server: what tandemctl does with answers tandemd would never give -------

def serve(path, answers, requests):
    """A unix-socket server that answers one connection per item of answers, each a list of
    chunks (bytes, sent one by one with a pause between, so the client sees them in separate
    reads), closing after each. Every request it read (head and body) is appended to
    requests."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(4096)
            if not got:
                return data
            data += got
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            got = conn.recv(4096)
            if not got:
                break
            body += got
        return head + b"\r\n\r\n" + body

    def run():
        for chunks in answers:
            conn, _ = srv.accept()
            with conn:
                requests.append(read_request(conn))
                for c in chunks:
                    try:
                        conn.sendall(c)
                    except OSError:  # tandemctl stopped reading: it had seen enough
                        break
                    time.sleep(0.02)
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def serve_once(path, chunks, requests):
    return serve(path, [chunks], requests)


def answer(status, doc):
    body = json.dumps(doc).encode()
    return [b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (status, len(body)), body]


def test_set_writes_back_what_it_read_with_its_version(ctl, tmp_path):
    """set = GET, merge, PUT with the version read; a 409 there means someone else wrote in
    between, and tandemctl says to run it again (exit 8) rather than retrying blindly."""
    path = tmp_path / "fake.sock"
    requests = []
    current = {"kind": "user", "name": "alice", "version": 7,
               "attrs": {"display_name": "Alice", "phone": "1", "database": "db1"}}
    t = serve(path, [answer(200, current),
                     answer(409, {"error": {"status": 409, "code": "conflict",
                                            "message": "user/alice is at version 8, not 7",
                                            "object": "user/alice"}})], requests)
    p = fails(ctl("user", "set", "alice", "--phone", "2", "--unset", "database", "--alias",
                  "al", "--socket", path),
              EXIT_CONFLICT, "user/alice is at version 8, not 7", "run the command again")
    t.join(timeout=20)
    assert p.stderr.count("\n") == 1
    assert requests[0].startswith(b"GET /v1/objects/user/alice HTTP/1.1\r\n")
    head, _, body = requests[1].partition(b"\r\n\r\n")
    assert head.startswith(b"PUT /v1/objects/user/alice HTTP/1.1\r\n")
    assert json.loads(body) == {"version": 7, "attrs": {"display_name": "Alice", "phone": "2",
                                                        "aliases": ["al"]}}


@pytest.mark.parametrize("chunks, code, parts", [
    # Chunked, cut into pieces mid-line: read as one answer.
    ([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chun",
      b"ked\r\n\r\n2", b"4\r\n{\"principal\":\"u", b"ser:x\",\"admin\":false}\r\n",
      b"0\r\n\r\n"], 0, []),
    ([b"SSH-2.0-OpenSSH_9.2\r\n"], EXIT_UNREACHABLE,
     ["cannot read", "not an HTTP/1.x status line", "is that a tandem admin endpoint?"]),
    ([], EXIT_UNREACHABLE, ["connection closed without a response"]),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"principal\""], EXIT_UNREACHABLE,
     ["connection closed in the middle of the body"]),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{x}"], EXIT_ERROR, ["not JSON"]),
    ([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"], EXIT_FORBIDDEN,
     ["answered HTTP 403 without an error document"]),
    ([b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 67\r\n\r\n",
      b'{"error":{"status":503,"code":"unavailable","message":"core down"}}'], 10,
     ["cannot do that now: core down"]),
])
def test_odd_answers(ctl, tmp_path, chunks, code, parts):
    path = tmp_path / "fake.sock"
    requests = []
    t = serve_once(path, chunks, requests)
    p = ctl("whoami", "--socket", path)
    t.join(timeout=20)
    if code == 0:
        assert ok(p).stdout == "user:x\n"
    else:
        fails(p, code, *parts)
    # What tandemctl sent: one request, no credentials (local), and it asked to close.
    req = requests[0].decode()
    assert req.startswith("GET /v1/whoami HTTP/1.1\r\n")
    assert "\r\nConnection: close\r\n" in req and "Authorization" not in req


def test_request_carries_credentials_and_body(ctl, tmp_path):
    path = tmp_path / "fake.sock"
    requests = []
    body = b'{"kind":"site","name":"a b/c","version":1,"attrs":{}}'
    t = serve_once(path, [b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body),
                          body], requests)
    p = ok(ctl("site", "add", "a b/c", "--description", "x", "--socket", path, "--user",
               "alice", env={"TANDEM_PASSWORD": "pa:ss wörd"}))
    t.join(timeout=20)
    assert p.stdout == "created site/a b/c (version 1)\n"
    head = requests[0].split(b"\r\n\r\n")[0].decode()
    # The name is one path segment whatever it holds.
    assert head.startswith("PUT /v1/objects/site/a%20b%2Fc HTTP/1.1\r\n")
    token = base64.b64encode("alice:pa:ss wörd".encode()).decode()
    assert f"\r\nAuthorization: Basic {token}\r\n" in head
    assert "\r\nContent-Type: application/json\r\n" in head


def test_events_follow_ends_when_its_reader_does(tandem_bin, directory):
    """`events --follow | head -1`: once the reader is gone, the next event ends tandemctl
    (exit 0) instead of leaving it following into a closed pipe for ever."""
    exe = tandem_bin("tandemctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    p = subprocess.Popen([str(exe), "events", "--follow", "--socket",
                          str(directory.admin_socket)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline()  # the history has at least the mount
        p.stdout.close()
        time.sleep(0.5)
        os.kill(directory.procs[0].pid, signal.SIGHUP)  # a new event: process.reloaded
        assert p.wait(timeout=20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
