"""SEARCH and UID SEARCH against a real tandemd, with Python's imaplib and raw protocol lines:
every search key over a realistic mix of messages delivered over LMTP (quoted-printable and
base64 bodies, RFC 2047 subjects in UTF-8 and ISO-8859-1, multipart with HTML and an
attachment), CHARSET and BADCHARSET, ESEARCH (RFC 4731) with RETURN (MIN MAX ALL COUNT),
SEARCHRES (RFC 5182) with "$" reused by SEARCH and FETCH, MODSEQ (RFC 7162), bad input
answered with the session going on, and a long body search run in slices while other sessions
are served."""
import base64
import imaplib
import re
import smtplib
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


def deliver(s, messages):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    for m in messages:
        c.sendmail("sender@example.org", ["alice@example.test"], m.encode("latin-1"))
    c.quit()


def b64(data):
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


# The mix: each message says in a comment what it is there to test. Delivered in this order,
# so message n has MSN n and UID n.
PLAIN = (
    "From: Alice Example <alice@example.org>\r\n"
    "To: Bob <bob@example.test>\r\n"
    "Cc: carol@example.net\r\n"
    "Subject: Quarterly report\r\n"
    "Date: Mon, 3 Feb 2025 10:00:00 +0000\r\n"
    "X-Tracking: ticket-4711\r\n"
    "\r\n"
    "The numbers are in. Revenue is up.\r\n")
# UTF-8 encoded-word subject, quoted-printable UTF-8 body; the Date is the 4th where it was
# written but the 5th in UTC (SENTON compares the day as written).
QP_UTF8 = (
    "From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.fr>\r\n"
    "To: alice@example.test\r\n"
    "Subject: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=\r\n"
    "Date: Tue, 4 Feb 2025 23:30:00 -0800\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Le caf=C3=A9 est pr=C3=AAt, on se retrouve =C3=A0 la terrasse=3F Tr=C3=A8s bien=\r\n"
    "venu.\r\n")
# ISO-8859-1 encoded-word subject, base64 ISO-8859-1 body.
B64_LATIN1 = (
    "From: Jens <jens@example.de>\r\n"
    "To: alice@example.test\r\n"
    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=\r\n"
    "Date: 10 Mar 2025 08:15:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n" + b64("Schöne Grüße vom Oktoberfest".encode("latin-1")))
# multipart/mixed: an alternative (plain and HTML) and a base64 attachment whose bytes hold a
# word that must not be found (not text); a Bcc; no Date (SENT* use the internal date).
MULTIPART = (
    "From: Newsletter <news@example.com>\r\n"
    "To: alice@example.test\r\n"
    "Bcc: hidden@example.com\r\n"
    "Subject: =?UTF-8?B?0J/RgNC40LLQtdGCINC80LjRgA==?=\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Plain edition of the newsletter.\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<html><body><p>Spring <b>sale</b>&nbsp;=E2=80=94 <i>everything</i> must go</p>"
    "<script>var hiddenscript = 1;</script></body></html>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n" + b64(b"\x00\x01 attachmentword \x02\x03") +
    "--outer--\r\n")
# A large one, for LARGER and SMALLER.
LARGE = (
    "From: Alice Example <alice@example.org>\r\n"
    "To: alice@example.test\r\n"
    "Subject: Logs\r\n"
    "Date: Wed, 2 Apr 2025 12:00:00 +0000\r\n"
    "\r\n" + "log line with nothing special in it\r\n" * 2000)

MIX = [PLAIN, QP_UTF8, B64_LATIN1, MULTIPART, LARGE]


def login(s):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login("alice", "alice-password")
    return m


@pytest.fixture
def mix(imap):
    """alice's INBOX holding MIX, selected in a fresh session."""
    deliver(imap, MIX)
    m = login(imap)
    assert m.select("INBOX") == ("OK", [str(len(MIX)).encode()])
    yield m
    m.logout()


