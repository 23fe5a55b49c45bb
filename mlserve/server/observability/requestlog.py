"""`--request_log` (mlserve extension): one JSON object per request, appended to a file.

REST and gRPC write the same fields (`RequestLog.request`): time, api ("rest" or "grpc"),
method (the HTTP method, or the gRPC method name), path (the URL path, or the gRPC method
path), status (the HTTP status, or the gRPC status number), code (TF Serving's status code
name), model, latency_ms, bytes (response), request_bytes, error (message, or null); a predict adds what the data plane noted of it:
lookup_ms (--feature_lookup), cache ("hit" or "miss", --prediction_cache*), batch, batch_limit and
queue_ms (the rows of the batch it ran in, the batcher's size limit then, its time queued).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class RequestLog:
    """Thread-safe JSON-lines writer; a `RequestLog(None)` accepts and drops every record."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._file = None
        if path:
            p = Path(path).expanduser()
            p.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(p, "a", buffering=1, encoding="utf-8")  # line-buffered: tail -f works

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def write(self, **record: Any) -> None:
        """Append `record` (plus a `time` field) as one line."""
        if self._file is None:
            return
        line = json.dumps({"time": round(time.time(), 6), **record}, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")

    def request(self, *, api: str, method: str, path: str, status: int, code: str, model: str,
                seconds: float, response_bytes: int, request_bytes: int, error: str | None = None,
                notes: dict | None = None) -> None:
        """One request's line, with the fields every protocol writes, then `notes`."""
        self.write(api=api, method=method, path=path, status=status, code=code, model=model,
                   latency_ms=round(seconds * 1000, 3), bytes=response_bytes, request_bytes=request_bytes,
                   error=error, **(notes or {}))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
