"""`mlserve compare`: every format measured (size, accuracy, latency, served figures, memory), as a
table, as JSON and as a PNG; the embedded servers it starts are gone afterwards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import run_cli
from support.models import MODEL_NAME, train_tiny_model as train_tiny
from support.tflite import export_with_tflite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    keras_path = train_tiny(root)
    base = root / "models" / MODEL_NAME
    export_with_tflite(keras_path, base, 1, None)
    return base


def _children_serving(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mlserve.server" in text and marker in text:
            found.append(text)
    return found


def test_json_and_plot_cover_every_measure(base: Path, tmp_path: Path) -> None:
    plot = tmp_path / "compare.png"
    proc = run_cli("compare", "--model-base-path", str(base), "--formats", "savedmodel,int8",
                   "--iterations", "20", "--duration", "0.3", "--connections", "2", "--json",
                   "--plot-file", str(plot), timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # nothing else on stdout
    assert f"Plot: {plot}" in proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {f["format"]: f for f in data["formats"]}
    assert list(rows) == ["savedmodel", "int8"]
    assert data["test_images"] == 1000
    for row in rows.values():
        assert 0.5 < row["test_accuracy"] <= 1
        assert set(row["latency_ms"]) == {"b1_p50", "b1_p99", "b64_p50", "b64_p99"}
        assert all(v > 0 for v in row["latency_ms"].values())
        assert row["latency_ms"]["b1_p50"] <= row["latency_ms"]["b1_p99"]
        assert row["served_p50_ms"] > 0 and row["served_requests_per_s"] > 0
        assert row["server_rss_mb"] > 0 and row["runtime_rss_mb"] > 0
    assert rows["int8"]["size_bytes"] * 3 < rows["savedmodel"]["size_bytes"]
    assert abs(rows["int8"]["test_accuracy"] - rows["savedmodel"]["test_accuracy"]) < 0.02
    # LiteRT alone, without TensorFlow, is a fraction of the SavedModel's runtime in memory
    assert rows["int8"]["runtime_rss_mb"] < rows["savedmodel"]["runtime_rss_mb"] / 2
    assert not _children_serving("mlserve-compare-"), "every embedded server was stopped"


def test_table_without_serving(base: Path) -> None:
    proc = run_cli("compare", "--model-base-path", str(base), "--formats", "float16",
                   "--iterations", "10", "--no-serve", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "float16" in proc.stdout and "accuracy" in proc.stdout
    assert "float16: " not in proc.stdout  # progress went to stderr
    assert "float16: in-process latency" in proc.stderr


def test_unknown_format_is_a_usage_error(base: Path) -> None:
    proc = run_cli("compare", "--model-base-path", str(base), "--formats", "int4")
    assert proc.returncode == 2
    assert "unknown format" in proc.stderr and "savedmodel,float32" in proc.stderr
