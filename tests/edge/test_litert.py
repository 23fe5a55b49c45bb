"""mlserve.edge.litert: a bounded pool of LiteRT interpreters answers concurrent calls, one interpreter
per call, with the answers of a single interpreter; bad files are DataErrors."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mlserve.errors import DataError


@pytest.fixture(scope="module")
def content() -> bytes:
    """A small real .tflite: (N, 28, 28, 1) float32 -> softmax (N, 10), no training needed."""
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(Conv1_input):  # noqa: N803
        return {"softmax": tf.nn.softmax(tf.reshape(Conv1_input, [-1, 784]) @ weights)}

    module = tf.Module()
    module.serve = serve
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module).convert()


def test_pool_runs_at_most_size_calls_at_once_with_the_same_answers(content: bytes) -> None:
    from mlserve.edge.litert import InterpreterPool, TFLiteModel

    images = np.random.default_rng(1).random((24, 28, 28, 1), dtype=np.float32)
    expected = TFLiteModel(content=content).predict_images(images)
    pool = InterpreterPool(content, 2)
    active, peak, lock = [0], [0], threading.Lock()
    used = set()

    def call(i: int) -> np.ndarray:
        with pool.borrow() as model:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                used.add(id(model))
            try:
                return model.predict({"Conv1_input": images[i:i + 1 + i % 3]})["softmax"]
            finally:
                with lock:
                    active[0] -= 1

    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(call, range(20)))
    assert peak[0] <= 2 and len(used) <= 2
    for i, out in enumerate(results):
        np.testing.assert_allclose(out, expected[i:i + 1 + i % 3], atol=1e-6)
    np.testing.assert_allclose(pool.predict({"Conv1_input": images})["softmax"], expected, atol=1e-6)


def test_corrupt_file_and_missing_signature_are_data_errors(content: bytes, tmp_path) -> None:
    from mlserve.edge.litert import TFLiteModel

    with pytest.raises(DataError, match="not a valid TFLite model"):
        TFLiteModel(content=b"garbage" * 20)
    with pytest.raises(DataError, match="no signature 'other'"):
        TFLiteModel(content=content, signature="other")
    with pytest.raises(DataError, match="cannot be read"):
        TFLiteModel(tmp_path / "missing.tflite")
