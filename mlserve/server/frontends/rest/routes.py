"""TF Serving's REST API: its routes and handlers, over the data plane and the HTTP layer.

Routes (TF Serving's, read from its http_server.cc / http_rest_api_handler.cc for behaviour):

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict | :classify | :regress
    any other /v1/... path: 400 {"error": "Malformed request: ..."}; GET /v1/models: 400
    <prometheus path from --monitoring_config_file>            metrics (text/plain)
mlserve extensions:
    GET  /v1/mlserve/models      {"models": [{"name", "versions": [{"version", "state"}]}]}
    /v2/...                      the `PathApp`s passed in: the Open Inference Protocol (frontends/v2)

URLs are read as TF Serving reads them, query string included (`paths`).
Errors are `{"error": "<message>"}` with TF Serving's status mapping (errors.StatusCode).
Model calls never run on the event loop (but for a lone client, see `_start_inference`): a
request is parsed, run and encoded in one hop to a `WorkerPool` (`--rest_api_num_threads`) or,
with batching, parsed there and answered from the batch thread through the HTTP server's outbox.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable, Protocol, Sequence
from urllib.parse import unquote

from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, model_pb2, regression_pb2

from mlserve.server.frontends.rest import codecs
from mlserve.server.observability import metrics
from mlserve.server.dataplane import DataPlane, ModelMetadata, ModelRef
from mlserve.server.transport.deadlines import DeadlineQueue
from mlserve.server.errors import ServingError, http_status
from mlserve.server.servables.signature import DEFAULT_SIGNATURE
from mlserve.server.flags import ServerOptions, schedulable_cpus
from mlserve.server.transport.http1 import Connection, HttpConfig, HttpServer, Request
from mlserve.server.transport.http1.config import LOCAL_HOSTS, host_name, is_loopback
from mlserve.server.transport.loopthread import LoopThread
from mlserve.server.observability.requestlog import RequestLog
from mlserve.server.frontends.rest.paths import LIBEVENT_METHODS, PREDICT_RE, STATUS_RE, V1_RE, VERBS, parse_target, version
from mlserve.server.transport.workers import WorkerPool

log = logging.getLogger("mlserve.server.rest")

_JSON = b"application/json"
_HTML = b"text/html"  # libevent's evhttp_send_error page: text/html, then the connection closes
INLINE_MAX_BYTES = 64 * 1024  # a lone client's predict this small runs on the loop
Reply = Callable[[int, bytes, str], None]  # (HTTP status, body, TF Serving code)


def http_config(options: ServerOptions) -> HttpConfig:
    """The HTTP layer's settings from the server's flags."""
    return HttpConfig(host=options.host, port=options.rest_api_port, max_request_bytes=options.max_request_bytes,
                      max_request_line_bytes=options.http_max_request_line_bytes,
                      max_header_bytes=options.http_max_header_bytes,
                      header_timeout=options.http_header_timeout_seconds,
                      stall_timeout=options.http_body_timeout_seconds,
                      idle_timeout=options.http_idle_timeout_seconds,
                      max_connections=options.http_max_connections,
                      max_unsent_bytes=options.http_max_unsent_bytes,
                      max_inflight_bytes=options.max_inflight_bytes,
                      body_cost_factor=codecs.BODY_COST_FACTOR,
                      cors=options.rest_api_enable_cors_support,
                      allowed_hosts=allowed_hosts(options.host, options.allowed_hosts))


def allowed_hosts(bind: str, extra: str) -> frozenset[str] | None:
    """The Host names REST answers: bound to loopback, the local names and `--allowed_hosts`
    (a browser page that reached 127.0.0.1 by DNS rebinding names its own site); bound to
    any other address, or with `--allowed_hosts='*'`, every name (TF Serving's behaviour)."""
    names = [n.strip().lower() for n in extra.split(",") if n.strip()]
    if "*" in names or not is_loopback(bind):
        return None
    return LOCAL_HOSTS | frozenset(host_name(n.encode()) for n in names)


class PathApp(Protocol):
    """Another protocol's REST binding on this port (the Open Inference Protocol's `/v2`): it
    answers every target under `prefix`, through `RestServer.finish`."""

    prefix: str

    def handle(self, conn: Connection, req: Request, path: str) -> None: ...


class RestServer:
    """TF Serving's REST API over `dataplane`, and the `PathApp`s `apps` builds, on one HTTP/1.1
    server; `start`/`stop` inside a running event loop."""

    def __init__(self, dataplane: DataPlane, options: ServerOptions, request_log: RequestLog,
                 apps: Sequence[Callable[[RestServer], PathApp]] = ()) -> None:
        self.dataplane = dataplane
        self.request_log = request_log
        self.http = HttpServer(self, http_config(options), dataplane.budget)
        self.timeout = max(0, options.rest_api_timeout_in_ms) / 1000.0
        self.prom_enabled, self.prom_path = metrics.read_monitoring_config(options.monitoring_config_file)
        threads = options.rest_api_num_threads
        if dataplane.batcher is not None:
            # With batching these threads only read requests and hand them to the batcher: they
            # never wait for a model, so more of them than CPUs only take turns at the GIL
            # (measured on one core: 8 threads serve 13% fewer requests/s than 2).
            threads = min(threads, 2 * schedulable_cpus())
        self.workers = WorkerPool(threads, "rest")
        self.deadlines: DeadlineQueue | None = None
        self._routes: dict[str, tuple[ModelRef, str]] = {}
        self._metadata_json: dict[int, tuple[ModelMetadata, bytes]] = {}
        self._input_dtypes: dict[tuple[int, str], dict] = {}
        self.apps = [make(self) for make in apps]

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()
        if self.timeout > 0:
            self.deadlines = DeadlineQueue(self.http.loop, self.timeout)

    async def stop(self, grace: float = 5.0) -> None:
        if self.deadlines is not None:
            self.deadlines.cancel()
        await self.http.stop(grace)
        self.workers.shutdown()

    # -- HttpApp ----------------------------------------------------------------------------

    def error_body(self, message: str) -> bytes:
        return codecs.encode_error(message)

    def handle(self, conn: Connection, req: Request) -> None:
        """Route one request (on the loop) as TF Serving's net_http does (see `paths`)."""
        if req.method not in LIBEVENT_METHODS:
            self._libevent_error(conn, req, 501, "Not Implemented")
            return
        target = parse_target(req.url.decode("latin-1"))
        if target is None:
            self._libevent_error(conn, req, 400, "Bad Request")
            return
        path, uri_path = target
        if self.prom_enabled and path == self.prom_path:  # found by path; the handler sees the query
            if uri_path != path:
                self.finish(conn, req, path, 400, f"Unexpected path: {uri_path}. Should be {path}".encode(),
                             content_type=b"text/plain", v1=False)
                return
            self.finish(conn, req, path, 200, metrics.render(), content_type=b"text/plain", v1=False)
            return
        low = path.lower()
        if low == "/v1/mlserve/models" and req.method == "GET":  # mlserve's own: the query is ignored
            self.finish(conn, req, path, 200, self._listing(), v1=False)
            return
        if V1_RE.fullmatch(uri_path):
            self._v1(conn, req, uri_path)
            return
        for app in self.apps:
            if path.startswith(app.prefix):
                app.handle(conn, req, path)
                return
        self._libevent_error(conn, req, 404, "Not Found")

    def _libevent_error(self, conn: Connection, req: Request, status: int, reason: str) -> None:
        """libevent's own error page (`evhttp_send_error`): text/html, and the connection closes."""
        req.keep_alive = False
        body = (f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
                "</BODY></HTML>\n").encode()
        self.finish(conn, req, req.path, status, body, content_type=_HTML, v1=False)

    def finish(self, conn: Connection, req: Request, path: str, status: int, body: bytes, *,
                content_type: bytes | None = _JSON, api: str = "", model: str = "", code: str = "",
                v1: bool = True, error: str | None = None, entrypoint: str = "REST",
                extra_headers: bytes = b"", notes: dict | None = None) -> None:
        """Write the answer; count /v1 (and `PathApp`) requests in the metrics under `entrypoint`;
        append the request log line."""
        seconds = time.perf_counter() - req.started
        code = code or ("OK" if status == 200 else "")
        if v1:
            metrics.observe_request(model, api, entrypoint, code or "OK", seconds)
        conn.respond(req, status, body, content_type, cors=v1 and entrypoint == "REST", extra_headers=extra_headers)
        if self.request_log.enabled:
            self.request_log.request(api="rest", method=req.method, path=path, status=status, code=code,
                                     model=model, seconds=seconds, response_bytes=len(body),
                                     request_bytes=len(req.body), error=error, notes=notes)

    def _error(self, conn: Connection, req: Request, path: str, e: ServingError, api: str, model: str) -> None:
        self.finish(conn, req, path, http_status(e.code), codecs.encode_error(e.message),
                     api=api, model=model, code=e.code, error=e.message)

    def _v1(self, conn: Connection, req: Request, path: str) -> None:
        method = req.method
        if method == "OPTIONS":
            origin = req.headers.get(b"origin", b"")
            ok = re.search(rb"https?://", origin) is not None
            self.finish(conn, req, path, 200 if ok else 400, b"", content_type=None,
                         code="OK" if ok else "FAILED_PRECONDITION")
            return
        model = api = ""
        try:
            if method == "POST":
                ref, api = self._route(path)
                model = ref.name
                self._start_inference(conn, req, path, ref, api)
                return
            if method == "GET":
                m = STATUS_RE.fullmatch(path)
                if m is None:
                    raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
                model = unquote(m.group(1) or "")
                if not model:
                    raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
                ref = ModelRef(model, version(m.group(2)), unquote(m.group(3)) if m.group(3) else None)
                # the regex ignores case, the subresource test does not: /METADATA is a status request
                body = self._metadata(ref) if m.group(4) == "metadata" else self._status(ref)
                self.finish(conn, req, path, 200, body, model=model, code="OK")
                return
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        except ServingError as e:
            self._error(conn, req, path, e, api, model)
        except Exception as e:  # noqa: BLE001 - a bug must answer 500, not kill the connection
            log.exception("REST request failed: %s %s", method, path)
            self._error(conn, req, path, ServingError("INTERNAL", str(e)), api, model)

    def _route(self, path: str) -> tuple[ModelRef, str]:
        """The model and API a POST path names; cached, as clients post to the same few URLs."""
        route = self._routes.get(path)
        if route is None:
            m = PREDICT_RE.fullmatch(path)
            if m is None or m.group(4) not in VERBS:  # the regex ignores case, the verb test does not
                if m is not None:
                    version(m.group(2))  # ParseModelInfo reads the version before the verb is tested
                raise ServingError("INVALID_ARGUMENT", f"Malformed request: POST {path}")
            ref = ModelRef(unquote(m.group(1)), version(m.group(2)), unquote(m.group(3)) if m.group(3) else None)
            route = (ref, m.group(4))
            if len(self._routes) >= 1024:
                self._routes.clear()
            self._routes[path] = route
        return route

    # -- status, metadata, listing ----------------------------------------------------------

    def _status(self, ref: ModelRef) -> bytes:
        doc = {"model_version_status": [
            {"version": str(s.version), "state": s.state,
             "status": {"error_code": s.error_code or "OK", "error_message": s.error_message or ""}}
            for s in self.dataplane.status(ref)]}
        return (json.dumps(doc, indent=1) + "\n").encode()

    def _metadata(self, ref: ModelRef) -> bytes:
        meta = self.dataplane.metadata(ref)
        cached = self._metadata_json.get(id(meta))
        if cached is not None and cached[0] is meta:
            return cached[1]
        spec = model_pb2.ModelSpec(name=meta.name)
        spec.version.value = meta.version
        opts = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1)
        spec_json = json_format.MessageToJson(spec, **opts)
        sig_json = json_format.MessageToJson(meta.signature_def_map, **opts)
        body = ("{\n\"model_spec\":" + spec_json + "\n,\n\"metadata\": {\"signature_def\": "
                + sig_json + "\n}\n}\n").encode()
        if len(self._metadata_json) > 256:
            self._metadata_json.clear()
        self._metadata_json[id(meta)] = (meta, body)
        return body

    def _listing(self) -> bytes:
        return json.dumps({"models": [
            {"name": name, "versions": [{"version": str(s.version), "state": s.state} for s in statuses]}
            for name, statuses in self.dataplane.models()]}).encode()

    # -- predict / classify / regress -------------------------------------------------------

    def _start_inference(self, conn: Connection, req: Request, path: str, ref: ModelRef, api: str) -> None:
        """Hand the request to a worker thread; its answer comes back through an `_Answer`.

        A lone client (one open connection) with a small predict is served right here on the
        loop: nothing else can be waiting, and skipping the two thread hand-offs takes ~20% off
        its latency. That holds with batching on too: a lone client's request could only form a
        batch of one, after waiting out the batch timeout. With more connections the pool (or
        the batcher) takes every request, so a long inference never holds up the others' I/O.
        """
        answer = _Answer(self, conn, req, path, ref.name, api)
        if (api == "predict" and len(self.http.connections) == 1 and len(req.body) <= INLINE_MAX_BYTES
                and not self.dataplane.remote_io):
            self._inference_job(answer.deliver, ref, api, req.body, batch=False)
            return
        if self.deadlines is not None:
            self.deadlines.watch(answer)
        try:
            self.workers.submit(self._inference_job, answer, ref, api, req.body)
        except RuntimeError:  # workers shut down: the server is stopping
            answer.deliver(503, codecs.encode_error("Server is shutting down"), "UNAVAILABLE")

    def _inference_job(self, reply: Reply, ref: ModelRef, api: str, body: bytes, batch: bool = True) -> None:
        """Worker thread: parse, look up, run (or submit to the batcher), encode, reply. Work for
        a request already answered 504 (or whose client left) is abandoned between steps."""
        try:
            if _abandoned(reply):
                return
            doc = codecs.parse_predict_json(body) if api == "predict" else codecs.parse_json(body)
            if _abandoned(reply):
                return
            servable = self.dataplane.servable(ref)
            if api == "predict":
                self._predict(reply, servable, doc, body, batch)
            else:
                reply(200, self._examples(servable, doc, api), "OK")
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            _reply_error(reply, e, api)

    def _predict(self, reply: Reply, servable: Any, doc: dict, body: bytes, batch: bool) -> None:
        sig_name = codecs.signature_name(doc) or DEFAULT_SIGNATURE
        key = (id(servable), sig_name)
        dtypes = self._input_dtypes.get(key)
        if dtypes is None:
            sig = servable.signatures.get(sig_name)
            if sig is None:
                raise ServingError("INVALID_ARGUMENT",
                                   f'Serving signature name: "{sig_name}" not found in signature def')
            dtypes = {k: spec.dtype for k, spec in sig.inputs.items()}
            if len(self._input_dtypes) > 1024:
                self._input_dtypes.clear()
            self._input_dtypes[key] = dtypes
        features = self.dataplane.features
        if features is not None and _names_input(doc, features.config.key_input) \
                and features.config.key_input not in dtypes:
            # --feature_lookup: a request with the entity key, not every input
            dtypes = features.request_dtypes(servable.signatures[sig_name])
        inputs, fmt = codecs.decode_predict(doc, dtypes, strict=codecs.needs_strict(body, doc))
        if _abandoned(reply):
            return

        def done(outputs: dict | None, error: BaseException | None) -> None:  # maybe on a batch thread
            try:
                if error is not None:
                    raise error
                reply(200, codecs.encode_predict(outputs, fmt), "OK")
            except Exception as e:  # noqa: BLE001 - every failure is an answer
                _reply_error(reply, e, "predict")

        answer = _answer_of(reply)
        timeout = None
        if answer is not None and answer.deadline:
            timeout = max(0.0, answer.deadline - time.monotonic())  # loop time is monotonic
        self.dataplane.predict_then(servable, sig_name, inputs, done, batch=batch, timeout=timeout,
                                    notes=answer.notes if answer is not None else None)

    def _examples(self, servable: Any, doc: dict, api: str) -> bytes:
        if api == "classify":
            request: Any = classification_pb2.ClassificationRequest()
        else:
            request = regression_pb2.RegressionRequest()
        request.model_spec.name = servable.name
        request.model_spec.version.value = servable.version
        codecs.fill_examples_request(doc, request)
        if api == "classify":
            return codecs.encode_classify(self.dataplane.classify(servable, request).result)
        return codecs.encode_regress(self.dataplane.regress(servable, request).result)


