"""IMAP COPY, MOVE and their UID forms against a real tandemd: copies keep their flags, get
consecutive UIDs said in COPYUID (RFC 4315) and are \\Recent to whoever selects the
destination next; a copy into the selected folder shows as new messages; MOVE says COPYUID
untagged, then the expunges (RFC 6851), which a second session hears at its next command; and
the refusals (no such destination, read-only MOVE, out of range) leave the session going."""
import os
import re
import signal
import subprocess

from lab import WAIT, children, wait_for
from test_imap_store import imap, login, queued_at, raw, with_messages  # noqa: F401 (imap)


def uidvalidity(m, folder):
    typ, data = m.status(folder, "(UIDVALIDITY)")
    assert typ == "OK"
    return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))


def test_copy_keeps_flags_and_says_copyuid(imap):
    m = with_messages(imap, 3)
    assert "UIDPLUS" in m.capabilities and "MOVE" in m.capabilities
    m.store("1", "+FLAGS.SILENT", "(\\Flagged Important)")
    v = uidvalidity(m, "Archive")
    lines = raw(m, "COPY 1:2 Archive")
    assert lines == [lines[0]] and lines[0].endswith(f"OK [COPYUID {v} 1:2 1:2] COPY completed")
    # Again: the next UIDs, and only the messages named.
    assert raw(m, "UID COPY 3,1 Archive")[-1].endswith(
        f"OK [COPYUID {v} 1,3 3:4] UID COPY completed")
    # The source is as it was.
    assert m.fetch("1:*", "FLAGS")[1] == [b"1 (FLAGS (\\Flagged \\Recent Important))",
                                          b"2 (FLAGS (\\Recent))", b"3 (FLAGS (\\Recent))"]
    # In the destination the copies are \Recent to the first session that selects it.
    assert m.select("Archive") == ("OK", [b"4"])
    assert m.response("RECENT")[1] == [b"4"]
    assert m.fetch("1:*", "(UID FLAGS)")[1] == [
        b"1 (UID 1 FLAGS (\\Flagged \\Recent Important))", b"2 (UID 2 FLAGS (\\Recent))",
        b"3 (UID 3 FLAGS (\\Flagged \\Recent Important))", b"4 (UID 4 FLAGS (\\Recent))"]
    m.logout()


def test_copy_into_the_selected_folder(imap):
    m = with_messages(imap, 2)
    v = uidvalidity(m, "INBOX")
    lines = raw(m, "UID COPY 2 INBOX")
    assert lines[:-1] == ["* 3 EXISTS"]
    assert lines[-1].endswith(f"OK [COPYUID {v} 2 3] UID COPY completed")
    assert m.fetch("3", "UID")[1] == [b"3 (UID 3)"]
    m.logout()


def test_move_says_copyuid_then_expunges(imap):
    a = with_messages(imap, 4)
    b = login(imap)
    b.select("INBOX")
    trash = uidvalidity(a, "Trash")
    lines = raw(a, "MOVE 2:3 Trash")
    assert lines[:-1] == [f"* OK [COPYUID {trash} 2:3 1:2] Moved", "* 3 EXPUNGE", "* 2 EXPUNGE"]
    assert lines[-1].endswith("OK MOVE completed")
    lines = raw(a, "UID MOVE 4 Trash")
    assert lines[:-1] == [f"* OK [COPYUID {trash} 4 3] Moved", "* 2 EXPUNGE"]
    # The other session: told at NOOP, not during FETCH.
    lines = raw(b, "FETCH 1:* UID")
    assert not any("EXPUNGE" in l for l in lines[:-1]) and "[EXPUNGEISSUED]" in lines[-1]
    assert raw(b, "NOOP")[:-1] == ["* 4 EXPUNGE", "* 3 EXPUNGE", "* 2 EXPUNGE"]
    assert b.fetch("1:*", "UID")[1] == [b"1 (UID 1)"]
    assert b.status("Trash", "(MESSAGES)")[1] == [b'Trash (MESSAGES 3)']
    # A move within the folder: a new UID, the old one expunged.
    v = uidvalidity(a, "INBOX")
    lines = raw(a, "MOVE 1 INBOX")
    assert lines[0] == f"* OK [COPYUID {v} 1 5] Moved"
    assert "* 1 EXPUNGE" in lines and "* 1 EXISTS" in lines
    assert a.fetch("1", "UID")[1] == [b"1 (UID 5)"]
    a.logout()
    b.logout()


def test_copy_refusals_leave_the_session_going(imap):
    m = with_messages(imap, 2)
    assert "NO [TRYCREATE]" in raw(m, "COPY 1 Nowhere")[-1]
    assert "NO [TRYCREATE]" in raw(m, "UID MOVE 1 Nowhere")[-1]
    assert " BAD " in raw(m, "COPY 5 Trash")[-1]
    # Nothing named: done, with no COPYUID.
    assert raw(m, "UID COPY 99 Trash")[-1].endswith("OK UID COPY completed")
    assert raw(m, "COPY $ Trash")[-1].endswith("OK COPY completed")
    assert m.status("Trash", "(MESSAGES)")[1] == [b'Trash (MESSAGES 0)']
    # EXAMINE: a copy reads only; a move is refused.
    m.select("INBOX", readonly=True)
    assert "NO [READ-ONLY]" in raw(m, "MOVE 1 Trash")[-1]
    assert "OK [COPYUID" in raw(m, "COPY 1 Trash")[-1]
    assert m.fetch("1:*", "UID")[1] == [b"1 (UID 1)", b"2 (UID 2)"]
    assert m.noop()[0] == "OK"
    m.logout()


