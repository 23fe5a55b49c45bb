"""Property-based fuzzing (hypothesis) of the REST codecs: whatever the body, decoding a predict,
classify or regress request either succeeds or raises INVALID_ARGUMENT, never anything else (a
500), and the fast path answers exactly as the exact path does. Bounded: a fixed number of
examples, no per-example deadline (the shared machine's timing is noise)."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import classification_pb2

from mlserve.server.frontends.rest import codecs
from mlserve.server.errors import ServingError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=8), st.fixed_dictionaries({"b64": st.text(max_size=8)}))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                      max_leaves=20)
documents = st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "x"]),
                            values, max_size=3)
signatures = st.sampled_from([{"x": np.float32}, {"x": np.int32}, {"x": np.uint8}, {"x": object},
                              {"x": np.bool_}, {"a": np.float32, "b": object}])


def _outcome(fn):
    try:
        tensors, fmt = fn()
    except ServingError as e:
        assert e.code == "INVALID_ARGUMENT", e
        return ("error", e.message)
    return ("ok", fmt, {k: (v.dtype.str, v.shape, v.tolist()) for k, v in tensors.items()})


@FUZZ
@given(doc=documents, inputs=signatures)
def test_predict_decoding_never_fails_otherwise(doc: dict, inputs: dict) -> None:
    body = json.dumps(doc).encode()

    def exact():
        parsed = codecs.parse_json(body)
        return codecs.decode_predict(parsed, inputs, strict=codecs.needs_strict(body, parsed))

    def fast():
        parsed = codecs.parse_predict_json(body)
        return codecs.decode_predict(parsed, inputs, strict=codecs.needs_strict(body, parsed))

    assert _outcome(fast) == _outcome(exact)


@FUZZ
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_parse_error_or_a_document(data: bytes) -> None:
    try:
        codecs.parse_predict_json(data)
    except ServingError as e:
        assert e.code == "INVALID_ARGUMENT"


@FUZZ
@given(doc=documents)
def test_examples_decoding_never_fails_otherwise(doc: dict) -> None:
    try:
        codecs.fill_examples_request(codecs.parse_json(json.dumps(doc).encode()),
                                     classification_pb2.ClassificationRequest())
    except ServingError as e:
        assert e.code == "INVALID_ARGUMENT"


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])
@example(numbers=[0.5], bad="true", at=3)
@example(numbers=[0.5], bad='"x"', at=0)
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=50),
       bad=st.sampled_from(['"x"', "true", "null", '{"k": 1}', "[1, 2]", '{"b64": "aGk="}']),
       at=st.integers(0, 50))
def test_large_instances_with_a_bad_element_agree_with_the_exact_path(numbers: list, bad: str, at: int) -> None:
    items = [json.dumps(n) for n in numbers] * (300_000 // len(numbers) + 1)
    items.insert(min(at, len(items)), bad)
    body = ('{"instances": [' + ",".join(items) + "]}").encode()
    def decode(parse):
        parsed = parse(body)
        return codecs.decode_predict(parsed, {"x": np.float32}, strict=codecs.needs_strict(body, parsed))

    fast = _outcome(lambda: decode(codecs.parse_predict_json))
    exact = _outcome(lambda: decode(codecs.parse_json))
    assert fast == exact
