"""Exact command lines, runtime choice and the checks made before anything starts.

`tensorflow_model_server` and `docker` are stand-ins (tests/standins/): these machines have no TF
Serving apt repository and no Docker engine. `--dry-run` prints the command without running it.
"""
from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path

import pytest

from mlserve.runtimes.gpu import check_gpus
from mlserve.runtimes.install import apt_package
from support.models import MODEL_NAME
from support.paths import STANDINS
from support.runtimes import Env

TFS = str(STANDINS / "tensorflow_model_server")


def dry(env: Env, *args: str, **extra: str) -> list[str]:
    done = env.run("serve", "--dry-run", *args, **extra)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1  # one shell-quoted line, nothing else on stdout
    return shlex.split(done.stdout)


def test_binary_cpu_command(env: Env, base_path: Path) -> None:
    argv = dry(env, "--runtime", "binary", "--model-base-path", str(base_path), "--port", "9000",
               "--rest-port", "9001")
    # a base path is served through the managed model config (docs/rollout.md) that mlserve keeps
    config = env.home / "configs" / f"{MODEL_NAME}.config"
    assert argv == [TFS, "--port=9000", "--rest_api_port=9001", f"--model_config_file={config}"]
    assert f'base_path: "{base_path}"' in config.read_text()


def test_binary_every_option(env: Env, base_path: Path, tmp_path: Path) -> None:
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 32 }\n")
    argv = dry(env, "--runtime", "binary", "--model-base-path", str(base_path), "--model-name", "m",
               "--name", "srv", "--poll-seconds", "5", "--batching-parameters-file", str(batching),
               "--monitoring", "--", "--tensorflow_intra_op_parallelism=2")
    monitoring = env.home / "servers" / "srv.monitoring.config"
    assert argv == [TFS, "--port=8500", "--rest_api_port=8501",
                    f"--model_config_file={env.home / 'configs' / 'm.config'}", "--file_system_poll_wait_seconds=5",
                    "--enable_batching", f"--batching_parameters_file={batching}",
                    f"--monitoring_config_file={monitoring}", "--tensorflow_intra_op_parallelism=2"]


@pytest.mark.parametrize("gpu", [False, True])
def test_docker_command(env: Env, base_path: Path, gpu: bool) -> None:
    argv = dry(env, "--runtime", "docker", "--model-base-path", str(base_path), "--port", "9000",
               "--rest-port", "9001", "--batching", *(["--gpu"] if gpu else []))
    expected = ["docker", "run", "--rm", "--name", f"mlserve-{MODEL_NAME}"]
    expected += ["--gpus", "all"] if gpu else []
    expected += ["-p", "127.0.0.1:9000:8500", "-p", "127.0.0.1:9001:8501",
                 "--mount", f"type=bind,source={base_path},target=/models/{MODEL_NAME},readonly",
                 "--mount", f"type=bind,source={env.home / 'servers' / f'{MODEL_NAME}.models.docker.config'},"
                            "target=/etc/mlserve/models.config,readonly",
                 "tensorflow/serving:2.19.1-gpu" if gpu else "tensorflow/serving:2.19.1",
                 "--model_config_file=/etc/mlserve/models.config", "--enable_batching"]
    assert argv == expected


def test_docker_settings_host_and_files(env: Env, base_path: Path, tmp_path: Path) -> None:
    batching = tmp_path / "b.txt"
    batching.write_text("")
    argv = dry(env, "--runtime", "docker", "--model-base-path", str(base_path), "--host", "0.0.0.0",
               "--batching-parameters-file", str(batching), "--monitoring",
               MLSERVE_DOCKER_IMAGE="registry.local/serving", MLSERVE_DOCKER_TAG="2.18.0")
    monitoring = env.home / "servers" / f"{MODEL_NAME}.monitoring.config"
    assert "registry.local/serving:2.18.0" in argv
    assert argv[argv.index("-p") + 1] == "0.0.0.0:8500:8500"
    assert f"type=bind,source={batching},target=/etc/mlserve/batching_parameters.txt,readonly" in argv
    assert f"type=bind,source={monitoring},target=/etc/mlserve/monitoring_config.txt,readonly" in argv
    assert argv[-3:] == ["--enable_batching", "--batching_parameters_file=/etc/mlserve/batching_parameters.txt",
                         "--monitoring_config_file=/etc/mlserve/monitoring_config.txt"]


