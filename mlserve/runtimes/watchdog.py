"""A tiny guard for foreground Docker servers: removes the container if mlserve dies.

PR_SET_PDEATHSIG kills the `docker run` client with mlserve, but a killed client cannot pass the
signal on, so the container would keep running. This watchdog (its own session, so it survives the
signal) watches its parent (mlserve) and runs `docker rm -f <container>` once mlserve is gone.
Usage: python -m mlserve.runtimes.watchdog <mlserve-pid> <container> [docker]
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    parent, container = int(argv[0]), argv[1]
    docker = argv[2] if len(argv) > 2 else "docker"
    # Reparenting is the sure sign that mlserve is gone (a dead but unreaped pid still "exists").
    while os.getppid() == parent:
        time.sleep(0.5)
    subprocess.run([docker, "rm", "-f", container], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
