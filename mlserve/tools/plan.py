"""Sizing a deployment from measured figures: replicas, per-replica concurrency, headroom and cost.

The input is what `mlserve bench --json` prints (`mlserve.bench.BenchReport.as_dict()`): one
machine's throughput and p99 at each concurrency level. The arithmetic, in the order
`explain()` shows it:

    eligible levels    = levels with no errors and p99 <= the SLO
    chosen level       = the eligible level with the most requests/s per replica
    usable per replica = its requests/s x (1 - headroom)        (never plan a replica at 100%)
    replicas           = ceil(target rps / usable per replica)
    max replicas       = ceil(target rps x peak factor / usable per replica)  (the HPA ceiling)
    utilisation        = target rps / (replicas x requests/s per replica)
    in flight/replica  = (target rps / replicas) x mean latency        (Little's law)
    cost per hour      = replicas x price per replica-hour
    cost per month     = cost per hour x 730 h
    cost per 1M preds  = cost per hour / (target rps x batch size x 3600) x 1e6

A replica kept below the rate it sustained at the chosen level, with fewer requests in flight than
that level had, stays at or under the latency measured there; the plan holds only as long as the
bench ran on the same machine type, model and batch size as production will.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import DataError, NotFoundError, UsageError

HOURS_PER_MONTH = 730.0  # 365 x 24 / 12
DEFAULT_HEADROOM = 0.25
DEFAULT_PEAK_FACTOR = 2.0


class SloUnmetError(NotFoundError):
    """No measured level meets the latency SLO (exit code 4: no such level exists)."""


@dataclass(frozen=True)
class Level:
    """One concurrency level of a bench run: the figures sizing needs."""

    concurrency: int
    requests_per_s: float
    p99_ms: float | None
    mean_ms: float | None
    errors: int
    requests: int


@dataclass
class Plan:
    """A sized deployment. `deploy --plan` reads `replicas`, `min_replicas` and `max_replicas`."""

    target_rps: float
    p99_slo_ms: float
    batch_size: int
    headroom_target: float
    peak_factor: float
    concurrency: int  # per replica: the bench level chosen
    level_rps: float  # requests/s one replica sustained at that level
    level_p99_ms: float
    level_mean_ms: float | None
    usable_rps: float  # level_rps x (1 - headroom_target)
    replicas: int
    min_replicas: int
    max_replicas: int
    utilisation: float  # at the target rate
    headroom: float  # 1 - utilisation: spare capacity at the target rate
    in_flight_per_replica: float | None  # Little's law at the target rate
    price_per_hour: float | None  # per replica
    cost_per_hour: float | None
    cost_per_month: float | None
    cost_per_million: float | None
    source: str  # where the figures came from
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_bench(path: str | Path) -> dict[str, Any]:
    """Read a file written by `mlserve bench --json`."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no bench results at {file}",
                            hint="write them with `mlserve bench --json > bench.json`") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{file} is not readable JSON: {e}",
                        hint="write it with `mlserve bench --json > bench.json`") from e
    levels(data, str(file))  # check the shape now
    return data


def levels(bench: dict[str, Any], source: str = "bench results") -> list[Level]:
    """The levels of a bench report, checked (a DataError names what is missing)."""
    try:
        raw = bench["levels"]
        out = [Level(int(lv["concurrency"]), float(lv["requests_per_s"]),
                     None if lv.get("p99_ms") is None else float(lv["p99_ms"]),
                     None if lv.get("mean_ms") is None else float(lv["mean_ms"]),
                     int(lv.get("errors", 0)), int(lv.get("requests", 0)))
               for lv in raw]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{source} is not `mlserve bench --json` output (bad or missing {e})",
                        hint="write it with `mlserve bench --json > bench.json`") from None
    if not out:
        raise DataError(f"{source} has no measured levels", hint="run `mlserve bench -c 1,8,32 --json`")
    return out


def make_plan(bench: dict[str, Any], *, rps: float, p99_ms: float,
              headroom: float = DEFAULT_HEADROOM, peak_factor: float = DEFAULT_PEAK_FACTOR,
              price_per_hour: float | None = None, source: str = "bench results") -> Plan:
    """Size a deployment for `rps` requests/s with p99 under `p99_ms`, from one bench report."""
    if not rps > 0:
        raise UsageError(f"--rps must be positive, got {rps:g}")
    if not p99_ms > 0:
        raise UsageError(f"--p99-ms must be positive, got {p99_ms:g}")
    if not 0 <= headroom < 1:
        raise UsageError(f"--headroom must be in [0, 1), got {headroom:g}",
                         hint="0.25 keeps a quarter of each replica's measured capacity spare")
    if peak_factor < 1:
        raise UsageError(f"--peak-factor must be 1 or more, got {peak_factor:g}")
    if price_per_hour is not None and price_per_hour < 0:
        raise UsageError("--price-per-hour cannot be negative")
    measured = levels(bench, source)
    eligible = [lv for lv in measured if lv.errors == 0 and lv.p99_ms is not None
                and lv.p99_ms <= p99_ms and lv.requests_per_s > 0]
    if not eligible:
        raise _unmet(measured, p99_ms)
    best = max(eligible, key=lambda lv: (lv.requests_per_s, -lv.concurrency))
    usable = best.requests_per_s * (1 - headroom)
    replicas = math.ceil(rps / usable - 1e-9)
    max_replicas = max(replicas, math.ceil(rps * peak_factor / usable - 1e-9))
    utilisation = rps / (replicas * best.requests_per_s)
    in_flight = None if best.mean_ms is None else rps / replicas * best.mean_ms / 1000.0
    batch = int(bench.get("batch_size") or 1)
    cost_hour = cost_month = cost_million = None
    if price_per_hour is not None:
        cost_hour = replicas * price_per_hour
        cost_month = cost_hour * HOURS_PER_MONTH
        cost_million = cost_hour / (rps * batch * 3600.0) * 1_000_000
    return Plan(target_rps=rps, p99_slo_ms=p99_ms, batch_size=batch, headroom_target=headroom,
                peak_factor=peak_factor, concurrency=best.concurrency, level_rps=best.requests_per_s,
                level_p99_ms=float(best.p99_ms), level_mean_ms=best.mean_ms, usable_rps=usable,
                replicas=replicas, min_replicas=replicas, max_replicas=max_replicas,
                utilisation=utilisation, headroom=1 - utilisation, in_flight_per_replica=in_flight,
                price_per_hour=price_per_hour, cost_per_hour=cost_hour, cost_per_month=cost_month,
                cost_per_million=cost_million, source=source, model=bench.get("model"))


