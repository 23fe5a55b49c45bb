"""Triton's binary tensor data extension, as the v2 REST binding uses it: a request body is a JSON
header of `Inference-Header-Content-Length` bytes, then each binary input's raw bytes in input
order (`parameters.binary_data_size` each); an answer likewise, for the outputs asked for as
`binary_data` (or all of them with `binary_data_output`). Slices are views of the body."""
from __future__ import annotations

from typing import Any

from mlserve.server.frontends.v2.tensors import bad

HEADER = b"inference-header-content-length"


def split(body: bytes | bytearray, header_length: bytes | None) -> tuple[memoryview, memoryview]:
    """(the JSON header, the binary data after it); all of the body is JSON without the header."""
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view):]
    try:
        n = int(header_length)
    except ValueError:
        raise bad(f"Inference-Header-Content-Length {header_length.decode('latin-1')!r} is not a number") from None
    if not 0 <= n <= len(view):
        raise bad(f"Inference-Header-Content-Length {n} is past the end of the {len(view)}-byte body")
    return view[:n], view[n:]


def binary_size(entry: dict) -> int | None:
    """An input's `binary_data_size`, or None when its data is JSON."""
    params = entry.get("parameters")
    if not isinstance(params, dict) or "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad(f"input '{entry.get('name')}': binary_data_size must be an integer >= 0, got {size!r}")
    return size


def take(data: memoryview, entries: list[dict[str, Any]]) -> list[memoryview | None]:
    """Each input's raw bytes (None for a JSON input), cut from `data` in order; the sizes must
    add up to exactly what follows the header."""
    out: list[memoryview | None] = []
    at = 0
    for entry in entries:
        size = binary_size(entry)
        if size is None:
            out.append(None)
            continue
        if at + size > len(data):
            raise bad(f"input '{entry.get('name')}': binary_data_size {size} runs past the body "
                      f"({len(data) - at} bytes left)")
        out.append(data[at:at + size])
        at += size
    if at != len(data):
        raise bad(f"{len(data) - at} bytes of binary data after the last input's binary_data_size")
    return out
