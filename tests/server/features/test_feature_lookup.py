"""--feature_lookup against real servers: the delivery-time example model (trained and exported by
examples/delivery_time/train.py), its features written by examples/delivery_time/features.py
into a real SQLite file and a real redis-server, requests over REST (requests) and gRPC (the
official TF Serving stubs). One server per store for the whole module."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support.feature_stores import MODEL, example_module, features_of, redis_binary, start_redis
from mlserve.errors import UsageError
from mlserve.server.features.config import parse_config
from support.servers import launch_server

RESTAURANTS = 20
LOOKUP = {
    "entity_key": {"input": "restaurant_id", "dtype": "string"},
    "inputs": {
        "orders_last_hour": {"features": ["orders_last_hour"], "dtype": "float32"},
        "outstanding_per_minute": {"features": ["outstanding_per_minute"], "dtype": "float32"},
    },
}


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("delivery-model")
    example_module("train").train_and_export(base, examples=1000, epochs=3)
    return base


@pytest.fixture(scope="module")
def features() -> dict[str, dict[str, float]]:
    return features_of(RESTAURANTS)


@pytest.fixture(scope="module")
def sqlite_server(model_base, features, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqlite-lookup")
    example_module("features").write_sqlite(str(folder / "features.db"), features)
    config = dict(LOOKUP, store={"sqlite": "features.db", "table": "restaurant_features"}, on_missing="error")
    (folder / "lookup.json").write_text(json.dumps(config))
    (folder / "monitoring.config").write_text('prometheus_config { enable: true }')
    server = launch_server([f"--model_name={MODEL}", f"--model_base_path={model_base}",
                            f"--feature_lookup={folder / 'lookup.json'}",
                            f"--monitoring_config_file={folder / 'monitoring.config'}",
                            f"--request_log={folder / 'requests.jsonl'}"],
                           folder / "server.log", [MODEL])
    server.folder = folder
    yield server
    server.stop()


def rest(server, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{MODEL}:predict", json=body, timeout=10)


def grpc_predict(server, inputs: dict[str, np.ndarray], timeout: float = 10) -> np.ndarray:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    return tf.make_ndarray(answer.outputs["minutes"])


def full_inputs(features, ids: list[str], distances: list[float]) -> dict[str, list]:
    """Every signature input, as a TF Serving client without lookup sends them."""
    return {"distance_km": [[d] for d in distances],
            "orders_last_hour": [[features[r]["orders_last_hour"]] for r in ids],
            "outstanding_per_minute": [[features[r]["outstanding_per_minute"]] for r in ids]}


def test_keyed_rest_and_grpc_predict_equal_the_full_request(sqlite_server, features):
    ids, distances = ["r0", "r3", "r0"], [2.0, 5.5, 7.0]
    full = rest(sqlite_server, {"inputs": full_inputs(features, ids, distances)})
    assert full.status_code == 200, full.text
    expected = np.array(full.json()["outputs"])
    keyed = rest(sqlite_server, {"inputs": {"restaurant_id": ids, "distance_km": [[d] for d in distances]}})
    assert keyed.status_code == 200, keyed.text
    np.testing.assert_allclose(keyed.json()["outputs"], expected, rtol=1e-5)
    rows = rest(sqlite_server, {"instances": [{"restaurant_id": r, "distance_km": [d]}
                                              for r, d in zip(ids, distances)]})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=1e-5)
    by_grpc = grpc_predict(sqlite_server, {"restaurant_id": np.array([r.encode() for r in ids], dtype=object),
                                           "distance_km": np.array([[d] for d in distances], np.float32)})
    np.testing.assert_allclose(by_grpc, expected, rtol=1e-5)
    assert expected[0, 0] != pytest.approx(expected[1, 0])  # the store's features change the answer


def test_full_tf_serving_request_passes_through_without_a_lookup(sqlite_server, features):
    log = sqlite_server.folder / "requests.jsonl"
    before = log.read_text().count('"lookup_ms"')
    body = {"instances": [{"distance_km": [1.0], "orders_last_hour": [3.0], "outstanding_per_minute": [0.5]}]}
    answer = rest(sqlite_server, body)
    assert answer.status_code == 200, answer.text
    by_grpc = grpc_predict(sqlite_server, {k: np.array(v, np.float32) for k, v in full_inputs(
        {"x": {"orders_last_hour": 3.0, "outstanding_per_minute": 0.5}}, ["x"], [1.0]).items()})
    np.testing.assert_allclose(by_grpc, answer.json()["predictions"], rtol=1e-5)
    assert log.read_text().count('"lookup_ms"') == before  # the store was not read


def test_missing_entity_is_404_and_not_found_naming_the_store(sqlite_server):
    answer = rest(sqlite_server, {"inputs": {"restaurant_id": ["r0", "nowhere"], "distance_km": [[1.0], [2.0]]}})
    assert answer.status_code == 404
    assert "sqlite:" in answer.json()["error"] and "'nowhere'" in answer.json()["error"]
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(sqlite_server, {"restaurant_id": np.array([b"nowhere"], dtype=object),
                                     "distance_km": np.array([[1.0]], np.float32)})
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nowhere" in caught.value.details()


def test_request_without_key_or_inputs_is_invalid_argument(sqlite_server):
    answer = rest(sqlite_server, {"inputs": {"distance_km": [[1.0]]}})
    assert answer.status_code == 400, answer.text
    wide = rest(sqlite_server, {"inputs": {"restaurant_id": [["r0", "r1"]], "distance_km": [[1.0]]}})
    assert wide.status_code == 400 and "restaurant_id" in wide.json()["error"]


def test_lookup_time_is_a_metric_and_a_request_log_field(sqlite_server):
    assert rest(sqlite_server, {"inputs": {"restaurant_id": ["r1"], "distance_km": [[1.0]]}}).status_code == 200
    text = requests.get(f"{sqlite_server.url}/monitoring/prometheus/metrics", timeout=10).text
    counts = [line for line in text.splitlines() if line.startswith(":mlserve:feature_lookup_latency_count")]
    assert counts and any('status="OK"' in c and f'model_name="{MODEL}"' in c for c in counts), text[-2000:]
    lines = [json.loads(x) for x in (sqlite_server.folder / "requests.jsonl").read_text().splitlines()]
    lookups = [x for x in lines if "lookup_ms" in x]  # fields of the request's own line
    assert lookups and lookups[-1]["lookup_ms"] >= 0 and lookups[-1]["lookup_entities"] == 1
    assert lookups[-1]["api"] == "rest" and lookups[-1]["lookup_code"] == "OK" and lookups[-1]["status"] == 200


@pytest.mark.parametrize(("doc", "words"), [
    ({}, "entity_key"),
    (dict(LOOKUP, store={"sqlite": "x.db", "redis": "redis://h"}), "exactly one"),
    (dict(LOOKUP, store={"redis": "http://h"}), "redis://"),
    (dict(LOOKUP, store={"sqlite": "x.db", "timeout_ms": 0}), "timeout_ms"),
    (dict(LOOKUP, store={"sqlite": "x.db"}, on_missing="ignore"), "on_missing"),
    (dict(LOOKUP, store={"sqlite": "x.db"}, inputs={"a": {"features": ["bad name"]}}), "inputs.a.features"),
    (dict(LOOKUP, store={"sqlite": "x.db"}, inputs={"a": {"features": ["f"], "dtype": "complex64"}}), "dtype"),
    (dict(LOOKUP, store={"sqlite": "x.db"}, inputs={"a": {"features": ["f", "g"], "defaults": [1]}}), "defaults"),
    (dict(LOOKUP, store={"redis_env": "MLSERVE_TEST_UNSET_VARIABLE"}), "MLSERVE_TEST_UNSET_VARIABLE"),
])
def test_bad_config_is_a_usage_error_naming_the_field(doc, words):
    with pytest.raises(UsageError) as caught:
        parse_config(doc)
    assert words in caught.value.message


def test_server_with_a_missing_store_stops_at_start_with_exit_2(model_base, tmp_path):
    config = tmp_path / "lookup.yaml"
    config.write_text("entity_key: restaurant_id\nstore: {sqlite: none.db}\n"
                      "inputs: {orders_last_hour: [orders_last_hour]}\n")
    server = launch_server([f"--model_name={MODEL}", f"--model_base_path={model_base}",
                            f"--feature_lookup={config}"], tmp_path / "server.log", wait=False)
    assert server.proc.wait(60) == 2
    assert "none.db" in server.log_text()


def test_locked_sqlite_store_is_unavailable_within_its_timeout(features, tmp_path):
    """A real SQLite file held by a writer's exclusive lock: the read-only reader gives up after
    its timeout with StoreUnavailableError (the server answers that 503 / UNAVAILABLE)."""
    import sqlite3

    from mlserve.server.features.config import StoreConfig
    from mlserve.server.features.stores import StoreUnavailableError
    from mlserve.server.features.stores.sqlite import SqliteStore

    path = tmp_path / "features.db"
    example_module("features").write_sqlite(str(path), features)
    store = SqliteStore(StoreConfig("sqlite", str(path), table="restaurant_features"), "restaurant_id")
    names = ("orders_last_hour", "outstanding_per_minute")
    assert store.read(["r0", "none"], names, 1.0)[1] is None
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        store.close()  # a fresh connection, as a new worker thread would open
        with pytest.raises(StoreUnavailableError, match="timed out|locked"):
            store.read(["r0"], names, 0.1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert store.read(["r0"], names, 1.0)[0] == pytest.approx(
        [features["r0"]["orders_last_hour"], features["r0"]["outstanding_per_minute"]])


# -- Redis -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_store(features, tmp_path_factory):
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e .[redis])")
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    store = start_redis(tmp_path_factory.mktemp("redis"))
    example_module("features").write_redis(store.url, features)
    yield store
    store.stop()


@pytest.fixture(scope="module")
def redis_server(model_base, redis_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis-lookup")
    config = dict(LOOKUP, store={"redis": redis_store.url, "key_prefix": "restaurant:", "timeout_ms": 300},
                  on_missing="default")
    config["inputs"] = dict(config["inputs"], orders_last_hour={
        "features": ["orders_last_hour"], "dtype": "float32", "defaults": [20]})
    (folder / "lookup.yaml").write_text(json.dumps(config))  # JSON is YAML too
    server = launch_server([f"--model_name={MODEL}", f"--model_base_path={model_base}",
                            f"--feature_lookup={folder / 'lookup.yaml'}"], folder / "server.log", [MODEL])
    yield server
    server.stop()


def test_redis_keyed_predict_equals_the_full_request_and_never_writes(redis_server, redis_store, features):
    client = redis_store.client()
    client.config_resetstat()
    ids, distances = ["r1", "r2"], [3.0, 4.0]
    full = rest(redis_server, {"inputs": full_inputs(features, ids, distances)})
    keyed = rest(redis_server, {"inputs": {"restaurant_id": ids, "distance_km": [[d] for d in distances]}})
    assert keyed.status_code == 200, keyed.text
    np.testing.assert_allclose(keyed.json()["outputs"], full.json()["outputs"], rtol=1e-5)
    by_grpc = grpc_predict(redis_server, {"restaurant_id": np.array([b"r1", b"r2"], dtype=object),
                                          "distance_km": np.array([[3.0], [4.0]], np.float32)})
    np.testing.assert_allclose(by_grpc, full.json()["outputs"], rtol=1e-5)
    commands = {k.removeprefix("cmdstat_") for k in client.info("commandstats")}
    assert "hmget" in commands
    assert commands <= {"hmget", "ping", "info", "config|resetstat", "config"}, commands  # reads only


def test_redis_missing_entity_takes_the_configured_defaults(redis_server):
    keyed = rest(redis_server, {"inputs": {"restaurant_id": ["nowhere"], "distance_km": [[2.0]]}})
    assert keyed.status_code == 200, keyed.text
    full = rest(redis_server, {"inputs": {"distance_km": [[2.0]], "orders_last_hour": [[20.0]],
                                          "outstanding_per_minute": [[0.0]]}})
    np.testing.assert_allclose(keyed.json()["outputs"], full.json()["outputs"], rtol=1e-5)


def wait_busy(store) -> None:
    """Until Redis stops answering a PING within 100 ms (the DEBUG SLEEP has begun)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    probe = redis.Redis(host="127.0.0.1", port=store.port, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            probe.ping()
        except redis.exceptions.TimeoutError:
            return
        time.sleep(0.01)
    raise AssertionError("Redis never became busy")


def test_redis_slow_or_down_is_503_and_unavailable_naming_the_store(redis_server, redis_store, tmp_path):
    keyed = {"inputs": {"restaurant_id": ["r1"], "distance_km": [[2.0]]}}
    grpc_keyed = {"restaurant_id": np.array([b"r1"], dtype=object), "distance_km": np.array([[2.0]], np.float32)}
    name = f"redis://127.0.0.1:{redis_store.port}/0"
    # slow: Redis busy for 3 s (DEBUG SLEEP), the store's timeout is 300 ms
    sleeper = threading.Thread(target=lambda: redis_store.client().execute_command("DEBUG", "SLEEP", "3"))
    sleeper.start()
    try:
        wait_busy(redis_store)
        answer = rest(redis_server, keyed)
        assert answer.status_code == 503 and name in answer.json()["error"], answer.text
        with pytest.raises(grpc.RpcError) as caught:
            grpc_predict(redis_server, grpc_keyed, timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and name in caught.value.details()
    finally:
        sleeper.join()
    # down: the process gone; then back up on the same port, and lookups work again
    redis_store.stop()
    try:
        answer = rest(redis_server, keyed)
        assert answer.status_code == 503 and name in answer.json()["error"], answer.text
        with pytest.raises(grpc.RpcError) as caught:
            grpc_predict(redis_server, grpc_keyed)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        restarted = start_redis(tmp_path, redis_store.port)
        redis_store.proc = restarted.proc
    example_module("features").write_redis(redis_store.url, features_of(RESTAURANTS))
    assert rest(redis_server, keyed).status_code == 200


def test_with_batching_a_batch_of_keyed_requests_costs_one_store_read(model_base, features, tmp_path):
    """With --enable_batching, keyed requests join the batcher with their key, and the batch
    thread completes the whole batch from one store read: 8 concurrent requests (a batch fills at
    8 rows, or after 2 s) cost fewer reads than requests. REST and gRPC answers equal the full
    request's, and a bad key fails its own request only."""
    example_module("features").write_sqlite(str(tmp_path / "features.db"), features)
    config = dict(LOOKUP, store={"sqlite": "features.db", "table": "restaurant_features"}, on_missing="error")
    (tmp_path / "lookup.json").write_text(json.dumps(config))
    (tmp_path / "batching.txt").write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 2000000 }\n")
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: true }")
    server = launch_server([f"--model_name={MODEL}", f"--model_base_path={model_base}",
                            "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.txt'}",
                            f"--feature_lookup={tmp_path / 'lookup.json'}", f"--request_log={tmp_path / 'log.jsonl'}",
                            f"--monitoring_config_file={tmp_path / 'monitoring.config'}"], tmp_path / "server.log", [MODEL])

    def reads() -> int:
        text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
        return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(":mlserve:feature_lookup_latency_count"))

    try:
        ids = [f"r{i}" for i in range(7)]
        expected = rest(server, {"inputs": full_inputs(features, ids, [3.0] * 7)}).json()["outputs"]
        before = reads()
        answers: dict[int, requests.Response] = {}

        def one(i: int) -> None:
            key = ids[i] if i < 7 else "nowhere"
            answers[i] = rest(server, {"inputs": {"restaurant_id": [key], "distance_km": [[3.0]]}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for i in range(7):
            assert answers[i].status_code == 200, answers[i].text
            np.testing.assert_allclose(answers[i].json()["outputs"], expected[i:i + 1], rtol=1e-5)
        assert answers[7].status_code == 404 and "nowhere" in answers[7].json()["error"]
        assert reads() - before < 8  # one read per batch, not per request
        by_grpc = grpc_predict(server, {"restaurant_id": np.array([b"r5"], dtype=object),
                                        "distance_km": np.array([[3.0]], np.float32)})
        np.testing.assert_allclose(by_grpc, expected[5:6], rtol=1e-5)
        lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
        keyed = [x for x in lines if "lookup_ms" in x and x["code"] == "OK"]
        assert len(keyed) >= 8 and all(x["batch"] >= 1 and x["lookup_entities"] >= 1 for x in keyed)
    finally:
        server.stop()


def test_serve_cli_passes_the_lookup_to_the_embedded_server_only(model_base, tmp_path):
    from support.cli import run_cli

    config = tmp_path / "lookup.yaml"
    config.write_text("entity_key: restaurant_id\n")
    model = ("--model-name", MODEL, "--model-base-path", str(model_base))
    dry = run_cli("serve", *model, "--feature-lookup", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"--feature_lookup={config}" in dry.stdout and "mlserve.server" in dry.stdout
    docker = run_cli("serve", *model, "--runtime", "docker", "--feature-lookup", str(config), "--dry-run")
    assert docker.returncode == 2 and "--runtime embedded" in docker.stderr
    missing = run_cli("serve", *model, "--feature-lookup", str(tmp_path / "none.yaml"), "--dry-run")
    assert missing.returncode == 4 and "none.yaml" in missing.stderr
