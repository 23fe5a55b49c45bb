"""CPU cost of the feature lookup per request, in-process on core 0 (no network, no model): the
REST decode of a full request vs a keyed one (the failed full decode plus the retry), and
`FeatureLookup.complete` with its SQLite read. Needs the example's SQLite file:

    python examples/delivery_time/features.py --sqlite /tmp/dt.db
    python benchmarks/feature_lookup_cpu.py /tmp/dt.db
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import numpy as np  # noqa: E402

from mlserve.server.features.config import parse_config  # noqa: E402
from mlserve.server.features.lookup import FeatureLookup  # noqa: E402
from mlserve.server.frontends.rest import codecs  # noqa: E402
from mlserve.server.servables.savedmodel import SignatureInfo, TensorSpec  # noqa: E402

INPUTS = ("distance_km", "orders_last_hour", "outstanding_per_minute")


class Servable:  # what `complete` reads of a loaded version: its name and signatures
    name = "delivery_time"
    signatures = {"serving_default": SignatureInfo(
        "serving_default", "tensorflow/serving/predict",
        {k: TensorSpec(k, k, np.dtype("float32"), 1, (None, 1)) for k in INPUTS}, {})}


def main() -> None:
    os.sched_setaffinity(0, {0})
    sig = Servable.signatures["serving_default"]
    lookup = FeatureLookup(parse_config({
        "entity_key": "restaurant_id", "store": {"sqlite": sys.argv[1], "table": "restaurant_features"},
        "inputs": {"orders_last_hour": ["orders_last_hour"], "outstanding_per_minute": ["outstanding_per_minute"]}}))
    dtypes = {k: s.dtype for k, s in sig.inputs.items()}
    keyed = json.dumps({"inputs": {"restaurant_id": ["r3"], "distance_km": [[2.5]]}}).encode()
    full = json.dumps({"inputs": {"distance_km": [[2.5]], "orders_last_hour": [[3.0]],
                                  "outstanding_per_minute": [[1.0]]}}).encode()

    def decode_full() -> dict:
        return codecs.decode_predict(codecs.parse_predict_json(full), dtypes, strict=False)[0]

    def decode_keyed() -> dict:  # as the REST front-end does: the request names the key
        doc = codecs.parse_predict_json(keyed)
        return codecs.decode_predict(doc, lookup.request_dtypes(sig), strict=False)[0]

    inputs = decode_keyed()

    def complete() -> dict:
        return lookup.complete(Servable, "serving_default", inputs)

    for name, fn in [("decode full request", decode_full),
                     ("decode keyed request", decode_keyed),
                     ("complete() incl. SQLite read", complete)]:
        for _ in range(500):
            fn()
        start, n = time.perf_counter(), 20000
        for _ in range(n):
            fn()
        print(f"{name}: {(time.perf_counter() - start) / n * 1e6:.1f} us")


if __name__ == "__main__":
    main()
