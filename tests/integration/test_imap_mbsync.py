"""mbsync (Debian's isync) syncing a tandem mailbox both ways, as a person's laptop would: new
mail down, local mail up, flags both ways, moves between folders, and deletions both ways.
Every step is checked on the other side: the local Maildir by its files, the server by imaplib
and by tdm_maildump (what the store really holds)."""
import imaplib
import os
import pathlib
import re
import smtplib
import subprocess
import time

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
    reply = s.api("PUT", "/v1/objects/user/alice",
                  {"attrs": {"addresses": ["alice@example.test"], "database": "db1"}})
    assert reply.status in (200, 201), reply
    reply = s.api("PUT", "/v1/objects/user/alice/password", {"password": "alice-password"})
    assert reply.status == 200, reply
    s.proc = p
    yield s
    s.kill_all()


def deliver(s, subject, body="hello"):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    c.sendmail("sender@example.org", ["alice@example.test"],
               f"From: sender@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode())
    c.quit()


class Laptop:
    """A local Maildir kept in sync with the server by mbsync."""

    def __init__(self, server, tmp):
        self.root = tmp / "laptop"
        self.maildir = self.root / "Mail"
        self.maildir.mkdir(parents=True)
        (self.root / "state").mkdir()
        self.rc = self.root / "mbsyncrc"
        self.rc.write_text(f"""
IMAPAccount tandem
Host {server.addr}
Port {server.ports["imap"]}
User alice
Pass alice-password
SSLType None
AuthMechs LOGIN
Timeout 20

IMAPStore remote
Account tandem

MaildirStore local
Path {self.maildir}/
Inbox {self.maildir}/INBOX
SubFolders Verbatim

Channel mail
Far :remote:
Near :local:
Patterns *
Create Both
Remove None
Expunge Both
SyncState {self.root}/state/
""")

    def sync(self):
        r = subprocess.run(["mbsync", "-c", str(self.rc), "-V", "mail"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, f"mbsync failed:\n{r.stdout}\n{r.stderr}"
        return r

    def messages(self, folder="INBOX"):
        """{subject: (path, maildir flags)} of the folder's messages."""
        out = {}
        for sub in ("cur", "new"):
            d = self.maildir / folder / sub
            if not d.is_dir():
                continue
            for f in d.iterdir():
                m = re.search(rb"^Subject: (.*?)\r?$", f.read_bytes(), re.M)
                subject = m.group(1).decode() if m else ""
                flags = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
                out[subject] = (f, flags)
        return out

    def set_flags(self, path, flags):
        base = path.name.split(":2,", 1)[0]
        new = path.parent.parent / "cur" / f"{base}:2,{flags}"
        path.rename(new)
        return new


def server_view(s, folder="INBOX"):
    """{subject: set of flags} as an IMAP client sees the server."""
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    typ, data = m.select(folder, readonly=True)
    assert typ == "OK", data
    out = {}
    if int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
            subject = re.search(rb"Subject: (.*?)\r\n", item[1]).group(1).decode()
            out[subject] = flags - {"\\Recent"}
    m.logout()
    return out


def test_mbsync_both_ways(imap, tmp_path):
    for i in range(5):
        deliver(imap, f"down {i}", body=f"body {i}")
    laptop = Laptop(imap, tmp_path)

    # New mail comes down, byte for byte, and every server folder exists locally.
    laptop.sync()
    local = laptop.messages()
    assert set(local) == {f"down {i}" for i in range(5)}
    assert b"body 3" in local["down 3"][0].read_bytes()
    for folder in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (laptop.maildir / folder).is_dir(), folder

    # Flags go up: seen and flagged locally, then synced.
    laptop.set_flags(local["down 0"][0], "S")
    laptop.set_flags(local["down 1"][0], "FS")
    laptop.sync()
    view = server_view(imap)
    assert view["down 0"] == {"\\Seen"}
    assert view["down 1"] == {"\\Seen", "\\Flagged"}
    assert view["down 2"] == set()

    # Flags come down: another client answers a message on the server.
    m = imaplib.IMAP4(imap.addr, imap.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"down 2"')
    assert typ == "OK" and data[0], data
    assert m.store(data[0].decode(), "+FLAGS", "(\\Answered)")[0] == "OK"
    m.logout()
    laptop.sync()
    assert "R" in laptop.messages()["down 2"][1]

    # A message written locally (a draft) goes up with its flags.
    draft = laptop.maildir / "Drafts" / "cur" / f"{int(time.time())}.1.laptop:2,DS"
    draft.parent.mkdir(parents=True, exist_ok=True)
    draft.write_bytes(b"From: alice@example.test\r\nSubject: my draft\r\n\r\nwork in progress\r\n")
    laptop.sync()
    assert server_view(imap, "Drafts") == {"my draft": {"\\Draft", "\\Seen"}}

    # A move between folders: the message leaves INBOX and arrives in Archive on the server.
    moved, flags = laptop.messages()["down 3"]
    # mbsync's ",U=<uid>" belongs to the old folder: a moved file drops it, as MUAs do.
    base = moved.name.split(":2,")[0].split(",U=")[0]
    target = laptop.maildir / "Archive" / "cur" / f"{base}:2,{flags}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(moved, target)
    laptop.sync()
    assert "down 3" not in server_view(imap)
    assert "down 3" in server_view(imap, "Archive")

    # A local deletion (trashed and expunged) removes the message on the server.
    gone, _ = laptop.messages()["down 4"]
    gone.unlink()
    laptop.sync()
    assert "down 4" not in server_view(imap)

    # A server-side expunge removes the local copy.
    m = imaplib.IMAP4(imap.addr, imap.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"down 0"')
    m.store(data[0].decode(), "+FLAGS", "(\\Deleted)")
    assert m.expunge()[0] == "OK"
    m.logout()
    laptop.sync()
    assert set(laptop.messages()) == {"down 1", "down 2"}
    assert set(server_view(imap)) == {"down 1", "down 2"}

    # Nothing left to do: a second sync in a row changes nothing on either side.
    before = (server_view(imap), {k: v[1] for k, v in laptop.messages().items()})
    laptop.sync()
    after = (server_view(imap), {k: v[1] for k, v in laptop.messages().items()})
    assert before == after
