"""Processes of the serving benchmark: servers pinned to the server core, started and stopped
with mlserve's own process helpers (`mlserve.runtimes.process`), and what they cost the core.

Every server runs in its own process group (so its workers, e.g. mlflow's, go with it), its
output goes to a log file, and stop is SIGTERM to the group, a bounded wait, then SIGKILL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from mlserve.runtimes import process
from mlserve.runtimes.process import free_port, tail_lines  # noqa: F401 - the harness's helpers
from mlserve.runtimes.process import group_pids as group_members  # live processes of a group

SERVER_CORE, LOADGEN_CORE = "0", "1"

_LIVE: list[subprocess.Popen] = []


def start(argv: list[str], logfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start a server on the server core, in its own process group, output to a log file."""
    proc = process.spawn(["taskset", "-c", SERVER_CORE, *argv], logfile, env, cwd=cwd)
    _LIVE.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group, wait, then SIGKILL it; the child is reaped either way, and the
    group's orphaned members (mlflow's uvicorn worker) are waited for until they are gone."""
    process.terminate(proc.pid, 10, proc)
    process.signal_group(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # their sockets close when they go
    if proc in _LIVE:
        _LIVE.remove(proc)


def stop_all() -> None:
    for proc in list(_LIVE):
        stop(proc)


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(tail_lines(path, lines))


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system, all threads) used so far by the live processes of a group."""
    ticks = 0
    for pid in group_members(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # stat fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def group_rss_kib(pgid: int) -> int:
    """Resident memory of every process in the group (server + any workers), in KiB."""
    total = 0
    for pid in group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def core_times(core: str) -> tuple[float, float, float]:
    """(busy, steal, total) seconds of one core since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
            hz = os.sysconf("SC_CLK_TCK")
            total = sum(v)
            return (total - v[3] - v[4] - v[7]) / hz, v[7] / hz, total / hz
    return 0.0, 0.0, 0.0


class ServerCoreMeter:
    """How the server core was shared during one scenario: the server's own CPU use, what other
    processes took of that core (the machine is shared), and the hypervisor's steal."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.cpu0 = group_cpu_seconds(pgid)
        self.core0 = core_times(SERVER_CORE)

    def read(self) -> dict:
        cpu = group_cpu_seconds(self.pgid) - self.cpu0
        busy, steal, total = (b - a for a, b in zip(self.core0, core_times(SERVER_CORE)))
        if total <= 0:
            return {}
        return {"server_cpu": round(cpu / total, 2),
                "core_others": round(max(0.0, busy - cpu) / total, 2),
                "core_steal": round(steal / total, 2)}
