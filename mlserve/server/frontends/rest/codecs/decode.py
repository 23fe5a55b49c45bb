"""JSON predict requests to numpy tensors, by TF Serving's `json_tensor.cc` rules (read for facts).

Numbers take one `np.asarray` call; the dtype is checked from the array's inferred kind, not
element by element. A ragged, mistyped or mixed tensor (and every DT_STRING one) takes a Python
walk that reproduces TF Serving's error wording (``Encountered list at unexpected size: ...``).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from mlserve.server.frontends.rest.codecs import fastpath
from mlserve.server.frontends.rest.codecs.jsondoc import ParsedTensor, debug_string, decode_b64, is_b64, json_type
from mlserve.server.frontends.rest.codecs.rules import MAX_RANK, bad, int_bounds, tf_type_name
from mlserve.server.errors import ServingError

ROW = "row"  # request had "instances" -> response "predictions"
COLUMNAR = "columnar"  # request had "inputs" -> response "outputs"
_INT_KINDS = frozenset("iu")
_NUM_KINDS = frozenset("fiu")


def _dense_shape(value: Any) -> list[int]:
    """TF Serving's shape of a JSON value: the lengths along the first element of each level."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise bad(f"JSON Value nests lists deeper than {MAX_RANK} levels")
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
        lo, hi = int_bounds(dtype)
        return lo <= value <= hi
    if kind == "b":
        return isinstance(value, bool)
    return isinstance(value, str)


_END = object()


