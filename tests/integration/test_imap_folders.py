"""Folder commands against a real tandemd: CREATE (with special-use), DELETE, RENAME (INBOX
too), SUBSCRIBE / UNSUBSCRIBE with modified UTF-7 names, NAMESPACE, the QUOTA commands, what
a session sees when its selected folder is deleted or renamed by itself or by another session,
and refusals answered with the session going on."""
import imaplib
import re
import socket
import subprocess

import pytest

from lab import WAIT, Server


@pytest.fixture
def imap(tandem_bin, tandemctl, tmp_path):
    s = Server(tandem_bin("tandemd"), tmp_path, "mbx1", roles="mailbox, directory",
               listeners=("imap", "lmtp"))
    (s.datadir / "db").mkdir(parents=True)
    r = tandemctl("db", "create", s.datadir / "db" / "db1")
    assert r.returncode == 0, r.stderr
    p = s.start()
    s.started(p)
    s.wait_api()
    for name in ("alice", "bob"):
        reply = s.api("PUT", f"/v1/objects/user/{name}",
                      {"attrs": {"addresses": [f"{name}@example.test"], "database": "db1"}})
        assert reply.status in (200, 201), reply
        reply = s.api("PUT", f"/v1/objects/user/{name}/password", {"password": f"{name}-password"})
        assert reply.status == 200, reply
    s.proc = p
    yield s
    s.kill_all()


def login(s, user="alice"):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login(user, f"{user}-password")
    return m


def message(subject, size=None):
    head = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\n".encode()
    return head + (b"x" * (size - len(head)) if size else b"hello\r\n")


def names(m, pattern="*"):
    typ, lines = m.list('""', pattern)
    assert typ == "OK"
    out = {}
    for line in lines:
        if line is None:
            continue
        attrs, _, name = re.match(rb'\(([^)]*)\) ("/"|NIL) (.*)', line).groups()
        out[name.strip(b'"').decode()] = attrs.decode().split()
    return out


def command(m, name, *args):
    """A command imaplib has no method for (or would quote differently): (typ, data)."""
    return m._simple_command(name, *args)


def test_create_delete_with_mutf7_names(imap):
    m = login(imap)
    assert "NAMESPACE" in m.capabilities and "CREATE-SPECIAL-USE" in m.capabilities
    assert m.create("Entw&APw-rfe")[0] == "OK"
    # A trailing separator only says children will follow (RFC 3501 6.3.3).
    assert m.create("Entw&APw-rfe/Alt/")[0] == "OK"
    # Missing parents are made.
    assert m.create("a/b/c")[0] == "OK"
    got = names(m)
    assert {"Entw&APw-rfe", "Entw&APw-rfe/Alt", "a", "a/b", "a/b/c"} <= set(got)
    assert "\\HasChildren" in got["Entw&APw-rfe"]
    typ, data = m.create("Entw&APw-rfe")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    typ, data = m.create("inbox")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    # Not modified UTF-7 (a bare "&" run that is not closed), and an empty level.
    typ, data = m.create("Bad&AP")
    assert typ == "NO" and b"[CANNOT]" in data[0]
    typ, data = m.create("x//y")
    assert typ == "NO" and b"[CANNOT]" in data[0]
    # "inbox/..." is under INBOX, whatever its case.
    assert m.create("inbox/Lists")[0] == "OK"
    assert "INBOX/Lists" in names(m)

    # DELETE: not INBOX, not a folder with children, not a folder that is not there.
    typ, data = m.delete("INBOX")
    assert typ == "NO"
    typ, data = m.delete("Entw&APw-rfe")
    assert typ == "NO" and b"[HASCHILDREN]" in data[0]
    typ, data = m.delete("Nowhere")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    assert m.append("Entw&APw-rfe/Alt", None, None, message("old"))[0] == "OK"
    assert m.delete("Entw&APw-rfe/Alt")[0] == "OK"
    assert m.delete("Entw&APw-rfe")[0] == "OK"
    got = names(m)
    assert "Entw&APw-rfe" not in got and "Entw&APw-rfe/Alt" not in got
    # Its messages went with it: a new folder of the same name starts empty.
    assert m.create("Entw&APw-rfe/Alt")[0] == "OK"
    assert m.status("Entw&APw-rfe/Alt", "(MESSAGES)")[1] == [b"Entw&APw-rfe/Alt (MESSAGES 0)"]
    assert m.noop()[0] == "OK"
    m.logout()


