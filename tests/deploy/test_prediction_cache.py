"""`mlserve deploy kubernetes --prediction-cache redis`: a Redis Deployment and ClusterIP Service
beside the server, and the server's --prediction_cache pointing at it; validated offline like the
rest. The Redis container's own command line is run here by a real redis-server (the same major
version as the image's), which is then asked what it runs as; its readiness probe is run as written."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.cli import parse_json_stdout, run_cli
from support.deploy import kubectl_calls, load_yaml, validate_core
from support.feature_stores import redis_binary
from support.ports import free_port

CORE = ("00-configmap.yaml", "05-prediction-cache.yaml", "06-prediction-cache-service.yaml",
        "10-deployment.yaml", "20-service.yaml", "30-hpa.yaml")


def _write(out: Path, *extra: str) -> dict:
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--prediction-cache", "redis",
                   "--image", "registry.example/mlserve-digits:2", *extra, "--json")
    assert proc.returncode == 0, proc.stderr
    return parse_json_stdout(proc)


def test_prediction_cache_adds_redis_and_the_server_flag(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = _write(out, "--namespace", "ml")
    # the image runs mlserve's server (test_mlserve_image.py checks its build context)
    assert [Path(f).name for f in result["files"]] == [*CORE, "Dockerfile", "README.md", "constraints.txt",
                                                       "mlserve-entrypoint.sh"]
    assert result["server"] == "mlserve" and result["image"] == "registry.example/mlserve-digits:2"
    for name in CORE:
        validate_core(out / name)
    server = load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert "--prediction_cache=redis://digits-model-redis:6379" in server["args"]
    redis = load_yaml(out / "05-prediction-cache.yaml")
    assert redis["metadata"]["namespace"] == "ml" and redis["spec"]["replicas"] == 1
    pod = redis["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "redis:7-alpine"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"memory": "256Mi"}}
    assert "volumes" not in pod["spec"]  # a cache: nothing kept on disk
    service = load_yaml(out / "06-prediction-cache-service.yaml")
    assert service["metadata"]["name"] == "digits-model-redis" and service["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(6379, "redis")]
    assert container["ports"][0]["name"] == "redis"
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # the model server's Service must never send predict calls to the Redis pod
    model_service = load_yaml(out / "20-service.yaml")["spec"]["selector"]
    assert not model_service.items() <= labels.items()
    assert "redis://digits-model-redis:6379" in (out / "README.md").read_text()


@pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed (apt-get install redis-server)")
def test_the_redis_command_line_makes_a_bounded_lru_cache(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    _write(out, "--prediction-cache-memory", "64Mi")
    container = load_yaml(out / "05-prediction-cache.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "64Mi"
    port = free_port()
    args = [str(port) if a == "6379" else a for a in container["args"]]
    proc = subprocess.Popen([redis_binary(), *args, "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        probe = [str(port) if a == "6379" else a for a in container["readinessProbe"]["exec"]["command"]]
        for _ in range(100):
            ping = subprocess.run(probe, capture_output=True, text=True)
            if ping.returncode == 0 and "PONG" in ping.stdout:
                break
            assert proc.poll() is None, "redis-server refused the manifest's command line"
            subprocess.run(["sleep", "0.05"])
        else:
            pytest.fail("the readiness probe never answered PONG")

        def config(name: str) -> str:
            return subprocess.run(["redis-cli", "-p", str(port), "config", "get", name],
                                  capture_output=True, text=True, check=True).stdout.split("\n")[1]

        assert config("maxmemory") == str(48 * 2**20)  # 3/4 of the 64Mi limit
        assert config("maxmemory-policy") == "allkeys-lru"
        assert config("save") == "" and config("appendonly") == "no"
    finally:
        proc.terminate()
        proc.wait(10)


def test_prediction_cache_refusals(exported: Path, tmp_path: Path) -> None:
    memcached = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "a"), "--prediction-cache", "memcached",
                        "--image", "x:1")
    assert memcached.returncode == 2 and "choose redis" in memcached.stderr and "Hint:" in memcached.stderr
    size = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "b"), "--prediction-cache", "redis",
                   "--prediction-cache-memory", "lots", "--image", "x:1")
    assert size.returncode == 2 and "not a memory size" in size.stderr
    pvc = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "c"), "--prediction-cache", "redis",
                  "--delivery", "pvc")
    assert pvc.returncode == 2 and "--delivery image" in pvc.stderr
    assert not any((tmp_path / n).exists() for n in "abc")


def test_apply_waits_for_the_cache_too(exported: Path, kubectl_standin: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--prediction-cache", "redis",
                   "--image", "x:1", "--apply", "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert kubectl_calls(kubectl_standin) == [
        ["apply", "-f", str(out)],
        ["rollout", "status", "deployment/digits-model", "--timeout=60s"],
        ["rollout", "status", "deployment/digits-model-redis", "--timeout=60s"]]
