"""gRPC and REST side by side with C load generators: h2load (nghttp2-client) for gRPC, wrk for REST.

h2load drives a gRPC unary call when it posts a length-prefixed PredictRequest (0x00, 4-byte
big-endian length, the serialized proto) with `content-type: application/grpc` and
`te: trailers`. It cannot read gRPC trailers, so an answer with a non-OK grpc-status still counts
as 2xx: `check` makes one real Predict call with the official stubs before any load.

    python benchmarks/h2load_grpc.py body OUT_DIR [--batch 1]
        writes OUT_DIR/grpc_body.bin (framed PredictRequest) and OUT_DIR/rest_body.json
    python benchmarks/h2load_grpc.py grpc --port P --body grpc_body.bin [-n 20000 -c 32 --cpu 1]
    python benchmarks/h2load_grpc.py rest --port P --body rest_body.json [-d 5 -c 32 --cpu 1]
        one bounded round each; print one JSON line {"req_per_s", "ok", "failed", ...}
    python benchmarks/h2load_grpc.py compare --model-base BASE [--server-cpu 0 --load-cpu 1
        --rounds 5 --batch 1 -c 32 --pythonpath DIR --server-flag=--enable_batching ...]
        starts `python -m mlserve.server` pinned to --server-cpu, checks one gRPC Predict, then
        alternates REST and gRPC rounds (load pinned to --load-cpu) and prints one JSON line with
        each round's figures and the medians.

Model contract: digits_model, input `Conv1_input` float32 [-1, 28, 28, 1] (benchmarks/make_model.py).
Only 127.0.0.1; every round is bounded in requests (h2load -n) or seconds (wrk -d).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlserve.runtimes.process import free_port

MODEL = "digits_model"
INPUT = "Conv1_input"
METHOD = "/tensorflow.serving.PredictionService/Predict"
HERE = Path(__file__).resolve().parent


def images(batch: int) -> np.ndarray:
    return np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)


def write_bodies(out: Path, batch: int) -> tuple[Path, Path]:
    """The framed gRPC PredictRequest (tensor_content) and the REST JSON body for `batch` images."""
    from tensorflow_serving.apis import predict_pb2

    x = images(batch)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    tensor = req.inputs[INPUT]
    tensor.dtype = 1  # DT_FLOAT
    for d in x.shape:
        tensor.tensor_shape.dim.add().size = d
    tensor.tensor_content = x.tobytes()
    payload = req.SerializeToString()
    out.mkdir(parents=True, exist_ok=True)
    grpc_body, rest_body = out / "grpc_body.bin", out / "rest_body.json"
    grpc_body.write_bytes(b"\x00" + struct.pack(">I", len(payload)) + payload)
    rest_body.write_text(json.dumps({"instances": x.tolist()}))
    return grpc_body, rest_body


def _taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def run_h2load(port: int, body: Path, requests: int, connections: int, cpu: int | None,
               timeout: float = 120.0) -> dict:
    """One h2load round of `requests` gRPC Predict calls over `connections` connections."""
    argv = [*_taskset(cpu), "h2load", "-n", str(requests), "-c", str(connections), "-m", "1",
            "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{port}{METHOD}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
    rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if rate is None or done is None:
        raise RuntimeError(f"h2load output not understood:\n{out[-2000:]}")
    return {"tool": "h2load", "req_per_s": float(rate.group(3)), "ok": int(codes.group(1)) if codes else 0,
            "failed": int(done.group(4)), "requests": int(done.group(1))}


def run_wrk(port: int, body: Path, seconds: int, connections: int, cpu: int | None) -> dict:
    """One wrk round of REST predicts for `seconds` over `connections` connections."""
    argv = [*_taskset(cpu), "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
            "-s", str(HERE / "predict.lua"), f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                         env={**os.environ, "BENCH_BODY": str(body)}).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk output not understood:\n{out[-2000:]}")
    fig = json.loads(line[len("BENCH_JSON "):])
    failed = sum(fig["errors"].values())
    return {"tool": "wrk", "req_per_s": fig["requests"] / (fig["duration_us"] / 1e6),
            "ok": fig["requests"] - fig["errors"]["status"], "failed": failed, "requests": fig["requests"]}


def check_grpc(port: int, batch: int) -> None:
    """One real Predict through the official stubs: the load's answers are then real answers."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    x = images(batch)
    req.inputs[INPUT].dtype = 1
    for d in x.shape:
        req.inputs[INPUT].tensor_shape.dim.add().size = d
    req.inputs[INPUT].tensor_content = x.tobytes()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    if "softmax" not in resp.outputs:
        raise RuntimeError(f"unexpected Predict answer: {resp}")


