"""IMAP extensions against a real tandemd: ENABLE (RFC 5161), CONDSTORE and QRESYNC (RFC 7162)
in SELECT and in the untagged updates, UTF-8 mailbox names once enabled (RFC 6855, RFC 9051),
LIST-EXTENDED (RFC 5258) with LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154), and the STATUS
items. A raw client is used where imaplib cannot say the command or would hide the answer."""
import re
import socket
import subprocess
import time

import pytest

from lab import WAIT
from test_imap import deliver, imap, login  # noqa: F401 (imap is a fixture)


class Raw:
    """One IMAP connection spoken by hand: cmd() sends a tagged command and returns the
    untagged lines and the tagged one."""

    def __init__(self, s, user="alice"):
        self.sock = socket.create_connection((s.addr, s.ports["imap"]), timeout=WAIT)
        self.f = self.sock.makefile("rb")
        self.n = 0
        assert self.line().startswith("* OK")
        if user:
            self.ok(f'LOGIN {user} "{user}-password"')

    def line(self):
        raw = self.f.readline()
        assert raw, "the server closed the connection"
        text = raw.decode()
        # A literal: the bytes follow on the same logical line.
        m = re.search(r"\{(\d+)\}\r\n$", text)
        if m:
            text += self.f.read(int(m.group(1))).decode() + self.line()
        return text.rstrip("\r\n")

    def cmd(self, text):
        self.n += 1
        tag = f"t{self.n}"
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return untagged, line[len(tag) + 1:]
            untagged.append(line)

    def ok(self, text):
        untagged, done = self.cmd(text)
        assert done.startswith("OK"), (text, untagged, done)
        return untagged

    def close(self):
        self.sock.close()


def fetch_lines(lines):
    return [l for l in lines if re.match(r"\* \d+ FETCH", l)]


def test_enable(imap):
    c = Raw(imap, user=None)
    _, done = c.cmd("ENABLE CONDSTORE")
    assert done.startswith("BAD")  # not before login
    c.ok('LOGIN alice "alice-password"')
    caps = c.ok("CAPABILITY")[0].split()
    for cap in ("ENABLE", "CONDSTORE", "QRESYNC", "LIST-EXTENDED", "LIST-STATUS", "CHILDREN",
                "STATUS=SIZE"):
        assert cap in caps
    assert "UTF8=ACCEPT" in caps and "IMAP4rev2" in caps
    assert c.ok("ENABLE CONDSTORE X-UNKNOWN") == ["* ENABLED CONDSTORE"]
    # Only what is newly enabled is named; QRESYNC brings CONDSTORE along unnamed.
    assert c.ok("ENABLE CONDSTORE QRESYNC") == ["* ENABLED QRESYNC"]
    assert c.ok("ENABLE QRESYNC") == ["* ENABLED"]
    c.ok("SELECT INBOX")
    _, done = c.cmd("ENABLE UTF8=ACCEPT")
    assert done.startswith("BAD")  # RFC 5161: not once a mailbox is selected
    c.ok("NOOP")
    c.close()


