"""In-process HTTP/2 connections for the transport tests: a recording transport, an echo app,
and a connection wired to both (no sockets), shared by the transport, differential and
security tests."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import hpack

from mlserve.server.transport.budget import InflightBudget
from mlserve.server.transport.http2 import H2Config, H2Connection
from mlserve.server.transport.http2 import frames as f


class Recorder:
    def __init__(self) -> None:
        self.data, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def set_write_buffer_limits(self, high: int) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def frames(self) -> list[tuple[int, int, int, bytes]]:
        out, buf = [], bytes(self.data)
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big"), buf[9:9 + n]))
            buf = buf[9 + n:]
        self.data.clear()
        return out


class Echo:
    """Answers each request with its own body."""

    def request(self, conn: H2Connection, stream: Any) -> None: ...

    def body(self, conn: H2Connection, stream: Any) -> None:
        conn.respond(stream, [(b":status", b"200")], bytes(stream.body), [(b"done", b"1")])

    def refuse(self, conn: H2Connection, stream: Any, why: str) -> None:
        conn.respond(stream, [(b":status", b"200"), (b"why", why.encode())], None)


def _connection(**config: Any) -> tuple[H2Connection, Recorder, Any]:
    cfg = H2Config(**config)
    server = SimpleNamespace(app=Echo(), config=cfg, connections=set(), unused={}, idle={},
                             budget=InflightBudget(cfg.max_inflight_bytes), stopping=False)
    conn, transport = H2Connection(server), Recorder()
    conn.connection_made(transport)
    conn.data_received(f.PREFACE)
    transport.frames()
    return conn, transport, server


def _request(conn: H2Connection, sid: int, body: bytes, encoder: hpack.Encoder) -> None:
    block = encoder.encode([(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")])
    padded = bytes((3,)) + b"\x00\x00\x00\x00\x10" + block[:5] + b"pad"  # PADDED + PRIORITY
    conn.data_received(f.frame(f.HEADERS, f.PADDED | f.PRIORITY, sid, padded)
                       + f.frame(f.CONTINUATION, f.END_HEADERS, sid, block[5:]))
    chunks = [body[i:i + 16000] for i in range(0, len(body), 16000)]
    conn.data_received(b"".join(f.frame(f.DATA, f.END_STREAM if i == len(chunks) - 1 else 0, sid, c)
                                for i, c in enumerate(chunks)))
