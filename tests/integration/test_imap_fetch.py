"""FETCH in full with Python's imaplib against a real tandemd: ENVELOPE, BODY, BODYSTRUCTURE,
BODY[section]<partial> (HEADER, HEADER.FIELDS (.NOT), TEXT, MIME, part numbers, nested
message/rfc822), RFC822.*, the ALL/FAST/FULL macros, BINARY / BINARY.SIZE (with UNKNOWN-CTE),
MODSEQ, CHANGEDSINCE and VANISHED, \\Seen set by BODY[] (and seen by a second session) but not by
BODY.PEEK[], a FETCH 1:* of many large messages with the worker's memory bounded, and bad input
answered while the session goes on. Messages arrive over LMTP with a realistic MIME mix."""
import base64
import imaplib
import os
import re
import signal
import socket
import smtplib
import time

import pytest

from lab import WAIT, Server, children, wait_for


def start(tandem_bin, tandemctl, tmp_path):
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
    return s


@pytest.fixture
def imap(tandem_bin, tandemctl, tmp_path):
    s = start(tandem_bin, tandemctl, tmp_path)
    yield s
    s.kill_all()


@pytest.fixture
def lean_imap(tandem_bin, tandemctl, tmp_path, monkeypatch):
    """A server whose memory use can be measured: AddressSanitizer keeps freed memory in a
    quarantine (256 MiB by default), which would hide whether the worker frees as it goes."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", f"{asan}:quarantine_size_mb=8".lstrip(":"))
    s = start(tandem_bin, tandemctl, tmp_path)
    yield s
    s.kill_all()


def deliver(s, raw, rcpt="alice@example.test"):
    c = smtplib.LMTP(s.addr, s.ports["lmtp"], timeout=WAIT)
    c.sendmail("sender@example.org", [rcpt], raw)
    c.quit()


def login(s, user="alice"):
    m = imaplib.IMAP4(s.addr, s.ports["imap"], timeout=WAIT)
    m.login(user, f"{user}-password")
    return m


def crlf(text):
    return text.replace("\n", "\r\n").encode()


# ---- The messages ----

ATTACHMENT = bytes(range(256)) * 4  # holds NUL: BINARY answers it as literal8
QP_TEXT = "Gr=C3=BC=C3=9Fe aus K=C3=B6ln, a soft=\nbreak.\n"
HTML = "<p>Gr&uuml;&szlig;e</p>\n"

# 1: multipart/mixed of multipart/alternative (quoted-printable text, html) and a base64
#    attachment; an encoded-word subject.
MIXED = crlf(f"""From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>
To: Alice <alice@example.test>, bob@example.test
Cc: "Team: list" <team@example.org>
Subject: =?utf-8?b?R3LDvMOfZSDDvGJlciBkZW4gTWFya3Q=?=
Date: Tue, 3 Mar 2026 10:00:00 +0100
Message-ID: <mixed-1@example.org>
X-Custom: folded
 value
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

{QP_TEXT}--alt
Content-Type: text/html; charset=utf-8

{HTML}--alt--

--outer
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

""") + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n") + b"--outer--\r\n"

# 2: a forward: text and a message/rfc822 that is itself multipart/alternative.
INNER = crlf("""From: Carol <carol@example.org>
Subject: inner subject
Message-ID: <inner@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="in"

--in
Content-Type: text/plain

inner plain
--in
Content-Type: text/html

<b>inner html</b>
--in--
""")
FORWARD = crlf("""From: Dave <dave@example.org>
To: alice@example.test
Subject: Fwd: inner subject
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain

see below
--fw
Content-Type: message/rfc822

""") + INNER + crlf("""--fw--
""")

# 3: raw 8-bit UTF-8 header and body.
EIGHTBIT = crlf("""From: Zoë <zoe@example.org>
To: alice@example.test
Subject: Crème brûlée
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Ça va très bien.
""")

# 4: a part in an encoding BINARY cannot undo.
UUENCODED = crlf("""From: old@example.org
Subject: uuencoded
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="u"

--u
Content-Type: text/plain

plain part
--u
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-uuencode

