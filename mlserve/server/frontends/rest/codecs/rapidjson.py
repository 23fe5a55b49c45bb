"""JSON parse errors in rapidjson's words and offsets, as TF Serving reports them
(util/json_tensor.cc: "JSON Parse error: <GetParseError_En> at offset: <n>").

The server parses with orjson. When orjson refuses a body, `rapidreader.locate` walks it as
rapidjson 1.1.0's iterative parser does and gives rapidjson's own error and offset. Where
rapidjson would accept what orjson refused (see `jsondoc`), `message` maps orjson's (or Python
json's) message to rapidjson's English one (rapidjson/error/en.h).
"""
from __future__ import annotations

DOCUMENT_EMPTY = "The document is empty."
ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
VALUE_INVALID = "Invalid value."
OBJECT_MISS_NAME = "Missing a name for object member."
OBJECT_MISS_COLON = "Missing a colon after a name of object member."
OBJECT_MISS_COMMA = "Missing a comma or '}' after an object member."
ARRAY_MISS_COMMA = "Missing a comma or ']' after an array element."
UNICODE_ESCAPE = "Incorrect hex digit after \\u escape in string."
ESCAPE_INVALID = "Invalid escape character in string."
MISS_QUOTE = "Missing a closing quotation mark in string."
INVALID_ENCODING = "Invalid encoding in string."
MISS_FRACTION = "Missing fraction part in number."
MISS_EXPONENT = "Missing exponent in number."


def _context(body: bytes, pos: int) -> tuple[bool, str, bytes]:
    """(inside a string?, innermost open bracket or "", last significant byte) at `pos`."""
    stack: list[str] = []
    in_string = escaped = False
    last = b""
    for byte in body[:pos]:
        ch = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                last = b'"'
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
            last = ch.encode()
        elif ch in "]}":
            if stack:
                stack.pop()
            last = ch.encode()
        elif not ch.isspace():
            last = ch.encode()
    return in_string, (stack[-1] if stack else ""), last


def message(msg: str, body: bytes, pos: int) -> str:
    """rapidjson's message for a parse error orjson or json reported as `msg` at `pos`."""
    m = msg.lower()
    if "empty" in m or not body.strip():
        return DOCUMENT_EMPTY
    if "after document" in m or "extra data" in m:
        return ROOT_NOT_SINGULAR
    if "string key" in m or "property name" in m:
        return OBJECT_MISS_NAME
    if "':'" in m:
        return OBJECT_MISS_COLON
    if "',' or ']'" in m:
        return ARRAY_MISS_COMMA
    if "',' or '}'" in m:
        return OBJECT_MISS_COMMA
    if "escape" in m:
        return UNICODE_ESCAPE if body[pos:pos + 2] == b"\\u" or "\\u" in m else ESCAPE_INVALID
    if "control character" in m or "utf-8" in m:
        return INVALID_ENCODING
    if "decimal point" in m:
        return MISS_FRACTION
    if "exponent" in m:
        return MISS_EXPONENT
    if "unterminated string" in m:
        return MISS_QUOTE
    in_string, bracket, last = _context(body, pos)
    if "trailing comma" in m:
        return OBJECT_MISS_NAME if bracket == "{" else VALUE_INVALID
    if "end of data" in m or "delimiter" in m:
        if in_string:
            return MISS_QUOTE
        if last in (b":", b",", b"[", b""):
            return OBJECT_MISS_NAME if (last == b"," and bracket == "{") else VALUE_INVALID
        if last == b"{":
            return OBJECT_MISS_NAME
        if bracket == "{":
            return OBJECT_MISS_COMMA
        if bracket == "[":
            return ARRAY_MISS_COMMA
    return VALUE_INVALID


def parse_error(msg: str, body: bytes, pos: int) -> str:
    """The whole error text TF Serving answers."""
    return f"JSON Parse error: {message(msg, body, pos)} at offset: {pos}"
