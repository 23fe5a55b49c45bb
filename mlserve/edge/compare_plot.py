"""The `mlserve compare --plot` figure: one panel per measure, one bar per format, saved as PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PANELS = [  # (title, unit, [(label, getter)])
    ("Size on disk", "KiB", [("", lambda f: f["size_bytes"] / 1024)]),
    ("Test accuracy", "%", [("", lambda f: 100 * f["test_accuracy"])]),
    ("In-process latency, batch 1", "ms", [("p50", lambda f: f["latency_ms"].get("b1_p50")),
                                           ("p99", lambda f: f["latency_ms"].get("b1_p99"))]),
    ("In-process latency, batch 64", "ms", [("p50", lambda f: f["latency_ms"].get("b64_p50")),
                                            ("p99", lambda f: f["latency_ms"].get("b64_p99"))]),
    ("Served p50, 1 connection", "ms", [("", lambda f: f.get("served_p50_ms"))]),
    ("Served throughput", "requests/s", [("", lambda f: f.get("served_requests_per_s"))]),
    ("Resident memory", "MiB", [("server", lambda f: f.get("server_rss_mb")),
                                ("runtime alone", lambda f: f.get("runtime_rss_mb"))]),
]


def plot_comparison(comparison: dict[str, Any], path: str | os.PathLike) -> Path:
    """Draw `Comparison.as_dict()`; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    formats = comparison["formats"]
    names = [f["format"] for f in formats]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 4, figsize=(18, 8), dpi=100)
    for ax, (title, unit, series) in zip(axes.flat, PANELS):
        width = 0.8 / len(series)
        for k, (label, get) in enumerate(series):
            values = [get(f) for f in formats]
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, [0 if v is None else v for v in values], width, label=label or None)
            for bar, v in zip(bars, values):
                ax.annotate("n/a" if v is None else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=7)
        if title == "Test accuracy":  # differences of a point matter here; start near them
            low = min(100 * f["test_accuracy"] for f in formats)
            ax.set_ylim(max(0, low - 5), min(100, low + 8))
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    last = axes.flat[len(PANELS)]
    last.axis("off")
    last.text(0, 0.9, f"{comparison['version_path']}\n{comparison['data']}\n"
              f"{comparison['iterations']} calls at batch 1, served for {comparison['duration_s']:g} s "
              f"at 1 and {comparison['connections']} connections", fontsize=8, va="top", wrap=True)
    fig.suptitle("One model, five formats: SavedModel vs TFLite")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
