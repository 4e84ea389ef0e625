"""Log bytes damaged in transit (issue 5, Proof): a copy that receives its active's log through
a proxy that corrupts LOG_DATA chunks (corrupt_proxy.py: TLS terminated on both sides, one
log byte flipped, the replication frame's CRC32C made right again, so only the copy's log
inspection can tell) rejects each damaged range, asks for it again, recovers by itself from
fewer than three failures in a row, and is Failed with a clear message at the third; with
the path clean again, `tandemctl copy resume` brings it back, as nothing damaged was kept."""
import secrets
import ssl
import time

import pytest

from corrupt_proxy import CorruptingProxy, make_ca
from lab import Server, wait_for
from test_replication import (DB, active_lsn, caught_up, copy_status, deliver, dump,
                              wait_status)


@pytest.fixture
def proxied(tandem_bin, tandemctl, tmp_path):
    """A with the database and its directory; B with a passive copy whose only source is the
    proxy, which forwards to A's [listen replication]. B and A trust the proxy's CA besides
    each other's, as they would a real peer's."""
    exe = tandem_bin("tandemd")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Server(exe, tmp_path / "a", "a", roles="mailbox, directory",
               listeners=("lmtp", "admin", "replication"))
    b = Server(exe, tmp_path / "b", "b", roles="mailbox", listeners=())
    b.directory_endpoint = f"{a.addr}:{a.ports['admin']}"
    b.write_conf(server="b", level="info")
    (a.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", a.datadir / "db" / DB)
    assert r.returncode == 0, r.stderr
    for s in (a, b):  # each makes its local CA at its first start
        p = s.start()
        s.started(p)
        s.stop(p)
    # The proxy on an address of its own (B's own address would do, but a separate one keeps
    # A's view honest: the proxy, not B, is the peer it sees).
    proxy_addr = f"127.78.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
    pki = make_ca(tmp_path, proxy_addr)
    cas = tmp_path / "cas.pem"
    cas.write_text(a.ca.read_text() + b.ca.read_text() + pki["ca"].read_text())
    for s in (a, b):
        s.extra_conf = f"\n[tls]\nca = {cas}\n"
        s.write_conf(server=s.name, level="info")

    ap = a.start()
    a.started(ap)
    a.wait_api()
    key = secrets.token_urlsafe(32)
    ok = lambda r: r.status in (200, 201)
    assert ok(a.api("PUT", "/v1/objects/server/b", {"attrs": {"site": "dc1"}}))
    assert ok(a.api("PUT", "/v1/objects/server/b/password", {"password": key}))
    assert ok(a.api("POST", "/v1/objects/group/servers/members/add", {"member": "server:b"}))
    assert ok(a.api("PUT", "/v1/objects/user/alice",
                    {"attrs": {"addresses": ["alice@example.test"], "database": DB}}))
    (b.datadir / "server.key").write_text(key + "\n")

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki["cert"], pki["key"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks A's certificate and address
    client_ctx.load_verify_locations(a.ca)
    client_ctx.load_cert_chain(pki["cert"], pki["key"])  # A requires a client certificate
    proxy = CorruptingProxy(proxy_addr, (a.addr, a.ports["replication"]), server_ctx,
                            client_ctx)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={proxy_addr}:{proxy.port}")
    assert r.returncode == 0, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    yield a, b, bp, proxy
    b.kill_all()
    proxy.close()
    a.kill_all()


def inspection_failures(b):
    return [e for e in b.event_lines() if e["name"] == "repl.copy_inspection_failed"]


def test_damaged_log_is_rejected_retried_and_fails_the_copy_at_the_third(
        proxied, tandem_bin, tandemctl):
    a, b, bp, proxy = proxied
    deliver(a, "alice@example.test", "clean")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy seeded through the proxy")
    assert proxy.corrupted == [] and inspection_failures(b) == []

    # Two damaged chunks in a row: each is dropped and shipped again; the third try is clean
    # and the copy carries on by itself.
    proxy.corrupt = 2
    sessions = proxy.connections
    deliver(a, "alice@example.test", "damaged twice on the way")
    c = wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after two failures")
    assert len(proxy.corrupted) == 2
    events = inspection_failures(b)
    assert len(events) == 2, events
    for n, (e, (gen, off)) in enumerate(zip(events, proxy.corrupted), 1):
        assert f"generation {gen} from offset {off} failed inspection ({n} of 3)" \
            in e["message"], e
        assert e["subject"] == DB
    assert proxy.connections >= sessions + 2  # it asked again on a new session each time
    assert c["inspection_failures"] == 0  # a good range ends the run of failures
    # Nothing of the damaged bytes was kept: the copy's content is the active's.
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)

    # Every chunk damaged: the third failure in a row makes the copy Failed.
    proxy.corrupt = None
    before = len(proxy.corrupted)
    deliver(a, "alice@example.test", "damaged for good")
    c = wait_for(lambda: (lambda c: c if c["state"] == "Failed" else None)(
        copy_status(tandemctl, b)), "B's copy Failed")
    gen, off = proxy.corrupted[before]
    assert c["inspection_failures"] == 3, c
    assert c["message"].startswith(f"generation {gen} failed inspection 3 times in a row: "), c
    assert c["message"].endswith("the copy needs a reseed"), c
    assert c["copied_lsn"] < active_lsn(a)
    events = inspection_failures(b)[2:]
    assert [f"({n} of 3)" in e["message"] for n, e in enumerate(events, 1)] == [True] * 3
    assert any(e["name"] == "repl.copy_failed" and "3 times in a row" in e["message"]
               for e in b.event_lines()), b.event_lines()
    r = tandemctl("copy", "status", "--socket", b.admin_socket)
    assert r.returncode == 0 and "Failed" in r.stdout and "3 times in a row" in r.stdout, \
        r.stdout
    # Failed waits for an operator: no further session is tried.
    sessions = proxy.connections
    time.sleep(2)  # a Disconnected copy would have tried again within 0.5 s
    assert proxy.connections == sessions
    assert copy_status(tandemctl, b)["state"] == "Failed"

    # Nothing damaged was kept, so once the path is clean again an operator's resume (which
    # retries a Failed copy) is enough: it asks again from its own position and catches up.
    proxy.corrupt = 0
    r = tandemctl("copy", "resume", DB, "--socket", b.admin_socket)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after resume")
    assert len(proxy.corrupted) == before + 3
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    b.stop(bp)


def test_failed_copy_healed_by_reseed(proxied, tandem_bin, tandemctl):
    """A copy Failed after three damaged ranges is rebuilt by `copy reseed --delete-existing`
    over the clean path (a snapshot, then the log); without --delete-existing it is refused."""
    a, b, bp, proxy = proxied
    deliver(a, "alice@example.test", "clean")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy seeded through the proxy")
    proxy.corrupt = None
    deliver(a, "alice@example.test", "damaged for good")
    wait_for(lambda: (lambda c: c if c["state"] == "Failed" else None)(
        copy_status(tandemctl, b)), "B's copy Failed")

    proxy.corrupt = 0
    sock = ("--socket", b.admin_socket)
    r = tandemctl("copy", "reseed", DB, *sock)
    assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
    assert "has files" in r.stderr and "--delete-existing" in r.stderr, r.stderr
    assert copy_status(tandemctl, b)["state"] == "Failed"

    r = tandemctl("copy", "reseed", DB, "--delete-existing", *sock)
    assert r.returncode == 0, r.stderr
    for i in range(3):
        deliver(a, "alice@example.test", f"during the reseed {i}")
    c = wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up after its reseed")
    assert c["inspection_failures"] == 0
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    names = [e["name"] for e in b.event_lines() if e["subject"] == DB]
    assert names[-2:] == ["repl.copy_seeding", "repl.copy_healthy"], names
    assert any("reseed requested" in e["message"] for e in b.event_lines()
               if e["name"] == "repl.copy_seeding")
    b.stop(bp)
