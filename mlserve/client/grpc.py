"""The gRPC client: TF Serving's PredictionService and ModelService, through the official stubs.

The stubs in `tensorflow_serving.apis` import their message types from `tensorflow.core.framework`,
and importing anything under `tensorflow` normally runs `tensorflow/__init__.py`, which loads all
of TensorFlow (seconds, hundreds of MB). Those message modules are plain protobuf code, so
`load_protos()` loads them with the heavy package initialiser skipped, then forgets the partial
`tensorflow` package so that a later `import tensorflow` in the same process starts clean.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from functools import lru_cache
from typing import Any

import grpc
import numpy as np

from mlserve.client import (UNREACHABLE_HINT, ModelTarget, VersionStatus, check_probabilities,
                            not_found_message)
from mlserve.client.tensors import DTYPES, ENUM_OF_NUMPY, SignatureTensors, info_from_proto
from mlserve.errors import (NotFoundError, ServerResponseError, ServerUnreachableError,
                            WaitTimeoutError)

DT_FLOAT = 1  # tensorflow.DataType.DT_FLOAT


@lru_cache(maxsize=1)
def load_protos() -> types.SimpleNamespace:
    """TF Serving's request/response messages and stubs, without importing TensorFlow."""
    names = ("predict_pb2", "prediction_service_pb2_grpc", "model_service_pb2_grpc",
             "get_model_status_pb2", "model_pb2", "get_model_metadata_pb2")

    def load() -> types.SimpleNamespace:
        apis = {n: importlib.import_module(f"tensorflow_serving.apis.{n}") for n in names}
        apis["tensor_pb2"] = importlib.import_module("tensorflow.core.framework.tensor_pb2")
        return types.SimpleNamespace(**apis)

    if "tensorflow" in sys.modules:  # TF is loaded already: nothing to save
        return load()
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:  # tensorflow-serving-api alone
        return load()
    # A bare package object in place of tensorflow/__init__.py: submodules load from the real files.
    shell = types.ModuleType("tensorflow")
    shell.__path__ = list(spec.submodule_search_locations)
    sys.modules["tensorflow"] = shell
    try:
        return load()
    finally:
        # Forget every tensorflow.* module loaded through the shell; the protobuf descriptors stay
        # registered, and a real `import tensorflow` later re-imports them as usual.
        for name in [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]:
            del sys.modules[name]


def tensor_proto(images: np.ndarray) -> Any:
    """A float32 TensorProto holding `images` as raw bytes (tensor_content)."""
    p = load_protos()
    array = np.ascontiguousarray(images, dtype=np.float32)
    proto = p.tensor_pb2.TensorProto(dtype=DT_FLOAT, tensor_content=array.tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def tensor_array(proto: Any) -> np.ndarray:
    """The float32 array of a TensorProto (tensor_content or float_val)."""
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=np.float32).reshape(shape)
    return np.asarray(proto.float_val, dtype=np.float32).reshape(shape)


# The typed value field of a TensorProto for each DataType (tensor.proto).
_VAL_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val",
               7: "string_val", 9: "int64_val", 10: "bool_val", 17: "int_val", 19: "half_val",
               22: "uint32_val", 23: "uint64_val"}


