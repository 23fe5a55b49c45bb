"""The `--feature_lookup` config: which request input is the entity key, which store, which
features fill which signature input (in which order, with which dtype), and what a missing entity
does. Read once at start-up; every mistake is a `UsageError` naming the field, so a bad config
stops the server before it serves anything.

    entity_key: {input: restaurant_id, dtype: string}
    store: {sqlite: features.db, table: restaurant_features, timeout_ms: 200}
    #  or {redis: redis://127.0.0.1:6379/0, key_prefix: "restaurant:", timeout_ms: 200}
    #  or {redis_env: MLSERVE_FEATURE_REDIS_URL, ...}   (the URL from a Secret)
    inputs:
      orders_last_hour: {features: [orders_last_hour], dtype: float32}
    on_missing: error        # or: default (each feature's `defaults`, else 0)
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlserve.errors import UsageError

KEY_DTYPES = ("string", "int64", "int32")
FEATURE_DTYPES = ("float32", "float64", "int64", "int32")
ON_MISSING = ("error", "default")
DEFAULT_TIMEOUT_MS = 200
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # SQLite column / table names we quote-free use


@dataclass(frozen=True)
class InputFill:
    """One signature input filled from the store: its features in order, dtype, defaults."""

    input: str
    features: tuple[str, ...]
    dtype: np.dtype
    defaults: tuple[float, ...]


@dataclass(frozen=True)
class StoreConfig:
    """Where the features live: `kind` "sqlite" (a file path) or "redis" (a URL)."""

    kind: str
    location: str  # the SQLite file, or the Redis URL (may hold a password: never printed)
    table: str = "features"  # SQLite table
    key_prefix: str = ""  # Redis hash of an entity: key_prefix + key
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @property
    def label(self) -> str:
        """How errors and metrics name the store (a Redis URL without its password)."""
        if self.kind == "sqlite":
            return f"sqlite:{self.location}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.location)
        host = parts.hostname or "localhost"
        return f"redis://{host}:{parts.port or 6379}{parts.path or ''}"


@dataclass(frozen=True)
class LookupConfig:
    key_input: str
    key_dtype: str
    store: StoreConfig
    inputs: tuple[InputFill, ...]
    on_missing: str

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature read from the store, once each, in first-mention order."""
        seen: dict[str, None] = {}
        for fill in self.inputs:
            for f in fill.features:
                seen.setdefault(f, None)
        return tuple(seen)


def _bad(field: str, problem: str, path: str) -> UsageError:
    return UsageError(f"--feature_lookup {path}: {field}: {problem}",
                      hint="docs/feature-lookup.md shows a complete config.")


