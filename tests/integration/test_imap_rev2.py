"""IMAP4rev2 (RFC 9051) beside IMAP4rev1 against a real tandemd: each item of RFC 9051's
appendix E that changes behaviour, in a session that ENABLEd IMAP4rev2 and in one that did not
(docs/imap.md, "IMAP4rev2", maps every item to the test that shows it). Also keyword case,
decided with the rev2 text. A raw client is used throughout: imaplib speaks
IMAP4rev1 only and hides what the server sent."""
import re
import socket

import pytest

from lab import WAIT
from test_imap import deliver, imap  # noqa: F401 (imap is a fixture)
from test_imap_ext import Raw, fetch_lines


def session(server, rev2):
    c = Raw(server)
    if rev2:
        assert c.ok("ENABLE IMAP4rev2") == ["* ENABLED IMAP4rev2"]
    return c


def both_modes(fn):
    return pytest.mark.parametrize("rev2", [False, True], ids=["rev1", "rev2"])(fn)


def test_capabilities_name_both_revisions(imap):
    sock = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    greeting = sock.makefile("rb").readline().decode()
    sock.close()
    for caps in (re.search(r"\[CAPABILITY ([^]]*)\]", greeting).group(1).split(),
                 Raw(imap, user=None).ok("CAPABILITY")[0].split()[2:]):
        assert "IMAP4rev1" in caps and "IMAP4rev2" in caps, caps
        # LITERAL+ takes every literal LITERAL- would (RFC 7888): one of the two is named.
        assert "LITERAL+" in caps and "LITERAL-" not in caps
        # RFC 9051 folds these in; they stay named for IMAP4rev1 clients.
        for cap in ("NAMESPACE", "UNSELECT", "UIDPLUS", "ESEARCH", "SEARCHRES", "ENABLE", "IDLE",
                    "SASL-IR", "LIST-EXTENDED", "LIST-STATUS", "MOVE", "BINARY", "SPECIAL-USE",
                    "STATUS=SIZE"):
            assert cap in caps, cap
    # The OK of LOGIN names them too (post-login capability response code).
    c = Raw(imap, user=None)
    _, done = c.cmd('LOGIN alice "alice-password"')
    assert re.match(r"OK \[CAPABILITY [^]]*IMAP4rev1 IMAP4rev2 ", done), done
    assert c.ok("ENABLE IMAP4rev2") == ["* ENABLED IMAP4rev2"]
    assert c.ok("ENABLE IMAP4rev2") == ["* ENABLED"]  # named once
    c.close()


@both_modes
def test_recent_only_in_rev1(imap, rev2):
    deliver(imap, "alice@example.test", "one")
    c = session(imap, rev2)
    untagged = c.ok("SELECT INBOX")
    flags = next(l for l in untagged if l.startswith("* FLAGS"))
    assert "\\Recent" not in flags
    assert ("* 1 RECENT" in untagged) != rev2
    assert any("[UNSEEN 1]" in l for l in untagged) != rev2
    assert ("\\Recent" in fetch_lines(c.ok("FETCH 1 FLAGS"))[0]) != rev2
    _, done = c.cmd("STATUS INBOX (MESSAGES RECENT)")
    assert done.startswith("BAD" if rev2 else "OK")
    _, done = c.cmd('LIST "" "*" RETURN (STATUS (RECENT))')
    assert done.startswith("BAD" if rev2 else "OK")
    for key in ("RECENT", "NEW", "OLD", "NOT (OR SEEN NEW)"):
        untagged, done = c.cmd(f"SEARCH {key}")
        assert done.startswith("BAD" if rev2 else "OK"), (key, done)
    # The session goes on after each refusal.
    assert "* 1 EXISTS" in c.ok("SELECT INBOX")
    c.close()


@both_modes
def test_status_deleted_and_size(imap, rev2):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    c = session(imap, rev2)
    c.ok("SELECT INBOX")
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    line = c.ok("STATUS INBOX (MESSAGES DELETED SIZE)")[0]
    m = re.match(r"\* STATUS INBOX \(MESSAGES 2 DELETED 1 SIZE (\d+)\)", line)
    assert m and int(m.group(1)) > 0, line
    c.close()


