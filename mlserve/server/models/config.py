"""Which models the server serves: TF Serving's ModelServerConfig, parsed with the official proto.

`--model_config_file` holds an ASCII (text format) `ModelServerConfig`; without it the server
builds a one-model config from `--model_name`/`--model_base_path`, as TF Serving does. The proto is
turned into plain dataclasses (`ModelConfig`) that the manager works with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mlserve.errors import DataError, NotFoundError, UsageError


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders are served: the newest `num_versions`, all, or `versions`."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> set[int]:
        """The versions to serve among those on disk."""
        found = sorted(set(on_disk))
        if self.kind == "all":
            return set(found)
        if self.kind == "specific":
            return set(self.versions) & set(found)
        return set(found[-max(self.num_versions, 1):]) if found else set()


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)
    model_platform: str = "tensorflow"


def single_model_config(model_name: str, model_base_path: str) -> list[ModelConfig]:
    """The config of `--model_name`/`--model_base_path` (TF Serving's BuildSingleModelConfig)."""
    if not model_base_path:
        raise UsageError("Both server_options.model_base_path and server_options.model_config_file are empty!",
                         hint="pass --model_base_path=/path/to/model (the folder above the version folders)")
    return [ModelConfig(name=model_name, base_path=str(Path(model_base_path).expanduser()))]


def from_proto(proto: Any, *, validate: bool = True) -> list[ModelConfig]:
    """Convert a `ModelServerConfig` proto into `ModelConfig`s, checking what TF Serving checks
    at start-up. A reload passes `validate=False` and runs the same checks in ReloadConfig's order
    (`validate_config_list`, the platform change, labels, then `check_platforms`)."""
    which = proto.WhichOneof("config")
    if which is None:
        return []
    if which != "model_config_list":
        raise UsageError("ServerModelConfig type not supported. Only ModelConfigList is currently supported")
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for mc in proto.model_config_list.config:
        if not mc.name:
            raise UsageError("a model in the model config has no name")
        if validate and mc.name in seen:
            raise UsageError(f"Illegal to list model {mc.name} multiple times in config list")
        seen.add(mc.name)
        if validate and not mc.base_path:
            raise UsageError(f"Expected model {mc.name} to have an absolute path or URI; got base_path()=")
        platform = mc.model_platform or "tensorflow"
        if validate and platform not in PLATFORMS:
            raise UsageError(f"Model {mc.name} requests unsupported platform {platform}")
        choice = mc.model_version_policy.WhichOneof("policy_choice")
        if choice == "all":
            policy = VersionPolicy("all")
        elif choice == "specific":
            policy = VersionPolicy("specific", versions=tuple(mc.model_version_policy.specific.versions))
        elif choice == "latest":
            policy = VersionPolicy("latest", num_versions=mc.model_version_policy.latest.num_versions or 1)
        else:
            policy = VersionPolicy()
        models.append(ModelConfig(name=mc.name, base_path=mc.base_path, version_policy=policy,
                                  version_labels=dict(mc.version_labels), model_platform=platform))
    return models


def parse_text(text: str, source: str = "<text>") -> list[ModelConfig]:
    """Parse ASCII `ModelServerConfig` text."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise DataError(f"Invalid protobuf file: '{source}': {e}",
                        hint="the file must be a text-format ModelServerConfig: "
                             "model_config_list { config { name: '...' base_path: '...' } }") from e
    return from_proto(proto)


def load_config_file(path: str | Path) -> list[ModelConfig]:
    """Read and parse a `--model_config_file`."""
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise NotFoundError(f"model config file not found: {p}") from None
    except OSError as e:
        raise DataError(f"cannot read model config file {p}: {e}") from e
    return parse_text(text, str(p))


def to_proto(models: Iterable[ModelConfig]) -> Any:
    """The `ModelServerConfig` proto of `models` (e.g. for a HandleReloadConfigRequest)."""
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    for m in models:
        mc = proto.model_config_list.config.add(name=m.name, base_path=m.base_path,
                                                model_platform=m.model_platform)
        if m.version_policy.kind == "all":
            mc.model_version_policy.all.SetInParent()
        elif m.version_policy.kind == "specific":
            mc.model_version_policy.specific.versions.extend(m.version_policy.versions)
        else:
            mc.model_version_policy.latest.num_versions = m.version_policy.num_versions
        for label, version in m.version_labels.items():
            mc.version_labels[label] = version
    return proto


def build_config(options: Any) -> list[ModelConfig]:
    """The models `options` (a `ServerOptions`) asks for: the config file, else the single model."""
    if options.model_config_file:
        return load_config_file(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path)


PLATFORMS = ("tensorflow",)  # the platforms this server has a source adapter for


def check_platforms(models: list[ModelConfig]) -> None:
    """server_core.cc `CreateStoragePathRoutes`: a platform the server cannot load, found only
    once the new config is being applied (after the validations and the label map)."""
    from mlserve.server.errors import ServingError

    for m in models:
        if m.model_platform not in PLATFORMS:
            raise ServingError("INVALID_ARGUMENT", f"Model {m.name} requests unsupported platform {m.model_platform}")


def validate_config_list(models: list[ModelConfig]) -> None:
    """TF Serving's `ValidateModelConfigList` (server_core.cc), run on every reload before
    anything loads: each name listed once, every base path absolute (or a URI)."""
    from mlserve.server.errors import ServingError

    names = [m.name for m in models]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ServingError("INVALID_ARGUMENT", f"Illegal to list model {dup} multiple times in config list")
    for m in models:
        if not m.base_path or not (m.base_path.startswith("/") or "://" in m.base_path):
            raise ServingError("INVALID_ARGUMENT", f"Expected model {m.name} to have an absolute path "
                               f"or URI; got base_path()={m.base_path}")