def any_tensor_proto(array: np.ndarray) -> Any:
    """A TensorProto of any array mlserve can send: numbers as raw bytes, strings in string_val."""
    p = load_protos()
    if array.dtype == object:
        proto = p.tensor_pb2.TensorProto(dtype=7)
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    else:
        array = np.ascontiguousarray(array)
        proto = p.tensor_pb2.TensorProto(dtype=ENUM_OF_NUMPY[array.dtype], tensor_content=array.tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def any_tensor_array(proto: Any) -> np.ndarray:
    """The array of a TensorProto of any DataType mlserve knows (raw bytes or a typed value list,
    a single value filling the whole shape)."""
    shape = [d.size for d in proto.tensor_shape.dim]
    entry = DTYPES.get(proto.dtype)
    if entry is None:
        raise ValueError(f"an output of DataType {proto.dtype}, which mlserve cannot read")
    dtype = np.dtype(entry[1])
    if proto.tensor_content and dtype.kind != "O":
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = list(getattr(proto, _VAL_FIELDS[proto.dtype]))
    if proto.dtype == 19:  # DT_HALF travels as the bits of each float16 in an int
        array = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        array = np.asarray(values, dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if array.size == 1 and count != 1:
        array = np.full(count, array[0], dtype=array.dtype)
    return array.reshape(shape)


def predict_request(target: ModelTarget, images: np.ndarray, input_name: str) -> Any:
    p = load_protos()
    request = p.predict_pb2.PredictRequest()
    _fill_spec(request.model_spec, target)
    request.inputs[input_name].CopyFrom(tensor_proto(images))
    return request


def _fill_spec(spec: Any, target: ModelTarget, *, signature: bool = True) -> None:
    spec.name = target.name
    if signature:
        spec.signature_name = target.signature
    if target.version is not None:
        spec.version.value = int(target.version)
    elif target.label is not None:
        spec.version_label = target.label


class GrpcClient:
    """Predict and model status over TF Serving's gRPC API."""

    def __init__(self, address: str, target: ModelTarget, *, timeout: float = 30.0,
                 input_name: str = "Conv1_input", output_name: str = "softmax") -> None:
        self.address = address.removeprefix("grpc://")
        self.target = target
        self.timeout = timeout
        self.input_name = input_name
        self.output_name = output_name
        p = load_protos()
        # Images of a batch easily pass gRPC's 4 MB default; TF Serving raises its own limit too.
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        self._channel = grpc.insecure_channel(self.address, options=options)
        self._predict = p.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = p.model_service_pb2_grpc.ModelServiceStub(self._channel)

    def predict(self, images: np.ndarray) -> np.ndarray:
        request = predict_request(self.target, images, self.input_name)
        try:
            response = self._predict.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self._raise_for(e, "Predict")
        outputs = response.outputs
        if self.output_name in outputs:
            proto = outputs[self.output_name]
        elif len(outputs) == 1:
            proto = next(iter(outputs.values()))
        else:
            raise ServerResponseError(
                f"no output '{self.output_name}' in the response from {self.address}: {sorted(outputs)}")
        try:
            return check_probabilities(tensor_array(proto), len(images))
        except ValueError as e:
            raise ServerResponseError(f"unexpected predict response from {self.address}: {e}") from e

    def signature(self) -> SignatureTensors:
        """The target signature's inputs and outputs, from GetModelMetadata."""
        p = load_protos()
        request = p.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _fill_spec(request.model_spec, self.target, signature=False)
        try:
            response = self._predict.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self._raise_for(e, "GetModelMetadata")
        defs = p.get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(defs):
            raise ServerResponseError(f"unexpected model metadata from {self.address}")
        if self.target.signature not in defs.signature_def:
            raise NotFoundError(f"{self.target.describe()} on {self.address} has no signature "
                                f"'{self.target.signature}'",
                                hint=f"use --signature with one of: {', '.join(sorted(defs.signature_def))}")
        sig = defs.signature_def[self.target.signature]
        return SignatureTensors(self.target.signature,
                                {k: info_from_proto(k, v) for k, v in sig.inputs.items()},
                                {k: info_from_proto(k, v) for k, v in sig.outputs.items()})

    def predict_tensors(self, signature: SignatureTensors, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send named arrays and return the named outputs."""
        p = load_protos()
        request = p.predict_pb2.PredictRequest()
        _fill_spec(request.model_spec, self.target)
        request.model_spec.signature_name = signature.name
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(any_tensor_proto(array))
        try:
            response = self._predict.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self._raise_for(e, "Predict")
        try:
            return {name: any_tensor_array(proto) for name, proto in response.outputs.items()}
        except ValueError as e:
            raise ServerResponseError(f"unexpected predict response from {self.address}: {e}") from e

    def model_status(self) -> list[VersionStatus]:
        p = load_protos()
        request = p.get_model_status_pb2.GetModelStatusRequest()
        _fill_spec(request.model_spec, self.target, signature=False)
        request.model_spec.ClearField("version")
        request.model_spec.ClearField("version_label")
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self._raise_for(e, "GetModelStatus", listing=False)
        states = p.get_model_status_pb2.ModelVersionStatus.State
        return [VersionStatus(int(v.version), states.Name(v.state), v.status.error_message)
                for v in response.model_version_status]

    def close(self) -> None:
        self._channel.close()

    def _raise_for(self, error: grpc.RpcError, method: str, *, listing: bool = True) -> None:
        code = error.code() if hasattr(error, "code") else None
        details = (error.details() if hasattr(error, "details") else "") or str(code)
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ServerUnreachableError(f"no gRPC server answers at {self.address} ({details})",
                                         hint=UNREACHABLE_HINT) from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise WaitTimeoutError(f"{self.address} did not answer {method} within {self.timeout:g} s",
                                   hint="raise --timeout (or MLSERVE_TIMEOUT), or check the server's load"
                                   ) from None
        if code == grpc.StatusCode.NOT_FOUND:
            versions = None
            if listing:
                try:
                    versions = self.model_status()
                except Exception:  # noqa: BLE001 - the model itself is unknown
                    versions = None
            text, hint = not_found_message(self.target, self.address, versions, None, details)
            raise NotFoundError(text, hint=hint) from None
        name = code.name if code is not None else "UNKNOWN"
        raise ServerResponseError(f"{self.address} answered {method} with {name}: {details}",
                                  hint="the message above is the server's own") from None
