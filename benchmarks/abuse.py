"""Abuse benchmark: what one hostile client on the same machine can do to the embedded server.

Bounded in time and count, 127.0.0.1 only; the server is pinned to core 0 (`taskset -c 0`).
Scenarios, each reported as figures (and in benchmarks/results/abuse-<date>.json):

  slow-path   a 16 MB :predict body of numbers with one string at the end: time to its 400 and
              the server's peak RSS growth (VmHWM) against the body size
  4x60MB      four 60 MB bodies of that kind at once: peak RSS against --max_inflight_bytes
  idle        N idle connections (20,000 by default; this process's fd limit is raised): the
              predicts of a client that was already connected, and the refusals at accept
  header      one connection streaming a 200 MB header: time to its 431, and a second client's
              predict latencies meanwhile
              and 5 new clients' predicts (connect + predict, each within 1 s or not)
  header      one connection streaming a 200 MB header: time to its 431, and a second client's
              predict latencies meanwhile
  hostile     >= 10,000 generated hostile REST requests and >= 10,000 hostile gRPC calls
              (seeded; benchmarks/hostile_grpc.py, any gRPC port): how many answers were
              5xx / INTERNAL / UNKNOWN
  announce    two sockets announce 64 MiB :predict bodies and send nothing: a third client's
              5 REST and 5 gRPC predicts meanwhile
  filled      a 68-byte gRPC Predict: inputs a0, a1 DT_FLOAT [268435456] float_val [1.0]:
              the server's peak RSS growth and the time to the answer
  reload      a HandleReloadConfigRequest naming only {name: "x", base_path: "/nonexistent"}:
              its code, and the served model's state afterwards

Usage: python benchmarks/abuse.py [--idle 20000] [--hostile 10000] [--skip SCENARIO ...]
       [--only SCENARIO ...] [--server-root DIR]   (DIR: another checkout's server, e.g. a base)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402 - the harness's process helpers (start/stop in a group, log tail)

from mlserve.runtimes.process import free_port  # noqa: E402 - the one free-port helper

MODEL = "digits_model"
PREDICT = f"/v1/models/{MODEL}:predict"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0), so that each scenario's
    peak is its own and not the high-water mark of an earlier one."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def server_pid(proc: subprocess.Popen) -> int:
    """The python server under `taskset` (taskset execs, so it is the same pid)."""
    return proc.pid


def request(port: int, method: str, path: str, body: bytes = b"", timeout: float = 60) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data.partition(b"\r\n\r\n")[2]


class KeepAlive:
    """One keep-alive client connection sending predicts of one image."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        image = [[[0.5] for _ in range(28)] for _ in range(28)]
        self.body = json.dumps({"instances": [image]}).encode()

    def predict(self) -> tuple[int, float]:
        start = time.perf_counter()
        self.sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(self.body)}\r\n\r\n".encode()
                          + self.body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            rest += chunk
        return int(head[9:12]), time.perf_counter() - start


def slow_body(mb: int) -> bytes:
    count = mb * 1024 * 1024 // 4
    return b'{"instances":[' + b"0.5," * count + b'"x"]}'


def scenario_slow_path(port: int, pid: int) -> dict:
    body = slow_body(16)
    reset_peak(pid)
    rss0 = status_kib(pid, "VmRSS")
    hwm0 = status_kib(pid, "VmHWM")
    start = time.perf_counter()
    status, answer = request(port, "POST", PREDICT, body)
    seconds = time.perf_counter() - start
    growth = max(0, status_kib(pid, "VmHWM") - max(rss0, hwm0 if hwm0 > rss0 else rss0)) * 1024
    peak_growth = (status_kib(pid, "VmHWM") - rss0) * 1024
    return {"status": status, "seconds_to_answer": round(seconds, 3), "body_bytes": len(body),
            "peak_rss_growth_bytes": peak_growth, "peak_growth_over_body": round(peak_growth / len(body), 2),
            "hwm_growth_bytes": growth, "error": answer[:120].decode(errors="replace")}


