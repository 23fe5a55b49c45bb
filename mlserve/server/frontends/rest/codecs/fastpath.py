"""The fast path for the usual request, a large batch of numbers (images): the tensor is cut out
of the body and read by simdjson into one flat buffer of doubles, its nesting checked against
the canonical bracket layout of its shape. No Python list or float is built.

It must agree with the exact path (`jsondoc.parse_json` + `decode.decode_predict`), and
tests/server/frontends/rest/test_codecs.py holds the two equal: anything unusual (no such tensor, ragged,
numbers JSON forbids, other layouts) is left to the exact path, so answers and error messages
are the same either way.
"""
from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from mlserve.server.frontends.rest.codecs.jsondoc import ParsedTensor, parse_json
from mlserve.server.frontends.rest.codecs.rules import MAX_RANK

# In a run orjson reads as a flat array of values, these bytes begin every value but a number
# (string, true, false, null, object); NaN and Infinity it refuses itself.
_NOT_NUMBER_STARTS = (b'"', b"t", b"f", b"n", b"{")
_FAST_MIN_BYTES = 4096  # below this orjson + np.asarray is as fast
_PLACEHOLDER = b'"__mlserve_parsed_tensor__"'
_KEEP_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[],")))


def _canonical_structure(shape: list[int]) -> bytes:
    """The brackets and commas of a dense JSON array of `shape`, numbers left out."""
    text = b""
    for size in reversed(shape):
        # repetition, not join: bytes.join holds an 80-byte buffer view per item (22x the body)
        text = b"[" + (text + b",") * (size - 1) + text + b"]"
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




class _Parsers(threading.local):
    """A simdjson parser per thread: one parser serves one thread, one document at a time."""

    def __init__(self) -> None:
        self.parser = simdjson.Parser()


_parsers = _Parsers()


# What a JSON request costs in memory while in flight, as a multiple of its body: the body
# itself plus the fast path's working memory and arrays, measured on 16 MB bodies (peak RSS
# growth over the body: 2.7x for images of 0.5s, 3.7x for a flat list of 0.5s; 7.5x for a
# list of one-digit integers, and ~22x for a large nested tensor the exact path reads as
# Python objects, which this does not cover). The HTTP layer reserves it against --max_inflight_bytes.
BODY_COST_FACTOR = 4

_OWN_PARSER_BYTES = 1 << 20  # a larger span gets a parser of its own, freed after it


def flat_numbers(span: bytes | memoryview) -> np.ndarray | None:
    """simdjson reads the nested array straight into one buffer of doubles (no Python floats):
    ~20 against ~35 µs for 784 numbers. It refuses anything but strict JSON numbers.

    A parser keeps buffers sized to the largest document it has read (several times its size),
    so a large span is read by a parser of its own that goes with it: one 60 MB body must not
    leave each worker thread holding hundreds of MB for good."""
    parser = _parsers.parser if len(span) < _OWN_PARSER_BYTES else simdjson.Parser()
    try:
        array = parser.parse(span)
        try:
            return np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
        finally:
            del array  # the parser may only parse again once no proxy of its document is alive
    except (ValueError, TypeError, RuntimeError, AttributeError):
        return None


def flat_numbers_orjson(span: bytes) -> np.ndarray | None:
    """The reference reader `flat_numbers` must agree with (a test holds them equal): the
    numbers as one flat JSON array, read strictly by orjson without nesting."""
    try:
        return np.array(orjson.loads(b"[" + span.translate(None, b"[]") + b"]"), dtype=np.float64)
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        return None


_CACHED_STRUCTURE_BYTES = 64 * 1024  # larger layouts are not cached (the cache would keep them)


def _dense_shape_of(structure: bytes) -> tuple[int, ...] | None:
    """The shape of a bracket layout if it is dense, else None. Small layouts are cached: a
    client sends the same few shapes, and a lookup (a hash and a compare of the layout)
    replaces re-deriving it."""
    if len(structure) <= _CACHED_STRUCTURE_BYTES:
        return _cached_dense_shape_of(structure)
    return _derive_dense_shape(structure)


