"""A man-in-the-middle for replication (docs/formats/replication.md) that corrupts log bytes in
transit in a way only the copy's log inspection can see.

The channel is TLS, so flipping bits on the wire only breaks TLS (a network failure). This
proxy instead terminates TLS on both sides, with certificates from a CA of its own that the
copy and the active are told to trust: the copy connects to the proxy as if to its active, the
proxy connects on to the real source with a client certificate of the same CA, and forwards
the copy's HELLO (server name and key) unchanged. In the source -> copy direction it decodes
replication frames; in a chosen number of uncompressed LOG_DATA chunks it flips one byte of
the log data and re-computes the frame's CRC32C, so the frame decodes cleanly and the damage
reaches store_copy_receive, which must reject it (a record frame's own checksum).

Only the standard library and the `openssl` command line tool.
"""
import asyncio
import struct
import subprocess
import threading

from lab import WAIT


def _crc32c_table():
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value: the table is right

LOG_DATA = 16
HEADER = 16  # length, version, type, request id, flags
_FIXED = {1: 2, 2: 4, 3: 8}  # U16, U32, U64
LOG_HEADER_SIZE = 4096  # a generation's header block: records start after it


def log_data_fields(frame):
    """LOG_DATA's fields in order, as (value, start) with start the offset of the value in
    the frame (for data: of its bytes). Walks the tagged fields rather than hard-coding where
    each one sits."""
    out = []
    pos = HEADER
    end = len(frame) - 4
    while pos < end:
        tag = frame[pos]
        pos += 1
        if tag in _FIXED:
            n = _FIXED[tag]
            out.append((int.from_bytes(frame[pos:pos + n], "little"), pos))
            pos += n
        elif tag in (5, 6):
            (n,) = struct.unpack_from("<I", frame, pos)
            out.append((bytes(frame[pos + 4:pos + 4 + n]), pos + 4))
            pos += 4 + n
        else:
            raise ValueError(f"unknown field tag {tag}")
    return out


class CorruptingProxy:
    """Listens on listen_addr (a free port), forwards to upstream (host, port). corrupt: how
    many of the next uncompressed LOG_DATA chunks with record bytes to damage (None: every
    one). corrupted: (generation, offset) of each chunk damaged, in order."""

    def __init__(self, listen_addr, upstream, server_ctx, client_ctx):
        self.listen_addr = listen_addr
        self.upstream = upstream
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.corrupt = 0
        self.corrupted = []
        self.connections = 0
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(WAIT):
            raise RuntimeError("the corrupting proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, self.listen_addr, 0, ssl=self.server_ctx))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def close(self):
        def stop():
            self._server.close()
            for t in asyncio.all_tasks(self._loop):
                t.cancel()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=WAIT)

    def _damage(self, frame):
        """Flips one log byte of an uncompressed LOG_DATA chunk that holds record bytes (the
        last payload byte of its last frame) and re-computes the replication frame's CRC."""
        if self.corrupt == 0:
            return frame
        (generation, _), (offset, _), _, (compression, _), *_, (data, start) = \
            log_data_fields(frame)
        if compression != 0 or offset + len(data) <= LOG_HEADER_SIZE:
            return frame
        frame = bytearray(frame)
        # A chunk ends on a log frame boundary, and a log frame ends with its 4-byte CRC32C:
        # the byte before it is the last byte of that frame's payload.
        frame[start + len(data) - 5] ^= 0x5A
        struct.pack_into("<I", frame, len(frame) - 4, crc32c(frame[:-4]))
        if self.corrupt is not None:
            self.corrupt -= 1
        self.corrupted.append((generation, offset))
        return bytes(frame)

    async def _to_copy(self, reader, writer):
        buf = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                (length,) = struct.unpack_from("<I", buf)
                if len(buf) < length:
                    break
                frame, buf = buf[:length], buf[length:]
                if struct.unpack_from("<H", frame, 6)[0] == LOG_DATA:
                    frame = self._damage(frame)
                writer.write(frame)
            await writer.drain()

    async def _to_source(self, reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def _serve(self, copy_r, copy_w):
        self.connections += 1
        try:
            src_r, src_w = await asyncio.open_connection(
                *self.upstream, ssl=self.client_ctx, server_hostname=self.upstream[0])
        except OSError:
            copy_w.close()
            return
        tasks = [asyncio.ensure_future(self._to_copy(src_r, copy_w)),
                 asyncio.ensure_future(self._to_source(copy_r, src_w))]
        try:
            # Either side closing ends the session, as a real TCP path would.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in (copy_w, src_w):
                w.close()


def make_ca(dirpath, proxy_addr):
    """A test CA and, signed by it, a server certificate for proxy_addr (IP subjectAltName, as
    the copy checks the address it connects to) and a client certificate for the proxy's leg
    to the source. Returns {"ca", "cert", "key"} paths."""
    ca_key, ca = dirpath / "proxy-ca.key", dirpath / "proxy-ca.pem"
    key, cert = dirpath / "proxy.key", dirpath / "proxy.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1")
    for argv in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj",
         "/CN=corrupting proxy test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-x509", *ec, "-CA", ca, "-CAkey", ca_key, "-keyout", key,
         "-out", cert, "-subj", "/CN=corrupting proxy", "-addext",
         f"subjectAltName=IP:{proxy_addr}", "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "extendedKeyUsage=serverAuth,clientAuth"]):
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
    return {"ca": ca, "cert": cert, "key": key}
