"""Child processes: spawn with output to a log file, wait for readiness while watching, stop, reap.

Rules kept here for every runtime:
- the child's stdout and stderr go to a log file, never to a pipe nobody drains;
- the child gets its own process group (a terminal's Ctrl-C reaches mlserve only, which then stops
  the child in order) and, for foreground servers, PR_SET_PDEATHSIG=SIGKILL so it cannot outlive a
  killed mlserve;
- stop is SIGTERM, a bounded wait, then SIGKILL, and our own children are always reaped.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from mlserve.errors import ConflictError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when the thread that forked it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the process group + stop path still apply
        pass


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None,
          die_with_parent: bool = True, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with stdout+stderr appended to `log_path`; `env` is added
    to this process's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")  # the embedded server's log lines arrive promptly
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env,
            cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and sys.platform.startswith("linux") else None,
        )


# --- identity of a process, so a recycled pid is never mistaken for our server -------------------

def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def proc_cmdline(pid: int) -> list[str] | None:
    """The process's argv from /proc (None when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p] or None


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def same_process(pid: int, cmdline: list[str] | None, start_ticks: int | None) -> bool:
    """Alive, and still the process we recorded: same argv and same start time."""
    if not pid_alive(pid):
        return False
    if cmdline is not None and proc_cmdline(pid) not in (None, cmdline):
        return False
    if start_ticks is not None and proc_start_ticks(pid) not in (None, start_ticks):
        return False
    return True


# --- ports --------------------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port nothing listens on now (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse a port that something already listens on (bind test, as the server would bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # servers set it: ignore TIME_WAIT
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise ConflictError(f"cannot bind {host}:{port} ({what}): no such address here",
                                    hint="use --host 127.0.0.1 or an address of this machine") from e
            raise ConflictError(
                f"{what} port {port} on {host} is already in use",
                hint="pick another port (`--port` for gRPC, `--rest-port` for REST) or stop what "
                     "uses it (`mlserve status` lists mlserve's servers)") from e


def port_is_free(host: str, port: int) -> bool:
    try:
        check_port_free(host, port, "")
    except ConflictError:
        return False
    return True


# --- who listens on a port: proof that a ready server is the one we started -------------------

def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on `port` (any address), from /proc/net/tcp{,6}."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXADDR:HEXPORT; state 0A is LISTEN; field 10 is the inode
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def _live_pids(field: int, value: int) -> list[int]:
    """Live (not zombie) processes whose /proc stat `field`, counted after the command name
    (0 state, 2 process group, 3 session), is `value`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > field and fields[0] != "Z" and int(fields[field]) == value:
            pids.append(int(entry.name))
    return pids


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (a child started with start_new_session leads one)."""
    return _live_pids(3, sid)


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    return _live_pids(2, pgid)


def _holds(pid: int, sockets: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                return True
        except OSError:
            continue
    return False


def port_owned_by_session(port: int, sid: int) -> bool | None:
    """Whether a process of session `sid` holds the socket listening on `port`.

    True: ours. False: nothing listens, or only processes outside the session that this user can
    see. None: something listens but its holder is not visible here (another user's process,
    such as Docker's root-owned port proxy), so the kernel cannot tell us.
    """
    inodes = listening_inodes(port)
    if not inodes:
        return False
    sockets = {f"socket:[{inode}]" for inode in inodes}
    if any(_holds(pid, sockets) for pid in session_pids(sid)):
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _holds(int(entry.name), sockets):
            return False
    return None


# --- readiness ----------------------------------------------------------------------------------

def model_status(host: str, rest_port: int, model: str, timeout: float = 2.0) -> list[dict]:
    """GET /v1/models/<model>: its model_version_status list (raises OSError/ValueError on failure)."""
    url = f"http://{host}:{rest_port}/v1/models/{model}"
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http on loopback)
        body = json.loads(response.read().decode())
    return list(body.get("model_version_status", []))


