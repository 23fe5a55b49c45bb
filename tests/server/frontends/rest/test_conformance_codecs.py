"""REST codecs in TF Serving's words (util/json_tensor.cc): in process, and the JSON parse errors
once more through a real server."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import requests

from mlserve.server.frontends.rest.codecs.jsondoc import decode_b64
from mlserve.server.errors import ServingError
from support.servers import ServerProcess


@pytest.mark.parametrize("text,expected", [("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("aGVs\nbG8=", b"hello")])
def test_base64_as_absl_reads_it(text: str, expected: bytes) -> None:
    assert decode_b64({"b64": text}) == expected


@pytest.mark.parametrize("text", ["!!!!", "aGVsbG8*", "a", "aGVs_bG8"])
def test_invalid_base64_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(ServingError) as err:
        decode_b64({"b64": text})
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", "Unable to base64 decode")


# (body, rapidjson's message, rapidjson's offset): reader.h's IterativeParse, ParseString and
# ParseNumber, with json_tensor.cc's flags (iterative, NaN and Inf, stop when done).
PARSE_ERRORS = [
    (b"   ", "The document is empty.", 3),
    (b"]", "The document is empty.", 0),  # HandleError in the start state
    (b"{not json", "Missing a name for object member.", 1),
    (b'{"a" 1}', "Missing a colon after a name of object member.", 5),
    (b'{"a": 1', "Missing a comma or '}' after an object member.", 7),
    (b'{"a": 01}', "Missing a comma or '}' after an object member.", 7),
    (b'{"a": [1 2]}', "Missing a comma or ']' after an array element.", 9),
    (b'{"a": [1, 2, 3, 4 5]}', "Missing a comma or ']' after an array element.", 18),
    (b'{"a": [1, 2', "Missing a comma or ']' after an array element.", 11),
    (b'{"a": tru}', "Invalid value.", 9),  # at the first letter that differs
    (b'{"a": }', "Invalid value.", 6),
    (b'{"a": -}', "Invalid value.", 7),
    (b'{"a": [1,]}', "Invalid value.", 9),  # a trailing comma in an array
    (b'{"a":1,}', "Missing a name for object member.", 7),  # ... and in an object
    (b'{"a": NaN,}', "Missing a name for object member.", 10),
    (b'{"a":\x00}', "Invalid value.", 5),  # a NUL byte ends the input
    (b'{"a": "abc', "Missing a closing quotation mark in string.", 10),
    (b'{"a": "\\q"}', "Invalid escape character in string.", 7),  # at the backslash
    (b'{"a": "x\x01"}', "Invalid escape character in string.", 8),  # a control character
    (b'{"a": "\\u12G4"}', "Incorrect hex digit after \\u escape in string.", 7),
    (b'{"a": "\\ud800\\u0041"}', "The surrogate pair in string is invalid.", 7),
    (b'{"a": 1.}', "Missing fraction part in number.", 8),
    (b'{"a": 1e}', "Missing exponent in number.", 8),
    (b'{"a": 1e400}', "Number too big to be stored in double.", 6),  # at the number's start
    (b'{"a": 1' + b"0" * 400 + b"}", "Number too big to be stored in double.", 6),
    (b'{"a": [NaN, Infinit]}', "Invalid value.", 19),
]


def test_an_empty_body_is_refused_before_rapidjson_runs() -> None:
    from mlserve.server.frontends.rest.codecs.jsondoc import parse_json

    with pytest.raises(ServingError) as err:
        parse_json(b"")
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", "JSON Parse error: The document is empty")


@pytest.mark.parametrize("body,message,offset", PARSE_ERRORS)
def test_json_parse_errors_as_rapidjson_reports_them(body: bytes, message: str, offset: int) -> None:
    from mlserve.server.frontends.rest.codecs.jsondoc import parse_json

    with pytest.raises(ServingError) as err:
        parse_json(body)
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT",
                                                   f"JSON Parse error: {message} at offset: {offset}")


@pytest.mark.parametrize("body,expected", [
    (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),  # the UTF-8 BOM is skipped
    (b'{"a": 2e308}', {"a": float("inf")}),  # within ParseNumber's exponent bound: rounds to infinity
    (b'{"a": 1}\x00junk', {"a": 1}),
    (b'{"a": [NaN, Inf, -Inf, -NaN, Infinity, -Infinity]}', None),  # kParseNanAndInfFlag's spellings
])
def test_bodies_rapidjson_parses(body: bytes, expected: dict) -> None:
    from mlserve.server.frontends.rest.codecs.jsondoc import parse_json

    doc = parse_json(body)
    if expected is None:
        assert repr(doc) == "{'a': [nan, inf, -inf, nan, inf, -inf]}"
    else:
        assert doc == expected


_ROWS = b"[0.1, 0.2, 0.3], " * 20_000


@pytest.mark.parametrize("body,expected", [
    (b'{"instances": [' + b"1.5, " * 200_000 + b"2 3]}", ("Missing a comma or ']' after an array element.", 1_000_017)),
    (b'{"instances": [' + _ROWS + b"[1 2], " + _ROWS + b"]}", ("Missing a comma or ']' after an array element.", 340_018)),
    (b'{"instances": [' + _ROWS + b"01, " + _ROWS + b"]}", ("Missing a comma or ']' after an array element.", 340_016)),
    (b'{"instances": [' + b'"abc", ' * 100_000 + b"x]}", ("Invalid value.", 700_015)),
])
def test_long_malformed_tensors_are_located_exactly(body: bytes, expected: tuple[str, int]) -> None:
    """Runs of elements are skipped at C speed (orjson checks them); the error is still rapidjson's."""
    from mlserve.server.frontends.rest.codecs.rapidreader import locate

    assert locate(body) == expected


def test_content_after_the_document_is_ignored_as_rapidjson_stop_when_done() -> None:
    from mlserve.server.frontends.rest.codecs.jsondoc import parse_json

    assert parse_json(b'{"instances": [1.0]} trailing') == {"instances": [1.0]}


def test_json_parse_errors_from_a_real_server(start_server: Callable[..., ServerProcess],
                                              half_plus_two_base: Path) -> None:
    """The same bodies through REST predict, classify and regress: 400 with rapidjson's words."""
    server = start_server("--model_name=half_plus_two", f"--model_base_path={half_plus_two_base}",
                          models=["half_plus_two"])
    for i, (body, message, offset) in enumerate(PARSE_ERRORS):
        verb = ("predict", "classify", "regress")[i % 3]
        r = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:{verb}", data=body,
                          timeout=30)
        assert (r.status_code, r.json()) == (400, {"error": f"JSON Parse error: {message} at offset: {offset}"})
    r = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:predict", data=b"", timeout=30)
    assert (r.status_code, r.json()) == (400, {"error": "JSON Parse error: The document is empty"})
