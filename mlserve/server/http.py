"""The REST API of the embedded model server: TF Serving's HTTP API on asyncio + httptools.

Entry points:

    handle = serve_rest(manager, options, request_log=None, batcher=None)   # what main.py calls
    handle.port; handle.stop()          # a background thread runs the event loop (uvloop if present)

    server = RestServer(manager, options, request_log=None, batcher=None)   # inside an event loop
    await server.start(); server.port; await server.stop()

Routes (TF Serving's, read from its http_server.cc / http_rest_api_handler.cc for behaviour):

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict | :classify | :regress
    any other /v1/... path: 400 {"error": "Malformed request: ..."}; GET /v1/models: 400
    <prometheus path from --monitoring_config_file>            metrics (text/plain)
mlserve extensions:
    GET  /v1/mlserve/models      {"models": [{"name", "versions": [{"version", "state"}]}]}
    GET  /v2/health/live         200 while the process serves
    GET  /v2/health/ready        200 when every model has an AVAILABLE version, else 503

Errors are `{"error": "<message>"}` with TF Serving's status mapping (errors.HTTP_STATUS). The
HTTP layer is HTTP/1.1 with keep-alive and pipelining (answers in order), Content-Length and
chunked bodies, `Expect: 100-continue`, 413 past `--max_request_bytes`, 400 on unparsable HTTP.
Model calls never run on the event loop: a predict request is parsed, run and encoded in one hop
to a thread pool (`--rest_api_num_threads`) or, with `--enable_batching`, parsed there and run by
the `Batcher`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import queue
import re
import threading
import time
from collections import deque
from typing import Any, Callable
from urllib.parse import unquote

import httptools

from mlserve.server import codecs, metrics
from mlserve.server.errors import HTTP_STATUS, ServingError
from mlserve.server.flags import schedulable_cpus

log = logging.getLogger("mlserve.server.http")

_PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests",
            499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 504: "Gateway Timeout"}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}
_JSON = b"application/json"
_CORS = (b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
         b"Access-Control-Allow-Headers: Content-Type\r\n")
_NOT_FOUND_HTML = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
                   b"</BODY></HTML>\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_WANTED_HEADERS = frozenset((b"content-length", b"expect", b"origin"))
_MAX_PIPELINE = 32  # queued requests per connection before reading pauses
INLINE_MAX_BYTES = 64 * 1024  # a lone client's predict this small runs on the loop
_IDLE_TIMEOUT = 300.0  # seconds a keep-alive connection may sit idle
_STALL_TIMEOUT = 60.0  # seconds a started request may take to arrive completely
_INLINE_BODY = 1 << 20  # larger predict bodies are parsed off the loop (always, today)


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "started")

    def __init__(self, method: str, url: bytes, headers: dict, body: bytes, keep_alive: bool,
                 started: float) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.keep_alive, self.started = keep_alive, started


class _Connection(asyncio.Protocol):
    """One client connection: parse with httptools, answer requests strictly in order."""

    def __init__(self, server: "RestServer") -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Request] = deque()
        self.busy = False  # a request is being answered
        self.closed = False
        self.paused = False
        self.last_active = time.monotonic()
        self.in_message = False
        self.eof = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.rejected = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.pending.clear()

    def eof_received(self) -> bool | None:
        """The client closed its sending side: finish the answers it awaits, then close."""
        self.eof = True
        return True if (self.busy or self.pending) else None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, codecs.encode_error("Protocol upgrades are not supported"))
        except httptools.HttpParserError:
            if not self.rejected:
                self._fail(400, codecs.encode_error("Malformed HTTP request"))

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.started = time.perf_counter()
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WANTED_HEADERS:
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        length = self.headers.get(b"content-length")
        limit = self.server.max_request_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self._reject_too_large()
            return
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.rejected:
            return
        self.size += len(body)
        if self.size > self.server.max_request_bytes:
            self._reject_too_large()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.rejected:
            return
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        req = _Request(self.parser.get_method().decode("latin-1"), self.url, self.headers, body,
                       self.parser.should_keep_alive(), self.started)
        self.pending.append(req)
        if len(self.pending) > _MAX_PIPELINE and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    # -- answering ------------------------------------------------------------------------

    def _reject_too_large(self) -> None:
        self.rejected = True
        self.body = []
        self._fail(413, codecs.encode_error(
            f"Request body is larger than the limit of {self.server.max_request_bytes} bytes"))

    def _fail(self, status: int, body: bytes) -> None:
        """Answer a request that cannot be parsed or accepted, then close the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        self.pending.clear()
        self.transport.write(_head(status, _JSON, len(body), close=True) + body)
        self.transport.close()
        self.closed = True

    def _next(self) -> None:
        while self.pending and not self.busy and not self.closed:
            req = self.pending.popleft()
            self.busy = True
            self.server.dispatch(self, req)
        if self.paused and len(self.pending) < _MAX_PIPELINE // 2 and self.transport and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def respond(self, req: _Request, status: int, body: bytes, content_type: bytes | None = _JSON,
                cors: bool = False) -> None:
        """Write one response (on the loop thread) and move to the next pipelined request."""
        self.busy = False
        self.last_active = time.monotonic()
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        close = not req.keep_alive or self.server.stopping
        head = _head(status, content_type, len(body), close=close, cors=cors and self.server.cors)
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
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


