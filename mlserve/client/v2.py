"""The Open Inference Protocol's REST binding (KServe/Triton "v2"), as a client of any server that
speaks it (mlserve's embedded server, Triton, KServe's model servers): model metadata and
`/infer`, with JSON tensors or Triton's binary tensor extension (`Inference-Header-Content-Length`,
raw little-endian tensors after the JSON header).

Versions are numbers only: mlserve's v2 server takes no version labels.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np

from mlserve.client import ModelTarget, VersionStatus, check_probabilities
from mlserve.client.rest import RestClient, decode_json, encode_json, error_message
from mlserve.client.tensors import ENUM_OF_NAME, SignatureTensors, TensorInfo
from mlserve.errors import NotFoundError, ServerResponseError, UsageError

# The protocol's datatypes and TensorFlow's DataType names (client/tensors.py maps those to numpy).
TF_OF_V2 = {"BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
            "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
            "INT64": "DT_INT64", "FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE",
            "BYTES": "DT_STRING"}
V2_OF_NUMPY = {np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16",
               np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64", np.dtype(np.int8): "INT8",
               np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
               np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}
HEADER_LENGTH = "Inference-Header-Content-Length"


def model_path(target: ModelTarget) -> str:
    """`/v2/models/<name>[/versions/<n>]`; a label is refused (mlserve's v2 server takes numbers)."""
    if target.label is not None:
        raise UsageError("the v2 protocol names versions by number only, not by label",
                         hint="use --version N, or --protocol v1 for TF Serving's labels")
    path = f"/v2/models/{quote(target.name, safe='')}"
    if target.version is not None:
        path += f"/versions/{int(target.version)}"
    return path


def info_of(doc: dict) -> TensorInfo:
    """A TensorInfo of a v2 metadata tensor (`{"name", "datatype", "shape"}`; -1 is any size)."""
    shape = tuple(None if int(d) < 0 else int(d) for d in doc.get("shape", []))
    return TensorInfo(str(doc["name"]), ENUM_OF_NAME.get(TF_OF_V2.get(doc.get("datatype", ""), ""), 0), shape)


def encode_bytes(array: np.ndarray) -> bytes:
    """BYTES elements in the binary extension: each a 4-byte little-endian length, then the bytes."""
    out = bytearray()
    for value in array.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        out += len(data).to_bytes(4, "little") + data
    return bytes(out)


def decode_bytes(raw: bytes | memoryview, count: int) -> np.ndarray:
    values, at = [], 0
    for _ in range(count):
        n = int.from_bytes(raw[at:at + 4], "little")
        values.append(bytes(raw[at + 4:at + 4 + n]))
        at += 4 + n
    return np.asarray(values, dtype=object)


def infer_body(inputs: dict[str, np.ndarray], *, binary: bool, outputs: list[str] | None = None
               ) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of an `/infer` request: JSON tensors (`data`, flattened, row-major)
    or, with `binary`, a JSON header then each tensor's raw bytes in input order."""
    entries, chunks = [], []
    for name, array in inputs.items():
        datatype = "BYTES" if array.dtype == object else V2_OF_NUMPY[array.dtype]
        entry: dict = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            raw = encode_bytes(array) if datatype == "BYTES" else np.ascontiguousarray(array).astype(
                array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            flat = array.reshape(-1)
            entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                             for v in flat.tolist()] if datatype == "BYTES" else flat
        entries.append(entry)
    doc: dict = {"inputs": entries}
    if outputs is not None or binary:
        doc["outputs"] = [{"name": n, **({"parameters": {"binary_data": True}} if binary else {})}
                          for n in (outputs or [])]
        if not doc["outputs"]:
            del doc["outputs"]
            doc["parameters"] = {"binary_data_output": True}
    header = encode_json(doc)
    if not binary:
        return header, {}
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header))}


