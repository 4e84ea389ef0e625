"""The integration tests' small lab: start, stop and kill real tandemd servers, each on its own
loopback address (127.x.y.z) with a temporary datadir, and talk to their admin API.

A Server writes its own config, starts `tandemd --foreground` in a new session (so kill_all
can end the whole process group and nothing outlives a test) and reads its events file. Waits
poll with deadlines. Only the standard library: http.client over the admin unix socket and
over TLS.
"""
import base64
import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import time

import pytest

WAIT = 20.0  # seconds: a generous bound for sanitizer builds; polls end as soon as true


def wait_for(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port(addr):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def children(pid):
    """{role: pid} of pid's children, from /proc (role from the hidden --role argument)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # The command name may hold spaces or ')': the ppid is the 2nd field after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        if b"--role" in argv:
            out[argv[argv.index(b"--role") + 1].decode()] = int(d)
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: the admin API's <datadir>/run/admin.sock."""

    def __init__(self, path, timeout=WAIT):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:300]!r})"


class Server:
    """One tandemd. roles: the config's roles; listeners: protocols to listen on (each gets a
    free port on the server's address)."""

    def __init__(self, exe, tmp, name, roles="mailbox", listeners=("imap", "lmtp")):
        self.exe = exe
        self.tmp = tmp
        self.name = name
        self.roles = roles
        self.addr = f"127.77.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.ports = {p: free_port(self.addr) for p in listeners}
        self.datadir = tmp / "data"
        self.events = tmp / "events.jsonl"
        self.conf = tmp / "tandemd.conf"
        self.log = tmp / "tandemd.log"
        self.procs = []
        self.user = None
        # Where a server without the directory role finds it, and extra sections (e.g. [tls]).
        self.directory_endpoint = "127.0.0.10:8443"
        self.extra_conf = ""
        self.write_conf(server=name, level="info")

    def write_conf(self, server, level):
        user = f"user = {self.user}\n" if self.user else ""
        listen = "".join(f"\n[listen {p}]\nnetwork = public\nport = {port}\n"
                         for p, port in self.ports.items())
        directory = ("" if "directory" in self.roles
                     else f"\n[directory]\nendpoints = {self.directory_endpoint}\n")
        self.conf.write_text(f"""server = {server}
site = dc1
datadir = {self.datadir}
roles = {self.roles}
{user}
[network public]
address = {self.addr}
{listen}{directory}
[log]
level = {level}
events = {self.events}
{self.extra_conf}""")

    def roles_expected(self):
        """The children a running server has: the core, one worker per listener (but
        replication, which the core serves itself), and the worker on the admin socket, which
        is always there."""
        return {"core", "worker-admin-socket",
                *(f"worker-{p}" for p in self.ports if p != "replication")}

    def start(self):
        with open(self.log, "ab") as log:
            p = subprocess.Popen([str(self.exe), "-c", str(self.conf), "--foreground"],
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p

    def started(self, p, timeout=WAIT):
        """Waits for every child; returns {role: pid}."""
        want = self.roles_expected()
        return wait_for(lambda: (lambda c: c if set(c) == want else None)(children(p.pid)),
                        ", ".join(sorted(want)), timeout=timeout)

    def stop(self, p):
        """SIGTERM, and a clean exit with no leak report."""
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0, self.output()
        assert "ERROR: LeakSanitizer" not in self.output()

    def event_lines(self):
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]

    def wait_event(self, pred, what):
        return wait_for(lambda: next((e for e in self.event_lines() if pred(e)), None), what)

    def kill_all(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=WAIT)

    def output(self):
        return self.log.read_text() if self.log.exists() else ""

    # ---- the admin API ----

    @property
    def admin_socket(self):
        return self.datadir / "run" / "admin.sock"

    @property
    def ca(self):
        return self.datadir / "tls" / "ca.pem"

    def connection(self, tls=False):
        if not tls:
            return UnixHTTPConnection(self.admin_socket)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return http.client.HTTPSConnection(self.addr, self.ports["admin"], context=ctx,
                                           timeout=WAIT)

    def api(self, method, path, body=None, auth=None, tls=False, raw=None, conn=None):
        """One request; body is sent as JSON (raw: bytes as they are). auth: (user, password).
        Returns a Reply. conn: an open connection to reuse (keep-alive)."""
        headers = {}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        c = conn or self.connection(tls)
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            return Reply(r.status, dict(r.getheaders()), r.read().decode())
        finally:
            if conn is None:
                c.close()

    def wait_api(self):
        """Until the admin socket serves reads (the directory can be read) and writes (the
        worker's link to the core is up: /v1/status asks the core)."""
        def up():
            try:
                return (self.api("GET", "/v1/objects/group").status == 200 and
                        self.api("GET", "/v1/status").status == 200)
            except OSError:
                return False
        wait_for(up, "the admin API over the socket")
