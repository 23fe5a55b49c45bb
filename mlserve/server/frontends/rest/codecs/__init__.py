"""The REST API's codecs, one job per module:

- `rules`: TF Serving's dtype names and integer ranges, written once;
- `jsondoc`: a body as a JSON document, with TF Serving's error wording; `signature_name`;
- `rapidjson`, `rapidreader`: rapidjson's parse-error messages, and where its reader stops;
- `fastpath`: a large numeric tensor read by simdjson straight into a buffer (agrees with the
  exact path; a test holds them equal);
- `decode`: JSON predict requests to numpy tensors;
- `encode`: numpy outputs, classification and regression results, errors to JSON;
- `examples`: tf.Example protos for :classify and :regress.

The names below are the package's interface; front-ends import them from here.
"""
from __future__ import annotations

from mlserve.server.frontends.rest.codecs.decode import COLUMNAR, ROW, decode_predict, needs_strict, to_array
from mlserve.server.frontends.rest.codecs.encode import encode_classify, encode_error, encode_predict, encode_regress
from mlserve.server.frontends.rest.codecs.examples import fill_examples_request
from mlserve.server.frontends.rest.codecs.fastpath import BODY_COST_FACTOR, parse_predict_json
from mlserve.server.frontends.rest.codecs.jsondoc import ParsedTensor, debug_string, parse_json, signature_name
from mlserve.server.frontends.rest.codecs.rules import MAX_RANK, tf_type_name

__all__ = ["BODY_COST_FACTOR", "COLUMNAR", "MAX_RANK", "ROW", "ParsedTensor", "debug_string", "decode_predict",
           "encode_classify", "encode_error", "encode_predict", "encode_regress",
           "fill_examples_request", "needs_strict", "parse_json", "parse_predict_json",
           "signature_name", "tf_type_name", "to_array"]
