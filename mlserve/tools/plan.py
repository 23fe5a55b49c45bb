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

An open-loop sweep (`mlserve bench --rate R1,R2,... --json`) sizes the same way from arrival rates
instead of concurrency levels: latency there runs from each request's scheduled send, so queueing
is in the p99 a closed loop would hide. One replica's capacity is

    chosen rate        = the highest arrival rate with p99 <= the SLO, no drops, no errors, and
                         answers achieved >= 95% of the requests scheduled (the replica kept up)
    concurrency        = ceil(chosen rate x mean latency)     (Little's law, at that rate)

and the rest of the arithmetic is the one above, with the chosen rate as requests/s per replica.
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


ACHIEVED_SHARE = 0.95  # a rate "kept up" when its answers reached this share of the schedule


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


@dataclass(frozen=True)
class Rate:
    """One arrival rate of an open-loop sweep: the figures sizing needs."""

    rate: float
    scheduled_per_s: float  # what the schedule drew (Poisson: not exactly `rate`)
    achieved_per_s: float
    p99_ms: float | None
    mean_ms: float | None  # the sweep's mean latency, else its p50
    errors: int
    drops: int

    def problems(self, p99_ms: float) -> list[str]:
        """Why this rate cannot be a replica's capacity (empty: it can)."""
        out = []
        if self.p99_ms is None:
            out.append("no answer")
        elif self.p99_ms > p99_ms:
            out.append(f"p99 {self.p99_ms:.2f} ms > {p99_ms:g} ms")
        if self.achieved_per_s < ACHIEVED_SHARE * self.scheduled_per_s:
            out.append(f"achieved {self.achieved_per_s:.1f} of {self.scheduled_per_s:.1f} req/s scheduled "
                       f"(< {ACHIEVED_SHARE:.0%})")
        if self.drops:
            out.append(f"{self.drops} dropped")
        if self.errors:
            out.append(f"{self.errors} errors")
        return out


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
    basis: str = "concurrency"  # or "rate": sized from an open-loop sweep
    level_achieved_rps: float | None = None  # rate basis: what the chosen rate achieved
    sweep: list[dict[str, Any]] | None = None  # rate basis: every rate, and why it was or was not chosen

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
    (rates if is_sweep(data) else levels)(data, str(file))  # check the shape now
    return data


def is_sweep(bench: dict[str, Any]) -> bool:
    """Whether the figures are an open-loop sweep (`mlserve bench --rate --json`)."""
    return bool(bench.get("open_loop"))


def rates(bench: dict[str, Any], source: str = "bench results") -> list[Rate]:
    """The arrival rates of an open-loop sweep, checked (a DataError names what is missing)."""
    try:
        out = []
        for lv in bench["levels"]:
            duration = float(lv.get("duration_s") or 0)
            sent = lv.get("sent")
            scheduled = (int(sent) + int(lv.get("drops", 0))) / duration if sent is not None and duration > 0 \
                else float(lv["rate"])
            latency = lv.get("mean_ms") if lv.get("mean_ms") is not None else lv.get("p50_ms")
            out.append(Rate(float(lv["rate"]), scheduled, float(lv["achieved_per_s"]),
                            None if lv.get("p99_ms") is None else float(lv["p99_ms"]),
                            None if latency is None else float(latency),
                            int(lv.get("errors", 0)), int(lv.get("drops", 0))))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{source} is not `mlserve bench --rate --json` output (bad or missing {e})",
                        hint="write it with `mlserve bench --rate 200,400,800 --json > sweep.json`") from None
    if not out:
        raise DataError(f"{source} has no measured rates", hint="run `mlserve bench --rate 200,400,800 --json`")
    return sorted(out, key=lambda r: r.rate)


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
    if is_sweep(bench):
        return _plan_from_sweep(bench, rps=rps, p99_ms=p99_ms, headroom=headroom, peak_factor=peak_factor,
                                price_per_hour=price_per_hour, source=source)
    measured = levels(bench, source)
    eligible = [lv for lv in measured if lv.errors == 0 and lv.p99_ms is not None
                and lv.p99_ms <= p99_ms and lv.requests_per_s > 0]
    if not eligible:
        raise _unmet(measured, p99_ms)
    best = max(eligible, key=lambda lv: (lv.requests_per_s, -lv.concurrency))
    return _sized(bench, rps=rps, p99_ms=p99_ms, headroom=headroom, peak_factor=peak_factor,
                  price_per_hour=price_per_hour, source=source, concurrency=best.concurrency,
                  level_rps=best.requests_per_s, level_p99_ms=float(best.p99_ms), level_mean_ms=best.mean_ms)


