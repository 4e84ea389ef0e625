"""The IDLE keepalive against a real tandemd: "* OK Still here" every [imap] idle_keepalive
while a session is in IDLE, so NAT boxes keep the connection; nothing when it is 0, nothing
outside IDLE. A short interval is configured: the default (2 minutes) is the same code."""
from test_imap import imap  # noqa: F401 (a fixture)
from test_imap_idle import Raw
from test_imap_limits import with_imap_limits


def test_idle_keepalive(imap):
    with_imap_limits(imap, "idle_keepalive = 500ms")
    c = Raw(imap)
    c.login_select()
    c.idle()
    for _ in range(2):
        c.wait_line(lambda l: l == "* OK Still here", "keepalive")
    reply, _ = c.done()
    assert reply.split()[1] == "OK"
    # Outside IDLE nothing is sent unasked.
    c.quiet(1.5)
    c.close()


def test_idle_keepalive_off(imap):
    with_imap_limits(imap, "idle_keepalive = 0s")
    c = Raw(imap)
    c.login_select()
    c.idle()
    c.quiet(1.5)
    reply, _ = c.done()
    assert reply.split()[1] == "OK"
    c.close()
