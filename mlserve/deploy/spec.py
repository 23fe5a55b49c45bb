"""What a deployment is asked for, resolved and checked once: `DeploySpec` and the model's versions."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import NotFoundError, UsageError

SERVING_IMAGE = "tensorflow/serving"
GRPC_PORT = 8500  # the image's entrypoint passes --port=8500 --rest_api_port=8501
REST_PORT = 8501
MODELS_ROOT = "/models"  # the image's MODEL_BASE_PATH: it serves /models/$MODEL_NAME
CONFIG_DIR = "/etc/mlserve"  # where the ConfigMap's files appear in the container
MONITORING_PATH = "/monitoring/prometheus/metrics"
# The Kubernetes version the manifests are written for and validated against (tests): gRPC and
# exec probe timeouts, autoscaling/v2 and sidecar-free init containers are all GA there.
KUBERNETES_VERSION = "1.32.0"
DELIVERIES = ("image", "pvc")
FEATURE_STORES = ("redis",)
FEATURE_REDIS_ENV = "MLSERVE_FEATURE_REDIS_URL"  # the container's variable the Secret fills
PREDICTION_CACHES = ("redis",)
REDIS_PORT = 6379
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class DeploySpec:
    """One model's deployment: what `deploy kubernetes` and `deploy kserve` write from."""

    model_name: str
    base_path: Path
    versions: list[int]  # the exported versions delivered
    name: str  # Kubernetes resource name (a DNS-1123 label)
    tag: str  # tensorflow/serving tag, without the -gpu suffix
    image_repo: str = SERVING_IMAGE
    namespace: str | None = None
    gpu: bool = False
    gpus: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    cpu: str = "1"
    memory: str = "1Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None  # default: the memory request (no overcommit of memory)
    min_replicas: int = 1  # also the starting size: the Deployment leaves replicas to the HPA
    max_replicas: int = 3
    cpu_target: int = 70  # HPA: average CPU utilisation, percent of the request
    batching: bool = False
    batching_parameters: str | None = None  # the batching parameters file's text
    poll_seconds: int | None = None
    tfs_args: list[str] = field(default_factory=list)
    delivery: str = "image"
    image: str | None = None  # the baked model image (delivery "image")
    pvc_size: str = "1Gi"
    storage_class: str | None = None
    # ReadWriteOnce works on every storage class, but keeps all pods on one node; replicas spread
    # over nodes need a class that offers ReadWriteMany (NFS, Filestore, EFS, CephFS...).
    pvc_access_mode: str = "ReadWriteOnce"
    concurrency: int | None = None  # per replica, from a plan
    plan_source: str | None = None
    # --feature-store redis (docs/feature-lookup.md): the lookup config's text (its store read
    # from FEATURE_REDIS_ENV) and the Secret that holds the Redis URL
    feature_lookup: str | None = None
    feature_secret: str | None = None
    feature_secret_key: str = "redis-url"
    # --prediction-cache redis: a Redis Deployment and Service beside the server, shared by every
    # replica through the server's --prediction_cache=redis://<name>-redis:6379 (docs/deploy.md)
    prediction_cache: str | None = None
    prediction_cache_memory: str = "256Mi"  # the Redis container's memory (request = limit)
    # The baked image runs mlserve's server (built by the Dockerfile), not tensorflow/serving:
    # set when a flag only mlserve's server has is asked for (deploy/dockerfile.py).
    mlserve_image: bool = False

    @property
    def serving_image(self) -> str:
        """The pinned tensorflow/serving image, `-gpu` variant with --gpu."""
        return f"{self.image_repo}:{self.tag}-gpu" if self.gpu else f"{self.image_repo}:{self.tag}"

    @property
    def needs_mlserve_server(self) -> bool:
        """Flags only mlserve's server takes (the tensorflow/serving image has none of them)."""
        return self.feature_lookup is not None or self.prediction_cache is not None

    @property
    def mlserve_flags(self) -> str:
        """The options that need mlserve's server, as the user wrote them (for messages)."""
        return " and ".join(name for name, on in (("--feature-store", self.feature_lookup is not None),
                                                  ("--prediction-cache", self.prediction_cache is not None)) if on)

    @property
    def model_dir(self) -> str:
        return f"{MODELS_ROOT}/{self.model_name}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/managed-by": "mlserve"}


def resource_name(model_name: str, name: str | None = None) -> str:
    """A DNS-1123 label for the resources: --name, or the model name lower-cased with `_` -> `-`."""
    value = name if name is not None else model_name.lower().replace("_", "-").replace(".", "-")
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise UsageError(f"{value!r} is not a valid Kubernetes name",
                         hint="give --name: lower-case letters, digits and '-', at most 63, "
                              "starting and ending with a letter or digit")
    return value


