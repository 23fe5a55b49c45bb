"""`mlserve predict --input NAME=FILE.npy` / `--body FILE.json`: any model's tensors, checked against
the served signature's metadata before anything is sent, over REST and gRPC, against a real server."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support.cli import parse_json_stdout, run_cli
from support.models import reference_probabilities

pytestmark = pytest.mark.slow


def _flags(server, transport: str) -> list[str]:
    if transport == "grpc":
        return ["--grpc", "--grpc-server", server.grpc]
    return ["--url", server.url]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_named_arrays_and_bodies_match_the_model(digits_server, tmp_path, transport) -> None:
    images = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", images)
    expected = reference_probabilities(digits_server.base, images)
    proc = run_cli("predict", "--input", f"Conv1_input={tmp_path / 'x.npy'}", "--json",
                   *_flags(digits_server, transport))
    assert proc.returncode == 0, proc.stderr
    answer = parse_json_stdout(proc)
    assert answer["signature"] == "serving_default"
    np.testing.assert_allclose(answer["outputs"]["softmax"], expected, rtol=1e-4, atol=1e-6)

    # the same images as a TF Serving row-format body, and as a columnar one naming its input
    for doc in ({"instances": images.tolist()}, {"inputs": {"Conv1_input": images[:1].tolist()}}):
        (tmp_path / "body.json").write_text(json.dumps(doc))
        proc = run_cli("predict", "--body", str(tmp_path / "body.json"), "--json", *_flags(digits_server, transport))
        assert proc.returncode == 0, proc.stderr
        got = np.asarray(parse_json_stdout(proc)["outputs"]["softmax"])
        np.testing.assert_allclose(got, expected[: len(got)], rtol=1e-4, atol=1e-6)

    # integers cast to the signature's float; the table names the output
    np.save(tmp_path / "ints.npy", np.ones((1, 28, 28, 1), dtype=np.int64))
    proc = run_cli("predict", "--input", f"Conv1_input={tmp_path / 'ints.npy'}", *_flags(digits_server, transport))
    assert proc.returncode == 0, proc.stderr
    assert "softmax" in proc.stdout and "[1, 10]" in proc.stdout


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_mismatches_are_named_before_anything_is_sent(digits_server, tmp_path, transport) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((2, 784), np.float32))
    np.save(tmp_path / "text.npy", np.array([["a"]]))
    np.save(tmp_path / "ok.npy", np.zeros((1, 28, 28, 1), np.float32))
    (tmp_path / "two.json").write_text(json.dumps({"instances": [[1]], "inputs": [[1]]}))
    cases = [
        (["--input", f"Conv1_input={tmp_path / 'flat.npy'}"], 5, "has shape [2, 784], the signature takes [-1, 28, 28, 1]"),
        (["--input", f"pixels={tmp_path / 'ok.npy'}"], 5, "has no input 'pixels'"),
        (["--input", f"Conv1_input={tmp_path / 'text.npy'}"], 5, "the signature takes DT_FLOAT"),
        (["--input", f"Conv1_input={tmp_path / 'nothing.npy'}"], 5, "no file"),
        (["--input", "Conv1_input"], 2, "is not NAME=FILE.npy"),
        (["--body", str(tmp_path / "two.json")], 5, "exactly one of 'instances'"),
        (["--input", f"Conv1_input={tmp_path / 'ok.npy'}", "--signature", "nope"], 4, "no signature 'nope'"),
        (["--input", f"Conv1_input={tmp_path / 'ok.npy'}", "--plot"], 2, "--plot draws digit images"),
    ]
    for args, code, words in cases:
        proc = run_cli("predict", *args, *_flags(digits_server, transport))
        assert proc.returncode == code, (args, proc.stderr)
        assert words in proc.stderr and "Hint:" in proc.stderr, (args, proc.stderr)
        assert proc.stdout == ""
