"""The Open Inference Protocol's gRPC binding (`inference.GRPCInferenceService`) as a client."""
from __future__ import annotations

from mlserve.client import ModelTarget
from mlserve.errors import UnavailableError


class V2GrpcClient:
    """ModelInfer and ModelMetadata over gRPC."""

    def __init__(self, address: str, target: ModelTarget, *, timeout: float = 30.0,
                 input_name: str = "Conv1_input", output_name: str = "softmax") -> None:
        raise UnavailableError("the v2 gRPC client is not in this build",
                               hint="use --protocol v2 over REST (with --binary for raw tensors)")