def models_ready(host: str, rest_port: int, models: list[str]) -> tuple[bool, str]:
    """Whether every model has a version AVAILABLE; and a short word on what is still missing."""
    for model in models:
        try:
            versions = model_status(host, rest_port, model)
        except urllib.error.HTTPError as e:
            return False, f"model {model!r}: HTTP {e.code}"
        except (OSError, ValueError) as e:
            return False, f"REST port {rest_port}: {getattr(e, 'reason', e)}"
        if not any(v.get("state") == "AVAILABLE" for v in versions):
            states = ", ".join(f"v{v.get('version')} {v.get('state')}" for v in versions) or "no version"
            return False, f"model {model!r}: {states}"
    return True, "all models AVAILABLE"


class ChildExitedError(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"exited with code {code}")
        self.code = code


def wait_ready(is_dead: Callable[[], int | None | bool], host: str, rest_port: int,
               models: list[str], timeout: float, tick: Callable[[], None] | None = None,
               interval: float = 0.2) -> None:
    """Poll readiness until every model is AVAILABLE; raise ChildExitedError or TimeoutError.

    `is_dead()` returns the child's exit code (or True) once it has exited: checked on every poll
    so a crash is reported at once, not after the timeout. `tick` runs each round (log tailing).
    """
    deadline = time.monotonic() + timeout
    last = "not polled yet"
    while True:
        if tick:
            tick()
        dead = is_dead()
        if dead is not None and dead is not False:
            raise ChildExitedError(None if dead is True else int(dead))
        ok, last = models_ready(host, rest_port, models)
        if ok:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(last)
        time.sleep(interval)


# --- stopping -----------------------------------------------------------------------------------

def signal_group(pid: int, sig: int) -> None:
    """Signal the child's process group (it leads one: start_new_session), else the pid."""
    if pid <= 0:  # never 0 or -1: those would signal our own group, or every process we may
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def is_gone(pid: int, proc: subprocess.Popen | None = None) -> bool:
    """Whether the process has exited (and is reaped, when it is our child)."""
    if pid <= 0:
        return True
    if proc is not None:
        return proc.poll() is not None
    try:  # our child from an earlier call in this process? reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    return not pid_alive(pid)


def wait_gone(pid: int, timeout: float, proc: subprocess.Popen | None = None,
              tick: Callable[[], None] | None = None,
              give_up: Callable[[], bool] | None = None) -> bool:
    """Wait up to `timeout` seconds for the process to exit; False if it is still there.

    `tick` runs each round (log tailing); `give_up()` true ends the wait early (a second Ctrl-C).
    """
    deadline = time.monotonic() + timeout
    while not is_gone(pid, proc):
        if tick:
            tick()
        if time.monotonic() >= deadline or (give_up is not None and give_up()):
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, grace: float, proc: subprocess.Popen | None = None) -> str:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; reap when it is our child.

    Returns "not running", "terminated" or "killed".
    """
    if is_gone(pid, proc):
        return "not running"
    signal_group(pid, signal.SIGTERM)
    if wait_gone(pid, grace, proc):
        return "terminated"
    signal_group(pid, signal.SIGKILL)
    wait_gone(pid, 5, proc)
    return "killed"


# --- log files ----------------------------------------------------------------------------------

def tail_lines(path: Path, n: int = 20) -> list[str]:
    """The last `n` lines of a text file (reads at most the last 256 KiB)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-n:] if n > 0 else []


class LogFollower:
    """Reads what a log file gained since last time, line by line (for streaming to a terminal)."""

    def __init__(self, path: Path, sink: Callable[[str], None], from_start: bool = True) -> None:
        self.path, self.sink = path, sink
        self.offset = 0 if from_start else (path.stat().st_size if path.exists() else 0)
        self._partial = b""

    def poll(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self.sink(line.decode(errors="replace").rstrip("\r"))