def _derive_dense_shape(structure: bytes) -> tuple[int, ...] | None:
    shape = _structure_shape(structure)
    if not shape or 0 in shape or structure != _canonical_structure(shape):
        return None
    return tuple(shape)


_cached_dense_shape_of = functools.lru_cache(maxsize=64)(_derive_dense_shape)


def _read_numbers(body: bytes | bytearray, start: int, end: int) -> np.ndarray | None:
    """`body[start:end]` (a JSON array of numbers) as float64 of its dense shape, or None to
    take the exact path (ragged, empty, or numbers JSON forbids: the exact path words the error).
    Read in place: no copy of the span."""
    span = memoryview(body)[start:end]
    # the span's layout is the body's, less the brackets and commas around the span
    before = len(body[:start].translate(None, _KEEP_STRUCTURE))
    after = len(body[end:].translate(None, _KEEP_STRUCTURE))
    structure = bytes(body.translate(None, _KEEP_STRUCTURE))
    shape = _dense_shape_of(structure[before:len(structure) - after] if before or after else structure)
    if shape is None:
        return None
    count = math.prod(shape)
    flat = flat_numbers(span) if end - start <= _CHUNK else _flat_numbers_chunked(body, start, end, count)
    if flat is None or flat.ndim != 1 or flat.size != count:
        return None
    return flat.reshape(shape)


def _flat_numbers_chunked(body: bytes | bytearray, start: int, end: int, count: int) -> np.ndarray | None:
    """`flat_numbers` of a large span, a chunk at a time into one array of `count` doubles:
    working memory is the result and a chunk's parse, not a whole-document parse (its tape and
    index take ~10x the text). Chunks are cut at commas, their brackets dropped (the layout is
    already checked dense)."""
    out = np.empty(count, dtype=np.float64)
    filled = 0
    pos = start
    while pos < end:
        cut = body.rfind(b",", pos, pos + _CHUNK) if pos + _CHUNK < end else end
        if cut < pos:
            return None
        numbers = flat_numbers(b"[" + body[pos:cut].translate(None, b"[]") + b"]")
        if numbers is None or filled + numbers.size > count:
            return None
        out[filled:filled + numbers.size] = numbers
        filled += numbers.size
        pos = cut + 1
    return out if filled == count else None


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
    start, end, numeric = span
    try:
        doc = orjson.loads(body[:start] + _PLACEHOLDER + body[end:])
    except orjson.JSONDecodeError:
        return parse_json(body)
    placeholder = _PLACEHOLDER[1:-1].decode()
    key = next((k for k in ("instances", "inputs") if isinstance(doc, dict) and doc.get(k) == placeholder),
               None)
    if not numeric:
        if key and body[end:].strip() == b"}":  # the run is exactly its value
            doc[key] = PendingInstances(body, start, end, key)
            return doc
        return parse_json(body)
    array = _read_numbers(body, start, end) if key and numeric else None
    if array is None:
        return parse_json(body)
    doc[key] = ParsedTensor(array, memoryview(body)[start:end])
    return doc


def _tensor_span(body: bytes) -> tuple[int, int, bool] | None:
    """Where the value of `instances` (or `inputs`) lies, if it is a large run of plain-number
    JSON: from the first `[` after the key to the last `]` of the body, and whether it holds
    numbers only. Only a candidate: the caller parses the rest of the body and checks that the
    key holds the cut-out run."""
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
    if any(body.find(c, start, end) >= 0 for c in _NOT_NUMBER_STARTS):  # one memchr each, no copy
        return (start, end, False) if end - start >= _PENDING_MIN_BYTES else None
    return start, end, True


_PENDING_MIN_BYTES = 1 << 20  # an `instances` run this large with a non-number is checked lazily
_CHUNK = 256 * 1024  # numbers are checked this many bytes at a time: memory stays bounded
_TAIL_MAX = 1 << 20  # the run after the first non-number is parsed whole only up to this size


