"""`--apply`: `kubectl apply -f <out>`, then wait for the rollout, failing with kubectl's own words."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlserve.deploy.kubernetes import loader_name, redis_name
from mlserve.deploy.spec import DeploySpec
from mlserve.errors import ServerResponseError, UnavailableError, WaitTimeoutError

Notify = Callable[[str], None]
TAIL = 10  # lines of kubectl's output shown when it fails


class KubectlError(ServerResponseError):
    """kubectl (or the cluster behind it) refused or failed a step."""


@dataclass
class Step:
    argv: list[str]
    output: str


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise UnavailableError("kubectl is not on PATH",
                               hint="install kubectl and point it at your cluster, or leave out --apply "
                                    "and run `kubectl apply -f <out>` yourself")
    return path


def _run(argv: list[str], timeout: float, notify: Notify) -> Step:
    notify("$ " + " ".join(argv))
    try:
        done = subprocess.run([kubectl(), *argv[1:]], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WaitTimeoutError(f"`{' '.join(argv[:3])}` did not finish within {timeout:g}s",
                               hint="check the cluster with `kubectl get pods`") from None
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-TAIL:])
        error = WaitTimeoutError if "timed out" in text.lower() else KubectlError
        raise error(f"`{' '.join(argv)}` failed (exit {done.returncode})", details=tail or None,
                    hint="see why with `kubectl describe` and `kubectl get events`; the manifests "
                         "stay in the output folder")
    for line in done.stdout.strip().splitlines():
        notify(line)
    return Step(argv, text)


def _ns(namespace: str | None) -> list[str]:
    return ["-n", namespace] if namespace else []


def apply_kubernetes(out: Path, spec: DeploySpec, *, timeout: float, notify: Notify) -> list[Step]:
    """Apply the folder and wait for the Deployment's rollout; PVC delivery copies the versions first."""
    ns, steps = _ns(spec.namespace), []
    wait = f"--timeout={int(timeout)}s"
    if spec.delivery == "pvc":
        first = [str(out / name) for name in sorted(p.name for p in out.glob("0*.yaml"))]
        steps.append(_run(["kubectl", "apply", *ns, *[a for f in first for a in ("-f", f)]],
                          timeout + 30, notify))
        steps.append(_run(["kubectl", "wait", *ns, "--for=condition=Ready",
                           f"pod/{loader_name(spec)}", wait], timeout + 30, notify))
        for version in spec.versions:
            where = f"{spec.namespace}/" if spec.namespace else ""
            steps.append(_run(["kubectl", "cp", str(Path(spec.base_path) / str(version)),
                               f"{where}{loader_name(spec)}:{spec.model_dir}/{version}"],
                              timeout + 30, notify))
    steps.append(_run(["kubectl", "apply", *ns, "-f", str(out)], timeout + 30, notify))
    steps.append(_run(["kubectl", "rollout", "status", *ns, f"deployment/{spec.name}", wait],
                      timeout + 30, notify))
    if spec.prediction_cache is not None:
        # The server runs without its cache (a miss), so this comes after, and only to report it.
        steps.append(_run(["kubectl", "rollout", "status", *ns, f"deployment/{redis_name(spec)}", wait],
                          timeout + 30, notify))
    return steps


def apply_kserve(out: Path, spec: DeploySpec, *, timeout: float, notify: Notify) -> list[Step]:
    """Apply the InferenceService and wait until KServe reports it Ready (it has no rollout status)."""
    ns = _ns(spec.namespace)
    return [_run(["kubectl", "apply", *ns, "-f", str(out)], timeout + 30, notify),
            _run(["kubectl", "wait", *ns, "--for=condition=Ready", f"inferenceservice/{spec.name}",
                  f"--timeout={int(timeout)}s"], timeout + 30, notify)]
