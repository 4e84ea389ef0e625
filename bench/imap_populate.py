"""Fills the mailboxes bench/imap measures: --messages per user for user1..userN, over LMTP,
the same bytes for every server. A realistic mix: plain text, multipart/alternative, a
base64 attachment; sizes 2 KiB to 200 KiB; ten senders (sender0..sender9@bench.test, which
the load's SEARCH FROM looks for). Four connections in parallel; any refusal stops it."""
import argparse
import base64
import smtplib
import sys
import threading
from email.utils import formatdate

LINE = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


def body_text(size):
    return LINE * max(1, size // len(LINE))


def message(user, n):
    sender = f"sender{n % 10}@bench.test"
    head = (f"From: Sender {n % 10} <{sender}>\r\nTo: user{user}@bench.test\r\n"
            f"Subject: message {n} for user{user}\r\n"
            f"Date: {formatdate(1700000000 + n * 3600)}\r\n"
            f"Message-ID: <{user}.{n}@bench.test>\r\nMIME-Version: 1.0\r\n")
    kind = n % 5
    if kind < 3:  # plain text, 2 to 20 KiB
        return head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + \
            body_text(2048 + (n * 997) % 18432)
    if kind == 3:  # multipart/alternative
        text = body_text(4096)
        return (head + 'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
                "--b1\r\nContent-Type: text/plain\r\n\r\n" + text +
                "--b1\r\nContent-Type: text/html\r\n\r\n<html><body><p>" + text +
                "</p></body></html>\r\n--b1--\r\n")
    blob = bytes((i * 31 + n) % 256 for i in range(50000 + (n * 1499) % 100000))
    b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
            "--b2\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            "--b2\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n" + b64 +
            "--b2--\r\n")


def deliver(args, users, errors):
    try:
        c = smtplib.LMTP(args.host, args.port, timeout=60)
        for user in users:
            for n in range(args.messages):
                refused = c.sendmail("bench@bench.test", [f"user{user}@bench.test"],
                                     message(user, n).encode())
                if refused:
                    raise RuntimeError(f"refused: {refused}")
        c.quit()
    except Exception as e:  # reported by the main thread
        errors.append(e)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--messages", type=int, default=40)
    args = p.parse_args()
    errors = []
    threads = [threading.Thread(target=deliver,
                                args=(args, range(1 + i, args.users + 1, 4), errors))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"imap_populate: {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
