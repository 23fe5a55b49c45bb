"""The Open Inference Protocol's REST binding (`/v2/...`) on the REST port, a `PathApp` of the REST
server: health, server and model metadata, model readiness, and `/infer` with JSON tensors or the
binary tensor extension. Inference runs as TF Serving's REST predict does: on the REST server's
worker threads (its deadline, its in-flight budget), through `DataPlane.predict_then`, so
batching, metrics (entrypoint `REST_V2`) and the request log apply.

Versions are numbers (the protocol's version is a string; mlserve takes numbers, not labels);
errors are `{"error": "..."}` with the HTTP
status of their code, as TF Serving maps codes.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Protocol
from urllib.parse import unquote

import numpy as np
import orjson

from mlserve.server.dataplane import DataPlane, ModelRef
from mlserve.server.errors import ServingError, http_status
from mlserve.server.frontends.v2 import binary, tensors
from mlserve.server.servables.signature import DEFAULT_SIGNATURE, SignatureInfo
from mlserve.server.transport.http1 import Connection, Request

log = logging.getLogger("mlserve.server.v2")

PREFIX = "/v2"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "tensorflow_savedmodel"
_MODEL = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
_JSON = b"application/json"
_OCTETS = b"application/octet-stream"


class Host(Protocol):
    """What this app uses of the REST server it runs in (`frontends/rest/routes.RestServer`)."""

    dataplane: DataPlane
    workers: Any
    deadlines: Any
    http: Any
    request_log: Any

    def finish(self, conn: Connection, req: Request, path: str, status: int, body: bytes, **kw: Any) -> None: ...


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def server_metadata() -> dict:
    from mlserve import __version__

    return {"name": "mlserve", "version": __version__, "extensions": EXTENSIONS}


def tensor_metadata(spec: Any) -> dict:
    shape = [-1] if spec.shape is None else [-1 if d is None else d for d in spec.shape]
    return {"name": spec.key, "datatype": tensors.datatype_of(spec.dtype), "shape": shape}


def signature_of(servable: Any) -> SignatureInfo:
    """The signature the protocol serves: `serving_default` (the protocol names no signature)."""
    sig = servable.signatures.get(DEFAULT_SIGNATURE)
    if sig is None:
        raise ServingError("FAILED_PRECONDITION", f"model '{servable.name}' has no {DEFAULT_SIGNATURE} "
                                                  "signature, the one the v2 protocol serves")
    return sig


def model_metadata(dataplane: DataPlane, ref: ModelRef) -> dict:
    servable = dataplane.servable(ref)
    sig = signature_of(servable)
    versions = [str(s.version) for s in dataplane.status(ModelRef(ref.name)) if s.state == "AVAILABLE"]
    return {"name": servable.name, "versions": versions, "platform": PLATFORM,
            "inputs": [tensor_metadata(s) for _, s in sorted(sig.inputs.items())],
            "outputs": [tensor_metadata(s) for _, s in sorted(sig.outputs.items())]}


def model_ref(name: str, version: str | None) -> ModelRef:
    if version is None:
        return ModelRef(unquote(name))
    if not version.isdigit() or len(version) > 18:
        raise ServingError("INVALID_ARGUMENT", f"invalid model version {version!r}: the v2 protocol names "
                                               "versions by number")
    return ModelRef(unquote(name), int(version))


def decode_infer(body: bytes, header_length: bytes | None, sig: SignatureInfo
                 ) -> tuple[dict[str, np.ndarray], list[str], set[str], Any]:
    """A `/infer` body as (inputs, outputs to answer, outputs to answer in binary, request id)."""
    head, data = binary.split(body, header_length)
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise tensors.bad(f"the request is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise tensors.bad("the request must be a JSON object with an 'inputs' list")
    entries = doc["inputs"]
    if not all(isinstance(e, dict) for e in entries):
        raise tensors.bad("each of 'inputs' must be an object {name, shape, datatype, data}")
    raws = binary.take(data, entries)
    inputs: dict[str, np.ndarray] = {}
    for entry, raw in zip(entries, raws):
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise tensors.bad("an input has no name")
        if name in inputs:
            raise tensors.bad(f"input '{name}' is given twice")
        shape = tensors.shape_of(entry.get("shape"), name)
        if raw is not None:
            inputs[name] = tensors.from_raw(raw, entry.get("datatype"), shape, name)
        elif "data" in entry:
            inputs[name] = tensors.from_data(entry["data"], entry.get("datatype"), shape, name)
        else:
            raise tensors.bad(f"input '{name}' has neither data nor parameters.binary_data_size")
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    all_binary = params.get("binary_data_output") is True
    wanted = doc.get("outputs")
    if wanted is None:
        names = sorted(sig.outputs)
        as_binary = set(names) if all_binary else set()
    else:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in wanted):
            raise tensors.bad("'outputs' must be a list of objects {name, parameters}")
        names = [o["name"] for o in wanted]
        unknown = [n for n in names if n not in sig.outputs]
        if unknown:
            raise tensors.bad(f"unknown output '{unknown[0]}'; the model's outputs are {', '.join(sorted(sig.outputs))}")
        as_binary = {o["name"] for o in wanted
                     if all_binary or (isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True)}
    return inputs, names, as_binary, doc.get("id")


def encode_infer(servable: Any, outputs: dict[str, np.ndarray], names: list[str], as_binary: set[str],
                 request_id: Any) -> tuple[bytes, bytes]:
    """(the answer's body, its extra header lines): JSON, then the binary outputs' bytes."""
    entries, chunks = [], []
    for name in names:
        array = np.asarray(outputs[name])
        entry: dict = {"name": name, "datatype": tensors.datatype_of(array.dtype), "shape": list(array.shape)}
        if name in as_binary:
            raw = tensors.to_raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = tensors.to_data(array)
        entries.append(entry)
    doc: dict = {"model_name": servable.name, "model_version": str(servable.version), "outputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    head = orjson.dumps(doc)
    if not chunks:
        return head, b""
    return head + b"".join(chunks), b"Inference-Header-Content-Length: %d\r\n" % len(head)


class V2Rest:
    """The `/v2` routes of the REST port."""

    prefix = PREFIX

    def __init__(self, host: Host) -> None:
        self.host = host
        self.dataplane = host.dataplane

    def handle(self, conn: Connection, req: Request, path: str) -> None:
        method = req.method
        model = ""
        try:
            if path in ("/v2", "/v2/") and method in ("GET", "HEAD"):
                self._json(conn, req, path, 200, server_metadata())
                return
            # health answers by status (tritonclient reads that) and by body (KServe's clients)
            if path == "/v2/health/live" and method in ("GET", "HEAD"):
                self._json(conn, req, path, 200, {"live": True})
                return
            if path == "/v2/health/ready" and method in ("GET", "HEAD"):
                ready = self.dataplane.ready() and not self.host.http.stopping
                self._json(conn, req, path, 200 if ready else 503, {"ready": ready})
                return
            m = _MODEL.fullmatch(path)
            if m is None:
                raise ServingError("NOT_FOUND", f"no v2 endpoint {method} {path}")
            ref = model_ref(m.group(1), m.group(2))
            model = ref.name
            verb = m.group(3)
            if verb == "/infer" and method == "POST":
                self._infer(conn, req, path, ref)
            elif verb == "/ready" and method in ("GET", "HEAD"):
                ready = self._ready(ref)
                self._json(conn, req, path, 200 if ready else 400, {"name": ref.name, "ready": ready}, model=model)
            elif verb is None and method in ("GET", "HEAD"):
                self._json(conn, req, path, 200, model_metadata(self.dataplane, ref), model=model)
            else:
                raise ServingError("NOT_FOUND", f"no v2 endpoint {method} {path}")
        except ServingError as e:
            self._error(conn, req, path, e, model)
        except Exception as e:  # noqa: BLE001 - a bug answers 500, never kills the connection
            log.exception("v2 request failed: %s %s", method, path)
            self._error(conn, req, path, ServingError("INTERNAL", str(e)), model)

    def _ready(self, ref: ModelRef) -> bool:
        try:
            self.dataplane.servable(ref)
        except ServingError:
            return False
        return True

    def _json(self, conn: Connection, req: Request, path: str, status: int, doc: Any, model: str = "") -> None:
        self.host.finish(conn, req, path, status, orjson.dumps(doc), content_type=_JSON, model=model,
                         api="metadata", v1=False)

    def _error(self, conn: Connection, req: Request, path: str, e: ServingError, model: str) -> None:
        self.host.finish(conn, req, path, http_status(e.code), error_body(e.message), content_type=_JSON,
                         model=model, api="infer", code=e.code, error=e.message, entrypoint="REST_V2")

    # -- infer ---------------------------------------------------------------------------------

    def _infer(self, conn: Connection, req: Request, path: str, ref: ModelRef) -> None:
        answer = _Answer(self, conn, req, path, ref.name)
        if self.host.deadlines is not None:
            self.host.deadlines.watch(answer)
        try:
            self.host.workers.submit(self._job, answer, ref, req.body, req.headers.get(binary.HEADER))
        except RuntimeError:  # the pool is shut down: the server is stopping
            answer.deliver(503, error_body("Server is shutting down"), "UNAVAILABLE")

    def _job(self, answer: _Answer, ref: ModelRef, body: bytes, header_length: bytes | None) -> None:
        """Worker thread: decode, hand to the data plane; `done` encodes and answers."""
        if answer.done:
            return
        try:
            servable = self.dataplane.servable(ref)
            sig = signature_of(servable)
            inputs, names, as_binary, request_id = decode_infer(body, header_length, sig)
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            answer.fail(e)
            return

        def done(outputs: Any, error: BaseException | None) -> None:
            if error is not None:
                answer.fail(error)
                return
            try:
                payload, extra = encode_infer(servable, outputs, names, as_binary, request_id)
            except Exception as e:  # noqa: BLE001
                answer.fail(e)
                return
            answer(200, payload, "OK", extra)

        timeout = max(0.0, answer.deadline - time.monotonic()) if answer.deadline else None  # loop time
        try:
            self.dataplane.predict_then(servable, sig.name, inputs, done, timeout=timeout, notes=answer.notes)
        except Exception as e:  # noqa: BLE001 - what the batcher refuses at once
            answer.fail(e)


class _Answer:
    """The way back for one `/infer`: callable from any thread; the first answer is written on the
    loop, a later one (after the deadline's 504) is dropped."""

    __slots__ = ("app", "conn", "req", "path", "model", "done", "deadline", "notes")

    def __init__(self, app: V2Rest, conn: Connection, req: Request, path: str, model: str) -> None:
        self.app, self.conn, self.req, self.path, self.model = app, conn, req, path, model
        self.done = False
        self.deadline = 0.0
        self.notes: dict | None = {} if app.host.request_log.enabled else None  # the data plane's, logged

    def __call__(self, status: int, body: bytes, code: str, extra: bytes = b"") -> None:  # any thread
        self.app.host.http.post(self.deliver, status, body, code, extra)

    def fail(self, error: BaseException) -> None:
        if isinstance(error, ServingError):
            self(http_status(error.code), error_body(error.message), error.code)
            return
        log.error("v2 infer failed", exc_info=error)
        self(500, error_body(str(error)), "INTERNAL")

    def expire(self) -> None:  # DeadlineQueue, on the loop
        self.deliver(504, error_body("Deadline Exceeded"), "DEADLINE_EXCEEDED")

    def deliver(self, status: int, body: bytes, code: str, extra: bytes = b"") -> None:  # on the loop
        if self.done:
            return
        self.done = True
        self.app.host.finish(self.conn, self.req, self.path, status, body,
                             content_type=_OCTETS if extra else _JSON, api="infer", model=self.model,
                             code=code, entrypoint="REST_V2", extra_headers=extra, notes=self.notes,
                             error=None if status == 200 else body.decode("utf-8", "replace"))