def test_create_special_use(imap):
    m = login(imap)
    typ, data = command(m, "CREATE", "Old", "(USE (\\Archive))")
    assert typ == "OK", data
    assert "\\Archive" in names(m)["Old"]
    typ, data = command(m, "CREATE", "Odd", "(USE (\\Important))")
    assert typ == "NO" and b"[USEATTR]" in data[0]
    assert "Odd" not in names(m)
    m.logout()


def test_rename(imap):
    m = login(imap)
    assert m.create("Projects/2024/Q1")[0] == "OK"
    assert m.append("Projects/2024", None, None, message("kept"))[0] == "OK"
    before = m.status("Projects/2024", "(UIDVALIDITY MESSAGES)")[1][0]
    # Children move along, and the messages keep their UIDVALIDITY.
    assert m.rename("Projects", "Arch&AOk-ologie")[0] == "OK"
    got = names(m)
    assert {"Arch&AOk-ologie", "Arch&AOk-ologie/2024", "Arch&AOk-ologie/2024/Q1"} <= set(got)
    assert not any(n.startswith("Projects") for n in got)
    after = m.status("Arch&AOk-ologie/2024", "(UIDVALIDITY MESSAGES)")[1][0]
    assert before.split(b" ", 1)[1] == after.split(b" ", 1)[1]
    typ, data = m.rename("Nowhere", "Somewhere")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    typ, data = m.rename("Arch&AOk-ologie", "Sent")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    typ, data = m.rename("Arch&AOk-ologie", "Arch&AOk-ologie/2024/Q1/x")
    assert typ == "NO" and b"[CANNOT]" in data[0]

    # RENAME INBOX: its messages move to the new folder; INBOX stays, empty.
    for i in range(2):
        assert m.append("INBOX", None, None, message(f"inbox {i}"))[0] == "OK"
    assert m.rename("INBOX", '"Old mail"')[0] == "OK"
    assert m.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 0)"]
    assert m.status('"Old mail"', "(MESSAGES)")[1] == [b'"Old mail" (MESSAGES 2)']
    m.logout()


def test_subscriptions(imap):
    m = login(imap)
    assert m.create("Entw&APw-rfe")[0] == "OK"
    lsub = lambda: {l.decode().rsplit(" ", 1)[1].strip('"') for l in m.lsub()[1] if l}
    assert "Entw&APw-rfe" not in lsub()
    assert m.subscribe("Entw&APw-rfe")[0] == "OK"
    assert "Entw&APw-rfe" in lsub()
    assert m.unsubscribe("Entw&APw-rfe")[0] == "OK"
    assert "Entw&APw-rfe" not in lsub()
    typ, data = m.subscribe("Nowhere")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    # RFC 9051 6.3.8: a name that is not subscribed unsubscribes fine.
    assert m.unsubscribe("Nowhere")[0] == "OK"
    m.logout()


def test_namespace(imap):
    m = login(imap)
    typ, data = m.namespace()
    assert typ == "OK" and data == [b'(("" "/")) NIL NIL']
    m.logout()


