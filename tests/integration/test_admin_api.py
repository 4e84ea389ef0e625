"""The admin API (docs/formats/admin-api.md) against a real tandemd with the directory role:
http.client over the admin unix socket (the `local` operator) and over TLS (people with
passwords, checked against <datadir>/tls/ca.pem). What an operator would check: the first
admin can be bootstrapped through the socket; objects, groups and ACLs behave as the contract
says; refusals name the object, the principal and the missing right; and every change that
got a 2xx survives kill -9 of the core and of the admin worker.
"""
import base64
import json
import os
import pathlib
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from lab import WAIT, Server, children, wait_for

ALICE = ("alice", "alice-secret-1")
BOB = ("bob", "bob-secret-22")


@pytest.fixture
def server(tandem_bin, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "dir1", roles="directory",
               listeners=("admin",))
    s.proc = s.start()
    s.kids = s.started(s.proc)
    s.wait_api()
    yield s
    s.kill_all()


def ok(r, status=200):
    assert r.status == status, r
    return r.json()


def bootstrap_admin(s):
    """alice, with a password, in admins: all through the socket as `local`."""
    ok(s.api("PUT", "/v1/objects/user/alice", {"attrs": {"display_name": "Alice"}}), 201)
    ok(s.api("PUT", "/v1/objects/user/alice/password", {"password": ALICE[1]}))
    ok(s.api("POST", "/v1/objects/group/admins/members/add", {"member": "user:alice"}))


