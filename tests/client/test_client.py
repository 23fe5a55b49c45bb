"""The REST and gRPC clients against a real embedded server subprocess, and their error mapping."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from mlserve.client import ModelTarget, connect
from mlserve.errors import (NotFoundError, ServerResponseError, ServerUnreachableError, UsageError,
                            WaitTimeoutError)
from support.models import MODEL_NAME, reference_probabilities
from support.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from mlserve.model.data import load_mnist, prepare_images

    return prepare_images(load_mnist("sample").x_test[:5])


@pytest.mark.parametrize("transport,columnar", [("rest", False), ("rest", True), ("grpc", False)],
                         ids=["rest-rows", "rest-columnar", "grpc"])
def test_predictions_match_the_model_run_in_process(digits_server, images, transport, columnar) -> None:
    client = connect(ModelTarget(MODEL_NAME, version=1), transport=transport, url=digits_server.url,
                     grpc_server=digits_server.grpc, columnar=columnar)
    try:
        got = client.predict(images)
    finally:
        client.close()
    expected = reference_probabilities(digits_server.base, images)
    assert got.shape == (5, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_unknown_version_lists_the_versions_the_server_has(digits_server, images, transport) -> None:
    client = connect(ModelTarget(MODEL_NAME, version=7), transport=transport, url=digits_server.url,
                     grpc_server=digits_server.grpc)
    with pytest.raises(NotFoundError) as e:
        client.predict(images[:1])
    assert "version 7" in e.value.message and "1 (AVAILABLE)" in e.value.message
    assert e.value.hint == "use --version 1"


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_unknown_model_is_not_found(digits_server, images, transport) -> None:
    client = connect(ModelTarget("no_such_model"), transport=transport, url=digits_server.url,
                     grpc_server=digits_server.grpc)
    with pytest.raises(NotFoundError, match="no_such_model"):
        client.predict(images[:1])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_server_errors_carry_the_servers_message(digits_server, images, transport) -> None:
    client = connect(ModelTarget(MODEL_NAME, signature="no_such_signature"), transport=transport,
                     url=digits_server.url, grpc_server=digits_server.grpc)
    with pytest.raises(ServerResponseError, match="no_such_signature"):
        client.predict(images[:1])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_model_status_reports_available(digits_server, transport) -> None:
    client = connect(ModelTarget(MODEL_NAME), transport=transport, url=digits_server.url,
                     grpc_server=digits_server.grpc)
    assert [(v.version, v.state) for v in client.model_status()] == [(1, "AVAILABLE")]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_nothing_listening_is_unreachable(images, transport) -> None:
    port = free_port()  # bound then released: nothing listens there
    client = connect(ModelTarget(MODEL_NAME), transport=transport, url=f"http://127.0.0.1:{port}",
                     grpc_server=f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(ServerUnreachableError) as e:
        client.predict(images[:1])
    assert "mlserve serve" in e.value.hint


def test_a_silent_server_times_out_within_the_bound(images) -> None:
    # A real socket that accepts and never answers: the one server behaviour no real server shows.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    client = connect(ModelTarget(MODEL_NAME), url=f"http://127.0.0.1:{listener.getsockname()[1]}",
                     timeout=0.5)
    try:
        with pytest.raises(WaitTimeoutError, match="0.5 s"):
            client.predict(images[:1])
    finally:
        listener.close()


def test_version_and_label_are_exclusive() -> None:
    with pytest.raises(UsageError):
        ModelTarget(MODEL_NAME, version=1, label="stable")


def test_grpc_client_loads_without_tensorflow_and_tensorflow_still_imports_after() -> None:
    probe = r"""
import json, sys
import numpy as np
from mlserve.client import ModelTarget
from mlserve.client.grpc import load_protos, predict_request
request = predict_request(ModelTarget("m", version=2), np.full((2, 28, 28, 1), 0.5, np.float32), "Conv1_input")
before = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
import tensorflow as tf  # a later real import must work normally
values = tf.make_ndarray(request.inputs["Conv1_input"])
print(json.dumps({"before": before, "shape": list(values.shape), "mean": float(values.mean()),
                  "version": request.model_spec.version.value}))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"before": [], "shape": [2, 28, 28, 1], "mean": 0.5, "version": 2}
