"""`mlserve plan` against bench JSON with known numbers; every figure is worked out by hand below."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve.errors import DataError
from mlserve.tools.plan import SloUnmetError, explain, make_plan
from support.cli import parse_json_stdout, run_cli


def _level(c: int, rps: float, p99: float | None, mean: float | None, errors: int = 0) -> dict:
    # The shape `mlserve bench --json` prints (mlserve.bench.BenchLevel.as_dict()).
    return {"concurrency": c, "requests": 1000, "images": 1000, "errors": errors, "error_messages": [],
            "duration_s": 5.0, "requests_per_s": rps, "images_per_s": rps, "p50_ms": p99 and p99 / 2,
            "p90_ms": p99 and p99 * 0.8, "p99_ms": p99, "max_ms": p99 and p99 * 1.5, "mean_ms": mean,
            "cost_per_million": None}


BENCH = {"transport": "rest", "address": "http://127.0.0.1:8501", "model": "digits_model",
         "batch_size": 1, "warmup_s": 1.0, "price_per_hour": None, "self_test": False,
         "levels": [_level(1, 400.0, 4.0, 2.5),
                    _level(8, 1600.0, 12.0, 5.0),
                    _level(16, 1800.0, 45.0, 8.0, errors=3),  # fast enough, but errors: never chosen
                    _level(32, 2000.0, 60.0, 16.0)]}  # the most throughput, but over a 50 ms SLO


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(BENCH))
    return path


def test_plan_arithmetic_checked_by_hand() -> None:
    plan = make_plan(BENCH, rps=5000, p99_ms=50, headroom=0.25, peak_factor=2.0, price_per_hour=1.2)
    # Eligible: c=1 (400 req/s) and c=8 (1600 req/s); c=16 has errors, c=32 has p99 60 > 50.
    assert plan.concurrency == 8 and plan.level_rps == 1600.0 and plan.level_p99_ms == 12.0
    assert plan.usable_rps == pytest.approx(1200.0)  # 1600 x (1 - 0.25)
    assert plan.replicas == 5  # ceil(5000 / 1200) = ceil(4.17)
    assert plan.min_replicas == 5
    assert plan.max_replicas == 9  # ceil(5000 x 2 / 1200) = ceil(8.33)
    assert plan.utilisation == pytest.approx(0.625)  # 5000 / (5 x 1600)
    assert plan.headroom == pytest.approx(0.375)
    assert plan.in_flight_per_replica == pytest.approx(5.0)  # 1000 req/s x 5 ms
    assert plan.cost_per_hour == pytest.approx(6.0)  # 5 x 1.2
    assert plan.cost_per_month == pytest.approx(4380.0)  # 6 x 730
    assert plan.cost_per_million == pytest.approx(1 / 3)  # 6 / (5000 x 3600) x 1e6 = 0.333...
    steps = {row[0]: row for row in explain(plan)}
    assert steps["replicas"][1:] == ("ceil(5000 / 1200.0)", "5")
    assert steps["cost per month"][2] == "4380.00"


def test_cost_per_million_counts_the_images_of_a_batch() -> None:
    plan = make_plan(BENCH | {"batch_size": 8}, rps=5000, p99_ms=50, price_per_hour=1.2)
    assert plan.cost_per_million == pytest.approx(6 / (5000 * 8 * 3600) * 1e6)  # 0.0417


def test_exact_fit_needs_no_extra_replica() -> None:
    plan = make_plan(BENCH, rps=2400, p99_ms=50, headroom=0.25)  # 2400 / 1200 = exactly 2
    assert plan.replicas == 2 and plan.max_replicas == 4 and plan.cost_per_hour is None


def test_slo_no_level_meets_names_the_closest() -> None:
    with pytest.raises(SloUnmetError) as info:
        make_plan(BENCH, rps=5000, p99_ms=3)
    message = info.value.message
    assert "concurrency 1 at p99 4.00 ms" in message and "+1.00 ms over" in message
    assert "mlserve bench -c 1,2,4" in info.value.hint


def test_cli_plan_json_and_table(bench_file: Path) -> None:
    proc = run_cli("plan", "--rps", "5000", "--p99-ms", "50", "--bench-json", str(bench_file),
                   "--price-per-hour", "1.2", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = parse_json_stdout(proc)
    assert (plan["replicas"], plan["max_replicas"], plan["concurrency"]) == (5, 9, 8)
    assert plan["source"] == "bench.json"

    table = run_cli("plan", "--rps", "5000", "--p99-ms", "50", "--bench-json", str(bench_file),
                    "--price-per-hour", "1.2")
    assert table.returncode == 0, table.stderr
    assert "ceil(5000 / 1200.0)" in table.stdout and "4380.00" in table.stdout
    assert "=> 5 replicas (autoscale 5..9), at most 8 requests in flight per replica" in table.stdout


def test_cli_unmet_slo_is_one_error_line_with_a_hint(bench_file: Path) -> None:
    proc = run_cli("plan", "--rps", "5000", "--p99-ms", "3", "--bench-json", str(bench_file))
    assert proc.returncode == 4 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: no measured level keeps p99 under 3 ms: the closest is concurrency 1")
    assert lines[1].startswith("Hint: ")


def test_bad_bench_files(tmp_path: Path) -> None:
    missing = run_cli("plan", "--rps", "10", "--p99-ms", "5", "--bench-json", str(tmp_path / "none.json"))
    assert missing.returncode == 4 and "mlserve bench --json" in missing.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"levels": [{"concurrency": 1}]}))
    proc = run_cli("plan", "--rps", "10", "--p99-ms", "5", "--bench-json", str(wrong))
    assert proc.returncode == 5 and "not `mlserve bench --json` output" in proc.stderr
    with pytest.raises(DataError):
        make_plan({"levels": []}, rps=1, p99_ms=1)


@pytest.mark.slow
def test_plan_runs_the_bench_now(digits_server) -> None:
    """Without --bench-json, plan runs `mlserve bench --json` (bounded: two levels, 0.5 s each)
    against a real embedded server on 127.0.0.1 and plans from what it measured."""
    proc = run_cli("plan", "--rps", "100", "--p99-ms", "10000", "--url", digits_server.url,
                   "-c", "1,2", "--duration", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = parse_json_stdout(proc)
    assert plan["source"] == "mlserve bench (run now)" and plan["concurrency"] in (1, 2)
    assert plan["replicas"] == -(-100 // plan["usable_rps"])  # ceil, however fast this machine is
    assert "Measuring with: mlserve bench --json -c 1,2 --duration 0.5" in proc.stderr


def test_plan_without_a_server_keeps_the_bench_exit_code() -> None:
    from support.ports import free_port

    proc = run_cli("plan", "--rps", "100", "--p99-ms", "50", "--url", f"http://127.0.0.1:{free_port()}",
                   "-c", "1", "--duration", "0.5")
    assert proc.returncode == 7  # UNREACHABLE, as `mlserve bench` said
    assert "Error: `mlserve bench` failed, so there is nothing to plan from" in proc.stderr
    assert "--bench-json" in proc.stderr


# -- from an open-loop sweep (`mlserve bench --rate ... --json`) -------------------------------------

def _rate(rate: float, p99: float | None, mean: float | None, *, achieved: float | None = None,
          errors: int = 0, drops: int = 0, duration: float = 3.0) -> dict:
    # The shape `mlserve bench --rate --json` prints (mlserve.bench.openloop.RateLevel.as_dict()).
    sent = int(rate * duration) - drops
    ok = sent - errors
    return {"rate": rate, "arrival": "poisson", "duration_s": duration, "sent": sent, "ok": ok,
            "errors": errors, "drops": drops, "achieved_per_s": ok / duration if achieved is None else achieved,
            "p50_ms": p99 and p99 / 3, "mean_ms": mean, "p99_ms": p99, "p999_ms": p99 and p99 * 2,
            "max_ms": p99 and p99 * 3, "error_messages": []}


SWEEP = {"open_loop": True, "self_test": False, "address": "http://127.0.0.1:8501", "model": "digits_model",
         "max_inflight": 256,
         "levels": [_rate(200, 2.0, 1.2),
                    _rate(800, 9.0, 4.0),  # the highest that meets a 10 ms SLO: the capacity
                    _rate(400, 4.0, 2.0),  # (order does not matter)
                    _rate(1600, 8.0, 3.0, achieved=1200.0),  # p99 fine, but it fell behind the schedule
                    _rate(2400, 9.5, 3.0, errors=5),  # errors: never a capacity
                    _rate(3200, 50.0, 20.0, drops=100)]}  # over the SLO and dropping


def test_plan_from_a_sweep_takes_the_highest_rate_that_met_the_slo() -> None:
    plan = make_plan(SWEEP, rps=5000, p99_ms=10, headroom=0.25, peak_factor=2.0)
    assert plan.basis == "rate" and plan.level_rps == 800 and plan.level_p99_ms == 9.0
    assert plan.usable_rps == pytest.approx(600.0)  # 800 x (1 - 0.25)
    assert plan.replicas == 9  # ceil(5000 / 600) = ceil(8.33)
    assert plan.max_replicas == 17  # ceil(10000 / 600) = ceil(16.7)
    assert plan.concurrency == 4  # ceil(800 req/s x 4.0 ms) = ceil(3.2): Little's law at capacity
    assert plan.in_flight_per_replica == pytest.approx(5000 / 9 * 0.004)
    why = {r["rate"]: r["problems"] for r in plan.sweep}
    assert why[200] == why[400] == why[800] == []
    assert why[1600] == ["achieved 1200.0 of 1600.0 req/s scheduled (< 95%)"]
    assert why[2400] == ["5 errors"]
    assert why[3200] == ["p99 50.00 ms > 10 ms", "100 dropped"]
    rows = {row[0]: row for row in explain(plan)}
    assert rows["chosen rate"][2] == "800 req/s: achieved 800.0, p99 9.00 ms"
    assert rows["rate 1600 req/s"][2].startswith("no: achieved 1200.0")
    assert rows["rate 800 req/s"][2] == "meets the SLO"
    assert rows["replicas"][1] == "ceil(5000 / 600.0)"
    # a tighter SLO moves the choice down; none met is exit 4 naming the lowest rate's figures
    assert make_plan(SWEEP, rps=5000, p99_ms=5).level_rps == 400
    with pytest.raises(SloUnmetError) as info:
        make_plan(SWEEP, rps=5000, p99_ms=1)
    assert "the lowest, 200 req/s, had p99 2.00 ms > 1 ms" in info.value.message
    assert "mlserve bench --rate" in info.value.hint


def test_cli_plan_from_a_saved_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(SWEEP))
    proc = run_cli("plan", "--rps", "5000", "--p99-ms", "10", "--bench-json", str(sweep), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = parse_json_stdout(proc)
    assert (plan["basis"], plan["level_rps"], plan["replicas"], plan["concurrency"]) == ("rate", 800, 9, 4)
    table = run_cli("plan", "--rps", "5000", "--p99-ms", "10", "--bench-json", str(sweep))
    assert table.returncode == 0, table.stderr
    assert "chosen rate" in table.stdout and "800 req/s per replica (open loop)" in table.stdout
    both = run_cli("plan", "--rps", "1", "--p99-ms", "1", "--bench-json", str(sweep), "--rate", "10")
    assert both.returncode == 2 and "give one" in both.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"open_loop": True, "levels": [{"rate": 10}]}))
    bad = run_cli("plan", "--rps", "1", "--p99-ms", "1", "--bench-json", str(broken))
    assert bad.returncode == 5 and "mlserve bench --rate --json" in bad.stderr


@pytest.mark.slow
def test_plan_runs_an_open_loop_sweep_now() -> None:
    """--rate runs `mlserve bench --rate --json` against the canned server on 127.0.0.1 (no model:
    it answers at once) and plans from the sweep. No timing is asserted: the SLO is generous."""
    from mlserve.bench import CannedServer

    with CannedServer() as server:
        proc = run_cli("plan", "--rps", "100", "--p99-ms", "5000", "--rate", "20,40", "--duration", "1",
                       "--url", server.url, "--model", "canned")
    assert proc.returncode == 0, proc.stderr
    assert "Measuring with: mlserve bench --json --rate 20,40 --duration 1" in proc.stderr
    assert "Plan for 100 req/s at p99 <= 5000 ms from mlserve bench --rate (run now)" in proc.stdout
    assert "chosen rate" in proc.stdout and "=> " in proc.stdout
