"""TensorProto <-> numpy conversion for the gRPC API, with fast paths for the common dtypes.

`tf.make_ndarray`/`tf.make_tensor_proto` handle every case but cost tens of microseconds of
Python per call; the request path here is numpy only and falls back to TensorFlow for rare dtypes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# DataType enum values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23

NUMPY_OF_ENUM: dict[int, np.dtype] = {
    DT_FLOAT: np.dtype(np.float32), DT_DOUBLE: np.dtype(np.float64), DT_INT32: np.dtype(np.int32),
    DT_UINT8: np.dtype(np.uint8), DT_INT16: np.dtype(np.int16), DT_INT8: np.dtype(np.int8),
    DT_STRING: np.dtype(object), DT_INT64: np.dtype(np.int64), DT_BOOL: np.dtype(np.bool_),
    DT_UINT16: np.dtype(np.uint16), DT_HALF: np.dtype(np.float16), DT_UINT32: np.dtype(np.uint32),
    DT_UINT64: np.dtype(np.uint64),
}
ENUM_OF_NUMPY: dict[np.dtype, int] = {v: k for k, v in NUMPY_OF_ENUM.items()}

# Which repeated field of TensorProto holds values of each dtype.
_FIELD_OF_ENUM = {
    DT_FLOAT: "float_val", DT_DOUBLE: "double_val", DT_INT32: "int_val", DT_UINT8: "int_val",
    DT_INT16: "int_val", DT_INT8: "int_val", DT_INT64: "int64_val", DT_BOOL: "bool_val",
    DT_STRING: "string_val", DT_UINT32: "uint32_val", DT_UINT64: "uint64_val",
}

DTYPE_NAMES = {DT_FLOAT: "DT_FLOAT", DT_DOUBLE: "DT_DOUBLE", DT_INT32: "DT_INT32", DT_UINT8: "DT_UINT8",
               DT_INT16: "DT_INT16", DT_INT8: "DT_INT8", DT_STRING: "DT_STRING", DT_INT64: "DT_INT64",
               DT_BOOL: "DT_BOOL", DT_UINT16: "DT_UINT16", DT_HALF: "DT_HALF", DT_UINT32: "DT_UINT32",
               DT_UINT64: "DT_UINT64"}


def dtype_name(enum: int) -> str:
    return DTYPE_NAMES.get(enum, f"DT_{enum}")


def _parse_error(alias: str) -> Exception:
    from mlserve.server.errors import ServingError

    return ServingError("INVALID_ARGUMENT", f"tensor parsing error: {alias}")


MAX_DIMS = 254  # TensorShape::MaxDimensions()
_INT64_MAX = 2**63 - 1
# A tensor larger than the values its proto carries (the last value repeated, or zeros) is
# refused past this size: TF Serving would try to allocate it (and fail past the machine's
# memory); bounding it keeps a 20-byte request from costing gigabytes.
MAX_FILLED_BYTES = 1 << 30


def _num_elements(shape: tuple[int, ...]) -> int:
    """The element count, or -1 where TensorShape would refuse the shape (a negative dimension,
    more than 254 of them, or a count past int64 at any step: TensorShapeBase::IsValid)."""
    if len(shape) > MAX_DIMS:
        return -1
    n = 1
    for d in shape:
        if d < 0:
            return -1
        n *= d
        if n > _INT64_MAX:
            return -1
    return n


def to_ndarray(proto: Any, alias: str = "") -> np.ndarray:
    """A TensorProto's value as a numpy array (strings as an object array of bytes), read as
    TensorFlow's `Tensor::FromProto` reads it: a negative dimension, an unknown or zero dtype,
    or a `tensor_content` of the wrong length is INVALID_ARGUMENT "tensor parsing error: <alias>";
    a value list shorter than the shape repeats its last value (none: zeros), a longer one is cut.
    A shape TensorShape refuses (too many elements or dimensions) and a filled tensor past
    `MAX_FILLED_BYTES` are the same error (where TensorFlow's allocation would fail)."""
    try:
        return _to_ndarray(proto, alias)
    except (ValueError, OverflowError, MemoryError, TypeError) as e:
        raise _parse_error(alias) from e


def _to_ndarray(proto: Any, alias: str) -> np.ndarray:
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    n = _num_elements(shape)
    if n < 0:
        raise _parse_error(alias)
    dtype = NUMPY_OF_ENUM.get(proto.dtype)
    content = proto.tensor_content
    if dtype is not None and dtype.kind != "O" and content:
        if len(content) != n * dtype.itemsize or n < 0 or (n == 0 and min(shape) < 0):
            raise _parse_error(alias)
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    if proto.tensor_shape.unknown_rank or proto.dtype <= 0:
        raise _parse_error(alias)
    if n * (dtype.itemsize if dtype is not None else 16) > MAX_FILLED_BYTES:
        raise _parse_error(alias)
    field = _FIELD_OF_ENUM.get(proto.dtype)
    if field is None or content:
        import tensorflow as tf  # rare dtypes, and string tensor_content

        try:
            return tf.make_ndarray(proto)
        except Exception as e:  # noqa: BLE001 - an unknown dtype or unreadable content
            raise _parse_error(alias) from e
    values = getattr(proto, field)
    have = len(values)
    if dtype.kind == "O":
        out = np.empty(n, dtype=object)
        if have >= n:
            out[:] = list(values[:n]) if have > n else list(values)
        elif have == 0:
            out[:] = [b""] * n
        else:
            out[:have] = list(values)
            out[have:] = [values[-1]] * (n - have)
        return out.reshape(shape)
    if have == 0:
        return np.zeros(shape, dtype=dtype)
    if dtype.itemsize < 4 and dtype.kind in "iu":  # int_val holds int32s; FromProto casts them
        got = np.asarray(values[:n] if have > n else values, dtype=np.int32).astype(dtype)
    else:
        got = np.asarray(values[:n] if have > n else values, dtype=dtype)
    if have >= n:
        return got.reshape(shape)
    out = np.empty(n, dtype=dtype)
    out[:have] = got
    out[have:] = got[-1]
    return out.reshape(shape)


def to_proto(array: Any, *, as_content: bool = False, out: Any = None) -> Any:
    """A numpy array as a TensorProto: values in the typed field (TF Serving's default) or bytes."""
    from tensorflow.core.framework import tensor_pb2

    arr = np.asarray(array)
    enum = ENUM_OF_NUMPY.get(arr.dtype)
    if enum is None and arr.dtype.kind in "SU":
        enum = DT_STRING
    proto = tensor_pb2.TensorProto() if out is None else out
    if enum is None or (enum == DT_HALF and not as_content) or enum == DT_UINT16 and not as_content:
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(arr))
        return proto
    proto.dtype = enum
    dims = proto.tensor_shape.dim
    for size in arr.shape:
        dims.add().size = size
    if enum == DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel())
    elif as_content:
        proto.tensor_content = np.ascontiguousarray(arr).tobytes()
    else:
        getattr(proto, _FIELD_OF_ENUM[enum]).extend(arr.ravel().tolist())
    return proto