class Raw:
    """Protocol lines on an imaplib connection: sends a command (bytes, literals LITERAL+) and
    returns its untagged lines and the tagged one (without the tag). The command's own tag in
    an untagged line is written (TAG), so a wrong tag shows as a difference."""

    def __init__(self, m):
        self.m = m
        self.n = 0

    def __call__(self, command):
        self.n += 1
        tag = f"r{self.n}".encode()
        if isinstance(command, str):
            command = command.encode()
        self.m.send(tag + b" " + command + b"\r\n")
        untagged = []
        while True:
            line = self.m.readline()
            assert line, "connection closed"
            line = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if line.startswith(tag.decode() + " "):
                return untagged, line[len(tag) + 1:]
            untagged.append(line.replace(f'(TAG "{tag.decode()}")', "(TAG)"))


def search(m, *criteria, charset=None):
    typ, data = m.search(charset, *criteria)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def literal(text):
    data = text.encode()
    return f"{{{len(data)}+}}\r\n".encode() + data


def test_header_keys(mix):
    assert search(mix, "FROM", '"alice example"') == [1, 5]
    assert search(mix, "FROM", "EXAMPLE.ORG") == [1, 5]
    assert search(mix, "TO", "bob") == [1]
    assert search(mix, "CC", "carol") == [1]
    assert search(mix, "BCC", "hidden") == [4]
    assert search(mix, "SUBJECT", "report") == [1]
    assert search(mix, "SUBJECT", '"quarterly REPORT"') == [1]
    assert search(mix, "HEADER", "X-Tracking", "4711") == [1]
    assert search(mix, "HEADER", "x-tracking", "4712") == []
    # An empty string: every message that has the field.
    assert search(mix, "HEADER", "Cc", '""') == [1]
    assert search(mix, "HEADER", "Date", '""') == [1, 2, 3, 5]
    assert search(mix, "SUBJECT", '""') == [1, 2, 3, 4, 5]
    # Header keys look at the header only, not at the body.
    assert search(mix, "SUBJECT", "numbers") == []


def test_encoded_words_and_charsets(mix):
    raw = Raw(mix)
    # UTF-8 encoded word (Q), matched case-insensitively beyond ASCII.
    assert raw(b"SEARCH CHARSET UTF-8 SUBJECT " + literal("CAFÉ CRÈME")) == \
        (["* SEARCH 2"], "OK SEARCH completed")
    assert raw(b"SEARCH CHARSET UTF-8 FROM " + literal("renée")) == \
        (["* SEARCH 2"], "OK SEARCH completed")
    # ISO-8859-1 encoded word, searched in UTF-8.
    assert raw(b"SEARCH CHARSET UTF-8 SUBJECT " + literal("grüße aus münchen")) == \
        (["* SEARCH 3"], "OK SEARCH completed")
    # UTF-8 B encoded word in Cyrillic, searched in capitals.
    assert raw(b"SEARCH CHARSET UTF-8 SUBJECT " + literal("ПРИВЕТ")) == \
        (["* SEARCH 4"], "OK SEARCH completed")
    # Without CHARSET, and with US-ASCII, strings are taken as UTF-8 all the same.
    assert raw(b"SEARCH SUBJECT " + literal("café")) == (["* SEARCH 2"], "OK SEARCH completed")
    assert raw("SEARCH CHARSET US-ASCII SUBJECT report") == \
        (["* SEARCH 1"], "OK SEARCH completed")
    # Another charset is refused with the ones that are served, and the session goes on.
    untagged, tagged = raw("SEARCH CHARSET ISO-8859-1 SUBJECT report")
    assert untagged == [] and tagged.startswith("NO [BADCHARSET (US-ASCII UTF-8)]")
    typ, data = mix.search("KOI8-R", "ALL")
    assert typ == "NO" and b"[BADCHARSET (US-ASCII UTF-8)]" in data[0]
    assert search(mix, "SUBJECT", "report") == [1]


