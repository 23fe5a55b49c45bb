"""`mlserve deploy kubernetes|kserve`: the files written, validated offline, and the refusals."""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mlserve.deploy.probes import readiness_command
from mlserve.deploy.writer import write_folder
from mlserve.errors import ConflictError
from mlserve.runtimes.base import ServeOptions, tfs_flags
from support.cli import parse_json_stdout, run_cli
from support.deploy import kserve_errors, load_yaml, validate_core
from support.models import MODEL_NAME

CORE = ("00-configmap.yaml", "10-deployment.yaml", "20-service.yaml", "30-hpa.yaml")


def _deploy(*args: str) -> dict:
    proc = run_cli("deploy", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return parse_json_stdout(proc)


def _container(out: Path) -> dict:
    return load_yaml(out / "10-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]


def test_default_manifests_pass_strict_validation(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = _deploy("kubernetes", "--out", str(out))
    assert [Path(f).name for f in result["files"]] == [*CORE, "Dockerfile", "README.md"]
    for name in CORE:
        validate_core(out / name)
    container = _container(out)
    assert container["image"] == "digits-model:v2"  # the baked image, FROM the pinned serving image
    assert container["env"] == [{"name": "MODEL_NAME", "value": MODEL_NAME}]
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert container["readinessProbe"]["exec"]["command"] == readiness_command(MODEL_NAME, 8501)
    pod = load_yaml(out / "10-deployment.yaml")["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "8501",
                                              "prometheus.io/path": "/monitoring/prometheus/metrics"}
    service = load_yaml(out / "20-service.yaml")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("grpc", 8500), ("http", 8501)]
    hpa = load_yaml(out / "30-hpa.yaml")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["scaleTargetRef"]["name"]) == (1, 3, "digits-model")


def test_strict_validation_rejects_a_misspelt_field(exported: Path, tmp_path: Path) -> None:
    import kubernetes_validate
    import yaml

    out = tmp_path / "k8s"
    _deploy("kubernetes", "--out", str(out))
    doc = load_yaml(out / "10-deployment.yaml")
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    (out / "10-deployment.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(out / "10-deployment.yaml")


def test_args_come_from_the_serve_mapping(exported: Path, tmp_path: Path) -> None:
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 32 }\n")
    out = tmp_path / "k8s"
    _deploy("kubernetes", "--out", str(out), "--batching-parameters-file", str(params),
            "--poll-seconds", "30", "--tfs-arg=--rest_api_timeout_in_ms=5000")
    expected = tfs_flags(ServeOptions(
        name="x", model_name=MODEL_NAME, model_base_path=Path(f"/models/{MODEL_NAME}"), poll_seconds=30,
        batching_parameters_file=Path("/etc/mlserve/batching.config"),
        monitoring_config_file=Path("/etc/mlserve/monitoring.config"),
        extra_flags=["--rest_api_timeout_in_ms=5000"]), entrypoint_flags=False)
    assert _container(out)["args"] == expected
    assert "--enable_batching" in expected and "--file_system_poll_wait_seconds=30" in expected
    config = load_yaml(out / "00-configmap.yaml")["data"]
    assert config["batching.config"] == "max_batch_size { value: 32 }\n"
    assert "prometheus_config" in config["monitoring.config"]
    for name in CORE:
        validate_core(out / name)


def test_gpu_pvc_namespace_variant(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSERVE_DOCKER_TAG", "2.20.0")
    out = tmp_path / "k8s"
    result = _deploy("kubernetes", "--out", str(out), "--gpu", "--gpus", "2", "--delivery", "pvc",
                     "--versions", "all", "--namespace", "ml", "--node-selector",
                     "cloud.google.com/gke-accelerator=nvidia-l4", "--storage-class", "standard-rwx",
                     "--pvc-access-mode", "ReadWriteMany", "--cpu-limit", "4", "--memory", "4Gi")
    names = [Path(f).name for f in result["files"]]
    assert names == ["00-configmap.yaml", "01-pvc.yaml", "02-model-loader.yaml", *CORE[1:], "README.md"]
    for name in names[:-1]:
        validate_core(out / name)
    deployment = load_yaml(out / "10-deployment.yaml")
    assert deployment["metadata"]["namespace"] == "ml"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "tensorflow/serving:2.20.0-gpu"
    assert container["resources"]["limits"] == {"memory": "4Gi", "cpu": "4", "nvidia.com/gpu": 2}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"name": "models", "mountPath": f"/models/{MODEL_NAME}", "readOnly": True} in container["volumeMounts"]
    claim = load_yaml(out / "01-pvc.yaml")["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["storageClassName"] == "standard-rwx"
    # The init container's check, run by bash here against a folder laid out as the volume.
    command = pod["initContainers"][0]["command"]
    volume = tmp_path / "volume"
    local = [*command[:2], command[2].replace(f"/models/{MODEL_NAME}", str(volume))]
    empty = subprocess.run(local, capture_output=True, text=True)
    assert empty.returncode == 1 and "version 1 of digits_model is not on PVC digits-model-models" in empty.stdout
    shutil.copytree(exported, volume)
    assert subprocess.run(local, capture_output=True, text=True).returncode == 0
    assert not (out / "Dockerfile").exists()


def _dockerfile(path: Path) -> list[tuple[str, list[str]]]:
    """Instructions of a Dockerfile: (INSTRUCTION, arguments), comments and continuations handled."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), shlex.split(rest)))
        pending = ""
    return instructions


def test_dockerfile_bakes_versions_at_models_name_version(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    _deploy("kubernetes", "--out", str(out), "--versions", "1,2", "--image", "registry.example/digits:7")
    steps = _dockerfile(out / "Dockerfile")
    assert steps[0] == ("FROM", ["tensorflow/serving:2.19.1"])  # the pinned tag (settings.docker_tag)
    assert ("ENV", [f"MODEL_NAME={MODEL_NAME}"]) in steps
    copies = {args[1]: out / args[0] for keyword, args in steps if keyword == "COPY"}
    assert sorted(copies) == [f"/models/{MODEL_NAME}/1/", f"/models/{MODEL_NAME}/2/"]
    for destination, source in copies.items():
        version = destination.rstrip("/").rsplit("/", 1)[1]
        original = exported / version
        assert _tree_digest(source) == _tree_digest(original)  # the export, byte for byte
    assert _container(out)["image"] == "registry.example/digits:7"


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_kserve_inference_service_validates_against_kserve_crd(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "isvc"
    _deploy("kserve", "--out", str(out), "--storage-uri", "gs://bucket/models/digits_model",
            "--gpu", "--batching", "--memory", "2Gi")
    doc = load_yaml(out / "inferenceservice.yaml")
    assert kserve_errors(doc) == []
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow"}
    assert model["runtimeVersion"] == "2.19.1-gpu"
    assert model["storageUri"] == "gs://bucket/models/digits_model"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert model["args"] == ["--enable_batching"]
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # the schema check bites: a misspelt field and a bad enum value are refused
    doc["spec"]["predictor"]["model"]["storageURI"] = doc["spec"]["predictor"]["model"].pop("storageUri")
    doc["spec"]["predictor"]["scaleMetric"] = "qps"
    errors = kserve_errors(doc)
    assert any("storageURI" in e for e in errors) and any("'qps' is not one of" in e for e in errors)


def test_kserve_canary_form(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "canary"
    _deploy("kserve", "--out", str(out), "--storage-uri", "s3://b/digits_model", "--mode", "knative",
            "--canary-percent", "10")
    doc = load_yaml(out / "inferenceservice.yaml")
    assert kserve_errors(doc) == []
    assert doc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    standard = run_cli("deploy", "kserve", "--out", str(tmp_path / "x"), "--storage-uri", "s3://b/m",
                       "--canary-percent", "10")
    assert standard.returncode == 2 and "--mode knative" in standard.stderr
    assert not (tmp_path / "x").exists()


def test_kserve_v2_runs_on_mlserves_own_serving_runtime(exported: Path, tmp_path: Path) -> None:
    """--protocol v2: KServe's TF Serving runtime speaks v1 only, so the InferenceService names a
    ServingRuntime of mlserve's embedded server (v1 and v2 on the same ports), written beside it.
    The ServingRuntime CRD's schema is not vendored: its fields are checked here by name."""
    out = tmp_path / "v2"
    _deploy("kserve", "--out", str(out), "--storage-uri", "gs://b/digits_model", "--protocol", "v2",
            "--runtime-image", "registry.example/mlserve:0.1.0", "--batching")
    doc = load_yaml(out / "inferenceservice.yaml")
    assert kserve_errors(doc) == []
    model = doc["spec"]["predictor"]["model"]
    assert (model["protocolVersion"], model["runtime"]) == ("v2", "mlserve-tensorflow")
    assert "runtimeVersion" not in model and "args" not in model
    runtime = load_yaml(out / "servingruntime.yaml")
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert runtime["metadata"]["name"] == "mlserve-tensorflow"
    assert runtime["spec"]["supportedModelFormats"] == [{"name": "tensorflow", "version": "2", "autoSelect": False}]
    assert {"v1", "v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    container = runtime["spec"]["containers"][0]
    assert (container["name"], container["image"]) == ("kserve-container", "registry.example/mlserve:0.1.0")
    assert container["command"] == ["python", "-m", "mlserve.server"]
    assert {"--model_base_path=/mnt/models", "--rest_api_port=8080", "--port=8081", "--enable_batching"} <= set(
        container["args"])
    # v2 needs the image; an image without a tag, or one for v1, is refused, and nothing is written
    for args, words in ((["--protocol", "v2"], "needs --runtime-image"),
                        (["--protocol", "v2", "--runtime-image", "mlserve"], "needs a tag"),
                        (["--runtime-image", "r/mlserve:1"], "goes with --protocol v2"),
                        (["--protocol", "v3"], "not a protocol mlserve deploys")):
        proc = run_cli("deploy", "kserve", "--out", str(tmp_path / "no"), "--storage-uri", "s3://b/m", *args)
        assert proc.returncode == 2 and words in proc.stderr and "Hint:" in proc.stderr, proc.stderr
        assert not (tmp_path / "no").exists()


def test_plan_sets_autoscaler_bounds(exported: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"replicas": 5, "min_replicas": 5, "max_replicas": 9, "concurrency": 8}))
    out = tmp_path / "k8s"
    _deploy("kubernetes", "--out", str(out), "--plan", str(plan))
    hpa = load_yaml(out / "30-hpa.yaml")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (5, 9)
    validate_core(out / "30-hpa.yaml")
    isvc = tmp_path / "isvc"
    _deploy("kserve", "--out", str(isvc), "--plan", str(plan), "--storage-uri", "gs://b/m", "--mode", "knative")
    predictor = load_yaml(isvc / "inferenceservice.yaml")["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (5, 9)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)


def test_no_exported_version_is_one_error_with_a_hint(tmp_path: Path) -> None:
    proc = run_cli("deploy", "kubernetes", "--out", str(tmp_path / "k8s"))
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: model base path") and "does not exist" in lines[0]
    assert lines[1] == "Hint: export the model first: `mlserve export`, or give --model-base-path"
    assert not (tmp_path / "k8s").exists()


def test_non_empty_out_needs_force(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("deploy", "kubernetes", "--out", str(out))
    assert proc.returncode == 6 and "is not empty" in proc.stderr and "--force" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    _deploy("kubernetes", "--out", str(out), "--force")
    assert not (out / "keep.txt").exists() and (out / "10-deployment.yaml").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):  # the second tree is missing: fails mid-way
        write_folder(out, {"a.yaml": "a: 1\n"}, {"model/x/1": tmp_path / "missing"})
    assert list(tmp_path.iterdir()) == []  # no out, no temporary folder
    out.mkdir()
    (out / "old.yaml").write_text("old")
    with pytest.raises(FileNotFoundError):
        write_folder(out, {"a.yaml": "a: 1\n"}, {"model/x/1": tmp_path / "missing"}, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["old.yaml"]  # the old folder, untouched
    with pytest.raises(ConflictError):
        write_folder(out, {"a.yaml": ""})