_date_header = b""
_heads: dict[tuple, bytes] = {}  # (status, content type, close, cors) -> the head up to Content-Length


def _refresh_date() -> None:
    global _date_header
    _date_header = b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
    _heads.clear()


_refresh_date()


def _head(status: int, content_type: bytes | None, length: int, *, close: bool = False,
          cors: bool = False) -> bytes:
    key = (status, content_type, close, cors)
    start = _heads.get(key)
    if start is None:
        parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()]
        if content_type:
            parts.append(b"Content-Type: " + content_type + b"\r\n")
        if cors:
            parts.append(_CORS)
        parts.append(_date_header)
        if close:
            parts.append(b"Connection: close\r\n")
        start = _heads[key] = b"".join(parts)
    return start + b"Content-Length: %d\r\n\r\n" % length


class RestServer:
    """TF Serving's REST API over `manager`; start/stop inside a running event loop."""

    def __init__(self, manager: Any, options: Any, *, request_log: Any = None, batcher: Any = None) -> None:
        self.manager = manager
        self.options = options
        self.max_request_bytes = int(getattr(options, "max_request_bytes", 0) or 64 * 1024 * 1024)
        self.cors = bool(getattr(options, "rest_api_enable_cors_support", False))
        self.timeout = max(0, int(getattr(options, "rest_api_timeout_in_ms", 0) or 0)) / 1000.0
        self.prom_enabled, self.prom_path = metrics.read_monitoring_config(
            getattr(options, "monitoring_config_file", "") or "")
        self._own_log = request_log is None
        if request_log is None:
            from mlserve.server.requestlog import RequestLog

            request_log = RequestLog(getattr(options, "request_log", "") or None)
        self.request_log = request_log
        self._own_batcher = False
        if batcher is None and getattr(options, "enable_batching", False):
            from mlserve.server.batching import Batcher, BatchingOptions

            batcher = Batcher(BatchingOptions.from_file(getattr(options, "batching_parameters_file", "")))
            self._own_batcher = True
        self.batcher = batcher
        threads = int(getattr(options, "rest_api_num_threads", 0) or 8)
        if batcher is not None:
            # With batching these threads only read requests and hand them to the batcher: they
            # never wait for a model, so more of them than CPUs only take turns at the GIL
            # (measured on one core: 8 threads serve 13% fewer requests/s than 2).
            threads = min(threads, 2 * schedulable_cpus())
        self.workers = _Workers(threads, "rest")
        self._outbox: deque[tuple[Callable[..., None], tuple]] = deque()
        self._flush_scheduled = False
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._deadlines: deque[_Answer] = deque()  # in arrival order; all share one timeout
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._routes: dict[str, tuple[str, int | None, str | None, str]] = {}
        self._metadata_cache: dict[tuple[str, int], bytes] = {}
        self._inputs_cache: dict[tuple[int, str], dict] = {}
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `options.host:options.rest_api_port` (0: a free port, see `.port`) and serve."""
        self.loop = asyncio.get_running_loop()
        host = getattr(self.options, "host", "127.0.0.1") or "127.0.0.1"
        port = int(getattr(self.options, "rest_api_port", 0) or 0)
        self._server = await self.loop.create_server(lambda: _Connection(self), host, port,
                                                     reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let answers in progress finish (up to `grace` s), close everything."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.workers.shutdown()
        if self._own_batcher and self.batcher is not None:
            await self.loop.run_in_executor(None, self.batcher.close)
        if self._own_log:
            self.request_log.close()

    def _sweep(self) -> None:
        """Once a second: refresh the Date header; close idle and stalled connections."""
        _refresh_date()
        now = time.monotonic()
        for conn in list(self.connections):
            idle = now - conn.last_active
            if not conn.busy and not conn.pending and (
                    idle > _IDLE_TIMEOUT or (conn.in_message and idle > _STALL_TIMEOUT)):
                if conn.transport is not None:
                    conn.transport.close()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the loop; callable from any thread.

        Answers from worker and batch threads queue here and one loop wake-up runs all that
        queued meanwhile: a batch of 30 answers costs one wake-up, not 30.
        """
        self._outbox.append((fn, args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush_outbox)
            except RuntimeError:  # the loop is closed: the server is gone, nobody to answer
                pass

    def _flush_outbox(self) -> None:
        self._flush_scheduled = False  # before draining: what is posted from now on schedules anew
        outbox = self._outbox
        while outbox:
            fn, args = outbox.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one broken answer must not strand the others
                log.exception("REST answer failed")

    # -- dispatch -------------------------------------------------------------------------

    def dispatch(self, conn: _Connection, req: _Request) -> None:
        url = req.url
        q = url.find(b"?")
        path = (url[:q] if q >= 0 else url).decode("latin-1")
        low = path.lower()
        if low.startswith("/v1/"):
            if low == "/v1/mlserve/models" and req.method == "GET":
                self._finish(conn, req, path, 200, self._listing(), api="", model="", code="OK", v1=False)
                return
            self._v1(conn, req, path)
            return
        if self.prom_enabled and path == self.prom_path:
            self._finish(conn, req, path, 200, metrics.render(), content_type=b"text/plain", v1=False)
            return
        if low == "/v2/health/live" and req.method in ("GET", "HEAD"):
            self._finish(conn, req, path, 200, b"", content_type=None, v1=False)
            return
        if low == "/v2/health/ready" and req.method in ("GET", "HEAD"):
            ready = bool(self.manager.all_available()) and not self.stopping
            self._finish(conn, req, path, 200 if ready else 503, b"", content_type=None, v1=False)
            return
        self._finish(conn, req, path, 404, _NOT_FOUND_HTML, content_type=b"text/html; charset=ISO-8859-1",
                     v1=False)

    def _finish(self, conn: _Connection, req: _Request, path: str, status: int, body: bytes, *,
                content_type: bytes | None = _JSON, api: str = "", model: str = "", code: str = "",
                v1: bool = True) -> None:
        """Write the answer; count /v1 requests in the metrics; append the request log line."""
        seconds = time.perf_counter() - req.started
        if v1:
            metrics.observe_request(model, api, "REST", code or "OK", seconds)
        conn.respond(req, status, body, content_type, cors=v1)
        if self.request_log.enabled:
            self.request_log.write(api="rest", method=req.method, path=path, status=status,
                                   code=code or ("OK" if status == 200 else ""), model=model,
                                   latency_ms=round(seconds * 1000, 3), bytes=len(body),
                                   request_bytes=len(req.body))

    def _error(self, conn: _Connection, req: _Request, path: str, e: ServingError, api: str, model: str) -> None:
        self._finish(conn, req, path, HTTP_STATUS.get(e.code, 500), codecs.encode_error(e.message),
                     api=api, model=model, code=e.code)

    def _v1(self, conn: _Connection, req: _Request, path: str) -> None:
        method = req.method
        if method == "OPTIONS":
            origin = req.headers.get(b"origin", b"")
            ok = re.search(rb"https?://", origin) is not None
            self._finish(conn, req, path, 200 if ok else 400, b"", content_type=None,
                         code="OK" if ok else "FAILED_PRECONDITION")
            return
        model = ""
        api = ""
        try:
            if method == "POST":
                route = self._routes.get(path)  # clients post to the same few URLs
                if route is None:
                    m = _PREDICT_RE.fullmatch(path)
                    if m is None:
                        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
                    route = (unquote(m.group(1)), _version(m.group(2)),
                             unquote(m.group(3)) if m.group(3) else None, m.group(4).lower())
                    if len(self._routes) >= 1024:
                        self._routes.clear()
                    self._routes[path] = route
                model, version, label, api = route
                self._start_inference(conn, req, path, model, version, label, api)
                return
            if method == "GET":
                m = _STATUS_RE.fullmatch(path)
                if m is None:
                    raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
                model = unquote(m.group(1) or "")
                version, label = _version(m.group(2)), (unquote(m.group(3)) if m.group(3) else None)
                if not model:
                    raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
                if m.group(4):
                    body = self._metadata(model, version, label)
                else:
                    body = self._status(model, version, label)
                self._finish(conn, req, path, 200, body, model=model, code="OK")
                return
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        except ServingError as e:
            self._error(conn, req, path, e, api, model)
        except Exception as e:  # noqa: BLE001 - a bug must answer 500, not kill the connection
            log.exception("REST request failed: %s %s", method, path)
            self._error(conn, req, path, ServingError("INTERNAL", str(e)), api, model)

    # -- status, metadata, listing ----------------------------------------------------------

    def _status(self, model: str, version: int | None, label: str | None) -> bytes:
        statuses = self.manager.status(model, version, label)
        doc = {"model_version_status": [
            {"version": str(s.version), "state": s.state,
             "status": {"error_code": s.error_code or "OK", "error_message": s.error_message or ""}}
            for s in statuses]}
        return (json.dumps(doc, indent=1) + "\n").encode()

    def _metadata(self, model: str, version: int | None, label: str | None) -> bytes:
        servable = self.manager.get(model, version, label)
        key = (servable.name, servable.version, id(servable))
        body = self._metadata_cache.get(key)  # type: ignore[arg-type]
        if body is None:
            from google.protobuf import json_format
            from tensorflow_serving.apis import model_pb2

            spec = model_pb2.ModelSpec(name=servable.name)
            spec.version.value = servable.version
            opts = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1)
            spec_json = json_format.MessageToJson(spec, **opts)
            sig_json = json_format.MessageToJson(servable.signature_def_map(), **opts)
            body = ("{\n\"model_spec\":" + spec_json + "\n,\n\"metadata\": {\"signature_def\": "
                    + sig_json + "\n}\n}\n").encode()
            if len(self._metadata_cache) > 256:
                self._metadata_cache.clear()
            self._metadata_cache[key] = body  # type: ignore[index]
        return body

    def _listing(self) -> bytes:
        models = []
        for name in sorted(self.manager.model_names()):
            try:
                statuses = self.manager.status(name)
            except ServingError:
                statuses = []
            models.append({"name": name, "versions": [{"version": str(s.version), "state": s.state}
                                                      for s in statuses]})
        return json.dumps({"models": models}).encode()

    # -- predict / classify / regress -------------------------------------------------------

    def _start_inference(self, conn: _Connection, req: _Request, path: str, model: str,
                         version: int | None, label: str | None, api: str) -> None:
        """Hand the request to a worker thread; its answer comes back through an `_Answer`.

        A lone client (one open connection) with a small predict is served right here on the
        loop: nothing else can be waiting, and skipping the two thread hand-offs takes ~20% off
        its latency. That holds with batching on too: a lone client's request could only form a
        batch of one, after waiting out the batch timeout. With more connections the pool (or
        the batcher) takes every request, so a long inference never holds up the others' I/O.
        """
        answer = _Answer(self, conn, req, path, model, api)
        if (api == "predict" and len(self.connections) == 1
                and len(req.body) <= INLINE_MAX_BYTES):
            self._inference_job(answer.deliver, model, version, label, api, req.body, batch=False)
            return
        if self.timeout > 0:
            self._watch(answer)
        try:
            self.workers.submit(self._inference_job, answer, model, version, label, api, req.body)
        except RuntimeError:  # workers shut down: the server is stopping
            answer.deliver(503, codecs.encode_error("Server is shutting down"), "UNAVAILABLE")

    def _watch(self, answer: "_Answer") -> None:
        """Answer 504 if no answer came within `--rest_api_timeout_in_ms`.

        Every request has the same timeout, so deadlines fall in arrival order: one queue and
        one timer for its head, instead of a timer per request."""
        answer.deadline = self.loop.time() + self.timeout
        pending = self._deadlines
        while pending and pending[0].done:  # answered already: forget (keeps the queue short)
            pending.popleft()
        pending.append(answer)
        if self._deadline_timer is None:
            self._deadline_timer = self.loop.call_at(pending[0].deadline, self._expire)

    def _expire(self) -> None:
        self._deadline_timer = None
        pending = self._deadlines
        now = self.loop.time()
        while pending and (pending[0].done or pending[0].deadline <= now):
            answer = pending.popleft()
            if not answer.done:
                answer.deliver(504, codecs.encode_error("Deadline Exceeded"), "DEADLINE_EXCEEDED")
        if pending:
            self._deadline_timer = self.loop.call_at(pending[0].deadline, self._expire)

    def _inference_job(self, reply: Callable[[int, bytes, str], None], model: str, version: int | None,
                       label: str | None, api: str, body: bytes, batch: bool = True) -> None:
        """Worker thread: parse, look up, run (or submit to the batcher), encode, reply."""
        try:
            doc = codecs.parse_predict_json(body) if api == "predict" else codecs.parse_json(body)
            servable = self.manager.get(model, version, label)
            if api == "predict":
                self._predict(reply, servable, doc, body, batch)
            else:
                reply(200, self._examples(servable, doc, api), "OK")
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            _reply_error(reply, e, api)

    def _predict(self, reply: Callable[[int, bytes, str], None], servable: Any, doc: dict, body: bytes,
                 batch: bool = True) -> None:
        sig_name = codecs.signature_name(doc) or "serving_default"
        key = (id(servable), sig_name)
        dtypes = self._inputs_cache.get(key)
        if dtypes is None:
            sig = servable.signatures.get(sig_name)
            if sig is None:
                raise ServingError("INVALID_ARGUMENT",
                                   f'Serving signature name: "{sig_name}" not found in signature def')
            dtypes = {k: spec.dtype for k, spec in sig.inputs.items()}
            if len(self._inputs_cache) > 1024:
                self._inputs_cache.clear()
            self._inputs_cache[key] = dtypes
        inputs, fmt = codecs.decode_predict(doc, dtypes, strict=codecs.needs_strict(body, doc))
        if batch and self.batcher is not None:
            def done(outputs: dict | None, error: BaseException | None) -> None:  # on a batch thread
                try:
                    if error is not None:
                        raise error
                    reply(200, codecs.encode_predict(outputs, fmt), "OK")
                except Exception as e:  # noqa: BLE001 - every failure is an answer
                    _reply_error(reply, e, "predict")

            self.batcher.submit_callback(servable, sig_name, inputs, done)
            return
        t0 = time.perf_counter()
        outputs = servable.run(sig_name, inputs)
        metrics.observe_runtime(servable.name, "Predict", time.perf_counter() - t0)
        reply(200, codecs.encode_predict(outputs, fmt), "OK")

    def _examples(self, servable: Any, doc: dict, api: str) -> bytes:
        from tensorflow_serving.apis import classification_pb2, regression_pb2

        if api == "classify":
            request: Any = classification_pb2.ClassificationRequest()
        else:
            request = regression_pb2.RegressionRequest()
        request.model_spec.name = servable.name
        request.model_spec.version.value = servable.version
        codecs.fill_examples_request(doc, request)
        t0 = time.perf_counter()
        response = servable.classify(request) if api == "classify" else servable.regress(request)
        metrics.observe_runtime(servable.name, api.capitalize(), time.perf_counter() - t0)
        result = getattr(response, "result", response)
        return codecs.encode_classify(result) if api == "classify" else codecs.encode_regress(result)


