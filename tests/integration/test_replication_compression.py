"""zstd per network (docs/replication.md, "Compression"): B's copy.conf asks for it on the
network it ships over (`copy create --compress public`), A compresses for that copy alone,
and the copy ends up equal to A while its status shows the compressed session and fewer bytes
on the wire than the log they carried."""
import json

from lab import wait_for
from test_replication import DB, caught_up, copy_status, deliver, dump, pair, wait_status  # noqa: F401


def test_compressed_copy_equals_the_active(pair, tandem_bin, tandemctl):
    a, ap, b, bp = pair
    deliver(a, "alice@example.test", "before")
    wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up (raw)")
    c = copy_status(tandemctl, b)
    assert c["compression"] == "none" and c["wire_bytes"] == c["wire_log_bytes"] > 0

    # The same copy, now asking for zstd on its one network.
    b.stop(bp)
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}",
                  "--compress", "public")
    assert r.returncode == 0, r.stderr
    assert "compression = zstd" in (b.datadir / "db" / DB / "copy.conf").read_text()
    r = tandemctl("copy", "create", b.datadir / "db" / DB, "--role", "passive",
                  "--source", f"public={a.addr}:{a.ports['replication']}",
                  "--compress", "replication")
    assert r.returncode == 2 and "no --source on that network" in r.stderr, r.stderr
    bp = b.start()
    b.started(bp)
    wait_status(b)
    for i in range(20):
        deliver(a, "bob@example.test", f"mail {i} " + "quarterly figures attached " * 200)

    c = wait_for(lambda: caught_up(tandemctl, a, b), "B's copy caught up (zstd)")
    assert c["compression"] == "zstd"
    # Mail text compresses: the wire carried fewer bytes than the log.
    assert 0 < c["wire_bytes"] < c["wire_log_bytes"], c
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    r = tandemctl("copy", "status", "--socket", b.admin_socket)
    assert r.returncode == 0 and "compressed (zstd)" in r.stdout, r.stdout
    r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
    assert json.loads(r.stdout)["copies"][0]["compression"] == "zstd"
    b.stop(bp)
