"""REST codecs in TF Serving's words (util/json_tensor.cc), in process: no server needed."""
from __future__ import annotations

import pytest

from mlserve.server.codecs.jsondoc import decode_b64
from mlserve.server.errors import ServingError


@pytest.mark.parametrize("text,expected", [("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("aGVs\nbG8=", b"hello")])
def test_base64_as_absl_reads_it(text: str, expected: bytes) -> None:
    assert decode_b64({"b64": text}) == expected


@pytest.mark.parametrize("text", ["!!!!", "aGVsbG8*", "a", "aGVs_bG8"])
def test_invalid_base64_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(ServingError) as err:
        decode_b64({"b64": text})
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", "Unable to base64 decode")


@pytest.mark.parametrize("body,message", [
    (b"", "The document is empty."),
    (b"   ", "The document is empty."),
    (b"{not json", "Missing a name for object member."),
    (b'{"a" 1}', "Missing a colon after a name of object member."),
    (b'{"a": 1', "Missing a comma or '}' after an object member."),
    (b'{"a": [1 2]}', "Missing a comma or ']' after an array element."),
    (b'{"a": [1, 2', "Missing a comma or ']' after an array element."),
    (b'{"a": tru}', "Invalid value."),
    (b'{"a": }', "Invalid value."),
    (b'{"a": "abc', "Missing a closing quotation mark in string."),
    (b'{"a": "\\q"}', "Invalid escape character in string."),
    (b'{"a": 1.}', "Missing fraction part in number."),
    (b'{"a": 1e}', "Missing exponent in number."),
])
def test_json_parse_errors_in_rapidjsons_words(body: bytes, message: str) -> None:
    from mlserve.server.codecs.jsondoc import parse_json

    with pytest.raises(ServingError) as err:
        parse_json(body)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith(f"JSON Parse error: {message} at offset: ")


def test_content_after_the_document_is_ignored_as_rapidjson_stop_when_done() -> None:
    from mlserve.server.codecs.jsondoc import parse_json

    assert parse_json(b'{"instances": [1.0]} trailing') == {"instances": [1.0]}
