"""`--prediction_cache_bytes` and `--prediction_cache redis://...` on a real server: a repeated
input is answered from the cache with the very bytes computed the first time, over REST and gRPC;
a new version never gets an older version's answer; replicas share answers through a real Redis
(Debian's redis-server, started here on a free port), and a Redis that goes away is a miss with a
log line, never an error to the client."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support.feature_stores import redis_binary, start_redis
from support.models import MODEL_NAME
from support.servers import ServerProcess, wait_available
from support.tinymodels import digits_batch

MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
needs_redis = pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed "
                                 "(apt-get install redis-server; .ci/run installs it)")


def _predict(server: ServerProcess, images: np.ndarray, version: int | None = None) -> requests.Response:
    where = f"/versions/{version}" if version else ""
    return requests.post(f"{server.url}/v1/models/{MODEL_NAME}{where}:predict",
                         json={"instances": images.tolist()}, timeout=30)


def _grpc_predict(server: ServerProcess, images: np.ndarray) -> bytes:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["Conv1_input"].CopyFrom(tf.make_tensor_proto(images))
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return answer.outputs["softmax"].SerializeToString()


def _lookups(server: ServerProcess) -> dict[tuple[str, str], int]:
    text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    found = {}
    for tier, result, count in re.findall(
            r':mlserve:prediction_cache:lookups\{model_name="[^"]*",tier="([^"]+)",result="(\w+)"\} (\d+)', text):
        found[(tier.split(":")[0], result)] = found.get((tier.split(":")[0], result), 0) + int(count)
    return found


def _log_lines(path: Path, count: int) -> list[dict]:
    """The request log's first `count` predict lines (readiness probes left out), waited for: a
    line is written just after its answer is sent."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        lines = [x for x in lines if str(x.get("path", "")).endswith(":predict")]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines[:count]
        time.sleep(0.02)


def test_memory_cache_answers_repeats_byte_for_byte_and_never_across_versions(
        start_server: Callable[..., ServerProcess], digits_base: Path, write_version: Callable[..., Path],
        tmp_path: Path) -> None:
    (tmp_path / "monitoring.cfg").write_text(MONITORING)
    log = tmp_path / "requests.jsonl"
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                          "--prediction_cache_bytes=1000000", "--file_system_poll_wait_seconds=1",
                          f"--monitoring_config_file={tmp_path / 'monitoring.cfg'}", f"--request_log={log}")
    images = digits_batch(2, seed=3)
    first, second = _predict(server, images), _predict(server, images)
    assert first.status_code == second.status_code == 200, first.text
    assert second.content == first.content  # the hit is the computed answer's very bytes
    assert [x.get("cache") for x in _log_lines(log, 2)] == ["miss", "hit"]
    # gRPC decodes to the same tensors: the REST answer serves it; a computed gRPC answer matches
    from_cache = _grpc_predict(server, images)
    assert _lookups(server)[("memory", "hit")] == 2
    other = digits_batch(2, seed=4)
    assert _predict(server, other).status_code == 200
    assert _lookups(server) == {("memory", "hit"): 2, ("memory", "miss"): 2}
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    grpc_answer = tf.make_ndarray(tensor_pb2.TensorProto.FromString(from_cache))
    np.testing.assert_allclose(grpc_answer, first.json()["predictions"], rtol=1e-6)  # the same answer

    write_version(digits_base, 2, kind="digits2")  # other weights: other answers
    deadline = time.monotonic() + 60
    while requests.get(f"{server.url}/v1/models/{MODEL_NAME}/versions/2", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, server.log_text()[-2000:]
        time.sleep(0.3)
    newer = _predict(server, images, version=2)
    assert newer.status_code == 200 and newer.content != first.content
    assert _log_lines(log, 4)[-1]["cache"] == "miss"  # version 2 never got version 1's answer
    assert _predict(server, images, version=2).content == newer.content
    assert _log_lines(log, 5)[-1]["cache"] == "hit"


@needs_redis
def test_redis_cache_is_shared_by_replicas_and_degrades_to_computing(
        start_server: Callable[..., ServerProcess], digits_base: Path, tmp_path: Path) -> None:
    redis = start_redis(tmp_path)
    try:
        (tmp_path / "monitoring.cfg").write_text(MONITORING)
        flags = [f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                 f"--prediction_cache={redis.url}", f"--monitoring_config_file={tmp_path / 'monitoring.cfg'}"]
        first = start_server(*flags, f"--request_log={tmp_path / 'a.jsonl'}")
        second = start_server(*flags, f"--request_log={tmp_path / 'b.jsonl'}")
        images = digits_batch(3, seed=5)
        computed = _predict(first, images)
        assert computed.status_code == 200, computed.text
        deadline = time.monotonic() + 10
        while not redis.client().keys("mlserve:pc:*"):  # the write is asynchronous
            assert time.monotonic() < deadline, "the answer never reached Redis"
            time.sleep(0.05)
        shared = _predict(second, images)
        assert shared.content == computed.content  # byte-identical, computed by the other replica
        assert _log_lines(tmp_path / "b.jsonl", 1)[-1]["cache"] == "hit"
        assert _lookups(second)[("redis", "hit")] == 1

        redis.stop()  # Redis goes away: answers are computed, with one log line
        for seed in (6, 7, 8):
            answer = _predict(first, digits_batch(1, seed=seed))
            assert answer.status_code == 200, answer.text
        assert "Prediction cache redis://127.0.0.1:" in first.log_text()
        assert "unavailable" in first.log_text() and first.log_text().count("computing every answer") == 1
        assert _lookups(first).get(("redis", "unavailable"), 0) >= 1

        redis = start_redis(tmp_path, port=redis.port)  # back: after the quiet second, hits again
        time.sleep(1.2)
        deadline = time.monotonic() + 15
        while "is back" not in first.log_text():
            assert time.monotonic() < deadline, first.log_text()[-2000:]
            assert _predict(first, images).status_code == 200
            time.sleep(0.2)
    finally:
        redis.stop()


@pytest.mark.parametrize(("flags", "words"), [
    (["--prediction_cache=http://127.0.0.1:6379"], "expected a redis:// URL"),
    (["--prediction_cache_bytes=-5"], "--prediction_cache_bytes must be 0"),
])
def test_bad_cache_flags_exit_2_with_one_line(flags: list[str], words: str, digits_base: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlserve.server", "--port=0", "--rest_api_port=0",
                        f"--model_base_path={digits_base}", *flags], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr


def test_a_redis_that_is_down_at_start_is_not_fatal(start_server: Callable[..., ServerProcess],
                                                    digits_base: Path) -> None:
    from support.ports import free_port

    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                          f"--prediction_cache=redis://127.0.0.1:{free_port()}/0")
    wait_available(server, [MODEL_NAME])
    assert _predict(server, digits_batch(1)).status_code == 200
    assert "computing every answer" in server.log_text()
