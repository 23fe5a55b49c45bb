"""Answers as bytes for a shared tier: a small JSON header, then each output's raw bytes.

    b"MLPC1\n" + len(header) (4 bytes, little-endian) + header JSON + data
    header: [{"name", "dtype" (numpy's dtype.str, or "object"), "shape", "lengths" (object only)}]

Numbers round-trip bit for bit; strings are length-prefixed bytes. No pickle: a value read from a
shared store is data, never code. A value that does not parse is a miss.
"""
from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"MLPC1\n"


def encode(outputs: dict) -> bytes:
    header = []
    chunks = []
    for name, value in outputs.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            items = [v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1)]
            header.append({"name": name, "dtype": "object", "shape": list(arr.shape),
                           "lengths": [len(v) for v in items]})
            chunks.extend(items)
        else:
            header.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)})
            chunks.append(np.ascontiguousarray(arr).tobytes())
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *chunks])


def decode(data: bytes) -> dict | None:
    """The outputs, or None for bytes this codec did not write."""
    try:
        if not data.startswith(MAGIC):
            return None
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + size])
        pos = start + size
        outputs = {}
        for item in header:
            shape = tuple(int(d) for d in item["shape"])
            if item["dtype"] == "object":
                values = []
                for length in item["lengths"]:
                    values.append(data[pos:pos + length])
                    pos += length
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
                arr = arr.reshape(shape)
            else:
                dtype = np.dtype(item["dtype"])
                count = int(np.prod(shape, dtype=np.int64))
                nbytes = count * dtype.itemsize
                if pos + nbytes > len(data):
                    return None
                arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(shape)
                pos += nbytes
            outputs[item["name"]] = arr
        return outputs if pos == len(data) else None
    except (ValueError, KeyError, TypeError, struct.error):
        return None
