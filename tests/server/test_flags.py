"""TF Serving's flags and model config, parsed the way tensorflow_model_server reads them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlserve.errors import DataError, UsageError
from mlserve.server.models.config import VersionPolicy, build_config, load_config_file, parse_text, to_proto, from_proto
from mlserve.server.flags import ServerOptions, parse_flags


def test_defaults_follow_tf_serving() -> None:
    o = parse_flags([])
    assert (o.port, o.rest_api_port, o.model_name, o.model_base_path) == (8500, 0, "default", "")
    assert o.file_system_poll_wait_seconds == 1 and o.model_config_file_poll_wait_seconds == 0
    assert o.rest_api_timeout_in_ms == 30000 and o.enable_model_warmup is True
    assert o.enable_batching is False and o.rest_api_enable_cors_support is False
    assert o.host == "127.0.0.1" and o.max_request_bytes == 64 * 1024 * 1024 and o.grpc_health is False


def test_syntaxes() -> None:
    o = parse_flags(["--port=9000", "--rest_api_port", "9001", "--enable_batching", "--model_name=m",
                     "-model_base_path=/x", "--enable_model_warmup=false", "--rest_api_enable_cors_support=true",
                     "--grpc_channel_arguments=grpc.max_concurrent_streams=10,foo=bar", "--host", "0.0.0.0"])
    assert (o.port, o.rest_api_port, o.model_name, o.model_base_path) == (9000, 9001, "m", "/x")
    assert o.enable_batching and not o.enable_model_warmup and o.rest_api_enable_cors_support
    assert o.channel_arguments() == [("grpc.max_concurrent_streams", 10), ("foo", "bar")]
    assert o.host == "0.0.0.0"


@pytest.mark.parametrize("argv, words", [
    (["--no_such_flag=1"], "unknown command line flag 'no_such_flag'"),
    (["--port=abc"], "--port"),
    (["--enable_batching=maybe"], "--enable_batching"),
    (["--model_name"], "needs a value"),
    (["stray"], "stray"),
])
def test_bad_flags_refused(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_flags(argv)


def test_unknown_flag_exits_2_naming_it() -> None:
    r = subprocess.run([sys.executable, "-m", "mlserve.server", "--model_base_path=/x", "--bogus_flag=3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown command line flag 'bogus_flag'" in r.stderr


def test_help_lists_flags_and_marks_extensions() -> None:
    from mlserve.server.flags import usage

    text = usage()
    assert "--rest_api_port=0" in text and "--model_config_file_poll_wait_seconds=0" in text
    assert "(mlserve extension)" in text.split("--host=")[1].splitlines()[0]


CONFIG = """
model_config_list {
  config { name: 'a' base_path: '/m/a' model_platform: 'tensorflow' }
  config { name: 'b' base_path: '/m/b'
           model_version_policy { specific { versions: 1 versions: 3 } }
           version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 3 } }
  config { name: 'c' base_path: '/m/c' model_version_policy { all {} } }
  config { name: 'd' base_path: '/m/d' model_version_policy { latest { num_versions: 2 } } }
}
"""


def test_model_config_file(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    models = load_config_file(path)
    assert [m.name for m in models] == ["a", "b", "c", "d"]
    a, b, c, d = models
    assert a.version_policy == VersionPolicy("latest", 1)
    assert b.version_policy.kind == "specific" and b.version_policy.versions == (1, 3)
    assert b.version_labels == {"stable": 1, "canary": 3}
    on_disk = [1, 2, 3, 4]
    assert (a.version_policy.select(on_disk), b.version_policy.select(on_disk),
            c.version_policy.select(on_disk), d.version_policy.select(on_disk)) == ({4}, {1, 3}, {1, 2, 3, 4}, {3, 4})
    assert from_proto(to_proto(models)) == models
    assert build_config(ServerOptions(model_config_file=str(path), model_base_path="/ignored"))[0].name == "a"


def test_single_model_config_and_errors(tmp_path: Path) -> None:
    [m] = build_config(ServerOptions(model_name="digits", model_base_path="/srv/digits"))
    assert (m.name, m.base_path, m.version_policy.kind) == ("digits", "/srv/digits", "latest")
    with pytest.raises(UsageError, match="model_base_path"):
        build_config(ServerOptions())
    with pytest.raises(DataError, match="Invalid protobuf file"):
        parse_text("model_config_list { config { nam: 'x' } }", "bad.config")
    with pytest.raises(UsageError, match="multiple times"):
        parse_text("model_config_list { config { name: 'x' base_path: '/a' } config { name: 'x' base_path: '/b' } }")
