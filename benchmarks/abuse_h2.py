"""HTTP/2 abuse figures (issue #21), before and after: one embedded server per tree, pinned to
core 0, clients on core 1, 127.0.0.1 only, every phase bounded in time and count.

    python benchmarks/abuse_h2.py --model-base BASE [--pythonpath TREE] [--flood-seconds 3]
        [--idle 300 --max-connections 256]

Prints one JSON object:
- hpack: the method the server read for issue #21's HPACK sequence (48 fillers filling the
  table, GetModelStatus, a filler, GetModelStatus byte for byte, then `:path` as index 62);
  correct is GetModelStatus, as python-hyper `hpack.Decoder` reads it.
- rapid_reset: a second client's Predict p50/p99 alone, then while one connection repeats
  HEADERS + DATA (a valid Predict) + RST_STREAM without reading; when the attacker was cut off.
- idle_flood: `--idle` connections that only send the preface, against `--max-connections`;
  then 5 Predicts, each from a new client with a 1 s deadline: how many were answered.
- hpack_cache: in-process microseconds per request of the transport with and without its HPACK
  decode cache (a repeated gRPC header block), when the tree has the cache's settings.
Model contract: digits_model, input `Conv1_input` float32 [-1, 28, 28, 1] (benchmarks/make_model.py).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from procs import LOADGEN_CORE, free_port, start, stop, tail

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PREDICT = b"/tensorflow.serving.PredictionService/Predict"
STATUS = b"/tensorflow.serving.ModelService/GetModelStatus"
MODEL = "digits_model"


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def literal(name: bytes, value: bytes) -> bytes:
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


def block(path: bytes) -> bytes:
    """:method POST, :scheme http, `path` (already encoded), the rest never indexed."""
    return (b"\x83\x86" + path + literal(b":authority", b"x") + literal(b"content-type", b"application/grpc")
            + literal(b"te", b"trailers"))


def grpc_message(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def predict_message() -> bytes:
    import numpy as np
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (1, 28, 28, 1)]))
    tensor.tensor_content = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32).tobytes()
    request.inputs["Conv1_input"].CopyFrom(tensor)
    return request.SerializeToString()


def stub(port: int) -> tuple[Any, Any]:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), channel


def read_answer(sock: socket.socket, sid: int, decoder: Any) -> dict[bytes, bytes]:
    """Headers of stream `sid`'s answer, merged, until it ends (window updates for its DATA)."""
    buf, out = b"", {}
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        kind, flags, stream, payload, buf = buf[3], buf[4], int.from_bytes(buf[5:9], "big"), buf[9:9 + n], buf[9 + n:]
        if kind == 4 and not flags & 1:
            sock.sendall(frame(4, 1, 0))
        if stream != sid:
            continue
        if kind == 1:
            out.update(decoder.decode(payload, raw=True))
        if kind == 3 or (kind in (0, 1) and flags & 1):
            return out


def hpack_sequence(port: int) -> dict[str, Any]:
    import hpack
    from tensorflow_serving.apis import get_model_status_pb2

    fillers = [b"/f/%044d" % i for i in range(49)]
    blocks = [block(b"\x44" + bytes((47,)) + p) for p in fillers[:48]]
    x = block(b"\x44" + bytes((47,)) + STATUS)
    blocks += [x, block(b"\x44" + bytes((47,)) + fillers[48]), x, block(b"\xbe")]
    reference = hpack.Decoder()
    expected = [dict(reference.decode(b, raw=True))[b":path"] for b in blocks][-1]
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    body = grpc_message(request.SerializeToString())
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    decoder = hpack.Decoder()
    sock.sendall(PREFACE + frame(4, 0, 0))
    answer: dict[bytes, bytes] = {}
    for i, b in enumerate(blocks):
        sid = 2 * i + 1
        sock.sendall(frame(1, 4, sid, b) + frame(0, 1, sid, body))
        answer = read_answer(sock, sid, decoder)
    sock.close()
    status = answer.get(b"grpc-status", b"?").decode()
    return {"reference_reads": expected.decode(), "server_status": status,
            "server_message": answer.get(b"grpc-message", b"").decode(),
            "correct": status == "0" and expected == STATUS}


def latencies(port: int, request: Any, seconds: float) -> dict[str, float]:
    stub_, channel = stub(port)
    out, errors, end = [], 0, time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        try:
            stub_.Predict(request, timeout=5)
            out.append((time.perf_counter() - t) * 1000)
        except Exception:  # noqa: BLE001 - counted
            errors += 1
    channel.close()
    out.sort()
    pick = (lambda q: round(out[min(len(out) - 1, int(q * len(out)))], 3)) if out else (lambda q: None)
    return {"n": len(out), "errors": errors, "rps": round(len(out) / seconds, 1), "p50_ms": pick(0.5),
            "p99_ms": pick(0.99)}


