"""The mlserve server image `deploy kubernetes` writes when a flag only mlserve's server has is asked
for (--feature-store, --prediction-cache): the Dockerfile, and the build context it needs.

There is no Docker engine on these machines, so nothing is built here. What is checked instead:
every COPY source is in the context; mlserve's source there is the running package byte for byte
(the first stage makes the wheel from it); the wheel the second stage installs is the one that
stage names; the constraints hold the versions installed here; and the entrypoint script, run by
sh with the Deployment's container args (a stand-in `mlserve-model-server` records its argv), hands
the real server's flag parser a command line it accepts, as tensorflow/serving's entrypoint would;
and, with the real `mlserve-model-server` and a real exported model, starts a server that the
pod's readiness probe calls ready.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from mlserve.server.flags import parse_flags
from support.cli import parse_json_stdout, run_cli
from support.deploy import load_yaml, validate_core
from support.models import MODEL_NAME
from support.paths import ROOT
from support.ports import free_port

LOOKUP = """\
entity_key: {input: restaurant_id, dtype: string}
store: {redis: "redis://10.0.0.5:6379/0"}
inputs:
  orders_last_hour: [orders_last_hour]
"""
PYTHON = f"python:{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}-slim"


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest of the line), comments and blank lines left out (no continuations here)."""
    steps = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword, rest))
    return steps


def _write(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    config = tmp_path / "lookup.yaml"
    config.write_text(LOOKUP)
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--versions", "1,2", "--feature-store", "redis",
                   "--feature-lookup", str(config), *extra, "--json")
    assert proc.returncode == 0, proc.stderr
    return out, parse_json_stdout(proc)


def _digests(root: Path, pattern: str = "*") -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern)) if p.is_file() and "__pycache__" not in p.parts}


