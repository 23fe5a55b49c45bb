"""`mlserve export` (a trained model as a versioned SavedModel) and `mlserve models` (list versions)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mlserve import settings
from mlserve.cli import output


def _signature_lines(signature: dict[str, Any]) -> list[str]:
    def shape(s: Any) -> str:
        return "unknown" if s is None else "(" + ", ".join(str(d) for d in s) + ")"

    lines = [f"signature {signature['signature']}  (method {signature['method']})"]
    for kind in ("inputs", "outputs"):
        for name, t in signature[kind].items():
            lines.append(f"  {kind[:-1]:<6} {name:<12} {t['dtype']:<8} {shape(t['shape']):<16} {t['tensor']}")
    return lines


def export(
    version: Optional[str] = typer.Option(
        None, "--version", metavar="N", help="Version number to write (default: latest + 1, or 1)."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Trained .keras file (default: <home>/trained/<model-name>/model.keras)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model name (env: MLSERVE_MODEL_NAME)."),
    model_base_path: Optional[Path] = typer.Option(
        None, "--model-base-path",
        help="Folder of numbered versions (env: MLSERVE_MODEL_BASE_PATH; default: <home>/models/<model-name>)."),
    force: bool = typer.Option(False, "--force", help="Replace the version if it exists (atomically)."),
    no_warmup: bool = typer.Option(False, "--no-warmup", help="Do not write assets.extra/tf_serving_warmup_requests."),
    tflite: Optional[str] = typer.Option(
        None, "--tflite", metavar="{float32,float16,dynamic,int8}",
        help="Also write model.tflite (served with --prefer_tflite_model); int8 calibrates on training data."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export the trained model as a SavedModel version that tensorflow_model_server loads unchanged.

    Writes <model-base-path>/<version>/ (saved_model.pb, variables/, assets.extra/) atomically, with a
    serving_default signature: input Conv1_input float32 (-1, 28, 28, 1), output softmax (-1, 10).
    """
    from mlserve.model.export import export_model, parse_version
    from mlserve.model.cnn import MODEL_FILE
    from mlserve.workspace import Workspace

    from mlserve.edge.tflite import parse_quantization

    number = parse_version(version)  # a bad --version fails before TensorFlow loads
    quantization = parse_quantization(tflite)
    name = settings.get("model_name", model_name)
    source = model if model is not None else Workspace.current().root / "trained" / name / MODEL_FILE
    base = settings.model_base_path(name, model_base_path)
    output.err.print(f"Exporting {source} to {base} ...", soft_wrap=True)
    result = export_model(source, base, number, model_name=name, force=force, warmup=not no_warmup,
                          tflite=quantization)
    if result.replaced:
        output.info(f"Replaced version {result.version}.")

    if json_:
        output.print_json({"path": str(result.path), "version": result.version, "model_name": name,
                           "model_base_path": str(base), "replaced": result.replaced,
                           "warmup": str(result.warmup_path) if result.warmup_path else None,
                           "test_accuracy": result.test_accuracy, "signature": result.signature,
                           "tflite": result.tflite})
        return
    output.out.print(str(result.path))
    if result.tflite:
        t = result.tflite
        acc = "-" if t["test_accuracy"] is None else f"{t['test_accuracy']:.4f}"
        output.out.print(f"model.tflite {t['quantization']}: {_size(t['size_bytes'])}, "
                         f"test accuracy {acc} (LiteRT)")
    for line in _signature_lines(result.signature):
        output.out.print(line)


def models(
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model name (env: MLSERVE_MODEL_NAME)."),
    model_base_path: Optional[Path] = typer.Option(
        None, "--model-base-path",
        help="Folder of numbered versions (env: MLSERVE_MODEL_BASE_PATH; default: <home>/models/<model-name>)."),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the exported versions of a model: version, labels, size, creation time, test accuracy, and
    the model.tflite beside each SavedModel (quantisation, size, accuracy measured with LiteRT)."""
    from rich.table import Table

    from mlserve.model.export import list_debris, list_versions
    from mlserve.rollout.target import labels_by_version

    name = settings.get("model_name", model_name)
    base = settings.model_base_path(name, model_base_path)
    for folder in list_debris(base):  # stderr: --json stays a plain list of versions
        output.err.print(f"debris: {folder} (left by an interrupted export; the next `mlserve export` "
                         "removes it)", soft_wrap=True)
    versions = list_versions(base)
    labels = labels_by_version(name)  # from the config file of a running server of this model
    if json_:
        output.print_json([
            {"version": v.version, "path": str(v.path), "size_bytes": v.size_bytes,
             "created": v.created.isoformat(), "test_accuracy": v.test_accuracy, "warmup": v.has_warmup,
             "tflite": v.tflite, "labels": labels.get(v.version, [])}
            for v in versions
        ])
        return
    output.err.print(f"{name}: {base}", soft_wrap=True)
    table = Table("version", "labels", "size", "created", "test accuracy", "warm-up", "model.tflite")
    for v in versions:
        table.add_row(str(v.version), ", ".join(labels.get(v.version, [])) or "-", _size(v.size_bytes),
                      v.created.astimezone().strftime("%Y-%m-%d %H:%M:%S"), _accuracy(v.test_accuracy),
                      "yes" if v.has_warmup else "no", _tflite_cell(v.tflite))
    output.out.print(table)


def _tflite_cell(t: dict[str, Any] | None) -> str:
    """"int8, 17.2 KiB, 0.8560": format, size, test accuracy measured with LiteRT ("-": no file)."""
    if not t:
        return "-"
    return f"{t.get('quantization') or '?'}, {_size(t['size_bytes'])}, {_accuracy(t.get('test_accuracy'))}"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("models")(models)