def _unmet(measured: list[Level], p99_ms: float) -> SloUnmetError:
    """The error for an SLO that no level meets, naming the level that came closest."""
    timed = [lv for lv in measured if lv.p99_ms is not None]
    if not timed:
        return SloUnmetError("no measured level has a single successful request",
                             hint="check the server with `mlserve predict`, then rerun `mlserve bench`")
    clean = [lv for lv in timed if lv.errors == 0] or timed
    closest = min(clean, key=lambda lv: (lv.p99_ms, -lv.requests_per_s))
    errors = f", {closest.errors} errors" if closest.errors else ""
    return SloUnmetError(
        f"no measured level keeps p99 under {p99_ms:g} ms: the closest is concurrency "
        f"{closest.concurrency} at p99 {closest.p99_ms:.2f} ms{errors} "
        f"({closest.p99_ms - p99_ms:+.2f} ms over, {closest.requests_per_s:.1f} req/s)",
        hint="bench lower concurrency levels (`mlserve bench -c 1,2,4 --json`), a faster machine "
             "or a GPU, or relax --p99-ms")


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read a plan written by `mlserve plan --json` (for `mlserve deploy --plan`)."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text())
        replicas, low, high = int(data["replicas"]), int(data["min_replicas"]), int(data["max_replicas"])
    except FileNotFoundError:
        raise NotFoundError(f"no plan at {file}",
                            hint="write one with `mlserve plan --rps N --p99-ms MS --json > plan.json`") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{file} is not `mlserve plan --json` output ({e})",
                        hint="write one with `mlserve plan --rps N --p99-ms MS --json > plan.json`") from None
    if not 1 <= low <= replicas <= high:
        raise DataError(f"{file}: replicas {replicas} is not within min {low} and max {high}",
                        hint="write it again with `mlserve plan --json`")
    return data


def explain(plan: Plan) -> list[tuple[str, str, str]]:
    """The arithmetic, one (quantity, how, value) row per step: the table `mlserve plan` prints."""
    rows = [
        ("chosen level", f"most req/s with p99 <= {plan.p99_slo_ms:g} ms and no errors",
         f"concurrency {plan.concurrency}: {plan.level_rps:.1f} req/s, p99 {plan.level_p99_ms:.2f} ms"),
        ("usable per replica", f"{plan.level_rps:.1f} x (1 - {plan.headroom_target:g} headroom)",
         f"{plan.usable_rps:.1f} req/s"),
        ("replicas", f"ceil({plan.target_rps:g} / {plan.usable_rps:.1f})", str(plan.replicas)),
        ("max replicas (HPA)", f"ceil({plan.target_rps:g} x {plan.peak_factor:g} / {plan.usable_rps:.1f})",
         str(plan.max_replicas)),
        ("utilisation", f"{plan.target_rps:g} / ({plan.replicas} x {plan.level_rps:.1f})",
         f"{plan.utilisation:.1%} (headroom {plan.headroom:.1%})"),
    ]
    if plan.in_flight_per_replica is not None and plan.level_mean_ms is not None:
        rows.append(("in flight per replica",
                     f"{plan.target_rps / plan.replicas:.1f} req/s x {plan.level_mean_ms:.2f} ms",
                     f"{plan.in_flight_per_replica:.1f} (measured level: {plan.concurrency})"))
    if plan.cost_per_hour is not None:
        rows += [
            ("cost per hour", f"{plan.replicas} x {plan.price_per_hour:g}", f"{plan.cost_per_hour:.2f}"),
            ("cost per month", f"{plan.cost_per_hour:.2f} x {HOURS_PER_MONTH:g} h", f"{plan.cost_per_month:.2f}"),
            ("cost per 1M predictions",
             f"{plan.cost_per_hour:.2f} / ({plan.target_rps:g} x {plan.batch_size} x 3600) x 1e6",
             f"{plan.cost_per_million:.4f}"),
        ]
    return rows