def test_feature_store_without_image_builds_mlserves_server(exported: Path, tmp_path: Path) -> None:
    out, result = _write(tmp_path)
    assert result["server"] == "mlserve" and result["image"] == "digits-model:v2"  # <name>:v<latest>
    for name in ("00-configmap.yaml", "10-deployment.yaml", "20-service.yaml", "30-hpa.yaml"):
        validate_core(out / name)
    container = load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "digits-model:v2"
    steps = _dockerfile(out / "Dockerfile")
    assert [rest for keyword, rest in steps if keyword == "FROM"] == [f"{PYTHON} AS wheel", PYTHON]
    assert ("RUN", "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src") in steps
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wheel = f"mlserve-{project['version']}-py3-none-any.whl"
    assert ("COPY", f"--from=wheel /wheels/{wheel} /tmp/wheels/") in steps
    install = next(rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest)
    assert shlex.split(install)[:7] == ["pip", "install", "--no-cache-dir", "--constraint",
                                        "/tmp/constraints.txt", f"/tmp/wheels/{wheel}[redis]", "&&"]
    assert ("ENV", f"MODEL_NAME={MODEL_NAME} MODEL_BASE_PATH=/models") in steps
    assert json.loads(steps[-1][1]) == ["/bin/sh", "/usr/bin/mlserve-entrypoint.sh"] and steps[-1][0] == "ENTRYPOINT"
    # every COPY from the context names something that is there; the versions land where they are served
    copies = [shlex.split(rest) for keyword, rest in steps if keyword == "COPY" and not rest.startswith("--from")]
    for *sources, _ in copies:
        assert all((out / s).exists() for s in sources), sources
    landed = {dest: out / src for src, dest in copies if src.startswith("model/")}
    assert sorted(landed) == [f"/models/{MODEL_NAME}/1/", f"/models/{MODEL_NAME}/2/"]
    assert _digests(landed[f"/models/{MODEL_NAME}/2/"]) == _digests(exported / "2")
    # the source the wheel is built from is the running package, byte for byte, without bytecode
    source = out / "mlserve-src"
    assert _digests(source / "mlserve") == _digests(ROOT / "mlserve")
    assert not list(source.rglob("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        assert (source / name).read_bytes() == (ROOT / name).read_bytes()
    pins = dict(line.split("==") for line in (out / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["tensorflow"] == metadata.version("tensorflow") and pins["redis"] == metadata.version("redis")
    assert all(metadata.version(name) == version for name, version in pins.items())
    readme = (out / "README.md").read_text()
    assert "runs mlserve's server" in readme and "docker build -t digits-model:v2" in readme


def test_entrypoint_hands_the_server_what_tensorflow_servings_would(exported: Path, tmp_path: Path) -> None:
    out, _ = _write(tmp_path)
    container = load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    env = dict(item.split("=", 1) for item in dict(_dockerfile(out / "Dockerfile"))["ENV"].split())
    stubs = tmp_path / "bin"
    stubs.mkdir()
    recorded = tmp_path / "argv.json"
    stub = stubs / "mlserve-model-server"  # stands in for the console script the wheel installs
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(recorded)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(out / "mlserve-entrypoint.sh"), *container["args"]],
                          env={**os.environ, **env, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(recorded.read_text())
    assert argv == ["--port=8500", "--rest_api_port=8501", "--host=0.0.0.0", f"--model_name={MODEL_NAME}",
                    f"--model_base_path=/models/{MODEL_NAME}", *container["args"]]
    options = parse_flags(argv)  # the real server's parser: every flag known, every value valid
    assert (options.port, options.rest_api_port, options.host) == (8500, 8501, "0.0.0.0")
    assert options.model_base_path == f"/models/{MODEL_NAME}"
    assert options.feature_lookup == "/etc/mlserve/feature-lookup.yaml"
    assert options.monitoring_config_file == "/etc/mlserve/monitoring.config"


def test_image_names_the_mlserve_image_and_plain_deploys_keep_tensorflow_serving(exported: Path,
                                                                                tmp_path: Path) -> None:
    out, result = _write(tmp_path, "--image", "registry.example/delivery-mlserve:1")
    assert result["image"] == "registry.example/delivery-mlserve:1" and result["server"] == "mlserve"
    assert "docker build -t registry.example/delivery-mlserve:1" in (out / "Dockerfile").read_text()
    plain = tmp_path / "plain"
    proc = run_cli("deploy", "kubernetes", "--out", str(plain), "--json")
    assert proc.returncode == 0, proc.stderr
    assert parse_json_stdout(proc)["server"] == "tensorflow-serving"
    assert not (plain / "mlserve-src").exists() and not (plain / "mlserve-entrypoint.sh").exists()


@pytest.mark.slow
def test_entrypoint_and_deployment_args_start_a_server_the_probe_calls_ready(digits_model_base: Path,
                                                                            tmp_path: Path) -> None:
    """What the container does, minus the container: the entrypoint script with the Deployment's
    args, the image's ENV, the ConfigMap's files and the real console script. Only the fixed
    ports (8500/8501 are not free here), the bind address (loopback) and the mount folders
    (/etc/mlserve, /models) are moved."""
    config = tmp_path / "lookup.yaml"
    config.write_text(LOOKUP)
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--model-base-path", str(digits_model_base),
                   "--feature-store", "redis", "--feature-lookup", str(config))
    assert proc.returncode == 0, proc.stderr
    pod = load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    etc = tmp_path / "etc-mlserve"  # the ConfigMap's volume
    etc.mkdir()
    for name, text in load_yaml(out / "00-configmap.yaml")["data"].items():
        (etc / name).write_text(text)
    grpc, rest = free_port(), free_port()
    script = tmp_path / "entrypoint.sh"
    script.write_text((out / "mlserve-entrypoint.sh").read_text()
                      .replace("--port=8500", f"--port={grpc}").replace("--rest_api_port=8501", f"--rest_api_port={rest}"))
    args = [a.replace("/etc/mlserve", str(etc)) for a in container["args"]]
    args.append("--host=127.0.0.1")  # overrides the entrypoint's 0.0.0.0 (the pod network's): loopback here
    env = dict(item.split("=", 1) for item in dict(_dockerfile(out / "Dockerfile"))["ENV"].split())
    env["MODEL_BASE_PATH"] = str(digits_model_base.parent)  # the image's /models
    # the Secret's variable; nothing connects to it until a request carries an entity key
    env["MLSERVE_FEATURE_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    bin_dir = Path(sys.executable).parent  # where the console script is installed
    assert (bin_dir / "mlserve-model-server").exists()
    log = tmp_path / "server.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(["/bin/sh", str(script), *args], stdout=sink, stderr=subprocess.STDOUT,
                                  env={**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    probe = [*container["readinessProbe"]["exec"]["command"][:2],
             container["readinessProbe"]["exec"]["command"][2].replace("/8501", f"/{rest}")]
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(probe, capture_output=True).returncode != 0:
            assert server.poll() is None, f"the server exited {server.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.25)
    finally:
        server.terminate()
        server.wait(20)
