"""`mlserve bench --rate --repeat F`: a fraction F of requests repeat an input, the rest are fresh.

The prepared bodies are decoded and compared, and the canned server (`--record`) hashes every body
it was sent, so the distinct inputs are counted on the receiving end, not taken from our own plan.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from mlserve.bench import CannedServer
from mlserve.bench.bodies import (MAX_DISTINCT_INPUTS, BodyTemplate, check_pool, fresh_needed,
                                  plan_inputs)
from mlserve.bench.openloop import run_open_loop
from mlserve.client import v2
from mlserve.client.rest import predict_body
from mlserve.errors import UsageError
from support.cli import parse_json_stdout, run_cli
from support.ports import free_port


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((n, 28, 28, 1), dtype=np.float32)


def _v1(images: np.ndarray) -> bytes:
    return predict_body(images, "serving_default")


def _v2(binary: bool):
    def encode(images: np.ndarray) -> bytes:
        return v2.infer_body({"Conv1_input": images}, binary=binary, outputs=["softmax"])[0]
    return encode


def _decoded(template: BodyTemplate, i: int | None, encoder: str) -> np.ndarray:
    body = template.body(i)
    if encoder == "v1":
        return np.asarray(json.loads(body)["instances"], dtype=np.float32)
    if encoder == "v2":
        return np.asarray(json.loads(body)["inputs"][0]["data"], dtype=np.float32)
    header = json.loads(body[:len(template.pre)])  # the JSON header, then the raw tensor
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(body) - len(template.pre)
    return np.frombuffer(body[len(template.pre):], dtype="<f4")


@pytest.mark.parametrize("encoder", ["v1", "v2", "v2-binary"])
def test_fresh_bodies_differ_from_the_base_in_the_first_pixel_only(encoder: str) -> None:
    images = _images()
    encode = {"v1": _v1, "v2": _v2(False), "v2-binary": _v2(True)}[encoder]
    template = BodyTemplate.build(encode, images, text=encoder != "v2-binary")
    assert template.base == encode(images)
    base = _decoded(template, None, encoder).reshape(-1)
    assert np.array_equal(base, images.reshape(-1))
    seen = set()
    lengths = set()
    for i in (0, 1, 2, 12345, MAX_DISTINCT_INPUTS - 1):
        body = template.body(i)
        lengths.add(len(body))
        fresh = _decoded(template, i, encoder).reshape(-1)
        assert np.array_equal(fresh[1:], base[1:])  # everything but the first pixel is the base's
        assert 0.1 <= fresh[0] < 0.11 and fresh[0] != base[0]
        seen.add(fresh[0].tobytes())  # distinct as float32: what the model is given
    assert len(seen) == 5 and len(lengths) == 1  # one Content-Length for every fresh body


@pytest.mark.parametrize("repeat", [0.0, 0.5, 0.95, 1.0])
def test_plan_repeats_the_asked_fraction_and_never_reuses_a_fresh_input(repeat: float) -> None:
    first = plan_inputs(1000, repeat, seed=1, first_fresh=0)
    second = plan_inputs(1000, repeat, seed=2, first_fresh=first.next_fresh)
    for plan in (first, second):
        assert sum(plan.repeats) == int(1000 * repeat)
        sent: set[int] = {-1}
        for k, again in zip(plan.inputs, plan.repeats):
            assert (k in sent) == again  # a repeat is of an input sent before; a fresh one is new
            sent.add(k)
    fresh = [k for p in (first, second) for k, again in zip(p.inputs, p.repeats) if not again]
    assert len(fresh) == len(set(fresh)) == fresh_needed([1000, 1000], repeat)  # no level reuses one
    assert plan_inputs(10, 0.5, 0, 0).inputs == plan_inputs(10, 0.5, 0, 0).inputs  # seeded


def test_a_pool_past_the_cap_is_refused_before_any_request() -> None:
    assert check_pool([MAX_DISTINCT_INPUTS], 0.0) == MAX_DISTINCT_INPUTS
    with pytest.raises(UsageError, match="distinct inputs"):
        check_pool([MAX_DISTINCT_INPUTS, 10], 0.0)
    assert check_pool([4 * MAX_DISTINCT_INPUTS], 0.75) == MAX_DISTINCT_INPUTS


@pytest.mark.slow
@pytest.mark.parametrize("repeat", [0.0, 0.5, 0.95])
def test_the_server_receives_the_fraction_of_repeats(tmp_path, repeat: float) -> None:
    template = BodyTemplate.build(_v1, _images(1), text=True)
    record = tmp_path / "bodies.txt"
    with CannedServer(record=str(record)) as server:
        levels = run_open_loop(server.url, "/v1/models/canned:predict", template, rates=[400, 400],
                               duration=0.5, arrival="constant", repeat=repeat)
    received = record.read_text().split()
    assert len(received) == sum(lv.sent for lv in levels) == 400
    for lv in levels:
        assert lv.ok == lv.sent == 200 and lv.repeat == repeat
        assert lv.repeat_fraction == pytest.approx(repeat, abs=0.01)
    counts = Counter(received)
    repeats = sum(n - 1 for n in counts.values())  # every send of an input after its first
    # The base body counts as sent before the run, so a repeat of it is not new either.
    base_sends = counts.get(hashlib.sha256(template.base).hexdigest(), 0)
    assert repeats + min(base_sends, 1) == pytest.approx(400 * repeat, abs=4)
    assert len(counts) >= 400 * (1 - repeat)  # fresh inputs, distinct across both levels


def test_repeat_needs_a_template_and_a_fraction() -> None:
    with pytest.raises(UsageError, match="template"):
        run_open_loop("http://127.0.0.1:1", "/x", b"{}", rates=[10], duration=0.1, repeat=0.5)
    with pytest.raises(UsageError, match="fraction"):
        run_open_loop("http://127.0.0.1:1", "/x", b"{}", rates=[10], duration=0.1, repeat=-0.1)


@pytest.mark.slow
def test_self_test_reports_the_repeat_fraction() -> None:
    proc = run_cli("bench", "--self-test", "--rate", "200", "--duration", "0.5", "--arrival", "constant",
                   "--repeat", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["repeat"] == 0.5
    (lv,) = report["levels"]
    assert lv["sent"] == lv["ok"] == 100 and lv["repeated"] == 50 and lv["repeat_fraction"] == 0.5
    table = run_cli("bench", "--self-test", "--rate", "100", "--duration", "0.2", "--repeat", "0")
    assert table.returncode == 0 and "0% of requests repeating" in table.stdout


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--protocol", "v2"], ["--protocol", "v2", "--binary"]])
def test_fresh_inputs_are_answered_by_the_model_server(digits_server, extra) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--rate", "40", "--duration", "0.5",
                   "--arrival", "constant", "--repeat", "0", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    (lv,) = parse_json_stdout(proc)["levels"]
    assert lv["sent"] == lv["ok"] == 20 and lv["errors"] == 0 and lv["repeated"] == 0


@pytest.mark.parametrize("args", [["--rate", "10", "--repeat", "1.5"], ["--rate", "10", "--repeat", "-0.1"],
                                  ["--rate", "10", "--repeat", "nan"], ["--repeat", "0.5"],
                                  ["--rate", "1000000", "--duration", "2", "--repeat", "0"]])
def test_bad_repeats_are_usage_errors(args) -> None:
    proc = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Error:" in proc.stderr and "Hint:" in proc.stderr