def test_body_and_text(mix):
    raw = Raw(mix)
    assert search(mix, "BODY", "revenue") == [1]
    # Quoted-printable UTF-8 decoded, soft line break joined.
    assert raw(b"SEARCH CHARSET UTF-8 BODY " + literal("CAFÉ EST PRÊT")) == \
        (["* SEARCH 2"], "OK SEARCH completed")
    assert search(mix, "BODY", "bienvenu") == [2]
    # Base64 ISO-8859-1 decoded.
    assert raw(b"SEARCH CHARSET UTF-8 BODY " + literal("schöne grüße")) == \
        (["* SEARCH 3"], "OK SEARCH completed")
    # Multipart: the plain part and the HTML part as text (tags and scripts gone, entities
    # decoded); the attachment is not text.
    assert search(mix, "BODY", '"plain edition"') == [4]
    assert search(mix, "BODY", '"spring sale"') == [4]
    assert raw(b"SEARCH CHARSET UTF-8 BODY " + literal("sale \u2014 everything")) == \
        (["* SEARCH 4"], "OK SEARCH completed")
    assert search(mix, "BODY", "hiddenscript") == []
    assert search(mix, "BODY", "attachmentword") == []
    assert search(mix, "BODY", "<b>") == []
    # BODY is not the header; TEXT is both.
    assert search(mix, "BODY", "quarterly") == []
    assert search(mix, "TEXT", "quarterly") == [1]
    assert search(mix, "TEXT", "revenue") == [1]
    assert search(mix, "TEXT", "ticket-4711") == [1]
    assert raw(b"SEARCH CHARSET UTF-8 TEXT " + literal("münchen")) == \
        (["* SEARCH 3"], "OK SEARCH completed")


def internal_dates(m):
    typ, data = m.fetch("1:*", "(INTERNALDATE RFC822.SIZE)")
    assert typ == "OK"
    out = []
    for line in data:
        d = re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode()
        size = int(re.search(rb"RFC822.SIZE (\d+)", line).group(1))
        out.append((d.split(" ")[0], size))
    return out


def test_dates_and_sizes(mix):
    info = internal_dates(mix)
    day = info[0][0]
    assert all(d == day for d, _ in info), "delivered on one UTC day"
    # INTERNALDATE is written in UTC (+0000), and BEFORE/ON/SINCE compare its UTC day.
    assert search(mix, "ON", day) == [1, 2, 3, 4, 5]
    assert search(mix, "SINCE", day) == [1, 2, 3, 4, 5]
    assert search(mix, "BEFORE", day) == []
    assert search(mix, "SINCE", "1-Jan-2100") == []
    assert search(mix, "BEFORE", "1-Jan-2100") == [1, 2, 3, 4, 5]
    # SENT*: the Date header's day as written; without one, the internal date.
    assert search(mix, "SENTON", "3-Feb-2025") == [1]
    assert search(mix, "SENTON", "4-Feb-2025") == [2]
    assert search(mix, "SENTON", "5-Feb-2025") == []
    assert search(mix, "SENTBEFORE", "4-Feb-2025") == [1]
    assert search(mix, "SENTSINCE", "4-Feb-2025") == [2, 3, 4, 5]
    assert search(mix, "SENTSINCE", "1-Apr-2025", "SENTBEFORE", "3-Apr-2025") == [5]
    assert search(mix, "SENTON", day) == [4]
    sizes = [size for _, size in info]
    big = sizes[4]
    assert big > 60000 and max(sizes[:4]) < 5000
    assert search(mix, "LARGER", "10000") == [5]
    assert search(mix, "SMALLER", "10000") == [1, 2, 3, 4]
    assert search(mix, "LARGER", str(big)) == []
    assert search(mix, "LARGER", str(big - 1)) == [5]
    assert search(mix, "SMALLER", str(big)) == [1, 2, 3, 4]


