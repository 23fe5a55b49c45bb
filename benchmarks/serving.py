"""Serving benchmark: mlserve's embedded server against what users run instead, in one run.

Every server under test is pinned to core 0 (`taskset -c 0`), every load generator to core 1
(`taskset -c 1`): `wrk` for REST, benchmarks/grpc_load.py for gRPC. Servers:

  embedded            python -m mlserve.server (TF Serving flags), no batching
  embedded+batching   the same with --enable_batching --batching_parameters_file
  handwritten         FastAPI + uvicorn calling the SavedModel per request (apps/handwritten.py)
  canned-fastapi      FastAPI that parses the body and answers a canned result (apps/canned.py)
  mlflow              `mlflow models serve --env-manager local` (from benchmarks/.venv)

Scenarios: REST 1 image at 32 connections, REST 1 image at 1 connection, REST 64 images at 8
connections; the same three over gRPC (tensor_content) for the embedded server; and the embedded
server's RSS after warm-up vs after a run at 32 connections. All servers are up at once (idle
while another is measured) and each scenario runs as short rounds alternating between them, so
a slow spell of the shared machine lands on every server; figures are medians of the rounds. Prints a table and PASS/FAIL against
the targets, and writes everything to benchmarks/results/<date>.json.

Run it through benchmarks/run.sh (installs what it needs); `--help` for the options.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL_NAME = "digits_model"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
SERVER_CORE, LOADGEN_CORE = "0", "1"
MLFLOW_VENV = HERE / ".venv"

# TF Serving's batching guide's starting point for CPU-only serving: one batch thread per core
# (the server has one), no batch timeout (a batch runs as soon as the thread is free, so requests
# arriving meanwhile form the next), max_batch_size left at TF Serving's default.
BATCHING_PARAMETERS = """\
max_batch_size { value: 1000 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 1 }
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

_LIVE: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], logfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start a server on the server core, in its own process group, output to a log file."""
    out = logfile.open("wb")
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *argv], stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True,
    )
    out.close()
    _LIVE.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group, wait, then SIGKILL it; the child is reaped either way."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:  # the group may hold children (mlflow's uvicorn worker) even after the leader left
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # orphaned members are reaped by init; their sockets close when they go
    if proc in _LIVE:
        _LIVE.remove(proc)


def stop_all() -> None:
    for proc in list(_LIVE):
        stop(proc)


def _on_signal(signum: int, frame: Any) -> None:
    stop_all()
    sys.exit(128 + signum)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:  # stat fields 3 and 5: state, pgrp
            pids.append(int(entry.name))
    return pids


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


# ---------------------------------------------------------------- request bodies

def sample_images(n: int) -> "Any":
    """n real digits from mlserve's shipped sample, float32 [n, 28, 28, 1] scaled to [0, 1]."""
    import numpy as np

    with np.load(ROOT / "mlserve" / "sample" / "mnist_sample.npz") as data:
        x = data["x"][:n]
    return (x.astype(np.float32) / 255.0).reshape(n, 28, 28, 1)


def rest_body(n: int) -> bytes:
    import numpy as np

    images = np.round(sample_images(n), 4)
    return json.dumps({"instances": images.tolist()}, separators=(",", ":")).encode()


def grpc_request(n: int) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    images = sample_images(n)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs["Conv1_input"]
    tensor.dtype = 1  # DT_FLOAT
    for size in images.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = images.tobytes()
    return request.SerializeToString()


def grpc_canned_response(n: int) -> bytes:
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = MODEL_NAME
    response.model_spec.version.value = 1
    tensor = response.outputs["softmax"]
    tensor.dtype = 1
    tensor.tensor_shape.dim.add().size = n
    tensor.tensor_shape.dim.add().size = 10
    tensor.tensor_content = np.full((n, 10), 0.1, np.float32).tobytes()
    return response.SerializeToString()


# ---------------------------------------------------------------- readiness and checks

