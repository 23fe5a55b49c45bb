"""The CLI's single error boundary: one-line errors with hints, stable exit codes, stderr only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlserve import settings
from mlserve.errors import ExitCode
from support.paths import DOCS


def mlserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_unknown_command_is_a_usage_error() -> None:
    proc = mlserve("no-such-command")
    assert proc.returncode == ExitCode.USAGE
    assert "no-such-command" in proc.stderr
    assert proc.stdout == ""


def test_bad_environment_value_is_a_usage_error_with_hint() -> None:
    proc = mlserve("config", env={"MLSERVE_GRPC_PORT": "eighty"})
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.startswith("Error: MLSERVE_GRPC_PORT='eighty' is not a valid int")
    assert "Hint:" in proc.stderr
    assert proc.stdout == ""


def test_config_reports_value_and_source(mlserve_home: Path) -> None:
    proc = mlserve("config", "--json", env={"MLSERVE_MODEL_NAME": "fashion"})
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert set(rows) == set(settings.SETTINGS)
    assert rows["model_name"]["value"] == "fashion" and rows["model_name"]["source"] == "env"
    assert rows["home"]["value"] == str(mlserve_home) and rows["home"]["source"] == "env"
    assert rows["model_base_path"]["value"] == str(mlserve_home / "models" / "fashion")
    assert rows["rest_port"] == {**rows["rest_port"], "value": 8501, "source": "default"}


def test_flag_beats_environment_beats_default(monkeypatch) -> None:
    monkeypatch.setenv("MLSERVE_REST_PORT", "9001")
    assert settings.resolve("rest_port").value == 9001
    assert settings.resolve("rest_port").source == "env"
    assert settings.resolve("rest_port", 9002).value == 9002
    assert settings.resolve("rest_port", 9002).source == "flag"
    monkeypatch.delenv("MLSERVE_REST_PORT")
    assert settings.resolve("rest_port").source == "default"


def test_every_setting_is_documented() -> None:
    page = (DOCS / "configuration.md").read_text()
    for setting in settings.SETTINGS.values():
        assert f"`{setting.env}`" in page, setting.env


def test_every_exit_code_is_documented() -> None:
    page = (DOCS / "exit-codes.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | {code.name} |" in page, code


def test_error_and_hint_stay_one_line_each_on_a_narrow_terminal(tmp_path: Path) -> None:
    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "models"
    proc = mlserve("serve", "--model-base-path", str(missing), env={"COLUMNS": "40"})
    assert proc.returncode == ExitCode.NOT_FOUND
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and str(missing) in lines[0]
    assert len(lines) == 2 and lines[1].startswith("Hint: ")
    assert proc.stdout == ""


@pytest.mark.parametrize("args,words", [
    (["predict", "--timeout", "-1"], "--timeout"), (["predict", "--timeout", "0"], "more than 0"),
    (["bench", "--duration", "0"], "more than 0"), (["predict", "--count", "0"], "--count"),
])
def test_bad_values_are_refused_before_any_work(args, words) -> None:
    # Nothing listens at this address: a refusal (exit 2) proves the value was checked first.
    from support.ports import free_port

    proc = mlserve(*args, "--url", f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and words in lines[0]
    assert lines[-1].startswith("Hint: ") and f"mlserve {args[0]} --help" in lines[-1]
    assert "unexpected" not in proc.stderr and proc.stdout == ""


def test_each_short_flag_means_one_thing_in_every_command() -> None:
    import typer.main

    from mlserve.cli.app import app
    from mlserve.cli.options import SHORT_FLAGS

    def commands(group):
        for name, command in group.commands.items():
            if getattr(command, "commands", None):
                yield from commands(command)
            else:
                yield name, command

    for name, command in commands(typer.main.get_group(app)):
        for param in command.params:
            shorts = [o for o in param.opts + param.secondary_opts
                      if o.startswith("-") and not o.startswith("--")]
            longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
            for short in shorts:
                assert set(SHORT_FLAGS.get(short, ())) & set(longs), f"mlserve {name}: {short} means {longs}"


def test_help_reads_well_at_80_columns() -> None:
    proc = mlserve("serve", "--help", env={"COLUMNS": "80"})
    assert proc.returncode == 0
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    assert "<bool>" not in proc.stdout and "--detach" in proc.stdout
    # a paragraph is re-wrapped, never cut mid-sentence by the docstring's own line breaks
    assert "once every model is AVAILABLE" in " ".join(proc.stdout.split())
    assert not any(line.strip() == "AVAILABLE. The same friendly options map to TF Serving's flags"
                   for line in proc.stdout.splitlines())


def test_bad_timeout_in_the_environment_is_a_usage_error() -> None:
    proc = mlserve("config", env={"MLSERVE_TIMEOUT": "0"})
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.startswith("Error: MLSERVE_TIMEOUT=0.0: must be more than 0 seconds")
    assert "Hint: unset MLSERVE_TIMEOUT" in proc.stderr