def test_flags_recent_and_logic(mix, imap):
    # Everything was delivered before this session selected: all recent and unseen.
    assert search(mix, "RECENT") == [1, 2, 3, 4, 5]
    assert search(mix, "NEW") == [1, 2, 3, 4, 5]
    assert search(mix, "OLD") == []
    assert search(mix, "UNSEEN") == [1, 2, 3, 4, 5]
    assert search(mix, "SEEN") == search(mix, "DELETED") == search(mix, "FLAGGED") == []
    assert search(mix, "ANSWERED") == search(mix, "DRAFT") == []
    assert search(mix, "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED") == [1, 2, 3, 4, 5]
    assert search(mix, "KEYWORD", "$Forwarded") == []
    assert search(mix, "UNKEYWORD", "$Forwarded") == [1, 2, 3, 4, 5]
    # Flags and keywords as STORE leaves them.
    for msn, flags in (("1", "(\\Seen \\Answered)"), ("2", "(\\Flagged $Work)"),
                       ("3", "(\\Deleted \\Draft)"), ("4", "(\\Seen $work)")):
        assert mix.store(msn, "+FLAGS", flags)[0] == "OK"
    assert search(mix, "SEEN") == [1, 4]
    assert search(mix, "UNSEEN") == search(mix, "NEW") == [2, 3, 5]
    assert search(mix, "ANSWERED") == [1]
    assert search(mix, "FLAGGED") == [2]
    assert search(mix, "DELETED") == search(mix, "DRAFT") == [3]
    assert search(mix, "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNANSWERED") == [4, 5]
    assert search(mix, "KEYWORD", "$WORK") == [2, 4]
    assert search(mix, "UNKEYWORD", "$work") == [1, 3, 5]
    assert search(mix, "OR", "DELETED", "KEYWORD", "$Work", "NOT", "SEEN") == [2, 3]
    # A second session sees none of them as recent.
    other = login(imap)
    other.select("INBOX")
    assert search(other, "RECENT") == search(other, "NEW") == []
    assert search(other, "OLD") == [1, 2, 3, 4, 5]
    other.logout()
    # OR, NOT, parentheses, sets, UID sets.
    assert search(mix, "OR", "SUBJECT", "report", "SUBJECT", "logs") == [1, 5]
    assert search(mix, "NOT", "FROM", "alice") == [2, 3, 4]
    assert search(mix, "(FROM alice SUBJECT logs)", "ALL") == [5]
    assert search(mix, "OR", "(TO bob CC carol)", "NOT", "OR", "BCC", "hidden", "LARGER",
                  "100") == [1]
    assert search(mix, "2:4", "NOT", "3") == [2, 4]
    assert search(mix, "4:*") == [4, 5]
    assert search(mix, "*") == [5]
    assert search(mix, "UID", "1,3:4") == [1, 3, 4]
    assert search(mix, "UID", "9:*") == [5]
    typ, data = mix.uid("SEARCH", "FROM", "alice")
    assert typ == "OK" and data == [b"1 5"]


def test_esearch(mix):
    assert "ESEARCH" in mix.capabilities and "SEARCHRES" in mix.capabilities
    raw = Raw(mix)
    assert raw("SEARCH RETURN (MIN MAX COUNT) NOT FROM alice") == \
        (['* ESEARCH (TAG) MIN 2 MAX 4 COUNT 3'], "OK SEARCH completed")
    assert raw("SEARCH RETURN (ALL) NOT SUBJECT logs") == \
        (['* ESEARCH (TAG) ALL 1:4'], "OK SEARCH completed")
    # RETURN () is RETURN (ALL) (RFC 4731 3.1).
    assert raw("UID SEARCH RETURN () OR 1 3") == \
        (['* ESEARCH (TAG) UID ALL 1,3'], "OK UID SEARCH completed")
    # Nothing matched: only COUNT says so.
    assert raw("SEARCH RETURN (MIN MAX ALL COUNT) SUBJECT nothing-like-this") == \
        (['* ESEARCH (TAG) COUNT 0'], "OK SEARCH completed")
    assert raw("UID SEARCH RETURN (COUNT) ALL") == \
        (['* ESEARCH (TAG) UID COUNT 5'], "OK UID SEARCH completed")


