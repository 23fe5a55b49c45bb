"""`--batching_policy adaptive`: the controller's rules on a scripted clock, the batcher with a
model that takes a known time per row (a stand-in that sleeps around the real model, since the
tiny test model is too fast to need batching), and a real server's metrics and request log.
No latency is asserted: what is checked is what the controller decided from what it saw."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import requests

from mlserve.server.servables.adaptive import EVAL_EVERY, START_LIMIT, AdaptiveControl
from mlserve.server.servables.batching import Batcher
from mlserve.server.servables.batchingparams import BatchingOptions
from support.models import MODEL_NAME
from support.servers import ServerProcess
from support.tinymodels import digits_batch

SIG = "serving_default"
MS = 1e-3


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _control(objective_ms: float = 10, max_batch_size: int = 1000) -> tuple[AdaptiveControl, _Clock]:
    clock = _Clock()
    return AdaptiveControl(objective_ms * MS, max_batch_size, "m", SIG, clock=clock), clock


def _window(control: AdaptiveControl, clock: _Clock, rows: int, seconds: float, *, pressed: bool,
            span: float = 0.1) -> None:
    """Batches of `rows` each taking `seconds`, as many as one decision reads (EVAL_EVERY
    requests), arriving over `span` seconds."""
    batches = -(-EVAL_EVERY // rows)
    for _ in range(batches * rows):
        control.arrived()
    for i in range(batches):
        if i == batches - 1:
            clock.now += span
        control.observe(rows, seconds, [seconds] * rows, pressed)


def test_limit_grows_by_one_while_batches_run_full_within_the_budget() -> None:
    control, clock = _control()
    for step in range(1, 4):
        _window(control, clock, rows=control.limit, seconds=0.5 * MS, pressed=True)
        assert control.limit == START_LIMIT + step


def test_limit_stays_while_nothing_waits_for_room() -> None:
    control, clock = _control()
    for _ in range(3):
        _window(control, clock, rows=2, seconds=0.5 * MS, pressed=False)
    assert control.limit == START_LIMIT


def test_limit_is_cut_by_a_tenth_when_model_calls_take_over_half_the_objective() -> None:
    control, clock = _control(objective_ms=10, max_batch_size=1000)
    control.limit = 100
    _window(control, clock, rows=100, seconds=6 * MS, pressed=True)
    assert control.limit == 90  # and the model-time line (one batch size: b = 0) does not cap


def test_the_model_time_line_fits_what_the_calls_took() -> None:
    control, clock = _control(objective_ms=10)
    for rows in (1, 2, 3, 4, 6):  # t = 1 ms + 0.5 ms per row
        _window(control, clock, rows=rows, seconds=(1 + 0.5 * rows) * MS, pressed=False)
    assert control.model_time(8) == pytest.approx(5 * MS, rel=1e-6)
    assert control.limit == START_LIMIT  # nothing waited for room: no reason to grow


def test_an_open_batch_waits_only_when_requests_come_faster_than_a_call_costs() -> None:
    control, clock = _control(objective_ms=10)
    for rows in (1, 2, 4):  # a = 1 ms fixed cost per call
        _window(control, clock, rows=rows, seconds=(1 + 0.1 * rows) * MS, pressed=False, span=10.0)
    assert control.wait == 0.0  # a few requests a second: never wait
    for _ in range(3):  # 32 requests in 3.2 ms: one every 0.1 ms, sooner than the 1 ms call
        _window(control, clock, rows=4, seconds=(1 + 0.1 * 4) * MS, pressed=False, span=0.0032)
    assert 0 < control.wait <= 1 * MS + 1e-9


class _Slow:
    """The real servable, whose `run` also sleeps `fixed + per_row * rows` (a stand-in for a model
    that takes a known time), recording each call's size and thread."""

    def __init__(self, real: Any, fixed: float, per_row: float) -> None:
        self.real, self.fixed, self.per_row = real, fixed, per_row
        self.name, self.signatures, self.version = real.name, real.signatures, real.version
        self.calls: list[tuple[int, str]] = []

    def signature(self, name: str | None) -> Any:
        return self.real.signature(name)

    def validate(self, sig: Any, inputs: dict) -> dict:
        return self.real.validate(sig, inputs)

    def run(self, signature_name: str | None, inputs: dict, output_filter: Any = None) -> dict:
        rows = len(next(iter(inputs.values())))
        self.calls.append((rows, threading.current_thread().name))
        time.sleep(self.fixed + self.per_row * rows)
        return self.real.run(signature_name, inputs, output_filter)


@pytest.fixture(scope="module")
def servable(model_templates: Callable[[str], Path]) -> Any:
    from mlserve.server.servables.savedmodel import Servable

    return Servable.load(MODEL_NAME, 1, model_templates("digits"))


