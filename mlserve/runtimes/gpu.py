"""Is an NVIDIA GPU visible here? Checked without TensorFlow: `nvidia-smi -L`, then /dev/nvidia*.

The answer always says how it was found out, so "no GPU" errors can tell the user what was tried.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from mlserve.errors import UnavailableError


@dataclass
class GpuCheck:
    visible: bool
    devices: list[str] = field(default_factory=list)  # "GPU 0: NVIDIA H100 ... (UUID: ...)"
    method: str = ""  # how it was checked, in words

    def as_dict(self) -> dict[str, object]:
        return {"visible": self.visible, "devices": self.devices, "method": self.method}


def check_gpus(timeout: float = 10.0) -> GpuCheck:
    """Look for NVIDIA GPUs: `nvidia-smi -L` when it exists, else the /dev/nvidia[0-9]* device nodes."""
    tried: list[str] = []
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        # The user hid every GPU from this process tree; a server started from here sees none.
        return GpuCheck(False, [], "CUDA_VISIBLE_DEVICES hides all GPUs")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"`nvidia-smi -L` failed ({e})")
        else:
            devices = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("GPU")]
            if done.returncode == 0 and devices:
                return GpuCheck(True, devices, f"`{smi} -L` listed {len(devices)} GPU(s)")
            reason = (done.stderr or done.stdout).strip().splitlines()
            tried.append(f"`nvidia-smi -L` exited {done.returncode}"
                         + (f": {reason[0]}" if reason else " and listed no GPU"))
    else:
        tried.append("nvidia-smi is not on PATH")
    nodes = sorted(p for p in glob.glob("/dev/nvidia[0-9]*") if os.path.basename(p)[6:].isdigit())
    if nodes:
        return GpuCheck(True, nodes, "; ".join(tried + [f"found device nodes {', '.join(nodes)}"]))
    tried.append("no /dev/nvidia[0-9]* device nodes")
    return GpuCheck(False, [], "; ".join(tried))


def require_gpu() -> GpuCheck:
    """The GPU check for `--gpu`: raise UnavailableError (exit 9) saying how it was checked."""
    found = check_gpus()
    if not found.visible:
        raise UnavailableError(
            f"--gpu was given but no NVIDIA GPU is visible ({found.method})",
            hint="run without --gpu to serve on the CPU, or install the NVIDIA driver "
                 "(and nvidia-container-toolkit for Docker) so `nvidia-smi -L` lists a GPU",
        )
    return found