begin 644 x
#86)C
`
end
--u--
""")


@pytest.fixture
def mailbox(imap):
    for raw in (MIXED, FORWARD, EIGHTBIT, UUENCODED):
        deliver(imap, raw)
    return imap


# ---- Reading responses ----

LABEL = re.compile(rb"([A-Z0-9.]+(?:\[[^\]]*\])?(?:<\d+>)?) ~?\{\d+\}$")


def literals(data):
    """{label: bytes} of every literal in a FETCH answer as imaplib returns it."""
    out = {}
    for part in data:
        if isinstance(part, tuple):
            m = LABEL.search(part[0])
            assert m, part[0]
            out[m.group(1).decode()] = part[1]
    return out


def text(data):
    """The FETCH answer as one byte string, literals inline (for items written as text)."""
    return b"".join(b"".join(p) if isinstance(p, tuple) else p for p in data)


def fetch_ok(m, msgset, items, uid=False):
    typ, data = m.uid("FETCH", msgset, items) if uid else m.fetch(msgset, items)
    assert typ == "OK", data
    return data


def whole(m, n):
    return literals(fetch_ok(m, str(n), "(BODY.PEEK[])"))["BODY[]"]


def header_of(raw):
    return raw[:raw.index(b"\r\n\r\n") + 4]


# ---- Structure ----

def test_envelope_body_bodystructure(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    t = text(fetch_ok(m, "1", "(ENVELOPE)"))
    assert b'"=?utf-8?b?R3LDvMOfZSDDvGJlciBkZW4gTWFya3Q=?="' in t  # not decoded (RFC 3501)
    assert b'(("=?utf-8?q?J=C3=B6rg_M=C3=BCller?=" NIL "jorg" "example.org"))' in t
    assert b'(("Alice" NIL "alice" "example.test")(NIL NIL "bob" "example.test"))' in t
    assert b'(("Team: list" NIL "team" "example.org"))' in t
    assert b'"<mixed-1@example.org>"' in t
    # Sender and Reply-To default to From.
    assert t.count(b'"jorg" "example.org"') == 3
    t = text(fetch_ok(m, "1", "(BODYSTRUCTURE)"))
    assert re.search(rb'BODYSTRUCTURE \(\(\("TEXT" "PLAIN" \("CHARSET" "utf-8"\) NIL NIL '
                     rb'"QUOTED-PRINTABLE" \d+ \d+', t), t
    assert b'"ALTERNATIVE" ("BOUNDARY" "alt")' in t
    assert b'"APPLICATION" "OCTET-STREAM" ("NAME" "data.bin")' in t
    assert b'("ATTACHMENT" ("FILENAME" "data.bin"))' in t
    assert b'"MIXED" ("BOUNDARY" "outer")' in t
    body = text(fetch_ok(m, "1", "(BODY)"))
    assert b"BODY ((" in body and b"BOUNDARY" not in body  # the non-extensible form
    # A forwarded message: message/rfc822 carries the inner ENVELOPE and structure.
    t = text(fetch_ok(m, "2", "(BODYSTRUCTURE)"))
    assert b'"MESSAGE" "RFC822"' in t and b'"inner subject"' in t and b'"ALTERNATIVE"' in t
    # Raw 8-bit in a header: a literal in the ENVELOPE, the bytes as they are.
    t = text(fetch_ok(m, "3", "(ENVELOPE)"))
    assert "Crème brûlée".encode() in t
    m.logout()


def test_macros(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    fast = text(fetch_ok(m, "1", "FAST"))
    assert b"FLAGS" in fast and b"INTERNALDATE" in fast and b"RFC822.SIZE" in fast
    assert b"ENVELOPE" not in fast
    al = text(fetch_ok(m, "1", "ALL"))
    assert b"ENVELOPE" in al and b"BODY" not in al.replace(b"BODYSTRUCTURE", b"")
    full = text(fetch_ok(m, "1", "FULL"))
    assert b"ENVELOPE" in full and b"BODY ((" in full
    m.logout()


# ---- Sections ----

def test_sections(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    raw = whole(m, 1)
    assert raw.endswith(MIXED)  # delivery adds trace fields at the top only
    hdr = header_of(raw)
    got = literals(fetch_ok(m, "1", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.HEADER)"))
    assert got["BODY[HEADER]"] == hdr and got["RFC822.HEADER"] == hdr
    assert got["BODY[TEXT]"] == raw[len(hdr):]
    got = literals(fetch_ok(m, "1", "(BODY.PEEK[HEADER.FIELDS (subject x-custom)])"))
    assert got["BODY[HEADER.FIELDS (subject x-custom)]"] == crlf(
        "Subject: =?utf-8?b?R3LDvMOfZSDDvGJlciBkZW4gTWFya3Q=?=\n"
        "X-Custom: folded\n value\n\n")
    got = literals(fetch_ok(m, "1", "(BODY.PEEK[HEADER.FIELDS.NOT (Received Return-Path "
                                    "Delivered-To From To Cc Date Message-ID X-Custom "
                                    "MIME-Version Content-Type)])"))
    assert list(got.values())[0] == crlf("Subject: =?utf-8?b?R3LDvMOfZSDDvGJlciBkZW4gTWFya3Q="
                                         "?=\n\n")
    # Part numbers: 1 is the alternative, 1.1 its text, 2 the attachment (as stored: base64).
    got = literals(fetch_ok(m, "1", "(BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[1.1.MIME] "
                                    "BODY.PEEK[2])"))
    assert got["BODY[1.1]"] == crlf(QP_TEXT)[:-2]  # the CRLF before "--alt" is the delimiter's
    assert got["BODY[1.2]"] == crlf(HTML)[:-2]
    assert got["BODY[1.1.MIME]"] == crlf("Content-Type: text/plain; charset=utf-8\n"
                                         "Content-Transfer-Encoding: quoted-printable\n\n")
    assert base64.b64decode(got["BODY[2]"]) == ATTACHMENT
    # Nested message/rfc822: 2 is the message, 2.HEADER its header, 2.1 / 2.2 its parts.
    got = literals(fetch_ok(m, "2", "(BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] "
                                    "BODY.PEEK[2.2] BODY.PEEK[2])"))
    assert got["BODY[2.HEADER]"] == header_of(INNER)
    # The line break before "--fw--" is the delimiter's (RFC 2046), not the inner message's.
    assert got["BODY[2.TEXT]"] == INNER[len(header_of(INNER)):-2]
    assert got["BODY[2.1]"] == b"inner plain" and got["BODY[2.2]"] == b"<b>inner html</b>"
    assert got["BODY[2]"] == INNER[:-2]
    # A non-multipart message has part 1: its body.
    got = literals(fetch_ok(m, "3", "(BODY.PEEK[1])"))
    assert got["BODY[1]"] == "Ça va très bien.\r\n".encode()
    # A part that is not there is NIL, and the command still succeeds.
    t = text(fetch_ok(m, "3", "(BODY.PEEK[4.1])"))
    assert b"BODY[4.1] NIL" in t
    m.logout()


def test_partials(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    raw = whole(m, 1)
    n = len(raw)
    cases = {"0.10": raw[:10], "5.1": raw[5:6], f"{n - 3}.10": raw[-3:], f"{n}.5": b"",
             f"{n + 100}.1": b"", f"0.{n + 50}": raw}
    for rng, want in cases.items():
        origin = rng.split(".")[0]
        data = fetch_ok(m, "1", f"(BODY.PEEK[]<{rng}>)")
        assert literals(data)[f"BODY[]<{origin}>"] == want, rng
    # On a section: the range is of the section's bytes.
    got = literals(fetch_ok(m, "2", "(BODY.PEEK[2.1]<6.5>)"))
    assert got["BODY[2.1]<6>"] == b"plain"
    # And on BINARY: of the decoded bytes.
    got = literals(fetch_ok(m, "1", "(BINARY.PEEK[2]<256.4>)"))
    assert got["BINARY[2]<256>"] == ATTACHMENT[256:260]
    m.logout()


def test_binary(mailbox):
    m = login(mailbox)
    assert "BINARY" in m.capabilities
    m.select("INBOX")
    got = literals(fetch_ok(m, "1", "(BINARY.PEEK[2] BINARY.PEEK[1.1] BINARY.SIZE[2] "
                                    "BINARY.SIZE[1.1])"))
    assert got["BINARY[2]"] == ATTACHMENT
    assert got["BINARY[1.1]"] == "Grüße aus Köln, a softbreak.\r\n".encode()[:-2]
    t = text(fetch_ok(m, "1", "(BINARY.SIZE[2] BINARY.SIZE[1.1])"))
    assert f"BINARY.SIZE[2] {len(ATTACHMENT)}".encode() in t
    assert f"BINARY.SIZE[1.1] {len(got['BINARY[1.1]'])}".encode() in t
    # NUL in the content: literal8 on the wire.
    typ, data = m.fetch("1", "(BINARY.PEEK[2])")
    assert typ == "OK" and re.search(rb"BINARY\[2\] ~\{1024\}$", data[0][0])
    # An encoding that cannot be undone: NO [UNKNOWN-CTE], and the session goes on.
    typ, data = m.fetch("4", "(BINARY.PEEK[2])")
    assert typ == "NO" and data[0].startswith(b"[UNKNOWN-CTE]")
    typ, data = m.fetch("4", "(BINARY.SIZE[2])")
    assert typ == "NO" and data[0].startswith(b"[UNKNOWN-CTE]")
    # Its other part decodes fine.
    assert literals(fetch_ok(m, "4", "(BINARY.PEEK[1])"))["BINARY[1]"] == b"plain part"
    assert m.noop()[0] == "OK"
    m.logout()


def test_rfc822_items(mailbox):
    m = login(mailbox)
    m.select("INBOX", readonly=True)  # EXAMINE: read-only: RFC822 and RFC822.TEXT set nothing
    raw = whole(m, 3)
    got = literals(fetch_ok(m, "3", "(RFC822 RFC822.TEXT RFC822.HEADER RFC822.SIZE)"))
    assert got["RFC822"] == raw and got["RFC822.HEADER"] == header_of(raw)
    assert got["RFC822.TEXT"] == "Ça va très bien.\r\n".encode()
    assert f"RFC822.SIZE {len(raw)}".encode() in text(fetch_ok(m, "3", "(RFC822.SIZE)"))
    assert b"\\Seen" not in text(fetch_ok(m, "1:*", "(FLAGS)"))
    m.logout()


# ---- \Seen ----

def flags_of(m, n):
    return re.search(rb"FLAGS \(([^)]*)\)", text(fetch_ok(m, str(n), "(FLAGS)"))).group(1)


def test_seen(mailbox):
    a = login(mailbox)
    a.select("INBOX")
    b = login(mailbox)
    b.select("INBOX")
    # PEEK, HEADER-only, and structure items set nothing.
    fetch_ok(a, "1", "(BODY.PEEK[] BINARY.PEEK[1.1] RFC822.HEADER BODYSTRUCTURE ENVELOPE "
                     "BINARY.SIZE[2])")
    assert b"\\Seen" not in flags_of(a, 1)
    # BODY[] sets \Seen, durably, and says so in the same response.
    data = fetch_ok(a, "1", "(BODY[HEADER.FIELDS (Subject)])")
    assert b"FLAGS (\\Seen" in text(data)
    assert b"\\Seen" in flags_of(a, 1)
    # BINARY[], RFC822.TEXT and RFC822 too, for several messages at once.
    data = fetch_ok(a, "2:3", "(UID BINARY[1])")
    assert text(data).count(b"\\Seen") == 2
    data = fetch_ok(a, "4", "RFC822.TEXT", uid=False)
    assert b"\\Seen" in text(data)
    # A message already \Seen is not written again: no FLAGS unless asked.
    data = fetch_ok(a, "1", "(BODY[TEXT]<0.5>)")
    ours = [x for x in data if isinstance(x, tuple) and x[0].startswith(b"1 (")]
    assert len(ours) == 1 and b"FLAGS" not in ours[0][0]
    # Its own changes were told in its FETCH answers, and are not told again.
    assert a.noop()[0] == "OK" and a.response("FETCH")[1] == [None]
    # The second session is told at its next command (RFC 3501 7.4.1).
    b.noop()
    seen = [x for x in b.response("FETCH")[1] if x and b"\\Seen" in x]
    assert len(seen) == 4
    assert all(b"\\Seen" in flags_of(b, n) for n in range(1, 5))
    a.logout()
    b.logout()


def test_seen_not_stored_sends_no_body(mailbox):
    """With the core away the \\Seen record cannot be made durable: the FETCH is NO and sends
    no body (docs/decisions.md), PEEK still reads, and once the core is back BODY[] works."""
    m = login(mailbox)
    m.select("INBOX")
    sup = mailbox.proc.pid
    core = children(sup)["core"]
    os.kill(sup, signal.SIGSTOP)  # no restart meanwhile
    try:
        os.kill(core, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{core}/cmdline") or
                 open(f"/proc/{core}/stat").read().split(") ")[1][0] == "Z", "the core gone")
        time.sleep(0.2)  # the worker sees its link close
        typ, data = m.fetch("1", "(BODY[])")
        assert typ == "NO" and data[0].startswith(b"[UNAVAILABLE]")
        assert not any(isinstance(x, tuple) for x in data)
        assert b"\\Seen" not in flags_of(m, 1)
        assert literals(fetch_ok(m, "1", "(BODY.PEEK[1.1])"))["BODY[1.1]"] == crlf(QP_TEXT)[:-2]
    finally:
        os.kill(sup, signal.SIGCONT)

    def read():
        typ, data = m.fetch("1", "(BODY[1.2])")
        return typ == "OK" and b"FLAGS (\\Seen" in text(data)
    wait_for(read, "BODY[] once the core is back")
    m.logout()


# ---- CONDSTORE / QRESYNC ----

def test_modseq_changedsince_vanished(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    t = text(fetch_ok(m, "1:*", "(MODSEQ)"))
    modseqs = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", t)]
    assert len(modseqs) == 4 and modseqs == sorted(modseqs)
    # Reading message 2 raises its MODSEQ: CHANGEDSINCE the old highest finds only it. With
    # CONDSTORE on (FETCH MODSEQ turned it on), the answer that sets \\Seen carries UID and
    # MODSEQ too (RFC 7162 3.2).
    t = text(fetch_ok(m, "2", "(BODY[1])"))
    assert re.search(rb"FLAGS \(\\Seen[^)]*\) UID 2 MODSEQ \((\d+)\)", t), t
    # (The change may also come as an untagged FETCH first: every answer is for message 2.)
    data = fetch_ok(m, "1:*", f"(FLAGS) (CHANGEDSINCE {max(modseqs)})")
    assert data and all(x.startswith(b"2 (") and b"MODSEQ (" in x for x in data)
    data = fetch_ok(m, "1:*", f"(UID) (CHANGEDSINCE {max(modseqs)})", uid=True)
    assert data and all(b"UID 2 " in x and b"MODSEQ (" in x for x in data)
    # VANISHED without ENABLE QRESYNC: BAD, and the session goes on.
    with pytest.raises(imaplib.IMAP4.error, match="QRESYNC"):
        m.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert m.noop()[0] == "OK"
    m.logout()


def test_vanished_earlier(mailbox):
    m = login(mailbox)
    typ, data = m._simple_command("ENABLE", "QRESYNC")
    if typ != "OK" or not any(b"QRESYNC" in x for x in m.response("ENABLED")[1] if x):
        pytest.skip("ENABLE QRESYNC is not served yet")
    m.select("INBOX")
    high = max(int(x) for x in re.findall(rb"MODSEQ \((\d+)\)",
                                          text(fetch_ok(m, "1:*", "(MODSEQ)"))))
    typ, _ = m.uid("STORE", "2", "+FLAGS.SILENT", "(\\Deleted)")
    if typ != "OK":
        pytest.skip("STORE is not served yet")
    if m._simple_command("EXPUNGE")[0] != "OK":
        pytest.skip("EXPUNGE is not served yet")
    typ, data = m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {high} VANISHED)")
    assert typ == "OK"
    assert m.response("VANISHED")[1][-1] == b"(EARLIER) 2"
    m.logout()


# ---- Large folders ----

def rss_kib(pid):
    """Anonymous resident memory: the mail database's map pages the worker reads count in
    VmRSS too, but they are the page cache's, not the worker's."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"RssAnon:\s+(\d+)", f.read()).group(1))


def test_fetch_all_of_many_large_messages_is_bounded(lean_imap):
    imap = lean_imap
    n, size = 24, 2 << 20
    bodies = []
    for i in range(n):
        line = (f"{i:04d}" + "x" * 74 + "\r\n").encode()
        body = line * (size // len(line))
        bodies.append(body)
        deliver(imap, crlf(f"From: bulk@example.org\nSubject: bulk {i}\n\n") + body)
    worker = children(imap.proc.pid)["worker-imap"]
    # A raw client that reads slowly: the answer must wait in the store, not in the worker.
    sock = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"a LOGIN alice alice-password\r\nb SELECT INBOX\r\n")
    while not f.readline().startswith(b"b OK"):
        pass
    before = rss_kib(worker)
    sock.sendall(b"c FETCH 1:* (BODY.PEEK[])\r\nd NOOP\r\n")
    peak, got, i = before, [], 0
    while True:
        line = f.readline()
        if line.startswith(b"c "):
            assert line.startswith(b"c OK"), line
            break
        m = re.match(rb"\* (\d+) FETCH \(BODY\[\] \{(\d+)\}\r\n$", line)
        assert m, line
        data = f.read(int(m.group(2)))
        assert f.readline() == b")\r\n"
        got.append((int(m.group(1)), data))
        peak = max(peak, rss_kib(worker))
        if i < 6:
            time.sleep(0.2)  # slow at first: the worker waits rather than buffering
        i += 1
    assert f.readline().startswith(b"d OK")  # the pipelined command waited its turn
    sock.close()
    assert [msn for msn, _ in got] == list(range(1, n + 1))
    for (_, data), body in zip(got, bodies):
        assert data.endswith(body)
    # The whole answer is 48 MiB; bounded batching keeps the worker far below that.
    print(f"worker RssAnon {before} KiB before, {peak} KiB at most during the FETCH")
    assert peak - before < 20 * 1024, (before, peak)


def test_fetch_of_many_messages_one_client_leaves(imap):
    for i in range(8):
        deliver(imap, crlf(f"Subject: m{i}\n\n") + b"y" * (1 << 20))
    sock = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    sock.sendall(b"a LOGIN alice alice-password\r\nb SELECT INBOX\r\nc FETCH 1:* BODY[]\r\n")
    sock.recv(65536)
    sock.close()  # mid-answer: the worker drops the FETCH and the session
    m = login(imap)
    m.select("INBOX")
    assert len(fetch_ok(m, "1:*", "(FLAGS)")) == 8
    m.logout()
    imap.stop(imap.proc)  # a clean exit, and LeakSanitizer finds the dropped FETCH freed


# ---- Bad input ----

def test_bad_input_answered(mailbox):
    m = login(mailbox)
    m.select("INBOX")
    for items in ("(BODY[0])", "(BODY[1.MIME.TEXT])", "(BINARY[HEADER])", "(BODY[]<5>)",
                  "(BODY[]<1.0>)", "(NOSUCH)", "(BODY[HEADER.FIELDS ()])", "(BINARY.SIZE[1]<0.1>)"):
        with pytest.raises(imaplib.IMAP4.error):
            m.fetch("1", items)
        assert m.noop()[0] == "OK", items
    with pytest.raises(imaplib.IMAP4.error, match="out of range"):
        m.fetch("99", "FLAGS")
    deep = ".".join(["1"] * 300)
    with pytest.raises(imaplib.IMAP4.error):
        m.fetch("1", f"(BODY.PEEK[{deep}])")
    # A UID that does not exist is no error: nothing to show.
    typ, data = m.uid("FETCH", "999", "(FLAGS)")
    assert typ == "OK" and data == [None]
    assert m.noop()[0] == "OK"
    m.logout()
