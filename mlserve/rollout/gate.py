"""The accuracy gate of `promote --check N --max-drop X`: held-out digits through the server itself.

The first N digits of the MNIST test split (mlserve.model.data, the same split `train` held out) go to
the candidate version and to the current stable version, each addressed by version number over
gRPC; the candidate passes when its accuracy is at most `max_drop` below the stable one's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlserve.errors import ConflictError, UsageError

BATCH = 100  # digits per request: small enough for any server's message limits


class GateFailedError(ConflictError):
    """The candidate's accuracy dropped more than allowed: the promote was refused."""


@dataclass(frozen=True)
class GateResult:
    n: int
    candidate: int
    candidate_accuracy: float
    stable: int | None
    stable_accuracy: float | None
    max_drop: float

    @property
    def passed(self) -> bool:
        return self.stable_accuracy is None or \
            self.candidate_accuracy >= self.stable_accuracy - self.max_drop - 1e-12

    def as_dict(self) -> dict[str, object]:
        return {"n": self.n, "to": round(self.candidate_accuracy, 6),
                "from": None if self.stable_accuracy is None else round(self.stable_accuracy, 6),
                "max_drop": self.max_drop, "passed": self.passed}

    def describe(self) -> str:
        text = f"version {self.candidate}: accuracy {self.candidate_accuracy:.4f} on {self.n} test digits"
        if self.stable_accuracy is not None:
            text += (f", stable version {self.stable}: {self.stable_accuracy:.4f} "
                     f"(allowed drop {self.max_drop:g})")
        return text


def held_out_digits(n: int, data: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` held-out test digits, as the model takes them, and their labels."""
    from mlserve.model.data import load_mnist, prepare_images

    if n <= 0:
        raise UsageError(f"--check {n}: give a positive number of test digits")
    mnist = load_mnist(data)
    if n > len(mnist.x_test):
        raise UsageError(f"--check {n}: the test split ({mnist.source}) has only {len(mnist.x_test)} digits")
    return prepare_images(mnist.x_test[:n]), mnist.y_test[:n].astype(np.int64)


def accuracy(grpc_address: str, model: str, version: int, images: np.ndarray, labels: np.ndarray,
             timeout: float = 30.0) -> float:
    """Share of `images` that `version` of `model` classifies as `labels`."""
    from mlserve.client import ModelTarget
    from mlserve.client.grpc import GrpcClient

    client = GrpcClient(grpc_address, ModelTarget(model, version=version), timeout=timeout)
    try:
        right = 0
        for start in range(0, len(images), BATCH):
            probabilities = client.predict(images[start:start + BATCH])
            right += int((np.argmax(probabilities, axis=1) == labels[start:start + BATCH]).sum())
    finally:
        client.close()
    return right / len(images)


def run_gate(grpc_address: str, model: str, candidate: int, stable: int | None, n: int,
             max_drop: float, data: str | None = None, timeout: float = 30.0) -> GateResult:
    """Measure the candidate (and the current stable, when there is one and it differs)."""
    if not 0 <= max_drop <= 1:
        raise UsageError(f"--max-drop {max_drop}: give a share of the digits between 0 and 1 (0.01 = 1 point)")
    images, labels = held_out_digits(n, data)
    cand = accuracy(grpc_address, model, candidate, images, labels, timeout)
    base = None
    if stable is not None and stable != candidate:
        base = accuracy(grpc_address, model, stable, images, labels, timeout)
    return GateResult(n, candidate, cand, stable if base is not None else None, base, max_drop)
