"""`H2Connection`: one HTTP/2 connection (prior knowledge, as gRPC clients speak it) as an
asyncio protocol. It reads frames, keeps the stream table, both directions' flow control and
the limits of `H2Config`, and hands each stream's request to an `H2App`:

    app.request(conn, stream)   headers arrived (`stream.headers`, a dict of bytes)
    app.body(conn, stream)      the request ended (`stream.body`, all its DATA)
    app.refuse(conn, stream, why)  the body outgrew `max_body_bytes` or the in-flight budget

The app answers with `respond` (a whole answer) or `send_headers`/`send_data`/`send_trailers`,
from the loop. DATA that does not fit the peer's windows waits in the stream and goes out as
WINDOW_UPDATEs arrive. A protocol error answers GOAWAY and closes this connection only.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from mlserve.server.transport.budget import InflightBudget
from mlserve.server.transport.http2 import frames as f
from mlserve.server.transport.http2.config import H2Config
from mlserve.server.transport.http2.stream import Headers, Stream  # noqa: F401 - re-exported
from mlserve.server.transport.http2.writer import StreamWriter

log = logging.getLogger("mlserve.server.h2")


class H2App(Protocol):
    def request(self, conn: H2Connection, stream: Stream) -> None: ...

    def body(self, conn: H2Connection, stream: Stream) -> None: ...

    def refuse(self, conn: H2Connection, stream: Stream, why: str) -> None: ...


class Owner(Protocol):
    """What an `H2Connection` needs of the server that accepted it (`server.H2Server`)."""

    app: H2App
    config: H2Config
    budget: InflightBudget
    connections: set[H2Connection]
    stopping: bool


class H2Connection(StreamWriter, asyncio.Protocol):
    def __init__(self, server: Owner) -> None:
        import hpack

        self.server, self.app, self.config = server, server.app, server.config
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = self.config.max_header_list_bytes
        self.header_cache: dict[bytes, dict[bytes, bytes]] = {}
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_done = False
        self.streams: dict[int, Stream] = {}
        self.last_id = 0
        self.continued: tuple[int, int, bytearray] | None = None
        self.peer_window, self.peer_frame_size = f.DEFAULT_WINDOW, f.DEFAULT_FRAME_SIZE
        self.send_window = f.DEFAULT_WINDOW  # the connection's, toward the peer
        self.recv_window, self.consumed = self.config.connection_window, 0
        self.table_update: bytes = b""  # an HPACK table size update owed at our next header block
        self.draining = False
        self.opened = self.last_active = time.monotonic()
        self._out: list[bytes] = []
        self._reading = False
        self.write_paused = False
        self.flood_counts: dict[str, int] = {}
        self.flood_since = self.opened

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.server.stopping or (len(self.server.connections) >= self.config.max_connections
                                    and not self.server.make_room()):
            transport.close()
            self.transport = None
            return
        self.server.connections.add(self)
        transport.set_write_buffer_limits(high=self.config.max_unsent_bytes)
        c = self.config
        transport.write(f.settings({f.MAX_CONCURRENT_STREAMS: c.max_concurrent_streams,
                                    f.INITIAL_WINDOW_SIZE: c.initial_window,
                                    f.MAX_HEADER_LIST_SIZE: c.max_header_list_bytes, f.ENABLE_PUSH: 0})
                        + f.window_update(0, c.connection_window - f.DEFAULT_WINDOW))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            self._close(stream, cancelled=True)

    def pause_writing(self) -> None:  # the client takes our answers slower than we write them
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._reading = True
        try:
            self._read(data)
        except f.ConnectionError_ as e:
            self.fail(e.code, str(e))
        except Exception as e:  # noqa: BLE001 - hostile bytes close this connection only
            import hpack

            code = f.COMPRESSION_ERROR if isinstance(e, hpack.HPACKError) else f.PROTOCOL_ERROR
            log.debug("HTTP/2 connection failed", exc_info=e)
            self.fail(code, f"{type(e).__name__}: {e}")
        finally:
            self._reading = False
            self.flush()

    def fail(self, code: int, reason: str) -> None:
        """GOAWAY(code) and close: a connection error."""
        log.debug("HTTP/2 connection error %d: %s", code, reason)
        if self.transport is not None:
            self._out.append(f.goaway(self.last_id, code, reason.encode("utf-8", "replace")[:256]))
            self.flush()
            self.transport.close()

    def flush(self) -> None:
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _flood(self, what: str) -> None:
        """Count one `what` frame (an `H2Config.max_<what>` limit) in this window; past the
        limit: GOAWAY ENHANCE_YOUR_CALM and close."""
        limit = getattr(self.config, "max_" + what)
        if not limit:
            return
        now = time.monotonic()
        if now - self.flood_since > self.config.flood_window:
            self.flood_counts.clear()
            self.flood_since = now
        n = self.flood_counts[what] = self.flood_counts.get(what, 0) + 1
        if n > limit:
            log.info("HTTP/2 flood: more than %d %s in %g s; closing", limit, what, self.config.flood_window)
            raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, f"more than {limit} {what.replace('_', ' ')} "
                                                          f"in {self.config.flood_window:g} s")

    # -- reading ---------------------------------------------------------------------------

    def _read(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.preface_done:
            n = min(len(buf), len(f.PREFACE))
            if buf[:n] != f.PREFACE[:n]:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad connection preface")
            if n < len(f.PREFACE):
                return
            del buf[:n]
            self.preface_done = True
        pos, end, limit = 0, len(buf), self.config.max_frame_size
        while end - pos >= 9 and self.transport is not None:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if length > limit:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            if end - pos - 9 < length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            if self.continued is not None and (kind != f.CONTINUATION or sid != self.continued[0]):
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "expected CONTINUATION")
            self._frame(kind, flags, sid, payload)
        del buf[:pos]

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if kind == f.DATA:
            self._data(flags, sid, payload)
        elif kind == f.HEADERS:
            if not sid:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on stream 0")
            payload = f.unpad(flags, payload)
            if flags & f.PRIORITY:
                if len(payload) < 5:
                    raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "HEADERS shorter than its priority")
                _check_dependency(sid, payload)
                payload = payload[5:]
            self._block(sid, flags, bytearray(payload))
        elif kind == f.CONTINUATION:
            if self.continued is None:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            sid, first_flags, block = self.continued
            block += payload
            self._block(sid, first_flags | (flags & f.END_HEADERS), block)
        elif kind == f.SETTINGS:
            self._settings(flags, sid, payload)
        elif kind == f.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == f.PING:
            if len(payload) != 8 or sid:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR if sid == 0 else f.PROTOCOL_ERROR, "bad PING")
            if not flags & f.ACK:
                self._flood("pings")
                self._out.append(f.frame(f.PING, f.ACK, 0, payload))
        elif kind == f.RST_STREAM:
            if not sid or len(payload) != 4:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad RST_STREAM")
            stream = self.streams.get(sid)
            if stream is not None:
                self._flood("client_resets")
                self._close(stream, cancelled=True)
            elif sid > self.last_id:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            else:
                self._flood("closed_stream_frames")
        elif kind == f.GOAWAY:
            self.draining = True  # the peer opens nothing new; what is open finishes
            if not self.streams and self.transport is not None:
                self.transport.close()
        elif kind == f.PRIORITY_FRAME:
            if len(payload) != 5:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "bad PRIORITY")
            if not sid:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            self._flood("priority")
            _check_dependency(sid, payload)
        elif kind == f.PUSH_PROMISE:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        else:  # other frame types are ignored (§4.1), up to a limit
            self._flood("unknown_frames")

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        self.recv_window -= len(payload)
        if self.recv_window < 0:
            raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "DATA past the connection window")
        self.consumed += len(payload)
        if self.consumed >= self.config.connection_window // 2:
            self._out.append(f.window_update(0, self.consumed))
            self.recv_window += self.consumed
            self.consumed = 0
        stream = self.streams.get(sid)
        if stream is None or stream.remote_done:
            if sid > self.last_id:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on an idle stream")
            self._flood("closed_stream_frames")
            return  # a stream we reset or answered already
        body = f.unpad(flags, payload)
        if not body and not flags & f.END_STREAM:
            self._flood("empty_data")
        if not stream.discard:
            stream.body += body
            within = self.server.budget.charge(len(body))
            if len(stream.body) > self.config.max_body_bytes:
                self._refuse(stream, f"request of more than {self.config.max_body_bytes} bytes")
            elif not within:
                self._refuse(stream, f"server is over its limit of {self.config.max_inflight_bytes} "
                                     "request bytes in flight")
        if flags & f.END_STREAM:
            self._request_done(stream)
            return
        stream.unacked += len(payload)
        if stream.unacked >= self.config.initial_window // 2:
            self._out.append(f.window_update(sid, stream.unacked))
            stream.unacked = 0

    def _request_done(self, stream: Stream) -> None:
        """The client's half of `stream` has ended: hand the request to the app (or close a refused one)."""
        stream.remote_done = True
        if stream.discard:
            self._maybe_close(stream)
        else:
            self.app.body(self, stream)

    def _refuse(self, stream: Stream, why: str) -> None:
        stream.discard = True
        self.server.budget.release(len(stream.body))
        stream.body = bytearray()
        self.app.refuse(self, stream, why)

    def _block(self, sid: int, flags: int, block: bytearray) -> None:
        if len(block) > self.config.max_header_list_bytes:
            raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "header block over the limit")
        if not flags & f.END_HEADERS:
            self.continued = (sid, flags, block)
            return
        self.continued = None
        headers = self._decode(bytes(block))
        stream = self.streams.get(sid)
        if stream is not None:  # trailers of a request
            if stream.remote_done or not flags & f.END_STREAM:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on a half-closed stream")
            self._request_done(stream)
            return
        if not sid & 1 or sid <= self.last_id:
            raise f.ConnectionError_(f.PROTOCOL_ERROR if not sid & 1 else f.STREAM_CLOSED, "bad stream id")
        self.last_id = sid
        self.last_active = time.monotonic()
        if self.draining or len(self.streams) >= self.config.max_concurrent_streams:
            self._out.append(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        stream = Stream(sid, headers, self.peer_window)
        self.streams[sid] = stream
        self.app.request(self, stream)
        if flags & f.END_STREAM and not stream.closed:
            stream.remote_done = True
            self.app.body(self, stream)

    def _decode(self, block: bytes) -> dict[bytes, bytes]:
        # A block that leaves the dynamic table as it was decodes the same way until the table
        # changes: clients repeat their headers as index references, so most blocks hit. "As it
        # was" is the same newest entry object and count: with a full table, an insert that evicts
        # one entry keeps the count (issue #21), but the newest entry is then a new object. A
        # block that opens with a table size update is never kept (its replay must apply it).
        cached = self.header_cache.get(block)
        if cached is not None:
            return cached
        entries = self.decoder.header_table.dynamic_entries
        count, newest = len(entries), entries[0] if entries else None
        headers = dict(self.decoder.decode(block, raw=True))
        if len(entries) != count or (entries[0] if entries else None) is not newest:
            self.header_cache.clear()
        elif (len(self.header_cache) < self.config.hpack_cache_blocks
              and len(block) <= self.config.hpack_cache_block_bytes and block[:1] and block[0] & 0xE0 != 0x20):
            self.header_cache[block] = headers
        return headers

    def _settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        self._flood("settings")
        window = None
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                window = value  # applied once, the last value: a frame of thousands costs one pass
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= 2**24 - 1:
                    raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
                self.peer_frame_size = value
            elif key == f.HEADER_TABLE_SIZE:  # our blocks never index: announce the size, use none
                self.table_update = f.hpack_int(min(value, 4096), 5, 0x20)
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad ENABLE_PUSH")
        if window is not None and window != self.peer_window:
            delta, self.peer_window = window - self.peer_window, window
            for stream in self.streams.values():
                stream.window += delta
                if stream.window > f.MAX_WINDOW:
                    raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "a stream window past 2^31-1")
        self._out.append(f.frame(f.SETTINGS, f.ACK, 0))
        self._push_all()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not sid:
            if not increment or self.send_window + increment > f.MAX_WINDOW:
                raise f.ConnectionError_(f.FLOW_CONTROL_ERROR if increment else f.PROTOCOL_ERROR,
                                         "bad connection WINDOW_UPDATE")
            self.send_window += increment
            self._push_all()
            return
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.last_id:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            self._flood("closed_stream_frames")
            return
        if not increment or stream.window + increment > f.MAX_WINDOW:
            self._out.append(f.rst_stream(sid, f.FLOW_CONTROL_ERROR if increment else f.PROTOCOL_ERROR))
            self._close(stream, cancelled=True)
            return
        stream.window += increment
        self._push(stream)


def _check_dependency(sid: int, priority: bytes) -> None:
    """RFC 9113 §5.3.1: a stream cannot depend on itself."""
    if int.from_bytes(priority[:4], "big") & 0x7FFFFFFF == sid:
        raise f.ConnectionError_(f.PROTOCOL_ERROR, f"stream {sid} depends on itself")
