"""A raw HTTP/2 client for tests that need what grpcio will not send: a tiny window, more streams
than the server allows, garbage, a bad preface, an oversized header block, a lying length prefix.
It speaks just enough HTTP/2 to read one answer (hpack for headers)."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

import hpack

from mlserve.server.transport.http2 import frames as f


@dataclass
class Answer:
    headers: list[dict[str, str]] = field(default_factory=list)  # each header block, in order
    data: bytes = b""
    reset: int | None = None  # RST_STREAM error code
    goaway: int | None = None  # GOAWAY error code
    closed: bool = False  # the server closed the connection

    @property
    def status(self) -> str | None:
        """grpc-status of the last header block that has one."""
        for block in reversed(self.headers):
            if "grpc-status" in block:
                return block["grpc-status"]
        return None

    @property
    def message(self) -> str:
        return next((b.get("grpc-message", "") for b in reversed(self.headers) if "grpc-status" in b), "")


class RawH2:
    def __init__(self, port: int, *, window: int = 65535, preface: bytes = f.PREFACE, settings: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.window = window
        self.buf = b""
        self.server_settings: dict[int, int] = {}
        out = preface
        if settings:
            out += f.settings({f.INITIAL_WINDOW_SIZE: window})
        self.sock.sendall(out)

    def close(self) -> None:
        self.sock.close()

    def headers(self, stream: int, path: str, *, end_stream: bool = False, extra: dict | None = None) -> None:
        """Open `stream` (an OSError when the server has closed the connection)."""
        pairs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                 ("content-type", "application/grpc"), ("te", "trailers"), *(extra or {}).items()]
        self.send(f.HEADERS, f.END_HEADERS | (f.END_STREAM if end_stream else 0), stream, self.encoder.encode(pairs))

    def send(self, kind: int, flags: int, stream: int, payload: bytes = b"") -> None:
        self.sock.sendall(f.frame(kind, flags, stream, payload))

    def message(self, stream: int, payload: bytes, declared: int | None = None) -> None:
        body = b"\x00" + (len(payload) if declared is None else declared).to_bytes(4, "big") + payload
        for i in range(0, len(body), 16384):
            last = i + 16384 >= len(body)
            self.send(f.DATA, f.END_STREAM if last else 0, stream, body[i:i + 16384])

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        length = int.from_bytes(self.buf[:3], "big")
        kind, flags, stream = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
        return kind, flags, stream, payload

    def answer(self, stream: int, *, messages: int | None = None) -> Answer:
        """Read until `stream` ends (or `messages` gRPC messages arrived), giving back window as
        DATA arrives (so a tiny window still gets the whole answer)."""
        out = Answer()
        while True:
            got = self.read_frame()
            if got is None:
                out.closed = True
                return out
            kind, flags, sid, payload = got
            if kind == f.SETTINGS and not flags & f.ACK:
                self.server_settings.update(f.parse_settings(payload))
                try:
                    self.send(f.SETTINGS, f.ACK, 0)
                except OSError:  # the server closed already: its SETTINGS came before its verdict
                    pass
            elif kind == f.GOAWAY:
                out.goaway = int.from_bytes(payload[4:8], "big")
            elif sid != stream:
                continue
            elif kind == f.HEADERS:
                out.headers.append({k.decode(): v.decode() for k, v in self.decoder.decode(payload, raw=True)})
            elif kind == f.DATA:
                out.data += payload
                if payload:
                    try:
                        self.send(f.WINDOW_UPDATE, 0, 0, len(payload).to_bytes(4, "big"))
                        self.send(f.WINDOW_UPDATE, 0, stream, len(payload).to_bytes(4, "big"))
                    except OSError:  # the server closed already (after a drain)
                        pass
                if messages is not None and _count(out.data) >= messages:
                    return out
            elif kind == f.RST_STREAM:
                out.reset = int.from_bytes(payload, "big")
                return out
            if flags & f.END_STREAM and kind in (f.HEADERS, f.DATA):
                return out


def _count(data: bytes) -> int:
    n = pos = 0
    while len(data) - pos >= 5 and len(data) - pos - 5 >= int.from_bytes(data[pos + 1:pos + 5], "big"):
        pos += 5 + int.from_bytes(data[pos + 1:pos + 5], "big")
        n += 1
    return n


def messages(data: bytes) -> list[bytes]:
    """The length-prefixed gRPC messages of `data`."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1:pos + 5], "big")
        out.append(data[pos + 5:pos + 5 + length])
        pos += 5 + length
    return out
