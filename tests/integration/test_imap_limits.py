"""IMAP limits against a real tandemd: failed logins answered after a growing delay that
holds no other session up, a connection closed after too many failures, connections per
client address refused with BYE [UNAVAILABLE] at the greeting, and lines, literals and
pipelined commands beyond the parser's limits answered with a tagged refusal while the
session goes on."""
import base64
import socket
import time

import pytest

from lab import WAIT, wait_for
from test_imap import imap  # noqa: F401 (a fixture)
from test_imap_ext import Raw


def with_imap_limits(server, text):
    """Restarts server with an [imap] section."""
    server.stop(server.proc)
    server.extra_conf = f"\n[imap]\n{text}\n"
    server.write_conf(server=server.name, level="info")
    server.proc = server.start()
    server.started(server.proc)
    server.wait_api()


def timed(c, text):
    start = time.monotonic()
    untagged, done = c.cmd(text)
    return time.monotonic() - start, untagged, done


def test_failed_logins_wait_longer_each_time(imap):
    c = Raw(imap, user=None)
    other = Raw(imap, user=None)
    delays = []
    for _ in range(3):
        took, _, done = timed(c, 'LOGIN alice "wrong"')
        assert done.startswith("NO [AUTHENTICATIONFAILED]")
        delays.append(took)
    # 250 ms, 500 ms, 1 s (the address's and the user's counts grow together).
    assert delays[0] >= 0.25 and delays[1] >= 0.5 and delays[2] >= 1.0, delays
    # A held answer holds nobody else: another session is served while one waits.
    c.sock.sendall(b't99 LOGIN alice "wrong"\r\n')
    took, _, done = timed(other, "CAPABILITY")
    assert done.startswith("OK") and took < 0.5, took
    assert c.line().startswith("t99 NO [AUTHENTICATIONFAILED]")
    # An unknown user is delayed like a wrong password, and so is AUTHENTICATE PLAIN.
    took, _, done = timed(other, 'LOGIN nobody "x"')
    assert done.startswith("NO [AUTHENTICATIONFAILED]") and took >= 0.25
    plain = base64.b64encode(b"\0alice\0wrong").decode()
    took, _, done = timed(other, f"AUTHENTICATE PLAIN {plain}")
    assert done.startswith("NO [AUTHENTICATIONFAILED]") and took >= 0.25
    # A success forgets the failures: the next wrong password waits the least again... for
    # the address; the user's own count went too.
    c.ok('LOGIN alice "alice-password"')
    took, _, done = timed(other, 'LOGIN alice "wrong"')
    assert done.startswith("NO [AUTHENTICATIONFAILED]") and 0.25 <= took < 1.0, took
    c.close()
    other.close()


def test_too_many_failures_close_the_connection(imap):
    with_imap_limits(imap, "max_login_failures = 2")
    c = Raw(imap, user=None)
    _, _, done = timed(c, 'LOGIN bob "wrong"')
    assert done.startswith("NO [AUTHENTICATIONFAILED]")
    _, _, done = timed(c, 'LOGIN bob "wrong"')
    assert done.startswith("NO [AUTHENTICATIONFAILED]")
    bye = c.line()
    assert bye == "* BYE Too many failed logins", bye
    assert c.f.readline() == b""  # closed
    # A shutdown while an answer is held frees the session (LeakSanitizer checks at stop).
    d = Raw(imap, user=None)
    d.sock.sendall(b't1 LOGIN bob "wrong"\r\n')
    wait_for(lambda: "failed (1 on this connection), answered in 1000 ms" in imap.output(),
             "the third failure from this address held")
    imap.stop(imap.proc)
    d.close()


def test_connections_per_address(imap):
    with_imap_limits(imap, "max_per_address = 3")
    held = [Raw(imap, user=None) for _ in range(3)]
    s = socket.create_connection((imap.addr, imap.ports["imap"]), timeout=WAIT)
    assert s.makefile("rb").readline().startswith(b"* BYE [UNAVAILABLE]")
    s.close()
    held.pop().close()

    def admitted():
        try:
            c = Raw(imap)
            c.ok("NOOP")
            c.close()
            return True
        except AssertionError:
            return False
    deadline = time.monotonic() + WAIT
    while not admitted():  # the server hears of the close a moment later
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for c in held:
        c.close()


def test_oversized_input_is_refused_and_the_session_goes_on(imap):
    c = Raw(imap)
    # A line over the parser's 64 KiB: BAD, then the next command is read as usual.
    c.sock.sendall(b"t1 NOOP " + b"x" * (70 * 1024) + b"\r\n")
    assert c.line().startswith(("t1 BAD", "* BAD"))
    c.ok("NOOP")
    # A literal over 64 KiB where no message may go: refused instead of "+".
    _, done = c.cmd("LOGIN {100000}")
    assert done.startswith("BAD [TOOBIG]")
    c.ok("NOOP")
    # A message over APPENDLIMIT: NO [TOOBIG] before the client sends a byte.
    _, done = c.cmd("APPEND INBOX {999999999}")
    assert done.startswith("NO [TOOBIG]")
    c.ok("NOOP")
    c.close()


def test_pipelined_commands_are_answered_in_order(imap):
    c = Raw(imap)
    n = 3000
    c.sock.sendall(b"".join(f"p{i} NOOP\r\n".encode() for i in range(n)))
    for i in range(n):
        assert c.line() == f"p{i} OK NOOP completed"
    c.ok("SELECT INBOX")
    c.close()
