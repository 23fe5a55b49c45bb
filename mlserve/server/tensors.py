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


def to_ndarray(proto: Any) -> np.ndarray:
    """A TensorProto's value as a numpy array (strings as an object array of bytes)."""
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    dtype = NUMPY_OF_ENUM.get(proto.dtype)
    if dtype is not None and dtype.kind != "O" and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    field = _FIELD_OF_ENUM.get(proto.dtype)
    if field is not None and proto.dtype != DT_STRING:
        values = getattr(proto, field)
        n = int(np.prod(shape)) if shape else 1
        if len(values) == n:
            return np.asarray(values, dtype=dtype).reshape(shape)
    elif proto.dtype == DT_STRING:
        values = proto.string_val
        n = int(np.prod(shape)) if shape else 1
        if len(values) == n:
            out = np.empty(n, dtype=object)
            out[:] = list(values)
            return out.reshape(shape)
    import tensorflow as tf  # rare dtypes and TF's value broadcasting rules

    return tf.make_ndarray(proto)


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
