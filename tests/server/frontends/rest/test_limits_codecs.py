"""Bounded work on hostile REST bodies: the JSON slow path stops at the first bad element, deep
nesting and huge numbers are 400s (INVALID_ARGUMENT), never 500s. Where a shortcut answers (a
large `instances` run checked lazily), a test holds its answer equal to the exact path's."""
from __future__ import annotations

import numpy as np
import pytest

from mlserve.server.frontends.rest import codecs
from mlserve.server.frontends.rest.codecs import fastpath
from mlserve.server.errors import ServingError
from tensorflow_serving.apis import classification_pb2

F32 = {"x": np.float32}


def _error(parse, body: bytes, inputs: dict = F32) -> str:
    with pytest.raises(ServingError) as info:
        doc = parse(body)
        codecs.decode_predict(doc, inputs, strict=codecs.needs_strict(body, doc))
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value.message


@pytest.mark.parametrize("bad", ['"x"', "true", "null", '{"a": 1}', '{"b64": "aGk="}', "[1]", '"' + "s" * 5000 + '"'])
@pytest.mark.parametrize("at", [0, 1, 300_000])
@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_large_instances_with_one_bad_element_agree_with_the_exact_path(bad: str, at: int, key: str) -> None:
    numbers = ["0.5"] * 300_000
    numbers.insert(at, bad)
    body = ('{"signature_name": "serving_default", "' + key + '": [' + ",".join(numbers) + "]}").encode()
    assert len(body) > fastpath._PENDING_MIN_BYTES
    fast = _error(codecs.parse_predict_json, body)
    exact = _error(codecs.parse_json, body)
    assert fast == exact
    if bad == '"x"':
        assert fast.startswith(f"Failed to process element: {at} of 'instances' list." if key == "instances"
                               else 'JSON Value: "x" Type: String is not of expected type: float')


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_large_run_with_invalid_json_has_the_exact_paths_offset(key: str) -> None:
    body = ('{"' + key + '": [' + "0.5," * 300_000 + "tru]}").encode()
    assert _error(codecs.parse_predict_json, body) == _error(codecs.parse_json, body)


def test_large_instances_for_a_string_input_still_decode() -> None:
    body = ('{"instances": [' + ",".join(['"abc"'] * 200_000) + "]}").encode()
    doc = codecs.parse_predict_json(body)
    tensors, _ = codecs.decode_predict(doc, {"x": object})
    assert tensors["x"].shape == (200_000,) and tensors["x"][0] == b"abc"


def test_sixteen_megabytes_with_one_string_at_the_end_is_a_400() -> None:
    body = ("{\"instances\":[" + "0.5," * 4_194_304 + "\"x\"]}").encode()
    message = _error(codecs.parse_predict_json, body)
    assert message.startswith("Failed to process element: 4194304 of 'instances' list.")


def test_one_string_among_many_numbers_makes_no_unicode_array() -> None:
    """numpy would infer a fixed-width unicode dtype for the whole list: the leaf types are
    checked first, so the element error comes from the checked walk."""
    body = ('{"inputs": [' + ",".join(["1.5"] * 1000) + ', "' + "y" * 100 + '"]}').encode()
    message = _error(codecs.parse_json, body)
    assert "Type: String is not of expected type: float" in message


@pytest.mark.parametrize("depth", [300, 1000, 1020])
def test_deep_signature_name_is_invalid_argument(depth: int) -> None:
    body = ('{"instances": [1.0], "signature_name": ' + "[" * depth + "]" * depth + "}").encode()
    with pytest.raises(ServingError) as info:
        codecs.signature_name(codecs.parse_json(body))
    assert info.value.code == "INVALID_ARGUMENT"
    assert "'signature_name' key must be a string value" in info.value.message


@pytest.mark.parametrize("depth", [300, 1000, 1020])
def test_deep_examples_are_invalid_argument(depth: int) -> None:
    for body in ('{"signature_name": ' + "[" * depth + "]" * depth + ', "examples": [{}]}',
                 '{"examples": ' + "[" * depth + "]" * depth + "}",
                 '{"examples": [{"a": ' + "[" * depth + "]" * depth + "}]}"):
        with pytest.raises(ServingError) as info:
            codecs.fill_examples_request(codecs.parse_json(body.encode()),
                                         classification_pb2.ClassificationRequest())
        assert info.value.code == "INVALID_ARGUMENT"


def test_debug_string_is_json_and_bounded() -> None:
    from mlserve.server.frontends.rest.codecs.jsondoc import _json_prefix
    import json

    for value in ({"a": [1, 2.5, {"b": "x"}], "c": None, "d": True}, [[1], [2, [3]]], "x", 1.5, {}, []):
        assert _json_prefix(value, 10**6) == json.dumps(value)
    deep: list = []
    cur = deep
    for _ in range(100_000):
        cur.append([])
        cur = cur[0]
    assert len(codecs.debug_string({"k": deep})) == 256
