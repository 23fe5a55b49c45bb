"""`--apply`: kubectl apply, then the rollout wait. kubectl here is tests/standins/kubectl, a stand-in:
these machines have no Kubernetes cluster. It records its argv and validates what it is given."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from support.cli import run_cli
from support.deploy import kubectl_calls
from support.models import MODEL_NAME
from support.paths import STANDINS


def test_apply_then_rollout_status(exported: Path, kubectl_standin: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--apply", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    assert kubectl_calls(kubectl_standin) == [
        ["apply", "-f", str(out)],
        ["rollout", "status", "deployment/digits-model", "--timeout=120s"],
    ]
    assert "deployment.apps/digits-model created" in proc.stderr  # kubectl's words, on stderr
    assert 'deployment "digits-model" successfully rolled out' in proc.stderr
    applied = json.loads((tmp_path / "standin-state" / "kubectl-applied.json").read_text())
    assert sorted(applied) == ["ConfigMap/digits-model-config", "Deployment/digits-model",
                               "HorizontalPodAutoscaler/digits-model", "Service/digits-model"]


def test_apply_pvc_copies_versions_before_the_deployment(exported: Path, kubectl_standin: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    proc = run_cli("deploy", "kubernetes", "--out", str(out), "--delivery", "pvc", "--versions", "all",
                   "--namespace", "ml", "--apply")
    assert proc.returncode == 0, proc.stderr
    loader = "digits-model-model-loader"
    assert kubectl_calls(kubectl_standin) == [
        ["apply", "-n", "ml", "-f", str(out / "00-configmap.yaml"), "-f", str(out / "01-pvc.yaml"),
         "-f", str(out / "02-model-loader.yaml")],
        ["wait", "-n", "ml", "--for=condition=Ready", f"pod/{loader}", "--timeout=300s"],
        ["cp", str(exported / "1"), f"ml/{loader}:/models/{MODEL_NAME}/1"],
        ["cp", str(exported / "2"), f"ml/{loader}:/models/{MODEL_NAME}/2"],
        ["apply", "-n", "ml", "-f", str(out)],
        ["rollout", "status", "-n", "ml", "deployment/digits-model", "--timeout=300s"],
    ]


def test_rollout_timeout_is_exit_10_with_kubectls_words(exported: Path, kubectl_standin: Path,
                                                        tmp_path: Path) -> None:
    proc = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "k8s"), "--apply",
                   env={"MLSERVE_STANDIN_KUBECTL_ROLLOUT": "timeout"})
    assert proc.returncode == 10
    assert "Error: `kubectl rollout status deployment/digits-model --timeout=300s` failed" in proc.stderr
    assert "error: timed out waiting for the condition" in proc.stderr
    assert "Hint: " in proc.stderr
    assert (tmp_path / "k8s" / "10-deployment.yaml").exists()  # the manifests stay for a retry


def test_kserve_apply_waits_for_ready(exported: Path, kubectl_standin: Path, tmp_path: Path) -> None:
    out = tmp_path / "isvc"
    proc = run_cli("deploy", "kserve", "--out", str(out), "--storage-uri", "gs://b/digits_model", "--apply")
    assert proc.returncode == 0, proc.stderr
    assert kubectl_calls(kubectl_standin) == [
        ["apply", "-f", str(out)],
        ["wait", "--for=condition=Ready", "inferenceservice/digits-model", "--timeout=300s"],
    ]
    assert "inferenceservice.serving.kserve.io/digits-model created" in proc.stderr


def test_the_standin_refuses_invalid_manifests(exported: Path, kubectl_standin: Path, tmp_path: Path) -> None:
    """The stand-in's checks bite, so a passing --apply test means the files would be accepted."""
    out = tmp_path / "k8s"
    assert run_cli("deploy", "kubernetes", "--out", str(out)).returncode == 0
    doc = yaml.safe_load((out / "30-hpa.yaml").read_text())
    doc["spec"]["minReplica"] = doc["spec"].pop("minReplicas")
    (out / "30-hpa.yaml").write_text(yaml.safe_dump(doc))
    done = subprocess.run([str(STANDINS / "kubectl"), "apply", "-f", str(out)], capture_output=True, text=True)
    assert done.returncode == 1 and "'minReplica' was unexpected" in done.stderr


def test_no_kubectl_is_exit_9(exported: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    proc = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "k8s"), "--apply")
    assert proc.returncode == 9 and "kubectl is not on PATH" in proc.stderr
