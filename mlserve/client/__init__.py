"""Clients of any TF Serving-compatible server: the real `tensorflow_model_server`, mlserve's embedded
server, or one on another host.

Client-only: nothing here imports TensorFlow (the gRPC client loads TF Serving's protos without it),
so `mlserve predict` starts in a fraction of a second.

    client = connect(ModelTarget("digits_model"), transport="rest", url="http://127.0.0.1:8501")
    probabilities = client.predict(images)   # float32 (N, 28, 28, 1) -> float32 (N, 10)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mlserve.errors import UsageError

INPUT_NAME = "Conv1_input"  # the exported model's input (docs/architecture.md)
OUTPUT_NAME = "softmax"  # and its output
DEFAULT_SIGNATURE = "serving_default"
UNREACHABLE_HINT = "start a server with `mlserve serve`, or point --url / --grpc-server at a running one"


@dataclass(frozen=True)
class ModelTarget:
    """Which model a request is for: name, and at most one of version and label."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = DEFAULT_SIGNATURE

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise UsageError("give --version or --label, not both",
                             hint="a version label names one version already")

    def describe(self) -> str:
        if self.version is not None:
            return f"model '{self.name}' version {self.version}"
        if self.label is not None:
            return f"model '{self.name}' label '{self.label}'"
        return f"model '{self.name}'"


@dataclass(frozen=True)
class VersionStatus:
    """One version of a model as the server reports it (GET /v1/models/<name>, GetModelStatus)."""

    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error: str = ""


class PredictClient(Protocol):
    """What every transport offers."""

    address: str
    target: ModelTarget

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, 10), for float32 images (N, 28, 28, 1)."""

    def model_status(self) -> list[VersionStatus]:
        """The versions of the target model that the server knows."""

    def close(self) -> None:
        """Release the connection."""


PROTOCOLS = ("v1", "v2")  # TF Serving's API, the Open Inference Protocol (KServe/Triton v2)


def connect(target: ModelTarget, *, transport: str = "rest", url: str | None = None,
            grpc_server: str | None = None, timeout: float = 30.0, columnar: bool = False,
            input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME, protocol: str = "v1",
            binary: bool = False) -> PredictClient:
    """A client for `target` over REST (`url`) or gRPC (`grpc_server`), speaking TF Serving's
    API (`protocol` v1) or the Open Inference Protocol (v2; `binary` tensors over REST); nothing is
    sent yet."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}", hint="use v1 (TF Serving's) or v2 (Open Inference Protocol)")
    if binary and not (protocol == "v2" and transport == "rest"):
        raise UsageError("--binary is the v2 REST binding's binary tensor extension",
                         hint="add --protocol v2 (and drop --grpc, which always sends raw tensors)")
    if protocol == "v2":
        if columnar:
            raise UsageError("--columnar is a TF Serving (v1) REST format", hint="drop it with --protocol v2")
        if transport == "grpc":
            from mlserve.client.v2grpc import V2GrpcClient

            return V2GrpcClient(grpc_server or "127.0.0.1:8500", target, timeout=timeout,
                                input_name=input_name, output_name=output_name)
        from mlserve.client.v2 import V2RestClient

        return V2RestClient(url or "http://127.0.0.1:8501", target, timeout=timeout, binary=binary,
                            input_name=input_name, output_name=output_name)
    if transport == "rest":
        from mlserve.client.rest import RestClient

        return RestClient(url or "http://127.0.0.1:8501", target, timeout=timeout,
                          columnar=columnar, output_name=output_name)
    if transport == "grpc":
        from mlserve.client.grpc import GrpcClient

        return GrpcClient(grpc_server or "127.0.0.1:8500", target, timeout=timeout,
                          input_name=input_name, output_name=output_name)
    raise UsageError(f"unknown transport {transport!r}", hint="use rest or grpc")


def not_found_message(target: ModelTarget, address: str, versions: list[VersionStatus] | None,
                      models: list[str] | None, server_message: str = "") -> tuple[str, str]:
    """The message and hint of a NotFoundError: what was asked for and what the server does have."""
    message = f"{target.describe()} not found on {address}"
    if server_message:
        message += f" (server: {server_message})"
    if versions:
        listed = ", ".join(f"{v.version} ({v.state})" for v in sorted(versions, key=lambda v: v.version))
        plural = "s" if len(versions) > 1 else ""
        message += f"; the server has version{plural} {listed} of '{target.name}'"
        available = [v.version for v in versions if v.state == "AVAILABLE"]
        hint = (f"use --version {max(available)}" if available and target.version is not None
                else "use --version N with one of the versions listed, or no --version for the latest")
        return message, hint
    if models:
        message += f"; the server has models: {', '.join(sorted(models))}"
        return message, f"use --model {sorted(models)[0]}" if len(models) == 1 else "use --model NAME"
    return message, "check --model (the served model's name) and the server's --model_name"


def output_from(outputs: object, output_name: str) -> object:
    """Pick the model output from a response that may hold one output or a name → output map."""
    if isinstance(outputs, dict):
        if output_name in outputs:
            return outputs[output_name]
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        raise KeyError(f"no output '{output_name}' among {sorted(outputs)}")
    return outputs


def check_probabilities(array: np.ndarray, n: int) -> np.ndarray:
    """The response as float32 (n, classes), or ValueError when it is not that."""
    probabilities = np.asarray(array, dtype=np.float32)
    if probabilities.ndim != 2 or probabilities.shape[0] != n:
        raise ValueError(f"expected {n} rows of class scores, got shape {probabilities.shape}")
    return probabilities


@dataclass(frozen=True)
class PredictionRow:
    """One image's answer: the predicted digit, its probability, and the true label where known."""

    index: int
    name: str
    predicted: int
    confidence: float
    label: int | None
    probabilities: list[float]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.predicted == self.label

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name, "predicted": self.predicted,
                "confidence": self.confidence, "label": self.label,
                "probabilities": self.probabilities}


def predict_rows(client: PredictClient, images: np.ndarray, names: list[str],
                 labels: list[int | None]) -> list[PredictionRow]:
    """Send `images` in one request and pair each answer with its image's name and label."""
    probabilities = client.predict(images)
    rows = []
    for i, p in enumerate(probabilities):
        digit = int(np.argmax(p))
        rows.append(PredictionRow(i, names[i], digit, float(p[digit]), labels[i],
                                  [round(float(v), 6) for v in p]))
    return rows
