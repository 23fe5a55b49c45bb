"""ModelManager against real SavedModels on disk: load, policies, swaps, failures, config reloads."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from mlserve.server.models.config import ModelConfig, VersionPolicy, parse_text
from mlserve.server.errors import ServingError
from mlserve.server.models.manager import ModelManager, scan_versions
from support.models import MODEL_NAME
from support.tinymodels import digits_batch


def _manager(models: list[ModelConfig], **kw: object) -> ModelManager:
    kw.setdefault("poll_seconds", 0)
    return ModelManager(models, **kw)  # type: ignore[arg-type]


def _states(m: ModelManager, name: str = MODEL_NAME) -> dict[int, str]:
    return {s.version: s.state for s in m.status(name)}


def test_load_predict_and_not_found_wording(digits_base: Path) -> None:
    m = _manager([ModelConfig(MODEL_NAME, str(digits_base))])
    m.start()
    try:
        assert m.all_available() and m.model_names() == [MODEL_NAME]
        servable = m.get(MODEL_NAME)
        assert servable.version == 1
        out = servable.run(None, {"Conv1_input": digits_batch(4)})
        assert out["softmax"].shape == (4, 10)
        np.testing.assert_allclose(out["softmax"].sum(axis=1), 1, rtol=1e-5)
        [st] = m.status(MODEL_NAME)
        assert (st.version, st.state, st.error_code) == (1, "AVAILABLE", "OK")
        with pytest.raises(ServingError, match=r"^Servable not found for request: Latest\(nope\)$") as e:
            m.get("nope")
        assert e.value.code == "NOT_FOUND"
        with pytest.raises(ServingError, match=r"Specific\(digits_model, 3\)"):
            m.get(MODEL_NAME, 3)
        with pytest.raises(ServingError, match="Could not find any versions of model nope"):
            m.status("nope")
        with pytest.raises(ServingError, match="Could not find version 3 of model digits_model"):
            m.status(MODEL_NAME, 3)
    finally:
        m.stop()
    assert _states(m) == {1: "END"} and not m.all_available()


def test_scan_ignores_non_numeric_and_incomplete(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    write_version(tmp_path, 2)
    (tmp_path / ".tmp-3-xyz").mkdir()
    (tmp_path / "4").mkdir()  # no saved_model.pb yet: being copied
    (tmp_path / "notes.txt").write_text("x")
    assert list(scan_versions(tmp_path)) == [2]
    assert scan_versions(tmp_path / "missing") == {}


def test_latest_policy_serves_newest(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    base = tmp_path / "m"
    for v in (1, 3, 2):
        write_version(base, v)
    m = _manager([ModelConfig("m", str(base), VersionPolicy("latest", 2))])
    m.start()
    try:
        assert _states(m, "m") == {3: "AVAILABLE", 2: "AVAILABLE"}
        assert m.get("m").version == 3 and m.get("m", 2).version == 2
    finally:
        m.stop()


def test_swap_under_load_without_failures(digits_base: Path, write_version: Callable[..., Path]) -> None:
    """A client looping on get().run() sees no error while version 2 replaces version 1."""
    m = _manager([ModelConfig(MODEL_NAME, str(digits_base))], poll_seconds=0.2)
    m.start()
    x = digits_batch(1)
    failures: list[BaseException] = []
    versions_seen: set[int] = set()
    stop = threading.Event()
    calls = 0

    def client() -> None:
        nonlocal calls
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and calls < 20000:
            try:
                s = m.get(MODEL_NAME)
                assert s.run(None, {"Conv1_input": x})["softmax"].shape == (1, 10)
                versions_seen.add(s.version)
            except BaseException as e:  # noqa: BLE001 - any failure counts
                failures.append(e)
            calls += 1

    t = threading.Thread(target=client)
    t.start()
    try:
        time.sleep(0.3)
        write_version(digits_base, 2, "digits2")
        deadline = time.monotonic() + 60
        while _states(m) != {2: "AVAILABLE", 1: "END"} and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
        m.stop()
    assert not failures, failures[:3]
    assert versions_seen == {1, 2} and calls > 10


def test_failed_load_keeps_old_version(digits_base: Path) -> None:
    m = _manager([ModelConfig(MODEL_NAME, str(digits_base))])
    m.start()
    try:
        bad = digits_base / "2"
        bad.mkdir()
        (bad / "saved_model.pb").write_bytes(b"not a protobuf at all")
        m.sync()
        st = {s.version: s for s in m.status(MODEL_NAME)}
        assert st[1].state == "AVAILABLE"
        assert st[2].state == "END" and st[2].error_code != "OK" and st[2].error_message
        assert m.get(MODEL_NAME).version == 1
        m.sync()  # unchanged broken folder: not retried, old version still serves
        assert m.get(MODEL_NAME).version == 1
    finally:
        m.stop()


def test_removed_folder_unloaded_and_deleted_model_keeps_serving(tmp_path: Path,
                                                                 write_version: Callable[..., Path]) -> None:
    base = tmp_path / "m"
    write_version(base, 1)
    write_version(base, 2)
    m = _manager([ModelConfig("m", str(base), VersionPolicy("all"))])
    m.start()
    try:
        assert _states(m, "m") == {2: "AVAILABLE", 1: "AVAILABLE"}
        shutil.rmtree(base / "1")
        m.sync()
        assert _states(m, "m") == {2: "AVAILABLE", 1: "END"}
        with pytest.raises(ServingError):
            m.get("m", 1)
        shutil.rmtree(base)  # the whole model folder vanishes while serving
        m.sync()
        assert m.get("m").run(None, {"Conv1_input": digits_batch(1)})["softmax"].shape == (1, 10)
    finally:
        m.stop()


def test_multi_model_config_reload_and_labels(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_version(a, 1)
    write_version(b, 1)
    write_version(b, 2, "digits2")
    text = f"""model_config_list {{
      config {{ name: 'a' base_path: '{a}' }}
      config {{ name: 'b' base_path: '{b}' model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
                version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 2 }} }}
    }}"""
    m = _manager(parse_text(text))
    m.start()
    try:
        assert sorted(m.model_names()) == ["a", "b"] and m.all_available()
        assert m.get("b", label="stable").version == 1 and m.get("b", label="canary").version == 2
        assert [s.version for s in m.status("b", label="canary")] == [2]
        with pytest.raises(ServingError, match="Unrecognized servable version label: beta") as e:
            m.get("b", label="beta")
        assert e.value.code == "INVALID_ARGUMENT"
        # a label on a version that is not loaded is refused like TF Serving does
        with pytest.raises(ServingError, match="not currently available for inference") as e:
            m.reload_config([ModelConfig("b", str(b), VersionPolicy("specific", versions=(1, 2)), {"x": 7})])
        assert e.value.code == "FAILED_PRECONDITION"
        m.reload_config(parse_text(f"model_config_list {{ config {{ name: 'a' base_path: '{a}' }} }}"))
        assert m.model_names() == ["a"] and m.all_available()
        with pytest.raises(ServingError, match=r"Latest\(b\)"):
            m.get("b")
        assert {s.state for s in m.status("b")} == {"END"}
    finally:
        m.stop()


def test_warmup_replayed(digits_base: Path) -> None:
    from mlserve.model.export import write_warmup_file

    write_warmup_file(digits_base / "1", MODEL_NAME)
    m = _manager([ModelConfig(MODEL_NAME, str(digits_base))])
    m.start()
    try:
        assert m.get(MODEL_NAME).warmup() > 0
    finally:
        m.stop()


def test_config_file_polling_adds_and_drops_models(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_version(a, 1)
    write_version(b, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(f"model_config_list {{ config {{ name: 'a' base_path: '{a}' }} }}")
    from mlserve.server.models.config import load_config_file

    m = ModelManager(load_config_file(cfg), poll_seconds=0, config_file=str(cfg), config_poll_seconds=0.2)
    m.start()
    try:
        cfg.write_text("this is not a config")  # a bad edit is logged and ignored
        time.sleep(0.6)
        assert m.model_names() == ["a"] and m.all_available()
        cfg.write_text(f"model_config_list {{ config {{ name: 'b' base_path: '{b}' }} }}")
        deadline = time.monotonic() + 30
        while m.model_names() != ["b"] or not m.all_available():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert m.get("b").version == 1
        with pytest.raises(ServingError):
            m.get("a")
    finally:
        m.stop()
