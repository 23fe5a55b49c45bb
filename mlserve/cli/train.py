"""`mlserve train`: train the course CNN on MNIST and save it to the workspace."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mlserve import settings
from mlserve.cli import output
from mlserve.model.cnn import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, TrainingListener


class _RichListener(TrainingListener):
    """Per-epoch progress on stderr: a bar over the batches, then one line of loss/accuracy."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None
        self.epochs = 0

    def train_begin(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs = epochs
        self.task = self.progress.add_task(f"epoch 1/{epochs}", total=steps_per_epoch)

    def batch_end(self, epoch: int, step: int) -> None:
        self.progress.update(self.task, completed=step + 1, description=f"epoch {epoch + 1}/{self.epochs}")

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.progress.console.print(
            f"epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}"
            f"  accuracy {logs.get('accuracy', float('nan')):.4f}", highlight=False)
        self.progress.reset(self.task)


def train(
    epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", min=1, help="Passes over the training set."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Images per step."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed: the same seed gives the same model."),
    data: Optional[str] = typer.Option(
        None, "--data", help="An mnist.npz or a folder of IDX files; 'sample' for the shipped sample "
                             "(env: MLSERVE_DATA; default: Keras cache, download, then the sample)."),
    output_path: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder (or .keras file) to save to (default: <home>/trained/<model-name>/)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model name (env: MLSERVE_MODEL_NAME)."),
    no_download: bool = typer.Option(False, "--no-download", help="Never download MNIST; fall back to the sample."),
    plot: bool = typer.Option(False, "--plot", help="Save the training curves as a PNG in <home>/plots/."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train the course CNN (Conv2D 8×3×3 stride 2, Dense softmax) on MNIST, evaluate it, save it.

    Saves model.keras and record.json (data, settings, test accuracy, history) to the output folder;
    `mlserve export` turns it into a versioned SavedModel.
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mlserve.model.data import load_mnist
    from mlserve.model.cnn import train as train_model
    from mlserve.workspace import Workspace

    mnist = load_mnist(data, allow_download=not no_download)
    for note in mnist.notes:
        output.info(f"[dim]{escape(note)}[/dim]")
    output.err.print(f"Data: {mnist.description}", soft_wrap=True)
    if mnist.warning:
        # soft_wrap: the credit line stays whole (and greppable) when stderr is not a terminal.
        output.err.print(f"[yellow]Warning:[/yellow] {mnist.warning}", soft_wrap=True)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=output.err, transient=True) as progress:
        result = train_model(epochs=epochs, batch_size=batch_size, seed=seed, mnist=mnist,
                             output=output_path, model_name=model_name,
                             listener=_RichListener(progress))
    output.err.print(f"Trained in {result.duration_s:.1f} s; saved {result.model_path}", soft_wrap=True)

    plot_path = None
    if plot:
        from mlserve.tools.plots import plot_training_history

        name = settings.get("model_name", model_name)
        plot_path = plot_training_history(
            result.history, Workspace.current().plots_dir / f"{name}-training.png",
            title=f"{name} on {mnist.source} data", test_accuracy=result.test_accuracy,
            test_loss=result.test_loss)

    if json_:
        output.print_json({**result.record, "model_path": str(result.model_path),
                           "record_path": str(result.record_path),
                           "plot": str(plot_path) if plot_path else None})
        return
    out = output.out
    out.print(f"test accuracy  {result.test_accuracy:.4f}")
    out.print(f"test loss      {result.test_loss:.4f}")
    out.print(f"model          {result.model_path}")
    out.print(f"record         {result.record_path}")
    if plot_path:
        out.print(f"plot           {plot_path}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
