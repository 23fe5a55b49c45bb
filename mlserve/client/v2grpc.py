"""The Open Inference Protocol's gRPC binding (`inference.GRPCInferenceService`) as a client: model
metadata and ModelInfer with raw tensors (`raw_input_contents`), messages from `mlserve.protocols.oip`.
No TensorFlow."""
from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from mlserve.client import UNREACHABLE_HINT, ModelTarget, VersionStatus, check_probabilities
from mlserve.client.tensors import SignatureTensors
from mlserve.client.v2 import ENUM_NUMPY, V2_OF_NUMPY, decode_bytes, encode_bytes, info_of
from mlserve.errors import NotFoundError, ServerResponseError, ServerUnreachableError, UsageError, WaitTimeoutError
from mlserve.protocols import oip


class V2GrpcClient:
    """ModelInfer and ModelMetadata over gRPC."""

    INFER_METHOD = oip.method_path("ModelInfer")

    def __init__(self, address: str, target: ModelTarget, *, timeout: float = 30.0,
                 input_name: str = "Conv1_input", output_name: str = "softmax") -> None:
        if target.label is not None:
            raise UsageError("the v2 protocol names versions by number only, not by label",
                             hint="use --version N, or --protocol v1 for TF Serving's labels")
        self.address = address.removeprefix("grpc://")
        self.target = target
        self.timeout = timeout
        self.input_name = input_name
        self.output_name = output_name
        self.messages = oip.messages()
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        self._channel = grpc.insecure_channel(self.address, options=options)

    def _call(self, method: str, request: Any) -> Any:
        response_type = getattr(self.messages, oip.METHODS[method][1])
        call = self._channel.unary_unary(oip.method_path(method), request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=response_type.FromString)
        try:
            return call(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or str(e.code())
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnreachableError(f"no gRPC server answers at {self.address} ({details})",
                                             hint=UNREACHABLE_HINT) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise WaitTimeoutError(f"{self.address} did not answer {method} within {self.timeout:g} s",
                                       hint="raise --timeout (or MLSERVE_TIMEOUT)") from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(f"{self.target.describe()} not found on {self.address} (server: {details})",
                                    hint="check --model and --version") from None
            raise ServerResponseError(f"{self.address} answered {method} with {code.name}: {details}",
                                      hint="the message above is the server's own") from None

    def infer_request(self, images_or_inputs: np.ndarray | dict[str, np.ndarray],
                      outputs: list[str] | None = None) -> Any:
        """A ModelInferRequest with every input as raw little-endian bytes."""
        inputs = images_or_inputs if isinstance(images_or_inputs, dict) else {
            self.input_name: np.ascontiguousarray(images_or_inputs, dtype=np.float32)}
        request = self.messages.ModelInferRequest(
            model_name=self.target.name,
            model_version="" if self.target.version is None else str(self.target.version))
        for name, array in inputs.items():
            datatype = "BYTES" if array.dtype == object else V2_OF_NUMPY[array.dtype]
            request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
            request.raw_input_contents.append(encode_bytes(array) if datatype == "BYTES" else np.ascontiguousarray(
                array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        for name in outputs if outputs is not None else [self.output_name]:
            request.outputs.add(name=name)
        return request

    def _infer(self, inputs: Any, outputs: list[str] | None) -> dict[str, np.ndarray]:
        response = self._call("ModelInfer", self.infer_request(inputs, outputs))
        result = {}
        try:
            for i, out in enumerate(response.outputs):
                shape = list(out.shape)
                if response.raw_output_contents:
                    raw = response.raw_output_contents[i]
                    result[out.name] = (decode_bytes(raw, int(np.prod(shape)) if shape else 1) if out.datatype == "BYTES"
                                        else np.frombuffer(raw, dtype=np.dtype(ENUM_NUMPY[out.datatype]).newbyteorder("<"))
                                        ).reshape(shape)
                else:
                    field = {"BYTES": "bytes_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                             "INT64": "int64_contents", "BOOL": "bool_contents", "UINT64": "uint64_contents"}.get(
                        out.datatype, "uint_contents" if out.datatype.startswith("UINT") else "int_contents")
                    values = list(getattr(out.contents, field))
                    dtype = object if out.datatype == "BYTES" else ENUM_NUMPY[out.datatype]
                    result[out.name] = np.asarray(values, dtype=dtype).reshape(shape)
        except (KeyError, ValueError, IndexError) as e:
            raise ServerResponseError(f"unexpected ModelInfer response from {self.address}: {e}") from e
        return result

    # -- the client API ------------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        outputs = self._infer(images, [self.output_name])
        try:
            return check_probabilities(outputs[self.output_name], len(images))
        except (KeyError, ValueError) as e:
            raise ServerResponseError(f"unexpected ModelInfer response from {self.address}: {e}") from e

    def signature(self) -> SignatureTensors:
        response = self._call("ModelMetadata", self.messages.ModelMetadataRequest(
            name=self.target.name, version="" if self.target.version is None else str(self.target.version)))
        def doc(t: Any) -> dict:
            return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}

        return SignatureTensors(self.target.signature, {t.name: info_of(doc(t)) for t in response.inputs},
                                {t.name: info_of(doc(t)) for t in response.outputs})

    def predict_tensors(self, signature: SignatureTensors, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._infer(inputs, list(signature.outputs))

    def model_status(self) -> list[VersionStatus]:
        response = self._call("ModelMetadata", self.messages.ModelMetadataRequest(name=self.target.name))
        return [VersionStatus(int(v), "AVAILABLE") for v in response.versions]

    def close(self) -> None:
        self._channel.close()
