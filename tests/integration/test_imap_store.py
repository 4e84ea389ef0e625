"""IMAP STORE, EXPUNGE, UID EXPUNGE and CLOSE against a real tandemd: flags and keywords set,
added and removed (answered with FETCH after they are durable, or not under .SILENT), seen by
a second session at its next command and not told twice to the session that made them,
expunges told where RFC 3501 allows them, CLOSE expunging silently, and the refusals (bad
flag, read-only selection, sequence out of range) answered while the session goes on."""
import imaplib
import os
import re
import signal
import subprocess

import pytest

from lab import WAIT, Server, children, wait_for
from test_imap import deliver


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


def login(s):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    return m


def raw(m, command):
    """Sends one command and returns every line of the answer, the tagged one last."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {command}\r\n".encode())
    lines = []
    while True:
        line = m.readline().decode().rstrip("\r\n")
        lines.append(line)
        if line.startswith(tag + " "):
            return lines


def with_messages(imap, n):
    for i in range(n):
        deliver(imap, "alice@example.test", f"message {i}")
    m = login(imap)
    assert m.select("INBOX") == ("OK", [str(n).encode()])
    return m


def test_store_sets_adds_and_removes_flags_and_keywords(imap):
    m = with_messages(imap, 3)
    # The messages are \Recent to this session, and stay so whatever is stored.
    assert raw(m, "STORE 1 +FLAGS (\\Seen)")[:-1] == ["* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1)"]
    lines = raw(m, "STORE 1:2 FLAGS (\\Flagged $Label1 Custom)")
    assert lines[-1].endswith("OK STORE completed")
    assert lines[:-1] == ["* 1 FETCH (FLAGS (\\Flagged \\Recent $Label1 Custom) UID 1)",
                          "* 2 FETCH (FLAGS (\\Flagged \\Recent $Label1 Custom) UID 2)"]
    # Removing one keyword leaves the others.
    assert raw(m, "STORE 2 -FLAGS (Custom \\Flagged)")[:-1] == [
        "* 2 FETCH (FLAGS (\\Recent $Label1) UID 2)"]
    # .SILENT says nothing but the tagged OK.
    assert raw(m, "UID STORE 3 +FLAGS (\\Answered)")[:-1] == [
        "* 3 FETCH (FLAGS (\\Answered \\Recent) UID 3)"]
    lines = raw(m, "STORE 1:* +FLAGS.SILENT (\\Draft)")
    assert len(lines) == 1 and lines[0].endswith("OK STORE completed")
    # And the change made silently is not told at the next command either.
    assert len(raw(m, "NOOP")) == 1
    # A UID no message has changes nothing and is not an error.
    assert raw(m, "UID STORE 99 +FLAGS (\\Seen)")[-1].split(" ", 1)[1].startswith("OK")
    m.logout()
    # Durable: another session reads them back.
    m = login(imap)
    m.select("INBOX")
    typ, data = m.fetch("1:3", "FLAGS")
    assert typ == "OK"
    assert data == [b"1 (FLAGS (\\Flagged \\Draft $Label1 Custom))",
                    b"2 (FLAGS (\\Draft $Label1))",
                    b"3 (FLAGS (\\Answered \\Draft))"]
    m.logout()


def test_store_refusals_leave_the_session_going(imap):
    m = with_messages(imap, 2)
    lines = raw(m, "STORE 1 +FLAGS (\\Bogus)")
    assert len(lines) == 1 and " BAD " in lines[0] and "system flag" in lines[0]
    assert raw(m, "STORE 3 +FLAGS (\\Seen)")[-1].split(" ")[1] == "BAD"
    assert "out of range" in raw(m, "STORE 3 +FLAGS (\\Seen)")[-1]
    too_long = "k" * 65
    assert "NO [LIMIT]" in raw(m, f"STORE 1 +FLAGS ({too_long})")[-1]
    # "$" with no search saved is the empty set (RFC 5182 2.1).
    assert raw(m, "STORE $ +FLAGS (\\Seen)")[-1].split(" ", 1)[1].startswith("OK")
    assert m.noop()[0] == "OK"
    # EXAMINE is read-only: no flag changes, no expunges.
    m.select("INBOX", readonly=True)
    assert "NO [READ-ONLY]" in raw(m, "STORE 1 +FLAGS (\\Seen)")[-1]
    assert "NO [READ-ONLY]" in raw(m, "EXPUNGE")[-1]
    assert "NO [READ-ONLY]" in raw(m, "UID EXPUNGE 1")[-1]
    assert m.fetch("1", "FLAGS")[1] == [b"1 (FLAGS ())"]
    m.logout()


def test_a_second_session_sees_changes_once(imap):
    a = with_messages(imap, 3)
    b = login(imap)
    b.select("INBOX")
    raw(a, "STORE 2 +FLAGS (\\Flagged Important)")
    # b hears of it at its next command; a, which was told in STORE's answer, does not again.
    assert raw(b, "NOOP")[:-1] == ["* 2 FETCH (FLAGS (\\Flagged Important) UID 2)"]
    assert len(raw(a, "NOOP")) == 1
    # A change b made while a was between commands reaches a with a's next STORE.
    raw(b, "STORE 1 +FLAGS (\\Seen)")
    lines = raw(a, "STORE 3 +FLAGS (\\Seen)")
    assert "* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1)" in lines
    assert "* 3 FETCH (FLAGS (\\Seen \\Recent) UID 3)" in lines
    a.logout()
    b.logout()


def test_expunge_and_uid_expunge(imap):
    a = with_messages(imap, 5)
    b = login(imap)
    b.select("INBOX")
    a.store("2,4,5", "+FLAGS.SILENT", "(\\Deleted)")
    # UID EXPUNGE removes only the \Deleted messages of its set (RFC 4315).
    assert raw(a, "UID EXPUNGE 1:4")[:-1] == ["* 4 EXPUNGE", "* 2 EXPUNGE"]
    # FETCH and STORE may not tell b of the expunges; NOOP does, after the flag changes.
    lines = raw(b, "FETCH 1:* UID")
    assert not any("EXPUNGE" in l for l in lines[:-1])
    assert "OK [EXPUNGEISSUED]" in lines[-1]  # what it left out was expunged
    assert "* 3 FETCH (UID 3)" in lines and "* 2 FETCH (UID 2)" not in lines
    # STORE likewise changes the rest, leaves the expunged out and says so.
    lines = raw(b, "STORE 2:4 +FLAGS (\\Flagged)")
    assert lines[:-1] == ["* 3 FETCH (FLAGS (\\Flagged) UID 3)"], lines
    assert lines[-1].split(" ", 1)[1] == "OK [EXPUNGEISSUED] STORE completed", lines
    lines = raw(b, "STORE 1 +FLAGS.SILENT (\\Seen)")
    assert lines[-1].split(" ", 1)[1] == "OK STORE completed", lines  # none of its set went
    lines = raw(b, "NOOP")
    assert lines[:2] == ["* 4 EXPUNGE", "* 2 EXPUNGE"]
    raw(a, "NOOP")  # a hears of b's flags here, not in its EXPUNGE below
    # EXPUNGE takes the rest; the sequence numbers follow.
    assert raw(a, "EXPUNGE")[:-1] == ["* 3 EXPUNGE"]
    assert raw(a, "EXPUNGE")[:-1] == []
    assert raw(b, "NOOP")[:-1] == ["* 3 EXPUNGE"]
    assert b.fetch("1:*", "UID")[1] == [b"1 (UID 1)", b"2 (UID 3)"]
    a.logout()
    b.logout()


def queued_at(pid):
    """Bytes waiting unread in the unix sockets process pid holds (ss's Recv-Q)."""
    out = subprocess.run(["ss", "-xpnH"], capture_output=True, text=True, check=True).stdout
    return sum(int(l.split()[2]) for l in out.splitlines() if f"pid={pid}," in l)


def test_expunge_keeps_a_message_undeleted_meanwhile(imap):
    """The race inside one EXPUNGE: A reads which messages have \\Deleted, B takes \\Deleted
    off one of them, and B's record applies before A's expunge. With the core stopped, B's STORE
    and then A's EXPUNGE wait in its socket in that order (A has read the folder by then), so
    the interleaving is forced. The message B kept survives, and A's answer tells only the
    expunges that happened."""
    a = with_messages(imap, 3)
    b = login(imap)
    b.select("INBOX")
    a.store("1:3", "+FLAGS.SILENT", "(\\Deleted)")
    raw(b, "NOOP")
    sup = imap.proc.pid
    core = children(sup)["core"]
    os.kill(sup, signal.SIGSTOP)  # no restart meanwhile
    os.kill(core, signal.SIGSTOP)
    try:
        assert queued_at(core) == 0
        b.send(b"B1 STORE 2 -FLAGS.SILENT (\\Deleted)\r\n")
        after_b = wait_for(lambda: queued_at(core), "B's record at the core")
        a.send(b"A1 EXPUNGE\r\n")
        wait_for(lambda: queued_at(core) > after_b, "A's record at the core")
    finally:
        os.kill(core, signal.SIGCONT)
        os.kill(sup, signal.SIGCONT)
    assert b.readline().decode().rstrip() == "B1 OK STORE completed"
    lines = []
    while not (line := a.readline().decode().rstrip()).startswith("A1 "):
        lines.append(line)
    assert line == "A1 OK EXPUNGE completed"
    assert [l for l in lines if "EXPUNGE" in l] == ["* 3 EXPUNGE", "* 1 EXPUNGE"]
    assert a.fetch("1:*", "(UID FLAGS)")[1] == [b"1 (UID 2 FLAGS (\\Recent))"]
    assert raw(b, "NOOP")[:-1] == ["* 3 EXPUNGE", "* 1 EXPUNGE"]
    a.logout()
    b.logout()


def test_close_expunges_silently(imap):
    m = with_messages(imap, 3)
    m.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    # EXAMINE's CLOSE leaves; it expunges nothing.
    m.select("INBOX", readonly=True)
    lines = raw(m, "CLOSE")
    assert len(lines) == 1 and lines[0].endswith("OK CLOSE completed")
    assert m.select("INBOX") == ("OK", [b"3"])
    lines = raw(m, "CLOSE")
    assert len(lines) == 1 and lines[0].endswith("OK CLOSE completed")
    # Left the selected state.
    assert " BAD " in raw(m, "FETCH 1 FLAGS")[-1]
    assert m.select("INBOX") == ("OK", [b"2"])
    assert m.fetch("1:*", "UID")[1] == [b"1 (UID 2)", b"2 (UID 3)"]
    m.logout()


def highestmodseq(m):
    typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
    assert typ == "OK"
    return int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1))