def _adaptive(objective_ms: float = 10) -> Batcher:
    return Batcher(BatchingOptions(policy="adaptive", latency_objective_ms=objective_ms, num_batch_threads=2))


def test_at_low_load_a_request_runs_unbatched_on_its_own_thread(servable: Any) -> None:
    slow = _Slow(servable, 0.001, 0.0)
    batcher = _adaptive()
    try:
        images = digits_batch(1, seed=2)
        for _ in range(5):
            notes: dict = {}
            outputs = batcher.submit_future(slow, SIG, {"Conv1_input": images}, notes).result(10)
            np.testing.assert_allclose(outputs["softmax"], servable.run(SIG, {"Conv1_input": images})["softmax"],
                                       rtol=1e-5, atol=1e-6)
            assert notes == {"batch": 1, "batch_limit": START_LIMIT, "queue_ms": 0.0}
        assert {thread for _, thread in slow.calls} == {threading.current_thread().name}
    finally:
        batcher.close()


def test_under_load_it_batches_within_what_the_model_time_allows(servable: Any) -> None:
    # 2 ms per call plus 1 ms per row: half a 10 ms objective holds at most 3 rows
    slow = _Slow(servable, 0.002, 0.001)
    batcher = _adaptive(objective_ms=10)
    images = digits_batch(16, seed=7)
    expected = servable.run(SIG, {"Conv1_input": images})["softmax"]
    try:
        def client(i: int) -> np.ndarray:
            answers = []
            for _ in range(15):
                row = images[i:i + 1]
                answers.append(batcher.submit_future(slow, SIG, {"Conv1_input": row}).result(30)["softmax"][0])
            return np.array(answers)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(client, range(16)))
        for i, answers in enumerate(results):
            np.testing.assert_allclose(answers, np.repeat(expected[i:i + 1], 15, axis=0), rtol=1e-5, atol=1e-6)
        [(_, signature, control)] = batcher.controls()
        assert signature == SIG
        assert 1 <= control.limit <= 3  # sleeps only run long, so the line can only say fewer
        late = [rows for rows, _ in slow.calls[len(slow.calls) // 2:]]
        assert max(late) > 1 and max(late) <= START_LIMIT  # it did batch, within its limit
    finally:
        batcher.close()


def test_a_new_version_gets_its_own_controller(servable: Any) -> None:
    batcher = _adaptive()
    try:
        first, second = _Slow(servable, 0, 0), _Slow(servable, 0, 0)
        second.version = 2
        for slow in (first, second):
            batcher.submit_future(slow, SIG, {"Conv1_input": digits_batch(1)}).result(10)
        controls = batcher.controls()
        assert len(controls) == 2 and controls[0][2] is not controls[1][2]
    finally:
        batcher.close()


@pytest.mark.parametrize(("flags", "words"), [
    (["--batching_policy=adaptive", "--latency_objective_ms=10"], "without --enable_batching"),
    (["--enable_batching", "--batching_policy=adaptive"], "needs --latency_objective_ms"),
    (["--enable_batching", "--batching_policy=aimd"], "choose fixed or adaptive"),
])
def test_bad_policy_flags_exit_2_with_a_hint(flags: list[str], words: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlserve.server", "--port=0", "--rest_api_port=0",
                        f"--model_base_path={tmp_path}", *flags], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and "--latency_objective_ms 10" in r.stderr


def test_server_shows_its_choice_in_metrics_and_the_request_log(
        start_server: Callable[..., ServerProcess], digits_base: Path, tmp_path: Path) -> None:
    (tmp_path / "monitoring.cfg").write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    log = tmp_path / "requests.jsonl"
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", "--enable_batching",
                          "--batching_policy=adaptive", "--latency_objective_ms=10", f"--request_log={log}",
                          f"--monitoring_config_file={tmp_path / 'monitoring.cfg'}")
    images = digits_batch(8, seed=11)

    def client(i: int) -> int:
        with requests.Session() as session:
            codes = [session.post(f"{server.url}/v1/models/{MODEL_NAME}:predict",
                                  json={"instances": images[i:i + 1].tolist()}, timeout=30).status_code
                     for _ in range(40)]
        return max(codes)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(client, range(8))) == {200}
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for gauge in ("adaptive_max_batch_size", "adaptive_batch_timeout_micros", "adaptive_observed_p99_micros"):
        assert f':mlserve:batching:{gauge}{{model_name="{MODEL_NAME}",signature_name="serving_default"}}' in text
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        batched = [x for x in lines if "batch_limit" in x]
        if len(batched) >= 300 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert batched, lines[-3:]
    assert all(1 <= x["batch"] and 1 <= x["batch_limit"] <= 1000 and x["queue_ms"] >= 0 for x in batched)
