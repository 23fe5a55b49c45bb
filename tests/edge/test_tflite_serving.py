"""The embedded server with --prefer_tflite_model: model.tflite answers (REST and gRPC, batching on
or off), the metadata is the SavedModel's, a corrupt or mismatched .tflite fails only its version,
and a good new one hot-swaps in. Without the flag the same folders serve the SavedModel."""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from support.models import MODEL_NAME, train_tiny_model as train_tiny
from support.tflite import export_with_tflite, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tflite-serving")
    keras_path = train_tiny(root)
    base = root / "models" / MODEL_NAME
    export_with_tflite(keras_path, base, 1, "int8")
    from mlserve.model.data import load_mnist, prepare_images

    images = prepare_images(load_mnist("sample").x_test[:8])
    return {"root": root, "keras": keras_path, "base": base, "images": images}


def _saved_model_answer(version_dir: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return fn(Conv1_input=tf.constant(images))["softmax"].numpy()


def _tflite_answer(version_dir: Path, images: np.ndarray) -> np.ndarray:
    from mlserve.edge.litert import TFLiteModel

    return np.concatenate([TFLiteModel(version_dir / "model.tflite").predict_images(images[i:i + 1])
                           for i in range(len(images))])


def _predict(server, images: np.ndarray, transport: str = "rest", version: int | None = None) -> np.ndarray:
    from mlserve.client import ModelTarget, connect

    client = connect(ModelTarget(MODEL_NAME, version=version), transport=transport, url=server.url,
                     grpc_server=server.grpc, timeout=10)
    try:
        return client.predict(images)
    finally:
        client.close()


def _grpc_signature_def(server):
    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(server.grpc) as channel:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL_NAME
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def) == ["serving_default"]
    return signatures.signature_def["serving_default"]


def _saved_signature_def(version_dir: Path):
    from mlserve.server.servables.signature import read_meta_graph

    return read_meta_graph(version_dir, ["serve"]).signature_def["serving_default"]


def _status(server) -> dict[int, dict]:
    with urllib.request.urlopen(f"{server.url}/v1/models/{MODEL_NAME}", timeout=10) as r:
        body = json.loads(r.read())
    return {int(v["version"]): v for v in body["model_version_status"]}


def _wait(predicate, what: str, server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout:g} s:\n{server.log_text()[-2000:]}")


def _add_version(base: Path, number: int, tflite: bytes) -> Path:
    """Copy version 1 with another model.tflite, renamed into place (as an export does)."""
    tmp = base / f".tmp-{number}"
    shutil.copytree(base / "1", tmp)
    (tmp / "model.tflite").write_bytes(tflite)
    os.rename(tmp, base / str(number))
    return base / str(number)


