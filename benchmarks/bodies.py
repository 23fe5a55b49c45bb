"""The request bodies the benchmark sends: real digits from mlserve's shipped sample.

REST: TF Serving's row format JSON. gRPC: a PredictRequest with tensor_content, and the same
framed for HTTP/2 as gRPC puts it on the wire (for h2load): a 0 byte (not compressed), the
length as 4 bytes big-endian, then the serialized message.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "digits_model"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
GRPC_PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


def sample_images(n: int) -> Any:
    """n real digits from mlserve's shipped sample, float32 [n, 28, 28, 1] scaled to [0, 1]."""
    import numpy as np

    with np.load(ROOT / "mlserve" / "model" / "sample" / "mnist_sample.npz") as data:
        x = data["x"][:n]
    return (x.astype(np.float32) / 255.0).reshape(n, 28, 28, 1)


def rest_body(n: int) -> bytes:
    import numpy as np

    images = np.round(sample_images(n), 4)
    return json.dumps({"instances": images.tolist()}, separators=(",", ":")).encode()


def grpc_request(n: int) -> bytes:
    """A serialized PredictRequest of n images (tensor_content, as TF Serving's clients send)."""
    from tensorflow_serving.apis import predict_pb2

    images = sample_images(n)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs["Conv1_input"]
    tensor.dtype = 1  # DT_FLOAT
    for size in images.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = images.tobytes()
    return request.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: the body of a unary call's HTTP/2 request."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def write_bodies(work: Path) -> dict[str, Path]:
    """Every body the scenarios send, written once into `work`."""
    files = {"rest_1": work / "rest_1.json", "rest_64": work / "rest_64.json",
             "grpc_1": work / "grpc_1.bin", "grpc_64": work / "grpc_64.bin"}
    files["rest_1"].write_bytes(rest_body(1))
    files["rest_64"].write_bytes(rest_body(64))
    files["grpc_1"].write_bytes(grpc_frame(grpc_request(1)))
    files["grpc_64"].write_bytes(grpc_frame(grpc_request(64)))
    return files