def scenario_four(port: int, pid: int, budget: int) -> dict:
    body = slow_body(60)
    results: list[tuple[int, float]] = []
    reset_peak(pid)
    rss0 = status_kib(pid, "VmRSS")

    def one() -> None:
        start = time.perf_counter()
        try:
            status, _ = request(port, "POST", PREDICT, body, timeout=120)
        except OSError:
            status = 0
        results.append((status, time.perf_counter() - start))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = status_kib(pid, "VmHWM") * 1024
    return {"statuses": sorted(s for s, _ in results), "seconds": sorted(round(x, 2) for _, x in results),
            "rss_before_bytes": rss0 * 1024, "peak_rss_bytes": peak, "budget_bytes": budget,
            "peak_growth_bytes": peak - rss0 * 1024, "growth_under_budget": peak - rss0 * 1024 < budget}


def scenario_idle(port: int, count: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    good = KeepAlive(port)
    assert good.predict()[0] == 200
    idle: list[socket.socket] = []
    failed_connect = 0
    start = time.monotonic()
    for _ in range(count):
        try:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            idle.append(s)
        except OSError:
            failed_connect += 1
            break
    flood_seconds = time.monotonic() - start
    time.sleep(2.0)
    statuses = []
    latencies = []
    for _ in range(15):
        try:
            status, seconds = good.predict()
        except OSError:
            status, seconds = 0, 0.0
            good = KeepAlive(port)
        statuses.append(status)
        latencies.append(seconds)
    try:  # a new client's predict while the flood is held
        fresh_status = KeepAlive(port).predict()[0]
    except OSError:
        fresh_status = 0
    new_ok = 0
    new_seconds = []
    for _ in range(5):  # five new clients: connect and predict, each within 1 s?
        t0 = time.perf_counter()
        try:
            client = KeepAlive(port)
            client.sock.settimeout(1.0)
            status = client.predict()[0]
            client.sock.close()
        except OSError:
            status = 0
        took = time.perf_counter() - t0
        new_seconds.append(round(took, 3))
        new_ok += status == 200 and took < 1.0
    open_ = sum(1 for s in idle if _still_open(s))
    for s in idle:
        s.close()
    return {"idle_connections_attempted": count, "sockets_opened": len(idle), "connect_errors": failed_connect,
            "still_open_after_2s": open_, "good_predicts_ok": statuses.count(200), "good_predicts": len(statuses),
            "flood_seconds": round(flood_seconds, 1),
            "good_p50_ms": round(statistics.median(latencies) * 1000, 2),
            "new_connection_predict_status": fresh_status, "new_clients_ok_within_1s": new_ok,
            "new_clients": 5, "new_client_seconds": new_seconds, "seconds": round(time.monotonic() - start, 1)}


def _still_open(s: socket.socket) -> bool:
    try:
        return s.recv(1) != b""  # nonblocking: BlockingIOError while open and silent
    except BlockingIOError:
        return True
    except OSError:
        return False


def scenario_header(port: int, header_mb: int) -> dict:
    good = KeepAlive(port)
    latencies: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            status, seconds = good.predict()
            statuses.append(status)
            latencies.append(seconds)

    thread = threading.Thread(target=client)
    thread.start()
    start = time.perf_counter()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /v1/models/" + MODEL.encode() + b" HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        chunk = b"a" * (1 << 20)
        try:
            while sent < header_mb << 20:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        try:
            answer = s.recv(65536)
        except OSError:
            answer = b""
    seconds = time.perf_counter() - start
    time.sleep(0.5)
    stop.set()
    thread.join()
    return {"status": int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0,
            "seconds_to_answer": round(seconds, 3), "header_bytes_sent_before_close": sent,
            "other_client_predicts": len(statuses), "other_client_ok": statuses.count(200),
            "other_client_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "other_client_max_ms": round(max(latencies) * 1000, 2) if latencies else None}


def _grpc_predict_request(n: int = 1) -> Any:
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from mlserve.server.servables import tensors

    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    req.inputs["Conv1_input"].CopyFrom(tensors.to_proto(np.full((n, 28, 28, 1), 0.5, np.float32), as_content=True))
    return req


def scenario_announce(rest: int, grpc_port: int) -> dict:
    """Two announcements of 64 MiB bodies that never come; a third client meanwhile."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    held = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", rest), timeout=30)
        s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 67108864\r\n\r\n".encode())
        held.append(s)
    time.sleep(0.5)
    rest_statuses = []
    for _ in range(5):
        try:
            rest_statuses.append(KeepAlive(rest).predict()[0])
        except OSError:
            rest_statuses.append(0)
    grpc_codes = []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(5):
            try:
                stub.Predict(_grpc_predict_request(), timeout=10)
                grpc_codes.append("OK")
            except grpc.RpcError as e:
                grpc_codes.append(e.code().name)
    for s in held:
        s.close()
    return {"rest_statuses": rest_statuses, "rest_ok": rest_statuses.count(200),
            "grpc_codes": grpc_codes, "grpc_ok": grpc_codes.count("OK")}


def scenario_filled(grpc_port: int, pid: int) -> dict:
    """The 68-byte Predict of two 1 GiB filled tensors (issue #21 finding 2)."""
    import grpc
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    for name in ("a0", "a1"):
        t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
        t.tensor_shape.dim.add(size=268435456)
        t.float_val.append(1.0)
        req.inputs[name].CopyFrom(t)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.GetModelMetadata  # noqa: B018 - the channel is made before the clock starts
        reset_peak(pid)
        rss0 = status_kib(pid, "VmRSS")
        start = time.perf_counter()
        try:
            stub.Predict(req, timeout=60)
            code, details = "OK", ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details()
        seconds = time.perf_counter() - start
    growth = (status_kib(pid, "VmHWM") - rss0) * 1024
    return {"request_bytes": req.ByteSize(), "code": code, "details": details[:160],
            "seconds_to_answer": round(seconds, 3), "peak_rss_growth_bytes": growth}


def scenario_reload(rest: int, grpc_port: int) -> dict:
    """A one-entry reload naming a model that cannot load (issue #21 finding 6)."""
    import grpc
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    req = model_management_pb2.ReloadConfigRequest()
    req.config.model_config_list.config.add(name="x", base_path="/nonexistent", model_platform="tensorflow")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        try:
            answer = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(req, timeout=60)
            code, details = ("OK" if answer.status.error_code == 0 else str(answer.status.error_code)), ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details()
    time.sleep(1.0)
    status, body = request(rest, "GET", f"/v1/models/{MODEL}")
    try:
        state = json.loads(body)["model_version_status"][0]["state"]
    except (ValueError, KeyError, IndexError):
        state = f"HTTP {status}"
    predict = KeepAlive(rest).predict()[0]
    return {"code": code, "details": details[:200], "model_state_after": state, "predict_status_after": predict}


def hostile_rest_requests(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    deep = lambda d: "[" * d + "]" * d  # noqa: E731
    bodies = [
        lambda: '{"instances": ' + deep(rng.randint(1, 1100)) + "}",
        lambda: '{"signature_name": ' + deep(rng.randint(1, 1100)) + ', "instances": [1]}',
        lambda: '{"examples": ' + deep(rng.randint(1, 1100)) + "}",
        lambda: '{"examples": [{"x": ' + deep(rng.randint(1, 1100)) + "}]}",
        lambda: json.dumps({"instances": [rng.choice([1, 1.5, "s", None, True, {"b64": "!!"}, [], {}])
                                          for _ in range(rng.randint(0, 50))]}),
        lambda: json.dumps({"inputs": {"Conv1_input": rng.choice([[1e309], "x", [[[[1]]]], {}])}}),
        lambda: "".join(rng.choice('{}[]",:0123456789.eE-+tfnul \\') for _ in range(rng.randint(0, 200))),
        lambda: json.dumps({"instances": [[[[rng.random()]] * 28] * 28] * rng.randint(1, 3),
                            "signature_name": rng.choice(["", "nope", "serving_default", 5])}),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 100))).decode("latin-1"),
    ]
    paths = [PREDICT, f"/v1/models/{MODEL}:classify", f"/v1/models/{MODEL}:regress",
             f"/v1/models/{MODEL}/versions/{'9' * 5000}:predict", f"/v1/models/{MODEL}/versions/{'9' * 30}",
             f"/v1/models/{'n' * 3000}:predict", f"/v1/models/{MODEL}/labels/%ff%00:predict",
             f"/v1/models/{MODEL}/metadata", "/v1/models", "/v1/models/:predict", "/v2/health/ready"]
    out = []
    for _ in range(n):
        method = rng.choice(["POST", "POST", "POST", "GET", "HEAD", "PUT", "OPTIONS"])
        body = rng.choice(bodies)().encode("utf-8", "surrogatepass") if method == "POST" else b""
        path = rng.choice(paths)
        out.append(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


def scenario_hostile_rest(port: int, n: int) -> dict:
    requests = hostile_rest_requests(n)
    statuses: dict[int, int] = {}
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    buf = b""
    closed = 0
    for req in requests:
        try:
            sock.sendall(req)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if req.startswith(b"HEAD "):
                length = 0
            while len(rest) < length:
                rest += sock.recv(65536)
            buf = rest[length:]
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                raise ConnectionError
        except (ConnectionError, OSError):
            closed += 1
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            buf = b""
    sock.close()
    return {"requests": n, "statuses": dict(sorted(statuses.items())), "closed_by_server": closed,
            "5xx": sum(c for s, c in statuses.items() if s >= 500)}


def scenario_hostile_grpc(port: int, n: int, seed: int = 2) -> dict:
    import hostile_grpc  # benchmarks/hostile_grpc.py: the generated calls, official stubs' messages

    return hostile_grpc.run(port, n, MODEL, seed)


def _commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=20000)
    parser.add_argument("--hostile", type=int, default=10000)
    parser.add_argument("--header-mb", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--server-root", type=Path, default=ROOT,
                        help="the checkout whose server runs (PYTHONPATH); default this one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlserve-abuse-"))
    import make_model

    base = work / "models" / MODEL
    make_model.tiny_saved_model(base)
    rest, grpc_port = free_port(), free_port()
    budget = 512 * 1024 * 1024
    logfile = work / "server.log"
    proc = procs.start([sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest}",
                          f"--model_name={MODEL}", f"--model_base_path={base}", f"--max_inflight_bytes={budget}"],
                         logfile, env={**os.environ, "PYTHONPATH": str(args.server_root)},
                         cwd=args.server_root)  # `python -m` puts its cwd first on sys.path
    results: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                               "server_root": str(args.server_root), "server_commit": _commit(args.server_root)}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(rest, "GET", f"/v1/models/{MODEL}")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log(procs.tail(logfile))
                return 1
            time.sleep(0.5)
        KeepAlive(rest).predict()
        pid = server_pid(proc)
        plan = [("slow-path", lambda: scenario_slow_path(rest, pid)),
                ("4x60MB", lambda: scenario_four(rest, pid, budget)),
                ("header", lambda: scenario_header(rest, args.header_mb)),
                ("hostile-rest", lambda: scenario_hostile_rest(rest, args.hostile)),
                ("hostile-grpc", lambda: scenario_hostile_grpc(grpc_port, args.hostile)),
                ("announce", lambda: scenario_announce(rest, grpc_port)),
                ("filled", lambda: scenario_filled(grpc_port, pid)),
                ("idle", lambda: scenario_idle(rest, args.idle)),
                ("reload", lambda: scenario_reload(rest, grpc_port))]  # last: it may unload the model
        for name, run in plan:
            if name in args.skip or (args.only and name not in args.only):
                continue
            log(f"-- {name}")
            results[name] = run()
            log(json.dumps(results[name]))
            if proc.poll() is not None:
                log("server died:\n" + procs.tail(logfile))
                return 1
    finally:
        procs.stop(proc)
    out = HERE / "results" / f"abuse-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    log(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
