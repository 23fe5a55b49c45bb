"""`mlserve export --tflite`: model.tflite beside the SavedModel, its size and accuracy measured by
running it with LiteRT, the same answers as the SavedModel, and the edge example without TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.models import MODEL_NAME, train_tiny_model as train_tiny
from support.paths import ROOT
from support.tflite import export_with_tflite

EDGE = ROOT / "examples" / "edge_classify.py"
SAMPLE = ROOT / "mlserve" / "model" / "sample" / "mnist_sample.npz"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tflite-export")
    keras_path = train_tiny(root)
    base = root / "models" / MODEL_NAME
    versions = {q: export_with_tflite(keras_path, base, v, q)
                for v, q in enumerate(("float32", "int8"), start=1)}
    return {"keras": keras_path, "base": base, "versions": versions, "root": root}


def _info(version_dir: Path) -> dict:
    return json.loads((version_dir / "assets.extra" / "mlserve.json").read_text())


def test_model_tflite_sits_beside_the_saved_model_with_its_measurements(exported: dict) -> None:
    for quantization, folder in exported["versions"].items():
        assert (folder / "saved_model.pb").is_file()
        tflite = folder / "model.tflite"
        assert tflite.is_file()
        record = _info(folder)["tflite"]
        assert record["quantization"] == quantization
        assert record["size_bytes"] == tflite.stat().st_size
        assert 0.5 < record["test_accuracy"] <= 1.0  # measured on the sample's 1,000 test digits
        assert record["test_images"] == 1000
        assert not list(folder.parent.glob(".tmp-*")), "no temporary folder left behind"
    f32 = _info(exported["versions"]["float32"])["tflite"]
    i8 = _info(exported["versions"]["int8"])["tflite"]
    assert i8["size_bytes"] * 3 < f32["size_bytes"]  # int8 weights: a quarter of float32's
    assert abs(i8["test_accuracy"] - f32["test_accuracy"]) < 0.02


def test_tflite_answers_like_the_saved_model_with_float_in_and_out(exported: dict) -> None:
    import tensorflow as tf

    from mlserve.model.data import load_mnist, prepare_images
    from mlserve.edge.litert import TFLiteModel

    images = prepare_images(load_mnist("sample").x_test[:32])
    folder = exported["versions"]["float32"]
    expected = tf.saved_model.load(str(folder)).signatures["serving_default"](
        Conv1_input=tf.constant(images))["softmax"].numpy()
    model = TFLiteModel(folder / "model.tflite")
    assert list(model.inputs) == ["Conv1_input"] and list(model.outputs) == ["softmax"]
    assert model.inputs["Conv1_input"].dtype == np.float32
    got = model.predict({"Conv1_input": images})["softmax"]
    assert got.dtype == np.float32 and got.shape == (32, 10)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    int8 = TFLiteModel(exported["versions"]["int8"] / "model.tflite")
    assert int8.inputs["Conv1_input"].dtype == np.float32  # int8 inside, float on the wire
    quantized = int8.predict_images(images)
    assert quantized.dtype == np.float32
    assert np.mean(quantized.argmax(1) == expected.argmax(1)) > 0.9


def test_compacted_file_computes_what_the_converter_wrote_without_its_names(exported: dict) -> None:
    """`mlserve.edge.tflite.compact` drops tensor names and the converter's metadata, keeps the
    signature LiteRT runs by its keys, and the file's answers stay bit for bit the same."""
    import tensorflow as tf

    from mlserve.model.data import load_mnist, prepare_images
    from mlserve.edge.litert import TFLiteModel
    from mlserve.edge.tflite import compact

    folder = exported["versions"]["float32"]
    loaded = tf.saved_model.load(str(folder))
    raw = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures["serving_default"]], loaded).convert()
    small = compact(raw)
    assert len(small) < len(raw) - 1000
    assert b"StatefulPartitionedCall" in raw and b"StatefulPartitionedCall" not in small
    assert b"CONVERSION_METADATA" not in small and b"min_runtime_version" in small
    images = prepare_images(load_mnist("sample").x_test[:8])
    before, after = TFLiteModel(content=raw), TFLiteModel(content=small)
    assert after.inputs == before.inputs and after.outputs == before.outputs
    np.testing.assert_array_equal(after.predict_images(images), before.predict_images(images))
    for version in exported["versions"].values():  # what export wrote is the compacted file
        content = (version / "model.tflite").read_bytes()
        assert b"StatefulPartitionedCall" not in content and b"CONVERSION_METADATA" not in content


def test_export_refuses_to_overwrite_a_version(exported: dict) -> None:
    from mlserve.errors import ConflictError
    from mlserve.model.export import export_model

    folder = exported["versions"]["int8"]
    before = (folder / "model.tflite").read_bytes()
    with pytest.raises(ConflictError):
        export_model(exported["keras"], exported["base"], 2, model_name=MODEL_NAME, tflite="float16")
    assert (folder / "model.tflite").read_bytes() == before


def test_models_lists_the_tflite_columns(exported: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlserve", "models", "--model-base-path",
                           str(exported["base"]), "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {r["version"]: r for r in json.loads(proc.stdout)}
    assert rows[1]["tflite"]["quantization"] == "float32"
    assert rows[2]["tflite"]["quantization"] == "int8"
    assert rows[2]["tflite"]["size_bytes"] == (exported["versions"]["int8"] / "model.tflite").stat().st_size
    table = subprocess.run([sys.executable, "-m", "mlserve", "models", "--model-base-path",
                            str(exported["base"])], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    assert f"int8, {rows[2]['tflite']['size_bytes'] / 1024:.1f} KiB" in table.stdout
    assert "model.tflite" in table.stdout


def test_int8_without_training_data_is_one_clear_error(exported: dict, tmp_path: Path) -> None:
    base = tmp_path / "models"
    env = {**os.environ, "MLSERVE_DATA": str(tmp_path / "no-such-mnist.npz")}
    proc = subprocess.run([sys.executable, "-m", "mlserve", "export", "--model", str(exported["keras"]),
                           "--model-base-path", str(base), "--tflite", "int8"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 5, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert errors[0].startswith("Error: --tflite int8 needs training images")
    assert errors[1].startswith("Hint:") and "--tflite dynamic" in errors[1]
    assert not base.exists() or not any(base.iterdir()), "nothing written"


def test_bad_quantization_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlserve", "export", "--tflite", "int4",
                           "--model-base-path", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--tflite must be one of float32, float16, dynamic, int8" in proc.stderr


def test_edge_example_classifies_without_importing_tensorflow(exported: dict) -> None:
    # Run the example as a device would, then look at what the interpreter had imported.
    probe = ("import runpy, sys; sys.argv = sys.argv[1:]; "
             "code = 0\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mlserve'))\n"
             "print('IMPORTED', heavy, file=sys.stderr); sys.exit(code)")
    model = exported["versions"]["int8"] / "model.tflite"
    proc = subprocess.run([sys.executable, "-c", probe, str(EDGE), str(model), "--npz", str(SAMPLE),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 1000
    assert summary["accuracy"] > 0.5
