"""Prediction cache keys: a 32-byte BLAKE2b digest of everything that decides an answer.

That is: the model's name and version, a fingerprint of the version's files (so a version
re-exported under the same number, or one served from another path by another replica, is told
apart or matched by content), the signature, the output filter, and each input's name, dtype,
shape and bytes in a canonical form (C order; strings length-prefixed). Two requests share a key
only when they would run the same model on the same tensors.
"""
from __future__ import annotations

import hashlib
import struct
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt", "model.tflite")
_fingerprints: dict[int, tuple[Any, bytes]] = {}
_lock = threading.Lock()


def fingerprint(servable: Any) -> bytes:
    """A digest of the version's graph file (read once per loaded version)."""
    cached = _fingerprints.get(id(servable))
    if cached is not None and cached[0] is servable:
        return cached[1]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{servable.name}\0{servable.version}\0".encode())
    path = Path(getattr(servable, "path", "") or ".")
    for name in _MODEL_FILES:
        file = path / name
        if file.is_file():
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            break
    value = digest.digest()
    with _lock:
        if len(_fingerprints) > 256:
            _fingerprints.clear()
        _fingerprints[id(servable)] = (servable, value)
    return value


def request_key(servable: Any, signature_name: str, inputs: dict[str, Any],
                output_filter: Sequence[str] | None) -> bytes | None:
    """The key (see the module docstring), or None for an input that is not an array."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(fingerprint(servable))
    digest.update(f"{signature_name or ''}\0{','.join(sorted(output_filter or ()))}\0".encode())
    for name in sorted(inputs):
        arr = inputs[name]
        if not isinstance(arr, np.ndarray):
            return None
        digest.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        if arr.dtype == object:
            for item in arr.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                digest.update(struct.pack("<Q", len(data)))
                digest.update(data)
        else:
            digest.update(np.ascontiguousarray(arr).data)
    return digest.digest()
