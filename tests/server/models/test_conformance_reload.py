"""Reload and load as TF Serving's server_core.cc and LoaderHarness run them: validations in
order before anything loads, a reload whose new models fail answers UNKNOWN, failed loads retried."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from mlserve.server.models.config import ModelConfig, parse_text
from mlserve.server.errors import ServingError
from mlserve.server.models.manager import ModelManager
from support.tinymodels import digits_batch


def _manager(models: list[ModelConfig], **kw: object) -> ModelManager:
    kw.setdefault("poll_seconds", 0)
    return ModelManager(models, **kw)  # type: ignore[arg-type]


def test_reload_whose_new_model_fails_to_load_is_unknown(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    a, bad = tmp_path / "a", tmp_path / "bad"
    write_version(a, 1)
    (bad / "3").mkdir(parents=True)
    (bad / "3" / "saved_model.pb").write_bytes(b"not a protobuf")
    m = _manager([ModelConfig("a", str(a))])
    m.start()
    try:
        with pytest.raises(ServingError) as e:
            m.reload_config([ModelConfig("a", str(a)), ModelConfig("bad", str(bad))])
        assert e.value.code == "UNKNOWN"
        assert e.value.message.startswith("1 model(s) did not become available: {{{name: bad version: 3} due to error: ")
        assert m.get("a").version == 1  # the good model keeps serving
    finally:
        m.stop()


def _proto(text: str):
    """A ModelServerConfig proto as a reload RPC carries it (unchecked, unlike parse_text)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_reload_checks_paths_platforms_and_labels_before_loading(
        tmp_path: Path, write_version: Callable[..., Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_version(a, 1)
    write_version(b, 1)
    m = _manager([ModelConfig("a", str(a))])
    m.start()
    try:
        with pytest.raises(ServingError) as e:
            m.reload_config([ModelConfig("a", str(a)), ModelConfig("b", "relative/b")])
        assert (e.value.code, e.value.message) == (
            "INVALID_ARGUMENT", "Expected model b to have an absolute path or URI; got base_path()=relative/b")
        # ValidateNoModelsChangePlatforms runs before the routes are built, so an unknown platform
        # for an existing model is a platform change; for a new model, an unsupported platform
        for platform in ("tflite", "no_such_platform"):
            with pytest.raises(ServingError) as e:
                m.reload_config(_proto(f"""model_config_list {{ config {{ name: 'a' base_path: '{a}'
                    model_platform: '{platform}' }} }}"""))
            assert (e.value.code, e.value.message) == (
                "INVALID_ARGUMENT", "Illegal to change a model's platform. For model a platform was tensorflow "
                f"and new platform requested is {platform}")
        with pytest.raises(ServingError) as e:
            m.reload_config(_proto(f"""model_config_list {{ config {{ name: 'a' base_path: '{a}' }}
                config {{ name: 'b' base_path: '{b}' model_platform: 'pytorch' }} }}"""))
        assert (e.value.code, e.value.message) == ("INVALID_ARGUMENT", "Model b requests unsupported platform pytorch")
        # the list's own checks come first: every name, then every path, then platforms
        with pytest.raises(ServingError) as e:
            m.reload_config(_proto("""model_config_list { config { name: 'c' base_path: 'rel' model_platform: 'x' }
                config { name: 'c' base_path: '/abs' } }"""))
        assert e.value.message == "Illegal to list model c multiple times in config list"
        # a label on a version this very reload would load: refused, and b is not loaded
        with pytest.raises(ServingError) as e:
            m.reload_config(parse_text(f"""model_config_list {{ config {{ name: 'a' base_path: '{a}' }}
                config {{ name: 'b' base_path: '{b}' version_labels {{ key: 'stable' value: 1 }} }} }}"""))
        assert (e.value.code, e.value.message) == (
            "FAILED_PRECONDITION",
            "Request to assign label to version 1 of model b, which is not currently available for inference")
        assert m.model_names() == ["a"]
    finally:
        m.stop()


def test_labels_for_unavailable_versions_when_allowed(tmp_path: Path, write_version: Callable[..., Path]) -> None:
    b = tmp_path / "b"
    write_version(b, 1)
    m = _manager([], allow_version_labels_for_unavailable_models=True)
    m.start()
    try:
        m.reload_config([ModelConfig("b", str(b), version_labels={"stable": 1})])
        assert m.get("b", label="stable").version == 1
    finally:
        m.stop()


def test_failed_load_retried_until_it_succeeds_ends_available(
        tmp_path: Path, model_templates: Callable[[str], Path]) -> None:
    base = tmp_path / "m"
    version = base / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not yet")
    m = _manager([ModelConfig("m", str(base))], max_num_load_retries=5, load_retry_interval_s=1.0)
    fixed = threading.Event()

    def fix_after_first_failure() -> None:
        while not any(s.state == "LOADING" for s in _safe_status(m)):
            time.sleep(0.05)
        time.sleep(0.3)  # the first attempt fails at once on the unreadable saved_model.pb
        shutil.rmtree(version)
        shutil.copytree(model_templates("digits"), version)
        fixed.set()

    fixer = threading.Thread(target=fix_after_first_failure, daemon=True)
    fixer.start()
    m.start()
    try:
        fixer.join(30)
        assert fixed.is_set()
        assert [(s.version, s.state) for s in m.status("m")] == [(1, "AVAILABLE")]
        assert m.get("m").run(None, {"Conv1_input": digits_batch(1)})["softmax"].shape == (1, 10)
    finally:
        m.stop()


def test_no_retries_ends_the_version_at_once(tmp_path: Path) -> None:
    base = tmp_path / "m"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"broken")
    m = _manager([ModelConfig("m", str(base))], max_num_load_retries=0, load_retry_interval_s=60)
    m.start()
    try:
        [status] = m.status("m")
        assert status.state == "END" and status.error_code != "OK"
    finally:
        m.stop()


def _safe_status(m: ModelManager) -> list:
    try:
        return m.status("m")
    except ServingError:
        return []
