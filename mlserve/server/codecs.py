"""JSON <-> numpy for the REST API, following TF Serving's `json_tensor.cc` rules (read for facts).

Fast path: the request's big numeric tensor (the usual batch of images) is cut out of the body
and read by simdjson into one flat buffer of doubles (orjson's flat list where simdjson is not
installed), with its nesting checked against the canonical bracket layout of its shape
(`parse_predict_json`): no Python lists or floats to build and walk. Otherwise
orjson parses the body and one `np.asarray` call turns each nested list into an array,
the dtype is checked from the array's inferred kind (not element by element) and orjson writes
numpy arrays directly. Slow paths run only when needed:

- the body holds `NaN`/`Infinity`/`-Infinity` literals (orjson refuses them): the stdlib parser,
- a tensor is ragged, mistyped or mixes JSON kinds: a Python walk that reproduces TF Serving's
  error wording (``Encountered list at unexpected size: ...``),
- an output holds non-finite floats: they are written ``NaN``/``Infinity``/``-Infinity``, as TF
  Serving does (orjson would write ``null``),
- DT_STRING tensors (``"text"`` or ``{"b64": "..."}``), and ``*_bytes`` outputs written as ``{"b64": ...}``.

Known difference: floats are written in the shortest form that round-trips the float32/float64
value (orjson), where TF Serving writes `%.9g` when six digits do not round-trip; both parse back
to the same float32. Responses are compact JSON, TF Serving's are pretty-printed.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from typing import Any, Iterable, Mapping

import numpy as np
import orjson

from mlserve.server.errors import ServingError

ROW = "row"  # request had "instances" -> response "predictions"
COLUMNAR = "columnar"  # request had "inputs" -> response "outputs"

MAX_RANK = 64  # numpy's own limit; deeper lists are rejected with 400 before any recursion
_DEBUG_STRING_BYTES = 256  # TF Serving truncates JSON values quoted in errors to this size
_NUMPY_OPTS = orjson.OPT_SERIALIZE_NUMPY

_TF_TYPE_NAMES = {
    "float32": "float", "float64": "double", "float16": "half", "int32": "int32", "int64": "int64",
    "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
    "uint64": "uint64", "bool": "bool", "object": "string", "bytes": "string", "str": "string",
}
_INT_KINDS = frozenset("iu")
_NUM_KINDS = frozenset("fiu")


def _bad(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def tf_type_name(dtype: Any) -> str:
    """TensorFlow's DataTypeString for a numpy dtype (``float``, ``int64``, ``string``...)."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return "string"
    return _TF_TYPE_NAMES.get(dt.name, dt.name)


