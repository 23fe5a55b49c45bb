"""What the benchmark prints and saves: the machine it ran on, the table, gRPC and REST side by
side, and the targets computed from the run's own figures."""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Callable

from procs import LOADGEN_CORE, SERVER_CORE


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_state() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "loadavg": loadavg(),
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


def grpc_vs_rest(results: dict) -> list[dict]:
    """Each server's gRPC and REST figures for the same scenario, and their ratio."""
    rows = []
    for name, server in results["servers"].items():
        scenarios = server.get("scenarios", {})
        for scenario, s in scenarios.items():
            if not scenario.startswith("rest_"):
                continue
            g = scenarios.get("grpc_" + scenario[len("rest_"):])
            if not g or "failed" in s or "failed" in g or not s.get("rps"):
                continue
            rows.append({"server": name, "scenario": scenario[len("rest_"):], "rest_rps": s["rps"],
                         "grpc_rps": g["rps"], "grpc_over_rest": round(g["rps"] / s["rps"], 2),
                         "rest_p50_ms": s["p50_ms"], "grpc_p50_ms": g["p50_ms"]})
    return rows


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
    side = grpc_vs_rest(results)
    if side:
        lines += ["", "gRPC (h2load) and REST (wrk) side by side, same server, same scenario:",
                  f"{'server':<20} {'scenario':<10} {'REST req/s':>10} {'gRPC req/s':>10} "
                  f"{'gRPC/REST':>9} {'REST p50':>8} {'gRPC p50':>8}"]
        for row in side:
            lines.append(f"{row['server']:<20} {row['scenario']:<10} {row['rest_rps']:>10.1f} "
                         f"{row['grpc_rps']:>10.1f} {row['grpc_over_rest']:>9.2f} "
                         f"{row['rest_p50_ms']:>8.2f} {row['grpc_p50_ms']:>8.2f}")
    lines += ["", "gen cpu: load generator's use of core 1; srv cpu: server's use of core 0; others: "
              "other processes' use of core 0 (shared machine); steal: hypervisor steal on core 0.",
              "", "Targets (from this run's figures):"]
    for v in results["targets"]:
        lines.append(f"  {v['verdict']:<4} {v['target']}: {v['detail']}")
    return "\n".join(lines)
