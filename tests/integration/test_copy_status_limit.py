"""One status reply lists at most 64 copies (docs/replication.md, "Status"): a server holding
65 says so instead of passing the first 64 off as all of them. GET /v1/copies carries the
total; `tandemctl copy status` warns on stderr, and asked for a copy past the list it says why
it cannot show it rather than "no such copy"."""
import json

from lab import Server
from test_replication import wait_status


def test_more_copies_than_one_status_lists(tandem_bin, tandemctl, tmp_path):
    b = Server(tandem_bin("tandemd"), tmp_path, "b", roles="mailbox", listeners=())
    b.write_conf(server="b", level="info")
    (b.datadir / "db").mkdir(parents=True)
    names = [f"db{i:03d}" for i in range(65)]
    for n in names:
        # Sources nobody listens on: every copy stays Disconnected, which is enough here.
        r = tandemctl("copy", "create", b.datadir / "db" / n, "--role", "passive",
                      "--source", "public=127.0.0.1:9")
        assert r.returncode == 0, r.stderr
    bp = b.start()
    try:
        b.started(bp)
        wait_status(b)
        doc = b.api("GET", "/v1/copies").json()
        assert doc["total"] == 65
        assert [c["database"] for c in doc["copies"]] == names[:64]

        r = tandemctl("copy", "status", "--json", "--socket", b.admin_socket)
        assert r.returncode == 0, r.stderr
        assert "holds 65 copies; a status lists the first 64" in r.stderr
        assert len(json.loads(r.stdout)["copies"]) == 64

        r = tandemctl("copy", "status", "db010", "--socket", b.admin_socket)
        assert r.returncode == 0 and "db010" in r.stdout, r.stderr
        r = tandemctl("copy", "status", "db064", "--socket", b.admin_socket)
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert "db064: not among the 64 copies listed of the 65 b holds" in r.stderr
        r = tandemctl("copy", "status", "nosuch", "--socket", b.admin_socket)
        assert r.returncode == 5, (r.returncode, r.stderr)
        b.stop(bp)
    finally:
        b.kill_all()