def test_socket_is_private_and_local_is_full_control(server):
    st = os.stat(server.admin_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert ok(server.api("GET", "/v1/health")) == {"ok": True}
    assert ok(server.api("GET", "/v1/whoami")) == {"principal": "local", "admin": True}
    groups = ok(server.api("GET", "/v1/objects/group"))["objects"]
    assert [g["name"] for g in groups] == ["admins", "servers"]
    assert all("acl" in g for g in groups)  # local has full control


def test_bootstrap_then_provision_over_tls(server):
    bootstrap_admin(server)
    # TLS without credentials is refused; with them, alice is an admin.
    r = server.api("GET", "/v1/whoami", tls=True)
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="tandem"'
    assert ok(server.api("GET", "/v1/whoami", auth=ALICE, tls=True)) == {
        "principal": "user:alice", "admin": True}
    # Provision a small topology as alice.
    ok(server.api("PUT", "/v1/objects/site/dc1", {"attrs": {"description": "primary"}},
                  auth=ALICE, tls=True), 201)
    ok(server.api("PUT", "/v1/objects/site/dc2", {"attrs": {}}, auth=ALICE, tls=True), 201)
    for name in ("carol", "dave"):
        doc = ok(server.api("PUT", f"/v1/objects/user/{name}",
                            {"attrs": {"addresses": [f"{name}@example.com"]}, "version": 0},
                            auth=ALICE, tls=True), 201)
        assert doc["version"] == 1 and doc["acl"] == [] and doc["has_password"] is False
    ok(server.api("PUT", "/v1/objects/group/staff", {"attrs": {"email": "staff@example.com"}},
                  auth=ALICE, tls=True), 201)
    m = ok(server.api("PUT", "/v1/objects/group/staff/members",
                      {"members": ["user:dave", "user:carol"]}, auth=ALICE, tls=True))
    assert m == {"members": ["user:carol", "user:dave"]}
    m = ok(server.api("POST", "/v1/objects/group/staff/members/remove", {"member": "user:dave"},
                      auth=ALICE, tls=True))
    assert m == {"members": ["user:carol"]}
    r = server.api("POST", "/v1/objects/group/staff/members/add", {"member": "user:nobody"},
                   auth=ALICE, tls=True)
    assert r.status == 409 and "user:nobody does not exist" in r.json()["error"]["message"]
    sites = ok(server.api("GET", "/v1/objects/site", auth=ALICE, tls=True))["objects"]
    assert [(x["name"], x["attrs"]) for x in sites] == [("dc1", {"description": "primary"}),
                                                        ("dc2", {})]
    users = ok(server.api("GET", "/v1/objects/user", auth=ALICE, tls=True))["objects"]
    assert [u["name"] for u in users] == ["alice", "carol", "dave"]
    # The same over the socket, and after a delete.
    assert ok(server.api("DELETE", "/v1/objects/user/dave", auth=ALICE)) == {"deleted": True}
    assert server.api("GET", "/v1/objects/user/dave").status == 404


def test_acl_refusal_names_object_principal_and_right(server):
    bootstrap_admin(server)
    for name, pw in (("bob", BOB[1]), ("carol", "carol-secret")):
        ok(server.api("PUT", f"/v1/objects/user/{name}", {"attrs": {}}), 201)
        ok(server.api("PUT", f"/v1/objects/user/{name}/password", {"password": pw}))

    r = server.api("GET", "/v1/objects/user/carol", auth=BOB, tls=True)
    assert r.status == 403
    e = r.json()["error"]
    assert e["message"] == "user:bob lacks read on user/carol (has none)"
    assert (e["code"], e["object"], e["principal"], e["right"]) == (
        "forbidden", "user/carol", "user:bob", "read")

    acl = ok(server.api("POST", "/v1/objects/user/carol/acl/grant",
                        {"principal": "user:bob", "right": "read"}, auth=ALICE, tls=True))
    assert acl == {"acl": [{"principal": "user:bob", "right": "read"}]}
    doc = ok(server.api("GET", "/v1/objects/user/carol", auth=BOB, tls=True))
    assert doc["name"] == "carol" and "acl" not in doc  # read, not full-control
    r = server.api("PUT", "/v1/objects/user/carol", {"attrs": {"title": "x"}}, auth=BOB, tls=True)
    assert r.status == 403
    assert r.json()["error"]["message"] == "user:bob lacks write on user/carol (has read)"
    r = server.api("GET", "/v1/objects/user/carol/acl", auth=BOB, tls=True)
    assert r.json()["error"]["message"] == "user:bob lacks full-control on user/carol (has read)"
    r = server.api("PUT", "/v1/objects/user/eve", {"attrs": {}}, auth=BOB, tls=True)
    assert r.status == 403 and r.json()["error"]["right"] == "create"
    # A list leaves out what bob cannot read.
    users = ok(server.api("GET", "/v1/objects/user", auth=BOB, tls=True))["objects"]
    assert [u["name"] for u in users] == ["carol"]
    # Bob changes his own password without any right on his object.
    ok(server.api("PUT", "/v1/objects/user/bob/password", {"password": "bob-new-secret"},
                  auth=BOB, tls=True))
    assert server.api("GET", "/v1/whoami", auth=BOB, tls=True).status == 401
    assert ok(server.api("GET", "/v1/whoami", auth=("bob", "bob-new-secret"), tls=True))[
        "principal"] == "user:bob"
    # Revoked: refused again.
    ok(server.api("POST", "/v1/objects/user/carol/acl/revoke", {"principal": "user:bob"},
                  auth=ALICE, tls=True))
    assert server.api("GET", "/v1/objects/user/carol", auth=("bob", "bob-new-secret"),
                      tls=True).status == 403


def test_wrong_password_is_401_and_delayed(server):
    bootstrap_admin(server)
    times = []
    for _ in range(3):
        t = time.monotonic()
        r = server.api("GET", "/v1/whoami", auth=("alice", "wrong-password"), tls=True)
        times.append(time.monotonic() - t)
        assert r.status == 401
        assert r.json()["error"] == {"status": 401, "code": "unauthenticated",
                                     "message": "wrong user name or password"}
    # 250 ms, 500 ms, 1 s: doubling per failure from this address.
    assert times[0] >= 0.25 and times[1] >= 0.5 and times[2] >= 1.0, times
    r = server.api("GET", "/v1/whoami", auth=("nosuchuser", "whatever"), tls=True)
    assert r.status == 401 and "wrong user name or password" in r.body
    # The right password still works, and resets the delay.
    assert ok(server.api("GET", "/v1/whoami", auth=ALICE, tls=True))["admin"] is True


def test_malformed_bodies_are_400_naming_the_member(server):
    cases = [
        ("PUT", "/v1/objects/user/x", b'{"attrs":{},"colour":1}', 'unknown member "colour"'),
        ("PUT", "/v1/objects/user/x", b'{"attrs":{"phone":7}}', "phone"),
        ("PUT", "/v1/objects/user/x", b'{"attrs":{}', "body is not valid JSON"),
        ("PUT", "/v1/objects/user/x", b'{"attrs":[]}', "attrs: must be a JSON object"),
        ("PUT", "/v1/objects/user/x", b'{"attrs":{},"version":-2}', "version: must be"),
        ("PUT", "/v1/objects/user/alice/acl",
         b'{"acl":[{"principal":"user:a","right":"admin"}]}', "acl[0].right"),
        ("POST", "/v1/objects/group/admins/members/add", b'{"member":"group:servers"}',
         "member: a group cannot be a member"),
        ("PUT", "/v1/objects/user/alice/password", b'{"password":"short"}', "password: must be"),
    ]
    ok(server.api("PUT", "/v1/objects/user/alice", {"attrs": {}}), 201)
    for method, path, raw, want in cases:
        r = server.api(method, path, raw=raw)
        assert r.status == 400, (path, raw, r)
        e = r.json()["error"]
        assert e["code"] == "bad-request" and want in e["message"], (raw, e)
    r = server.api("PUT", "/v1/objects/user/x", raw=b'{"attrs":{}}' + b" " * (1 << 20))
    assert r.status == 413 and r.json()["error"]["code"] == "too-large"
    assert server.api("GET", "/v1/objects/planet").status == 404
    assert server.api("POST", "/v1/objects/user/alice", {"attrs": {}}).status == 405
    assert server.api("GET", "/v1/objects/user/a%2Fb").status == 400


def test_version_conflict_is_409(server):
    doc = ok(server.api("PUT", "/v1/objects/site/dc1", {"attrs": {}, "version": 0}), 201)
    assert doc["version"] == 1
    r = server.api("PUT", "/v1/objects/site/dc1", {"attrs": {}, "version": 0})
    assert r.status == 409 and r.json()["error"]["object"] == "site/dc1"
    doc = ok(server.api("PUT", "/v1/objects/site/dc1",
                        {"attrs": {"description": "b"}, "version": 1}))
    assert doc["version"] == 2 and doc["attrs"] == {"description": "b"}
    r = server.api("PUT", "/v1/objects/site/dc1", {"attrs": {"description": "c"}, "version": 1})
    assert r.status == 409 and r.json()["error"]["code"] == "conflict"
    assert server.api("DELETE", "/v1/objects/site/dc1?version=1").status == 409
    assert ok(server.api("DELETE", "/v1/objects/site/dc1?version=2")) == {"deleted": True}


def test_status_metrics_and_events(server):
    st = ok(server.api("GET", "/v1/status"))
    assert st["server"] == "dir1" and st["site"] == "dc1" and st["roles"] == ["directory"]
    assert st["pid"] == server.proc.pid
    db = next(d for d in st["databases"] if d["name"] == "directory")
    assert db["kind"] == "directory" and db["state"] == "mounted"
    before = db["last_lsn"]
    ok(server.api("PUT", "/v1/objects/site/dc9", {"attrs": {}}), 201)
    db = next(d for d in ok(server.api("GET", "/v1/status"))["databases"]
              if d["name"] == "directory")
    assert db["last_lsn"] == before + 1 and db["durable_lsn"] >= db["last_lsn"]

    r = server.api("GET", "/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert f'tandem_db_last_lsn{{database="directory"}} {before + 1}' in r.body
    for name in ("tandem_db_commits_total", "tandem_db_syncs_total",
                 "tandem_db_current_generation", "tandem_uptime_seconds",
                 'tandem_admin_requests_total{transport="socket"}'):
        assert name in r.body, name

    r = server.api("GET", "/v1/events?since=0")
    assert r.headers["Content-Type"] == "application/x-ndjson"
    ids = [json.loads(line)["id"] for line in r.body.splitlines() if line]
    assert 2000 in ids  # process.started
    assert server.api("GET", "/v1/events?since=9999999999").body == ""
    assert server.api("GET", "/v1/events?since=x").status == 400

    # follow: a reload's event arrives on the open stream.
    c = server.connection()
    c.request("GET", f"/v1/events?since={int(time.time())}&follow=1")
    resp = c.getresponse()
    assert resp.status == 200
    os.kill(server.proc.pid, signal.SIGHUP)
    # Lines as they come (blank ones are the stream's heartbeat), until the reload's event.
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, "no process.reloaded on the stream"
        line = resp.readline()
        assert line, "the stream ended"
        if line.strip():
            ev = json.loads(line)
            if ev["name"] == "process.reloaded":
                break
    c.close()


def test_events_default_to_the_datadir(tandem_bin, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "dir1", roles="directory", listeners=())
    s.conf.write_text(s.conf.read_text().replace(f"events = {s.events}\n", ""))
    try:
        p = s.start()
        s.started(p)
        s.wait_api()
        r = s.api("GET", "/v1/events")
        assert r.status == 200 and '"name":"process.started"' in r.body
        assert (s.datadir / "events.log").exists()
        s.stop(p)
    finally:
        s.kill_all()


@pytest.mark.parametrize("tls", [False, True], ids=["socket", "tls"])
def test_kill9_core_and_admin_worker_lose_no_acknowledged_change(server, tls):
    """A writer creates users one after another (through the socket as `local`, or over TLS
    as an admin with a password) while the core and then the admin worker it talks to are
    killed with SIGKILL; every user whose creation got a 2xx must be there afterwards, and
    again after a full restart."""
    auth = None
    if tls:
        bootstrap_admin(server)
        auth = ALICE
    worker = "worker-admin" if tls else "worker-admin-socket"
    acked, stop = [], threading.Event()
    errors = {"503": 0, "conn": 0}

    def writer():
        i = 0
        while not stop.is_set():
            name = f"u{i:05d}"
            try:
                r = server.api("PUT", f"/v1/objects/user/{name}",
                               {"attrs": {"display_name": name}}, auth=auth, tls=tls)
                if r.status in (200, 201):
                    acked.append(name)
                    i += 1
                elif r.status == 503:
                    errors["503"] += 1
                    time.sleep(0.02)
                else:
                    raise AssertionError(r)
            except OSError:
                errors["conn"] += 1  # the worker died mid-request: not acknowledged
                time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 20, "20 acknowledged writes")
        os.kill(server.kids["core"], signal.SIGKILL)
        n = len(acked)
        wait_for(lambda: len(acked) >= n + 20, "writes to resume after the core restarted")
        kids = wait_for(lambda: (lambda c: c if c.get(worker) else None)(
            children(server.proc.pid)), "the admin worker")
        os.kill(kids[worker], signal.SIGKILL)
        n = len(acked)
        wait_for(lambda: len(acked) >= n + 20, "writes to resume after the worker restarted")
    finally:
        stop.set()
        t.join(timeout=WAIT)

    def names():
        objs = server.api("GET", "/v1/objects/user").json()["objects"]
        return {o["name"] for o in objs if o["name"] != "alice"}

    missing = set(acked) - names()
    assert not missing, (sorted(missing)[:10], errors)
    server.stop(server.proc)
    server.proc = server.start()
    server.started(server.proc)
    server.wait_api()
    assert not set(acked) - names()


def test_server_key_auth_verify_and_change_journal(server):
    """Another server authenticates with its key, checks logins and follows the journal."""
    bootstrap_admin(server)
    mbx = ("server/mbx1", "mbx1-key-0123456789")
    ok(server.api("PUT", "/v1/objects/server/mbx1", {"attrs": {"site": "dc1"}}), 201)
    ok(server.api("PUT", "/v1/objects/server/mbx1/password", {"password": mbx[1]}))
    assert ok(server.api("GET", "/v1/objects/server/mbx1"))["has_password"] is True
    # Not yet in `servers`: authenticated, but refused.
    assert ok(server.api("GET", "/v1/whoami", auth=mbx, tls=True))["principal"] == "server:mbx1"
    r = server.api("POST", "/v1/auth/verify", {"user": "alice", "password": ALICE[1]}, auth=mbx,
                   tls=True)
    assert r.status == 403 and "not a member of group servers" in r.json()["error"]["message"]
    ok(server.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:mbx1"}))
    assert server.api("GET", "/v1/whoami", auth=("server/mbx1", "wrong-key"),
                      tls=True).status == 401

    alice = ok(server.api("GET", "/v1/objects/user/alice"))
    r = ok(server.api("POST", "/v1/auth/verify", {"user": "alice", "password": ALICE[1]},
                      auth=mbx, tls=True))
    assert r == {"ok": True, "principal": "user:alice", "version": alice["version"]}
    for user, pw in (("alice", "wrong"), ("nobody", "whatever")):
        r = ok(server.api("POST", "/v1/auth/verify", {"user": user, "password": pw}, auth=mbx,
                          tls=True))
        assert r == {"ok": False}
    r = server.api("POST", "/v1/auth/verify", {"user": "alice"}, auth=mbx, tls=True)
    assert r.status == 400 and 'missing member "password"' in r.json()["error"]["message"]

    j = ok(server.api("GET", "/v1/changes?since=0", auth=mbx, tls=True))
    assert j["reset"] is False and j["last"] == j["changes"][-1]["seq"]
    assert {"kind": "user", "name": "alice"} in [
        {"kind": c["kind"], "name": c["name"]} for c in j["changes"]]
    last = j["last"]
    # Nothing new: wait=1 answers empty after about a second.
    t = time.monotonic()
    j = ok(server.api("GET", f"/v1/changes?since={last}&wait=1", auth=mbx, tls=True))
    assert j == {"last": last, "reset": False, "changes": []} and time.monotonic() - t >= 0.9
    # A change while a long wait is held answers it at once.
    got = {}
    th = threading.Thread(target=lambda: got.update(r=server.api(
        "GET", f"/v1/changes?since={last}&wait=30", auth=mbx, tls=True)))
    th.start()
    time.sleep(0.5)
    t = time.monotonic()
    ok(server.api("PUT", "/v1/objects/site/dc7", {"attrs": {}}), 201)
    th.join(timeout=WAIT)
    assert time.monotonic() - t < 5
    j = got["r"].json()
    assert [(c["kind"], c["name"]) for c in j["changes"]] == [("site", "dc7")]
    assert j["last"] == last + 1
    assert server.api("GET", "/v1/changes?wait=61").status == 400


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_socket_peer_of_another_uid_is_not_local(tandem_bin):
    """SO_PEERCRED decides `local`: a peer running as nobody gets 401 without credentials and
    is served as the user it authenticates as. The directories and the socket are opened up for
    the test only (run/ is 0700 and the socket 0600: normally such a peer cannot even connect),
    in a directory of its own because pytest's is private to root."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tandemd-peercred-"))
    os.chmod(tmp, 0o755)
    s = Server(tandem_bin("tandemd"), tmp, "dir1", roles="directory", listeners=())
    try:
        p = s.start()
        s.started(p)
        s.wait_api()
        bootstrap_admin(s)
        for d in (s.datadir, s.admin_socket.parent):
            os.chmod(d, 0o755)
        os.chmod(s.admin_socket, 0o666)
        code = f"""
import base64, http.client, json, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from lab import UnixHTTPConnection
def get(auth):
    c = UnixHTTPConnection({str(s.admin_socket)!r})
    h = {{"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}} if auth else {{}}
    c.request("GET", "/v1/whoami", headers=h)
    r = c.getresponse()
    return [r.status, json.loads(r.read())]
print(json.dumps([get(None), get({ALICE[0] + ":" + ALICE[1]!r})]))
"""
        nobody = pwd.getpwnam("nobody")
        r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                           timeout=WAIT, user=nobody.pw_uid, group=nobody.pw_gid, cwd="/")
        assert r.returncode == 0, r.stderr
        anon, alice = json.loads(r.stdout)
        assert anon[0] == 401
        assert f"peer uid {nobody.pw_uid} is neither root nor tandemd's user" in \
            anon[1]["error"]["message"]
        assert alice == [200, {"principal": "user:alice", "admin": True}]
        s.stop(p)
    finally:
        s.kill_all()
        shutil.rmtree(tmp)


def test_clients_that_go_away_leave_nothing_behind(server):
    """Clients that hang up on a follow stream, a held /v1/changes, a password check or a
    failure delay: the worker frees what it held for them (a clean stop, no leak report), and
    serves the next client as usual."""
    bootstrap_admin(server)
    for path, auth in (("/v1/events?follow=1", None), ("/v1/changes?wait=30", None),
                       ("/v1/whoami", ("carol", "not-checked-yet")),
                       ("/v1/whoami", ("alice", "wrong-password"))):
        c = server.connection()
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode()
        c.request("GET", path, headers=headers)
        time.sleep(0.2)  # the request is in the worker's hands, unanswered
        c.close()
    time.sleep(0.5)
    assert ok(server.api("GET", "/v1/whoami")) == {"principal": "local", "admin": True}
    server.stop(server.proc)


def test_reload_moves_the_events_file(server):
    """SIGHUP with a new [log] events path: the admin API serves the new file."""
    server.events = server.tmp / "events-2.jsonl"
    server.write_conf(server="dir1", level="info")
    os.kill(server.proc.pid, signal.SIGHUP)

    def served():
        names = [json.loads(line)["name"] for line in
                 server.api("GET", "/v1/events").body.splitlines() if line]
        return "process.reloaded" in names and "process.started" not in names
    wait_for(served, "the new events file served, without the old one's lines")


def test_events_span_a_logrotate_rotation(server):
    """logrotate's way (rename to <events>.1, SIGHUP to reopen): /v1/events serves the rotated
    file's lines, then the new file's, each once; since skips a rotated file older than it."""
    rotated = server.events.with_name(server.events.name + ".1")
    os.rename(server.events, rotated)
    os.kill(server.proc.pid, signal.SIGHUP)

    def names():
        return [json.loads(line)["name"] for line in
                server.api("GET", "/v1/events").body.splitlines() if line]
    wait_for(lambda: "process.reloaded" in names(), "the reload's event served")
    served = names()
    assert served.index("process.started") < served.index("process.reloaded")
    old = [json.loads(line)["name"] for line in rotated.read_text().splitlines() if line]
    new = [json.loads(line)["name"] for line in server.events.read_text().splitlines() if line]
    assert served == old + new
    assert "process.started" not in new  # the old lines come from the rotated file alone
    # A rotated file last written before since holds nothing wanted.
    past = int(os.stat(rotated).st_mtime) + 1
    os.utime(rotated, (past - 100, past - 100))
    body = server.api("GET", f"/v1/events?since={past}").body
    assert "process.started" not in body


def test_admin_socket_that_cannot_be_bound_stops_the_start(tandem_bin, tmp_path):
    """A datadir so deep that run/admin.sock does not fit a unix socket address: status 1,
    and the message says why, before any child starts."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    s = Server(tandem_bin("tandemd"), deep, "dir1", roles="directory", listeners=())
    p = s.start()
    try:
        assert p.wait(timeout=WAIT) == 1, s.output()
        assert "admin.sock: the path is longer than a unix socket allows" in s.output()
        assert "started core" not in s.output()
        assert "ERROR: LeakSanitizer" not in s.output()
    finally:
        s.kill_all()


def test_methods_and_paths(server):
    """Each path takes its methods: 405 naming the right ones, 404 for what is not there."""
    ok(server.api("PUT", "/v1/objects/group/staff", {"attrs": {}}), 201)
    cases = [
        ("DELETE", "/v1/objects/group/staff/members", 405, "use GET or PUT"),
        ("POST", "/v1/objects/group/staff/members", 405, "use GET or PUT"),
        ("GET", "/v1/objects/group/staff/members/add", 405, "use POST"),
        ("POST", "/v1/objects/group/staff/members/swap", 404, "no such path"),
        ("GET", "/v1/objects/group/staff/acl/grant", 405, "use POST"),
        ("POST", "/v1/objects/group/staff/acl", 405, "use GET or PUT"),
        ("GET", "/v1/objects/user/nobody/members", 404, "no such path"),
        ("POST", "/v1/status", 405, "use GET"),
        ("GET", "/v2/status", 404, "no such path"),
        ("PUT", "/v1/objects/site/dc1/password", 404, "only users"),
    ]
    for method, path, status, msg in cases:
        r = server.api(method, path, raw=b"{}" if method != "GET" else None)
        assert r.status == status and msg in r.json()["error"]["message"], (method, path, r)
    assert ok(server.api("GET", "/v1/objects/group/staff/members")) == {"members": []}


def test_status_needs_read_on_this_servers_object(server):
    bootstrap_admin(server)
    for name, pw in (("bob", BOB[1]), ("carol", "carol-secret")):
        ok(server.api("PUT", f"/v1/objects/user/{name}", {"attrs": {}}), 201)
        ok(server.api("PUT", f"/v1/objects/user/{name}/password", {"password": pw}))
    # No server object yet: admins only.
    assert ok(server.api("GET", "/v1/status", auth=ALICE, tls=True))["server"] == "dir1"
    r = server.api("GET", "/metrics", auth=BOB, tls=True)
    assert r.status == 403 and "only admins may read this server's state" in r.body
    # With one, its ACL decides.
    ok(server.api("PUT", "/v1/objects/server/dir1", {"attrs": {"site": "dc1"}}), 201)
    ok(server.api("POST", "/v1/objects/server/dir1/acl/grant",
                  {"principal": "user:bob", "right": "read"}))
    assert ok(server.api("GET", "/v1/status", auth=BOB, tls=True))["server"] == "dir1"
    assert server.api("GET", "/metrics", auth=BOB, tls=True).status == 200
    r = server.api("GET", "/v1/events", auth=("carol", "carol-secret"), tls=True)
    assert r.status == 403
    assert r.json()["error"]["message"] == "user:carol lacks read on server/dir1 (has none)"
