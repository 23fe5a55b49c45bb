"""One HTTP/1.1 client connection on httptools, and the cache of response heads.

Keep-alive and pipelining (answers strictly in order), Content-Length and chunked bodies,
`Expect: 100-continue`. A body of known length is read into one buffer of that size (no list of
chunks joined at the end: peak memory is the body once, not twice). Limits (`HttpConfig`): 413
past `max_request_bytes`, 414 past `max_request_line_bytes`, 431 past `max_header_bytes`, 408
past `header_timeout` (the server's sweep), 400 on unparsable HTTP (HTTP/0.9 included); each
closes the connection. Flow control: the connection stops reading while more than
`max_pipeline` requests wait, or while its unsent answers exceed `max_unsent_bytes` (the
transport's write high-water mark), and resumes once drained. In-flight budget: a request's
cost (`body_cost_factor` x its Content-Length) is reserved when its headers arrive, before its
body is read; past `max_inflight_bytes` it is answered 429 at once and its body dropped unread
(`_reject_busy`). HEAD answers carry the head only. Nothing here knows what a request means:
complete requests go to the server's app.
"""
from __future__ import annotations

import asyncio
import email.utils
import time
from collections import deque
from typing import Any, Protocol

import httptools

from mlserve.server.transport.budget import InflightBudget

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large", 414: "URI Too Long",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 499: "Client Closed Request",
            500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 504: "Gateway Timeout"}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}
_CORS = (b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
         b"Access-Control-Allow-Headers: Content-Type\r\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_WANTED_HEADERS = frozenset((b"content-length", b"expect", b"origin"))
_ERROR_TYPE = b"application/json"
_SEPARATE_BODY = 65536  # larger bodies are written apart from the head, not copied onto it
_DISCARD_SECONDS = 5.0  # a body refused 429 is read and dropped this long at most, then closed


class HeadCache:
    """Response heads up to Content-Length, per (status, type, close, cors), with the current
    Date header; `refresh()` (once a second) renews the date and forgets the heads."""

    def __init__(self) -> None:
        self._heads: dict[tuple, bytes] = {}
        self._date = b""
        self.refresh()

    def refresh(self) -> None:
        self._date = b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
        self._heads.clear()

    def head(self, status: int, content_type: bytes | None, length: int, *, close: bool = False,
             cors: bool = False) -> bytes:
        key = (status, content_type, close, cors)
        start = self._heads.get(key)
        if start is None:
            parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()]
            if content_type:
                parts.append(b"Content-Type: " + content_type + b"\r\n")
            if cors:
                parts.append(_CORS)
            parts.append(self._date)
            if close:
                parts.append(b"Connection: close\r\n")
            start = self._heads[key] = b"".join(parts)
        return start + b"Content-Length: %d\r\n\r\n" % length


class Request:
    """One complete request. `headers` holds only Content-Length, Expect and Origin (lowercase)."""

    __slots__ = ("method", "url", "headers", "body", "keep_alive", "started", "cost")

    def __init__(self, method: str, url: bytes, headers: dict[bytes, bytes], body: bytes | bytearray,
                 keep_alive: bool, started: float, cost: int = 0) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.keep_alive, self.started = keep_alive, started
        self.cost = cost  # bytes of the server's in-flight budget held until the answer is written

    @property
    def path(self) -> str:
        """The URL without its query string."""
        q = self.url.find(b"?")
        return (self.url[:q] if q >= 0 else self.url).decode("latin-1")


class Owner(Protocol):
    """What a `Connection` needs of the server that accepted it (`server.HttpServer`)."""

    app: Any  # the HttpApp: handle(conn, req), error_body(message)
    budget: InflightBudget
    connections: set[Connection]
    heads: HeadCache
    loop: asyncio.AbstractEventLoop
    max_connections: int
    refused: int
    stopping: bool


