"""Server-side batching against a real SavedModel: same results as unbatched, padding, full queue."""
from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from mlserve.server.observability import metrics
from mlserve.server.servables.batching import Batcher
from mlserve.server.servables.batchingparams import BatchingOptions
from mlserve.server.errors import ServingError
from support.tinymodels import digits_batch

SIG = "serving_default"


@pytest.fixture(scope="module")
def servable(model_templates: Callable[[str], Path]) -> Any:
    from mlserve.server.servables.savedmodel import Servable

    return Servable.load("digits_model", 1, model_templates("digits"))


class _Gated:
    """The real servable, with `run` held until the test opens a gate: the only way to keep a batch
    thread busy long enough to fill a queue deterministically (a test double around the real model)."""

    def __init__(self, real: Any) -> None:
        self.real, self.gate, self.sizes = real, threading.Event(), []
        self.name, self.signatures = real.name, real.signatures

    def signature(self, name: str | None) -> Any:
        return self.real.signature(name)

    def validate(self, sig: Any, inputs: dict) -> dict:
        return self.real.validate(sig, inputs)

    def run(self, sig: str, inputs: dict) -> dict:
        self.gate.wait(30)
        self.sizes.append(next(iter(inputs.values())).shape[0])
        return self.real.run(sig, inputs)


def test_parse_batching_parameters_text_format() -> None:
    opts = BatchingOptions.parse("""
        max_batch_size { value: 8 }   # comment
        batch_timeout_micros { value: 1000 }
        num_batch_threads { value: 2 }
        max_enqueued_batches { value: 100 }
        allowed_batch_sizes: 2
        allowed_batch_sizes: 8
        pad_variable_length_inputs: true
    """)
    assert (opts.max_batch_size, opts.batch_timeout_micros, opts.num_batch_threads, opts.max_enqueued_batches) == (
        8, 1000, 2, 100)
    assert opts.allowed_batch_sizes == (2, 8) and opts.pad_variable_length_inputs
    defaults = BatchingOptions.from_file(None)
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
    from mlserve.errors import UsageError

    with pytest.raises(UsageError, match="must match max_batch_size"):
        BatchingOptions.parse("max_batch_size { value: 8 } allowed_batch_sizes: 4")


def test_concurrent_requests_get_their_own_rows(servable: Any) -> None:
    batcher = Batcher(BatchingOptions(max_batch_size=16, batch_timeout_micros=20000, num_batch_threads=1))
    try:
        images = [digits_batch(1 + i % 3, seed=i) for i in range(12)]
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda x: batcher.run(servable, SIG, {"Conv1_input": x}, timeout=30), images))
        for x, out in zip(images, results):
            alone = servable.run(SIG, {"Conv1_input": x})["softmax"]
            assert out["softmax"].shape == alone.shape
            # batched kernels may differ from batch-1 ones in the last bits (oneDNN), as in TF Serving
            np.testing.assert_allclose(out["softmax"], alone, rtol=1e-5, atol=1e-6)
    finally:
        batcher.close()


def test_padding_to_allowed_batch_sizes(servable: Any) -> None:
    gated = _Gated(servable)
    gated.gate.set()
    batcher = Batcher(BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8), batch_timeout_micros=50000,
                                      num_batch_threads=1))
    metrics.reset()
    try:
        futures = [batcher.submit_future(gated, SIG, {"Conv1_input": digits_batch(1, seed=i)}) for i in range(3)]
        outs = [f.result(30) for f in futures]
    finally:
        batcher.close()
    assert gated.sizes == [4]  # 3 rows padded to the allowed size 4, run once
    assert all(o["softmax"].shape == (1, 10) for o in outs)
    page = metrics.render().decode()
    assert ':tensorflow:serving:batching_session:padding_size_count{execution_batch_size="4"} 1' in page


def test_full_queue_is_rejected_not_buffered(servable: Any) -> None:
    gated = _Gated(servable)
    batcher = Batcher(BatchingOptions(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1))
    try:
        first = batcher.submit_future(gated, SIG, {"Conv1_input": digits_batch(1)})
        for _ in range(200):  # wait until the batch thread holds the first request
            if not batcher._queues:
                break
            threading.Event().wait(0.01)
        queued = [batcher.submit_future(gated, SIG, {"Conv1_input": digits_batch(1)}) for _ in range(2)]
        with pytest.raises(ServingError) as info:
            batcher.submit_future(gated, SIG, {"Conv1_input": digits_batch(1)})
        assert info.value.code == "UNAVAILABLE" and info.value.http_status == 503
        assert "queue to which this task was submitted is full" in info.value.message
        gated.gate.set()
        assert [f.result(30)["softmax"].shape for f in [first, *queued]] == [(1, 10)] * 3
    finally:
        gated.gate.set()
        batcher.close()


def test_bad_request_fails_alone(servable: Any) -> None:
    batcher = Batcher(BatchingOptions(max_batch_size=4, num_batch_threads=1))
    try:
        with pytest.raises(ServingError) as info:  # a shape the graph cannot take fails in its own batch
            batcher.submit_future(servable, SIG, {"Conv1_input": np.zeros((1, 3, 3, 1), np.float32)}).result(30)
        assert info.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ServingError, match="larger than maximum input batch size 4"):
            batcher.submit_future(servable, SIG, {"Conv1_input": digits_batch(5)})
        assert batcher.run(servable, SIG, {"Conv1_input": digits_batch(2)}, timeout=30)["softmax"].shape == (2, 10)
    finally:
        batcher.close()


def test_callbacks_answer_each_request_and_a_failing_one_does_not_stop_the_batches(servable: Any) -> None:
    gated = _Gated(servable)
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=50000, num_batch_threads=1))
    answers: dict[int, Any] = {}
    all_done = threading.Event()

    def done_for(i: int) -> Callable[[Any, Any], None]:
        def done(outputs: Any, error: Any) -> None:
            answers[i] = outputs["softmax"] if error is None else error
            if len(answers) == 4:
                all_done.set()
            if i == 0:
                raise RuntimeError("a caller's bug inside its callback")
        return done

    try:
        images = [digits_batch(1, seed=i) for i in range(4)]
        for i, x in enumerate(images):
            batcher.submit_callback(gated, SIG, {"Conv1_input": x}, done_for(i))
        gated.gate.set()
        assert all_done.wait(30)
        assert gated.sizes == [4]  # one batch, and every request answered despite the raising callback
        for i, x in enumerate(images):
            assert answers[i].shape == (1, 10)
            np.testing.assert_allclose(answers[i], servable.run(SIG, {"Conv1_input": x})["softmax"], rtol=1e-5, atol=1e-6)
        # the batch thread survived the callback's exception
        assert batcher.run(servable, SIG, {"Conv1_input": digits_batch(2)}, timeout=30)["softmax"].shape == (2, 10)
    finally:
        gated.gate.set()
        batcher.close()
