"""Any model's tensors on the client side: what a signature takes (read from the server's metadata),
the named arrays a user gives (`--input NAME=FILE.npy`, `--body FILE.json`), and the check of one
against the other before anything is sent, so a wrong name, dtype or shape is a clear one-line
error here rather than the server's words after a round trip.

No TensorFlow: dtypes are TensorFlow's DataType numbers and names, mapped to numpy here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlserve.errors import DataError, UsageError

# TensorFlow's DataType enum (types.proto): number -> (name, numpy dtype). DT_STRING is bytes.
DTYPES: dict[int, tuple[str, Any]] = {
    1: ("DT_FLOAT", np.float32), 2: ("DT_DOUBLE", np.float64), 3: ("DT_INT32", np.int32),
    4: ("DT_UINT8", np.uint8), 5: ("DT_INT16", np.int16), 6: ("DT_INT8", np.int8),
    7: ("DT_STRING", np.object_), 9: ("DT_INT64", np.int64), 10: ("DT_BOOL", np.bool_),
    17: ("DT_UINT16", np.uint16), 19: ("DT_HALF", np.float16), 22: ("DT_UINT32", np.uint32),
    23: ("DT_UINT64", np.uint64),
}
ENUM_OF_NAME = {name: number for number, (name, _) in DTYPES.items()}
ENUM_OF_NUMPY = {np.dtype(dt): number for number, (_, dt) in DTYPES.items() if dt is not np.object_}


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: its key, dtype and shape (None: unknown rank; a None
    dimension: any size)."""

    name: str
    dtype_enum: int
    shape: tuple[int | None, ...] | None

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype_enum, (f"DT_{self.dtype_enum}", None))[0]

    @property
    def numpy_dtype(self) -> np.dtype | None:
        entry = DTYPES.get(self.dtype_enum)
        return np.dtype(entry[1]) if entry else None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name} {self.dtype_name} {dims}"


@dataclass(frozen=True)
class SignatureTensors:
    """A signature's inputs and outputs, as the server's metadata reports them."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


def info_from_json(name: str, info: dict[str, Any]) -> TensorInfo:
    """A TensorInfo of REST metadata JSON (`{"dtype": "DT_FLOAT", "tensor_shape": {...}}`)."""
    dtype = info.get("dtype", "DT_INVALID")
    shape_doc = info.get("tensor_shape") or {}
    shape = None if shape_doc.get("unknown_rank") else tuple(
        None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape_doc.get("dim", []))
    return TensorInfo(name, ENUM_OF_NAME.get(dtype, 0), shape)


def info_from_proto(name: str, info: Any) -> TensorInfo:
    """A TensorInfo of a SignatureDef's TensorInfo proto (gRPC metadata)."""
    shape = None if info.tensor_shape.unknown_rank else tuple(
        None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorInfo(name, int(info.dtype), shape)


def parse_input_specs(specs: list[str]) -> dict[str, np.ndarray]:
    """`NAME=FILE.npy` options as named arrays (each name once)."""
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--input {spec!r} is not NAME=FILE.npy", hint="e.g. --input Conv1_input=digits.npy")
        if name in arrays:
            raise UsageError(f"--input {name} is given twice")
        arrays[name] = _load_npy(Path(file), f"--input {name}")
    return arrays


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{what}: no file {path}", hint="give the path of a .npy file (numpy.save)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{what}: {path} is not a readable .npy array: {e}",
                        hint="write it with numpy.save(path, array)") from e