def _reply_error(reply: Callable[[int, bytes, str], None], e: BaseException, api: str) -> None:
    """Answer `e`: a ServingError with TF Serving's code and status, anything else as INTERNAL."""
    if isinstance(e, ServingError):
        reply(HTTP_STATUS.get(e.code, 500), codecs.encode_error(e.message), e.code)
        return
    log.error("REST %s failed", api, exc_info=e)
    reply(500, codecs.encode_error(str(e)), "INTERNAL")


class _Answer:
    """The way back for one inference request: callable from any thread with (status, body,
    code); the first answer is written on the loop, a later one (after a 504) is dropped."""

    __slots__ = ("server", "conn", "req", "path", "model", "api", "done", "deadline")

    def __init__(self, server: RestServer, conn: _Connection, req: _Request, path: str, model: str,
                 api: str) -> None:
        self.server, self.conn, self.req, self.path = server, conn, req, path
        self.model, self.api = model, api
        self.done = False
        self.deadline = 0.0

    def __call__(self, status: int, body: bytes, code: str) -> None:  # from any thread
        self.server.post(self.deliver, status, body, code)

    def deliver(self, status: int, body: bytes, code: str) -> None:  # on the loop
        if self.done:
            return
        self.done = True
        self.server._finish(self.conn, self.req, self.path, status, body, api=self.api, model=self.model,
                            code=code)


