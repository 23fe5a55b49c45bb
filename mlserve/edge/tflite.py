"""Converting an exported SavedModel to TFLite, and measuring the result by running it.

    float32   the graph as it is, weights in float32
    float16   weights stored as float16 (half the size; computed in float32)
    dynamic   weights stored as int8, activations quantised on the fly
    int8      full-integer quantisation: weights and activations int8 (one scale per tensor),
              calibrated on training images (the representative dataset); inputs and outputs
              stay float32

Every file keeps the SavedModel's `serving_default` signature (input `Conv1_input`, output
`softmax`, float32), so clients do not change: int8 runs inside, float crosses the wire. The
converter needs TensorFlow (imported inside the functions); running the file needs only LiteRT
(`mlserve.edge.litert`).

Every file is also compacted (`compact`): the converter writes strings and tables that no
runtime reads (each tensor's TensorFlow name, e.g. "digits_cnn_1/Conv1_1/Relu;...", the
converter's CONVERSION_METADATA, empty quantisation tables). In a 13.6k-parameter model they are
~1.2 KB of a 17.6 KB int8 file; the signature, which LiteRT runs by its keys, stays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlserve.errors import DataError, MlserveError, UsageError

TFLITE_FILE = "model.tflite"  # TF Serving's --prefer_tflite_model looks for exactly this name
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
REPRESENTATIVE_IMAGES = 200  # calibration images for int8: enough for ranges, quick to run
SIGNATURE_NAME = "serving_default"


@dataclass
class TFLiteRecord:
    """What an export (or `mlserve compare`) measured of one .tflite file."""

    quantization: str
    size_bytes: int
    test_accuracy: float | None
    test_images: int
    data: str | None  # where the test (and calibration) images came from

    def as_dict(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "size_bytes": self.size_bytes,
                "test_accuracy": self.test_accuracy, "test_images": self.test_images,
                "data": self.data}


def saved_model_size(version_dir: str | os.PathLike) -> int:
    """The SavedModel's own files: saved_model.pb, fingerprint.pb, variables/, assets/ (not the
    warm-up requests or mlserve's notes in assets.extra/, nor model.tflite)."""
    folder = Path(version_dir)
    files = [folder / "saved_model.pb", folder / "fingerprint.pb"]
    for sub in ("variables", "assets"):
        files += [p for p in (folder / sub).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def parse_quantization(value: str | None) -> str | None:
    """One of QUANTIZATIONS (None stays None); anything else is a UsageError."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text not in QUANTIZATIONS:
        raise UsageError(f"--tflite must be one of {', '.join(QUANTIZATIONS)}, got {value!r}",
                         hint="int8 is the smallest; float32 keeps the model exactly")
    return text


def training_data(record: dict[str, Any] | None = None, data: str | None = None) -> Any:
    """The MNIST data a model was trained on (its record says which), else the `data` setting.

    Never downloads. Raises DataError/NotFoundError when none can be read.
    """
    from mlserve import settings
    from mlserve.model.data import load_mnist

    given = settings.get("data", data)
    if not given and record:
        trained = record.get("data") or {}
        if trained.get("source") == "sample":
            given = "sample"
        elif trained.get("source") == "user" and trained.get("path"):
            given = trained["path"]
    return load_mnist(given or None, allow_download=False)


def representative_images(mnist: Any, count: int = REPRESENTATIVE_IMAGES) -> np.ndarray:
    """`count` training images spread over the whole training split (not just its first digits)."""
    from mlserve.model.data import prepare_images

    n = len(mnist.x_train)
    picks = np.linspace(0, n - 1, num=min(count, n)).astype(int)
    return prepare_images(mnist.x_train[picks])


def load_data_for(quantization: str, record: dict[str, Any] | None = None) -> Any | None:
    """The data an export needs: required for int8 (a clear error otherwise), optional else."""
    try:
        return training_data(record)
    except MlserveError as e:
        if quantization != "int8":
            return None  # the file is still written; its accuracy is simply not measured
        raise DataError(
            f"--tflite int8 needs training images for its representative dataset, and none can be "
            f"read: {e.message}",
            hint="point MLSERVE_DATA at an mnist.npz or IDX folder (MLSERVE_DATA=sample: the "
                 "shipped sample), or use --tflite dynamic, which needs no data") from e


def convert(saved_model_dir: str | os.PathLike, quantization: str,
            representative: np.ndarray | None = None) -> bytes:
    """The .tflite flatbuffer of a SavedModel's serving_default signature, quantised as asked."""
    quantization = parse_quantization(quantization) or "float32"
    if quantization == "int8" and (representative is None or len(representative) == 0):
        raise DataError("--tflite int8 needs a representative dataset of training images",
                        hint="point MLSERVE_DATA at MNIST, or use --tflite dynamic")
    import tensorflow as tf

    # From the concrete function, not from_saved_model: the latter keeps the weights as resource
    # variables (a 4 KB file whose variables are never initialised under LiteRT); this freezes them.
    loaded = tf.saved_model.load(str(saved_model_dir))
    if SIGNATURE_NAME not in loaded.signatures:
        raise DataError(f"{saved_model_dir} has no {SIGNATURE_NAME} signature to convert",
                        hint="export it again with `mlserve export --force`")
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures[SIGNATURE_NAME]], loaded)
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        images = np.asarray(representative, np.float32)

        def calibration() -> Iterator[list[np.ndarray]]:
            for i in range(len(images)):
                yield [images[i:i + 1]]

        converter.representative_dataset = calibration
        # Full integer: every op int8, or the conversion fails (no silent float fallback);
        # inference_input/output_type stay float32 so the wire format does not change.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # One scale per weight tensor instead of per output channel: a channel's scale and
        # zero point cost 12 bytes each for the weights and again for the bias (400 B of the
        # course model's file); test accuracy measured the same (0.900 both ways, 1,000 digits).
        converter._experimental_disable_per_channel = True
    try:
        return compact(converter.convert())
    except Exception as e:  # the converter raises ConverterError and plain RuntimeErrors alike
        first = str(e).strip().splitlines()
        raise DataError(f"TFLite conversion ({quantization}) failed: "
                        f"{first[0] if first else type(e).__name__}",
                        hint="try another --tflite mode, e.g. float32") from e