@both_modes
def test_check_only_in_rev1(imap, rev2):
    c = session(imap, rev2)
    c.ok("SELECT INBOX")
    _, done = c.cmd("CHECK")
    assert done.startswith("BAD" if rev2 else "OK")
    c.ok("NOOP")  # what rev2 has instead
    c.close()


@both_modes
def test_search_answer(imap, rev2):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    c = session(imap, rev2)
    c.ok("SELECT INBOX")
    n = c.n + 1
    assert c.ok("SEARCH ALL") == ([f'* ESEARCH (TAG "t{n}") ALL 1:2'] if rev2
                                  else ["* SEARCH 1 2"])
    assert c.ok("UID SEARCH SUBJECT nothing-has-this") == (
        [f'* ESEARCH (TAG "t{n + 1}") UID'] if rev2 else ["* SEARCH"])
    # RETURN (SAVE) and "$" (SEARCHRES) are the same in both.
    assert c.ok("SEARCH RETURN (SAVE) SUBJECT two") == []
    assert fetch_lines(c.ok("FETCH $ (UID)")) == ["* 2 FETCH (UID 2)"]
    c.close()


@both_modes
def test_select_says_list_and_closed(imap, rev2):
    c = session(imap, rev2)
    c.ok('CREATE "Sent/2025"')
    untagged = c.ok("SELECT inbox")
    # RFC 9051 6.3.2: the mailbox's LIST, name as the server spells it, children told as LIST
    # tells them.
    assert ('* LIST (\\HasNoChildren) "/" INBOX' in untagged) == rev2, untagged
    untagged = c.ok("EXAMINE Sent")
    # RFC 9051 7.1: where the first mailbox's responses end (QRESYNC's in rev1).
    assert (untagged[0] == "* OK [CLOSED] Previous mailbox closed") == rev2
    assert ('* LIST (\\HasChildren \\Sent) "/" Sent' in untagged) == rev2, untagged
    assert '* LIST (\\HasChildren \\Sent) "/" Sent' in c.ok('LIST "" Sent')  # the same
    c.ok("UNSELECT")
    c.close()


@both_modes
def test_unsolicited_fetch_carries_uid(imap, rev2):
    deliver(imap, "alice@example.test", "one")
    a, b = session(imap, rev2), Raw(imap)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    recent = "" if rev2 else " \\Recent"  # a claimed it in rev1
    assert fetch_lines(a.ok("NOOP")) == [f"* 1 FETCH (FLAGS (\\Flagged{recent}) UID 1)"]
    a.close()
    b.close()


@both_modes
def test_response_codes(imap, rev2):
    """RFC 5530's codes, part of IMAP4rev2, are given in both modes."""
    c = session(imap, rev2)
    for cmd in ("SELECT nosuch", "EXAMINE nosuch", "STATUS nosuch (MESSAGES)", "DELETE nosuch",
                "RENAME nosuch other", "SUBSCRIBE nosuch"):
        _, done = c.cmd(cmd)
        assert done.startswith("NO [NONEXISTENT]"), (cmd, done)
    _, done = c.cmd("CREATE Sent")
    assert done.startswith("NO [ALREADYEXISTS]"), done
    c.ok("SELECT INBOX")
    _, done = c.cmd("COPY 1:* nosuch")
    assert done.startswith(("NO [TRYCREATE]", "BAD")), done
    c.close()


