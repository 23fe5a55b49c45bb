"""What a `HandleReloadConfigRequest` may ask for: the checks that keep the reload RPC from being
turned against the host (docs/security.md).

- A relative base path is refused, as TF Serving refuses it (`server_core.cc`,
  `UriIsRelativePath`), with TF Serving's wording.
- With `--allowed_model_roots` (mlserve extension; default empty: any absolute path, as in TF
  Serving, because a reload naming any folder is TF Serving's documented behaviour), every base
  path must lie under one of the roots once symlinks and `..` are resolved.
  The resolved path is what is kept and loaded (resolved once: a symlink swapped after the
  check changes nothing), and version folders that resolve outside the roots are not loaded
  (`ModelManager.allowed_roots`).
- A reload after which none of the models AVAILABLE now would stay served (an empty
  `model_config_list`, or one naming none of them, e.g. only `{name: "x", base_path:
  "/nonexistent"}`) is refused unless the server was started with `--allow_unload_all_models`:
  any marker inside the request could be set by the very client this guards against, and TF
  Serving's proto has no field for it. A model stays served when the new list names it (a
  base path without versions keeps what is loaded); replacing model A by B takes two reloads,
  [A, B] then [B] once B is AVAILABLE.

Only the RPC is checked: `--model_base_path` and `--model_config_file` come from the operator.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

from mlserve.server.errors import ServingError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_relative(uri: str) -> bool:
    """TF Serving's `UriIsRelativePath`: no scheme, no host, and not an absolute path."""
    return not _SCHEME.match(uri) and not os.path.isabs(uri)


@dataclass(frozen=True)
class ReloadPolicy:
    allowed_roots: tuple[str, ...] = ()  # resolved folders; empty: any absolute path
    allow_unload_all: bool = False

    @classmethod
    def from_flags(cls, allowed_model_roots: str, allow_unload_all_models: bool) -> "ReloadPolicy":
        roots = tuple(os.path.realpath(os.path.expanduser(r.strip()))
                      for r in allowed_model_roots.split(",") if r.strip())
        return cls(roots, allow_unload_all_models)

    def check(self, config: Any, available: Iterable[str]) -> None:
        """Raise INVALID_ARGUMENT when the ModelServerConfig `config` breaks a rule above
        (`available`: the names of the models with an AVAILABLE version now). With allowed
        roots, each local base path is replaced by its resolved form, the one that was checked."""
        models = list(config.model_config_list.config)
        available = sorted(available)
        if available and not self.allow_unload_all and not {mc.name for mc in models} & set(available):
            if not models:
                raise ServingError("INVALID_ARGUMENT",
                                   "Refusing a config reload that would unload every model (the "
                                   "model_config_list is empty); the server allows it only when started "
                                   "with --allow_unload_all_models")
            raise ServingError("INVALID_ARGUMENT",
                               "Refusing a config reload that would unload every model: the "
                               "model_config_list names none of the models available now "
                               f"({','.join(available)}); keep one of them in the list, or start the "
                               "server with --allow_unload_all_models")
        for mc in models:
            if is_relative(mc.base_path):
                raise ServingError("INVALID_ARGUMENT", f"Expected model {mc.name} to have an absolute path or "
                                                       f"URI; got base_path()={mc.base_path}")
            if self.allowed_roots:
                if _SCHEME.match(mc.base_path) or not under_roots(os.path.realpath(mc.base_path),
                                                                  self.allowed_roots):
                    raise ServingError("INVALID_ARGUMENT",
                                       f"Model {mc.name} base_path()={mc.base_path} is outside the allowed model "
                                       f"roots (--allowed_model_roots={','.join(self.allowed_roots)})")
        if self.allowed_roots:  # all checked: keep the resolved paths, which are what is loaded
            for mc in models:
                mc.base_path = os.path.realpath(mc.base_path)


def under_roots(real: str, roots: Iterable[str]) -> bool:
    """Whether the resolved path `real` is one of `roots` (resolved folders) or lies under one."""
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
