"""tf.Example protos from the JSON of TF Serving's :classify and :regress requests."""
from __future__ import annotations

from typing import Any, Mapping

from mlserve.server.frontends.rest.codecs.jsondoc import debug_string, decode_b64, is_b64, json_type, signature_name
from mlserve.server.frontends.rest.codecs.rules import bad
from mlserve.server.errors import ServingError


def _add_feature_value(feature: Any, name: str, val: Any) -> None:
    kind = feature.WhichOneof("kind")

    def incompatible() -> ServingError:
        names = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}
        return bad(f"Unexpected element type in feature: {name} expecting type: {names[kind]}")

    if val is None or isinstance(val, list) or (isinstance(val, dict) and not is_b64(val)):
        raise bad(f"Feature: {name} has element with unexpected JSON type: {json_type(val)}")
    if isinstance(val, bool):
        if kind not in (None, "int64_list"):
            raise incompatible()
        feature.int64_list.value.append(1 if val else 0)
    elif isinstance(val, dict):
        if kind not in (None, "bytes_list"):
            raise incompatible()
        feature.bytes_list.value.append(decode_b64(val))
    elif isinstance(val, str):
        if kind not in (None, "bytes_list"):
            raise incompatible()
        feature.bytes_list.value.append(val.encode("utf-8"))
    elif isinstance(val, float):
        if kind not in (None, "float_list"):
            raise incompatible()
        feature.float_list.value.append(val)
    else:
        if kind not in (None, "int64_list"):
            raise incompatible()
        if val >= 2**63:
            raise bad(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(val)


def _fill_example(value: Any, example: Any) -> None:
    if not isinstance(value, dict):
        raise bad(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        for v in content if isinstance(content, list) else [content]:
            _add_feature_value(feature, name, v)


def fill_examples_request(doc: Mapping[str, Any], request: Any) -> None:
    """Fill a Classification/RegressionRequest's signature and Input from ``examples``/``context``."""
    sig = signature_name(doc)
    if sig:
        request.model_spec.signature_name = sig
    has_context = "context" in doc
    if has_context:
        _fill_example(doc["context"], request.input.example_list_with_context.context)
    if "examples" not in doc:
        raise bad(f"JSON Value: {debug_string(doc)} When method is classify, key 'examples' "
                   "is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise bad(f"JSON Value: {debug_string(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise bad(f"JSON Value: {debug_string(doc)} 'examples' value is an empty array")
    target = (request.input.example_list_with_context.examples if has_context
              else request.input.example_list.examples)
    for value in examples:
        _fill_example(value, target.add())
