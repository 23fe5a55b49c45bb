"""promote 1→2, canary 3, promote 3, rollback to 2 on a real embedded server under load through `stable`.

Eight connections (four REST, four gRPC, each addressing the label) send predict requests while
the label moves; every request must succeed and every answer must come from a version that the
label named at some moment while that request was in flight.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from mlserve.client import ModelTarget, connect
from mlserve.rollout import actions, history
from mlserve.rollout.serverlink import ServerLink
from support.servers import ServerProcess as Server
from support.rollout import CLASSES, MODEL

CONNECTIONS = 8
MAX_REQUESTS = 3000  # per connection: the load is bounded even if the moves hang


class Load:
    """CONNECTIONS threads predicting through `stable` until stopped; every answer is kept."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stop = threading.Event()
        self.answers: list[tuple[float, float, int]] = []  # (sent, received, version that answered)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=("rest" if i % 2 else "grpc",), daemon=True)
                        for i in range(CONNECTIONS)]
        self._by_digit = {digit: version for version, digit in CLASSES.items()}

    def _run(self, transport: str) -> None:
        client = connect(ModelTarget(MODEL, label="stable"), transport=transport, url=self.server.url,
                         grpc_server=self.server.grpc, timeout=30)
        image = np.zeros((1, 28, 28, 1), np.float32)
        try:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    break
                sent = time.monotonic()
                try:
                    digit = int(np.argmax(client.predict(image)[0]))
                except Exception as e:  # noqa: BLE001 - every failure is a test failure, reported below
                    with self._lock:
                        self.errors.append(f"{transport}: {type(e).__name__}: {e}")
                    continue
                with self._lock:
                    self.answers.append((sent, time.monotonic(), self._by_digit[digit]))
        finally:
            client.close()

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


class Timeline:
    """When `stable` moved: (first moment it may have moved, moment it surely had, old, new)."""

    def __init__(self, initial: int) -> None:
        self.initial = initial
        self.moves: list[tuple[float, float, int, int]] = []
        self._start: float | None = None
        self._end: float | None = None

    def notify(self, message: str) -> None:
        if message.startswith("Moving label stable"):
            self._start = time.monotonic()
        elif message.startswith("Label stable"):  # the server took the move
            self._end = time.monotonic()

    def run(self, step, *args, **kwargs) -> actions.Outcome:
        self._start = self._end = None
        outcome = step(*args, notify=self.notify, **kwargs)
        if outcome.label == "stable" and outcome.changed:
            assert self._start is not None and self._end is not None
            self.moves.append((self._start, self._end, outcome.from_version, outcome.to_version))
        return outcome

    def allowed(self, sent: float, received: float) -> set[int]:
        current = self.initial
        for start, end, _, new in self.moves:
            if end <= sent:
                current = new
        allowed = {current}
        for start, end, old, new in self.moves:
            if start < received and end > sent:
                allowed |= {old, new}
        return allowed


def test_moves_under_load_fail_no_request_and_answer_from_the_labelled_version(
        server: Server, config_file: Path) -> None:
    target = actions.Target(config_file, server.grpc)
    timeline = Timeline(initial=1)
    with Load(server) as load:
        time.sleep(0.5)
        first = timeline.run(actions.move_label, target, MODEL, 2)
        time.sleep(0.3)
        canary = timeline.run(actions.move_label, target, MODEL, 3, label="canary", action="canary")
        time.sleep(0.3)
        third = timeline.run(actions.move_label, target, MODEL, 3)
        time.sleep(0.3)
        back = timeline.run(actions.rollback, target, MODEL)
        time.sleep(0.5)
    assert not load.errors, load.errors[:5]
    assert len(load.answers) > 50, "the load ran too few requests to mean anything"
    wrong = [(s, r, v) for s, r, v in load.answers if v not in timeline.allowed(s, r)]
    assert not wrong, f"{len(wrong)} answers from a version the label did not name: {wrong[:5]}"
    # the answers after the last move come from version 2
    assert {v for s, _, v in load.answers if s > timeline.moves[-1][1]} == {2}

    assert (first.from_version, first.to_version, first.loaded) == (1, 2, [2])
    assert (canary.from_version, canary.to_version, canary.labels) == (None, 3, {"stable": 2, "canary": 3})
    assert canary.loaded == [2, 3]
    assert (third.from_version, third.to_version, third.loaded) == (2, 3, [3])
    assert (back.action, back.from_version, back.to_version, back.loaded) == ("rollback", 3, 2, [2, 3])

    # the server: the policy unloaded what no label names, and the labels answer as the file says
    with ServerLink(server.grpc) as link:
        assert link.available(MODEL) == {2, 3}
        assert link.available("other") == {4}
    for label, version in (("stable", 2), ("canary", 3)):
        for transport in ("rest", "grpc"):
            client = connect(ModelTarget(MODEL, label=label), transport=transport, url=server.url,
                             grpc_server=server.grpc)
            assert int(np.argmax(client.predict(np.zeros((2, 28, 28, 1), np.float32))[0])) == CLASSES[version]
            client.close()

    # the file: the user's comments and the other model are as they were; a backup of the last state
    text = config_file.read_text()
    assert "# Written by hand: rollout commands keep this comment and the other model." in text
    assert 'name: "other"  # a second model nobody touches' in text
    assert actions.labels(config_file, MODEL) == {"stable": 2, "canary": 3}
    assert config_file.with_name("models.config.bak").exists()

    # the history: four moves, oldest first
    moves = history.read(config_file, MODEL)
    assert [(m.label, m.from_version, m.to_version, m.action) for m in moves] == [
        ("stable", 1, 2, "promote"), ("canary", None, 3, "canary"), ("stable", 2, 3, "promote"),
        ("stable", 3, 2, "rollback")]
    assert all(m.by and m.time for m in moves)