def test_copy_past_the_quota_is_refused_whole(imap, tandem_bin):
    m = with_messages(imap, 3)
    # Room for one more message: a copy of two is refused, and nothing is copied.
    res = subprocess.run([str(tandem_bin("tdm_ipc_client")), "quota",
                          str(imap.datadir / "run" / "core.sock"), "db1", "alice", "0", "4"],
                         capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stderr
    assert "NO [OVERQUOTA]" in raw(m, "COPY 1:2 Archive")[-1]
    assert m.status("Archive", "(MESSAGES)")[1] == [b'Archive (MESSAGES 0)']
    # A move takes no more room, so it is not refused.
    assert raw(m, "MOVE 1:2 Archive")[-1].endswith("OK MOVE completed")
    assert raw(m, "COPY 1 Archive")[-1].split(" ")[1] == "OK"
    assert "NO [OVERQUOTA]" in raw(m, "COPY 1 Archive")[-1]
    m.logout()


def test_move_under_qresync_says_vanished(imap):
    m = with_messages(imap, 2)
    m.logout()
    m = login(imap)
    assert raw(m, "ENABLE QRESYNC")[-1].split(" ")[1] == "OK"
    m.select("INBOX")
    trash = uidvalidity(m, "Trash")
    lines = raw(m, "UID MOVE 1:2 Trash")
    assert lines[:-1] == [f"* OK [COPYUID {trash} 1:2 1:2] Moved", "* VANISHED 1:2"]
    inbox = int(re.search(rb"HIGHESTMODSEQ (\d+)",
                          m.status("INBOX", "(HIGHESTMODSEQ)")[1][0]).group(1))
    assert lines[-1].endswith(f"OK [HIGHESTMODSEQ {inbox}] UID MOVE completed")
    m.logout()


def test_copy_tells_expunges_after_it(imap):
    a = with_messages(imap, 3)
    b = login(imap)
    b.select("INBOX")
    b.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    b.expunge()
    # a's COPY 1:2 names the messages a knows as 1 and 2 (UIDs 1, 2), though UID 1 is gone:
    # the copy takes what is left (UID 2), then the expunge is told.
    trash = uidvalidity(a, "Trash")
    lines = raw(a, "COPY 1:2 Trash")
    assert lines[-2:] == ["* 1 EXPUNGE", lines[-1]]
    assert lines[-1].endswith(f"OK [COPYUID {trash} 2 1] COPY completed")
    assert a.status("Trash", "(MESSAGES)")[1] == [b'Trash (MESSAGES 1)']
    a.logout()
    b.logout()


def answer(m, tag):
    lines = []
    while not (line := m.readline().decode().rstrip()).startswith(tag + " "):
        lines.append(line)
    return lines + [line]


def test_copyuid_names_what_was_copied_when_sources_vanish(imap):
    """Sources expunged between the session's read and its record: COPYUID lists the source
    UIDs that were copied and their new UIDs (RFC 4315), whether the others went before the
    copy or a source went after it. With the core stopped, the records wait in its socket in
    the order the sessions sent them, which forces the interleaving."""
    a = with_messages(imap, 5)
    b, c = login(imap), login(imap)
    b.select("INBOX")
    c.select("INBOX")
    a.store("2:3,5", "+FLAGS.SILENT", "(\\Deleted)")
    archive, trash = uidvalidity(a, "Archive"), uidvalidity(a, "Trash")
    sup = imap.proc.pid
    core = children(sup)["core"]

    def in_order(*sends):
        """Sends each (session, command) once the core holds every record sent before it."""
        os.kill(sup, signal.SIGSTOP)  # no restart meanwhile
        os.kill(core, signal.SIGSTOP)
        try:
            queued = queued_at(core)
            assert queued == 0
            for m, command in sends:
                m.send(command.encode() + b"\r\n")
                queued = wait_for(lambda q=queued: queued_at(core) > q and queued_at(core),
                                  f"{command} at the core")
        finally:
            os.kill(core, signal.SIGCONT)
            os.kill(sup, signal.SIGCONT)

    # UID 2 goes before the copy, UID 3 after it: 1 and 3 were copied.
    in_order((b, "B1 UID EXPUNGE 2"), (a, "A1 UID COPY 1:3 Archive"), (c, "C1 UID EXPUNGE 3"))
    assert answer(b, "B1")[-1] == "B1 OK UID EXPUNGE completed"
    assert answer(c, "C1")[-1] == "C1 OK UID EXPUNGE completed"
    assert answer(a, "A1")[-1] == f"A1 OK [COPYUID {archive} 1,3 1:2] UID COPY completed"
    # C1's expunge may apply after A1 was answered; a plain FETCH may not tell expunges
    # (RFC 3501 7.4.1), so NOOP first: C1 is answered, hence applied, by now.
    a.noop()
    assert a.fetch("1:*", "UID")[1] == [b"1 (UID 1)", b"2 (UID 4)", b"3 (UID 5)"]

    # MOVE: UID 5 goes before it, 1 and 4 move.
    in_order((b, "B2 UID EXPUNGE 5"), (a, "A2 UID MOVE 1:5 Trash"))
    assert answer(b, "B2")[-1] == "B2 OK UID EXPUNGE completed"
    lines = answer(a, "A2")
    assert lines[0] == f"* OK [COPYUID {trash} 1,4 1:2] Moved"
    assert lines[-1] == "A2 OK UID MOVE completed"
    assert a.status("Trash", "(MESSAGES)")[1] == [b"Trash (MESSAGES 2)"]
    for m in (a, b, c):
        m.logout()