def test_condstore_select_status_and_updates(imap):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    a, b = Raw(imap), Raw(imap)
    untagged = a.ok("SELECT INBOX (CONDSTORE)")
    modseq = int(re.search(r"HIGHESTMODSEQ (\d+)", "\n".join(untagged)).group(1))
    status = b.ok("STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
    assert status == [f"* STATUS INBOX (MESSAGES 2 HIGHESTMODSEQ {modseq})"]
    # Another session's flag change reaches a CONDSTORE session with its MODSEQ and UID.
    b.ok("SELECT INBOX")
    b.ok("STORE 2 +FLAGS (\\Flagged)")
    lines = fetch_lines(a.ok("NOOP"))
    assert len(lines) == 1
    m = re.fullmatch(r"\* 2 FETCH \(FLAGS \(([^)]*)\) UID 2 MODSEQ \((\d+)\)\)", lines[0])
    assert m and "\\Flagged" in m.group(1) and int(m.group(2)) > modseq
    # A session that enabled nothing gets the RFC 3501 form.
    c = Raw(imap)
    c.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS (\\Seen)")
    lines = fetch_lines(c.ok("NOOP"))
    assert len(lines) == 1 and "MODSEQ" not in lines[0]
    for x in (a, b, c):
        x.close()


def test_qresync_select_and_vanished(imap):
    for i in range(5):
        deliver(imap, "alice@example.test", f"m{i}")
    a = Raw(imap)
    _, done = a.cmd("SELECT INBOX (QRESYNC (1 1))")
    assert done.startswith("BAD")  # QRESYNC was not enabled
    a.ok("ENABLE QRESYNC")
    untagged = a.ok("SELECT INBOX")
    uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", "\n".join(untagged)).group(1))
    modseq = int(re.search(r"HIGHESTMODSEQ (\d+)", "\n".join(untagged)).group(1))
    a.close()

    # Meanwhile: 2 and 4 expunged, 3 flagged, one more delivered.
    b = Raw(imap)
    b.ok("SELECT INBOX")
    b.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Flagged)")
    deliver(imap, "alice@example.test", "m5")

    a = Raw(imap)
    a.ok("ENABLE QRESYNC")
    untagged = a.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    assert "* VANISHED (EARLIER) 2,4" in untagged
    lines = fetch_lines(untagged)
    by_uid = {int(re.search(r"UID (\d+)", l).group(1)): l for l in lines}
    assert "\\Flagged" in by_uid[3] and "MODSEQ (" in by_uid[3]
    assert 6 in by_uid  # new since then: its flags too
    assert set(by_uid) == {3, 6}
    # Known UIDs narrow the answer to those the client has.
    untagged = a.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:3))")
    assert untagged[0] == "* OK [CLOSED] Previous mailbox closed"
    assert "* VANISHED (EARLIER) 2" in untagged
    assert [int(re.search(r"UID (\d+)", l).group(1)) for l in fetch_lines(untagged)] == [3]
    # With sequence match data too (accepted; the server knows every expunge anyway).
    untagged = a.ok(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {modseq} 1:6 (1:3 1:3)))")
    assert "* VANISHED (EARLIER) 2,4" in untagged
    # Nothing gone among the UIDs named: no VANISHED at all.
    untagged = a.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 5:6))")
    assert not any("VANISHED" in l for l in untagged)
    assert [int(re.search(r"UID (\d+)", l).group(1)) for l in fetch_lines(untagged)] == [6]
    # A UIDVALIDITY from another life of the folder: the plain answer.
    untagged = a.ok(f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {modseq}))")
    assert not any("VANISHED" in l for l in untagged) and not fetch_lines(untagged)

    # With QRESYNC on, another session's expunges come as VANISHED, not EXPUNGE.
    b.ok("UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    untagged = a.ok("NOOP")
    assert "* VANISHED 1,3" in untagged
    assert not any("EXPUNGE" in l for l in untagged)
    a.close()
    b.close()


def test_status_items(imap):
    deliver(imap, "alice@example.test", "small", body="x" * 100)
    deliver(imap, "alice@example.test", "large", body="y" * 5000)
    a = Raw(imap)
    a.ok("SELECT INBOX")
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    size = int(re.search(r"RFC822\.SIZE (\d+)",
                         fetch_lines(a.ok("FETCH 2 RFC822.SIZE"))[0]).group(1))
    untagged = a.ok("STATUS INBOX (MESSAGES UNSEEN DELETED SIZE APPENDLIMIT DELETED-STORAGE)")
    m = re.fullmatch(r"\* STATUS INBOX \(MESSAGES 2 UNSEEN 2 DELETED 1 SIZE (\d+) "
                     r"APPENDLIMIT (\d+) DELETED-STORAGE (\d+)\)", untagged[0])
    assert m, untagged
    caps = a.ok("CAPABILITY")[0]
    assert int(m.group(1)) > size and f"APPENDLIMIT={m.group(2)}" in caps.split()
    assert int(m.group(3)) == (size + 1023) // 1024  # RFC 9208: units of 1024 octets
    _, done = a.cmd("STATUS Nowhere (MESSAGES)")
    assert done.startswith("NO [NONEXISTENT]")
    a.close()


def test_list_extended(imap):
    a = Raw(imap)
    a.ok("CREATE Projects/Alpha")
    a.ok("CREATE Projects/Beta")
    a.ok("SUBSCRIBE Projects/Beta")
    a.ok("UNSUBSCRIBE Drafts")
    deliver(imap, "alice@example.test", "for status")

    def names(lines):
        return [l.rsplit(" ", 1)[1].strip('"') for l in lines if l.startswith("* LIST")]

    # The RFC 3501 form is unchanged.
    assert names(a.ok('LIST "" %')) == ["Archive", "Drafts", "INBOX", "Junk", "Projects",
                                        "Sent", "Trash"]
    # SUBSCRIBED selection: \Subscribed given; RECURSIVEMATCH adds the parent with CHILDINFO.
    lines = a.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert "Drafts" not in names(lines)
    assert '* LIST (\\HasChildren) "/" Projects ("CHILDINFO" ("SUBSCRIBED"))' in lines
    assert '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX' in lines
    lines = a.ok('LIST (SUBSCRIBED) "" *')
    assert "Projects/Beta" in names(lines) and "Projects" not in names(lines)
    _, done = a.cmd('LIST (RECURSIVEMATCH) "" *')
    assert done.startswith("BAD")
    # SPECIAL-USE selection, several patterns, RETURN options.
    lines = a.ok('LIST (SPECIAL-USE) "" (% Projects/*) RETURN (SUBSCRIBED)')
    assert names(lines) == ["Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert '* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent' not in lines
    assert any(l.startswith("* LIST (\\HasNoChildren \\Subscribed \\Sent)") for l in lines)
    assert names(a.ok('LIST "" (INBOX Projects/%)')) == ["INBOX", "Projects/Alpha",
                                                       "Projects/Beta"]
    # LIST-STATUS: a STATUS after each selectable mailbox's LIST.
    lines = a.ok('LIST "" (INBOX Projects) RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))')
    assert lines == ['* LIST (\\HasNoChildren) "/" INBOX',
                     "* STATUS INBOX (MESSAGES 1 UIDNEXT 2)",
                     '* LIST (\\HasChildren) "/" Projects',
                     "* STATUS Projects (MESSAGES 0 UIDNEXT 1)"]
    a.close()


def test_utf8_names_once_enabled(imap):
    a = Raw(imap)
    a.ok("CREATE &AMk-t&AOk-")  # "Été" in modified UTF-7
    assert '* LIST (\\HasNoChildren) "/" &AMk-t&AOk-' in a.ok('LIST "" "&AMk-*"')
    a.ok("ENABLE UTF8=ACCEPT")
    lines = a.ok('LIST "" "Été"')
    assert lines == ['* LIST (\\HasNoChildren) "/" "Été"']
    assert a.ok('STATUS "Été" (MESSAGES)') == ['* STATUS "Été" (MESSAGES 0)']
    # What is not UTF-8 is not a name.
    a.sock.sendall(b't99 STATUS "\xff" (MESSAGES)\r\n')
    assert a.line().startswith("t99 NO")
    a.ok("SELECT Été")
    a.close()


def test_list_hierarchy_gaps_and_lsub(imap, tandem_bin):
    a = Raw(imap)
    a.ok("CREATE Lists/Work/Daily")
    a.ok("SUBSCRIBE Lists/Work/Daily")
    # The store can delete a level and keep what is below it (IMAP's DELETE refuses to).
    res = subprocess.run([str(tandem_bin("tdm_ipc_client")), "folder-delete",
                          str(imap.datadir / "run" / "core.sock"), "db1", "alice", "Lists"],
                         capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stderr
    # "%" still finds the way down: the missing level is listed, not selectable.
    assert a.ok('LIST "" Lists') == ['* LIST (\\Noselect \\HasChildren) "/" Lists']
    assert a.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" Lists') == [
        '* LIST (\\NonExistent \\HasChildren) "/" Lists ("CHILDINFO" ("SUBSCRIBED"))']
    assert a.ok('LIST "" (Lists) RETURN (STATUS (MESSAGES))') == [
        '* LIST (\\NonExistent \\HasChildren) "/" Lists']
    _, done = a.cmd("SELECT Lists")
    assert done.startswith("NO [NONEXISTENT]")
    # LSUB names the unsubscribed parents "%" stops at, and nothing more with "*".
    assert a.ok('LSUB "" Lists/%') == ['* LSUB (\\Noselect) "/" Lists/Work']
    assert a.ok('LSUB "" Lists/*') == ['* LSUB () "/" Lists/Work/Daily']
    a.close()


def test_list_patterns_cost_is_bounded(imap):
    a = Raw(imap)
    for i in range(20):
        a.ok(f"CREATE {'a' * 240}{i:02d}")
    # Backtracking would take exponential time on this; the matcher takes none to say no.
    start = time.monotonic()
    assert a.ok('LIST "" "' + "*a" * 120 + '*b"') == []
    assert time.monotonic() - start < 2
    assert len(a.ok('LIST "" "' + "%a" * 120 + '*"')) == 20
    # Past the matching budget the LIST is refused, and the session goes on.
    pats = " ".join('"' + "%a" * 250 + '"' for _ in range(30))
    _, done = a.cmd(f'LIST "" ({pats})')
    assert done.startswith("NO [LIMIT]")
    a.ok("NOOP")
    a.close()


def test_imap4rev2_session_has_no_recent(imap):
    deliver(imap, "alice@example.test", "new")
    a = Raw(imap)
    assert a.ok("ENABLE IMAP4rev2") == ["* ENABLED IMAP4rev2"]
    untagged = a.ok("SELECT INBOX")
    assert "* 1 EXISTS" in untagged
    assert not any("RECENT" in l or "[UNSEEN" in l for l in untagged)
    assert "\\Recent" not in fetch_lines(a.ok("FETCH 1 FLAGS"))[0]
    # It claimed nothing: the message is still recent to the next rev1 session.
    b = Raw(imap)
    assert "* 1 RECENT" in b.ok("SELECT INBOX")
    # Re-selecting in rev2 says where the first mailbox's responses end.
    assert a.ok("EXAMINE INBOX")[0] == "* OK [CLOSED] Previous mailbox closed"
    a.close()
    b.close()


def test_utf8_append(imap):
    a = Raw(imap)
    a.ok("ENABLE UTF8=ACCEPT")
    message = "Subject: Grüße\r\nFrom: zoë@example.test\r\n\r\nHallo\r\n".encode()
    a.sock.sendall(b"t90 APPEND INBOX UTF8 (~{%d}\r\n" % len(message))
    assert a.line().startswith("+")
    a.sock.sendall(message + b")\r\n")
    assert re.match(r"t90 OK \[APPENDUID \d+ 1\]", a.line())
    a.ok("SELECT INBOX")
    a.sock.sendall(b"t91 FETCH 1 BODY.PEEK[]\r\n")
    raw = b""
    while b"\r\nt91 " not in raw:
        raw += a.sock.recv(65536)
    assert message in raw and b"\r\nt91 OK" in raw
    a.close()