def start_server(model_base: Path, server_cpu: int | None, pythonpath: str | None, flags: list[str],
                 log: Path) -> tuple[subprocess.Popen, int, int]:
    grpc_port, rest_port = free_port(), free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = [*_taskset(server_cpu), sys.executable, "-m", "mlserve.server", f"--port={grpc_port}",
            f"--rest_api_port={rest_port}", f"--model_name={MODEL}", f"--model_base_path={model_base}", *flags]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            check_grpc(grpc_port, 1)
            return proc, grpc_port, rest_port
        except Exception:  # noqa: BLE001 - not ready yet
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def compare(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        grpc_body, rest_body = write_bodies(Path(tmp), args.batch)
        proc, grpc_port, rest_port = start_server(Path(args.model_base), args.server_cpu, args.pythonpath,
                                                  args.server_flag or [], Path(tmp) / "server.log")
        try:
            check_grpc(grpc_port, args.batch)
            run_wrk(rest_port, rest_body, 1, args.connections, args.load_cpu)  # warm both paths
            run_h2load(grpc_port, grpc_body, 2000, args.connections, args.load_cpu)
            rest, grpc_ = [], []
            for _ in range(args.rounds):
                rest.append(run_wrk(rest_port, rest_body, args.seconds, args.connections, args.load_cpu))
                grpc_.append(run_h2load(grpc_port, grpc_body, args.requests, args.connections, args.load_cpu))
        finally:
            stop_server(proc)
    rest_median = statistics.median(r["req_per_s"] for r in rest)
    grpc_median = statistics.median(r["req_per_s"] for r in grpc_)
    return {"batch": args.batch, "connections": args.connections, "rounds": args.rounds,
            "server_cpu": args.server_cpu, "load_cpu": args.load_cpu, "flags": args.server_flag or [],
            "rest_median_req_per_s": round(rest_median, 1), "grpc_median_req_per_s": round(grpc_median, 1),
            "grpc_over_rest": round(grpc_median / rest_median, 3),
            "rest": rest, "grpc": grpc_}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("body")
    p.add_argument("out", type=Path)
    p.add_argument("--batch", type=int, default=1)
    for name in ("grpc", "rest"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--body", type=Path, required=True)
        p.add_argument("-c", "--connections", type=int, default=32)
        p.add_argument("-n", "--requests", type=int, default=20000)
        p.add_argument("-d", "--seconds", type=int, default=5)
        p.add_argument("--cpu", type=int, default=None)
    p = sub.add_parser("compare")
    p.add_argument("--model-base", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-n", "--requests", type=int, default=10000, help="gRPC requests per round")
    p.add_argument("-d", "--seconds", type=int, default=4, help="REST seconds per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--pythonpath", default=None, help="PYTHONPATH of the server under test (A/B builds)")
    p.add_argument("--server-flag", action="append", help="extra server flag, e.g. --server-flag=--enable_batching")
    args = parser.parse_args(argv)
    if args.cmd == "body":
        g, r = write_bodies(args.out, args.batch)
        print(json.dumps({"grpc_body": str(g), "rest_body": str(r)}))
    elif args.cmd == "grpc":
        print(json.dumps(run_h2load(args.port, args.body, args.requests, args.connections, args.cpu)))
    elif args.cmd == "rest":
        print(json.dumps(run_wrk(args.port, args.body, args.seconds, args.connections, args.cpu)))
    else:
        print(json.dumps(compare(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