def select_versions(base_path: Path, choice: str = "latest") -> list[int]:
    """The exported versions to deliver: 'latest', 'all' or a comma list such as '1,3'."""
    from mlserve.model.export import existing_versions

    found = existing_versions(base_path)
    if not found:
        where = "does not exist" if not Path(base_path).exists() else "holds no exported version"
        raise NotFoundError(f"model base path {base_path} {where}",
                            hint="export the model first: `mlserve export`, or give --model-base-path")
    text = choice.strip().lower()
    if text == "latest":
        return [found[-1]]
    if text == "all":
        return found
    try:
        wanted = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(f"--versions {choice!r}: give latest, all or numbers like 1,3") from None
    missing = [v for v in wanted if v not in found]
    if not wanted or missing:
        raise NotFoundError(f"version(s) {', '.join(map(str, missing or wanted))} not exported under "
                            f"{base_path} (exported: {', '.join(map(str, found))})",
                            hint="list them with `ls` on the base path, or export with `mlserve export`")
    return wanted


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    """KEY=VALUE options (e.g. --node-selector) as a dict."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def apply_plan(spec: DeploySpec, plan: dict[str, Any], source: str) -> None:
    """Take the HPA bounds (min = the planned replicas) and per-replica concurrency from a plan (`mlserve plan --json`)."""
    spec.min_replicas = int(plan["min_replicas"])
    spec.max_replicas = int(plan["max_replicas"])
    spec.concurrency = int(plan["concurrency"]) if plan.get("concurrency") else None
    spec.plan_source = source


def check(spec: DeploySpec) -> None:
    """Reject inconsistent numbers before anything is written."""
    if not 1 <= spec.min_replicas <= spec.max_replicas:
        raise UsageError(f"replicas: min {spec.min_replicas} and max {spec.max_replicas} do not fit",
                         hint="give 1 <= --min-replicas <= --max-replicas")
    if not 1 <= spec.cpu_target <= 100:
        raise UsageError(f"--cpu-target must be 1..100 percent, got {spec.cpu_target}")
    if spec.gpu and spec.gpus < 1:
        raise UsageError(f"--gpus must be 1 or more, got {spec.gpus}")
    if spec.pvc_access_mode not in ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"):
        raise UsageError(f"--pvc-access-mode {spec.pvc_access_mode!r}: choose ReadWriteOnce or "
                         "ReadWriteMany (the loader pod writes, so not ReadOnlyMany)")
    if spec.mlserve_image and spec.gpu:
        raise UsageError(f"{spec.mlserve_flags} runs mlserve's server, whose image is written for CPUs "
                         "(python slim with TensorFlow from PyPI)",
                         hint="leave out --gpu, or build a CUDA image with mlserve installed from the "
                              "written Dockerfile and mlserve-src/ yourself")
    if spec.needs_mlserve_server and spec.delivery == "pvc":
        raise UsageError(f"{spec.mlserve_flags} needs mlserve's server, and --delivery pvc runs the "
                         "tensorflow/serving image, which has no such flag",
                         hint="use --delivery image (the default)")
    if spec.prediction_cache is not None:
        memory_bytes(spec.prediction_cache_memory, "--prediction-cache-memory")
    if spec.delivery not in DELIVERIES:
        raise UsageError(f"--delivery {spec.delivery!r}: choose image or pvc")


def prediction_cache(value: str) -> str:
    """`--prediction-cache`: only Redis shares answers between replicas."""
    if value not in PREDICTION_CACHES:
        raise UsageError(f"--prediction-cache {value!r}: choose {' or '.join(PREDICTION_CACHES)}",
                         hint="replicas share answers through Redis; with it, --tfs-arg="
                              "--prediction_cache_bytes=N adds each replica's own in-memory tier")
    return value


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(quantity: str, option: str) -> int:
    """A Kubernetes memory quantity (256Mi, 1Gi, 500M, 1048576) in bytes."""
    match = _QUANTITY.match(quantity.strip())
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{option} {quantity!r} is not a memory size",
                         hint="give a Kubernetes quantity such as 256Mi or 1Gi")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def feature_lookup_text(path: Path, store: str) -> str:
    """The lookup config for the cluster: `path` checked as the server checks it, with its store
    replaced by `redis_env: MLSERVE_FEATURE_REDIS_URL` (the URL, which may hold a password, comes
    from a Secret, never from the manifests). Key prefix and timeout are kept."""
    import yaml

    from mlserve.server.features.config import parse_config

    if store not in FEATURE_STORES:
        raise UsageError(f"--feature-store {store!r}: choose {' or '.join(FEATURE_STORES)}",
                         hint="SQLite is the embedded store for one machine; a cluster shares Redis")
    try:
        doc = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as e:
        raise NotFoundError(f"cannot read --feature-lookup {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise UsageError(f"--feature-lookup {path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("store"), dict):
        raise UsageError(f"--feature-lookup {path}: no store mapping", hint="docs/feature-lookup.md shows one")
    kept = {k: v for k, v in doc["store"].items() if k in ("key_prefix", "timeout_ms")}
    doc = {**doc, "store": {"redis_env": FEATURE_REDIS_ENV, **kept}}
    checkable = {**doc, "store": {"redis": "redis://cluster:6379/0", **kept}}
    parse_config(checkable, path=str(path))  # every other field, as the server will check it
    return yaml.safe_dump(doc, sort_keys=False)
