"""The managed model config: the file `mlserve serve` keeps in the workspace for a model base path.

`mlserve serve` without `--model-config-file` starts the server with
`<home>/configs/<model>.config` instead of `--model_name/--model_base_path`, so that
promote/canary/rollback have a file to edit and a server restart keeps the labels. A fresh file has
no version policy and no label: the server serves the newest version, exactly as with
`--model_base_path`, until the first promote gives it labels and a `specific` policy.
"""
from __future__ import annotations

from pathlib import Path

from mlserve.rollout import configfile

HEADER = """# The model config that `mlserve serve` keeps for {model} (managed by mlserve).
# `mlserve promote`, `canary` and `rollback` edit it in place: the previous text is in
# {name}.bak, every label move in {name}.history.jsonl. Edits by hand are kept.
"""

ALLOW_LABELS_FLAG = "--allow_version_labels_for_unavailable_models"


def config_path(home: Path, model: str) -> Path:
    return Path(home) / "configs" / f"{model}.config"


def fresh_text(model: str, base_path: Path) -> str:
    path = str(base_path).replace("\\", "\\\\").replace('"', '\\"')
    return (HEADER.format(model=model, name=f"{model}.config")
            + "model_config_list {\n  config {\n"
            f'    name: "{model}"\n    base_path: "{path}"\n    model_platform: "tensorflow"\n'
            "  }\n}\n")


def ensure(home: Path, model: str, base_path: Path) -> Path:
    """The managed config of `model` at `base_path`: kept (with its labels) when it lists that
    model at that base path, else written fresh (the old text kept as `.bak`)."""
    path = config_path(home, model)
    base = Path(base_path).expanduser().resolve()
    old = configfile.read_optional(path)
    if old is not None:
        try:
            state = configfile.model_state(configfile.parse(old, str(path)), model, str(path))
            if Path(state.base_path) == base:
                return path
        except Exception:  # noqa: BLE001 - unreadable or another model: replaced below, the text kept in .bak
            pass
        configfile.write(configfile.backup_path(path), old)
    path.parent.mkdir(parents=True, exist_ok=True)
    configfile.write(path, fresh_text(model, base))
    return path


def has_labels(config_file: Path) -> bool:
    """Whether a config file gives any version a label.

    tensorflow_model_server checks labels before it loads anything, so at start every label names
    an unavailable version and the server refuses to start unless it runs with
    --allow_version_labels_for_unavailable_models (TF Serving issues #1230, #1608).
    """
    try:
        proto = configfile.parse(Path(config_file).read_text(), str(config_file))
    except Exception:  # noqa: BLE001 - unreadable: no managed config
        return False
    return any(c.version_labels for c in proto.model_config_list.config)


def serve_config(home: Path, model: str, base_path: str | Path, config_file: Path | None,
                 tfs_flags: list[str] | None) -> tuple[Path | None, list[str]]:
    """What `mlserve serve` starts the server with: the user's config file, else the managed one
    (when the base path exists; otherwise serve reports the missing folder as before), and the
    TF Serving flags, plus --allow_version_labels_for_unavailable_models when the config has labels."""
    flags = list(tfs_flags or [])
    if config_file is None and Path(base_path).expanduser().is_dir():
        config_file = ensure(home, model, Path(base_path))
    if config_file is not None and has_labels(config_file) and \
            not any(f.split("=", 1)[0].lstrip("-") == ALLOW_LABELS_FLAG.lstrip("-") for f in flags):
        flags.append(ALLOW_LABELS_FLAG)
    return config_file, flags
