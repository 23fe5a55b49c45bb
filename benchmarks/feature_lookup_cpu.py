"""CPU cost of the feature lookup per request, in-process on core 0 (no network, no model): the
REST decode of a full request vs a keyed one (the failed full decode plus the retry), and
`FeatureLookup.complete` with its SQLite read. Needs the example's SQLite file:

    python examples/delivery_time/features.py --sqlite /tmp/dt.db
    python benchmarks/feature_lookup_cpu.py /tmp/dt.db
"""
import json, time, numpy as np, os, sys  # noqa: E401
os.sched_setaffinity(0, {0})
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
from mlserve.server.frontends.rest import codecs
from mlserve.server.errors import ServingError
from mlserve.server.features.config import parse_config
from mlserve.server.features.lookup import FeatureLookup
from mlserve.server.servables.savedmodel import SignatureInfo, TensorSpec
f32 = np.dtype("float32")
sig = SignatureInfo("serving_default", "tensorflow/serving/predict",
    {k: TensorSpec(k, k, f32, 1, (None, 1)) for k in ("distance_km", "orders_last_hour", "outstanding_per_minute")}, {})
class S: name = "delivery_time"; signatures = {"serving_default": sig}
cfg = parse_config({"entity_key": "restaurant_id", "store": {"sqlite": sys.argv[1], "table": "restaurant_features"},
    "inputs": {"orders_last_hour": ["orders_last_hour"], "outstanding_per_minute": ["outstanding_per_minute"]}})
fl = FeatureLookup(cfg)
dtypes = {k: s.dtype for k, s in sig.inputs.items()}
keyed = json.dumps({"inputs": {"restaurant_id": ["r3"], "distance_km": [[2.5]]}}).encode()
full = json.dumps({"inputs": {"distance_km": [[2.5]], "orders_last_hour": [[3.0]], "outstanding_per_minute": [[1.0]]}}).encode()
def dec_full():
    doc = codecs.parse_predict_json(full); return codecs.decode_predict(doc, dtypes, strict=False)[0]
def dec_keyed():
    doc = codecs.parse_predict_json(keyed)
    try: return codecs.decode_predict(doc, dtypes, strict=False)[0]
    except ServingError: return codecs.decode_predict(doc, fl.request_dtypes(sig), strict=False)[0]
inp = dec_keyed()
def comp(): return fl.complete(S, "serving_default", inp)
for name, fn in [("decode full request", dec_full), ("decode keyed request (full try + retry)", dec_keyed), ("complete() incl. SQLite read", comp)]:
    for _ in range(500): fn()
    t = time.perf_counter(); n = 20000
    for _ in range(n): fn()
    print(f"{name}: {(time.perf_counter()-t)/n*1e6:.1f} us")
