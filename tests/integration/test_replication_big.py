"""A message of about 1 MiB or more reaches a passive copy (docs/replication.md). Its record is
a log frame longer than a LOG_DATA chunk, which the source ships in `partial` chunks
(docs/formats/replication.md, LOG_DATA). Inspection takes whole frames only, so the copy
gathers the pieces and inspects the frame once it is whole; before it did, every partial chunk
was rejected ("the range ends inside a frame") and the copy went Failed after three.
"""
import smtplib

import pytest

from lab import WAIT, wait_for
from test_replication import DB, caught_up, copy_status, dump, pair  # noqa: F401 (fixture)


# 1.25 MB: two pieces, the second ending the frame; 3.3 MB: pieces in the middle too.
@pytest.mark.parametrize("lines", [16000, 42000])
def test_message_over_a_chunk_reaches_the_copy(pair, tandem_bin, tandemctl, lines):
    a, ap, b, bp = pair
    c = smtplib.LMTP(a.addr, a.ports["lmtp"], timeout=WAIT)
    try:
        c.ehlo("client.test")
        c.mail("sender@example.org")
        assert c.rcpt("alice@example.test")[0] == 250
        body = ("y" * 76 + "\r\n") * lines  # one record longer than a 1 MiB chunk
        assert c.data(f"Subject: big\r\n\r\n{body}".encode())[0] == 250
    finally:
        c.close()

    def done():
        st = copy_status(tandemctl, b)
        assert st["state"] != "Failed", st["message"]
        return caught_up(tandemctl, a, b)

    wait_for(done, "B's copy holding the large message")
    assert dump(tandem_bin, b.datadir / "db" / DB) == dump(tandem_bin, a.datadir / "db" / DB)
    b.stop(bp)
