#!/usr/bin/python3
"""Holds N IMAP connections in IDLE and proves they are live (bench/imap_idle/run runs it).

Each connection logs in, SELECTs INBOX and sends IDLE; when all are idling, the resident
memory of the server's processes (--pid NAME=PID, repeatable; --tree NAME=PID sums a process
and all its descendants, for servers with a process per connection) is read from /proc and
compared with what it was before the first connection. Then one message is delivered over
LMTP and every connection must receive "* <n+1> EXISTS": the time until the first and the
last did is printed. Prints one line of key=value figures.

Connections are spread over source addresses 127.<a>.<b>.<c> (--per-source per address), so
a server's per-address limit and the ephemeral ports of one address are not what is measured.
At most --concurrency logins are in progress at once, and the first login runs alone: the
servers check passwords with a slow hash and remember good logins, so the others are cheap.
Only the standard library (selectors: epoll).
"""
import argparse
import os
import resource
import selectors
import smtplib
import socket
import sys
import time

GREETING, LOGIN, SELECT, IDLE_SENT, IDLING, PUSHED = range(6)


class Conn:
    __slots__ = ("sock", "state", "buf", "exists", "pushed_at")

    def __init__(self, sock):
        self.sock = sock
        self.state = GREETING
        self.buf = b""
        self.exists = None
        self.pushed_at = None


def pss_kib(pid):
    """Proportional set size: resident pages, each shared one divided among its sharers, so
    a sum over processes counts shared libraries and copy-on-write pages once."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ms(pid):
    """CPU time (user + system) pid has used, all its threads, in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def memory(pids, trees):
    """{name: (KiB proportional set size, processes)}."""
    out = {}
    for name, pid in pids:
        out[name] = (pss_kib(pid), 1)
    for name, pid in trees:
        total = n = 0
        for p in descendants(pid):
            try:
                total += pss_kib(p)
                n += 1
            except OSError:
                pass
        out[name] = (total, n)
    return out


def source_address(i, per_source, first):
    j = first + i // per_source
    return f"127.{100 + j // 64516}.{j // 254 % 254 + 1}.{j % 254 + 1}"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lmtp-port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--rcpt", required=True, help="the user's address, for the LMTP delivery")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--per-source", type=int, default=100)
    p.add_argument("--first-source", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--pid", action="append", default=[], help="NAME=PID")
    p.add_argument("--tree", action="append", default=[], help="NAME=PID")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--messages", type=int, default=0,
                   help="deliver this many messages to INBOX first (a session's view grows with it)")
    return p.parse_args()


