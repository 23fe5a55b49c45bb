"""Batch scoring (`mlserve score`; `predict --score` its hidden alias) against a real embedded server: every row, in order, the
server's answers; atomic output; an interrupted job resumes to the same file; a rerun refuses."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from support.cli import run_cli
from support.models import MODEL_NAME, assert_same_digits, reference_probabilities

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from mlserve.model.data import load_mnist

    return load_mnist("sample").x_test[:300]  # uint8 (300, 28, 28)


def _client_factory(server, *, fail_after: int | None = None, transport: str = "rest",
                    in_flight: list[int] | None = None):
    from mlserve.client import ModelTarget, connect

    calls = {"n": 0}
    lock = threading.Lock()

    class Interrupting:
        """The real REST client; raises KeyboardInterrupt on call `fail_after` (a Ctrl-C mid-job)."""

        def __init__(self) -> None:
            self.inner = connect(ModelTarget(MODEL_NAME), transport=transport, url=server.url,
                                 grpc_server=server.grpc)

        def predict(self, images):
            with lock:
                calls["n"] += 1
                if fail_after is not None and calls["n"] > fail_after:
                    raise KeyboardInterrupt
                if in_flight is not None:  # [now, most at once]
                    in_flight[0] += 1
                    in_flight[1] = max(in_flight)
            try:
                return self.inner.predict(images)
            finally:
                if in_flight is not None:
                    with lock:
                        in_flight[0] -= 1

        def close(self) -> None:
            self.inner.close()

    return Interrupting


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_npy_to_jsonl_in_order_with_the_models_answers(digits_server, digits, tmp_path, transport) -> None:
    from mlserve.tools.scoring import open_dataset, partial_paths, score

    source = tmp_path / "digits.npy"
    np.save(source, digits)
    out = tmp_path / "scores.jsonl"
    seen, in_flight = [], [0, 0]
    result = score(open_dataset(source), out,
                   _client_factory(digits_server, transport=transport, in_flight=in_flight),
                   batch_size=16, concurrency=3, progress=lambda done, total: seen.append((done, total)))
    assert 1 <= in_flight[1] <= 3  # bounded: never more requests in flight than --concurrency
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(300))
    expected = reference_probabilities(digits_server.base, digits[..., None].astype(np.float32) / 255)
    assert_same_digits([r["predicted"] for r in rows], expected)
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)
    assert result.images == result.scored == 300 and result.resumed == 0
    assert seen[-1] == (300, 300)
    assert not any(p.exists() for p in partial_paths(out))


def test_interrupted_job_leaves_no_output_and_resumes_to_the_same_file(digits_server, digits,
                                                                        tmp_path) -> None:
    from mlserve.tools.scoring import open_dataset, partial_paths, score

    source = tmp_path / "digits.npy"
    np.save(source, digits)
    whole = tmp_path / "whole.csv"
    score(open_dataset(source), whole, _client_factory(digits_server), batch_size=20, concurrency=2)

    out = tmp_path / "resumed.csv"
    partial, manifest = partial_paths(out)
    with pytest.raises(KeyboardInterrupt):
        score(open_dataset(source), out, _client_factory(digits_server, fail_after=6), batch_size=20,
              concurrency=2)
    assert not out.exists()
    kept = partial.read_text().splitlines()
    assert kept[0].startswith("index,name,predicted,confidence,p0")
    assert 1 < len(kept) < 301  # some complete rows, not all
    with open(partial, "a") as f:
        f.write("999,half-written-row")  # what a kill mid-write leaves
    result = score(open_dataset(source), out, _client_factory(digits_server), batch_size=20, concurrency=2)
    assert result.resumed == len(kept) - 1 and result.scored == 300 - result.resumed
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists() and not manifest.exists()
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 300 and rows[-1]["index"] == "299"


def test_partial_file_of_another_job_and_existing_output_are_refused(digits_server, digits,
                                                                     tmp_path) -> None:
    from mlserve.errors import ConflictError
    from mlserve.tools.scoring import open_dataset, partial_paths, score

    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, digits)
    np.save(second, digits[:100])
    out = tmp_path / "scores.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score(open_dataset(first), out, _client_factory(digits_server, fail_after=2), batch_size=10,
              concurrency=1)
    partial, _ = partial_paths(out)
    before = partial.read_bytes()
    with pytest.raises(ConflictError, match="another scoring job"):
        score(open_dataset(second), out, _client_factory(digits_server), batch_size=10)
    assert partial.read_bytes() == before  # refused, untouched
    score(open_dataset(first), out, _client_factory(digits_server), batch_size=10)
    with pytest.raises(ConflictError, match="already exists"):
        score(open_dataset(first), out, _client_factory(digits_server), batch_size=10)


def test_cli_scores_a_folder_of_images_to_csv(digits_server, digits, tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(digits[i]).save(folder / f"digit-{i:02d}.png")
    out = tmp_path / "scores.csv"
    proc = run_cli("score", str(folder), "--output", str(out), "--url", digits_server.url,
                   "--batch-size", "5", "--concurrency", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 12 and summary["images_per_s"] > 0
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == [f"digit-{i:02d}.png" for i in range(12)]
    expected = reference_probabilities(digits_server.base, digits[:12, ..., None].astype(np.float32) / 255)
    assert_same_digits([int(r["predicted"]) for r in rows], expected)
    # the alias of one release: the same work, and it says what the command is now
    again = run_cli("predict", "--score", str(folder), "--output", str(out), "--url", digits_server.url)
    assert again.returncode == 6
    assert "already exists" in again.stderr and "Hint:" in again.stderr
    assert "mlserve score" in again.stderr


def test_ctrl_c_leaves_no_output_file(digits_server, digits, tmp_path) -> None:
    source = tmp_path / "many.npy"
    np.save(source, np.tile(digits, (100, 1, 1)))  # 30,000 digits: long enough to interrupt
    out = tmp_path / "scores.jsonl"
    partial = out.with_name(out.name + ".partial")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "mlserve", "score", str(source),
                             "--output", str(out), "--url", digits_server.url, "--batch-size", "8",
                             "--concurrency", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and partial.stat().st_size > 0:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert not out.exists()
    assert partial.exists()
