"""The model server behind `mlserve ui`: its versions and labels, and a predict per picked version.

One server, fixed when the app starts (flags, never the page). Predictions go over REST (or gRPC
with --grpc-server) through mlserve.client, as `mlserve predict` sends them; the image is framed by
mlserve.model.inputs (the one MNIST framing). Every call opens its own client: requests of the page
run on a thread pool and a client holds one connection.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlserve.client import ModelTarget, UNREACHABLE_HINT, connect
from mlserve.errors import MlserveError, UsageError

KNOWN_LABELS = ("stable", "canary")  # asked of the server by name: TF Serving lists no labels
MAX_TARGETS = 2  # the page compares at most two versions side by side
LABEL_PROBE_S = 10.0  # how often the labels are asked of the server (the page polls every 1.5 s)


@dataclass(frozen=True)
class Choice:
    """What the page picked: the latest version, a version, or a label ("latest", "v2", "stable")."""

    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Choice":
        text = (text or "latest").strip()
        if text == "latest":
            return cls()
        if text.startswith("v") and text[1:].isdigit():
            return cls(version=int(text[1:]))
        if text.isidentifier() or text.replace("-", "_").isidentifier():
            return cls(label=text)
        raise UsageError(f"not a version or label: {text!r}", hint="pick 'latest', 'v<N>' or a label")

    @property
    def key(self) -> str:
        return f"v{self.version}" if self.version is not None else (self.label or "latest")


@dataclass
class Answer:
    """One version's answer to one image, or the server's error text."""

    choice: str
    version: int | None = None
    probabilities: list[float] = field(default_factory=list)
    predicted: int | None = None
    ms: float | None = None  # the model server's round trip, as seen by the app
    error: str = ""
    hint: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"choice": self.choice, "version": self.version, "probabilities": self.probabilities,
                "predicted": self.predicted, "ms": self.ms, "error": self.error, "hint": self.hint}


@dataclass(frozen=True)
class Backend:
    """The configured model server: REST `url` (status, metadata, metrics) and optional gRPC."""

    url: str
    model: str
    grpc_server: str | None = None
    timeout: float = 10.0
    config_file: Path | None = None  # a model config file: its labels and its `mlserve history`
    # the app's own failed requests (a label the server lacks): the live panel leaves them out
    own_errors: list[int] = field(default_factory=lambda: [0])
    probed: dict[str, tuple[float, int | None]] = field(default_factory=dict)  # label -> (when, version)

    @property
    def transport(self) -> str:
        return "grpc" if self.grpc_server else "rest"

    def _client(self, target: ModelTarget, transport: str | None = None):
        return connect(target, transport=transport or self.transport, url=self.url,
                       grpc_server=self.grpc_server, timeout=self.timeout)

    # -- status -----------------------------------------------------------------------------
    def versions(self) -> list[dict[str, object]]:
        """Every version the server reports, newest first: version, state, error, labels.

        Labels are those of the config file (when given or recorded) and those the server
        resolves when asked by name (stable, canary); any ServerUnreachableError propagates.
        """
        client = self._client(ModelTarget(self.model), "rest")
        try:
            statuses = client.model_status()
            labels = self._labels(client)
        finally:
            client.close()
        rows = []
        for s in sorted(statuses, key=lambda s: -s.version):
            rows.append({"version": s.version, "state": s.state, "error": s.error,
                         "labels": sorted(k for k, v in labels.items() if v == s.version)})
        return rows

    def _labels(self, client) -> dict[str, int]:
        found: dict[str, int] = {}
        for version, names in self._config_labels().items():
            for name in names:
                found[name] = version
        for label in KNOWN_LABELS:
            if label in found:
                continue
            when, version = self.probed.get(label, (0.0, None))
            if time.monotonic() - when > LABEL_PROBE_S:  # labels move rarely: ask now and then
                version = _metadata_version(client, ModelTarget(self.model, label=label))
                if version is None:
                    self.own_errors[0] += 1
                self.probed[label] = (time.monotonic(), version)
            if version is not None:
                found[label] = version
        return found

    def _config_labels(self) -> dict[int, list[str]]:
        from mlserve.rollout import configfile

        if self.config_file is None:
            return {}
        try:
            proto = configfile.parse(self.config_file.read_text(), str(self.config_file))
            labels = configfile.model_state(proto, self.model, str(self.config_file)).labels
        except (OSError, MlserveError):
            return {}
        by_version: dict[int, list[str]] = {}
        for label, version in labels.items():
            by_version.setdefault(version, []).append(label)
        return by_version

    def history(self, last: int = 5) -> list[dict[str, object]]:
        """The last label moves (`mlserve history`), newest first; none without a config file."""
        from mlserve.rollout import history

        if self.config_file is None:
            return []
        try:
            moves = history.read(self.config_file, self.model)
        except MlserveError:
            return []
        return [m.as_dict() for m in reversed(moves[-last:])]

    # -- predict ----------------------------------------------------------------------------
    def predict(self, image: np.ndarray, choice: Choice) -> Answer:
        """One framed 28×28 image sent to one version; errors come back as the server's text."""
        target = ModelTarget(self.model, version=choice.version, label=choice.label)
        answer = Answer(choice.key)
        client = self._client(target)
        try:
            start = time.perf_counter()
            probabilities = client.predict(image.reshape(1, 28, 28, 1).astype(np.float32))[0]
            answer.ms = round((time.perf_counter() - start) * 1000, 2)
            answer.probabilities = [round(float(p), 6) for p in probabilities]
            answer.predicted = int(np.argmax(probabilities))
            answer.version = choice.version if choice.version is not None else self._answering(target)
        except MlserveError as e:
            answer.error, answer.hint = e.message, e.hint or ""
        finally:
            client.close()
        return answer

    def _answering(self, target: ModelTarget) -> int | None:
        """The version a label or "latest" names now (REST predict answers carry no version)."""
        from mlserve.client.rest import RestClient

        client = RestClient(self.url, target, timeout=self.timeout)
        try:
            return _metadata_version(client, target)
        finally:
            client.close()


def _metadata_version(client, target: ModelTarget) -> int | None:
    """The version the server resolves `target` to: its metadata's model_spec.version (model status
    ignores labels, in TF Serving as here)."""
    from mlserve.client.rest import decode_json, model_path

    try:
        status, body = client.request("GET", model_path(target) + "/metadata")
        if status != 200:
            return None
        return int(decode_json(body)["model_spec"]["version"])
    except (MlserveError, ValueError, KeyError, TypeError, AttributeError):
        return None


def unreachable(backend: Backend, error: MlserveError) -> dict[str, str]:
    """What the page says when the model server does not answer."""
    return {"message": error.message, "hint": error.hint or UNREACHABLE_HINT, "url": backend.url}
