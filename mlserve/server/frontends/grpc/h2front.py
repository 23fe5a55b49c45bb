"""TF Serving's gRPC API on our own HTTP/2 transport (`transport/http2/`), on an event-loop thread: the
default gRPC front-end (`--grpc_frontend=h2`; grpcio's server is the fallback, `grpcio/`).

A call's path picks its `methods.Method`; its one request message is unpacked
(`wire`), parsed, and answered by the same `GrpcCalls` work as under grpcio:
- Predict: decoded on a worker (`--grpc_max_threads`, TF Serving's 4 per CPU; with batching at
  most 2 per CPU, as REST's threads) and handed to `dataplane.predict_then`: without batching
  the worker runs the model, so a long model call never holds up other connections' I/O; with
  batching the answer comes back from the batch thread through the server's outbox. A lone
  client's (one open connection) small request runs right here instead, as REST's does, saving
  two thread hand-offs (measured, docs/architecture.md);
- methods that may block for long (reload, classify, regress, multi-inference, metadata) run
  on the worker pool too, never on the loop;
- GetModelStatus and health Check answer on the loop; health Watch streams (`health`).
`grpc-timeout` arms a timer: DEADLINE_EXCEEDED at expiry, and the work, if not begun, is dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from google.protobuf.message import DecodeError

from mlserve.server.frontends.grpc import wire
from mlserve.server.dataplane import DataPlane
from mlserve.server.errors import ServingError
from mlserve.server.flags import ServerOptions, schedulable_cpus
from mlserve.server.frontends.grpc.health import CHECK, WATCH, Health
from mlserve.server.frontends.grpc.methods import LOOP, METHODS, SPLIT, GrpcCalls, Method, hold_inflight, status_of
from mlserve.server.transport.http2 import H2Config, H2Connection, H2Server, Stream
from mlserve.server.transport.loopthread import LoopThread
from mlserve.server.observability.requestlog import RequestLog
from mlserve.server.transport.workers import WorkerPool

log = logging.getLogger("mlserve.server.grpc")
INLINE_MAX_BYTES = 64 * 1024  # a lone client's Predict this small runs on the loop
_HELD_LOCK = threading.Lock()  # Call.held: charged on a worker, released on the loop


class Call:
    """One unary call: answered once (`deliver`, on the loop); a later answer is dropped."""

    __slots__ = ("conn", "stream", "method", "encoding", "start", "done", "timer", "budget", "held")

    def __init__(self, conn: H2Connection, stream: Stream, method: Method | None, encoding: bytes | None,
                 budget: Any = None) -> None:
        self.conn, self.stream, self.method, self.encoding = conn, stream, method, encoding
        self.start = time.perf_counter()
        self.done = False
        self.timer: Any = None
        self.budget = budget
        self.held = 0  # in-flight bytes beyond the body the transport charged: inflated, decoded

    def hold(self, n: int) -> None:
        """Charge `n` more bytes this call holds (RESOURCE_EXHAUSTED when they do not fit). A
        worker may call this while the loop answers the call (a deadline): what a call that is
        already answered would hold is given back at once."""
        n = hold_inflight(self.budget, n)
        with _HELD_LOCK:
            if not self.done:
                self.held += n
                return
        if n:
            self.budget.release(n)
        raise ServingError("CANCELLED", "The call was answered or cancelled")

    def release(self) -> None:
        with _HELD_LOCK:
            held, self.held = self.held, 0
        if held and self.budget is not None:
            self.budget.release(held)

    def deliver(self, payload: bytes | None, code: str = "OK", message: str = "") -> None:
        if self.done:
            return
        self.done = True
        self.release()
        if self.timer is not None:
            self.timer.cancel()
        if payload is not None:
            self.conn.respond(self.stream, wire.RESPONSE_HEADERS, wire.pack(payload), wire.OK_TRAILERS)
        else:
            self.conn.respond(self.stream, wire.trailers_only(code, message), None)

    def cancel(self) -> None:  # the client reset the stream or left
        self.done = True
        self.release()
        if self.timer is not None:
            self.timer.cancel()


class GrpcFrontend:
    """An `H2App` and an `AsyncServer` (for `LoopThread`)."""

    def __init__(self, dataplane: DataPlane, options: ServerOptions, request_log: RequestLog,
                 config: H2Config, max_send_bytes: int = 2**31 - 1,
                 methods: dict[str, Method] | None = None, calls: GrpcCalls | None = None) -> None:
        self.dataplane = dataplane
        self.methods = METHODS if methods is None else methods  # path -> Method
        # the object whose `Method.call`s do the work (a subclass of GrpcCalls for more services)
        self.calls = calls or GrpcCalls(dataplane, request_log,
                                        tensor_content=options.enable_serialization_as_tensor_content)
        self.http = H2Server(self, config, dataplane.budget)
        self.max_message = config.max_body_bytes - 5
        self.max_send_bytes = max_send_bytes
        self.batching = dataplane.batcher is not None
        self.health_enabled = options.health_service
        self.health: Health | None = None
        threads = max(options.grpc_max_threads, 1)
        if self.batching:  # the workers only decode and queue: more than CPUs take turns at the GIL
            threads = min(threads, 2 * schedulable_cpus())
        self.workers = WorkerPool(threads, "grpc")
        self.loop: Any = None
        self.loop_thread = 0

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()
        self.loop, self.loop_thread = self.http.loop, threading.get_ident()
        if self.health_enabled:
            self.health = Health(self.dataplane, self.http.post)

    async def stop(self, grace: float = 5.0) -> None:
        if self.health is not None:
            self.health.shutdown()
        await self.http.stop(grace)
        self.workers.shutdown()

    # -- H2App ----------------------------------------------------------------------------------

    def request(self, conn: H2Connection, stream: Stream) -> None:
        headers = stream.headers
        path = headers.get(b":path", b"").decode("latin-1")
        method = self.methods.get(path)
        call = Call(conn, stream, method, headers.get(b"grpc-encoding"), self.dataplane.budget)
        stream.app, stream.on_cancel = call, call.cancel
        if method is None and not (self.health is not None and path in (CHECK, WATCH)):
            call.deliver(None, "UNIMPLEMENTED", "Method not found!")  # grpcio's wording
            return
        timeout = wire.parse_timeout(headers.get(b"grpc-timeout"))
        if timeout is not None:
            call.timer = self.loop.call_later(timeout, self._expire, call)

    def refuse(self, conn: H2Connection, stream: Stream, why: str) -> None:
        call = stream.app
        if call is not None and not call.done:
            self._finish(call, None, "RESOURCE_EXHAUSTED", why.capitalize())

    def body(self, conn: H2Connection, stream: Stream) -> None:
        call: Call = stream.app
        if call is None or call.done:
            return
        method = call.method
        request = None
        try:
            payload = wire.unpack(stream.body, call.encoding, self.max_message)
            if len(payload) > len(stream.body):  # inflated: charged at its decompressed size
                call.hold(len(payload) - len(stream.body))
            request_type = method.request_type if method is not None else _health_request()
            try:
                request = request_type.FromString(payload)
            except (DecodeError, ValueError, TypeError, RuntimeError):
                raise ServingError("INVALID_ARGUMENT", "Could not parse the request message") from None
            if method is None:
                self._health(call, request)
            elif method.dispatch == SPLIT:
                self._split(call, request, len(stream.body))
            elif method.dispatch == LOOP:
                self._reply(call, *self.calls.run(method, request, self._left(call)))
            else:
                self._submit(self._job, call, request)
        except Exception as e:  # noqa: BLE001 - every failure is a status
            code, message = status_of(e, method.name if method else "")
            self._finish(call, request, code, message)

    # -- methods ------------------------------------------------------------------------------

    def _split(self, call: Call, request: Any, size: int) -> None:
        if size > INLINE_MAX_BYTES or len(self.http.connections) > 1:
            self._submit(self._split_now, call, request)
            return
        self._split_now(call, request)

    def _submit(self, job: Any, call: Call, request: Any) -> None:
        try:
            self.workers.submit(job, call, request)
        except RuntimeError:  # the pool is shut down: the server is stopping
            raise ServingError("UNAVAILABLE", "Server is shutting down") from None

    def _split_now(self, call: Call, request: Any) -> None:
        """Decode and hand to the data plane; `done` answers (on a batch thread with batching)."""
        if call.done:
            return
        method = call.method
        start = getattr(self.calls, method.call + "_start")
        finish = getattr(self.calls, method.call + "_finish")
        try:
            servable, signature, inputs, output_filter = start(request, call.hold)
        except Exception as e:  # noqa: BLE001
            self._post(self._finish, call, request, *status_of(e, method.name))
            return

        notes: dict | None = {} if self.calls.request_log.enabled else None

        def done(outputs: Any, error: BaseException | None) -> None:
            response = None
            if error is None:
                try:
                    response = finish(servable, signature, outputs, output_filter)
                except Exception as e:  # noqa: BLE001
                    error = e
            code, message = status_of(error, method.name) if error is not None else ("OK", "")
            self._post(self._finish, call, request, code, message, response, notes)

        try:  # the deadline bounds a feature-store read too
            self.dataplane.predict_then(servable, signature, inputs, done, timeout=self._left_now(call),
                                        notes=notes)
        except Exception as e:  # noqa: BLE001 - what the batcher refuses at once
            self._post(self._finish, call, request, *status_of(e, method.name), None, notes)

    def _job(self, call: Call, request: Any) -> None:
        """Worker thread: a slow method's work, unless its deadline passed meanwhile."""
        if call.done:
            return
        self.http.post(self._reply, call, *self.calls.run(call.method, request, self._left(call)))

    def _health(self, call: Call, request: Any) -> None:
        if call.stream.headers.get(b":path") == WATCH.encode():
            call.done = True
            if call.timer is not None:
                call.timer.cancel()
            self.health.watch(call.conn, call.stream, request)
            return
        payload, code = self.health.check(request)
        call.deliver(payload, code, "")

    # -- answers --------------------------------------------------------------------------------

    def _post(self, fn: Any, *args: Any) -> None:
        """Run on the loop: now when on it, else through the outbox."""
        if threading.get_ident() == self.loop_thread:
            fn(*args)
        else:
            self.http.post(fn, *args)

    def _reply(self, call: Call, response: Any, code: str, message: str) -> None:
        """Answer what `GrpcCalls.run` returned (and counted already)."""
        if response is None:
            call.deliver(None, code, message)
        else:
            self._send(call, response)

    def _send(self, call: Call, response: Any) -> None:
        payload = response.SerializeToString()
        if len(payload) > self.max_send_bytes:
            call.deliver(None, "RESOURCE_EXHAUSTED",
                         f"Sent message larger than max ({len(payload)} vs. {self.max_send_bytes})")
            return
        call.deliver(payload)

    def _finish(self, call: Call, request: Any, code: str, message: str, response: Any = None,
                notes: dict | None = None) -> None:
        """On the loop: count the call (metrics, request log) and answer it."""
        if call.done:
            return
        if call.method is not None:
            self.calls.finish(call.method, request, code, message, response, call.start, notes)
        if response is not None:
            self._send(call, response)
        else:
            call.deliver(None, code, message)

    def _expire(self, call: Call) -> None:
        call.timer = None
        self._finish(call, None, "DEADLINE_EXCEEDED", "Deadline Exceeded")

    def _left(self, call: Call) -> float | None:
        if call.timer is None:
            return None
        return max(0.0, call.timer.when() - self.loop.time())

    def _left_now(self, call: Call) -> float | None:
        """`_left` from any thread (the loop's clock is time.monotonic)."""
        timer = call.timer
        if timer is None:
            return None
        return max(0.0, timer.when() - time.monotonic())


