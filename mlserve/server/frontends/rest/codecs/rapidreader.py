"""rapidjson 1.1.0's reader as TF Serving runs it, to find where it stops on a malformed body.

TF Serving (util/json_tensor.cc) parses a MemoryStream with kParseIterativeFlag |
kParseNanAndInfFlag | kParseStopWhenDoneFlag. `locate` walks the body as that parser does
(reader.h `IterativeParse`, `ParseString`, `ParseNumber`; read for facts) and returns its first
error and offset. It runs only on bodies orjson refused.
"""
from __future__ import annotations

import re

import orjson

from mlserve.server.frontends.rest.codecs.rapidjson import (
    ARRAY_MISS_COMMA, DOCUMENT_EMPTY, ESCAPE_INVALID, MISS_EXPONENT, MISS_FRACTION, MISS_QUOTE, OBJECT_MISS_COLON,
    OBJECT_MISS_COMMA, OBJECT_MISS_NAME, ROOT_NOT_SINGULAR, UNICODE_ESCAPE, VALUE_INVALID)

NUMBER_TOO_BIG = "Number too big to be stored in double."
SURROGATE_INVALID = "The surrogate pair in string is invalid."

_WS = b" \t\n\r"
_ESCAPES = frozenset(b'"\\/bfnrt')
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
# Runs of array elements skipped at C speed so that a large tensor scans quickly: plain strings,
# or numbers (no exponent, no 300-digit run: none can be too big) and nested arrays of them, each
# run checked by orjson, whose grammar for these is rapidjson's.
_STRING_RUN = re.compile(rb'(?:[ \t\n\r]*"[^"\\\x00-\x1f]*"[ \t\n\r]*,)+')
_NUMERIC_RUN = re.compile(rb"[0-9.\-,\[\] \t\n\r]*")
_LONG_DIGITS = re.compile(rb"[0-9]{300}")
_PLAIN_STRING = re.compile(rb'"[^"\\\x00-\x1f]*"')

# IterativeParsingState
_START, _FINISH, _OBJ_INIT, _KEY, _COLON, _MEMBER, _MEMBER_COMMA, _ARR_INIT, _ELEMENT, _ELEM_COMMA = range(10)
_ERROR_AT_STATE = {  # reader.h HandleError
    _START: DOCUMENT_EMPTY, _FINISH: ROOT_NOT_SINGULAR, _OBJ_INIT: OBJECT_MISS_NAME,
    _MEMBER_COMMA: OBJECT_MISS_NAME, _KEY: OBJECT_MISS_COLON, _MEMBER: OBJECT_MISS_COMMA,
    _COLON: VALUE_INVALID, _ARR_INIT: VALUE_INVALID, _ELEM_COMMA: VALUE_INVALID, _ELEMENT: ARRAY_MISS_COMMA,
}