def test_docker_model_config_file(env: Env, base_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "3").mkdir(parents=True)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "a" base_path: "{base_path}" '
                      f'model_platform: "tensorflow" }} config {{ name: "b" base_path: "{other}" }} }}')
    argv = dry(env, "--runtime", "docker", "--model-config-file", str(config), "--name", "multi")
    assert f"type=bind,source={base_path},target=/models/a,readonly" in argv
    assert f"type=bind,source={other},target=/models/b,readonly" in argv
    rewritten = env.home / "servers" / "multi.models.docker.config"
    assert f"type=bind,source={rewritten},target=/etc/mlserve/models.config,readonly" in argv
    assert not any(a.startswith("MODEL_NAME=") for a in argv)
    assert argv[-1] == "--model_config_file=/etc/mlserve/models.config"


def test_embedded_command(env: Env, base_path: Path) -> None:
    argv = dry(env, "--runtime", "embedded", "--model-base-path", str(base_path))
    assert argv == ["CUDA_VISIBLE_DEVICES=", sys.executable, "-m", "mlserve.server", "--port=8500",
                    "--rest_api_port=8501", f"--model_config_file={env.home / 'configs' / f'{MODEL_NAME}.config'}",
                    "--host=127.0.0.1"]
    # --gpu leaves the GPU visible to TensorFlow (dry-run skips the GPU check).
    assert dry(env, "--runtime", "embedded", "--model-base-path", str(base_path), "--gpu")[0] == sys.executable


def test_auto_prefers_binary_then_docker_engine_then_embedded(env: Env, base_path: Path) -> None:
    args = ("serve", "--dry-run", "--model-base-path", str(base_path))
    done = env.run(*args)
    assert done.stdout.startswith(TFS) and "Runtime: binary" in done.stderr
    done = env.run(*args, MLSERVE_TFS_BINARY="/nonexistent/tensorflow_model_server")
    assert done.stdout.startswith("CUDA_VISIBLE_DEVICES=")
    assert "Runtime: embedded" in done.stderr and "no Docker engine answers" in done.stderr
    done = env.run(*args, MLSERVE_TFS_BINARY="/nonexistent/tensorflow_model_server",
                   MLSERVE_STANDIN_DOCKER_ENGINE="1")
    assert done.stdout.startswith("docker run") and "Runtime: docker" in done.stderr


def test_missing_and_empty_base_path(env: Env, tmp_path: Path) -> None:
    done = env.run("serve", "--model-base-path", str(tmp_path / "nope"))
    assert done.returncode == 4 and "does not exist" in done.stderr and "mlserve export" in done.stderr
    (tmp_path / "empty").mkdir()
    done = env.run("serve", "--model-base-path", str(tmp_path / "empty"))
    assert done.returncode == 4 and "no numbered version folder" in done.stderr


def test_bad_config_file(env: Env, tmp_path: Path) -> None:
    config = tmp_path / "bad.config"
    config.write_text("model_config_list { config { nme: 'x' } }")
    done = env.run("serve", "--model-config-file", str(config))
    assert done.returncode == 5 and "does not parse" in done.stderr


