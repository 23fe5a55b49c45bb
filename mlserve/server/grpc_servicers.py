"""TF Serving's gRPC API (PredictionService, ModelService) over the data plane, on the official
stubs of `tensorflow_serving.apis`, so any TF Serving client works unchanged.

Each method decodes its request proto, calls one data-plane method and encodes the response;
a `ServingError` becomes the call's status with TF Serving's code and message.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from mlserve.server import metrics, tensors
from mlserve.server.dataplane import DataPlane, ModelRef
from mlserve.server.errors import ServingError
from mlserve.server.requestlog import RequestLog

log = logging.getLogger("mlserve.server.grpc")

CODE_NUMBERS = {c.name: c.value[0] for c in grpc.StatusCode}
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


class _Base:
    service = ""

    def __init__(self, dataplane: DataPlane, request_log: RequestLog, *, tensor_content: bool = False) -> None:
        self.dataplane = dataplane
        self.request_log = request_log
        self.tensor_content = tensor_content

    def _handle(self, method: str, model_name: str, request: Any, context: grpc.ServicerContext,
                work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        code, message, response = "OK", "", None
        try:
            response = work()
        except ServingError as e:
            code, message = e.code, e.message
        except Exception as e:  # a bug or an unexpected TF failure: INTERNAL, server stays up
            log.exception("%s failed", method)
            code, message = "INTERNAL", f"{type(e).__name__}: {e}"
        elapsed = time.perf_counter() - start
        metrics.observe_request(model_name, method, "GRPC", code, elapsed)
        if self.request_log.enabled:
            self.request_log.request(
                api="grpc", method=method, path=f"/{self.service}/{method}", status=CODE_NUMBERS.get(code, 2),
                code=code, model=model_name, seconds=elapsed,
                response_bytes=response.ByteSize() if response is not None else 0,
                request_bytes=request.ByteSize(), error=message or None)
        if response is not None:
            return response
        context.abort(getattr(grpc.StatusCode, code), message)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    service = PREDICTION_SERVICE

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC names
        def work() -> Any:
            servable = self.dataplane.servable(ref_of(spec_of(request)))
            sig = servable.signature(request.model_spec.signature_name)
            inputs = {k: tensors.to_ndarray(v, k) for k, v in request.inputs.items()}
            outputs = self.dataplane.predict(servable, sig.name, inputs,
                                             output_filter=list(request.output_filter) or None,
                                             timeout=context.time_remaining())
            return servable.predict_response(sig.name, outputs, tensor_content=self.tensor_content)

        return self._handle("Predict", request.model_spec.name, request, context, work)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Classify", request.model_spec.name, request, context, lambda: self.dataplane.classify(
            self.dataplane.servable(ref_of(spec_of(request))), request))

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Regress", request.model_spec.name, request, context, lambda: self.dataplane.regress(
            self.dataplane.servable(ref_of(spec_of(request))), request))

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.tasks:  # multi_inference_helper.cc looks up an empty ModelSpec
                raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
            servable = self.dataplane.servable(ref_of(request.tasks[0].model_spec))
            return self.dataplane.multi_inference(servable, request)

        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._handle("MultiInference", name, request, context, work)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            spec = spec_of(request)
            fields = list(request.metadata_field)
            if not fields:
                raise ServingError("INVALID_ARGUMENT",
                                   "GetModelMetadataRequest must specify at least one metadata_field")
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            for field in fields:  # get_model_metadata_impl.cc: each field in turn
                if field != "signature_def":
                    raise ServingError("INVALID_ARGUMENT", f"MetadataField {field} is not supported")
                meta = self.dataplane.metadata(ref_of(spec))
                resp.model_spec.name = meta.name
                resp.model_spec.version.value = meta.version
                resp.metadata["signature_def"].Pack(meta.signature_def_map)
            return resp

        return self._handle("GetModelMetadata", request.model_spec.name, request, context, work)


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    service = MODEL_SERVICE

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.HasField("model_spec"):
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            spec = request.model_spec
            choice = spec.WhichOneof("version_choice")
            ref = ModelRef(spec.name, version=spec.version.value if choice == "version" else None,
                           label=spec.version_label if choice == "version_label" else None)
            resp = get_model_status_pb2.GetModelStatusResponse()
            for s in self.dataplane.status(ref):
                entry = resp.model_version_status.add()
                entry.version = s.version
                entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(s.state)
                entry.status.error_code = CODE_NUMBERS.get(s.error_code, 2)
                entry.status.error_message = s.error_message
            return resp

        return self._handle("GetModelStatus", request.model_spec.name, request, context, work)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            self.dataplane.reload(request.config)
            resp = model_management_pb2.ReloadConfigResponse()
            resp.status.error_code = 0
            return resp

        return self._handle("HandleReloadConfigRequest", "", request, context, work)