def _mismatched_tflite() -> bytes:
    """A valid .tflite whose serving_default takes (N, 10), not (N, 28, 28, 1)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 10], tf.float32, name="Conv1_input")])
    def serve(Conv1_input):  # noqa: N803
        return {"softmax": tf.nn.softmax(Conv1_input)}

    module = tf.Module()
    module.serve = serve
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
    return converter.convert()


@pytest.mark.parametrize("batching", [False, True], ids=["plain", "batching"])
def test_serves_model_tflite_with_the_saved_models_metadata(models: dict, tmp_path: Path, batching) -> None:
    images, v1 = models["images"], models["base"] / "1"
    flags = ["--prefer_tflite_model", "--num_tflite_pools=2", "--num_tflite_interpreters_per_pool=1",
             "--file_system_poll_wait_seconds=0"] + (["--enable_batching"] if batching else [])
    server = start_server(models["base"], tmp_path / "server.log", *flags)
    try:
        expected = _tflite_answer(v1, images)
        saved_model = _saved_model_answer(v1, images)
        for transport in ("rest", "grpc"):
            one_by_one = np.concatenate([_predict(server, images[i:i + 1], transport) for i in range(8)])
            np.testing.assert_allclose(one_by_one, expected, atol=1e-6)
            batch = _predict(server, images, transport)
            assert batch.shape == (8, 10) and batch.dtype == np.float32
            np.testing.assert_allclose(batch, expected, atol=1e-5)
        # the int8 file answers, not the SavedModel (its probabilities differ a little)
        assert not np.allclose(expected, saved_model, atol=1e-6)
        assert (expected.argmax(1) == saved_model.argmax(1)).mean() >= 0.75
        with urllib.request.urlopen(f"{server.url}/v1/models/{MODEL_NAME}/metadata", timeout=10) as r:
            meta = json.loads(r.read())
        sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["inputs"]["Conv1_input"]["name"] == "serving_default_Conv1_input:0"
        assert [d["size"] for d in sig["inputs"]["Conv1_input"]["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
        assert sig["method_name"] == "tensorflow/serving/predict"
        assert _grpc_signature_def(server) == _saved_signature_def(v1)
        with pytest.raises(Exception, match="shape"):
            _predict(server, np.zeros((1, 27, 28, 1), np.float32))  # checked like the SavedModel's
    finally:
        server.stop()


def test_corrupt_or_mismatched_tflite_fails_only_its_version_then_a_good_one_swaps_in(
        models: dict, tmp_path: Path) -> None:
    base = tmp_path / "models"
    shutil.copytree(models["base"], base)
    images = models["images"]
    # TF Serving retries a failed load (--max_num_load_retries, default 5 a minute apart): off here
    server = start_server(base, tmp_path / "server.log", "--prefer_tflite_model",
                          "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0")
    try:
        first = _predict(server, images)
        _add_version(base, 2, b"TFL3 this is not a flatbuffer" * 10)
        _wait(lambda: _status(server).get(2, {}).get("state") == "END", "version 2 failing", server)
        failed = _status(server)[2]
        assert failed["status"]["error_code"] != "OK"
        assert "model.tflite" in failed["status"]["error_message"]
        assert _status(server)[1]["state"] == "AVAILABLE"
        np.testing.assert_allclose(_predict(server, images), first, atol=1e-6)  # still version 1

        _add_version(base, 3, _mismatched_tflite())
        _wait(lambda: _status(server).get(3, {}).get("state") == "END", "version 3 failing", server)
        message = _status(server)[3]["status"]["error_message"]
        assert "does not match the SavedModel's signature" in message and "28" in message
        np.testing.assert_allclose(_predict(server, images), first, atol=1e-6)

        float32 = export_with_tflite(models["keras"], base, 4, "float32")
        _wait(lambda: _status(server).get(4, {}).get("state") == "AVAILABLE", "version 4 loading", server)
        np.testing.assert_allclose(_predict(server, images), _tflite_answer(float32, images), atol=1e-5)
        _wait(lambda: _status(server)[1]["state"] == "END", "version 1 unloading", server)
    finally:
        server.stop()


def test_without_the_flag_the_saved_model_is_served(models: dict, tmp_path: Path) -> None:
    base = tmp_path / "models"
    shutil.copytree(models["base"], base)
    (base / "1" / "model.tflite").write_bytes(b"corrupt, and ignored without --prefer_tflite_model")
    server = start_server(base, tmp_path / "server.log", "--file_system_poll_wait_seconds=0")
    try:
        expected = _saved_model_answer(models["base"] / "1", models["images"])
        np.testing.assert_allclose(_predict(server, models["images"]), expected, atol=1e-5)
    finally:
        server.stop()


@pytest.mark.parametrize("runtime", ["embedded", "binary", "docker"])
def test_serve_tflite_maps_to_prefer_tflite_model_for_every_runtime(models: dict, runtime: str) -> None:
    from support.cli import run_cli

    proc = run_cli("serve", "--tflite", "--runtime", runtime, "--model-base-path", str(models["base"]),
                   "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split().count("--prefer_tflite_model") == 1
    plain = run_cli("serve", "--runtime", runtime, "--model-base-path", str(models["base"]), "--dry-run")
    assert "--prefer_tflite_model" not in plain.stdout