def decode_infer(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """The named outputs of an `/infer` answer, JSON or binary (zero-copy views of the body)."""
    view = memoryview(body)
    doc = decode_json(bytes(view[:header_length]) if header_length is not None else body)
    at = header_length or 0
    result = {}
    for out in doc["outputs"]:
        shape = [int(d) for d in out["shape"]]
        datatype = out["datatype"]
        size = (out.get("parameters") or {}).get("binary_data_size")
        count = int(np.prod(shape)) if shape else 1
        if size is not None:
            raw = view[at:at + int(size)]
            at += int(size)
            if datatype == "BYTES":
                result[out["name"]] = decode_bytes(raw, count).reshape(shape)
            else:
                dtype = np.dtype(ENUM_NUMPY[datatype]).newbyteorder("<")
                result[out["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        else:
            data = out["data"]
            dtype = object if datatype == "BYTES" else ENUM_NUMPY[datatype]
            result[out["name"]] = np.asarray(data, dtype=dtype).reshape(shape)
    return result


ENUM_NUMPY = {v2: dt for dt, v2 in V2_OF_NUMPY.items()}


class V2RestClient(RestClient):
    """Predict and model metadata over the Open Inference Protocol's REST binding."""

    def __init__(self, url: str, target: ModelTarget, *, timeout: float = 30.0, binary: bool = False,
                 output_name: str = "softmax", input_name: str = "Conv1_input") -> None:
        super().__init__(url, target, timeout=timeout, output_name=output_name)
        model_path(target)  # a label: refused before anything is sent
        self.binary = binary
        self.input_name = input_name

    def _infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        body, headers = infer_body(inputs, binary=self.binary, outputs=outputs)
        status, answer, length = self._post(model_path(self.target) + "/infer", body, headers)
        if status != 200:
            self._raise_v2(status, answer)
        try:
            return decode_infer(answer, length)
        except (ValueError, KeyError, TypeError) as e:
            raise ServerResponseError(f"unexpected v2 infer response from {self.address}: {e}",
                                      hint="does this server speak the Open Inference Protocol?") from e

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, int | None]:
        """POST with extra headers; (status, body, Inference-Header-Content-Length or None)."""
        import http.client
        import socket

        from mlserve.client import UNREACHABLE_HINT
        from mlserve.errors import ServerUnreachableError, WaitTimeoutError

        content_type = "application/octet-stream" if headers else "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self._prefix + path, body=body,
                             headers={"Content-Type": content_type, **headers})
                response = conn.getresponse()
                data = response.read()
                length = response.getheader(HEADER_LENGTH)
                return response.status, data, int(length) if length is not None else None
            except (socket.timeout, TimeoutError) as e:
                self.close()
                raise WaitTimeoutError(f"{self.address} did not answer POST {path} within {self.timeout:g} s",
                                       hint="raise --timeout (or MLSERVE_TIMEOUT)") from e
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 2:
                    raise ServerUnreachableError(f"{self.address} closed the connection: {e}",
                                                 hint=UNREACHABLE_HINT) from e
            except OSError as e:
                self.close()
                raise ServerUnreachableError(f"no server answers at {self.address} ({e.strerror or e})",
                                             hint=UNREACHABLE_HINT) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_v2(self, status: int, body: bytes) -> None:
        message = error_message(body) or f"HTTP {status}"
        if status == 404:
            raise NotFoundError(f"{self.target.describe()} not found on {self.address} (server: {message})",
                                hint="check --model and --version against `GET /v2/models/<name>`")
        raise ServerResponseError(f"{self.address} answered HTTP {status}: {message}",
                                  hint="the message above is the server's own")

    # -- the client API ------------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = self._infer({self.input_name: images}, [self.output_name])
        try:
            return check_probabilities(outputs[self.output_name], len(images))
        except (KeyError, ValueError) as e:
            raise ServerResponseError(f"unexpected v2 infer response from {self.address}: {e}") from e

    def signature(self) -> SignatureTensors:
        status, body = self.request("GET", model_path(self.target))
        if status != 200:
            self._raise_v2(status, body)
        try:
            doc = decode_json(body)
            inputs = {t["name"]: info_of(t) for t in doc["inputs"]}
            outputs = {t["name"]: info_of(t) for t in doc["outputs"]}
        except (ValueError, KeyError, TypeError) as e:
            raise ServerResponseError(f"unexpected v2 model metadata from {self.address}: {e}") from e
        return SignatureTensors(self.target.signature, inputs, outputs)

    def predict_tensors(self, signature: SignatureTensors, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._infer(inputs)

    def model_status(self) -> list[VersionStatus]:
        """The versions the server reports in the model's v2 metadata, each ready or not."""
        status, body = self.request("GET", f"/v2/models/{quote(self.target.name, safe='')}")
        if status != 200:
            self._raise_v2(status, body)
        try:
            versions = [int(v) for v in json.loads(body).get("versions", [])]
        except (ValueError, TypeError) as e:
            raise ServerResponseError(f"unexpected v2 model metadata from {self.address}: {e}") from e
        return [VersionStatus(v, "AVAILABLE") for v in versions]
