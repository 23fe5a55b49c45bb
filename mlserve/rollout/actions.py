"""promote, canary and rollback: move a version label with no failed request, or change nothing.

Every change is a new model config, written to the file and applied with
HandleReloadConfigRequest, in three steps that keep each label's version loaded throughout:

1. widen: if the version is not AVAILABLE, the policy lists it too (next to every version loaded
   now) and the command waits until it is AVAILABLE (a label may only name an available version);
2. gate (optional): held-out digits through the candidate and the current stable;
3. move: the label names the new version, with the wide policy still in force, so requests that
   resolved the old version finish on it;
4. narrow: the policy keeps only the labelled versions (plus the newest, if asked), and the server
   unloads the rest.

If any of 1-3 fails, the file, its backup and the server's config are put back as they were and
nothing is written to the history. Step 4 failing leaves the label moved and the old version
loaded, and says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlserve.errors import MlserveError, NotFoundError, UsageError
from mlserve.rollout import configfile, gate as gate_mod, history
from mlserve.rollout.serverlink import ServerLink

Notify = Callable[[str], None]
# Between moving a label and unloading the version it named: a request that resolved the label
# just before the move still finds that version loaded.
DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class Target:
    """Which config file to edit and which server applies it."""

    config_file: Path
    grpc_address: str
    server: str | None = None  # the recorded server's name, when found through a record
    runtime: str | None = None
    base_path_for: Callable[[str, str], str] | None = None  # host base path -> the server's view


@dataclass
class Outcome:
    model: str
    label: str
    action: str
    from_version: int | None
    to_version: int
    changed: bool
    loaded: list[int] = field(default_factory=list)  # the versions the final policy keeps
    labels: dict[str, int] = field(default_factory=dict)
    gate: gate_mod.GateResult | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "label": self.label, "action": self.action,
                "from": self.from_version, "to": self.to_version, "changed": self.changed,
                "policy_versions": self.loaded, "labels": self.labels,
                "gate": self.gate.as_dict() if self.gate else None, "warnings": self.warnings}


def _quiet(_: str) -> None:
    pass


def move_label(target: Target, model: str, version: int, *, label: str = "stable",
               action: str = "promote", check: int | None = None, max_drop: float = 0.0,
               force: bool = False, keep_newest: bool = False, wait: float = 120.0,
               data: str | None = None, timeout: float = 30.0, notify: Notify = _quiet) -> Outcome:
    """Point `label` of `model` at `version` (see the module docstring for the steps)."""
    if not label or not label.replace("_", "").replace("-", "").isalnum():
        raise UsageError(f"invalid label {label!r}", hint="use letters, digits, '-' and '_' (e.g. stable)")
    if version < 0:
        raise UsageError(f"invalid version {version}", hint="versions are the numbered folders, 1, 2, ...")
    path = target.config_file
    with configfile.locked(path, f"{action} {model} {label} -> {version}"):
        original = path.read_text()
        proto = configfile.parse(original, str(path))
        state = configfile.model_state(proto, model, str(path))
        current = state.labels.get(label)
        on_disk = state.on_disk()
        if version not in on_disk:
            raise NotFoundError(
                f"version {version} of model {model!r} is not under {state.base_path}"
                + (f" (it has {', '.join(map(str, on_disk))})" if on_disk else " (no version at all)"),
                hint="`mlserve models` lists the exported versions; `mlserve export --version N` adds one")
        if current == version:
            return Outcome(model, label, action, current, version, False,
                           sorted(set(state.labels.values())), dict(state.labels))
        backup = configfile.backup_path(path)
        old_backup = configfile.read_optional(backup)
        new_labels = {**state.labels, label: version}
        with ServerLink(target.grpc_address, timeout=timeout, reload_timeout=max(wait, timeout),
                        base_path_for=target.base_path_for) as link:
            loaded = link.available(model)
            wide = sorted(loaded | set(state.labels.values()) | {version})
            pinned = None
            if label != "stable" and "stable" not in state.labels and loaded:
                # The first label of a model that served its newest version: that version becomes
                # stable, or the policy would unload what every client is served now.
                pinned = new_labels["stable"] = max(loaded)

            def apply(text: str) -> None:
                configfile.write(path, text)
                link.reload(configfile.parse(text, str(path)))

            result: gate_mod.GateResult | None = None
            try:
                configfile.write(backup, original)
                if version not in loaded:
                    notify(f"Loading version {version} of {model} (policy: versions {_list(wide)})...")
                    apply(configfile.render(original, str(path), model, wide, state.labels))
                    link.wait_available(model, version, wait)
                if check:
                    notify(f"Gate: {check} held-out test digits through version {version}"
                           + (f" and stable version {state.labels['stable']}" if "stable" in state.labels
                              and state.labels["stable"] != version else "") + "...")
                    result = gate_mod.run_gate(target.grpc_address, model, version, state.labels.get("stable"),
                                               check, max_drop, data, timeout)
                    notify(("Gate passed: " if result.passed else "Gate failed: ") + result.describe())
                    if not result.passed and not force:
                        raise gate_mod.GateFailedError(
                            f"version {version} failed the accuracy gate: {result.describe()}; "
                            "nothing was changed",
                            hint="fix the model, raise --max-drop, or pass --force to promote anyway")
                notify(f"Moving label {label} of {model}: {_v(current)} -> {version}"
                       + (f" (and stable to version {pinned}, the one served now)" if pinned is not None else ""))
                apply(configfile.render(original, str(path), model, wide, new_labels))
                notify(f"Label {label} of {model} names version {version}")
            except BaseException as e:
                _undo(path, original, backup, old_backup, proto, link, e)
                raise
            moved = configfile.read_optional(path) or original
            final = sorted(set(new_labels.values()) | ({max(on_disk)} if keep_newest else set()))
            warnings: list[str] = []
            if final != wide:
                time.sleep(DRAIN_SECONDS)
                notify(f"Unloading versions {_list(sorted(set(wide) - set(final)))} (policy: versions {_list(final)})")
                try:
                    apply(configfile.render(original, str(path), model, final, new_labels))
                except MlserveError as e:
                    warnings.append(f"the label moved, but the versions it left were not unloaded: {e.message}")
                    configfile.write(path, moved)
        by = history.who()
        if result is not None:
            by += f", gate: accuracy on {result.n} test digits" + ("" if result.passed else " (failed; forced)")
        elif force:
            by += " (forced)"
        moves = [history.Move(model, label, current, version, action, by, result.as_dict() if result else None)]
        if pinned is not None:
            moves.insert(0, history.Move(model, "stable", None, pinned, "promote",
                                         f"{history.who()} (pinned: the version served before the first label)"))
        history.append(path, moves)
        return Outcome(model, label, action, current, version, True, final, new_labels, result, warnings)


def rollback(target: Target, model: str, *, label: str = "stable", keep_newest: bool = False,
             wait: float = 120.0, timeout: float = 30.0, notify: Notify = _quiet) -> Outcome:
    """Move `label` back to the version it named before its last promote (from the history)."""
    previous = history.previous_stable(history.read(target.config_file, model), label)
    if previous is None:
        raise NotFoundError(f"the history of {model!r} has no earlier version for label {label!r}",
                            hint=f"`mlserve history {model}` lists the moves; `mlserve promote {model} N` "
                                 "points the label at any version")
    return move_label(target, model, previous, label=label, action="rollback", keep_newest=keep_newest,
                      wait=wait, timeout=timeout, notify=notify)


def labels(config_file: Path, model: str) -> dict[str, int]:
    """The labels the config file gives `model` now."""
    text = config_file.read_text()
    return configfile.model_state(configfile.parse(text, str(config_file)), model, str(config_file)).labels


def _undo(path: Path, original: str, backup: Path, old_backup: str | None, proto: object,
          link: ServerLink, error: BaseException) -> None:
    """Put the file, its backup and the server's config back as they were before the command."""
    configfile.put_back(path, original)
    configfile.put_back(backup, old_backup)
    try:
        link.reload(proto)
    except MlserveError as e:
        if isinstance(error, MlserveError):
            extra = f"restoring the server's previous config failed too: {e.message}"
            error.details = f"{error.details}\n{extra}" if error.details else extra


def _v(version: int | None) -> str:
    return "(none)" if version is None else str(version)


def _list(versions: list[int]) -> str:
    return ", ".join(map(str, versions))
