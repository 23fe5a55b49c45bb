"""The Open Inference Protocol's tensors and numpy: datatypes, JSON `data` (flat or nested,
row-major), gRPC `contents`, and the checks a hostile request meets first (an unknown datatype,
an element count that does not match the shape, ragged data): each an INVALID_ARGUMENT."""
from __future__ import annotations

from typing import Any

import numpy as np

from mlserve.server.errors import ServingError

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPE_OF = {dt: name for name, dt in DTYPES.items() if name != "BYTES"}
MAX_RANK = 64
# gRPC `contents`: the typed field each datatype travels in
CONTENTS_FIELD = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                  "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
                  "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
                  "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                  "BYTES": "bytes_contents"}


def bad(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's datatype of a numpy dtype (strings and bytes: BYTES)."""
    dtype = np.dtype(dtype)
    return "BYTES" if dtype.kind in "OSU" else DATATYPE_OF.get(dtype, "BYTES")


def dtype_of(datatype: Any, name: str) -> np.dtype:
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise bad(f"invalid datatype {datatype!r} for input '{name}'; expected one of {', '.join(DTYPES)}")
    return dtype


def shape_of(shape: Any, name: str) -> tuple[int, ...]:
    """A request's shape: a list of non-negative integers, at most MAX_RANK of them."""
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_RANK or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"invalid shape {shape!r} for input '{name}': a list of at most {MAX_RANK} sizes >= 0")
    return tuple(shape)


def count_of(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def from_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """JSON `data` (flat, or nested as the shape) as an array of `shape`."""
    dtype = dtype_of(datatype, name)
    if not isinstance(data, list):
        data = [data]
    if dtype.kind == "O":
        flat = list(_flatten(data, name))
        values = [v.encode() if isinstance(v, str) else v for v in flat]
        if not all(isinstance(v, bytes) for v in values):
            raise bad(f"input '{name}' is BYTES: its data must be strings")
        array = np.asarray(values, dtype=object)
    else:
        try:
            array = np.asarray(data)
        except ValueError:
            raise bad(f"input '{name}': data is ragged (nested lists of different lengths)") from None
        if array.dtype.kind not in "biuf":
            raise bad(f"input '{name}': data must be numbers (or booleans) for datatype {datatype}")
        if dtype.kind in "iu" and array.dtype.kind == "f":
            raise bad(f"input '{name}': data holds non-integers for datatype {datatype}")
        try:
            array = array.astype(dtype, copy=False)
        except (OverflowError, ValueError) as e:
            raise bad(f"input '{name}': data does not fit {datatype}: {e}") from None
    if array.size != count_of(shape):
        raise bad(f"unexpected number of elements for input '{name}': {array.size} in data, "
                  f"{count_of(shape)} in shape {list(shape)}")
    return array.reshape(shape)


def _flatten(values: list, name: str, depth: int = 0):
    if depth > MAX_RANK:
        raise bad(f"input '{name}': data nested deeper than {MAX_RANK}")
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v, name, depth + 1)
        else:
            yield v


def from_raw(raw: memoryview | bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Raw little-endian bytes (the binary extension, gRPC `raw_input_contents`) as an array of
    `shape`: a view of the buffer, no copy, where the layout allows."""
    dtype = dtype_of(datatype, name)
    count = count_of(shape)
    if dtype.kind == "O":
        values, at = [], 0
        for _ in range(count):
            if at + 4 > len(raw):
                raise bad(f"input '{name}': BYTES data ends inside an element's length")
            n = int.from_bytes(raw[at:at + 4], "little")
            if at + 4 + n > len(raw):
                raise bad(f"input '{name}': a BYTES element runs past its data")
            values.append(bytes(raw[at + 4:at + 4 + n]))
            at += 4 + n
        if at != len(raw):
            raise bad(f"input '{name}': {len(raw) - at} bytes left after {count} BYTES elements")
        return np.asarray(values, dtype=object).reshape(shape)
    little = dtype.newbyteorder("<")
    if len(raw) != count * little.itemsize:
        raise bad(f"unexpected size for input '{name}': {len(raw)} bytes, expected {count * little.itemsize} "
                  f"for shape {list(shape)} of {datatype}")
    array = np.frombuffer(raw, dtype=little).reshape(shape)
    return array if little == dtype else array.astype(dtype)


def to_raw(array: np.ndarray) -> bytes:
    """An output's raw bytes: little-endian numbers, or BYTES elements each after a 4-byte length."""
    if array.dtype.kind in "OSU":
        out = bytearray()
        for v in array.reshape(-1):
            b = v if isinstance(v, bytes) else str(v).encode()
            out += len(b).to_bytes(4, "little") + b
        return bytes(out)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def to_data(array: np.ndarray) -> list:
    """An output as JSON `data`: flat, row-major; BYTES as text."""
    flat = array.reshape(-1)
    if array.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()
