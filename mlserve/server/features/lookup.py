"""`FeatureLookup`: fill the signature inputs a request lacks from the online store.

The data plane calls `complete(servable, signature, inputs)` before a predict reaches the
servable, for REST and gRPC alike; with batching on, the batcher calls `complete_many` once per
batch instead, so a batch of keyed requests costs one store read. A request that already carries every input
the config fills comes back unchanged (the same dict): a TF Serving request passes through. A
request with the entity key gets one batched store read; the key input is dropped when the
signature does not take it. Failures are `ServingError`s: the store down or slow past its
timeout -> UNAVAILABLE naming the store; an unknown entity -> NOT_FOUND (or the configured
defaults); a bad key -> INVALID_ARGUMENT. The REST decoder asks `request_dtypes` which inputs a
keyed request carries.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from mlserve.server.errors import ServingError
from mlserve.server.features.config import LookupConfig, load_config
from mlserve.server.features.stores import Store, StoreUnavailableError, open_store
from mlserve.server.observability import metrics

log = logging.getLogger("mlserve.server")

_KEY_NUMPY = {"string": np.dtype(object), "int64": np.dtype(np.int64), "int32": np.dtype(np.int32)}
_SHOWN_KEYS = 5  # how many missing entities an error names


class FeatureLookup:
    """A lookup config and its open store; thread-safe (one read per request)."""

    def __init__(self, config: LookupConfig) -> None:
        self.config = config
        self.store: Store = open_store(config.store, config.key_input)
        self.store.check(config.features)
        self.timeout = config.store.timeout_ms / 1000
        self._dtypes: dict[tuple[int, str], dict[str, Any]] = {}

    @classmethod
    def from_file(cls, path: str) -> FeatureLookup:
        """Read and check the config; open (and check) the store. UsageError when wrong."""
        return cls(load_config(path))

    def close(self) -> None:
        self.store.close()

    def request_dtypes(self, signature: Any) -> dict[str, Any]:
        """The inputs a keyed request carries for `signature` (a SignatureInfo), with dtypes:
        the signature's, less those the store fills, plus the entity key."""
        cache_key = (id(signature), signature.name)
        cached = self._dtypes.get(cache_key)
        if cached is None:
            filled = {fill.input for fill in self.config.inputs}
            cached = {k: spec.dtype for k, spec in signature.inputs.items() if k not in filled}
            cached.setdefault(self.config.key_input, _KEY_NUMPY[self.config.key_dtype])
            if len(self._dtypes) > 256:
                self._dtypes.clear()
            self._dtypes[cache_key] = cached
        return cached

    def needs_lookup(self, servable: Any, signature_name: str, inputs: dict[str, np.ndarray]) -> bool:
        """Whether `inputs` carry the entity key and lack inputs the store fills."""
        sig = servable.signatures.get(signature_name or "serving_default")
        return sig is not None and self._wanted(sig, inputs) != [] and self.config.key_input in inputs

    def complete(self, servable: Any, signature_name: str, inputs: dict[str, np.ndarray],
                 timeout: float | None = None, notes: dict | None = None) -> dict[str, np.ndarray]:
        """`inputs` with the store's features filled in (see the module docstring)."""
        if not self.needs_lookup(servable, signature_name, inputs):
            return inputs  # complete already, or no key: the servable checks the inputs as ever
        result = self.complete_many(servable, signature_name, [inputs], timeout, [notes])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def complete_many(self, servable: Any, signature_name: str, requests: list[dict[str, np.ndarray]],
                      timeout: float | None = None, notes: list[dict | None] | None = None
                      ) -> list[dict[str, np.ndarray] | ServingError]:
        """Each request (every one `needs_lookup`) completed, from ONE store read for all their
        entities: what a batch of keyed requests costs. A request's own failure (a bad key, an
        unknown entity) is its list entry; the store failing fails them all."""
        sig = servable.signatures[signature_name or "serving_default"]
        config = self.config
        keys_of: list[list[str | int] | ServingError] = []
        for inputs in requests:
            try:
                keys_of.append(self._keys(inputs[config.key_input]))
            except ServingError as e:
                keys_of.append(e)
        everyone = [k for keys in keys_of if not isinstance(keys, ServingError) for k in keys]
        budget = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        start = time.perf_counter()
        status = "OK"
        try:
            rows = self.store.read(everyone, config.features, budget) if everyone else []
        except StoreUnavailableError as e:
            status = "UNAVAILABLE"
            error = ServingError("UNAVAILABLE", f"Feature store {self.store.label} unavailable: {e}")
            return [error for _ in requests]
        finally:
            seconds = time.perf_counter() - start
            metrics.observe_feature_lookup(servable.name, self.store.label, status, seconds)
            for keys, note in zip(keys_of, notes or []):
                if note is not None and not isinstance(keys, ServingError):  # the request's own log line
                    note.update(lookup_ms=round(seconds * 1000, 3), lookup_entities=len(keys), lookup_code=status)
        results: list[dict[str, np.ndarray] | ServingError] = []
        at = 0
        for inputs, keys in zip(requests, keys_of):
            if isinstance(keys, ServingError):
                results.append(keys)
                continue
            mine, at = rows[at:at + len(keys)], at + len(keys)
            try:
                results.append(self._fill(sig, inputs, keys, mine))
            except ServingError as e:
                results.append(e)
        return results

    def _wanted(self, sig: Any, inputs: dict[str, np.ndarray]) -> list:
        return [f for f in self.config.inputs if f.input in sig.inputs and f.input not in inputs]

    def _fill(self, sig: Any, inputs: dict[str, np.ndarray], keys: list, rows: list) -> dict[str, np.ndarray]:
        config = self.config
        key = config.key_input
        index = {name: i for i, name in enumerate(config.features)}
        missing = [k for k, row in zip(keys, rows) if row is None or any(v is None for v in row)]
        if missing and config.on_missing == "error":
            shown = ", ".join(repr(k) for k in missing[:_SHOWN_KEYS])
            more = f" and {len(missing) - _SHOWN_KEYS} more" if len(missing) > _SHOWN_KEYS else ""
            raise ServingError("NOT_FOUND", f"Feature store {self.store.label} has no features for "
                                            f"{key} {shown}{more}")
        completed = {k: v for k, v in inputs.items() if k != key or key in sig.inputs}
        for fill in self._wanted(sig, inputs):
            values = np.empty((len(keys), len(fill.features)), dtype=fill.dtype)
            for r, row in enumerate(rows):
                for c, feature in enumerate(fill.features):
                    v = None if row is None else row[index[feature]]
                    values[r, c] = fill.defaults[c] if v is None else self._number(v, keys[r], feature)
            shape = sig.inputs[fill.input].shape
            if shape is not None and len(shape) == 1 and len(fill.features) == 1:
                values = values.reshape(len(keys))
            completed[fill.input] = values
        return completed

    def _keys(self, array: np.ndarray) -> list[str | int]:
        arr = np.asarray(array)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim > 1:
            raise ServingError("INVALID_ARGUMENT", f"Entity key {self.config.key_input} must hold one key "
                                                   f"per example (shape [batch] or [batch, 1]), got {list(arr.shape)}")
        items = arr.reshape(-1).tolist()
        if self.config.key_dtype == "string":
            return [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in items]
        try:
            return [int(k) for k in items]
        except (TypeError, ValueError):
            raise ServingError("INVALID_ARGUMENT", f"Entity key {self.config.key_input} must be "
                                                   f"{self.config.key_dtype}, got {arr.dtype}") from None

    def _number(self, value: Any, key: Any, feature: str) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ServingError("FAILED_PRECONDITION",
                               f"Feature store {self.store.label}: {feature} of {key!r} is "
                               f"{value!r}, not a number") from None