def rapid_reset(port: int, seconds: float) -> dict[str, Any]:
    from tensorflow_serving.apis import predict_pb2

    message = predict_message()
    request = predict_pb2.PredictRequest.FromString(message)
    baseline = latencies(port, request, seconds)
    headers = block(b"\x04" + bytes((len(PREDICT),)) + PREDICT)  # :path literal, not indexed
    data = grpc_message(message)
    result: dict[str, Any] = {"sent": 0, "cut_off_s": None}

    def attack() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(PREFACE + frame(4, 0, 0))
        began, sid, end = time.monotonic(), 1, time.monotonic() + seconds
        try:
            while time.monotonic() < end and result["sent"] < 500_000:
                batch = b"".join(frame(1, 4, s, headers) + frame(0, 0, s, data) + frame(3, 0, s, b"\x00\x00\x00\x08")
                                 for s in range(sid, sid + 200, 2))
                sock.sendall(batch)
                sid += 200
                result["sent"] += 100
        except OSError:
            result["cut_off_s"] = round(time.monotonic() - began, 3)
        sock.close()

    attacker = threading.Thread(target=attack)
    attacker.start()
    during = latencies(port, request, seconds)
    attacker.join()
    return {"baseline": baseline, "during_flood": during, "attacker_triples_sent": result["sent"],
            "attacker_cut_off_s": result["cut_off_s"]}


def idle_flood(port: int, idle: int) -> dict[str, Any]:
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest.FromString(predict_message())
    socks = []
    for _ in range(idle):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(PREFACE + frame(4, 0, 0))
            socks.append(s)
        except OSError:
            break
    time.sleep(0.5)
    answered, times = 0, []
    for _ in range(5):
        stub_, channel = stub(port)
        t = time.perf_counter()
        try:
            stub_.Predict(request, timeout=1.0)
            answered += 1
            times.append(round((time.perf_counter() - t) * 1000, 1))
        except Exception:  # noqa: BLE001 - counted
            times.append(None)  # not answered in time
        channel.close()
    for s in socks:
        s.close()
    return {"idle_connections": len(socks), "answered_within_1s": answered, "of": 5, "ms": times}


def hpack_cache() -> dict[str, Any] | None:
    """The transport in-process on a recording transport: a repeated grpcio-like header block."""
    from types import SimpleNamespace

    import hpack

    from mlserve.server.transport.budget import InflightBudget
    from mlserve.server.transport.http2 import H2Config, H2Connection

    if "hpack_cache_blocks" not in H2Config.__dataclass_fields__:
        return None

    class Sink:
        def __init__(self) -> None:
            self.n = 0

        def write(self, data: bytes) -> None:
            self.n += len(data)

        def close(self) -> None: ...

        def set_write_buffer_limits(self, high: int) -> None: ...

    class Answer:
        def request(self, conn: Any, stream: Any) -> None: ...

        def body(self, conn: Any, stream: Any) -> None:
            conn.respond(stream, [(b":status", b"200")], None)

    headers = [(":method", "POST"), (":scheme", "http"), (":path", PREDICT.decode()), (":authority", "127.0.0.1:8500"),
               ("te", "trailers"), ("content-type", "application/grpc"), ("user-agent", "grpc-python/1.66 (linux)"),
               ("grpc-accept-encoding", "identity, deflate, gzip")]
    out = {}
    for blocks in (32, 0):
        best = float("inf")
        for _ in range(3):
            cfg = H2Config(hpack_cache_blocks=blocks, max_concurrent_streams=10**9)
            server = SimpleNamespace(app=Answer(), config=cfg, connections=set(), unused={}, idle={}, stopping=False,
                                     budget=InflightBudget(cfg.max_inflight_bytes), make_room=lambda: False)
            conn, encoder, n = H2Connection(server), hpack.Encoder(), 20000
            conn.connection_made(Sink())
            conn.data_received(PREFACE + frame(1, 5, 1, encoder.encode(headers)))
            repeat = encoder.encode(headers)
            frames = [frame(1, 5, 2 * i + 3, repeat) for i in range(n)]
            t = time.perf_counter()
            for fr in frames:
                conn.data_received(fr)
            best = min(best, (time.perf_counter() - t) / n * 1e6)
        out[f"us_per_request_cache_{blocks}"] = round(best, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-base", required=True, type=Path)
    ap.add_argument("--pythonpath", type=Path, default=HERE.parent, help="the tree under test")
    ap.add_argument("--flood-seconds", type=float, default=3.0)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--max-connections", type=int, default=256)
    ap.add_argument("--hpack-cache-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hpack_cache_only:  # in a child whose PYTHONPATH and cwd are the tree under test
        print(json.dumps(hpack_cache()))
        return
    os.sched_setaffinity(0, {int(LOADGEN_CORE)})
    grpc_port, rest_port = free_port(), free_port()
    log = Path(tempfile.mkdtemp(prefix="abuse-h2-")) / "server.log"
    env = dict(os.environ, PYTHONPATH=str(args.pythonpath), TF_CPP_MIN_LOG_LEVEL="2")
    proc = start([sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                  f"--model_name={MODEL}", f"--model_base_path={args.model_base.resolve()}",
                  f"--http_max_connections={args.max_connections}"], log, env, cwd=args.pythonpath)
    try:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest.FromString(predict_message())
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{tail(log)}")
            if latencies(grpc_port, request, 0.2)["n"]:
                break
            time.sleep(0.5)
        result = {"tree": str(args.pythonpath), "hpack": hpack_sequence(grpc_port),
                  "rapid_reset": rapid_reset(grpc_port, args.flood_seconds),
                  "idle_flood": idle_flood(grpc_port, args.idle)}
    finally:
        stop(proc)
    child = subprocess.run([sys.executable, __file__, "--model-base", str(args.model_base), "--hpack-cache-only"],
                           env=env, cwd=args.pythonpath, capture_output=True, text=True, timeout=300, check=False)
    result["hpack_cache"] = json.loads(child.stdout) if child.returncode == 0 else child.stderr[-500:]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