def parse_body(path: Path, signature: SignatureTensors) -> tuple[dict[str, Any], str | None]:
    """Named values (nested lists) of a TF Serving predict body (row `instances` or columnar
    `inputs`), and its `signature_name` if it names one."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"--body: no file {path}", hint="give a JSON request body") from None
    except (ValueError, OSError) as e:
        raise DataError(f"--body: {path} is not JSON: {e}", hint="give a TF Serving predict body") from e
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise DataError(f"--body: {path} needs exactly one of 'instances' (rows) and 'inputs' (columns)",
                        hint='e.g. {"inputs": {"x": [[1.0, 2.0]]}} or {"instances": [[1.0, 2.0]]}')
    wanted = signature.name if not isinstance(doc.get("signature_name"), str) else doc["signature_name"]
    only = next(iter(signature.inputs)) if len(signature.inputs) == 1 else None
    if "inputs" in doc:
        columns = doc["inputs"]
        if isinstance(columns, dict):
            return dict(columns), wanted
        if only is None:
            raise DataError("--body: 'inputs' is a bare value but the signature takes "
                            f"{len(signature.inputs)} inputs", hint="name each: {\"inputs\": {NAME: value}}")
        return {only: columns}, wanted
    rows = doc["instances"]
    if not isinstance(rows, list) or not rows:
        raise DataError("--body: 'instances' must be a non-empty list of rows")
    if all(isinstance(r, dict) for r in rows):
        keys = set(rows[0])
        if any(set(r) != keys for r in rows):
            raise DataError("--body: every row of 'instances' must name the same inputs")
        return {k: [r[k] for r in rows] for k in rows[0]}, wanted
    if only is None:
        raise DataError("--body: rows are bare values but the signature takes "
                        f"{len(signature.inputs)} inputs", hint="make each row an object {NAME: value}")
    return {only: rows}, wanted


def check_inputs(signature: SignatureTensors, given: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """`given` as arrays of the signature's dtypes, checked against its names, dtypes and shapes;
    a DataError names the first mismatch and what the signature expects."""
    expected = ", ".join(i.describe() for i in signature.inputs.values())
    unknown = sorted(set(given) - set(signature.inputs))
    if unknown:
        raise DataError(f"{where}: signature '{signature.name}' has no input {unknown[0]!r}",
                        hint=f"its inputs: {expected}")
    missing = sorted(set(signature.inputs) - set(given))
    if missing:
        raise DataError(f"{where}: no value for input {missing[0]!r} of signature '{signature.name}'",
                        hint=f"its inputs: {expected}")
    arrays = {}
    for name, value in given.items():
        info = signature.inputs[name]
        arrays[name] = _as_input(value, info, where)
    batch = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batch) > 1:
        raise DataError(f"{where}: the inputs' first dimensions differ ({sorted(batch)})",
                        hint="every input of one request holds the same number of rows")
    return arrays


def _as_input(value: Any, info: TensorInfo, where: str) -> np.ndarray:
    dtype = info.numpy_dtype
    if dtype is None:
        raise DataError(f"{where}: input {info.name!r} is {info.dtype_name}, which mlserve cannot send")
    if dtype == np.object_:
        array = np.asarray(value, dtype=object)
        array = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array) \
            if array.size else array
    else:
        try:
            array = np.asarray(value)
        except ValueError as e:  # ragged nested lists
            raise DataError(f"{where}: input {info.name!r} is not a rectangular array: {e}") from e
        if array.dtype == object or array.dtype.kind in "USV":
            raise DataError(f"{where}: input {info.name!r} holds {array.dtype} values, the signature takes "
                            f"{info.dtype_name}", hint=f"expected {info.describe()}")
        if not np.can_cast(array.dtype, dtype, casting="same_kind") and not (
                array.dtype.kind in "iub" and dtype.kind in "iu"):  # Python ints into any integer type
            raise DataError(f"{where}: input {info.name!r} is {array.dtype}, the signature takes "
                            f"{info.dtype_name}", hint=f"expected {info.describe()}; convert the array first")
        array = np.ascontiguousarray(array, dtype=dtype)
    if info.shape is not None:
        fits = array.ndim == len(info.shape) and all(
            d is None or d == n for d, n in zip(info.shape, array.shape))
        if not fits:
            raise DataError(f"{where}: input {info.name!r} has shape {list(array.shape)}, the signature takes "
                            f"{info.describe().split(' ', 2)[2]}", hint=f"expected {info.describe()}")
    return array


def decode_outputs(outputs: Any, signature: SignatureTensors) -> dict[str, np.ndarray]:
    """A REST columnar answer's `outputs` (one bare value, or name -> value) as named arrays of the
    signature's output dtypes."""
    if not isinstance(outputs, dict) or not set(outputs) <= set(signature.outputs):
        if len(signature.outputs) != 1:
            raise ValueError("the answer's outputs are not named")
        outputs = {next(iter(signature.outputs)): outputs}
    result = {}
    for name, value in outputs.items():
        dtype = signature.outputs[name].numpy_dtype
        result[name] = np.asarray(value, dtype=None if dtype is None or dtype == np.object_ else dtype)
    return result
