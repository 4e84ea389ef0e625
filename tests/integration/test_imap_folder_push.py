"""Folders deleted or renamed under a session that has them selected (FOLDER_CHANGED from the
core, imap__sync in the worker): a session in IDLE is told at once, without sending
anything; a session between commands finds out at its next one. Deleted: "* BYE" and the
connection ends. Renamed: the session goes on under the new name, and deliveries there are
pushed to it."""
import smtplib

from lab import WAIT
from test_imap import imap  # noqa: F401  (a fixture)
from test_imap_idle import PUSH_WAIT, Raw, exists_line


def create_and_fill(c, folder, n):
    if folder != "INBOX":
        assert c.command(f"CREATE {folder}")[0].split()[1] == "OK"
    append(c, folder, n)


def append(c, folder, n):
    for i in range(n):
        c.n += 1
        tag = f"t{c.n}"
        msg = f"Subject: {folder} {i}\r\n\r\nbody\r\n"
        c.send(f"{tag} APPEND {folder} {{{len(msg)}+}}\r\n{msg}")
        reply, _ = c.wait_line(lambda l: l.startswith(tag + " "), "APPEND reply")
        assert reply.split()[1] == "OK", reply


def test_a_deleted_folder_ends_an_idling_session_at_once(imap):
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "Doomed", 2)
    idler = Raw(imap)
    assert idler.login_select(folder="Doomed") == 2
    assert idler.idle() == "+ idling"
    idler.quiet()
    assert other.command("DELETE Doomed")[0].split()[1] == "OK"
    line, seen = idler.wait_line(lambda l: l.startswith("* BYE"), "BYE for the deleted folder")
    assert "deleted" in line and seen == []
    # Then the server closes the connection.
    try:
        idler.wait_line(lambda l: False, "the end of the connection", PUSH_WAIT)
        raise AssertionError("the connection stayed open")
    except ConnectionError:
        pass
    idler.close()
    other.close()


def test_a_deleted_folder_ends_a_selected_session_at_its_next_command(imap):
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "Gone", 1)
    sel = Raw(imap)
    assert sel.login_select(folder="Gone") == 1
    assert other.command("DELETE Gone")[0].split()[1] == "OK"
    sel.quiet()  # not in IDLE: nothing unprompted
    sel.n += 1
    sel.send(f"t{sel.n} NOOP")
    line, _ = sel.wait_line(lambda l: l.startswith("* BYE"), "BYE at the next command")
    assert "deleted" in line
    sel.close()
    other.close()


def test_a_renamed_folder_is_followed_by_an_idling_session(imap):
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "Work", 2)
    idler = Raw(imap)
    assert idler.login_select(folder="Work") == 2
    assert idler.idle() == "+ idling"
    assert other.command("RENAME Work Job")[0].split()[1] == "OK"
    idler.quiet(0.5)  # a rename says nothing to the client
    # Its changes are pushed under the new name: the session watches "Job" now.
    create_and_fill(other, "Elsewhere", 0)
    other.n += 1
    msg = "Subject: to the new name\r\n\r\nbody\r\n"
    other.send(f"t{other.n} APPEND Job {{{len(msg)}+}}\r\n{msg}")
    reply, _ = other.wait_line(lambda l: l.startswith(f"t{other.n} "), "APPEND reply")
    assert reply.split()[1] == "OK", reply
    idler.wait_line(exists_line(3), "EXISTS for the message appended to the new name")
    reply, untagged = idler.done()
    assert reply.split()[1] == "OK" and untagged == []
    reply, untagged = idler.command("UID FETCH 1:* (FLAGS)")
    assert reply.split()[1] == "OK" and len(untagged) == 3, untagged
    # A rename of a parent carries its selected inferior along.
    assert other.command("CREATE Job/Sub")[0].split()[1] == "OK"
    assert idler.command("SELECT Job/Sub")[0].split()[1] == "OK"
    assert idler.idle() == "+ idling"
    assert other.command("RENAME Job Task")[0].split()[1] == "OK"
    idler.quiet(0.5)
    append(other, "Task/Sub", 1)
    idler.wait_line(exists_line(1), "EXISTS in the inferior under its new name")
    reply, untagged = idler.done()
    assert reply.split()[1] == "OK" and untagged == []
    idler.close()
    other.close()


def test_a_renamed_folder_is_followed_at_the_next_command(imap):
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "Drafts2", 1)
    sel = Raw(imap)
    assert sel.login_select(folder="Drafts2") == 1
    assert other.command("RENAME Drafts2 Drafts3")[0].split()[1] == "OK"
    reply, untagged = sel.command("NOOP")
    assert reply.split()[1] == "OK" and untagged == [], untagged
    reply, untagged = sel.command("FETCH 1 (FLAGS)")
    assert reply.split()[1] == "OK" and untagged[0].startswith("* 1 FETCH"), untagged
    sel.close()
    other.close()


def test_renaming_inbox_under_a_session_that_selected_it_ends_it(imap):
    """RENAME INBOX moves its messages to a new folder and leaves INBOX, emptied, with a new
    UIDVALIDITY: the session's INBOX is not the one it selected, so it is not followed."""
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "INBOX", 1)
    idler = Raw(imap)
    idler.login_select()
    assert idler.idle() == "+ idling"
    assert other.command("RENAME INBOX Old")[0].split()[1] == "OK"
    idler.wait_line(lambda l: l.startswith("* BYE"), "BYE for the emptied INBOX")
    idler.close()
    other.close()


def test_one_burst_over_several_folders_tells_each_session_its_own(imap):
    """Sessions told together read one snapshot (imap__burst_begin): one LMTP delivery to two
    users wakes the idlers of both INBOXes in one burst, and an idler on another folder of
    the same mailbox hears nothing; each count is its own folder's."""
    other = Raw(imap)
    assert other.command("LOGIN alice alice-password")[0].split()[1] == "OK"
    create_and_fill(other, "Quiet", 3)
    a_inbox, a_quiet, b_inbox = Raw(imap), Raw(imap), Raw(imap)
    na = a_inbox.login_select()
    assert a_quiet.login_select(folder="Quiet") == 3
    nb = b_inbox.login_select(user="bob")
    for s in (a_inbox, a_quiet, b_inbox):
        assert s.idle() == "+ idling"
    c = smtplib.LMTP(imap.addr, imap.ports["lmtp"], timeout=WAIT)
    c.sendmail("sender@example.org", ["alice@example.test", "bob@example.test"],
               b"From: sender@example.org\r\nSubject: to both\r\n\r\nhello\r\n")
    c.quit()
    a_inbox.wait_line(exists_line(na + 1), "alice's EXISTS")
    b_inbox.wait_line(exists_line(nb + 1), "bob's EXISTS")
    a_quiet.quiet(0.5)
    # And the other way round: a change in Quiet alone.
    append(other, "Quiet", 1)
    a_quiet.wait_line(exists_line(4), "EXISTS in Quiet")
    a_inbox.quiet(0.3)
    b_inbox.quiet(0.1)
    for s in (a_inbox, a_quiet, b_inbox):
        assert s.done()[0].split()[1] == "OK"
        s.close()
    other.close()