def _health_request() -> Any:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckRequest


# `--grpc_channel_arguments` this front-end gives a meaning (any other: the grpcio fallback)
MAPPED_ARGUMENTS = frozenset({"grpc.max_concurrent_streams", "grpc.max_receive_message_length",
                              "grpc.max_send_message_length", "grpc.max_connection_idle_ms",
                              "grpc.max_metadata_size", "grpc.so_reuseport"})


def unmapped_arguments(options: ServerOptions) -> list[str]:
    """The channel arguments this front-end cannot honour (they need grpcio)."""
    return [k for k, _ in options.channel_arguments() if k not in MAPPED_ARGUMENTS]


def h2_config(options: ServerOptions) -> tuple[H2Config, int]:
    """The HTTP/2 limits from the flags, and the largest answer message: a request message is
    bounded as a REST body is (--max_request_bytes, and --max_inflight_bytes over all
    connections), unless grpc.max_receive_message_length says otherwise (-1: only the budget)."""
    args = dict(options.channel_arguments())
    receive = int(args.get("grpc.max_receive_message_length", options.max_request_bytes))
    if receive < 0:
        receive = options.max_inflight_bytes
    send = int(args.get("grpc.max_send_message_length", -1))
    idle_ms = int(args.get("grpc.max_connection_idle_ms", options.http_idle_timeout_seconds * 1000))
    config = H2Config(host=options.host, port=options.port,
                      max_concurrent_streams=int(args.get("grpc.max_concurrent_streams", H2Config.max_concurrent_streams)),
                      max_header_list_bytes=int(args.get("grpc.max_metadata_size", options.http_max_header_bytes)),
                      max_body_bytes=receive + 5, max_inflight_bytes=options.max_inflight_bytes,
                      preface_timeout=options.http_header_timeout_seconds, idle_timeout=max(idle_ms, 0) / 1000,
                      stall_timeout=options.http_body_timeout_seconds,
                      send_timeout=options.http_body_timeout_seconds, max_connections=options.http_max_connections,
                      max_unsent_bytes=options.http_max_unsent_bytes)
    return config, send if send >= 0 else 2**31 - 1


def serve_grpc_h2(dataplane: DataPlane, options: ServerOptions, request_log: RequestLog,
                  methods: dict[str, Method] | None = None, calls: GrpcCalls | None = None) -> LoopThread:
    """Start the HTTP/2 gRPC front-end on its own loop thread; OSError when it cannot bind."""
    config, max_send = h2_config(options)
    thread = LoopThread.start(GrpcFrontend(dataplane, options, request_log, config, max_send, methods, calls),
                              name="grpc-loop")
    log.info("Running gRPC ModelServer at %s:%d ...", options.host, thread.port)
    return thread
