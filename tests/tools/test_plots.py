"""Figures: each is a valid PNG of a predictable size, drawn from real data (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlserve.model.data import load_sample
from mlserve.tools.plots import (BENCH_FIGURE_PRICED_PX, BENCH_FIGURE_PX, PREDICTION_TILE_PX,
                           plot_bench, plot_predictions, plot_training_history,
                           prediction_figure_px)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
        return image.size


def test_prediction_grid_wraps_at_ten_per_row(tmp_path: Path) -> None:
    sample = load_sample()
    images = sample.x_test[:23] / 255.0
    labels = [int(v) for v in sample.y_test[:23]]
    path = plot_predictions(images, labels, labels, tmp_path / "grid.png",
                            confidences=[0.9] * 23)
    assert prediction_figure_px(23) == (PREDICTION_TILE_PX[0] * 10, PREDICTION_TILE_PX[1] * 3)
    assert _png_size(path) == prediction_figure_px(23)
    assert prediction_figure_px(3) == (PREDICTION_TILE_PX[0] * 3, PREDICTION_TILE_PX[1])


def test_training_figure_for_one_epoch(tmp_path: Path) -> None:
    path = plot_training_history({"loss": [0.61], "accuracy": [0.84]}, tmp_path / "train.png",
                                 title="digits_model", test_accuracy=0.899, test_loss=0.35)
    assert _png_size(path) == (1000, 400)
    # One epoch is drawn (a marker with its value), not an empty frame: many non-white pixels.
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert (pixels < 128).sum() > 2000


def _level(concurrency: int, rate: float, batch: int, cost: float | None) -> dict:
    return {"concurrency": concurrency, "requests": int(rate * 5), "images": int(rate * 5) * batch,
            "requests_per_s": rate, "images_per_s": rate * batch, "p50_ms": 1.0, "p90_ms": 2.0,
            "p99_ms": 3.0, "max_ms": 4.0, "cost_per_million": cost}


def test_bench_figure_sizes(tmp_path: Path) -> None:
    plain = plot_bench([_level(c, 1000.0 + c, 1, None) for c in (1, 8, 32)], tmp_path / "b1.png",
                       title="batch 1")
    assert _png_size(plain) == BENCH_FIGURE_PX
    priced = plot_bench([_level(c, 300.0 + c, 32, 0.05 / c) for c in (1, 8, 32)],
                        tmp_path / "b32.png", title="batch 32, priced")
    assert _png_size(priced) == BENCH_FIGURE_PRICED_PX
