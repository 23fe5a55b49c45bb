"""`mlserve server install`: TF Serving from Google's apt repository, or its Docker image.

The steps are data (`InstallPlan`): `--dry-run` prints them, a real run executes them in order.
Before running anything, every prerequisite (root, apt-get, curl, gpg; or a Docker engine) is
checked, and a missing one is reported with the exact commands to run instead.

The apt source line and key URL are TF Serving's documented ones (tensorflow.org/tfx/serving/setup).
The docs add the key with `apt-key`, which current Debian and Ubuntu no longer ship, so the key is
stored as a keyring file and named by the source line's `signed-by` option instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mlserve.errors import MlserveError, UnavailableError, UsageError
from mlserve.runtimes.base import Notify
from mlserve.runtimes.docker import engine_check, image_ref

APT_URL = "http://storage.googleapis.com/tensorflow-serving-apt"
APT_KEY_URL = "https://storage.googleapis.com/tensorflow-serving-apt/tensorflow-serving.release.pub.gpg"
APT_LIST = "/etc/apt/sources.list.d/tensorflow-serving.list"
APT_KEYRING = "/usr/share/keyrings/tensorflow-serving.gpg"
APT_SOURCE = (f"deb [arch=amd64 signed-by={APT_KEYRING}] {APT_URL} stable "
              "tensorflow-model-server tensorflow-model-server-universal")


@dataclass
class InstallStep:
    description: str
    command: str  # one shell command line (run with `sh -c`)


@dataclass
class InstallPlan:
    method: str
    target: str  # the apt package or the Docker image
    reason: str  # why this package/image
    steps: list[InstallStep]
    missing: list[str] = field(default_factory=list)  # prerequisites this machine lacks

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "target": self.target, "reason": self.reason,
                "steps": [{"description": s.description, "command": s.command} for s in self.steps],
                "missing": self.missing}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty when /proc/cpuinfo cannot be read)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def apt_package(flags: set[str] | None = None) -> tuple[str, str]:
    """`tensorflow-model-server` (built with AVX/AVX2) or the `-universal` build for older CPUs."""
    flags = cpu_flags() if flags is None else flags
    if {"avx", "avx2"} <= flags:
        return "tensorflow-model-server", "this CPU has AVX and AVX2"
    if not flags:
        return "tensorflow-model-server-universal", "the CPU flags could not be read"
    lacking = " and ".join(sorted({"avx", "avx2"} - flags)).upper()
    return "tensorflow-model-server-universal", f"this CPU lacks {lacking}"


def plan_install(method: str, gpu: bool = False) -> InstallPlan:
    """The steps for `method` ("apt" or "docker") and what this machine lacks to run them."""
    if method == "apt":
        if gpu:
            raise UsageError("the apt packages of TF Serving are CPU builds",
                             hint="for GPU serving use `mlserve server install --method docker --gpu`")
        package, reason = apt_package()
        steps = [
            InstallStep("add TF Serving's apt source", f"echo '{APT_SOURCE}' > {APT_LIST}"),
            InstallStep("add its signing key",
                        f"curl -fsSL {APT_KEY_URL} -o {APT_KEYRING}.download && "
                        f"gpg --batch --yes --no-default-keyring --keyring {APT_KEYRING} "
                        f"--import {APT_KEYRING}.download && rm -f {APT_KEYRING}.download"),
            InstallStep("update the package lists", "apt-get update"),
            InstallStep(f"install {package}", f"apt-get install -y {package}"),
        ]
        missing = [f"{tool} (not on PATH)" for tool in ("apt-get", "curl", "gpg")
                   if shutil.which(tool) is None]
        if os.geteuid() != 0:
            missing.append("root (apt needs it: run as root or with sudo)")
        return InstallPlan("apt", package, reason, steps, missing)
    if method == "docker":
        image = image_ref(gpu)
        steps = [InstallStep(f"pull {image}", f"docker pull {image}")]
        ok, why = engine_check()
        missing = [] if ok else [why]
        reason = "GPU image (needs the NVIDIA driver and nvidia-container-toolkit)" if gpu else \
            "CPU image"
        return InstallPlan("docker", image, reason, steps, missing)
    raise UsageError(f"unknown install method {method!r}", hint="use --method apt or --method docker")


def run_install(plan: InstallPlan, notify: Notify) -> None:
    """Run the steps in order, streaming their output; stop at the first failure."""
    if plan.missing:
        commands = "\n".join(("sudo " if plan.method == "apt" else "") + s.command for s in plan.steps)
        hint = ("install Docker Engine (https://docs.docker.com/engine/install/) and start it, "
                "then run the commands above" if plan.method == "docker" else
                "run these commands yourself (as root), or use --method docker / --runtime embedded")
        raise UnavailableError(
            f"cannot install with {plan.method}: missing " + "; ".join(plan.missing),
            details="The steps to run instead:\n" + commands, hint=hint)
    for number, step in enumerate(plan.steps, 1):
        notify(f"[{number}/{len(plan.steps)}] {step.description}: {step.command}")
        proc = subprocess.Popen(["sh", "-c", step.command], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            notify(line.rstrip())
            tail = (tail + [line.rstrip()])[-15:]
        if proc.wait() != 0:
            raise MlserveError(f"step {number} ({step.description}) failed with exit code "
                               f"{proc.returncode}", details="\n".join(tail),
                               hint="fix the cause above and run `mlserve server install` again")
