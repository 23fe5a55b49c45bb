"""What a `HandleReloadConfigRequest` may ask for: the checks that keep the reload RPC from being
turned against the host (docs/security.md).

- A relative base path is refused, as TF Serving refuses it (`server_core.cc`,
  `UriIsRelativePath`), with TF Serving's wording.
- With `--allowed_model_roots` (mlserve extension; default empty: any absolute path, as in TF
  Serving, because a reload naming any folder is TF Serving's documented behaviour), every base
  path must lie under one of the roots once symlinks and `..` are resolved.
- A reload that would unload every model (an empty `model_config_list`) is refused unless the
  server was started with `--allow_unload_all_models`: any marker inside the request could be
  set by the very client this guards against, and TF Serving's proto has no field for it.

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

    def check(self, config: Any, served: Iterable[str]) -> None:
        """Raise INVALID_ARGUMENT when the ModelServerConfig `config` breaks a rule above."""
        models = list(config.model_config_list.config)
        if not models and list(served) and not self.allow_unload_all:
            raise ServingError("INVALID_ARGUMENT",
                               "Refusing a config reload that would unload every model (the "
                               "model_config_list is empty); the server allows it only when started "
                               "with --allow_unload_all_models")
        for mc in models:
            if is_relative(mc.base_path):
                raise ServingError("INVALID_ARGUMENT", f"Expected model {mc.name} to have an absolute path or "
                                                       f"URI; got base_path()={mc.base_path}")
            if self.allowed_roots and not self._allowed(mc.base_path):
                raise ServingError("INVALID_ARGUMENT",
                                   f"Model {mc.name} base_path()={mc.base_path} is outside the allowed model "
                                   f"roots (--allowed_model_roots={','.join(self.allowed_roots)})")

    def _allowed(self, base_path: str) -> bool:
        if _SCHEME.match(base_path):
            return False  # a URI cannot be resolved against local roots
        real = os.path.realpath(base_path)
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.allowed_roots)
