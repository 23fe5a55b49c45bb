"""Kubernetes manifests for TF Serving: Deployment, Service, HPA, ConfigMap, and PVC delivery.

The container is the pinned `tensorflow/serving` image (or an image built FROM it with the model
baked in). Its entrypoint already passes --port, --rest_api_port, --model_name=$MODEL_NAME and
--model_base_path=/models/$MODEL_NAME, so the Deployment sets MODEL_NAME and passes the rest of the
flags from `mlserve.runtimes.base.tfs_flags`, the one mapping `mlserve serve` uses too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.deploy.probes import probes
from mlserve.deploy.spec import (CONFIG_DIR, FEATURE_REDIS_ENV, GRPC_PORT, MONITORING_PATH, REDIS_PORT,
                                 REST_PORT, DeploySpec, memory_bytes)

Manifest = dict[str, Any]
MONITORING_FILE = "monitoring.config"
BATCHING_FILE = "batching.config"
FEATURE_LOOKUP_FILE = "feature-lookup.yaml"
REDIS_IMAGE = "redis:7-alpine"  # pinned by tag: Redis 7, the Alpine build of the official image
# Redis's own memory cap is this share of the container's limit: the rest is left for its
# allocator's fragmentation and client buffers, which maxmemory does not count.
REDIS_MAXMEMORY_SHARE = 0.75


def tfs_args(spec: DeploySpec) -> list[str]:
    """TF Serving flags for the container, from the same mapping `mlserve serve` uses."""
    from mlserve.runtimes.base import ServeOptions, tfs_flags

    options = ServeOptions(
        name=spec.name, model_name=spec.model_name, model_base_path=Path(spec.model_dir),
        poll_seconds=spec.poll_seconds, batching=spec.batching,
        batching_parameters_file=(Path(f"{CONFIG_DIR}/{BATCHING_FILE}")
                                  if spec.batching_parameters is not None else None),
        # Always on in a cluster: the Prometheus annotations below point at this endpoint.
        monitoring_config_file=Path(f"{CONFIG_DIR}/{MONITORING_FILE}"),
        gpu=spec.gpu, extra_flags=list(spec.tfs_args))
    flags = tfs_flags(options, entrypoint_flags=False)
    if spec.feature_lookup is not None:
        flags.append(f"--feature_lookup={CONFIG_DIR}/{FEATURE_LOOKUP_FILE}")
    if spec.prediction_cache is not None:
        flags.append(f"--prediction_cache={prediction_cache_url(spec)}")
    return flags


def redis_name(spec: DeploySpec) -> str:
    return f"{spec.name}-redis"


def prediction_cache_url(spec: DeploySpec) -> str:
    """Where every replica finds the shared cache: the Redis Service, by its in-namespace name."""
    return f"redis://{redis_name(spec)}:{REDIS_PORT}"


def _meta(spec: DeploySpec, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(spec.labels)}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    meta.update(extra)
    return meta


def pvc_name(spec: DeploySpec) -> str:
    return f"{spec.name}-models"


def loader_name(spec: DeploySpec) -> str:
    return f"{spec.name}-model-loader"


def config_map(spec: DeploySpec) -> Manifest:
    from mlserve.runtimes.lifecycle import MONITORING_CONFIG

    data = {MONITORING_FILE: MONITORING_CONFIG}
    if spec.batching_parameters is not None:
        data[BATCHING_FILE] = spec.batching_parameters
    if spec.feature_lookup is not None:
        data[FEATURE_LOOKUP_FILE] = spec.feature_lookup
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, f"{spec.name}-config"),
            "data": data}


def _resources(spec: DeploySpec) -> dict[str, Any]:
    requests = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, Any] = {"memory": spec.memory_limit or spec.memory}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    if spec.gpu:
        limits["nvidia.com/gpu"] = spec.gpus  # extended resources: the request equals the limit
    return {"requests": requests, "limits": limits}


def _pvc_check_script(spec: DeploySpec) -> str:
    missing = (f'echo "version $v of {spec.model_name} is not on PVC {pvc_name(spec)} '
               f'({spec.model_dir}/$v/saved_model.pb missing): copy it with kubectl cp, see README.md"')
    versions = " ".join(str(v) for v in spec.versions)
    return (f"for v in {versions}; do test -f {spec.model_dir}/$v/saved_model.pb || "
            f"{{ {missing}; exit 1; }}; done")


def deployment(spec: DeploySpec) -> Manifest:
    container: dict[str, Any] = {
        "name": "tensorflow-serving",
        "image": spec.image if spec.delivery == "image" else spec.serving_image,
        "args": tfs_args(spec),
        "env": [{"name": "MODEL_NAME", "value": spec.model_name}],
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"}],
        "resources": _resources(spec),
        **probes(spec.model_name, REST_PORT),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    if spec.feature_lookup is not None:
        # The Redis URL (it may hold a password) from a Secret the cluster's owner creates:
        # kubectl create secret generic <name>-feature-store --from-literal=redis-url=redis://...
        container["env"].append({"name": FEATURE_REDIS_ENV, "valueFrom": {"secretKeyRef": {
            "name": spec.feature_secret or f"{spec.name}-feature-store", "key": spec.feature_secret_key}}})
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": f"{spec.name}-config"}}]
    pod: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if spec.delivery == "pvc":
        mount = {"name": "models", "mountPath": spec.model_dir, "readOnly": True}
        container["volumeMounts"].append(mount)
        volumes.append({"name": "models",
                        "persistentVolumeClaim": {"claimName": pvc_name(spec), "readOnly": True}})
        # Fails (and is retried with back-off) until the versions are on the volume, with a log
        # line that says what to copy: better than a server that waits with nothing to load.
        pod["initContainers"] = [{"name": "check-model-versions", "image": spec.serving_image,
                                  "command": ["/bin/bash", "-c", _pvc_check_script(spec)],
                                  "volumeMounts": [mount]}]
    if spec.gpu:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(REST_PORT),
                   "prometheus.io/path": MONITORING_PATH}
    meta_annotations: dict[str, str] = {}
    if spec.concurrency:
        meta_annotations["mlserve/per-replica-concurrency"] = str(spec.concurrency)
    if spec.plan_source:
        meta_annotations["mlserve/plan"] = spec.plan_source
    meta = _meta(spec, spec.name, **({"annotations": meta_annotations} if meta_annotations else {}))
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        # No `replicas`: the HPA owns the count (min = the planned replicas); a fixed number here
        # would reset it on every `kubectl apply`.
        "spec": {
            "selector": {"matchLabels": dict(spec.labels)},
            # Never below the planned capacity during a rollout: one extra pod, none missing.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": dict(spec.labels), "annotations": annotations},
                         "spec": pod},
        },
    }


def service(spec: DeploySpec) -> Manifest:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, spec.name),
            "spec": {"selector": dict(spec.labels),
                     "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc",
                                "protocol": "TCP", "appProtocol": "grpc"},
                               {"name": "http", "port": REST_PORT, "targetPort": "http",
                                "protocol": "TCP"}]}}


def autoscaler(spec: DeploySpec) -> Manifest:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(spec, spec.name),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                     "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization": spec.cpu_target}}}]}}


def _redis_labels(spec: DeploySpec) -> dict[str, str]:
    # Not the server's labels: its Service must never select a Redis pod.
    return {"app.kubernetes.io/name": redis_name(spec), "app.kubernetes.io/component": "prediction-cache",
            "app.kubernetes.io/part-of": spec.name, "app.kubernetes.io/managed-by": "mlserve"}


def _redis_meta(spec: DeploySpec) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": redis_name(spec), "labels": _redis_labels(spec)}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    return meta


def redis_args(spec: DeploySpec) -> list[str]:
    """redis-server as a cache: capped memory, least recently used keys evicted first, nothing on disk."""
    limit = memory_bytes(spec.prediction_cache_memory, "--prediction-cache-memory")
    return ["--port", str(REDIS_PORT), "--maxmemory", str(int(limit * REDIS_MAXMEMORY_SHARE)),
            "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no",
            # The image's default too, said here: only the Service's ClusterIP reaches it.
            "--protected-mode", "no"]


def redis_deployment(spec: DeploySpec) -> Manifest:
    """One Redis replica holding the shared prediction cache: losing it loses only cached answers
    (the server counts an unreachable Redis as a miss), so there is no volume and no persistence."""
    memory = spec.prediction_cache_memory
    container: dict[str, Any] = {
        "name": "redis", "image": REDIS_IMAGE,
        "command": ["redis-server"], "args": redis_args(spec),
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": memory}, "limits": {"memory": memory}},
        "readinessProbe": {"exec": {"command": ["redis-cli", "-p", str(REDIS_PORT), "ping"]},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": REDIS_PORT}, "initialDelaySeconds": 5,
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _redis_meta(spec),
            "spec": {"replicas": 1, "selector": {"matchLabels": _redis_labels(spec)},
                     # One pod, no volume: replace it outright rather than run two empty caches.
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": _redis_labels(spec)},
                                  "spec": {"containers": [container]}}}}


def redis_service(spec: DeploySpec) -> Manifest:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _redis_meta(spec),
            "spec": {"type": "ClusterIP", "selector": _redis_labels(spec),
                     "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis",
                                "protocol": "TCP"}]}}


def volume_claim(spec: DeploySpec) -> Manifest:
    claim: dict[str, Any] = {"accessModes": [spec.pvc_access_mode],
                             "resources": {"requests": {"storage": spec.pvc_size}}}
    if spec.storage_class:
        claim["storageClassName"] = spec.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(spec, pvc_name(spec)),
            "spec": claim}


def loader_pod(spec: DeploySpec) -> Manifest:
    """A pod that mounts the PVC read-write so `kubectl cp` can put the versions on it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(spec, loader_name(spec)),
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "loader", "image": spec.serving_image,
                                     "command": ["/bin/bash", "-c", "sleep 3600"],
                                     "volumeMounts": [{"name": "models", "mountPath": spec.model_dir}]}],
                     "volumes": [{"name": "models",
                                  "persistentVolumeClaim": {"claimName": pvc_name(spec)}}]}}


def manifests(spec: DeploySpec) -> dict[str, Manifest]:
    """File name -> manifest. File names sort in a sensible apply order (storage before pods)."""
    files = {"00-configmap.yaml": config_map(spec)}
    if spec.delivery == "pvc":
        files["01-pvc.yaml"] = volume_claim(spec)
        files["02-model-loader.yaml"] = loader_pod(spec)
    if spec.prediction_cache is not None:
        # Before the server: its replicas find the cache from their first request.
        files["05-prediction-cache.yaml"] = redis_deployment(spec)
        files["06-prediction-cache-service.yaml"] = redis_service(spec)
    files["10-deployment.yaml"] = deployment(spec)
    files["20-service.yaml"] = service(spec)
    files["30-hpa.yaml"] = autoscaler(spec)
    return files


def to_yaml(manifest: Manifest) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=4096)
