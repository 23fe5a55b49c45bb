"""TF Serving model config files (ascii ModelServerConfig protobuf): which models, where.

Parsed with the official `tensorflow_serving.config` protos (no TensorFlow import), so a file that
TF Serving rejects is rejected here too, before any server starts.
"""
from __future__ import annotations

from pathlib import Path

from mlserve.errors import DataError, NotFoundError


def _parse(path: Path):  # -> model_server_config_pb2.ModelServerConfig
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not path.is_file():
        raise NotFoundError(f"model config file {path} does not exist",
                            hint="give the path of an ascii ModelServerConfig file")
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise DataError(f"model config file {path} does not parse: {e}",
                        hint="it must be a text ModelServerConfig: model_config_list { config { "
                             "name: \"m\" base_path: \"/abs/path\" model_platform: \"tensorflow\" } }"
                        ) from e
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise DataError(f"model config file {path} lists no model",
                        hint="add a model_config_list { config { name: ... base_path: ... } } entry")
    return config


def read_models(path: Path) -> dict[str, str]:
    """The models a config file lists: name -> base_path (relative paths resolved against the cwd)."""
    models: dict[str, str] = {}
    for entry in _parse(path).model_config_list.config:
        if not entry.name or not entry.base_path:
            raise DataError(f"model config file {path}: every model needs a name and a base_path")
        base = Path(entry.base_path)
        models[entry.name] = str(base.resolve())  # relative: against the cwd, as the server sees it
    return models


def with_base_paths(path: Path, base_paths: dict[str, str]) -> str:
    """The config file's text with each named model's base_path replaced (for a container's view)."""
    from google.protobuf import text_format

    config = _parse(path)
    for entry in config.model_config_list.config:
        if entry.name in base_paths:
            entry.base_path = base_paths[entry.name]
    return text_format.MessageToString(config)
