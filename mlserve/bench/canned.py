"""A canned REST server: answers every request with one prebuilt response, no JSON, no model.

It measures the load generator's own ceiling (`mlserve bench --self-test`) and gives tests a
server that fails on purpose (`--error-every N`), which a real model server cannot be made to.
Run as its own process, so it does not share the generator's core or GIL:

    python -m mlserve.bench.canned [--batch-size N] [--error-every N] [--hold-after N] [--service-ms MS]

`--service-ms MS` makes it a server of one worker that takes MS per request: every answer, on
any connection, waits for the ones before it. That is a server with a known capacity (1000/MS
req/s), for showing what an open loop measures past it and a closed loop hides. [--record FILE]

It binds 127.0.0.1 on an ephemeral port, prints the port on the first line of stdout, and runs
until its stdin closes (so it never outlives the process that started it). `--record FILE` writes
the SHA-256 of each request body, one a line, so a test can count the distinct inputs it was sent. Ctrl-C at a terminal
is for that parent: the canned server ignores SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import subprocess
import sys
from typing import IO

from mlserve.bench import wire
from mlserve.errors import ServerStartError


class CannedProtocol(asyncio.Protocol):
    """Answers each complete HTTP/1.1 request with the prebuilt response."""

    def __init__(self, ok: bytes, error: bytes, error_every: int, hold_after: int,
                 counter: list[int], record: IO[str] | None = None, service_s: float = 0.0,
                 busy_until: list[float] | None = None) -> None:
        self.ok, self.error, self.error_every, self.counter = ok, error, error_every, counter
        self.hold_after, self.record = hold_after, record
        self.service_s, self.busy_until = service_s, busy_until if busy_until is not None else [0.0]
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        bodies: list[bytes] | None = [] if self.record is not None else None
        complete, self.buffer = wire.split_requests(self.buffer + data, bodies)
        if self.record is not None and bodies:
            self.record.write("".join(hashlib.sha256(b).hexdigest() + "\n" for b in bodies))
        out = []
        for _ in range(complete):
            self.counter[0] += 1
            if self.hold_after and self.counter[0] > self.hold_after:
                continue  # never answered: a server that hangs
            failing = self.error_every and self.counter[0] % self.error_every == 0
            out.append(self.error if failing else self.ok)
        if not out or self.transport is None:
            return
        if not self.service_s:
            self.transport.write(b"".join(out))
            return
        loop = asyncio.get_running_loop()
        for answer in out:  # one worker: each answer after the one before it, on any connection
            self.busy_until[0] = max(loop.time(), self.busy_until[0]) + self.service_s
            loop.call_at(self.busy_until[0], self._send, answer)

    def _send(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(batch_size: int, error_every: int, hold_after: int, record: IO[str] | None = None,
                service_ms: float = 0.0) -> None:
    ok = wire.response("200 OK", json.dumps({"predictions": [[0.1] * 10] * batch_size}).encode())
    error = wire.response("500 Internal Server Error", b'{"error": "canned error for testing"}')
    counter, busy_until = [0], [0.0]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CannedProtocol(ok, error, error_every, hold_after, counter, record, service_ms / 1000, busy_until),
        "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(),
                    lambda: stdin_closed.done() or stdin_closed.set_result(None))
    await stdin_closed
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlserve.bench.canned",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1, help="rows in each canned answer")
    parser.add_argument("--error-every", type=int, default=0,
                        help="answer every Nth request with HTTP 500 (0: never)")
    parser.add_argument("--hold-after", type=int, default=0,
                        help="answer the first N requests, then none (0: answer all)")
    parser.add_argument("--record", metavar="FILE", help="write each request body's SHA-256, one a line")
    parser.add_argument("--service-ms", type=float, default=0.0,
                        help="one worker taking this long per request (0: answer at once)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    record = open(args.record, "w") if args.record else None  # noqa: SIM115 - closed below
    try:
        with runner:
            runner.run(serve(args.batch_size, args.error_every, args.hold_after, record, args.service_ms))
    finally:
        if record is not None:
            record.close()
    return 0


class CannedServer:
    """The canned server in a child process; `url` is where it answers."""

    def __init__(self, batch_size: int = 1, error_every: int = 0, hold_after: int = 0,
                 record: str | None = None, service_ms: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlserve.bench.canned", "--batch-size", str(int(batch_size)),
             "--error-every", str(int(error_every)), "--hold-after", str(int(hold_after)),
             *(["--record", str(record)] if record else []),
             *(["--service-ms", str(float(service_ms))] if service_ms else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise ServerStartError("the canned bench server did not start",
                                   hint="run `python -m mlserve.bench.canned` to see why")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the server's signal to exit
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> CannedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