def test_imap4rev2_answers_esearch(imap):
    """IMAP4rev2 has no "* SEARCH" (RFC 9051 appendix E): once enabled, a search without
    RETURN answers ESEARCH ALL; where ENABLE leaves it off, SEARCH answers as IMAP4rev1
    does."""
    deliver(imap, [PLAIN, QP_UTF8])
    m = login(imap)
    raw = Raw(m)
    untagged, tagged = raw("ENABLE IMAP4rev2")
    assert tagged.startswith("OK")
    rev2 = untagged == ["* ENABLED IMAP4rev2"]
    assert raw("SELECT INBOX")[1].startswith("OK")
    want = ['* ESEARCH (TAG) ALL 1:2'] if rev2 else ["* SEARCH 1 2"]
    assert raw("SEARCH ALL") == (want, "OK SEARCH completed")
    want = ['* ESEARCH (TAG) UID ALL 2'] if rev2 else ["* SEARCH 2"]
    assert raw("UID SEARCH NOT 1") == (want, "OK UID SEARCH completed")
    m.logout()


def test_no_charset_after_utf8_accept(imap):
    """RFC 6855 3: after ENABLE UTF8=ACCEPT, strings are UTF-8 and a CHARSET conflicts."""
    deliver(imap, [QP_UTF8])
    m = login(imap)
    raw = Raw(m)
    untagged, tagged = raw("ENABLE UTF8=ACCEPT")
    assert tagged.startswith("OK")
    utf8 = untagged == ["* ENABLED UTF8=ACCEPT"]
    assert raw("SELECT INBOX")[1].startswith("OK")
    untagged, tagged = raw(b"SEARCH CHARSET UTF-8 SUBJECT " + literal("crème"))
    if utf8:
        assert (untagged, tagged) == ([], "BAD No CHARSET after ENABLE UTF8=ACCEPT")
    else:
        assert (untagged, tagged) == (["* SEARCH 1"], "OK SEARCH completed")
    assert raw(b"SEARCH SUBJECT " + literal("crème")) == (["* SEARCH 1"], "OK SEARCH completed")
    m.logout()


def fetch_uids(raw, command):
    untagged, tagged = raw(command)
    assert tagged.startswith("OK"), tagged
    return [int(re.search(r"UID (\d+)", line).group(1)) for line in untagged if "FETCH" in line]


def test_searchres_saved_result(mix):
    raw = Raw(mix)
    # RETURN (SAVE) alone answers nothing but OK.
    assert raw("SEARCH RETURN (SAVE) NOT FROM alice") == ([], "OK SEARCH completed")
    # "$" in FETCH, UID FETCH and in SEARCH keys (sequence-set and UID forms).
    assert fetch_uids(raw, "FETCH $ (UID)") == [2, 3, 4]
    assert fetch_uids(raw, "UID FETCH $ (FLAGS)") == [2, 3, 4]
    assert raw("SEARCH $ SUBJECT caf") == (["* SEARCH 2"], "OK SEARCH completed")
    assert raw("UID SEARCH UID $ NOT 3") == (["* SEARCH 2 4"], "OK UID SEARCH completed")
    assert raw("SEARCH OR $ 5") == (["* SEARCH 2 3 4 5"], "OK SEARCH completed")
    # SAVE with MIN or MAX alone keeps just those messages (RFC 5182 2.1).
    assert raw("SEARCH RETURN (SAVE MIN) NOT FROM alice") == \
        (['* ESEARCH (TAG) MIN 2'], "OK SEARCH completed")
    assert fetch_uids(raw, "FETCH $ (UID)") == [2]
    assert raw("SEARCH RETURN (MAX MIN SAVE) NOT FROM alice") == \
        (['* ESEARCH (TAG) MIN 2 MAX 4'], "OK SEARCH completed")
    assert fetch_uids(raw, "FETCH $ (UID)") == [2, 4]
    # With COUNT, all of them; "$" read before the new result replaces it.
    assert raw("SEARCH RETURN (COUNT SAVE) OR $ 1") == \
        (['* ESEARCH (TAG) COUNT 3'], "OK SEARCH completed")
    assert fetch_uids(raw, "FETCH $ (UID)") == [1, 2, 4]
    # A search that matches nothing saves the empty set.
    assert raw("SEARCH RETURN (SAVE) SUBJECT nothing-like-this") == ([], "OK SEARCH completed")
    assert raw("SEARCH $") == (["* SEARCH"], "OK SEARCH completed")
    # A saving search that fails leaves "$" empty (RFC 5182 2.1).
    raw("SEARCH RETURN (SAVE) FROM alice")
    assert raw("SEARCH $") == (["* SEARCH 1 5"], "OK SEARCH completed")
    untagged, tagged = raw("SEARCH RETURN (SAVE) CHARSET KOI8-R FROM alice")
    assert tagged.startswith("NO [BADCHARSET")
    assert raw("SEARCH $") == (["* SEARCH"], "OK SEARCH completed")
    raw("SEARCH RETURN (SAVE) FROM alice")
    untagged, tagged = raw("SEARCH RETURN (SAVE) 7")
    assert tagged.startswith("BAD")
    assert raw("SEARCH $") == (["* SEARCH"], "OK SEARCH completed")
    # A new SELECT forgets it.
    raw("SEARCH RETURN (SAVE) FROM alice")
    assert raw("SELECT INBOX")[1].startswith("OK")
    assert raw("SEARCH $") == (["* SEARCH"], "OK SEARCH completed")


