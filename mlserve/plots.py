"""Figures saved as PNG files. matplotlib is imported inside each function (fast `mlserve --help`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, works on a headless server
    import matplotlib.pyplot as plt

    return plt


def plot_training_history(history: dict[str, list[float]], path: str | os.PathLike) -> Path:
    """Loss and accuracy per epoch (and their val_ twins when present), side by side; returns the path."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in ("loss", "accuracy") if m in history] or sorted(
        k for k in history if not k.startswith("val_"))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(5 * max(len(metrics), 1), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, marker="o", label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- mlserve predict / mlserve bench -------------------------------------------------------------
PREDICTION_TILE_PX = (250, 320)  # width, height of one digit's tile in plot_predictions' PNG
BENCH_FIGURE_PX = (1200, 450)


def plot_predictions(images: Any, predicted: list[int], labels: list[int | None],
                     path: str | os.PathLike, *, names: list[str] | None = None) -> Path:
    """The course figure: digits side by side, each titled "Prediction: d / True Label: t".

    Titles are green when right, red when wrong, black when the label is unknown. The PNG is
    exactly `PREDICTION_TILE_PX` per digit (no tight bounding box), so its size is predictable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    n = len(images)
    dpi = 100
    fig, axes = plt.subplots(1, n, figsize=(PREDICTION_TILE_PX[0] * n / dpi, PREDICTION_TILE_PX[1] / dpi),
                             dpi=dpi, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(images[i].reshape(images[i].shape[0], images[i].shape[1]), cmap="gray",
                  vmin=0.0, vmax=1.0)
        ax.axis("off")
        label = labels[i] if i < len(labels) else None
        if label is None:
            title, colour = f"Prediction: {predicted[i]}\nTrue Label: ?", "black"
        else:
            title = f"Prediction: {predicted[i]}\nTrue Label: {label}"
            colour = "green" if predicted[i] == label else "red"
        if names:
            title += f"\n{names[i]}"
        ax.set_title(title, color=colour, fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.78 if names else 0.82, wspace=0.1)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_bench(levels: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Latency percentiles and throughput per concurrency level, side by side.

    `levels` are BenchLevel.as_dict() rows: concurrency, p50_ms, p90_ms, p99_ms, max_ms,
    requests_per_s, images_per_s.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(BENCH_FIGURE_PX[0] / dpi, BENCH_FIGURE_PX[1] / dpi),
                                   dpi=dpi)
    xs = [str(level["concurrency"]) for level in levels]
    width = 0.2
    for k, (key, name) in enumerate((("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"),
                                     ("max_ms", "max"))):
        values = [level.get(key) or 0.0 for level in levels]
        lat.bar([i + (k - 1.5) * width for i in range(len(xs))], values, width, label=name)
    lat.set_xticks(range(len(xs)), xs)
    lat.set_xlabel("concurrency (requests in flight)")
    lat.set_ylabel("latency (ms)")
    lat.set_title("Latency percentiles")
    lat.legend()
    lat.grid(axis="y", alpha=0.3)
    conc = [level["concurrency"] for level in levels]
    thr.plot(conc, [level["images_per_s"] for level in levels], marker="o", label="images/s")
    thr.plot(conc, [level["requests_per_s"] for level in levels], marker="s", label="requests/s")
    if len(conc) > 1 and max(conc) / max(min(conc), 1) >= 8:
        thr.set_xscale("log", base=2)
    thr.set_xticks(conc, [str(c) for c in conc])
    thr.set_xlabel("concurrency (requests in flight)")
    thr.set_ylabel("per second")
    thr.set_title("Throughput vs concurrency")
    thr.legend()
    thr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