def _name(value: Any, field: str, path: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _bad(field, f"expected a name of letters, digits and _, got {value!r}", path)
    return value


def load_config(path: str | Path) -> LookupConfig:
    """Read and check the config at `path` (YAML or JSON; a .json file is read as JSON)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--feature_lookup: cannot read {p}: {e.strerror or e}",
                         hint="pass the path of a YAML or JSON lookup config") from e
    try:
        if p.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError / json.JSONDecodeError
        raise UsageError(f"--feature_lookup {p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                         f"{str(e).splitlines()[0]}") from e
    return parse_config(doc, base=p.parent, path=str(p))


def parse_config(doc: Any, *, base: Path = Path("."), path: str = "<config>") -> LookupConfig:
    """Check a parsed config document; relative SQLite paths are read from `base`."""
    if not isinstance(doc, dict):
        raise _bad("top level", "expected a mapping with entity_key, store and inputs", path)
    unknown = set(doc) - {"entity_key", "store", "inputs", "on_missing"}
    if unknown:
        raise _bad(", ".join(sorted(unknown)), "unknown field (known: entity_key, store, inputs, on_missing)", path)
    key = doc.get("entity_key")
    if isinstance(key, str):
        key = {"input": key}
    if not isinstance(key, dict) or "input" not in key:
        raise _bad("entity_key", "expected {input: NAME, dtype: string|int64}", path)
    key_input = _name(key["input"], "entity_key.input", path)
    key_dtype = key.get("dtype", "string")
    if key_dtype not in KEY_DTYPES:
        raise _bad("entity_key.dtype", f"{key_dtype!r} is not one of {', '.join(KEY_DTYPES)}", path)
    store = _store(doc.get("store"), base, path)
    on_missing = doc.get("on_missing", "error")
    if on_missing not in ON_MISSING:
        raise _bad("on_missing", f"{on_missing!r} is not one of {', '.join(ON_MISSING)}", path)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        raise _bad("inputs", "expected a mapping of signature input -> {features: [...], dtype: ...}", path)
    fills = []
    for input_name, spec in raw_inputs.items():
        field = f"inputs.{input_name}"
        if not isinstance(input_name, str) or not input_name:
            raise _bad(field, "expected a signature input name", path)
        if input_name == key_input:
            raise _bad(field, "the entity key input cannot also be filled from the store", path)
        if isinstance(spec, list):
            spec = {"features": spec}
        if not isinstance(spec, dict):
            raise _bad(field, "expected {features: [...], dtype: ..., defaults: [...]}", path)
        features = spec.get("features")
        if isinstance(features, str):
            features = [features]
        if not isinstance(features, list) or not features:
            raise _bad(f"{field}.features", "expected a non-empty list of feature names", path)
        names = tuple(_name(f, f"{field}.features", path) for f in features)
        dtype = spec.get("dtype", "float32")
        if dtype not in FEATURE_DTYPES:
            raise _bad(f"{field}.dtype", f"{dtype!r} is not one of {', '.join(FEATURE_DTYPES)}", path)
        defaults = spec.get("defaults", [0] * len(names))
        if not isinstance(defaults, list):
            defaults = [defaults]
        if len(defaults) != len(names) or not all(
                isinstance(d, (int, float)) and not isinstance(d, bool) for d in defaults):
            raise _bad(f"{field}.defaults", f"expected {len(names)} number(s), one per feature", path)
        fills.append(InputFill(input_name, names, np.dtype(dtype), tuple(float(d) for d in defaults)))
    return LookupConfig(key_input, key_dtype, store, tuple(fills), on_missing)


def _store(raw: Any, base: Path, path: str) -> StoreConfig:
    if not isinstance(raw, dict):
        raise _bad("store", "expected {sqlite: FILE} or {redis: URL} or {redis_env: VARIABLE}", path)
    kinds = [k for k in ("sqlite", "redis", "redis_env") if k in raw]
    if len(kinds) != 1:
        raise _bad("store", "name exactly one of sqlite, redis, redis_env", path)
    unknown = set(raw) - {"sqlite", "redis", "redis_env", "table", "key_prefix", "timeout_ms"}
    if unknown:
        raise _bad("store", f"unknown field(s) {', '.join(sorted(unknown))}", path)
    timeout = raw.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 60_000:
        raise _bad("store.timeout_ms", f"expected milliseconds from 1 to 60000, got {timeout!r}", path)
    if kinds[0] == "sqlite":
        file = Path(str(raw["sqlite"])).expanduser()
        file = file if file.is_absolute() else (base / file)
        table = _name(raw.get("table", "features"), "store.table", path)
        return StoreConfig("sqlite", str(file), table=table, timeout_ms=timeout)
    if kinds[0] == "redis_env":
        var = str(raw["redis_env"])
        url = os.environ.get(var, "")
        if not url:
            raise _bad("store.redis_env", f"environment variable {var} is not set", path)
    else:
        url = str(raw["redis"])
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise _bad("store.redis", "expected a redis://HOST:PORT/DB URL", path)
    prefix = raw.get("key_prefix", "")
    if not isinstance(prefix, str):
        raise _bad("store.key_prefix", "expected a string", path)
    return StoreConfig("redis", url, key_prefix=prefix, timeout_ms=timeout)
