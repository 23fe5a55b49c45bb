"""An open-loop REST load: requests leave at a fixed arrival rate whether or not answers come back.

A closed loop (a fixed number of requests in flight) slows down with the server and so hides its
queue (coordinated omission). Here each request has a scheduled send time, drawn up front from a
Poisson process or a constant spacing, and its latency runs from that time, not from when it was
written (as wrk2 does). Requests go over N keep-alive HTTP/1.1 connections, pipelined on a busy
one; a request that would exceed `max_in_flight` is dropped and counted, never queued unbounded.

Every request carries the same body, or (a `bodies.BodyTemplate` and `repeat` below 1) a fraction
`repeat` of them an input already sent and the rest a fresh one, planned before the level starts.

    levels = run_open_loop(url, path, body, rates=[100, 1000], duration=2.0)
    levels[0].p99_ms, levels[0].drops
"""
from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import asdict, dataclass, field

from mlserve.bench import wire
from mlserve.bench.bodies import BodyTemplate, check_pool, plan_inputs
from mlserve.errors import UsageError

ARRIVALS = ("poisson", "constant")
MAX_RATE = 1_000_000.0


@dataclass
class RateLevel:
    """One arrival rate's figures; latencies in ms from each request's scheduled send time."""

    rate: float
    arrival: str
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    drops: int = 0
    achieved_per_s: float = 0.0
    p50_ms: float | None = None
    mean_ms: float | None = None  # for Little's law (`mlserve plan` from a sweep)
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    repeat: float = 1.0  # asked: the fraction of requests that repeat an input already sent
    repeated: int = 0  # sent requests that repeated an input
    repeat_fraction: float | None = None  # repeated / sent
    error_messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_rates(text: str) -> list[float]:
    """`--rate 100,1000` as floats, each in (0, MAX_RATE]."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise UsageError(f"--rate must be comma-separated numbers, got {text!r}",
                         hint="e.g. --rate 100,500,1000") from e
    if not rates or any(not 0 < r <= MAX_RATE for r in rates):
        raise UsageError(f"each --rate must be above 0 and at most {MAX_RATE:g} req/s, got {text!r}",
                         hint="e.g. --rate 100,500,1000")
    return rates


def schedule(rate: float, duration: float, arrival: str, seed: int = 0) -> list[float]:
    """Send offsets in seconds from the start, for `duration` seconds at `rate` per second."""
    if arrival not in ARRIVALS:
        raise UsageError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    if arrival == "constant":
        return [i / rate for i in range(int(rate * duration))]
    draw, t, out = random.Random(seed), 0.0, []
    while True:
        t += draw.expovariate(rate)
        if t >= duration:
            return out
        out.append(t)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when empty)."""
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(q * len(sorted_ms) + 0.999999) - 1))]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a FIFO of scheduled times matched to answers in order."""

    def __init__(self, level: RateLevel, latencies: list[float]) -> None:
        self.level, self.latencies = level, latencies
        self.pending: collections.deque[float] = collections.deque()
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        now = time.perf_counter()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = wire.content_length(self.buffer[:end + 2])
            if len(self.buffer) < end + 4 + length:
                return
            head, body = self.buffer[:end], self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            if not self.pending:
                continue
            scheduled = self.pending.popleft()
            status = int(head[9:12])
            if status == 200:
                self.level.ok += 1
                self.latencies.append((now - scheduled) * 1000.0)
            else:
                self.level.errors += 1
                if len(self.level.error_messages) < 3:
                    self.level.error_messages.append(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.level.errors += len(self.pending)
        if self.pending and len(self.level.error_messages) < 3:
            self.level.error_messages.append(f"connection closed with {len(self.pending)} requests unanswered")
        self.pending.clear()


@dataclass
class _Requests:
    """What one level sends: the base request, and per scheduled request its fresh input's token
    (None: the base) and whether it repeats an input; `head` + token + `post` is a fresh request."""

    base: bytes
    head: bytes = b""
    post: bytes = b""
    tokens: list[bytes | None] | None = None  # None: the base every time
    repeats: list[bool] | None = None


async def _one_rate(host: str, port: int, requests: _Requests, offsets: list[float], rate: float,
                    duration: float, arrival: str, connections: int, max_in_flight: int,
                    timeout: float, repeat: float) -> RateLevel:
    level, latencies = RateLevel(rate, arrival, duration, repeat=repeat), []
    loop = asyncio.get_running_loop()
    conns: list[_Connection] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Connection(level, latencies), host, port)
        conns.append(proto)
    base, head, post, tokens = requests.base, requests.head, requests.post, requests.tokens
    start = time.perf_counter()
    turn = 0
    i = 0
    while i < len(offsets):
        now = time.perf_counter()
        due = start + offsets[i]
        if due > now:
            await asyncio.sleep(due - now)
            continue
        # Everything due by now leaves at once (a late loop catches up; latency keeps the lateness).
        while i < len(offsets) and start + offsets[i] <= now:
            in_flight = sum(len(c.pending) for c in conns)
            live = [c for c in conns if not c.lost]
            if in_flight >= max_in_flight or not live:
                level.drops += 1
            else:
                conn = min(live, key=lambda c: len(c.pending)) if connections <= 8 else live[turn % len(live)]
                turn += 1
                conn.pending.append(start + offsets[i])
                assert conn.transport is not None
                token = tokens[i] if tokens is not None else None
                if token is None:
                    conn.transport.write(base)
                else:  # one write, one send: writelines would send each part on its own
                    conn.transport.write(head + token + post)
                level.sent += 1
                if requests.repeats is None or requests.repeats[i]:
                    level.repeated += 1
            i += 1
        await asyncio.sleep(0)
    deadline = time.perf_counter() + timeout
    while any(c.pending for c in conns) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    for c in conns:
        if c.pending:
            level.errors += len(c.pending)
            if len(level.error_messages) < 3:
                level.error_messages.append(f"{len(c.pending)} requests unanswered after {timeout:g} s")
            c.pending.clear()
        if c.transport is not None:
            c.transport.close()
    elapsed = max(duration, time.perf_counter() - start - 0.0)
    level.achieved_per_s = level.ok / elapsed if elapsed > 0 else 0.0
    latencies.sort()
    level.p50_ms, level.p99_ms = percentile(latencies, 0.50), percentile(latencies, 0.99)
    level.p999_ms = percentile(latencies, 0.999)
    level.mean_ms = sum(latencies) / len(latencies) if latencies else None
    level.max_ms = latencies[-1] if latencies else None
    level.repeat_fraction = level.repeated / level.sent if level.sent else None
    return level


def run_open_loop(url: str, path: str, body: bytes | BodyTemplate, *, rates: list[float],
                  duration: float = 2.0, arrival: str = "poisson", connections: int = 16,
                  max_in_flight: int = 4096, timeout: float = 10.0, seed: int = 0,
                  headers: dict[str, str] | None = None, repeat: float = 1.0) -> list[RateLevel]:
    """One level per rate, each `duration` seconds of scheduled sends of one POST.

    With a BodyTemplate and `repeat` below 1, a fraction `repeat` of each level's requests repeat an
    input already sent in the level and the rest carry fresh inputs, distinct across the whole run.
    """
    if arrival not in ARRIVALS:
        raise UsageError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    if not 1 <= connections <= 1024:
        raise UsageError(f"--connections must be 1..1024, got {connections}")
    if not 0.0 <= repeat <= 1.0:
        raise UsageError(f"--repeat must be a fraction from 0 to 1, got {repeat:g}")
    template = body if isinstance(body, BodyTemplate) else None
    if repeat < 1.0 and template is None:
        raise UsageError("--repeat below 1 needs a body template to vary",
                         hint="pass a bodies.BodyTemplate as the body")
    host, port, _, _ = wire.http_address(url)
    offsets = [schedule(r, duration, arrival, seed + n) for n, r in enumerate(rates)]
    levels: list[_Requests] = []
    if template is None or repeat >= 1.0:
        base = wire.post_request(url, path, template.base if template else body, headers)  # type: ignore[arg-type]
        levels = [_Requests(base) for _ in rates]
    else:
        check_pool([len(o) for o in offsets], repeat)
        base = wire.post_request(url, path, template.base, headers)
        head = wire.post_head(url, path, len(template.pre) + template.token_width + len(template.post),
                              headers) + template.pre
        fresh = 0
        for n, o in enumerate(offsets):
            plan = plan_inputs(len(o), repeat, seed + n, fresh)
            fresh = plan.next_fresh
            tokens = [None if k < 0 else template.token(k) for k in plan.inputs]
            levels.append(_Requests(base, head, template.post, tokens, plan.repeats))

    async def main() -> list[RateLevel]:
        return [await _one_rate(host, port, levels[n], offsets[n], r, duration, arrival, connections,
                                max_in_flight, timeout, repeat) for n, r in enumerate(rates)]

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        return runner.run(main())
