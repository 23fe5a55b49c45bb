"""Which model versions are loaded, kept in step with the filesystem and the model config.

Each configured model's `base_path` holds integer-named version folders. A background thread
rescans them every `poll_seconds` (TF Serving's `--file_system_poll_wait_seconds`; 0 scans only
at start) and applies the version policy with TF Serving's availability-preserving order: a new
version is loaded and warmed up *before* the versions it replaces are unloaded, a version that
fails to load ends with its error in `status()` and never replaces a good one, and a model whose
folder vanishes keeps serving what it has. `start()` does the first scan synchronously, like
tensorflow_model_server, which only opens its ports once the initial versions are loaded. Turning
one version folder into a servable (load, warm-up, retries) is `mlserve.server.models.loader`'s.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mlserve.server.models import config as config_mod
from mlserve.server.models.config import ModelConfig
from mlserve.server.errors import ServingError
from mlserve.server.models.loader import LoadError, LoadOptions, load_with_retries, sid
from mlserve.server.servables.savedmodel import Servable
from mlserve.server.servables.tflite import TFLiteOptions, fingerprint

log = logging.getLogger("mlserve.server")

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")


@dataclass
class VersionStatus:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: str = "OK"
    error_message: str = ""


@dataclass
class _Version:
    version: int
    path: Path
    state: str = "START"
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple = ()  # of saved_model.pb at the last load attempt

    def status(self) -> VersionStatus:
        return VersionStatus(self.version, self.state, self.error_code, self.error_message)


@dataclass
class _Model:
    config: ModelConfig
    configured: bool = True
    versions: dict[int, _Version] = field(default_factory=dict)
    warned_empty: bool = False


def scan_versions(base_path: str | Path) -> dict[int, Path]:
    """Integer-named folders holding a saved_model.pb; other names (.tmp-3-x, logs) are ignored."""
    found: dict[int, Path] = {}
    try:
        entries = list(Path(base_path).iterdir())
    except OSError:
        return found
    for entry in entries:
        name = entry.name
        if not name.isdigit():
            continue
        try:
            if entry.is_dir() and (entry / "saved_model.pb").is_file():
                found[int(name)] = entry
        except OSError:
            continue
    return found


def _as_models(config: Any) -> list[ModelConfig]:
    """A reload's models, unchecked: `reload_config` checks them in ReloadConfig's order."""
    if hasattr(config, "WhichOneof"):
        return config_mod.from_proto(config, validate=False)
    return list(config)


class ModelManager:
    """Loads, swaps and unloads model versions; answers `get` and `status` for the APIs."""

    def __init__(self, config: Any, *, poll_seconds: float = 1.0, enable_warmup: bool = True,
                 warmup_iterations: int = 0, tags: Sequence[str] = ("serve",),
                 allow_version_labels_for_unavailable_models: bool = False,
                 config_file: str | None = None, config_poll_seconds: float = 0,
                 tflite: TFLiteOptions | None = None,
                 max_num_load_retries: int = 0, load_retry_interval_s: float = 0) -> None:
        self.poll_seconds = poll_seconds
        # TF Serving's LoaderHarness: a failed load is retried this many times, this far apart.
        self.load_options = LoadOptions(
            tags=tuple(tags), tflite=tflite, enable_warmup=enable_warmup,
            warmup_iterations=warmup_iterations, max_num_load_retries=max(0, max_num_load_retries),
            load_retry_interval_s=max(0.0, load_retry_interval_s))
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self.config_file = config_file
        self.config_poll_seconds = config_poll_seconds
        self._models: dict[str, _Model] = {}
        self._labels: dict[str, dict[str, int]] = {}
        # name -> {version: Servable}; replaced whole on every change so `get` needs no lock.
        self._serving: dict[str, dict[int, Servable]] = {}
        self._state_lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[str, VersionStatus], None]] = []
        self._config_text: str | None = None
        self._set_config(config_mod.from_proto(config) if hasattr(config, "WhichOneof") else list(config))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the initial versions (synchronously), then start polling in the background."""
        self.sync()
        with self._state_lock:
            configured = [m.config for m in self._models.values() if m.configured]
        self._labels = self._check_labels(configured, strict=False)
        if self.poll_seconds > 0:
            self._spawn(self._poll_loop, "mlserve-fs-poll")
        if self.config_file and self.config_poll_seconds > 0:
            try:
                self._config_text = Path(self.config_file).read_text()
            except OSError:
                self._config_text = None
            self._spawn(self._config_loop, "mlserve-config-poll")

    def stop(self) -> None:
        """Stop polling and unload every version."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        with self._sync_lock:
            for model in list(self._models.values()):
                for v in list(model.versions.values()):
                    if v.state == "AVAILABLE":
                        self._unload(model, v)

    def add_listener(self, callback: Callable[[str, VersionStatus], None]) -> None:
        """Call `callback(model_name, status)` on every version state change (from any thread)."""
        self._listeners.append(callback)

    # -- queries ------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        with self._state_lock:
            return [n for n, m in self._models.items() if m.configured]

    def model_config(self, model_name: str) -> ModelConfig | None:
        m = self._models.get(model_name)
        return m.config if m and m.configured else None

    def resolve_label(self, model_name: str, label: str) -> int:
        version = self._labels.get(model_name, {}).get(label)
        if version is None:
            raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        return version

    def get(self, model_name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request should use: latest available, a version, or a labelled version."""
        if label:
            version = self.resolve_label(model_name, label)
        versions = self._serving.get(model_name)
        if version is None:
            if versions:
                return versions[max(versions)]
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({model_name})")
        servable = versions.get(int(version)) if versions else None
        if servable is None:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({model_name}, {version})")
        return servable

    def status(self, model_name: str, version: int | None = None,
               label: str | None = None) -> list[VersionStatus]:
        """Every known version's state (newest first), or one version's; NOT_FOUND like TF Serving."""
        if label:
            version = self.resolve_label(model_name, label)
        with self._state_lock:
            model = self._models.get(model_name)
            known = dict(model.versions) if model else {}
            if version is not None:
                v = known.get(int(version))
                if v is None:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {model_name}")
                return [v.status()]
            if not known:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {model_name}")
            return [known[k].status() for k in sorted(known, reverse=True)]

    def all_available(self) -> bool:
        """Ready: every configured model has at least one AVAILABLE version."""
        names = self.model_names()
        return bool(names) and all(self._serving.get(n) for n in names)

    # -- config -------------------------------------------------------------------------------

    def reload_config(self, config: Any) -> None:
        """Serve exactly the models of `config` (HandleReloadConfigRequest): load new models,
        unload dropped ones, apply version labels. Raises ServingError on a bad config, and
        UNKNOWN when a model the config adds does not become available.

        The checks run in TF Serving's order (server_core.cc `ReloadConfig`), all before
        anything loads: the list itself (unique names, absolute base paths), platform changes,
        version labels against the versions AVAILABLE now, then platforms the server cannot load
        (the routes `AddModelsViaModelConfigList` builds)."""
        models = _as_models(config)
        config_mod.validate_config_list(models)
        for m in models:
            old = self._models.get(m.name)
            if old and old.configured and old.config.model_platform != m.model_platform:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Illegal to change a model's platform. For model {m.name} platform was "
                                   f"{old.config.model_platform} and new platform requested is {m.model_platform}")
        labels = self._check_labels(models)
        config_mod.check_platforms(models)  # AddModelsViaModelConfigList: the routes, after the labels
        new_models = [m.name for m in models
                      if m.name not in self._models or not self._models[m.name].configured]
        log.info("Adding/updating models.")
        with self._sync_lock:
            self._set_config(models)
            self._labels = labels
        self.sync()
        self._raise_unavailable(new_models)
        log.info("Finished adding/updating models")

    def _check_labels(self, models: list[ModelConfig], strict: bool = True) -> dict[str, dict[str, int]]:
        """server_core.cc `UpdateModelVersionLabelMap`: a label names an AVAILABLE version, or
        (with --allow_version_labels_for_unavailable_models) any version, unless it would move
        an existing label to another version."""
        labels: dict[str, dict[str, int]] = {}
        for m in models:
            available = self._serving.get(m.name, {})
            for label, version in m.version_labels.items():
                current = self._labels.get(m.name, {}).get(label)
                allow_any = self.allow_unavailable_labels and current in (None, version)
                if not allow_any and version not in available:
                    problem = (f"Request to assign label to version {version} of model {m.name}, "
                               "which is not currently available for inference")
                    if strict:
                        raise ServingError("FAILED_PRECONDITION", problem)
                    log.error("%s", problem)  # at start-up the server comes up regardless
            if m.version_labels:
                labels[m.name] = dict(m.version_labels)
        return labels

    def _raise_unavailable(self, names: list[str]) -> None:
        """server_core.cc `WaitUntilModelsAvailable` for the models a reload adds: UNKNOWN naming
        each whose latest version ended in an error instead of becoming AVAILABLE."""
        failed = []
        for name in names:
            model = self._models.get(name)
            if model is None or self._serving.get(name):
                continue
            ended = [v for v in model.versions.values() if v.state == "END" and v.error_code != "OK"]
            if ended:
                v = max(ended, key=lambda x: x.version)
                failed.append(f"{{{{name: {name} version: {v.version}}} due to error: "
                              f"{v.error_code}: {v.error_message}}}, ")
        if failed:
            raise ServingError("UNKNOWN", f"{len(failed)} model(s) did not become available: {{"
                               + "".join(failed) + "}")

    def _set_config(self, models: list[ModelConfig]) -> None:
        with self._state_lock:
            wanted = {m.name: m for m in models}
            for name, model in self._models.items():
                if name not in wanted:
                    model.configured = False
            for name, cfg in wanted.items():
                if name in self._models:
                    self._models[name].config = cfg
                    self._models[name].configured = True
                    self._models[name].warned_empty = False
                else:
                    self._models[name] = _Model(cfg)

    # -- the sync loop ------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception:  # the poller must outlive any one bad scan
                log.exception("filesystem poll failed")

    def _config_loop(self) -> None:
        while not self._stop.wait(self.config_poll_seconds):
            try:
                text = Path(self.config_file).read_text()  # type: ignore[arg-type]
                if text == self._config_text:
                    continue
                models = config_mod.parse_text(text, str(self.config_file))
                self._config_text = text
                self.reload_config(models)
            except Exception as e:  # noqa: BLE001 - a load failure of any kind is the version's error
                log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", e)
                self._config_text = text if "text" in locals() else self._config_text

    def sync(self) -> None:
        """One pass: scan every model's folder, load what the policy wants, unload what it drops."""
        with self._sync_lock:
            for model in list(self._models.values()):
                if self._stop.is_set():
                    return
                if model.configured:
                    self._sync_model(model)
                else:
                    for v in list(model.versions.values()):
                        if v.state == "AVAILABLE":
                            self._unload(model, v)

    def _sync_model(self, model: _Model) -> None:
        cfg = model.config
        on_disk = scan_versions(cfg.base_path)
        if not on_disk:
            if not model.warned_empty:
                log.warning("No versions of servable %s found under base path %s. Did you forget to name "
                            "your leaf directory as a number (eg. '/1/')?", cfg.name, cfg.base_path)
                model.warned_empty = True
            return  # keep serving whatever is loaded: a vanished folder must not take the model down
        model.warned_empty = False
        aspired = cfg.version_policy.select(on_disk)
        for version in sorted(aspired, reverse=True):
            if self._stop.is_set():
                return
            current = model.versions.get(version)
            if current and current.state == "AVAILABLE":
                continue
            fp = fingerprint(on_disk[version])  # saved_model.pb and model.tflite
            if current and current.state == "END" and current.error_code != "OK" and current.fingerprint == fp:
                continue  # failed before and unchanged since: do not retry in a loop
            self._load(model, version, on_disk[version], fp)
        aspired_up = [v for v in aspired if v in model.versions and model.versions[v].state == "AVAILABLE"]
        if not aspired_up:
            return  # availability first: keep the old versions until a wanted one is up
        for v in list(model.versions.values()):
            if v.state == "AVAILABLE" and v.version not in aspired:
                self._unload(model, v)

    def _set_state(self, model: _Model, v: _Version, state: str, code: str = "OK", message: str = "") -> None:
        with self._state_lock:
            v.state, v.error_code, v.error_message = state, code, message
            model.versions[v.version] = v
            serving = {k: x.servable for k, x in model.versions.items()
                       if x.state == "AVAILABLE" and x.servable is not None}
            new = dict(self._serving)
            if serving and model.configured:
                new[model.config.name] = serving
            else:
                new.pop(model.config.name, None)
            self._serving = new
        status = v.status()
        for cb in list(self._listeners):
            try:
                cb(model.config.name, status)
            except Exception:
                log.exception("manager listener failed")

    def _load(self, model: _Model, version: int, path: Path, fp: tuple) -> None:
        name = model.config.name
        v = _Version(version, path, fingerprint=fp)
        self._set_state(model, v, "START")
        log.info("Approving load for servable version %s", sid(name, version))
        self._set_state(model, v, "LOADING")
        log.info("Loading servable version %s", sid(name, version))
        started = time.perf_counter()

        def give_up(wait_s: float) -> bool:  # stop retrying once the model leaves the config
            return not model.configured or self._stop.wait(wait_s) or not model.configured

        try:
            v.servable = load_with_retries(name, version, path, self.load_options, give_up)
        except LoadError as e:
            self._set_state(model, v, "END", e.code, e.message)
            return
        self._set_state(model, v, "AVAILABLE")
        log.info("Successfully loaded servable version %s (%.2fs)", sid(name, version),
                 time.perf_counter() - started)

    def _unload(self, model: _Model, v: _Version) -> None:
        name = model.config.name
        log.info("Unloading servable version %s", sid(name, v.version))
        self._set_state(model, v, "UNLOADING")
        v.servable = None  # in-flight requests keep their own reference until they finish
        self._set_state(model, v, "END")
        log.info("Done unloading servable version %s", sid(name, v.version))
