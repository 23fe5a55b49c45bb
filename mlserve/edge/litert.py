"""Running a `model.tflite` with LiteRT (the `ai-edge-litert` package), without TensorFlow.

Why LiteRT and not `tf.lite.Interpreter`: TensorFlow 2.21 marks its interpreter deprecated (it warns
on every construction and points at LiteRT), LiteRT is the same runtime a phone or a Raspberry Pi
runs, and it imports in a fraction of a second without TensorFlow. The edge example, the embedded
server's TFLite servable, `mlserve compare` and the export's accuracy check all run the file
through this one module, so the figures they report come from the same runtime.

An interpreter is not thread-safe: `TFLiteModel` is one interpreter, and callers that run
concurrently take one each from an `InterpreterPool`.
"""
from __future__ import annotations

import queue
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlserve.errors import DataError, UnavailableError

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature, as the .tflite file declares it."""

    key: str  # the signature's alias, e.g. "Conv1_input"
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 for a dimension of any size (the batch)


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise UnavailableError("LiteRT (the ai-edge-litert package) is not installed",
                               hint="pip install ai-edge-litert") from e
    return Interpreter


class TFLiteModel:
    """One LiteRT interpreter over a .tflite file, called through one signature.

    `predict({key: array})` returns `{output key: array}`; the batch dimension is resized to each
    call's batch (LiteRT's signature runner reallocates only when the shape changes).
    """

    def __init__(self, path: str | Path | None = None, *, content: bytes | None = None,
                 signature: str = DEFAULT_SIGNATURE, num_threads: int | None = 1) -> None:
        if (path is None) == (content is None):
            raise ValueError("give path or content")
        self.path = Path(path) if path is not None else None
        where = str(self.path) if self.path is not None else "the .tflite model"
        Interpreter = _interpreter_class()  # noqa: N806 - a class
        try:
            if content is None:
                content = Path(path).read_bytes()  # type: ignore[arg-type]
            self.size_bytes = len(content)
            self._content = content  # the interpreter reads the model from this buffer: keep it
            self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
            signatures = self._interpreter.get_signature_list()
        except OSError as e:
            raise DataError(f"{where} cannot be read: {e}", hint="export it again") from e
        except (ValueError, RuntimeError) as e:
            raise DataError(f"{where} is not a valid TFLite model: {_one_line(e)}",
                            hint="export it again with `mlserve export --tflite ...`") from e
        if signature not in signatures:
            have = ", ".join(sorted(signatures)) or "none"
            raise DataError(f"{where} has no signature {signature!r} (it has: {have})",
                            hint="export it again with `mlserve export --tflite ...`")
        self.signature = signature
        try:
            self._runner = self._interpreter.get_signature_runner(signature)
        except (ValueError, RuntimeError) as e:
            raise DataError(f"{where}: signature {signature!r} cannot run: {_one_line(e)}",
                            hint="export it again") from e
        self.inputs = {k: _info(k, d) for k, d in self._runner.get_input_details().items()}
        self.outputs = {k: _info(k, d) for k, d in self._runner.get_output_details().items()}

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature once; arrays are cast to the input dtype (float32 for mlserve models)."""
        feed = {k: np.ascontiguousarray(v, dtype=self.inputs[k].dtype) if k in self.inputs else v
                for k, v in inputs.items()}
        try:
            out = self._runner(**feed)
        except (ValueError, RuntimeError) as e:
            raise DataError(f"TFLite inference failed: {_one_line(e)}") from e
        return {k: np.asarray(v) for k, v in out.items()}

    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """The single output for a batch of images fed to the single input (the digits model)."""
        (key,) = self.inputs
        (out,) = self.predict({key: images}).values()
        return out


def _info(key: str, details: dict[str, Any]) -> TensorInfo:
    shape = details.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = details["shape"]
    return TensorInfo(key=key, dtype=np.dtype(details["dtype"]), shape=tuple(int(d) for d in shape))


def accuracy(model: TFLiteModel, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of the .tflite model on float32 (N, 28, 28, 1) images."""
    right = 0
    for start in range(0, len(images), batch_size):
        scores = model.predict_images(images[start:start + batch_size])
        right += int(np.sum(np.argmax(scores, axis=1) == labels[start:start + batch_size]))
    return right / max(1, len(images))


class InterpreterPool:
    """`size` interpreters of one model; each concurrent call borrows one, and a call that finds
    none free waits for one (so at most `size` calls run at once)."""

    def __init__(self, content: bytes, size: int, *, signature: str = DEFAULT_SIGNATURE,
                 num_threads: int | None = 1) -> None:
        if size < 1:
            raise ValueError("a pool holds at least one interpreter")
        first = TFLiteModel(content=content, signature=signature, num_threads=num_threads)
        self.inputs, self.outputs, self.size = first.inputs, first.outputs, size
        self.signature = signature
        self._free: queue.LifoQueue[TFLiteModel] = queue.LifoQueue()
        self._free.put(first)
        for _ in range(size - 1):
            self._free.put(TFLiteModel(content=content, signature=signature, num_threads=num_threads))

    @contextmanager
    def borrow(self) -> Iterator[TFLiteModel]:
        model = self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.borrow() as model:
            return model.predict(inputs)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
