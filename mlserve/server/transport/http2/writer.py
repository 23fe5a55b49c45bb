"""The sending half of an HTTP/2 connection: header blocks (split into CONTINUATION at the
peer's SETTINGS_MAX_FRAME_SIZE), DATA within the connection's and the stream's send windows
(what does not fit waits in the stream until WINDOW_UPDATE), trailers, resets, GOAWAY drain.
Mixed into `H2Connection`, on the loop."""
from __future__ import annotations

import time
from typing import Any

from mlserve.server.transport.http2 import frames as f
from mlserve.server.transport.http2.stream import Headers, Stream


class StreamWriter:
    transport: Any
    streams: dict[int, Stream]
    server: Any
    _out: list[bytes]
    _reading: bool
    send_window: int
    peer_frame_size: int
    table_update: bytes
    draining: bool
    last_id: int
    last_active: float

    def flush(self) -> None: ...  # H2Connection's

    def respond(self, stream: Stream, headers: Headers | bytes, data: bytes | None,
                trailers: Headers | bytes = b"") -> None:
        """A whole answer: HEADERS, DATA (as the windows allow), trailers ending the stream.
        With `data` None, one HEADERS frame that ends the stream (e.g. gRPC's Trailers-Only)."""
        if stream.closed:
            return
        if data is None:
            self._header_frames(stream.id, self._encode(headers), end_stream=True)
            stream.local_done = True
            self._maybe_close(stream)
        else:
            self._header_frames(stream.id, self._encode(headers))
            stream.out += data
            stream.trailer = self._encode(trailers)
            self._push(stream)
        self._flush_unless_reading()

    def send_headers(self, stream: Stream, headers: Headers | bytes) -> None:
        if not stream.closed:
            self._header_frames(stream.id, self._encode(headers))
            self._flush_unless_reading()

    def send_data(self, stream: Stream, data: bytes) -> None:
        if not stream.closed:
            stream.out += data
            self._push(stream)
            self._flush_unless_reading()

    def send_trailers(self, stream: Stream, trailers: Headers | bytes) -> None:
        if not stream.closed:
            stream.trailer = self._encode(trailers)
            self._push(stream)
            self._flush_unless_reading()

    def reset(self, stream: Stream, code: int = f.CANCEL) -> None:
        if not stream.closed:
            self._out.append(f.rst_stream(stream.id, code))
            self._close(stream, cancelled=False)
            self._flush_unless_reading()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY(NO_ERROR) naming the last stream taken; open streams finish,
        new ones are refused; the connection closes when the last one ends."""
        if self.transport is None or self.draining:
            return
        self.draining = True
        self._out.append(f.goaway(self.last_id, f.NO_ERROR))
        self.flush()
        if not self.streams:
            self.transport.close()

    def _flush_unless_reading(self) -> None:
        if not self._reading:
            self.flush()

    @staticmethod
    def _encode(headers: Headers | bytes) -> bytes:
        """A header block (`headers` may come encoded already by `frames.encode_headers`)."""
        return headers if isinstance(headers, bytes) else f.encode_headers(headers)

    def _header_frames(self, sid: int, block: bytes, end_stream: bool = False) -> None:
        if self.table_update:  # owed at the first block we send after the peer's change
            block, self.table_update = self.table_update + block, b""
        size, flags = self.peer_frame_size, f.END_STREAM if end_stream else 0
        if len(block) <= size:
            self._out.append(f.frame(f.HEADERS, flags | f.END_HEADERS, sid, block))
            return
        chunks = [block[i:i + size] for i in range(0, len(block), size)]
        self._out.append(f.frame(f.HEADERS, flags, sid, chunks[0]))
        for i, chunk in enumerate(chunks[1:], 2):
            self._out.append(f.frame(f.CONTINUATION, f.END_HEADERS if i == len(chunks) else 0, sid, chunk))

    def _push(self, stream: Stream) -> None:
        """Send what the windows allow of `stream.out`, then its trailer once all is out."""
        out = stream.out
        while out and self.send_window > 0 and stream.window > 0:
            n = min(len(out), self.send_window, stream.window, self.peer_frame_size)
            self._out.append(f.frame(f.DATA, 0, stream.id, bytes(out[:n])))
            del out[:n]
            self.send_window -= n
            stream.window -= n
        if out:  # the rest waits on the client's window: the sweep's send timeout counts from here
            if stream.blocked_since is None:
                stream.blocked_since = time.monotonic()
        else:
            stream.blocked_since = None
        if not out and stream.trailer is not None:
            self._header_frames(stream.id, stream.trailer, end_stream=True)
            stream.trailer = None
            stream.local_done = True
            self._maybe_close(stream)

    def _push_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out or stream.trailer is not None:
                self._push(stream)
                if self.send_window <= 0:
                    return

    def _maybe_close(self, stream: Stream) -> None:
        if stream.local_done and not stream.remote_done:
            self._out.append(f.rst_stream(stream.id, f.NO_ERROR))  # answered early: stop sending
            stream.remote_done = True
        if stream.local_done and stream.remote_done:
            self._close(stream, cancelled=False)

    def _close(self, stream: Stream, cancelled: bool) -> None:
        if stream.closed:
            return
        stream.closed = True
        self.streams.pop(stream.id, None)
        self.server.budget.release(len(stream.body))
        stream.out = bytearray()
        if cancelled and stream.on_cancel is not None:
            stream.on_cancel()
        if not self.streams:
            self.last_active = time.monotonic()
            if self.draining and self.transport is not None:
                self.flush()
                self.transport.close()