class PendingInstances:
    """A large `instances` (or `inputs`) array that is not all numbers, left unparsed: a float
    input needs only to know where its first non-number element is, and that answer costs
    memory of a chunk, not of the body (the exact path's Python objects take ~20-30x the text).
    Anything else parses it (`as_json`), so answers are the exact path's either way."""

    __slots__ = ("body", "start", "end", "key")

    def __init__(self, body: bytes, start: int, end: int, key: str = "instances") -> None:
        self.body, self.start, self.end = body, start, end  # the run is body[start:end], not copied
        self.key = key

    def as_json(self) -> Any:
        # the whole body, so that a parse error's offset is the body's (as the exact path's)
        return parse_json(self.body)[self.key]

    def first_bad(self) -> tuple[int, Any] | None:
        """(index, value) of the first instance that is not a number, when every instance before
        it is a plain JSON number of a flat list and the rest is valid JSON; else None. Reads the
        body in place: no copy of the run, a chunk at a time."""
        body, start, end = self.body, self.start, self.end
        at = min((i for i in (body.find(c, start, end) for c in _NOT_NUMBER_STARTS) if i >= 0), default=-1)
        if at < 0 or end - at > _TAIL_MAX:
            return None
        p0, p1 = start + 1, at  # the numbers before it: body[p0:p1], up to a trailing comma
        while p1 > p0 and body[p1 - 1] in b" \t\r\n":
            p1 -= 1
        if body.find(b"[", p0, p1) >= 0 or body.find(b"]", p0, p1) >= 0 or (p1 > p0 and body[p1 - 1] != 44):
            return None
        try:
            tail = orjson.loads(b"[" + body[at:end])
        except orjson.JSONDecodeError:
            return None
        count = 0
        pos = p0
        while pos < p1:  # validate and count the numbers, a chunk at a time
            cut = body.rfind(b",", pos, pos + _CHUNK) if pos + _CHUNK < p1 else p1 - 1
            if cut < pos:
                return None
            piece = body[pos:cut]
            numbers = flat_numbers(b"[" + piece + b"]")
            if numbers is None or piece.count(b",") + 1 != numbers.size:
                return None
            count += numbers.size
            pos = cut + 1
        return (count, tail[0]) if tail else None


def tensor_for(value: Any, inputs: dict[str, Any]) -> tuple[np.ndarray | None, Any]:
    """(array, None) when `value` is a ParsedTensor usable as it is for a single float input,
    else (None, the value as ordinary parsed JSON). A `PendingInstances` for a single float
    input whose first non-number is found raises the exact path's error for it."""
    if isinstance(value, PendingInstances):
        if len(inputs) == 1 and np.dtype(next(iter(inputs.values()))).kind == "f":
            found = value.first_bad()
            if found is not None:
                index, item = found
                if isinstance(item, (str, bool)) or item is None:  # objects: the exact path words it
                    raise _instance_type_error(index, item, np.dtype(next(iter(inputs.values()))),
                                               value.key)
        return None, value.as_json()
    if not isinstance(value, ParsedTensor):
        return None, value
    if len(inputs) == 1:
        dtype = np.dtype(next(iter(inputs.values())))
        if dtype.kind == "f":
            return value.array.astype(dtype, copy=False), None
    return None, value.as_json()



def _instance_type_error(index: int, item: Any, dtype: np.dtype, key: str) -> Exception:
    """The exact path's error for a non-number in a flat float list: row format names the
    element, columnar (`inputs`) only the value."""
    from mlserve.server.frontends.rest.codecs.jsondoc import debug_string, json_type
    from mlserve.server.frontends.rest.codecs.rules import bad, tf_type_name

    message = (f"JSON Value: {debug_string(item)} Type: {json_type(item)} is not of expected type: "
               f"{tf_type_name(dtype)}")
    if key == "inputs":
        return bad(message)
    return bad(f"Failed to process element: {index} of 'instances' list. Error: INVALID_ARGUMENT: {message}")