def test_unchangedsince(imap):
    a = with_messages(imap, 3)
    b = login(imap)
    b.select("INBOX")
    seen = highestmodseq(a)
    # Nothing changed since: every message is stored, and from now on FETCH says MODSEQ.
    lines = raw(a, f"UID STORE 1:3 (UNCHANGEDSINCE {seen}) +FLAGS (\\Seen)")
    assert lines[-1].endswith("OK UID STORE completed")
    assert [re.sub(r"MODSEQ \(\d+\)", "MODSEQ", l) for l in lines[:-1]] == [
        f"* {i} FETCH (FLAGS (\\Seen \\Recent) UID {i} MODSEQ)" for i in (1, 2, 3)]
    seen = highestmodseq(a)
    # b changes message 2: a's conditional STORE leaves it alone and says so.
    raw(b, "STORE 2 +FLAGS (\\Flagged)")
    lines = raw(a, f"STORE 1:3 (UNCHANGEDSINCE {seen}) +FLAGS (\\Answered)")
    assert lines[-1].endswith("OK [MODIFIED 2] Conditional STORE failed")
    assert any(l.startswith("* 1 FETCH (FLAGS (\\Answered \\Seen \\Recent) UID 1 MODSEQ (") for l in lines)
    assert any(l.startswith("* 3 FETCH (FLAGS (\\Answered \\Seen \\Recent) UID 3 MODSEQ (") for l in lines)
    assert not any(l.startswith("* 2 FETCH (FLAGS (\\Answered") for l in lines)
    raw(b, "NOOP")
    assert raw(b, "FETCH 2 FLAGS")[:-1] == ["* 2 FETCH (FLAGS (\\Flagged \\Seen))"]
    # .SILENT under CONDSTORE still says the new MODSEQ of what changed (RFC 7162 3.1.3).
    lines = raw(a, f"STORE 1 (UNCHANGEDSINCE {highestmodseq(a)}) +FLAGS.SILENT (\\Draft)")
    assert len(lines) == 2 and re.fullmatch(r"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)", lines[0])
    # UNCHANGEDSINCE 0 fails every message; UID STORE names them by UID.
    assert raw(a, "STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Deleted)")[-1].endswith(
        "OK [MODIFIED 1:3] Conditional STORE failed")
    assert raw(a, "UID STORE 1,3 (UNCHANGEDSINCE 1) -FLAGS (\\Seen)")[-1].endswith(
        "OK [MODIFIED 1,3] Conditional STORE failed")
    raw(b, "NOOP")
    assert raw(b, "FETCH 1:3 FLAGS")[:-1] == ["* 1 FETCH (FLAGS (\\Answered \\Seen \\Draft))",
                                              "* 2 FETCH (FLAGS (\\Flagged \\Seen))",
                                              "* 3 FETCH (FLAGS (\\Answered \\Seen))"]
    a.logout()
    b.logout()


