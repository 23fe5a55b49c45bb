"""TF Serving's gRPC methods, each written once: request proto (+ seconds left) -> response
proto, raising `ServingError`. Both gRPC front-ends call these: `grpcio/servicers.py` (grpcio)
and `h2front.py` (our HTTP/2). `GrpcCalls.finish` is the one place that counts a call in
the metrics and the request log.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, predict_pb2, regression_pb2)

from mlserve.server.observability import metrics
from mlserve.server.servables import tensors
from mlserve.server.dataplane import DataPlane, ModelRef
from mlserve.server.errors import ServingError, StatusCode
from mlserve.server.observability.requestlog import RequestLog

log = logging.getLogger("mlserve.server.grpc")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def ref_of(model_spec: Any) -> ModelRef:
    """The ModelRef of a `ModelSpec` proto (latest, a version, or a label)."""
    if not model_spec.name:
        raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return ModelRef(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return ModelRef(model_spec.name, label=model_spec.version_label)
    return ModelRef(model_spec.name)


def spec_of(request: Any) -> Any:
    """The request's ModelSpec; INVALID_ARGUMENT "Missing ModelSpec" without one (predict_impl.cc,
    classification_service.cc, regression_service.cc, get_model_metadata_impl.cc)."""
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
    return request.model_spec


# How a front-end runs a method (grpc/h2front.py): LOOP answers on the event loop (cheap and never
# blocking); WORKER runs the whole call on a worker thread (it may block for long: a reload for
# seconds); SPLIT decodes with `<call>_start`, hands the inputs to the data plane, and encodes
# with `<call>_finish` when the data plane (perhaps a batch thread) answers.
LOOP, WORKER, SPLIT = "loop", "worker", "split"


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    request_type: Any  # the request proto class
    call: str  # the GrpcCalls method that does the work (`<call>_start`/`<call>_finish` when SPLIT)
    dispatch: str  # where a front-end runs it: LOOP, WORKER (may block for long) or SPLIT
    entrypoint: str = "GRPC"  # the metrics' entrypoint label (the protocol)

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    def model(self, request: Any) -> str:
        if self.name == "MultiInference":
            return request.tasks[0].model_spec.name if request.tasks else ""
        if hasattr(request, "model_spec"):
            return request.model_spec.name
        # the Open Inference Protocol's requests name the model as model_name or name
        return getattr(request, "model_name", "") or getattr(request, "name", "")


METHODS: dict[str, Method] = {m.path: m for m in (
    Method(PREDICTION_SERVICE, "Predict", predict_pb2.PredictRequest, "predict", SPLIT),
    Method(PREDICTION_SERVICE, "Classify", classification_pb2.ClassificationRequest, "classify", WORKER),
    Method(PREDICTION_SERVICE, "Regress", regression_pb2.RegressionRequest, "regress", WORKER),
    Method(PREDICTION_SERVICE, "MultiInference", inference_pb2.MultiInferenceRequest, "multi_inference", WORKER),
    Method(PREDICTION_SERVICE, "GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest,
           "get_model_metadata", WORKER),
    Method(MODEL_SERVICE, "GetModelStatus", get_model_status_pb2.GetModelStatusRequest, "get_model_status", LOOP),
    Method(MODEL_SERVICE, "HandleReloadConfigRequest", model_management_pb2.ReloadConfigRequest,
           "handle_reload_config_request", WORKER),
)}


class GrpcCalls:
    """The methods of METHODS over `dataplane`."""

    def __init__(self, dataplane: DataPlane, request_log: RequestLog, *, tensor_content: bool = False) -> None:
        self.dataplane = dataplane
        self.request_log = request_log
        self.tensor_content = tensor_content
        self._notes = threading.local()  # the request log's notes of the call running on a thread

    def run(self, method: Method, request: Any, timeout: float | None) -> tuple[Any, str, str]:
        """Do `method`'s work, count it; returns (response or None, code name, message)."""
        start = time.perf_counter()
        if self.request_log.enabled:
            self._notes.current = {}  # what a predict on this thread notes (see `predict`)
        try:
            response = getattr(self, method.call)(request, timeout)
        except Exception as e:  # noqa: BLE001 - every failure is a status
            code, message = status_of(e, method.name)
            self.finish(method, request, code, message, None, start)
            return None, code, message
        self.finish(method, request, "OK", "", response, start)
        return response, "OK", ""

    def finish(self, method: Method, request: Any, code: str, message: str, response: Any,
               start: float, notes: dict | None = None) -> None:
        """Count one call in the metrics and the request log."""
        elapsed = time.perf_counter() - start
        model = method.model(request) if request is not None else ""
        metrics.observe_request(model, method.name, method.entrypoint, code, elapsed)
        if self.request_log.enabled:
            self.request_log.request(
                api="grpc", method=method.name, path=method.path, status=StatusCode.number(code),
                code=code, model=model, seconds=elapsed,
                response_bytes=response.ByteSize() if response is not None else 0,
                request_bytes=request.ByteSize() if request is not None else 0, error=message or None,
                notes=notes if notes is not None else self._notes.__dict__.pop("current", None))

    # -- Predict, in two halves for front-ends that answer later (batching) ------------------

    def predict_start(self, request: Any, hold: Callable[[int], None] | None = None
                      ) -> tuple[Any, str, dict, list[str] | None]:
        """Look up and decode: (servable, signature name, inputs, output filter). Input names and
        count are checked before any tensor is decoded (as TF Serving's predict_util.cc), then
        what the tensors decode to, all together: past `--max_decoded_request_bytes`
        RESOURCE_EXHAUSTED, else `hold(bytes)` charges it (to the in-flight budget) before the
        arrays exist."""
        servable = self.dataplane.servable(ref_of(spec_of(request)))
        sig = servable.signature(request.model_spec.signature_name)
        limit = self.dataplane.max_decoded_bytes

        def admit(protos: Any) -> None:
            decoded = sum(tensors.decoded_nbytes(v) for v in protos.values())
            if decoded > limit:
                raise ServingError("RESOURCE_EXHAUSTED",
                                   f"Request tensors decode to {decoded} bytes, more than the limit of "
                                   f"{limit} bytes per request (--max_decoded_request_bytes)")
            if hold is not None:
                hold(decoded)

        features = self.dataplane.features
        if features is not None and set(request.inputs) == set(features.request_dtypes(sig)):
            # a keyed request of --feature_lookup: the data plane fills the rest from the store,
            # and the servable checks the completed inputs as ever
            admit(request.inputs)
            inputs = {k: tensors.to_ndarray(v, k) for k, v in request.inputs.items()}
        else:
            inputs = servable.inputs_from_protos(sig, request.inputs, admit)
        output_filter = list(request.output_filter) or None
        if output_filter:
            servable.check_output_filter(sig, output_filter)
        return servable, sig.name, inputs, output_filter

    def predict_finish(self, servable: Any, signature: str, outputs: dict, output_filter: list[str] | None) -> Any:
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return servable.predict_response(signature, outputs, tensor_content=self.tensor_content)

    def predict(self, request: Any, timeout: float | None) -> Any:
        held = [0]

        def hold(n: int) -> None:
            held[0] = hold_inflight(self.dataplane.budget, n)

        try:
            servable, signature, inputs, output_filter = self.predict_start(request, hold)
            outputs = self.dataplane.predict(servable, signature, inputs, output_filter=output_filter, timeout=timeout,
                                             notes=getattr(self._notes, "current", None))
            return self.predict_finish(servable, signature, outputs, None)
        finally:
            if held[0] and self.dataplane.budget is not None:
                self.dataplane.budget.release(held[0])

    # -- the others ----------------------------------------------------------------------------

    def classify(self, request: Any, timeout: float | None) -> Any:
        return self.dataplane.classify(self.dataplane.servable(ref_of(spec_of(request))), request)

    def regress(self, request: Any, timeout: float | None) -> Any:
        return self.dataplane.regress(self.dataplane.servable(ref_of(spec_of(request))), request)

    def multi_inference(self, request: Any, timeout: float | None) -> Any:
        if not request.tasks:  # multi_inference_helper.cc looks up an empty ModelSpec
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        servable = self.dataplane.servable(ref_of(request.tasks[0].model_spec))
        return self.dataplane.multi_inference(servable, request)

    def get_model_metadata(self, request: Any, timeout: float | None) -> Any:
        spec = spec_of(request)
        fields = list(request.metadata_field)
        if not fields:
            raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:  # get_model_metadata_impl.cc: ValidateGetModelMetadataRequest, before any lookup
            if field != "signature_def":
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        for field in fields:  # then each field in turn (all signature_def: the loop's other arm is unreachable)
            meta = self.dataplane.metadata(ref_of(spec))
            resp.model_spec.name = meta.name
            resp.model_spec.version.value = meta.version
            resp.metadata["signature_def"].Pack(meta.signature_def_map)
        return resp

    def get_model_status(self, request: Any, timeout: float | None) -> Any:
        spec = spec_of(request)
        choice = spec.WhichOneof("version_choice")
        ref = ModelRef(spec.name, version=spec.version.value if choice == "version" else None,
                       label=spec.version_label if choice == "version_label" else None)
        resp = get_model_status_pb2.GetModelStatusResponse()
        for s in self.dataplane.status(ref):
            entry = resp.model_version_status.add()
            entry.version = s.version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(s.state)
            entry.status.error_code = StatusCode.number(s.error_code)
            entry.status.error_message = s.error_message
        return resp

    def handle_reload_config_request(self, request: Any, timeout: float | None) -> Any:
        self.dataplane.reload(request.config)
        resp = model_management_pb2.ReloadConfigResponse()
        resp.status.error_code = 0
        return resp


def hold_inflight(budget: Any, n: int) -> int:
    """Charge `n` decoded bytes to the in-flight budget (None: no budget); returns what is held,
    or raises RESOURCE_EXHAUSTED (holding nothing) when they do not fit."""
    if budget is None or n <= 0:
        return 0
    if not budget.charge(n):
        budget.release(n)
        raise ServingError("RESOURCE_EXHAUSTED", f"Server is over its limit of {budget.limit} bytes of "
                                                 "requests in flight; retry later")
    return n


def status_of(error: BaseException, method: str = "") -> tuple[str, str]:
    """A failure as (code name, message): a ServingError's own, anything else INTERNAL."""
    if isinstance(error, ServingError):
        return error.code, error.message
    log.error("%s failed", method or "gRPC call", exc_info=error)  # a bug or an unexpected TF failure
    return "INTERNAL", f"{type(error).__name__}: {error}"

