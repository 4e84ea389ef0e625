"""tandemctl db create|inspect|verify|recover against real databases.

Databases are written by tdm_populate (tests/integration/populate.c) through the real store.
Exit codes: 0 ok, 1 corruption/refuses to mount, 2 usage, 3 not a database, 4 in use, 5 other.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

HEADER_SIZE = 4096
REC_END = 1
GEN_SIZE = 65536  # the smallest generation: a few dozen ops fill one


@pytest.fixture
def populate(tandem_bin):
    exe = tandem_bin("tdm_populate")

    def run(*args):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        m = re.search(r"last_lsn (\d+)", p.stdout)
        assert m, p.stdout
        return int(m.group(1))
    return run


def gen_path(db, g):
    return db / "log" / f"{g:016x}.log"


def frames(path):
    """(offset, lsn, type, payload length) of every frame, END included (log_format.h)."""
    data = path.read_bytes()
    off, out = HEADER_SIZE, []
    while off + 24 <= len(data):
        lsn = int.from_bytes(data[off:off + 8], "little")
        if lsn == 0:
            break
        typ = int.from_bytes(data[off + 16:off + 18], "little")
        n = int.from_bytes(data[off + 20:off + 24], "little")
        out.append((off, lsn, typ, n))
        off += 24 + n + 4
    return out


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def inspect_json(tandemctl, db):
    p = tandemctl("db", "inspect", db, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def field(text, key):
    """Value of an aligned "Key: value" line."""
    m = re.search(rf"^\s*{re.escape(key)}: (.*)$", text, re.M)
    assert m, f"no {key!r} line in:\n{text}"
    return m.group(1)


def tree_digest(db):
    """Hash of every file but LMDB's lock file (readers register there, by design)."""
    h = hashlib.sha256()
    for p in sorted(db.rglob("*")):
        if p.is_file() and p.name != "lock.mdb":
            h.update(str(p.relative_to(db)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def crashed_db(populate, db, ops, snapshot_after=None):
    """A crashed (dirty) database; with snapshot_after, LMDB is put back to its state after
    that many ops, as if the machine died and LMDB lost what was never checkpointed."""
    args = [db, "--create", "--generation-size", GEN_SIZE, "--ops", ops, "--crash"]
    snap = db.parent / "snap"
    if snapshot_after:
        args += ["--snapshot-dir", snap, "--snapshot-after", snapshot_after]
    last = populate(*args)
    if snapshot_after:
        shutil.copyfile(snap / "data.mdb", db / "store" / "data.mdb")
    return last


# ---------------------------------------------------------------- fresh database


def test_create_inspect_verify_fresh(tandemctl, db_dir):
    p = tandemctl("db", "create", db_dir, "--generation-size", "128K")
    assert p.returncode == 0, p.stderr
    p = tandemctl("db", "inspect", db_dir)
    assert p.returncode == 0, p.stderr
    assert field(p.stdout, "State") == "Clean Shutdown"
    assert field(p.stdout, "Log Required").startswith("0-0")
    assert field(p.stdout, "Applied LSN") == "0"
    assert field(p.stdout, "Mounted") == "No"
    assert field(p.stdout, "Kind") == "mail"
    assert re.fullmatch(r"[0-9a-f]{32}", field(p.stdout, "GUID"))
    j = inspect_json(tandemctl, db_dir)
    assert j["kind"] == "mail"
    assert j["state"] == "clean" and j["clean"] is True and j["log_required"] is None
    assert j["current_generation"] == 1 and j["generation_count"] == 1
    assert j["generations"][0]["size"] == 128 * 1024
    assert j["generations"][0]["file"] == "0000000000000001.log"
    assert j["tables"] == {"mailboxes": 0, "folders": 0, "messages": 0, "bodies": 0}
    assert j["guid"] == field(p.stdout, "GUID")
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    v = json.loads(p.stdout)
    assert v["ok"] is True and v["errors"] == 0 and v["replay"]["compared"] is True


def test_create_refuses_existing_and_nonempty(tandemctl, db_dir, tmp_path):
    assert tandemctl("db", "create", db_dir).returncode == 0
    p = tandemctl("db", "create", db_dir)
    assert p.returncode == 5 and "not empty" in p.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    p = tandemctl("db", "create", other)
    assert p.returncode == 5 and "not empty" in p.stderr
    assert not (other / "log").exists()


def test_create_directory_kind_verify_recover(tandemctl, db_dir):
    p = tandemctl("db", "create", db_dir, "--kind", "directory")
    assert p.returncode == 0, p.stderr
    assert "directory database" in p.stdout
    p = tandemctl("db", "inspect", db_dir)
    assert p.returncode == 0, p.stderr
    assert field(p.stdout, "Kind") == "directory"
    assert field(p.stdout, "State") == "Clean Shutdown"
    j = inspect_json(tandemctl, db_dir)
    assert j["kind"] == "directory"
    assert j["applied_lsn"] == 1  # the DIR_BOOTSTRAP record: the built-in groups
    # verify picks the directory handler from the kind: the bootstrap record decodes and
    # replays into the same directory.
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    v = json.loads(p.stdout)
    assert v["ok"] is True and v["errors"] == 0 and v["records_decoded"] == 1
    assert v["replay"]["compared"] is True and v["replay"]["match"] is True
    p = tandemctl("db", "recover", db_dir, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["ok"] is True and r["result"] == "recovered" and r["applied_lsn_after"] == 1
    assert inspect_json(tandemctl, db_dir)["kind"] == "directory"
    assert tandemctl("db", "verify", db_dir).returncode == 0


def test_create_mail_kind_explicit(tandemctl, db_dir):
    p = tandemctl("db", "create", db_dir, "--kind=mail")
    assert p.returncode == 0, p.stderr
    assert inspect_json(tandemctl, db_dir)["kind"] == "mail"
    assert tandemctl("db", "recover", db_dir).returncode == 0


# ---------------------------------------------------------------- populated databases


def test_populated_verify_compares_digests(tandemctl, populate, db_dir):
    # Default 1 MiB generations: 60 ops fit in generation 1, so the log is complete from LSN 1.
    last = populate(db_dir, "--create", "--ops", 60)
    j = inspect_json(tandemctl, db_dir)
    assert j["clean"] and j["applied_lsn"] == last and j["lowest_generation"] == 1
    assert j["tables"]["mailboxes"] == 2 and j["tables"]["messages"] > 0
    assert j["tables"]["bodies"] > 0
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout
    v = json.loads(p.stdout)
    assert v["replay"]["compared"] is True and v["replay"]["match"] is True
    assert v["replay"]["records"] == last and v["records_decoded"] == last
    assert v["replay"]["database_digest"] == v["replay"]["replay_digest"]
    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 0 and field(p.stdout, "Result") == "OK"


def test_verify_detects_lmdb_differing_from_log(tandemctl, populate, db_dir, tmp_path):
    # Two copies of one fresh database (same GUID) receive the same operations with other
    # bodies; A's log with B's LMDB then chains and decodes perfectly, and only the replay
    # comparison can tell that LMDB does not hold what the log says.
    assert tandemctl("db", "create", db_dir).returncode == 0
    twin = tmp_path / "twin"
    shutil.copytree(db_dir, twin)
    last = populate(db_dir, "--ops", 30, "--crash")
    assert populate(twin, "--ops", 30, "--crash", "--variant", 1) == last
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout)["replay"]["match"] is True
    shutil.copyfile(twin / "store" / "data.mdb", db_dir / "store" / "data.mdb")
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 1, p.stdout
    v = json.loads(p.stdout)
    assert v["ok"] is False and v["errors"] == 1
    assert v["replay"]["compared"] is True and v["replay"]["match"] is False
    assert v["replay"]["records"] == last
    assert "differs from a replay of the log" in v["problems"][0]["reason"]
    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 1 and field(p.stdout, "Result").startswith("CORRUPT")


def test_truncated_log_cannot_be_compared(tandemctl, populate, db_dir):
    # Small generations and a clean close: generations below the checkpoint are deleted.
    populate(db_dir, "--create", "--generation-size", GEN_SIZE, "--ops", 300)
    j = inspect_json(tandemctl, db_dir)
    assert j["lowest_generation"] > 1, j
    first_lsn = j["generations"][0]["first_lsn"]
    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout
    v = json.loads(p.stdout)
    assert v["replay"]["compared"] is False and v["replay"]["match"] is None
    assert f"log truncated below LSN {first_lsn}" in v["replay"]["reason"]


def test_verify_and_inspect_are_read_only(tandemctl, populate, db_dir):
    crashed_db(populate, db_dir, 150)
    before = tree_digest(db_dir)
    assert tandemctl("db", "inspect", db_dir).returncode == 0
    assert tandemctl("db", "inspect", db_dir, "--json").returncode == 0
    assert tandemctl("db", "verify", db_dir).returncode == 0
    assert tree_digest(db_dir) == before
    assert not (db_dir / "lock").exists() or (db_dir / "lock").stat().st_size == 0


# ---------------------------------------------------------------- dirty databases


def test_dirty_inspect_then_recover_replays(tandemctl, populate, db_dir):
    last = crashed_db(populate, db_dir, 200, snapshot_after=120)
    p = tandemctl("db", "inspect", db_dir)
    assert p.returncode == 0
    assert field(p.stdout, "State") == "Dirty Shutdown"
    assert field(p.stdout, "Applied LSN") == "120"
    j = inspect_json(tandemctl, db_dir)
    cur = j["current_generation"]
    assert cur >= 3 and j["current_closed"] is False
    # Checkpoint 0 (the mount of a fresh database): recovery needs the log from LSN 1.
    assert j["checkpoint_lsn"] == 0
    assert j["log_required"] == {"low": 1, "high": cur}
    assert field(p.stdout, "Log Required") == (
        f"1-{cur} (0000000000000001.log - {cur:016x}.log)")

    v = json.loads(tandemctl("db", "verify", db_dir, "--json").stdout)
    assert v["ok"] and v["applied_lsn"] == 120 and v["last_lsn"] == last
    assert v["replay"]["compared"] and v["replay"]["match"] and v["replay"]["records"] == 120

    p = tandemctl("db", "recover", db_dir, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["result"] == "recovered" and r["was_clean"] is False
    assert r["applied_lsn_before"] == 120 and r["applied_lsn_after"] == last
    assert r["records_replayed"] == last - 120 and r["torn_tail_cut"] is False
    names = [e["name"] for e in r["events"]]
    assert "store.recovered" in names and "store.dismounted" in names

    p = tandemctl("db", "inspect", db_dir)
    assert field(p.stdout, "State") == "Clean Shutdown"
    assert field(p.stdout, "Applied LSN") == str(last)
    assert field(p.stdout, "Log Required").startswith("0-0")
    assert tandemctl("db", "verify", db_dir).returncode == 0


def test_recover_human_output_and_events_on_stderr(tandemctl, populate, db_dir):
    last = crashed_db(populate, db_dir, 80, snapshot_after=50)
    p = tandemctl("db", "recover", db_dir)
    assert p.returncode == 0, p.stderr
    assert field(p.stdout, "Records Replayed") == str(last - 50)
    assert field(p.stdout, "State Before") == "Dirty Shutdown"
    assert field(p.stdout, "Result") == "Recovered"
    assert re.search(r"^event: store\.recovered \(info\): replayed 30 log records", p.stderr, re.M)
    assert "{" not in p.stderr  # no raw JSON event lines mixed into human output


# ---------------------------------------------------------------- damage


def test_flipped_byte_in_closed_generation(tandemctl, populate, db_dir):
    crashed_db(populate, db_dir, 200)  # dirty: every generation is kept
    g1 = gen_path(db_dir, 1)
    j = inspect_json(tandemctl, db_dir)
    assert j["generations"][0]["closed"] is True and j["current_generation"] > 1
    fr = frames(g1)
    off, lsn, _, n = fr[3]
    flip_byte(g1, off + 24 + n // 2)  # inside the payload of the 4th record

    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 1, p.stdout
    assert re.search(rf"error: {re.escape(str(g1))}: offset {off}: .*closed generation",
                     p.stdout), p.stdout
    v = json.loads(tandemctl("db", "verify", db_dir, "--json").stdout)
    errs = [q for q in v["problems"] if q["severity"] == "error"]
    assert errs[0]["file"] == str(g1) and errs[0]["offset"] == off
    assert v["replay"]["compared"] is False

    p = tandemctl("db", "recover", db_dir)
    assert p.returncode == 1
    assert f"{g1}: offset {off}" in p.stderr
    assert re.search(r"^event: store\.log_corrupt \(error\): .*0000000000000001\.log.*offset "
                     + str(off), p.stderr, re.M)
    # Refused means untouched: still dirty, still corrupt.
    assert inspect_json(tandemctl, db_dir)["clean"] is False


def test_torn_tail_beyond_applied_is_cut(tandemctl, populate, db_dir):
    # LMDB lost everything after op 100; the log holds 150. Tearing record 150 leaves a valid
    # log up to 149 > 100: a torn tail that was never acknowledged, which recovery cuts.
    last = crashed_db(populate, db_dir, 150, snapshot_after=100)
    cur = inspect_json(tandemctl, db_dir)["current_generation"]
    path = gen_path(db_dir, cur)
    off, lsn, typ, n = frames(path)[-1]
    assert lsn == last and typ != REC_END
    flip_byte(path, off + 24 + n + 1)  # its CRC

    p = tandemctl("db", "verify", db_dir, "--json")
    assert p.returncode == 0, p.stdout
    v = json.loads(p.stdout)
    assert v["errors"] == 0 and v["warnings"] == 1
    w = v["problems"][0]
    assert w["severity"] == "warning" and w["offset"] == off and "torn tail" in w["reason"]
    assert v["last_lsn"] == last - 1

    r = json.loads(tandemctl("db", "recover", db_dir, "--json").stdout)
    assert r["result"] == "recovered" and r["torn_tail_cut"] is True
    assert r["applied_lsn_after"] == last - 1 and r["records_replayed"] == last - 1 - 100
    assert any(e["name"] == "store.torn_tail_cut" for e in r["events"])
    # The cut tail is zero now: nothing in the generation (unless truncated at the clean
    # dismount) goes beyond LSN last-1; it may hold no record at all if the torn one was its
    # first.
    if path.exists():
        assert all(lsn_ <= last - 1 for _, lsn_, _, _ in frames(path))
    assert tandemctl("db", "verify", db_dir).returncode == 0


def test_torn_record_already_applied_is_corruption(tandemctl, populate, db_dir):
    # A plain process crash: LMDB applied all 150. An invalid record 150 is then not a torn
    # tail (it was acknowledged) but damage to durable data: recovery refuses.
    last = crashed_db(populate, db_dir, 150)
    cur = inspect_json(tandemctl, db_dir)["current_generation"]
    path = gen_path(db_dir, cur)
    off, lsn, _, n = frames(path)[-1]
    assert lsn == last
    flip_byte(path, off + 24 + n + 1)
    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 1
    assert "corruption, not a torn tail" in p.stdout and f"offset {off}" in p.stdout
    p = tandemctl("db", "recover", db_dir)
    assert p.returncode == 1 and f"{path}: offset {off}" in p.stderr


def test_shortened_current_generation_is_refused(tandemctl, populate, db_dir):
    # Generation files are preallocated to full size and that size is made durable when the
    # file is created, so no crash can shorten one: a short file is damage, and recovery
    # refuses it even though the records LMDB needs are all still there.
    crashed_db(populate, db_dir, 150, snapshot_after=100)
    cur = inspect_json(tandemctl, db_dir)["current_generation"]
    path = gen_path(db_dir, cur)
    off, _, _, _ = frames(path)[-1]
    os.truncate(path, off + 10)
    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 1 and "shorter than" in p.stdout and str(path) in p.stdout
    p = tandemctl("db", "recover", db_dir)
    assert p.returncode == 1 and "shorter than" in p.stderr and str(path) in p.stderr


def test_missing_generation(tandemctl, populate, db_dir):
    crashed_db(populate, db_dir, 250)
    assert inspect_json(tandemctl, db_dir)["current_generation"] >= 3
    g2 = gen_path(db_dir, 2)
    g2.unlink()
    p = tandemctl("db", "verify", db_dir)
    assert p.returncode == 1 and f"{g2}: log generation is missing" in p.stdout
    p = tandemctl("db", "recover", db_dir, "--json")
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert r["result"] == "refused" and str(g2) in r["error"]
    assert any(e["name"] == "store.generation_missing" for e in r["events"])


# ---------------------------------------------------------------- in use


def test_database_in_use(tandemctl, tandem_bin, db_dir):
    holder = subprocess.Popen([str(tandem_bin("tdm_populate")), str(db_dir), "--create",
                               "--ops", "20", "--hold", "60"], stdout=subprocess.PIPE, text=True)
    try:
        for line in holder.stdout:
            if line.strip() == "ready":
                break
        else:
            pytest.fail("tdm_populate ended before holding the database")
        p = tandemctl("db", "recover", db_dir)
        assert p.returncode == 4, p.stderr
        assert "open in another process" in p.stderr
        p = tandemctl("db", "inspect", db_dir)
        assert p.returncode == 0 and field(p.stdout, "Mounted").startswith("Yes")
        p = tandemctl("db", "verify", db_dir, "--json")
        assert p.returncode == 0, p.stdout
        v = json.loads(p.stdout)
        assert v["mounted"] is True and v["replay"]["match"] is True
    finally:
        holder.kill()
        holder.wait()
    # Killed while mounted: the lock went with the process, recovery may run now.
    assert tandemctl("db", "recover", db_dir).returncode == 0


# ---------------------------------------------------------------- not a database, usage


def test_missing_directory(tandemctl, tmp_path):
    d = tmp_path / "nope"
    for verb in ("inspect", "verify", "recover"):
        p = tandemctl("db", verb, d)
        assert p.returncode == 3, (verb, p.stderr)
        assert p.stderr.strip() == f"tandemctl: {d}: no such directory"
    p = tandemctl("db", "inspect", d, "--json")
    assert p.returncode == 3 and json.loads(p.stdout)["exit_code"] == 3


def test_foreign_directory(tandemctl, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    for verb in ("inspect", "verify", "recover"):
        p = tandemctl("db", verb, tmp_path)
        assert p.returncode == 3, (verb, p.stderr)
        assert (f"tandemctl: {tmp_path}: not a tandem database: it has no log/ and store/ "
                "directories") in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["x.txt"]  # nothing created


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["db"],
    ["db", "explode"],
    ["db", "inspect"],
    ["db", "inspect", "a", "b"],
    ["db", "verify", "--bogus", "x"],
    ["db", "create", "x", "--generation-size"],
    ["db", "create", "x", "--generation-size", "lots"],
    ["db", "create", "x", "--generation-size", "1000"],
    ["db", "create", "x", "--json"],
    ["db", "create", "x", "--kind"],
    ["db", "create", "x", "--kind", "calendar"],
    ["db", "create", "x", "--kind=Directory"],
    ["db", "inspect", "x", "--kind", "mail"],
])
def test_usage_errors(tandemctl, tmp_path, args):
    args = [str(tmp_path / a) if a in ("a", "b", "x") else a for a in args]
    p = tandemctl(*args)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert p.stderr.startswith("tandemctl: ")
    assert not (tmp_path / "x").exists()


def test_help_and_version(tandemctl):
    p = tandemctl("--help")
    assert p.returncode == 0 and "db" in p.stdout and "Exit status" in p.stdout
    for code in range(6):
        assert re.search(rf"^\s+{code}\s", p.stdout, re.M)
    p = tandemctl("db", "--help")
    assert p.returncode == 0
    for verb in ("create", "inspect", "verify", "recover"):
        assert re.search(rf"^\s+{verb} ", p.stdout, re.M)
    p = tandemctl("db", "verify", "--help")
    assert p.returncode == 0 and "usage: tandemctl db verify <dir>" in p.stdout
    p = tandemctl("--version")
    assert p.returncode == 0 and re.fullmatch(r"tandemctl \d+\.\d+\.\d+\n", p.stdout)
