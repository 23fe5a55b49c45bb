"""Every setting of mlserve, declared once, resolved in one place: flag > MLSERVE_* variable > default.

Commands pass the flag's value (None when the flag was not given) to `get()`; `mlserve config`
prints `resolve_all()`, so a user can always see a value and where it came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlserve.errors import UsageError

Default = Callable[[Callable[[str], Any]], Any]


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    description: str
    default: Default
    kind: type = str
    # Says what is wrong with a value (None: fine); checked for flags and variables alike.
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class Resolved:
    name: str
    env: str
    value: Any
    source: str  # "flag", "env" or "default"
    description: str


def _const(value: Any) -> Default:
    return lambda _get: value


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be more than 0 seconds"


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number, 0 to 65535"


_DECLARED = [
    Setting("home", "MLSERVE_HOME", "Workspace: trained models, exported models, logs, server records.",
            _const(str(Path.home() / ".mlserve"))),
    Setting("model_name", "MLSERVE_MODEL_NAME", "Model name used by export, serve and predict.",
            _const("digits_model")),
    Setting("model_base_path", "MLSERVE_MODEL_BASE_PATH",
            "Folder of numbered SavedModel versions (TF Serving's --model_base_path).",
            lambda get: str(Path(get("home")) / "models" / get("model_name"))),
    Setting("data", "MLSERVE_DATA", "MNIST data: an mnist.npz or a folder of IDX files (empty: auto).",
            _const("")),
    Setting("host", "MLSERVE_HOST", "Address servers bind (127.0.0.1 unless told otherwise).",
            _const("127.0.0.1")),
    Setting("grpc_port", "MLSERVE_GRPC_PORT", "gRPC port of a started server.", _const(8500), int, _port),
    Setting("rest_port", "MLSERVE_REST_PORT", "REST port of a started server.", _const(8501), int, _port),
    Setting("url", "MLSERVE_URL", "REST address that predict and bench query.",
            _const("http://127.0.0.1:8501")),
    Setting("grpc_server", "MLSERVE_GRPC_SERVER", "gRPC address that predict and bench query.",
            _const("127.0.0.1:8500")),
    Setting("runtime", "MLSERVE_RUNTIME", "Server runtime: auto, binary, docker or embedded.",
            _const("auto")),
    Setting("tfs_binary", "MLSERVE_TFS_BINARY", "The tensorflow_model_server executable.",
            _const("tensorflow_model_server")),
    Setting("docker_image", "MLSERVE_DOCKER_IMAGE", "TF Serving Docker image (no tag).",
            _const("tensorflow/serving")),
    Setting("docker_tag", "MLSERVE_DOCKER_TAG", "TF Serving Docker tag; GPU runs use '<tag>-gpu'.",
            _const("2.19.1")),
    Setting("ready_timeout", "MLSERVE_READY_TIMEOUT", "Seconds to wait for a server to be ready.",
            _const(120.0), float, _positive),
    Setting("timeout", "MLSERVE_TIMEOUT", "Seconds a client request may take.", _const(30.0), float, _positive),
    Setting("debug", "MLSERVE_DEBUG",
            "Show tracebacks of unexpected errors and TensorFlow's own log lines (1 to enable).",
            _const(False), bool),
    Setting("verbose", "MLSERVE_VERBOSE",
            "Show TensorFlow's C++ start-up lines (what `mlserve --verbose` sets).",
            _const(False), bool),
    Setting("server_log_level", "MLSERVE_SERVER_LOG_LEVEL",
            "Log level of the embedded server: DEBUG, INFO, WARNING or ERROR.", _const("INFO")),
]

SETTINGS: dict[str, Setting] = {s.name: s for s in _DECLARED}


def _convert(setting: Setting, raw: Any) -> Any:
    if raw is None or setting.kind is str or isinstance(raw, setting.kind) and not isinstance(raw, str):
        return raw
    text = str(raw).strip()
    try:
        if setting.kind is bool:
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"", "0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        return setting.kind(text)
    except ValueError:
        raise UsageError(
            f"{setting.env}={text!r} is not a valid {setting.kind.__name__}",
            hint=f"unset {setting.env} or set it to a valid {setting.kind.__name__}",
        ) from None


def resolve(name: str, flag: Any = None) -> Resolved:
    """Resolve one setting: the flag if given, else its environment variable, else its default."""
    setting = SETTINGS[name]
    if flag is not None:
        value, source = _convert(setting, flag), "flag"
    elif os.environ.get(setting.env, "") != "":
        value, source = _convert(setting, os.environ[setting.env]), "env"
    else:
        value, source = setting.default(get), "default"
    problem = setting.check(value) if setting.check is not None and value is not None else None
    if problem:
        where = f"{setting.env}={value!r}" if source == "env" else f"{name} {value!r}"
        raise UsageError(f"{where}: {problem}",
                         hint=f"unset {setting.env} or give a valid value" if source == "env"
                         else f"give a valid value (see `mlserve config` for {setting.env})")
    return Resolved(setting.name, setting.env, value, source, setting.description)


def get(name: str, flag: Any = None) -> Any:
    """The value of a setting (see `resolve`)."""
    return resolve(name, flag).value


def model_base_path(model_name: str, flag: Any = None) -> Path:
    """--model-base-path > MLSERVE_MODEL_BASE_PATH > <home>/models/<model_name>, for the name given.

    The declared default follows the `model_name` setting; a command that was given a name (its
    --model-name flag) wants that model's folder, which is why this is not plain `get()`.
    """
    resolved = resolve("model_base_path", str(flag) if flag is not None else None)
    if resolved.source == "default":
        return Path(get("home")).expanduser().resolve() / "models" / model_name
    return Path(resolved.value).expanduser()


def debug() -> bool:
    """MLSERVE_DEBUG as a bool; a malformed value counts as off (the error boundary must not fail)."""
    try:
        return bool(get("debug"))
    except UsageError:
        return False


def resolve_all() -> list[Resolved]:
    return [resolve(name) for name in SETTINGS]
