"""numpy outputs to TF Serving's JSON answers (predict, classify, regress, errors).

orjson writes numpy arrays directly. Careful paths run only when needed: non-finite floats are
written ``NaN``/``Infinity``/``-Infinity`` as TF Serving does (orjson would write ``null``), and
``*_bytes`` string outputs as ``{"b64": ...}``.

Known difference: floats are written in the shortest form that round-trips the float32/float64
value (orjson), where TF Serving writes `%.9g` when six digits do not round-trip; both parse back
to the same float32. Responses are compact JSON, TF Serving's are pretty-printed.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Mapping

import numpy as np
import orjson

from mlserve.server.frontends.rest.codecs.decode import COLUMNAR
from mlserve.server.frontends.rest.codecs.rules import bad


def _jsonable(arr: np.ndarray, as_b64: bool) -> Any:
    """An output array as something orjson serialises with TF Serving's value spelling."""
    kind = arr.dtype.kind
    if kind in "OSU":
        flat = arr.ravel().tolist()
        if as_b64:
            vals = [{"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode("ascii")}
                    for v in flat]
        else:
            vals = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
        holder = np.empty(len(vals), dtype=object)
        holder[:] = vals
        return holder.reshape(arr.shape).tolist()
    if kind == "f":
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            return orjson.Fragment(_nonfinite_json(arr))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if arr.ndim == 0:
        return arr[()]  # a numpy scalar: orjson writes float32 in its shortest form
    return arr


def _nonfinite_json(arr: np.ndarray) -> bytes:
    """orjson's output with its `null`s (one per non-finite value) replaced by TF Serving's tokens."""
    scalar = arr.ndim == 0
    flat = arr.reshape(1) if scalar else np.ascontiguousarray(arr)
    text = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)
    if scalar:
        text = text[1:-1]
    bad = flat[~np.isfinite(flat)]
    parts = text.split(b"null")
    tokens = [b"NaN" if math.isnan(v) else (b"Infinity" if v > 0 else b"-Infinity") for v in bad.tolist()]
    out = [parts[0]]
    for token, part in zip(tokens, parts[1:]):
        out.append(token)
        out.append(part)
    return b"".join(out)


def _is_bytes_output(name: str, arr: np.ndarray) -> bool:
    return arr.dtype.kind in "OS" and name.endswith("_bytes")


def encode_predict(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """The predict response body: ``{"predictions": ...}`` (ROW) or ``{"outputs": ...}`` (COLUMNAR)."""
    if not outputs:
        raise bad("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if len(names) == 1:
        arr = outputs[names[0]]
        if (isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.dtype != np.float16
                and arr.ndim > 0 and arr.flags.c_contiguous):
            # The common answer, one float tensor: orjson writes a non-finite float as `null`, so
            # a `null` in its output is the only sign that the careful path is needed.
            text = orjson.dumps({"outputs" if fmt == COLUMNAR else "predictions": arr}, option=orjson.OPT_SERIALIZE_NUMPY)
            if b"null" not in text:
                return text
    if fmt == COLUMNAR:
        if len(names) == 1:
            name = names[0]
            arr = np.asarray(outputs[name])
            body: Any = {"outputs": _jsonable(arr, _is_bytes_output(name, arr))}
        else:
            body = {"outputs": {n: _jsonable(np.asarray(outputs[n]), _is_bytes_output(n, np.asarray(outputs[n])))
                                for n in names}}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    batch = -1
    arrays = {}
    for name in names:
        arr = np.asarray(outputs[name])
        if arr.ndim == 0:
            raise bad(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and arr.shape[0] != batch:
            raise bad(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}")
        batch = arr.shape[0]
        arrays[name] = arr
    if len(names) == 1:
        name = names[0]
        arr = arrays[name]
        return orjson.dumps({"predictions": _jsonable(arr, _is_bytes_output(name, arr))}, option=orjson.OPT_SERIALIZE_NUMPY)
    columns = {n: _jsonable(a, _is_bytes_output(n, a)) for n, a in arrays.items()}
    rows = []
    for i in range(batch):
        row = {}
        for n in names:
            col = columns[n]
            if isinstance(col, orjson.Fragment):  # non-finite values: re-encode that row alone
                row[n] = _jsonable(np.asarray(arrays[n][i]), False)
            else:
                row[n] = col[i]
        rows.append(row)
    return orjson.dumps({"predictions": rows}, option=orjson.OPT_SERIALIZE_NUMPY)


def _fmt_score(value: float) -> Any:
    return value if math.isfinite(value) else orjson.Fragment(
        b"NaN" if math.isnan(value) else (b"Infinity" if value > 0 else b"-Infinity"))


def encode_classify(result: Any) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` from a ClassificationResult proto."""
    if not len(result.classifications):
        raise bad("Cannot convert empty ClassificationResults to JSON")
    rows = [[[c.label, _fmt_score(float(np.float32(c.score)))] for c in cl.classes]
            for cl in result.classifications]
    return orjson.dumps({"results": rows})


def encode_regress(result: Any) -> bytes:
    """``{"results": [value, ...]}`` from a RegressionResult proto."""
    if not len(result.regressions):
        raise bad("Cannot convert empty RegressionResults to JSON")
    return orjson.dumps({"results": [_fmt_score(float(np.float32(r.value))) for r in result.regressions]})


def encode_error(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "<message>"}``."""
    return orjson.dumps({"error": message})


