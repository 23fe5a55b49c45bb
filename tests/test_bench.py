"""`mlserve bench` against a real embedded server subprocess, and the load generator's own ceiling."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlserve.bench import CannedServer, cost_per_million, run_bench
from mlserve.client import ModelTarget
from mlserve.plots import BENCH_FIGURE_PX
from predict_helpers import free_port, parse_json_stdout, run_cli

pytestmark = pytest.mark.slow


def test_bench_table_at_two_levels(digits_server) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--concurrency", "1,2", "--duration", "1",
                   "--warmup", "0.2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split("│")[1].strip() == "1" for line in lines if line.startswith("│"))
    assert any(line.split("│")[1].strip() == "2" for line in lines if line.startswith("│"))
    assert "p99" in proc.stdout


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


def test_self_test_ceiling_is_high() -> None:
    proc = run_cli("bench", "--self-test", "-c", "1,4", "--duration", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["self_test"] is True
    # a loose floor: the measured ceiling is tens of thousands per second (docs/bench.md)
    assert all(level["requests_per_s"] > 1000 and level["errors"] == 0 for level in report["levels"])


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
