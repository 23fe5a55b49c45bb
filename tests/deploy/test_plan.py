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