def test_port_in_use_refused_before_start(env: Env, base_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = env.run("serve", "--runtime", "embedded", "--model-base-path", str(base_path),
                       "--rest-port", str(port))
    assert done.returncode == 6
    assert f"REST port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Hint:" in done.stderr
    assert env.recorded("tensorflow_model_server") == [] and not list((env.home / "servers").glob("*.json"))


@pytest.mark.skipif(check_gpus().visible, reason="this machine has a GPU")
def test_gpu_without_gpu_is_refused(env: Env, base_path: Path) -> None:
    done = env.run("serve", "--gpu", "--runtime", "embedded", "--model-base-path", str(base_path))
    assert done.returncode == 9
    assert "no NVIDIA GPU is visible" in done.stderr and "nvidia-smi" in done.stderr
    assert "/dev/nvidia" in done.stderr  # says how it was checked


def test_install_dry_run(env: Env) -> None:
    done = env.run("server", "install", "--method", "apt", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("echo 'deb [arch=amd64 signed-by=/usr/share/keyrings/tensorflow-serving.gpg] "
                        "http://storage.googleapis.com/tensorflow-serving-apt stable "
                        "tensorflow-model-server tensorflow-model-server-universal' > "
                        "/etc/apt/sources.list.d/tensorflow-serving.list")
    assert "https://storage.googleapis.com/tensorflow-serving-apt/tensorflow-serving.release.pub.gpg" in lines[1]
    assert lines[2] == "apt-get update"
    assert lines[3] in ("apt-get install -y tensorflow-model-server",
                        "apt-get install -y tensorflow-model-server-universal")
    done = env.run("server", "install", "--method", "docker", "--gpu", "--dry-run")
    assert done.stdout.splitlines() == ["docker pull tensorflow/serving:2.19.1-gpu"]
    assert env.recorded("docker") == [["info", "--format", "{{.ServerVersion}}"]]  # nothing pulled


def test_install_says_what_is_missing(env: Env) -> None:
    # A PATH with only the stand-ins: no apt-get, curl or gpg, so nothing can run.
    done = env.run("server", "install", "--method", "apt", PATH=str(STANDINS))
    assert done.returncode == 9
    assert "missing apt-get (not on PATH)" in done.stderr and "sudo apt-get update" in done.stderr
    done = env.run("server", "install", "--method", "docker")
    assert done.returncode == 9 and "no Docker engine answers" in done.stderr
    assert "docker pull tensorflow/serving:2.19.1" in done.stderr
    assert ["pull", "tensorflow/serving:2.19.1"] not in env.recorded("docker")


def test_universal_package_without_avx2() -> None:
    assert apt_package({"sse4_2", "avx", "avx2"})[0] == "tensorflow-model-server"
    name, why = apt_package({"sse4_2", "avx"})
    assert name == "tensorflow-model-server-universal" and "AVX2" in why


def test_server_info(env: Env) -> None:
    import json

    done = env.run("server", "info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    by_name = {r["runtime"]: r for r in info["runtimes"]}
    assert by_name["binary"]["path"] == TFS
    assert by_name["binary"]["version"] == "TensorFlow ModelServer: 2.19.1-standin"
    assert by_name["docker"]["engine"] is False and by_name["docker"]["client"]
    assert by_name["embedded"]["tensorflow"]
    assert info["auto"]["runtime"] == "binary"
    assert info["gpu"]["method"]


def test_adaptive_batching_and_cache_options_pick_the_embedded_server(env: Env, base_path: Path) -> None:
    argv = dry(env, "--model-base-path", str(base_path), "--batching-policy", "adaptive",
               "--latency-objective-ms", "10", "--prediction-cache-bytes", "1000000",
               "--prediction-cache", "redis://127.0.0.1:6379/0")
    assert argv[argv.index("-m") + 1] == "mlserve.server"  # embedded, though a binary is on PATH
    for flag in ("--enable_batching", "--batching_policy=adaptive", "--latency_objective_ms=10",
                 "--prediction_cache_bytes=1000000", "--prediction_cache=redis://127.0.0.1:6379/0"):
        assert flag in argv
    fixed = dry(env, "--runtime", "binary", "--model-base-path", str(base_path), "--batching-policy", "fixed")
    assert fixed[0] == TFS and "--enable_batching" in fixed and not any("policy" in a for a in fixed)


@pytest.mark.parametrize(("args", "words"), [
    (("--batching-policy", "adaptive"), "needs --latency-objective-ms"),
    (("--batching-policy", "aimd"), "choose fixed or adaptive"),
    (("--latency-objective-ms", "10"), "with --batching-policy adaptive"),
    (("--prediction-cache", "memcached://x"), "expected a redis:// URL"),
    (("--prediction-cache-bytes", "1000", "--runtime", "binary"), "needs the embedded server"),
])
def test_bad_adaptive_or_cache_options_exit_2(env: Env, base_path: Path, args: tuple[str, ...], words: str) -> None:
    done = env.run("serve", "--dry-run", "--model-base-path", str(base_path), *args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and ("Hint:" in done.stderr or "needs the embedded server" in done.stderr)