def _walk(value: Any, shape: list[int], kind: str, dtype: np.dtype, out: list | None) -> None:
    """Check a JSON tensor depth-first, in document order, with TF Serving's messages; collect
    leaves into `out`. A stack of one iterator per open list: memory follows the depth, not the
    element count (a tuple per element took 16x the body's text)."""
    rank = len(shape)
    stack: list[Any] = []
    val, level = value, 0
    while True:
        if not isinstance(val, list):
            if level != rank:
                raise bad(
                    f"JSON Value: {debug_string(val)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            if isinstance(val, dict):
                if kind != "O":
                    raise _type_error(val, dtype)
                leaf: Any = decode_b64(val)
            elif not _leaf_ok(val, kind, dtype):
                raise _type_error(val, dtype)
            else:
                leaf = val.encode("utf-8") if kind == "O" else val
            if out is not None:
                out.append(leaf)
        else:
            if level >= rank:
                raise bad(f"Encountered list at unexpected level: {level} expected < {rank}")
            if len(val) != shape[level]:
                raise bad(
                    f"Encountered list at unexpected size: {len(val)} at level: {level} "
                    f"expected size: {shape[level]}"
                )
            stack.append(iter(val))
        while stack:  # the next value in document order; its level is the open lists' count
            val = next(stack[-1], _END)
            if val is not _END:
                level = len(stack)
                break
            stack.pop()
        else:
            return


def _type_error(value: Any, dtype: np.dtype) -> ServingError:
    return bad(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
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
        arr = _numeric_array(value)
    except (ValueError, TypeError, OverflowError):
        return _slow_tensor(value, dt)  # raises the precise error
    if arr is None:
        return _slow_tensor(value, dt)
    have = arr.dtype.kind
    if kind == "f":
        ok = have in _NUM_KINDS
    elif kind in _INT_KINDS:
        ok = have in _INT_KINDS
        if ok and arr.size and (dt.itemsize < 8 or (kind == "u") != (have == "u")):
            lo, hi = int_bounds(dt)
            ok = lo <= int(arr.min()) and int(arr.max()) <= hi
    elif kind == "b":
        ok = have == "b"
    else:
        ok = False
    if not ok or arr.ndim > MAX_RANK:
        return _slow_tensor(value, dt)
    return arr if arr.dtype == dt else arr.astype(dt)


_PLAIN_LEAF_TYPES = frozenset((float, int, bool))


def _numeric_array(value: Any) -> np.ndarray | None:
    """`value` as numpy's inferred array when every leaf is a JSON number or boolean, else None
    (the checked walk then words the error).

    numpy's own inference would turn one string among a million numbers into a fixed-width
    unicode array of a million copies (memory ~ the longest string x the element count), so
    the leaf types are checked first on an array of references (8 bytes a leaf).
    """
    if not isinstance(value, list):
        return np.asarray(value) if type(value) in _PLAIN_LEAF_TYPES else None
    refs = np.asarray(value, dtype=object)
    leaves = refs.ravel().tolist()
    if not _PLAIN_LEAF_TYPES.issuperset(set(map(type, leaves))):
        return None
    del leaves
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _shape_str(shape: Iterable[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _instances_error(items: list, dtype: np.dtype, element_error: Any) -> ServingError:
    """The first bad instance, checked one by one like TF Serving's row-format loop. Scalar
    instances are checked inline (one type test each): a million of them take well under a
    second, where one array per instance took seconds."""
    first_size = first_shape = None
    start = _plain_scalar_run(items, dtype)
    if start:
        first_size, first_shape = 1, ()
    for i, item in enumerate(items[start:] if start else items, start):
        try:
            arr = _slow_tensor(item, dtype)
            if first_shape is None:
                first_size, first_shape = arr.size, arr.shape
            elif arr.size != first_size:
                raise bad(f"Expecting tensor size: {first_size} but got: {arr.size}")
            elif arr.shape != first_shape:
                raise bad(f"Expecting shape {_shape_str(first_shape)} but got: {_shape_str(arr.shape)}")
        except ServingError as e:
            return element_error(i, e)
    return bad("Failed to process 'instances' list")  # unreachable in practice


_SCALAR_TYPES = {"f": (float, int), "i": (int,), "u": (int,), "b": (bool,)}


def _plain_scalar_run(items: list, dtype: np.dtype) -> int:
    """How many leading instances are scalars of a type `dtype` takes (one C-speed pass over
    their types; integers are range-checked); the per-instance check starts after them."""
    allowed = _SCALAR_TYPES.get(dtype.kind)
    if not allowed:
        return 0
    run = next((i for i, t in enumerate(map(type, items)) if t not in allowed), len(items))
    if dtype.kind in "iu" and run:
        lo, hi = int_bounds(dtype)
        head = items[:run] if run < len(items) else items
        if not (lo <= min(head) and max(head) <= hi):
            return next(i for i, v in enumerate(head) if not lo <= v <= hi)
    return run


def _row_tensor(items: list, dtype: np.dtype, strict: bool, element_error: Any) -> np.ndarray:
    if dtype.kind not in "OSU" and not strict:
        try:
            numeric = _numeric_array(items)
        except (ValueError, TypeError, OverflowError):
            numeric = None
        if numeric is None:  # some instance is not a plain number: find the first, stop there
            raise _instances_error(items, dtype, element_error)
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
        raise bad(f"Failed to get input map for signature: {sig}")
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances and has_inputs:
        raise bad(
            f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    names = sorted(inputs)
    if has_instances:
        array, items = fastpath.tensor_for(doc["instances"], inputs)
        if array is not None:
            return {names[0]: array}, ROW
        if not isinstance(items, list):
            raise bad(f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array")
        if not items:
            raise bad(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        first = items[0]
        if not isinstance(first, dict) and len(inputs) > 1:
            raise bad(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        if not isinstance(first, dict) or is_b64(first):
            for i, item in enumerate(items):
                if isinstance(item, dict) and not is_b64(item):
                    raise bad(f"Expecting value/list but got object at item {i} of input list")
            name = names[0]

            def plain_error(i: int, e: ServingError) -> ServingError:
                return bad(f"Failed to process element: {i} of 'instances' list. "
                            f"Error: INVALID_ARGUMENT: {e.message}")

            return {name: _row_tensor(items, np.dtype(inputs[name]), strict, plain_error)}, ROW
        wanted = set(names)
        columns: dict[str, list] = {n: [] for n in names}
        for i, item in enumerate(items):
            if not isinstance(item, dict) or is_b64(item):
                raise bad(f"Expecting object but got list at item {i} of input list")
            for key, val in item.items():
                column = columns.get(key)
                if column is None:
                    raise bad(f"Failed to process element: {i} key: {key} of 'instances' list. "
                               f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}")
                column.append(val)
            if len(item) != len(wanted) or not wanted.issuperset(item):
                raise bad(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{debug_string(item)} keys must be equal to: {','.join(names)}"
                )
        result = {}
        for name in names:
            def named_error(i: int, e: ServingError, name: str = name) -> ServingError:
                return bad(f"Failed to process element: {i} key: {name} of 'instances' list. "
                            f"Error: INVALID_ARGUMENT: {e.message}")

            result[name] = _row_tensor(columns[name], np.dtype(inputs[name]), strict, named_error)
        return result, ROW
    if has_inputs:
        array, val = fastpath.tensor_for(doc["inputs"], inputs)
        if array is not None:
            return {names[0]: array}, COLUMNAR
        if not isinstance(val, dict) or is_b64(val):
            if len(inputs) > 1:
                raise bad(
                    "inputs is a plain value/list, but expecting an object as multiple input "
                    "tensors required as per tensorinfo_map"
                )
            name = names[0]
            if is_b64(val):
                val = [val]  # a lone b64 object is a scalar string: shape []
                arr = to_array(val, inputs[name], strict=strict).reshape(())
            else:
                arr = to_array(val, inputs[name], strict=strict)
            return {name: arr}, COLUMNAR
        result = {}
        for name in names:
            if name not in val:
                raise bad(f"Missing named input: {name} in 'inputs' object.")
            result[name] = to_array(val[name], inputs[name], strict=strict)
        return result, COLUMNAR
    raise bad("Missing 'inputs' or 'instances' key")


def needs_strict(body: bytes, doc: Mapping[str, Any] | None = None) -> bool:
    """Whether the body has a JSON boolean that numpy would silently read as a number (never for
    a tensor read by the fast path, which holds numbers only)."""
    if doc is not None and any(isinstance(doc.get(k), ParsedTensor) for k in ("instances", "inputs")):
        return False
    return b"true" in body or b"false" in body

