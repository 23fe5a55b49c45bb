"""How many grpcio handler threads the gRPC server gets: `--grpc_max_threads`, at most 2 per
schedulable CPU without batching (more only take turns at the GIL), all of them with batching
(a handler waits in its batch)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mlserve.server.flags import ServerOptions, schedulable_cpus
from mlserve.server.frontends.grpc.grpcio.server import handler_threads


def test_without_batching_at_most_two_per_cpu() -> None:
    cap = 2 * schedulable_cpus()
    assert handler_threads(ServerOptions(grpc_max_threads=cap + 10), batching=False) == cap
    assert handler_threads(ServerOptions(grpc_max_threads=1), batching=False) == 1
    assert handler_threads(ServerOptions(grpc_max_threads=0), batching=False) == 1


def test_with_batching_the_flag_stands() -> None:
    assert handler_threads(ServerOptions(grpc_max_threads=64), batching=True) == 64


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset to pin a process to one CPU")
def test_a_process_pinned_to_one_cpu_gets_two() -> None:
    code = ("from mlserve.server.flags import ServerOptions\n"
            "from mlserve.server.frontends.grpc.grpcio.server import handler_threads\n"
            "print(handler_threads(ServerOptions(grpc_max_threads=64), batching=False))")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "2"
