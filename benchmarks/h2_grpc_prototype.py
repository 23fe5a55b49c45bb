"""PROTOTYPE, measurement only: TF Serving's gRPC Predict on our own HTTP/2 framing on a uvloop loop.

Question it answers: is grpcio's own per-call cost what keeps gRPC below REST on one core, and
would a gRPC front-end on the same event-loop machinery as REST (`http/`) be faster? It runs
the real `ModelServer` (REST + grpcio gRPC) and, in the same process, this minimal HTTP/2
server answering `/tensorflow.serving.PredictionService/Predict` on a third port, so one
process serves the same model three ways and `compare` alternates rounds over all three.

What it is NOT (and what a real front-end would need): no send-side flow control (answers are
assumed to fit the peer's windows), no frame splitting at the peer's SETTINGS_MAX_FRAME_SIZE,
Predict only (every other path answers UNIMPLEMENTED), no grpc-timeout, no compression, no
GOAWAY drain, no stream limits. It answers the official TF Serving stubs and h2load.

    python benchmarks/h2_grpc_prototype.py serve --model_name=... --model_base_path=... [flags]
        prints {"grpc": P, "rest": P, "h2": P} on stdout, serves until stdin closes
    python benchmarks/h2_grpc_prototype.py compare --model-base BASE [--rounds 3
        --server-flag=--enable_batching ...]
        starts `serve` pinned to --server-cpu and alternates wrk (REST), h2load (grpcio) and
        h2load (prototype) rounds pinned to --load-cpu; prints one JSON line of medians.

Needs `hpack` (the HPACK codec h2 uses; in the `bench` extra). Only 127.0.0.1; rounds bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

PREDICT_PATH = b"/tensorflow.serving.PredictionService/Predict"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


# Answers never touch the HPACK dynamic table: static index 8 (:status 200), then literals
# without indexing, so they are constant bytes.
RESPONSE_HEADERS = b"\x88" + b"\x0f\x10\x10application/grpc"
OK_TRAILERS = b"\x00\x0bgrpc-status\x010"
# Large stream windows (16 MiB) and connection window, so requests never wait for WINDOW_UPDATE.
OUR_SETTINGS = frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (1 << 24).to_bytes(4, "big"))
CONNECTION_WINDOW = frame(WINDOW_UPDATE, 0, 0, (1 << 30).to_bytes(4, "big"))


def error_trailers(code: int, message: str) -> bytes:
    status, text = str(code).encode(), message.encode("ascii", "replace")[:120]
    return (b"\x00\x0bgrpc-status" + bytes((len(status),)) + status
            + b"\x00\x0cgrpc-message" + bytes((len(text),)) + text)


class PredictApp:
    """Predict over the real data plane: decode, predict (inline, or through the batcher's
    callback when batching is on), encode."""

    def __init__(self, dataplane: Any) -> None:
        from tensorflow_serving.apis import predict_pb2

        from mlserve.server.grpc_servicers import CODE_NUMBERS

        self.dataplane, self.request_type, self.codes = dataplane, predict_pb2.PredictRequest, CODE_NUMBERS

    def call(self, body: bytes, answer: Any) -> None:
        """Run one Predict on the framed gRPC `body`; `answer(payload, None)` or `answer(None, (code, msg))`."""
        from mlserve.server import tensors
        from mlserve.server.errors import ServingError
        from mlserve.server.grpc_servicers import ref_of

        try:
            request = self.request_type.FromString(body[5:])
            servable = self.dataplane.servable(ref_of(request.model_spec))
            sig = servable.signature(request.model_spec.signature_name)
            inputs = {k: tensors.to_ndarray(v) for k, v in request.inputs.items()}
        except ServingError as e:
            answer(None, (self.codes[e.code], e.message))
            return

        def done(outputs: Any, error: BaseException | None) -> None:
            if error is not None:
                code = self.codes.get(getattr(error, "code", "INTERNAL"), 13)
                answer(None, (code, getattr(error, "message", str(error))))
                return
            answer(servable.predict_response(sig.name, outputs).SerializeToString(), None)

        try:
            self.dataplane.predict_then(servable, sig.name, inputs, done)
        except ServingError as e:
            answer(None, (self.codes[e.code], e.message))


class H2Connection(asyncio.Protocol):
    """HTTP/2 (prior knowledge, as gRPC clients speak it) for unary gRPC calls."""

    def __init__(self, app: PredictApp, loop: asyncio.AbstractEventLoop) -> None:
        import hpack

        self.app, self.loop = app, loop
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = hpack.Decoder()
        self.header_cache: dict[bytes, dict[bytes, bytes]] = {}
        self.streams: dict[int, list[Any]] = {}
        self.continued: tuple[int, int, bytearray] | None = None
        self.consumed = 0
        self.transport: asyncio.Transport | None = None
        self.loop_thread = threading.get_ident()  # protocols are built on the loop thread

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(OUR_SETTINGS + CONNECTION_WINDOW)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _headers(self, block: bytes) -> dict[bytes, bytes]:
        # A block that adds nothing to the dynamic table decodes the same way until the table
        # changes: clients repeat their headers as index references, so most blocks hit.
        cached = self.header_cache.get(block)
        if cached is not None:
            return cached
        before = len(self.decoder.header_table.dynamic_entries)
        headers = dict(self.decoder.decode(block, raw=True))
        if len(self.decoder.header_table.dynamic_entries) != before:
            self.header_cache.clear()
        else:
            self.header_cache[block] = headers
        return headers

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.preface_seen:
            if len(buf) < len(PREFACE):
                return
            del buf[:len(PREFACE)]
            self.preface_seen = True
        pos, end, out = 0, len(buf), []
        while end - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if end - pos - 9 < length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            if kind in (DATA, HEADERS) and flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if kind == DATA:
                self.consumed += length
                state = self.streams.get(stream)
                if state is not None:
                    state[1] += payload
                    if flags & END_STREAM:
                        del self.streams[stream]
                        self._call(stream, state[0], bytes(state[1]))
            elif kind == HEADERS:
                if flags & PRIORITY:
                    payload = payload[5:]
                if flags & END_HEADERS:
                    self._open(stream, flags, payload)
                else:
                    self.continued = (stream, flags, bytearray(payload))
            elif kind == CONTINUATION and self.continued is not None:
                first, first_flags, block = self.continued
                block += payload
                if flags & END_HEADERS:
                    self.continued = None
                    self._open(first, first_flags, bytes(block))
            elif kind == SETTINGS and not flags & ACK:
                out.append(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                out.append(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                self.streams.pop(stream, None)
            elif kind == GOAWAY:
                self.transport.close()
                return
        del buf[:pos]
        if self.consumed > (1 << 29):
            out.append(frame(WINDOW_UPDATE, 0, 0, self.consumed.to_bytes(4, "big")))
            self.consumed = 0
        if out:
            self.transport.write(b"".join(out))

    def _open(self, stream: int, flags: int, block: bytes) -> None:
        path = self._headers(block).get(b":path", b"")
        if flags & END_STREAM:
            self._call(stream, path, b"")
        else:
            self.streams[stream] = [path, bytearray()]

    def _call(self, stream: int, path: bytes, body: bytes) -> None:
        if path != PREDICT_PATH:
            self._answer(stream, None, (12, "Method not found!"))
            return
        loop, loop_thread = self.loop, self.loop_thread

        def answer(payload: bytes | None, error: tuple[int, str] | None) -> None:
            if threading.get_ident() == loop_thread:
                self._answer(stream, payload, error)
            else:  # a batch thread
                loop.call_soon_threadsafe(self._answer, stream, payload, error)

        self.app.call(body, answer)

    def _answer(self, stream: int, payload: bytes | None, error: tuple[int, str] | None) -> None:
        if self.transport is None:
            return
        if error is not None:
            self.transport.write(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS)
                                 + frame(HEADERS, END_HEADERS | END_STREAM, stream, error_trailers(*error)))
            return
        message = b"\x00" + len(payload).to_bytes(4, "big") + payload
        self.transport.write(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS)
                             + frame(DATA, 0, stream, message)
                             + frame(HEADERS, END_HEADERS | END_STREAM, stream, OK_TRAILERS))


class H2Server:
    """An `AsyncServer` for `LoopThread`: listens on 127.0.0.1, any free port."""

    def __init__(self, app: PredictApp) -> None:
        self.app, self.port, self._server = app, 0, None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H2Connection(self.app, loop), "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        self._server.close()


def serve(flags: list[str]) -> int:
    from mlserve.runtimes.process import free_port

    from mlserve.server.flags import parse_flags
    from mlserve.server.loopthread import LoopThread
    from mlserve.server.main import ModelServer

    options = parse_flags(["--port=0", f"--rest_api_port={free_port()}", *flags])
    server = ModelServer(options)
    server.start()
    try:
        while not server.dataplane.ready():
            time.sleep(0.1)
        h2 = LoopThread.start(H2Server(PredictApp(server.dataplane)), name="h2-loop")
        print(json.dumps({"grpc": server.grpc.port, "rest": options.rest_api_port, "h2": h2.port}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        h2.stop(1)
    finally:
        server.stop(1)
    return 0


def compare(args: argparse.Namespace) -> dict:
    import h2load_grpc as bench

    tmp = Path(tempfile.mkdtemp(prefix="h2proto-"))
    grpc_body, rest_body = bench.write_bodies(tmp, 1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    argv = [*bench._taskset(args.server_cpu), sys.executable, __file__, "serve", "--model_name=" + bench.MODEL,
            f"--model_base_path={args.model_base}", *(args.server_flag or [])]
    with open(tmp / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError((tmp / "server.log").read_text()[-2000:])
        ports = json.loads(line)
        bench.check_grpc(ports["grpc"], 1)
        bench.check_grpc(ports["h2"], 1)  # the official stubs get a real answer from the prototype
        c, cpu = args.connections, args.load_cpu
        bench.run_wrk(ports["rest"], rest_body, 1, c, cpu)
        bench.run_h2load(ports["grpc"], grpc_body, 2000, c, cpu)
        bench.run_h2load(ports["h2"], grpc_body, 2000, c, cpu)
        rounds: dict[str, list[dict]] = {"rest": [], "grpcio": [], "prototype": []}
        for _ in range(args.rounds):
            rounds["rest"].append(bench.run_wrk(ports["rest"], rest_body, args.seconds, c, cpu))
            rounds["grpcio"].append(bench.run_h2load(ports["grpc"], grpc_body, args.requests, c, cpu))
            rounds["prototype"].append(bench.run_h2load(ports["h2"], grpc_body, args.requests, c, cpu))
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    medians = {k: round(statistics.median(r["req_per_s"] for r in v), 1) for k, v in rounds.items()}
    return {"flags": args.server_flag or [], "connections": args.connections, "rounds": args.rounds,
            "median_req_per_s": medians,
            "grpcio_over_rest": round(medians["grpcio"] / medians["rest"], 3),
            "prototype_over_rest": round(medians["prototype"] / medians["rest"], 3),
            "per_round_req_per_s": {k: [round(r["req_per_s"]) for r in v] for k, v in rounds.items()},
            "failed": {k: sum(r["failed"] for r in v) for k, v in rounds.items()}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("compare")
    p.add_argument("--model-base", required=True)
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-n", "--requests", type=int, default=8000, help="gRPC requests per round")
    p.add_argument("-d", "--seconds", type=int, default=3, help="REST seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--pythonpath", default=None)
    p.add_argument("--server-flag", action="append")
    args = parser.parse_args(argv)
    print(json.dumps(compare(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