def compact(content: bytes) -> bytes:
    """The same model without what no runtime reads: tensor and subgraph names, the model
    description, the CONVERSION_METADATA entry and its buffer, empty quantisation tables.

    Unlike LiteRT's `flatbuffer_utils.strip_strings`, the signature defs stay: LiteRT's signature
    runner (the server, the edge example, `mlserve compare`) finds inputs and outputs by their
    keys there, never by tensor name. The operators, weights and min_runtime_version stay as the
    converter wrote them, so the file computes exactly what it did.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.description = None
    for subgraph in model.subgraphs or []:
        subgraph.name = None
        for tensor in subgraph.tensors or []:
            tensor.name = None
            q = tensor.quantization
            if q is not None and q.details is None and all(
                    v is None or len(v) == 0 for v in (q.scale, q.zeroPoint, q.min, q.max)):
                tensor.quantization = None
    kept = []
    for entry in model.metadata or []:
        if entry.name == b"CONVERSION_METADATA":
            model.buffers[entry.buffer].data = None  # indices of other buffers stay as they are
        else:
            kept.append(entry)
    model.metadata = kept
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def measure(content: bytes, quantization: str, mnist: Any | None) -> TFLiteRecord:
    """Size, and test accuracy measured by running the file with LiteRT on the test split."""
    from mlserve.model.data import prepare_images
    from mlserve.edge.litert import TFLiteModel, accuracy

    model = TFLiteModel(content=content)  # also proves the file loads and has the signature
    if mnist is None:
        return TFLiteRecord(quantization, len(content), None, 0, None)
    acc = accuracy(model, prepare_images(mnist.x_test), np.asarray(mnist.y_test))
    return TFLiteRecord(quantization, len(content), round(acc, 6), int(len(mnist.x_test)),
                        mnist.description)


def write_tflite(saved_model_dir: str | os.PathLike, quantization: str,
                 record: dict[str, Any] | None = None, *, mnist: Any | None = None) -> TFLiteRecord:
    """Convert the SavedModel in `saved_model_dir` and write `<saved_model_dir>/model.tflite`.

    The caller writes into a temporary version folder that it renames into place, so the file is
    atomic with the rest of the version. Data comes from `mnist`, else the model's training data.
    """
    if mnist is None:
        mnist = load_data_for(quantization, record)
    reps = representative_images(mnist) if quantization == "int8" else None
    content = convert(saved_model_dir, quantization, reps)
    measured = measure(content, quantization, mnist)
    path = Path(saved_model_dir) / TFLITE_FILE
    tmp = path.with_name(f".{TFLITE_FILE}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return measured
