"""What a servable's signatures are, written once for every layer that reads them: the method
names and the default key, `TensorSpec`/`SignatureInfo` (read from the SignatureDefs in
`saved_model.pb`, as TF Serving reports them), TensorFlow's dtype names, and `SignatureRunner`,
what Classify/Regress/MultiInference need of a servable."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from mlserve.server.servables import tensors

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

_TF_TYPE_NAMES = {
    "float32": "float", "float64": "double", "float16": "half", "int32": "int32", "int64": "int64",
    "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
    "uint64": "uint64", "bool": "bool", "object": "string", "bytes": "string", "str": "string",
}


def tf_type_name(dtype: Any) -> str:
    """TensorFlow's DataTypeString for a numpy dtype (``float``, ``int64``, ``string``...)."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return "string"
    return _TF_TYPE_NAMES.get(dt.name, dt.name)


@dataclass
class TensorSpec:
    key: str  # the signature's alias, e.g. "Conv1_input"
    name: str  # the graph tensor, e.g. "serving_default_Conv1_input:0"
    dtype: np.dtype  # object for DT_STRING
    dtype_enum: int
    shape: tuple[int | None, ...] | None  # None: unknown rank; None in a dim: any size


@dataclass
class SignatureInfo:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def tensor_spec(key: str, info: Any) -> TensorSpec:
    """The TensorSpec of a SignatureDef's TensorInfo `info` under alias `key`."""
    shape = None if info.tensor_shape.unknown_rank else tuple(
        None if d.size < 0 else d.size for d in info.tensor_shape.dim)
    dtype = tensors.NUMPY_OF_ENUM.get(info.dtype)
    if dtype is None:
        import tensorflow as tf

        dtype = np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
    return TensorSpec(key=key, name=info.name, dtype=dtype, dtype_enum=info.dtype, shape=shape)


def read_meta_graph(path: Path, tags: Sequence[str]) -> Any:
    """The MetaGraphDef in `path/saved_model.pb` whose tag set is `tags`."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise FileNotFoundError(f"SavedModel not found: no saved_model.pb in {path}")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    wanted = set(tags)
    for mg in saved.meta_graphs:
        if set(mg.meta_info_def.tags) == wanted:
            return mg
    raise ValueError("Could not find meta graph def matching supplied tags: { "
                     + " ".join(sorted(wanted)) + " }. To inspect available tag-sets in the "
                     "SavedModel, please use the SavedModel CLI: `saved_model_cli`")


class SignatureRunner(Protocol):
    """What Classify, Regress and MultiInference (`classify.py`) need of a loaded version."""

    name: str
    method_name_check: bool
    signatures: dict[str, SignatureInfo]

    def signature(self, name: str, api: str = "predict") -> SignatureInfo: ...

    def signature_def(self, key: str) -> Any: ...

    def fill_spec(self, spec: Any, signature_name: str) -> None: ...

    def run(self, signature_name: str, inputs: dict[str, np.ndarray],
            output_keys: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...
