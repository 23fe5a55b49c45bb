"""Request bodies as JSON documents, with TF Serving's error wording (`json_tensor.cc`, read for
facts): parse, quote a value in an error, base64 objects, and the `signature_name` check."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping

import numpy as np
import orjson

from mlserve.server.frontends.rest.codecs import rapidjson, rapidreader
from mlserve.server.frontends.rest.codecs.rules import MAX_RANK, bad

_DEBUG_STRING_BYTES = 256  # TF Serving truncates JSON values quoted in errors to this size


class ParsedTensor:
    """A numeric array read straight from the request bytes (see `fastpath`), standing in the
    parsed document where its nested list would be. `span` keeps the original JSON for the
    exact path."""

    __slots__ = ("array", "span")

    def __init__(self, array: np.ndarray, span: bytes) -> None:
        self.array = array
        self.span = span

    def as_json(self) -> Any:
        return orjson.loads(self.span)


def _parsed_tensor_json(value: Any) -> Any:
    if isinstance(value, ParsedTensor) or hasattr(value, "as_json"):  # or fastpath.PendingInstances
        return value.as_json()
    raise TypeError


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
    """The request body as a JSON object; INVALID_ARGUMENT (HTTP 400) worded like TF Serving:
    rapidjson's message and offset (`rapidreader.locate`) for a body it refuses."""
    if not body:
        raise bad("JSON Parse error: The document is empty")  # json_tensor.cc, before rapidjson
    skip = _bom_length(body)
    try:
        doc = orjson.loads(body[skip:] if skip else body)
    except orjson.JSONDecodeError as e:
        located = rapidreader.locate(body)
        if located is not None:
            raise bad(f"JSON Parse error: {located[0]} at offset: {located[1]}") from None
        if "after document" in e.msg:
            # rapidjson kParseStopWhenDoneFlag (json_tensor.cc): what follows the document is ignored
            return parse_json(body[:skip + e.pos])
        doc = _parse_as_rapidjson_does(body[skip:], e)
    if not isinstance(doc, dict):
        raise bad(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


def _bom_length(body: bytes) -> int:
    """The bytes rapidjson's UTF-8 MemoryStream skips at the start: EF, BB, BF, each in turn."""
    n = 0
    for bom in (0xEF, 0xBB, 0xBF):
        if n < len(body) and body[n] == bom:
            n += 1
    return n


def _parse_as_rapidjson_does(body: bytes, e: orjson.JSONDecodeError) -> Any:
    """A body rapidjson parses but orjson refuses: NaN and Inf literals (kParseNanAndInfFlag) or a
    number past the double range that rapidjson rounds to infinity; Python's json reads both."""
    if "surrogate" in e.msg:  # rapidjson keeps a lone surrogate as its bytes; a str cannot
        raise bad(rapidjson.parse_error(e.msg, body, e.pos))
    try:
        doc = json.loads(rapidreader.standard_literals(body))
    except RecursionError:
        raise bad("JSON Parse error: nesting too deep at offset: 0") from None
    except ValueError:  # what neither reads (invalid UTF-8, "Inf"): orjson's error in rapidjson's words
        raise bad(rapidjson.parse_error(e.msg, body, e.pos)) from None
    if _depth_exceeds(doc, MAX_RANK + 2):
        raise bad(f"JSON Parse error: nesting deeper than {MAX_RANK + 2} levels") from None
    return doc


def debug_string(value: Any) -> str:
    """A JSON value quoted in an error message, truncated like TF Serving's (256 bytes)."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_parsed_tensor_json
                            ).decode("utf-8", "replace")
    except (TypeError, orjson.JSONEncodeError):
        # orjson stops at 255 levels; json.dumps and repr recurse (a 1,000-deep value was a 500)
        text = _json_prefix(value, _DEBUG_STRING_BYTES)
    return text[:_DEBUG_STRING_BYTES]


def _json_prefix(value: Any, limit: int) -> str:
    """The first `limit` characters of `value` as JSON, without recursion and without walking
    past them (a stack of iterators: memory follows the depth reached, not the value's size)."""
    out: list[str] = []
    size = 0
    stack: list[Any] = [iter((value,))]
    closers: list[str] = []
    first = [True]
    while stack and size < limit:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            first.pop()
            if closers:
                out.append(closers.pop())
                size += 1
            continue
        if not first[-1]:
            out.append(", ")
            size += 2
        first[-1] = False
        if isinstance(item, tuple) and len(item) == 2 and stack and closers and closers[-1] == "}":
            key, item = item
            text = json.dumps(str(key), ensure_ascii=False) + ": "
            out.append(text)
            size += len(text)
        if hasattr(item, "as_json"):
            item = item.as_json()
        if isinstance(item, list):
            out.append("[")
            closers.append("]")
            stack.append(iter(item))
            first.append(True)
            size += 1
        elif isinstance(item, dict):
            out.append("{")
            closers.append("}")
            stack.append(iter(item.items()))
            first.append(True)
            size += 1
        else:
            try:
                text = json.dumps(item, ensure_ascii=False, allow_nan=True)
            except (TypeError, ValueError):
                text = repr(item)
            out.append(text)
            size += len(text)
    return "".join(out)


_END = object()


def json_type(value: Any) -> str:
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


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: Any) -> bytes:
    if not is_b64(value):
        raise bad(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    # absl::Base64Unescape: padding optional, whitespace skipped, any other non-alphabet
    # character refused (Python's non-validating decode would drop it silently).
    text = "".join(value["b64"].split())
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise bad("Unable to base64 decode") from None


# ------------------------------------------------------------- the numeric-tensor fast path


def signature_name(doc: Mapping[str, Any]) -> str:
    """The request's ``signature_name`` ("" when absent); must be a string. The one check of it,
    for predict, classify and regress alike."""
    sig = doc.get("signature_name", "")
    if not isinstance(sig, str):
        raise bad(f"JSON Value: {debug_string(doc)} not formatted correctly. "
                  "'signature_name' key must be a string value.")
    return sig
