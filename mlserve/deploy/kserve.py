"""A KServe InferenceService (serving.kserve.io/v1beta1) for TF Serving, and its canary form.

`predictor.model` with `modelFormat: tensorflow` selects KServe's `kserve-tensorflow-serving`
runtime: the `tensorflow/serving` image at tag `runtimeVersion`, started with its own --model_name,
ports and `--model_base_path=/mnt/models`, where KServe's storage initializer downloads
`storageUri`. So `storageUri` is the folder that holds the numbered versions, and the args
added here are only the flags from `tfs_flags` that need no file in the container.

The canary form sets `canaryTrafficPercent`: KServe then sends that share of traffic to the
revision being rolled out and the rest to the last ready one. Revisions exist in Knative mode only.

`protocolVersion: v2` (the Open Inference Protocol) is not one KServe's TF Serving runtime speaks
(its ServingRuntime lists v1 and grpc-v1 only), so the v2 form names a ServingRuntime of its own,
written beside the InferenceService: mlserve's embedded server, which answers TF Serving's v1 and
the v2 protocol on the same ports, from an image the user builds with mlserve installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.deploy.spec import DeploySpec
from mlserve.errors import UsageError

API_VERSION = "serving.kserve.io/v1beta1"
RUNTIME_API_VERSION = "serving.kserve.io/v1alpha1"
PROTOCOLS = ("v1", "v2")
RUNTIME_NAME = "mlserve-tensorflow"  # the ServingRuntime of the v2 form
REST_PORT, GRPC_PORT = 8080, 8081  # KServe's ports for a kserve-container's HTTP and gRPC
MODES = {"standard": "Standard", "knative": "Knative"}  # KServe's deploymentMode values (v0.20)
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"


def model_args(spec: DeploySpec) -> list[str]:
    """TF Serving flags the runtime's own args leave out, from the mapping `mlserve serve` uses."""
    from mlserve.runtimes.base import ServeOptions, tfs_flags

    options = ServeOptions(name=spec.name, model_name=spec.model_name,
                           model_base_path=Path("/mnt/models"), poll_seconds=spec.poll_seconds,
                           batching=spec.batching, gpu=spec.gpu, extra_flags=list(spec.tfs_args))
    return tfs_flags(options, entrypoint_flags=False)


def inference_service(spec: DeploySpec, *, storage_uri: str, mode: str = "standard",
                      canary_percent: int | None = None, protocol: str = "v1") -> dict[str, Any]:
    """The InferenceService manifest (v2: on the ServingRuntime `serving_runtime` writes)."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r} is not a protocol mlserve deploys",
                         hint="choose v1 (TF Serving's) or v2 (the Open Inference Protocol)")
    if "://" not in storage_uri:
        raise UsageError(f"--storage-uri {storage_uri!r} is not a URI",
                         hint="give the folder of numbered versions, e.g. gs://bucket/models/digits_model "
                              "or pvc://claim/digits_model")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose standard or knative")
    if spec.batching_parameters is not None:
        raise UsageError("--batching-parameters-file needs a file in the container, which KServe "
                         "cannot mount here", hint="use --batching (TF Serving's default parameters)")
    if canary_percent is not None:
        if not 0 <= canary_percent <= 100:
            raise UsageError(f"--canary-percent must be 0..100, got {canary_percent}")
        if mode != "knative":
            raise UsageError("canaryTrafficPercent splits traffic between Knative revisions",
                             hint="add --mode knative (KServe's serverless mode)")
    resources: dict[str, Any] = {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                                 "limits": {"memory": spec.memory_limit or spec.memory}}
    if spec.cpu_limit:
        resources["limits"]["cpu"] = spec.cpu_limit
    if spec.gpu:
        resources["limits"]["nvidia.com/gpu"] = spec.gpus
    model: dict[str, Any] = {
        "modelFormat": {"name": "tensorflow"},
        "runtimeVersion": f"{spec.tag}-gpu" if spec.gpu else spec.tag,
        "storageUri": storage_uri,
        "resources": resources,
    }
    args = model_args(spec)
    if protocol == "v2":  # mlserve's runtime takes the model's flags itself (serving_runtime)
        model.pop("runtimeVersion")
        model.update(protocolVersion="v2", runtime=RUNTIME_NAME)
    elif args:
        model["args"] = args
    predictor: dict[str, Any] = {"minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas}
    if mode == "knative":
        if spec.concurrency:
            # Knative's autoscaler keeps each replica at the planned number of requests in flight.
            predictor.update(scaleMetric="concurrency", scaleTarget=spec.concurrency)
    else:
        predictor.update(scaleMetric="cpu", scaleMetricType="Utilization", scaleTarget=spec.cpu_target)
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    if spec.gpu:
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if spec.node_selector:
        predictor["nodeSelector"] = dict(spec.node_selector)
    predictor["model"] = model
    metadata: dict[str, Any] = {"name": spec.name, "labels": dict(spec.labels),
                                "annotations": {MODE_ANNOTATION: MODES[mode]}}
    if spec.plan_source:
        metadata["annotations"]["mlserve/plan"] = spec.plan_source
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def serving_runtime(spec: DeploySpec, *, image: str) -> dict[str, Any]:
    """A namespaced ServingRuntime running mlserve's embedded server for `modelFormat: tensorflow`,
    serving TF Serving's v1 and the v2 protocol (REST on 8080, gRPC on 8081). Not auto-selected:
    only an InferenceService that names it (the v2 form) runs on it."""
    if not image or ":" not in image.rsplit("/", 1)[-1]:
        raise UsageError(f"--runtime-image {image!r} needs a tag", hint="e.g. --runtime-image registry.example/mlserve:0.1.0")
    args = ["--model_name={{.Name}}", "--model_base_path=/mnt/models", f"--rest_api_port={REST_PORT}",
            f"--port={GRPC_PORT}", "--host=0.0.0.0", *model_args(spec)]
    metadata: dict[str, Any] = {"name": RUNTIME_NAME, "labels": dict(spec.labels)}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    return {"apiVersion": RUNTIME_API_VERSION, "kind": "ServingRuntime", "metadata": metadata, "spec": {
        "supportedModelFormats": [{"name": "tensorflow", "version": "2", "autoSelect": False}],
        "protocolVersions": ["v1", "v2", "grpc-v1", "grpc-v2"],
        "containers": [{
            "name": "kserve-container", "image": image,
            "command": ["python", "-m", "mlserve.server"], "args": args,
            "ports": [{"containerPort": REST_PORT, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                          "limits": {"memory": spec.memory_limit or spec.memory}},
        }],
    }}
