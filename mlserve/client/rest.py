"""The REST client: TF Serving's `/v1/models/...` API over one keep-alive HTTP/1.1 connection."""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import quote, urlsplit

import numpy as np

from mlserve.client import (UNREACHABLE_HINT, ModelTarget, VersionStatus, check_probabilities,
                            not_found_message, output_from)
from mlserve.client.tensors import SignatureTensors, decode_outputs, info_from_json
from mlserve.errors import (NotFoundError, ServerResponseError, ServerUnreachableError, UsageError,
                            WaitTimeoutError)

try:  # orjson serialises numpy arrays in C, ~10x the stdlib json on a batch of images
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    orjson = None  # type: ignore[assignment]


def encode_json(value: object) -> bytes:
    """JSON bytes for a request body; numpy arrays become nested lists."""
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(value, default=lambda a: np.asarray(a).tolist()).encode()


def decode_json(body: bytes) -> object:
    return orjson.loads(body) if orjson is not None else json.loads(body)


def model_path(target: ModelTarget) -> str:
    """`/v1/models/<name>[/versions/N | /labels/L]`."""
    path = f"/v1/models/{quote(target.name, safe='')}"
    if target.version is not None:
        path += f"/versions/{int(target.version)}"
    elif target.label is not None:
        path += f"/labels/{quote(target.label, safe='')}"
    return path


def predict_body(images: np.ndarray, signature: str, columnar: bool = False) -> bytes:
    """The request body: row format (`instances`) or columnar (`inputs`)."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    key = "inputs" if columnar else "instances"
    return encode_json({"signature_name": signature, key: images})


class RestClient:
    """Predict and model status over TF Serving's REST API."""

    def __init__(self, url: str, target: ModelTarget, *, timeout: float = 30.0,
                 columnar: bool = False, output_name: str = "softmax") -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"not an http(s) URL: {url!r}", hint="e.g. --url http://127.0.0.1:8501")
        self.address = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.target = target
        self.timeout = timeout
        self.columnar = columnar
        self.output_name = output_name
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    # -- transport ---------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request (reconnecting once if a kept-alive connection was closed)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (socket.timeout, TimeoutError) as e:
                self.close()
                raise WaitTimeoutError(
                    f"{self.address} did not answer {method} {path} within {self.timeout:g} s",
                    hint="raise --timeout (or MLSERVE_TIMEOUT), or check the server's load") from e
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()  # a stale keep-alive connection: one fresh try
                if attempt == 2:
                    raise ServerUnreachableError(f"{self.address} closed the connection: {e}",
                                                 hint=UNREACHABLE_HINT) from e
            except OSError as e:  # refused, no route, unknown host
                self.close()
                raise ServerUnreachableError(f"no server answers at {self.address} ({e.strerror or e})",
                                             hint=UNREACHABLE_HINT) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- API ---------------------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        status, body = self.request("POST", model_path(self.target) + ":predict",
                                    predict_body(images, self.target.signature, self.columnar))
        if status != 200:
            self._raise_for(status, body)
        try:
            answer = decode_json(body)
            key = "outputs" if self.columnar else "predictions"
            return check_probabilities(output_from(answer[key], self.output_name), len(images))
        except (ValueError, KeyError, TypeError) as e:
            raise ServerResponseError(f"unexpected predict response from {self.address}: {e}",
                                      hint="is this a TF Serving-compatible server?") from e

    def signature(self) -> SignatureTensors:
        """The target signature's inputs and outputs, from the model's metadata."""
        status, body = self.request("GET", model_path(self.target) + "/metadata")
        if status != 200:
            self._raise_for(status, body)
        try:
            defs = decode_json(body)["metadata"]["signature_def"]["signature_def"]
        except (ValueError, KeyError, TypeError) as e:
            raise ServerResponseError(f"unexpected model metadata from {self.address}: {e}") from e
        return signature_from_defs(defs, self.target, self.address)

    def predict_tensors(self, signature: SignatureTensors, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send named arrays (columnar format) and return the named outputs."""
        body = encode_json({"signature_name": signature.name,
                            "inputs": {k: jsonable(v) for k, v in inputs.items()}})
        status, answer = self.request("POST", model_path(self.target) + ":predict", body)
        if status != 200:
            self._raise_for(status, answer)
        try:
            return decode_outputs(decode_json(answer)["outputs"], signature)
        except (ValueError, KeyError, TypeError) as e:
            raise ServerResponseError(f"unexpected predict response from {self.address}: {e}",
                                      hint="is this a TF Serving-compatible server?") from e

    def model_status(self) -> list[VersionStatus]:
        status, body = self.request("GET", f"/v1/models/{quote(self.target.name, safe='')}")
        if status != 200:
            self._raise_for(status, body, listing=False)
        try:
            return [VersionStatus(int(v["version"]), str(v.get("state", "")),
                                  str((v.get("status") or {}).get("error_message", "")))
                    for v in decode_json(body).get("model_version_status", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ServerResponseError(f"unexpected model status from {self.address}: {e}") from e

    def list_models(self) -> list[str] | None:
        """Model names, if the server lists them (mlserve's embedded server does; TF Serving not)."""
        try:
            status, body = self.request("GET", "/v1/models")
            if status != 200:
                return None
            answer = decode_json(body)
            items = answer.get("models", []) if isinstance(answer, dict) else answer
            names = [m if isinstance(m, str) else m.get("name") for m in items]
            return [n for n in names if n] or None
        except Exception:  # noqa: BLE001 - a listing is a courtesy: never let it hide the real error
            return None

    def _raise_for(self, status: int, body: bytes, *, listing: bool = True) -> None:
        message = error_message(body) or f"HTTP {status}"
        if status == 404:  # TF Serving maps NOT_FOUND (unknown model, version or label) to 404
            versions = models = None
            if listing:
                try:
                    versions = self.model_status()
                except Exception:  # noqa: BLE001 - the model itself is unknown: fall back to the model list
                    versions = None
                if not versions:
                    models = self.list_models()
            text, hint = not_found_message(self.target, self.address, versions, models, message)
            raise NotFoundError(text, hint=hint)
        raise ServerResponseError(f"{self.address} answered HTTP {status}: {message}",
                                  hint="the message above is the server's own")


def error_message(body: bytes) -> str:
    """The server's error text in a TF Serving JSON answer (or the body itself, cut short)."""
    try:
        answer = decode_json(body)
        if isinstance(answer, dict) and "error" in answer:
            return str(answer["error"])
    except ValueError:
        pass
    return body.decode("utf-8", "replace").strip()[:500]


def jsonable(array: np.ndarray) -> object:
    """An array as TF Serving's JSON takes it: numbers as they are, strings as text, other bytes as
    `{"b64": ...}`."""
    if array.dtype != object:
        return array
    import base64

    def one(v: object) -> object:
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode()}
        return v

    return np.vectorize(one, otypes=[object])(array).tolist() if array.size else array.tolist()


def signature_from_defs(defs: dict, target: ModelTarget, address: str) -> SignatureTensors:
    """The target's signature of a metadata `signature_def` map (REST JSON)."""
    sig = defs.get(target.signature)
    if not isinstance(sig, dict):
        raise NotFoundError(f"{target.describe()} on {address} has no signature '{target.signature}'",
                            hint=f"use --signature with one of: {', '.join(sorted(defs)) or '(none)'}")
    return SignatureTensors(target.signature,
                            {k: info_from_json(k, v) for k, v in (sig.get("inputs") or {}).items()},
                            {k: info_from_json(k, v) for k, v in (sig.get("outputs") or {}).items()})