class Load:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.started = 0
        self.in_progress = 0
        self.idling = 0
        self.pushed = 0
        self.refused = 0
        self.first_login_done = False

    def start_one(self):
        i = self.started
        self.started += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((source_address(i, self.a.per_source, self.a.first_source), 0))
        s.setblocking(False)
        s.connect_ex((self.a.host, self.a.port))
        c = Conn(s)
        self.conns.append(c)
        self.in_progress += 1
        self.sel.register(s, selectors.EVENT_READ, c)

    def fill(self):
        limit = self.a.concurrency if self.first_login_done else 1
        while self.started < self.a.connections and self.in_progress < limit:
            self.start_one()

    def send(self, c, line):
        c.sock.sendall(line)  # short lines on a fresh socket: the send buffer takes them

    def on_line(self, c, line):
        if c.state == GREETING:
            if not line.startswith(b"* OK"):
                sys.exit(f"idle_load: refused at connect: {line!r}")
            self.send(c, f"a LOGIN {self.a.user} {self.a.password}\r\n".encode())
            c.state = LOGIN
        elif c.state == LOGIN and line.startswith(b"a "):
            if not line.startswith(b"a OK"):
                # A busy password check says "try again": do, a little later.
                self.refused += 1
                time.sleep(0.01)
                self.send(c, f"a LOGIN {self.a.user} {self.a.password}\r\n".encode())
                return
            self.first_login_done = True
            self.send(c, b"b SELECT INBOX\r\n")
            c.state = SELECT
        elif c.state == SELECT:
            if line.endswith(b" EXISTS"):
                c.exists = int(line.split()[1])
            elif line.startswith(b"b "):
                if not line.startswith(b"b OK") or c.exists is None:
                    sys.exit(f"idle_load: SELECT failed: {line!r}")
                self.send(c, b"c IDLE\r\n")
                c.state = IDLE_SENT
        elif c.state == IDLE_SENT and line.startswith(b"+"):
            c.state = IDLING
            self.idling += 1
            self.in_progress -= 1
        elif c.state == IDLING and line == f"* {c.exists + 1} EXISTS".encode():
            c.state = PUSHED
            c.pushed_at = time.monotonic()
            self.pushed += 1

    def on_readable(self, c):
        try:
            data = c.sock.recv(65536)
        except ConnectionError as e:
            sys.exit(f"idle_load: connection lost: {e}")
        if not data:
            sys.exit(f"idle_load: the server closed a connection (state {c.state}): "
                     f"{c.buf[-200:]!r}")
        c.buf += data
        while b"\r\n" in c.buf:
            line, c.buf = c.buf.split(b"\r\n", 1)
            self.on_line(c, line)

    def run_until(self, pred, deadline):
        while not pred():
            if time.monotonic() > deadline:
                sys.exit(f"idle_load: timed out: {self.idling} idling, {self.pushed} pushed "
                         f"of {self.a.connections}")
            self.fill()
            for key, _ in self.sel.select(timeout=1.0):
                self.on_readable(key.data)


def deliver(a, n=1):
    c = smtplib.LMTP(a.host, a.lmtp_port, timeout=60)
    for i in range(n):
        c.sendmail("bench@example.org", [a.rcpt],
                   f"From: bench@example.org\r\nSubject: idle bench {i}\r\n\r\nhello\r\n".encode())
    c.quit()


def main():
    a = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.connections + 64
    if soft < want:
        if hard < want:
            sys.exit(f"idle_load: {a.connections} connections need {want} file descriptors; "
                     f"the hard limit is {hard} (raise it: ulimit -Hn, limits.conf)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    pids = [tuple(x.split("=", 1)) for x in a.pid]
    pids = [(n, int(p)) for n, p in pids]
    trees = [(n, int(p)) for n, p in (x.split("=", 1) for x in a.tree)]
    if a.messages:
        deliver(a, a.messages)
    before = memory(pids, trees)
    load = Load(a)
    t0 = time.monotonic()
    load.run_until(lambda: load.idling == a.connections, t0 + a.timeout)
    setup_s = time.monotonic() - t0
    time.sleep(1.0)  # let the servers settle (freed login state, lazily trimmed buffers)
    after = memory(pids, trees)
    cpu0 = {name: cpu_ms(pid) for name, pid in pids}
    t1 = time.monotonic()
    deliver(a)
    load.run_until(lambda: load.pushed == a.connections, t1 + a.timeout)
    # The push's CPU per --pid process, from the delivery to the last EXISTS (10 ms ticks).
    cpu = {name: cpu_ms(pid) - cpu0[name] for name, pid in pids}
    times = sorted(c.pushed_at - t1 for c in load.conns)
    out = [f"connections={a.connections}", f"messages={a.messages}", f"setup_s={setup_s:.1f}",
           f"login_retries={load.refused}"]
    for name in after:
        kib, n = after[name]
        delta = kib - before[name][0]
        out.append(f"{name}_pss_kib={kib} {name}_processes={n} "
                   f"{name}_kib_per_conn={delta / a.connections:.1f}")
        if name in cpu:
            out.append(f"{name}_push_cpu_ms={cpu[name]:.0f}")
    out.append(f"push_first_ms={times[0] * 1000:.0f} push_p50_ms={times[len(times) // 2] * 1000:.0f}"
               f" push_last_ms={times[-1] * 1000:.0f} pushed={load.pushed}")
    print(" ".join(out), flush=True)
    for c in load.conns:
        c.sock.close()


if __name__ == "__main__":
    main()