def test_modseq(mix):
    raw = Raw(mix)
    top = int(mix.response("HIGHESTMODSEQ")[1][-1])  # SELECT's
    untagged, tagged = raw("SEARCH MODSEQ 1")
    assert tagged == "OK SEARCH completed"
    line = re.match(r"\* SEARCH 1 2 3 4 5 \(MODSEQ (\d+)\)$", untagged[0])
    assert line and int(line.group(1)) == top, untagged
    # Each delivery raised the MODSEQ: MODSEQ <top> matches only the last one.
    assert raw(f"SEARCH MODSEQ {top}") == ([f"* SEARCH 5 (MODSEQ {top})"], "OK SEARCH completed")
    # Nothing matched: no MODSEQ.
    assert raw(f"SEARCH MODSEQ {top + 1}") == (["* SEARCH"], "OK SEARCH completed")
    # The entry name and type are accepted and ignored (one MODSEQ per message).
    assert raw(f'UID SEARCH MODSEQ "/flags/\\\\draft" all {top}') == \
        ([f"* SEARCH 5 (MODSEQ {top})"], "OK UID SEARCH completed")
    # ESEARCH: the highest MODSEQ of what it answers for.
    untagged, _ = raw("SEARCH RETURN (MIN) MODSEQ 1")
    m = re.match(r'\* ESEARCH \(TAG\) MIN 1 MODSEQ (\d+)$', untagged[0])
    assert m and int(m.group(1)) < top, untagged
    assert raw("SEARCH RETURN (COUNT) MODSEQ 1")[0] == \
        [f'* ESEARCH (TAG) COUNT 5 MODSEQ {top}']
    # The MODSEQ key made the session CONDSTORE-aware (RFC 7162 3.1): flag changes say MODSEQ.
    untagged, tagged = raw("STORE 1 +FLAGS (\\Flagged)")
    assert tagged.startswith("OK") and re.match(r"\* 1 FETCH \(.*MODSEQ \(\d+\)", untagged[0])


def test_errors_keep_the_session(mix, imap):
    raw = Raw(mix)
    # An MSN beyond EXISTS is BAD, as for FETCH; UIDs beyond UIDNEXT just match nothing, and
    # "*" is the highest UID in use.
    untagged, tagged = raw("SEARCH 6")
    assert tagged == "BAD Message sequence number out of range"
    assert raw("UID SEARCH UID 6:9") == (["* SEARCH"], "OK UID SEARCH completed")
    assert raw("UID SEARCH UID 9:*") == (["* SEARCH 5"], "OK UID SEARCH completed")
    assert raw("UID SEARCH UID 60:90 NOT UID 5") == (["* SEARCH"], "OK UID SEARCH completed")
    # Syntax errors are the parser's BAD.
    assert raw("SEARCH FROM")[1].startswith("BAD")
    assert raw("SEARCH NOSUCHKEY")[1].startswith("BAD")
    assert raw("SEARCH RETURN (FIRST) ALL")[1].startswith("BAD")
    assert raw("SEARCH BEFORE 31-Feb-2025")[1].startswith("BAD")
    # Not before SELECT.
    other = login(imap)
    with pytest.raises(imaplib.IMAP4.error):
        other.search(None, "ALL")
    other.logout()
    assert search(mix, "ALL") == [1, 2, 3, 4, 5]