# --------------------------------------------------------------------------------------- parsing


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether `doc` nests lists/objects deeper than `limit` (iterative: no recursion limit)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (list, dict)))
        elif isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (list, dict)))
    return False


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; INVALID_ARGUMENT (HTTP 400) worded like TF Serving."""
    if not body:
        raise _bad("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        # orjson has no NaN/Infinity literals; TF Serving (rapidjson kParseNanAndInfFlag) has.
        if b"NaN" in body or b"Infinity" in body:
            try:
                doc = json.loads(body)
            except RecursionError:
                raise _bad("JSON Parse error: nesting too deep at offset: 0") from None
            except ValueError as e2:
                pos = getattr(e2, "pos", 0)
                raise _bad(f"JSON Parse error: {getattr(e2, 'msg', str(e2))} at offset: {pos}") from None
            if _depth_exceeds(doc, MAX_RANK + 2):
                raise _bad(f"JSON Parse error: nesting deeper than {MAX_RANK + 2} levels") from None
        else:
            raise _bad(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    if not isinstance(doc, dict):
        raise _bad(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


def debug_string(value: Any) -> str:
    """A JSON value quoted in an error message, truncated like TF Serving's (256 bytes)."""
    try:
        text = orjson.dumps(value, option=_NUMPY_OPTS, default=_parsed_tensor_json
                            ).decode("utf-8", "replace")
    except (TypeError, orjson.JSONEncodeError):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    return text[:_DEBUG_STRING_BYTES]


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value: Any) -> bytes:
    if not _is_b64(value):
        raise _bad(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    text = value["b64"]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise _bad("Unable to base64 decode") from None


# ------------------------------------------------------------- the numeric-tensor fast path

# The bytes of a nested array of plain numbers (no strings, objects, literals).
# In a run orjson reads as a flat array of values, these bytes begin every value but a number
# (string, true, false, null, object); NaN and Infinity it refuses itself.
_NOT_NUMBER_STARTS = (b'"', b"t", b"f", b"n", b"{")
_FAST_MIN_BYTES = 4096  # below this orjson + np.asarray is as fast
_PLACEHOLDER = b'"__mlserve_parsed_tensor__"'
_KEEP_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[],")))


class ParsedTensor:
    """A numeric array read straight from the request bytes, standing in the parsed document
    where its nested list would be. `span` keeps the original JSON for the exact slow path."""

    __slots__ = ("array", "span")

    def __init__(self, array: np.ndarray, span: bytes) -> None:
        self.array = array
        self.span = span

    def as_json(self) -> Any:
        return orjson.loads(self.span)


def _parsed_tensor_json(value: Any) -> Any:
    if isinstance(value, ParsedTensor):
        return value.as_json()
    raise TypeError


def _canonical_structure(shape: list[int]) -> bytes:
    """The brackets and commas of a dense JSON array of `shape`, numbers left out."""
    text = b""
    for size in reversed(shape):
        text = b"[" + b",".join([text] * size) + b"]"
    return text


def _structure_shape(structure: bytes) -> list[int] | None:
    """The shape along the first element of each level (TF Serving's rule), from brackets only.

    In a dense layout the first array at depth k+1 opens at index k and closes with the first run
    of rank-k closing brackets; its length gives its element count from the inner array's length.
    A layout that is not dense yields some shape that `_canonical_structure` then refutes.
    """
    rank = len(structure) - len(structure.lstrip(b"["))
    if rank == 0 or rank > MAX_RANK:
        return None
    shape: list[int] = []
    inner_length = 0  # length of one element at the level below (numbers: 0)
    for level in range(rank - 1, -1, -1):
        run = structure.find(b"]" * (rank - level), level)
        if run < 0:
            return None
        length = run + (rank - level - 1) - level + 1
        count, rest = divmod(length - 1, inner_length + 1)
        if rest or count < 1:
            return None
        shape.append(count)
        inner_length = length
    return shape[::-1]


_simdjson_parsers = threading.local()  # a simdjson parser serves one thread, one document at a time


def _flat_numbers_simdjson(span: bytes) -> np.ndarray | None:
    """simdjson reads the nested array straight into one buffer of doubles (no Python floats):
    ~20 against ~35 µs for 784 numbers. It refuses anything but strict JSON numbers."""
    parser = getattr(_simdjson_parsers, "parser", None)
    if parser is None:
        parser = _simdjson_parsers.parser = simdjson.Parser()
    try:
        array = parser.parse(span)
        try:
            return np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
        finally:
            del array  # the parser may only parse again once no proxy of its document is alive
    except (ValueError, TypeError, RuntimeError, AttributeError):
        return None


def _flat_numbers_orjson(span: bytes) -> np.ndarray | None:
    """The numbers as one flat JSON array: orjson reads them strictly, without nesting."""
    try:
        return np.array(orjson.loads(b"[" + span.translate(None, b"[]") + b"]"), dtype=np.float64)
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        return None


try:
    import simdjson
except ImportError:  # pragma: no cover - a platform without its wheel keeps the orjson reader
    _flat_numbers = _flat_numbers_orjson
else:
    _flat_numbers = _flat_numbers_simdjson


# Bracket layouts already proven dense, with their shapes: a client sends the same few shapes,
# and one dict lookup (a hash and a compare of the layout) replaces re-deriving the shape.
_dense_layouts: dict[bytes, list[int]] = {}


def _read_numbers(span: bytes) -> np.ndarray | None:
    """`span` (a JSON array of numbers) as float64 of its dense shape, or None to take the slow
    path (ragged, empty, or numbers JSON forbids: the slow path words the error)."""
    structure = span.translate(None, _KEEP_STRUCTURE)
    shape = _dense_layouts.get(structure)
    if shape is None:
        shape = _structure_shape(structure)
        if not shape or 0 in shape or structure != _canonical_structure(shape):
            return None
        if len(_dense_layouts) >= 64:
            _dense_layouts.clear()
        _dense_layouts[structure] = shape
    flat = _flat_numbers(span)
    if flat is None or flat.ndim != 1 or flat.size != math.prod(shape):
        return None
    return flat.reshape(shape)


def parse_predict_json(body: bytes) -> dict[str, Any]:
    """Like `parse_json`, but a large plain-number tensor given as the whole of `instances` or
    `inputs` arrives as a `ParsedTensor` (a flat float64 array, no nested lists).

    Anything unusual (no such tensor, ragged or odd numbers, other layouts) parses as before, so
    answers and error messages are the same either way.
    """
    if len(body) < _FAST_MIN_BYTES:
        return parse_json(body)
    span = _tensor_span(body)
    if span is None:
        return parse_json(body)
    start, end = span
    try:
        doc = orjson.loads(body[:start] + _PLACEHOLDER + body[end:])
    except orjson.JSONDecodeError:
        return parse_json(body)
    placeholder = _PLACEHOLDER[1:-1].decode()
    key = next((k for k in ("instances", "inputs") if isinstance(doc, dict) and doc.get(k) == placeholder),
               None)
    array = _read_numbers(body[start:end]) if key else None
    if array is None:
        return parse_json(body)
    doc[key] = ParsedTensor(array, body[start:end])
    return doc


def _tensor_span(body: bytes) -> tuple[int, int] | None:
    """Where the value of `instances` (or `inputs`) lies, if it is a large run of plain-number
    JSON: from the first `[` after the key to the last `]` of the body. Only a candidate: the
    caller parses the rest of the body and checks that the key holds the cut-out run."""
    for key in (b'"instances"', b'"inputs"'):
        at = body.find(key)
        if at >= 0:
            break
    else:
        return None
    start = body.find(b"[", at)
    end = body.rfind(b"]") + 1
    if start < 0 or end - start < _FAST_MIN_BYTES or body[at + len(key):start].strip() != b":":
        return None
    span = body[start:end]
    if any(c in span for c in _NOT_NUMBER_STARTS):  # one memchr each: faster than a translate
        return None
    return start, end


def _fast_tensor(value: Any, inputs: Mapping[str, Any]) -> tuple[np.ndarray | None, Any]:
    """(array, None) when a ParsedTensor can be used for the single float input as it is,
    else (None, the value as ordinary parsed JSON)."""
    if not isinstance(value, ParsedTensor):
        return None, value
    if len(inputs) == 1:
        dtype = np.dtype(next(iter(inputs.values())))
        if dtype.kind == "f":
            return value.array.astype(dtype, copy=False), None
    return None, value.as_json()


# ------------------------------------------------------------------------- tensors from JSON


def _dense_shape(value: Any) -> list[int]:
    """TF Serving's shape of a JSON value: the lengths along the first element of each level."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise _bad(f"JSON Value nests lists deeper than {MAX_RANK} levels")
        if not value:
            break
        value = value[0]
    return shape


def _leaf_ok(value: Any, kind: str, dtype: np.dtype) -> bool:
    """Whether a JSON scalar fits a tensor dtype by TF Serving's rules (no bool for numbers...)."""
    if kind == "f":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in "iu":
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        if dtype.itemsize < 8:  # int8/16/32, uint8 are read as int32 (IsInt), uint32 as IsUint
            return (0 <= value < 2**32) if dtype == np.uint32 else (-(2**31) <= value < 2**31)
        return (0 <= value < 2**64) if kind == "u" else (-(2**63) <= value < 2**63)
    if kind == "b":
        return isinstance(value, bool)
    return isinstance(value, str)


def _walk(value: Any, shape: list[int], kind: str, dtype: np.dtype, out: list | None) -> None:
    """Check a JSON tensor level by level with TF Serving's messages; collect leaves into `out`."""
    rank = len(shape)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        val, level = stack.pop()
        if not isinstance(val, list):
            if level != rank:
                raise _bad(
                    f"JSON Value: {debug_string(val)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            if isinstance(val, dict):
                if kind != "O":
                    raise _type_error(val, dtype)
                leaf: Any = _decode_b64(val)
            elif not _leaf_ok(val, kind, dtype):
                raise _type_error(val, dtype)
            else:
                leaf = val.encode("utf-8") if kind == "O" else val
            if out is not None:
                out.append(leaf)
            continue
        if level >= rank:
            raise _bad(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(val) != shape[level]:
            raise _bad(
                f"Encountered list at unexpected size: {len(val)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        stack.extend((v, level + 1) for v in reversed(val))


def _type_error(value: Any, dtype: np.dtype) -> ServingError:
    return _bad(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} "
        f"is not of expected type: {tf_type_name(dtype)}"
    )


def _slow_tensor(value: Any, dtype: np.dtype) -> np.ndarray:
    """The checked walk: raises TF Serving's error, else builds the array (strings: bytes objects)."""
    shape = _dense_shape(value)
    kind = "O" if dtype.kind in "OSU" else dtype.kind
    leaves: list[Any] = []
    _walk(value, shape, kind, dtype, leaves)
    if kind == "O":
        arr = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        return arr.reshape(shape)
    return np.asarray(leaves, dtype=dtype).reshape(shape)


def to_array(value: Any, dtype: Any, *, strict: bool = False) -> np.ndarray:
    """A JSON value (nested lists) as an array of `dtype`; INVALID_ARGUMENT in TF Serving's words.

    Numbers take one `np.asarray` call; the inferred kind rejects strings, nulls and ragged lists.
    JSON booleans inside a numeric tensor are not visible in the inferred kind, so callers pass
    `strict=True` when the body contains a `true`/`false` token, which runs the element check.
    """
    dt = np.dtype(dtype)
    kind = dt.kind
    if kind in "OSU" or strict:
        return _slow_tensor(value, dt)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return _slow_tensor(value, dt)  # raises the precise error
    have = arr.dtype.kind
    if kind == "f":
        ok = have in _NUM_KINDS
    elif kind in _INT_KINDS:
        ok = have in _INT_KINDS
        if ok and arr.size and (dt.itemsize < 8 or (kind == "u") != (have == "u")):
            lo, hi = (0, 2**32 - 1) if dt == np.uint32 else (-(2**31), 2**31 - 1)
            if dt.itemsize == 8:
                lo, hi = (0, 2**64 - 1) if kind == "u" else (-(2**63), 2**63 - 1)
            ok = lo <= int(arr.min()) and int(arr.max()) <= hi
    elif kind == "b":
        ok = have == "b"
    else:
        ok = False
    if not ok or arr.ndim > MAX_RANK:
        return _slow_tensor(value, dt)
    return arr if arr.dtype == dt else arr.astype(dt)


def _shape_str(shape: Iterable[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _instances_error(items: list, dtype: np.dtype, element_error: Any) -> ServingError:
    """The first bad instance, checked one by one like TF Serving's row-format loop."""
    first_size = first_shape = None
    for i, item in enumerate(items):
        try:
            arr = _slow_tensor(item, dtype)
            if first_shape is None:
                first_size, first_shape = arr.size, arr.shape
            elif arr.size != first_size:
                raise _bad(f"Expecting tensor size: {first_size} but got: {arr.size}")
            elif arr.shape != first_shape:
                raise _bad(f"Expecting shape {_shape_str(first_shape)} but got: {_shape_str(arr.shape)}")
        except ServingError as e:
            return element_error(i, e)
    return _bad("Failed to process 'instances' list")  # unreachable in practice


def _row_tensor(items: list, dtype: np.dtype, strict: bool, element_error: Any) -> np.ndarray:
    try:
        arr = to_array(items, dtype, strict=strict)
    except ServingError:
        raise _instances_error(items, dtype, element_error) from None
    return arr


def decode_predict(doc: Mapping[str, Any], inputs: Mapping[str, Any], *, strict: bool = False
                   ) -> tuple[dict[str, np.ndarray], str]:
    """Predict request tensors and the format (ROW or COLUMNAR) from a parsed body.

    `inputs` maps each signature input key to its numpy dtype (object for DT_STRING).
    """
    if not inputs:
        sig = doc.get("signature_name") or "DEFAULT"
        raise _bad(f"Failed to get input map for signature: {sig}")
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances and has_inputs:
        raise _bad(
            f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    names = sorted(inputs)
    if has_instances:
        array, items = _fast_tensor(doc["instances"], inputs)
        if array is not None:
            return {names[0]: array}, ROW
        if not isinstance(items, list):
            raise _bad(f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array")
        if not items:
            raise _bad(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        first = items[0]
        if not isinstance(first, dict) and len(inputs) > 1:
            raise _bad(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        if not isinstance(first, dict) or _is_b64(first):
            for i, item in enumerate(items):
                if isinstance(item, dict) and not _is_b64(item):
                    raise _bad(f"Expecting value/list but got object at item {i} of input list")
            name = names[0]

            def plain_error(i: int, e: ServingError) -> ServingError:
                return _bad(f"Failed to process element: {i} of 'instances' list. "
                            f"Error: INVALID_ARGUMENT: {e.message}")

            return {name: _row_tensor(items, np.dtype(inputs[name]), strict, plain_error)}, ROW
        wanted = set(names)
        columns: dict[str, list] = {n: [] for n in names}
        for i, item in enumerate(items):
            if not isinstance(item, dict) or _is_b64(item):
                raise _bad(f"Expecting object but got list at item {i} of input list")
            for key, val in item.items():
                column = columns.get(key)
                if column is None:
                    raise _bad(f"Failed to process element: {i} key: {key} of 'instances' list. "
                               f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}")
                column.append(val)
            if len(item) != len(wanted) or not wanted.issuperset(item):
                raise _bad(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{debug_string(item)} keys must be equal to: {','.join(names)}"
                )
        result = {}
        for name in names:
            def named_error(i: int, e: ServingError, name: str = name) -> ServingError:
                return _bad(f"Failed to process element: {i} key: {name} of 'instances' list. "
                            f"Error: INVALID_ARGUMENT: {e.message}")

            result[name] = _row_tensor(columns[name], np.dtype(inputs[name]), strict, named_error)
        return result, ROW
    if has_inputs:
        array, val = _fast_tensor(doc["inputs"], inputs)
        if array is not None:
            return {names[0]: array}, COLUMNAR
        if not isinstance(val, dict) or _is_b64(val):
            if len(inputs) > 1:
                raise _bad(
                    "inputs is a plain value/list, but expecting an object as multiple input "
                    "tensors required as per tensorinfo_map"
                )
            name = names[0]
            if _is_b64(val):
                val = [val]  # a lone b64 object is a scalar string: shape []
                arr = to_array(val, inputs[name], strict=strict).reshape(())
            else:
                arr = to_array(val, inputs[name], strict=strict)
            return {name: arr}, COLUMNAR
        result = {}
        for name in names:
            if name not in val:
                raise _bad(f"Missing named input: {name} in 'inputs' object.")
            result[name] = to_array(val[name], inputs[name], strict=strict)
        return result, COLUMNAR
    raise _bad("Missing 'inputs' or 'instances' key")


def needs_strict(body: bytes, doc: Mapping[str, Any] | None = None) -> bool:
    """Whether the body has a JSON boolean that numpy would silently read as a number (never for
    a tensor read by the fast path, which holds numbers only)."""
    if doc is not None and any(isinstance(doc.get(k), ParsedTensor) for k in ("instances", "inputs")):
        return False
    return b"true" in body or b"false" in body


# -------------------------------------------------------------------------- tensors to JSON


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
    text = orjson.dumps(flat, option=_NUMPY_OPTS)
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
        raise _bad("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if len(names) == 1:
        arr = outputs[names[0]]
        if (isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.dtype != np.float16
                and arr.ndim > 0 and arr.flags.c_contiguous):
            # The common answer, one float tensor: orjson writes a non-finite float as `null`, so
            # a `null` in its output is the only sign that the careful path is needed.
            text = orjson.dumps({"outputs" if fmt == COLUMNAR else "predictions": arr}, option=_NUMPY_OPTS)
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
        return orjson.dumps(body, option=_NUMPY_OPTS)
    batch = -1
    arrays = {}
    for name in names:
        arr = np.asarray(outputs[name])
        if arr.ndim == 0:
            raise _bad(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and arr.shape[0] != batch:
            raise _bad(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}")
        batch = arr.shape[0]
        arrays[name] = arr
    if len(names) == 1:
        name = names[0]
        arr = arrays[name]
        return orjson.dumps({"predictions": _jsonable(arr, _is_bytes_output(name, arr))}, option=_NUMPY_OPTS)
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
    return orjson.dumps({"predictions": rows}, option=_NUMPY_OPTS)


def _fmt_score(value: float) -> Any:
    return value if math.isfinite(value) else orjson.Fragment(
        b"NaN" if math.isnan(value) else (b"Infinity" if value > 0 else b"-Infinity"))


def encode_classify(result: Any) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` from a ClassificationResult proto."""
    if not len(result.classifications):
        raise _bad("Cannot convert empty ClassificationResults to JSON")
    rows = [[[c.label, _fmt_score(float(np.float32(c.score)))] for c in cl.classes]
            for cl in result.classifications]
    return orjson.dumps({"results": rows})


def encode_regress(result: Any) -> bytes:
    """``{"results": [value, ...]}`` from a RegressionResult proto."""
    if not len(result.regressions):
        raise _bad("Cannot convert empty RegressionResults to JSON")
    return orjson.dumps({"results": [_fmt_score(float(np.float32(r.value))) for r in result.regressions]})


def encode_error(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "<message>"}``."""
    return orjson.dumps({"error": message})


# ------------------------------------------------------------- classify/regress (tf.Example)


def _add_feature_value(feature: Any, name: str, val: Any) -> None:
    kind = feature.WhichOneof("kind")

    def incompatible() -> ServingError:
        names = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}
        return _bad(f"Unexpected element type in feature: {name} expecting type: {names[kind]}")

    if val is None or isinstance(val, list) or (isinstance(val, dict) and not _is_b64(val)):
        raise _bad(f"Feature: {name} has element with unexpected JSON type: {_json_type(val)}")
    if isinstance(val, bool):
        if kind not in (None, "int64_list"):
            raise incompatible()
        feature.int64_list.value.append(1 if val else 0)
    elif isinstance(val, dict):
        if kind not in (None, "bytes_list"):
            raise incompatible()
        feature.bytes_list.value.append(_decode_b64(val))
    elif isinstance(val, str):
        if kind not in (None, "bytes_list"):
            raise incompatible()
        feature.bytes_list.value.append(val.encode("utf-8"))
    elif isinstance(val, float):
        if kind not in (None, "float_list"):
            raise incompatible()
        feature.float_list.value.append(val)
    else:
        if kind not in (None, "int64_list"):
            raise incompatible()
        if val >= 2**63:
            raise _bad(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(val)


def _fill_example(value: Any, example: Any) -> None:
    if not isinstance(value, dict):
        raise _bad(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        for v in content if isinstance(content, list) else [content]:
            _add_feature_value(feature, name, v)


def fill_examples_request(doc: Mapping[str, Any], request: Any) -> None:
    """Fill a Classification/RegressionRequest's signature and Input from ``examples``/``context``."""
    sig = doc.get("signature_name")
    if sig is not None:
        if not isinstance(sig, str):
            raise _bad(f"JSON Value: {debug_string(doc)} not formatted correctly. "
                       "'signature_name' key must be a string value.")
        request.model_spec.signature_name = sig
    has_context = "context" in doc
    if has_context:
        _fill_example(doc["context"], request.input.example_list_with_context.context)
    if "examples" not in doc:
        raise _bad(f"JSON Value: {debug_string(doc)} When method is classify, key 'examples' "
                   "is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise _bad(f"JSON Value: {debug_string(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise _bad(f"JSON Value: {debug_string(doc)} 'examples' value is an empty array")
    target = (request.input.example_list_with_context.examples if has_context
              else request.input.example_list.examples)
    for value in examples:
        _fill_example(value, target.add())


def signature_name(doc: Mapping[str, Any]) -> str:
    """The request's ``signature_name`` ("" when absent); must be a string."""
    sig = doc.get("signature_name", "")
    if not isinstance(sig, str):
        raise _bad(f"JSON Value: {debug_string(doc)} not formatted correctly. "
                   "'signature_name' key must be a string value.")
    return sig
