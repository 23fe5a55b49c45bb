"""Feast's own SQLite online store, for the comparison in docs/feature-lookup.md#why-not-feast:
write 100 restaurants' two features, then time `get_online_features` for 1 and 32 keys.

Run in a throwaway venv (Feast is not an mlserve dependency), in a folder holding this
feature_store.yaml:

    project: delivery
    registry: registry.db
    provider: local
    online_store: {type: sqlite, path: online.db}
    entity_key_serialization_version: 3

    python3 -m venv /tmp/feastvenv && /tmp/feastvenv/bin/pip install feast
    taskset -c 0 /tmp/feastvenv/bin/python benchmarks/feast_online_read.py 500
"""
import sys
import time
from datetime import datetime, timedelta, timezone
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float32

src = FileSource(path="unused.parquet", timestamp_field="ts")
restaurant = Entity(name="restaurant", join_keys=["restaurant_id"], value_type=ValueType.STRING)
view = FeatureView(name="restaurant_features", entities=[restaurant], ttl=timedelta(days=1),
                   schema=[Field(name="orders_last_hour", dtype=Float32),
                           Field(name="outstanding_per_minute", dtype=Float32)], source=src, online=True)
store = FeatureStore(repo_path=".")
store.apply([restaurant, view])
now = datetime.now(timezone.utc)
df = pd.DataFrame({"restaurant_id": [f"r{i}" for i in range(100)], "orders_last_hour": [float(i) for i in range(100)],
                   "outstanding_per_minute": [i / 10 for i in range(100)], "ts": [now] * 100})
store.write_to_online_store("restaurant_features", df)
feats = ["restaurant_features:orders_last_hour", "restaurant_features:outstanding_per_minute"]
for batch in (1, 32):
    times = []
    for i in range(int(sys.argv[1]) + 50):
        rows = [{"restaurant_id": f"r{(i + j) % 100}"} for j in range(batch)]
        t = time.perf_counter()
        out = store.get_online_features(features=feats, entity_rows=rows).to_dict()
        times.append(time.perf_counter() - t)
    assert out["orders_last_hour"][0] is not None, out
    times = sorted(times[50:])
    p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
    print(f"feast sqlite get_online_features keys={batch}: p50 {p50:.3f} ms p99 {p99:.3f} ms n={len(times)}")