def _names_input(doc: dict, name: str) -> bool:
    """Whether a predict request (columnar `inputs`, or row `instances` of objects) names `name`."""
    inputs = doc.get("inputs")
    if isinstance(inputs, dict):
        return name in inputs
    instances = doc.get("instances")
    return isinstance(instances, list) and bool(instances) and isinstance(instances[0], dict) \
        and name in instances[0]


def _answer_of(reply: Reply) -> _Answer | None:
    answer = reply if isinstance(reply, _Answer) else getattr(reply, "__self__", None)
    return answer if isinstance(answer, _Answer) else None


def _abandoned(reply: Reply) -> bool:
    """Whether nobody waits for this answer any more: its deadline passed (504 sent) or its
    connection closed. A plain read of two flags another thread sets: at worst one step late."""
    answer = _answer_of(reply)
    return answer is not None and (answer.done or answer.conn.closed)


def _reply_error(reply: Reply, e: BaseException, api: str) -> None:
    """Answer `e`: a ServingError with TF Serving's code and status, anything else as INTERNAL."""
    if isinstance(e, ServingError):
        reply(http_status(e.code), codecs.encode_error(e.message), e.code)
        return
    log.error("REST %s failed", api, exc_info=e)
    reply(500, codecs.encode_error(str(e)), "INTERNAL")