def http(method: str, url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_predictions(payload: bytes, n: int) -> None:
    """The answer is TF Serving's: {"predictions": n rows of 10 scores}."""
    predictions = json.loads(payload)["predictions"]
    if len(predictions) != n or any(len(row) != 10 for row in predictions):
        raise RuntimeError(f"bad predictions shape: {len(predictions)} rows")


def check_grpc(port: int, n: int) -> None:
    """One Predict through the official TF Serving stubs; the output is softmax [n, 10]."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest.FromString(grpc_request(n))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    dims = [d.size for d in response.outputs["softmax"].tensor_shape.dim]
    if dims != [n, 10]:
        raise RuntimeError(f"gRPC softmax shape {dims}, expected [{n}, 10]")


def wait_until(proc: subprocess.Popen, logfile: Path, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` while watching the child: fail at once with its log tail if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(logfile)}")
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError, RuntimeError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f}s:\n{tail(logfile)}")


def tf_serving_available(rest_port: int) -> bool:
    status, payload = http("GET", f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}", timeout=5)
    states = [v.get("state") for v in json.loads(payload).get("model_version_status", [])]
    return status == 200 and "AVAILABLE" in states


# ---------------------------------------------------------------- load generators

def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, body_file: Path, connections: int, seconds: float) -> dict:
    """wrk on the load core, 1 thread, closed loop; figures from predict.lua's done() hook."""
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    argv = ["taskset", "-c", LOADGEN_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--timeout", "10s", "-s", str(HERE / "predict.lua"), url]
    cpu0 = _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                          env=dict(os.environ, BENCH_BODY=str(body_file)))
    cpu = _children_cpu() - cpu0
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures (rc {done.returncode}): {done.stderr.strip()[-500:]}")
    raw = json.loads(line.split(" ", 1)[1])
    errors = raw["errors"]
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - errors["status"]
    return {
        "requests": raw["requests"], "ok": ok, "errors": sum(errors.values()),
        "error_detail": errors, "seconds": round(seconds_run, 2),
        "rps": round(ok / seconds_run, 1),
        "p50_ms": raw["latency_us"]["p50"] / 1000, "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "loadgen_cpu": round(cpu / seconds_run, 2),
    }


def run_grpc_load(port: int, request_file: Path, connections: int, seconds: float) -> dict:
    channels = 1 if connections == 1 else 4
    argv = ["taskset", "-c", LOADGEN_CORE, sys.executable, str(HERE / "grpc_load.py"), "load",
            "--target", f"127.0.0.1:{port}", "--request", str(request_file),
            "--concurrency", str(connections), "--channels", str(channels), "--seconds", f"{seconds:g}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"grpc_load failed (rc {done.returncode}): {done.stderr.strip()[-500:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"] + sum(raw["errors"].values()), "ok": raw["requests"],
        "errors": sum(raw["errors"].values()), "error_detail": raw["errors"],
        "seconds": round(seconds_run, 2), "rps": round(raw["requests"] / seconds_run, 1),
        "p50_ms": raw["latency_us"]["p50"] / 1000, "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000, "loadgen_cpu": raw["loadgen_cpu"],
    }


# ---------------------------------------------------------------- servers

@dataclass
class Target:
    """One server under test: how to start it, where it answers, how to know it is ready."""

    name: str
    describe: str
    argv: list[str]
    rest_port: int
    predict_path: str = PREDICT_PATH
    grpc_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready: str = "tf_serving"  # or "ping" (mlflow)
    skipped: str | None = None
    memory: bool = False

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}{self.predict_path}"


def embedded_available() -> str | None:
    """None if `python -m mlserve.server` exists, else why it is skipped."""
    if not (ROOT / "mlserve" / "server" / "main.py").exists():
        return "mlserve/server/main.py does not exist yet"
    if importlib.util.find_spec("mlserve.server.__main__") is None:
        return "mlserve.server has no __main__ (python -m mlserve.server cannot run)"
    return None


def mlflow_available() -> str | None:
    if not (MLFLOW_VENV / "bin" / "mlflow").exists():
        return f"no {MLFLOW_VENV.relative_to(ROOT)}/bin/mlflow (benchmarks/run.sh installs it)"
    return None


def latest_version(base: Path) -> Path:
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def build_targets(base: Path, work: Path, args: argparse.Namespace) -> list[Target]:
    py = sys.executable
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    model_dir = latest_version(base)
    targets: list[Target] = []
    why_not = embedded_available()
    batching_file = work / "batching_parameters.txt"
    batching_file.write_text(BATCHING_PARAMETERS)
    for batching in (False, True):
        grpc_port, rest_port = free_port(), free_port()
        argv = [py, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                f"--model_name={MODEL_NAME}", f"--model_base_path={base}"]
        if batching:
            argv += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
        targets.append(Target(
            name="embedded+batching" if batching else "embedded",
            describe="python -m mlserve.server" + (" --enable_batching" if batching else ""),
            argv=argv, rest_port=rest_port, grpc_port=grpc_port, env=env, skipped=why_not,
            memory=not batching))
    for app, module, extra, describe in (
        ("handwritten", "handwritten", {}, "FastAPI+uvicorn, async def, SavedModel signature per request"),
        ("handwritten-threads", "handwritten", {"BENCH_THREADPOOL": "1"},
         "FastAPI+uvicorn, def (thread pool), SavedModel signature per request"),
        ("canned-fastapi", "canned", {}, "FastAPI+uvicorn, parse body, canned answer, no model"),
    ):
        port = free_port()
        targets.append(Target(
            name=app, describe=describe, rest_port=port,
            argv=[py, "-m", "uvicorn", f"{module}:app", "--app-dir", str(HERE / "apps"),
                  "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=dict(env, BENCH_MODEL_DIR=str(model_dir), BENCH_MODEL_NAME=MODEL_NAME, **extra)))
    port = free_port()
    mlflow_bin = MLFLOW_VENV / "bin"
    targets.append(Target(
        name="mlflow", describe="mlflow models serve --env-manager local (1 worker)",
        argv=[str(mlflow_bin / "mlflow"), "models", "serve", "-m", str(work / "mlflow_model"),
              "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"],
        rest_port=port, predict_path="/invocations", ready="ping",
        env=dict(env, PATH=f"{mlflow_bin}:{env.get('PATH', '')}", MLFLOW_TRACKING_URI=f"file://{work}/mlruns"),
        skipped=mlflow_available()))
    if args.only:
        wanted = set(args.only.split(","))
        targets = [t for t in targets if t.name in wanted]
    if args.no_mlflow:
        for t in targets:
            if t.name == "mlflow":
                t.skipped = "--no-mlflow"
    return targets


def prepare_mlflow(model_dir: Path, work: Path) -> None:
    out = work / "mlflow_model"
    if (out / "MLmodel").exists():
        return
    done = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), str(HERE / "mlflow_model.py"), str(model_dir), str(out)],
        capture_output=True, text=True, timeout=300, cwd=work,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_TRACKING_URI=f"file://{work}/mlruns"))
    if done.returncode != 0:
        raise RuntimeError(f"packaging the MLflow model failed: {done.stderr.strip()[-800:]}")


# ---------------------------------------------------------------- the run

SCENARIOS = [  # name, protocol, images per request, connections
    ("rest_1img_c32", "rest", 1, 32),
    ("rest_1img_c1", "rest", 1, 1),
    ("rest_64img_c8", "rest", 64, 8),
    ("grpc_1img_c32", "grpc", 1, 32),
    ("grpc_1img_c1", "grpc", 1, 1),
    ("grpc_64img_c8", "grpc", 64, 8),
]


@dataclass
class Live:
    """A started, checked and warmed-up server, with its figures so far."""

    target: Target
    proc: subprocess.Popen
    logfile: Path
    result: dict


def launch(t: Target, files: dict[str, Path], work: Path, args: argparse.Namespace) -> Live:
    """Start one server, check it answers correctly and warm it up; raises when it cannot."""
    result: dict[str, Any] = {"describe": t.describe, "command": t.argv, "scenarios": {}, "rounds": {}}
    logfile = work / f"{t.name}.log"
    log(f"[{t.name}] starting: {' '.join(t.argv[:4])} ...")
    started = time.monotonic()
    proc = start(t.argv, logfile, env=t.env, cwd=work)
    try:
        if t.ready == "ping":
            ready = lambda: http("GET", f"http://127.0.0.1:{t.rest_port}/ping", timeout=5)[0] == 200
        else:
            ready = lambda: tf_serving_available(t.rest_port)
        wait_until(proc, logfile, ready, timeout=args.start_timeout)
        result["start_seconds"] = round(time.monotonic() - started, 1)
        for n, key in ((1, "rest_1"), (64, "rest_64")):
            status, payload = http("POST", t.rest_url, files[key].read_bytes())
            if status != 200:
                raise RuntimeError(f"predict of {n} images answered HTTP {status}: {payload[:300]!r}")
            check_predictions(payload, n)
        if t.grpc_port:
            check_grpc(t.grpc_port, 1)
            check_grpc(t.grpc_port, 64)
        log(f"[{t.name}] ready in {result['start_seconds']}s, answers correctly; warming up")
        run_wrk(t.rest_url, files["rest_1"], 8, args.warmup)
        run_wrk(t.rest_url, files["rest_64"], 4, max(1.0, args.warmup / 2))
        if t.grpc_port:
            run_grpc_load(t.grpc_port, files["grpc_1"], 8, max(1.0, args.warmup / 2))
    except BaseException:
        stop(proc)
        raise
    return Live(t, proc, logfile, result)


def memory_run(live: Live, files: dict[str, Path], args: argparse.Namespace) -> None:
    """RSS after warm-up, then after a run at 32 connections."""
    t, proc = live.target, live.proc
    warm = group_rss_kib(proc.pid)
    log(f"[{t.name}] memory run: {args.memory_seconds:g}s at 32 connections")
    run = run_wrk(t.rest_url, files["rest_1"], 32, args.memory_seconds)
    after = group_rss_kib(proc.pid)
    live.result["memory"] = {"rss_after_warmup_mib": round(warm / 1024, 1),
                             "rss_after_run_mib": round(after / 1024, 1),
                             "run_seconds": args.memory_seconds, "run": run,
                             "growth_pct": round(100 * (after - warm) / warm, 1) if warm else None}


def one_round(live: Live, files: dict[str, Path], protocol: str, images: int, conns: int,
              seconds: float) -> dict:
    """One short load run of one scenario against one server, with its core figures."""
    t = live.target
    meter = ServerCoreMeter(live.proc.pid)
    try:
        if protocol == "rest":
            figures = run_wrk(t.rest_url, files[f"rest_{images}"], conns, seconds)
        else:
            figures = run_grpc_load(t.grpc_port, files[f"grpc_{images}"], conns, seconds)  # type: ignore[arg-type]
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return {"failed": str(e)}
    figures["images_per_s"] = round(figures["rps"] * images, 1)
    figures.update(meter.read())
    return figures


def summarize(rounds: list[dict]) -> dict:
    """A scenario's figures over its rounds: medians of rates and percentiles, sums of counts,
    and the spread of req/s so a reader sees how steady the machine was."""
    ok = [r for r in rounds if "failed" not in r]
    if not ok:
        return {"failed": rounds[-1]["failed"] if rounds else "no rounds ran"}
    med = lambda key: statistics.median(r[key] for r in ok if key in r)
    out: dict[str, Any] = {
        "rounds": len(ok), "requests": sum(r["requests"] for r in ok), "ok": sum(r["ok"] for r in ok),
        "errors": sum(r["errors"] for r in ok), "seconds": round(sum(r["seconds"] for r in ok), 2),
        "rps": round(med("rps"), 1), "rps_min": min(r["rps"] for r in ok),
        "rps_max": max(r["rps"] for r in ok), "images_per_s": round(med("images_per_s"), 1),
        "p50_ms": med("p50_ms"), "p90_ms": med("p90_ms"), "p99_ms": med("p99_ms"),
        "loadgen_cpu": round(med("loadgen_cpu"), 2)}
    if all("server_cpu" in r for r in ok):
        for key in ("server_cpu", "core_others", "core_steal"):
            out[key] = round(med(key), 2)
        if out["server_cpu"]:  # throughput per second of server CPU: less noisy on a shared core
            out["rps_per_cpu_s"] = round(out["rps"] / out["server_cpu"], 1)
    if len(ok) < len(rounds):
        out["failed_rounds"] = [r["failed"] for r in rounds if "failed" in r]
    return out


def round_plan(args: argparse.Namespace, images: int) -> tuple[int, int]:
    """(rounds, whole seconds per round) for a scenario. A round of 64-image requests lasts at
    least 5 s (or the whole scenario when shorter): the slow servers take over a second per
    request at 8 connections, and a shorter round would end before most of them answer."""
    seconds = args.seconds / args.rounds
    if images > 1:
        seconds = max(seconds, min(5.0, args.seconds))
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    return max(1, round(args.seconds / seconds)), seconds


def settle(server: Live, timeout: float = 30.0) -> None:
    """Wait until a server has worked off what the last round left queued (a slow server keeps
    answering requests the generator already gave up on), so that it does not eat into the
    next server's round on the same core."""
    deadline = time.monotonic() + timeout
    before = group_cpu_seconds(server.proc.pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = group_cpu_seconds(server.proc.pid)
        if now - before < 0.02:  # under 10% of the core: idle
            return
        before = now


def bench_all(targets: list[Target], files: dict[str, Path], work: Path, base: Path,
              args: argparse.Namespace) -> dict[str, dict]:
    """Start every server (each idles on the server core while another is measured), then run
    each scenario as `args.rounds` short rounds that alternate between the servers, so a slow
    spell of the shared machine lands on all of them instead of on whichever ran then."""
    results: dict[str, dict] = {}
    live: list[Live] = []
    try:
        for t in targets:
            if t.skipped:
                log(f"[{t.name}] skipped: {t.skipped}")
                results[t.name] = {"describe": t.describe, "skipped": t.skipped}
                continue
            try:
                if t.name == "mlflow":
                    prepare_mlflow(latest_version(base), work)
                server = launch(t, files, work, args)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                results[t.name] = {"describe": t.describe, "skipped": f"failed: {str(e).strip()[:1500]}"}
                log(f"[{t.name}] {results[t.name]['skipped']}")
                continue
            live.append(server)
            results[t.name] = server.result
        for server in live:
            if server.target.memory:
                memory_run(server, files, args)
        for name, protocol, images, conns in SCENARIOS:
            runners = [s for s in live if protocol == "rest" or s.target.grpc_port]
            rounds, seconds = round_plan(args, images)
            log(f"{name}: {rounds} rounds of {seconds}s across {len(runners)} servers")
            for r in range(rounds):
                for server in (runners if r % 2 == 0 else runners[::-1]):
                    if server.proc.poll() is not None:
                        continue
                    figures = one_round(server, files, protocol, images, conns, seconds)
                    server.result["rounds"].setdefault(name, []).append(figures)
                    settle(server)
            for server in runners:
                server.result["scenarios"][name] = summarize(server.result["rounds"].get(name, []))
        for server in live:
            server.result["rss_at_end_mib"] = round(group_rss_kib(server.proc.pid) / 1024, 1)
            if server.proc.poll() is not None:
                server.result["note"] = f"server exited during the run ({server.proc.returncode})"
    finally:
        for server in live:
            stop(server.proc)
    return results


def grpc_ceiling(files: dict[str, Path], work: Path, args: argparse.Namespace) -> dict:
    """The gRPC generator against a trivial canned servicer: the most it can measure."""
    port = free_port()
    logfile = work / "grpc_canned.log"
    proc = start([sys.executable, str(HERE / "grpc_load.py"), "canned", "--port", str(port),
                  "--response", str(files["grpc_resp_1"])], logfile)
    out: dict[str, Any] = {}
    try:
        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        wait_until(proc, logfile, ready, timeout=30)
        run_grpc_load(port, files["grpc_1"], 8, 1)
        for name, request, conns in (("grpc_1img_c32", "grpc_1", 32), ("grpc_1img_c1", "grpc_1", 1)):
            log(f"[grpc ceiling] {name}: {args.seconds:g}s")
            meter = ServerCoreMeter(proc.pid)
            out[name] = run_grpc_load(port, files[request], conns, args.seconds)
            out[name].update(meter.read())
            if out[name]["loadgen_cpu"] > 0:  # CPU per call is what bounds a closed-loop generator
                out[name]["generator_saturates_at_rps"] = round(out[name]["rps"] / out[name]["loadgen_cpu"])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        out["skipped"] = f"failed: {e}"
    finally:
        stop(proc)
    return out


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_state() -> dict:
    model = next((l.split(":", 1)[1].strip() for l in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if l.startswith("Model name")), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "loadavg": _loadavg(),
            "python": platform.python_version(), "kernel": platform.release()}


def _figure(results: dict, server: str, scenario: str, key: str) -> float | None:
    s = results["servers"].get(server, {}).get("scenarios", {}).get(scenario, {})
    return s.get(key)


HANDWRITTEN = ("handwritten", "handwritten-threads")


def targets_verdicts(results: dict) -> list[dict]:
    """The targets of the issue, computed from this run's figures. "handwritten" in a target is
    the better of the two hand-written styles for that figure, so mlserve meets the stronger one."""
    out = []

    def f(server: str, scenario: str, key: str) -> float | None:
        if server != "handwritten":
            return _figure(results, server, scenario, key)
        values = [v for v in (_figure(results, h, scenario, key) for h in HANDWRITTEN) if v is not None]
        if not values:
            return None
        return min(values) if key.endswith("_ms") else max(values)

    def add(name: str, value: float | None, bound: float | None, ok: Callable[[float, float], bool],
            text: str) -> None:
        if value is None or bound is None:
            out.append({"target": name, "verdict": "n/a", "detail": "a figure is missing"})
        else:
            out.append({"target": name, "verdict": "PASS" if ok(value, bound) else "FAIL",
                        "detail": text.format(value=value, bound=bound)})

    for e in ("embedded", "embedded+batching"):
        if "scenarios" not in results["servers"].get(e, {}):
            continue
        hw_rps = f("handwritten", "rest_1img_c32", "rps")
        add(f"{e}: req/s at 32 conns >= 10x handwritten", f(e, "rest_1img_c32", "rps"),
            hw_rps * 10 if hw_rps else None, lambda v, b: v >= b, "{value:.0f} vs >= {bound:.0f}")
        add(f"{e}: req/s at 32 conns > canned FastAPI", f(e, "rest_1img_c32", "rps"),
            f("canned-fastapi", "rest_1img_c32", "rps"), lambda v, b: v > b, "{value:.0f} vs > {bound:.0f}")
        hw_p50 = f("handwritten", "rest_1img_c1", "p50_ms")
        add(f"{e}: p50 at 1 conn <= 1/3 handwritten", f(e, "rest_1img_c1", "p50_ms"),
            hw_p50 / 3 if hw_p50 else None, lambda v, b: v <= b, "{value:.2f} ms vs <= {bound:.2f} ms")
        hw_img = f("handwritten", "rest_64img_c8", "images_per_s")
        add(f"{e}: images/s at 64/request >= 5x handwritten", f(e, "rest_64img_c8", "images_per_s"),
            hw_img * 5 if hw_img else None, lambda v, b: v >= b, "{value:.0f} vs >= {bound:.0f}")
        memory = results["servers"][e].get("memory")
        if memory:
            add(f"{e}: RSS after {memory['run_seconds']:g}s run within 10% of warm-up",
                abs(memory["growth_pct"]), 10.0, lambda v, b: v <= b,
                f"{memory['rss_after_warmup_mib']} -> {memory['rss_after_run_mib']} MiB "
                f"({memory['growth_pct']:+}%)")
    return out


def _core_columns(s: dict) -> str:
    if "server_cpu" not in s:
        return ""
    return f" {s['server_cpu']:>7.2f} {s['core_others']:>6.2f} {s['core_steal']:>5.2f}"


def render(results: dict) -> str:
    lines = [f"Serving benchmark {results['date']}  machine: {results['machine']['cpu_model']}, "
             f"{results['machine']['cores']} cores; server on core {SERVER_CORE}, load on core "
             f"{LOADGEN_CORE}; {results['seconds']:g}s per scenario in rounds alternating between "
             f"servers ({results['round_plan']}); figures are medians of the rounds",
             f"loadavg at start {results['machine']['loadavg']}, at end {results['loadavg_end']}", ""]
    header = f"{'server':<20} {'scenario':<14} {'req/s':>9} {'(rounds)':>13} {'images/s':>9} {'p50 ms':>8} " \
             f"{'p99 ms':>8} {'errors':>6} {'gen cpu':>7} {'srv cpu':>7} {'others':>6} {'steal':>5}"
    lines += [header, "-" * len(header)]
    for name, server in results["servers"].items():
        if "scenarios" not in server:
            lines.append(f"{name:<20} skipped: {server.get('skipped', '?').splitlines()[0]}")
            continue
        for scenario, s in server["scenarios"].items():
            if "failed" in s:
                lines.append(f"{name:<20} {scenario:<14} failed: {s['failed'].splitlines()[0][:80]}")
                continue
            spread = f"{s['rps_min']:.0f}-{s['rps_max']:.0f}" if "rps_min" in s else ""
            lines.append(f"{name:<20} {scenario:<14} {s['rps']:>9.1f} {spread:>13} {s['images_per_s']:>9.1f} "
                         f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['errors']:>6} {s['loadgen_cpu']:>7.2f}"
                         + _core_columns(s))
        if server.get("memory"):
            m = server["memory"]
            lines.append(f"{name:<20} {'memory':<14} RSS {m['rss_after_warmup_mib']} MiB after warm-up, "
                         f"{m['rss_after_run_mib']} MiB after {m['run_seconds']:g}s at 32 conns "
                         f"({m['growth_pct']:+}%)")
    ceiling = results.get("grpc_generator_ceiling", {})
    for scenario, s in ceiling.items():
        if scenario == "skipped":
            lines.append(f"{'grpc ceiling':<20} skipped: {s}")
        else:
            lines.append(f"{'grpc ceiling':<20} {scenario:<14} {s['rps']:>9.1f} {'':>13} {'':>9} {s['p50_ms']:>8.2f} "
                         f"{s['p99_ms']:>8.2f} {s['errors']:>6} {s['loadgen_cpu']:>7.2f}" + _core_columns(s))
            if s.get("generator_saturates_at_rps"):
                lines.append(f"{'':<20} {'':<14} (generator alone would saturate its core at "
                             f"~{s['generator_saturates_at_rps']} req/s)")
    lines += ["", "gen cpu: load generator's use of core 1; srv cpu: server's use of core 0; others: "
              "other processes' use of core 0 (shared machine); steal: hypervisor steal on core 0.",
              "", "Targets (from this run's figures):"]
    for v in results["targets"]:
        lines.append(f"  {v['verdict']:<4} {v['target']}: {v['detail']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serving benchmark: embedded server vs the alternatives.")
    p.add_argument("--long", action="store_true", help="30 s per scenario and a 60 s memory run")
    p.add_argument("--seconds", type=float, help="seconds per scenario (default 10, --long 30)")
    p.add_argument("--memory-seconds", type=float, help="memory run length (default = --seconds, --long 60)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds per scenario, alternating between the servers (default 5; each "
                        "round lasts --seconds / --rounds, at least 1 s)")
    p.add_argument("--only", help="comma-separated servers: embedded,embedded+batching,handwritten,"
                                  "handwritten-threads,canned-fastapi,mlflow")
    p.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    p.add_argument("--no-ceiling", action="store_true", help="skip the gRPC generator ceiling run")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--workdir", type=Path, default=HERE / ".work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (30.0 if args.long else 10.0)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.memory_seconds = args.memory_seconds or (60.0 if args.long else args.seconds)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            log(f"error: `{tool}` not found; run benchmarks/run.sh or `apt-get install -y "
                f"{'wrk' if tool == 'wrk' else 'util-linux'}`")
            return 2
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    import make_model

    base, how = make_model.make(work / "model")
    log(f"model: {base} ({how})")
    files = {"rest_1": work / "rest_1.json", "rest_64": work / "rest_64.json",
             "grpc_1": work / "grpc_1.pb", "grpc_64": work / "grpc_64.pb",
             "grpc_resp_1": work / "grpc_resp_1.pb"}
    files["rest_1"].write_bytes(rest_body(1))
    files["rest_64"].write_bytes(rest_body(64))
    files["grpc_1"].write_bytes(grpc_request(1))
    files["grpc_64"].write_bytes(grpc_request(64))
    files["grpc_resp_1"].write_bytes(grpc_canned_response(1))

    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_state(),
        "seconds": args.seconds, "rounds": args.rounds, "memory_seconds": args.memory_seconds, "model": how,
        "round_plan": "; ".join(f"{n} image{'s' if n > 1 else ''}: {r} x {sec}s"
                                for n in (1, 64) for r, sec in [round_plan(args, n)]),
        "body_bytes": {"rest_1img": files["rest_1"].stat().st_size,
                       "rest_64img": files["rest_64"].stat().st_size,
                       "grpc_1img": files["grpc_1"].stat().st_size,
                       "grpc_64img": files["grpc_64"].stat().st_size},
        "servers": {},
    }
    results["servers"] = bench_all(build_targets(base, work, args), files, work, base, args)
    if not args.no_ceiling:
        results["grpc_generator_ceiling"] = grpc_ceiling(files, work, args)
    results["loadavg_end"] = _loadavg()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = targets_verdicts(results)
    print(render(results))
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"results: {out} (wall {results['wall_seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
