"""`inference.GRPCInferenceService` (the Open Inference Protocol's gRPC binding) on the gRPC port,
beside TF Serving's services, on the same HTTP/2 front-end: `METHODS` joins TF Serving's method
table and `V2Calls` (TF Serving's `GrpcCalls` plus these methods) does the work, so the
front-end's dispatch, deadlines, in-flight budget, metrics (entrypoint `GRPC_V2`) and request log
apply. ModelInfer goes through `DataPlane.predict_then` like Predict (batching included).

Inputs come as typed `contents` or as `raw_input_contents` (one per input, all or none); outputs
go back as `raw_output_contents` unless the request sent typed contents.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mlserve.protocols import oip
from mlserve.server.dataplane import ModelRef
from mlserve.server.errors import ServingError
from mlserve.server.frontends.grpc.methods import LOOP, SPLIT, WORKER, GrpcCalls, Method
from mlserve.server.frontends.v2 import rest, tensors

_M = oip.messages()
METHODS: dict[str, Method] = {m.path: m for m in (
    Method(oip.SERVICE, "ServerLive", _M.ServerLiveRequest, "v2_server_live", LOOP, "GRPC_V2"),
    Method(oip.SERVICE, "ServerReady", _M.ServerReadyRequest, "v2_server_ready", LOOP, "GRPC_V2"),
    Method(oip.SERVICE, "ModelReady", _M.ModelReadyRequest, "v2_model_ready", LOOP, "GRPC_V2"),
    Method(oip.SERVICE, "ServerMetadata", _M.ServerMetadataRequest, "v2_server_metadata", LOOP, "GRPC_V2"),
    Method(oip.SERVICE, "ModelMetadata", _M.ModelMetadataRequest, "v2_model_metadata", WORKER, "GRPC_V2"),
    Method(oip.SERVICE, "ModelInfer", _M.ModelInferRequest, "v2_model_infer", SPLIT, "GRPC_V2"),
)}


def _ref(name: str, version: str) -> ModelRef:
    if not name:
        raise ServingError("INVALID_ARGUMENT", "the request names no model")
    return rest.model_ref(name, version or None)


def _contents(entry: Any, name: str) -> np.ndarray:
    """A typed-contents input as an array of its shape."""
    datatype = entry.datatype
    dtype = tensors.dtype_of(datatype, name)
    shape = tensors.shape_of(list(entry.shape), name)
    values = getattr(entry.contents, tensors.CONTENTS_FIELD[datatype])
    array = np.asarray(list(values), dtype=object) if dtype.kind == "O" else np.asarray(values, dtype=dtype)
    if array.size != tensors.count_of(shape):
        raise tensors.bad(f"unexpected number of elements for input '{name}': {array.size} in contents, "
                          f"{tensors.count_of(shape)} in shape {list(shape)}")
    return array.reshape(shape)


class V2Calls(GrpcCalls):
    """TF Serving's gRPC work and the Open Inference Protocol's, over one data plane."""

    def v2_server_live(self, request: Any, timeout: float | None) -> Any:
        return _M.ServerLiveResponse(live=True)

    def v2_server_ready(self, request: Any, timeout: float | None) -> Any:
        return _M.ServerReadyResponse(ready=self.dataplane.ready())

    def v2_model_ready(self, request: Any, timeout: float | None) -> Any:
        try:
            self.dataplane.servable(_ref(request.name, request.version))
        except ServingError:
            return _M.ModelReadyResponse(ready=False)
        return _M.ModelReadyResponse(ready=True)

    def v2_server_metadata(self, request: Any, timeout: float | None) -> Any:
        return _M.ServerMetadataResponse(**rest.server_metadata())

    def v2_model_metadata(self, request: Any, timeout: float | None) -> Any:
        doc = rest.model_metadata(self.dataplane, _ref(request.name, request.version))
        response = _M.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
        for key in ("inputs", "outputs"):
            for t in doc[key]:
                getattr(response, key).add(**t)
        return response

    # -- ModelInfer, in two halves as Predict --------------------------------------------------

    def v2_model_infer_start(self, request: Any, hold: Any = None) -> tuple[Any, str, dict, tuple]:
        """Look up and decode (raw contents as views of the message; typed contents decoded and,
        with `hold`, charged to the in-flight budget as Predict's tensors are)."""
        servable = self.dataplane.servable(_ref(request.model_name, request.model_version))
        sig = rest.signature_of(servable)
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise tensors.bad(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
        inputs: dict[str, np.ndarray] = {}
        for i, entry in enumerate(request.inputs):
            name = entry.name
            if name in inputs:
                raise tensors.bad(f"input '{name}' is given twice")
            if raw:
                shape = tensors.shape_of(list(entry.shape), name)
                inputs[name] = tensors.from_raw(raw[i], entry.datatype, shape, name)
            else:
                inputs[name] = _contents(entry, name)
        if hold is not None and not raw:
            hold(sum(a.nbytes for a in inputs.values()))
        names = [o.name for o in request.outputs] or sorted(sig.outputs)
        unknown = [n for n in names if n not in sig.outputs]
        if unknown:
            raise tensors.bad(f"unknown output '{unknown[0]}'; the model's outputs are {', '.join(sorted(sig.outputs))}")
        return servable, sig.name, inputs, (names, bool(raw) or not request.inputs, request.id)

    def v2_model_infer_finish(self, servable: Any, signature: str, outputs: dict, wanted: tuple) -> Any:
        names, as_raw, request_id = wanted
        response = _M.ModelInferResponse(model_name=servable.name, model_version=str(servable.version),
                                         id=request_id)
        for name in names:
            array = np.asarray(outputs[name])
            datatype = tensors.datatype_of(array.dtype)
            out = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            if as_raw:
                response.raw_output_contents.append(tensors.to_raw(array))
            else:
                flat = array.reshape(-1)
                values = [v if isinstance(v, bytes) else str(v).encode() for v in flat] if datatype == "BYTES" \
                    else flat.tolist()
                getattr(out.contents, tensors.CONTENTS_FIELD[datatype]).extend(values)
        return response
