"""Versioned SavedModel export for TF Serving: atomic, with a warm-up file, and the listing of versions.

    <model_base_path>/<version>/saved_model.pb
    <model_base_path>/<version>/variables/
    <model_base_path>/<version>/assets.extra/tf_serving_warmup_requests   (TFRecord of PredictionLog)
    <model_base_path>/<version>/assets.extra/mlserve.json                 (test accuracy, provenance)
    <model_base_path>/<version>/model.tflite                              (with --tflite: TF Serving's
                                                                           --prefer_tflite_model file)

A version is written to `<base>/.tmp-<version>-<pid>-<random>` (TF Serving only loads numeric
folders, so it never sees a half-written one) and renamed into place. An export killed before the
rename leaves that folder behind: `list_debris` names such folders (`mlserve models` shows them)
and the next export into the same base path removes them (`remove_debris`). TensorFlow is
imported inside functions.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlserve.atomic import replace_folder
from mlserve.errors import ConflictError, DataError, NotFoundError, UsageError
from mlserve.model.cnn import INPUT_NAME, OUTPUT_NAME, load_trained, read_record, resolve_model_path

SIGNATURE_NAME = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
INFO_FILE = "mlserve.json"
ASSETS_EXTRA = "assets.extra"


@dataclass
class ExportResult:
    """One exported version: its folder, its number, and its serving_default signature."""

    path: Path
    version: int
    signature: dict[str, Any]
    replaced: bool = False  # True when --force replaced an existing version
    warmup_path: Path | None = None
    test_accuracy: float | None = None
    tflite: dict[str, Any] | None = None  # quantization, size_bytes, test_accuracy (mlserve.edge.tflite)


@dataclass
class VersionInfo:
    """A version folder under a model base path, as `mlserve models` lists it."""

    version: int
    path: Path
    size_bytes: int
    created: datetime
    test_accuracy: float | None = None
    has_warmup: bool = False
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    tflite: dict[str, Any] | None = None  # the model.tflite beside the SavedModel, as measured at export


def parse_version(version: int | str | None) -> int | None:
    """A version number: a positive integer (None means 'next free'); anything else is a UsageError."""
    if version is None:
        return None
    text = str(version).strip()
    if isinstance(version, bool) or not text.lstrip("+-").isdigit():
        raise UsageError(f"--version must be a positive whole number, got {version!r}",
                         hint="versions are folder names TF Serving loads: 1, 2, 3, ...")
    number = int(text)
    if number < 1:
        raise UsageError(f"--version must be 1 or more, got {number}",
                         hint="versions are folder names TF Serving loads: 1, 2, 3, ...")
    return number


def existing_versions(base_path: str | os.PathLike) -> list[int]:
    """The numeric version folders under a base path, ascending (what TF Serving would see)."""
    base = Path(base_path)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base_path: str | os.PathLike) -> int:
    versions = existing_versions(base_path)
    return versions[-1] + 1 if versions else 1


def export_model(
    model_path: str | os.PathLike,
    base_path: str | os.PathLike,
    version: int | str | None = None,
    *,
    model_name: str,
    force: bool = False,
    warmup: bool = True,
    tflite: str | None = None,
) -> ExportResult:
    """Export a trained .keras model as SavedModel version `version` (default: latest + 1).

    The version folder appears atomically or not at all; an existing version raises ConflictError
    unless `force`, which swaps the new one in by renames. `tflite` (float32, float16, dynamic or
    int8) also writes model.tflite into the folder, measured by running it (mlserve.edge.tflite).
    """
    from mlserve.edge.tflite import load_data_for, parse_quantization

    number = parse_version(version)
    quantization = parse_quantization(tflite)
    source = resolve_model_path(model_path)
    if not source.is_file():
        raise NotFoundError(f"no trained model at {source}",
                            hint="run `mlserve train` first, or give the .keras file with --model")
    base = Path(base_path).expanduser()
    if base.exists() and not base.is_dir():
        raise ConflictError(f"model base path {base} is a file, not a folder",
                            hint="give another --model-base-path")
    base.mkdir(parents=True, exist_ok=True)
    if number is None:
        number = next_version(base)
    target = base / str(number)
    if target.exists() and not force:
        raise ConflictError(
            f"version {number} already exists at {target}",
            hint=f"use --force to replace it, or export the next free version: --version {next_version(base)}",
        )
    record = read_record(source) or {}
    # int8 without training data fails here, before TensorFlow loads or anything is written
    mnist = load_data_for(quantization, record) if quantization else None
    model = load_trained(source)  # DataError before anything is written
    remove_debris(base)
    tmp = base / f".tmp-{number}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _write_saved_model(model, tmp)
        warmup_path = None
        if warmup:
            warmup_path = write_warmup_file(tmp, model_name)
        info = {
            "model_name": model_name,
            "version": number,
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source_model": str(source.resolve()),
            "test_accuracy": record.get("test_accuracy"),
            "test_loss": record.get("test_loss"),
            "trained": {k: record.get(k) for k in ("created", "epochs", "batch_size", "seed", "data")
                        if k in record},
            "signature": SIGNATURE_NAME,
        }
        tflite_info = None
        if quantization:
            from mlserve.edge.tflite import saved_model_size, write_tflite

            tflite_info = write_tflite(tmp, quantization, record, mnist=mnist).as_dict()
            tflite_info["saved_model_size_bytes"] = saved_model_size(tmp)
            info["tflite"] = tflite_info
        (tmp / ASSETS_EXTRA).mkdir(exist_ok=True)
        (tmp / ASSETS_EXTRA / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        signature = describe_signature(tmp)
        replaced = _move_into_place(tmp, target, force=force)
    except BaseException:
        # An exception or Ctrl-C mid-way: no temp folder left behind, no version folder created.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(path=target, version=number, signature=signature, replaced=replaced,
                        warmup_path=target / ASSETS_EXTRA / WARMUP_FILE if warmup_path else None,
                        test_accuracy=record.get("test_accuracy"), tflite=tflite_info)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _write_saved_model(model: Any, path: Path) -> None:
    import tensorflow as tf

    # Keras 3's model.export() names the input keras_tensor_<N>; clients of the course model send
    # Conv1_input, so the signature is spelled out here.
    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)])
    def serve(Conv1_input: Any) -> dict[str, Any]:  # noqa: N803 - the argument name is the input key
        return {OUTPUT_NAME: model(Conv1_input, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_NAME: serve})


def _move_into_place(tmp: Path, target: Path, *, force: bool) -> bool:
    if not target.exists():
        os.rename(tmp, target)
        return False
    if not force:  # appeared while we were writing
        raise ConflictError(f"version {target.name} appeared at {target} during the export",
                            hint="use --force to replace it")
    replace_folder(tmp, target)
    return True


def write_warmup_file(saved_model_dir: str | os.PathLike, model_name: str,
                      images: np.ndarray | None = None) -> Path:
    """Write assets.extra/tf_serving_warmup_requests: PredictionLog records TF Serving replays at load.

    Two requests (batch of 1 and of 8) of blank images unless `images` (N×28×28×1 float32) is given.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    batches = [images] if images is not None else [np.zeros((n, 28, 28, 1), np.float32) for n in (1, 8)]
    path = Path(saved_model_dir) / ASSETS_EXTRA / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_NAME))
            request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(np.asarray(batch, np.float32)))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def describe_signature(saved_model_dir: str | os.PathLike, signature: str = SIGNATURE_NAME,
                       tag: str = "serve") -> dict[str, Any]:
    """A SavedModel's signature read from saved_model.pb: inputs/outputs with dtype, shape, tensor.

    {"signature": ..., "method": ..., "inputs": {name: {"dtype": "float32", "shape": [-1, 28, 28, 1],
    "tensor": "serving_default_Conv1_input:0"}}, "outputs": {...}}
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(saved_model_dir) / "saved_model.pb"
    if not pb.is_file():
        raise NotFoundError(f"no saved_model.pb in {saved_model_dir}",
                            hint="export a model first: `mlserve export`")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as e:
        raise DataError(f"{pb} is not a readable SavedModel: {e}", hint="export it again") from e
    for meta in saved.meta_graphs:
        if tag in meta.meta_info_def.tags and signature in meta.signature_def:
            sig = meta.signature_def[signature]
            break
    else:
        raise DataError(f"{saved_model_dir} has no signature {signature!r} under tag {tag!r}",
                        hint="export it again with `mlserve export --force`")

    def tensors(mapping: Any) -> dict[str, Any]:
        out = {}
        for key in sorted(mapping):
            info = mapping[key]
            shape = (None if info.tensor_shape.unknown_rank
                     else [int(d.size) for d in info.tensor_shape.dim])
            out[key] = {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": shape, "tensor": info.name}
        return out

    return {"signature": signature, "method": sig.method_name,
            "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}


_LEGACY_DEBRIS_SECONDS = 3600  # a .tmp folder without a pid is debris once this old


def _debris_owner_alive(folder: Path) -> bool:
    """Whether the export writing `folder` may still be running: its pid (in the name) is alive,
    or, for a name without a pid, the folder changed within the last hour."""
    parts = folder.name.split("-")
    if len(parts) == 4 and parts[2].isdigit():
        pid = int(parts[2])
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # PermissionError: alive, someone else's
            return True
        return True
    try:
        return (datetime.now().timestamp() - folder.stat().st_mtime) < _LEGACY_DEBRIS_SECONDS
    except OSError:
        return False


def list_debris(base_path: str | os.PathLike) -> list[Path]:
    """Folders left by interrupted exports (`.tmp-*` whose export is no longer running)."""
    base = Path(base_path).expanduser()
    try:
        candidates = sorted(p for p in base.glob(".tmp-*") if p.is_dir())
    except OSError:
        return []
    return [p for p in candidates if not _debris_owner_alive(p)]


def remove_debris(base_path: str | os.PathLike) -> list[Path]:
    """Remove what `list_debris` finds; returns the folders removed."""
    removed = []
    for folder in list_debris(base_path):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def list_versions(base_path: str | os.PathLike, *, missing_ok: bool = False) -> list[VersionInfo]:
    """The exported versions under a base path, ascending: size, creation time, test accuracy.

    No versions (or no folder) raises NotFoundError, unless `missing_ok` (then an empty list).
    """
    base = Path(base_path).expanduser()
    versions = existing_versions(base)
    if not versions:
        if missing_ok:
            return []
        where = "does not exist" if not base.exists() else "holds no numbered versions"
        raise NotFoundError(f"model base path {base} {where}",
                            hint="export a trained model first: `mlserve export`")
    infos = []
    for number in versions:
        folder = base / str(number)
        info: dict[str, Any] = {}
        try:
            info = json.loads((folder / ASSETS_EXTRA / INFO_FILE).read_text())
        except (OSError, ValueError):
            pass
        created = None
        if info.get("exported"):
            try:
                created = datetime.fromisoformat(info["exported"])
            except ValueError:
                created = None
        if created is None:
            created = datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc)
        size = _folder_size(folder)
        tflite_file = folder / "model.tflite"
        tflite = None
        if tflite_file.is_file():  # a file put there by hand has no record: its size is still known
            tflite = {"quantization": None, "test_accuracy": None, **(info.get("tflite") or {}),
                      "size_bytes": tflite_file.stat().st_size}
        infos.append(VersionInfo(version=number, path=folder, size_bytes=size, created=created,
                                 test_accuracy=info.get("test_accuracy"),
                                 has_warmup=(folder / ASSETS_EXTRA / WARMUP_FILE).is_file(), info=info,
                                 tflite=tflite))
    return infos