def set_quota(imap, tandem_bin, user, size, messages):
    res = subprocess.run([str(tandem_bin("tdm_ipc_client")), "quota",
                          str(imap.datadir / "run" / "core.sock"), "db1", user, str(size),
                          str(messages)], capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stderr


def test_quota(imap, tandem_bin):
    m = login(imap)
    caps = m.capabilities
    assert {"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"} <= set(caps)
    # No limits: the root is there, with no resource listed.
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK" and data == [[b'INBOX ""'], [b'"" ()']]
    body = message("sized", size=3000)
    assert m.append("INBOX", None, None, body)[0] == "OK"
    set_quota(imap, tandem_bin, "alice", 1 << 20, 100)
    typ, data = m.getquotaroot("Entw&APw-rfe")
    assert typ == "NO" and b"[NONEXISTENT]" in data[-1][0]
    m.create("Entw&APw-rfe")
    typ, data = m.getquotaroot("Entw&APw-rfe")
    assert typ == "OK"
    assert data == [[b'Entw&APw-rfe ""'], [b'"" (STORAGE 3 1024 MESSAGE 1 100)']]
    assert m.getquota('""') == ("OK", [b'"" (STORAGE 3 1024 MESSAGE 1 100)'])
    typ, data = m.getquota("user.alice")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    typ, data = m.setquota('""', "(STORAGE 2048)")
    assert typ == "NO" and b"[NOPERM]" in data[0]
    assert m.noop()[0] == "OK"
    m.logout()


def test_selected_folder_deleted_or_renamed(imap):
    a, b = login(imap), login(imap)
    for name in ("Work", "Play", "Gone"):
        assert a.create(name)[0] == "OK"
    assert a.append("Work", None, None, message("work"))[0] == "OK"
    # Renaming its own selected folder: the selection follows the new name.
    assert a.select("Work")[1] == [b"1"]
    assert a.rename("Work", "Job")[0] == "OK"
    typ, data = a.fetch("1", "(UID FLAGS)")
    assert typ == "OK" and b"UID 1" in data[0]
    assert a.append("Job", None, None, message("more"))[0] == "OK"
    assert a.response("EXISTS")[1][-1] == b"2"
    # Deleting its own selected folder ends the selection: OK [CLOSED], then authenticated.
    assert a.select("Play")[0] == "OK"
    typ, data = a.delete("Play")
    assert typ == "OK"
    assert a.response("CLOSED") == ("CLOSED", [b""])
    with pytest.raises(imaplib.IMAP4.error, match="Select a mailbox first"):
        a.fetch("1", "(FLAGS)")
    # Another session's selected folder deleted: that session is told BYE at its next command.
    assert b.select("Gone")[0] == "OK"
    assert a.delete("Gone")[0] == "OK"
    with pytest.raises(imaplib.IMAP4.abort):
        b.noop()
    a.logout()


def test_renamed_under_another_session(imap):
    a, b = login(imap), login(imap)
    assert a.create("Shared")[0] == "OK"
    assert b.select("Shared")[0] == "OK"
    assert a.rename("Shared", "Moved")[0] == "OK"
    # RENAME keeps the folder's UIDs and UIDVALIDITY: b goes on with it under the new name
    # (test_imap_folder_push.py has the IDLE side and the delete).
    assert b.noop()[0] == "OK"
    assert a.append("Moved", None, None, b"Subject: x\r\n\r\ny\r\n")[0] == "OK"
    assert b.noop()[0] == "OK"
    assert b.response("EXISTS")[1][-1] == b"1"
    assert a.select("Moved")[0] == "OK"
    a.logout()
    b.logout()


def raw_session(imap):
    """A socket logged in as alice, and a function sending one command and returning its
    lines (untagged ones, then the tagged one)."""
    sock = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")

    def run(tag, line):
        sock.sendall(tag + b" " + line + b"\r\n")
        lines = []
        while not lines or not lines[-1].startswith(tag + b" "):
            lines.append(f.readline().rstrip(b"\r\n"))
        return lines
    assert run(b"l", b"LOGIN alice alice-password")[-1].startswith(b"l OK")
    return sock, run


def test_utf8_names_once_enabled(imap):
    sock, run = raw_session(imap)
    assert run(b"e", b"ENABLE UTF8=ACCEPT")[-1].startswith(b"e OK")
    name = "Entwürfe".encode()
    assert run(b"c", b'CREATE "' + name + b'/Alt"')[-1].startswith(b"c OK")
    assert run(b"s", b'SUBSCRIBE "' + name + b'"')[-1].startswith(b"s OK")
    lines = run(b"q", b'GETQUOTAROOT "' + name + b'"')
    assert lines[0] == b'* QUOTAROOT "' + name + b'" ""' and lines[-1].startswith(b"q OK")
    lines = run(b"r", b'RENAME "' + name + b'/Alt" "' + name + b'/Neu"')
    assert lines[-1].startswith(b"r OK")
    sock.close()
    # A client that did not enable it sees the same folders in modified UTF-7.
    m = login(imap)
    assert {"Entw&APw-rfe", "Entw&APw-rfe/Neu"} <= set(names(m))
    lsub = {l.decode().rsplit(" ", 1)[1].strip('"') for l in m.lsub()[1] if l}
    assert "Entw&APw-rfe" in lsub
    m.logout()
