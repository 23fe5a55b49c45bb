"""JSON <-> numpy codecs of the REST API: TF Serving's request/response rules and error wording."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from mlserve.server.frontends.rest import codecs
from mlserve.server.frontends.rest.codecs import fastpath
from mlserve.server.errors import ServingError

F32 = {"x": np.float32}


def decode(body: bytes | str, inputs: dict = F32):
    raw = body.encode() if isinstance(body, str) else body
    return codecs.decode_predict(codecs.parse_json(raw), inputs, strict=codecs.needs_strict(raw))


def error_of(body: bytes | str, inputs: dict = F32) -> str:
    with pytest.raises(ServingError) as info:
        decode(body, inputs)
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value.message


def test_row_and_columnar_decode_to_the_signature_dtype() -> None:
    tensors, fmt = decode('{"instances": [[1, 2.5], [3, 4]]}')
    assert fmt == codecs.ROW and tensors["x"].dtype == np.float32
    np.testing.assert_array_equal(tensors["x"], [[1, 2.5], [3, 4]])
    tensors, fmt = decode('{"inputs": {"a": [1, 2], "b": ["s", {"b64": "aGk="}]}}', {"a": np.int64, "b": object})
    assert fmt == codecs.COLUMNAR
    assert tensors["a"].dtype == np.int64 and list(tensors["b"]) == [b"s", b"hi"]


def test_named_instances_are_stacked_per_input() -> None:
    tensors, _ = decode('{"instances": [{"a": [1, 2], "b": 1}, {"a": [3, 4], "b": 2}]}',
                        {"a": np.float32, "b": np.int32})
    assert tensors["a"].shape == (2, 2) and tensors["b"].tolist() == [1, 2]


def test_nan_and_infinity_literals_are_accepted() -> None:
    tensors, _ = decode('{"instances": [NaN, Infinity, -Infinity, 1]}')
    x = tensors["x"]
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf and x[3] == 1


@pytest.mark.parametrize("body, inputs, expected", [
    ('{"instances": [[1, 2], [3]]}', F32,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 1"),
    ('{"instances": [[1, "a"]]}', F32,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ('{"instances": [[1, true]]}', F32, "JSON Value: true Type: True is not of expected type: float"),
    ('{"instances": [1.5]}', {"x": np.int32}, "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    ('{"inputs": [[1, 2], [3]]}', F32, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ('{"inputs": [[1, 2], 3]}', F32, "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ('{"inputs": [null]}', F32, "JSON Value: null Type: Null is not of expected type: float"),
    ('{"inputs": {"a": [1]}}', {"x": np.float32, "a": np.float32}, "Missing named input: x in 'inputs' object."),
    ('{"instances": [1], "inputs": [1]}', F32, "Not formatted correctly expecting only one of 'inputs' or 'instances'"),
    ('{"instances": []}', F32, "No values in 'instances' array"),
    ('{"instances": 3}', F32, "Expecting 'instances' to be an list/array"),
    ('{"signature_name": "x"}', F32, "Missing 'inputs' or 'instances' key"),
    ('{"instances": [1, 2]}', {"x": np.float32, "y": np.float32},
     "instances is a plain list, but expecting list of objects as multiple input tensors"),
    ('{"instances": [{"x": 1}, {"x": 2, "z": 3}]}', {"x": np.float32},
     "Failed to process element: 1 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not have named input: z"),
])
def test_errors_are_worded_like_tf_serving(body: str, inputs: dict, expected: str) -> None:
    assert expected in error_of(body, inputs)


@pytest.mark.parametrize("body, expected", [
    (b"", "JSON Parse error: The document is empty"),
    (b'{"instances": [1,', "JSON Parse error"),
    (b"[1, 2]", "Is not object"),
])
def test_parse_errors(body: bytes, expected: str) -> None:
    with pytest.raises(ServingError) as info:
        codecs.parse_json(body)
    assert expected in info.value.message and info.value.http_status == 400


def test_deep_nesting_is_a_400_not_a_crash() -> None:
    for depth in (100, 5000):
        body = b'{"inputs": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
        with pytest.raises(ServingError) as info:
            decode(body)
        assert info.value.http_status == 400
    body = b'{"inputs": [NaN, ' + b"[" * 5000 + b"]" * 5000 + b"]}"  # the tolerant (stdlib) parser path
    with pytest.raises(ServingError):
        decode(body)


def test_predictions_single_and_multiple_outputs() -> None:
    one = {"y": np.array([[0.2, 1.0]], np.float32)}
    assert orjson.loads(codecs.encode_predict(one, codecs.ROW)) == {"predictions": [[0.2, 1.0]]}
    assert orjson.loads(codecs.encode_predict(one, codecs.COLUMNAR)) == {"outputs": [[0.2, 1.0]]}
    two = {"y": np.array([1.5, 2.5], np.float32), "k": np.array([1, 2], np.int64)}
    assert orjson.loads(codecs.encode_predict(two, codecs.ROW)) == {
        "predictions": [{"k": 1, "y": 1.5}, {"k": 2, "y": 2.5}]}
    assert orjson.loads(codecs.encode_predict(two, codecs.COLUMNAR)) == {"outputs": {"k": [1, 2], "y": [1.5, 2.5]}}


def test_row_outputs_must_share_the_batch_size() -> None:
    with pytest.raises(ServingError, match="has inconsistent batch size"):
        codecs.encode_predict({"a": np.zeros(2), "b": np.zeros(3)}, codecs.ROW)
    with pytest.raises(ServingError, match="has no shape information"):
        codecs.encode_predict({"a": np.float32(1)}, codecs.ROW)


def test_non_finite_outputs_are_written_like_tf_serving() -> None:
    body = codecs.encode_predict({"y": np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32)}, codecs.ROW)
    assert body == b'{"predictions":[[NaN,Infinity,-Infinity,0.5]]}'
    parsed = json.loads(body)  # Python's json reads these tokens back
    assert np.isnan(parsed["predictions"][0][0])
    two = codecs.encode_predict({"a": np.array([np.nan, 1.0]), "b": np.array([1, 2])}, codecs.ROW)
    assert two == b'{"predictions":[{"a":NaN,"b":1},{"a":1.0,"b":2}]}'


def test_string_outputs_and_bytes_suffix() -> None:
    out = {"label": np.array([b"cat"], object), "img_bytes": np.array([b"\x00\xff"], object)}
    assert orjson.loads(codecs.encode_predict(out, codecs.ROW)) == {
        "predictions": [{"img_bytes": {"b64": "AP8="}, "label": "cat"}]}


def test_float32_values_round_trip_exactly() -> None:
    values = np.random.default_rng(0).random((4, 10), dtype=np.float32)
    parsed = orjson.loads(codecs.encode_predict({"y": values}, codecs.ROW))["predictions"]
    np.testing.assert_array_equal(np.asarray(parsed, np.float32), values)


def test_examples_request_from_json() -> None:
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    doc = {"signature_name": "c", "context": {"lang": "en"},
           "examples": [{"x": [1.5, 2.0], "n": 3, "b": {"b64": "aGk="}}]}
    codecs.fill_examples_request(doc, request)
    ex = request.input.example_list_with_context.examples[0].features.feature
    assert list(ex["x"].float_list.value) == [1.5, 2.0] and list(ex["n"].int64_list.value) == [3]
    assert list(ex["b"].bytes_list.value) == [b"hi"]
    assert request.model_spec.signature_name == "c"
    with pytest.raises(ServingError, match="Unexpected element type in feature: x expecting type: float"):
        codecs.fill_examples_request({"examples": [{"x": [1.5, "a"]}]}, classification_pb2.ClassificationRequest())


# ---- the numeric-tensor fast path: same tensors and the same errors as the ordinary path ----

def _both_paths(body: bytes, inputs: dict) -> tuple:
    fast_doc = codecs.parse_predict_json(body)
    plain_doc = codecs.parse_json(body)

    def decode(doc: dict) -> object:
        try:
            return codecs.decode_predict(doc, inputs)
        except ServingError as e:
            return ("error", e.code, e.message)

    return fast_doc, decode(fast_doc), decode(plain_doc)


@pytest.mark.parametrize("key", ["instances", "inputs"])
@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("shape", [(64, 28, 28, 1), (1, 28, 28, 1), (5, 784)])
def test_large_numeric_tensor_takes_the_fast_path_with_identical_values(key, indent, shape) -> None:
    values = np.random.default_rng(0).random(shape)  # float64, like `images.tolist()` sends
    body = json.dumps({"signature_name": "serving_default", key: values.tolist()}, indent=indent).encode()
    doc, fast, plain = _both_paths(body, {"x": np.float32})
    assert isinstance(doc[key], codecs.ParsedTensor)
    assert fast[1] == plain[1]
    assert fast[0]["x"].dtype == np.float32
    np.testing.assert_array_equal(fast[0]["x"], plain[0]["x"])


@pytest.mark.parametrize("bad", [b"NaN", b"01", b"1.", b"[1]", b'"x"'])
def test_large_tensor_read_in_chunks_agrees_with_the_exact_path(bad: bytes) -> None:
    """A span past one chunk (256 kB) is read a chunk at a time, from a bytearray as the HTTP
    layer hands it over; one odd number deep inside gives the exact path's answer."""
    values = np.random.default_rng(5).random((40, 28, 28, 1))
    body = json.dumps({"instances": values.tolist()}).encode()
    doc, fast, plain = _both_paths(bytes(bytearray(body)), {"x": np.float32})
    assert isinstance(doc["instances"], codecs.ParsedTensor)
    np.testing.assert_array_equal(codecs.decode_predict(codecs.parse_predict_json(bytearray(body)),
                                                        {"x": np.float32})[0]["x"], plain[0]["x"])
    at = body.index(b"[0.", len(body) * 2 // 3) + 1  # a number in the last chunks
    end = body.index(b"]", at)
    odd = bytearray(body[:at] + bad + body[end:])

    def answer(parse: Any) -> object:
        try:
            return codecs.decode_predict(parse(odd), {"x": np.float32})[0]["x"]
        except ServingError as e:
            return ("error", e.code, e.message)

    fast, plain = answer(codecs.parse_predict_json), answer(codecs.parse_json)
    if isinstance(plain, tuple):
        assert fast == plain
    else:
        np.testing.assert_array_equal(fast, plain)  # NaN read as NaN by both


def test_ragged_tensor_falls_back_and_keeps_tf_serving_error() -> None:
    rows = np.random.default_rng(1).random((10, 28, 28)).tolist()
    rows[3] = rows[3][:-1]
    _, fast, plain = _both_paths(json.dumps({"instances": rows}).encode(), {"x": np.float32})
    assert fast == plain and fast[0] == "error" and "element: 3" in fast[2]


def test_fast_path_falls_back_for_invalid_json_and_odd_layouts() -> None:
    rows = np.random.default_rng(2).random((10, 28, 28)).tolist()
    broken = json.dumps({"instances": rows}).encode().replace(b", ", b" ", 1)  # "1 2": invalid JSON
    with pytest.raises(ServingError, match="JSON Parse error"):
        codecs.parse_predict_json(broken)
    # integer inputs and multi-input signatures decode through the exact (slow) path
    ints = np.arange(2000).reshape(2, 1000).tolist()
    _, fast, plain = _both_paths(json.dumps({"inputs": ints}).encode(), {"i": np.int64})
    np.testing.assert_array_equal(fast[0]["i"], plain[0]["i"])
    _, fast, plain = _both_paths(json.dumps({"instances": rows}).encode(), {"a": np.float32, "b": np.float32})
    assert fast == plain and fast[0] == "error"


def test_fast_path_with_keys_after_the_tensor() -> None:
    values = np.random.default_rng(3).random((2, 28, 28, 1))
    plain_tail = json.dumps({"instances": values.tolist(), "signature_name": "serving_default"}).encode()
    odd_tail = json.dumps({"instances": values.tolist(), "signature_name": "x]y"}).encode()
    for body in (plain_tail, odd_tail):
        _, fast, plain = _both_paths(body, {"x": np.float32})
        np.testing.assert_array_equal(fast[0]["x"], plain[0]["x"])
    assert isinstance(codecs.parse_predict_json(plain_tail)["instances"], codecs.ParsedTensor)
    assert codecs.parse_predict_json(odd_tail)["signature_name"] == "x]y"


@pytest.mark.parametrize("span", [
    b"[[0.5, 1], [-0.0, 2.5e-3]]", b"[[1E+2, -3]]", b"[ [ 1 , 2 ] ,\n [ 3 , 4 ] ]",
    b"[[01, 2]]", b"[[1., 2]]", b"[[.5, 2]]", b"[[+1, 2]]", b"[[1, 2,]]", b"[[1e400, 2]]", b"[[1, -]]",
])
def test_both_number_readers_agree(span: bytes) -> None:
    """simdjson (installed) and orjson (the fallback) read a run of numbers alike and refuse the
    same non-JSON spellings, which then take the exact path and get TF Serving's error."""
    by_orjson = fastpath.flat_numbers_orjson(span)
    by_simdjson = fastpath.flat_numbers(span)
    if by_orjson is None or by_simdjson is None:
        assert by_orjson is None and by_simdjson is None
    else:
        np.testing.assert_array_equal(by_orjson, by_simdjson)