def test_expunges_under_qresync_are_vanished(imap):
    for i in range(4):
        deliver(imap, "alice@example.test", f"message {i}")
    m = login(imap)
    assert "QRESYNC" in m.capabilities and "CONDSTORE" in m.capabilities
    assert raw(m, "ENABLE QRESYNC")[-1].split(" ")[1] == "OK"
    m.select("INBOX")
    raw(m, "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    lines = raw(m, "EXPUNGE")
    # The tagged OK says the HIGHESTMODSEQ the client is now up to (RFC 7162).
    assert lines[:-1] == ["* VANISHED 2:3"]
    assert lines[-1].endswith(f"OK [HIGHESTMODSEQ {highestmodseq(m)}] EXPUNGE completed")
    raw(m, "UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    lines = raw(m, "UID EXPUNGE 1:4")
    assert lines[:-1] == ["* VANISHED 4"]
    assert lines[-1].endswith(f"OK [HIGHESTMODSEQ {highestmodseq(m)}] UID EXPUNGE completed")
    m.logout()


def modseqs(lines):
    """{msn: MODSEQ} of the FETCH lines among lines."""
    return {int(m.group(1)): int(m.group(2)) for m in
            (re.match(r"\* (\d+) FETCH \(.*MODSEQ \((\d+)\)\)", l) for l in lines) if m}


def test_unchangedsince_racing_another_session(imap):
    """B changes message 2 while A stores on 1:3 UNCHANGEDSINCE what it saw. The two commands
    go to the worker at once, so either may be applied first; when B's is, A's record often
    meets it only in the core (B's record was still in flight when A read its messages), is
    refused whole and sent again without message 2. Whatever the order, A's answer must match
    the MODSEQs: completed only if A changed message 2 before B did, MODIFIED 2 only if B's
    change came before A's (MODSEQs are given in the order records are applied)."""
    a = with_messages(imap, 3)
    b = login(imap)
    b.select("INBOX")
    assert b.status("INBOX", "(HIGHESTMODSEQ)")[0] == "OK"  # B's FETCH say MODSEQ too
    for n in range(20):
        seen = highestmodseq(a)
        b.send(f"B{n} STORE 2 FLAGS (Round{n})\r\n".encode())
        a.send(f"A{n} STORE 1:3 (UNCHANGEDSINCE {seen}) +FLAGS (Mine{n})\r\n".encode())
        b_lines, a_lines = [], []
        while not (line := b.readline().decode().rstrip()).startswith(f"B{n} "):
            b_lines.append(line)
        assert line.startswith(f"B{n} OK")
        while not (line := a.readline().decode().rstrip()).startswith(f"A{n} "):
            a_lines.append(line)
        mine = modseqs(l for l in a_lines if f"Mine{n}" in l)
        theirs = modseqs(b_lines)[2]
        if line == f"A{n} OK [MODIFIED 2] Conditional STORE failed":
            assert set(mine) == {1, 3} and theirs < min(mine.values())
        else:
            # A's record came first. What it then read of message 2 may be B's change already.
            assert line == f"A{n} OK STORE completed", line
            assert {1, 3} <= set(mine) and max(mine.values()) < theirs
    raw(b, "NOOP")
    flags = raw(b, "FETCH 1:3 FLAGS")[:-1]
    assert flags[1].startswith("* 2 FETCH (FLAGS (Round19)")
    assert all(f"Mine{i}" in flags[0] and f"Mine{i}" in flags[2] for i in range(20))
    a.logout()
    b.logout()
