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


def plot_training_history(history: dict[str, list[float]], path: str | os.PathLike, *,
                          title: str | None = None, test_accuracy: float | None = None,
                          test_loss: float | None = None) -> Path:
    """Loss and accuracy per epoch (and their val_ twins), side by side, with the test figures.

    Each epoch is a labelled marker, so a one-epoch run shows one readable point with its value
    rather than a lone dot; the test accuracy and loss are dashed lines with their values.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in ("loss", "accuracy") if m in history] or sorted(
        k for k in history if not k.startswith("val_"))
    tests = {"accuracy": test_accuracy, "loss": test_loss}
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(5 * max(len(metrics), 1), 4),
                             squeeze=False)
    epochs_run = max((len(v) for v in history.values() if v), default=0)
    for ax, metric in zip(axes[0], metrics):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                epochs = list(range(1, len(values) + 1))
                ax.plot(epochs, values, marker="o", markersize=7, label=f"{label} (last {values[-1]:.4f})")
                if len(values) <= 10:  # few points: write each value beside its marker
                    for x, y in zip(epochs, values):
                        ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 8),
                                    ha="center", fontsize=8)
        test = tests.get(metric)
        if test is not None:
            ax.axhline(test, color="tab:red", linestyle="--", label=f"test {test:.4f}")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, max(epochs_run, 1) + 0.5)
        if epochs_run <= 20:
            ax.set_xticks(range(1, max(epochs_run, 1) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shown = [v for k in (metric, f"val_{metric}") for v in history.get(k) or []]
        shown += [test] if test is not None else []
        if metric == "accuracy" and shown:  # room below the lowest point; 1.0 is the ceiling
            ax.set_ylim(max(0.0, min(shown) - 0.1 * max(1.0 - min(shown), 0.1)), 1.0)
        elif shown:  # losses from 0, with room above the highest point for its label
            ax.set_ylim(0.0, max(shown) * 1.2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    heading = title or "Training"
    heading += f" ({epochs_run} epoch{'s' if epochs_run != 1 else ''})"
    if test_accuracy is not None:
        heading += f": test accuracy {test_accuracy:.4f}"
    fig.suptitle(heading)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- mlserve predict / mlserve bench -------------------------------------------------------------
PREDICTION_TILE_PX = (250, 320)  # width, height of one digit's tile in plot_predictions' PNG
PREDICTIONS_PER_ROW = 10
BENCH_FIGURE_PX = (1200, 450)  # latency and throughput
BENCH_FIGURE_PRICED_PX = (1650, 450)  # and the cost of a million predictions, with --price-per-hour


def prediction_figure_px(count: int) -> tuple[int, int]:
    """The size of plot_predictions' PNG for `count` digits: rows of up to 10 tiles."""
    columns = max(1, min(count, PREDICTIONS_PER_ROW))
    rows = max(1, -(-count // PREDICTIONS_PER_ROW))
    return PREDICTION_TILE_PX[0] * columns, PREDICTION_TILE_PX[1] * rows


def plot_predictions(images: Any, predicted: list[int], labels: list[int | None],
                     path: str | os.PathLike, *, names: list[str] | None = None,
                     confidences: list[float] | None = None) -> Path:
    """The course figure: each digit titled "Prediction: d (confidence)" / "True Label: t".

    Rows of up to 10 digits. Titles are green when right, red when wrong, black when the label is
    unknown. The PNG is exactly `prediction_figure_px(n)` (no tight bounding box).
    """
    plt = _pyplot()
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    n = len(images)
    columns = max(1, min(n, PREDICTIONS_PER_ROW))
    rows = max(1, -(-n // PREDICTIONS_PER_ROW))
    width, height = prediction_figure_px(n)
    dpi = 100
    fig, axes = plt.subplots(rows, columns, figsize=(width / dpi, height / dpi), dpi=dpi,
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].reshape(images[i].shape[0], images[i].shape[1]), cmap="gray",
                  vmin=0.0, vmax=1.0)
        label = labels[i] if i < len(labels) else None
        confidence = f" ({confidences[i]:.0%})" if confidences is not None else ""
        title = f"Prediction: {predicted[i]}{confidence}\nTrue Label: {'?' if label is None else label}"
        colour = "black" if label is None else ("green" if predicted[i] == label else "red")
        if names:
            title += f"\n{names[i] if len(names[i]) <= 24 else names[i][:21] + '...'}"
        ax.set_title(title, color=colour, fontsize=11)
    # Title room per row, in figure fractions: two lines (three with names) of 11 pt text.
    title_px = 62 if names else 46
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02 / rows, top=1 - title_px / height,
                        wspace=0.1, hspace=title_px / (PREDICTION_TILE_PX[1] - title_px))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_bench(levels: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Latency percentiles, throughput and (when priced) cost per million, per concurrency level.

    `levels` are BenchLevel.as_dict() rows: concurrency, requests, images, p50_ms, p90_ms, p99_ms,
    max_ms, requests_per_s, images_per_s, cost_per_million. Every y-axis starts at 0. With more than
    one image per request, images/s gets its own (right-hand) axis beside requests/s.
    """
    plt = _pyplot()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    priced = any(level.get("cost_per_million") is not None for level in levels)
    size = BENCH_FIGURE_PRICED_PX if priced else BENCH_FIGURE_PX
    dpi = 100
    fig, axes = plt.subplots(1, 3 if priced else 2, figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    lat, thr = axes[0], axes[1]
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
    lat.set_ylim(bottom=0)
    lat.legend()
    lat.grid(axis="y", alpha=0.3)

    conc = [level["concurrency"] for level in levels]
    batched = any(level.get("images", 0) > level.get("requests", 0) for level in levels)
    log_x = len(conc) > 1 and max(conc) / max(min(conc), 1) >= 8
    if batched:
        # images/s = batch × requests/s: one curve, read in images/s on the left and in requests/s
        # on its own right-hand axis.
        batch = max(level.get("images", 0) / max(level.get("requests", 0), 1) for level in levels)
        thr.plot(conc, [level["images_per_s"] for level in levels], marker="o", label="images/s")
        thr.set_ylabel("images/s")
        right = thr.secondary_yaxis("right", functions=(lambda y: y / batch, lambda y: y * batch))
        right.set_ylabel(f"requests/s ({batch:g} images each)")
        rates = [level["images_per_s"] for level in levels]
    else:  # one image per request: the two rates are one line
        thr.plot(conc, [level["requests_per_s"] for level in levels], marker="o",
                 label="requests/s = images/s")
        thr.set_ylabel("requests/s (= images/s, batch 1)")
        rates = [level["requests_per_s"] for level in levels]
    thr.legend(loc="lower right")
    thr.set_ylim(bottom=0, top=max(rates + [1]) * 1.15)
    if log_x:
        thr.set_xscale("log", base=2)
    thr.set_xticks(conc, [str(c) for c in conc])
    thr.set_xlabel("concurrency (requests in flight)")
    thr.set_title("Throughput vs concurrency")
    thr.grid(alpha=0.3)

    if priced:
        cost = axes[2]
        values = [level.get("cost_per_million") for level in levels]
        cost.bar(range(len(xs)), [v or 0.0 for v in values], 0.6, color="tab:green")
        for i, v in enumerate(values):
            if v is not None:
                cost.annotate(f"${v:.3g}", (i, v), textcoords="offset points", xytext=(0, 3),
                              ha="center", fontsize=9)
        cost.set_xticks(range(len(xs)), xs)
        cost.set_xlabel("concurrency (requests in flight)")
        cost.set_ylabel("$ per million predictions")
        cost.set_title("Cost of a million predictions")
        cost.set_ylim(bottom=0, top=max([v or 0.0 for v in values] + [1e-9]) * 1.2)
        cost.grid(axis="y", alpha=0.3)
    return _save(fig, path, dpi, title)


OPEN_LOOP_FIGURE_PX = (1200, 450)  # p99 and achieved rate against offered rate


def plot_open_loop(levels: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """p50/p99/p99.9 latency and the achieved rate against the offered rate (`bench --rate`).

    `levels` are openloop.RateLevel.as_dict() rows: rate, achieved_per_s, p50_ms, p99_ms, p999_ms,
    drops. Where latency turns up against offered rate is where the server's queue starts to grow.
    """
    plt = _pyplot()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(OPEN_LOOP_FIGURE_PX[0] / dpi, OPEN_LOOP_FIGURE_PX[1] / dpi),
                                   dpi=dpi)
    offered = [level["rate"] for level in levels]
    for key, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        lat.plot(offered, [level.get(key) or 0.0 for level in levels], marker="o", label=name)
    lat.set_xlabel("offered rate (req/s)")
    lat.set_ylabel("latency from scheduled send (ms)")
    lat.set_title("Latency vs offered rate")
    lat.set_ylim(bottom=0)
    lat.legend()
    lat.grid(alpha=0.3)
    top = max(offered + [1.0]) * 1.1
    thr.plot(offered, [level["achieved_per_s"] for level in levels], marker="o", label="achieved")
    thr.plot([0, top], [0, top], linestyle="--", color="grey", label="offered")
    thr.set_xlabel("offered rate (req/s)")
    thr.set_ylabel("answers/s")
    thr.set_title("Achieved vs offered rate")
    thr.set_xlim(0, top)
    thr.set_ylim(0, top)
    thr.legend(loc="lower right")
    thr.grid(alpha=0.3)
    return _save(fig, path, dpi, title)


SWEEPS_FIGURE_PX = (900, 560)  # p99 against arrival rate, one line per saved sweep


def plot_sweeps(sweeps: list[tuple[str, list[dict[str, Any]]]], path: str | os.PathLike, *,
                objective_ms: float | None = None, title: str = "") -> Path:
    """p99 (log-scale ms) against arrival rate, one line per labelled sweep (`bench --plot FILES`).

    `sweeps` are (label, levels) pairs, levels being openloop.RateLevel.as_dict() rows. A level
    with no answered request has no p99 and is left out of its line; a level that dropped or failed
    requests is drawn as a hollow marker, since its p99 leaves those requests out. The objective,
    when given, is a dashed horizontal line.
    """
    plt = _pyplot()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig, ax = plt.subplots(figsize=(SWEEPS_FIGURE_PX[0] / dpi, SWEEPS_FIGURE_PX[1] / dpi), dpi=dpi)
    hollow_shown = False
    for n, (label, levels) in enumerate(sweeps):
        points = sorted((lv["rate"], lv["p99_ms"], bool(lv.get("drops") or lv.get("errors")))
                        for lv in levels if lv.get("p99_ms") is not None)
        if not points:
            continue
        colour = f"C{n % 10}"
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, marker="o",
                label=label)
        lossy = [p for p in points if p[2]]
        if lossy:
            ax.plot([p[0] for p in lossy], [p[1] for p in lossy], linestyle="none", marker="o",
                    markersize=11, markerfacecolor="white", markeredgecolor=colour)
            hollow_shown = True
    if objective_ms is not None:
        ax.axhline(objective_ms, color="tab:red", linestyle="--", label=f"objective {objective_ms:g} ms")
    if hollow_shown:  # one legend entry, last, for every line's hollow markers
        ax.plot([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="white",
                markeredgecolor="grey", label="dropped or failed requests")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2, 5, 10 ms
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(left=0)
    ax.set_xlabel("arrival rate (req/s)")
    ax.set_ylabel("p99 latency from scheduled send (ms, log scale)")
    ax.set_title(title or "p99 against arrival rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path, dpi)


def _save(fig: Any, path: Path, dpi: int, title: str = "") -> Path:
    """Title (when given), lay out, write the PNG, free the figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
