"""tandemd's local CA against real processes: created at first start in <datadir>/tls, usable
by an ordinary TLS stack (Python's ssl module verifies a handshake with it), kept byte for byte
across restarts, an incomplete set refused with the missing file named, owned by the service
user when started as root, and named by --print-ca.

Each test has its own 127.78.x.y addresses and a temporary datadir, runs tandemd --foreground in
a new session, and kills that session in teardown.
"""
import json
import os
import pathlib
import pwd
import random
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading

import pytest

from lab import WAIT, children, free_port, wait_for

LOCAL = ("ca.pem", "ca.key", "server.pem", "server.key")


def roles_of_children(pid):
    """The --role arguments of pid's children."""
    return set(children(pid))


class Server:
    def __init__(self, exe, tmp):
        self.exe = exe
        self.tmp = tmp
        net = f"127.78.{random.randint(1, 254)}"
        self.addr = f"{net}.{random.randint(1, 127)}"
        self.repl = f"{net}.{random.randint(128, 254)}"
        self.port = free_port(self.addr)
        self.datadir = tmp / "data"
        self.tls = self.datadir / "tls"
        self.events = tmp / "events.jsonl"
        self.conf = tmp / "tandemd.conf"
        self.log = tmp / "tandemd.log"
        self.procs = []
        self.write_conf()

    def write_conf(self, user=None, extra=""):
        user_line = f"user = {user}\n" if user else ""
        self.conf.write_text(f"""server = mbx7
site = dc1
datadir = {self.datadir}
roles = mailbox
{user_line}
[network public]
address = {self.addr}

[network replication]
address = {self.repl}

[listen imap]
network = public
port = {self.port}

[directory]
endpoints = 127.0.0.10:8443

[log]
events = {self.events}
{extra}""")

    def start(self):
        with open(self.log, "ab") as log:
            p = subprocess.Popen([str(self.exe), "-c", str(self.conf), "--foreground"],
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p

    def wait_started(self, p):
        # worker-admin-socket: the admin unix socket's worker, always there.
        want = {"core", "worker-imap", "worker-admin-socket"}
        wait_for(lambda: roles_of_children(p.pid) == want, "core, worker-imap and worker-admin-socket")

    def stop(self, p):
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, self.output()

    def kill_all(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=WAIT)

    def events_with(self, id_):
        if not self.events.exists():
            return []
        return [e for e in map(json.loads, self.events.read_text().splitlines())
                if e["id"] == id_]

    def output(self):
        return self.log.read_text() if self.log.exists() else ""

    def snapshot(self):
        return {n: (self.tls / n).read_bytes() for n in LOCAL}


@pytest.fixture
def server(tandem_bin, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path)
    yield s
    s.kill_all()


def handshake_with(server, peer):
    """A TLS handshake over a socketpair: a server presenting the files tandemd wrote, a
    client trusting only ca.pem and checking that the certificate names peer. Returns the
    client's error, or None."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(server.tls / "server.pem", server.tls / "server.key")
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and name by default
    cctx.load_verify_locations(server.tls / "ca.pem")
    a, b = socket.socketpair()
    a.settimeout(WAIT)
    b.settimeout(WAIT)

    def serve():
        try:
            with sctx.wrap_socket(a, server_side=True) as s:
                s.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass  # the client refused: the client's error is what the test checks

    t = threading.Thread(target=serve)
    t.start()
    try:
        with cctx.wrap_socket(b, server_hostname=peer) as c:
            assert c.recv(2) == b"ok"
        return None
    except ssl.SSLCertVerificationError as e:
        return e.verify_message
    finally:
        b.close()
        t.join(WAIT)
        a.close()


def test_first_start_creates_the_local_ca_and_restarts_keep_it(server):
    assert not server.tls.exists()
    p = server.start()
    server.wait_started(p)

    assert sorted(os.listdir(server.tls)) == sorted(LOCAL)
    assert stat.S_IMODE(server.tls.stat().st_mode) == 0o750
    for name in LOCAL:
        mode = stat.S_IMODE((server.tls / name).stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), (name, oct(mode))
    assert not (server.datadir / "tls.new").exists()
    created = server.events_with(2100)
    assert len(created) == 1, server.output()
    assert created[0]["name"] == "tls.local_ca_created"
    assert str(server.tls / "ca.pem") in created[0]["message"]

    # The certificate verifies against ca.pem for the server's name and each of its addresses,
    # and for nothing else.
    for peer in ("mbx7", server.addr, server.repl):
        assert handshake_with(server, peer) is None, peer
    assert "mismatch" in handshake_with(server, "127.0.0.9")
    assert "mismatch" in handshake_with(server, "mbx8")

    # Restarts keep every byte, and say nothing about creating a CA.
    before = server.snapshot()
    server.stop(p)
    p = server.start()
    server.wait_started(p)
    assert server.snapshot() == before
    assert len(server.events_with(2100)) == 1
    server.stop(p)


def test_new_address_renews_the_server_certificate_from_the_same_ca(server):
    p = server.start()
    server.wait_started(p)
    server.stop(p)
    before = server.snapshot()
    net, last = server.repl.rsplit(".", 1)
    hb = f"{net}.{128 if last != '128' else 129}"  # neither addr (.1-.127) nor repl
    assert "mismatch" in handshake_with(server, hb)

    server.write_conf(extra=f"[network heartbeat]\naddress = {hb}\n")
    p = server.start()
    server.wait_started(p)
    renewed = server.events_with(2101)
    assert len(renewed) == 1, server.output()
    assert "its names differ from the configuration" in renewed[0]["message"]
    after = server.snapshot()
    assert (after["ca.pem"], after["ca.key"]) == (before["ca.pem"], before["ca.key"])
    assert after["server.pem"] != before["server.pem"]
    for peer in (hb, server.addr, server.repl, "mbx7"):
        assert handshake_with(server, peer) is None, peer
    assert len(server.events_with(2100)) == 1  # the CA was made once, at the first start

    # The next restart has nothing to renew.
    server.stop(p)
    p = server.start()
    server.wait_started(p)
    assert len(server.events_with(2101)) == 1
    assert server.snapshot() == after
    server.stop(p)


def test_incomplete_set_refuses_to_start(server):
    p = server.start()
    server.wait_started(p)
    server.stop(p)
    ca = (server.tls / "ca.pem").read_bytes()
    (server.tls / "server.key").unlink()

    p = server.start()
    assert p.wait(timeout=WAIT) == 1
    out = server.output()
    assert f"incomplete local CA in {server.tls}: missing server.key" in out, out
    assert (server.tls / "ca.pem").read_bytes() == ca  # never regenerated
    assert not (server.tls / "server.key").exists()


def test_print_ca(server):
    r = subprocess.run([str(server.exe), "-c", str(server.conf), "--print-ca"],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{server.tls / 'ca.pem'}\n"
    assert "creates it at its first start" in r.stderr
    assert not server.tls.exists()  # --print-ca creates nothing

    p = server.start()
    server.wait_started(p)
    r = subprocess.run([str(server.exe), "-c", str(server.conf), "--print-ca"],
                       capture_output=True, text=True, timeout=WAIT)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{server.tls / 'ca.pem'}\n", "")
    server.stop(p)

    # A CA for peers does not change what clients of this server need: the local CA signed it.
    server.write_conf(extra="[tls]\nca = /etc/tandem/peers.pem\n")
    r = subprocess.run([str(server.exe), "-c", str(server.conf), "--print-ca"],
                       capture_output=True, text=True, timeout=WAIT)
    assert (r.returncode, r.stdout) == (0, f"{server.tls / 'ca.pem'}\n"), r.stderr
    # The operator's certificate without [tls] ca: tandemd cannot know its issuer, and says so.
    server.write_conf(extra="[tls]\ncertificate = /etc/tandem/c.pem\nkey = /etc/tandem/k.pem\n")
    r = subprocess.run([str(server.exe), "-c", str(server.conf), "--print-ca"],
                       capture_output=True, text=True, timeout=WAIT)
    assert (r.returncode, r.stdout) == (2, "")
    assert "presents the operator's certificate /etc/tandem/c.pem" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to test the privilege drop")
def test_root_gives_the_files_to_the_service_user(tandem_bin):
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp_path is private to root; nobody needs a directory it can reach.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tandemd-tls-"))
    os.chmod(tmp, 0o755)
    s = Server(tandem_bin("tandemd"), tmp)
    try:
        s.datadir.mkdir(mode=0o750)
        os.chown(s.datadir, nobody.pw_uid, nobody.pw_gid)
        s.events.touch()
        os.chown(s.events, nobody.pw_uid, nobody.pw_gid)
        s.write_conf(user="nobody")
        p = s.start()
        s.wait_started(p)
        for path in [s.tls, *(s.tls / n for n in LOCAL)]:
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
        s.stop(p)
    finally:
        s.kill_all()
        shutil.rmtree(tmp)
