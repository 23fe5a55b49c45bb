"""`mlserve bench` against a real embedded server subprocess, and the load generator's own ceiling."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlserve.bench import CannedServer, cost_per_million, run_bench
from mlserve.client import ModelTarget
from mlserve.tools.plots import BENCH_FIGURE_PX
from support.cli import parse_json_stdout, run_cli
from support.ports import free_port

pytestmark = pytest.mark.slow


def test_bench_at_two_levels(digits_server) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--concurrency", "1,2", "--duration", "1",
                   "--warmup", "0.2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 2]
    assert report["interrupted"] is False and report["transport"] == "rest"
    assert all(lv["requests"] > 0 and lv["errors"] == 0 and lv["p99_ms"] > 0 for lv in report["levels"])
    table = run_cli("bench", "--url", digits_server.url, "-c", "1", "--requests", "5", "--warmup", "0")
    assert table.returncode == 0 and "p99" in table.stdout  # the table names its columns


def test_bench_json_grpc_by_request_count_with_cost(digits_server) -> None:
    proc = run_cli("bench", "--grpc", "--grpc-server", digits_server.grpc, "--concurrency", "2",
                   "--requests", "40", "--batch-size", "4", "--warmup", "0.2", "--price-per-hour", "2.5",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["transport"] == "grpc" and report["batch_size"] == 4
    (level,) = report["levels"]
    assert level["requests"] == 40 and level["images"] == 160 and level["errors"] == 0
    assert 0 < level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"] <= level["max_ms"]
    assert level["cost_per_million"] == pytest.approx(cost_per_million(2.5, level["images_per_s"]))


def test_bench_plot_png(digits_server, tmp_path) -> None:
    png = tmp_path / "bench.png"
    proc = run_cli("bench", "--url", digits_server.url, "--columnar", "-c", "1,2", "--requests", "20",
                   "--warmup", "0", "--plot-file", str(png))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"Plot: {png}"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == BENCH_FIGURE_PX


def test_errors_are_counted_apart_from_the_figures() -> None:
    # The canned server fails every 3rd request on purpose: a real model server cannot be made to.
    images = np.zeros((1, 28, 28, 1), np.float32)
    with CannedServer(batch_size=1, error_every=3) as server:
        report = run_bench(images, ModelTarget("canned"), url=server.url, concurrency=[2],
                           duration=None, requests=300, warmup=0)
    (level,) = report.levels
    assert level.requests + level.errors == 300
    assert level.errors == pytest.approx(100, abs=2)  # the preflight request took one slot
    assert level.error_messages == ["HTTP 500: canned error for testing"]


def test_bench_cli_shows_error_messages() -> None:
    with CannedServer(batch_size=1, error_every=2) as server:
        proc = run_cli("bench", "--url", server.url, "--model", "canned", "-c", "1", "--requests", "10",
                       "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    assert "canned error for testing" in proc.stdout


def test_self_test_measures_the_canned_server() -> None:
    proc = run_cli("bench", "--self-test", "-c", "1,4", "--duration", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["self_test"] is True and "canned" in report["model"]
    # how high the ceiling is belongs to docs/bench.md, not to a test: here, that it measures
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4]
    assert all(lv["requests"] > 0 and lv["errors"] == 0 for lv in report["levels"])


def test_ctrl_c_keeps_the_levels_measured_and_exits_130(tmp_path) -> None:
    """SIGINT to a real `mlserve bench` while its 2nd level runs: the 1st level is reported,
    no traceback, exit 130 (docs/exit-codes.md)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    err = tmp_path / "bench.stderr"
    # The canned server answers the preflight and level 1's 20 requests, then hangs: level 2
    # waits (up to --timeout 600) until the Ctrl-C.
    with CannedServer(hold_after=21) as server, open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "bench", "--url", server.url, "--model", "canned",
             "-c", "1,2", "--requests", "20", "--warmup", "0", "--timeout", "600", "--json"],
            stdout=subprocess.PIPE, stderr=sink, text=True, env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + 120
        while "Measured concurrency 1" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    stderr = err.read_text()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "exception was never retrieved" not in stderr
    assert "Interrupted: 1 of 2 levels measured." in stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True and [lv["concurrency"] for lv in report["levels"]] == [1]


def test_unreachable_server_exits_7() -> None:
    proc = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}", "-c", "1", "--duration", "0.2")
    assert proc.returncode == 7 and "mlserve serve" in proc.stderr


def test_unknown_model_exits_4(digits_server) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--model", "nope", "-c", "1", "--duration", "0.2")
    assert proc.returncode == 4


@pytest.mark.parametrize("args", [["--duration", "1", "--requests", "5"], ["--concurrency", "0"],
                                  ["--concurrency", "a,b"], ["--duration", "601"], ["--batch-size", "0"]])
def test_bounds_are_usage_errors(args) -> None:
    proc = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}", *args)
    assert proc.returncode == 2, proc.stderr