class _Answer:
    """The way back for one inference request: callable from any thread with (status, body,
    code); the first answer is written on the loop, a later one (after a 504) is dropped."""

    __slots__ = ("server", "conn", "req", "path", "model", "api", "done", "deadline", "notes")

    def __init__(self, server: RestServer, conn: Connection, req: Request, path: str, model: str,
                 api: str) -> None:
        self.server, self.conn, self.req, self.path = server, conn, req, path
        self.model, self.api = model, api
        self.done = False
        self.deadline = 0.0
        self.notes: dict | None = {} if server.request_log.enabled else None  # the data plane's, logged

    def __call__(self, status: int, body: bytes, code: str) -> None:  # from any thread
        self.server.http.post(self.deliver, status, body, code)

    def expire(self) -> None:  # DeadlineQueue, on the loop
        self.deliver(504, codecs.encode_error("Deadline Exceeded"), "DEADLINE_EXCEEDED")

    def deliver(self, status: int, body: bytes, code: str) -> None:  # on the loop
        if self.done:
            return
        self.done = True
        self.server.finish(self.conn, self.req, self.path, status, body, api=self.api, model=self.model,
                            code=code, notes=self.notes)


def serve_rest(dataplane: DataPlane, options: ServerOptions, request_log: RequestLog,
               apps: Sequence[Callable[[RestServer], PathApp]] = ()) -> LoopThread:
    """Start the REST server (and `apps` on its port) on its own event-loop thread; returns once
    the port is bound.

    Raises OSError when the port cannot be bound. `.stop(grace)` drains and closes it."""
    return LoopThread.start(RestServer(dataplane, options, request_log, apps), name="rest-loop")