class Connection(asyncio.Protocol):
    """One client connection: parse with httptools, hand complete requests to the app one at a
    time, write their answers strictly in order."""

    def __init__(self, server: Owner) -> None:
        self.server = server
        self.config = server.config
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request] = deque()
        self.busy = False  # a request is being answered
        self.closed = False
        self.paused = False  # reading paused: too many requests queued
        self.write_paused = False  # reading paused: too many answer bytes unsent
        self.last_active = time.monotonic()
        self.in_message = False
        self.in_head = False  # a request's line and headers are arriving
        self.head_chunk = 0  # the data_received call in which the current request began
        self.head_bytes = 0  # head bytes received after that call
        self.head_started = 0.0  # monotonic time the current request began
        self.chunks = 0
        self.held = 0  # bytes of this connection's requests counted in the server's in-flight total
        self.discard = -1  # >= 0: body bytes still to read and drop after a 429 (see _reject_busy)
        self.lost = False
        self.eof = False
        self.started = 0.0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: bytes | bytearray = b""  # a bytearray of the whole length once a 2nd chunk comes
        self.size = 0
        self.expected = -1  # the body's Content-Length; -1: chunked or none
        self.cost = 0  # in-flight bytes reserved for the current request
        self.rejected = False
        self.headers_seen = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.server.connections) >= self.server.max_connections:
            # Refused at accept: closing now frees the descriptor before the process runs out,
            # and the connections already open keep being served.
            self.closed = True
            self.server.refused += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        self.server.connections.add(self)
        transport.set_write_buffer_limits(high=self.config.max_unsent_bytes)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._release(self.held)
        self.lost = True
        self.closed = True
        self.server.connections.discard(self)
        self.pending.clear()

    def eof_received(self) -> bool | None:
        """The client closed its sending side: finish the answers it awaits, then close."""
        self.eof = True
        return True if (self.busy or self.pending) else None

    def pause_writing(self) -> None:
        """The client has not taken `max_unsent_bytes` of answers: stop reading and answering."""
        self.write_paused = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_active = time.monotonic()
        if self.transport is not None and not self.paused and not self.closed:
            self.transport.resume_reading()
        if not self.busy:
            self._next()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.discard >= 0:
            self._discard(len(data))
            return
        self.chunks += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported")
            return
        except httptools.HttpParserError:
            if not self.rejected:
                self._fail(400, "Malformed HTTP request")
            return
        if self.in_head and not self.closed:
            self._check_head(data)

    def _check_head(self, data: bytes) -> None:
        """Limit a request head still arriving. Bytes are counted from the call after the one it
        began in (so pipelined requests before it never count), and that whole call was head:
        the count never exceeds the head's true size, and overshoots the limit by one read at most
        (httptools buffers a header itself before any callback could count it)."""
        if self.head_chunk != self.chunks:
            self.head_bytes += len(data)
        limit = self.config.max_request_line_bytes + self.config.max_header_bytes
        if self.head_bytes > limit:
            if self.headers_seen:
                self._fail(431, f"Request headers are larger than the limit of "
                                f"{self.config.max_header_bytes} bytes")
            else:
                self._fail(414, f"Request line is longer than the limit of "
                                f"{self.config.max_request_line_bytes} bytes")
        elif not self.headers_seen and self.url and b"\n" in data and self.parser.get_http_version() == "0.0":
            # httptools reads "GET /path\r\n" as HTTP/0.9 and waits for headers that never come
            self._fail(400, "HTTP/0.9 requests are not supported")

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.in_head = True
        self.head_chunk = self.chunks
        self.head_bytes = 0
        self.head_started = time.monotonic()
        self.started = time.perf_counter()
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.config.max_request_line_bytes and not self.rejected:
            self.rejected = True
            self._fail(414, f"Request line is longer than the limit of {self.config.max_request_line_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_seen = True
        name = name.lower()
        if name in _WANTED_HEADERS:
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_started = time.monotonic()  # from here `stall_timeout` bounds the body
        if self.rejected or self.closed:
            return
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit():
            expected = self.expected = int(length)
            if expected > self.config.max_request_bytes:
                self._reject_too_large()
                return
            if expected:
                # Reserve what the request will cost while in flight, before reading its body:
                # one multiply and add per request, and a body that does not fit is never buffered.
                cost = expected * self.config.body_cost_factor
                if not self.server.budget.reserve(cost):
                    self._reject_busy(expected)
                    return
                self.cost = cost
                self.held += cost
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.rejected:
            if self.discard >= 0:
                self._discard(len(body))
            return
        start = self.size
        size = self.size = start + len(body)
        if self.expected >= 0:  # reserved at the headers; httptools stops at the length
            if not start and size == self.expected:
                self.body = body  # the usual small request: its one chunk, no copy
            else:
                if not start:
                    self.body = bytearray(self.expected)  # filled in place: the body once, no join
                self.body[start:size] = body  # type: ignore[index]
            return
        # chunked: charged as it arrives
        if size > self.config.max_request_bytes:
            self._reject_too_large()
            return
        cost = len(body) * self.config.body_cost_factor
        self.cost += cost
        self.held += cost
        if not self.server.budget.charge(cost):
            self._reject_busy(-1)
            return
        if not start:
            self.body = body
        else:
            if not isinstance(self.body, bytearray):
                self.body = bytearray(self.body)
            self.body += body  # grown in place (realloc), never a second full copy

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.rejected or self.closed:
            return
        req = Request(self.parser.get_method().decode("latin-1"), self.url, self.headers, self.body,
                      self.parser.should_keep_alive(), self.started, self.cost)
        self.body = b""
        self.cost = 0  # the request holds it now: released when its answer is written
        self.pending.append(req)
        if len(self.pending) > self.config.max_pipeline and not self.paused and self.transport:
            self.paused = True
            if not self.write_paused:
                self.transport.pause_reading()
        if not self.busy:
            self._next()

    # -- answering ------------------------------------------------------------------------

    def _reject_too_large(self) -> None:
        self.rejected = True
        self.body = b""
        self._fail(413, f"Request body is larger than the limit of {self.config.max_request_bytes} bytes")

    def _reject_busy(self, expected: int) -> None:
        """429 RESOURCE_EXHAUSTED now, with `Connection: close`; the body is then read and
        dropped (up to its declared length, else `max_request_bytes`, for `_DISCARD_SECONDS` at
        most) rather than buffered, so that a client still sending it reads the 429 instead of
        a connection reset. The connection then closes."""
        self.body = b""
        self._release(self.cost)
        self.cost = 0
        self.rejected = True
        self.in_head = False
        if self.transport is None or self.transport.is_closing():
            return
        self.pending.clear()
        message = (f"Server is over its limit of {self.config.max_inflight_bytes} bytes of requests in flight; "
                   "retry later")
        body = self.server.app.error_body(message)
        self.transport.write(self.server.heads.head(429, _ERROR_TYPE, len(body), close=True) + body)
        self.closed = True
        self.discard = (expected if expected >= 0 else self.config.max_request_bytes) - self.size
        self.server.loop.call_later(_DISCARD_SECONDS, self._end_discard)
        self._discard(0)

    def _discard(self, n: int) -> None:
        self.discard -= n
        if self.discard <= 0:
            self._end_discard()

    def _end_discard(self) -> None:
        self.discard = -1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _release(self, n: int) -> None:
        """Take `n` bytes of this connection's requests out of the server's in-flight total."""
        if self.lost:
            return
        n = min(n, self.held)
        self.held -= n
        self.server.budget.release(n)

    def _fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or accepted, then close the connection."""
        self.rejected = True
        self.in_head = False
        if self.transport is None or self.transport.is_closing():
            return
        self.pending.clear()
        body = self.server.app.error_body(message)
        self.transport.write(self.server.heads.head(status, _ERROR_TYPE, len(body), close=True) + body)
        self.transport.close()
        self.closed = True

    def _next(self) -> None:
        while self.pending and not self.busy and not self.closed and not self.write_paused:
            req = self.pending.popleft()
            self.busy = True
            self.server.app.handle(self, req)
        if (self.paused and len(self.pending) < self.config.max_pipeline // 2 and self.transport
                and not self.closed):
            self.paused = False
            if not self.write_paused:
                self.transport.resume_reading()

    def respond(self, req: Request, status: int, body: bytes, content_type: bytes | None, *,
                cors: bool = False) -> None:
        """Write one response (on the loop thread) and move to the next pipelined request."""
        self.busy = False
        if req.cost:
            self._release(req.cost)
        self.last_active = time.monotonic()
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        close = not req.keep_alive or self.server.stopping
        head = self.server.heads.head(status, content_type, len(body), close=close,
                                      cors=cors and self.config.cors)
        if req.method == "HEAD":  # the head a GET would get, without its body
            self.transport.write(head)
        elif len(body) < _SEPARATE_BODY:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        if close:
            self.transport.close()
            self.closed = True
            return
        if self.pending:
            self._next()
        elif self.eof and not self.busy:
            self.transport.close()
            self.closed = True
