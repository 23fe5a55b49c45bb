"""`mlserve deploy kubernetes|kserve`: manifests for an exported model, sized by a plan, optionally applied."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from typing_extensions import Annotated

from mlserve.cli import output

deploy_app = typer.Typer(help="Write Kubernetes or KServe manifests for an exported model (and apply them).",
                         no_args_is_help=True)

Model = Annotated[Optional[str], typer.Argument(help="Model name (env MLSERVE_MODEL_NAME).")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Folder to write (must be new or empty).")]
BasePath = Annotated[Optional[Path], typer.Option(
    "--model-base-path", help="Folder of exported versions (default: <home>/models/<model>).")]
Versions = Annotated[str, typer.Option("--versions", help="Versions to deliver: latest, all, or e.g. 1,3.")]
Name = Annotated[Optional[str], typer.Option("--name", help="Resource name (default: the model name, DNS-safe).")]
Namespace = Annotated[Optional[str], typer.Option("--namespace", help="Kubernetes namespace.")]
Tag = Annotated[Optional[str], typer.Option(
    "--tag", help="tensorflow/serving tag (env MLSERVE_DOCKER_TAG; '-gpu' is added with --gpu).")]
Gpu = Annotated[bool, typer.Option("--gpu", help="The -gpu image, an nvidia.com/gpu limit and toleration.")]
Gpus = Annotated[int, typer.Option("--gpus", help="GPUs per replica with --gpu.")]
NodeSelector = Annotated[Optional[List[str]], typer.Option(
    "--node-selector", help="KEY=VALUE node label the pods need (repeatable).")]
Cpu = Annotated[str, typer.Option("--cpu", help="CPU request per replica.")]
Memory = Annotated[str, typer.Option("--memory", help="Memory request (and limit) per replica.")]
CpuLimit = Annotated[Optional[str], typer.Option("--cpu-limit", help="CPU limit (default: none).")]
MemoryLimit = Annotated[Optional[str], typer.Option("--memory-limit", help="Memory limit (default: --memory).")]
MinReplicas = Annotated[Optional[int], typer.Option("--min-replicas", help="Autoscaler minimum (default 1, or the plan's).")]
MaxReplicas = Annotated[Optional[int], typer.Option("--max-replicas", help="Autoscaler maximum (default 3, or the plan's).")]
CpuTarget = Annotated[int, typer.Option("--cpu-target", help="Autoscale at this average CPU % of the request.")]
Batching = Annotated[bool, typer.Option("--batching", help="Enable TF Serving's server-side batching.")]
BatchingFile = Annotated[Optional[Path], typer.Option(
    "--batching-parameters-file", help="TF Serving batching parameters (shipped in a ConfigMap).")]
Poll = Annotated[Optional[int], typer.Option(
    "--poll-seconds", help="TF Serving's --file_system_poll_wait_seconds.")]
TfsArg = Annotated[Optional[List[str]], typer.Option(
    "--tfs-arg", help="An extra TF Serving flag, passed as it is (repeatable).")]
PlanFile = Annotated[Optional[Path], typer.Option(
    "--plan", help="Autoscaler bounds (and KServe concurrency) from `mlserve plan --json` output.")]
Force = Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")]
Apply = Annotated[bool, typer.Option("--apply", help="kubectl apply the folder, then wait for the rollout.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds --apply waits for the rollout.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (and nothing else) on stdout.")]


def _spec(model: Optional[str], base_path: Optional[Path], versions: str, name: Optional[str],
          namespace: Optional[str], tag: Optional[str], gpu: bool, gpus: int,
          node_selector: Optional[List[str]], cpu: str, memory: str, cpu_limit: Optional[str],
          memory_limit: Optional[str], min_replicas: Optional[int], max_replicas: Optional[int],
          cpu_target: int, batching: bool, batching_file: Optional[Path], poll: Optional[int],
          tfs_arg: Optional[List[str]], plan_file: Optional[Path]):
    from mlserve import settings
    from mlserve.deploy import spec as specs
    from mlserve.errors import NotFoundError

    model_name = settings.get("model_name", model)
    base = settings.model_base_path(model_name, base_path)
    parameters = None
    if batching_file is not None:
        try:
            parameters = batching_file.expanduser().read_text()
        except OSError as e:
            raise NotFoundError(f"cannot read --batching-parameters-file {batching_file}: {e.strerror}") from e
    spec = specs.DeploySpec(
        model_name=model_name, base_path=base, versions=specs.select_versions(base, versions),
        name=specs.resource_name(model_name, name), tag=str(settings.get("docker_tag", tag)),
        image_repo=str(settings.get("docker_image")), namespace=namespace, gpu=gpu, gpus=gpus,
        node_selector=specs.parse_pairs(node_selector or [], "--node-selector"), cpu=cpu, memory=memory,
        cpu_limit=cpu_limit, memory_limit=memory_limit, cpu_target=cpu_target, batching=batching,
        batching_parameters=parameters, poll_seconds=poll, tfs_args=list(tfs_arg or []))
    if plan_file is not None:
        from mlserve.tools.plan import load_plan

        specs.apply_plan(spec, load_plan(plan_file), plan_file.name)
    if min_replicas is not None:
        spec.min_replicas = min_replicas
    if max_replicas is not None:
        spec.max_replicas = max_replicas
    return spec


@deploy_app.command("kubernetes")
def kubernetes(
    model: Model = None, out: Out = ..., model_base_path: BasePath = None, versions: Versions = "latest",
    delivery: str = typer.Option("image", "--delivery",
                                 help="image: a Dockerfile that bakes the versions in; pvc: a volume claim."),
    image: Optional[str] = typer.Option(None, "--image", help="The baked image to run (default <name>:v<version>); "
                                        "it runs mlserve's server with --feature-store or --prediction-cache."),
    pvc_size: str = typer.Option("1Gi", "--pvc-size", help="Size of the claim with --delivery pvc."),
    storage_class: Optional[str] = typer.Option(None, "--storage-class", help="Storage class of the claim."),
    pvc_access_mode: str = typer.Option("ReadWriteOnce", "--pvc-access-mode",
                                        help="ReadWriteMany to spread replicas over nodes."),
    name: Name = None, namespace: Namespace = None, tag: Tag = None, gpu: Gpu = False, gpus: Gpus = 1,
    node_selector: NodeSelector = None, cpu: Cpu = "1", memory: Memory = "1Gi",
    cpu_limit: CpuLimit = None, memory_limit: MemoryLimit = None, min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None, cpu_target: CpuTarget = 70, batching: Batching = False,
    batching_parameters_file: BatchingFile = None, poll_seconds: Poll = None, tfs_arg: TfsArg = None,
    plan: PlanFile = None, force: Force = False, apply: Apply = False, timeout: Timeout = 300.0,
    json_: Json = False,
    feature_store: Optional[str] = typer.Option(
        None, "--feature-store", help="redis: the server looks features up (--feature-lookup) in a "
        "Redis whose URL comes from a Secret (docs/feature-lookup.md)."),
    feature_lookup: Optional[Path] = typer.Option(
        None, "--feature-lookup", help="The lookup config (its store is replaced by the Secret's Redis)."),
    feature_store_secret: Optional[str] = typer.Option(
        None, "--feature-store-secret", help="Secret holding the Redis URL under key redis-url "
        "(default <name>-feature-store)."),
    prediction_cache: Optional[str] = typer.Option(
        None, "--prediction-cache", help="redis: a Redis Deployment and Service (<name>-redis) that every "
        "replica shares its cache of predict answers through (--prediction_cache)."),
    prediction_cache_memory: str = typer.Option(
        "256Mi", "--prediction-cache-memory", help="Memory of the cache's Redis (its limit; Redis keeps "
        "3/4 of it for answers and evicts the least recently used)."),
) -> None:
    """Write a Deployment of the pinned tensorflow/serving image, its Service, HPA and ConfigMap.

    The model is delivered by a Dockerfile that bakes the versions in (--delivery image) or on a
    PersistentVolumeClaim checked by an init container (--delivery pvc). Pods are ready only when
    the model reports AVAILABLE. --apply runs kubectl apply, then kubectl rollout status.
    --feature-store and --prediction-cache need mlserve's own server: the Dockerfile then builds
    an image of it (mlserve-model-server taking the same flags) instead of tensorflow/serving's.
    """
    from mlserve.deploy import dockerfile, kubernetes as k8s, spec as specs, writer
    from mlserve.errors import UsageError

    if image is not None and delivery != "image":
        raise UsageError("--image is the image that bakes the versions in: it needs --delivery image")
    out = writer.check_out(out, force)
    spec = _spec(model, model_base_path, versions, name, namespace, tag, gpu, gpus, node_selector,
                 cpu, memory, cpu_limit, memory_limit, min_replicas, max_replicas, cpu_target,
                 batching, batching_parameters_file, poll_seconds, tfs_arg, plan)
    spec.delivery, spec.pvc_size, spec.storage_class = delivery, pvc_size, storage_class
    spec.pvc_access_mode = pvc_access_mode
    if (feature_store is None) != (feature_lookup is None):
        raise UsageError("--feature-store and --feature-lookup go together",
                         hint="mlserve deploy kubernetes --feature-store redis --feature-lookup lookup.yaml")
    if feature_store is not None and feature_lookup is not None:
        spec.feature_lookup = specs.feature_lookup_text(feature_lookup, feature_store)
        spec.feature_secret = specs.resource_name(feature_store_secret) if feature_store_secret else None
    if prediction_cache is not None:
        spec.prediction_cache = specs.prediction_cache(prediction_cache)
        spec.prediction_cache_memory = prediction_cache_memory
    # Flags only mlserve's server has: the Dockerfile builds mlserve's server image (--image names it).
    spec.mlserve_image = delivery == "image" and spec.needs_mlserve_server
    specs.check(spec)
    trees: dict[str, Path] = {}
    if delivery == "image":
        spec.image = image or dockerfile.default_image(spec)
        trees = dockerfile.context_files(spec)
    texts = {name: k8s.to_yaml(doc) for name, doc in k8s.manifests(spec).items()}
    if delivery == "image":
        texts.update(dockerfile.context_texts(spec))
    texts["README.md"] = _readme(spec, out)
    files = writer.write_folder(out, texts, trees, force=force)
    _report(spec, out, files, json_, kind="kubernetes")
    if apply:
        from mlserve.deploy.apply import apply_kubernetes

        apply_kubernetes(out, spec, timeout=timeout, notify=_say)
        _say(f"Deployment {spec.name} rolled out.")


@deploy_app.command("kserve")
def kserve(
    model: Model = None, out: Out = ...,
    storage_uri: str = typer.Option(..., "--storage-uri",
                                    help="Where KServe downloads the versions from: gs://, s3://, pvc://..."),
    mode: str = typer.Option("standard", "--mode", help="KServe deployment mode: standard or knative."),
    canary_percent: Optional[int] = typer.Option(
        None, "--canary-percent", help="Send this % of traffic to the new revision (canary; knative mode)."),
    protocol: str = typer.Option("v1", "--protocol",
                                 help="v1 (TF Serving's, on KServe's TF Serving runtime) or v2 (Open Inference "
                                      "Protocol, on mlserve's embedded server)."),
    runtime_image: Optional[str] = typer.Option(
        None, "--runtime-image", help="With --protocol v2: an image with mlserve installed (its ServingRuntime runs it)."),
    model_base_path: BasePath = None, versions: Versions = "latest",
    name: Name = None, namespace: Namespace = None, tag: Tag = None, gpu: Gpu = False, gpus: Gpus = 1,
    node_selector: NodeSelector = None, cpu: Cpu = "1", memory: Memory = "1Gi",
    cpu_limit: CpuLimit = None, memory_limit: MemoryLimit = None, min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None, cpu_target: CpuTarget = 70, batching: Batching = False,
    poll_seconds: Poll = None, tfs_arg: TfsArg = None, plan: PlanFile = None, force: Force = False,
    apply: Apply = False, timeout: Timeout = 300.0, json_: Json = False,
) -> None:
    """Write a KServe InferenceService (v1beta1, modelFormat tensorflow) for an exported model.

    --storage-uri is the folder of numbered versions (copy the exported base path there).
    --protocol v2 (Open Inference Protocol) adds a ServingRuntime that runs mlserve's embedded
    server from --runtime-image, since KServe's TF Serving runtime speaks v1 only.
    --canary-percent writes the canary form: KServe splits traffic between the new and the last
    ready revision. --apply runs kubectl apply, then waits until the service is Ready.
    """
    from mlserve.deploy import kserve as ks, kubernetes as k8s, spec as specs, writer
    from mlserve.errors import UsageError

    out = writer.check_out(out, force)
    spec = _spec(model, model_base_path, versions, name, namespace, tag, gpu, gpus, node_selector,
                 cpu, memory, cpu_limit, memory_limit, min_replicas, max_replicas, cpu_target,
                 batching, None, poll_seconds, tfs_arg, plan)
    specs.check(spec)
    manifest = ks.inference_service(spec, storage_uri=storage_uri, mode=mode, canary_percent=canary_percent,
                                    protocol=protocol)
    texts = {"inferenceservice.yaml": k8s.to_yaml(manifest)}
    if protocol == "v2":
        if not runtime_image:
            raise UsageError("--protocol v2 runs on mlserve's embedded server: it needs --runtime-image",
                             hint="build an image with mlserve installed and push it, e.g. "
                                  "--runtime-image registry.example/mlserve:0.1.0 (docs/deploy.md)")
        texts["servingruntime.yaml"] = k8s.to_yaml(ks.serving_runtime(spec, image=runtime_image))
    elif runtime_image:
        raise UsageError("--runtime-image goes with --protocol v2", hint="v1 runs on KServe's own TF Serving runtime")
    files = writer.write_folder(out, texts, force=force)
    _report(spec, out, files, json_, kind="kserve", extra={"storage_uri": storage_uri, "mode": mode,
                                                           "canary_percent": canary_percent, "protocol": protocol})
    if apply:
        from mlserve.deploy.apply import apply_kserve

        apply_kserve(out, spec, timeout=timeout, notify=_say)
        _say(f"InferenceService {spec.name} is Ready.")


def _say(message: str) -> None:
    output.err.print(message, soft_wrap=True, markup=False, highlight=False)


def _readme(spec: Any, out: Path) -> str:
    """Next steps, kept beside the manifests."""
    ns = f" -n {spec.namespace}" if spec.namespace else ""
    server = "mlserve's server" if getattr(spec, "mlserve_image", False) else f"TF Serving {spec.tag}"
    lines = [f"# {spec.name}: {spec.model_name} on {server}", "",
             "Written by `mlserve deploy kubernetes`.", ""]
    if getattr(spec, "feature_lookup", None) is not None:
        secret = spec.feature_secret or f"{spec.name}-feature-store"
        lines += ["Feature lookup (docs/feature-lookup.md): the server reads features from Redis. "
                  "Create the Secret with the Redis URL first:", "",
                  f"    kubectl create secret generic{ns} {secret} "
                  f"--from-literal={spec.feature_secret_key}=redis://HOST:6379/0", ""]
    if getattr(spec, "prediction_cache", None) is not None:
        from mlserve.deploy.kubernetes import prediction_cache_url, redis_name

        lines += [f"Prediction cache (docs/deploy.md): every replica shares answers through Redis at "
                  f"{prediction_cache_url(spec)} (Deployment and Service {redis_name(spec)}, "
                  f"{spec.prediction_cache_memory}, least recently used answers evicted, nothing on disk).", ""]
    if getattr(spec, "mlserve_image", False):
        lines += [f"{spec.image} runs mlserve's server (mlserve-model-server), which {spec.mlserve_flags} "
                  "needs: the Dockerfile builds mlserve's wheel from mlserve-src/ and installs it on "
                  "python slim, dependencies held to constraints.txt.", ""]
    if spec.delivery == "image":
        lines += ["Build and push the image that bakes the versions in, then apply:", "",
                  f"    docker build -t {spec.image} {out}", f"    docker push {spec.image}",
                  f"    kubectl apply{ns} -f {out}", f"    kubectl rollout status{ns} deployment/{spec.name}"]
    else:
        from mlserve.deploy.kubernetes import loader_name

        lines += ["Create the claim and the loader pod, copy the versions onto the claim, then apply:", "",
                  f"    kubectl apply{ns} -f {out}/00-configmap.yaml -f {out}/01-pvc.yaml "
                  f"-f {out}/02-model-loader.yaml",
                  f"    kubectl wait{ns} --for=condition=Ready pod/{loader_name(spec)}"]
        where = f"{spec.namespace}/" if spec.namespace else ""
        lines += [f"    kubectl cp {spec.base_path}/{v} {where}{loader_name(spec)}:{spec.model_dir}/{v}"
                  for v in spec.versions]
        lines += [f"    kubectl apply{ns} -f {out}", f"    kubectl rollout status{ns} deployment/{spec.name}",
                  f"    kubectl delete{ns} pod/{loader_name(spec)}   # once the rollout is done"]
    return "\n".join(lines) + "\n"


def _runs(spec: Any) -> str:
    if spec.mlserve_image:
        from mlserve.deploy.dockerfile import base_description

        return base_description(spec)
    return spec.serving_image


def _report(spec: Any, out: Path, files: list[Path], json_: bool, *, kind: str,
            extra: dict[str, Any] | None = None) -> None:
    shown = [f for f in files if f.parent == out]  # not every file of the baked SavedModels
    if json_:
        output.print_json({"kind": kind, "out": str(out), "name": spec.name, "model": spec.model_name,
                           "versions": spec.versions, "serving_image": spec.serving_image,
                           "server": "mlserve" if spec.mlserve_image else "tensorflow-serving",
                           "image": getattr(spec, "image", None), "min_replicas": spec.min_replicas,
                           "max_replicas": spec.max_replicas, "files": [str(f) for f in shown]}
                          | (extra or {}))
    else:
        output.out.print(f"Wrote {out} ({spec.model_name} version(s) "
                         f"{', '.join(map(str, spec.versions))}, {_runs(spec)}):", markup=False)
        for f in shown:
            output.out.print(f"  {f.relative_to(out)}", markup=False)
    if kind == "kubernetes" and spec.delivery == "image":
        _say(f"Next: docker build -t {spec.image} {out} && docker push {spec.image}, "
                    f"then kubectl apply -f {out} (steps in {out / 'README.md'})")
    elif kind == "kubernetes":
        _say(f"Next: copy the versions onto the claim (steps in {out / 'README.md'})")
    else:
        _say(f"Next: copy {spec.base_path} to the storage URI, then kubectl apply -f {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