class _Workers:
    """The REST server's inference threads: `submit(fn, *args)` runs fn on one of them.

    A queue and N threads. concurrent.futures' pool costs ~9 µs a job in its Future and
    idle-thread bookkeeping, ~0.3 µs here (measured, one core), and nothing needs a Future: each
    job answers through the server's outbox.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue `fn(*args)`; RuntimeError once shut down."""
        if self._closed:
            raise RuntimeError("the REST workers are shut down")
        self._jobs.put((fn, args))

    def shutdown(self) -> None:
        """Refuse new jobs, drop the queued ones (their connections are closed by now) and end
        each thread after the job it is running."""
        self._closed = True
        try:
            while True:
                self._jobs.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - jobs answer their own errors; this is a bug
                log.exception("REST worker job failed")


def _version(text: str | None) -> int | None:
    if not text:
        return None
    value = int(text)
    if value >= 2**63:
        raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {text} to numeric.")
    return value


class RestHandle:
    """A `RestServer` running on its own event-loop thread (what `serve_rest` returns)."""

    def __init__(self, server: RestServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.server, self.loop, self.thread = server, loop, thread

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float = 5.0) -> None:
        """Drain and close the server, then end the loop thread."""
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        try:
            fut.result(grace + 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (the fast path), else asyncio's."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.new_event_loop()


def serve_rest(manager: Any, options: Any, *, request_log: Any = None, batcher: Any = None) -> RestHandle:
    """Start the REST server on a background event-loop thread; returns once the port is bound.

    Raises OSError when the port cannot be bound. `handle.stop()` drains and closes it.
    """
    server = RestServer(manager, options, request_log=request_log, batcher=batcher)
    loop = new_event_loop()
    started: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            started.set_exception(e)
            loop.close()
            return
        started.set_result(server.port)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="rest-loop", daemon=True)
    thread.start()
    started.result(60)
    return RestHandle(server, loop, thread)
