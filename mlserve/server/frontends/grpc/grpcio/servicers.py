"""TF Serving's gRPC API on grpcio (the `--grpc_frontend=grpcio` fallback): PredictionService and
ModelService servicers on the official stubs of `tensorflow_serving.apis`.

Each method's work is `methods.GrpcCalls` (shared with the HTTP/2 front-end); a
`ServingError` becomes the call's status with TF Serving's code and message.
"""
from __future__ import annotations

from typing import Any

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from mlserve.server.dataplane import DataPlane
from mlserve.server.frontends.grpc.methods import (METHODS, MODEL_SERVICE, PREDICTION_SERVICE,  # noqa: F401
                                         GrpcCalls, ref_of, spec_of)
from mlserve.server.observability.requestlog import RequestLog


class _Base:
    service = ""

    def __init__(self, dataplane: DataPlane, request_log: RequestLog, *, tensor_content: bool = False) -> None:
        self.calls = GrpcCalls(dataplane, request_log, tensor_content=tensor_content)

    def _handle(self, name: str, request: Any, context: grpc.ServicerContext) -> Any:
        response, code, message = self.calls.run(METHODS[f"/{self.service}/{name}"], request,
                                                 context.time_remaining())
        if response is not None:
            return response
        context.abort(getattr(grpc.StatusCode, code), message)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    service = PREDICTION_SERVICE

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC names
        return self._handle("Predict", request, context)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Classify", request, context)

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Regress", request, context)

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("MultiInference", request, context)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("GetModelMetadata", request, context)


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    service = MODEL_SERVICE

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("GetModelStatus", request, context)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("HandleReloadConfigRequest", request, context)
