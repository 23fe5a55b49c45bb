"""The workspace: one folder (MLSERVE_HOME, default ~/.mlserve) that holds all of mlserve's state.

    <home>/trained/<model_name>/model.keras   the last trained Keras model
    <home>/trained/<model_name>/record.json   how it was trained (data source, sizes, accuracy, ...)
    <home>/models/<model_name>/<version>/     exported SavedModels, the default model base path
    <home>/logs/                              server logs
    <home>/servers/<name>.json                records of detached servers
    <home>/plots/                             PNGs written by --plot
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlserve import settings


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def current(cls, home: str | Path | None = None) -> "Workspace":
        return cls(Path(settings.get("home", home)).expanduser().resolve())

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def trained_dir(self, model_name: str) -> Path:
        return self._dir("trained", model_name)

    def model_base_path(self, model_name: str) -> Path:
        return self.root / "models" / model_name

    @property
    def logs_dir(self) -> Path:
        return self._dir("logs")

    @property
    def servers_dir(self) -> Path:
        return self._dir("servers")

    @property
    def plots_dir(self) -> Path:
        return self._dir("plots")
