"""The readiness probe, run by bash as the kubelet would run it, against servers that answer like
TF Serving: ready only when a version is AVAILABLE, although GET /v1/models/<m> answers 200 earlier."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mlserve.deploy.probes import readiness_command
from support.ports import free_port
from support.models import MODEL_NAME
from support.paths import STANDINS


def _probe(model: str, port: int) -> int:
    return subprocess.run(readiness_command(model, port), capture_output=True, timeout=10).returncode


def _stub(tmp_path: Path, ready_delay: float) -> Iterator[int]:
    """tests/standins/stub_server.py: TF Serving's status JSON, LOADING until `ready_delay` passes."""
    port = free_port()
    log = (tmp_path / f"stub-{port}.log").open("w")
    child = subprocess.Popen([sys.executable, str(STANDINS / "stub_server.py"), f"--port={free_port()}",
                              f"--rest_api_port={port}", f"--model_name={MODEL_NAME}"], stdout=log,
                             stderr=subprocess.STDOUT, env={**os.environ, "MLSERVE_STANDIN_READY_DELAY": str(ready_delay)})
    try:
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}", timeout=1)
                break
            except requests.ConnectionError:
                assert child.poll() is None, (tmp_path / f"stub-{port}.log").read_text()
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        child.wait(10)
        log.close()


@pytest.fixture
def loading_port(tmp_path: Path) -> Iterator[int]:
    yield from _stub(tmp_path, ready_delay=3600)


@pytest.fixture
def available_port(tmp_path: Path) -> Iterator[int]:
    yield from _stub(tmp_path, ready_delay=0)


def test_loading_model_answers_200_but_is_not_ready(loading_port: int) -> None:
    status = requests.get(f"http://127.0.0.1:{loading_port}/v1/models/{MODEL_NAME}", timeout=5)
    assert status.status_code == 200  # what an httpGet probe would accept
    assert status.json()["model_version_status"][0]["state"] == "LOADING"
    assert _probe(MODEL_NAME, loading_port) != 0


def test_available_model_is_ready(available_port: int) -> None:
    assert _probe(MODEL_NAME, available_port) == 0
    assert _probe("other_model", available_port) != 0  # 404: not this server's model


def test_closed_port_is_not_ready() -> None:
    assert _probe(MODEL_NAME, free_port()) != 0


@pytest.mark.slow
def test_ready_against_the_real_embedded_server(digits_server) -> None:
    """mlserve's TF-Serving-compatible server with a real exported model (real TensorFlow)."""
    port = int(digits_server.url.rsplit(":", 1)[1])
    assert _probe(MODEL_NAME, port) == 0


def test_docs_show_the_probe_as_written() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    assert readiness_command(MODEL_NAME, 8501)[2] in docs