def _plan_from_sweep(bench: dict[str, Any], *, rps: float, p99_ms: float, headroom: float, peak_factor: float,
                     price_per_hour: float | None, source: str) -> Plan:
    """Size from an open-loop sweep: one replica's capacity is the highest rate that met the SLO."""
    measured = rates(bench, source)
    sweep = [{"rate": r.rate, "achieved_per_s": r.achieved_per_s, "p99_ms": r.p99_ms,
              "problems": r.problems(p99_ms)} for r in measured]
    eligible = [r for r in measured if not r.problems(p99_ms) and r.achieved_per_s > 0]
    if not eligible:
        lowest = measured[0]
        raise SloUnmetError(
            f"no arrival rate keeps p99 under {p99_ms:g} ms without drops or errors: the lowest, "
            f"{lowest.rate:g} req/s, had {'; '.join(lowest.problems(p99_ms))}",
            hint="sweep lower rates (`mlserve bench --rate 50,100,200 --json`), a faster machine or a "
                 "GPU, or relax --p99-ms")
    best = max(eligible, key=lambda r: r.rate)
    # Little's law at the chosen rate: the requests one replica holds in flight at its capacity.
    concurrency = max(1, math.ceil(best.rate * (best.mean_ms or 0.0) / 1000.0 - 1e-9))
    plan = _sized(bench, rps=rps, p99_ms=p99_ms, headroom=headroom, peak_factor=peak_factor,
                  price_per_hour=price_per_hour, source=source, concurrency=concurrency,
                  level_rps=best.rate, level_p99_ms=float(best.p99_ms or 0.0), level_mean_ms=best.mean_ms)
    plan.basis, plan.level_achieved_rps, plan.sweep = "rate", best.achieved_per_s, sweep
    return plan


def _sized(bench: dict[str, Any], *, rps: float, p99_ms: float, headroom: float, peak_factor: float,
           price_per_hour: float | None, source: str, concurrency: int, level_rps: float,
           level_p99_ms: float, level_mean_ms: float | None) -> Plan:
    """The arithmetic from one replica's requests/s on: replicas, utilisation, in flight, cost."""
    usable = level_rps * (1 - headroom)
    replicas = math.ceil(rps / usable - 1e-9)
    max_replicas = max(replicas, math.ceil(rps * peak_factor / usable - 1e-9))
    utilisation = rps / (replicas * level_rps)
    in_flight = None if level_mean_ms is None else rps / replicas * level_mean_ms / 1000.0
    batch = int(bench.get("batch_size") or 1)
    cost_hour = cost_month = cost_million = None
    if price_per_hour is not None:
        cost_hour = replicas * price_per_hour
        cost_month = cost_hour * HOURS_PER_MONTH
        cost_million = cost_hour / (rps * batch * 3600.0) * 1_000_000
    return Plan(target_rps=rps, p99_slo_ms=p99_ms, batch_size=batch, headroom_target=headroom,
                peak_factor=peak_factor, concurrency=concurrency, level_rps=level_rps,
                level_p99_ms=level_p99_ms, level_mean_ms=level_mean_ms, usable_rps=usable,
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
    if plan.basis == "rate":
        rows = [(f"rate {r['rate']:g} req/s", f"achieved {r['achieved_per_s']:.1f} req/s, p99 "
                 + ("-" if r["p99_ms"] is None else f"{r['p99_ms']:.2f} ms"),
                 "meets the SLO" if not r["problems"] else "no: " + "; ".join(r["problems"]))
                for r in plan.sweep or []]
        rows += [
            ("chosen rate", f"highest arrival rate with p99 <= {plan.p99_slo_ms:g} ms, achieved >= "
             f"{ACHIEVED_SHARE:.0%} of scheduled, no drops or errors",
             f"{plan.level_rps:g} req/s: achieved {plan.level_achieved_rps or 0:.1f}, p99 {plan.level_p99_ms:.2f} ms"),
            ("concurrency per replica", f"ceil({plan.level_rps:g} req/s x {plan.level_mean_ms or 0:.2f} ms)",
             f"{plan.concurrency} (Little's law at the chosen rate)"),
        ]
    else:
        rows = [("chosen level", f"most req/s with p99 <= {plan.p99_slo_ms:g} ms and no errors",
                 f"concurrency {plan.concurrency}: {plan.level_rps:.1f} req/s, p99 {plan.level_p99_ms:.2f} ms")]
    rows += [
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
                     f"{plan.in_flight_per_replica:.1f} ("
                     + ("at the chosen rate" if plan.basis == "rate" else "measured level")
                     + f": {plan.concurrency})"))
    if plan.cost_per_hour is not None:
        rows += [
            ("cost per hour", f"{plan.replicas} x {plan.price_per_hour:g}", f"{plan.cost_per_hour:.2f}"),
            ("cost per month", f"{plan.cost_per_hour:.2f} x {HOURS_PER_MONTH:g} h", f"{plan.cost_per_month:.2f}"),
            ("cost per 1M predictions",
             f"{plan.cost_per_hour:.2f} / ({plan.target_rps:g} x {plan.batch_size} x 3600) x 1e6",
             f"{plan.cost_per_million:.4f}"),
        ]
    return rows