@both_modes
def test_fetch_says_expungeissued(imap, rev2):
    """RFC 9051 7.1 EXPUNGEISSUED: a FETCH or SEARCH that names a message another session
    expunged, of which this one has not been told (no EXPUNGE during FETCH or SEARCH), leaves
    it out and says so (STORE: test_imap_store.py)."""
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    a, b = session(imap, rev2), Raw(imap)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    untagged, done = a.cmd("FETCH 1:2 (UID)")
    assert fetch_lines(untagged) == ["* 2 FETCH (UID 2)"], untagged
    assert done.startswith("OK [EXPUNGEISSUED]"), done
    # SEARCH leaves it out of its result too, and says so.
    untagged, done = a.cmd("SEARCH 1:2")
    assert len(untagged) == 1 and untagged[0].endswith(" 2"), untagged
    assert done.startswith("OK [EXPUNGEISSUED]"), done
    assert "* 1 EXPUNGE" in a.ok("NOOP")
    _, done = a.cmd("FETCH 1 (UID)")
    assert done == "OK FETCH completed", done  # told now: nothing left out
    _, done = a.cmd("SEARCH ALL")
    assert done == "OK SEARCH completed", done
    a.close()
    b.close()


def test_utf8_names_only_in_rev2(imap):
    c = session(imap, True)
    c.ok('CREATE "Grüße"')
    assert '* LIST (\\HasNoChildren) "/" "Grüße"' in c.ok('LIST "" "Gr*"')
    c.close()
    c = session(imap, False)
    assert '* LIST (\\HasNoChildren) "/" Gr&APwA3w-e' in c.ok('LIST "" "Gr*"')
    c.close()


@both_modes
def test_non_synchronizing_literals(imap, rev2):
    """IMAP4rev2 includes LITERAL-: {n+} up to 4096 bytes without waiting; LITERAL+, which
    is advertised, takes larger ones too."""
    c = session(imap, rev2)
    for size in (4096, 5000):
        msg = b"Subject: lit\r\n\r\n" + b"x" * (size - 18) + b"\r\n"
        assert len(msg) == size
        c.n += 1
        c.sock.sendall(b"t%d APPEND INBOX {%d+}\r\n" % (c.n, size) + msg + b"\r\n")
        assert re.match(rf"t{c.n} OK \[APPENDUID \d+ \d+\]", c.line())
    c.close()


@both_modes
def test_logout_bye_then_ok(imap, rev2):
    c = session(imap, rev2)
    untagged, done = c.cmd("LOGOUT")
    assert untagged == ["* BYE Logging out"] and done.startswith("OK")
    c.close()


@both_modes
def test_fetch_binary_and_rfc822(imap, rev2):
    """FETCH BINARY is part of rev2; RFC822* are deprecated there, and still answered."""
    deliver(imap, "alice@example.test", "one", body="hello")
    c = session(imap, rev2)
    c.ok("SELECT INBOX")
    assert re.match(r"\* 1 FETCH \(BINARY\.SIZE\[1\] \d+\)",
                    fetch_lines(c.ok("FETCH 1 BINARY.SIZE[1]"))[0])
    assert "RFC822.HEADER" in fetch_lines(c.ok("FETCH 1 RFC822.HEADER"))[0]
    c.close()


# ---- Keywords compare without regard to case (docs/decisions.md) ----

@both_modes
def test_keywords_ignore_case(imap, rev2):
    deliver(imap, "alice@example.test", "one")
    deliver(imap, "alice@example.test", "two")
    c = session(imap, rev2)
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS.SILENT (Work $junk)")
    # One keyword however spelt, kept as first spelled.
    lines = fetch_lines(c.ok("STORE 1 +FLAGS (work $Junk WORK)"))
    assert re.search(r"FLAGS \((\\Recent )?\$junk Work\)", lines[0]), lines
    n = c.n + 1
    want = f'* ESEARCH (TAG "t{n}") ALL 1' if rev2 else "* SEARCH 1"
    assert c.ok("SEARCH KEYWORD wOrK") == [want]
    assert c.ok("SEARCH UNKEYWORD WORK")[0].endswith(" 2")
    c.ok("STORE 1 -FLAGS.SILENT (WORK $JUNK)")
    assert re.search(r"FLAGS \((\\Recent)?\)", fetch_lines(c.ok("FETCH 1 FLAGS"))[0])
    c.close()