class _Error(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message, self.offset = message, offset


def locate(body: bytes) -> tuple[str, int] | None:
    """rapidjson's (message, offset) for `body`, or None where rapidjson parses it."""
    try:
        _walk(body)
    except _Error as e:
        return e.message, e.offset
    return None


def standard_literals(body: bytes) -> bytes:
    """`body` (which rapidjson parses) with rapidjson's extra NaN/Inf spellings ("Inf", "-Inf",
    "-NaN") written as Python's json reads them."""
    literals: list[tuple[int, int, bytes]] = []
    _walk(body, literals)
    parts, last = [], 0
    for start, end, text in literals:
        parts += [body[last:start], text]
        last = end
    return b"".join(parts) + body[last:]


def _walk(body: bytes, literals: list[tuple[int, int, bytes]] | None = None) -> None:
    n = len(body)
    nul = body.find(b"\0")
    if nul >= 0:  # MemoryStream's Peek() reads a NUL byte as the end of the input
        n = nul
    pos = 0
    for bom in (0xEF, 0xBB, 0xBF):  # EncodedInputStream<UTF8, MemoryStream> skips each in turn
        if pos < n and body[pos] == bom:
            pos += 1
    stack: list[int] = []  # the state to return to when the open bracket closes
    state = _START
    skip = _Skipper(body, n)
    while True:
        while pos < n and body[pos] in _WS:
            pos += 1
        if pos >= n:
            break
        c = body[pos]
        if c == 0x5B or c == 0x7B:  # [ {
            if state in (_START, _COLON, _ARR_INIT, _ELEM_COMMA):
                stack.append(_MEMBER if state == _COLON else _FINISH if state == _START else _ELEMENT)
                state = _ARR_INIT if c == 0x5B else _OBJ_INIT
                pos += 1
                if state == _ARR_INIT:
                    pos, state = skip.elements(pos, state)
                continue
        elif c == 0x5D:  # ]
            if state == _ELEM_COMMA:
                raise _Error(VALUE_INVALID, pos)  # a trailing comma
            if state in (_ARR_INIT, _ELEMENT):
                state = stack.pop()
                pos += 1
                if state == _FINISH:
                    return  # kParseStopWhenDoneFlag: what follows is not read
                continue
        elif c == 0x7D:  # }
            if state == _MEMBER_COMMA:
                raise _Error(OBJECT_MISS_NAME, pos)
            if state in (_OBJ_INIT, _MEMBER):
                state = stack.pop()
                pos += 1
                if state == _FINISH:
                    return
                continue
        elif c == 0x2C:  # ,
            if state == _MEMBER:
                state, pos = _MEMBER_COMMA, pos + 1
                continue
            if state == _ELEMENT:
                state, pos = _ELEM_COMMA, pos + 1
                pos, state = skip.elements(pos, state)
                continue
        elif c == 0x3A:  # :
            if state == _KEY:
                state, pos = _COLON, pos + 1
                continue
        elif c == 0x22:  # "
            if state in (_OBJ_INIT, _MEMBER_COMMA):
                pos, state = _string(body, pos, n), _KEY
                continue
            if state in (_START, _COLON, _ARR_INIT, _ELEM_COMMA):
                pos = _string(body, pos, n)
                state = {_START: _FINISH, _COLON: _MEMBER}.get(state, _ELEMENT)
                if state == _FINISH:
                    return
                continue
        elif state in (_START, _COLON, _ARR_INIT, _ELEM_COMMA):  # any other byte starts a value
            pos = _scalar(body, pos, n, literals)
            state = {_START: _FINISH, _COLON: _MEMBER}.get(state, _ELEMENT)
            if state == _FINISH:
                return
            continue
        raise _Error(_ERROR_AT_STATE[state], pos)
    if state != _FINISH:
        raise _Error(_ERROR_AT_STATE[state], pos)


class _Skipper:
    """Skips runs of complete array elements that orjson accepts (see `_NUMERIC_RUN`)."""

    def __init__(self, body: bytes, n: int) -> None:
        self.body, self.n = body, n
        self.run_end = -1  # where the current numeric run ends
        self.given_up = -1  # a run that would not validate: left to the walker

    def elements(self, pos: int, state: int) -> tuple[int, int]:
        """(pos, state) after the longest run of `elem,` at `pos` that validates, else unchanged."""
        body, n = self.body, self.n
        m = _STRING_RUN.match(body, pos, n)
        if m:
            return m.end(), _ELEM_COMMA
        if pos >= self.run_end:
            self.run_end = _NUMERIC_RUN.match(body, pos, n).end()
        if self.run_end - pos < 16 or self.given_up == self.run_end:
            return pos, state
        seq = body[pos:self.run_end]
        limit = len(seq)
        for _ in range(4):
            cut = max(seq.rfind(b",", 0, limit), seq.rfind(b"],", 0, limit) + 1)
            for c in (cut, seq.rfind(b"],", 0, limit) + 1):
                if c <= 0 or _LONG_DIGITS.search(seq, 0, c):
                    continue
                try:
                    if orjson.loads(b"[" + seq[:c] + b"]"):
                        return pos + c + 1, _ELEM_COMMA
                except orjson.JSONDecodeError as e:
                    limit = min(limit, max(e.pos - 1, 0))
            if limit <= 0:
                break
        self.given_up = self.run_end
        return pos, state


def _string(body: bytes, pos: int, n: int) -> int:
    """ParseString from the opening quote at `pos`; the offset after the closing quote."""
    m = _PLAIN_STRING.match(body, pos, n)
    if m:
        return m.end()
    pos += 1
    while True:
        if pos >= n:
            raise _Error(MISS_QUOTE, pos)
        c = body[pos]
        if c == 0x22:
            return pos + 1
        if c == 0x5C:  # backslash: errors are reported at the backslash
            start = pos
            e = body[pos + 1] if pos + 1 < n else 0
            if e in _ESCAPES:
                pos += 2
            elif e == 0x75:  # \u
                pos = _hex4(body, pos + 2, n, start)
                code = int(body[pos - 4:pos], 16)
                if 0xD800 <= code <= 0xDBFF:
                    if body[pos:pos + 2] != b"\\u" or pos + 2 > n:
                        raise _Error(SURROGATE_INVALID, start)
                    pos = _hex4(body, pos + 2, n, start)
                    if not 0xDC00 <= int(body[pos - 4:pos], 16) <= 0xDFFF:
                        raise _Error(SURROGATE_INVALID, start)
            else:
                raise _Error(ESCAPE_INVALID, start)
        elif c < 0x20:
            raise _Error(ESCAPE_INVALID, pos)
        else:
            pos += 1  # any other byte is copied: rapidjson does not validate UTF-8 here


def _hex4(body: bytes, pos: int, n: int, start: int) -> int:
    for i in range(pos, pos + 4):
        if i >= n or body[i] not in _HEX:
            raise _Error(UNICODE_ESCAPE, start)
    return pos + 4


def _scalar(body: bytes, pos: int, n: int, literals: list | None = None) -> int:
    """ParseNull/True/False/Number at `pos`; the offset after it."""
    c = body[pos]
    for word in (b"null", b"true", b"false"):
        if c == word[0]:
            for i in range(1, len(word)):
                if pos + i >= n or body[pos + i] != word[i]:
                    raise _Error(VALUE_INVALID, pos + i)
            return pos + len(word)
    return _number(body, pos, n, literals)


def _number(body: bytes, pos: int, n: int, literals: list | None = None) -> int:
    """ParseNumber: where it stops, or its error (the double arithmetic as rapidjson does it)."""
    start = pos

    def peek() -> int:
        return body[pos] if pos < n else 0

    minus = peek() == 0x2D
    if minus:
        pos += 1
    significand = 0  # significandDigit
    value = 0
    as_double = False
    d = 0.0
    if peek() == 0x30:
        pos += 1
    elif 0x31 <= peek() <= 0x39:
        value = peek() - 0x30
        pos += 1
        limit, last = (0x0CCCCCCCCCCCCCCC, 0x38) if minus else (0x1999999999999999, 0x35)
        while peek() in _DIGITS:
            if value > limit or (value == limit and peek() > last):
                d, as_double = float(value), True
                break
            value = value * 10 + peek() - 0x30
            pos += 1
            significand += 1
    elif peek() in (0x49, 0x4E):  # Inf, NaN
        word = b"NaN" if peek() == 0x4E else b"Inf"
        for i in range(3):
            if peek() != word[i]:
                raise _Error(VALUE_INVALID, pos)
            pos += 1
        if word == b"Inf" and peek() == 0x69:
            for ch in b"inity":
                if peek() != ch:
                    raise _Error(VALUE_INVALID, pos)
                pos += 1
        if literals is not None:  # NaN takes no sign in rapidjson; Inf is Infinity
            literals.append((start, pos, b"NaN" if word == b"NaN" else b"-Infinity" if minus else b"Infinity"))
        # and on to the fraction and exponent, as rapidjson goes on
    else:
        raise _Error(VALUE_INVALID, pos)
    if as_double:
        while peek() in _DIGITS:
            if d >= 1.7976931348623157e307:
                raise _Error(NUMBER_TOO_BIG, start)
            d = d * 10 + (peek() - 0x30)
            pos += 1
    exp_frac = 0
    if peek() == 0x2E:
        pos += 1
        if peek() not in _DIGITS:
            raise _Error(MISS_FRACTION, pos)
        if not as_double:
            while peek() in _DIGITS and value <= 0x1FFFFFFFFFFFFF:
                value = value * 10 + peek() - 0x30
                pos += 1
                exp_frac -= 1
                if value:
                    significand += 1
            d, as_double = float(value), True
        while peek() in _DIGITS:
            if significand < 17:
                d = d * 10.0 + (peek() - 0x30)
                exp_frac -= 1
                if d > 0.0:
                    significand += 1
            pos += 1
    if peek() in (0x65, 0x45):  # e E
        pos += 1
        negative = peek() == 0x2D
        if peek() in (0x2B, 0x2D):
            pos += 1
        if peek() not in _DIGITS:
            raise _Error(MISS_EXPONENT, pos)
        exp = 0
        while peek() in _DIGITS:
            exp = exp * 10 + peek() - 0x30
            pos += 1
            if not negative and exp > 308 - exp_frac:
                raise _Error(NUMBER_TOO_BIG, start)
    return pos
