"""train -> export -> models against real TensorFlow, through the CLI and the library API."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.cli.app import main
from mlserve.model.data import load_sample, prepare_images

pytestmark = pytest.mark.slow
MLSERVE = Path(sys.executable).with_name("mlserve")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `mlserve ARGS` in this process (TensorFlow loads once); return (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def leftovers(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlserve-home")


@pytest.fixture(autouse=True)
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSERVE_HOME", str(home))
    monkeypatch.setenv("MLSERVE_DATA", "sample")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("MLSERVE_MODEL_NAME", "MLSERVE_MODEL_BASE_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def trained(home: Path) -> dict[str, Any]:
    """`mlserve train --epochs 1` in a real subprocess, on the offline sample."""
    env = {**os.environ, "MLSERVE_HOME": str(home), "HOME": str(home), "MLSERVE_DATA": "",
           "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}
    done = subprocess.run(
        [str(MLSERVE), "train", "--epochs", "1", "--seed", "7", "--no-download", "--plot", "--json"],
        capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    result["stderr"] = done.stderr
    return result


@pytest.fixture(scope="module")
def keras_model(trained: dict[str, Any]) -> Any:
    import keras

    return keras.saving.load_model(trained["model_path"])


def test_train_saves_model_record_and_plot(trained: dict[str, Any], home: Path) -> None:
    folder = home / "trained" / "digits_model"
    assert Path(trained["model_path"]) == folder / "model.keras" and (folder / "model.keras").is_file()
    record = json.loads((folder / "record.json").read_text())
    assert record["epochs"] == 1 and record["seed"] == 7 and record["batch_size"] == 32
    assert record["data"]["source"] == "sample"
    assert record["data"]["train_size"] == 4000 and record["data"]["test_size"] == 1000
    assert 0.6 < record["test_accuracy"] <= 1.0 and record["test_loss"] > 0
    assert len(record["history"]["loss"]) == 1 and record["tensorflow_version"]
    # Progress, data source and the sample warning on stderr; the result alone on stdout.
    assert "epoch 1/1" in trained["stderr"] and "offline sample" in trained["stderr"]
    assert "Warning:" in trained["stderr"] and "CC BY-SA 3.0" in " ".join(trained["stderr"].split())
    plot = Path(trained["plot"])
    assert plot.parent == home / "plots" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trained_model_is_the_course_model(keras_model: Any) -> None:
    layers = keras_model.layers
    assert [type(layer).__name__ for layer in layers] == ["Conv2D", "Flatten", "Dense"]
    conv, _, dense = layers
    assert (conv.name, conv.filters, conv.kernel_size, conv.strides) == ("Conv1", 8, (3, 3), (2, 2))
    assert (dense.name, dense.units) == ("softmax", 10)
    assert keras_model.inputs[0].shape == (None, 28, 28, 1)


def test_export_two_versions_serve_the_keras_predictions(
        trained: dict[str, Any], keras_model: Any, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tensorflow as tf

    base = home / "models" / "digits_model"
    code, out, err = run_cli(capsys, "export")
    assert code == 0, err
    assert out.splitlines()[0] == str(base / "1")
    assert "Conv1_input" in out and "float32" in out and "(-1, 28, 28, 1)" in out and "(-1, 10)" in out
    code, out, err = run_cli(capsys, "export", "--version", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(base / "2")

    images = prepare_images(load_sample().x_test[:16])
    expected = keras_model.predict(images, verbose=0)
    for version in (1, 2):
        folder = base / str(version)
        assert (folder / "saved_model.pb").is_file() and (folder / "variables").is_dir()
        serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
        assert set(serve.structured_input_signature[1]) == {"Conv1_input"}
        got = serve(Conv1_input=tf.constant(images))
        assert set(got) == {"softmax"} and got["softmax"].shape == (16, 10)
        np.testing.assert_allclose(got["softmax"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert leftovers(base) == []


def test_signature_as_tf_serving_sees_it(home: Path) -> None:
    from mlserve.model.export import describe_signature

    signature = describe_signature(home / "models" / "digits_model" / "1")
    assert signature["method"] == "tensorflow/serving/predict"
    assert signature["inputs"]["Conv1_input"]["dtype"] == "float32"
    assert signature["inputs"]["Conv1_input"]["shape"] == [-1, 28, 28, 1]
    assert signature["outputs"] == {"softmax": {"dtype": "float32", "shape": [-1, 10],
                                                "tensor": signature["outputs"]["softmax"]["tensor"]}}


def test_warmup_file_parses_as_prediction_logs(home: Path) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = home / "models" / "digits_model" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert records
    for log in records:
        request = log.predict_log.request
        assert request.model_spec.name == "digits_model"
        assert request.model_spec.signature_name == "serving_default"
        tensor = tf.make_ndarray(request.inputs["Conv1_input"])
        assert tensor.dtype == np.float32 and tensor.shape[1:] == (28, 28, 1)


def test_existing_version_is_a_conflict_and_left_intact(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = home / "models" / "digits_model"
    before = tree_hash(base / "2")
    code, out, err = run_cli(capsys, "export", "--version", "2")
    assert code == 6 and out == ""
    assert "already exists" in err and "--force" in err and "--version 3" in err
    assert tree_hash(base / "2") == before
    assert leftovers(base) == []


def test_force_replaces_a_version(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = home / "models" / "digits_model"
    code, _, err = run_cli(capsys, "export", "--version", "2", "--force", "--no-warmup")
    assert code == 0, err
    assert (base / "2" / "saved_model.pb").is_file()
    assert not (base / "2" / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert leftovers(base) == [] and sorted(p.name for p in base.iterdir()) == ["1", "2"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_export_leaves_nothing(trained: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           interrupt: type[BaseException]) -> None:
    import tensorflow as tf

    from mlserve.model.export import export_model

    base = tmp_path / "models"
    model = Path(trained["model_path"])
    export_model(model, base, 1, model_name="digits_model", warmup=False)
    export_model(model, base, 2, model_name="digits_model", warmup=False)
    before = tree_hash(base / "2")

    def partial_save(obj: Any, export_dir: str, *args: Any, **kwargs: Any) -> None:
        # Simulates Ctrl-C (or a full disk) half-way through writing the SavedModel.
        Path(export_dir, "variables").mkdir(parents=True)
        Path(export_dir, "saved_model.pb").write_bytes(b"half")
        raise interrupt("interrupted mid-export")

    monkeypatch.setattr(tf.saved_model, "save", partial_save)
    with pytest.raises(interrupt):
        export_model(model, base, 3, model_name="digits_model")
    with pytest.raises(interrupt):
        export_model(model, base, 2, model_name="digits_model", force=True)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no version 3, no temp folder
    assert tree_hash(base / "2") == before


def test_models_lists_versions(trained: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 0, err
    versions = json.loads(out)
    assert [v["version"] for v in versions] == [1, 2]
    assert all(v["test_accuracy"] == pytest.approx(trained["test_accuracy"]) for v in versions)
    assert all(v["size_bytes"] > 10_000 for v in versions)
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "0." in out and "warm-up" in out


def test_next_version_is_latest_plus_one(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = home / "alt"
    code, out, err = run_cli(capsys, "export", "--model-base-path", str(base), "--version", "5", "--no-warmup")
    assert code == 0, err
    code, out, err = run_cli(capsys, "export", "--model-base-path", str(base), "--json", "--no-warmup")
    assert code == 0, err
    assert json.loads(out)["version"] == 6


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5"])
def test_bad_versions_are_usage_errors(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "export", "--version", version)
    assert code == 2 and out == "" and "Error:" in err


def test_missing_things_are_not_found(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models", "--model-name", "nothing-here")
    assert code == 4 and out == "" and "mlserve export" in err
    code, out, err = run_cli(capsys, "export", "--model", str(home / "missing.keras"))
    assert code == 4 and out == "" and "mlserve train" in err


def test_seed_makes_training_reproducible(tmp_path: Path) -> None:
    from mlserve.model.data import MnistData
    from mlserve.model.cnn import train

    sample = load_sample()
    small = MnistData(sample.x_train[:512], sample.y_train[:512], sample.x_test[:128], sample.y_test[:128],
                      source="sample", description="first 512 sample digits")
    runs = [train(epochs=1, seed=3, mnist=small, output=tmp_path / f"run{i}") for i in range(2)]
    weights = [[w for w in r.model.get_weights()] for r in runs]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert runs[0].test_accuracy == runs[1].test_accuracy


def test_seeded_training_leaves_determinism_as_it_was(tmp_path: Path) -> None:
    from tensorflow.python.framework import config as tf_config

    from mlserve.model.data import MnistData
    from mlserve.model.cnn import train

    sample = load_sample()
    tiny = MnistData(sample.x_train[:64], sample.y_train[:64], sample.x_test[:32], sample.y_test[:32],
                     source="sample", description="64 sample digits")
    before = tf_config.is_op_determinism_enabled()
    train(epochs=1, seed=1, mnist=tiny, output=tmp_path / "run.keras")
    assert tf_config.is_op_determinism_enabled() == before
    # A .keras output path gets its record beside it, named after it.
    assert (tmp_path / "run.keras").is_file() and (tmp_path / "run.json").is_file()
