"""`mlserve deploy kubernetes --feature-store redis`: the lookup config in the ConfigMap with its
store read from MLSERVE_FEATURE_REDIS_URL, that variable from a Secret reference (no URL or
password in any manifest), the server flag; validated offline like the rest; and the refusals."""
from __future__ import annotations

from pathlib import Path

import yaml

from mlserve.server.features.config import parse_config
from support.cli import run_cli

from support.deploy import load_yaml, validate_core

CORE = ("00-configmap.yaml", "10-deployment.yaml", "20-service.yaml", "30-hpa.yaml")
LOOKUP = """\
entity_key: {input: restaurant_id, dtype: string}
store: {redis: "redis://:s3cret@10.0.0.5:6379/0", key_prefix: "restaurant:", timeout_ms: 150}
inputs:
  orders_last_hour: [orders_last_hour]
  outstanding_per_minute: [outstanding_per_minute]
on_missing: error
"""


def test_feature_store_redis_adds_a_secret_reference_and_the_lookup_config(exported: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    config = tmp_path / "lookup.yaml"
    config.write_text(LOOKUP)
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--feature-store", "redis",
                   "--feature-lookup", str(config), "--image", "registry.example/mlserve-digits:2")
    assert proc.returncode == 0, proc.stderr
    for name in CORE:
        validate_core(out / name)
    texts = "".join((out / name).read_text() for name in CORE)
    assert "s3cret" not in texts and "10.0.0.5" not in texts
    container = load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/mlserve-digits:2"
    assert "--feature_lookup=/etc/mlserve/feature-lookup.yaml" in container["args"]
    assert {"name": "MLSERVE_FEATURE_REDIS_URL", "valueFrom": {"secretKeyRef": {
        "name": "digits-model-feature-store", "key": "redis-url"}}} in container["env"]
    written = yaml.safe_load(load_yaml(out / "00-configmap.yaml")["data"]["feature-lookup.yaml"])
    assert written["store"] == {"redis_env": "MLSERVE_FEATURE_REDIS_URL", "key_prefix": "restaurant:",
                                "timeout_ms": 150}
    monkeypatch.setenv("MLSERVE_FEATURE_REDIS_URL", "redis://redis.default.svc:6379/0")
    parsed = parse_config(written)  # what the pod's server reads
    assert parsed.store.location == "redis://redis.default.svc:6379/0"
    assert "kubectl create secret generic digits-model-feature-store" in (out / "README.md").read_text()


def test_feature_store_refusals(exported: Path, tmp_path: Path) -> None:
    config = tmp_path / "lookup.yaml"
    config.write_text(LOOKUP)
    gpu = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "a"), "--feature-store", "redis",
                  "--feature-lookup", str(config), "--gpu")
    assert gpu.returncode == 2 and "--gpu" in gpu.stderr
    alone = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "b"), "--feature-store", "redis")
    assert alone.returncode == 2 and "go together" in alone.stderr
    sqlite = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "c"), "--feature-store", "sqlite",
                     "--feature-lookup", str(config), "--image", "x:1")
    assert sqlite.returncode == 2 and "redis" in sqlite.stderr
    config.write_text(LOOKUP.replace("on_missing: error", "on_missing: shrug"))
    bad = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "d"), "--feature-store", "redis",
                  "--feature-lookup", str(config), "--image", "x:1")
    assert bad.returncode == 2 and "on_missing" in bad.stderr
    assert not any((tmp_path / n).exists() for n in "abcd")