def test_updates_during_search(mix, imap):
    """New mail is told before the answer; an expunge by another session only to UID SEARCH
    (RFC 3501 7.4.1), and a SEARCH meanwhile answers in the MSNs the client holds."""
    raw = Raw(mix)
    deliver(imap, [PLAIN.replace("Quarterly report", "Second report")])
    assert raw("SEARCH SUBJECT report") == (["* 6 EXISTS", "* SEARCH 1 6"],
                                            "OK SEARCH completed")
    other = login(imap)
    other.select("INBOX")
    assert other.store("2", "+FLAGS", "\\Deleted")[0] == "OK"
    assert other.expunge()[0] == "OK"
    other.logout()
    # The expunged message 2 matches nothing, and 3 to 6 keep their numbers; the answer says
    # that something was left out (RFC 9051 7.1).
    untagged, tagged = raw("SEARCH NOT 1")
    assert untagged == ["* SEARCH 3 4 5 6"] and tagged == "OK [EXPUNGEISSUED] SEARCH completed"
    assert raw("SEARCH RETURN (SAVE) ALL") == ([], "OK [EXPUNGEISSUED] SEARCH completed")
    assert raw("UID SEARCH ALL") == (["* 2 EXPUNGE", "* SEARCH 1 3 4 5 6"],
                                     "OK UID SEARCH completed")
    # "$" held UID 2, which is gone: it names what is left.
    assert raw("SEARCH $") == (["* SEARCH 1 2 3 4 5"], "OK SEARCH completed")


def bulk(n):
    """n quoted-printable messages of about 20 KB; every hundredth holds a word of its own."""
    line = "caf=C3=A9 lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n"
    return [f"From: bulk{i}@example.org\r\nSubject: bulk {i}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + line * 300 +
            (f"needle{i}\r\n" if i % 100 == 7 else "") for i in range(n)]


def read_until(m, tag):
    lines = []
    while not lines or not lines[-1].startswith(tag + " "):
        line = m.readline()
        assert line, "connection closed"
        lines.append(line.rstrip(b"\r\n").decode())
    return lines


def test_long_search_runs_in_slices(imap):
    deliver(imap, bulk(400))
    a, b = login(imap), login(imap)
    a.select("INBOX")
    b.select("INBOX")
    # Two body searches over 8 MB and a NOOP, pipelined; another session meanwhile.
    t0 = time.monotonic()
    a.send(b"s1 SEARCH BODY nothing-like-this\r\ns2 UID SEARCH BODY needle107\r\n"
           b"s3 SEARCH RETURN (COUNT) BODY CAF\xc3\x89\r\ns4 NOOP\r\n")
    time.sleep(0.05)
    assert b.noop()[0] == "OK"
    b_done = time.monotonic() - t0
    # a's answers come whole and in order.
    assert read_until(a, "s4") == [
        "* SEARCH", "s1 OK SEARCH completed", "* SEARCH 108", "s2 OK UID SEARCH completed",
        '* ESEARCH (TAG "s3") COUNT 400', "s3 OK SEARCH completed", "s4 OK NOOP completed"]
    a_done = time.monotonic() - t0
    # b was answered between two slices, not after the searches.
    assert b_done < a_done / 2, (b_done, a_done)
    # A client that leaves in the middle of a search is let go; the others go on.
    c = login(imap)
    c.select("INBOX")
    c.send(b"c1 SEARCH TEXT nothing-like-this\r\n")
    c.shutdown()
    assert b.noop()[0] == "OK"
    # A server stopping in the middle of one ends it and frees it (LeakSanitizer watches).
    a.send(b"s5 SEARCH TEXT nothing-like-this\r\n")
    time.sleep(0.05)
    imap.stop(imap.proc)
